//! Sessions, their messages and runs: what `session.*`, `message.dispatch`, `agent.*`
//! (IPC) and `session/*`, `run/wait` (JSON-RPC, REST) do. A message goes to its
//! session's actor ([`crate::sessions`]), which stores it and answers once it is on
//! disk; reads go to the store.

use std::sync::Arc;
use std::time::Duration;

use burrow_protocol::methods::capability::{CapabilityConfig, CapabilityType};
use burrow_protocol::methods::comms::{
    ExternalEventParams, ExternalEventReceipt, MAX_COMMS_NAME, MAX_EVENT_TYPE, SessionCreateParams,
    SessionCreateResult,
};
use burrow_protocol::methods::contract::{
    HistoryPage as ContractHistory, LAST_TEXT_WITHIN, SessionDetails, SessionSummary, history_row,
};
use burrow_protocol::methods::invoke::Role;
use burrow_protocol::methods::session::{
    DispatchParams, DispatchResult, RunStatus, SessionFilter, SessionInfo,
};
use burrow_protocol::rules::check_session_key;
use burrow_protocol::{ErrorObject, Map, Value, now_ms};
use futures_util::stream::BoxStream;
use serde_json::json;
use tokio::sync::oneshot;

use super::{Caller, ServiceError};
use crate::hooks;
use crate::kernel::Kernel;
use crate::sessions::{DispatchReply, Inbound, SessionMsg, Wake};
use crate::store::{HistoryPage, Page, RunRow, SessionRow, Write};

/// Longest wait for a run's end (`agent.wait`, `run/wait`, `session/create`).
pub const MAX_WAIT: Duration = Duration::from_secs(600);

/// A session as the store holds it, and whether it is in memory now: what both
/// surfaces' views project.
#[derive(Debug, Clone)]
pub struct SessionView {
    /// The stored session.
    pub row: SessionRow,
    /// Whether its actor is in memory.
    pub active: bool,
}

impl SessionView {
    fn of(kernel: &Kernel, row: SessionRow) -> Self {
        let active = kernel.sessions.is_active(&row.key);
        SessionView { row, active }
    }

    /// The IPC's view (`session.get`, `session.list`).
    pub fn ipc(&self) -> SessionInfo {
        self.row.info(self.active)
    }

    /// The host contract's view in `session/list`.
    pub fn summary(self) -> SessionSummary {
        let row = self.row;
        SessionSummary {
            session_id: row.key,
            created_at: row.created_at / 1000,
            updated_at: row.last_active_at / 1000,
            message_count: row.message_count,
            total_tokens: row.input_tokens + row.output_tokens,
            is_active: self.active,
            labels: row.labels,
        }
    }

    /// The host contract's view in `session/read`: with its agent's model and provider.
    pub fn details(self, kernel: &Kernel) -> SessionDetails {
        let agent = kernel.config().agents.get(&self.row.agent_id).cloned().unwrap_or_default();
        let named = |s: String, default: &str| if s.is_empty() { default.to_owned() } else { s };
        let row = self.row;
        SessionDetails {
            session_id: row.key,
            created_at: row.created_at / 1000,
            updated_at: row.last_active_at / 1000,
            message_count: row.message_count,
            is_active: self.active,
            model: named(agent.model, "default"),
            provider: named(agent.provider, "none"),
            labels: row.labels,
            last_assistant_text: None,
        }
    }
}

/// The most bytes of messages `session/read` reads to find `last_assistant_text`.
const LAST_TEXT_BYTES: usize = 1 << 20;

/// `session/read`: session `id` in the host contract's shape, with the text of its last
/// assistant message that has any (among its last [`LAST_TEXT_WITHIN`]).
pub async fn details(kernel: &Kernel, id: &str) -> Result<SessionDetails, ServiceError> {
    let mut details = read(kernel, id).await?.details(kernel);
    // The newest messages (read back from the end, not counted from the start), bounded
    // in bytes as a history page is.
    let newest = Page { limit: LAST_TEXT_WITHIN, before: None, max_bytes: LAST_TEXT_BYTES };
    details.last_assistant_text = kernel
        .store()
        .history_page(id, newest)
        .await?
        .messages
        .into_iter()
        .rev()
        .find(|m| m.role == Role::Assistant && !m.content.is_empty())
        .map(|m| m.content);
    Ok(details)
}

/// Most messages `session/history` gives at once, and the furthest it skips.
const HISTORY_LIMIT: u32 = 1000;
const HISTORY_OFFSET: u64 = 1_000_000;

/// `session/history`: session `id`'s messages from its start, skipping `offset`, at most
/// `limit` (default 100, at most 1000), in the contract's rows.
pub async fn history_from(
    kernel: &Kernel,
    id: &str,
    offset: Option<u64>,
    limit: Option<u32>,
) -> Result<ContractHistory, ServiceError> {
    let row = existing(kernel, id).await?;
    let limit = self::limit(limit, 100, HISTORY_LIMIT)?;
    let offset = offset.unwrap_or(0);
    if offset > HISTORY_OFFSET {
        return Err(ServiceError::invalid("offset", format!("at most {HISTORY_OFFSET}")));
    }
    let mut messages = kernel.store().history_range(id, offset, limit + 1).await?;
    let has_more = messages.len() > limit as usize;
    messages.truncate(limit as usize);
    Ok(ContractHistory {
        session_id: id.to_owned(),
        message_count: row.message_count,
        offset,
        limit,
        has_more,
        messages: messages.iter().map(history_row).collect(),
    })
}

/// `session/archive`: session `id` is left out of lists from now on and no longer stays
/// resident; it can still be read.
pub async fn archive(kernel: &Kernel, id: &str) -> Result<(), ServiceError> {
    existing(kernel, id).await?;
    kernel.store().write(vec![Write::Archive { session_key: id.to_owned() }]).await?;
    Ok(())
}

/// A page of sessions, newest activity first.
#[derive(Debug, Default, Clone)]
pub struct ListQuery {
    /// Which sessions.
    pub filter: SessionFilter,
    /// At most this many (default 50, at most `MAX_LIST_LIMIT`).
    pub limit: Option<u32>,
    /// After skipping this many.
    pub offset: Option<u32>,
}

/// A page of a transcript, newest last.
#[derive(Debug, Default, Clone)]
pub struct HistoryQuery {
    /// At most this many messages (default 100, at most `MAX_HISTORY_LIMIT`).
    pub limit: Option<u32>,
    /// Those before the message with this id.
    pub before: Option<String>,
    /// Whether an unknown session is an error (else an empty page).
    pub must_exist: bool,
}

/// A `limit` param: `default` when absent, else 1 to `max`.
pub fn limit(given: Option<u32>, default: u32, max: u32) -> Result<u32, ServiceError> {
    match given.unwrap_or(default) {
        n if n == 0 || n > max => {
            Err(ServiceError::invalid("limit", format!("limit is 1 to {max}")))
        }
        n => Ok(n),
    }
}

/// The most bytes of messages a history page holds: a quarter of a frame is left for the
/// page's own shape (and JSON's escapes on the host surfaces).
pub fn page_bytes(kernel: &Kernel) -> usize {
    kernel.config().ipc.max_frame_bytes / 4 * 3
}

/// The stored session `id`, or [`ServiceError::UnknownSession`].
pub async fn existing(kernel: &Kernel, id: &str) -> Result<SessionRow, ServiceError> {
    kernel.store().session(id).await?.ok_or_else(|| ServiceError::UnknownSession(id.to_owned()))
}

/// Session `key`, if stored.
pub async fn get(kernel: &Kernel, key: &str) -> Result<Option<SessionView>, ServiceError> {
    Ok(kernel.store().session(key).await?.map(|row| SessionView::of(kernel, row)))
}

/// Session `id`, which must be stored.
pub async fn read(kernel: &Kernel, id: &str) -> Result<SessionView, ServiceError> {
    Ok(SessionView::of(kernel, existing(kernel, id).await?))
}

/// A page of sessions and how many match in all.
pub async fn list(kernel: &Kernel, q: ListQuery) -> Result<(Vec<SessionView>, u64), ServiceError> {
    use burrow_protocol::methods::session::MAX_LIST_LIMIT;
    let limit = limit(q.limit, 50, MAX_LIST_LIMIT)?;
    let offset = q.offset.unwrap_or(0);
    // Resident sessions are known here, not in the store: the store pages among them (or
    // among the others), so a page costs the same at any number of stored sessions.
    let within = q.filter.active.map(|active| (kernel.sessions.active_keys(), active));
    let query = crate::store::SessionQuery { filter: q.filter, within };
    let (rows, total) = kernel.store().sessions(query, limit, offset).await?;
    Ok((rows.into_iter().map(|r| SessionView::of(kernel, r)).collect(), total))
}

/// A page of session `key`'s transcript.
pub async fn history(
    kernel: &Kernel,
    key: &str,
    q: HistoryQuery,
) -> Result<HistoryPage, ServiceError> {
    use burrow_protocol::methods::session::MAX_HISTORY_LIMIT;
    let limit = limit(q.limit, 100, MAX_HISTORY_LIMIT)?;
    if q.must_exist {
        existing(kernel, key).await?;
    }
    let page = Page { limit, before: q.before, max_bytes: page_bytes(kernel) };
    Ok(kernel.store().history_page(key, page).await?)
}

/// `message.dispatch`: passes `message_received` (interceptable), then hands the message
/// to its session, which answers through `reply` once it is stored.
pub fn dispatch(kernel: &Arc<Kernel>, caller: &Caller, p: DispatchParams, reply: DispatchReply) {
    if let Err(e) = check_session_key(&p.session_key, "sessionKey") {
        return reply.send(Err(e));
    }
    // Nobody intercepts: the session's actor takes the message and answers itself.
    if !kernel.caps.intercepted("message_received") {
        emit_received(kernel, caller, &p.session_key, &p.content, p.metadata.as_ref());
        let item = Inbound::new(p.content, p.metadata, caller.name().to_owned(), Wake::Auto);
        return to_actor(kernel, &p.session_key, item, reply);
    }
    let (kernel, caller) = (kernel.clone(), caller.clone());
    tokio::spawn(async move {
        match intercepted_dispatch(&kernel, &caller, p).await {
            Ok((key, item)) => to_actor(&kernel, &key, item, reply),
            Err(blocked) => reply.send(Ok(blocked)),
        }
    });
}

/// `agent.queue`: a message that always wakes the agent, answered through `reply`.
pub fn queue(
    kernel: &Arc<Kernel>,
    caller: &Caller,
    key: &str,
    text: String,
    metadata: Option<Map>,
    reply: DispatchReply,
) {
    if let Err(e) = check_session_key(key, "sessionKey") {
        return reply.send(Err(e));
    }
    let item = Inbound::new(text, metadata, caller.name().to_owned(), Wake::Always);
    to_actor(kernel, key, item, reply);
}

/// `message_received` for observers.
fn emit_received(kernel: &Kernel, caller: &Caller, key: &str, content: &str, meta: Option<&Map>) {
    kernel.emit_with("message_received", || {
        let mut ctx = Map::new();
        ctx.insert("sessionKey".into(), key.into());
        ctx.insert("appId".into(), caller.name().into());
        let payload = json!({ "sessionKey": key, "content": content, "metadata": meta.cloned().unwrap_or_default() });
        (payload, ctx)
    });
}

/// `message_received`'s interceptors on a dispatch: the message to hand on (its session
/// and what it became), or the answer of a blocked one.
async fn intercepted_dispatch(
    kernel: &Arc<Kernel>,
    caller: &Caller,
    p: DispatchParams,
) -> Result<(String, Inbound), DispatchResult> {
    let mut ctx = Map::new();
    ctx.insert("sessionKey".into(), p.session_key.clone().into());
    ctx.insert("appId".into(), caller.name().into());
    let payload = json!({ "sessionKey": p.session_key, "content": p.content, "metadata": p.metadata.clone().unwrap_or_default() });
    let config = kernel.config();
    let scope = kernel.intercept_scope();
    let payload = match hooks::intercept(scope, &config, "message_received", payload, &ctx).await {
        Ok(p) => p,
        Err(b) => {
            return Err(DispatchResult {
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
    let item = Inbound::new(content, metadata, caller.name().to_owned(), Wake::Auto);
    Ok((p.session_key, item))
}

/// Hands a message to its session's actor (spawning it if needed), which answers
/// through `reply`.
pub fn to_actor(kernel: &Arc<Kernel>, key: &str, item: Inbound, reply: DispatchReply) {
    let msg = SessionMsg::Inbound(item, reply);
    let not_running = || {
        ErrorObject::from(ServiceError::Internal(
            "the session runtime is not running (the kernel is stopping)".into(),
        ))
    };
    let Some(actor) = kernel.sessions.actor(kernel, key) else {
        if let SessionMsg::Inbound(_, reply) = msg {
            reply.send(Err(not_running()));
        }
        return;
    };
    let Err(e) = actor.cast(msg) else { return };
    // The actor stopped (evicted) just now: forget it and try a fresh one once.
    kernel.sessions.release(key, &actor.get_cell());
    let ractor::MessagingErr::SendErr(msg) = e else { return };
    match kernel.sessions.actor(kernel, key) {
        Some(fresh) => {
            if let Err(ractor::MessagingErr::SendErr(SessionMsg::Inbound(_, reply))) =
                fresh.cast(msg)
            {
                let why = ServiceError::Internal("the session could not take the message".into());
                reply.send(Err(why.into()));
            }
        }
        None => {
            if let SessionMsg::Inbound(_, reply) = msg {
                reply.send(Err(not_running()));
            }
        }
    }
}

/// Hands a message to its session's actor and waits until it is stored.
pub async fn to_session(
    kernel: &Arc<Kernel>,
    key: &str,
    item: Inbound,
) -> Result<DispatchResult, ServiceError> {
    let (tx, rx) = oneshot::channel();
    to_actor(kernel, key, item, DispatchReply::Task(tx));
    match rx.await {
        Ok(outcome) => outcome.map_err(ServiceError::Passed),
        Err(_) => Err(ServiceError::Internal("the session could not take the message".into())),
    }
}

/// The caller's channel, when it holds exactly one: where replies to the sessions it
/// starts go.
pub fn caller_channel(kernel: &Kernel, caller: &str) -> Option<String> {
    let mut channels = kernel
        .caps
        .list(Some(CapabilityType::Channel))
        .into_iter()
        .filter(|c| c.app_id == caller)
        .filter_map(|c| match &c.config {
            CapabilityConfig::Channel(ch) => Some(ch.channel_id.clone()),
            _ => None,
        });
    let first = channels.next();
    if channels.next().is_some() { None } else { first }
}

/// Run `run_id` once it has ended, or as it is after `timeout` (at most [`MAX_WAIT`]).
pub async fn wait(
    kernel: &Kernel,
    run_id: &str,
    timeout: Duration,
) -> Result<RunRow, ServiceError> {
    let timeout = timeout.min(MAX_WAIT);
    let mut rx = match kernel.sessions.watch_run(run_id) {
        Some(rx) => rx,
        None => {
            let row = stored_run(kernel, run_id).await?;
            if row.status.is_terminal() {
                return Ok(row);
            }
            // A run only the store knows of yet (queued behind others after a restart):
            // watch it from its stored state; it may have ended between the read and now.
            let rx = kernel.sessions.watch_stored_run(row);
            let row = stored_run(kernel, run_id).await?;
            if row.status.is_terminal() {
                return Ok(row);
            }
            rx
        }
    };
    let done = tokio::time::timeout(timeout, rx.wait_for(|r| r.status.is_terminal()))
        .await
        .ok()
        .and_then(|r| r.ok().map(|row| row.clone()));
    if let Some(row) = done {
        return Ok(row);
    }
    let now = rx.borrow().clone();
    if !now.status.is_terminal() {
        return Ok(now);
    }
    stored_run(kernel, run_id).await
}

async fn stored_run(kernel: &Kernel, id: &str) -> Result<RunRow, ServiceError> {
    kernel.store().run(id).await?.ok_or_else(|| ServiceError::UnknownRun(id.to_owned()))
}

/// Cancels run `run_id`, queued or running.
pub async fn cancel(kernel: &Arc<Kernel>, run_id: &str) -> Result<(), ServiceError> {
    let row = stored_run(kernel, run_id).await?;
    if row.status.is_terminal() {
        return Err(ServiceError::Conflict(format!(
            "run {run_id:?} already ended ({:?})",
            row.status
        )));
    }
    let stopped = || ServiceError::Internal("the session stopped".into());
    let actor = kernel
        .sessions
        .actor(kernel, &row.session_key)
        .ok_or_else(|| ServiceError::Internal("the session runtime is not running".into()))?;
    let (tx, rx) = oneshot::channel();
    actor.cast(SessionMsg::Cancel(run_id.to_owned(), tx)).map_err(|_| stopped())?;
    rx.await.map_err(|_| stopped())?.map_err(ServiceError::Passed)
}

/// Checks a comms name: 1–64 of `[A-Za-z0-9._-]`.
pub fn check_comms_name(name: &str) -> Result<(), ServiceError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_COMMS_NAME
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        return Ok(());
    }
    Err(ServiceError::invalid(
        "comms_name",
        format!("a comms name is 1 to {MAX_COMMS_NAME} of A-Z a-z 0-9 . _ -"),
    ))
}

/// `session/create`: a new session (UUID v7 id) whose first turn is the prompt; waits
/// for that turn unless `wait: false`.
pub async fn create(
    kernel: &Arc<Kernel>,
    caller: &Caller,
    p: SessionCreateParams,
) -> Result<SessionCreateResult, ServiceError> {
    if p.prompt.trim().is_empty() {
        return Err(ServiceError::invalid("prompt", "the prompt is empty"));
    }
    if let Some(name) = &p.comms_name {
        check_comms_name(name)?;
    }
    let agent_id = p.agent_id.unwrap_or_else(|| "main".into());
    if !kernel.config().agents.contains_key(&agent_id) {
        return Err(ServiceError::invalid("agent_id", format!("no agent {agent_id:?}")));
    }
    let key = uuid::Uuid::now_v7().to_string();
    let now = now_ms();
    let row = SessionRow {
        keep_alive: p.keep_alive,
        comms_name: p.comms_name.clone(),
        ..SessionRow::new(key.clone(), agent_id, now)
    };
    let mut item = Inbound::new(p.prompt, None, caller.name().to_owned(), Wake::Always);
    item.create = Some(Box::new(row));
    let acked = to_session(kernel, &key, item).await?;
    let run_id = acked
        .run_id
        .ok_or_else(|| ServiceError::Internal("the first turn was not queued".into()))?;
    let mut result = SessionCreateResult {
        session_id: key,
        run_id: run_id.clone(),
        status: RunStatus::Queued,
        output: None,
        error: None,
        keep_alive: p.keep_alive,
        comms_name: p.comms_name,
    };
    if p.wait.unwrap_or(true) {
        let timeout = Duration::from_millis(p.timeout_ms.unwrap_or(60_000));
        let run = wait(kernel, &run_id, timeout).await?;
        (result.status, result.output, result.error) = (run.status, run.output, run.error);
    }
    Ok(result)
}

/// `session/external_event`: a durable event in the session's transcript, then a turn.
pub async fn external_event(
    kernel: &Arc<Kernel>,
    caller: &Caller,
    p: ExternalEventParams,
) -> Result<ExternalEventReceipt, ServiceError> {
    if p.kind != "generic_json" {
        return Err(ServiceError::invalid(
            "kind",
            format!("unsupported event kind {:?}; only \"generic_json\" is defined", p.kind),
        ));
    }
    if p.event_type.is_empty() || p.event_type.chars().count() > MAX_EVENT_TYPE {
        return Err(ServiceError::invalid(
            "event_type",
            format!("event_type is 1 to {MAX_EVENT_TYPE} characters"),
        ));
    }
    if p.idempotency_key.as_ref().is_some_and(|k| k.is_empty() || k.chars().count() > 256) {
        return Err(ServiceError::invalid(
            "idempotency_key",
            "idempotency_key is 1 to 256 characters",
        ));
    }
    // Checked here too, so an unknown id does not start a session actor.
    existing(kernel, &p.session_id).await?;
    let mut meta = Map::new();
    let mut event = json!({ "kind": p.kind, "event_type": p.event_type });
    if let Some(key) = &p.idempotency_key {
        event["idempotency_key"] = key.clone().into();
    }
    meta.insert("external_event".into(), event);
    let content = serde_json::to_string(&p.payload).unwrap_or_default();
    let mut item = Inbound::new(content, Some(meta), caller.name().to_owned(), Wake::Always);
    item.must_exist = true;
    let acked = to_session(kernel, &p.session_id, item).await?;
    if acked.reason.as_deref() == Some(crate::sessions::DEDUPLICATED) {
        let status = crate::sessions::DEDUPLICATED.to_owned();
        return Ok(ExternalEventReceipt {
            status,
            event_id: acked.dispatch_id,
            run_id: None,
            queued: false,
        });
    }
    kernel.emit_with("external_event", || {
        let mut ctx = Map::new();
        ctx.insert("sessionKey".into(), p.session_id.clone().into());
        let event = json!({ "sessionKey": p.session_id, "eventId": acked.dispatch_id, "eventType": p.event_type, "payload": p.payload });
        (event, ctx)
    });
    Ok(ExternalEventReceipt {
        status: "accepted".into(),
        event_id: acked.dispatch_id,
        run_id: acked.run_id,
        queued: acked.queued,
    })
}

/// The events of session `id` from now on, as JSON objects; the stream ends if the
/// follower lags too far behind (after a `{type: "lagged"}` event). A key no session has
/// is `NOT_FOUND`, unless `allow_new`: then its events start when it is created.
pub async fn follow(
    kernel: &Kernel,
    id: &str,
    allow_new: bool,
) -> Result<BoxStream<'static, Value>, ServiceError> {
    // Followed before the session is looked up, so no event falls between the two; a
    // follower's queue is an outbound queue: bounded like a connection's.
    let events = kernel.sessions.follow(id, kernel.config().ipc.writer_queue_bytes);
    if !allow_new {
        existing(kernel, id).await?;
    }
    Ok(events)
}

#[cfg(test)]
mod tests;
