//! PROTOCOL.md §8 with hand-played provider, tool and channel apps: dispatch → provider →
//! tool → reply on the channel; durability across a kernel SIGKILL; waiting and listing.

use burrow_tests::{DEADLINE, Kernel, RawConn};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

const CONFIG: &str = "[ipc]\nheartbeat_timeout_ms = 30000\n";

async fn provider(kernel: &Kernel) -> RawConn {
    let mut p = RawConn::app(
        &kernel.socket,
        json!({"id": "prov", "version": "1.0.0", "capabilities": {"providers": ["echo"]}}),
    )
    .await;
    let r = p
        .call(
            "capability.register",
            json!({"type": "provider", "config": {"providerId": "echo", "models": ["echo"]}}),
        )
        .await;
    assert_eq!(r["result"]["granted"], true, "{r}");
    p
}

async fn channel(kernel: &Kernel) -> RawConn {
    let mut c = RawConn::app(
        &kernel.socket,
        json!({"id": "term", "version": "1.0.0", "capabilities": {"channels": ["term"]}}),
    )
    .await;
    let r = c
        .call("capability.register", json!({"type": "channel", "config": {"channelId": "term"}}))
        .await;
    assert_eq!(r["result"]["granted"], true, "{r}");
    c
}

#[tokio::test]
async fn a_message_runs_the_agent_through_provider_and_tool_and_the_reply_comes_back_on_the_channel()
 {
    let kernel = Kernel::start_with_config(CONFIG).await;
    let mut prov = provider(&kernel).await;
    let mut chan = channel(&kernel).await;
    let mut tools = RawConn::app(
        &kernel.socket,
        json!({"id": "tools", "version": "1.0.0", "capabilities": {"tools": ["*"]}}),
    )
    .await;
    tools.register_tool("lookup", None).await;

    let d =
        chan.call("message.dispatch", json!({"sessionKey": "s1", "content": "what is x?"})).await;
    assert_eq!(d["result"]["queued"], false, "{d}");
    let run_id = d["result"]["runId"].as_str().unwrap().to_owned();

    // Turn 1: the provider asks for a tool.
    let c1 = prov.expect_method("provider.complete").await;
    let msgs = c1["params"]["messages"].as_array().unwrap();
    assert_eq!(msgs[0]["role"], "system");
    assert_eq!(msgs.last().unwrap()["content"], "what is x?");
    assert_eq!(c1["params"]["tools"][0]["name"], "lookup");
    prov.answer(&c1["id"], json!({"message": {"content": "", "toolCalls": [{"id": "c1", "name": "lookup", "arguments": {"q": "x"}}]}})).await;
    let inv = tools.expect_method("tool.invoke").await;
    assert_eq!(
        (inv["params"]["sessionKey"].clone(), inv["params"]["runId"].clone()),
        (json!("s1"), json!(run_id))
    );
    tools.answer(&inv["id"], json!({"content": "x = 42"})).await;
    // Turn 2: the provider sees the tool result and answers.
    let c2 = prov.expect_method("provider.complete").await;
    let last = c2["params"]["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["role"].clone(), last["content"].clone(), last["toolCallId"].clone()),
        (json!("tool"), json!("x = 42"), json!("c1"))
    );
    prov.answer(&c2["id"], json!({"message": {"content": "x is 42"}})).await;

    let sent = chan.expect_method("channel.send").await;
    assert_eq!(sent["params"]["content"], "x is 42");
    assert_eq!(sent["params"]["sessionKey"], "s1");
    assert_eq!(sent["params"]["channelId"], "term");
    chan.answer(&sent["id"], json!({"messageId": "m-1"})).await;

    let w = chan.call("agent.wait", json!({"runId": run_id, "timeoutMs": 5000})).await;
    assert_eq!(
        (w["result"]["status"].clone(), w["result"]["output"].clone()),
        (json!("completed"), json!("x is 42"))
    );
    let h = chan.call("session.history", json!({"key": "s1"})).await;
    let roles: Vec<&str> = h["result"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "tool", "assistant"]);
    let s = chan.call("session.get", json!({"key": "s1"})).await;
    assert_eq!(
        (
            s["result"]["session"]["channelId"].clone(),
            s["result"]["session"]["messageCount"].clone()
        ),
        (json!("term"), json!(4))
    );
    let l = chan.call("session.list", json!({"limit": 10})).await;
    assert_eq!(l["result"]["total"], 1);
    assert_eq!(
        chan.call("session.get", json!({"key": "nope"})).await["result"]["session"],
        Value::Null
    );
    assert_eq!(
        chan.call("session.list", json!({"limit": 5000})).await["error"]["data"]["field"],
        "limit"
    );
}

#[tokio::test]
async fn a_missing_provider_fails_the_run_and_the_session_keeps_working() {
    let kernel = Kernel::start_with_config(CONFIG).await;
    let mut chan = channel(&kernel).await;
    let d =
        chan.call("message.dispatch", json!({"sessionKey": "lonely", "content": "hello?"})).await;
    let run = d["result"]["runId"].clone();
    let w = chan.call("agent.wait", json!({"runId": run, "timeoutMs": 5000})).await;
    assert_eq!(w["result"]["status"], "failed", "{w}");
    assert!(w["result"]["error"].as_str().unwrap().contains("no provider"), "{w}");
    // The message itself was kept, and the session takes more.
    let mut prov = provider(&kernel).await;
    let d = chan.call("message.dispatch", json!({"sessionKey": "lonely", "content": "now?"})).await;
    let c = prov.expect_method("provider.complete").await;
    prov.answer(&c["id"], json!({"message": {"content": "yes"}})).await;
    let w =
        chan.call("agent.wait", json!({"runId": d["result"]["runId"], "timeoutMs": 5000})).await;
    assert_eq!(w["result"]["status"], "completed");
}

#[tokio::test]
async fn acknowledged_messages_survive_a_kernel_sigkill_and_their_runs_resume() {
    let mut kernel = Kernel::start_with_config(CONFIG).await;
    let mut chan = channel(&kernel).await;
    // No provider yet: runs wait in the queue of each session... the first fails fast, so
    // use agent.queue on a session whose provider is absent only after the kill.
    let mut acked = Vec::new();
    for i in 0..50 {
        let key = format!("load-{}", i % 5);
        let d = chan
            .call("message.dispatch", json!({"sessionKey": key, "content": format!("msg {i}")}))
            .await;
        assert!(d["result"]["dispatchId"].is_string(), "{d}");
        acked.push((key, format!("msg {i}")));
    }
    kernel.signal(Signal::SIGKILL);
    kernel.wait_exit(DEADLINE).await;
    kernel.restart().await;
    let mut reader =
        RawConn::app(&kernel.socket, json!({"id": "reader", "version": "1.0.0"})).await;
    for s in 0..5 {
        let key = format!("load-{s}");
        let h = reader.call("session.history", json!({"key": key, "limit": 1000})).await;
        let texts: Vec<String> = h["result"]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "user")
            .map(|m| m["content"].as_str().unwrap().to_owned())
            .collect();
        for (k, text) in &acked {
            if *k == key {
                assert!(texts.contains(text), "{text} lost from {key}: {texts:?}");
            }
        }
    }
}
