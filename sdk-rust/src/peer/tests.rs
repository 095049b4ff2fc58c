use std::time::Duration;

use burrow_protocol::codec;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const WAIT: Duration = Duration::from_secs(10);

/// Bounds every wait of a test.
async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future).await.expect("timed out")
}

/// The next message the raw far side reads.
async fn next_message(t: &mut Transport) -> Message {
    within(t.reader.next())
        .await
        .expect("stream ended")
        .expect("read failed")
        .expect("undecodable frame")
}

/// Echoes params back after yielding a number of times taken from them, so answers
/// overtake each other.
struct Echo;

impl Service for Echo {
    fn request(
        &self,
        request: Request,
        _client: Client,
    ) -> BoxFuture<std::result::Result<Value, ErrorObject>> {
        Box::pin(async move {
            match request.method.as_str() {
                "echo" => {
                    let spins = request.params["n"].as_u64().unwrap_or(0) % 7;
                    for _ in 0..spins {
                        tokio::task::yield_now().await;
                    }
                    Ok(request.params)
                }
                "panic" => panic!("handler bug"),
                "forever" => {
                    // Tells the test it started; never answers.
                    let started = request.params["started"].as_str().unwrap_or_default().to_owned();
                    STARTED.lock().unwrap().push(started.clone());
                    let _dropped = Dropped(started);
                    std::future::pending::<()>().await;
                    unreachable!()
                }
                "huge" => Ok(json!("x".repeat(codec::MAX_FRAME_BYTES + 1))),
                other => Err(method_not_found(other)),
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_pipelined_requests_correlate() {
    let (a, b) = Transport::memory_pair();
    let client = Client::from_transport(a);
    let _server = Client::with_service(b, Echo);
    let calls = (0..1000u64).map(|n| {
        let client = client.clone();
        tokio::spawn(async move {
            let answer = client.request("echo", json!({ "n": n })).await.unwrap();
            assert_eq!(answer, json!({ "n": n }));
        })
    });
    let calls: Vec<_> = calls.collect();
    for call in calls {
        within(call).await.unwrap();
    }
}

#[tokio::test]
async fn remote_errors_panics_and_unsendable_messages_are_answers() {
    let (a, b) = Transport::memory_pair();
    let client = Client::from_transport(a);
    let _server = Client::with_service(b, Echo);
    let err = within(client.request("nope", json!({}))).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::MethodNotFound));
    let err = within(client.request("panic", json!({}))).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InternalError));
    let err = within(client.request("huge", json!({}))).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InternalError));
    let huge = json!("x".repeat(codec::MAX_FRAME_BYTES + 1));
    let err = within(client.request("echo", huge)).await.unwrap_err();
    assert!(matches!(err, Error::Protocol(_)), "{err:?}");
    // Still serving.
    let ok = within(client.request("echo", json!({"n": 1}))).await.unwrap();
    assert_eq!(ok, json!({"n": 1}));
}

/// Records its name in [`DROPPED`] when dropped.
struct Dropped(String);

static DROPPED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
static STARTED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

impl Drop for Dropped {
    fn drop(&mut self) {
        DROPPED.lock().unwrap().push(std::mem::take(&mut self.0));
    }
}

#[tokio::test]
async fn the_far_sides_cancel_drops_the_handler_and_answers_cancelled() {
    let (a, mut raw) = Transport::memory_pair();
    let _server = Client::with_service(a, Echo);
    raw.writer.send(Message::request(5u64, "forever", json!({"started": "h5"}))).await.unwrap();
    raw.writer.send(Message::request(6u64, "forever", json!({"started": "h6"}))).await.unwrap();
    let started =
        || STARTED.lock().unwrap().iter().filter(|s| ["h5", "h6"].contains(&s.as_str())).count();
    within(async {
        while started() < 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    // A cancel for an id not being served, and a malformed one, change nothing.
    raw.writer.send(Message::notification("$/cancel", json!({"id": 99}))).await.unwrap();
    raw.writer.send(Message::notification("$/cancel", json!({"nope": 1}))).await.unwrap();
    raw.writer.send(Message::notification("$/cancel", json!({"id": 5}))).await.unwrap();
    let Message::Response(r) = next_message(&mut raw).await else { panic!("expected an answer") };
    assert_eq!(r.id, Some(Id::Num(5)));
    let err = r.outcome.unwrap_err();
    assert_eq!(
        (err.code, err.data.unwrap()["reason"].clone()),
        (ErrorCode::UnknownError, json!("cancelled"))
    );
    assert!(DROPPED.lock().unwrap().contains(&"h5".to_owned()), "the handler was dropped");
    assert!(!DROPPED.lock().unwrap().contains(&"h6".to_owned()), "the other goes on");
    // The connection goes on serving.
    raw.writer.send(Message::request(7u64, "echo", json!({"n": 0}))).await.unwrap();
    let Message::Response(r) = next_message(&mut raw).await else { panic!("expected an answer") };
    assert_eq!((r.id, r.outcome.unwrap()), (Some(Id::Num(7)), json!({"n": 0})));
}

#[tokio::test]
async fn a_plain_client_answers_method_not_found() {
    let (a, mut raw) = Transport::memory_pair();
    let _client = Client::from_transport(a);
    raw.writer.send(Message::request(7u64, "tool.invoke", json!({}))).await.unwrap();
    let Message::Response(r) = next_message(&mut raw).await else { panic!("expected a response") };
    assert_eq!(r.id, Some(Id::Num(7)));
    assert_eq!(r.outcome.unwrap_err().code, ErrorCode::MethodNotFound);
}

#[tokio::test]
async fn pending_calls_fail_with_closed_when_the_far_side_drops() {
    let (a, mut raw) = Transport::memory_pair();
    let client = Client::from_transport(a);
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.request("slow", json!({})).await })
        })
        .collect();
    for _ in 0..3 {
        assert!(matches!(next_message(&mut raw).await, Message::Request(_)));
    }
    drop(raw);
    for call in calls {
        assert!(matches!(within(call).await.unwrap(), Err(Error::Closed)));
    }
    within(client.closed()).await;
    assert!(client.is_closed());
    let after = within(client.request("late", json!({}))).await;
    assert!(matches!(after, Err(Error::Closed)));
}

#[tokio::test]
async fn timeout_forgets_the_request_and_cancels_it() {
    let (a, mut raw) = Transport::memory_pair();
    let client = Client::from_transport(a);
    let err = client
        .request_with_timeout("slow", json!({}), Duration::from_millis(20))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout));
    assert_eq!(err.code(), Some(ErrorCode::Timeout));
    let Message::Request(request) = next_message(&mut raw).await else {
        panic!("expected the request")
    };
    let Message::Notification(cancel) = next_message(&mut raw).await else {
        panic!("expected $/cancel")
    };
    assert_eq!(cancel.method, "$/cancel");
    assert_eq!(Id::from_value(&cancel.params["id"]), Some(request.id.clone()));
    // A late answer is ignored; the connection still works.
    raw.writer.send(Message::success(request.id, json!("late"))).await.unwrap();
    let next = tokio::spawn({
        let client = client.clone();
        async move { client.request("again", json!({})).await }
    });
    let Message::Request(again) = next_message(&mut raw).await else {
        panic!("expected the second request")
    };
    raw.writer.send(Message::success(again.id, json!("fresh"))).await.unwrap();
    assert_eq!(within(next).await.unwrap().unwrap(), json!("fresh"));
}

#[tokio::test]
async fn dropping_a_pending_request_cancels_it_and_an_answered_one_does_not() {
    let (a, mut raw) = Transport::memory_pair();
    let client = Client::from_transport(a);
    let answered = tokio::spawn({
        let client = client.clone();
        async move { client.request("quick", json!({})).await }
    });
    let Message::Request(quick) = next_message(&mut raw).await else {
        panic!("expected the first request")
    };
    raw.writer.send(Message::success(quick.id, json!("done"))).await.unwrap();
    assert_eq!(within(answered).await.unwrap().unwrap(), json!("done"));
    let pending = tokio::spawn({
        let client = client.clone();
        async move { client.request("slow", json!({})).await }
    });
    let Message::Request(slow) = next_message(&mut raw).await else {
        panic!("expected the second request")
    };
    pending.abort();
    // The next frame is the slow request's `$/cancel`: none was sent for the answered one.
    let Message::Notification(cancel) = next_message(&mut raw).await else {
        panic!("expected $/cancel")
    };
    assert_eq!(cancel.method, "$/cancel");
    assert_eq!(Id::from_value(&cancel.params["id"]), Some(slow.id));
}

#[tokio::test]
async fn streams_yield_chunks_then_the_result() {
    let (a, mut raw) = Transport::memory_pair();
    let client = Client::from_transport(a);
    let mut stream = within(client.request_stream("config.watch", json!({}))).await.unwrap();
    let Message::Request(request) = next_message(&mut raw).await else {
        panic!("expected the request")
    };
    for n in 0..3 {
        raw.writer.send(Message::chunk(request.id.clone(), json!(n))).await.unwrap();
    }
    raw.writer.send(Message::success(request.id, json!({"ended": "cancelled"}))).await.unwrap();
    for n in 0..3 {
        let item = within(stream.next()).await.unwrap().unwrap();
        assert_eq!(item, StreamItem::Chunk(json!(n)));
    }
    let end = within(stream.next()).await.unwrap().unwrap();
    assert_eq!(end, StreamItem::End(json!({"ended": "cancelled"})));
    assert!(within(stream.next()).await.is_none());
}

#[tokio::test]
async fn dropping_a_stream_cancels_it() {
    let (a, mut raw) = Transport::memory_pair();
    let client = Client::from_transport(a);
    let stream = within(client.request_stream("config.watch", json!({}))).await.unwrap();
    let id = stream.id();
    drop(stream);
    assert!(matches!(next_message(&mut raw).await, Message::Request(_)));
    let Message::Notification(cancel) = next_message(&mut raw).await else {
        panic!("expected $/cancel")
    };
    assert_eq!(cancel.params, json!({ "id": id }));
}

#[tokio::test]
async fn a_bad_frame_is_answered_and_the_connection_stays() {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (r, w) = tokio::io::split(ours);
    let client = Client::from_transport(Transport::new(r, w, codec::MAX_FRAME_BYTES));
    let (mut raw_r, mut raw_w) = tokio::io::split(theirs);
    // A frame holding a MessagePack array, not a map.
    raw_w.write_all(&[0, 0, 0, 2, 0x91, 0x01]).await.unwrap();
    let mut header = [0u8; 4];
    within(raw_r.read_exact(&mut header)).await.unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
    within(raw_r.read_exact(&mut body)).await.unwrap();
    let Message::Response(r) = codec::decode_body(&body).unwrap() else {
        panic!("expected an error response")
    };
    assert_eq!(r.id, None);
    assert_eq!(r.outcome.unwrap_err().code, ErrorCode::InvalidRequest);
    assert!(!client.is_closed());
}

#[tokio::test]
async fn dropping_every_handle_closes_the_connection() {
    let (a, mut raw) = Transport::memory_pair();
    let client = Client::from_transport(a);
    let clone = client.clone();
    drop(client);
    drop(clone);
    assert!(within(raw.reader.next()).await.is_none());
}

/// Answers once released, telling when a request started.
struct Gate {
    started: mpsc::Sender<()>,
    release: Arc<tokio::sync::Semaphore>,
}

impl Service for Gate {
    fn request(
        &self,
        _request: Request,
        _client: Client,
    ) -> BoxFuture<std::result::Result<Value, ErrorObject>> {
        let started = self.started.clone();
        let release = self.release.clone();
        Box::pin(async move {
            let _ = started.send(()).await;
            let _permit = release.acquire().await;
            Ok(json!("done"))
        })
    }
}

#[tokio::test]
async fn close_waits_for_answers_in_flight_and_flushes_them() {
    let (a, mut raw) = Transport::memory_pair();
    let (started_tx, mut started) = mpsc::channel(1);
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let server = Client::with_service(a, Gate { started: started_tx, release: release.clone() });
    raw.writer.send(Message::request(1u64, "work", json!({}))).await.unwrap();
    within(started.recv()).await.unwrap();
    let closing = tokio::spawn({
        let server = server.clone();
        async move { server.close(WAIT).await }
    });
    // Handlers still at work may call the far side while the close waits for them.
    let call = tokio::spawn({
        let server = server.clone();
        async move { server.request("lookup", json!({})).await }
    });
    let Message::Request(lookup) = next_message(&mut raw).await else {
        panic!("expected the handler's request")
    };
    raw.writer.send(Message::success(lookup.id, json!("found"))).await.unwrap();
    assert_eq!(within(call).await.unwrap().unwrap(), json!("found"));
    release.add_permits(1);
    within(closing).await.unwrap();
    let Message::Response(r) = next_message(&mut raw).await else { panic!("expected the answer") };
    assert_eq!(r.outcome.unwrap(), json!("done"));
    assert!(within(raw.reader.next()).await.is_none());
    assert!(server.is_closed());
    let after = server.request("x", json!({})).await;
    assert!(matches!(after, Err(Error::Shutdown)), "{after:?}");
}

#[tokio::test]
async fn an_answer_this_side_cannot_read_fails_its_call_at_once() {
    let (a, mut raw) = Transport::memory_pair();
    let client = Client::from_transport(a);
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.request("tool.call", json!({})).await }
    });
    let Message::Request(req) = next_message(&mut raw).await else { panic!("a request") };
    let Id::Num(id @ 0..=127) = req.id else { panic!("{:?}", req.id) };
    // `{"id": id, "result": <bin>}`: binary values are not part of the contract.
    let body =
        [0x82, 0xa2, b'i', b'd', id as u8, 0xa6, b'r', b'e', b's', b'u', b'l', b't', 0xc4, 1, 0];
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    raw.writer.get_mut().write_all(&frame).await.unwrap();
    let outcome = within(call).await.unwrap();
    assert!(
        matches!(&outcome, Err(Error::Protocol(why)) if why.contains("could not be read")),
        "{outcome:?}"
    );
    // The far side hears of it without the id, which is this side's.
    let Message::Response(r) = next_message(&mut raw).await else { panic!("a response") };
    assert_eq!(r.id, None);
    assert_eq!(r.outcome.unwrap_err().code, ErrorCode::InvalidRequest);
}

/// A MessagePack map of `members`, each a short key and its value's bytes, in a frame.
fn raw_frame(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = vec![0x80 | members.len() as u8];
    for (key, value) in members {
        body.push(0xa0 | key.len() as u8);
        body.extend_from_slice(key.as_bytes());
        body.extend_from_slice(value);
    }
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// `{"v": [1, NaN]}`, the NaN a MessagePack float64.
const V_NAN: &[u8] = &[0x81, 0xa1, b'v', 0x92, 0x01, 0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0];

#[tokio::test]
async fn an_answer_holding_a_nan_fails_its_call_rather_than_reading_as_null() {
    let (a, mut raw) = Transport::memory_pair();
    let client = Client::from_transport(a);
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.request("tool.call", json!({})).await }
    });
    let Message::Request(req) = next_message(&mut raw).await else { panic!("a request") };
    let Id::Num(id @ 0..=127) = req.id else { panic!("{:?}", req.id) };
    let frame = raw_frame(&[("id", &[id as u8]), ("result", V_NAN)]);
    raw.writer.get_mut().write_all(&frame).await.unwrap();
    let outcome = within(call).await.unwrap();
    assert!(
        matches!(&outcome, Err(Error::Protocol(why)) if why.contains("NaN at `result.v[1]`")),
        "{outcome:?}"
    );
    // The far side hears of it without the id, which is this side's.
    let Message::Response(r) = next_message(&mut raw).await else { panic!("a response") };
    assert_eq!(r.id, None);
    let e = r.outcome.unwrap_err();
    assert_eq!((e.code, e.data), (ErrorCode::InvalidRequest, Some(json!({"path": "result.v[1]"}))));
}

#[tokio::test]
async fn a_request_holding_a_nan_is_invalid_params_and_never_reaches_the_service() {
    let (a, mut raw) = Transport::memory_pair();
    let _server = Client::with_service(a, Echo);
    // `echo` would answer its params back, the NaN as null.
    let frame = raw_frame(&[("id", &[0x07]), ("method", b"\xa4echo"), ("params", V_NAN)]);
    raw.writer.get_mut().write_all(&frame).await.unwrap();
    let Message::Response(r) = next_message(&mut raw).await else { panic!("a response") };
    assert_eq!(r.id, Some(Id::Num(7)));
    let e = r.outcome.unwrap_err();
    assert_eq!((e.code, e.data), (ErrorCode::InvalidParams, Some(json!({"field": "v[1]"}))));
    assert!(e.message.contains("NaN at `params.v[1]`"), "{}", e.message);
    // The connection goes on.
    raw.writer.send(Message::request(8u64, "echo", json!({"v": 1.5}))).await.unwrap();
    let Message::Response(r) = next_message(&mut raw).await else { panic!("a response") };
    assert_eq!((r.id, r.outcome), (Some(Id::Num(8)), Ok(json!({"v": 1.5}))));
}
