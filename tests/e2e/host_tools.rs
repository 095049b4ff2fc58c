//! Tools a host provides on its JSON-RPC connection (`tools/register`, and the kernel's
//! `tool/execute` requests on that connection), against the real kernel with the bundled
//! echo provider, whose `/tool NAME ARGS` lines call a tool: the agent calls them through
//! the tool hooks, `turn/interrupt` ends a turn waiting on one, a late answer is dropped,
//! and the tools are gone with their connection.

use burrow_tests::{Kernel, RawConn, Rpc};
use serde_json::{Value, json};

/// Long heartbeats (the observer app is hand-played and does not beat); the bundled echo
/// provider, answering at once.
const CONFIG: &str = "[ipc]\nheartbeat_timeout_ms = 60000\n[sessions]\nprovider_wait_ms = 60000\n\
                      [apps.echo-provider.run]\nenv = { ECHO_WORD_DELAY_MS = \"0\" }\n";

async fn kernel() -> Kernel {
    Kernel::start_with(CONFIG, &["--rpc-tcp", "127.0.0.1:0"]).await
}

async fn rpc(kernel: &Kernel) -> Rpc {
    Rpc::connect(kernel.endpoint("rpc_tcp").await).await
}

fn lookup() -> Value {
    json!({"tools": [{"name": "lookup", "description": "Looks a word up", "input_schema": {"type": "object"}}]})
}

/// Sends request `id` without reading its answer.
async fn send(rpc: &mut Rpc, id: u64, method: &str, params: Value) {
    let line = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    rpc.send_line(&line.to_string()).await;
}

/// Reads lines until the kernel's next request (a line with `id` and `method`).
async fn next_request(rpc: &mut Rpc) -> Value {
    for _ in 0..1000 {
        let line = rpc.read().await;
        if line.get("method").is_some() && line.get("id").is_some() {
            return line;
        }
        assert!(line.get("id").is_none(), "an answer came before the kernel's request: {line}");
    }
    panic!("no request from the kernel in 1000 lines");
}

/// Reads lines until the answer to request `id`.
async fn answer_to(rpc: &mut Rpc, id: u64) -> Value {
    for _ in 0..1000 {
        let line = rpc.read().await;
        if line["id"] == json!(id) && line.get("method").is_none() {
            return line;
        }
    }
    panic!("no answer to {id} in 1000 lines");
}

#[tokio::test]
async fn the_agent_calls_a_hosts_tool_through_the_tool_hooks() {
    let kernel = kernel().await;
    let manifest =
        json!({"id": "obs", "version": "1.0.0", "capabilities": {"hooks": {"subscribe": ["*"]}}});
    let mut obs = RawConn::app(&kernel.socket, manifest).await;
    obs.call("hook.subscribe", json!({"events": ["before_tool_call", "after_tool_call"]})).await;

    let mut host = rpc(&kernel).await;
    assert_eq!(host.ok("tools/register", lookup()).await, json!({"registered": 1}));
    // Registering a name again replaces it; the count is the connection's tools.
    let two = json!({"tools": [{"name": "lookup"}, {"name": "spell"}]});
    assert_eq!(host.ok("tools/register", two).await, json!({"registered": 2}));

    let prompt = r#"/tool lookup {"q": "burrow"}"#;
    send(&mut host, 10, "session/create", json!({"prompt": prompt, "session_events": false})).await;
    let call = next_request(&mut host).await;
    assert_eq!(call["method"], "tool/execute", "{call}");
    assert_eq!(call["params"]["name"], "lookup");
    assert_eq!(call["params"]["arguments"], json!({"q": "burrow"}));
    assert!(call["params"]["tool_use_id"].is_string(), "{call}");
    let reply = json!({"jsonrpc": "2.0", "id": call["id"], "result": {"content": [{"type": "text", "text": "a den"}], "is_error": false}});
    host.send_line(&reply.to_string()).await;
    let created = answer_to(&mut host, 10).await;
    assert_eq!(created["result"]["text"], "tool lookup returned: a den", "{created}");
    assert_eq!(created["result"]["tool_calls"], 1, "{created}");

    // Like any tool, through before_tool_call and after_tool_call.
    let before = obs.expect_event("before_tool_call").await;
    assert_eq!(before["params"]["payload"]["name"], "lookup");
    assert_eq!(before["params"]["payload"]["arguments"], json!({"q": "burrow"}));
    let after = obs.expect_event("after_tool_call").await;
    assert_eq!(after["params"]["payload"]["result"]["content"], "a den", "{after}");
    assert_eq!(after["params"]["payload"]["isError"], false);

    // A host's error answer is the tool's failure, which the agent reads.
    let session = created["result"]["session_id"].clone();
    send(
        &mut host,
        11,
        "turn/start",
        json!({"session_id": session, "prompt": "/tool spell", "session_events": false}),
    )
    .await;
    let call = next_request(&mut host).await;
    let failure = json!({"jsonrpc": "2.0", "id": call["id"], "error": {"code": -32000, "message": "no dictionary"}});
    host.send_line(&failure.to_string()).await;
    let turn = answer_to(&mut host, 11).await;
    assert_eq!(turn["result"]["text"], "tool spell returned: no dictionary", "{turn}");
    let after = obs.expect_event("after_tool_call").await;
    assert_eq!(after["params"]["payload"]["isError"], true, "{after}");
}

#[tokio::test]
async fn interrupt_ends_a_turn_waiting_on_a_hosts_tool_and_its_late_answer_is_dropped() {
    let kernel = kernel().await;
    let mut host = rpc(&kernel).await;
    host.ok("tools/register", lookup()).await;
    let created = host.ok("session/create", json!({"prompt": "hello", "keep_alive": true})).await;
    let session = created["session_id"].clone();

    send(
        &mut host,
        20,
        "turn/start",
        json!({"session_id": session, "prompt": "/tool lookup", "session_events": false}),
    )
    .await;
    let call = next_request(&mut host).await;
    assert_eq!(call["method"], "tool/execute");
    // A second turn meanwhile is refused: the session is busy.
    let busy = host.call("turn/start", json!({"session_id": session, "prompt": "again"})).await;
    assert_eq!(busy["error"]["data"]["code"], "SESSION_BUSY", "{busy}");
    // The interrupted turn and the interrupt answer in either order.
    send(&mut host, 21, "turn/interrupt", json!({"session_id": session})).await;
    let (mut turn, mut stopped) = (Value::Null, Value::Null);
    for _ in 0..1000 {
        let line = host.read().await;
        match &line["id"] {
            id if *id == json!(20) => turn = line,
            id if *id == json!(21) => stopped = line,
            _ => {}
        }
        if !turn.is_null() && !stopped.is_null() {
            break;
        }
    }
    assert_eq!(stopped["result"]["interrupted"], true, "{stopped}");
    assert_eq!(turn["error"]["data"]["code"], "REQUEST_CANCELLED", "{turn}");

    // The answer that comes too late goes nowhere, and the connection goes on.
    let late = json!({"jsonrpc": "2.0", "id": call["id"], "result": {"content": "too late"}});
    host.send_line(&late.to_string()).await;
    let stray = json!({"jsonrpc": "2.0", "id": "srv-nobody", "result": {}});
    host.send_line(&stray.to_string()).await;
    let next = host
        .ok(
            "turn/start",
            json!({"session_id": session, "prompt": "still here", "session_events": false}),
        )
        .await;
    assert_eq!(next["text"], "echo: still here", "{next}");
    let history = host.ok("session/history", json!({"session_id": session})).await;
    assert!(!history.to_string().contains("too late"), "{history}");
}

#[tokio::test]
async fn a_hosts_tools_are_offered_only_to_its_sessions_and_gone_with_its_connection() {
    let kernel = kernel().await;
    let mut host = rpc(&kernel).await;
    let mut other = rpc(&kernel).await;
    host.ok("tools/register", lookup()).await;
    let bad = host.call("tools/register", json!({"tools": [{"name": "no spaces"}]})).await;
    assert_eq!(bad["error"]["data"]["code"], "INVALID_PARAMS", "{bad}");
    assert_eq!(bad["error"]["data"]["field"], "tools[0].name", "{bad}");

    // Another connection's session is not offered the tool.
    let elsewhere = other
        .ok(
            "session/create",
            json!({"prompt": "/tool lookup", "keep_alive": true, "session_events": false}),
        )
        .await;
    assert_eq!(elsewhere["text"], "echo: no tool named lookup", "{elsewhere}");

    // The host's own session is, until the host's connection ends.
    let mine = host
        .ok("session/create", json!({"prompt": "hi", "keep_alive": true, "session_events": false}))
        .await;
    let session = mine["session_id"].clone();
    drop(host);
    let deadline = tokio::time::Instant::now() + burrow_tests::DEADLINE;
    loop {
        let turn = other
            .ok(
                "turn/start",
                json!({"session_id": session, "prompt": "/tool lookup", "session_events": false}),
            )
            .await;
        if turn["text"] == "echo: no tool named lookup" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the tool outlived its connection: {turn}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
