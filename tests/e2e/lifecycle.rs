//! The app lifecycle of PROTOCOL.md §4 with real processes: register, ready, heartbeat
//! timeout, takeover, tokens, app-initiated shutdown, death by SIGKILL, reconnect.

use std::time::Duration;

use burrow_tests::{DEADLINE, Kernel, poll_until};
use nix::sys::signal::Signal;
use serde_json::json;

async fn app_listed(kernel: &Kernel, id: &str) -> bool {
    kernel.app_ids().await.iter().any(|a| a == id)
}

#[tokio::test]
async fn hello_app_registers_becomes_ready_and_is_listed() {
    let kernel = Kernel::start().await;
    let mut app = kernel.hello("greeter").await;
    app.wait_line("hello: ready as greeter").await;
    let apps = kernel.client().await.request("kernel.apps", json!({})).await.unwrap();
    let entry = &apps["apps"][0];
    assert_eq!(entry["appId"], "greeter");
    assert_eq!(entry["state"], "ready");
    assert_eq!(entry["version"], "0.1.0");
    let info = kernel.client().await.request("kernel.info", json!({})).await.unwrap();
    assert_eq!(info["apps"], 1);
}

#[tokio::test]
async fn an_app_killed_with_sigkill_disappears() {
    let kernel = Kernel::start().await;
    let mut app = kernel.hello("doomed").await;
    app.wait_line("hello: ready as doomed").await;
    assert!(app_listed(&kernel, "doomed").await);
    app.signal(Signal::SIGKILL);
    app.wait_exit(DEADLINE).await;
    assert!(poll_until(DEADLINE, || async { !app_listed(&kernel, "doomed").await }).await);
    let out = kernel.cli(&["apps"]).await;
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("doomed"));
}

#[tokio::test]
async fn a_silent_app_is_dropped_after_the_heartbeat_timeout() {
    let kernel = Kernel::start().await; // heartbeat timeout 1000 ms
    let mut raw = kernel.raw().await;
    assert_eq!(raw.register("silent", None).await["result"]["heartbeatTimeoutMs"], 1000);
    assert!(app_listed(&kernel, "silent").await);
    let started = std::time::Instant::now();
    // Say nothing: the kernel closes the connection and forgets the app.
    assert!(raw.recv().await.is_none(), "kernel should close a silent connection");
    assert!(started.elapsed() >= Duration::from_millis(900), "dropped too early");
    assert!(!app_listed(&kernel, "silent").await);
    assert!(kernel.logged("no heartbeat").await, "{}", kernel.log());
}

#[tokio::test]
async fn a_heartbeating_app_stays() {
    let kernel = Kernel::start().await;
    let mut app = kernel.hello("steady").await;
    app.wait_line("hello: ready as steady").await;
    // Three heartbeat timeouts later it is still there, because it heartbeats.
    let stayed =
        poll_until(Duration::from_millis(3000), || async { !app_listed(&kernel, "steady").await })
            .await;
    assert!(!stayed, "a heartbeating app was dropped");
}

#[tokio::test]
async fn a_live_id_is_a_conflict_without_the_token_and_taken_over_with_it() {
    let kernel = Kernel::start().await;
    let mut first = kernel.raw().await;
    let reg = first.register("twin", None).await;
    let token = reg["result"]["token"].as_str().unwrap().to_owned();

    let mut second = kernel.raw().await;
    let resp = second.register("twin", None).await;
    assert_eq!(resp["error"]["code"], "CONFLICT", "{resp}");

    let mut forger = kernel.raw().await;
    let forged = format!("{}x", &token[..token.len() - 1]);
    let resp = forger.register("twin", Some(&forged)).await;
    assert_eq!(resp["error"]["code"], "UNAUTHORIZED", "{resp}");
    let resp = forger.register("twin", Some("v1.not.atoken")).await;
    assert_eq!(resp["error"]["code"], "UNAUTHORIZED", "{resp}");

    // Another app's valid token does not open this id.
    let mut other = kernel.raw().await;
    let other_token =
        other.register("other", None).await["result"]["token"].as_str().unwrap().to_owned();
    let resp = forger.register("twin", Some(&other_token)).await;
    assert_eq!(resp["error"]["code"], "UNAUTHORIZED", "{resp}");

    let resp = second.register("twin", Some(&token)).await;
    assert_eq!(resp["result"]["appId"], "twin", "{resp}");
    assert!(first.recv().await.is_none(), "the old connection must be closed");
    // The new holder is the live one.
    second.request(2, "app.heartbeat", json!({})).await;
    assert_eq!(second.recv_json().await["result"]["ok"], true);
    assert_eq!(kernel.app_ids().await, vec!["other".to_owned(), "twin".to_owned()]);
}

#[tokio::test]
async fn an_app_that_leaves_is_answered_then_closed_and_forgotten() {
    let kernel = Kernel::start().await;
    let mut raw = kernel.raw().await;
    raw.register("leaver", None).await;
    raw.request(2, "app.ready", json!({})).await;
    assert_eq!(raw.recv_json().await["result"]["ok"], true);
    raw.request(3, "app.shutdown", json!({"reason": "done", "timeout": 100})).await;
    let resp = raw.recv_json().await;
    assert_eq!((resp["id"].clone(), resp["result"]["ok"].clone()), (json!(3), json!(true)));
    assert!(raw.recv().await.is_none(), "closed after the answer");
    assert!(!app_listed(&kernel, "leaver").await);
    // The id is free again.
    let mut again = kernel.raw().await;
    assert_eq!(again.register("leaver", None).await["result"]["appId"], "leaver");
}

#[cfg(unix)]
#[tokio::test]
async fn socket_and_key_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let kernel = Kernel::start().await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&kernel.socket), 0o600);
    assert_eq!(mode(kernel.socket.parent().unwrap()), 0o700);
    assert_eq!(mode(&kernel.state_dir.join("kernel.key")), 0o600);
    assert_eq!(mode(&kernel.state_dir), 0o700);
}

#[tokio::test]
async fn tokens_survive_a_kernel_restart_and_the_app_reconnects() {
    let mut kernel = Kernel::start().await;
    let mut app = kernel.hello("phoenix").await;
    app.wait_line("hello: ready as phoenix").await;
    kernel.signal(Signal::SIGKILL);
    kernel.wait_exit(DEADLINE).await;
    // The socket file is left behind by the SIGKILL; the new kernel reclaims it.
    assert!(kernel.socket.exists());
    kernel.restart().await;
    assert!(
        poll_until(DEADLINE, || async { app_listed(&kernel, "phoenix").await }).await,
        "app did not come back; kernel log:\n{}",
        kernel.log()
    );
    // It came back through reconnection, not a new process.
    app.wait_line("hello: ready as phoenix").await;
    assert!(app.child.try_wait().unwrap().is_none());
}

#[tokio::test]
async fn an_app_that_keeps_talking_while_leaving_still_gets_its_answers() {
    let kernel = Kernel::start().await;
    for round in 0..20 {
        let mut raw = kernel.raw().await;
        raw.register(&format!("chatty-{round}"), None).await;
        let mut bytes = Vec::new();
        let mut push = |v: serde_json::Value| {
            let body = rmp_serde::to_vec_named(&v).unwrap();
            bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
            bytes.extend_from_slice(&body);
        };
        push(json!({"id": 100, "method": "app.shutdown", "params": {}}));
        push(json!({"id": 101, "method": "app.shutdown", "params": {}}));
        for i in 0..50 {
            push(json!({"id": 200 + i, "method": "app.heartbeat"}));
        }
        raw.send_bytes(&bytes).await;
        let mut answered = Vec::new();
        let mut others = Vec::new();
        while let Some(msg) = raw.recv().await {
            let m = burrow_tests::to_json(&msg);
            if m["result"]["ok"] == true {
                answered.push(m["id"].as_u64().unwrap());
            } else {
                others.push(m);
            }
        }
        assert!(
            answered.contains(&100) && answered.contains(&101),
            "round {round}: {answered:?}; other messages: {others:?}; kernel log:\n{}",
            kernel.log()
        );
    }
}
