//! The tasks of a connection: the writer, the reader, the handling of the far side's
//! requests and notifications.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use burrow_protocol::methods::{Cancel, CancelParams, Method, parse_params};
use burrow_protocol::{ErrorCode, ErrorObject, Id, Message, Notification, Request};
use futures_util::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Service, Shared};
use crate::Client;
use crate::transport::{FrameReader, SendError};

/// Counts a request from the far side as in flight until dropped.
struct InFlight(Arc<Shared>);

impl InFlight {
    fn new(shared: Arc<Shared>) -> Self {
        shared.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(shared)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Closes the connection's state once a task ends.
fn mark_closed(token: &CancellationToken, shared: &Weak<Shared>) {
    match shared.upgrade() {
        Some(shared) => shared.fail_pending(),
        None => token.cancel(),
    }
}

/// How long the reader may go on after the writing side ended, to deliver answers the far
/// side sent before it went away.
const READ_GRACE: Duration = Duration::from_secs(2);

/// Runs the outbox's flusher. When it ends (closed, or a write failed because the far
/// side went away) the connection ends too, but only once the reader has had a moment to
/// deliver what the far side sent before it left: an answer already in the socket still
/// reaches its caller.
pub(super) async fn write_loop(
    flusher: impl Future<Output = ()>,
    token: CancellationToken,
    shared: Weak<Shared>,
) {
    flusher.await;
    let _ = tokio::time::timeout(READ_GRACE, token.cancelled()).await;
    mark_closed(&token, &shared);
}

pub(super) async fn read_loop(
    mut reader: FrameReader,
    token: CancellationToken,
    shared: Weak<Shared>,
    service: Arc<dyn Service>,
    notifications: mpsc::Sender<Notification>,
) {
    loop {
        let item = tokio::select! {
            item = reader.next() => item,
            () = token.cancelled() => break,
        };
        let frame = match item {
            None => {
                tracing::debug!("the far side closed the connection");
                break;
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "read failed; closing the connection");
                break;
            }
            Some(Ok(frame)) => frame,
        };
        let Some(shared) = shared.upgrade() else {
            break;
        };
        match frame {
            Err(e) => {
                tracing::warn!(error = %e, "undecodable frame from the far side");
                // An answer this side cannot read fails the request it answered now.
                if let Some(Id::Num(id)) = e.answered() {
                    let why = format!("the answer could not be read: {e}");
                    shared.finish(id, Err(crate::Error::Protocol(why)));
                }
                shared.try_send_frame(e.to_response());
                if e.is_fatal() {
                    break;
                }
            }
            Ok(Message::Response(response)) => shared.resolve(response),
            Ok(Message::Chunk(chunk)) => shared.deliver_chunk(chunk),
            Ok(Message::Request(request)) => handle_request(&shared, &service, request),
            Ok(Message::Notification(n)) => {
                if n.method == Cancel::NAME {
                    // Here, in order with the request it names; the service hears of it
                    // too (its streams).
                    match parse_params::<CancelParams>(n.params.clone()) {
                        Ok(p) => stop_serving(&shared, &p.id),
                        Err(e) => tracing::debug!(error = %e, "malformed $/cancel"),
                    }
                }
                match notifications.try_send(n) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(n)) => {
                        tracing::warn!(method = %n.method, "notification queue full; dropped");
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
        }
    }
    mark_closed(&token, &shared);
}

/// The far side's `$/cancel` of its request `id`: the handler serving it is dropped, and
/// the request answered `UNKNOWN_ERROR` with `data.reason: "cancelled"`. An id not being
/// served is ignored.
fn stop_serving(shared: &Shared, id: &Id) {
    let stop = shared.serving.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    if let Some(stop) = stop {
        stop.cancel();
    }
}

/// Answers one request from the far side in a task of its own; its `$/cancel` drops the
/// handler ([`stop_serving`]).
fn handle_request(shared: &Arc<Shared>, service: &Arc<dyn Service>, request: Request) {
    let in_flight = InFlight::new(shared.clone());
    let id = request.id.clone();
    let method = request.method.clone();
    let client = Client::from_shared(shared.clone());
    let stop = CancellationToken::new();
    shared.serving.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), stop.clone());
    // The synchronous part runs here, in order with the frames around it.
    let future = std::panic::catch_unwind(AssertUnwindSafe(|| service.request(request, client)));
    tokio::spawn(async move {
        let outcome = match future {
            Ok(future) => tokio::select! {
                outcome = AssertUnwindSafe(future).catch_unwind() => outcome,
                () = stop.cancelled() => Ok(Err(ErrorObject::new(
                    ErrorCode::UnknownError,
                    format!("{method} was cancelled"),
                )
                .with_data(serde_json::json!({ "reason": "cancelled" })))),
            },
            Err(panic) => Err(panic),
        };
        in_flight.0.serving.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        let answer = outcome.unwrap_or_else(|_| {
            tracing::error!(%method, "request handler panicked");
            Err(ErrorObject::new(
                ErrorCode::InternalError,
                format!("the handler of {method:?} failed"),
            ))
        });
        let msg = match answer {
            Ok(result) => Message::success(id.clone(), result),
            Err(error) => Message::error(Some(id.clone()), error),
        };
        match in_flight.0.out.send(msg).await {
            Ok(()) => {}
            Err(SendError::Encode(e)) => {
                tracing::warn!(%method, error = %e, "could not encode an answer");
                let answer = ErrorObject::new(
                    ErrorCode::InternalError,
                    format!("the answer could not be sent: {e}"),
                );
                in_flight.0.try_send_frame(Message::error(Some(id), answer));
            }
            Err(_) => tracing::debug!(%method, "connection closed before the answer went out"),
        }
        drop(in_flight);
    });
}

/// Hands notifications to the service one at a time, in order.
pub(super) async fn notification_loop(
    mut rx: mpsc::Receiver<Notification>,
    service: Arc<dyn Service>,
    shared: Weak<Shared>,
) {
    while let Some(notification) = rx.recv().await {
        let Some(shared) = shared.upgrade() else {
            break;
        };
        let method = notification.method.clone();
        let client = Client::from_shared(shared);
        let run = async { service.notification(notification, client).await };
        if AssertUnwindSafe(run).catch_unwind().await.is_err() {
            tracing::error!(%method, "notification handler panicked");
        }
    }
}
