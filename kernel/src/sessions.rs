//! The session runtime (PROTOCOL.md §8): one [`actor::SessionActor`] per active session,
//! created on first use, evicted when idle and brought back from the store on demand,
//! supervised by [`SessionsActor`] so a failed session restarts from the store with its
//! acknowledged work. Keep-alive sessions are never evicted and are made resident when
//! the kernel starts. Agent definitions come from `[agents.<id>]`.

use std::collections::BTreeMap;
use std::sync::Arc;

use burrow_protocol::Value;
use burrow_protocol::methods::session::RunStatus;
use dashmap::DashMap;
use futures_util::stream::BoxStream;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, ActorRuntime, SupervisionEvent};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;

use crate::kernel::Kernel;
use crate::store::{NewMessage, RunRow};

pub mod actor;
pub mod agent;
pub mod context;
pub mod delivery;
pub mod followers;
pub(crate) mod gate;
pub(crate) mod stream;
pub mod tail;

pub(crate) use actor::dispatch::DEDUPLICATED;
pub use actor::{DispatchReply, Inbound, SessionActor, SessionMsg, Wake};

/// `[agents.<id>]`: one agent.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentSpec {
    /// A `providerId` registered by some app.
    pub provider: String,
    /// The model name passed to the provider.
    pub model: String,
    /// The system prompt.
    pub system_prompt: String,
    /// Tool names (or patterns) the agent may call; `"*"` is all.
    pub tools: Vec<String>,
    /// Provider calls per run at most.
    pub max_turns: u32,
    /// Whether `message.dispatch` starts a run.
    pub auto_reply: bool,
    /// Deadline of one `provider.complete`.
    pub timeout_ms: u64,
}

impl Default for AgentSpec {
    /// The built-in `main` agent: the offline `echo` provider, all tools.
    fn default() -> Self {
        Self {
            provider: "echo".into(),
            model: "echo".into(),
            system_prompt: "You are a helpful assistant.".into(),
            tools: vec!["*".into()],
            max_turns: 8,
            auto_reply: true,
            timeout_ms: 60_000,
        }
    }
}

/// `[sessions]`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionSettings {
    /// A session with no work for this long leaves memory (it stays in the store).
    pub idle_timeout_ms: u64,
    /// Work items queued in one session at most.
    pub max_queue: usize,
    /// How long a run waits for its provider to be registered and ready before failing
    /// (apps reconnect after a kernel restart while resumed runs start).
    pub provider_wait_ms: u64,
    /// How long a run's tool call waits for the tool to be registered by a ready app
    /// before it is answered as missing (once per tool and run).
    pub tool_wait_ms: u64,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            idle_timeout_ms: 300_000,
            max_queue: 1024,
            provider_wait_ms: 5_000,
            tool_wait_ms: 5_000,
        }
    }
}

/// Reads `[agents.*]`; `main` exists even when not configured.
pub fn agents(document: &toml::Table) -> Result<BTreeMap<String, AgentSpec>, String> {
    let mut out = BTreeMap::new();
    if let Some(toml::Value::Table(table)) = document.get("agents") {
        for (id, spec) in table {
            let spec: AgentSpec =
                spec.clone().try_into().map_err(|e| format!("[agents.{id}]: {e}"))?;
            if spec.max_turns == 0 || spec.timeout_ms == 0 {
                return Err(format!("[agents.{id}]: max_turns and timeout_ms must be positive"));
            }
            out.insert(id.clone(), spec);
        }
    }
    out.entry("main".to_owned()).or_default();
    Ok(out)
}

/// Live sessions and runs.
#[derive(Debug)]
pub struct Sessions {
    actors: DashMap<String, ActorRef<SessionMsg>>,
    runs: DashMap<String, watch::Sender<RunRow>>,
    supervisor: std::sync::OnceLock<ActorCell>,
    followers: Arc<followers::Followers>,
    /// Replies on their way to channels, of the sessions that have some.
    outgoing: DashMap<String, delivery::Outgoing>,
    /// The kernel is stopping: no session actor starts any more (work sent now is
    /// refused, and what was acknowledged resumes at the next start).
    closing: std::sync::atomic::AtomicBool,
}

impl Default for Sessions {
    fn default() -> Self {
        let followers = Arc::default();
        crate::metrics::queues::watch("session_followers", &followers);
        Self {
            actors: DashMap::new(),
            runs: DashMap::new(),
            supervisor: std::sync::OnceLock::new(),
            followers,
            outgoing: DashMap::new(),
            closing: Default::default(),
        }
    }
}

impl Sessions {
    /// Runs `delivery` (a reply to `key`'s channel) after every earlier one of that
    /// session, whatever became of its actor since, then `after`; false when too many
    /// wait already.
    pub(crate) fn deliver_in_order(
        &self,
        key: &str,
        delivery: impl Future<Output = ()> + Send + 'static,
        after: impl FnOnce() + Send + Sync + 'static,
    ) -> bool {
        // Placed under the entry's guard, started after it is let go.
        let placed = self.outgoing.entry(key.to_owned()).or_default().place(Box::new(after));
        let Some((place, before)) = placed else { return false };
        delivery::start(place, before, delivery);
        true
    }

    /// A place for a reply to `key`'s channel sent at once, when none of the session's
    /// is on its way (see [`delivery::Direct`]); `after` runs once it is given back.
    pub(crate) fn deliver_now(
        &self,
        key: &str,
        after: impl FnOnce() + Send + Sync + 'static,
    ) -> Option<delivery::Place> {
        self.outgoing.entry(key.to_owned()).or_default().now(after)
    }

    /// Forgets `key`'s chain of replies once none is on its way.
    pub(crate) fn delivered(&self, key: &str) {
        self.outgoing.remove_if(key, |_, o| o.pending() == 0);
    }

    /// Follows session `key`'s events (`{type: "message" | "run", ...}`) from now on,
    /// with up to `max_bytes` of them queued (see [`followers`]).
    pub fn follow(&self, key: &str, max_bytes: usize) -> BoxStream<'static, Value> {
        self.followers.follow(key, max_bytes)
    }

    /// Whether anyone follows any session's events.
    pub fn followed(&self) -> bool {
        self.followers.any()
    }

    fn publish(&self, key: &str, event: impl FnOnce() -> Value) {
        // Building the event costs: only when someone follows.
        self.followers.publish(key, event);
    }

    /// Publishes a stored message to followers.
    pub fn publish_message(&self, key: &str, m: &NewMessage) {
        self.publish(key, || {
            json!({
                "type": "message", "session_id": key, "id": m.id, "role": m.role,
                "content": m.content, "created_at": m.created_at, "metadata": m.metadata,
                "tool_calls": m.tool_calls, "tool_call_id": m.tool_call_id, "run_id": m.run_id,
            })
        });
    }

    /// Publishes a chunk of a run's streamed answer to followers, as a `text_delta` or
    /// `tool_call_delta` event with its place in the run (`seq`, from 0).
    pub fn publish_delta(
        &self,
        key: &str,
        run_id: &str,
        seq: u64,
        chunk: &burrow_protocol::methods::invoke::ProviderChunk,
    ) {
        self.publish(key, || {
            let mut event = serde_json::to_value(chunk).unwrap_or_default();
            if let Some(map) = event.as_object_mut() {
                map.insert("session_id".into(), key.into());
                map.insert("run_id".into(), run_id.into());
                map.insert("seq".into(), seq.into());
            }
            event
        });
    }

    /// The actor of `key`, spawned (loading from the store) if there is none.
    pub fn actor(&self, kernel: &Arc<Kernel>, key: &str) -> Option<ActorRef<SessionMsg>> {
        self.actor_after(kernel, key, false)
    }

    /// [`Sessions::actor`]; `failed` when the last actor of `key` failed (writes of its
    /// may still be on their way to the disk).
    fn actor_after(
        &self,
        kernel: &Arc<Kernel>,
        key: &str,
        failed: bool,
    ) -> Option<ActorRef<SessionMsg>> {
        if let Some(a) = self.actors.get(key) {
            return Some(a.clone());
        }
        if self.closing.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        let supervisor = self.supervisor.get()?.clone();
        let entry = self.actors.entry(key.to_owned()).or_try_insert_with(|| {
            let args = actor::SessionArgs {
                kernel: kernel.clone(),
                key: key.to_owned(),
                after_failure: failed,
            };
            ActorRuntime::<SessionActor>::spawn_linked_instant(None, SessionActor, args, supervisor)
                .map(|(a, _)| a)
                .map_err(|e| tracing::error!(error = %e, "cannot start a session actor"))
        });
        entry.ok().map(|a| a.clone())
    }

    /// Whether `key` has a resident actor.
    pub fn is_active(&self, key: &str) -> bool {
        self.actors.contains_key(key)
    }

    /// The resident sessions' keys.
    pub fn active_keys(&self) -> Vec<String> {
        self.actors.iter().map(|e| e.key().clone()).collect()
    }

    /// How many sessions are resident.
    pub fn active(&self) -> usize {
        self.actors.len()
    }

    /// Forgets `key`'s actor if it is `actor` (eviction or failure).
    pub fn release(&self, key: &str, actor: &ActorCell) {
        self.actors.remove_if(key, |_, a| a.get_id() == actor.get_id());
    }

    /// Publishes a run's current state to waiters.
    pub fn publish_run(&self, run: RunRow) {
        self.publish_run_with(run, None);
    }

    /// [`Sessions::publish_run`], the event carrying what the run took (`usage`, `turns`,
    /// `tool_calls`) when given: a run's end does.
    pub fn publish_run_with(&self, run: RunRow, stats: Option<&stream::RunStats>) {
        let terminal =
            matches!(run.status, RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled);
        let tx = self
            .runs
            .entry(run.id.clone())
            .or_insert_with(|| watch::channel(run.clone()).0)
            .clone();
        self.publish(&run.session_key, || {
            let mut event = json!({ "type": "run", "session_id": run.session_key, "run_id": run.id, "status": run.status, "output": run.output, "error": run.error });
            if let (Some(stats), Some(map)) = (stats, event.as_object_mut()) {
                map.insert("usage".into(), json!({ "input_tokens": stats.input_tokens, "output_tokens": stats.output_tokens }));
                map.insert("turns".into(), stats.turns.into());
                map.insert("tool_calls".into(), stats.tool_calls.into());
            }
            event
        });
        // `send_replace`: the value changes even while nobody watches.
        tx.send_replace(run.clone());
        if terminal {
            // Waiters already subscribed keep their receiver; new ones read the store.
            self.runs.remove(&run.id);
        }
    }

    /// Whether session `key` has a run queued or running.
    pub fn running(&self, key: &str) -> bool {
        !self.runs_of(key).is_empty()
    }

    /// The runs of session `key` queued or running (an entry a waiter left behind for a
    /// run that has ended does not count).
    pub fn runs_of(&self, key: &str) -> Vec<String> {
        let going = |run: &RunRow| run.session_key == key && !run.status.is_terminal();
        self.runs.iter().filter(|r| going(&r.borrow())).map(|r| r.key().clone()).collect()
    }

    /// A receiver of a run's state, while it is queued or running.
    pub fn watch_run(&self, id: &str) -> Option<watch::Receiver<RunRow>> {
        self.runs.get(id).map(|tx| tx.subscribe())
    }

    /// A receiver of the state of `row`'s run, starting from `row` unless the run has
    /// published a newer state (for waiters on runs only the store knows of yet).
    pub fn watch_stored_run(&self, row: RunRow) -> watch::Receiver<RunRow> {
        let id = row.id.clone();
        self.runs.entry(id).or_insert_with(|| watch::channel(row).0).subscribe()
    }
}

/// Supervises every session actor; a failed one is forgotten and, since its queued work
/// is in the store, started again.
#[derive(Debug)]
pub struct SessionsActor;

impl Actor for SessionsActor {
    type Msg = crate::stop::Stop;
    type State = Arc<Kernel>;
    type Arguments = Arc<Kernel>;

    async fn pre_start(
        &self,
        myself: ActorRef<crate::stop::Stop>,
        kernel: Arc<Kernel>,
    ) -> Result<Arc<Kernel>, ActorProcessingErr> {
        let _ = kernel.sessions.supervisor.set(myself.get_cell());
        // Resume the work acknowledged before the last stop or crash.
        match kernel.store().unfinished_runs(None).await {
            Ok(runs) => {
                let mut keys: Vec<String> = runs.into_iter().map(|r| r.session_key).collect();
                keys.dedup();
                for key in keys {
                    kernel.sessions.actor(&kernel, &key);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read unfinished runs"),
        }
        // Keep-alive sessions are resident for as long as the kernel runs.
        match kernel.store().resident_sessions().await {
            Ok(rows) => {
                for row in rows {
                    kernel.sessions.actor(&kernel, &row.key);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read keep-alive sessions"),
        }
        Ok(kernel)
    }

    /// The kernel's stop: every session stops where it is (a run in progress stays
    /// unfinished in the store, to resume at the next start), then the supervisor.
    async fn handle(
        &self,
        myself: ActorRef<crate::stop::Stop>,
        stop: crate::stop::Stop,
        kernel: &mut Arc<Kernel>,
    ) -> Result<(), ActorProcessingErr> {
        let left = stop.by().saturating_duration_since(tokio::time::Instant::now());
        // None starts from now on, so none outlives this stop.
        kernel.sessions.closing.store(true, std::sync::atomic::Ordering::Release);
        myself.stop_children_and_wait(Some("kernel stopping".into()), Some(left)).await;
        stop.done();
        myself.stop(None);
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<crate::stop::Stop>,
        event: SupervisionEvent,
        kernel: &mut Arc<Kernel>,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, err) = event {
            let key = kernel
                .sessions
                .actors
                .iter()
                .find(|e| e.value().get_id() == cell.get_id())
                .map(|e| e.key().clone());
            if let Some(key) = key {
                tracing::error!(session = %key, error = %err, "session actor failed; restarting it from the store");
                kernel.sessions.release(&key, &cell);
                kernel.sessions.actor_after(kernel, &key, true);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::kernel::KernelPaths;
    use crate::token::KernelKey;

    /// A kernel context with a real store in a temporary directory and no provider:
    /// runs wait for one, so they stay unfinished.
    fn kernel(dir: &std::path::Path) -> Arc<Kernel> {
        let mut config = Config::default();
        config.sessions.provider_wait_ms = 60_000;
        let store = crate::store::sqlite::SqliteStore::open(&dir.join("burrow.db")).unwrap();
        let paths = KernelPaths { socket: dir.join("k.sock"), state_dir: dir.to_owned() };
        Arc::new(Kernel::new(config, KernelKey::from_seed([1; 32]), paths, Arc::new(store)))
    }

    #[tokio::test]
    async fn a_failed_session_actor_restarts_from_the_store_with_its_queued_work() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = kernel(dir.path());
        let (sessions, _handle) = Actor::spawn(None, SessionsActor, kernel.clone()).await.unwrap();
        let item = Inbound::new("hello".into(), None, "test".into(), Wake::Always);
        let acked = crate::service::sessions::to_session(&kernel, "k1", item).await.unwrap();
        let run_id = acked.run_id.unwrap();
        let first = kernel.sessions.actor(&kernel, "k1").unwrap();
        first.cast(SessionMsg::Crash).unwrap();

        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        let restarted = loop {
            match kernel.sessions.actors.get("k1").map(|a| a.clone()) {
                Some(a) if a.get_id() != first.get_id() => break a,
                _ => {
                    assert!(tokio::time::Instant::now() < deadline, "no new actor for k1");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        };
        // The acknowledged message and its run are still there, and the new actor took
        // the run up again: it is running (waiting for a provider), not lost.
        let history = kernel.store().history("k1", 10, None).await.unwrap();
        assert_eq!(history.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(), ["hello"]);
        let mut watch = kernel.sessions.watch_run(&run_id).expect("the run is live again");
        // Not holding on to the value seen: its sender would wait for it.
        let running = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            watch.wait_for(|r| r.status == RunStatus::Running),
        )
        .await
        .is_ok_and(|seen| seen.is_ok());
        assert!(running, "the resumed run did not start");
        // The new actor takes new work.
        let item = Inbound::new("again".into(), None, "test".into(), Wake::Always);
        let again = crate::service::sessions::to_session(&kernel, "k1", item).await.unwrap();
        assert!(again.queued, "new work waits behind the resumed run");
        restarted.stop(None);
        sessions.stop(None);
    }

    #[tokio::test]
    async fn the_kernels_stop_ends_every_session_and_starts_none_after() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = kernel(dir.path());
        let (sessions, handle) = Actor::spawn(None, SessionsActor, kernel.clone()).await.unwrap();
        let item = Inbound::new("hello".into(), None, "test".into(), Wake::Always);
        let acked = crate::service::sessions::to_session(&kernel, "k1", item).await.unwrap();
        assert!(kernel.sessions.is_active("k1"));
        let by = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        crate::stop::part("sessions", by, std::time::Duration::ZERO, |s| sessions.cast(s).is_ok())
            .await;
        tokio::time::timeout(std::time::Duration::from_secs(10), handle).await.unwrap().unwrap();
        assert!(!kernel.sessions.is_active("k1"), "the session actor stopped");
        // Work that comes now is refused, and the run acknowledged before stays unfinished
        // in the store, to resume at the next start.
        assert!(kernel.sessions.actor(&kernel, "k2").is_none());
        let item = Inbound::new("late".into(), None, "test".into(), Wake::Always);
        let refused = crate::service::sessions::to_session(&kernel, "k2", item).await;
        assert!(refused.is_err(), "{refused:?}");
        let unfinished = kernel.store().unfinished_runs(None).await.unwrap();
        assert!(unfinished.iter().any(|r| Some(&r.id) == acked.run_id.as_ref()));
    }
}
