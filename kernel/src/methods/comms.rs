//! The host methods for apps: `session.create`, `comms.send`, `comms.peers`,
//! `session.externalEvent` and `host.call` run [`crate::host::call`] with the app as the
//! caller; `session.events` streams a session's events as chunks until `$/cancel`.

use burrow_protocol::methods::comms::{HostCall, HostCallParams};
use burrow_protocol::methods::{Method, parse_params, table};
use burrow_protocol::{Message, Value};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;

use crate::app_actor::AppActorState;
use crate::connection::Responder;

use burrow_protocol::methods::operator::SessionEvents;

/// The JSON-RPC name of an IPC host method, if `method` is one.
fn host_name(method: &str) -> Option<&'static str> {
    table::by_ipc_name(method).and_then(|m| m.host)
}

/// Whether `method` belongs to this family.
pub fn handles(method: &str) -> bool {
    host_name(method).is_some() || method == HostCall::NAME || method == SessionEvents::NAME
}

/// Routes the family (see [`handles`]); every answer comes from a task.
pub fn dispatch(state: &mut AppActorState, method: &str, params: Value, responder: Responder) {
    let kernel = state.kernel.clone();
    let caller = state.name().to_owned();
    let (name, params) = match host_name(method) {
        Some(name) => (name.to_owned(), params),
        None if method == HostCall::NAME => match parse_params::<HostCallParams>(params) {
            Ok(p) => (p.method, p.params),
            Err(e) => return responder.reply(Err(e)),
        },
        None => return events(state, params, responder),
    };
    let params = if params.is_null() { json!({}) } else { params };
    // A host method's answer, large or not, or a gateway method's (any other name: an
    // app's answer, routed).
    let kind = table::by_host_name(&name).map(|m| m.answer);
    let call = async move { crate::host::call(&kernel, &caller, &name, params).await };
    match kind {
        Some(table::AnswerSize::Large) => super::answer_large(responder, call),
        None => super::answer_routed(responder, call),
        Some(table::AnswerSize::Small) => {
            drop(tokio::spawn(async move { responder.reply(call.await) }))
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsParams {
    session_id: String,
}

/// `session.events`: chunks `{type, ...}` until `$/cancel`, the connection closes, or the
/// follower lags (a `lagged` chunk, then the final result `{ended: "lagged"}`).
fn events(state: &mut AppActorState, params: Value, responder: Responder) {
    let p: EventsParams = match parse_params(params) {
        Ok(p) => p,
        Err(e) => return responder.reply(Err(e)),
    };
    let Some(id) = responder.id().cloned() else { return };
    let stop = tokio_util::sync::CancellationToken::new();
    state.watches.insert(id.clone(), stop.clone());
    let kernel = state.kernel.clone();
    let conn = state.conn.clone();
    tokio::spawn(async move {
        let mut stream = match crate::service::sessions::follow(&kernel, &p.session_id).await {
            Ok(s) => s,
            Err(e) => return responder.reply(Err(e.into())),
        };
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
