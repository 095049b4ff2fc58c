//! The correlation engine over one [`Transport`], in both directions.
//!
//! Each connection runs three tasks:
//! - a **writer**: every frame this side sends (requests, answers, notifications) goes
//!   through one [`Outbox`], in order; the sender writes it itself when the socket takes
//!   it at once, and the outbox's flusher task writes the rest (at most
//!   [`OUTGOING_QUEUE`] frames and about [`OUTGOING_BYTES`] wait; a sender then waits);
//! - a **reader** that routes every frame it decodes: a response resolves the pending
//!   request with its id, a chunk goes to its pending stream, a request from the far side
//!   is answered by the [`Service`] in a task of its own (so handlers run concurrently, and
//!   a panic becomes `INTERNAL_ERROR`);
//! - a **notification** task handing the far side's notifications to the service one at a
//!   time, in order, from a bounded queue ([`NOTIFICATION_QUEUE`]).
//!
//! Requests get fresh `u64` ids. A call's answer goes through the request table the
//! kernel uses too ([`burrow_transport::requests`]); a streaming request's chunks go to
//! its stream. When the connection ends (far side gone, I/O error, or
//! [`crate::Client::close`]), every pending request fails with [`Error::Closed`] and
//! [`crate::Client::closed`] resolves. The tasks hold the shared state weakly: when the last
//! [`crate::Client`] is dropped the outbox closes, the socket is shut down and the tasks
//! end.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Poll, ready};
use std::time::Duration;

use burrow_protocol::methods::Cancel;
use burrow_protocol::methods::Method;
use burrow_protocol::{
    Chunk, ErrorCode, ErrorObject, Id, Message, Notification, Request, Response, Value,
};
use futures_util::Stream;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::app::Grants;
use crate::transport::outbox::Bounds;
use crate::transport::requests::Requests;
use crate::transport::{Outbox, SendError, Transport};
use crate::{Client, Error, Result};

/// Most frames waiting to be written.
pub const OUTGOING_QUEUE: usize = 1024;
/// Most bytes waiting to be written (one frame more may be taken while below it).
pub const OUTGOING_BYTES: usize = 16 * 1024 * 1024;
/// Capacity of the queue of notifications waiting for the service; beyond it they are
/// dropped with a warning (never blocking the reader).
pub const NOTIFICATION_QUEUE: usize = 1024;
/// Chunks buffered per streaming request; a consumer that falls further behind loses the
/// stream (it ends with [`Error::Protocol`] and the far side is sent `$/cancel`).
pub const STREAM_QUEUE: usize = 256;
/// How long [`crate::Client::close`] waits for queued frames to be written.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Serves what the far side sends unasked: its requests and notifications.
///
/// Both methods are called on the connection's reader task and must return quickly; the
/// work belongs in the returned future, which runs in a task of its own (requests) or in
/// order on the connection's notification task (notifications).
pub trait Service: Send + Sync + 'static {
    /// Answers one request. A panic (in this call or in the future) is answered with
    /// `INTERNAL_ERROR`.
    fn request(
        &self,
        request: Request,
        client: Client,
    ) -> BoxFuture<std::result::Result<Value, ErrorObject>>;

    /// Takes one notification. The default logs and drops it.
    fn notification(&self, notification: Notification, client: Client) -> BoxFuture<()> {
        let _ = client;
        tracing::debug!(method = %notification.method, "notification without a handler");
        Box::pin(async {})
    }
}

/// The service of a plain client: every request is `METHOD_NOT_FOUND`.
#[derive(Debug)]
struct NoService;

impl Service for NoService {
    fn request(
        &self,
        request: Request,
        _client: Client,
    ) -> BoxFuture<std::result::Result<Value, ErrorObject>> {
        Box::pin(std::future::ready(Err(method_not_found(&request.method))))
    }
}

/// `METHOD_NOT_FOUND` for `method`.
pub(crate) fn method_not_found(method: &str) -> ErrorObject {
    ErrorObject::new(ErrorCode::MethodNotFound, format!("no handler for method {method:?}"))
}

/// One item of a [`CallStream`].
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    /// A `{id, chunk}` frame's content.
    Chunk(Value),
    /// The final result; nothing follows.
    End(Value),
}

enum StreamEvent {
    Chunk(Value),
    End(Result<Value>),
}

/// Where a streaming request's chunks and end go.
struct Streaming {
    tx: mpsc::Sender<StreamEvent>,
    overflowed: Arc<AtomicBool>,
}

/// State shared by a connection's handles and tasks.
pub(crate) struct Shared {
    out: Outbox,
    /// Calls awaiting answers; their ids number streams too.
    calls: Requests<Result<Value>>,
    streams: Mutex<HashMap<u64, Streaming>>,
    /// Cancelled once the connection is gone.
    closed: CancellationToken,
    /// Set by `close` once it stops waiting for handlers: no new requests or
    /// notifications from this side ([`Error::Shutdown`]).
    closing: AtomicBool,
    /// Requests from the far side being handled, and a signal when it drops to zero.
    in_flight: AtomicUsize,
    idle: Notify,
    /// What stops each request from the far side being handled, by its id: its `$/cancel`.
    serving: Mutex<HashMap<Id, CancellationToken>>,
    /// The app id, once an `App` registered on this connection.
    app_id: OnceLock<String>,
    /// What the kernel granted, once an `App` announced its capabilities here.
    grants: OnceLock<Arc<Grants>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("app_id", &self.app_id.get())
            .field("closed", &self.closed.is_cancelled())
            .field("pending", &(self.calls.len() + self.lock_streams().len()))
            .field("in_flight", &self.in_flight.load(Ordering::Relaxed))
            .finish()
    }
}

/// Starts the reader and writer tasks of a connection. Needs a tokio runtime.
pub(crate) fn spawn(transport: Transport, service: Option<Arc<dyn Service>>) -> Arc<Shared> {
    let Transport { reader, writer } = transport;
    // The outbox has a token of its own: its end (the far side stopped reading) must
    // not stop the reader before it delivered the answers already sent.
    let bounds = Bounds { frames: OUTGOING_QUEUE, bytes: OUTGOING_BYTES };
    let (out, flusher) = Outbox::new(writer, bounds, CancellationToken::new());
    let closed = CancellationToken::new();
    let shared = Arc::new(Shared {
        out,
        calls: Requests::new(|_, _| Err(Error::Timeout)),
        streams: Mutex::new(HashMap::new()),
        closed,
        closing: AtomicBool::new(false),
        in_flight: AtomicUsize::new(0),
        idle: Notify::new(),
        serving: Mutex::new(HashMap::new()),
        app_id: OnceLock::new(),
        grants: OnceLock::new(),
    });
    let weak = Arc::downgrade(&shared);
    let token = shared.closed.clone();
    tokio::spawn(tasks::write_loop(flusher, token.clone(), weak.clone()));
    let service = service.unwrap_or_else(|| Arc::new(NoService));
    let (note_tx, note_rx) = mpsc::channel(NOTIFICATION_QUEUE);
    tokio::spawn(tasks::notification_loop(note_rx, service.clone(), weak.clone()));
    tokio::spawn(tasks::read_loop(reader, token, weak, service, note_tx));
    shared
}

impl Shared {
    fn lock_streams(&self) -> MutexGuard<'_, HashMap<u64, Streaming>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    pub(crate) async fn closed(&self) {
        self.closed.cancelled().await;
    }

    pub(crate) fn app_id(&self) -> Option<&str> {
        self.app_id.get().map(String::as_str)
    }

    pub(crate) fn set_app_id(&self, id: String) {
        let _ = self.app_id.set(id);
    }

    pub(crate) fn grants(&self) -> Option<Arc<Grants>> {
        self.grants.get().cloned()
    }

    pub(crate) fn set_grants(&self, grants: Grants) {
        let _ = self.grants.set(Arc::new(grants));
    }

    /// Refuses new outgoing work once closing or closed.
    fn check_open(&self) -> Result<()> {
        if self.closing.load(Ordering::Acquire) {
            Err(Error::Shutdown)
        } else if self.closed.is_cancelled() {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// Registers a call under a fresh id; its answer goes to `tx`.
    fn insert_call(&self, tx: oneshot::Sender<Result<Value>>) -> Result<u64> {
        self.check_open()?;
        let id = self.calls.next_id();
        let then = Box::new(move |outcome| drop(tx.send(outcome)));
        self.calls.wait(id, then);
        // `fail_pending` marks the connection closed before it fails the table: a call
        // added after that is caught here, one added before it is failed there.
        if self.closed.is_cancelled() {
            self.calls.fail(id, Err(Error::Closed));
        }
        Ok(id)
    }

    /// Registers a stream under a fresh id.
    fn insert_stream(&self, entry: Streaming) -> Result<u64> {
        self.check_open()?;
        let id = self.calls.next_id();
        let mut streams = self.lock_streams();
        // Checked under the lock: `fail_pending` cancels and drains under it too, so an
        // entry is either drained or never inserted.
        if self.closed.is_cancelled() {
            return Err(Error::Closed);
        }
        streams.insert(id, entry);
        Ok(id)
    }

    /// Marks the connection closed and fails every call and stream with `Closed`.
    fn fail_pending(&self) {
        self.out.abort();
        let drained: Vec<Streaming> = {
            let mut streams = self.lock_streams();
            self.closed.cancel();
            streams.drain().map(|(_, s)| s).collect()
        };
        // A stream's sender is dropped: its consumer sees the end and reports Closed.
        drop(drained);
        self.calls.fail_all(|| Err(Error::Closed));
    }

    /// Sends a frame, waiting while the outbox is full.
    async fn send_frame(&self, msg: Message) -> Result<()> {
        self.out.send(msg).await.map_err(|e| match e {
            SendError::Encode(e) => Error::Protocol(format!("cannot send: {e}")),
            SendError::Full(_) | SendError::Closed => Error::Closed,
        })
    }

    /// Sends one chunk of the far side's streaming request `id` (we answer it later).
    pub(crate) async fn send_chunk(&self, id: Id, chunk: Value) -> Result<()> {
        self.check_open()?;
        self.send_frame(Message::chunk(id, chunk)).await
    }

    /// Sends a frame without waiting; drops it with a warning when the outbox is full.
    fn try_send_frame(&self, msg: Message) {
        match self.out.try_send(msg) {
            Ok(()) | Err(SendError::Closed) => {}
            Err(SendError::Full(_)) => tracing::warn!("outgoing queue full; dropped a frame"),
            Err(SendError::Encode(e)) => tracing::warn!(error = %e, "could not encode a frame"),
        }
    }

    /// Asks the far side to stop request `id` (best effort).
    fn cancel_remote(&self, id: u64) {
        if !self.closed.is_cancelled() {
            let params = serde_json::json!({ "id": id });
            self.try_send_frame(Message::notification(Cancel::NAME, params));
        }
    }

    /// Sends a request and waits for its answer, for at most `timeout` when given.
    pub(crate) async fn request(
        &self,
        method: &str,
        params: Value,
        timeout: Option<Duration>,
    ) -> Result<Value> {
        let (tx, rx) = oneshot::channel();
        let id = self.insert_call(tx)?;
        // Forgets the request however this future ends (answer, timeout, dropped).
        let _guard = PendingGuard { shared: self, id };
        let call = async {
            self.send_frame(Message::request(id, method, params)).await?;
            rx.await.unwrap_or(Err(Error::Closed))
        };
        match timeout {
            None => call.await,
            Some(limit) => match tokio::time::timeout(limit, call).await {
                Ok(answer) => answer,
                // The guard sends the far side `$/cancel`.
                Err(_) => Err(Error::Timeout),
            },
        }
    }

    /// Sends a notification.
    pub(crate) async fn notify(&self, method: &str, params: Value) -> Result<()> {
        self.check_open()?;
        self.send_frame(Message::notification(method, params)).await
    }

    /// Sends a streaming request; its chunks and final result come through the stream.
    pub(crate) async fn request_stream(
        self: &Arc<Self>,
        method: &str,
        params: Value,
    ) -> Result<CallStream> {
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let overflowed = Arc::new(AtomicBool::new(false));
        let id = self.insert_stream(Streaming { tx, overflowed: overflowed.clone() })?;
        let stream = CallStream { shared: self.clone(), id, rx, overflowed, done: false };
        self.send_frame(Message::request(id, method, params)).await?;
        Ok(stream)
    }

    /// Closes gracefully: waits up to `grace` for the answers to the far side's requests,
    /// writes what is queued, shuts the connection down.
    pub(crate) async fn close(&self, grace: Duration) {
        // Handlers finishing their work may still call the far side meanwhile.
        if tokio::time::timeout(grace, self.wait_idle()).await.is_err() {
            tracing::warn!(
                in_flight = self.in_flight.load(Ordering::Acquire),
                "closing with requests still being handled"
            );
        }
        self.closing.store(true, Ordering::Release);
        self.out.close();
        if tokio::time::timeout(FLUSH_TIMEOUT, self.out.closed()).await.is_err() {
            tracing::warn!("could not flush the connection in time");
            self.out.abort();
        }
        self.fail_pending();
    }

    /// Resolves when no request from the far side is being handled.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.in_flight.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Routes a response to its pending request.
    fn resolve(&self, response: Response) {
        let id = match response.id {
            Some(Id::Num(id)) => id,
            None => {
                if let Err(e) = &response.outcome {
                    tracing::warn!(code = %e.code, message = %e.message, "the far side reported an error about one of our frames");
                }
                return;
            }
            Some(other) => {
                tracing::warn!(id = %other, "response with an id we never used");
                return;
            }
        };
        self.finish(id, response.outcome.map_err(Error::Remote));
    }

    /// Ends pending request `id` with `outcome`.
    fn finish(&self, id: u64, outcome: Result<Value>) {
        let Some(outcome) = self.calls.resolve(id, outcome) else { return };
        let stream = self.lock_streams().remove(&id);
        match stream {
            Some(Streaming { tx, .. }) => {
                if let Err(mpsc::error::TrySendError::Full(last)) =
                    tx.try_send(StreamEvent::End(outcome))
                {
                    // The last event: waiting for room cannot reorder anything.
                    tokio::spawn(async move {
                        let _ = tx.send(last).await;
                    });
                }
            }
            None => tracing::debug!(id, "answer to a request no longer waited for"),
        }
    }

    /// Routes a chunk to its pending stream.
    fn deliver_chunk(&self, chunk: Chunk) {
        let Id::Num(id) = chunk.id else {
            tracing::warn!(id = %chunk.id, "chunk with an id we never used");
            return;
        };
        let mut streams = self.lock_streams();
        let overflow = match streams.get(&id) {
            Some(Streaming { tx, overflowed }) => {
                match tx.try_send(StreamEvent::Chunk(chunk.chunk)) {
                    Ok(()) => return,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        overflowed.store(true, Ordering::Release);
                        true
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                }
            }
            None => {
                tracing::debug!(id, "chunk for a stream no longer read (or a call's)");
                return;
            }
        };
        streams.remove(&id);
        drop(streams);
        if overflow {
            tracing::warn!(id, "stream consumer fell behind; cancelling the stream");
            self.cancel_remote(id);
        }
    }
}

/// Removes a pending entry when its request is abandoned (timeout, dropped future), and
/// tells the far side with `$/cancel` when no answer had come.
struct PendingGuard<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if self.shared.calls.forget(self.id) {
            self.shared.cancel_remote(self.id);
        }
    }
}

/// The chunks and final result of a streaming request
/// ([`crate::Client::request_stream`]).
///
/// Yields `Ok(Chunk)` zero or more times, then `Ok(End(result))` or one `Err`, then
/// `None`. Dropping it before the end removes the request and sends the far side
/// `$/cancel`.
pub struct CallStream {
    shared: Arc<Shared>,
    id: u64,
    rx: mpsc::Receiver<StreamEvent>,
    overflowed: Arc<AtomicBool>,
    done: bool,
}

impl std::fmt::Debug for CallStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallStream").field("id", &self.id).field("done", &self.done).finish()
    }
}

impl CallStream {
    /// The id of the streaming request (what `$/cancel` names).
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Stream for CallStream {
    type Item = Result<StreamItem>;

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let item = match ready!(this.rx.poll_recv(cx)) {
            Some(StreamEvent::Chunk(value)) => {
                return Poll::Ready(Some(Ok(StreamItem::Chunk(value))));
            }
            Some(StreamEvent::End(outcome)) => outcome.map(StreamItem::End),
            None if this.overflowed.load(Ordering::Acquire) => Err(Error::Protocol(format!(
                "stream {} dropped: more than {STREAM_QUEUE} chunks were not read",
                this.id
            ))),
            None => Err(Error::Closed),
        };
        this.done = true;
        Poll::Ready(Some(item))
    }
}

impl Drop for CallStream {
    fn drop(&mut self) {
        if !self.done && self.shared.lock_streams().remove(&self.id).is_some() {
            self.shared.cancel_remote(self.id);
        }
    }
}

mod tasks;

#[cfg(test)]
mod tests;
