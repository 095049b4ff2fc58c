//! PROTOCOL.md §8: a run waits up to `[sessions] tool_wait_ms` for its tools' apps —
//! after a kernel SIGKILL, a resumed run waits for the tools known before the restart
//! before it shows the provider its tools (with the real echo-provider and clock-tool:
//! the reply is the tool's, not "no tool named slow_echo"), and gets the tool's real
//! result once its app reconnects; a tool that never comes is answered as missing after
//! the deadline, waited for once per run; a cancelled run stops waiting at once.

use burrow_tests::{DEADLINE, Kernel, RawConn};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

const CONFIG: &str = "[ipc]\nheartbeat_timeout_ms = 30000\n";

/// Lines of the kernel's log saying a run waits for `tool`.
fn waits_logged(kernel: &Kernel, tool: &str) -> usize {
    let log = kernel.log();
    log.lines().filter(|l| l.contains("for the tool's app") && l.contains(tool)).count()
}

/// Waits until the kernel logged that a run waits for `tool`.
async fn until_waiting(kernel: &Kernel, tool: &str) {
    let waiting = burrow_tests::poll_until(DEADLINE, || async { waits_logged(kernel, tool) > 0 });
    assert!(waiting.await, "the run never waited for {tool}; log:\n{}", kernel.log());
}

/// Waits until the kernel logged that a run waits for the tools known before a restart,
/// `tool` among them.
async fn until_waiting_for_known(kernel: &Kernel, tool: &str) {
    let logged = || {
        let log = kernel.log();
        let waits =
            log.lines().any(|l| l.contains("tools known before the restart") && l.contains(tool));
        async move { waits }
    };
    let waiting = burrow_tests::poll_until(DEADLINE, logged).await;
    assert!(waiting, "no run waited for {tool}; log:\n{}", kernel.log());
}

/// Polls `session`'s history (through `app`) until it holds `needle`.
async fn history_holds(app: &mut RawConn, session: &str, needle: &str) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let h = app.call("session.history", json!({"key": session})).await;
        if h["result"]["messages"].to_string().contains(needle) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{needle} never stored: {h}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The last message of a `provider.complete` request.
fn last_message(call: &Value) -> Value {
    call["params"]["messages"].as_array().and_then(|m| m.last()).cloned().unwrap_or_default()
}

fn tool_call(id: &str, name: &str, arguments: Value) -> Value {
    json!({"message": {"content": "", "toolCalls": [{"id": id, "name": name, "arguments": arguments}]}})
}

#[tokio::test]
async fn a_resumed_run_waits_for_its_tool_app_to_reconnect_after_a_kernel_sigkill() {
    let config = format!("{CONFIG}[sessions]\nprovider_wait_ms = 60000\ntool_wait_ms = 60000\n");
    let mut kernel = Kernel::start_with_config(&config).await;
    let mut prov = kernel.hand_provider().await;
    let mut chan = kernel.hand_channel().await;
    let mut clock = kernel.example("clock-tool", "clock", &[]);
    clock.wait_line("clock-tool: ready as clock").await;

    // A run is in the middle of a long slow_echo when the kernel dies.
    let d = chan.call("message.dispatch", json!({"sessionKey": "back", "content": "go"})).await;
    let run_id = d["result"]["runId"].clone();
    let c = prov.expect_method("provider.complete").await;
    prov.answer(&c["id"], tool_call("c1", "slow_echo", json!({"ms": 60000}))).await;
    history_holds(&mut chan, "back", "\"c1\"").await;
    kernel.signal(Signal::SIGKILL);
    kernel.wait_exit(DEADLINE).await;
    // The tool's app is gone too; it comes back only later.
    clock.signal(Signal::SIGKILL);
    clock.wait_exit(DEADLINE).await;
    drop((prov, chan));

    kernel.restart().await;
    // The provider reconnects first: the resumed run waits for the tools known before
    // the restart, and asks the provider only once the tool's app is back (or the wait
    // is over): the provider is offered slow_echo.
    let mut prov = kernel.hand_provider().await;
    until_waiting_for_known(&kernel, "slow_echo").await;
    let mut clock = kernel.example("clock-tool", "clock", &[]);
    clock.wait_line("clock-tool: ready as clock").await;
    let c = prov.expect_method("provider.complete").await;
    let offered = c["params"]["tools"].to_string();
    assert!(offered.contains("slow_echo"), "the provider was not offered slow_echo: {c}");
    // The call under way when the kernel died reads as interrupted; the model calls the
    // tool again, and gets its real result.
    let messages = c["params"]["messages"].as_array().cloned().unwrap_or_default();
    let result = messages.iter().find(|m| m["toolCallId"] == "c1").cloned().unwrap_or_default();
    assert!(result["content"].as_str().unwrap_or_default().contains("interrupted"), "{c}");
    let again = json!({"ms": 1, "after": "restart"});
    prov.answer(&c["id"], tool_call("c2", "slow_echo", again)).await;
    let c = prov.expect_method("provider.complete").await;
    let last = last_message(&c);
    assert_eq!(last["toolCallId"], "c2", "{c}");
    let result = last["content"].as_str().unwrap_or_default();
    assert!(result.contains(r#""after":"restart""#), "the tool's own answer: {result}");
    prov.answer(&c["id"], json!({"message": {"content": "echoed after the restart"}})).await;

    let mut waiter =
        RawConn::app(&kernel.socket, json!({"id": "waiter", "version": "1.0.0"})).await;
    let w = waiter.call("agent.wait", json!({"runId": run_id, "timeoutMs": 10000})).await;
    assert_eq!(
        (w["result"]["status"].clone(), w["result"]["output"].clone()),
        (json!("completed"), json!("echoed after the restart")),
        "{w}"
    );
}

#[tokio::test]
async fn a_tool_that_never_comes_is_answered_missing_after_the_deadline_once_per_run() {
    let wait = std::time::Duration::from_millis(400);
    let config = format!("{CONFIG}[sessions]\ntool_wait_ms = {}\n", wait.as_millis());
    let kernel = Kernel::start_with_config(&config).await;
    let mut prov = kernel.hand_provider().await;
    let mut chan = kernel.hand_channel().await;
    let d = chan.call("message.dispatch", json!({"sessionKey": "gone", "content": "go"})).await;

    let c = prov.expect_method("provider.complete").await;
    let asked = std::time::Instant::now();
    prov.answer(&c["id"], tool_call("c1", "slow_echo", json!({}))).await;
    let c = prov.expect_method("provider.complete").await;
    assert!(asked.elapsed() >= wait, "answered after {:?}, before the deadline", asked.elapsed());
    let last = last_message(&c);
    assert_eq!(last["toolCallId"], "c1", "{c}");
    assert!(last["content"].as_str().unwrap().contains(r#"no tool named "slow_echo""#), "{last}");
    assert_eq!(waits_logged(&kernel, "slow_echo"), 1, "{}", kernel.log());

    // The model insists: the run does not wait for that tool again.
    prov.answer(&c["id"], tool_call("c2", "slow_echo", json!({}))).await;
    let c = prov.expect_method("provider.complete").await;
    let last = last_message(&c);
    assert_eq!(last["toolCallId"], "c2", "{c}");
    assert!(last["content"].as_str().unwrap().contains("no tool named"), "{last}");
    assert_eq!(waits_logged(&kernel, "slow_echo"), 1, "{}", kernel.log());
    prov.answer(&c["id"], json!({"message": {"content": "no such tool"}})).await;
    let w =
        chan.call("agent.wait", json!({"runId": d["result"]["runId"], "timeoutMs": 10000})).await;
    assert_eq!(w["result"]["status"], "completed", "{w}");
}

#[tokio::test]
async fn a_cancelled_run_stops_waiting_for_its_tool_at_once() {
    let config = format!("{CONFIG}[sessions]\ntool_wait_ms = 600000\n");
    let kernel = Kernel::start_with_config(&config).await;
    let mut prov = kernel.hand_provider().await;
    let mut chan = kernel.hand_channel().await;
    let d = chan.call("message.dispatch", json!({"sessionKey": "stop", "content": "go"})).await;
    let run_id = d["result"]["runId"].clone();
    let c = prov.expect_method("provider.complete").await;
    prov.answer(&c["id"], tool_call("c1", "slow_echo", json!({}))).await;
    until_waiting(&kernel, "slow_echo").await;

    let cancelled = chan.call("agent.cancel", json!({"runId": run_id})).await;
    assert_eq!(cancelled["result"]["ok"], true, "{cancelled}");
    let w = chan.call("agent.wait", json!({"runId": run_id, "timeoutMs": 10000})).await;
    assert_eq!(w["result"]["status"], "cancelled", "{w}");
    // The session takes its next message.
    let d = chan.call("message.dispatch", json!({"sessionKey": "stop", "content": "next"})).await;
    let c = prov.expect_method("provider.complete").await;
    prov.answer(&c["id"], json!({"message": {"content": "next one"}})).await;
    let w =
        chan.call("agent.wait", json!({"runId": d["result"]["runId"], "timeoutMs": 10000})).await;
    assert_eq!(w["result"]["status"], "completed", "{w}");
}

#[tokio::test]
async fn a_run_resumed_with_the_echo_provider_back_first_uses_the_tool_not_no_tool_named() {
    // The bundled echo-provider and clock-tool, real processes. One run is inside a
    // slow_echo, another waits behind it asking for slow_echo, when the kernel dies; the
    // provider reconnects by itself, the tool's app only later. (Resumed, the first run
    // asks for its slow_echo again: the echo provider answers the input it sees last.)
    let config = format!("{CONFIG}[sessions]\ntool_wait_ms = 30000\n");
    let mut kernel = Kernel::start_with_config(&config).await;
    let _echo = kernel.echo_provider().await;
    let mut clock = kernel.example("clock-tool", "clock", &[]);
    clock.wait_line("clock-tool: ready as clock").await;
    let mut user = RawConn::app(&kernel.socket, json!({"id": "user", "version": "1.0.0"})).await;
    let long = json!({"sessionKey": "echo", "content": "/tool slow_echo {\"ms\": 3000}"});
    user.call("message.dispatch", long).await;
    history_holds(&mut user, "echo", "call-1").await;
    let next = json!({"sessionKey": "echo", "content": "/tool slow_echo {\"ms\": 1}"});
    let queued = user.call("message.dispatch", next).await;
    assert_eq!(queued["result"]["queued"], true, "{queued}");
    let run_id = queued["result"]["runId"].clone();
    kernel.signal(Signal::SIGKILL);
    kernel.wait_exit(DEADLINE).await;
    clock.signal(Signal::SIGKILL);
    clock.wait_exit(DEADLINE).await;
    drop(user);

    kernel.restart().await;
    until_waiting_for_known(&kernel, "slow_echo").await;
    let mut clock = kernel.example("clock-tool", "clock", &[]);
    clock.wait_line("clock-tool: ready as clock").await;
    let mut user = RawConn::app(&kernel.socket, json!({"id": "user", "version": "1.0.0"})).await;
    let w = user.call("agent.wait", json!({"runId": run_id, "timeoutMs": 10000})).await;
    let output = w["result"]["output"].as_str().unwrap_or_default();
    assert_eq!(w["result"]["status"], "completed", "{w}\n{}", kernel.log());
    assert!(output.contains("tool slow_echo returned"), "{output}");
    assert!(!output.contains("no tool named"), "{output}");
}
