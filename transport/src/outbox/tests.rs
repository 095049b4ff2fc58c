use std::time::Duration;

use burrow_protocol::Message;
use futures_util::StreamExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, DuplexStream};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use super::{Bounds, Outbox, SendError};
use crate::{FrameReader, MessageCodec};

const WAIT: Duration = Duration::from_secs(10);
const FRAMES_16: Bounds = Bounds { frames: 16, bytes: usize::MAX };

/// An outbox writing into an in-memory pipe of `capacity` bytes, the pipe's far end
/// framed for reading, and the outbox's closed token.
fn outbox(capacity: usize, max_frames: usize) -> (Outbox, FrameReader, CancellationToken) {
    let (ours, theirs) = tokio::io::duplex(capacity);
    let (far, near) = (framed_read(theirs), ours);
    let write: Box<dyn tokio::io::AsyncWrite + Send + Unpin> = Box::new(near);
    let closed = CancellationToken::new();
    let (out, flusher) = Outbox::new(
        FramedWrite::new(write, MessageCodec::new(1024 * 1024)),
        Bounds { frames: max_frames, bytes: usize::MAX },
        closed.clone(),
    );
    tokio::spawn(flusher);
    (out, far, closed)
}

fn framed_read(stream: DuplexStream) -> FrameReader {
    let read: Box<dyn tokio::io::AsyncRead + Send + Unpin> = Box::new(stream);
    FramedRead::new(read, MessageCodec::default())
}

fn note(n: u64) -> Message {
    Message::notification("n", json!({ "n": n, "pad": "x".repeat(200) }))
}

async fn next_n(far: &mut FrameReader) -> u64 {
    let frame = tokio::time::timeout(WAIT, far.next()).await.expect("a frame in time");
    let Ok(Message::Notification(n)) = frame.expect("open").expect("read").map_err(|_| ()) else {
        panic!("not a notification");
    };
    n.params["n"].as_u64().expect("n")
}

/// Reads frames 0..count, then the end of the stream; the outbox is closed by then.
async fn all_then_the_end(far: &mut FrameReader, count: u64, closed: &CancellationToken) {
    for want in 0..count {
        assert_eq!(next_n(far).await, want);
    }
    let end = tokio::time::timeout(WAIT, far.next()).await.expect("in time");
    assert!(end.is_none(), "the stream ends after the last frame");
    tokio::time::timeout(WAIT, closed.cancelled()).await.expect("closed");
}

#[tokio::test]
async fn frames_from_many_senders_arrive_whole_and_each_senders_in_order() {
    // A pipe far smaller than what is sent: most frames go through the flusher.
    let (out, mut far, _closed) = outbox(512, 4096);
    let mut senders = Vec::new();
    for s in 0..4u64 {
        let out = out.clone();
        senders.push(tokio::spawn(async move {
            for i in 0..200u64 {
                out.send(note(s * 1000 + i)).await.expect("send");
            }
        }));
    }
    let mut last = [None::<u64>; 4];
    for _ in 0..800 {
        let n = next_n(&mut far).await;
        let (s, i) = ((n / 1000) as usize, n % 1000);
        assert!(last[s].is_none_or(|prev| prev + 1 == i), "sender {s}: {i} after {:?}", last[s]);
        last[s] = Some(i);
    }
    for s in senders {
        s.await.expect("sender");
    }
    assert_eq!(last, [Some(199); 4]);
}

#[tokio::test]
async fn a_full_buffer_refuses_try_send_and_holds_send_until_the_far_side_reads() {
    // Room for one frame in the pipe, two in the outbox.
    let (out, mut far, _closed) = outbox(300, 2);
    let mut n = 0;
    let full = loop {
        match out.try_send(note(n)) {
            Ok(()) => n += 1,
            Err(e) => break e,
        }
        assert!(n < 100, "the outbox never filled");
    };
    assert!(matches!(full, SendError::Full(_)), "{full:?}");
    let waiting = tokio::spawn({
        let out = out.clone();
        async move { out.send(note(n)).await }
    });
    for want in 0..=n {
        assert_eq!(next_n(&mut far).await, want);
    }
    tokio::time::timeout(WAIT, waiting).await.expect("in time").expect("task").expect("sent");
}

#[tokio::test]
async fn the_byte_bound_refuses_try_send_takes_forced_frames_and_room_waits_for_the_reader() {
    // Frames of ~230 bytes; a pipe of 300 bytes; room for 1000 bytes in the outbox.
    let (ours, theirs) = tokio::io::duplex(300);
    let write: Box<dyn tokio::io::AsyncWrite + Send + Unpin> = Box::new(ours);
    let bounds = Bounds { frames: 1000, bytes: 1000 };
    let (out, flusher) = Outbox::new(
        FramedWrite::new(write, MessageCodec::new(4096)),
        bounds,
        CancellationToken::new(),
    );
    tokio::spawn(flusher);
    let mut far = framed_read(theirs);
    let mut n = 0;
    while out.try_send(note(n)).is_ok() {
        n += 1;
        assert!(n < 100, "the outbox never filled");
    }
    // Below the bound a frame is taken whole, so the bytes pass it by less than a frame.
    let pending = out.pending_bytes();
    assert!((1000..1000 + 300).contains(&pending), "{pending} bytes wait");
    assert!(!out.has_room());
    // An answer is taken all the same, and room is what the reader makes.
    out.force_send(note(n)).expect("forced");
    let room = tokio::spawn({
        let out = out.clone();
        async move { out.room().await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!room.is_finished(), "no room before the far side reads");
    let before = out.written_bytes();
    for want in 0..=n {
        assert_eq!(next_n(&mut far).await, want);
    }
    tokio::time::timeout(WAIT, room).await.expect("room in time").expect("task");
    assert!(out.written_bytes() > before);
    assert_eq!(out.pending_bytes(), 0);
}

#[tokio::test]
async fn close_writes_what_is_buffered_then_ends_the_stream() {
    let (out, mut far, closed) = outbox(300, 64);
    for n in 0..10 {
        out.try_send(note(n)).expect("send");
    }
    out.close();
    assert!(matches!(out.try_send(note(99)), Err(SendError::Closed)));
    all_then_the_end(&mut far, 10, &closed).await;
}

#[tokio::test]
async fn abort_drops_what_is_buffered() {
    let (out, far, closed) = outbox(300, 64);
    for n in 0..10 {
        out.try_send(note(n)).expect("send");
    }
    out.abort();
    tokio::time::timeout(WAIT, out.closed()).await.expect("closed");
    assert!(closed.is_cancelled() && out.is_closed());
    assert!(matches!(out.send(note(99)).await, Err(SendError::Closed)));
    // The flusher dropped the pipe's end: the far side reads what fitted, then the end.
    let mut far = far.into_inner();
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, far.read_to_end(&mut rest)).await.expect("in time").expect("read");
    assert!(rest.len() <= 300, "only what fitted in the pipe was written: {}", rest.len());
}

#[tokio::test]
async fn a_message_too_large_is_refused_and_the_stream_stays_in_sync() {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let write: Box<dyn tokio::io::AsyncWrite + Send + Unpin> = Box::new(ours);
    let (out, flusher) = Outbox::new(
        FramedWrite::new(write, MessageCodec::new(256)),
        FRAMES_16,
        CancellationToken::new(),
    );
    tokio::spawn(flusher);
    let mut far = framed_read(theirs);
    let big = Message::notification("n", json!({ "n": 1, "pad": "x".repeat(1000) }));
    assert!(matches!(out.try_send(big), Err(SendError::Encode(_))));
    out.try_send(Message::notification("n", json!({ "n": 2 }))).expect("send");
    assert_eq!(next_n(&mut far).await, 2);
}

#[tokio::test]
async fn a_far_side_that_went_away_closes_the_outbox() {
    let (out, far, closed) = outbox(300, 64);
    drop(far);
    // The first write may fail directly or in the flusher; either way the outbox ends.
    let _ = out.try_send(note(1));
    tokio::time::timeout(WAIT, closed.cancelled()).await.expect("closed");
    assert!(matches!(out.try_send(note(2)), Err(SendError::Closed)));
}

#[tokio::test]
async fn dropping_the_last_handle_closes_gracefully() {
    let (out, mut far, closed) = outbox(300, 64);
    for n in 0..5 {
        out.try_send(note(n)).expect("send");
    }
    let other = out.clone();
    drop(out);
    assert!(!closed.is_cancelled(), "a handle is left");
    drop(other);
    all_then_the_end(&mut far, 5, &closed).await;
}

#[tokio::test]
async fn a_writer_that_holds_data_back_is_flushed() {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let write: Box<dyn tokio::io::AsyncWrite + Send + Unpin> =
        Box::new(tokio::io::BufWriter::new(ours));
    let (out, flusher) = Outbox::new(
        FramedWrite::new(write, MessageCodec::new(1024 * 1024)),
        FRAMES_16,
        CancellationToken::new(),
    );
    tokio::spawn(flusher);
    let mut far = framed_read(theirs);
    out.try_send(note(7)).expect("send");
    assert_eq!(next_n(&mut far).await, 7);
}

/// A stream that takes every write whole and counts the writes.
struct CountingWriter {
    writes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    bytes: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl tokio::io::AsyncWrite for CountingWriter {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.writes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.bytes.lock().expect("bytes").extend_from_slice(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// An outbox over a [`CountingWriter`] whose flusher never runs (the senders and the
/// batches write themselves), with the writer's count of writes and the bytes written.
struct Counted {
    out: Outbox,
    writes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    bytes: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Counted {
    fn new() -> Self {
        let writes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let bytes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let write: Box<dyn tokio::io::AsyncWrite + Send + Unpin> =
            Box::new(CountingWriter { writes: writes.clone(), bytes: bytes.clone() });
        // The flusher is dropped unrun.
        let (out, _flusher) = Outbox::new(
            FramedWrite::new(write, MessageCodec::new(1024 * 1024)),
            Bounds { frames: 1000, bytes: usize::MAX },
            CancellationToken::new(),
        );
        Counted { out, writes, bytes }
    }

    /// Writes so far.
    fn count(&self) -> usize {
        self.writes.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The frames written so far: their `n`s.
    async fn ns(&self) -> Vec<u64> {
        let bytes = self.bytes.lock().expect("bytes").clone();
        ns_of(&bytes).await
    }
}

/// Sends notes `ns` on `out`, each taken.
fn send_notes(out: &Outbox, ns: std::ops::Range<u64>) {
    for n in ns {
        out.try_send(note(n)).expect("room");
    }
}

/// The notifications in `bytes`, whole frames one after another: their `n`s.
async fn ns_of(bytes: &[u8]) -> Vec<u64> {
    let (mut ours, theirs) = tokio::io::duplex(bytes.len() + 1);
    let mut far = framed_read(theirs);
    tokio::io::AsyncWriteExt::write_all(&mut ours, bytes).await.expect("replay");
    drop(ours);
    let mut ns = Vec::new();
    while let Some(frame) = tokio::time::timeout(WAIT, far.next()).await.expect("in time") {
        let Ok(Ok(Message::Notification(n))) = frame else { panic!("not a notification") };
        ns.push(n.params["n"].as_u64().expect("n"));
    }
    ns
}

#[tokio::test]
async fn a_lone_frame_is_written_at_once_and_a_batch_in_one_write_by_the_batch_itself() {
    // The flusher is never run: the sender and the batch write themselves.
    let counted = Counted::new();
    let (out, count) = (&counted.out, || counted.count());
    out.try_send(note(0)).expect("room");
    assert_eq!(count(), 1, "written by the sender");
    let mut batch = super::Batch::default();
    batch.defer(|| send_notes(out, 1..40));
    // Another sender (not in the batch) appends behind it; the batch goes on.
    out.try_send(note(40)).expect("room");
    batch.defer(|| send_notes(out, 41..80));
    assert_eq!(count(), 1, "nothing written while the batch holds the outbox");
    assert_eq!(out.pending_frames(), 79);
    batch.flush();
    assert_eq!(count(), 2, "the batch in one write");
    assert_eq!(out.pending_frames(), 0);
    out.try_send(note(80)).expect("room");
    assert_eq!(count(), 3, "the outbox is idle again: a lone frame is written at once");
    assert_eq!(counted.ns().await, (0..81).collect::<Vec<_>>(), "every frame, whole, in order");
}

#[tokio::test]
async fn a_dropped_batch_writes_what_it_held() {
    let counted = Counted::new();
    let (out, count) = (&counted.out, || counted.count());
    {
        let mut batch = super::Batch::default();
        batch.defer(|| out.try_send(note(0)).expect("room"));
        assert_eq!(count(), 0);
    }
    assert_eq!(count(), 1, "dropping the batch wrote it");
    one_step(|| {
        out.try_send(note(1)).expect("room");
        out.try_send(note(2)).expect("room");
        assert_eq!(count(), 1, "held until the step ends");
    });
    assert_eq!(count(), 2, "the step's frames in one write");
    assert_eq!(counted.ns().await, vec![0, 1, 2]);
}

#[tokio::test]
async fn what_the_stream_does_not_take_from_a_batch_goes_to_the_flusher() {
    // A pipe of 1 KiB takes about four frames at once; the rest waits for the reader.
    let (out, mut far, closed) = outbox(1024, 1000);
    let mut batch = super::Batch::default();
    batch.defer(|| send_notes(&out, 0..50));
    batch.flush();
    assert!(out.pending_frames() > 0, "the pipe did not take it all");
    out.close();
    all_then_the_end(&mut far, 50, &closed).await;
}

#[tokio::test]
async fn closing_an_outbox_a_batch_holds_writes_it_all_then_ends() {
    let (out, mut far, closed) = outbox(64 * 1024, 1000);
    let mut batch = super::Batch::default();
    batch.defer(|| send_notes(&out, 0..10));
    out.close();
    // The flusher closes it, with or without the batch's flush.
    all_then_the_end(&mut far, 10, &closed).await;
    batch.flush();
    assert!(out.try_send(note(10)).is_err(), "closed");
}

/// `f` in a batch of its own, flushed when it returns.
fn one_step<T>(f: impl FnOnce() -> T) -> T {
    super::Batch::default().defer(f)
}

#[test]
fn a_panic_inside_a_batch_gives_the_thread_its_mark_back() {
    let caught = std::panic::catch_unwind(|| one_step(|| panic!("inside a batch")));
    assert!(caught.is_err());
    assert!(!super::DEFERRING.with(std::cell::Cell::get), "no longer deferring");
    let nested = one_step(|| one_step(|| 7) + super::DEFERRING.with(|d| d.get() as i32));
    assert_eq!(nested, 8, "the inner batch leaves the outer one deferring");
    assert!(!super::DEFERRING.with(std::cell::Cell::get));
}

#[tokio::test]
async fn a_panic_inside_a_batch_still_writes_what_it_held() {
    let counted = Counted::new();
    let (out, count) = (&counted.out, || counted.count());
    let mut batch = super::Batch::default();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        batch.defer(|| {
            out.try_send(note(0)).expect("room");
            panic!("inside a batch");
        })
    }));
    assert!(caught.is_err());
    assert!(super::HELD.with(|h| h.borrow().is_empty()), "the thread keeps nothing held");
    assert_eq!(count(), 0);
    batch.flush();
    assert_eq!(count(), 1, "the batch still had the outbox, and wrote it");
}

#[tokio::test]
async fn a_batch_that_fills_an_outbox_hands_it_to_the_flusher_at_once() {
    let (out, mut far, closed) = outbox(64 * 1024, 4);
    let mut batch = super::Batch::default();
    batch.defer(|| {
        send_notes(&out, 0..4);
        assert!(!out.has_room(), "at its bound");
    });
    // The flusher writes them without the batch's flush: room comes back.
    tokio::time::timeout(WAIT, out.room()).await.expect("room in time");
    out.try_send(note(4)).expect("room");
    batch.flush();
    out.close();
    all_then_the_end(&mut far, 5, &closed).await;
}

#[tokio::test]
async fn a_batch_gives_a_bursts_buffer_back_once_it_is_written() {
    let counted = Counted::new();
    let mut batch = super::Batch::default();
    batch.defer(|| send_notes(&counted.out, 0..500));
    assert!(counted.out.inner().lock().buf.capacity() > super::KEEP_CAPACITY);
    batch.flush();
    assert_eq!(counted.count(), 1, "in one write");
    assert_eq!(counted.out.inner().lock().buf.capacity(), 0, "its memory given back");
}

#[tokio::test]
async fn the_flusher_gives_a_bursts_buffer_back_once_it_is_written() {
    // A pipe with room for one frame: a burst waits in the outbox for the far side.
    let (out, mut far, _closed) = outbox(300, 1000);
    send_notes(&out, 0..500);
    assert!(out.inner().lock().buf.capacity() > super::KEEP_CAPACITY);
    for want in 0..500 {
        assert_eq!(next_n(&mut far).await, want);
    }
    // Two more while the far side does not read: the pipe takes the first, the flusher
    // the second, swapping its own buffer in for the outbox's. After the burst it gave
    // that buffer's memory back: the outbox gets a new, empty one.
    send_notes(&out, 500..502);
    let taken = async {
        while !out.inner().lock().buf.is_empty() {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(WAIT, taken).await.expect("the flusher took the frame in time");
    assert_eq!(out.inner().lock().buf.capacity(), 0, "the burst's memory given back");
    for want in 500..502 {
        assert_eq!(next_n(&mut far).await, want);
    }
}
