//! Streamed provider answers (issue 20's first part): a provider's `{id, chunk}` frames
//! before its result reach a session's followers as `text_delta` / `tool_call_delta`
//! events, in order, while the transcript stores the whole message once.

use burrow_sdk::StreamItem;
use burrow_tests::{DEADLINE, Kernel};
use futures_util::StreamExt;
use serde_json::{Value, json};

/// The next event of a followed session.
async fn next(events: &mut burrow_sdk::CallStream) -> Value {
    match tokio::time::timeout(DEADLINE, events.next()).await {
        Ok(Some(Ok(StreamItem::Chunk(event)))) => event,
        other => panic!("no event: {other:?}"),
    }
}

/// A kernel with a hand-played provider and channel, and an idle timeout that leaves
/// them alone.
const CONFIG: &str = "[ipc]\nheartbeat_timeout_ms = 30000\n";

/// Session `key` created by a first exchange ("hi" → "hello") and followed from then on:
/// the follower and its events.
async fn followed(
    kernel: &Kernel,
    prov: &mut burrow_tests::RawConn,
    chan: &mut burrow_tests::RawConn,
    key: &str,
) -> (burrow_sdk::Client, burrow_sdk::CallStream) {
    let first = chan.call("message.dispatch", json!({"sessionKey": key, "content": "hi"})).await;
    let c = prov.expect_method("provider.complete").await;
    prov.answer(&c["id"], json!({"message": {"content": "hello"}})).await;
    let sent = chan.expect_method("channel.send").await;
    chan.answer(&sent["id"], json!({"messageId": "m-1"})).await;
    let w = chan
        .call("agent.wait", json!({"runId": first["result"]["runId"], "timeoutMs": 5000}))
        .await;
    assert_eq!(w["result"]["status"], "completed", "{w}");
    let follower = kernel.registered_client("follower").await;
    let events =
        follower.request_stream("session.events", json!({"session_id": key})).await.unwrap();
    (follower, events)
}

#[tokio::test]
async fn a_streamed_answer_reaches_followers_as_deltas_in_order_and_is_stored_whole() {
    let kernel = Kernel::start_with_config(CONFIG).await;
    let mut prov = kernel.hand_provider().await;
    let mut chan = kernel.hand_channel().await;
    // The session exists once its first message is stored; then it is followed.
    let (follower, mut events) = followed(&kernel, &mut prov, &mut chan, "s1").await;

    let d = chan.call("message.dispatch", json!({"sessionKey": "s1", "content": "tell me"})).await;
    let run_id = d["result"]["runId"].as_str().unwrap().to_owned();
    let c = prov.expect_method("provider.complete").await;
    let words = ["Once ", "upon ", "a ", "time"];
    for word in words {
        prov.send_value(&json!({"id": c["id"], "chunk": {"type": "text_delta", "text": word}}))
            .await;
    }
    let call = json!({"type": "tool_call_delta", "index": 0, "id": "c1", "name": "lookup", "arguments": "{\"q\""});
    prov.send_value(&json!({"id": c["id"], "chunk": call})).await;
    // Not a chunk the kernel knows: ignored, the stream goes on.
    prov.send_value(&json!({"id": c["id"], "chunk": {"type": "mystery"}})).await;
    prov.answer(&c["id"], json!({"message": {"content": "Once upon a time"}})).await;

    // The followers see the user's message, then every delta in order, then the reply.
    let mut texts = String::new();
    let mut seqs = Vec::new();
    let mut tool_call = None;
    loop {
        let event = next(&mut events).await;
        match event["type"].as_str() {
            Some("text_delta") => {
                assert_eq!(event["run_id"], run_id.as_str());
                assert_eq!(event["session_id"], "s1");
                texts.push_str(event["text"].as_str().unwrap());
                seqs.push(event["seq"].as_u64().unwrap());
            }
            Some("tool_call_delta") => {
                seqs.push(event["seq"].as_u64().unwrap());
                tool_call = Some(event);
            }
            Some("message") if event["role"] == "assistant" => {
                assert_eq!(event["content"], texts.as_str(), "the deltas add up to the reply");
                break;
            }
            _ => {}
        }
    }
    assert_eq!(texts, "Once upon a time");
    assert_eq!(seqs, [0, 1, 2, 3, 4], "one sequence per run, in order");
    let tool_call = tool_call.expect("the tool-call delta");
    assert_eq!(
        (tool_call["index"].as_u64(), tool_call["name"].as_str()),
        (Some(0), Some("lookup"))
    );
    assert_eq!(tool_call["arguments"], "{\"q\"");

    // The channel gets the whole reply, and the transcript holds it once.
    let send = chan.expect_method("channel.send").await;
    assert_eq!(send["params"]["content"], "Once upon a time");
    chan.answer(&send["id"], json!({"messageId": "m-2"})).await;
    let history = follower.request("session.history", json!({"key": "s1"})).await.unwrap();
    let contents: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(contents, ["hi", "hello", "tell me", "Once upon a time"]);
}

#[tokio::test]
async fn the_bundled_echo_provider_streams_its_answer_word_by_word() {
    let kernel = Kernel::start_with_config(burrow_tests::FAST_CONFIG).await;
    let _echo = kernel.echo_provider().await;
    let out = kernel.cli(&["send", "w1", "first", "--wait"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let follower = kernel.registered_client("follower").await;
    let mut events =
        follower.request_stream("session.events", json!({"session_id": "w1"})).await.unwrap();
    let out = kernel.cli(&["send", "w1", "one two  three"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut pieces = Vec::new();
    let reply = loop {
        let event = next(&mut events).await;
        match event["type"].as_str() {
            Some("text_delta") => pieces.push(event["text"].as_str().unwrap().to_owned()),
            Some("message") if event["role"] == "assistant" => break event,
            _ => {}
        }
    };
    assert_eq!(pieces, ["echo: ", "one ", "two  ", "three"]);
    assert_eq!(reply["content"], pieces.concat());
}

#[tokio::test]
async fn cancelling_a_run_mid_stream_cancels_the_providers_call() {
    let kernel = Kernel::start_with_config(CONFIG).await;
    let mut prov = kernel.hand_provider().await;
    let mut chan = kernel.hand_channel().await;
    let d = chan.call("message.dispatch", json!({"sessionKey": "x1", "content": "long"})).await;
    let run_id = d["result"]["runId"].clone();
    let c = prov.expect_method("provider.complete").await;
    prov.send_value(&json!({"id": c["id"], "chunk": {"type": "text_delta", "text": "Once "}}))
        .await;
    let cancelled = chan.call("agent.cancel", json!({"runId": run_id})).await;
    assert!(cancelled.get("error").is_none(), "{cancelled}");
    // The provider is told to stop the call it is streaming.
    let stop = prov.expect_method("$/cancel").await;
    assert_eq!(stop["params"]["id"], c["id"], "{stop}");
    assert!(stop.get("id").is_none(), "a notification: {stop}");
    let w = chan.call("agent.wait", json!({"runId": run_id, "timeoutMs": 5000})).await;
    assert_eq!(w["result"]["status"], "cancelled", "{w}");
    // A late answer changes nothing: nothing is stored or sent for it.
    prov.answer(&c["id"], json!({"message": {"content": "Once upon a time"}})).await;
    let h = chan.call("session.history", json!({"key": "x1"})).await;
    let contents: Vec<&str> = h["result"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(contents, ["long"]);
}

#[tokio::test]
async fn a_provider_that_dies_mid_stream_fails_the_run_and_followers_see_it() {
    let kernel = Kernel::start_with_config(CONFIG).await;
    let mut prov = kernel.hand_provider().await;
    let mut chan = kernel.hand_channel().await;
    // The session exists once its first message is stored; then it is followed.
    let (_follower, mut events) = followed(&kernel, &mut prov, &mut chan, "d1").await;

    let d = chan.call("message.dispatch", json!({"sessionKey": "d1", "content": "go on"})).await;
    let run_id = d["result"]["runId"].as_str().unwrap().to_owned();
    let c = prov.expect_method("provider.complete").await;
    prov.send_value(&json!({"id": c["id"], "chunk": {"type": "text_delta", "text": "Half "}}))
        .await;
    drop(prov); // The provider's process dies mid-stream.

    let (mut seen_delta, mut failed) = (false, None);
    while failed.is_none() {
        let event = next(&mut events).await;
        match event["type"].as_str() {
            Some("text_delta") => seen_delta = event["text"] == "Half ",
            Some("run") if event["run_id"] == run_id.as_str() && event["status"] == "failed" => {
                failed = Some(event)
            }
            _ => {}
        }
    }
    assert!(seen_delta, "the delta before the death reached the follower");
    let error = failed.unwrap()["error"].as_str().unwrap_or_default().to_owned();
    assert!(error.contains("CONNECTION_CLOSED"), "a clear reason: {error}");
    let w = chan.call("agent.wait", json!({"runId": run_id, "timeoutMs": 5000})).await;
    assert_eq!(w["result"]["status"], "failed", "{w}");
    // Nothing half-said is stored as the reply.
    let h = chan.call("session.history", json!({"key": "d1"})).await;
    let contents: Vec<&str> = h["result"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(contents, ["hi", "hello", "go on"]);
}

#[tokio::test]
async fn a_streaming_channel_gets_the_deltas_in_order_then_the_whole_reply() {
    let kernel = Kernel::start_with_config(CONFIG).await;
    let mut prov = kernel.hand_provider().await;
    let manifest =
        json!({"id": "live", "version": "1.0.0", "capabilities": {"channels": ["live"]}});
    let mut chan = burrow_tests::RawConn::app(&kernel.socket, manifest).await;
    let config = json!({"type": "channel", "config": {"channelId": "live", "streaming": true}});
    let r = chan.call("capability.register", config).await;
    assert_eq!(r["result"]["granted"], true, "{r}");
    let client = kernel.client().await;
    let caps = client.request("kernel.capabilities", json!({"type": "channel"})).await.unwrap();
    assert_eq!(caps["capabilities"][0]["config"]["streaming"], true, "{caps}");

    let d = chan.call("message.dispatch", json!({"sessionKey": "l1", "content": "go"})).await;
    let run_id = d["result"]["runId"].clone();
    let c = prov.expect_method("provider.complete").await;
    for word in ["Live ", "and ", "well"] {
        prov.send_value(&json!({"id": c["id"], "chunk": {"type": "text_delta", "text": word}}))
            .await;
    }
    prov.answer(&c["id"], json!({"message": {"content": "Live and well"}})).await;
    let mut seen = String::new();
    for seq in 0..3u64 {
        let delta = chan.expect_method("channel.delta").await;
        assert!(delta.get("id").is_none(), "a notification: {delta}");
        let p = &delta["params"];
        assert_eq!((p["channelId"].as_str(), p["sessionKey"].as_str()), (Some("live"), Some("l1")));
        assert_eq!((p["runId"].clone(), p["seq"].as_u64()), (run_id.clone(), Some(seq)));
        assert_eq!(p["delta"]["type"], "text_delta");
        seen.push_str(p["delta"]["text"].as_str().unwrap());
    }
    let send = chan.expect_method("channel.send").await;
    assert_eq!(send["params"]["content"], seen.as_str(), "the deltas add up to the reply");
    chan.answer(&send["id"], json!({"messageId": "m-1"})).await;

    // A channel that does not ask for deltas gets none.
    let mut plain = kernel.hand_channel().await;
    let d = plain.call("message.dispatch", json!({"sessionKey": "p1", "content": "go"})).await;
    let c = prov.expect_method("provider.complete").await;
    prov.send_value(&json!({"id": c["id"], "chunk": {"type": "text_delta", "text": "x"}})).await;
    prov.answer(&c["id"], json!({"message": {"content": "x"}})).await;
    let delivery = |v: &Value| v["method"] == "channel.send" || v["method"] == "channel.delta";
    let first = plain.expect("a delivery", delivery).await;
    assert_eq!(first["method"], "channel.send", "{first}");
    plain.answer(&first["id"], json!({"messageId": "m-2"})).await;
    let w =
        plain.call("agent.wait", json!({"runId": d["result"]["runId"], "timeoutMs": 5000})).await;
    assert_eq!(w["result"]["status"], "completed", "{w}");
}
