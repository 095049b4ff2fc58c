//! Routed calls a client may cancel. A client's `tool.call` becomes the kernel's
//! `tool.invoke` on the tool's app; when the client sends `$/cancel` for its call, the
//! kernel passes it on as `$/cancel` of that `tool.invoke` ([`CallCancel`]), and goes on
//! waiting, within the call's deadline, for the app's answer, which it relays as it is.
//! A connection keeps the cancellable calls its client has in flight
//! ([`Connection::cancellable`]), each until it is answered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use burrow_protocol::Id;
use burrow_protocol::methods::{Cancel, CancelParams, Method, to_value};

use super::Connection;

/// Where a cancellable call went, and whether it was cancelled.
#[derive(Debug, Clone, Default)]
pub struct CallCancel(Arc<Mutex<CallState>>);

#[derive(Debug, Default)]
enum CallState {
    /// Its request is not sent yet (hooks may still be deciding).
    #[default]
    Pending,
    /// Sent to an app's connection, as request `id` there.
    Sent(Connection, u64),
    /// Cancelled.
    Cancelled,
}

impl CallCancel {
    fn lock(&self) -> std::sync::MutexGuard<'_, CallState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The call's request went to `conn` as request `id`. When the call was cancelled
    /// before, the app is told at once.
    pub fn sent(&self, conn: &Connection, id: u64) {
        let mut state = self.lock();
        match *state {
            CallState::Cancelled => conn.cancel_request(id),
            _ => *state = CallState::Sent(conn.clone(), id),
        }
    }

    /// Cancels the call: the app it went to gets `$/cancel` for its request (once); a
    /// call not sent yet is told when it is ([`CallCancel::sent`]).
    pub fn cancel(&self) {
        let was = std::mem::replace(&mut *self.lock(), CallState::Cancelled);
        if let CallState::Sent(conn, id) = was {
            conn.cancel_request(id);
        }
    }

    /// Whether it was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(*self.lock(), CallState::Cancelled)
    }
}

/// A connection's cancellable calls in flight, by the client's request id. Each holds an
/// in-flight slot while it is here, so they are as bounded as those.
#[derive(Debug, Default)]
pub(super) struct Calls(Mutex<HashMap<Id, CallCancel>>);

impl Calls {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Id, CallCancel>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Connection {
    /// Keeps `cancel` for the client's request `id` until it is answered
    /// ([`Connection::call_done`]): a `$/cancel` of `id` from the client cancels it.
    pub fn cancellable(&self, id: &Id, cancel: CallCancel) {
        self.calls.lock().insert(id.clone(), cancel);
    }

    /// The client's request `id` was answered.
    pub(super) fn call_done(&self, id: &Id) {
        self.calls.lock().remove(id);
    }

    /// The client sent `$/cancel` for its request `id`: a cancellable call passes it on.
    /// Returns whether one was in flight.
    pub fn cancel_call(&self, id: &Id) -> bool {
        let cancel = self.calls.lock().remove(id);
        cancel.map(|c| c.cancel()).is_some()
    }

    /// Sends the app `$/cancel` for the kernel's request `id`, and goes on waiting for its
    /// answer (within the request's deadline).
    pub fn cancel_request(&self, id: u64) {
        let params = to_value(&CancelParams { id: Id::Num(id) });
        let _ = self.out.try_send(burrow_protocol::Message::notification(Cancel::NAME, params));
    }
}
