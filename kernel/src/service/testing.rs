//! What the service layer's unit tests share: a kernel over the memory store
//! ([`crate::store::memory`]) with its session supervisor, and no apps (so a run waits
//! for a provider).

use std::sync::Arc;

use ractor::{Actor, ActorRef};

use crate::config::Config;
use crate::kernel::{Kernel, KernelPaths};
use crate::sessions::SessionsActor;
use crate::store::memory::MemoryStore;
use crate::token::KernelKey;

/// A kernel with its session supervisor, and a directory for its files (logs); they end
/// when it is dropped.
pub struct Fixture {
    /// The kernel.
    pub kernel: Arc<Kernel>,
    sessions: ActorRef<crate::stop::Stop>,
    _dir: tempfile::TempDir,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.sessions.stop(None);
    }
}

/// A fresh kernel; a run waits a minute for a provider.
pub async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.sessions.provider_wait_ms = 60_000;
    let store = Arc::new(MemoryStore::new());
    let paths = KernelPaths { socket: dir.path().join("k.sock"), state_dir: dir.path().to_owned() };
    let kernel = Arc::new(Kernel::new(config, KernelKey::from_seed([3; 32]), paths, store));
    let (sessions, _) = Actor::spawn(None, SessionsActor, kernel.clone()).await.unwrap();
    Fixture { kernel, sessions, _dir: dir }
}

/// A connection to nobody (its far end is dropped): enough to hold capabilities and
/// subscriptions.
pub fn connection(id: u64) -> crate::connection::Connection {
    let (transport, _far) = burrow_transport::Transport::memory_pair();
    let limits = crate::connection::Limits::small(1 << 20);
    let tasks = tokio_util::task::TaskTracker::new();
    crate::connection::Connection::spawn(id, transport, limits, &tasks, |_| true)
}

/// A manifest granting `tools`, hook subscriptions and interceptions of `hooks`, and
/// config reads of `reads`.
pub fn manifest(
    id: &str,
    tools: &[&str],
    hooks: &[&str],
    reads: &[&str],
) -> burrow_protocol::Manifest {
    let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let mut m = burrow_protocol::Manifest::new(id, "1.0.0");
    m.capabilities.tools = owned(tools);
    m.capabilities.hooks.subscribe = owned(hooks);
    m.capabilities.hooks.intercept = owned(hooks);
    m.config.read = owned(reads);
    m
}
