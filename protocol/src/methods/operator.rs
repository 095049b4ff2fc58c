//! Operator methods (Burrow additions), allowed before `app.register` like `kernel.info`:
//! the socket admits only its owner. What is registered and hooked
//! (`kernel.capabilities`, `kernel.hooks`), the managed apps (`supervisor.*`), the
//! trusted kernels (`peers.*`, what `burrow kernels` calls: the wire names are kept for
//! compatibility, though these deal with kernels, not with peers), and a session's events
//! as a stream (`session.events`). `kernel.config` (the configuration, redacted) is on
//! the host surfaces only.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::capability::{CapabilityType, FailMode};
use super::invoke::{Role, ToolCallRequest};
use super::session::RunStatus;
use super::{Ack, Empty, methods};
use crate::{Map, Value};

methods! {
    /// Granted capabilities, optionally of one type.
    KernelCapabilities = "kernel.capabilities": KernelCapabilitiesParams => KernelCapabilitiesResult;
    /// Subscribers (with their dropped-event counts) and interceptors.
    KernelHooks = "kernel.hooks": Empty => KernelHooksResult;
    /// Start a managed app.
    SupervisorStart = "supervisor.start": AppIdParams => Ack;
    /// Stop a managed app (it stays stopped until started).
    SupervisorStop = "supervisor.stop": AppIdParams => Ack;
    /// Restart a managed app.
    SupervisorRestart = "supervisor.restart": AppIdParams => Ack;
    /// A managed app's captured log: a stream of [`LogLine`] chunks (the last `lines`
    /// lines, then new ones while following), ended by a [`StreamEnd`].
    SupervisorLogs = "supervisor.logs": LogsParams => StreamEnd;
    /// A managed app's captured log's last lines, answered at once (what a page polls;
    /// `supervisor.logs` without `follow`, as one answer).
    SupervisorTail = "supervisor.tail": TailParams => TailResult;
    /// The configuration in force (defaults included), secrets redacted, and the file it
    /// was read from: for operators on the host surfaces only.
    KernelConfig = "kernel.config": Empty => KernelConfigResult;
    /// Trust a kernel by its binding (`burrow kernels trust`; the wire name is kept).
    PeersTrust = "peers.trust": PeersTrustParams => PeersTrustResult;
    /// This kernel's binding, the trusted kernels, and the kernel channel's refusal counts
    /// (`burrow kernels list`; the wire name is kept).
    PeersList = "peers.list": Empty => PeersListResult;
    /// Stop trusting a kernel (`burrow kernels revoke`; the wire name is kept).
    PeersRevoke = "peers.revoke": PeersRevokeParams => Ack;
    /// A session's events from now on, as chunks (each `{type, ...}`), until `$/cancel`
    /// or the follower lags (a `lagged` chunk, then `{ended: "lagged"}`).
    SessionEvents = "session.events": SessionEventsParams => StreamEnd;
}

/// Params of `kernel.capabilities`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KernelCapabilitiesParams {
    /// Only those of this type.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<CapabilityType>,
}

/// One granted capability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapabilitySummary {
    /// Its id.
    pub capability_id: String,
    /// The app holding it.
    pub app_id: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: CapabilityType,
    /// Its config, as registered.
    pub config: Value,
}

/// Result of `kernel.capabilities`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelCapabilitiesResult {
    /// App by app, in registration order.
    pub capabilities: Vec<CapabilitySummary>,
}

/// One subscriber.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriberSummary {
    /// The app.
    pub app_id: String,
    /// Its subscriptions.
    pub subscriptions: Vec<String>,
    /// Events dropped because its queue was full.
    pub dropped: u64,
}

/// One interceptor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InterceptorSummary {
    /// Its capability.
    pub capability_id: String,
    /// The app.
    pub app_id: String,
    /// The event it holds.
    pub event: String,
    /// Lower runs first.
    pub priority: i64,
    /// Its own deadline, if it set one.
    pub timeout_ms: Option<u64>,
    /// What its silence means.
    pub fail_mode: FailMode,
}

/// Result of `kernel.hooks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelHooksResult {
    /// By app id.
    pub subscribers: Vec<SubscriberSummary>,
    /// App by app, in registration order.
    pub interceptors: Vec<InterceptorSummary>,
}

/// Params naming one app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppIdParams {
    /// The app.
    pub app_id: String,
}

/// Params of `supervisor.logs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogsParams {
    /// The app.
    pub app_id: String,
    /// How many of the last lines first (default 100, at most 10 000).
    #[serde(default = "default_lines")]
    pub lines: usize,
    /// Then new lines as they come, until `$/cancel`.
    #[serde(default)]
    pub follow: bool,
}

fn default_lines() -> usize {
    100
}

/// Params of `supervisor.tail`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TailParams {
    /// The app.
    pub app_id: String,
    /// How many of the last lines (default 100, at most 10 000).
    #[serde(default = "default_lines")]
    pub lines: usize,
}

/// Result of `supervisor.tail`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TailResult {
    /// The last lines, oldest first, without their newlines.
    pub lines: Vec<String>,
}

/// Result of `kernel.config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelConfigResult {
    /// The configuration file the kernel read, if any (else only the built-in defaults).
    pub file: Option<String>,
    /// Every value in force, defaults included, each secret replaced by `"[redacted]"`.
    pub config: Value,
    /// The paths of the values redacted (`apps.openai.run.env.OPENAI_API_KEY`).
    pub redacted: Vec<String>,
}

/// One chunk of `supervisor.logs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// The line, without its newline.
    pub line: String,
}

/// How a stream ended: `eof`, `cancelled`, `closed`, `lagged`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamEnd {
    /// Why.
    pub ended: String,
}

/// Params of `peers.trust`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeersTrustParams {
    /// The kernel's binding (the file its `burrow kernel --comms-binding-out` wrote).
    pub binding: Value,
}

/// Result of `peers.trust`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeersTrustResult {
    /// The kernel trusted.
    pub kernel_id: String,
    /// Its name.
    pub name: String,
    /// False when it was trusted already (its binding is replaced).
    pub added: bool,
}

/// Result of `peers.list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeersListResult {
    /// This kernel's own binding, when it listens for other kernels
    /// (`--comms-listen-tcp`).
    #[serde(rename = "self")]
    pub own: Option<Value>,
    /// The trusted kernels' bindings.
    pub trusted: Vec<Value>,
    /// Envelopes refused since start, by reason.
    pub refusals: BTreeMap<String, u64>,
    /// When each trusted kernel was last heard from since start (ms since the epoch), by
    /// kernel id: an envelope of its accepted, or a signed ack of its to one sent. A
    /// kernel not heard from is absent.
    #[serde(default)]
    pub last_contact: BTreeMap<String, u64>,
}

/// Params of `peers.revoke`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeersRevokeParams {
    /// The kernel.
    pub kernel_id: String,
}

/// One event of a followed session (a `session.events` chunk, an SSE event's data), by
/// its `type`. Events of a type this version does not know are [`SessionEvent::Other`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SessionEvent {
    /// A message was stored.
    Message {
        /// The session.
        session_id: String,
        /// The message's id.
        id: String,
        /// Who said it.
        role: Role,
        /// What was said.
        content: String,
        /// When, ms since the epoch.
        created_at: u64,
        /// Its metadata.
        #[serde(default)]
        metadata: Option<Map>,
        /// An assistant's tool calls.
        #[serde(default)]
        tool_calls: Option<Vec<ToolCallRequest>>,
        /// For a `tool` message: the call it answers.
        #[serde(default)]
        tool_call_id: Option<String>,
        /// For an input: the run that answers it.
        #[serde(default)]
        run_id: Option<String>,
    },
    /// A run changed status.
    Run {
        /// The session.
        session_id: String,
        /// The run.
        run_id: String,
        /// Its new status.
        status: RunStatus,
        /// Its reply, once completed.
        #[serde(default)]
        output: Option<String>,
        /// Why it failed.
        #[serde(default)]
        error: Option<String>,
    },
    /// More of a run's answer's text, as the model produces it.
    TextDelta {
        /// The session.
        session_id: String,
        /// The run.
        run_id: String,
        /// Its place among its provider call's chunks, from 0.
        seq: u64,
        /// The text, appended to what came before.
        text: String,
    },
    /// More of one of a run's answer's tool calls.
    ToolCallDelta {
        /// The session.
        session_id: String,
        /// The run.
        run_id: String,
        /// Its place among its provider call's chunks, from 0.
        seq: u64,
        /// Which call of the message, from 0.
        index: u32,
        /// The call's id, once known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The tool's name, once known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// A fragment of the arguments' JSON text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        arguments: Option<String>,
    },
    /// The follower fell too far behind: the last event before its stream ends.
    Lagged {
        /// The session.
        session_id: String,
    },
    /// An event of a type this version does not know.
    #[serde(other)]
    Other,
}

/// Params of `session.events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionEventsParams {
    /// The session.
    pub session_id: String,
    /// Follow the key even when no session has it yet: its events start with its
    /// creation (otherwise such a key is `NOT_FOUND`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_new: bool,
}
