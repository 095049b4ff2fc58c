//! One [`Connection`] per client socket: framing, a reader task, an [`Outbox`] (senders
//! write their frames themselves when the socket takes them; its flusher task writes the
//! rest), and the table of kernel → app requests awaiting answers.
//!
//! Actors see whole messages only. The reader answers malformed frames itself (they never
//! reach an actor), resolves responses to the kernel's own requests, and hands requests
//! and notifications to the owner through a callback. Three bounds keep one client from
//! growing the kernel's memory:
//!
//! - **queued**: each request or notification holds a [`QueuePermit`] until its owner has
//!   handled it; with `max_queued` waiting, the reader stops reading (back-pressure);
//! - **in flight**: a request whose answer comes later (a routed call, a stream) must take
//!   one of `max_in_flight` permits ([`Responder::hold_in_flight`]); with none left it is
//!   answered at once with an error, until some finish;
//! - **writer queue**: a client that does not read what the kernel writes fills its
//!   `writer_queue` and is disconnected.
//!
//! Closing is graceful by default ([`Connection::close`]: what is queued is written
//! first); [`Connection::abort`] cuts at once and is kept for dead peers. When a write fails
//! because the app went away, the reader still gets a moment to deliver what the app sent
//! before it left.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use burrow_protocol::{
    ErrorCode, ErrorObject, Id, Message, Notification, Request, Response, Value,
};
use burrow_sdk::transport::{FrameReader, Outbox, SendError, Transport};
use dashmap::DashMap;
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::mono_ms;

/// How long a connection whose owner stopped waits for the owner's last answers (and
/// then for them to be written) before it closes.
const OWNER_GRACE: Duration = Duration::from_secs(2);

/// How long the reader may go on after a write failed because the app went away, so
/// that answers the app sent before it left still reach their callers.
const READ_GRACE: Duration = Duration::from_secs(2);

/// What the reader hands to the connection's owner.
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
    /// Requests being worked on after their handler returned (routed calls, streams).
    pub max_in_flight: usize,
    /// Frames queued for the writer.
    pub writer_queue: usize,
}

/// Held while a request or notification waits for its owner; drop it once handled.
#[derive(Debug)]
pub struct QueuePermit(#[allow(dead_code)] OwnedSemaphorePermit);

type Pending = DashMap<u64, oneshot::Sender<Result<Value, ErrorObject>>>;

/// A cheap handle to one client connection.
#[derive(Clone)]
pub struct Connection {
    id: u64,
    out: Outbox,
    pending: Arc<Pending>,
    next_request: Arc<AtomicU64>,
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
    tasks: TaskTracker,
    in_flight: Arc<Semaphore>,
    limits: Limits,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("id", &self.id).finish_non_exhaustive()
    }
}

/// Answers one request. Dropping it unanswered answers `INTERNAL_ERROR`, so every request
/// gets exactly one answer.
#[derive(Debug)]
#[must_use = "a request must be answered"]
pub struct Responder {
    conn: Connection,
    id: Option<Id>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Responder {
    /// The request's id.
    pub fn id(&self) -> Option<&Id> {
        self.id.as_ref()
    }

    /// Takes one of the connection's in-flight permits for work answered later; with
    /// none left, the error to answer (`UNKNOWN_ERROR`, `data.reason = "too_many_in_flight"`).
    pub fn hold_in_flight(&mut self) -> Result<(), ErrorObject> {
        let permit = self.conn.in_flight.clone().try_acquire_owned().map_err(|_| {
            let limit = self.conn.limits.max_in_flight;
            ErrorObject::new(
                ErrorCode::UnknownError,
                format!("too many requests in flight on this connection (limit {limit}); retry when some finish"),
            )
            .with_data(serde_json::json!({ "reason": "too_many_in_flight", "limit": limit }))
        })?;
        self.permit = Some(permit);
        Ok(())
    }

    /// Releases the in-flight permit, if one was held, and sends the answer: in that
    /// order, so a client that sends its next request on reading this answer finds the
    /// room it freed.
    pub fn reply(mut self, outcome: Result<Value, ErrorObject>) {
        self.permit = None;
        if let Some(id) = self.id.take() {
            self.conn.send(Message::Response(Response { id: Some(id), outcome }));
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.permit = None;
        if let Some(id) = self.id.take() {
            let err = ErrorObject::new(ErrorCode::InternalError, "the kernel dropped this request");
            self.conn.send(Message::error(Some(id), err));
        }
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
        let read_ended = CancellationToken::new();
        let close_asked = CancellationToken::new();
        let (out, flusher) =
            Outbox::new(transport.writer, limits.writer_queue, CancellationToken::new());
        let conn = Self {
            id,
            out,
            pending: Arc::new(DashMap::new()),
            next_request: Arc::new(AtomicU64::new(1)),
            last_seen: Arc::new(AtomicU64::new(mono_ms())),
            read_done: Arc::new(AtomicBool::new(false)),
            read_ended: read_ended.clone(),
            close_asked: close_asked.clone(),
            closing: closing.clone(),
            tasks: tasks.clone(),
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
            limits,
        };
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
            closing.cancel();
        });
        tasks.spawn(conn.clone().read_loop(transport.reader, limits, deliver));
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

    /// Sends a message, without waiting. A full writer queue means the client does not
    /// read: it is disconnected. An answer that cannot be encoded (too large for a frame)
    /// is replaced by an error saying so.
    pub fn send(&self, msg: Message) {
        let reply_id = match &msg {
            Message::Response(r) => r.id.clone(),
            _ => None,
        };
        match self.out.try_send(msg) {
            Err(SendError::Encode(e)) => match reply_id {
                Some(id) => {
                    let err = ErrorObject::new(
                        ErrorCode::InternalError,
                        format!("the answer cannot be sent: {e}"),
                    );
                    // Once: if even the error does not fit, the connection goes.
                    if let Err(again) = self.out.try_send(Message::error(Some(id), err)) {
                        self.refused(again);
                    }
                }
                None => tracing::warn!(conn = self.id, error = %e, "could not encode a message"),
            },
            Err(e) => self.refused(e),
            Ok(()) => {}
        }
    }

    /// What a refused send means for the connection.
    fn refused(&self, e: SendError) {
        match e {
            SendError::Closed => {}
            SendError::Full(_) => {
                tracing::warn!(
                    conn = self.id,
                    "writer queue full: client is not reading; disconnecting"
                );
                self.abort();
            }
            SendError::Encode(e) => {
                tracing::warn!(conn = self.id, error = %e, "cannot answer within a frame; disconnecting");
                self.abort();
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
        self.closing.cancel();
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
        // The reader sets `read_done` before clearing the table: an entry inserted after
        // the clear is caught here, one inserted before it is dropped by the clear.
        let gone = self.read_done.load(Ordering::SeqCst) || self.closing.is_cancelled();
        let refused = if gone {
            Some(connection_closed())
        } else {
            match self.out.try_send(Message::request(id, method, params)) {
                Ok(()) => None,
                Err(SendError::Encode(e)) => Some(ErrorObject::new(
                    ErrorCode::InvalidParams,
                    format!("the request to the app cannot be sent: {e}"),
                )),
                Err(e) => {
                    self.refused(e);
                    Some(connection_closed())
                }
            }
        };
        if refused.is_some() {
            self.pending.remove(&id);
        }
        let pending = self.pending.clone();
        let method = method.to_owned();
        async move {
            if let Some(e) = refused {
                return Err(e);
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

    async fn read_loop<F>(self, mut reader: FrameReader, limits: Limits, deliver: F)
    where
        F: Fn(Inbound) -> bool + Send + Sync + 'static,
    {
        let queued = Arc::new(Semaphore::new(limits.max_queued));
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
            self.last_seen.store(mono_ms(), Ordering::Relaxed);
            let msg = match decoded {
                Ok(msg) => msg,
                Err(e) => {
                    tracing::debug!(conn = self.id, error = %e, "bad frame");
                    // An answer the kernel cannot read fails the request it answered now,
                    // not at its timeout.
                    if let Some(id) = e.answered() {
                        let why = format!("the app's answer could not be read: {e}");
                        let outcome = Err(ErrorObject::new(ErrorCode::InternalError, why));
                        self.resolve(Response { id: Some(id), outcome });
                    }
                    self.send(e.to_response());
                    if e.is_fatal() {
                        // The owner answers what it already received, then closes.
                        break format!("fatal frame error: {e}");
                    }
                    continue;
                }
            };
            if let Message::Response(resp) = msg {
                self.resolve(resp);
                continue;
            }
            if let Message::Chunk(chunk) = msg {
                tracing::debug!(conn = self.id, id = %chunk.id, "unexpected stream chunk ignored");
                continue;
            }
            // Requests and notifications wait for a permit: back-pressure on the client.
            let permit = tokio::select! {
                _ = self.closing.cancelled() => break "closed by the kernel".to_owned(),
                permit = queued.clone().acquire_owned() => permit,
            };
            let Ok(permit) = permit else {
                break "permits closed".to_owned();
            };
            let permit = QueuePermit(permit);
            let inbound = match msg {
                Message::Request(req) => {
                    let responder =
                        Responder { conn: self.clone(), id: Some(req.id.clone()), permit: None };
                    Inbound::Request(req, responder, permit)
                }
                Message::Notification(n) => Inbound::Notification(n, permit),
                Message::Response(_) | Message::Chunk(_) => continue,
            };
            if !deliver(inbound) {
                break "owner stopped".to_owned();
            }
        };
        // Every kernel → app request still waiting fails with CONNECTION_CLOSED.
        self.read_done.store(true, Ordering::SeqCst);
        self.pending.clear();
        self.read_ended.cancel();
        tracing::debug!(conn = self.id, %reason, "connection read side ended");
        // The owner answers what it already received, then closes. One that is gone or
        // on its way out (an app actor answering its app's `app.shutdown` as it stops)
        // gets a moment to do so; then the connection closes gracefully here, so answers
        // already queued still go out.
        if !deliver(Inbound::Closed(reason))
            && tokio::time::timeout(OWNER_GRACE, self.closed()).await.is_err()
        {
            self.close_within(OWNER_GRACE);
        }
    }

    fn resolve(&self, resp: Response) {
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
    ErrorObject::new(ErrorCode::ConnectionClosed, "the app disconnected before answering")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::{SinkExt, StreamExt};
    use serde_json::json;

    use super::*;

    /// A connection whose frames may be at most `max_frame_bytes`, and the far side's
    /// transport (with a generous limit of its own).
    fn pair(max_frame_bytes: usize, answer: Value) -> (Connection, Transport) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let (ar, aw) = tokio::io::split(a);
        let (br, bw) = tokio::io::split(b);
        let limits = Limits { max_frame_bytes, max_queued: 4, max_in_flight: 4, writer_queue: 8 };
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

    #[tokio::test]
    async fn a_stopping_owner_still_gets_its_last_answers_out() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let (ar, aw) = tokio::io::split(a);
        let (br, bw) = tokio::io::split(b);
        let limits =
            Limits { max_frame_bytes: 1024, max_queued: 4, max_in_flight: 4, writer_queue: 8 };
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
            let asked = conn.request("tool.invoke", json!({}), Duration::from_secs(10));
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
        let asked = conn.request("tool.invoke", json!({}), Duration::from_secs(60));
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
        let asked = conn.request(
            "tool.invoke",
            json!({ "pad": "x".repeat(1000) }),
            Duration::from_secs(60),
        );
        let err = tokio::time::timeout(Duration::from_secs(5), asked).await.expect("at once");
        assert_eq!(err.expect_err("refused").code, ErrorCode::InvalidParams);
        assert_eq!(conn.pending_requests(), 0);
        assert!(!conn.closing.is_cancelled());
    }
}
