//! PROTOCOL.md §3 "Cancellation" and §10 `tool.invoke` against the real kernel: a tool
//! call carries its deadline to the tool's app (`timeoutMs`); a caller's `$/cancel` of its
//! `tool.call` reaches the tool's app as `$/cancel` of the `tool.invoke`, whose answer the
//! caller then gets, with or without a `before_tool_call` hook in the way; a cancelled
//! run's tool call is cancelled at the tool's app too, and its run's timeline
//! (`run/timeline`) shows the call cut off.

use burrow_tests::{Kernel, RawConn, Rpc};
use serde_json::{Value, json};

/// Long heartbeats: the apps here are hand-played.
const CONFIG: &str = "[ipc]\nheartbeat_timeout_ms = 30000\n";

fn manifest(id: &str, caps: Value) -> Value {
    json!({"id": id, "version": "1.0.0", "capabilities": caps})
}

/// A tool app holding `slow` (deadline 4 s) and a caller.
async fn tool_and_caller(kernel: &Kernel) -> (RawConn, RawConn) {
    let mut tools = RawConn::app(&kernel.socket, manifest("tools", json!({"tools": ["*"]}))).await;
    let granted = tools.register_tool("slow", Some(4000)).await;
    assert_eq!(granted["result"]["granted"], true, "{granted}");
    let caller = RawConn::app(&kernel.socket, manifest("caller", json!({}))).await;
    (tools, caller)
}

/// The caller cancels its call while the tool app holds it; the app hears of it, answers
/// anyway, and the caller gets that answer.
async fn a_cancel_reaches_the_tool(tools: &mut RawConn, caller: &mut RawConn) {
    let id = caller.send_call("tool.call", json!({"name": "slow", "arguments": {"n": 1}})).await;
    let invoke = tools.expect_method("tool.invoke").await;
    assert_eq!(invoke["params"]["timeoutMs"], 4000, "the deadline comes along: {invoke}");
    caller.send_value(&json!({"method": "$/cancel", "params": {"id": id}})).await;
    let cancel = tools.expect_method("$/cancel").await;
    assert_eq!(cancel["params"]["id"], invoke["id"], "{cancel}");
    assert!(cancel.get("id").is_none(), "a notification: {cancel}");
    let stopped = json!({"id": invoke["id"], "error": {"code": "UNKNOWN_ERROR", "message": "stopped", "data": {"reason": "cancelled"}}});
    tools.send_value(&stopped).await;
    let answer = caller.answer_to(id).await;
    assert_eq!(answer["error"]["data"]["reason"], "cancelled", "the app's answer: {answer}");
    // A cancel of a call already answered, or of no call, changes nothing.
    caller.send_value(&json!({"method": "$/cancel", "params": {"id": id}})).await;
    let quiet =
        tools.sees_within(std::time::Duration::from_millis(200), |v| v["method"] == "$/cancel");
    assert!(!quiet.await, "nothing more to cancel");
}

#[tokio::test]
async fn a_callers_cancel_reaches_the_tools_app() {
    let kernel = Kernel::start_with_config(CONFIG).await;
    let (mut tools, mut caller) = tool_and_caller(&kernel).await;
    a_cancel_reaches_the_tool(&mut tools, &mut caller).await;

    // With a `before_tool_call` observer, the call takes the hooks' path: the same.
    let mut obs =
        RawConn::app(&kernel.socket, manifest("obs", json!({"hooks": {"subscribe": ["*"]}}))).await;
    obs.call("hook.subscribe", json!({"events": ["before_tool_call"]})).await;
    a_cancel_reaches_the_tool(&mut tools, &mut caller).await;
    obs.expect_event("before_tool_call").await;
}

#[tokio::test]
async fn a_cancelled_runs_tool_call_is_cancelled_at_the_tools_app() {
    let kernel = Kernel::start_with(CONFIG, &["--rpc-tcp", "127.0.0.1:0"]).await;
    let (mut tools, _caller) = tool_and_caller(&kernel).await;
    let mut prov = kernel.hand_provider().await;
    let mut chan = kernel.hand_channel().await;
    let d = chan.call("message.dispatch", json!({"sessionKey": "c1", "content": "go"})).await;
    let run_id = d["result"]["runId"].clone();
    let c = prov.expect_method("provider.complete").await;
    let call = json!({"message": {"content": "", "toolCalls": [{"id": "t1", "name": "slow", "arguments": {}}]}});
    prov.answer(&c["id"], call).await;
    let invoke = tools.expect_method("tool.invoke").await;
    assert_eq!(invoke["params"]["runId"], run_id, "{invoke}");
    let cancelled = chan.call("agent.cancel", json!({"runId": run_id})).await;
    assert_eq!(cancelled["result"]["ok"], true, "{cancelled}");
    let cancel = tools.expect_method("$/cancel").await;
    assert_eq!(cancel["params"]["id"], invoke["id"], "{cancel}");
    let w = chan.call("agent.wait", json!({"runId": run_id, "timeoutMs": 10000})).await;
    assert_eq!(w["result"]["status"], "cancelled", "{w}");

    // The run's timeline: the provider call, then the tool call its cancel cut off.
    let mut rpc = Rpc::connect(kernel.endpoint("rpc_tcp").await).await;
    let timeline = rpc.ok("run/timeline", json!({"run_id": run_id})).await;
    let steps: Vec<(&str, &str, &str)> = timeline["runs"][0]["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no steps: {timeline}"))
        .iter()
        .map(|s| {
            (
                s["kind"].as_str().unwrap(),
                s["name"].as_str().unwrap(),
                s["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(steps, [("provider", "echo", "ok"), ("tool", "slow", "cancelled")], "{timeline}");
}
