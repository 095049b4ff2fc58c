//! Comms and host methods: keep-alive sessions, typed comms between peers, durable
//! external events. Hosts call them over JSON-RPC (`session/create`, `comms/send`, ...)
//! and REST; apps call the same operations over IPC (`session.create`, `comms.send`,
//! `comms.peers`, `session.externalEvent`, or any host method through `host.call`).
//!
//! Unlike the rest of the protocol these shapes are **snake_case** on every surface, as
//! the host guide spells them, so one payload works over JSON-RPC, REST and IPC.

use serde::{Deserialize, Serialize};

use super::methods;
use super::session::RunStatus;
use crate::Value;

methods! {
    /// Create a session and run its first turn.
    SessionCreate = "session.create": SessionCreateParams => SessionCreateResult;
    /// A typed comms command.
    CommsSend = "comms.send": CommsSendParams => CommsReceipt;
    /// The peers a session can see: on this kernel and on trusted kernels.
    CommsPeers = "comms.peers": CommsPeersParams => CommsPeersResult;
    /// Append a durable external event to a session and wake it.
    SessionExternalEvent = "session.externalEvent": ExternalEventParams => ExternalEventReceipt;
    /// Any host method by its JSON-RPC name (what `burrow rpc` relays).
    HostCall = "host.call": HostCallParams => Value;
}

/// Longest `comms_name`.
pub const MAX_COMMS_NAME: usize = 64;
/// Longest `event_type`.
pub const MAX_EVENT_TYPE: usize = 128;

/// Params of `session/create`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionCreateParams {
    /// The first turn's input.
    pub prompt: String,
    /// Stay resident after the first turn, woken by comms and external events.
    #[serde(default)]
    pub keep_alive: bool,
    /// Makes the session a peer with this display name (1–64 of `[A-Za-z0-9._-]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comms_name: Option<String>,
    /// The agent (`[agents.<id>]`), default `main`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Wait for the first turn to end before answering (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<bool>,
    /// How long to wait, ms (default 60000, at most 600000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// Result of `session/create`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionCreateResult {
    /// The new session's key (with a comms name, also its peer id).
    pub session_id: String,
    /// The first turn.
    pub run_id: String,
    /// Where the first turn stands (terminal when waited for).
    pub status: RunStatus,
    /// The first turn's output, when completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// As asked.
    pub keep_alive: bool,
    /// As asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comms_name: Option<String>,
}

/// What a comms command is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommsKind {
    /// Local input to the session itself (no `to`).
    Input,
    /// A message to a peer.
    PeerMessage,
    /// A request to a peer, answered by a `peer_response`.
    PeerRequest,
    /// The answer to a `peer_request` (`in_reply_to`).
    PeerResponse,
    /// Lifecycle notification: the sender now works with the peer.
    PeerAdded,
    /// Lifecycle notification: the sender no longer works with the peer.
    PeerRetired,
}

impl CommsKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Input => "input",
            Self::PeerMessage => "peer_message",
            Self::PeerRequest => "peer_request",
            Self::PeerResponse => "peer_response",
            Self::PeerAdded => "peer_added",
            Self::PeerRetired => "peer_retired",
        }
    }

    /// Whether it starts a turn of the receiving session (lifecycle notices only inform).
    pub fn wakes(self) -> bool {
        !matches!(self, Self::PeerAdded | Self::PeerRetired)
    }
}

/// When a message is handled relative to a running turn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandlingMode {
    /// After the current turn, in order (default).
    #[default]
    Queue,
    /// Injected at the next turn boundary of the running turn.
    Steer,
}

/// Params of `comms/send`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommsSendParams {
    /// The sending session (for `input`: the session itself).
    pub session_id: String,
    /// What it is.
    pub kind: CommsKind,
    /// The canonical peer id (from `comms/peers`); required except for `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The content: text, or any JSON (stored as its JSON text).
    #[serde(default)]
    pub body: Value,
    /// `queue` (default) or `steer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handling_mode: Option<HandlingMode>,
    /// For `peer_response`: the `request_id` it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<String>,
}

/// What happened to a comms command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommsReceipt {
    /// `accepted` (input taken by the session itself) or `delivered` (stored in the
    /// receiving session's transcript, on this kernel or, acknowledged, on another).
    pub status: String,
    /// The stored message's id.
    pub message_id: String,
    /// The kind sent.
    pub kind: CommsKind,
    /// The receiving session (peer id).
    pub to: String,
    /// How it will be handled.
    pub handling_mode: HandlingMode,
    /// For a `peer_request`: the id its `peer_response` must name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// For a `peer_response`: the request it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<String>,
    /// The run that will answer it (on this kernel), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Whether it waits behind earlier work (false when steered into a running turn).
    pub queued: bool,
    /// The receiving kernel, when it is another one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_kernel: Option<String>,
}

/// Params of `comms/peers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommsPeersParams {
    /// The asking session.
    pub session_id: String,
}

/// One visible peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Canonical id: use it as `to`.
    pub peer_id: String,
    /// Display name (not unique).
    pub name: String,
    /// `local` (this kernel) or `remote`.
    pub location: String,
    /// For a remote peer: its kernel's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_id: Option<String>,
    /// For a remote peer: its kernel's display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_name: Option<String>,
    /// Whether it stays resident.
    pub keep_alive: bool,
}

/// Result of `comms/peers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommsPeersResult {
    /// The peers, local first, then by name.
    pub peers: Vec<PeerInfo>,
    /// Trusted kernels that could not be asked just now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreachable: Vec<String>,
}

/// Params of `session/external_event`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalEventParams {
    /// The session it is for.
    pub session_id: String,
    /// Only `generic_json` is defined.
    pub kind: String,
    /// What happened, e.g. `deploy_complete` (1–128 chars).
    pub event_type: String,
    /// Any JSON.
    #[serde(default)]
    pub payload: Value,
    /// Makes a retry safe: an event of the session stored before with this key (1–256
    /// chars) is not stored again (`status: "deduplicated"`, its id as `event_id`); with
    /// another type or payload it is `CONFLICT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// Result of `session/external_event`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExternalEventReceipt {
    /// `accepted`: it is stored durably; `deduplicated`: one with its idempotency key was
    /// stored before (nothing is stored, no run is woken).
    pub status: String,
    /// The stored event's id.
    pub event_id: String,
    /// The run it wakes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Whether it waits behind earlier work.
    pub queued: bool,
}

/// Params of `host.call`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostCallParams {
    /// A host method's JSON-RPC name, e.g. `session/create`.
    pub method: String,
    /// Its params.
    #[serde(default)]
    pub params: Value,
}
