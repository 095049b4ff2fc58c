//! Stopping: SIGTERM reaches every app as `app.shutdown`; a second kernel never steals a
//! live socket.

use burrow_tests::{DEADLINE, Kernel};
use nix::sys::signal::Signal;
use serde_json::json;

#[tokio::test]
async fn sigterm_sends_app_shutdown_to_every_app_and_exits_zero() {
    let mut kernel = Kernel::start().await;
    let mut a = kernel.hello("alpha").await;
    let mut b = kernel.hello("beta").await;
    a.wait_line("hello: ready as alpha").await;
    b.wait_line("hello: ready as beta").await;
    // A raw client that registered and will answer app.shutdown by hand.
    let mut raw = kernel.raw().await;
    raw.register("gamma", None).await;

    kernel.signal(Signal::SIGTERM);
    let req = raw.recv_json().await;
    assert_eq!(req["method"], "app.shutdown", "{req}");
    assert!(req["params"]["timeout"].is_u64());
    let id = req["id"].clone();
    raw.send_value(&json!({"id": id, "result": {"ok": true}})).await;

    a.wait_line("hello: kernel asked us to shut down").await;
    b.wait_line("hello: kernel asked us to shut down").await;
    assert!(a.wait_exit(DEADLINE).await.success());
    assert!(b.wait_exit(DEADLINE).await.success());
    let status = kernel.wait_exit(DEADLINE).await;
    assert!(status.success(), "kernel exit {status:?}; log:\n{}", kernel.log());
    assert!(!kernel.socket.exists(), "socket file removed on a clean stop");
}

#[tokio::test]
async fn a_second_kernel_on_a_live_socket_exits_non_zero_and_steals_nothing() {
    let kernel = Kernel::start().await;
    let mut second = kernel.spawn_again(&[]);
    let status =
        tokio::time::timeout(DEADLINE, second.wait()).await.expect("second kernel exits").unwrap();
    assert!(!status.success());
    assert!(kernel.logged("another kernel is already listening").await, "{}", kernel.log());
    // The first one still serves.
    kernel.client().await.kernel_info().await.expect("first kernel still serves");
}

#[tokio::test]
async fn an_app_that_does_not_answer_app_shutdown_does_not_hold_the_kernel() {
    let mut kernel = Kernel::start().await; // shutdown_timeout_ms = 2000
    let mut raw = kernel.raw().await;
    raw.register("mute", None).await;
    kernel.signal(Signal::SIGTERM);
    let req = raw.recv_json().await;
    assert_eq!(req["method"], "app.shutdown");
    // Never answer: the kernel still stops within its shutdown timeout.
    let status = kernel.wait_exit(DEADLINE).await;
    assert!(status.success());
}

#[tokio::test]
async fn ctrl_c_stops_the_kernel_like_sigterm() {
    let mut kernel = Kernel::start().await;
    let mut app = kernel.hello("interrupted").await;
    app.wait_line("hello: ready as interrupted").await;
    kernel.signal(Signal::SIGINT);
    app.wait_line("hello: kernel asked us to shut down").await;
    assert!(kernel.wait_exit(DEADLINE).await.success());
    assert!(app.wait_exit(DEADLINE).await.success());
}

#[tokio::test]
async fn the_hello_app_leaves_cleanly_on_ctrl_c() {
    let kernel = Kernel::start().await;
    let mut app = kernel.hello("polite").await;
    app.wait_line("hello: ready as polite").await;
    app.signal(Signal::SIGINT);
    app.wait_line("hello: leaving").await;
    assert!(app.wait_exit(DEADLINE).await.success());
    // It said app.shutdown before going: the kernel logged a leave, not a lost connection.
    let gone = burrow_tests::poll_until(DEADLINE, || async {
        !kernel.app_ids().await.iter().any(|a| a == "polite")
    })
    .await;
    assert!(gone);
    assert!(kernel.logged("app left").await, "{}", kernel.log());
}

#[tokio::test]
async fn a_second_kernel_on_the_same_state_directory_is_refused() {
    let kernel = Kernel::start().await;
    let other_socket = kernel.dir().join("other.sock");
    let out = tokio::process::Command::new(burrow_tests::bin("burrow"))
        .arg("kernel")
        .arg("--socket")
        .arg(&other_socket)
        .arg("--state-dir")
        .arg(&kernel.state_dir)
        .arg("--config")
        .arg(kernel.dir().join("burrow.toml"))
        .output();
    let out = tokio::time::timeout(DEADLINE, out).await.expect("second kernel exits").unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("state directory"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    kernel.client().await.kernel_info().await.expect("the first kernel still serves");
}

#[tokio::test]
async fn a_run_in_progress_at_sigterm_is_resumed_at_the_next_start_not_failed() {
    let config = "[ipc]\nheartbeat_timeout_ms = 60000\nshutdown_timeout_ms = 500\n[sessions]\nprovider_wait_ms = 30000\n";
    let mut kernel = Kernel::start_with_config(config).await;
    let mut provider = kernel.hand_provider().await;
    let mut user = kernel.raw().await;
    user.register("user", None).await;
    let sent = user.call("message.dispatch", json!({"sessionKey": "s", "content": "hello"})).await;
    let run_id = sent["result"]["runId"].clone();
    // The run waits on its provider, which never answers, when the kernel is stopped.
    provider.expect_method("provider.complete").await;
    kernel.signal(Signal::SIGTERM);
    assert!(kernel.wait_exit(DEADLINE).await.success());
    drop((provider, user));

    // Stopped with its provider still there, the run was left unfinished, not failed:
    // the next start resumes it and a provider answers it.
    kernel.restart().await;
    let _echo = kernel.echo_provider().await;
    let mut user = kernel.raw().await;
    user.register("user", None).await;
    let waited = user.call("agent.wait", json!({"runId": run_id, "timeoutMs": 15000})).await;
    assert_eq!(waited["result"]["status"], "completed", "{waited}\n{}", kernel.log());
}
