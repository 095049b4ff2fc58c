//! The IPC adapter of sessions, messages and agent runs: `session.get`, `session.list`,
//! `session.history`, `message.dispatch`, `agent.queue`, `agent.wait`, `agent.cancel`.
//! Each parses its params, calls [`crate::service::sessions`] and answers in the IPC's
//! shapes; the session actor answers a dispatch itself once the message is on disk.

use std::sync::Arc;
use std::time::Duration;

use burrow_protocol::methods::session::{
    AgentCancel, AgentQueue, AgentQueueResult, AgentWait, AgentWaitResult, MessageDispatch,
    SessionGet, SessionGetResult, SessionHistory, SessionHistoryResult, SessionList,
    SessionListResult,
};
use burrow_protocol::methods::{Ack, Method, parse_params, to_value};
use burrow_protocol::{ErrorCode, ErrorObject, Value};

use crate::connection::Responder;
use crate::kernel::Kernel;
use crate::service::sessions::{self as service, HistoryQuery, ListQuery};
use crate::service::{Caller, ServiceError};
use crate::sessions::DispatchReply;
use crate::store::RunRow;

/// Whether `method` belongs to this family.
pub fn handles(method: &str) -> bool {
    matches!(
        method,
        SessionGet::NAME
            | SessionList::NAME
            | SessionHistory::NAME
            | MessageDispatch::NAME
            | AgentQueue::NAME
            | AgentWait::NAME
            | AgentCancel::NAME
    )
}

/// Runs `f` in a task and answers with its outcome.
fn answer<F>(responder: Responder, f: F)
where
    F: Future<Output = Result<Value, ServiceError>> + Send + 'static,
{
    tokio::spawn(async move { responder.reply(f.await.map_err(ErrorObject::from)) });
}

/// Like [`answer`], for answers as large as a frame ([`super::answer_large`]).
fn answer_large<F>(responder: Responder, f: F)
where
    F: Future<Output = Result<Value, ServiceError>> + Send + 'static,
{
    super::answer_large(responder, async move { f.await.map_err(ErrorObject::from) });
}

/// `agent.wait`'s answer, from a run.
pub fn wait_result(run: RunRow) -> AgentWaitResult {
    AgentWaitResult { run_id: run.id, status: run.status, output: run.output, error: run.error }
}

/// Routes the family (see [`handles`]).
pub fn dispatch(
    kernel: &Arc<Kernel>,
    caller: &str,
    method: &str,
    params: Value,
    responder: Responder,
) {
    let kernel = kernel.clone();
    let caller = Caller::new(caller);
    match method {
        SessionGet::NAME => answer(responder, async move {
            let p = parse_params::<<SessionGet as Method>::Params>(params)?;
            let session = service::get(&kernel, &p.key).await?.map(|s| s.ipc());
            Ok(to_value(&SessionGetResult { session }))
        }),
        SessionList::NAME => answer_large(responder, async move {
            let p = parse_params::<<SessionList as Method>::Params>(params)?;
            let query = ListQuery {
                filter: p.filter.unwrap_or_default(),
                limit: p.limit,
                offset: p.offset,
            };
            let (views, total) = service::list(&kernel, query).await?;
            let sessions = views.iter().map(|v| v.ipc()).collect();
            Ok(to_value(&SessionListResult { sessions, total }))
        }),
        SessionHistory::NAME => answer_large(responder, async move {
            let p = parse_params::<<SessionHistory as Method>::Params>(params)?;
            let query = HistoryQuery { limit: p.limit, before: p.before, must_exist: false };
            let page = service::history(&kernel, &p.key, query).await?;
            let truncated = page.truncated.then_some(true);
            Ok(to_value(&SessionHistoryResult { messages: page.messages, truncated }))
        }),
        MessageDispatch::NAME => match parse_params(params) {
            Ok(p) => {
                let reply = Box::new(move |outcome: Result<_, _>| {
                    responder.reply(outcome.map(|d| to_value(&d)))
                });
                service::dispatch(&kernel, &caller, p, DispatchReply::Then(reply));
            }
            Err(e) => responder.reply(Err(e)),
        },
        AgentQueue::NAME => match parse_params::<<AgentQueue as Method>::Params>(params) {
            Ok(p) => {
                let reply = Box::new(move |outcome: Result<_, ErrorObject>| {
                    responder.reply(outcome.and_then(queued))
                });
                let reply = DispatchReply::Then(reply);
                service::queue(&kernel, &caller, &p.session_key, p.text, p.metadata, reply);
            }
            Err(e) => responder.reply(Err(e)),
        },
        AgentWait::NAME => answer(responder, async move {
            let p = parse_params::<<AgentWait as Method>::Params>(params)?;
            let timeout = Duration::from_millis(p.timeout_ms.unwrap_or(30_000));
            Ok(to_value(&wait_result(service::wait(&kernel, &p.run_id, timeout).await?)))
        }),
        AgentCancel::NAME => answer(responder, async move {
            let p = parse_params::<<AgentCancel as Method>::Params>(params)?;
            service::cancel(&kernel, &p.run_id).await?;
            Ok(to_value(&Ack::OK))
        }),
        _ => responder.reply(Err(ErrorObject::new(
            ErrorCode::MethodNotFound,
            format!("no method {method:?}"),
        ))),
    }
}

/// `agent.queue`'s answer, from the dispatch's.
fn queued(d: burrow_protocol::methods::session::DispatchResult) -> Result<Value, ErrorObject> {
    let run_id =
        d.run_id.ok_or_else(|| ErrorObject::new(ErrorCode::InternalError, "no run was queued"))?;
    Ok(to_value(&AgentQueueResult { run_id, queued: d.queued }))
}
