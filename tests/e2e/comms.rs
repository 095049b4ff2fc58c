//! Comms and host surfaces over JSON-RPC (TCP): keep-alive sessions as peers,
//! request/response correlation, steer vs queue (and the replies of a steered run on
//! the channel), durable external events across a kernel SIGKILL.

use burrow_tests::{DEADLINE, Kernel, Rpc};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

/// Long heartbeats (hand-played apps do not beat), fast idle eviction.
const CONFIG: &str = "[ipc]\nheartbeat_timeout_ms = 60000\n\n[sessions]\nidle_timeout_ms = 300\nprovider_wait_ms = 60000\n";

async fn kernel() -> Kernel {
    Kernel::start_with(CONFIG, &["--rpc-tcp", "127.0.0.1:0"]).await
}

async fn rpc(kernel: &Kernel) -> Rpc {
    Rpc::connect(kernel.endpoint("rpc_tcp").await).await
}

async fn create(rpc: &mut Rpc, prompt: &str, name: &str) -> String {
    let r = rpc
        .ok("session/create", json!({"prompt": prompt, "keep_alive": true, "comms_name": name}))
        .await;
    assert_eq!(r["text"], format!("echo: {prompt}"), "{r}");
    assert_eq!(r["turns"], 1, "{r}");
    r["session_id"].as_str().unwrap().to_owned()
}

/// Burrow's own `comms.send` (IPC, for apps): its receipt says which run takes an input
/// and whether it queued.
async fn comms_send(app: &burrow_sdk::Client, params: Value) -> Value {
    app.request("comms.send", params).await.unwrap_or_else(|e| panic!("comms.send: {e}"))
}

fn last_user(prompt: &Value) -> String {
    let msgs = prompt["params"]["messages"].as_array().unwrap();
    let user = msgs.iter().rev().find(|m| m["role"] == "user").unwrap();
    user["content"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn keep_alive_sessions_are_peers_that_message_and_answer_each_other() {
    let kernel = kernel().await;
    let _echo = kernel.echo_provider().await;
    let mut rpc = rpc(&kernel).await;
    let a = create(&mut rpc, "You are a coordinator.", "agent-a").await;
    let b = create(&mut rpc, "You review work.", "agent-b").await;

    let peers = rpc.ok("comms/peers", json!({"session_id": a})).await;
    let listed: Vec<(&str, &str)> = peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["peer_id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    assert_eq!(listed, [(b.as_str(), "agent-b")], "{peers}");

    // `to` takes the canonical id, never the display name.
    let by_name = rpc
        .call(
            "comms/send",
            json!({"session_id": a, "kind": "peer_message", "to": "agent-b", "body": "hi"}),
        )
        .await;
    assert_eq!(by_name["error"]["code"], -32602, "{by_name}");
    assert_eq!(by_name["error"]["data"]["reason"], "display_name");
    assert_eq!(by_name["error"]["data"]["candidates"], json!([b]));
    let unknown = rpc
        .call(
            "comms/send",
            json!({"session_id": a, "kind": "peer_message", "to": "nobody", "body": "hi"}),
        )
        .await;
    assert_eq!(unknown["error"]["data"]["reason"], "unknown_peer", "{unknown}");

    // A peer message is stored in b's transcript, wakes b, and b answers it.
    let receipt = rpc
        .ok(
            "comms/send",
            json!({"session_id": a, "kind": "peer_message", "to": b, "body": "Build failed in CI.", "handling_mode": "queue"}),
        )
        .await;
    // The host contract's receipt: exactly its fields; stored in b's transcript.
    let delivered = json!({"durably_resolved": {"outcome": "accepted"}});
    assert_eq!(receipt["kind"], "peer_message_sent", "{receipt}");
    assert_eq!(receipt["delivery"], delivered, "{receipt}");
    assert_eq!(receipt.as_object().unwrap().len(), 3, "no fields beyond the contract's: {receipt}");
    let answer = rpc.assistant_text(&b, "Build failed in CI.").await;
    assert_eq!(answer, format!("echo: [peer_message from agent-a ({a})]\nBuild failed in CI."));
    let history = rpc.ok("session/history", json!({"session_id": b})).await;
    let inbound = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == receipt["envelope_id"])
        .unwrap_or_else(|| panic!("message not in b's transcript: {history}"));
    assert_eq!(inbound["metadata"]["comms"]["from"], json!(a));
    assert_eq!(inbound["content"], "Build failed in CI.");

    // A lifecycle notice is recorded (it starts no turn).
    let notice = rpc
        .ok(
            "comms/send",
            json!({"session_id": a, "kind": "peer_lifecycle", "to": b, "lifecycle_kind": "mob.peer_added", "params": {"peer": "agent-c"}}),
        )
        .await;
    assert_eq!(
        (notice["kind"].clone(), notice["delivery"].clone()),
        (json!("peer_lifecycle_sent"), delivered),
        "{notice}"
    );

    // A request is answered by a response that names it; a request is answered once.
    let req = rpc
        .ok(
            "comms/send",
            json!({"session_id": a, "kind": "peer_request", "to": b, "body": "Status?"}),
        )
        .await;
    let request_id = req["request_id"].as_str().unwrap().to_owned();
    assert_eq!(
        (req["kind"].as_str(), req["interaction_id"].as_str()),
        (Some("peer_request_sent"), Some(request_id.as_str())),
        "{req}"
    );
    let wrong_way = rpc
        .call("comms/send", json!({"session_id": a, "kind": "peer_response", "to": b, "in_reply_to": request_id, "body": "x"}))
        .await;
    assert_eq!(wrong_way["error"]["data"]["reason"], "not_your_request", "{wrong_way}");
    let resp = rpc
        .ok("comms/send", json!({"session_id": b, "kind": "peer_response", "to": a, "in_reply_to": request_id, "body": "All green."}))
        .await;
    assert_eq!(resp["in_reply_to"], json!(request_id), "{resp}");
    let again = rpc
        .call("comms/send", json!({"session_id": b, "kind": "peer_response", "to": a, "in_reply_to": request_id, "body": "again"}))
        .await;
    assert_eq!(again["error"]["code"], -32009, "{again}");
    assert_eq!(again["error"]["data"]["reason"], "already_answered");
    let invented = rpc
        .call("comms/send", json!({"session_id": b, "kind": "peer_response", "to": a, "in_reply_to": "nope", "body": "x"}))
        .await;
    assert_eq!(invented["error"]["data"]["reason"], "unknown_request", "{invented}");
    let history = rpc.ok("session/history", json!({"session_id": a})).await;
    let answered = history["messages"].as_array().unwrap().iter().any(|m| {
        m["metadata"]["comms"]["in_reply_to"] == json!(request_id) && m["content"] == "All green."
    });
    assert!(answered, "the response is not in a's transcript: {history}");

    // Keep-alive sessions stay resident; an ordinary one leaves memory when idle.
    let plain = rpc.ok("session/create", json!({"prompt": "brief"})).await;
    let plain_id = plain["session_id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while rpc.ok("session/read", json!({"session_id": plain_id})).await["is_active"] == true {
        assert!(tokio::time::Instant::now() < deadline, "the ordinary session was not evicted");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for id in [&a, &b] {
        let s = rpc.ok("session/read", json!({"session_id": id})).await;
        assert_eq!(s["is_active"], true, "{s}");
    }
}

#[tokio::test]
async fn host_errors_are_json_rpc_errors_with_stable_codes_and_reasons() {
    let kernel = kernel().await;
    let mut rpc = rpc(&kernel).await;
    let unknown = rpc.call("session/read", json!({"session_id": "nope"})).await;
    // The host contract's code and number (Meerkat's), with Burrow's reason.
    assert_eq!(unknown["error"]["code"], -32001, "{unknown}");
    assert_eq!(unknown["error"]["data"]["code"], "SESSION_NOT_FOUND");
    assert_eq!(unknown["error"]["data"]["reason"], "unknown_session");
    let method = rpc.call("session/explode", json!({})).await;
    assert_eq!(method["error"]["code"], -32601, "{method}");
    let bad = rpc.call("session/create", json!({"prompt": "x", "comms_name": "no spaces"})).await;
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    assert_eq!(bad["error"]["data"]["field"], "comms_name");
    let kind = rpc
        .call(
            "session/external_event",
            json!({"session_id": "x", "kind": "xml", "event_type": "t", "payload": {}}),
        )
        .await;
    assert_eq!(kind["error"]["data"]["field"], "kind", "{kind}");
    let no_session = rpc
        .call("session/external_event", json!({"session_id": "missing", "kind": "generic_json", "event_type": "t", "payload": {}}))
        .await;
    assert_eq!(no_session["error"]["data"]["reason"], "unknown_session", "{no_session}");
    let not_peer =
        rpc.ok("session/create", json!({"prompt": "x", "initial_turn": "deferred"})).await;
    let sent = rpc
        .call("comms/send", json!({"session_id": not_peer["session_id"], "kind": "peer_message", "to": "y", "body": "z"}))
        .await;
    assert_eq!(sent["error"]["data"]["reason"], "not_a_peer", "{sent}");
    rpc.send_line("{not json").await;
    let parse = rpc.read().await;
    assert_eq!((parse["error"]["code"].clone(), parse["id"].clone()), (json!(-32700), Value::Null));
    // The connection still works after bad input.
    let list = rpc.ok("session/list", json!({})).await;
    assert!(list["sessions"].as_array().is_some_and(|s| !s.is_empty()), "{list}");
}

#[tokio::test]
async fn steer_joins_the_running_turn_and_queue_waits_for_the_next() {
    let kernel = kernel().await;
    let mut prov = kernel.hand_provider().await;
    let mut rpc = rpc(&kernel).await;
    // A session created without a turn; its first turn starts without being waited for.
    let created = rpc
        .ok("session/create", json!({"prompt": "", "keep_alive": true, "initial_turn": "deferred"}))
        .await;
    let id = created["session_id"].as_str().unwrap().to_owned();
    // Burrow's own comms.send (IPC) says which run takes an input and whether it queued.
    let app = kernel.registered_client("steerer").await;
    let first = comms_send(&app, json!({"session_id": id, "kind": "input", "body": "start"})).await;
    let first_run = first["run_id"].clone();

    let turn1 = prov.expect_method("provider.complete").await;
    assert_eq!(last_user(&turn1), "start");
    // While turn 1 is with the provider: one queued input, one steered.
    let queued = comms_send(
        &app,
        json!({"session_id": id, "kind": "input", "body": "queued one", "handling_mode": "queue"}),
    )
    .await;
    assert_eq!(queued["queued"], true, "{queued}");
    assert_ne!(queued["run_id"], first_run);
    let steered = comms_send(
        &app,
        json!({"session_id": id, "kind": "input", "body": "steered one", "handling_mode": "steer"}),
    )
    .await;
    assert_eq!(
        (steered["queued"].clone(), steered["run_id"].clone()),
        (json!(false), first_run.clone()),
        "{steered}"
    );

    prov.answer(&turn1["id"], json!({"message": {"content": "reply to start"}})).await;
    // The steered message gets a turn of the same run, before the queued one.
    let turn2 = prov.expect_method("provider.complete").await;
    assert_eq!(last_user(&turn2), "steered one");
    assert!(
        !turn2.to_string().contains("queued one"),
        "the queued input leaked into the running turn"
    );
    prov.answer(&turn2["id"], json!({"message": {"content": "reply to steer"}})).await;
    let done = rpc.ok("run/wait", json!({"run_id": first_run})).await;
    assert_eq!(
        (done["status"].clone(), done["output"].clone()),
        (json!("completed"), json!("reply to steer"))
    );

    let turn3 = prov.expect_method("provider.complete").await;
    assert_eq!(last_user(&turn3), "queued one");
    prov.answer(&turn3["id"], json!({"message": {"content": "reply to queue"}})).await;
    let done = rpc.ok("run/wait", json!({"run_id": queued["run_id"]})).await;
    assert_eq!(done["output"], "reply to queue", "{done}");
}

#[tokio::test]
async fn a_steered_run_delivers_each_answer_to_the_channel_in_order() {
    let kernel = kernel().await;
    let mut prov = kernel.hand_provider().await;
    let mut chan = kernel.hand_channel().await;
    let app = kernel.registered_client("steerer").await;

    let d = chan.call("message.dispatch", json!({"sessionKey": "chat", "content": "first"})).await;
    let run_id = d["result"]["runId"].clone();
    let turn1 = prov.expect_method("provider.complete").await;
    let steered = comms_send(
        &app,
        json!({"session_id": "chat", "kind": "input", "body": "second", "handling_mode": "steer"}),
    )
    .await;
    assert_eq!((steered["queued"].clone(), steered["run_id"].clone()), (json!(false), run_id));
    prov.answer(&turn1["id"], json!({"message": {"content": "reply to first"}})).await;
    let turn2 = prov.expect_method("provider.complete").await;
    assert_eq!(last_user(&turn2), "second");
    prov.answer(&turn2["id"], json!({"message": {"content": "reply to second"}})).await;

    // Both answers reach the channel, the second once the first is through.
    let sent = chan.expect_method("channel.send").await;
    assert_eq!(sent["params"]["content"], "reply to first", "{sent}");
    let early =
        chan.sees_within(std::time::Duration::from_millis(300), |m| m["method"] == "channel.send");
    assert!(!early.await, "the second reply went out before the first was answered");
    chan.answer(&sent["id"], json!({"messageId": "m-1"})).await;
    let sent = chan.expect_method("channel.send").await;
    assert_eq!(sent["params"]["content"], "reply to second", "{sent}");
    chan.answer(&sent["id"], json!({"messageId": "m-2"})).await;
}

#[tokio::test]
async fn a_reply_waits_for_the_channel_to_answer_the_one_before_even_across_runs() {
    let kernel = kernel().await;
    let mut prov = kernel.hand_provider().await;
    let mut chan = kernel.hand_channel().await;

    // The first run's reply goes out the moment it is stored; the channel sits on it.
    chan.call("message.dispatch", json!({"sessionKey": "slow", "content": "one"})).await;
    let turn = prov.expect_method("provider.complete").await;
    prov.answer(&turn["id"], json!({"message": {"content": "reply one"}})).await;
    let first = chan.expect_method("channel.send").await;
    assert_eq!(first["params"]["content"], "reply one", "{first}");

    // The next run ends meanwhile: its reply waits for the channel's answer.
    chan.call("message.dispatch", json!({"sessionKey": "slow", "content": "two"})).await;
    let turn = prov.expect_method("provider.complete").await;
    prov.answer(&turn["id"], json!({"message": {"content": "reply two"}})).await;
    let early =
        chan.sees_within(std::time::Duration::from_millis(300), |m| m["method"] == "channel.send");
    assert!(!early.await, "the second reply went out before the first was answered");
    chan.answer(&first["id"], json!({"messageId": "m-1"})).await;
    let second = chan.expect_method("channel.send").await;
    assert_eq!(second["params"]["content"], "reply two", "{second}");
    chan.answer(&second["id"], json!({"messageId": "m-2"})).await;

    // Once both are through, the next reply goes out at once again.
    chan.call("message.dispatch", json!({"sessionKey": "slow", "content": "three"})).await;
    let turn = prov.expect_method("provider.complete").await;
    prov.answer(&turn["id"], json!({"message": {"content": "reply three"}})).await;
    let third = chan.expect_method("channel.send").await;
    assert_eq!(third["params"]["content"], "reply three", "{third}");
}

#[tokio::test]
async fn an_external_event_is_durable_across_a_kernel_kill_and_wakes_the_session() {
    let mut kernel = kernel().await;
    let mut rpc = rpc(&kernel).await;
    // No provider yet: the session's runs wait for one.
    let created = rpc
        .ok(
            "session/create",
            json!({"prompt": "watch deploys", "keep_alive": true, "initial_turn": "deferred"}),
        )
        .await;
    let id = created["session_id"].as_str().unwrap().to_owned();
    let payload = json!({"environment": "prod", "release": "2026.04.21"});
    let receipt = rpc
        .ok(
            "session/external_event",
            json!({"session_id": id, "kind": "generic_json", "event_type": "deploy_complete", "payload": payload}),
        )
        .await;
    assert_eq!(receipt["outcome_type"], "accepted", "{receipt}");

    kernel.signal(Signal::SIGKILL);
    kernel.wait_exit(DEADLINE).await;
    kernel.restart().await;
    let mut rpc = rpc_after_restart(&kernel).await;
    let history = rpc.ok("session/history", json!({"session_id": id})).await;
    let event = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == receipt["input_id"])
        .unwrap_or_else(|| panic!("the acknowledged event is lost: {history}"))
        .clone();
    assert_eq!(event["metadata"]["external_event"]["event_type"], "deploy_complete");
    assert_eq!(serde_json::from_str::<Value>(event["content"].as_str().unwrap()).unwrap(), payload);
    let session = rpc.ok("session/read", json!({"session_id": id})).await;
    assert_eq!(session["is_active"], true, "a keep-alive session is resident after a restart");

    // The event wakes the session once a provider is there.
    let _echo = kernel.echo_provider().await;
    rpc.assistant_text(&id, "[external event deploy_complete]").await;
}

async fn rpc_after_restart(kernel: &Kernel) -> Rpc {
    Rpc::connect(kernel.endpoint("rpc_tcp").await).await
}
