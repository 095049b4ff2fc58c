//! Serving the REST router over TCP with HTTP/1.1 (hyper), with the deadlines and the
//! cap of [`HttpLimits`]:
//!
//! - a connection with no request in flight that receives nothing for `idle_timeout` is
//!   closed (a new connection, or a kept-alive one between requests);
//! - once a request's first byte has arrived, its header must be complete within
//!   `header_read_timeout`, or the connection is closed;
//! - a request's body must have arrived within `body_read_timeout` of its header, or it is
//!   answered 408 (`reason: "body_timeout"`) and the connection closed;
//! - at most `max_connections` are served at once; one more is answered 503
//!   (`reason: "too_many_connections"`) and closed at once ([`super::super::admit`]).
//!
//! - a response (or event stream) the client takes none of for `write_timeout` closes
//!   the connection: a client that does not read holds its answer no longer.
//!
//! A request is in flight from its complete header until its response has been sent, so
//! an event stream is never idle. A response holding a large answer's slot
//! ([`super::LargeSlot`]) keeps it until it is sent. On `stop` the server stops accepting, closes idle
//! connections, lets requests in flight finish (event streams end), and waits up to 10 s
//! for them.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use burrow_protocol::{ErrorCode, ErrorObject};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::{DRAIN, StopSignal};
use crate::surface::admit::Admission;
use crate::surface::http_error_body;

/// Deadlines and the connection cap of [`serve_http`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections served at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// How long a request's header may take from its first byte.
    pub header_read_timeout: Duration,
    /// How long a request's body may take from its complete header.
    pub body_read_timeout: Duration,
    /// How long a connection with no request in flight may receive nothing.
    pub idle_timeout: Duration,
    /// How long the client may take none of a response being written.
    pub write_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: 512,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `router` on `listener` until `stop`, within `limits`; then stops accepting,
/// closes idle connections, ends event streams, and waits (up to 10 s) for requests in
/// progress.
pub async fn serve_http(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    stop: CancellationToken,
) {
    let router = router.layer(axum::Extension(StopSignal(stop.clone())));
    let admission = Admission::new("http", limits.max_connections, refusal(limits.max_connections));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            () = stop.cancelled() => break,
        };
        match accepted {
            Ok((stream, _peer)) => match admission.try_admit() {
                Some(slot) => {
                    let _ = stream.set_nodelay(true);
                    let connection = serve_one(stream, router.clone(), limits, stop.clone(), slot);
                    connections.spawn(connection);
                }
                None => admission.refuse(stream),
            },
            Err(e) => {
                // E.g. out of file descriptors: wait a little instead of spinning.
                tracing::warn!(error = %e, "http: accept failed");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    () = stop.cancelled() => break,
                }
            }
        }
    }
    drop(listener);
    let drained =
        tokio::time::timeout(DRAIN, async { while connections.join_next().await.is_some() {} })
            .await;
    if drained.is_err() {
        tracing::warn!(open = connections.len(), "http: stopped with requests still in progress");
        connections.shutdown().await;
    }
}

/// The answer to a connection over the cap: 503 with the usual error body.
fn refusal(max: usize) -> Bytes {
    let error = ErrorObject::new(
        ErrorCode::UnknownError,
        format!("the HTTP surface serves at most {max} connections at once; retry later"),
    )
    .with_data(json!({"reason": "too_many_connections", "limit": max}));
    let body = http_error_body(&error).to_string();
    Bytes::from(format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n{body}",
        body.len()
    ))
}

/// Serves one connection until it ends, a deadline passes, or (after `stop`) its requests
/// in flight are done.
async fn serve_one<S>(
    stream: S,
    router: Router,
    limits: HttpLimits,
    stop: CancellationToken,
    _slot: OwnedSemaphorePermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched { stream, activity: activity.clone() });
    let on_request = activity.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let in_flight = on_request.begin();
        let router = router.clone();
        async move {
            let request: Request =
                request.map(|body| with_read_deadline(body, limits.body_read_timeout));
            let Ok(mut response) = router.oneshot(request).await;
            let slot = response.extensions_mut().remove::<super::LargeSlot>();
            let held = |body| Held { body, rest: Bytes::new(), _in_flight: in_flight, _slot: slot };
            Ok::<_, Infallible>(response.map(held))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Header and idle deadlines are kept below, where the difference is known.
    builder.header_read_timeout(None);
    let connection = builder.serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    let mut stopping = false;
    loop {
        let deadline = activity.deadline(&limits);
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "http: connection ended with an error");
                }
                return;
            }
            () = stop.cancelled(), if !stopping => {
                stopping = true;
                if activity.is_idle() {
                    return;
                }
                connection.as_mut().graceful_shutdown();
            }
            () = activity.changed.notified() => {}
            () = tokio::time::sleep_until(deadline.map_or_else(Instant::now, |d| d.0)), if deadline.is_some() => {
                if let Some(why) = activity.expired(&limits) {
                    tracing::debug!(why, "http: closing a connection");
                    return;
                }
            }
        }
    }
}

/// What a connection is doing, for its deadlines.
#[derive(Debug)]
struct Activity {
    phase: Mutex<Phase>,
    /// Told when a deadline may have moved earlier or appeared.
    changed: Notify,
}

#[derive(Debug)]
struct Phase {
    /// Requests whose header is complete and whose response is not yet sent.
    in_flight: usize,
    /// When the connection was last without a request in flight (opened, or its last
    /// response sent).
    idle_since: Instant,
    /// The first byte received since then.
    first_byte: Option<Instant>,
    /// Since when a write has been waiting for the client to take something.
    write_blocked: Option<Instant>,
}

impl Activity {
    fn new() -> Activity {
        let phase = Phase {
            in_flight: 0,
            idle_since: Instant::now(),
            first_byte: None,
            write_blocked: None,
        };
        Activity { phase: Mutex::new(phase), changed: Notify::new() }
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes arrived.
    fn received(&self) {
        let mut phase = self.phase();
        if phase.in_flight == 0 && phase.first_byte.is_none() {
            phase.first_byte = Some(Instant::now());
            drop(phase);
            self.changed.notify_one();
        }
    }

    /// A write found the client's socket full (`true`), or wrote something (`false`).
    fn write_blocked(&self, blocked: bool) {
        let mut phase = self.phase();
        match (blocked, phase.write_blocked.is_some()) {
            (true, false) => {
                phase.write_blocked = Some(Instant::now());
                drop(phase);
                self.changed.notify_one();
            }
            (false, true) => phase.write_blocked = None,
            _ => {}
        }
    }

    /// A request's header is complete; it is in flight until the guard is dropped.
    fn begin(self: &Arc<Self>) -> InFlight {
        self.phase().in_flight += 1;
        InFlight(self.clone())
    }

    fn is_idle(&self) -> bool {
        self.phase().in_flight == 0
    }

    /// When the connection is closed unless something happens, and why; while a
    /// request is in flight, only a write the client takes nothing of has one.
    fn deadline(&self, limits: &HttpLimits) -> Option<(Instant, &'static str)> {
        let phase = self.phase();
        if let Some(blocked) = phase.write_blocked {
            return Some((blocked + limits.write_timeout, "write_timeout"));
        }
        if phase.in_flight > 0 {
            return None;
        }
        Some(match phase.first_byte {
            Some(first) => (first + limits.header_read_timeout, "header_timeout"),
            None => (phase.idle_since + limits.idle_timeout, "idle_timeout"),
        })
    }

    /// Why the connection is to be closed now, if it is.
    fn expired(&self, limits: &HttpLimits) -> Option<&'static str> {
        let (deadline, why) = self.deadline(limits)?;
        (deadline <= Instant::now()).then_some(why)
    }
}

/// A request in flight.
#[derive(Debug)]
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut phase = self.0.phase();
        phase.in_flight = phase.in_flight.saturating_sub(1);
        if phase.in_flight == 0 {
            phase.idle_since = Instant::now();
            phase.first_byte = None;
            drop(phase);
            self.0.changed.notify_one();
        }
    }
}

/// The connection's stream, telling its [`Activity`] when bytes arrive.
#[derive(Debug)]
struct Watched<S> {
    stream: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.received();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.activity.write_blocked(polled.is_pending());
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.activity.write_blocked(polled.is_pending());
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A response body that keeps its request in flight (and its large answer's slot)
/// until it is sent (or dropped). Its data goes out in pieces of at most [`PIECE`], each
/// a copy: hyper takes the next only while it has room (a few hundred KiB), so the body
/// (and its slot) lasts about as long as its writing, and what hyper holds is small.
#[derive(Debug)]
struct Held {
    body: Body,
    /// What is left of a data frame larger than a piece.
    rest: Bytes,
    _in_flight: InFlight,
    _slot: Option<super::LargeSlot>,
}

/// The largest piece of a response body handed to hyper at once.
const PIECE: usize = 64 * 1024;

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if self.rest.is_empty() {
            match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => self.rest = data,
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                other => return other,
            }
        }
        // A copy, not a slice: a slice would keep the whole answer alive for as long as
        // hyper holds its last piece.
        let n = self.rest.len().min(PIECE);
        let piece = Bytes::copy_from_slice(&self.rest[..n]);
        self.rest = self.rest.split_off(n);
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let (hint, rest) = (self.body.size_hint(), self.rest.len() as u64);
        let mut out = SizeHint::new();
        out.set_lower(hint.lower() + rest);
        if let Some(upper) = hint.upper() {
            out.set_upper(upper + rest);
        }
        out
    }
}

/// The request body did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} ms", .0.as_millis())]
pub(super) struct BodyTimeout(Duration);

/// Whether `error` or one of its causes is a [`BodyTimeout`].
pub(super) fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<BodyTimeout>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// `body`, failing with [`BodyTimeout`] once `timeout` has passed before its end.
fn with_read_deadline<B>(body: B, timeout: Duration) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<axum::BoxError>,
{
    if body.is_end_stream() {
        return Body::new(body);
    }
    Body::new(ReadDeadline { body, timeout, sleep: Box::pin(tokio::time::sleep(timeout)) })
}

struct ReadDeadline<B> {
    body: B,
    timeout: Duration,
    sleep: Pin<Box<Sleep>>,
}

impl<B> http_body::Body for ReadDeadline<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(self.timeout))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests;
