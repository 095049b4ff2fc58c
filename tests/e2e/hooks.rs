//! PROTOCOL.md §6 against the real kernel: subscriptions, observers, interception order,
//! modify and block, deadlines and fail modes, stray results, slow observers.

use std::time::Duration;

use burrow_tests::{Kernel, RawConn};
use serde_json::{Value, json};

fn manifest(id: &str, caps: Value) -> Value {
    json!({"id": id, "version": "1.0.0", "capabilities": caps})
}

/// An app that may observe and intercept `before_tool_call`.
async fn guard(kernel: &Kernel, id: &str, priority: i64, extra: Value) -> RawConn {
    let mut g = RawConn::app(
        &kernel.socket,
        manifest(id, json!({"hooks": {"subscribe": ["*"], "intercept": ["before_tool_call"]}})),
    )
    .await;
    assert_eq!(
        g.call("hook.subscribe", json!({"events": ["before_tool_call"]})).await["result"]["subscribed"],
        json!(["before_tool_call"])
    );
    let mut config = json!({"event": "before_tool_call", "priority": priority});
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    let resp = g.call("capability.register", json!({"type": "hook", "config": config})).await;
    assert_eq!(resp["result"]["granted"], true, "{resp}");
    g
}

async fn tool_app(kernel: &Kernel) -> RawConn {
    let mut t = RawConn::app(&kernel.socket, manifest("tools", json!({"tools": ["*"]}))).await;
    t.register_tool("write_file", None).await;
    t
}

#[tokio::test]
async fn subscriptions_follow_manifest_and_policy() {
    let kernel = Kernel::start_with_config(
        "[ipc]\nheartbeat_interval_ms = 200\nheartbeat_timeout_ms = 1000\n[policy]\ndeny_events = [\"config_*\"]\n",
    )
    .await;
    let mut obs = RawConn::app(
        &kernel.socket,
        manifest("obs", json!({"hooks": {"subscribe": ["app_*", "config_*"]}})),
    )
    .await;
    let resp = obs
        .call(
            "hook.subscribe",
            json!({"events": ["app_*", "app_ready", "capability_*", "config_changed", "*"]}),
        )
        .await;
    assert_eq!(resp["result"]["subscribed"], json!(["app_*", "app_ready"]));
    assert_eq!(resp["result"]["denied"], json!(["capability_*", "config_changed", "*"]));
    let resp = obs.call("hook.subscribe", json!({"events": ["a*b"]})).await;
    assert_eq!(resp["error"]["data"]["field"], "events[0]");
    let resp = obs.call("hook.unsubscribe", json!({"events": ["app_ready", "never"]})).await;
    assert_eq!(resp["result"]["unsubscribed"], json!(["app_ready"]));
}

#[tokio::test]
async fn observers_see_lifecycle_and_tool_events() {
    let kernel = Kernel::start().await;
    let mut obs =
        RawConn::app(&kernel.socket, manifest("obs", json!({"hooks": {"subscribe": ["*"]}}))).await;
    obs.call("hook.subscribe", json!({"events": ["*"]})).await;
    let mut t = tool_app(&kernel).await;
    let ev = obs.expect_event("app_registered").await;
    assert_eq!(ev["params"]["payload"], json!({"appId": "tools", "version": "1.0.0"}));
    assert!(ev.get("id").is_none(), "observed events are notifications");
    obs.expect_event("app_ready").await;
    let ev = obs.expect_event("capability_registered").await;
    assert_eq!(ev["params"]["payload"]["name"], "write_file");

    let mut caller = RawConn::app(&kernel.socket, manifest("caller", json!({}))).await;
    let id = caller
        .send_call("tool.call", json!({"name": "write_file", "arguments": {"path": "x"}}))
        .await;
    let invoke = t.expect_method("tool.invoke").await;
    t.answer(&invoke["id"], json!({"content": "ok"})).await;
    caller.answer_to(id).await;
    let before = obs.expect_event("before_tool_call").await;
    assert_eq!(before["params"]["payload"]["arguments"], json!({"path": "x"}));
    assert_eq!(before["params"]["intercept"], Value::Null);
    let after = obs.expect_event("after_tool_call").await;
    assert_eq!(after["params"]["payload"]["result"], json!({"content": "ok"}));
    assert_eq!(after["params"]["payload"]["isError"], false);

    drop(t);
    let ev = obs.expect_event("app_disconnected").await;
    assert_eq!(ev["params"]["payload"]["appId"], "tools");
    obs.expect_event("capability_unregistered").await;
}

#[tokio::test]
async fn interceptors_run_in_priority_order_and_modify_or_block() {
    let kernel = Kernel::start().await;
    let mut late = guard(&kernel, "late", 10, json!({})).await;
    let mut early = guard(&kernel, "early", 1, json!({})).await;
    let mut t = tool_app(&kernel).await;
    let mut caller = RawConn::app(&kernel.socket, manifest("caller", json!({}))).await;

    let id = caller
        .send_call("tool.call", json!({"name": "write_file", "arguments": {"password": "hunter2"}}))
        .await;
    let first =
        early.expect("early interception", |v: &Value| v["params"]["intercept"] == true).await;
    assert_eq!(first["params"]["payload"]["arguments"]["password"], "hunter2");
    assert!(first["params"]["deadlineMs"].as_u64().unwrap() > 1_600_000_000_000);
    // modify may change only `arguments`; the name stays.
    early.call("hook.result", json!({"eventId": first["params"]["eventId"], "result": {"action": "modify", "payload": {"name": "rm", "arguments": {"password": "[redacted]"}}}})).await;
    let second =
        late.expect("late interception", |v: &Value| v["params"]["intercept"] == true).await;
    assert_eq!(second["params"]["payload"]["arguments"]["password"], "[redacted]");
    assert_eq!(second["params"]["payload"]["name"], "write_file");
    late.call(
        "hook.result",
        json!({"eventId": second["params"]["eventId"], "result": {"action": "continue"}}),
    )
    .await;
    let invoke = t.expect_method("tool.invoke").await;
    assert_eq!(invoke["params"]["arguments"], json!({"password": "[redacted]"}));
    t.answer(&invoke["id"], json!({"content": "written"})).await;
    assert_eq!(caller.answer_to(id).await["result"]["content"], "written");

    // A repeated or stray hook.result changes nothing.
    let again = early.call("hook.result", json!({"eventId": first["params"]["eventId"], "result": {"action": "block", "reason": "x"}})).await;
    assert_eq!(again["error"]["code"], "HOOK_NOT_SUBSCRIBED");
    let stray = late
        .call("hook.result", json!({"eventId": "made-up", "result": {"action": "continue"}}))
        .await;
    assert_eq!(stray["error"]["code"], "HOOK_NOT_SUBSCRIBED");

    // Block: the caller gets FORBIDDEN with who and why; the tool never runs.
    let id = caller.send_call("tool.call", json!({"name": "write_file", "arguments": {}})).await;
    let ev = early.expect("interception", |v: &Value| v["params"]["intercept"] == true).await;
    // Another app cannot answer for it.
    let theft = late
        .call(
            "hook.result",
            json!({"eventId": ev["params"]["eventId"], "result": {"action": "continue"}}),
        )
        .await;
    assert_eq!(theft["error"]["code"], "HOOK_NOT_SUBSCRIBED");
    early.call("hook.result", json!({"eventId": ev["params"]["eventId"], "result": {"action": "block", "reason": "no writes today"}})).await;
    let resp = caller.answer_to(id).await;
    assert_eq!(resp["error"]["code"], "FORBIDDEN");
    assert_eq!(resp["error"]["data"], json!({"blockedBy": "early", "reason": "no writes today"}));
    assert!(!t.sees_within(Duration::from_millis(300), |v| v["method"] == "tool.invoke").await);
}

#[tokio::test]
async fn silent_interceptors_fail_open_or_closed_by_their_mode() {
    let kernel = Kernel::start().await;
    let _open = guard(&kernel, "open", 1, json!({"timeoutMs": 200})).await;
    let mut t = tool_app(&kernel).await;
    let mut caller = RawConn::app(&kernel.socket, manifest("caller", json!({}))).await;

    let id = caller.send_call("tool.call", json!({"name": "write_file"})).await;
    let invoke = t.expect_method("tool.invoke").await; // went on after the deadline
    t.answer(&invoke["id"], json!({"content": "done"})).await;
    assert_eq!(caller.answer_to(id).await["result"]["content"], "done");

    let _closed =
        guard(&kernel, "closed", 2, json!({"timeoutMs": 200, "failMode": "closed"})).await;
    let resp = caller.call("tool.call", json!({"name": "write_file"})).await;
    assert_eq!(resp["error"]["code"], "FORBIDDEN", "{resp}");
    assert_eq!(resp["error"]["data"]["blockedBy"], "closed");
    assert!(resp["error"]["data"]["reason"].as_str().unwrap().contains("fail-closed"));
}

#[tokio::test]
async fn intercepting_needs_the_subscription_and_the_grant() {
    let kernel = Kernel::start().await;
    let mut app = RawConn::app(
        &kernel.socket,
        manifest("g", json!({"hooks": {"subscribe": ["*"], "intercept": ["before_tool_call"]}})),
    )
    .await;
    let hook = json!({"type": "hook", "config": {"event": "before_tool_call"}});
    let resp = app.call("capability.register", hook.clone()).await;
    assert_eq!(resp["error"]["code"], "HOOK_NOT_SUBSCRIBED", "{resp}");
    app.call("hook.subscribe", json!({"events": ["*"]})).await;
    assert_eq!(app.call("capability.register", hook.clone()).await["result"]["granted"], true);
    let other = json!({"type": "hook", "config": {"event": "message_received"}});
    let resp = app.call("capability.register", other).await;
    assert!(resp["result"]["reason"].as_str().unwrap().contains("hooks.intercept"), "{resp}");
    let observe_only = json!({"type": "hook", "config": {"event": "app_ready"}});
    let resp = app.call("capability.register", observe_only).await;
    assert!(resp["result"]["reason"].as_str().unwrap().contains("cannot be intercepted"), "{resp}");
    let hooks = kernel.client().await.request("kernel.hooks", json!({})).await.unwrap();
    assert_eq!(hooks["interceptors"][0]["event"], "before_tool_call");
    assert_eq!(hooks["subscribers"][0]["subscriptions"], json!(["*"]));
}

#[tokio::test]
async fn a_slow_observer_loses_events_not_the_kernel() {
    let kernel = Kernel::start_with_config(
        "[ipc]\nheartbeat_interval_ms = 1000\nheartbeat_timeout_ms = 30000\nmax_queued = 16\nwriter_queue = 32\n[hooks]\nobserver_queue = 8\n",
    )
    .await;
    // Subscribes to everything and then never reads.
    let mut sleepy =
        RawConn::app(&kernel.socket, manifest("sleepy", json!({"hooks": {"subscribe": ["*"]}})))
            .await;
    sleepy.call("hook.subscribe", json!({"events": ["*"]})).await;
    let mut busy = RawConn::app(&kernel.socket, manifest("busy", json!({"tools": ["*"]}))).await;
    for i in 0..3000 {
        let cap =
            busy.register_tool(&format!("t{i}"), None).await["result"]["capabilityId"].clone();
        let ok = busy.call("capability.unregister", json!({"capabilityId": cap})).await;
        assert_eq!(ok["result"]["ok"], true);
    }
    let hooks = kernel.client().await.request("kernel.hooks", json!({})).await.unwrap();
    let dropped = hooks["subscribers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["appId"] == "sleepy")
        .unwrap()["dropped"]
        .as_u64()
        .unwrap();
    assert!(dropped > 0, "{hooks}");
    // The sleeper is still connected, and reading now gets it the events that fit.
    assert!(kernel.app_ids().await.contains(&"sleepy".to_owned()));
    sleepy.expect_event("capability_registered").await;
}
