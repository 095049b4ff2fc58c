//! One [`Connection`] per client socket: framing, a reader task, a writer task fed by a
//! bounded queue, and the table of kernel → app requests awaiting answers.
//!
//! Actors see whole messages only. The reader answers malformed frames itself (they never
//! reach an actor), resolves responses to the kernel's own requests, and hands requests
//! and notifications to the owner through a callback. Requests hold an in-flight permit
//! until their answer is queued, which bounds what one client can make the kernel hold.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use burrow_protocol::{ErrorCode, ErrorObject, Id, Message, Notification, Request, Value, now_ms};
use burrow_sdk::transport::Transport;
use dashmap::DashMap;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// What the reader hands to the connection's owner.
#[derive(Debug)]
pub enum Inbound {
    /// A request; the permit is released when its answer has been queued.
    Request(Request, OwnedSemaphorePermit),
    /// A notification.
    Notification(Notification),
    /// The connection is gone (read side ended, write failed, or it was closed).
    Closed(String),
}

/// Bounds and limits of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest frame, both directions.
    pub max_frame_bytes: usize,
    /// Requests in flight at once.
    pub max_in_flight: usize,
    /// Frames queued for the writer.
    pub writer_queue: usize,
}

enum Outbound {
    Message(Message),
    /// Flush what is queued, then close.
    Close,
}

type Pending = DashMap<u64, oneshot::Sender<Result<Value, ErrorObject>>>;

/// A cheap handle to one client connection.
#[derive(Clone)]
pub struct Connection {
    id: u64,
    out: mpsc::Sender<Outbound>,
    pending: Arc<Pending>,
    next_request: Arc<AtomicU64>,
    last_seen: Arc<AtomicU64>,
    closing: CancellationToken,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Starts the reader and writer tasks over `transport`; `deliver` receives what the
    /// reader reads and returns false when the owner is gone (the connection then closes).
    pub fn spawn<F>(id: u64, transport: Transport, limits: Limits, deliver: F) -> Self
    where
        F: Fn(Inbound) -> bool + Send + Sync + 'static,
    {
        let (tx, rx) = mpsc::channel(limits.writer_queue);
        let conn = Self {
            id,
            out: tx,
            pending: Arc::new(DashMap::new()),
            next_request: Arc::new(AtomicU64::new(1)),
            last_seen: Arc::new(AtomicU64::new(now_ms())),
            closing: CancellationToken::new(),
        };
        tokio::spawn(write_loop(transport.writer, rx, conn.closing.clone(), id));
        tokio::spawn(conn.clone().read_loop(transport.reader, limits, deliver));
        conn
    }

    /// The connection's kernel-wide id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The shared last-activity clock (ms since the epoch), updated on every frame.
    pub fn last_seen(&self) -> Arc<AtomicU64> {
        self.last_seen.clone()
    }

    /// Queues a message. A full queue means the client does not read: it is disconnected.
    pub fn send(&self, msg: Message) {
        match self.out.try_send(Outbound::Message(msg)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(
                    conn = self.id,
                    "writer queue full: client is not reading; disconnecting"
                );
                self.closing.cancel();
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Answers a request.
    pub fn reply(&self, id: Id, outcome: Result<Value, ErrorObject>) {
        self.send(Message::Response(burrow_protocol::Response {
            id: Some(id),
            outcome,
        }));
    }

    /// Sends what is queued, then closes.
    pub fn close(&self) {
        if self.out.try_send(Outbound::Close).is_err() {
            self.closing.cancel();
        }
    }

    /// Closes at once, dropping what is queued.
    pub fn abort(&self) {
        self.closing.cancel();
    }

    /// Whether the connection is closed or closing.
    pub fn is_closed(&self) -> bool {
        self.closing.is_cancelled() || self.out.is_closed()
    }

    /// Resolves when the connection is closed.
    pub async fn closed(&self) {
        self.closing.cancelled().await;
    }

    /// Sends a kernel → app request. The returned future resolves with the answer,
    /// `TIMEOUT` after `timeout`, or `CONNECTION_CLOSED`. Await it outside actor handlers.
    pub fn request(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> impl Future<Output = Result<Value, ErrorObject>> + Send + 'static {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.insert(id, tx);
        self.send(Message::request(id, method, params));
        let pending = self.pending.clone();
        let closed = self.is_closed();
        let method = method.to_owned();
        async move {
            if closed {
                pending.remove(&id);
                return Err(connection_closed());
            }
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(_)) => Err(connection_closed()),
                Err(_) => {
                    pending.remove(&id);
                    Err(ErrorObject::new(
                        ErrorCode::Timeout,
                        format!("no answer to {method} within {} ms", timeout.as_millis()),
                    ))
                }
            }
        }
    }

    /// How many kernel → app requests await answers.
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    async fn read_loop<F>(
        self,
        mut reader: burrow_sdk::transport::FrameReader,
        limits: Limits,
        deliver: F,
    ) where
        F: Fn(Inbound) -> bool + Send + Sync + 'static,
    {
        let permits = Arc::new(Semaphore::new(limits.max_in_flight));
        let reason = loop {
            let frame = tokio::select! {
                _ = self.closing.cancelled() => break "closed by the kernel".to_owned(),
                frame = reader.next() => frame,
            };
            let decoded = match frame {
                None => break "closed by the peer".to_owned(),
                Some(Err(e)) => break format!("read error: {e}"),
                Some(Ok(decoded)) => decoded,
            };
            self.last_seen.store(now_ms(), Ordering::Relaxed);
            let msg = match decoded {
                Ok(msg) => msg,
                Err(e) => {
                    tracing::debug!(conn = self.id, error = %e, "bad frame");
                    self.send(e.to_response());
                    if e.is_fatal() {
                        self.close();
                        break format!("fatal frame error: {e}");
                    }
                    continue;
                }
            };
            let delivered = match msg {
                Message::Request(req) => {
                    let permit = tokio::select! {
                        _ = self.closing.cancelled() => break "closed by the kernel".to_owned(),
                        permit = permits.clone().acquire_owned() => permit,
                    };
                    let Ok(permit) = permit else {
                        break "permits closed".to_owned();
                    };
                    deliver(Inbound::Request(req, permit))
                }
                Message::Notification(n) => deliver(Inbound::Notification(n)),
                Message::Response(resp) => {
                    self.resolve(resp);
                    true
                }
                Message::Chunk(chunk) => {
                    tracing::debug!(conn = self.id, id = %chunk.id, "unexpected stream chunk ignored");
                    true
                }
            };
            if !delivered {
                break "owner stopped".to_owned();
            }
        };
        // Every kernel → app request still waiting fails with CONNECTION_CLOSED.
        self.pending.clear();
        tracing::debug!(conn = self.id, %reason, "connection read side ended");
        // The owner answers what it already received, then closes gracefully; if it is
        // gone, nobody will: cut the connection now.
        if !deliver(Inbound::Closed(reason)) {
            self.abort();
        }
    }

    /// Queues a graceful close and cuts the connection if it has not closed within
    /// `grace` (a client that does not read must not hold the writer).
    pub fn close_within(&self, grace: Duration) {
        self.close();
        let conn = self.clone();
        tokio::spawn(async move {
            if tokio::time::timeout(grace, conn.closed()).await.is_err() {
                conn.abort();
            }
        });
    }

    fn resolve(&self, resp: burrow_protocol::Response) {
        let entry = match &resp.id {
            Some(Id::Num(n)) => self.pending.remove(n),
            _ => None,
        };
        match entry {
            Some((_, tx)) => {
                let _ = tx.send(resp.outcome);
            }
            None => match resp.outcome {
                Err(e) => {
                    tracing::warn!(conn = self.id, id = ?resp.id, error = %e, "error from client")
                }
                Ok(_) => {
                    tracing::debug!(conn = self.id, id = ?resp.id, "response to no pending request")
                }
            },
        }
    }
}

fn connection_closed() -> ErrorObject {
    ErrorObject::new(
        ErrorCode::ConnectionClosed,
        "the app disconnected before answering",
    )
}

async fn write_loop(
    mut writer: burrow_sdk::transport::FrameWriter,
    mut rx: mpsc::Receiver<Outbound>,
    closing: CancellationToken,
    conn: u64,
) {
    loop {
        let item = tokio::select! {
            _ = closing.cancelled() => break,
            item = rx.recv() => item,
        };
        let Some(Outbound::Message(msg)) = item else {
            break;
        };
        let reply_id = match &msg {
            Message::Response(r) => r.id.clone(),
            _ => None,
        };
        let flush = rx.is_empty();
        // A client that stops reading must not hold the writer forever: closing wins.
        let result = tokio::select! {
            _ = closing.cancelled() => break,
            r = async { if flush { writer.send(msg).await } else { writer.feed(msg).await } } => r,
        };
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput && reply_id.is_some() => {
                // Our answer does not fit in a frame: say so instead.
                let err =
                    ErrorObject::new(ErrorCode::InternalError, format!("result too large: {e}"));
                if writer.send(Message::error(reply_id, err)).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                tracing::debug!(conn, error = %e, "write failed");
                break;
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), writer.close()).await;
    closing.cancel();
}
