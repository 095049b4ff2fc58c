//! The registry of live apps: lock-free reads for `kernel.info`, `kernel.apps` and routing;
//! each entry is written only by the AppActor that owns it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use burrow_protocol::methods::app::{AppState, AppSummary};
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use tokio::sync::Notify;

/// What closes an app's connection when another connection takes its id over (set by
/// whoever serves the connection).
#[derive(Clone)]
pub struct Displace(Arc<dyn Fn() + Send + Sync>);

impl Displace {
    /// Runs `close` when displaced.
    pub fn new(close: impl Fn() + Send + Sync + 'static) -> Self {
        Displace(Arc::new(close))
    }

    /// Closes the displaced connection.
    pub fn now(&self) {
        (self.0)();
    }
}

impl std::fmt::Debug for Displace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Displace")
    }
}

/// One registered app.
#[derive(Debug, Clone)]
pub struct AppEntry {
    /// The connection that holds the id.
    pub conn_id: u64,
    /// What closes its connection should another take the id over.
    pub displace: Displace,
    /// Manifest version.
    pub version: String,
    /// Lifecycle state.
    pub state: AppState,
    /// When it registered, ms since the epoch.
    pub registered_at: u64,
    /// Last frame from it, on the monotonic clock ([`crate::clock`]).
    pub last_seen: Arc<AtomicU64>,
}

/// What registering an id did.
#[derive(Debug)]
#[must_use]
pub enum Claim {
    /// The id was free and is now held.
    Registered,
    /// The id was held by another connection, which must now be closed.
    TookOver(Displace),
    /// The id is held and no takeover was allowed.
    Conflict,
}

/// Live apps by id.
#[derive(Debug, Default)]
pub struct AppRegistry {
    /// Looked up on every request answered off the actor: hashed cheaply.
    apps: DashMap<String, AppEntry, rustc_hash::FxBuildHasher>,
    /// Notified whenever an app becomes ready.
    readied: Notify,
}

impl AppRegistry {
    /// Claims `app_id` for `entry`; a live holder is displaced only if `takeover`.
    pub fn claim(&self, app_id: &str, entry: AppEntry, takeover: bool) -> Claim {
        match self.apps.entry(app_id.to_owned()) {
            Entry::Vacant(v) => {
                v.insert(entry);
                Claim::Registered
            }
            Entry::Occupied(mut o) if takeover && o.get().conn_id != entry.conn_id => {
                let old = o.insert(entry);
                Claim::TookOver(old.displace)
            }
            Entry::Occupied(_) => Claim::Conflict,
        }
    }

    /// Releases `app_id` if `conn_id` still holds it; true when it did.
    pub fn release(&self, app_id: &str, conn_id: u64) -> bool {
        self.apps.remove_if(app_id, |_, e| e.conn_id == conn_id).is_some()
    }

    /// Releases every id held by `conn_id` (cleanup after an actor failure).
    pub fn release_conn(&self, conn_id: u64) -> Vec<String> {
        let ids: Vec<String> =
            self.apps.iter().filter(|e| e.conn_id == conn_id).map(|e| e.key().clone()).collect();
        ids.into_iter().filter(|id| self.release(id, conn_id)).collect()
    }

    /// Whether `conn_id` holds `app_id`.
    pub fn holds(&self, app_id: &str, conn_id: u64) -> bool {
        self.apps.get(app_id).is_some_and(|e| e.conn_id == conn_id)
    }

    /// Sets the state of `app_id` if `conn_id` holds it.
    pub fn set_state(&self, app_id: &str, conn_id: u64, state: AppState) {
        if let Some(mut e) = self.apps.get_mut(app_id)
            && e.conn_id == conn_id
        {
            e.state = state;
            drop(e);
            if state == AppState::Ready {
                self.readied.notify_waiters();
            }
        }
    }

    /// Notified whenever an app becomes ready (for waiters on its capabilities).
    pub fn readied(&self) -> &Notify {
        &self.readied
    }

    /// Whether `app_id` is registered and ready for traffic.
    pub fn is_ready(&self, app_id: &str) -> bool {
        self.apps.get(app_id).is_some_and(|e| e.state == AppState::Ready)
    }

    /// How many apps are registered.
    pub fn len(&self) -> usize {
        self.apps.len()
    }

    /// Whether no app is registered.
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }

    /// Every live app, ordered by id.
    pub fn summaries(&self) -> Vec<AppSummary> {
        let mut apps: Vec<AppSummary> = self
            .apps
            .iter()
            .map(|e| AppSummary {
                app_id: e.key().clone(),
                version: e.version.clone(),
                state: e.state,
                registered_at: e.registered_at,
                last_seen_at: crate::clock::wall_of(e.last_seen.load(Ordering::Relaxed)),
            })
            .collect();
        apps.sort_by(|a, b| a.app_id.cmp(&b.app_id));
        apps
    }
}
