//! Sessions, messages and agent runs (PROTOCOL.md §8): `session.get`, `session.list`,
//! `session.history`, `message.dispatch`, `agent.queue`, `agent.wait`, and (a Burrow
//! addition) `agent.cancel`. Each is answered from a task: the store and the session
//! actor do the work.

use std::sync::Arc;
use std::time::Duration;

use burrow_protocol::methods::capability::{CapabilityConfig, CapabilityType};
use burrow_protocol::methods::session::{
    AgentQueueParams, AgentWaitParams, AgentWaitResult, DispatchParams, DispatchResult,
    MAX_HISTORY_LIMIT, MAX_LIST_LIMIT, RunStatus, SessionGetParams, SessionGetResult,
    SessionHistoryParams, SessionHistoryResult, SessionListParams, SessionListResult,
};
use burrow_protocol::methods::{Ack, parse_params, to_value};
use burrow_protocol::rules::check_session_key;
use burrow_protocol::{ErrorCode, ErrorObject, Map, Value};
use serde_json::json;
use tokio::sync::oneshot;

use crate::connection::Responder;
use crate::hooks;
use crate::kernel::Kernel;
use crate::sessions::{DispatchReply, Inbound, SessionMsg, Wake};
use crate::store::Page;

/// `agent.cancel {runId}` → `{ok}`.
pub use burrow_protocol::methods::table::AGENT_CANCEL;
/// Whether `method` belongs to this family.
pub fn handles(method: &str) -> bool {
    matches!(
        method,
        "session.get"
            | "session.list"
            | "session.history"
            | "message.dispatch"
            | "agent.queue"
            | "agent.wait"
            | AGENT_CANCEL
    )
}

/// Longest `agent.wait`.
const MAX_WAIT: Duration = Duration::from_secs(600);

pub(crate) fn store_err(e: crate::store::StoreError) -> ErrorObject {
    ErrorObject::new(ErrorCode::InternalError, e.to_string())
}

/// A `limit` param: `default` when absent, else 1 to `max`.
pub(crate) fn limit(given: Option<u32>, default: u32, max: u32) -> Result<u32, ErrorObject> {
    match given.unwrap_or(default) {
        0 => Err(ErrorObject::invalid_params("limit", format!("limit is 1 to {max}"))),
        n if n > max => Err(ErrorObject::invalid_params("limit", format!("limit is 1 to {max}"))),
        n => Ok(n),
    }
}

/// The most bytes of messages a history page holds: a quarter of a frame is left for the
/// page's own shape (and JSON's escapes on the host surfaces).
pub(crate) fn page_bytes(kernel: &Kernel) -> usize {
    kernel.config().ipc.max_frame_bytes / 4 * 3
}

/// Runs `f` in a task and answers with its outcome.
fn answer<F>(responder: Responder, f: F)
where
    F: Future<Output = Result<Value, ErrorObject>> + Send + 'static,
{
    tokio::spawn(async move { responder.reply(f.await) });
}

/// Routes the §8 methods (see [`handles`]).
pub fn dispatch(
    kernel: &Arc<Kernel>,
    caller: &str,
    method: &str,
    params: Value,
    responder: Responder,
) {
    let kernel = kernel.clone();
    let caller = caller.to_owned();
    match method {
        "session.get" => answer(responder, async move {
            let p: SessionGetParams = parse_params(params)?;
            let row = kernel.store().session(&p.key).await.map_err(store_err)?;
            let session = row.map(|r| r.info(kernel.sessions.is_active(&r.key)));
            Ok(to_value(&SessionGetResult { session }))
        }),
        "session.list" => super::answer_large(responder, async move {
            let p: SessionListParams = parse_params(params)?;
            let limit = limit(p.limit, 50, MAX_LIST_LIMIT)?;
            let filter = p.filter.unwrap_or_default();
            let active = filter.active;
            let (rows, total) = if active.is_some() {
                // `active` is in memory, not in the store: filter the whole match set.
                let (all, _) =
                    kernel.store().sessions(filter, u32::MAX, 0).await.map_err(store_err)?;
                let all: Vec<_> = all
                    .into_iter()
                    .filter(|r| Some(kernel.sessions.is_active(&r.key)) == active)
                    .collect();
                let total = all.len() as u64;
                (
                    all.into_iter()
                        .skip(p.offset.unwrap_or(0) as usize)
                        .take(limit as usize)
                        .collect(),
                    total,
                )
            } else {
                kernel
                    .store()
                    .sessions(filter, limit, p.offset.unwrap_or(0))
                    .await
                    .map_err(store_err)?
            };
            let sessions = rows.iter().map(|r| r.info(kernel.sessions.is_active(&r.key))).collect();
            Ok(to_value(&SessionListResult { sessions, total }))
        }),
        "session.history" => super::answer_large(responder, async move {
            let p: SessionHistoryParams = parse_params(params)?;
            let limit = limit(p.limit, 100, MAX_HISTORY_LIMIT)?;
            let page = Page { limit, before: p.before, max_bytes: page_bytes(&kernel) };
            let page = kernel.store().history_page(&p.key, page).await.map_err(store_err)?;
            let truncated = page.truncated.then_some(true);
            Ok(to_value(&SessionHistoryResult { messages: page.messages, truncated }))
        }),
        "message.dispatch" => {
            let p: DispatchParams = match parse_params(params).and_then(|p: DispatchParams| {
                check_session_key(&p.session_key, "sessionKey").map(|()| p)
            }) {
                Ok(p) => p,
                Err(e) => return responder.reply(Err(e)),
            };
            // Fast path: nobody intercepts `message_received`, so the session actor can
            // take the message and answer the client itself.
            if !kernel.caps.intercepted("message_received") {
                emit_received(&kernel, &caller, &p.session_key, &p.content, p.metadata.as_ref());
                let item = Inbound::new(p.content, p.metadata, caller, Wake::Auto);
                return direct(&kernel, &p.session_key, item, DispatchReply::Dispatch(responder));
            }
            answer(responder, async move {
                message_dispatch(&kernel, &caller, p).await.map(|r| to_value(&r))
            })
        }
        "agent.queue" => {
            let p: AgentQueueParams = match parse_params(params).and_then(|p: AgentQueueParams| {
                check_session_key(&p.session_key, "sessionKey").map(|()| p)
            }) {
                Ok(p) => p,
                Err(e) => return responder.reply(Err(e)),
            };
            let item = Inbound::new(p.text, p.metadata, caller, Wake::Always);
            direct(&kernel, &p.session_key, item, DispatchReply::Queue(responder));
        }
        "agent.wait" => answer(responder, async move {
            let p: AgentWaitParams = parse_params(params)?;
            wait(&kernel, p).await.map(|r| to_value(&r))
        }),
        AGENT_CANCEL => answer(responder, async move {
            #[derive(serde::Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct P {
                run_id: String,
            }
            let p: P = parse_params(params)?;
            cancel(&kernel, &p.run_id).await.map(|()| to_value(&Ack::OK))
        }),
        _ => responder.reply(Err(ErrorObject::new(
            ErrorCode::MethodNotFound,
            format!("no method {method:?}"),
        ))),
    }
}

/// `message_received` for observers.
fn emit_received(kernel: &Kernel, caller: &str, key: &str, content: &str, metadata: Option<&Map>) {
    if !kernel.hooks.observed("message_received") {
        return;
    }
    let mut ctx = Map::new();
    ctx.insert("sessionKey".into(), key.into());
    ctx.insert("appId".into(), caller.into());
    let payload = json!({ "sessionKey": key, "content": content, "metadata": metadata.cloned().unwrap_or_default() });
    kernel.emit("message_received", payload, ctx);
}

/// Hands a message to its session's actor, which answers through `reply`.
pub(crate) fn direct(kernel: &Arc<Kernel>, key: &str, item: Inbound, reply: DispatchReply) {
    let msg = SessionMsg::Inbound(item, reply);
    let Some(actor) = kernel.sessions.actor(kernel, key) else {
        if let SessionMsg::Inbound(_, reply) = msg {
            reply_error(reply, "the session runtime is not running");
        }
        return;
    };
    if let Err(e) = actor.cast(msg) {
        // The actor stopped (evicted) just now: forget it and try a fresh one once.
        kernel.sessions.release(key, &actor.get_cell());
        let ractor::MessagingErr::SendErr(msg) = e else { return };
        match kernel.sessions.actor(kernel, key) {
            Some(fresh) => {
                if let Err(ractor::MessagingErr::SendErr(SessionMsg::Inbound(_, reply))) =
                    fresh.cast(msg)
                {
                    reply_error(reply, "the session could not take the message");
                }
            }
            None => {
                if let SessionMsg::Inbound(_, reply) = msg {
                    reply_error(reply, "the session runtime is not running");
                }
            }
        }
    }
}

fn reply_error(reply: DispatchReply, why: &str) {
    let err = ErrorObject::new(ErrorCode::InternalError, why);
    match reply {
        DispatchReply::Task(tx) => {
            let _ = tx.send(Err(err));
        }
        DispatchReply::Dispatch(r) | DispatchReply::Queue(r) => r.reply(Err(err)),
    }
}

/// `message.dispatch` with interceptors: `message_received`, then the session actor.
async fn message_dispatch(
    kernel: &Arc<Kernel>,
    caller: &str,
    p: DispatchParams,
) -> Result<DispatchResult, ErrorObject> {
    let mut ctx = Map::new();
    ctx.insert("sessionKey".into(), p.session_key.clone().into());
    ctx.insert("appId".into(), caller.into());
    let payload = json!({ "sessionKey": p.session_key, "content": p.content, "metadata": p.metadata.clone().unwrap_or_default() });
    let config = kernel.config();
    let payload = match hooks::intercept(
        kernel.intercept_scope(),
        &config,
        "message_received",
        payload,
        &ctx,
    )
    .await
    {
        Ok(p) => p,
        Err(b) => {
            return Ok(DispatchResult {
                dispatch_id: uuid::Uuid::now_v7().to_string(),
                queued: false,
                run_id: None,
                reason: Some(format!("blocked by {}: {}", b.by, b.reason)),
            });
        }
    };
    let content = payload["content"].as_str().unwrap_or_default().to_owned();
    let metadata = payload["metadata"].as_object().cloned();
    emit_received(kernel, caller, &p.session_key, &content, metadata.as_ref());
    let item = Inbound::new(content, metadata, caller.to_owned(), Wake::Auto);
    to_session(kernel, &p.session_key, item).await
}

/// The caller's channel, when it holds exactly one.
pub fn caller_channel(kernel: &Kernel, caller: &str) -> Option<String> {
    let channels: Vec<String> = kernel
        .caps
        .list(Some(CapabilityType::Channel))
        .iter()
        .filter(|c| c.app_id == caller)
        .filter_map(|c| match &c.config {
            CapabilityConfig::Channel(ch) => Some(ch.channel_id.clone()),
            _ => None,
        })
        .collect();
    (channels.len() == 1).then(|| channels[0].clone())
}

/// Hands a message to its session's actor (spawning it if needed) and waits for the
/// durable acknowledgement.
pub(crate) async fn to_session(
    kernel: &Arc<Kernel>,
    key: &str,
    item: Inbound,
) -> Result<DispatchResult, ErrorObject> {
    let (tx, rx) = oneshot::channel();
    direct(kernel, key, item, DispatchReply::Task(tx));
    rx.await.unwrap_or_else(|_| {
        Err(ErrorObject::new(ErrorCode::InternalError, "the session could not take the message"))
    })
}

pub(crate) async fn wait(
    kernel: &Kernel,
    p: AgentWaitParams,
) -> Result<AgentWaitResult, ErrorObject> {
    let timeout = Duration::from_millis(p.timeout_ms.unwrap_or(30_000)).min(MAX_WAIT);
    let result = |r: &crate::store::RunRow| AgentWaitResult {
        run_id: r.id.clone(),
        status: r.status,
        output: r.output.clone(),
        error: r.error.clone(),
    };
    let terminal =
        |s: RunStatus| matches!(s, RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled);

    let mut rx = match kernel.sessions.watch_run(&p.run_id) {
        Some(rx) => rx,
        None => {
            let row = stored_run(kernel, &p.run_id).await?;
            if terminal(row.status) {
                return Ok(result(&row));
            }
            // A run only the store knows of yet (queued behind others after a restart):
            // watch it from its stored state; it may have ended between the read and now.
            let rx = kernel.sessions.watch_stored_run(row);
            let row = stored_run(kernel, &p.run_id).await?;
            if terminal(row.status) {
                return Ok(result(&row));
            }
            rx
        }
    };
    let done = tokio::time::timeout(timeout, rx.wait_for(|r| terminal(r.status)))
        .await
        .ok()
        .and_then(|r| r.ok().map(|row| row.clone()));
    if let Some(row) = done {
        return Ok(result(&row));
    }
    let now = rx.borrow().clone();
    if !terminal(now.status) {
        return Ok(result(&now));
    }
    stored_run(kernel, &p.run_id).await.map(|row| result(&row))
}

async fn stored_run(kernel: &Kernel, id: &str) -> Result<crate::store::RunRow, ErrorObject> {
    kernel
        .store()
        .run(id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| ErrorObject::new(ErrorCode::NotFound, format!("no run {id:?}")))
}

async fn cancel(kernel: &Arc<Kernel>, run_id: &str) -> Result<(), ErrorObject> {
    let row = kernel
        .store()
        .run(run_id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| ErrorObject::new(ErrorCode::NotFound, format!("no run {run_id:?}")))?;
    if !matches!(row.status, RunStatus::Queued | RunStatus::Running) {
        return Err(ErrorObject::new(
            ErrorCode::Conflict,
            format!("run {run_id:?} already ended ({:?})", row.status),
        ));
    }
    let actor = kernel.sessions.actor(kernel, &row.session_key).ok_or_else(|| {
        ErrorObject::new(ErrorCode::InternalError, "the session runtime is not running")
    })?;
    let (tx, rx) = oneshot::channel();
    actor
        .cast(SessionMsg::Cancel(run_id.to_owned(), tx))
        .map_err(|_| ErrorObject::new(ErrorCode::InternalError, "the session stopped"))?;
    rx.await.map_err(|_| ErrorObject::new(ErrorCode::InternalError, "the session stopped"))?
}
