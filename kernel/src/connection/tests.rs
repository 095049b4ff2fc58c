use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;

use super::*;
use burrow_protocol::Id;

/// A connection whose frames may be at most `max_frame_bytes`, and the far side's
/// transport (with a generous limit of its own).
fn pair(max_frame_bytes: usize, answer: Value) -> (Connection, Transport) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    let limits = Limits::small(max_frame_bytes);
    let conn = Connection::spawn(
        1,
        Transport::new(ar, aw, max_frame_bytes),
        limits,
        &TaskTracker::new(),
        move |inbound| {
            if let Inbound::Request(_, responder, _) = inbound {
                responder.reply(Ok(answer.clone()));
            }
            true
        },
    );
    (conn, Transport::new(br, bw, 1 << 20))
}

/// A connection with `limits` over a pipe of `pipe` bytes whose owner hands every
/// request to the returned channel; the far side's transport.
fn held(
    limits: Limits,
    pipe: usize,
) -> (Connection, Transport, tokio::sync::mpsc::UnboundedReceiver<Responder>) {
    let (a, b) = tokio::io::duplex(pipe);
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let conn = Connection::spawn(
        1,
        Transport::new(ar, aw, limits.max_frame_bytes),
        limits,
        &TaskTracker::new(),
        move |inbound| {
            if let Inbound::Request(_, responder, _) = inbound {
                let _ = tx.send(responder);
            }
            true
        },
    );
    (conn, Transport::new(br, bw, 1 << 20), rx)
}

async fn paused(conn: &Connection, want: bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while conn.reading_paused() != want {
        assert!(tokio::time::Instant::now() < deadline, "reading_paused never became {want}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_full_writer_queue_holds_the_reader_and_refuses_requests_not_the_client() {
    let limits = Limits { writer_queue_bytes: 2048, ..Limits::small(4096) };
    let (conn, mut theirs, mut asked) = held(limits, 1024);
    // The answers fill the pipe and then the writer queue: the reader stops.
    let (mut sent, mut answered) = (0u64, 0);
    loop {
        theirs.writer.send(Message::request(sent, "m", json!({}))).await.unwrap();
        sent += 1;
        let responder = tokio::select! {
            responder = asked.recv() => responder.expect("open"),
            () = paused(&conn, true) => break,
        };
        responder.reply(Ok(json!({ "pad": "x".repeat(500) })));
        answered += 1;
        assert!(answered <= 20, "the reader never stopped");
    }
    for id in sent..20 {
        theirs.writer.send(Message::request(id, "m", json!({}))).await.unwrap();
    }
    // A request to the app waits for room within its deadline; a notification is
    // refused; the client is not cut off.
    let refused = conn.request("tool.invoke", &json!({}), Duration::from_millis(100)).await;
    let err = refused.expect_err("refused");
    assert_eq!(err.code, ErrorCode::Timeout);
    assert_eq!(err.data.as_ref().map(|d| d["reason"].clone()), Some(json!("not_reading")));
    assert!(!conn.send(Message::notification("hook.event", json!({}))));
    assert!(!conn.closing.is_cancelled());
    let stall_from = mono_ms();
    while conn.write_stalled_ms() == 0 || mono_ms() < stall_from + 20 {
        assert!(mono_ms() < stall_from + 10_000, "never stalled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Once the client reads, the rest is read and answered.
    let reading = tokio::spawn(async move {
        let mut got = 0;
        while got < 20 {
            let next = tokio::time::timeout(Duration::from_secs(10), theirs.reader.next()).await;
            let Ok(Some(Ok(Ok(Message::Response(r))))) = next else { panic!("{next:?}") };
            assert!(r.outcome.is_ok());
            got += 1;
        }
    });
    while answered < 20 {
        let responder = asked.recv().await.expect("open");
        responder.reply(Ok(json!({ "pad": "x".repeat(500) })));
        answered += 1;
    }
    tokio::time::timeout(Duration::from_secs(10), reading).await.expect("in time").unwrap();
    assert_eq!(conn.write_stalled_ms(), 0);
}

#[tokio::test]
async fn in_flight_requests_hold_their_bytes_until_answered_and_waiting_ones_are_read() {
    // Each request weighs about 1.7 KiB (its frame, and a map and a string as values):
    // room for three in flight, and three more waiting.
    let limits = Limits { max_queued_bytes: 5500, max_queued: 100, ..Limits::small(4096) };
    let (conn, mut theirs, mut asked) = held(limits, 64 * 1024);
    for id in 0..8u64 {
        let params = json!({ "pad": "x".repeat(1000) });
        theirs.writer.send(Message::request(id, "m", params)).await.unwrap();
    }
    let mut held = Vec::new();
    for _ in 0..3 {
        let next = tokio::time::timeout(Duration::from_secs(10), asked.recv()).await;
        held.push(next.expect("in time").expect("a request"));
    }
    // Three wait for in-flight bytes, read; the seventh finds no queued bytes left.
    paused(&conn, true).await;
    assert!(asked.try_recv().is_err(), "a fourth request was handed over");
    // One answered: the oldest waiting one goes in, in order.
    held.pop().expect("held").reply(Ok(json!(1)));
    let next = tokio::time::timeout(Duration::from_secs(10), asked.recv()).await;
    let next = next.expect("in time").expect("a request");
    assert_eq!(next.id(), Some(&Id::Num(3)));
    held.push(next);
    drop(held);
}

#[tokio::test]
async fn a_waiting_request_gets_a_freed_slot_while_the_client_keeps_sending() {
    // One slot; r1 holds it, r2 waits; then a long run of notifications. Once r1 is
    // answered, r2 is handed over at once, not after all of them.
    let (a, b) = tokio::io::duplex(1 << 20);
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    let (tx, mut asked) = tokio::sync::mpsc::unbounded_channel();
    let notes = Arc::new(AtomicUsize::new(0));
    let seen = notes.clone();
    let limits = Limits { max_in_flight: 1, max_queued: 1 << 20, ..Limits::small(4096) };
    let _conn = Connection::spawn(
        1,
        Transport::new(ar, aw, 4096),
        limits,
        &TaskTracker::new(),
        move |inbound| {
            match inbound {
                Inbound::Request(_, responder, _) => drop(tx.send(responder)),
                Inbound::Notification(..) => drop(seen.fetch_add(1, Ordering::Relaxed)),
                Inbound::Closed(_) => {}
            }
            true
        },
    );
    let mut theirs = Transport::new(br, bw, 1 << 20);
    const NOTES: usize = 100_000;
    theirs.writer.feed(Message::request(1u64, "m", json!({}))).await.unwrap();
    theirs.writer.feed(Message::request(2u64, "m", json!({}))).await.unwrap();
    let writing = tokio::spawn(async move {
        for _ in 0..NOTES {
            theirs.writer.feed(Message::notification("n", json!({}))).await.unwrap();
        }
        theirs.writer.flush().await.unwrap();
        theirs
    });
    let r1 = tokio::time::timeout(Duration::from_secs(10), asked.recv()).await;
    r1.expect("in time").expect("r1").reply(Ok(json!(1)));
    let r2 = tokio::time::timeout(Duration::from_secs(10), asked.recv()).await;
    let r2 = r2.expect("in time").expect("r2");
    assert_eq!(r2.id(), Some(&Id::Num(2)));
    let behind = notes.load(Ordering::Relaxed);
    assert!(behind < NOTES, "r2 came only after all {NOTES} notifications");
    drop((r2, writing.await.unwrap()));
}

#[tokio::test]
async fn a_request_that_waits_too_long_for_a_slot_is_answered_with_an_error() {
    let slot_wait = Duration::from_millis(200);
    let limits = Limits { max_in_flight: 1, slot_wait, ..Limits::small(4096) };
    let (_conn, mut theirs, mut asked) = held(limits, 64 * 1024);
    theirs.writer.send(Message::request(1u64, "m", json!({}))).await.unwrap();
    theirs.writer.send(Message::request(2u64, "m", json!({}))).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), asked.recv()).await;
    let first = first.expect("in time").expect("r1");
    let started = std::time::Instant::now();
    let got = tokio::time::timeout(Duration::from_secs(10), theirs.reader.next()).await;
    let Ok(Some(Ok(Ok(Message::Response(r))))) = got else { panic!("{got:?}") };
    assert!(started.elapsed() >= slot_wait / 2, "answered after {:?}", started.elapsed());
    assert_eq!(r.id, Some(Id::Num(2)));
    let err = r.outcome.expect_err("an error");
    assert_eq!(err.data.as_ref().map(|d| d["reason"].clone()), Some(json!("too_many_in_flight")));
    assert!(asked.try_recv().is_err(), "r2 was handed over too");
    drop(first);
}

#[tokio::test]
async fn a_stopping_owner_still_gets_its_last_answers_out() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    let limits = Limits::small(1024);
    // The owner takes the request and stops at once (refuses everything after it),
    // answering a moment later, as an app actor answers `app.shutdown` in post_stop.
    let _conn = Connection::spawn(
        1,
        Transport::new(ar, aw, 1024),
        limits,
        &TaskTracker::new(),
        |inbound| {
            if let Inbound::Request(_, responder, _) = inbound {
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    responder.reply(Ok(json!("bye")));
                });
            }
            false
        },
    );
    let mut theirs = Transport::new(br, bw, 1 << 20);
    theirs.writer.send(Message::request(1u64, "app.shutdown", json!({}))).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), theirs.reader.next()).await;
    let Ok(Some(Ok(Ok(Message::Response(r))))) = got else { panic!("{got:?}") };
    assert_eq!(r.outcome.expect("answered"), json!("bye"));
}

#[tokio::test]
async fn an_answer_sent_just_before_the_app_left_still_arrives() {
    for round in 0..20 {
        let (conn, mut theirs) = pair(1024, json!(null));
        let asked = conn.request("tool.invoke", &json!({}), Duration::from_secs(10));
        let got = tokio::time::timeout(Duration::from_secs(5), theirs.reader.next()).await;
        let Ok(Some(Ok(Ok(Message::Request(req))))) = got else { panic!("{got:?}") };
        // The app answers and leaves at once; the kernel's next write then fails.
        let answer = Message::Response(Response { id: Some(req.id), outcome: Ok(json!(7)) });
        theirs.writer.send(answer).await.unwrap();
        drop(theirs);
        conn.send(Message::notification("hook.event", json!({})));
        let outcome = tokio::time::timeout(Duration::from_secs(5), asked).await;
        assert_eq!(outcome.expect("in time").expect("answered"), json!(7), "round {round}");
        tokio::time::timeout(Duration::from_secs(5), conn.closed()).await.expect("closed");
    }
}

#[tokio::test]
async fn an_answer_the_kernel_cannot_read_fails_its_request_at_once() {
    use tokio::io::AsyncWriteExt;
    let (conn, mut theirs) = pair(1024, json!(null));
    let asked = conn.request("tool.invoke", &json!({}), Duration::from_secs(60));
    let got = tokio::time::timeout(Duration::from_secs(5), theirs.reader.next()).await;
    let Ok(Some(Ok(Ok(Message::Request(req))))) = got else { panic!("{got:?}") };
    let Id::Num(id) = req.id else { panic!("{:?}", req.id) };
    // `{"id": id, "result": <bin>}`: binary values are not part of the contract.
    let mut body = vec![0x82, 0xa2, b'i', b'd', 0xcf];
    body.extend_from_slice(&id.to_be_bytes());
    body.extend_from_slice(&[0xa6, b'r', b'e', b's', b'u', b'l', b't', 0xc4, 0x01, 0xff]);
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    theirs.writer.get_mut().write_all(&frame).await.unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(5), asked).await.expect("at once");
    let err = outcome.expect_err("unreadable");
    assert_eq!(err.code, ErrorCode::InternalError);
    assert!(err.message.contains("answer could not be read"), "{}", err.message);
    assert_eq!(conn.pending_requests(), 0);
    // The app hears of it without its id, which is the kernel's.
    let got = tokio::time::timeout(Duration::from_secs(5), theirs.reader.next()).await;
    let Ok(Some(Ok(Ok(Message::Response(r))))) = got else { panic!("{got:?}") };
    assert_eq!(r.id, None);
    assert_eq!(r.outcome.expect_err("an error").code, ErrorCode::InvalidRequest);
}

#[tokio::test]
async fn an_answer_too_large_becomes_an_error_answer() {
    let (_conn, mut theirs) = pair(256, json!({ "pad": "x".repeat(1000) }));
    theirs.writer.send(Message::request(1u64, "m", json!({}))).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), theirs.reader.next()).await;
    let Ok(Some(Ok(Ok(Message::Response(r))))) = got else { panic!("{got:?}") };
    let err = r.outcome.expect_err("an error answer");
    assert_eq!(err.code, ErrorCode::InternalError);
    assert!(err.message.contains("cannot be sent"), "{}", err.message);
}

#[tokio::test]
async fn when_even_the_error_does_not_fit_the_connection_closes() {
    let (conn, mut theirs) = pair(64, json!({ "pad": "x".repeat(200) }));
    theirs.writer.send(Message::request(1u64, "m", json!({}))).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), conn.closed()).await.expect("closed");
}

#[tokio::test]
async fn a_message_too_large_for_send_wait_is_skipped_and_the_connection_goes_on() {
    let (conn, mut theirs) = pair(256, json!(null));
    let big = Message::notification("hook.event", json!({ "pad": "x".repeat(1000) }));
    assert!(conn.send_wait(big).await, "the connection is open");
    assert!(conn.send_wait(Message::notification("small", json!({}))).await);
    let got = tokio::time::timeout(Duration::from_secs(10), theirs.reader.next()).await;
    let Ok(Some(Ok(Ok(Message::Notification(n))))) = got else { panic!("{got:?}") };
    assert_eq!(n.method, "small");
}

#[tokio::test]
async fn a_request_too_large_for_the_app_fails_at_once() {
    let (conn, _theirs) = pair(256, json!(null));
    let asked =
        conn.request("tool.invoke", &json!({ "pad": "x".repeat(1000) }), Duration::from_secs(60));
    let err = tokio::time::timeout(Duration::from_secs(5), asked).await.expect("at once");
    assert_eq!(err.expect_err("refused").code, ErrorCode::InvalidParams);
    assert_eq!(conn.pending_requests(), 0);
    assert!(!conn.closing.is_cancelled());
}
