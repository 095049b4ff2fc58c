//! One session: its ordered queue of runs, one at a time. Every message and run is
//! written to the store before it is acknowledged; the actor holds only what the store
//! can give back, so it can be evicted when idle and rebuilt after a failure or restart.
//!
//! The actor does not wait for the disk: it submits a message's writes and goes on with
//! the next message, assuming they take effect; the store's journal thread answers the
//! caller once they are on disk ([`Storage::submit`](crate::store::Storage::submit)), and
//! tells the actor when there is more to do ([`SessionMsg::Written`]): only then does it
//! publish them. The run they feed starts at once when the session's transcript is in
//! memory, behind a gate the actor opens then ([`super::gate`]): it asks its provider
//! while the message is written, and shows nothing before. Should a write be refused, the
//! session's later writes are refused too (its fence, see [`writes`]), a run started on
//! it ends without a trace, and the actor starts again from what the store holds, keeping
//! the run in progress.
//!
//! Here: the messages, the state, the actor's loop, runs and reading back; taking a
//! message is in [`dispatch`], the writes in flight in [`writes`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use burrow_protocol::methods::comms::HandlingMode;
use burrow_protocol::methods::session::{DispatchResult, RunStatus};
use burrow_protocol::{ErrorCode, ErrorObject, Map};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::kernel::Kernel;
use crate::store::{NewMessage, RunRow, SessionRow, StoreError, Write};

pub(crate) mod dispatch;
mod writes;
use dispatch::dispatch;
use writes::Writes;

/// How often a session whose writes were refused tries to read itself back from the store.
const RELOAD_EVERY: Duration = Duration::from_secs(1);
/// Messages of a session actor.
// Nearly every message is `Inbound`: boxing it would add an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum SessionMsg {
    /// A message to store and (depending on [`Wake`]) answer, and where the answer goes.
    Inbound(Inbound, DispatchReply),
    /// A dispatch's writes (the actor's `seq`th submission) are on disk, or were
    /// refused; what to make known once they are.
    Written(u64, Result<(), StoreError>, Box<AfterWrite>),
    /// Time to try again to read the session back from the store.
    Reload,
    /// A run ended: the steered messages it left, the messages it stored.
    RunFinished(String, Box<super::tail::RunOutcome>),
    /// Cancel a queued or running run.
    Cancel(String, oneshot::Sender<Result<(), ErrorObject>>),
    /// Time to check for idleness.
    IdleCheck,
    /// Fail, as a bug would (tests of the supervision).
    #[cfg(test)]
    Crash,
    /// The running run's id (tests).
    #[cfg(test)]
    Running(oneshot::Sender<Option<String>>),
}

/// Whether an inbound message starts (or joins) a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// When the session's agent replies automatically (`message.dispatch`).
    Auto,
    /// Always (`agent.queue`, comms, external events, `session/create`).
    Always,
    /// Never (peer lifecycle notices): it is only recorded.
    Never,
}

/// A message for the session.
#[derive(Debug)]
pub struct Inbound {
    /// The text.
    pub content: String,
    /// Its metadata (`agentId`, `channelId`, `accountId`, `comms`, `external_event`...).
    pub metadata: Option<Map>,
    /// The calling app: a new session's channel is its channel when it holds one.
    pub caller: String,
    /// Whether it starts a run.
    pub wake: Wake,
    /// `steer` injects it into the running turn at its next boundary.
    pub mode: HandlingMode,
    /// For a session that must be new (`session/create`): its row.
    pub create: Option<Box<SessionRow>>,
    /// For a session that must exist already (comms, external events).
    pub must_exist: bool,
    /// The trace context it came in (a host's span), which a run it starts continues.
    pub trace: Option<opentelemetry::Context>,
}

impl Inbound {
    /// A plain inbound message: queued, for a session created on first use. Empty
    /// metadata is stored as none, whichever way the message came.
    pub fn new(content: String, metadata: Option<Map>, caller: String, wake: Wake) -> Self {
        Self {
            content,
            metadata: metadata.filter(|m| !m.is_empty()),
            caller,
            wake,
            mode: HandlingMode::Queue,
            create: None,
            must_exist: false,
            trace: crate::telemetry::current(),
        }
    }
}

/// Where a dispatch's answer goes: back to a waiting task, or to whoever answers the
/// caller (called on the spot, by the store's journal thread once the message is on
/// disk, so it must not block).
pub enum DispatchReply {
    /// A task waits for it.
    Task(oneshot::Sender<Result<DispatchResult, ErrorObject>>),
    /// Called with it.
    Then(Box<dyn FnOnce(Result<DispatchResult, ErrorObject>) + Send>),
}

impl std::fmt::Debug for DispatchReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DispatchReply::Task(_) => "DispatchReply::Task",
            DispatchReply::Then(_) => "DispatchReply::Then",
        })
    }
}

impl DispatchReply {
    /// Answers with `outcome`.
    pub fn send(self, outcome: Result<DispatchResult, ErrorObject>) {
        match self {
            DispatchReply::Task(tx) => {
                let _ = tx.send(outcome);
            }
            DispatchReply::Then(then) => then(outcome),
        }
    }
}

/// What a dispatch makes known once its writes are on disk.
#[derive(Debug, Default)]
pub struct AfterWrite {
    /// It created the session: `session_start`.
    created: bool,
    /// The stored message, for followers (only when someone follows).
    message: Option<NewMessage>,
    /// The run it queued.
    run: Option<RunRow>,
}

/// Arguments of a session actor.
#[derive(Debug)]
pub struct SessionArgs {
    /// The kernel.
    pub kernel: Arc<Kernel>,
    /// The session key.
    pub key: String,
    /// The session's last actor failed: writes of its may still be on their way to the
    /// disk, so what the store says now may not be all.
    pub after_failure: bool,
}

/// The actor.
#[derive(Debug)]
pub struct SessionActor;

/// The run in progress.
#[derive(Debug)]
struct Running {
    id: String,
    cancel: CancellationToken,
    /// Steered messages for its next turn boundary.
    steer: mpsc::Sender<super::agent::Steered>,
    /// Bytes of the steered messages it has not taken yet.
    steer_bytes: Arc<std::sync::atomic::AtomicUsize>,
    /// Its task: aborted, not cancelled, when the actor stops or fails (when this is
    /// dropped), so the run stays unfinished in the store and the session's next actor
    /// resumes it.
    task: tokio::task::JoinHandle<()>,
    /// The submission that holds its input, and the first one behind the fence it was
    /// submitted behind (a refusal from there to it refuses the input).
    ready_at: u64,
    fence_start: u64,
    /// Opens its [`Gate`](super::gate::Gate) while the actor has not heard that its
    /// input is on disk (`None` once it has, or when it was at the start).
    opener: Option<super::gate::Opener>,
}

impl Running {
    /// Tells a run that started before its input was known to be on disk whether it is
    /// now (`true`) or was refused.
    fn open_gate(&mut self, stored: bool) {
        if let Some(opener) = self.opener.take() {
            opener.open(stored);
            if !stored {
                // Wherever it is (waiting for its provider, say), it ends there.
                self.cancel.cancel();
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A run waiting in the queue.
#[derive(Debug)]
struct Queued {
    id: String,
    /// It may start once the actor knows its submissions up to this one are on disk:
    /// its row and every message it takes.
    ready_at: u64,
    /// The trace context of what queued it (none for runs resumed at start).
    trace: Option<opentelemetry::Context>,
}

/// Its state.
#[derive(Debug)]
pub struct SessionState {
    kernel: Arc<Kernel>,
    key: String,
    session: Option<SessionRow>,
    queue: VecDeque<Queued>,
    /// The queued run new messages join (the last one, not started yet).
    joinable: Option<String>,
    /// Messages waiting for queued runs, by run: bounded by `[sessions] max_queue` too.
    waiting: std::collections::HashMap<String, usize>,
    running: Option<Running>,
    last_activity: Instant,
    /// Its writes in flight.
    writes: Writes,
    /// A write was refused and the session could not be read back yet: it takes no
    /// work until it is.
    stale: bool,
    /// A `Reload` is on its way.
    reload_due: bool,
    /// Steered messages a run left while the session was stale: queued once it is not.
    leftover: Vec<String>,
    /// The newest of the transcript, when it is known here ([`super::tail`]).
    tail: Option<super::tail::Tail>,
    /// A message came while a run ran (the tail goes: see [`super::tail`]).
    inbound_during_run: bool,
}

impl SessionState {
    /// Notes a message the session stores now (after everything before it): in the
    /// transcript in memory, and that one came while a run ran.
    fn note_message(&mut self, message: &NewMessage) {
        if self.running.is_some() {
            self.inbound_during_run = true;
        }
        if let Some(tail) = self.tail.as_mut() {
            tail.push(message.transcript());
        }
    }
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
        let queue: VecDeque<Queued> = store
            .unfinished_runs(Some(&args.key))
            .await?
            .into_iter()
            .map(|r| Queued { id: r.id, ready_at: 0, trace: None })
            .collect();
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
        let joinable = queue.back().map(|q| q.id.clone());
        // A session not stored yet has no transcript (unless its last actor failed with
        // writes on their way): its first run need not read one.
        let tail = (session.is_none() && !args.after_failure).then(|| {
            super::tail::Tail::new(Vec::new(), crate::service::sessions::page_bytes(&args.kernel))
        });
        let mut state = SessionState {
            kernel: args.kernel,
            key: args.key,
            session,
            queue,
            joinable,
            waiting: Default::default(),
            running: None,
            last_activity: Instant::now(),
            writes: Writes::default(),
            stale: false,
            reload_due: false,
            leftover: Vec::new(),
            tail,
            inbound_during_run: false,
        };
        start_next(&mut state, &myself);
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
        if matches!(msg, SessionMsg::Reload) {
            // This was the one on its way: a failed try below schedules the next.
            state.reload_due = false;
        }
        // What awaits is boxed: ractor moves each message's future about several times
        // over, and moving a large one costs more than the allocation that keeps it small.
        if state.stale {
            Box::pin(reload(state, &myself)).await;
        }
        match msg {
            SessionMsg::Inbound(_, reply) if state.stale => reply.send(Err(restoring())),
            SessionMsg::Inbound(inbound, reply) => {
                Box::pin(dispatch(state, &myself, inbound, reply)).await;
                start_next(state, &myself);
            }
            SessionMsg::Written(seq, Ok(()), after) => {
                state.writes.heard(seq);
                published(state, after.created, after.message.as_ref());
                // Unless it was cancelled meanwhile; it may have started, behind its gate.
                if let Some(run) = after.run
                    && (state.queue.iter().any(|q| q.id == run.id)
                        || state
                            .running
                            .as_ref()
                            .is_some_and(|r| r.id == run.id && r.opener.is_some()))
                {
                    state.kernel.sessions.publish_run(run);
                }
                // Its input's own news (which always comes, in order): the message was
                // published just now.
                if let Some(running) = state.running.as_mut()
                    && running.ready_at <= seq
                {
                    running.open_gate(true);
                }
                start_next(state, &myself);
            }
            // The fence is broken: the session is read back below. A run started on input
            // submitted behind the same fence from this one on had it refused too (writes
            // are refused from the first refused one on).
            SessionMsg::Written(seq, Err(_), _) => {
                state.writes.heard(seq);
                state.tail = None;
                if let Some(running) = state.running.as_mut()
                    && (running.fence_start..=running.ready_at).contains(&seq)
                {
                    running.open_gate(false);
                }
            }
            SessionMsg::Reload => {}
            SessionMsg::RunFinished(run_id, outcome) => {
                if state.running.as_ref().is_some_and(|r| r.id == run_id) {
                    state.running = None;
                }
                let super::tail::RunOutcome { leftover, read, appended, failed_write } = *outcome;
                // The transcript in memory goes on from the run's, unless a message came
                // meanwhile or a write failed (then the store says the order).
                if failed_write || std::mem::take(&mut state.inbound_during_run) {
                    state.tail = None;
                } else {
                    if let Some(read) = read {
                        let bytes = crate::service::sessions::page_bytes(&state.kernel);
                        state.tail = Some(super::tail::Tail::new(read, bytes));
                    }
                    if let Some(tail) = state.tail.as_mut() {
                        appended.into_iter().for_each(|m| tail.push(m));
                    }
                }
                state.leftover.extend(leftover);
                if !state.stale {
                    Box::pin(requeue_leftover(state)).await;
                }
                start_next(state, &myself);
            }
            #[cfg(test)]
            SessionMsg::Crash => return Err("crash requested by a test".into()),
            #[cfg(test)]
            SessionMsg::Running(tx) => drop(tx.send(state.running.as_ref().map(|r| r.id.clone()))),
            SessionMsg::Cancel(_, reply) if state.stale => drop(reply.send(Err(restoring()))),
            SessionMsg::Cancel(run_id, reply) => {
                let _ = reply.send(Box::pin(cancel(state, &run_id)).await);
            }
            SessionMsg::IdleCheck => {
                let idle = Duration::from_millis(state.kernel.config().sessions.idle_timeout_ms);
                if state.running.is_none()
                    && state.queue.is_empty()
                    && !state.writes.busy()
                    && !state.stale
                    && !state.session.as_ref().is_some_and(|s| s.keep_alive)
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
        if state.writes.refused() && !state.stale {
            // What it holds assumed writes the store refused.
            tracing::warn!(session = %state.key, "a write was refused: reading the session back from the store");
            Box::pin(reload(state, &myself)).await;
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<SessionMsg>,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        state.kernel.sessions.release(&state.key, &myself.get_cell());
        // Dropping it aborts its task.
        state.running = None;
        Ok(())
    }
}

/// Event context of a session.
pub fn context(key: &str) -> Map {
    let mut c = Map::new();
    c.insert("sessionKey".into(), key.into());
    c
}

/// Why a stale session takes no work.
fn restoring() -> ErrorObject {
    ErrorObject::new(
        ErrorCode::InternalError,
        "the session is being read back from the store after a refused write; retry later",
    )
}

/// Reads the session back from the store after a refused write: its row and its queued
/// runs (the run in progress goes on), behind a new fence. While the store cannot be
/// read, the session stays stale and tries again every [`RELOAD_EVERY`].
async fn reload(state: &mut SessionState, myself: &ActorRef<SessionMsg>) {
    let store = state.kernel.store();
    let read = async {
        Ok::<_, StoreError>((
            store.session(&state.key).await?,
            store.unfinished_runs(Some(&state.key)).await?,
        ))
    };
    match read.await {
        Ok((session, runs)) => {
            let running = state.running.as_ref().map(|r| r.id.clone());
            state.session = session;
            state.queue = runs
                .into_iter()
                .filter(|r| running.as_ref() != Some(&r.id))
                .map(|r| Queued { id: r.id, ready_at: 0, trace: None })
                .collect();
            state.joinable = state.queue.back().map(|q| q.id.clone());
            // Its count of waiting messages starts again; the runs are bounded anyway.
            state.waiting.clear();
            state.writes.renew();
            // What it holds in memory was written assuming the refused writes took effect.
            state.tail = None;
            state.stale = false;
            requeue_leftover(state).await;
            start_next(state, myself);
        }
        Err(e) => {
            if !state.stale {
                tracing::error!(session = %state.key, error = %e, "cannot read the session back from the store; trying again");
            }
            state.stale = true;
            if !state.reload_due {
                state.reload_due = true;
                myself.send_after(RELOAD_EVERY, || SessionMsg::Reload);
            }
        }
    }
}

/// Queues the steered messages finished runs left untaken.
async fn requeue_leftover(state: &mut SessionState) {
    for message_id in std::mem::take(&mut state.leftover) {
        if let Err(e) = requeue(state, &message_id).await {
            tracing::error!(session = %state.key, error = %e, "cannot queue a steered message");
        }
    }
}

/// A new queued run of `key`.
fn queued_run(key: &str) -> RunRow {
    RunRow {
        id: uuid::Uuid::now_v7().to_string(),
        session_key: key.to_owned(),
        status: RunStatus::Queued,
        output: None,
        error: None,
    }
}

/// Writes behind the actor's fence and waits until they are on disk (or refused).
async fn write_now(state: &mut SessionState, writes: Vec<Write>) -> Result<(), StoreError> {
    let (tx, rx) = oneshot::channel();
    let store = state.kernel.store();
    let submitted = state.writes.submit(store, writes, false, move |outcome| {
        let _ = tx.send(outcome);
    });
    let seq = submitted.await;
    let written = rx.await.map_err(|_| StoreError::Closed).and_then(|w| w);
    if written.is_err() {
        // What the transcript in memory holds may not be stored.
        state.tail = None;
    }
    written?;
    // Submissions are written in order: every earlier one is on disk too.
    state.writes.heard(seq);
    Ok(())
}

/// Makes a message on disk now known: `session_start` if it created the session, and
/// the message to followers.
fn published(state: &SessionState, created: bool, message: Option<&NewMessage>) {
    if created {
        let agent = state.session.as_ref().map(|s| s.agent_id.clone());
        let payload = serde_json::json!({ "sessionKey": state.key, "agentId": agent });
        state.kernel.emit("session_start", payload, context(&state.key));
    }
    if let Some(message) = message {
        state.kernel.sessions.publish_message(&state.key, message);
    }
}

/// Makes a stored message the input of the next run (joining the queued one or a new one).
async fn requeue(state: &mut SessionState, message_id: &str) -> Result<String, ErrorObject> {
    let mut writes = Vec::new();
    let mut new_run = None;
    let run_id = match &state.joinable {
        Some(run) => run.clone(),
        None => {
            let row = queued_run(&state.key);
            writes.push(Write::Run(row.clone()));
            let id = row.id.clone();
            new_run = Some(row);
            id
        }
    };
    writes.push(Write::AssignRun { message_id: message_id.to_owned(), run_id: run_id.clone() });
    // A message moved to another run: the transcript in memory would not say so.
    state.tail = None;
    write_now(state, writes).await.map_err(|e| {
        ErrorObject::new(ErrorCode::InternalError, format!("could not queue the message: {e}"))
    })?;
    if let Some(row) = new_run {
        // On disk already, like everything submitted before it.
        state.queue.push_back(Queued { id: row.id.clone(), ready_at: 0, trace: None });
        state.joinable = Some(row.id.clone());
        state.kernel.sessions.publish_run(row);
    }
    *state.waiting.entry(run_id.clone()).or_default() += 1;
    Ok(run_id)
}

/// Starts the next queued run when none is running and its input is on disk, or on its
/// way there with the transcript in memory: then the run starts behind a gate the actor
/// opens once it hears the input is on disk ([`super::gate`]).
fn start_next(state: &mut SessionState, myself: &ActorRef<SessionMsg>) {
    let known = state.writes.known();
    if state.stale
        || state.running.is_some()
        || state.queue.front().is_none_or(|q| q.ready_at > known && state.tail.is_none())
    {
        return;
    }
    let Some(Queued { id: run_id, trace, ready_at }) = state.queue.pop_front() else { return };
    let (opener, gate) = if ready_at > known {
        let (opener, gate) = super::gate::Gate::pending();
        (Some(opener), gate)
    } else {
        (None, super::gate::Gate::default())
    };
    if state.joinable.as_deref() == Some(run_id.as_str()) {
        state.joinable = None;
    }
    state.waiting.remove(&run_id);
    let Some(session) = state.session.clone() else {
        tracing::error!(session = %state.key, "run without a session row: dropping it");
        return;
    };
    let cancel = CancellationToken::new();
    let (steer, steered) = mpsc::channel(state.kernel.config().sessions.max_queue.max(1));
    let kernel = state.kernel.clone();
    let me = myself.clone();
    let id = run_id.clone();
    let token = cancel.clone();
    let history = state.tail.as_ref().map(super::tail::Tail::snapshot);
    state.inbound_during_run = false;
    let task = tokio::spawn(async move {
        let run = super::agent::run(kernel, session, id.clone(), token, steered, history, gate);
        // Its span continues the trace of what queued it.
        let trace = trace.unwrap_or_default();
        let outcome = opentelemetry::context::FutureExt::with_context(run, trace).await;
        let _ = me.cast(SessionMsg::RunFinished(id, Box::new(outcome)));
    });
    let steer_bytes = Default::default();
    let fence_start = state.writes.fence_start();
    state.running = Some(Running {
        id: run_id,
        cancel,
        steer,
        steer_bytes,
        task,
        ready_at,
        fence_start,
        opener,
    });
}

async fn cancel(state: &mut SessionState, run_id: &str) -> Result<(), ErrorObject> {
    if let Some(running) = &state.running
        && running.id == run_id
    {
        running.cancel.cancel();
        return Ok(());
    }
    let Some(pos) = state.queue.iter().position(|q| q.id == run_id) else {
        return Err(ErrorObject::new(
            ErrorCode::NotFound,
            format!("run {run_id:?} is not queued or running in this session"),
        ));
    };
    state.queue.remove(pos);
    if state.joinable.as_deref() == Some(run_id) {
        state.joinable = None;
    }
    state.waiting.remove(run_id);
    let row = RunRow {
        id: run_id.to_owned(),
        session_key: state.key.clone(),
        status: RunStatus::Cancelled,
        output: None,
        error: None,
    };
    write_now(state, vec![Write::Run(row.clone())])
        .await
        .map_err(|e| ErrorObject::new(ErrorCode::InternalError, e.to_string()))?;
    state.kernel.sessions.publish_run(row);
    Ok(())
}

#[cfg(test)]
mod tests;
