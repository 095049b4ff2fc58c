//! MCP servers as Burrow tools, through the real `burrow-mcp` app the kernel manages,
//! against a server nobody on the team wrote: `@modelcontextprotocol/server-everything`
//! from the npm registry (pinned in `tests/npm`, installed by `scripts/test-deps`). A
//! Burrow agent (the bundled echo provider's `/tool` lines) calls its tools; results map
//! (text, images, structured content); deadlines and cancels reach it; its crash is
//! survived (reconnected, tools registered again); a server that never answers
//! `initialize` and a tool name another app holds show in `mcp.status` with the reason.
//! And a streamable-HTTP server built on the Python `mcp` package (`tests/mcp`), with a
//! bearer header from the configuration, on both lines of the package: 2.x
//! (`target/venv`) and 1.x (`target/venv-mcp1`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use burrow_tests::{DEADLINE, Kernel, RawConn, Rpc};
use serde_json::{Value, json};

fn everything() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the repository");
    let bin = repo.join("tests/npm/node_modules/.bin/mcp-server-everything");
    assert!(bin.exists(), "no {}: run scripts/test-deps (scripts/test does)", bin.display());
    bin
}

/// A kernel with the echo provider and the bridge mounting server-everything (and
/// `extra` servers), JSON-RPC on TCP.
async fn kernel(extra: &str) -> Kernel {
    let config = format!(
        "[ipc]\nheartbeat_timeout_ms = 60000\ncall_timeout_ms = 3000\n\
         [sessions]\nprovider_wait_ms = 60000\ntool_wait_ms = 0\n\
         [apps.echo-provider.run]\nenv = {{ ECHO_WORD_DELAY_MS = \"0\" }}\n\
         [apps.mcp]\ninit_timeout_ms = 5000\n\
         [apps.mcp.run]\ncommand = \"burrow-mcp\"\nenv = {{ BURROW_MCP_TEST = \"from-the-bridge\", MCP_HTTP_TOKEN = \"burrow-test\" }}\n\
         [apps.mcp.servers.everything]\ncommand = {everything:?}\n\
         tools = [\"echo\", \"get-sum\", \"get-tiny-image\", \"get-structured-content\", \"trigger-long-running-operation\", \"get-env\"]\n\
         env = {{ PASSED_ON = \"${{BURROW_MCP_TEST}}\" }}\n{extra}",
        everything = everything().display().to_string(),
    );
    Kernel::start_with(&config, &["--rpc-tcp", "127.0.0.1:0"]).await
}

/// `mcp.status`'s entry for `server`, once `ready(entry)` holds (within [`DEADLINE`]).
async fn status_when(rpc: &mut Rpc, server: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + DEADLINE * 2;
    loop {
        let answer = rpc.call("mcp.status", json!({})).await;
        let entry = answer["result"]["servers"]
            .as_array()
            .and_then(|all| all.iter().find(|s| s["name"] == server).cloned());
        if let Some(entry) = entry.filter(|e| ready(e)) {
            return entry;
        }
        assert!(tokio::time::Instant::now() < deadline, "{server} never got there: {answer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn is_ready(entry: &Value) -> bool {
    entry["state"] == "ready"
}

#[tokio::test]
async fn an_mcp_servers_tools_are_burrow_tools_an_agent_calls() {
    let kernel = kernel("").await;
    let mut rpc = Rpc::connect(kernel.endpoint("rpc_tcp").await).await;
    let ready = status_when(&mut rpc, "everything", is_ready).await;
    assert_eq!(
        (ready["transport"].clone(), ready["tools"].clone()),
        (json!("stdio"), json!(6)),
        "{ready}"
    );
    assert!(ready["offered"].as_array().unwrap().contains(&json!("everything__echo")), "{ready}");
    // The command line shows the same.
    let out = kernel.cli(&["mcp", "status"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("everything\tstdio\tready, 6 tools"), "{text}");
    let out = kernel.cli(&["mcp", "status", "--json"]).await;
    let shown: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(shown["servers"][0]["name"], "everything", "{shown}");

    // An agent calls one.
    let prompt = r#"/tool everything__echo {"message": "hello, den"}"#;
    let run = rpc.ok("session/create", json!({"prompt": prompt, "session_events": false})).await;
    assert_eq!(run["text"], "tool everything__echo returned: Echo: hello, den", "{run}");

    // Results map: text, an image block, structured content; ${VAR} reached the server.
    let app = kernel.registered_client("caller").await;
    let sum = app.call_tool("everything__get-sum", json!({"a": 2, "b": 3})).await.unwrap();
    assert!(sum.content.as_str().unwrap().contains('5'), "{sum:?}");
    let image = app.call_tool("everything__get-tiny-image", json!({})).await.unwrap();
    let blocks = image.content.as_array().expect("blocks");
    assert!(
        blocks.iter().any(|b| b["type"] == "image" && b["mimeType"] == "image/png"),
        "{blocks:?}"
    );
    let raw = app
        .request("tool.call", json!({"name": "everything__get-structured-content", "arguments": {"location": "Chicago"}}))
        .await
        .unwrap();
    assert!(raw["structuredContent"].is_object(), "{raw}");
    let env = app.call_tool("everything__get-env", json!({})).await.unwrap();
    assert!(env.content.as_str().unwrap().contains("from-the-bridge"), "{env:?}");

    // A call longer than its deadline is answered TIMEOUT; the server goes on serving.
    let slow = json!({"name": "everything__trigger-long-running-operation", "arguments": {"duration": 20, "steps": 20}});
    let err = app.request("tool.call", slow.clone()).await.unwrap_err();
    assert_eq!(err.code(), Some(burrow_sdk::ErrorCode::Timeout), "{err:?}");
    // A caller's cancel ends the call at once, with the bridge's answer.
    let mut caller = RawConn::app(&kernel.socket, json!({"id": "raw", "version": "1.0.0"})).await;
    let id = caller.send_call("tool.call", slow).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    caller.send_value(&json!({"method": "$/cancel", "params": {"id": id}})).await;
    let answer = caller.answer_to(id).await;
    assert_eq!(answer["error"]["data"]["reason"], "cancelled", "{answer}");
    let again = app.call_tool("everything__echo", json!({"message": "still"})).await.unwrap();
    assert_eq!(again.content, "Echo: still");
}

#[tokio::test]
async fn a_crashed_server_comes_back_and_broken_ones_say_why() {
    // A server that never answers `initialize`, and another app holding a name first.
    let silent = "[apps.mcp.servers.silent]\ncommand = \"sleep\"\nargs = [\"600\"]\n";
    let kernel = kernel(silent).await;
    let mut squatter = RawConn::app(
        &kernel.socket,
        json!({"id": "squatter", "version": "1.0.0", "capabilities": {"tools": ["*"]}}),
    )
    .await;
    let granted = squatter.register_tool("everything__get-env", None).await;
    assert_eq!(granted["result"]["granted"], true, "{granted}");
    let mut rpc = Rpc::connect(kernel.endpoint("rpc_tcp").await).await;
    let ready = status_when(&mut rpc, "everything", is_ready).await;
    assert_eq!(ready["tools"], 5, "{ready}");
    let refused = &ready["refused"][0];
    assert_eq!(refused["tool"], "get-env", "{ready}");
    assert!(refused["reason"].as_str().unwrap().contains("everything__get-env"), "{ready}");

    // The server dies; its tools go, then come back with it.
    let app = kernel.registered_client("caller").await;
    let pid = server_pid(&kernel, "mcp-server-everything");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL)
        .unwrap();
    let failed = status_when(&mut rpc, "everything", |e| e["state"] != "ready").await;
    assert!(failed["state"] == "failed" || failed["state"] == "connecting", "{failed}");
    let back = status_when(&mut rpc, "everything", is_ready).await;
    assert_eq!(back["tools"], 5, "{back}");
    let echo = app.call_tool("everything__echo", json!({"message": "back"})).await.unwrap();
    assert_eq!(echo.content, "Echo: back");

    let silent = status_when(&mut rpc, "silent", |e| e["state"] == "failed").await;
    assert!(silent["reason"].as_str().unwrap().contains("initialize"), "{silent}");
    assert!(silent["retry_at_ms"].as_u64().is_some(), "{silent}");

    // The configuration changes while the kernel runs: one tool left, the silent server
    // gone.
    let file = kernel.dir().join("burrow.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let start = text.find("tools = [\"echo\"").expect("the allowlist");
    let end = start + text[start..].find('\n').unwrap();
    let mut text = format!("{}tools = [\"echo\"]{}", &text[..start], &text[end..]);
    let silent_at = text.find("[apps.mcp.servers.silent]").unwrap();
    let silent_end = silent_at + text[silent_at..].find("args = [\"600\"]\n").unwrap() + 14;
    text.replace_range(silent_at..silent_end, "");
    let tmp = kernel.dir().join("burrow.toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    let narrowed = status_when(&mut rpc, "everything", |e| is_ready(e) && e["tools"] == 1).await;
    assert_eq!(narrowed["offered"], json!(["everything__echo"]), "{narrowed}");
    let gone = app.call_tool("everything__get-sum", json!({"a": 1, "b": 1})).await.unwrap_err();
    assert_eq!(gone.code(), Some(burrow_sdk::ErrorCode::NotFound), "{gone:?}");
    let status = rpc.ok("mcp.status", json!({})).await;
    assert!(!status.to_string().contains("silent"), "removed: {status}");
}

/// The pid of the kernel's grandchild whose command line holds `needle` (the bridge's
/// server), within [`DEADLINE`].
fn server_pid(kernel: &Kernel, needle: &str) -> i32 {
    let kernel_pid = kernel.pid();
    // Every thread's children: a process's are listed under the thread that forked it.
    let children = |pid: i32| -> Vec<i32> {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten();
        tasks
            .flatten()
            .flat_map(|task| {
                std::fs::read_to_string(task.path().join("children"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect::<Vec<i32>>()
            })
            .collect()
    };
    let cmdline =
        |pid: i32| std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let mut found = None;
    let deadline = std::time::Instant::now() + DEADLINE;
    while found.is_none() && std::time::Instant::now() < deadline {
        let mut queue = children(kernel_pid);
        while let Some(pid) = queue.pop() {
            if cmdline(pid).contains(needle) {
                found = Some(pid);
                break;
            }
            queue.extend(children(pid));
        }
    }
    found.unwrap_or_else(|| panic!("no process {needle:?} under the kernel"))
}

/// The fixture `tests/mcp/python_server.py` on the Python `mcp` package of the virtual
/// environment `target/<venv>`: over streamable HTTP on a free loopback port, or stdio.
struct PythonServer {
    python: PathBuf,
    script: PathBuf,
    port: u16,
}

impl PythonServer {
    fn new(venv: &str) -> Self {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the repository");
        let python = repo.join("target").join(venv).join("bin/python");
        assert!(python.exists(), "no {}: run scripts/test-deps", python.display());
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self { python, script: repo.join("tests/mcp/python_server.py"), port }
    }

    /// Starts it; it is killed when the child is dropped.
    fn start(&self) -> tokio::process::Child {
        tokio::process::Command::new(&self.python)
            .arg(&self.script)
            .arg(self.port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the Python MCP server")
    }

    /// A kernel whose bridge mounts it as `py` over stdio, speaking `protocol_version`:
    /// `grow` adds a tool, and the bridge, told so (there is no polling on stdio), offers
    /// it.
    async fn grows_over_stdio(&self, protocol_version: &str) {
        let py = format!(
            "[apps.mcp.servers.py]
command = {python:?}
args = [{script:?}, \"--stdio\"]
",
            python = self.python.display().to_string(),
            script = self.script.display().to_string(),
        );
        let kernel = kernel(&py).await;
        let mut rpc = Rpc::connect(kernel.endpoint("rpc_tcp").await).await;
        let ready = status_when(&mut rpc, "py", is_ready).await;
        let shown = (&ready["transport"], &ready["tools"], &ready["protocol_version"]);
        assert_eq!(shown, (&json!("stdio"), &json!(3), &json!(protocol_version)), "{ready}");
        let app = kernel.registered_client("caller").await;
        let grown = app.call_tool("py__grow", json!({})).await.unwrap();
        assert_eq!(grown.content, "grown");
        let more =
            |e: &Value| e["offered"].as_array().is_some_and(|o| o.contains(&json!("py__extra")));
        status_when(&mut rpc, "py", more).await;
        assert_eq!(app.call_tool("py__extra", json!({})).await.unwrap().content, "extra");
    }

    /// A kernel whose bridge mounts it as `py`, with the bearer header from a `${VAR}`;
    /// once it is ready (over HTTP, its tools, speaking `protocol_version`, as
    /// `burrow mcp status` shows too), an agent calls one of its tools and an app
    /// another.
    async fn mounted(&self, protocol_version: &str) -> (Kernel, Rpc, burrow_sdk::Client) {
        let py = format!(
            "[apps.mcp.servers.py]\nurl = \"http://127.0.0.1:{port}/mcp\"\n\
             headers = {{ Authorization = \"Bearer ${{MCP_HTTP_TOKEN}}\" }}\n",
            port = self.port,
        );
        let kernel = kernel(&py).await;
        let mut rpc = Rpc::connect(kernel.endpoint("rpc_tcp").await).await;
        let ready = status_when(&mut rpc, "py", is_ready).await;
        let shown = (&ready["transport"], &ready["tools"], &ready["protocol_version"]);
        assert_eq!(shown, (&json!("http"), &json!(3), &json!(protocol_version)), "{ready}");
        let out = kernel.cli(&["mcp", "status"]).await;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = format!("py\thttp\tready, 3 tools, MCP {protocol_version}\n");
        assert!(out.status.success() && text.contains(&line), "{text}");

        let prompt = r#"/tool py__add {"a": 2, "b": 40}"#;
        let run =
            rpc.ok("session/create", json!({"prompt": prompt, "session_events": false})).await;
        assert_eq!(run["text"], "tool py__add returned: 2 + 40 = 42", "{run}");
        let app = kernel.registered_client("caller").await;
        let loud = app.call_tool("py__shout", json!({"text": "burrow"})).await.unwrap();
        assert_eq!(loud.content, "BURROW!");
        (kernel, rpc, app)
    }
}

#[tokio::test]
async fn a_streamable_http_server_on_the_python_sdk_is_mounted_with_its_header() {
    // The 2.x line (mcp 2.3) answers the bridge's `server/discover`: the 2026-07-28
    // revision.
    let server = PythonServer::new("venv");
    let mut running = server.start();
    let (_kernel, mut rpc, app) = server.mounted("2026-07-28").await;

    // The server goes away: noticed, its tools withdrawn; back, they are offered again.
    running.kill().await.unwrap();
    let gone = status_when(&mut rpc, "py", |e| e["state"] == "failed").await;
    assert_eq!(gone["offered"], json!([]), "{gone}");
    let err = app.call_tool("py__shout", json!({"text": "x"})).await.unwrap_err();
    assert_eq!(err.code(), Some(burrow_sdk::ErrorCode::NotFound), "{err:?}");
    let _running = server.start();
    status_when(&mut rpc, "py", is_ready).await;
    let loud = app.call_tool("py__shout", json!({"text": "again"})).await.unwrap();
    assert_eq!(loud.content, "AGAIN!");
}

#[tokio::test]
async fn a_streamable_http_server_on_the_python_sdks_1x_line_is_mounted() {
    // The 1.x line (mcp 1.30, its last) knows no `server/discover`: the bridge falls back
    // to `initialize`, answered with 2025-11-25.
    let server = PythonServer::new("venv-mcp1");
    let _running = server.start();
    server.mounted("2025-11-25").await;
}

#[tokio::test]
async fn tool_list_changes_reach_the_bridge_over_stdio_in_both_revisions() {
    // 2.x: announced on the bridge's `subscriptions/listen` stream.
    PythonServer::new("venv").grows_over_stdio("2026-07-28").await;
    // 1.x: announced on the session.
    PythonServer::new("venv-mcp1").grows_over_stdio("2025-11-25").await;
}

#[tokio::test]
async fn a_misbehaving_servers_calls_fail_clearly_and_its_tool_list_changes_apply() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the repository");
    let python = repo.join("target/venv/bin/python");
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("cancelled.jsonl");
    let odd = format!(
        "[apps.mcp.servers.odd]\ncommand = {python:?}\nargs = [{fixture:?}]\nenv = {{ MCP_LOG = {log:?} }}\n",
        python = python.display().to_string(),
        fixture = repo.join("tests/mcp/misbehaving.py").display().to_string(),
        log = log.display().to_string(),
    );
    let kernel = kernel(&odd).await;
    let mut rpc = Rpc::connect(kernel.endpoint("rpc_tcp").await).await;
    let ready = status_when(&mut rpc, "odd", is_ready).await;
    assert_eq!(ready["tools"], 5, "{ready}");
    let app = kernel.registered_client("caller").await;
    assert_eq!(app.call_tool("odd__ok", json!({})).await.unwrap().content, "fine");

    // A result that is not a tool result is an error that says so; the server goes on.
    let err = app.call_tool("odd__malformed", json!({})).await.unwrap_err();
    assert_eq!(err.code(), Some(burrow_sdk::ErrorCode::InternalError), "{err:?}");
    assert!(err.to_string().contains("not a tool result"), "{err}");
    assert_eq!(app.call_tool("odd__ok", json!({})).await.unwrap().content, "fine");

    // A call past its deadline is cancelled at the server.
    let err = app.call_tool("odd__hang", json!({})).await.unwrap_err();
    assert_eq!(err.code(), Some(burrow_sdk::ErrorCode::Timeout), "{err:?}");
    let told = burrow_tests::poll_until(DEADLINE, || async {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("requestId"))
    });
    assert!(told.await, "the server got no notifications/cancelled");

    // The server announces a new tool: it is offered.
    assert_eq!(app.call_tool("odd__grow", json!({})).await.unwrap().content, "grown");
    let grown = status_when(&mut rpc, "odd", |e| e["tools"] == 6).await;
    assert!(grown["offered"].as_array().unwrap().contains(&json!("odd__extra")), "{grown}");
    assert_eq!(app.call_tool("odd__extra", json!({})).await.unwrap().content, "fine");

    // It dies mid-call: the call fails at once, clearly, and the server comes back with
    // the tools it lists then.
    let asked = std::time::Instant::now();
    let err = app.call_tool("odd__crash", json!({})).await.unwrap_err();
    assert!(asked.elapsed() < Duration::from_secs(3), "not the deadline: {:?}", asked.elapsed());
    assert_eq!(err.code(), Some(burrow_sdk::ErrorCode::ConnectionClosed), "{err:?}");
    let back = status_when(&mut rpc, "odd", |e| is_ready(e) && e["tools"] == 5).await;
    assert!(!back["offered"].as_array().unwrap().contains(&json!("odd__extra")), "{back}");
    assert_eq!(app.call_tool("odd__ok", json!({})).await.unwrap().content, "fine");
}
