//! The supervisor with real processes: restarts, backoff and intensity, hung apps, start
//! timeouts, stopping with the kernel, no orphans after a SIGKILL, strays of an earlier
//! run, live control from the config and the CLI, captured logs (followed by the CLI and
//! over HTTP).

use std::time::{Duration, Instant};

use burrow_tests::{DEADLINE, Kernel, poll_until};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

const FAST: &str = "[ipc]\nheartbeat_interval_ms = 200\nheartbeat_timeout_ms = 1000\nshutdown_timeout_ms = 2000\n\
[supervisor]\nbackoff_initial_ms = 100\nbackoff_max_ms = 400\nmax_restarts = 3\nrestart_window_ms = 20000\n\
start_timeout_ms = 3000\nstop_timeout_ms = 1000\nstable_after_ms = 5000\n";

async fn managed(kernel: &Kernel, id: &str) -> Option<Value> {
    let apps = kernel.client().await.request("kernel.apps", json!({})).await.ok()?;
    apps["managed"].as_array()?.iter().find(|m| m["appId"] == id).cloned()
}

/// Waits until the managed app `id` satisfies `pred`; returns its entry.
async fn wait_managed(
    kernel: &Kernel,
    id: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if let Some(m) = managed(kernel, id).await {
            if pred(&m) {
                return m;
            }
            last = m;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{id} never became {what}; last: {last}; kernel log:\n{}", kernel.log());
}

fn pid_of(m: &Value) -> i32 {
    m["pid"].as_i64().expect("a pid") as i32
}

fn alive(pid: i32) -> bool {
    // Signal 0 checks existence; a zombie is not alive for our purposes.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

async fn gone(pid: i32) -> bool {
    poll_until(DEADLINE, || async move { !alive(pid) }).await
}

fn running(m: &Value) -> bool {
    m["state"] == "running" && m["pid"].is_u64()
}

#[tokio::test]
async fn a_killed_managed_app_comes_back_with_a_new_pid() {
    let kernel =
        Kernel::start_with_config(&format!("{FAST}[apps.greeter.run]\ncommand = \"hello\"\n"))
            .await;
    let first = wait_managed(&kernel, "greeter", "running", running).await;
    let pid = pid_of(&first);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let again =
        wait_managed(&kernel, "greeter", "running again", |m| running(m) && pid_of(m) != pid).await;
    assert_eq!(again["restarts"], 1);
    assert!(again["lastExit"].as_str().unwrap().contains("signal 9"), "{again}");
    let out = kernel.cli(&["apps"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("greeter")
            && text.contains("running")
            && text.contains(&pid_of(&again).to_string()),
        "{text}"
    );
    // It registered under its configured id: the app is connected and ready.
    assert!(kernel.app_ids().await.contains(&"greeter".to_owned()));
}

#[tokio::test]
async fn a_crash_loop_backs_off_and_ends_failed() {
    let config = format!(
        "{FAST}[apps.crasher.run]\ncommand = \"burrow-test-app\"\nargs = [\"crash\"]\nrestart = \"always\"\n"
    );
    let started = Instant::now();
    let kernel = Kernel::start_with_config(&config).await;
    let failed = wait_managed(&kernel, "crasher", "failed", |m| m["state"] == "failed").await;
    // Three restarts were allowed (backoff 100 + 200 + 400 ms), the fourth was refused.
    assert_eq!(failed["restarts"], 3);
    assert!(started.elapsed() >= Duration::from_millis(700), "restarts did not back off");
    assert!(kernel.logged("restart intensity exceeded").await, "{}", kernel.log());
    // Its output was captured, once per run, with the supervisor's word on each end.
    let noted = poll_until(DEADLINE, || async {
        let out = kernel.cli(&["logs", "crasher"]).await;
        String::from_utf8_lossy(&out.stdout).contains("[burrow] failed: ")
    })
    .await;
    let out = kernel.cli(&["logs", "crasher"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(noted, "{text}");
    assert_eq!(text.matches("test-app: crash pid").count(), 4, "{text}");
    assert_eq!(text.matches("[burrow] ended: ").count(), 4, "{text}");
    let why = "restart intensity reached (3 restarts within 20000 ms)";
    assert!(text.contains(why), "{text}");
    // `burrow apps` says why it failed.
    let out = kernel.cli(&["apps"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("crasher failed: ")).unwrap_or_default();
    assert!(line.contains(why) && line.ends_with("(burrow apps start to try again)"), "{text}");
    // An operator can try again: the start is answered once it has failed again, with
    // the reason, and exits 1.
    let out = kernel.cli(&["apps", "start", "crasher"]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("burrow: crasher failed: ") && stderr.contains(why), "{stderr}");
    let again = managed(&kernel, "crasher").await.unwrap();
    assert_eq!((again["state"].as_str(), again["restarts"].as_u64()), (Some("failed"), Some(6)));
}

#[tokio::test]
async fn an_app_whose_command_is_missing_says_so_everywhere() {
    let config = format!("{FAST}[apps.ghost.run]\ncommand = \"no-such-command-here\"\n");
    let kernel = Kernel::start_with_config(&config).await;
    wait_managed(&kernel, "ghost", "failed", |m| m["state"] == "failed").await;
    let why = "command \"no-such-command-here\" not found";
    let out = kernel.cli(&["apps"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.starts_with("ghost failed: ") && l.contains(why)), "{text}");
    let out = kernel.cli(&["apps", "start", "ghost"]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("burrow: ghost failed: ") && stderr.contains(why), "{stderr}");
    let noted = poll_until(DEADLINE, || async {
        let out = kernel.cli(&["logs", "ghost"]).await;
        String::from_utf8_lossy(&out.stdout).matches("[burrow] failed: command").count() == 2
    })
    .await;
    let out = kernel.cli(&["logs", "ghost"]).await;
    assert!(noted, "{}", String::from_utf8_lossy(&out.stdout));
}

#[tokio::test]
async fn a_hung_app_is_killed_and_restarted() {
    let config =
        format!("{FAST}[apps.hung.run]\ncommand = \"burrow-test-app\"\nargs = [\"hang\"]\n");
    let kernel = Kernel::start_with_config(&config).await;
    let first = wait_managed(&kernel, "hung", "running", running).await;
    let pid = pid_of(&first);
    // Silent past the heartbeat timeout: dropped, killed, started again.
    let again = wait_managed(&kernel, "hung", "restarted", |m| {
        m["restarts"] == 1 && m["pid"].is_u64() && pid_of(m) != pid
    })
    .await;
    assert!(gone(pid).await, "the hung process must be killed");
    let last_exit = again["lastExit"].as_str().unwrap_or_default();
    assert!(last_exit.contains("heartbeats"), "{again}");
}

#[tokio::test]
async fn an_app_that_never_registers_fails_its_start() {
    let config = "[ipc]\nheartbeat_interval_ms = 200\nheartbeat_timeout_ms = 1000\n[supervisor]\nstart_timeout_ms = 500\n\
        [apps.mute.run]\ncommand = \"sleep\"\nargs = [\"60\"]\nrestart = \"never\"\n";
    let kernel = Kernel::start_with_config(config).await;
    let failed = wait_managed(&kernel, "mute", "failed", |m| m["state"] == "failed").await;
    assert!(failed["lastExit"].as_str().unwrap().contains("did not register"), "{failed}");
    // Two operators start it at once: whichever comes second finds it starting, and both
    // hear that it failed again, not that it runs.
    let (a, b) = tokio::join!(
        kernel.cli(&["apps", "start", "mute"]),
        kernel.cli(&["apps", "start", "mute"])
    );
    for out in [a, b] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("mute failed: did not register"), "{stderr}");
    }
}

#[tokio::test]
async fn sigterm_stops_every_managed_app_even_one_that_ignores_it() {
    let config = format!(
        "{FAST}[apps.greeter.run]\ncommand = \"hello\"\n[apps.stubborn.run]\ncommand = \"burrow-test-app\"\nargs = [\"ignore-term\"]\n"
    );
    let mut kernel = Kernel::start_with_config(
        &config.replace("heartbeat_timeout_ms = 1000", "heartbeat_timeout_ms = 30000"),
    )
    .await;
    let greeter = pid_of(&wait_managed(&kernel, "greeter", "running", running).await);
    let stubborn = pid_of(&wait_managed(&kernel, "stubborn", "running", running).await);
    kernel.signal(Signal::SIGTERM);
    assert!(kernel.wait_exit(DEADLINE).await.success(), "{}", kernel.log());
    assert!(gone(greeter).await && gone(stubborn).await, "managed apps outlived the kernel");
    let log = kernel.log();
    assert!(log.contains("did not stop after SIGTERM: SIGKILL"), "{log}");
}

#[tokio::test]
async fn a_sigkilled_kernel_leaves_no_managed_process() {
    let config = format!(
        "{FAST}[apps.greeter.run]\ncommand = \"hello\"\n[apps.hung.run]\ncommand = \"burrow-test-app\"\nargs = [\"ignore-term\"]\n"
    );
    let mut kernel = Kernel::start_with_config(
        &config.replace("heartbeat_timeout_ms = 1000", "heartbeat_timeout_ms = 30000"),
    )
    .await;
    let a = pid_of(&wait_managed(&kernel, "greeter", "running", running).await);
    let b = pid_of(&wait_managed(&kernel, "hung", "running", running).await);
    kernel.signal(Signal::SIGKILL);
    kernel.wait_exit(DEADLINE).await;
    assert!(gone(a).await, "greeter survived its kernel");
    assert!(gone(b).await, "a SIGTERM-ignoring app survived its kernel");
}

#[tokio::test]
async fn a_restarted_kernel_ends_strays_of_the_previous_run() {
    let mut kernel = Kernel::start_with_config(FAST).await;
    kernel.signal(Signal::SIGTERM);
    kernel.wait_exit(DEADLINE).await;
    // What a crashed kernel leaves: records of processes that are still running. One is
    // a real stray; the other names a live pid whose start time differs (a recycled pid).
    let mut stray =
        tokio::process::Command::new("sleep").arg("300").kill_on_drop(true).spawn().unwrap();
    let stray_pid = stray.id().unwrap();
    let start_time = |pid: u32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        stat[stat.rfind(')').unwrap() + 1..].split_whitespace().nth(19).unwrap().parse().unwrap()
    };
    let me = std::process::id();
    let records = json!([
        {"appId": "old", "pid": stray_pid, "startTime": start_time(stray_pid)},
        {"appId": "recycled", "pid": me, "startTime": start_time(me) + 7}
    ]);
    std::fs::write(kernel.state_dir.join("managed.json"), records.to_string()).unwrap();
    kernel.restart().await;
    let ended = tokio::time::timeout(DEADLINE, stray.wait())
        .await
        .expect("the stray was not ended")
        .unwrap();
    assert!(!ended.success());
    assert!(kernel.logged("left by an earlier kernel").await, "{}", kernel.log());
    // And the recycled pid — this test process — is still here to tell.
}

#[tokio::test]
async fn config_edits_and_the_cli_start_stop_and_restart_apps() {
    let kernel = Kernel::start_with_config(FAST).await;
    let path = kernel.dir().join("burrow.toml");
    let edit = |text: String| std::fs::write(&path, burrow_tests::bundled_off(&text)).unwrap();
    edit(format!("{FAST}[apps.greeter.run]\ncommand = \"hello\"\n"));
    let first =
        pid_of(&wait_managed(&kernel, "greeter", "started by a config edit", running).await);

    edit(format!(
        "{FAST}[apps.greeter.run]\ncommand = \"hello\"\nenv = {{ GREETING = \"changed\" }}\n"
    ));
    let second = pid_of(
        &wait_managed(&kernel, "greeter", "restarted by a config edit", |m| {
            running(m) && pid_of(m) != first
        })
        .await,
    );
    assert!(gone(first).await);

    // Each control is answered once it has taken effect.
    let out = kernel.cli(&["apps", "stop", "greeter"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "greeter: stopped\n");
    assert_eq!(managed(&kernel, "greeter").await.unwrap()["state"], "stopped");
    assert!(gone(second).await);
    let out = kernel.cli(&["apps", "start", "greeter"]).await;
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "greeter: running\n");
    let now = managed(&kernel, "greeter").await.unwrap();
    assert!(running(&now), "{now}");
    let third = pid_of(&now);
    let out = kernel.cli(&["apps", "restart", "greeter"]).await;
    assert!(out.status.success());
    let now = managed(&kernel, "greeter").await.unwrap();
    assert!(running(&now) && pid_of(&now) != third, "{now}");
    let out = kernel.cli(&["apps", "stop", "nobody"]).await;
    assert_eq!(out.status.code(), Some(1));

    let out = kernel.cli(&["logs", "greeter"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("hello: ready as greeter"));

    edit(FAST.to_owned());
    let removed =
        poll_until(DEADLINE, || async { managed(&kernel, "greeter").await.is_none() }).await;
    assert!(removed, "removing the run table stops and forgets the app");
}

#[tokio::test]
async fn logs_follow_new_lines() {
    let kernel =
        Kernel::start_with_config(&format!("{FAST}[apps.greeter.run]\ncommand = \"hello\"\n"))
            .await;
    wait_managed(&kernel, "greeter", "running", running).await;
    let mut follower = tokio::process::Command::new(burrow_tests::bin("burrow"))
        .args(["logs", "greeter", "-f", "--lines", "0"])
        .env("BURROW_SOCKET", &kernel.socket)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    // Every "ready" line the follower prints, as it prints it.
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("hello: ready as greeter") && tx.send(()).is_err() {
                return;
            }
        }
    });
    // Make the app print again: restart it. The follower must be attached before the new
    // line is written: restart until the follower has seen a line (each prints one).
    let mut got = false;
    for _ in 0..5 {
        kernel.cli(&["apps", "restart", "greeter"]).await;
        if tokio::time::timeout(Duration::from_secs(3), seen.recv())
            .await
            .is_ok_and(|l| l.is_some())
        {
            got = true;
            break;
        }
    }
    assert!(got, "logs -f printed no new line");
    // It stays connected past the kernel's heartbeat timeout (1 s here): the time that
    // passes is what is tested.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(follower.try_wait().unwrap().is_none(), "logs -f quit:\n{}", kernel.log());
    kernel.cli(&["apps", "restart", "greeter"]).await;
    let again = tokio::time::timeout(DEADLINE, seen.recv()).await;
    assert!(again.is_ok_and(|l| l.is_some()), "logs -f stopped following:\n{}", kernel.log());
}

/// One server-sent event at a time from a response's body: `(event, data as JSON)`.
struct SseReader {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl SseReader {
    /// The next event (comments skipped), within `DEADLINE`.
    async fn next(&mut self) -> (String, Value) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let frame = String::from_utf8_lossy(&self.buffer[..end]).into_owned();
                self.buffer.drain(..end + 2);
                let field = |name: &str| {
                    frame.lines().find_map(|l| l.strip_prefix(name)).map(str::to_owned)
                };
                if let Some(data) = field("data: ") {
                    let data = serde_json::from_str(&data).expect("data is JSON");
                    return (field("event: ").unwrap_or_default(), data);
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .expect("an event in time")
                .expect("the stream failed")
                .expect("the stream ended");
            self.buffer.extend_from_slice(&chunk);
        }
    }
}

#[tokio::test]
async fn an_apps_log_is_followed_over_http() {
    let config = format!("{FAST}[apps.greeter.run]\ncommand = \"hello\"\n");
    let kernel = Kernel::start_with(&config, &["--http", "127.0.0.1:0"]).await;
    wait_managed(&kernel, "greeter", "running", running).await;
    let ready = "hello: ready as greeter";
    // The first run's line is in the log before the stream opens.
    let client = kernel.client().await;
    let written = poll_until(DEADLINE, || async {
        let tail = client.request("supervisor.tail", json!({"appId": "greeter", "lines": 50}));
        tail.await.is_ok_and(|t| t["lines"].to_string().contains(ready))
    })
    .await;
    assert!(written, "greeter never said it was ready:\n{}", kernel.log());

    // No overall timeout: the stream lasts; each event has its deadline.
    let http = reqwest::Client::new();
    let base = format!("http://{}", kernel.endpoint("http").await);
    let opened = http.get(format!("{base}/logs/greeter?lines=50")).send();
    let response = tokio::time::timeout(DEADLINE, opened).await.expect("answered").unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut events = SseReader { response, buffer: Vec::new() };
    let (kind, tail) = events.next().await;
    assert_eq!(kind, "tail", "{tail}");
    let lines: Vec<&str> =
        tail["lines"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(lines.iter().filter(|l| l.contains(ready)).count(), 1, "{lines:?}");

    // A restart: the new process's line comes on the open stream.
    client.request("supervisor.restart", json!({"appId": "greeter"})).await.unwrap();
    let mut seen = Vec::new();
    loop {
        assert!(seen.len() < 100, "no new ready line among {seen:?}");
        let (kind, event) = events.next().await;
        assert!(["line", "lagged"].contains(&kind.as_str()), "{kind}: {event}");
        if event["line"].as_str().is_some_and(|l| l.contains(ready)) {
            break;
        }
        seen.push(event);
    }

    // An app the kernel does not know, an id that is no app id, a count that is no number.
    for (path, status, code) in [
        ("/logs/ghost", 404, "NOT_FOUND"),
        ("/logs/Not%20Valid", 400, "INVALID_PARAMS"),
        ("/logs/greeter?lines=all", 400, "INVALID_PARAMS"),
    ] {
        let answer = burrow_tests::http_client().get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(answer.status(), status, "{path}");
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["code"], code, "{path}: {body}");
    }
}
