//! Methods of the host surfaces only (JSON-RPC, and the REST routes over them), in the
//! host shapes (snake_case): reading sessions and transcripts, waiting for a run, and
//! authenticating a JSON-RPC connection. The host methods that apps may call too
//! (`session/create`, `comms/send`, ...) are in [`super::comms`], under their IPC names;
//! the method table gives their host names.

use serde::{Deserialize, Serialize};

use super::comms::{HostMessage, HostSession};
use super::session::RunStatus;
use super::{Ack, methods};

methods! {
    /// Sessions, newest activity first.
    HostSessionList = "session/list": HostListParams => HostSessions;
    /// One session.
    HostSessionRead = "session/read": SessionRef => HostSession;
    /// A page of a session's transcript.
    HostSessionHistory = "session/history": HostHistoryParams => HostHistory;
    /// A run's status, once it has ended or after `timeout_ms`.
    RunWait = "run/wait": RunWaitParams => RunWaitResult;
    /// Authenticates a JSON-RPC connection over TCP (the first request when a token is
    /// required).
    Authenticate = "rpc/authenticate": AuthenticateParams => Ack;
}

/// Params of `session/list`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostListParams {
    /// At most this many (default 50).
    pub limit: Option<u32>,
    /// After skipping this many.
    pub offset: Option<u32>,
    /// Only this agent's.
    pub agent_id: Option<String>,
}

/// Result of `session/list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostSessions {
    /// The page.
    pub sessions: Vec<HostSession>,
    /// How many match in all.
    pub total: u64,
}

/// `{session_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRef {
    /// The session.
    pub session_id: String,
}

/// Params of `session/history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostHistoryParams {
    /// The session.
    pub session_id: String,
    /// At most this many messages (default 100).
    #[serde(default)]
    pub limit: Option<u32>,
    /// Those before the message with this id.
    #[serde(default)]
    pub before: Option<String>,
}

/// Result of `session/history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostHistory {
    /// The session.
    pub session_id: String,
    /// Oldest first.
    pub messages: Vec<HostMessage>,
    /// True when the page stopped short of `limit` to stay within a frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
}

/// Params of `run/wait`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunWaitParams {
    /// The run.
    pub run_id: String,
    /// How long to wait for its end (default 30 000, at most 600 000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// Result of `run/wait`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunWaitResult {
    /// The run.
    pub run_id: String,
    /// Its status now.
    pub status: RunStatus,
    /// Its reply, once completed.
    pub output: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

/// Params of `rpc/authenticate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthenticateParams {
    /// A host token (`burrow token create`).
    pub token: String,
}
