//! The example apps as real processes against the real kernel: a tool app, an
//! intercepting hook app, a config-watching app.

use burrow_tests::{DEADLINE, FAST_CONFIG, Kernel, RawConn};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

async fn caller(kernel: &Kernel) -> RawConn {
    RawConn::app(&kernel.socket, json!({"id": "caller", "version": "1.0.0"})).await
}

#[tokio::test]
async fn the_tool_app_serves_calls_concurrently_and_its_death_is_a_clean_error() {
    // The raw caller does not heartbeat: give it time to wait for slow calls.
    let kernel = Kernel::start_with_config("[ipc]\nheartbeat_timeout_ms = 20000\n").await;
    let mut clock = kernel.example("clock-tool", "clock", &[]);
    clock.wait_line("clock-tool: ready as clock").await;
    let mut c = caller(&kernel).await;

    let resp = c.call("tool.call", json!({"name": "echo", "arguments": {"say": "hi"}})).await;
    assert_eq!(resp["result"]["content"], json!({"say": "hi"}));
    let resp = c.call("tool.call", json!({"name": "clock_now"})).await;
    assert!(resp["result"]["content"]["unixMs"].as_u64().unwrap() > 1_600_000_000_000);
    let resp = c.call("tool.call", json!({"name": "fail", "arguments": {"message": "boom"}})).await;
    assert!(resp["error"]["message"].as_str().unwrap().contains("boom"), "{resp}");

    // A slow call does not hold up a fast one to the same app.
    let slow = c
        .send_call(
            "tool.call",
            json!({"name": "slow_echo", "arguments": {"ms": 1500, "tag": "slow"}}),
        )
        .await;
    let fast =
        c.send_call("tool.call", json!({"name": "echo", "arguments": {"tag": "fast"}})).await;
    let first = c.expect("an answer", |v| v["id"] == slow || v["id"] == fast).await;
    assert_eq!(first["id"], fast, "the fast call must come back first: {first}");
    assert_eq!(c.answer_to(slow).await["result"]["content"]["tag"], "slow");

    // The provider is killed mid-call: the caller gets CONNECTION_CLOSED, the tool is gone.
    // An observer tells when the call is on its way to the app (`before_tool_call` is
    // emitted just before `tool.invoke` is sent).
    let mut obs = RawConn::app(
        &kernel.socket,
        json!({"id": "obs", "version": "1.0.0", "capabilities": {"hooks": {"subscribe": ["*"]}}}),
    )
    .await;
    obs.call("hook.subscribe", json!({"events": ["before_tool_call"]})).await;
    let pending =
        c.send_call("tool.call", json!({"name": "slow_echo", "arguments": {"ms": 30000}})).await;
    obs.expect_event("before_tool_call").await;
    clock.signal(Signal::SIGKILL);
    let resp = c.answer_to(pending).await;
    assert_eq!(resp["error"]["code"], "CONNECTION_CLOSED", "{resp}");
    assert!(c.wait_tool_gone("echo").await);
}

#[tokio::test]
async fn the_redactor_modifies_blocks_and_observes() {
    let kernel = Kernel::start().await;
    let mut clock = kernel.example("clock-tool", "clock", &[]);
    let mut redactor = kernel.example("redactor", "redactor", &["--block", "fail"]);
    clock.wait_line("clock-tool: ready as clock").await;
    redactor.wait_line("redactor: ready as redactor").await;
    let mut c = caller(&kernel).await;

    let resp = c
        .call(
            "tool.call",
            json!({"name": "echo", "arguments": {"user": "ann", "password": "hunter2"}}),
        )
        .await;
    assert_eq!(resp["result"]["content"], json!({"user": "ann", "password": "[redacted]"}));
    redactor.wait_line("redactor: saw after_tool_call echo").await;

    let resp = c.call("tool.call", json!({"name": "fail", "arguments": {"message": "x"}})).await;
    assert_eq!(resp["error"]["code"], "FORBIDDEN");
    assert_eq!(
        resp["error"]["data"],
        json!({"blockedBy": "redactor", "reason": "redactor blocks fail"})
    );

    let hooks = kernel.client().await.request("kernel.hooks", json!({})).await.unwrap();
    assert_eq!(hooks["interceptors"][0]["appId"], "redactor");
    assert_eq!(hooks["interceptors"][0]["priority"], 10);

    // Without the redactor, calls go through unchanged.
    redactor.signal(Signal::SIGTERM);
    redactor.wait_line("redactor: leaving").await;
    assert!(redactor.wait_exit(DEADLINE).await.success());
    let resp =
        c.call("tool.call", json!({"name": "echo", "arguments": {"password": "hunter2"}})).await;
    assert_eq!(resp["result"]["content"]["password"], "hunter2");
}

#[tokio::test]
async fn the_config_watcher_sees_edits_and_survives_a_broken_file() {
    let config = format!("{FAST_CONFIG}[apps.watcher]\ncolor = \"red\"\n");
    let kernel = Kernel::start_with_config(&config).await;
    let mut app = kernel.example("config-watch", "watcher", &[]);
    app.wait_line("config-watch: ready as watcher").await;
    app.wait_line(r#"config-watch: value {"color":"red"}"#).await;
    let path = kernel.dir().join("burrow.toml");

    let edit = |text: &str| std::fs::write(&path, burrow_tests::bundled_off(text)).unwrap();
    edit(&format!("{FAST_CONFIG}[apps.watcher]\ncolor = \"blue\"\n"));
    app.wait_line(r#"config-watch: changed apps.watcher.color "red" -> "blue""#).await;

    std::fs::write(&path, "[apps.watcher\ncolor = ").unwrap();
    let logged =
        burrow_tests::poll_until(DEADLINE, || async { kernel.log().contains("invalid") }).await;
    assert!(logged, "{}", kernel.log());

    edit(&format!("{FAST_CONFIG}[apps.watcher]\ncolor = \"green\"\n"));
    app.wait_line(r#"config-watch: changed apps.watcher.color "blue" -> "green""#).await;
    let current: Value = kernel.client().await.request("kernel.info", json!({})).await.unwrap();
    assert_eq!(current["apps"], 1);
}
