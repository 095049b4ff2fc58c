//! Methods of the host surfaces only (JSON-RPC, and the REST routes over them), in the
//! host shapes (snake_case): reading sessions and transcripts, waiting for a run, and
//! authenticating a JSON-RPC connection. The host methods that apps may call too
//! (`session/create`, `comms/send`, ...) are in [`super::comms`], under their IPC names;
//! the method table gives their host names.

use serde::{Deserialize, Serialize};

use crate::Value;

use super::contract::{
    ExternalEventParams, HistoryPage, HistoryParams, ListParams, SendParams, SessionDetails,
    SessionsPage, ToolExecuteParams, ToolExecuteResult, ToolsRegisterParams, ToolsRegisterResult,
};
use super::session::RunStatus;
use super::{Ack, Empty, methods};

methods! {
    /// The handshake of Meerkat's host contract: who answers, which contract version,
    /// which methods.
    Initialize = "initialize": Empty => InitializeResult;
    /// What this runtime can do, as Meerkat's capability entries.
    CapabilitiesGet = "capabilities/get": Empty => CapabilitiesResult;
    /// A new session and, unless deferred, its first turn ([`RunResult`], or
    /// [`DeferredCreated`]).
    SessionCreateTurn = "session/create": CreateParams => Value;
    /// Another turn of a session.
    TurnStart = "turn/start": TurnParams => RunResult;
    /// Stops a session's turn.
    TurnInterrupt = "turn/interrupt": SessionRef => Value;
    /// Subscribes to a session's events on this connection.
    StreamOpen = "session/stream_open": SessionRef => Value;
    /// Ends a subscription.
    StreamClose = "session/stream_close": StreamRef => Value;
    /// Sessions, newest activity first.
    HostSessionList = "session/list": ListParams => SessionsPage;
    /// One session.
    HostSessionRead = "session/read": SessionRef => SessionDetails;
    /// A page of a session's transcript, from its start.
    HostSessionHistory = "session/history": HistoryParams => HistoryPage;
    /// Archives a session: left out of lists, no longer resident.
    SessionArchive = "session/archive": SessionRef => Value;
    /// Comms in the host contract's shapes (apps use `comms.send`).
    HostCommsSend = "comms/send": SendParams => Value;
    /// The peers a session sees, as the contract's directory entries.
    HostCommsPeers = "comms/peers": SessionRef => Value;
    /// A durable event from outside, in the contract's shapes.
    HostExternalEvent = "session/external_event": ExternalEventParams => Value;
    /// Tools the host provides on its connection, offered to the sessions it drives
    /// there (a name registered again is replaced); gone when the connection ends.
    ToolsRegister = "tools/register": ToolsRegisterParams => ToolsRegisterResult;
    /// The kernel asks the host to run one of the tools it registered.
    ToolExecute = "tool/execute": ToolExecuteParams => ToolExecuteResult;
    /// A run's status, once it has ended or after `timeout_ms`.
    RunWait = "run/wait": RunWaitParams => RunWaitResult;
    /// Recent runs' steps (one run's, or a session's runs'): their provider calls, tool
    /// calls and interceptor decisions, with their times (kept in memory for the last
    /// runs).
    RunTimeline = "run/timeline": RunTimelineParams => RunTimelineResult;
    /// Authenticates a JSON-RPC connection over TCP (the first request when a token is
    /// required).
    Authenticate = "rpc/authenticate": AuthenticateParams => Ack;
}

/// `{session_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRef {
    /// The session.
    pub session_id: String,
}

/// `{stream_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamRef {
    /// The subscription.
    pub stream_id: String,
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

/// Params of `run/timeline`: a run, or a session (its runs kept, newest first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunTimelineParams {
    /// The run.
    #[serde(default)]
    pub run_id: Option<String>,
    /// The session.
    #[serde(default)]
    pub session_id: Option<String>,
}

/// One step of a run: a provider call, a tool call, an interceptor's decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStep {
    /// `provider`, `tool` or `intercept`.
    pub kind: String,
    /// The provider, the tool, or the interceptor's `event/app`.
    pub name: String,
    /// When it began, ms since the epoch.
    pub started_ms: u64,
    /// How long it took, µs.
    pub duration_us: u64,
    /// `ok`, an error's code (`is_error` for a tool's failure result), or an
    /// interceptor's decision (`continue`, `modify`, `block`, `fail_open`, `fail_closed`).
    pub status: String,
    /// Why, when it failed or blocked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One run's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSteps {
    /// The run.
    pub run_id: String,
    /// Its session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Its steps, in the order they ended.
    pub steps: Vec<RunStep>,
    /// Steps past the bound, counted but not kept.
    pub dropped: u64,
}

/// Result of `run/timeline`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunTimelineResult {
    /// The runs, newest first (none kept: empty).
    pub runs: Vec<RunSteps>,
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

/// The version of Meerkat's host contract Burrow speaks: hosts built with Meerkat's SDK
/// accept a server of the same `0.x` minor version.
pub const CONTRACT_VERSION: &str = "0.9.6";

/// Result of `initialize`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitializeResult {
    /// Who answers.
    pub server_info: ServerInfo,
    /// [`CONTRACT_VERSION`].
    pub contract_version: String,
    /// Every host method, by its JSON-RPC name.
    pub methods: Vec<String>,
}

/// `server_info` of `initialize`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// `burrow`.
    pub name: String,
    /// The kernel's version.
    pub version: String,
}

/// Result of `capabilities/get`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapabilitiesResult {
    /// [`CONTRACT_VERSION`].
    pub contract_version: String,
    /// What this runtime can do.
    pub capabilities: Vec<CapabilityEntry>,
}

/// One capability of `capabilities/get`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapabilityEntry {
    /// Its id (`sessions`, `streaming`, `comms`, ...).
    pub id: String,
    /// What it is, for humans.
    pub description: String,
    /// `"Available"`, or an object naming why not (`{"NotSupportedByProtocol": {...}}`).
    pub status: Value,
}

/// Params of `session/create` in the host contract. Fields of the contract Burrow does
/// not act on (`model`, `provider`, `system_prompt`, `max_tokens`, `enable_*`, ...) are
/// accepted and ignored, so none is refused as unknown.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateParams {
    /// The first turn's input: a string, or content blocks (their text is used).
    pub prompt: Value,
    /// `"deferred"`: create the session without running a first turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_turn: Option<String>,
    /// Stay resident after the first turn, woken by comms and external events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<bool>,
    /// Makes the session a peer with this display name (1–64 of `[A-Za-z0-9._-]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comms_name: Option<String>,
    /// Labels to find the session by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    /// `false`: send no `session/event` notifications for the turn (default: send them
    /// on a connection that takes notifications).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_events: Option<bool>,
}

/// Params of `turn/start`: another turn of a session. As for [`CreateParams`], the
/// contract's fields Burrow does not act on are accepted and ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnParams {
    /// The session.
    pub session_id: String,
    /// The turn's input: a string, or content blocks (their text is used).
    pub prompt: Value,
    /// `false`: no `session/event` notifications for the turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_events: Option<bool>,
}

/// The result of a turn (`session/create`, `turn/start`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// The session.
    pub session_id: String,
    /// The agent's final answer (`""` when none).
    pub text: String,
    /// Provider calls the turn made.
    pub turns: u64,
    /// Tool calls the turn made.
    pub tool_calls: u64,
    /// Tokens the turn's provider calls reported.
    pub usage: Usage,
}

/// Token counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
}

/// The result of a deferred `session/create`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeferredCreated {
    /// The new session.
    pub session_id: String,
}
