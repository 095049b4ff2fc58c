//! The capability registry (PROTOCOL.md §5): what each app provides, unique names per
//! type. What a config must be and what a manifest grants are
//! [`burrow_protocol::rules`], which the SDK's fake kernel applies too. Entries are written only by their own AppActor and read lock-free by
//! routing; [`Capabilities::wait_ready`] waits for a name to be registered by a ready app.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use burrow_protocol::Value;
use burrow_protocol::methods::capability::{
    CapabilityConfig, CapabilityType, FailMode, HookConfig,
};
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use rustc_hash::FxBuildHasher;
use tokio::sync::Notify;

use crate::connection::Connection;

pub mod known_tools;

/// One granted capability.
#[derive(Debug)]
pub struct Capability {
    /// Its id.
    pub id: String,
    /// The app that holds it.
    pub app_id: String,
    /// That app's connection: requests for the capability go there.
    pub conn: Connection,
    /// What it is.
    pub config: CapabilityConfig,
    /// Registration order, the tie-break among interceptors of equal priority.
    pub seq: u64,
}

impl Capability {
    /// Its unique name within its type (`None` for hooks, which are not unique).
    pub fn name(&self) -> Option<String> {
        unique_name(&self.config)
    }

    /// The unique name of a config (`None` for hooks).
    pub fn unique_name_of(config: &CapabilityConfig) -> Option<String> {
        unique_name(config)
    }

    /// For a hook: its event, priority, deadline (ms) and fail mode.
    pub fn as_hook(&self) -> Option<&HookConfig> {
        match &self.config {
            CapabilityConfig::Hook(h) => Some(h),
            _ => None,
        }
    }

    /// Its config as registered, for `kernel.capabilities`.
    pub fn config_value(&self) -> Value {
        use burrow_protocol::methods::to_value;
        match &self.config {
            CapabilityConfig::Tool(c) => to_value(c),
            CapabilityConfig::Channel(c) => to_value(c),
            CapabilityConfig::Hook(c) => to_value(c),
            CapabilityConfig::GatewayMethod(c) => to_value(c),
            CapabilityConfig::HttpRoute(c) => to_value(c),
            CapabilityConfig::Provider(c) => to_value(c),
        }
    }
}

/// The name a capability is unique by, per type.
fn unique_name(config: &CapabilityConfig) -> Option<String> {
    Some(match config {
        CapabilityConfig::Tool(c) => c.name.clone(),
        CapabilityConfig::Channel(c) => c.channel_id.clone(),
        CapabilityConfig::Provider(c) => c.provider_id.clone(),
        CapabilityConfig::GatewayMethod(c) => c.method.clone(),
        CapabilityConfig::HttpRoute(c) => format!("{} {}", c.method, c.path),
        CapabilityConfig::Hook(_) => return None,
    })
}

/// Every granted capability, with unique names per type.
#[derive(Debug, Default)]
pub struct Capabilities {
    // Looked up on every routed call: hashed cheaply (names come from local apps, which
    // the socket admits only for the kernel's own user).
    by_id: DashMap<String, Arc<Capability>, FxBuildHasher>,
    names: DashMap<(CapabilityType, String), String, FxBuildHasher>,
    /// How many interceptors each event has: lets the hot paths skip the scan of
    /// `by_id` for events nobody intercepts.
    hooked: DashMap<String, usize>,
    /// How many interceptors there are in all: with none (the common case), the hot
    /// paths' question is one atomic load.
    interceptors: AtomicUsize,
    seq: AtomicU64,
    /// Wakes [`Capabilities::wait_ready`] waiters when a capability is added.
    added: Notify,
    /// Counts the tools added and removed ([`Capabilities::tool_changes`]).
    tools: tokio::sync::watch::Sender<u64>,
}

/// The longest [`Capabilities::wait_ready`] waits.
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 86_400);

/// Why [`Capabilities::wait_ready`] ended without a capability.
#[derive(Debug)]
pub enum Unready {
    /// None of that type and name is registered.
    Missing,
    /// It is registered, but the app holding it is not ready.
    NotReady(Arc<Capability>),
}

impl Capabilities {
    /// Adds a capability unless its name is taken; `Err(holder app id)` when it is.
    pub fn insert(
        &self,
        app_id: &str,
        conn: &Connection,
        config: CapabilityConfig,
    ) -> Result<Arc<Capability>, String> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let cap = Arc::new(Capability {
            id: format!("cap-{}", uuid::Uuid::now_v7()),
            app_id: app_id.to_owned(),
            conn: conn.clone(),
            config,
            seq,
        });
        if let Some(name) = cap.name() {
            match self.names.entry((cap.config.kind(), name)) {
                Entry::Occupied(o) => {
                    let holder =
                        self.by_id.get(o.get()).map(|c| c.app_id.clone()).unwrap_or_default();
                    return Err(holder);
                }
                Entry::Vacant(v) => {
                    v.insert(cap.id.clone());
                }
            }
        }
        self.by_id.insert(cap.id.clone(), cap.clone());
        if let Some(hook) = cap.as_hook() {
            *self.hooked.entry(hook.event.clone()).or_default() += 1;
            self.interceptors.fetch_add(1, Ordering::AcqRel);
        }
        self.added.notify_waiters();
        self.tool_changed(&cap);
        Ok(cap)
    }

    /// Changes each time a tool is added or removed (the value counts them).
    pub fn tool_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.tools.subscribe()
    }

    fn tool_changed(&self, cap: &Capability) {
        if cap.config.kind() == CapabilityType::Tool {
            self.tools.send_modify(|n| *n += 1);
        }
    }

    /// The capability of `kind` named `name` once it is registered and `is_ready` says
    /// the app holding it is ready, waiting up to `wait` for that: it looks again each
    /// time a capability is added or `readied` is notified (an app became ready). Looks
    /// at once; a zero `wait` does not wait. Dropping the future ends the wait.
    pub async fn wait_ready(
        &self,
        kind: CapabilityType,
        name: &str,
        wait: Duration,
        is_ready: impl Fn(&str) -> bool,
        readied: &Notify,
    ) -> Result<Arc<Capability>, Unready> {
        let now = tokio::time::Instant::now();
        // A wait too long to represent is as good as thirty years.
        let deadline = now.checked_add(wait).unwrap_or(now + FAR_FUTURE);
        loop {
            // Listening before looking: a change between the two is not missed.
            let added = self.added.notified();
            let ready = readied.notified();
            tokio::pin!(added, ready);
            added.as_mut().enable();
            ready.as_mut().enable();
            let found = self.by_name(kind, name);
            match found {
                Some(cap) if is_ready(&cap.app_id) => return Ok(cap),
                _ if tokio::time::Instant::now() >= deadline => {
                    return Err(found.map_or(Unready::Missing, Unready::NotReady));
                }
                _ => tokio::select! {
                    () = &mut added => {}
                    () = &mut ready => {}
                    () = tokio::time::sleep_until(deadline) => {}
                },
            }
        }
    }

    /// A capability by id.
    pub fn get(&self, id: &str) -> Option<Arc<Capability>> {
        self.by_id.get(id).map(|c| c.clone())
    }

    /// Removes a capability by id.
    pub fn remove(&self, id: &str) -> Option<Arc<Capability>> {
        let (_, cap) = self.by_id.remove(id)?;
        if let Some(hook) = cap.as_hook() {
            self.hooked.alter(&hook.event, |_, n| n.saturating_sub(1));
            self.hooked.remove_if(&hook.event, |_, n| *n == 0);
            self.interceptors.fetch_sub(1, Ordering::AcqRel);
        }
        if let Some(name) = cap.name() {
            self.names.remove_if(&(cap.config.kind(), name), |_, holder| holder == id);
        }
        self.tool_changed(&cap);
        Some(cap)
    }

    /// Removes everything a connection held.
    pub fn release_conn(&self, conn_id: u64) -> Vec<Arc<Capability>> {
        let ids: Vec<String> =
            self.by_id.iter().filter(|c| c.conn.id() == conn_id).map(|c| c.id.clone()).collect();
        ids.iter().filter_map(|id| self.remove(id)).collect()
    }

    /// The capability of `kind` named `name`.
    pub fn by_name(&self, kind: CapabilityType, name: &str) -> Option<Arc<Capability>> {
        let id = self.names.get(&(kind, name.to_owned()))?.clone();
        self.get(&id)
    }

    /// Whether `app_id` already intercepts `event`.
    pub fn intercepts(&self, app_id: &str, event: &str) -> bool {
        self.by_id
            .iter()
            .any(|c| c.app_id == app_id && c.as_hook().is_some_and(|h| h.event == event))
    }

    /// Whether any app intercepts `event`.
    pub fn intercepted(&self, event: &str) -> bool {
        self.interceptors.load(Ordering::Acquire) > 0
            && self.hooked.get(event).is_some_and(|n| *n > 0)
    }

    /// The interceptors of `event`, lowest priority first, then in registration order.
    pub fn interceptors(&self, event: &str) -> Vec<Arc<Capability>> {
        if !self.intercepted(event) {
            return Vec::new();
        }
        let mut chain: Vec<Arc<Capability>> = self
            .by_id
            .iter()
            .filter(|c| c.as_hook().is_some_and(|h| h.event == event))
            .map(|c| c.clone())
            .collect();
        chain.sort_by_key(|c| (c.as_hook().and_then(|h| h.priority).unwrap_or(0), c.seq));
        chain
    }

    /// Every capability (optionally of one type), ordered by app then registration.
    pub fn list(&self, kind: Option<CapabilityType>) -> Vec<Arc<Capability>> {
        let mut all: Vec<Arc<Capability>> = self
            .by_id
            .iter()
            .filter(|c| kind.is_none_or(|k| c.config.kind() == k))
            .map(|c| c.clone())
            .collect();
        all.sort_by(|a, b| (&a.app_id, a.seq).cmp(&(&b.app_id, b.seq)));
        all
    }
}

/// An interceptor's fail mode, defaulting to open.
pub fn fail_mode(h: &HookConfig) -> FailMode {
    h.fail_mode.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burrow_protocol::methods::capability::ToolConfig;

    fn tool(name: &str) -> CapabilityConfig {
        CapabilityConfig::Tool(ToolConfig {
            name: name.into(),
            description: "d".into(),
            input_schema: None,
            timeout_ms: None,
        })
    }

    fn conn(id: u64) -> Connection {
        let (transport, _peer) = burrow_transport::Transport::memory_pair();
        let limits = crate::connection::Limits::small(1 << 20);
        Connection::spawn(id, transport, limits, &tokio_util::task::TaskTracker::new(), |_| true)
    }

    fn hook(event: &str, priority: Option<i64>) -> CapabilityConfig {
        CapabilityConfig::Hook(HookConfig {
            event: event.into(),
            priority,
            timeout_ms: None,
            fail_mode: None,
        })
    }

    #[tokio::test]
    async fn names_are_unique_until_released() {
        let caps = Capabilities::default();
        let (a, b) = (conn(1), conn(2));
        let first = caps.insert("a", &a, tool("t")).unwrap();
        assert_eq!(caps.insert("b", &b, tool("t")).unwrap_err(), "a");
        assert_eq!(caps.by_name(CapabilityType::Tool, "t").unwrap().id, first.id);
        caps.remove(&first.id).unwrap();
        assert!(caps.by_name(CapabilityType::Tool, "t").is_none());
        caps.insert("b", &b, tool("t")).unwrap();
        caps.insert("b", &b, tool("u")).unwrap();
        assert_eq!(caps.release_conn(2).len(), 2);
        assert!(caps.list(None).is_empty());
    }

    #[tokio::test]
    async fn interceptors_sort_by_priority_then_registration() {
        let caps = Capabilities::default();
        let c = conn(1);
        caps.insert("late", &c, hook("before_tool_call", Some(10))).unwrap();
        caps.insert("first", &c, hook("before_tool_call", None)).unwrap();
        caps.insert("second", &c, hook("before_tool_call", Some(0))).unwrap();
        caps.insert("early", &c, hook("before_tool_call", Some(-5))).unwrap();
        caps.insert("other", &c, hook("message_received", None)).unwrap();
        let order: Vec<String> =
            caps.interceptors("before_tool_call").iter().map(|c| c.app_id.clone()).collect();
        assert_eq!(order, ["early", "first", "second", "late"]);
        assert!(caps.intercepts("other", "message_received"));
        assert!(!caps.intercepts("other", "before_tool_call"));
    }

    #[tokio::test]
    async fn a_wait_ends_once_the_name_is_registered_by_a_ready_app() {
        use std::sync::atomic::AtomicBool;
        let caps = Arc::new(Capabilities::default());
        let readied = Arc::new(Notify::new());
        let ready = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (caps, readied, ready) = (caps.clone(), readied.clone(), ready.clone());
            tokio::spawn(async move {
                let is_ready = |_: &str| ready.load(Ordering::SeqCst);
                let wait = Duration::from_secs(600);
                caps.wait_ready(CapabilityType::Tool, "t", wait, is_ready, &readied).await
            })
        };
        tokio::task::yield_now().await;
        let c = conn(1);
        caps.insert("a", &c, tool("other")).unwrap();
        caps.insert("a", &c, tool("t")).unwrap();
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "registered, but its app is not ready yet");
        ready.store(true, Ordering::SeqCst);
        readied.notify_waiters();
        let found = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("woken by the app becoming ready, long before its deadline")
            .unwrap();
        assert_eq!(found.unwrap().app_id, "a");
    }

    #[tokio::test]
    async fn a_wait_ends_at_its_deadline_saying_what_is_missing() {
        let (caps, readied) = (Capabilities::default(), Notify::new());
        let wait = Duration::from_millis(100);
        let started = tokio::time::Instant::now();
        let missing = caps.wait_ready(CapabilityType::Tool, "t", wait, |_| true, &readied).await;
        assert!(matches!(missing, Err(Unready::Missing)), "{missing:?}");
        assert!(started.elapsed() >= wait, "it waited its whole deadline");
        let c = conn(1);
        caps.insert("a", &c, tool("t")).unwrap();
        // Another type does not answer for a tool.
        let other = caps.wait_ready(CapabilityType::Provider, "t", wait, |_| true, &readied).await;
        assert!(matches!(other, Err(Unready::Missing)), "{other:?}");
        let not_ready = caps.wait_ready(CapabilityType::Tool, "t", wait, |_| false, &readied).await;
        assert!(
            matches!(&not_ready, Err(Unready::NotReady(c)) if c.app_id == "a"),
            "{not_ready:?}"
        );
        let now = caps.wait_ready(CapabilityType::Tool, "t", Duration::ZERO, |_| true, &readied);
        assert_eq!(now.await.unwrap().app_id, "a", "no wait when it is there");
        let ever = caps.wait_ready(CapabilityType::Tool, "t", Duration::MAX, |_| true, &readied);
        assert_eq!(ever.await.unwrap().app_id, "a", "an endless wait is no trouble either");
    }
}
