//! Durable sessions, transcripts, runs and peer requests, behind the [`Storage`] trait;
//! [`sqlite::SqliteStore`] is the embedded default, [`memory::MemoryStore`] the same
//! contract in memory for tests (both are checked against one suite).
//!
//! Writes are acknowledged only once on disk: in the SQLite engine they go to a
//! write-ahead journal ([`journal`]) whose thread takes every write waiting at that
//! moment, appends them and flushes once (group commit), so concurrent writers share one
//! flush. The engine applies journaled writes behind the acknowledgement, in large
//! transactions; reads wait until everything acknowledged before them is applied, so a
//! caller always reads its own writes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use burrow_protocol::Map;
use burrow_protocol::methods::invoke::{Role, ToolCallRequest};
use burrow_protocol::methods::session::{RunStatus, SessionFilter, SessionInfo, TranscriptMessage};

#[cfg(test)]
mod contract;
mod journal;
pub mod memory;
pub mod sqlite;

/// A boxed future, so the trait stays object-safe.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// What to do once submitted writes are on disk, or refused ([`Storage::submit`]). It
/// runs on the engine's writing thread (or at once on the submitter's, when the engine is
/// shut down): it must be quick and must never block.
pub type WriteDone = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// Keeps one writer's submitted writes consistent with each other: once one of them is
/// refused, every later one behind the same fence is refused too, so nothing written on
/// the assumption that an earlier write took effect is ever acknowledged without it. A
/// writer that sees a refusal starts again from what the store holds, with a new fence.
#[derive(Debug, Clone, Default)]
pub struct Fence(Arc<AtomicBool>);

impl Fence {
    /// Whether a write behind this fence was refused.
    pub fn is_broken(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Refuses every later write behind this fence.
    pub fn break_now(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether `other` is this fence.
    pub fn is(&self, other: &Fence) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Why the store failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[error("store: {0}")]
    Db(String),
    /// The store is shut down.
    #[error("store is closed")]
    Closed,
}

/// A session row.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SessionRow {
    /// Its key.
    pub key: String,
    /// Its agent.
    pub agent_id: String,
    /// Replies go through this channel.
    pub channel_id: Option<String>,
    /// The account on the channel.
    pub account_id: Option<String>,
    /// Creation time, ms.
    pub created_at: u64,
    /// Last activity, ms.
    pub last_active_at: u64,
    /// Messages stored.
    pub message_count: u64,
    /// Stays resident: never evicted when idle, loaded when the kernel starts.
    pub keep_alive: bool,
    /// Its display name as a comms peer; `None` when it is not a peer.
    pub comms_name: Option<String>,
    /// Labels a host gave it, to find it by.
    #[serde(default)]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    /// Prompt tokens its runs' provider calls reported, in all.
    #[serde(default)]
    pub input_tokens: u64,
    /// Completion tokens, likewise.
    #[serde(default)]
    pub output_tokens: u64,
    /// Archived: left out of lists, though still readable.
    #[serde(default)]
    pub archived: bool,
}

impl SessionRow {
    /// A new session `key` of agent `agent_id`, created and last active at `at` (ms):
    /// no messages, no channel or account, not kept alive, no name, labels or tokens.
    pub fn new(key: impl Into<String>, agent_id: impl Into<String>, at: u64) -> Self {
        SessionRow {
            key: key.into(),
            agent_id: agent_id.into(),
            channel_id: None,
            account_id: None,
            created_at: at,
            last_active_at: at,
            message_count: 0,
            keep_alive: false,
            comms_name: None,
            labels: None,
            input_tokens: 0,
            output_tokens: 0,
            archived: false,
        }
    }

    /// As the wire reports it.
    pub fn info(&self, active: bool) -> SessionInfo {
        SessionInfo {
            key: self.key.clone(),
            agent_id: self.agent_id.clone(),
            channel_id: self.channel_id.clone(),
            account_id: self.account_id.clone(),
            created_at: self.created_at,
            last_active_at: self.last_active_at,
            message_count: self.message_count,
            active,
            keep_alive: self.keep_alive,
            comms_name: self.comms_name.clone(),
        }
    }
}

/// A message to append.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NewMessage {
    /// Its id.
    pub id: String,
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: String,
    /// Free-form metadata.
    pub metadata: Option<Map>,
    /// An assistant's tool calls.
    pub tool_calls: Option<Vec<ToolCallRequest>>,
    /// For a tool message: the call it answers.
    pub tool_call_id: Option<String>,
    /// When, ms.
    pub created_at: u64,
    /// For an input: the run that answers it.
    pub run_id: Option<String>,
}

impl NewMessage {
    /// For an external event: the idempotency key it was stored with
    /// (`metadata.external_event.idempotency_key`).
    pub fn idempotency_key(&self) -> Option<&str> {
        let event = self.metadata.as_ref()?.get("external_event")?;
        event.get("idempotency_key")?.as_str()
    }

    /// As a transcript shows it.
    pub fn transcript(&self) -> TranscriptMessage {
        TranscriptMessage {
            id: self.id.clone(),
            role: self.role,
            content: self.content.clone(),
            created_at: self.created_at,
            metadata: self.metadata.clone(),
            tool_calls: self.tool_calls.clone(),
            tool_call_id: self.tool_call_id.clone(),
            run_id: self.run_id.clone(),
        }
    }
}

/// An open or answered `peer_request`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PeerRequestRow {
    /// The request id.
    pub id: String,
    /// The session that asked.
    pub requester: String,
    /// The peer asked (a session key, local or remote).
    pub responder: String,
    /// When, ms.
    pub created_at: u64,
    /// When its `peer_response` came (once set, never cleared).
    pub answered_at: Option<u64>,
    /// The kernel of the party that is not on this kernel, if any.
    pub peer_kernel: Option<String>,
}

/// An agent run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunRow {
    /// Its id.
    pub id: String,
    /// Its session.
    pub session_key: String,
    /// Where it stands.
    pub status: RunStatus,
    /// Its output, when completed.
    pub output: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

/// One write of a batch.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Write {
    /// Creates the session if missing.
    CreateSession(SessionRow),
    /// Appends a message and touches the session.
    Append {
        /// The session.
        session_key: String,
        /// The message.
        message: NewMessage,
    },
    /// Creates or updates a run.
    Run(RunRow),
    /// Makes a stored message the input of a run.
    AssignRun {
        /// The message.
        message_id: String,
        /// The run.
        run_id: String,
    },
    /// Records a peer request, or its answer.
    PeerRequest(PeerRequestRow),
    /// Adds a run's tokens to its session's.
    Tokens {
        /// The session.
        session_key: String,
        /// Prompt tokens.
        input_tokens: u64,
        /// Completion tokens.
        output_tokens: u64,
    },
    /// Archives a session: it is left out of lists and no longer stays resident.
    Archive {
        /// The session.
        session_key: String,
    },
}

/// Which messages a history page holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// At most this many.
    pub limit: u32,
    /// Those before this message id (the newest ones when `None`).
    pub before: Option<String>,
    /// About this many bytes at most (content, metadata and tool calls): a page of a few
    /// large messages ends early, so that it always fits an answer.
    pub max_bytes: usize,
}

/// A page of a transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPage {
    /// Oldest first.
    pub messages: Vec<TranscriptMessage>,
    /// The byte bound ended the page before `limit`: older messages may remain.
    pub truncated: bool,
}

/// The storage engine's interface.
/// What [`Storage::sessions`] lists: a filter, and optionally the keys the sessions must
/// be among (or not be among), such as the resident ones.
#[derive(Debug, Clone, Default)]
pub struct SessionQuery {
    /// Agent, channel, account, keep-alive, labels.
    pub filter: SessionFilter,
    /// `(keys, among)`: only sessions whose key is in `keys` (`among`), or not.
    pub within: Option<(Vec<String>, bool)>,
}

impl From<SessionFilter> for SessionQuery {
    fn from(filter: SessionFilter) -> Self {
        SessionQuery { filter, within: None }
    }
}

pub trait Storage: Send + Sync + std::fmt::Debug {
    /// Applies `writes` atomically; `Ok` means they are on disk.
    fn write(&self, writes: Vec<Write>) -> StoreFuture<'_, ()>;
    /// Queues `writes` (applied atomically, after every write queued before them) and
    /// returns once they are queued, waiting only for room, not for the disk. `done` runs
    /// exactly once, in the order of submission: with `Ok` once they are on disk, or
    /// with why they were refused. Writes behind a broken `fence` are refused, and a
    /// refusal breaks `fence`. No writes make a barrier: `Ok` once everything submitted
    /// before is done.
    fn submit<'a>(
        &'a self,
        writes: Vec<Write>,
        fence: &Fence,
        done: WriteDone,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
    /// One session.
    fn session(&self, key: &str) -> StoreFuture<'_, Option<SessionRow>>;
    /// Sessions matching `query` (its filter's `active` aside: the store does not know
    /// which sessions are resident; the query's `within` says), newest activity first,
    /// and the total.
    fn sessions(
        &self,
        query: SessionQuery,
        limit: u32,
        offset: u32,
    ) -> StoreFuture<'_, (Vec<SessionRow>, u64)>;
    /// Up to `limit` messages after the first `offset`, oldest first (a transcript read
    /// from its start).
    fn history_range(
        &self,
        key: &str,
        offset: u64,
        limit: u32,
    ) -> StoreFuture<'_, Vec<TranscriptMessage>>;
    /// Up to `limit` newest messages before `before` (a message id), oldest first.
    fn history(
        &self,
        key: &str,
        limit: u32,
        before: Option<String>,
    ) -> StoreFuture<'_, Vec<TranscriptMessage>> {
        let page = self.history_page(key, Page { limit, before, max_bytes: usize::MAX });
        Box::pin(async move { page.await.map(|p| p.messages) })
    }
    /// The newest messages before `page.before`, oldest first: up to `page.limit` of
    /// them, and no more than about `page.max_bytes` (at least one, whatever its size).
    fn history_page(&self, key: &str, page: Page) -> StoreFuture<'_, HistoryPage>;
    /// One run.
    fn run(&self, id: &str) -> StoreFuture<'_, Option<RunRow>>;
    /// Runs not finished (queued or running), oldest first, of one session or of all:
    /// work to resume after a restart.
    fn unfinished_runs(&self, session_key: Option<&str>) -> StoreFuture<'_, Vec<RunRow>>;
    /// Keep-alive sessions, to make resident at start.
    fn resident_sessions(&self) -> StoreFuture<'_, Vec<SessionRow>>;
    /// Sessions with a comms name, by name.
    fn peers(&self) -> StoreFuture<'_, Vec<SessionRow>>;
    /// One peer request.
    fn peer_request(&self, id: &str) -> StoreFuture<'_, Option<PeerRequestRow>>;
    /// The external event of session `key` stored with idempotency key `idempotency_key`
    /// (its metadata's `external_event.idempotency_key`), if any.
    fn external_event(
        &self,
        key: &str,
        idempotency_key: &str,
    ) -> StoreFuture<'_, Option<TranscriptMessage>>;
}
