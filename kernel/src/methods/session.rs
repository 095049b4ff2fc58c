//! The IPC adapter of the two session methods the session's actor answers itself, once
//! the message is on disk: `message.dispatch` and `agent.queue`
//! ([`crate::service::sessions::dispatch`], [`crate::service::sessions::queue`]). The
//! other session methods are shared handlers ([`crate::handlers`]).

use std::sync::Arc;

use burrow_protocol::methods::session::{
    AgentQueue, AgentQueueParams, AgentQueueResult, DispatchParams, DispatchResult, MessageDispatch,
};
use burrow_protocol::methods::{Method, parse_params, to_value};
use burrow_protocol::{ErrorCode, ErrorObject, Value};

use crate::connection::Responder;
use crate::kernel::Kernel;
use crate::service::Caller;
use crate::service::sessions as service;
use crate::sessions::DispatchReply;

/// Hands `message.dispatch` or `agent.queue` to the session; its actor answers.
pub fn take(kernel: &Arc<Kernel>, caller: &str, method: &str, params: Value, responder: Responder) {
    let caller = Caller::new(caller);
    match method {
        MessageDispatch::NAME => match parse_params::<DispatchParams>(params) {
            Ok(p) => {
                let reply = move |outcome: Result<DispatchResult, ErrorObject>| {
                    responder.reply(outcome.map(|d| to_value(&d)))
                };
                service::dispatch(kernel, &caller, p, DispatchReply::Then(Box::new(reply)));
            }
            Err(e) => responder.reply(Err(e)),
        },
        AgentQueue::NAME => match parse_params::<AgentQueueParams>(params) {
            Ok(p) => {
                let reply = move |outcome: Result<DispatchResult, ErrorObject>| {
                    responder.reply(outcome.and_then(queued))
                };
                let reply = DispatchReply::Then(Box::new(reply));
                service::queue(kernel, &caller, &p.session_key, p.text, p.metadata, reply);
            }
            Err(e) => responder.reply(Err(e)),
        },
        _ => responder.reply(Err(ErrorObject::new(
            ErrorCode::MethodNotFound,
            format!("no method {method:?}"),
        ))),
    }
}

/// `agent.queue`'s answer, from the dispatch's.
fn queued(d: DispatchResult) -> Result<Value, ErrorObject> {
    let run_id =
        d.run_id.ok_or_else(|| ErrorObject::new(ErrorCode::InternalError, "no run was queued"))?;
    Ok(to_value(&AgentQueueResult { run_id, queued: d.queued }))
}
