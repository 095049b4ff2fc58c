//! The [`Outbox`]: the sending side of a framed connection, shared by every task that
//! sends on it.
//!
//! A sender encodes its message and, when nothing is being written at that moment,
//! writes it to the stream itself, without waiting (a non-blocking attempt): the common
//! case, one request and its answer, costs no hand-off to another task. What the stream
//! does not take at once stays in the outbox's buffer, and the outbox's flusher task
//! writes it as the stream drains; while the flusher works, senders only append behind
//! it. A task working through a batch (a reader handling a whole read of pipelined
//! requests, or the answers to many calls) holds a [`Batch`]: an outbox that was idle
//! when the batch first sent on it is held for the batch (others' frames append behind),
//! and the batch writes each such outbox's frames in one write when it is flushed,
//! itself, with no hand-off to the flusher unless the stream does not take them all at
//! once. Frames leave in the order their senders took the outbox's lock, whole.
//!
//! The buffer is bounded in frames and in bytes ([`Bounds`]): once either is reached,
//! [`Outbox::try_send`] refuses ([`SendError::Full`]) and [`Outbox::send`] waits for room
//! ([`Outbox::room`] waits for it alone). A frame is taken whenever the buffer is below
//! both bounds, so the bytes may pass their bound by one frame. [`Outbox::force_send`]
//! takes a frame whatever the bounds: for answers, which a caller bounds upstream by
//! reading no more requests while the buffer is full. Closing is graceful
//! ([`Outbox::close`]: what is buffered is written, then the stream is shut down) or at
//! once ([`Outbox::abort`]). Either way the `closed` token passed to [`Outbox::new`] is
//! cancelled once the outbox is done, and so is the flusher future.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use burrow_protocol::Message;
use burrow_protocol::codec::{self, EncodeError};
use bytes::{Buf, BytesMut};
use tokio::io::AsyncWrite;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::FrameWriter;

/// Buffer capacity kept once drained; more is freed.
const KEEP_CAPACITY: usize = 64 * 1024;

thread_local! {
    /// Set while this thread runs a [`Batch::defer`].
    static DEFERRING: Cell<bool> = const { Cell::new(false) };
    /// The outboxes this thread's current [`Batch::defer`] took hold of.
    static HELD: RefCell<Vec<Arc<Inner>>> = const { RefCell::new(Vec::new()) };
}

/// Frames a task sends over several synchronous steps, written together: an outbox that
/// is idle when the batch first sends on it is held (the flusher is not woken; others'
/// frames append behind the batch's), until [`Batch::flush`] writes what each holds in
/// one write. The task must flush before it waits for anything (the far side may be
/// waiting for those frames); dropping the batch flushes it.
#[derive(Default)]
pub struct Batch {
    held: Vec<Arc<Inner>>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch").field("held", &self.held.len()).finish()
    }
}

impl Batch {
    /// Runs `f` (synchronous work: a thread, not a task, is marked) with what it sends
    /// on idle outboxes held for this batch. Inside another batch's `defer`, what it
    /// holds is the outer batch's to write.
    pub fn defer<T>(&mut self, f: impl FnOnce() -> T) -> T {
        /// Puts the thread's mark back, and takes what it held, however `f` ends.
        struct Restore<'a>(bool, &'a mut Vec<Arc<Inner>>);
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                DEFERRING.with(|d| d.set(self.0));
                if !self.0 {
                    HELD.with(|held| self.1.append(&mut held.borrow_mut()));
                }
            }
        }
        let _restore = Restore(DEFERRING.with(|d| d.replace(true)), &mut self.held);
        f()
    }

    /// Writes what the batch holds: each outbox's frames in one write, what the stream
    /// does not take at once left to its flusher.
    pub fn flush(&mut self) {
        for inner in self.held.drain(..) {
            inner.release();
        }
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.flush();
    }
}

type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// How much an outbox holds before it counts as full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Frames waiting to be written.
    pub frames: usize,
    /// Bytes waiting to be written.
    pub bytes: usize,
}

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The buffer is full (in frames or bytes): the far side is not reading.
    #[error("the outgoing buffer is full")]
    Full(Message),
    /// The outbox is closing or closed.
    #[error("the connection is closed")]
    Closed,
    /// The message cannot be encoded (too large, unserializable); nothing was written,
    /// and the stream is still in sync.
    #[error("cannot encode the message: {0}")]
    Encode(EncodeError),
}

/// A cheap handle to a connection's sending side. When the last handle is dropped, the
/// outbox closes gracefully.
#[derive(Clone)]
pub struct Outbox {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").field("closed", &self.inner().closed.is_cancelled()).finish()
    }
}

/// Shared by the handles, not by the flusher: its drop is the last handle's.
struct Handle(Arc<Inner>);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// What became of a frame offered with [`Outbox::try_send_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// Taken: written or buffered.
    Sent,
    /// The buffer is full (in frames or bytes).
    Full,
    /// The outbox is closing or closed.
    Closed,
}

/// Why [`Outbox::push`] refused a frame.
enum Refused {
    Full,
    Closed,
}

struct Inner {
    state: Mutex<State>,
    /// The stream. Written by a sender only while the flusher is idle (under `state`'s
    /// lock, so frames keep their order), else by the flusher; neither holds it across
    /// an await.
    writer: Mutex<Writer>,
    /// Wakes the flusher: there is something to write, or to close.
    work: Notify,
    /// Wakes senders waiting for room.
    room: Notify,
    /// Cancelled once the outbox is done (closed, failed or aborted).
    closed: CancellationToken,
    /// Set with `closed`, for senders to look at every frame (a token's check takes a
    /// lock).
    done: std::sync::atomic::AtomicBool,
    bounds: Bounds,
    max_frame_bytes: usize,
    /// Whether the buffer is at its bounds, as last set under the lock: read without it
    /// (a reader asks before every frame).
    full: std::sync::atomic::AtomicBool,
}

struct State {
    /// Encoded bytes not yet taken by the flusher.
    buf: BytesMut,
    /// Bytes the flusher took and has not written yet.
    writing: usize,
    /// Where each frame ends, counted from the first byte ever buffered, and how many
    /// such bytes were written: together, how many frames still wait.
    ends: VecDeque<u64>,
    written: u64,
    buffered: u64,
    /// The flusher has work, or a [`Batch`] holds the buffer: senders only append.
    /// (`buffered - written` is how many bytes wait.)
    flushing: bool,
    /// A [`Batch`] holds the buffer, to write it itself: the flusher is not woken.
    held: bool,
    /// Close requested: write what is buffered, then shut down.
    closing: bool,
    /// A sender's write failed; the flusher ends the outbox with it.
    failed: Option<io::Error>,
}

impl State {
    /// Whether another frame may be taken under `bounds`.
    fn has_room(&self, bounds: Bounds) -> bool {
        self.ends.len() < bounds.frames && self.buf.len() + self.writing < bounds.bytes
    }

    /// Records that the flusher wrote `n` more bytes.
    fn advance(&mut self, n: usize) {
        self.writing -= n;
        self.written += n as u64;
        self.drop_written_ends();
    }

    /// Forgets the ends of the frames written whole.
    fn drop_written_ends(&mut self) {
        while self.ends.front().is_some_and(|&end| end <= self.written) {
            self.ends.pop_front();
        }
    }
}

impl Outbox {
    /// An outbox over `writer` holding unwritten frames up to `bounds`, and its flusher,
    /// which the caller spawns. Bytes `writer` buffered already go out first.
    pub fn new(
        writer: FrameWriter,
        bounds: Bounds,
        closed: CancellationToken,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let max_frame_bytes = writer.encoder().max_frame_bytes();
        let parts = writer.into_parts();
        let pending = parts.write_buf.len() as u64;
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                writing: 0,
                failed: None,
                flushing: pending > 0,
                held: false,
                ends: if pending > 0 { VecDeque::from([pending]) } else { VecDeque::new() },
                buf: parts.write_buf,
                written: 0,
                buffered: pending,
                closing: false,
            }),
            writer: Mutex::new(parts.io),
            work: Notify::new(),
            room: Notify::new(),
            closed,
            done: std::sync::atomic::AtomicBool::new(false),
            bounds: Bounds { frames: bounds.frames.max(1), bytes: bounds.bytes.max(1) },
            max_frame_bytes,
            full: std::sync::atomic::AtomicBool::new(false),
        });
        let flusher = flush_loop(inner.clone());
        (Self { handle: Arc::new(Handle(inner)) }, flusher)
    }

    fn inner(&self) -> &Inner {
        &self.handle.0
    }

    /// Sends `msg` unless the buffer is full or the outbox closed; never waits.
    pub fn try_send(&self, msg: Message) -> Result<(), SendError> {
        let frame =
            codec::encode_frame(&msg, self.inner().max_frame_bytes).map_err(SendError::Encode)?;
        match self.push(&frame, false) {
            Ok(()) => Ok(()),
            Err(Refused::Full) => Err(SendError::Full(msg)),
            Err(Refused::Closed) => Err(SendError::Closed),
        }
    }

    /// Offers an encoded frame (one whole frame, header included) on the terms of
    /// [`Self::try_send`]; never waits.
    pub fn try_send_frame(&self, frame: &[u8]) -> Offered {
        match self.push(frame, false) {
            Ok(()) => Offered::Sent,
            Err(Refused::Full) => Offered::Full,
            Err(Refused::Closed) => Offered::Closed,
        }
    }

    /// Sends `msg` whatever the bounds, unless the outbox closed; never waits. For
    /// answers: whoever calls it bounds how many it sends (see the module's doc).
    pub fn force_send(&self, msg: Message) -> Result<(), SendError> {
        let frame =
            codec::encode_frame(&msg, self.inner().max_frame_bytes).map_err(SendError::Encode)?;
        match self.push(&frame, true) {
            Ok(()) => Ok(()),
            Err(Refused::Full | Refused::Closed) => Err(SendError::Closed),
        }
    }

    /// Resolves once the buffer is below its bounds (or the outbox is done).
    pub async fn room(&self) {
        let inner = self.inner();
        loop {
            let room = inner.room.notified();
            let mut room = std::pin::pin!(room);
            room.as_mut().enable();
            if inner.closed.is_cancelled() || inner.lock().has_room(inner.bounds) {
                return;
            }
            tokio::select! {
                () = room => {}
                () = inner.closed.cancelled() => return,
            }
        }
    }

    /// Whether another frame would be taken now.
    pub fn has_room(&self) -> bool {
        !self.inner().full.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Bytes waiting to be written.
    pub fn pending_bytes(&self) -> usize {
        let state = self.inner().lock();
        state.buf.len() + state.writing
    }

    /// Frames waiting to be written (a frame partly written counts).
    pub fn pending_frames(&self) -> usize {
        self.inner().lock().ends.len()
    }

    /// Bytes written to the stream so far: a far side that reads makes it grow.
    pub fn written_bytes(&self) -> u64 {
        self.inner().lock().written
    }

    /// The outbox's bounds.
    pub fn bounds(&self) -> Bounds {
        self.inner().bounds
    }

    /// Sends `msg`, waiting while the buffer is full; fails once the outbox closed.
    pub async fn send(&self, msg: Message) -> Result<(), SendError> {
        let frame =
            codec::encode_frame(&msg, self.inner().max_frame_bytes).map_err(SendError::Encode)?;
        drop(msg);
        loop {
            let room = self.inner().room.notified();
            let mut room = std::pin::pin!(room);
            room.as_mut().enable();
            match self.push(&frame, false) {
                Ok(()) => return Ok(()),
                Err(Refused::Closed) => return Err(SendError::Closed),
                Err(Refused::Full) => {}
            }
            tokio::select! {
                () = room => {}
                () = self.inner().closed.cancelled() => return Err(SendError::Closed),
            }
        }
    }

    /// Writes an encoded frame now when nothing else is being written, this thread is not
    /// in a [`Batch::defer`], and the stream takes it at once; holds it for the thread's
    /// batch when the outbox is idle and the thread is in one; buffers it (or what is left
    /// of it) for the flusher otherwise. Refuses it when the buffer is full, unless
    /// `force`.
    fn push(&self, frame: &[u8], force: bool) -> Result<(), Refused> {
        let inner = self.inner();
        let mut state = inner.lock();
        if state.closing || inner.done.load(std::sync::atomic::Ordering::Acquire) {
            return Err(Refused::Closed);
        }
        if !force && !state.has_room(inner.bounds) {
            return Err(Refused::Full);
        }
        let state = &mut *state;
        let mut rest = frame;
        if !state.flushing {
            if DEFERRING.with(Cell::get) {
                // Held for the thread's batch, which writes it.
                (state.flushing, state.held) = (true, true);
                HELD.with(|held| held.borrow_mut().push(self.handle.0.clone()));
                inner.append(state, frame);
                return Ok(());
            }
            let (written, _) = inner.write_now(state, frame);
            state.buffered += written as u64;
            rest = &frame[written..];
            if rest.is_empty() && state.failed.is_none() {
                return Ok(());
            }
        }
        inner.append(state, rest);
        if !std::mem::replace(&mut state.flushing, true) {
            inner.work.notify_one();
        }
        Ok(())
    }

    /// Writes what is buffered, then shuts the stream down; sends fail from now on.
    pub fn close(&self) {
        self.inner().close();
    }

    /// Closes at once, dropping what is buffered.
    pub fn abort(&self) {
        self.inner().finish();
    }

    /// Resolves once the outbox is done: closed, failed or aborted.
    pub async fn closed(&self) {
        self.inner().closed.cancelled().await;
    }

    /// Whether the outbox is done.
    pub fn is_closed(&self) -> bool {
        self.inner().closed.is_cancelled()
    }
}

impl Inner {
    /// Marks the outbox done.
    fn finish(&self) {
        self.done.store(true, std::sync::atomic::Ordering::Release);
        self.closed.cancel();
    }

    fn close(&self) {
        let mut state = self.lock();
        if !std::mem::replace(&mut state.closing, true) {
            self.work.notify_one();
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic under the lock can only come from the writer itself (a foreign
        // `AsyncWrite`); the stream may then be torn, and a write error ends it anyway.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        // Nothing panics under this lock but a foreign writer, which a write error ends.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends the end of a frame (or a whole one) to the buffer. A buffer a batch holds
    /// that reaches its bounds goes to the flusher at once: senders must not find it full
    /// while the stream could take it.
    fn append(&self, state: &mut State, rest: &[u8]) {
        state.buf.extend_from_slice(rest);
        state.buffered += rest.len() as u64;
        let end = state.buffered;
        state.ends.push_back(end);
        let room = state.has_room(self.bounds);
        self.full.store(!room, std::sync::atomic::Ordering::Release);
        if !room && std::mem::take(&mut state.held) {
            self.work.notify_one();
        }
    }

    /// A [`Batch`] lets go of the buffer it held: writes what the stream takes at once,
    /// and leaves the rest (or a failure) to the flusher. Nothing, if the flusher took
    /// the buffer meanwhile (to close) or the outbox is done.
    fn release(&self) {
        let mut state = self.lock();
        if !std::mem::take(&mut state.held) {
            return;
        }
        if self.done.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let mut buf = std::mem::take(&mut state.buf);
        // Measured before writing: what is written no longer counts in the capacity.
        let burst = buf.capacity() > KEEP_CAPACITY;
        let (written, done) = self.write_now(&mut state, &buf);
        buf.advance(written);
        if burst && buf.is_empty() {
            // A burst is over: give its memory back.
            buf = BytesMut::new();
        }
        state.drop_written_ends();
        state.buf = buf;
        let room = state.has_room(self.bounds);
        self.full.store(!room, std::sync::atomic::Ordering::Release);
        if room && written > 0 {
            self.room.notify_waiters();
        }
        if done {
            state.flushing = false;
        } else {
            self.work.notify_one();
        }
    }

    /// Writes what of `frame` the stream takes at once (the flusher is idle: `state` is
    /// locked and not flushing), flushing the stream when it all went, and counts it as
    /// written; how many bytes went, and whether all of it went and was flushed. A
    /// failure is left in `state` for the flusher.
    fn write_now(&self, state: &mut State, frame: &[u8]) -> (usize, bool) {
        let mut writer = self.writer();
        let mut cx = Context::from_waker(Waker::noop());
        let mut rest = frame;
        while !rest.is_empty() {
            match Pin::new(&mut *writer).poll_write(&mut cx, rest) {
                Poll::Ready(Ok(n)) if n > 0 => rest = &rest[n..],
                Poll::Ready(Ok(_)) => {
                    state.failed = Some(io::ErrorKind::WriteZero.into());
                    break;
                }
                Poll::Ready(Err(e)) => {
                    state.failed = Some(e);
                    break;
                }
                Poll::Pending => break,
            }
        }
        let written = frame.len() - rest.len();
        state.written += written as u64;
        if rest.is_empty() && state.failed.is_none() {
            // A writer that holds data back (a `BufWriter`, TLS) must be flushed; one
            // that cannot flush at once leaves that to the flusher.
            match Pin::new(&mut *writer).poll_flush(&mut cx) {
                Poll::Ready(Ok(())) => return (written, true),
                Poll::Ready(Err(e)) => state.failed = Some(e),
                Poll::Pending => {
                    state.flushing = true;
                    self.work.notify_one();
                }
            }
        }
        (written, false)
    }

    /// Whether the flusher has something to do.
    fn has_work(&self) -> bool {
        let state = self.lock();
        (state.flushing && !state.held) || state.closing || state.failed.is_some()
    }

    /// A sender's write failure, if one happened.
    fn failed(&self) -> Option<io::Error> {
        self.lock().failed.take()
    }

    /// Takes what is buffered for the flusher to write.
    fn take(&self, out: &mut BytesMut) {
        let mut state = self.lock();
        // A batch holding the buffer lets go of it: the flusher writes it (to close).
        state.held = false;
        std::mem::swap(&mut state.buf, out);
        state.writing = out.len();
    }

    /// Records that `n` bytes were written, and tells senders waiting for room.
    fn wrote(&self, n: usize) {
        let mut state = self.lock();
        state.advance(n);
        let room = state.has_room(self.bounds);
        self.full.store(!room, std::sync::atomic::Ordering::Release);
        if room {
            self.room.notify_waiters();
        }
    }

    /// After a batch was written: whether to shut down (closing, nothing left), else
    /// goes to sleep when nothing was sent meanwhile.
    fn batch_done(&self) -> bool {
        let mut state = self.lock();
        if !state.buf.is_empty() {
            return false;
        }
        if state.closing {
            return true;
        }
        state.flushing = false;
        false
    }
}

/// The flusher: writes what senders appended, without holding the state's lock while it
/// writes, and closes when asked.
async fn flush_loop(inner: Arc<Inner>) {
    let mut out = BytesMut::new();
    loop {
        let work = inner.work.notified();
        let mut work = std::pin::pin!(work);
        work.as_mut().enable();
        if !inner.has_work() {
            tokio::select! {
                biased;
                () = inner.closed.cancelled() => break,
                () = work => {}
            }
        }
        if let Some(e) = inner.failed() {
            tracing::debug!(error = %e, "write failed; closing the connection");
            break;
        }
        inner.take(&mut out);
        // Measured before writing: what is written no longer counts in the capacity.
        let burst = out.capacity() > KEEP_CAPACITY;
        let written = tokio::select! {
            biased;
            () = inner.closed.cancelled() => break,
            written = write_out(&inner, &mut out) => written,
        };
        if let Err(e) = written {
            tracing::debug!(error = %e, "write failed; closing the connection");
            break;
        }
        if burst {
            // A burst is over: give its memory back.
            out = BytesMut::new();
        }
        if inner.batch_done() {
            let shut = tokio::select! {
                biased;
                () = inner.closed.cancelled() => Ok(()),
                shut = std::future::poll_fn(|cx| Pin::new(&mut *inner.writer()).poll_shutdown(cx)) => shut,
            };
            if let Err(e) = shut {
                tracing::debug!(error = %e, "shutting the stream down failed");
            }
            break;
        }
    }
    inner.finish();
    // The stream goes now, not when the last handle does: that is what cuts it.
    let writer = std::mem::replace(&mut *inner.writer(), Box::new(tokio::io::sink()));
    drop(writer);
    // Senders waiting for room see the close.
    inner.room.notify_waiters();
}

/// Writes all of `out`, counting each write as it goes, then flushes the stream (a
/// writer that holds data back, a `BufWriter` or TLS, must be flushed).
async fn write_out(inner: &Inner, out: &mut BytesMut) -> io::Result<()> {
    while !out.is_empty() {
        let n =
            std::future::poll_fn(|cx| Pin::new(&mut *inner.writer()).poll_write(cx, out)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        out.advance(n);
        inner.wrote(n);
    }
    std::future::poll_fn(|cx| Pin::new(&mut *inner.writer()).poll_flush(cx)).await
}

#[cfg(test)]
mod tests;
