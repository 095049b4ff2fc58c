//! The session commands of the `burrow` CLI against a real kernel and the real
//! `echo-provider` app: `chat` (a terminal channel on piped stdin), `send --wait`,
//! `sessions` and `history`.

use std::process::{Output, Stdio};

use burrow_tests::{AppProcess, DEADLINE, FAST_CONFIG, Kernel, bin, poll_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

async fn kernel_with_echo() -> (Kernel, AppProcess) {
    let kernel = Kernel::start_with_config(FAST_CONFIG).await;
    let echo = kernel.echo_provider().await;
    (kernel, echo)
}

fn spawn_chat(kernel: &Kernel, key: &str) -> Child {
    Command::new(bin("burrow"))
        .args(["chat", key])
        .env("BURROW_SOCKET", &kernel.socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn burrow chat")
}

/// Waits (bounded) for the chat to exit and collects what it printed.
async fn finish(child: Child, kernel: &Kernel) -> Output {
    match tokio::time::timeout(DEADLINE, child.wait_with_output()).await {
        Ok(out) => out.expect("wait burrow chat"),
        Err(_) => panic!("burrow chat did not exit; kernel log:\n{}", kernel.log()),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Whether no `chat-*` app is registered any more.
async fn chat_app_gone(kernel: &Kernel) -> bool {
    poll_until(DEADLINE, || async {
        !kernel.app_ids().await.iter().any(|id| id.starts_with("chat-"))
    })
    .await
}

/// Chats one line interactively: writes it, waits for `reply` on stdout, then `/quit`.
async fn chat_once(kernel: &Kernel, key: &str, line: &str, reply: &str) -> String {
    let mut child = spawn_chat(kernel, key);
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = child.stdout.take().expect("stdout");
    stdin.write_all(format!("{line}\n").as_bytes()).await.expect("write a line");
    let mut seen = String::new();
    let found = tokio::time::timeout(DEADLINE, async {
        let mut buf = [0u8; 4096];
        loop {
            match stdout.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
            if seen.contains(reply) {
                return true;
            }
        }
    })
    .await;
    if !matches!(found, Ok(true)) {
        let _ = child.start_kill();
        let out = finish(child, kernel).await;
        panic!("no {reply:?} on stdout: {seen:?}; stderr: {}", text(&out.stderr));
    }
    stdin.write_all(b"/quit\n").await.expect("write /quit");
    drop(stdin);
    let mut rest = String::new();
    let read = tokio::time::timeout(DEADLINE, stdout.read_to_string(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(_))), "stdout did not end after /quit");
    let out = finish(child, kernel).await;
    assert!(out.status.success(), "burrow chat failed: {}", text(&out.stderr));
    seen + &rest
}

#[tokio::test]
async fn chat_sends_lines_and_prints_the_agents_replies_until_quit() {
    let (kernel, _echo) = kernel_with_echo().await;
    let mut child = spawn_chat(&kernel, "t1");
    let mut stdin = child.stdin.take().expect("stdin");
    // Both lines at once: the chat waits for the reply to `hello` before reading `/quit`.
    stdin.write_all(b"hello\n/quit\n").await.expect("write stdin");
    drop(stdin);
    let out = finish(child, &kernel).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "stdout: {stdout:?}; stderr: {stderr}");
    assert!(stdout.contains("agent: echo: hello"), "stdout: {stdout:?}; stderr: {stderr}");
    assert!(stdout.starts_with("you: "), "{stdout:?}");
    // It left with app.shutdown: its app is gone.
    assert!(chat_app_gone(&kernel).await, "apps: {:?}", kernel.app_ids().await);
}

#[tokio::test]
async fn send_waits_for_the_run_and_sessions_and_history_show_the_conversations() {
    let (kernel, _echo) = kernel_with_echo().await;
    let seen = chat_once(&kernel, "t1", "hello there", "agent: echo: hello there").await;
    assert!(seen.contains("you: "), "{seen:?}");

    let out = kernel.cli(&["send", "k1", "hi", "--wait"]).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "stdout: {stdout:?}; stderr: {stderr}");
    assert!(stdout.lines().any(|l| l == "echo: hi"), "{stdout:?}");
    assert!(stdout.contains("in session k1: run "), "{stdout:?}");

    let out = kernel.cli(&["sessions"]).await;
    let table = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(table.starts_with("KEY "), "{table}");
    let row = |key: &str| table.lines().find(|l| l.split_whitespace().next() == Some(key));
    let t1 = row("t1").unwrap_or_else(|| panic!("no t1 in {table}"));
    assert!(t1.contains("terminal-"), "{t1}");
    let k1 = row("k1").unwrap_or_else(|| panic!("no k1 in {table}"));
    assert!(k1.split_whitespace().any(|c| c == "2"), "two messages in k1: {k1}");

    let out = kernel.cli(&["sessions", "--channel", "nope"]).await;
    assert_eq!(text(&out.stdout), "no sessions\n");
    let out = kernel.cli(&["sessions", "--json", "--limit", "1"]).await;
    let page: serde_json::Value = serde_json::from_slice(&out.stdout).expect("sessions --json");
    assert_eq!(
        (page["total"].as_u64(), page["sessions"].as_array().map(Vec::len)),
        (Some(2), Some(1))
    );

    let out = kernel.cli(&["history", "k1"]).await;
    let history = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines, ["user: hi", "assistant: echo: hi"], "{history}");
    let out = kernel.cli(&["history", "t1"]).await;
    assert!(text(&out.stdout).contains("assistant: echo: hello there"));
}

/// Reads a child's output as it comes.
struct Seen<R> {
    from: R,
    text: String,
    /// Where the last needle found ended: the next is looked for after it.
    checked: usize,
}

impl<R: tokio::io::AsyncRead + Unpin> Seen<R> {
    fn new(from: R) -> Self {
        Seen { from, text: String::new(), checked: 0 }
    }

    /// Reads until `needle` appears after the last needle found; panics at the deadline
    /// with everything read.
    async fn until(&mut self, needle: &str) {
        let start = self.checked;
        let found = tokio::time::timeout(DEADLINE, async {
            let mut buf = [0u8; 4096];
            loop {
                if let Some(at) = self.text[start..].find(needle) {
                    return Some(start + at + needle.len());
                }
                match self.from.read(&mut buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.text.push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
        })
        .await;
        match found {
            Ok(Some(end)) => self.checked = end,
            _ => panic!("no {needle:?} in {:?}", &self.text[start..]),
        }
    }
}

#[tokio::test]
async fn chat_has_commands_shows_what_others_put_in_and_switches_sessions() {
    let (kernel, _echo) = kernel_with_echo().await;
    let mut clock = kernel.example("clock-tool", "clock", &[]);
    clock.wait_line("clock-tool: ready as clock").await;
    let mut child = spawn_chat(&kernel, "c1");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut out = Seen::new(child.stdout.take().expect("stdout"));
    let mut err = Seen::new(child.stderr.take().expect("stderr"));
    err.until("chatting in session c1 as channel terminal-c1; /help lists the commands").await;

    stdin.write_all(b"/help\n").await.unwrap();
    out.until("/switch KEY").await;
    stdin.write_all(b"/tools\n").await.unwrap();
    out.until("clock_now").await;
    // Not a chat command: the echo provider's tool syntax goes to the agent, which
    // calls the tool and answers.
    stdin.write_all(b"/tool clock_now {}\n").await.unwrap();
    out.until("agent: ").await;
    stdin.write_all(b"hello\n").await.unwrap();
    out.until("agent: echo: hello\n").await;
    // The session's first reply (streamed: the chat follows the key before the session
    // exists) shows once.
    assert_eq!(out.text.matches("agent: tool clock_now returned").count(), 1, "{}", out.text);
    stdin.write_all(b"/history 2\n").await.unwrap();
    out.until("user: hello\nassistant: echo: hello").await;
    // The session followed, a reply shows as it is produced, on one line, once.
    stdin.write_all(b"stream me please\n").await.unwrap();
    out.until("agent: echo: stream me please\n").await;
    assert_eq!(out.text.matches("echo: stream me please").count(), 1, "{}", out.text);

    // What someone else puts into the session shows, and so does the agent's answer.
    let sent = kernel.cli(&["send", "c1", "from outside"]).await;
    assert!(sent.status.success(), "{}", text(&sent.stderr));
    out.until("<< from outside").await;
    out.until("agent: echo: from outside").await;

    // A second chat on the same session says how to pick another.
    let second = spawn_chat(&kernel, "c1");
    let refused = finish(second, &kernel).await;
    assert_eq!(refused.status.code(), Some(1));
    let stderr = text(&refused.stderr);
    assert!(stderr.contains("session c1 is open in another chat"), "{stderr}");
    assert!(stderr.contains("burrow chat OTHER-KEY"), "{stderr}");

    // /switch: the chat now talks in c2, and c1's channel is free again.
    stdin.write_all(b"/switch c2\n").await.unwrap();
    err.until("chatting in session c2 as channel terminal-c2").await;
    stdin.write_all(b"second\n").await.unwrap();
    out.until("agent: echo: second").await;
    let history = kernel.cli(&["history", "c2"]).await;
    assert_eq!(text(&history.stdout), "user: second\nassistant: echo: second\n");
    let caps = kernel
        .client()
        .await
        .request("kernel.capabilities", serde_json::json!({"type": "channel"}))
        .await
        .unwrap();
    let names: Vec<&str> = caps["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["config"]["channelId"].as_str())
        .collect();
    assert_eq!(names, ["terminal-c2"], "the chat holds only the channel it shows");

    stdin.write_all(b"/quit\n").await.unwrap();
    drop(stdin);
    let status = tokio::time::timeout(DEADLINE, child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{}", err.text);
    // The help says what the chat did.
    let help = text(&kernel.cli(&["chat", "--help"]).await.stdout);
    assert!(help.contains("`terminal-<KEY>`") && help.contains("/switch KEY"), "{help}");
}

#[tokio::test]
async fn ctrl_c_in_chat_cancels_the_reply_being_streamed_and_the_chat_goes_on() {
    // The provider is played by the test, which sends no heartbeats: a long timeout.
    let kernel = Kernel::start_with_config("[ipc]\nheartbeat_timeout_ms = 30000\n").await;
    let mut prov = kernel.hand_provider().await;
    let mut child = spawn_chat(&kernel, "k1");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut out = Seen::new(child.stdout.take().expect("stdout"));
    let mut err = Seen::new(child.stderr.take().expect("stderr"));
    err.until("chatting in session k1").await;
    // A first exchange creates the session, which the chat follows from then on.
    stdin.write_all(b"hi\n").await.unwrap();
    let c = prov.expect_method("provider.complete").await;
    prov.answer(&c["id"], serde_json::json!({"message": {"content": "hello"}})).await;
    out.until("agent: hello\n").await;

    stdin.write_all(b"tell me a long story\n").await.unwrap();
    let c = prov.expect_method("provider.complete").await;
    let delta =
        serde_json::json!({"id": c["id"], "chunk": {"type": "text_delta", "text": "Once upon"}});
    prov.send_value(&delta).await;
    out.until("agent: Once upon").await;
    // Ctrl-C: the run is cancelled, which stops the provider's call.
    let pid = nix::unistd::Pid::from_raw(child.id().expect("pid") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let stop = prov.expect_method("$/cancel").await;
    assert_eq!(stop["params"]["id"], c["id"], "{stop}");
    err.until("was cancelled").await;
    // The chat goes on: the next line gets its answer.
    stdin.write_all(b"still there?\n").await.unwrap();
    let c = prov.expect_method("provider.complete").await;
    // The provider saw what had been said before the cut.
    let said: Vec<&str> = c["params"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert!(said.contains(&"Once upon"), "{said:?}");
    prov.answer(&c["id"], serde_json::json!({"message": {"content": "yes"}})).await;
    out.until("agent: yes\n").await;
    stdin.write_all(b"/quit\n").await.unwrap();
    drop(stdin);
    let status = tokio::time::timeout(DEADLINE, child.wait()).await.expect("chat exits").unwrap();
    assert!(status.success(), "{status:?}");
}
