//! The tasks of a connection: the writer, the reader, the handling of the far side's
//! requests and notifications.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use burrow_protocol::{ErrorCode, ErrorObject, Id, Message, Notification, Request, Response};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Outbound, Pending, Service, Shared, StreamEvent};
use crate::transport::{FrameReader, FrameWriter};
use crate::{Client, Error};

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

pub(super) async fn write_loop(
    mut writer: FrameWriter,
    mut rx: mpsc::Receiver<Outbound>,
    token: CancellationToken,
    shared: Weak<Shared>,
) {
    loop {
        let next = tokio::select! {
            next = rx.recv() => next,
            () = token.cancelled() => break,
        };
        match next {
            Some(Outbound::Frame(msg)) => {
                let what = Sent::of(&msg);
                let sent = tokio::select! {
                    sent = writer.send(msg) => sent,
                    () = token.cancelled() => break,
                };
                if let Err(e) = sent {
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData
                    ) {
                        // The codec refused this message (too large, unencodable) before
                        // writing a byte: the stream is still in sync.
                        reject_unsendable(&shared, what, &e);
                        continue;
                    }
                    tracing::debug!(error = %e, "write failed; closing the connection");
                    break;
                }
            }
            Some(Outbound::Close(done)) => {
                let _ = writer.close().await;
                let _ = done.send(());
                break;
            }
            None => {
                // Every handle is gone.
                let _ = writer.close().await;
                break;
            }
        }
    }
    mark_closed(&token, &shared);
}

/// What a message that could not be encoded was, to report the failure to its owner.
enum Sent {
    Request(u64),
    Answer(Id),
    Other,
}

impl Sent {
    fn of(msg: &Message) -> Self {
        match msg {
            Message::Request(Request { id: Id::Num(id), .. }) => Sent::Request(*id),
            Message::Response(Response { id: Some(id), .. }) => Sent::Answer(id.clone()),
            _ => Sent::Other,
        }
    }
}

/// A message the codec refused: fail its request, or answer its id with an error instead.
fn reject_unsendable(shared: &Weak<Shared>, what: Sent, error: &std::io::Error) {
    tracing::warn!(%error, "could not encode an outgoing message");
    let Some(shared) = shared.upgrade() else {
        return;
    };
    let failure = || Error::Protocol(format!("cannot send request: {error}"));
    match what {
        Sent::Request(id) => match shared.remove_pending(id) {
            Some(Pending::Call(tx)) => {
                let _ = tx.send(Err(failure()));
            }
            Some(Pending::Stream { tx, .. }) => {
                let _ = tx.try_send(StreamEvent::End(Err(failure())));
            }
            None => {}
        },
        Sent::Answer(id) => {
            let answer = ErrorObject::new(
                ErrorCode::InternalError,
                format!("the answer could not be sent: {error}"),
            );
            shared.try_send_frame(Message::error(Some(id), answer));
        }
        Sent::Other => {}
    }
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
                shared.try_send_frame(e.to_response());
                if e.is_fatal() {
                    break;
                }
            }
            Ok(Message::Response(response)) => shared.resolve(response),
            Ok(Message::Chunk(chunk)) => shared.deliver_chunk(chunk),
            Ok(Message::Request(request)) => handle_request(&shared, &service, request),
            Ok(Message::Notification(n)) => match notifications.try_send(n) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(n)) => {
                    tracing::warn!(method = %n.method, "notification queue full; dropped");
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            },
        }
    }
    mark_closed(&token, &shared);
}

/// Answers one request from the far side in a task of its own.
fn handle_request(shared: &Arc<Shared>, service: &Arc<dyn Service>, request: Request) {
    let in_flight = InFlight::new(shared.clone());
    let id = request.id.clone();
    let method = request.method.clone();
    let client = Client::from_shared(shared.clone());
    // The synchronous part runs here, in order with the frames around it.
    let future = std::panic::catch_unwind(AssertUnwindSafe(|| service.request(request, client)));
    tokio::spawn(async move {
        let outcome = match future {
            Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
            Err(panic) => Err(panic),
        };
        let answer = outcome.unwrap_or_else(|_| {
            tracing::error!(%method, "request handler panicked");
            Err(ErrorObject::new(
                ErrorCode::InternalError,
                format!("the handler of {method:?} failed"),
            ))
        });
        let msg = match answer {
            Ok(result) => Message::success(id, result),
            Err(error) => Message::error(Some(id), error),
        };
        if in_flight.0.send_frame(msg).await.is_err() {
            tracing::debug!(%method, "connection closed before the answer went out");
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
