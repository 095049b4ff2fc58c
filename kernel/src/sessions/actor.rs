//! One session: its ordered queue of runs, one at a time. Every message and run is
//! written to the store before it is acknowledged; the actor holds only what the store
//! can give back, so it can be evicted when idle and rebuilt after a failure or restart.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use burrow_protocol::methods::invoke::Role;
use burrow_protocol::methods::session::{AgentQueueResult, DispatchResult, RunStatus};
use burrow_protocol::methods::to_value;
use burrow_protocol::{ErrorCode, ErrorObject, Map, now_ms};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::connection::Responder;
use crate::kernel::Kernel;
use crate::store::{NewMessage, RunRow, SessionRow, Write};

/// Messages of a session actor.
// Nearly every message is `Dispatch`: boxing it would add an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum SessionMsg {
    /// A message to store and (for auto-reply agents) answer.
    Dispatch {
        /// The text.
        content: String,
        /// Its metadata (`agentId`, `channelId`, `accountId`, ...).
        metadata: Option<Map>,
        /// The calling app: a new session's channel is its channel when it holds one.
        caller: String,
        /// Start a run even if the agent does not reply automatically (`agent.queue`).
        force_run: bool,
        /// Where the answer goes.
        reply: DispatchReply,
    },
    /// A run ended.
    RunFinished(String),
    /// Cancel a queued or running run.
    Cancel(String, oneshot::Sender<Result<(), ErrorObject>>),
    /// Time to check for idleness.
    IdleCheck,
}

/// Where a dispatch's answer goes: back to a waiting task, or straight to the client.
#[derive(Debug)]
pub enum DispatchReply {
    /// A task waits for it.
    Task(oneshot::Sender<Result<DispatchResult, ErrorObject>>),
    /// Answer the client's `message.dispatch` directly.
    Dispatch(Responder),
    /// Answer the client's `agent.queue` directly.
    Queue(Responder),
}

impl DispatchReply {
    fn send(self, outcome: Result<DispatchResult, ErrorObject>) {
        match self {
            DispatchReply::Task(tx) => {
                let _ = tx.send(outcome);
            }
            DispatchReply::Dispatch(r) => r.reply(outcome.map(|d| to_value(&d))),
            DispatchReply::Queue(r) => r.reply(outcome.and_then(|d| {
                let run_id = d.run_id.ok_or_else(|| {
                    ErrorObject::new(ErrorCode::InternalError, "no run was queued")
                })?;
                Ok(to_value(&AgentQueueResult { run_id, queued: d.queued }))
            })),
        }
    }
}

/// Arguments of a session actor.
#[derive(Debug)]
pub struct SessionArgs {
    /// The kernel.
    pub kernel: Arc<Kernel>,
    /// The session key.
    pub key: String,
}

/// The actor.
#[derive(Debug)]
pub struct SessionActor;

/// Its state.
#[derive(Debug)]
pub struct SessionState {
    kernel: Arc<Kernel>,
    key: String,
    session: Option<SessionRow>,
    queue: VecDeque<String>,
    /// The queued run new messages join (the last one, not started yet).
    joinable: Option<String>,
    running: Option<(String, CancellationToken)>,
    last_activity: Instant,
}

impl Actor for SessionActor {
    type Msg = SessionMsg;
    type State = SessionState;
    type Arguments = SessionArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SessionMsg>,
        args: SessionArgs,
    ) -> Result<SessionState, ActorProcessingErr> {
        let store = args.kernel.store();
        let session = store.session(&args.key).await?;
        // Acknowledged work survives evictions, failures and restarts.
        let queue: VecDeque<String> =
            store.unfinished_runs(Some(&args.key)).await?.into_iter().map(|r| r.id).collect();
        if !queue.is_empty() {
            tracing::info!(session = %args.key, runs = queue.len(), "resuming unfinished runs");
        }
        let idle = Duration::from_millis(
            args.kernel.config().sessions.idle_timeout_ms.clamp(100, 60_000) / 2,
        );
        let me = myself.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(idle);
            tick.tick().await;
            loop {
                tick.tick().await;
                if me.cast(SessionMsg::IdleCheck).is_err() {
                    return;
                }
            }
        });
        let joinable = queue.back().cloned();
        let mut state = SessionState {
            kernel: args.kernel,
            key: args.key,
            session,
            queue,
            joinable,
            running: None,
            last_activity: Instant::now(),
        };
        start_next(&mut state, &myself).await;
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<SessionMsg>,
        msg: SessionMsg,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        if !matches!(msg, SessionMsg::IdleCheck) {
            state.last_activity = Instant::now();
        }
        match msg {
            SessionMsg::Dispatch { content, metadata, caller, force_run, reply } => {
                let outcome = dispatch(state, content, metadata, &caller, force_run).await;
                reply.send(outcome);
                start_next(state, &myself).await;
            }
            SessionMsg::RunFinished(run_id) => {
                if state.running.as_ref().is_some_and(|(id, _)| *id == run_id) {
                    state.running = None;
                }
                start_next(state, &myself).await;
            }
            SessionMsg::Cancel(run_id, reply) => {
                let _ = reply.send(cancel(state, &run_id).await);
            }
            SessionMsg::IdleCheck => {
                let idle = Duration::from_millis(state.kernel.config().sessions.idle_timeout_ms);
                if state.running.is_none()
                    && state.queue.is_empty()
                    && state.last_activity.elapsed() >= idle
                {
                    tracing::debug!(session = %state.key, "idle: leaving memory");
                    state.kernel.sessions.release(&state.key, &myself.get_cell());
                    let payload = serde_json::json!({ "sessionKey": state.key, "reason": "idle" });
                    state.kernel.emit("session_end", payload, context(&state.key));
                    myself.stop(Some("idle".into()));
                }
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<SessionMsg>,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        state.kernel.sessions.release(&state.key, &myself.get_cell());
        if let Some((_, cancel)) = state.running.take() {
            cancel.cancel();
        }
        Ok(())
    }
}

/// Event context of a session.
pub fn context(key: &str) -> Map {
    let mut c = Map::new();
    c.insert("sessionKey".into(), key.into());
    c
}

fn meta_str(metadata: &Option<Map>, key: &str) -> Option<String> {
    metadata.as_ref()?.get(key)?.as_str().map(str::to_owned)
}

async fn dispatch(
    state: &mut SessionState,
    content: String,
    metadata: Option<Map>,
    caller: &str,
    force_run: bool,
) -> Result<DispatchResult, ErrorObject> {
    let now = now_ms();
    let mut writes = Vec::new();
    let created = state.session.is_none();
    let session = state.session.get_or_insert_with(|| SessionRow {
        key: state.key.clone(),
        agent_id: meta_str(&metadata, "agentId").unwrap_or_else(|| "main".into()),
        channel_id: meta_str(&metadata, "channelId")
            .or_else(|| crate::methods::session::caller_channel(&state.kernel, caller)),
        account_id: meta_str(&metadata, "accountId"),
        created_at: now,
        last_active_at: now,
        message_count: 0,
    });
    if created {
        writes.push(Write::CreateSession(session.clone()));
    }
    let config = state.kernel.config();
    let auto_reply = config.agents.get(&session.agent_id).is_none_or(|a| a.auto_reply);
    if state.queue.len() >= config.sessions.max_queue {
        return Err(ErrorObject::new(
            ErrorCode::UnknownError,
            "the session's queue is full; retry later",
        )
        .with_data(serde_json::json!({ "reason": "session_queue_full" })));
    }
    let message_id = uuid::Uuid::now_v7().to_string();
    writes.push(Write::Append {
        session_key: state.key.clone(),
        message: NewMessage {
            id: message_id.clone(),
            role: Role::User,
            content,
            metadata,
            tool_calls: None,
            tool_call_id: None,
            created_at: now,
        },
    });
    let waits = state.running.is_some() || !state.queue.is_empty();
    let mut new_run = None;
    let run_id = if auto_reply || force_run {
        match &state.joinable {
            Some(run) => Some(run.clone()),
            None => {
                let id = uuid::Uuid::now_v7().to_string();
                let row = RunRow {
                    id: id.clone(),
                    session_key: state.key.clone(),
                    status: RunStatus::Queued,
                    output: None,
                    error: None,
                };
                writes.push(Write::Run(row.clone()));
                new_run = Some(row);
                Some(id)
            }
        }
    } else {
        None
    };
    if let Err(e) = state.kernel.store().write(writes).await {
        if created {
            state.session = None;
        }
        return Err(ErrorObject::new(
            ErrorCode::InternalError,
            format!("could not store the message: {e}"),
        ));
    }
    if let Some(session) = state.session.as_mut() {
        session.message_count += 1;
        session.last_active_at = now;
    }
    if created {
        let payload = serde_json::json!({ "sessionKey": state.key, "agentId": state.session.as_ref().map(|s| s.agent_id.clone()) });
        state.kernel.emit("session_start", payload, context(&state.key));
    }
    if let Some(row) = new_run {
        state.queue.push_back(row.id.clone());
        state.joinable = Some(row.id.clone());
        state.kernel.sessions.publish_run(row);
    }
    Ok(DispatchResult { dispatch_id: message_id, queued: waits, run_id, reason: None })
}

/// Starts the next queued run when none is running.
async fn start_next(state: &mut SessionState, myself: &ActorRef<SessionMsg>) {
    if state.running.is_some() {
        return;
    }
    let Some(run_id) = state.queue.pop_front() else { return };
    if state.joinable.as_deref() == Some(run_id.as_str()) {
        state.joinable = None;
    }
    let Some(session) = state.session.clone() else {
        tracing::error!(session = %state.key, "run without a session row: dropping it");
        return;
    };
    let cancel = CancellationToken::new();
    state.running = Some((run_id.clone(), cancel.clone()));
    let kernel = state.kernel.clone();
    let me = myself.clone();
    tokio::spawn(async move {
        super::agent::run(kernel, session, run_id.clone(), cancel).await;
        let _ = me.cast(SessionMsg::RunFinished(run_id));
    });
}

async fn cancel(state: &mut SessionState, run_id: &str) -> Result<(), ErrorObject> {
    if let Some((id, token)) = &state.running
        && id == run_id
    {
        token.cancel();
        return Ok(());
    }
    let Some(pos) = state.queue.iter().position(|r| r == run_id) else {
        return Err(ErrorObject::new(
            ErrorCode::NotFound,
            format!("run {run_id:?} is not queued or running in this session"),
        ));
    };
    state.queue.remove(pos);
    if state.joinable.as_deref() == Some(run_id) {
        state.joinable = None;
    }
    let row = RunRow {
        id: run_id.to_owned(),
        session_key: state.key.clone(),
        status: RunStatus::Cancelled,
        output: None,
        error: None,
    };
    state
        .kernel
        .store()
        .write(vec![Write::Run(row.clone())])
        .await
        .map_err(|e| ErrorObject::new(ErrorCode::InternalError, e.to_string()))?;
    state.kernel.sessions.publish_run(row);
    Ok(())
}
