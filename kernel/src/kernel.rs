//! The [`Kernel`] context every actor, service and surface shares: the configuration,
//! the registries (apps, capabilities, hooks, sessions), the store, the key, and what
//! the running kernel publishes about itself. The root actor that accepts connections
//! is [`crate::root`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ractor::ActorRef;
use tokio_util::task::TaskTracker;

use burrow_protocol::methods::capability::CapabilityType;
use burrow_protocol::methods::config::ConfigChange;
use burrow_protocol::{Map, Value};
use tokio::sync::broadcast;

use crate::capabilities::{Capabilities, Capability, Unready};
use crate::config::Config;
use crate::hooks::{Hooks, InterceptScope};
use crate::registry::AppRegistry;
use crate::sessions::Sessions;
use crate::store::Storage;
use crate::supervisor::{ManagedSummary, SupervisorMsg};
use crate::token::KernelKey;

/// A configuration change as watchers receive it.
#[derive(Debug)]
pub struct ConfigUpdate {
    /// The configuration before.
    pub old: Arc<Config>,
    /// The configuration now in force.
    pub new: Arc<Config>,
    /// What changed.
    pub changes: Vec<ConfigChange>,
}

/// Where the kernel listens and keeps its state.
#[derive(Debug, Clone, Default)]
pub struct KernelPaths {
    /// The socket apps connect to.
    pub socket: std::path::PathBuf,
    /// The state directory (key, logs, records).
    pub state_dir: std::path::PathBuf,
}

/// State shared by all actors: configuration, key, registries. Read-mostly.
#[derive(Debug)]
pub struct Kernel {
    /// Where the kernel listens and keeps its state.
    pub paths: KernelPaths,
    store: Arc<dyn Storage>,
    /// Resident sessions and live runs.
    pub sessions: Sessions,
    supervisor: std::sync::OnceLock<ActorRef<SupervisorMsg>>,
    managed: RwLock<Vec<ManagedSummary>>,
    log_feeds: dashmap::DashMap<String, broadcast::Sender<String>>,
    config: RwLock<Arc<Config>>,
    config_updates: broadcast::Sender<Arc<ConfigUpdate>>,
    /// Signs and checks app tokens.
    pub key: KernelKey,
    /// Live apps.
    pub apps: AppRegistry,
    /// Granted capabilities.
    pub caps: Capabilities,
    /// Hook subscriptions and interceptions in progress.
    pub hooks: Hooks,
    /// When the kernel started, ms since the epoch.
    pub started_at: u64,
    /// Connection tasks, so a stopping kernel can let the last answers be written.
    pub tasks: TaskTracker,
    next_conn: AtomicU64,
    /// Bound addresses of the host surfaces and the kernel channel, by name.
    pub endpoints: RwLock<std::collections::BTreeMap<String, String>>,
    /// The signed kernel channel, when it is on.
    pub remote: std::sync::OnceLock<Arc<crate::service::comms::remote::RemoteKernels>>,
    /// Peer requests whose response is being delivered right now (one at a time each).
    pub comms_claims: dashmap::DashMap<String, ()>,
    /// The tools registered before this start, and since.
    pub known_tools: crate::capabilities::known_tools::KnownTools,
    /// The tools hosts provide on their connections.
    pub host_tools: crate::service::host_tools::HostTools,
    /// Recent runs' steps, for the dashboard (`run/timeline`).
    pub timelines: Arc<crate::service::timeline::Timelines>,
}

impl Kernel {
    /// A context with `config` and `key`.
    pub fn new(
        config: Config,
        key: KernelKey,
        paths: KernelPaths,
        store: Arc<dyn Storage>,
    ) -> Self {
        let known_tools = crate::capabilities::known_tools::KnownTools::open(&paths.state_dir);
        Self {
            known_tools,
            paths,
            store,
            sessions: Sessions::default(),
            supervisor: std::sync::OnceLock::new(),
            managed: RwLock::new(Vec::new()),
            log_feeds: dashmap::DashMap::new(),
            config: RwLock::new(Arc::new(config)),
            config_updates: broadcast::channel(64).0,
            key,
            apps: AppRegistry::default(),
            caps: Capabilities::default(),
            hooks: Hooks::default(),
            started_at: burrow_protocol::now_ms(),
            tasks: TaskTracker::new(),
            next_conn: AtomicU64::new(1),
            endpoints: RwLock::new(Default::default()),
            host_tools: Default::default(),
            timelines: Default::default(),
            remote: std::sync::OnceLock::new(),
            comms_claims: dashmap::DashMap::new(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.read().map(|c| c.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Puts `new` in force and tells watchers and `config_changed` observers what changed.
    pub fn apply_config(&self, new: Config) {
        let new = Arc::new(new);
        let old = {
            let mut slot = self.config.write().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *slot, new.clone())
        };
        let changes = crate::config::watch::diff(&old.document, &new.document);
        if changes.is_empty() {
            return;
        }
        let paths: Vec<&str> = changes.iter().map(|c| c.path.as_str()).collect();
        tracing::info!(?paths, "configuration reloaded");
        if new.ipc != old.ipc {
            tracing::info!(
                "[ipc] changed: new connections use the new limits; see docs for what needs a restart"
            );
        }
        self.emit("config_changed", serde_json::json!({ "paths": paths }), Map::new());
        self.notify_supervisor(SupervisorMsg::Sync);
        let _ = self.config_updates.send(Arc::new(ConfigUpdate { old, new, changes }));
    }

    /// The durable store.
    pub fn store(&self) -> &dyn Storage {
        self.store.as_ref()
    }

    /// Connects the supervisor of app processes (once).
    pub fn set_supervisor(&self, supervisor: ActorRef<SupervisorMsg>) {
        let _ = self.supervisor.set(supervisor);
    }

    /// Tells the supervisor something, if there is one.
    pub fn notify_supervisor(&self, msg: SupervisorMsg) {
        if let Some(s) = self.supervisor.get() {
            let _ = s.cast(msg);
        }
    }

    /// The supervisor, if running.
    pub fn supervisor(&self) -> Option<ActorRef<SupervisorMsg>> {
        self.supervisor.get().cloned()
    }

    /// The managed apps as the supervisor last published them.
    pub fn managed(&self) -> Vec<ManagedSummary> {
        self.managed.read().map(|m| m.clone()).unwrap_or_default()
    }

    /// Replaces the published picture of managed apps (the supervisor's job).
    pub fn set_managed(&self, summaries: Vec<ManagedSummary>) {
        if let Ok(mut slot) = self.managed.write() {
            *slot = summaries;
        }
    }

    /// The feed of `app_id`'s captured log lines, if the supervisor created one.
    pub fn existing_log_feed(&self, app_id: &str) -> Option<broadcast::Sender<String>> {
        self.log_feeds.get(app_id).map(|f| f.clone())
    }

    /// The feed of `app_id`'s captured log lines, created if missing (the supervisor's).
    pub fn log_feed(&self, app_id: &str) -> broadcast::Sender<String> {
        self.log_feeds.entry(app_id.to_owned()).or_insert_with(crate::supervisor::new_feed).clone()
    }

    /// Subscribes to configuration changes.
    pub fn config_updates(&self) -> broadcast::Receiver<Arc<ConfigUpdate>> {
        self.config_updates.subscribe()
    }

    /// Delivers a hook event to its observers.
    pub fn emit(&self, event: &str, payload: Value, context: Map) {
        self.hooks.emit(&self.config(), event, payload, context);
    }

    /// Like [`Kernel::emit`], building the payload and context only when someone
    /// observes `event` (a run's events carry whole transcripts).
    pub fn emit_with(&self, event: &str, make: impl FnOnce() -> (Value, Map)) {
        if self.hooks.observed(event) {
            let (payload, context) = make();
            self.emit(event, payload, context);
        }
    }

    /// What interception needs.
    pub fn intercept_scope(&self) -> InterceptScope<'_> {
        InterceptScope {
            caps: &self.caps,
            apps: &self.apps,
            hooks: &self.hooks,
            timelines: &self.timelines,
        }
    }

    /// The capability of `kind` named `name` once an app that is ready holds it, waiting
    /// up to `wait` (apps reconnect after a restart of the kernel or of the app).
    pub async fn ready_capability(
        &self,
        kind: CapabilityType,
        name: &str,
        wait: Duration,
    ) -> Result<Arc<Capability>, Unready> {
        let is_ready = |app: &str| self.apps.is_ready(app);
        self.caps.wait_ready(kind, name, wait, is_ready, self.apps.readied()).await
    }

    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }
}
