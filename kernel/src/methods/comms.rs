//! The IPC adapter of `host.call` (any host method by its host name, or an app's
//! gateway method, with the app as the caller) and `session.events` (a session's events
//! as chunks until `$/cancel`). The host methods apps call by their IPC names
//! (`session.create`, `comms.send`, ...) are shared handlers ([`crate::handlers`]).

use burrow_protocol::methods::comms::{HostCall, HostCallParams};
use burrow_protocol::methods::{Method, parse_params, table};
use burrow_protocol::{Message, Value};
use futures_util::StreamExt;
use serde_json::json;

use crate::app_actor::AppActorState;
use crate::connection::Responder;

use burrow_protocol::methods::operator::{SessionEvents, SessionEventsParams};

/// Whether `method` belongs to this family.
pub fn handles(method: &str) -> bool {
    method == HostCall::NAME || method == SessionEvents::NAME
}

/// Routes the family (see [`handles`]); every answer comes from a task.
pub fn dispatch(state: &mut AppActorState, method: &str, params: Value, responder: Responder) {
    if method == SessionEvents::NAME {
        return events(state, params, responder);
    }
    let p = match parse_params::<HostCallParams>(params) {
        Ok(p) => p,
        Err(e) => return responder.reply(Err(e)),
    };
    let (kernel, caller) = (state.kernel.clone(), state.name().to_owned());
    let params = if p.params.is_null() { json!({}) } else { p.params };
    // A host method's answer, large or not, or a gateway method's (any other name: an
    // app's answer, routed).
    let kind = table::by_host_name(&p.method).map(|m| m.answer);
    let call = async move { crate::host::call(&kernel, &caller, &p.method, params).await };
    match kind {
        Some(table::AnswerSize::Large) => super::answer_large(responder, call),
        None => super::answer_routed(responder, call),
        Some(table::AnswerSize::Small) => {
            drop(tokio::spawn(async move { responder.reply(call.await) }))
        }
    }
}

/// `session.events`: chunks `{type, ...}` until `$/cancel`, the connection closes, or the
/// follower lags (a `lagged` chunk, then the final result `{ended: "lagged"}`).
fn events(state: &mut AppActorState, params: Value, responder: Responder) {
    let p: SessionEventsParams = match parse_params(params) {
        Ok(p) => p,
        Err(e) => return responder.reply(Err(e)),
    };
    let Some(id) = responder.id().cloned() else { return };
    let stop = tokio_util::sync::CancellationToken::new();
    state.watches.insert(id.clone(), stop.clone());
    let kernel = state.kernel.clone();
    let conn = state.conn.clone();
    // Followed here, in the order of the connection's requests: an event published after
    // any later request of this client was handled reaches it.
    let mut stream = kernel.sessions.follow(&p.session_id, kernel.config().ipc.writer_queue_bytes);
    tokio::spawn(async move {
        if !p.allow_new
            && let Err(e) = crate::service::sessions::existing(&kernel, &p.session_id).await
        {
            return responder.reply(Err(e.into()));
        }
        let ended = loop {
            let event = tokio::select! {
                _ = stop.cancelled() => break "cancelled",
                _ = conn.closed() => return,
                event = stream.next() => event,
            };
            let Some(event) = event else { break "lagged" };
            if !conn.send_wait(Message::chunk(id.clone(), event)).await {
                return;
            }
        };
        responder.reply(Ok(json!({ "ended": ended })));
    });
}
