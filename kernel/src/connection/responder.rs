//! [`Responder`]: the handle that answers one request, exactly once.

use burrow_protocol::{ErrorCode, ErrorObject, Id, Message, Response, Value};
use burrow_transport::SendError;
use tokio::sync::OwnedSemaphorePermit;

use super::Connection;

/// Answers one request. Dropping it unanswered answers `INTERNAL_ERROR`, so every request
/// gets exactly one answer.
#[derive(Debug)]
#[must_use = "a request must be answered"]
pub struct Responder {
    pub(super) conn: Connection,
    pub(super) id: Option<Id>,
    /// Its in-flight slot (its share of the in-flight bytes), or its stream slot.
    pub(super) permit: Option<OwnedSemaphorePermit>,
    /// A large-answer slot, once [`Self::prepare_large`] took one.
    pub(super) large: Option<OwnedSemaphorePermit>,
    /// The request is among the connection's cancellable calls until it is answered.
    pub(super) cancellable: bool,
    /// Its metrics, recorded when it is answered.
    pub(super) timer: crate::metrics::RequestTimer,
    /// The method's row in the method table (`None`: a name the table does not have),
    /// looked up once, by the reader.
    pub(super) method: Option<&'static burrow_protocol::methods::table::MethodInfo>,
}

impl Responder {
    /// The request's method's row in the method table, as the reader found it (`None`:
    /// a name the table does not have, e.g. an app's gateway method).
    pub fn method(&self) -> Option<&'static burrow_protocol::methods::table::MethodInfo> {
        self.method
    }

    /// The request's id.
    pub fn id(&self) -> Option<&Id> {
        self.id.as_ref()
    }

    /// Makes sure the request holds a permit for work answered later. A request the
    /// reader held until an in-flight slot was free has one already; a stream takes one
    /// of the streams' own (`max_in_flight` of them), and with none left gets the error
    /// to answer (`UNKNOWN_ERROR`, `data.reason = "too_many_in_flight"`).
    pub fn hold_in_flight(&mut self) -> Result<(), ErrorObject> {
        if self.permit.is_some() {
            return Ok(());
        }
        let permit = self.conn.streams.clone().try_acquire_owned().map_err(|_| {
            let limit = self.conn.limits.max_in_flight;
            ErrorObject::new(
                ErrorCode::UnknownError,
                format!(
                    "too many streams open on this connection (limit {limit}); retry when some end"
                ),
            )
            .with_data(serde_json::json!({ "reason": "too_many_in_flight", "limit": limit }))
        })?;
        self.permit = Some(permit);
        Ok(())
    }

    /// Waits for a large-answer slot and for room in the writer queue: call it before
    /// preparing an answer that may be as large as a frame (stored messages, another
    /// app's answer), so that a client that does not read holds only a few of them.
    /// Returns at once when the connection is closing.
    pub async fn prepare_large(&mut self) {
        if self.large.is_some() {
            return;
        }
        let conn = &self.conn;
        tokio::select! {
            slot = conn.large.clone().acquire_owned() => self.large = slot.ok(),
            () = conn.closing.cancelled() => return,
        }
        conn.out.room().await;
    }

    /// Makes the request cancellable: a `$/cancel` of it from the client cancels
    /// `cancel` ([`crate::connection::CallCancel`]), until it is answered.
    pub fn cancellable(&mut self, cancel: super::CallCancel) {
        if let Some(id) = &self.id {
            self.conn.cancellable(id, cancel);
            self.cancellable = true;
        }
    }

    /// The request is answered: no longer cancellable.
    fn answered(&mut self, id: &Id) {
        if std::mem::take(&mut self.cancellable) {
            self.conn.call_done(id);
        }
    }

    /// Releases the in-flight permit, if one was held, and sends the answer: in that
    /// order, so a client that sends its next request on reading this answer finds the
    /// room it freed.
    pub fn reply(mut self, outcome: Result<Value, ErrorObject>) {
        self.permit = None;
        if let Some(id) = self.id.take() {
            self.timer.done(outcome.as_ref().map(drop).map_err(|e| e.code));
            self.answered(&id);
            self.conn.send(Message::Response(Response { id: Some(id), outcome }));
        }
    }
}

impl Responder {
    /// Sends the answer if the writer queue takes it now, within its bounds: then no
    /// large-answer slot is needed, since the queue's bound holds. Gives the outcome back
    /// otherwise (queue full, or an answer that cannot be encoded), for
    /// [`Self::prepare_large`] and [`Self::reply`].
    pub fn try_reply_now(
        &mut self,
        outcome: Result<Value, ErrorObject>,
    ) -> Option<Result<Value, ErrorObject>> {
        let id = self.id.take()?;
        let result = outcome.as_ref().map(drop).map_err(|e| e.code);
        let answer = Message::Response(Response { id: Some(id.clone()), outcome });
        let sent = self.conn.out.try_send(answer);
        self.permit = None;
        if !matches!(sent, Err(SendError::Full(Message::Response(_)))) {
            self.timer.done(result);
            self.answered(&id);
        }
        match sent {
            Ok(()) | Err(SendError::Closed) => None,
            Err(SendError::Full(Message::Response(Response { outcome, .. }))) => {
                self.id = Some(id);
                Some(outcome)
            }
            Err(SendError::Full(_)) => None,
            Err(SendError::Encode(e)) => {
                let why = format!("the answer cannot be sent: {e}");
                self.conn.send(Message::error(
                    Some(id),
                    ErrorObject::new(ErrorCode::InternalError, why),
                ));
                None
            }
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.permit = None;
        if let Some(id) = self.id.take() {
            self.timer.done(Err(ErrorCode::InternalError));
            self.answered(&id);
            let err = ErrorObject::new(ErrorCode::InternalError, "the kernel dropped this request");
            self.conn.send(Message::error(Some(id), err));
        }
    }
}
