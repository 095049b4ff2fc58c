//! Streamed provider answers (issue 20's first part): a provider's `{id, chunk}` frames
//! before its result reach a session's followers as `text_delta` / `tool_call_delta`
//! events, in order, while the transcript stores the whole message once.

use std::time::Duration;

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
    // The follower is registered when its connection's actor takes the request: once a
    // later request of its own is answered by that actor, what follows reaches it.
    follower.config_get(None).await.unwrap();
    (follower, events)
}

/// A channel app registered with `streaming: true`, holding channel `id`.
async fn streaming_channel(kernel: &Kernel, id: &str) -> burrow_tests::RawConn {
    let manifest = json!({"id": id, "version": "1.0.0", "capabilities": {"channels": [id]}});
    let mut chan = burrow_tests::RawConn::app(&kernel.socket, manifest).await;
    let config = json!({"type": "channel", "config": {"channelId": id, "streaming": true}});
    let r = chan.call("capability.register", config).await;
    assert_eq!(r["result"]["granted"], true, "{r}");
    chan
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
async fn cancelling_a_run_mid_stream_cancels_the_providers_call_and_keeps_what_was_said() {
    let kernel = Kernel::start_with_config(CONFIG).await;
    let mut prov = kernel.hand_provider().await;
    let mut chan = streaming_channel(&kernel, "live").await;
    let d = chan.call("message.dispatch", json!({"sessionKey": "x1", "content": "long"})).await;
    let run_id = d["result"]["runId"].clone();
    let c = prov.expect_method("provider.complete").await;
    for word in ["Once ", "upon "] {
        prov.send_value(&json!({"id": c["id"], "chunk": {"type": "text_delta", "text": word}}))
            .await;
    }
    // The channel shows the pieces as they come.
    for seq in 0..2u64 {
        let delta = chan.expect_method("channel.delta").await;
        assert_eq!(delta["params"]["seq"], seq, "{delta}");
    }
    let cancelled = chan.call("agent.cancel", json!({"runId": run_id})).await;
    assert!(cancelled.get("error").is_none(), "{cancelled}");
    // The provider is told to stop the call it is streaming.
    let stop = prov.expect_method("$/cancel").await;
    assert_eq!(stop["params"]["id"], c["id"], "{stop}");
    assert!(stop.get("id").is_none(), "a notification: {stop}");
    // The channel is told no reply follows what it showed.
    let end = chan.expect_method("channel.stream_end").await;
    assert!(end.get("id").is_none(), "a notification: {end}");
    let p = &end["params"];
    assert_eq!((p["channelId"].as_str(), p["sessionKey"].as_str()), (Some("live"), Some("x1")));
    assert_eq!((p["runId"].clone(), p["reason"].as_str()), (run_id.clone(), Some("cancelled")));
    let w = chan.call("agent.wait", json!({"runId": run_id, "timeoutMs": 5000})).await;
    assert_eq!(w["result"]["status"], "cancelled", "{w}");
    // A late answer changes nothing: no reply is sent, and the transcript keeps what had
    // been said when the run was cut short, marked as such.
    prov.answer(&c["id"], json!({"message": {"content": "Once upon a time"}})).await;
    let h = chan.call("session.history", json!({"key": "x1"})).await;
    let messages = h["result"]["messages"].as_array().unwrap();
    let contents: Vec<&str> = messages.iter().filter_map(|m| m["content"].as_str()).collect();
    assert_eq!(contents, ["long", "Once upon "]);
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(messages[1]["metadata"]["cutShort"], "cancelled", "{}", messages[1]);
    let sent = chan.sees_within(Duration::from_millis(300), |v| v["method"] == "channel.send");
    assert!(!sent.await, "no reply is sent for a cancelled run");
}

#[tokio::test]
async fn a_provider_that_dies_mid_stream_fails_the_run_and_followers_see_it() {
    let kernel = Kernel::start_with_config(CONFIG).await;
    let mut prov = kernel.hand_provider().await;
    let mut chan = streaming_channel(&kernel, "live").await;
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
    // The streaming channel had the piece, then hears that no reply follows it.
    let delta = chan.expect_method("channel.delta").await;
    assert_eq!(delta["params"]["delta"]["text"], "Half ", "{delta}");
    let end = chan.expect_method("channel.stream_end").await;
    assert_eq!(end["params"]["reason"], "failed", "{end}");
    assert_eq!(end["params"]["runId"], run_id.as_str(), "{end}");
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
    let mut chan = streaming_channel(&kernel, "live").await;
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

/// An app that intercepts `event`.
async fn interceptor(kernel: &Kernel, id: &str, event: &str) -> burrow_tests::RawConn {
    let m = json!({"id": id, "version": "1.0.0", "capabilities": {"hooks": {"subscribe": [event, "llm_output"], "intercept": [event]}}});
    let mut app = burrow_tests::RawConn::app(&kernel.socket, m).await;
    let r = app.call("hook.subscribe", json!({"events": [event, "llm_output"]})).await;
    assert!(r.get("error").is_none(), "{r}");
    let r =
        app.call("capability.register", json!({"type": "hook", "config": {"event": event}})).await;
    assert_eq!(r["result"]["granted"], true, "{r}");
    app
}

/// Streams `words` as the answer to provider call `c`, then answers it whole.
async fn streamed(prov: &mut burrow_tests::RawConn, c: Value, words: &[&str]) {
    for word in words {
        let chunk = json!({"id": c["id"], "chunk": {"type": "text_delta", "text": word}});
        prov.send_value(&chunk).await;
    }
    prov.answer(&c["id"], json!({"message": {"content": words.concat()}})).await;
}

/// Answers the next interception of `message_sending` with `result`, after checking it
/// holds the whole reply `whole`.
async fn decide_sending(hooks: &mut burrow_tests::RawConn, whole: &str, result: Value) {
    let ev = hooks
        .expect("message_sending", |v| {
            v["method"] == "hook.event" && v["params"]["event"] == "message_sending"
        })
        .await;
    assert_eq!(ev["params"]["payload"]["content"], whole, "{ev}");
    let r = hooks
        .call("hook.result", json!({"eventId": ev["params"]["eventId"], "result": result}))
        .await;
    assert!(r.get("error").is_none(), "{r}");
}

#[tokio::test]
async fn interceptors_see_streamed_replies_whole_and_the_channel_is_told_what_they_decided() {
    let kernel = Kernel::start_with_config(CONFIG).await;
    let mut prov = kernel.hand_provider().await;
    let mut chan = streaming_channel(&kernel, "live").await;
    let mut hooks = interceptor(&kernel, "guard", "message_sending").await;
    // A reply an interceptor changes: the channel had the pieces as produced, then the
    // send of what the interceptor made of the whole.
    let d = chan.call("message.dispatch", json!({"sessionKey": "i1", "content": "pw?"})).await;
    let c = prov.expect_method("provider.complete").await;
    streamed(&mut prov, c, &["it is ", "hunter2"]).await;
    // `llm_output` observers see the whole message, not the pieces.
    let out = hooks.expect("llm_output", |v| v["params"]["event"] == "llm_output").await;
    assert_eq!(out["params"]["payload"]["message"]["content"], "it is hunter2", "{out}");
    decide_sending(
        &mut hooks,
        "it is hunter2",
        json!({"action": "modify", "payload": {"content": "it is ***"}}),
    )
    .await;
    let mut pieces = String::new();
    for _ in 0..2 {
        let delta = chan.expect_method("channel.delta").await;
        pieces.push_str(delta["params"]["delta"]["text"].as_str().unwrap());
    }
    assert_eq!(pieces, "it is hunter2");
    let send = chan.expect_method("channel.send").await;
    assert_eq!(send["params"]["content"], "it is ***", "{send}");
    chan.answer(&send["id"], json!({"messageId": "m-1"})).await;
    let w =
        chan.call("agent.wait", json!({"runId": d["result"]["runId"], "timeoutMs": 5000})).await;
    assert_eq!(w["result"]["status"], "completed", "{w}");

    // A reply an interceptor blocks: no send, and the channel is told so.
    let d = chan.call("message.dispatch", json!({"sessionKey": "i1", "content": "again"})).await;
    let run_id = d["result"]["runId"].clone();
    let c = prov.expect_method("provider.complete").await;
    streamed(&mut prov, c, &["still ", "hunter2"]).await;
    decide_sending(&mut hooks, "still hunter2", json!({"action": "block", "reason": "leak"})).await;
    let end = chan.expect_method("channel.stream_end").await;
    assert_eq!(
        (end["params"]["runId"].clone(), end["params"]["reason"].as_str()),
        (run_id, Some("blocked"))
    );
    let sent = chan.sees_within(Duration::from_millis(300), |v| v["method"] == "channel.send");
    assert!(!sent.await, "a blocked reply is not sent");
}

#[tokio::test]
async fn slow_subscribers_never_hold_up_the_run() {
    const PIECES: usize = 1024;
    // Small queues, so that the subscribers below fall behind quickly.
    let config = format!("{CONFIG}writer_queue_bytes = 65536\n");
    let kernel = Kernel::start_with(&config, &["--http", "127.0.0.1:0"]).await;
    let mut prov = kernel.hand_provider().await;
    let mut chan = streaming_channel(&kernel, "slow").await;
    // The session exists once its first message is stored.
    let first = chan.call("message.dispatch", json!({"sessionKey": "s", "content": "hi"})).await;
    let c = prov.expect_method("provider.complete").await;
    prov.answer(&c["id"], json!({"message": {"content": "hello"}})).await;
    let sent = chan.expect_method("channel.send").await;
    chan.answer(&sent["id"], json!({})).await;
    let w = chan
        .call("agent.wait", json!({"runId": first["result"]["runId"], "timeoutMs": 5000}))
        .await;
    assert_eq!(w["result"]["status"], "completed", "{w}");
    // An SSE client that reads nothing after its request, and a follower over IPC that
    // takes none of its events.
    let addr = kernel.endpoint("http").await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut sse = socket.connect(addr).await.unwrap();
    let request = format!(
        "GET /sessions/s/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    );
    tokio::io::AsyncWriteExt::write_all(&mut sse, request.as_bytes()).await.unwrap();
    let follower = kernel.registered_client("follower").await;
    let events = follower.session_events("s").await.unwrap();

    // The next reply streams to the channel, which reads nothing from now on either.
    let d = chan.call("message.dispatch", json!({"sessionKey": "s", "content": "go"})).await;
    let run_id = d["result"]["runId"].as_str().unwrap().to_owned();
    let c = prov.expect_method("provider.complete").await;
    // 4 MiB of pieces: far more than the queues and the sockets' buffers hold.
    let piece = "x".repeat(4096);
    for _ in 0..PIECES {
        prov.send_value(&json!({"id": c["id"], "chunk": {"type": "text_delta", "text": piece}}))
            .await;
    }
    prov.answer(&c["id"], json!({"message": {"content": "done"}})).await;
    // The run ends though nobody read its pieces.
    let waiter = kernel.registered_client("waiter").await;
    let w =
        waiter.request("agent.wait", json!({"runId": run_id, "timeoutMs": 20000})).await.unwrap();
    assert_eq!(w["status"], "completed", "{w}");
    drop(events);
    // The SSE client, reading at last, finds its stream ended by a `stream_truncated`
    // event.
    let lagged = tokio::time::timeout(DEADLINE, async {
        let mut tail = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = tokio::io::AsyncReadExt::read(&mut sse, &mut buf).await.unwrap_or(0);
            if n == 0 {
                return false;
            }
            tail.extend_from_slice(&buf[..n]);
            let needle = b"event: stream_truncated";
            if tail.windows(needle.len()).any(|w| w == needle) {
                return true;
            }
            let keep = tail.len().saturating_sub(16);
            tail.drain(..keep);
        }
    });
    assert!(lagged.await.unwrap_or(false), "the slow SSE client is told it lagged");
    // The slow channel still gets the whole reply once it reads: the pieces it could
    // not take were dropped, in order, not queued without bound.
    let mut seqs = Vec::new();
    let send = loop {
        let v = chan.recv_json().await;
        match v["method"].as_str() {
            Some("channel.delta") => seqs.push(v["params"]["seq"].as_u64().unwrap()),
            Some("channel.send") => break v,
            _ => {}
        }
    };
    assert_eq!(send["params"]["content"], "done", "{send}");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order");
    assert!(seqs.len() < PIECES, "pieces beyond the bound were dropped, not queued");
}

/// A fake OpenAI-compatible server on loopback that answers each chat completion with
/// server-sent events: `first` at once, then, once told (`go`), `rest` and the end.
async fn sse_model_server(
    first: &'static str,
    rest: &'static str,
) -> (std::net::SocketAddr, tokio::sync::mpsc::UnboundedSender<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (go, mut told) = tokio::sync::mpsc::unbounded_channel::<()>();
    tokio::spawn(async move {
        // At most a few requests, each read to the end of its body.
        for _ in 0..4 {
            let Ok((mut conn, _)) = listener.accept().await else { return };
            let mut request = Vec::new();
            let mut buf = [0u8; 8192];
            let complete = |r: &[u8]| {
                let text = String::from_utf8_lossy(r);
                let Some(head_end) = text.find("\r\n\r\n") else { return false };
                let length = text[..head_end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    })
                    .unwrap_or(0);
                r.len() >= head_end + 4 + length
            };
            while !complete(&request) {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let event = |delta: Value, finish: Value| {
                let chunk = json!({"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
                format!("data: {chunk}\n\n")
            };
            let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n";
            let opening = event(json!({"role": "assistant", "content": first}), Value::Null);
            let _ = conn.write_all(format!("{head}{opening}").as_bytes()).await;
            if told.recv().await.is_none() {
                return;
            }
            let usage = json!({"id": "c", "object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}});
            let end = format!(
                "{}{}data: {usage}\n\ndata: [DONE]\n\n",
                event(json!({"content": rest}), Value::Null),
                event(json!({}), json!("stop"))
            );
            let _ = conn.write_all(end.as_bytes()).await;
            let _ = conn.shutdown().await;
        }
    });
    (addr, go)
}

#[tokio::test]
async fn burrow_chat_shows_an_openai_compatible_servers_answer_as_it_is_streamed() {
    let (addr, go) = sse_model_server("Hel", "lo there").await;
    let config = format!(
        "{CONFIG}[apps.openai-provider]\nbase_url = \"http://{addr}/v1\"\nmodel = \"m\"\n\
         [agents.main]\nprovider = \"openai\"\nmodel = \"default\"\n"
    );
    let kernel = Kernel::start_with_config(&config).await;
    let mut provider = kernel.example("openai-provider", "openai-provider", &[]);
    provider.wait_line("ready as openai-provider").await;
    let mut chat = tokio::process::Command::new(burrow_tests::bin("burrow"))
        .args(["chat", "o1"])
        .env("BURROW_SOCKET", &kernel.socket)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = chat.stdin.take().unwrap();
    let mut stdout = chat.stdout.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, b"say hello\n").await.unwrap();
    // What the server has sent so far shows before the rest is even sent.
    let mut seen = String::new();
    let mut read_until = async |needle: &str| {
        let found = tokio::time::timeout(DEADLINE, async {
            let mut buf = [0u8; 1024];
            while !seen.contains(needle) {
                match tokio::io::AsyncReadExt::read(&mut stdout, &mut buf).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
            true
        });
        assert!(
            found.await.unwrap_or(false),
            "no {needle:?} in {seen:?}; kernel log:\n{}",
            kernel.log()
        );
        seen.clone()
    };
    let early = read_until("agent: Hel").await;
    assert!(!early.contains("Hello there"), "{early}");
    go.send(()).unwrap();
    read_until("agent: Hello there\n").await;
    tokio::io::AsyncWriteExt::write_all(&mut stdin, b"/quit\n").await.unwrap();
    let status = tokio::time::timeout(DEADLINE, chat.wait()).await.expect("chat exits").unwrap();
    assert!(status.success(), "{status:?}");
    // The transcript holds the whole answer once.
    let history = kernel.cli(&["history", "o1", "--json"]).await;
    let history: Value = serde_json::from_slice(&history.stdout).unwrap();
    let answers: Vec<&Value> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "assistant")
        .collect();
    assert_eq!(answers.len(), 1, "{history}");
    assert_eq!(answers[0]["content"], "Hello there");
}

#[tokio::test]
async fn an_sse_client_gets_every_delta_in_order_and_they_add_up_to_the_stored_reply() {
    let kernel = Kernel::start_with(CONFIG, &["--http", "127.0.0.1:0"]).await;
    let mut prov = kernel.hand_provider().await;
    let mut chan = kernel.hand_channel().await;
    let (_follower, _events) = followed(&kernel, &mut prov, &mut chan, "e1").await;
    let base = format!("http://{}", kernel.endpoint("http").await);
    let mut sse =
        burrow_tests::http_client().get(format!("{base}/sessions/e1/events")).send().await.unwrap();
    assert_eq!(sse.status(), 200);

    let d = chan.call("message.dispatch", json!({"sessionKey": "e1", "content": "count"})).await;
    let run_id = d["result"]["runId"].as_str().unwrap().to_owned();
    let c = prov.expect_method("provider.complete").await;
    let words: Vec<String> = (0..200).map(|n| format!("{n} ")).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    streamed(&mut prov, c, &words).await;
    let sent = chan.expect_method("channel.send").await;
    chan.answer(&sent["id"], json!({})).await;

    // Read the events (`event:` then `data:` lines: the host contract's envelopes) until
    // the run's end.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let (mut buffer, mut deltas, mut seqs) = (String::new(), String::new(), Vec::new());
    let (mut run, mut reply) = (Value::Null, Value::Null);
    'read: loop {
        let chunk = tokio::time::timeout_at(deadline, sse.chunk()).await.expect("events in time");
        buffer.push_str(&String::from_utf8_lossy(&chunk.unwrap().expect("the stream goes on")));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) else { continue };
            let event: Value = serde_json::from_str(data).unwrap();
            let name = event["payload"]["type"].as_str().or(event["type"].as_str());
            assert!(block.contains(&format!("event: {}", name.unwrap_or_default())), "{block}");
            if let Some(seq) = event["seq"].as_u64() {
                seqs.push(seq);
            }
            let payload = &event["payload"];
            match name {
                Some("session_loaded") => assert_eq!(event["session_id"], "e1"),
                Some("run_started") => run = payload["identity"]["run_id"].clone(),
                Some("text_delta") => deltas.push_str(payload["delta"].as_str().unwrap()),
                Some("text_complete") => reply = payload["content"].clone(),
                Some("run_completed") => break 'read,
                _ => {}
            }
        }
    }
    assert_eq!(run, run_id.as_str());
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<u64>>(), "every event, in order");
    assert!(seqs.len() > 200, "200 deltas and the run's other steps");
    assert_eq!(reply, deltas.as_str(), "the deltas add up to the reply");
    let stored = chan.call("session.history", json!({"key": "e1"})).await;
    let last = stored["result"]["messages"].as_array().unwrap().last().cloned().unwrap();
    assert_eq!(last["content"], deltas.as_str(), "and to the stored reply: {last}");
}
