//! One [`Connection`] per client socket: framing, a reader task (`reader`), an
//! [`Outbox`] (a sender writes its frame itself when nothing else is being written; what
//! the reader's handling of frames already read sends waits, and goes out in one write),
//! the [`Responder`] that answers each request (`responder`), and the table of kernel →
//! app requests awaiting answers (`requests`).
//!
//! Actors see whole messages only. The reader answers malformed frames itself (they never
//! reach an actor), resolves responses to the kernel's own requests, and hands requests
//! and notifications to the owner through a callback. These bounds keep one client from
//! growing the kernel's memory, by back-pressure: when one is reached the reader reads
//! nothing more (the client's frames wait in its socket), and a client that reads is
//! never cut off.
//!
//! - **queued**: each request or notification holds a [`QueuePermit`] until its owner has
//!   handled it; with `max_queued` waiting, the reader stops reading;
//! - **queued bytes**: the requests and notifications not yet handled hold their size
//!   (as decoded) out of `max_queued_bytes`; with none left, the reader stops reading;
//! - **writer queue**: with `writer_queue` frames or `writer_queue_bytes` bytes waiting
//!   to be written, the reader stops reading. Answers are queued whatever the bound (the
//!   requests they answer were already taken); a request to the app waits for room
//!   within its deadline ([`Connection::request`], `TIMEOUT` with `reason:
//!   "not_reading"` past it), a notification is refused ([`Connection::send`] is false);
//! - **large answers**: an answer that may be as large as a frame (stored messages,
//!   another app's answer) is prepared only while the writer queue has room and at most
//!   `max_large_answers` at a time ([`Responder::prepare_large`]);
//! - **in flight**: a request whose answer comes later (a routed call, a session method)
//!   takes one of `max_in_flight` permits; with none left it waits, in order with the
//!   others, while the reader goes on reading (quick requests behind it are handed over;
//!   waiting ones hold their queue permits and bytes), for at most `slot_wait` (then it
//!   is answered with an error). Streams have `max_in_flight`
//!   permits of their own, taken when one starts ([`Responder::hold_in_flight`]); with
//!   none left a new one is refused with an error.
//!
//! So one connection holds at most about `max_queued_bytes + writer_queue_bytes +
//! (max_large_answers + 1) × max_frame_bytes`. A client that reads nothing while the
//! kernel has something to write to it is cut off after `write_stall_timeout_ms` (the
//! owner checks [`Connection::write_stalled_ms`]); while its reader is held back
//! ([`Connection::reading_paused`]) a client is not counted silent.
//!
//! Closing is graceful by default ([`Connection::close`]: what is queued is written
//! first); [`Connection::abort`] cuts at once and is kept for dead peers. When a write fails
//! because the app went away, the reader still gets a moment to deliver what the app sent
//! before it left.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use burrow_protocol::codec::{self, EncodeError};
use burrow_protocol::methods::{Cancel, CancelParams, Method, to_value};
use burrow_protocol::{ErrorCode, ErrorObject, Message, Notification, Request, Response, Value};
use burrow_transport::outbox::Offered;
use burrow_transport::{Bounds, Outbox, SendError, Transport};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::mono_ms;

mod calls;
mod reader;
mod responder;

use burrow_transport::requests::{self, Requests};
pub use calls::CallCancel;
use reader::clamp_u32;
pub use reader::value_weight;
pub use responder::Responder;

/// How long a connection whose owner stopped waits for the owner's last answers (and
/// then for them to be written) before it closes.
const OWNER_GRACE: Duration = Duration::from_secs(2);

/// How long the reader may go on after a write failed because the app went away, so
/// that answers the app sent before it left still reach their callers.
const READ_GRACE: Duration = Duration::from_secs(2);

/// What the reader hands to the connection's owner.
// Requests are nearly all of it: boxing them would add an allocation per request to
// make the rarer variants smaller.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Inbound {
    /// A request, with the handle that must answer it.
    Request(Request, Responder, QueuePermit),
    /// A notification.
    Notification(Notification, QueuePermit),
    /// The read side ended (peer closed, read error, fatal frame, or closed by us).
    Closed(String),
}

/// Bounds and limits of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest frame, both directions.
    pub max_frame_bytes: usize,
    /// Requests and notifications read but not yet handled by the owner.
    pub max_queued: usize,
    /// Bytes of the requests read and not yet answered, and of the notifications read and
    /// not yet handled.
    pub max_queued_bytes: usize,
    /// Requests being worked on after their handler returned (routed calls, streams).
    pub max_in_flight: usize,
    /// Frames queued for the writer before the reader stops.
    pub writer_queue: usize,
    /// Bytes queued for the writer before the reader stops.
    pub writer_queue_bytes: usize,
    /// Large answers prepared at once.
    pub max_large_answers: usize,
    /// How long a request may wait for an in-flight slot before it is answered with an
    /// error.
    pub slot_wait: Duration,
}

impl Limits {
    /// Small bounds, for tests.
    #[doc(hidden)]
    pub fn small(max_frame_bytes: usize) -> Self {
        Limits {
            max_frame_bytes,
            max_queued: 4,
            max_queued_bytes: 1 << 20,
            max_in_flight: 4,
            writer_queue: 8,
            writer_queue_bytes: 1 << 20,
            max_large_answers: 1,
            slot_wait: Duration::from_secs(30),
        }
    }
}

/// Held while a request or notification waits for its owner; drop it once handled.
#[derive(Debug)]
pub struct QueuePermit {
    /// Its share of `max_queued_bytes`: its bytes, and at least `max_queued_bytes /
    /// max_queued` of them, so that one semaphore bounds both.
    _bytes: OwnedSemaphorePermit,
}

impl QueuePermit {
    fn new(bytes: OwnedSemaphorePermit) -> Self {
        QueuePermit { _bytes: bytes }
    }
}

/// A cheap handle to one client connection (one pointer: it travels inside every
/// [`Responder`], and so inside every session's mailbox).
#[derive(Clone)]
pub struct Connection(Arc<Shared>);

impl std::ops::Deref for Connection {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The state behind a [`Connection`], reached through it.
pub struct Shared {
    id: u64,
    out: Outbox,
    /// The kernel's requests to the app, awaiting answers.
    requests: Arc<Requests<Outcome>>,
    /// Monotonic ms of the last frame read.
    last_seen: Arc<AtomicU64>,
    /// Set once the read side has ended: no answer to a kernel request can come.
    read_done: Arc<AtomicBool>,
    /// Cancelled with `read_done`, for the writing side to wait on.
    read_ended: CancellationToken,
    /// Cancelled by [`Connection::close`]: the kernel reads no more once the rest is
    /// written.
    close_asked: CancellationToken,
    /// Cancelled when the connection is closed: both sides are done, or it was cut.
    /// The outbox has a token of its own, so a failed write does not stop the reader.
    closing: CancellationToken,
    /// Set with `closing`, for the reader to look at every frame (a token's check takes
    /// a lock).
    closed_flag: Arc<AtomicBool>,
    tasks: TaskTracker,
    /// In-flight slots, counted in the bytes (as decoded) of the requests holding them:
    /// `max_queued_bytes` permits, at least `max_queued_bytes / max_in_flight` a request.
    in_flight: Arc<Semaphore>,
    /// Requests and notifications read and not yet handled hold their bytes (at least
    /// `max_queued_bytes / max_queued` each) of `max_queued_bytes` permits.
    queued: Arc<Semaphore>,
    /// Streams open, a pool of their own: they last as long as the client wants.
    streams: Arc<Semaphore>,
    /// Large answers being prepared.
    large: Arc<Semaphore>,
    /// Set while the reader waits for room instead of reading.
    paused: Arc<AtomicBool>,
    /// Bytes read and not yet handed over as messages (`usize::MAX` while one is being
    /// handed over).
    unread: Arc<AtomicUsize>,
    /// `(written bytes, since when)` as last looked at, for [`Self::write_stalled_ms`].
    progress: Arc<std::sync::Mutex<(u64, u64)>>,
    /// The client's calls in flight that a `$/cancel` from it passes on.
    calls: calls::Calls,
    limits: Limits,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl crate::metrics::queues::Probe for Shared {
    fn depth(&self) -> crate::metrics::queues::Depth {
        let queued = clamp_u32(self.limits.max_queued_bytes) as usize;
        crate::metrics::queues::Depth {
            connections: 1,
            in_bytes: queued.saturating_sub(self.queued.available_permits()) as u64,
            out_frames: self.out.pending_frames() as u64,
            out_bytes: self.out.pending_bytes() as u64,
        }
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Connection {
    /// Starts the reader and writer tasks over `transport` (on `tasks`, so a stopping
    /// kernel can wait for the last answers to be written); `deliver` receives what the
    /// reader reads and returns false when the owner is gone.
    pub fn spawn<F>(
        id: u64,
        transport: Transport,
        limits: Limits,
        tasks: &TaskTracker,
        deliver: F,
    ) -> Self
    where
        F: Fn(Inbound) -> bool + Send + Sync + 'static,
    {
        let closing = CancellationToken::new();
        let closed_flag = Arc::new(AtomicBool::new(false));
        let read_ended = CancellationToken::new();
        let close_asked = CancellationToken::new();
        let bounds = Bounds { frames: limits.writer_queue, bytes: limits.writer_queue_bytes };
        let (out, flusher) = Outbox::new(transport.writer, bounds, CancellationToken::new());
        let conn = Self(Arc::new(Shared {
            id,
            out,
            requests: Arc::new(Requests::new(timed_out)),
            last_seen: Arc::new(AtomicU64::new(mono_ms())),
            read_done: Arc::new(AtomicBool::new(false)),
            read_ended: read_ended.clone(),
            close_asked: close_asked.clone(),
            closing: closing.clone(),
            closed_flag: closed_flag.clone(),
            tasks: tasks.clone(),
            in_flight: Arc::new(Semaphore::new(clamp_u32(limits.max_queued_bytes) as usize)),
            queued: Arc::new(Semaphore::new(clamp_u32(limits.max_queued_bytes) as usize)),
            streams: Arc::new(Semaphore::new(limits.max_in_flight)),
            large: Arc::new(Semaphore::new(limits.max_large_answers.max(1))),
            paused: Arc::new(AtomicBool::new(false)),
            unread: Arc::new(AtomicUsize::new(0)),
            progress: Arc::new(std::sync::Mutex::new((0, mono_ms()))),
            calls: Default::default(),
            limits,
        }));
        crate::metrics::queues::watch("ipc", &conn.0);
        tasks.spawn(async move {
            flusher.await;
            // Unless the kernel closed it, the writing side ended because the app went
            // away: the reader gets a moment to deliver what the app sent before it left.
            tokio::select! {
                () = close_asked.cancelled() => {}
                () = read_ended.cancelled() => {}
                () = closing.cancelled() => {}
                () = tokio::time::sleep(READ_GRACE) => {}
            }
            closed_flag.store(true, Ordering::Release);
            closing.cancel();
        });
        tasks.spawn(conn.clone().read_loop(transport.reader, limits, deliver));
        let (requests, closing) = (conn.requests.clone(), conn.closing.clone());
        tasks.spawn(async move { requests.keep_deadlines(closing).await });
        conn
    }

    /// The connection's kernel-wide id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The shared last-activity clock (monotonic ms, see [`crate::clock`]), updated on
    /// every frame read.
    pub fn last_seen(&self) -> Arc<AtomicU64> {
        self.last_seen.clone()
    }

    /// Sends a message without waiting; whether it was queued. An answer is queued
    /// whatever the writer queue's bounds (the reader took its request under them); an
    /// answer that cannot be encoded (too large for a frame) is replaced by an error
    /// saying so. Anything else is refused while the writer queue is full.
    pub fn send(&self, msg: Message) -> bool {
        let Message::Response(Response { id: reply_id, .. }) = &msg else {
            return match self.out.try_send(msg) {
                Ok(()) => true,
                Err(SendError::Encode(e)) => {
                    tracing::warn!(conn = self.id, error = %e, "could not encode a message");
                    false
                }
                Err(SendError::Full(_)) => {
                    tracing::debug!(conn = self.id, "writer queue full: a message was not sent");
                    false
                }
                Err(SendError::Closed) => false,
            };
        };
        let reply_id = reply_id.clone();
        match self.out.force_send(msg) {
            Ok(()) => true,
            Err(SendError::Encode(e)) => {
                let err = ErrorObject::new(
                    ErrorCode::InternalError,
                    format!("the answer cannot be sent: {e}"),
                );
                // Once: if even the error does not fit, the connection goes.
                if let Err(again) = self.out.force_send(Message::error(reply_id, err)) {
                    tracing::warn!(conn = self.id, error = %again, "cannot answer within a frame; disconnecting");
                    self.abort();
                }
                false
            }
            Err(SendError::Full(_) | SendError::Closed) => false,
        }
    }

    /// Whether the reader holds input it has not handed to the owner yet: a leaving
    /// app's last requests, sent before it learnt it had left.
    pub fn has_unread_input(&self) -> bool {
        self.unread.load(Ordering::Acquire) != 0
    }

    /// Whether the reader is held back (waiting for room to write, for its queued
    /// requests to be handled, or for their bytes to be freed) rather than reading: the
    /// client's silence is then the kernel's doing.
    pub fn reading_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    /// For how long the kernel has had something to write to this client without the
    /// client taking any of it (ms; 0 when nothing waits or the client is reading).
    pub fn write_stalled_ms(&self) -> u64 {
        let (pending, written) = (self.out.pending_bytes(), self.out.written_bytes());
        let now = mono_ms();
        let Ok(mut progress) = self.progress.lock() else { return 0 };
        if pending == 0 || written != progress.0 {
            *progress = (written, now);
            return 0;
        }
        now.saturating_sub(progress.1)
    }

    /// Sends a notification if the app's queue has room, without waiting: false when it
    /// was dropped (the app is not reading fast enough, or gone).
    pub fn try_notify(&self, msg: Message) -> bool {
        self.out.try_send(msg).is_ok()
    }

    /// [`Self::try_notify`] of notification `method` with typed `params`, encoded
    /// straight into its frame (no JSON value between); false also when it cannot be
    /// encoded within the frame bound.
    pub fn try_notify_with<P: serde::Serialize>(&self, method: &str, params: &P) -> bool {
        match codec::encode_notification_frame(method, params, self.limits.max_frame_bytes) {
            Ok(frame) => self.out.try_send_frame(&frame) == Offered::Sent,
            Err(e) => {
                tracing::debug!(method, error = %e, "a notification could not be encoded; dropped");
                false
            }
        }
    }

    /// Sends a message, waiting for room in the writer queue; false once the connection
    /// is closed. For senders that must not disconnect a slow reader (observer queues).
    /// A message that cannot be encoded is skipped with a warning (true: the connection
    /// goes on).
    pub async fn send_wait(&self, msg: Message) -> bool {
        match self.out.send(msg).await {
            Ok(()) => true,
            Err(SendError::Encode(e)) => {
                tracing::warn!(conn = self.id, error = %e, "could not encode a message; skipped");
                true
            }
            Err(SendError::Full(_) | SendError::Closed) => false,
        }
    }

    /// Writes what is queued, then closes.
    pub fn close(&self) {
        self.close_asked.cancel();
        self.out.close();
    }

    /// [`close`](Self::close), cutting the connection if it has not closed within
    /// `grace` (a client that does not read must not hold the writer).
    pub fn close_within(&self, grace: Duration) {
        self.close();
        let conn = self.clone();
        self.tasks.spawn(async move {
            if tokio::time::timeout(grace, conn.closed()).await.is_err() {
                conn.abort();
            }
        });
    }

    /// Closes at once, dropping what is queued.
    pub fn abort(&self) {
        self.out.abort();
        self.closed_flag.store(true, Ordering::Release);
        self.closing.cancel();
    }

    /// Resolves when the connection is closed.
    pub async fn closed(&self) {
        self.closing.cancelled().await;
    }

    /// Sends a kernel → app request. The returned future resolves with the answer,
    /// `TIMEOUT` after `timeout`, or `CONNECTION_CLOSED`. Await it outside actor handlers.
    /// The params are encoded as they are, without a JSON value between.
    pub fn request<P: serde::Serialize>(
        &self,
        method: &'static str,
        params: &P,
        timeout: Duration,
    ) -> impl Future<Output = Result<Value, ErrorObject>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let then = Box::new(move |outcome| {
            let _ = tx.send(outcome);
        });
        self.request_then(method, params, timeout, then);
        async move { rx.await.unwrap_or_else(|_| Err(connection_closed())) }
    }

    /// Sends a kernel → app request and hands its answer (or `TIMEOUT` after `timeout`,
    /// or `CONNECTION_CLOSED`) to `then`, which whoever resolves the request calls on the
    /// spot: no task waits for it. `then` is called exactly once, possibly before this
    /// returns. The params are encoded as they are, without a JSON value between. Sent at
    /// once when the app's queue has room (so requests made in order go in order), else
    /// from a task that waits for room within the same deadline. Returns the request's
    /// id (for [`Connection::cancel_request`]).
    pub fn request_then<P: serde::Serialize>(
        &self,
        method: &'static str,
        params: &P,
        timeout: Duration,
        then: requests::Then<Outcome>,
    ) -> u64 {
        self.send_request(method, params, timeout, then, None)
    }

    /// [`Connection::request`] that tells `cancel` where it went ([`CallCancel::sent`]),
    /// and whose dropping before the answer (its caller stopped waiting, as when a run is
    /// cancelled) forgets the request and sends the app `$/cancel` for it.
    pub fn request_cancellable<P: serde::Serialize>(
        &self,
        method: &'static str,
        params: &P,
        timeout: Duration,
        cancel: Option<&CallCancel>,
    ) -> impl Future<Output = Result<Value, ErrorObject>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let then = Box::new(move |outcome| {
            let _ = tx.send(outcome);
        });
        let id = self.send_request(method, params, timeout, then, None);
        if let Some(cancel) = cancel {
            cancel.sent(self, id);
        }
        self.cancel_on_drop(id, rx)
    }

    /// Waits for request `id`'s answer on `rx`; dropped before it, forgets the request
    /// and sends the app `$/cancel`.
    fn cancel_on_drop(
        &self,
        id: u64,
        rx: oneshot::Receiver<Outcome>,
    ) -> impl Future<Output = Result<Value, ErrorObject>> + Send + 'static {
        let guard =
            CancelOnDrop { requests: self.requests.clone(), out: self.out.clone(), id: Some(id) };
        async move {
            // The whole guard moves in (not only its field): it lives as long as the wait.
            let mut guard = guard;
            let answer = rx.await.unwrap_or_else(|_| Err(connection_closed()));
            guard.id = None;
            answer
        }
    }

    /// [`Connection::request`] whose answer may come as stream chunks before its result:
    /// each chunk goes to `on_chunk` as the reader reads it, in order, until the answer.
    /// Dropping the future before the answer (its caller stopped waiting, as when a run
    /// is cancelled) forgets the request and sends the app `$/cancel` for it.
    pub fn request_streamed<P: serde::Serialize>(
        &self,
        method: &'static str,
        params: &P,
        timeout: Duration,
        on_chunk: requests::OnChunk,
    ) -> impl Future<Output = Result<Value, ErrorObject>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let then = Box::new(move |outcome| {
            let _ = tx.send(outcome);
        });
        let id = self.send_request(method, params, timeout, then, Some(on_chunk));
        self.cancel_on_drop(id, rx)
    }

    /// Sends a request; returns its id.
    fn send_request<P: serde::Serialize>(
        &self,
        method: &'static str,
        params: &P,
        timeout: Duration,
        then: requests::Then<Outcome>,
        on_chunk: Option<requests::OnChunk>,
    ) -> u64 {
        let id = self.requests.next_id();
        self.requests.wait_then(id, method, timeout, then);
        if let Some(sink) = on_chunk {
            self.requests.on_chunks(id, sink);
        }
        // The reader sets `read_done` before failing the table: an entry added after
        // that is caught here, one added before it is failed there.
        if self.read_done.load(Ordering::SeqCst) || self.closed_flag.load(Ordering::Acquire) {
            self.requests.fail(id, Err(connection_closed()));
            return id;
        }
        let max = self.limits.max_frame_bytes;
        let offered = match codec::encode_request_frame(id, method, params, max) {
            Ok(frame) => self.out.try_send_frame(&frame),
            Err(e) => {
                self.requests.fail(id, Err(unsendable(&e)));
                return id;
            }
        };
        match offered {
            Offered::Sent => {}
            Offered::Closed => self.requests.fail(id, Err(connection_closed())),
            Offered::Full => {
                // The app's queue is full: wait for room in a task, within the deadline,
                // which the task keeps until the request is sent.
                let msg = Message::request(id, method, burrow_protocol::methods::to_value(params));
                let (requests, out) = (self.requests.clone(), self.out.clone());
                requests.disarm(id);
                tokio::spawn(async move {
                    match tokio::time::timeout(timeout, out.send(msg)).await {
                        Ok(Ok(())) => requests.arm(id),
                        Ok(Err(_)) => requests.fail(id, Err(connection_closed())),
                        Err(_) => requests.fail(id, Err(not_reading(&out))),
                    }
                });
            }
        }
        id
    }

    /// How many kernel → app requests await answers.
    pub fn pending_requests(&self) -> usize {
        self.requests.len()
    }

    /// Waits until the kernel's requests to the app are answered (or `answered_by`),
    /// then until what the app sent is handed over (or `read_by`): woken as each
    /// changes, not polled.
    pub async fn settle(&self, answered_by: tokio::time::Instant, read_by: tokio::time::Instant) {
        let settle = &self.requests.settle;
        settle.until(answered_by, || self.pending_requests() == 0).await;
        settle.until(read_by, || !self.has_unread_input()).await;
    }
}

/// What a kernel → app request ends with: the app's answer, or why there is none.
pub type Outcome = Result<Value, ErrorObject>;

/// `TIMEOUT` for a request to `method` unanswered after `timeout`.
pub fn timed_out(method: &str, timeout: Duration) -> Outcome {
    Err(ErrorObject::new(
        ErrorCode::Timeout,
        format!("no answer to {method} within {} ms", timeout.as_millis()),
    ))
}

/// `INVALID_PARAMS` for a request to the app that cannot be encoded.
fn unsendable(e: &EncodeError) -> ErrorObject {
    ErrorObject::new(
        ErrorCode::InvalidParams,
        format!("the request to the app cannot be sent: {e}"),
    )
}

fn connection_closed() -> ErrorObject {
    ErrorObject::new(ErrorCode::ConnectionClosed, "the app disconnected before answering")
}

/// A request the app's full writer queue did not take within its deadline.
fn not_reading(out: &Outbox) -> ErrorObject {
    let bounds = out.bounds();
    ErrorObject::new(
        ErrorCode::Timeout,
        "the app did not read what the kernel sends it (its queue stayed full) in time",
    )
    .with_data(serde_json::json!({
        "reason": "not_reading",
        "queuedBytes": out.pending_bytes(),
        "limitBytes": bounds.bytes,
        "limitFrames": bounds.frames,
    }))
}

/// Forgets a kernel → app request whose caller stopped waiting, and tells the app
/// (`$/cancel`), unless the answer came first.
struct CancelOnDrop {
    requests: Arc<Requests<Outcome>>,
    out: Outbox,
    /// The request, until its answer came.
    id: Option<u64>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(id) = self.id
            && self.requests.forget(id)
        {
            let params = to_value(&CancelParams { id: burrow_protocol::Id::Num(id) });
            let _ = self.out.try_send(Message::notification(Cancel::NAME, params));
        }
    }
}

#[cfg(test)]
mod tests;
