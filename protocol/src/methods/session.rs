//! Sessions, messages and agent runs (PROTOCOL.md §8): `session.get`, `session.list`,
//! `session.history`, `message.dispatch`, `agent.queue`, `agent.wait`.

use serde::{Deserialize, Serialize};

use super::invoke::{Role, ToolCallRequest};
use super::methods;
use crate::Map;

/// Most sessions `session.list` returns at once.
pub const MAX_LIST_LIMIT: u32 = 1000;
/// Most messages `session.history` returns at once.
pub const MAX_HISTORY_LIMIT: u32 = 1000;

methods! {
    /// One session by key.
    SessionGet = "session.get": SessionGetParams => SessionGetResult;
    /// Sessions, newest activity first.
    SessionList = "session.list": SessionListParams => SessionListResult;
    /// A session's transcript, oldest first.
    SessionHistory = "session.history": SessionHistoryParams => SessionHistoryResult;
    /// An inbound message from a channel.
    MessageDispatch = "message.dispatch": DispatchParams => DispatchResult;
    /// Queue an agent run.
    AgentQueue = "agent.queue": AgentQueueParams => AgentQueueResult;
    /// Wait for a run to finish.
    AgentWait = "agent.wait": AgentWaitParams => AgentWaitResult;
    /// Cancel a queued or running run.
    AgentCancel = "agent.cancel": AgentCancelParams => crate::methods::Ack;
}

/// Params of `session.get`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionGetParams {
    /// The session key (1–256 chars).
    pub key: String,
}

/// Result of `session.get`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionGetResult {
    /// The session, or null.
    pub session: Option<SessionInfo>,
}

/// A session as the methods report it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    /// Its key.
    pub key: String,
    /// Its agent.
    pub agent_id: String,
    /// The channel replies go through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<String>,
    /// The account on that channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// Creation time, ms since the epoch.
    pub created_at: u64,
    /// Last activity, ms since the epoch.
    pub last_active_at: u64,
    /// Messages in its transcript.
    pub message_count: u64,
    /// Whether its actor is resident.
    pub active: bool,
    /// Whether it stays resident (a keep-alive session).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_alive: bool,
    /// Its display name as a comms peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comms_name: Option<String>,
}

/// Params of `session.list`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionListParams {
    /// Filters; all must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<SessionFilter>,
    /// Default 50, at most 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// How many to skip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u32>,
}

/// Filters of `session.list`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionFilter {
    /// Only this agent's sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Only this channel's sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<String>,
    /// Only this account's sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// Only active (or inactive) sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// Only keep-alive sessions (or only the others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<bool>,
    /// Only sessions with every one of these labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
}

/// Result of `session.list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionListResult {
    /// The page.
    pub sessions: Vec<SessionInfo>,
    /// How many match in all.
    pub total: u64,
}

/// Params of `session.history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionHistoryParams {
    /// The session key.
    pub key: String,
    /// Default 100, at most 1000; the newest ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// A message id: page back from before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
}

/// Result of `session.history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionHistoryResult {
    /// Oldest first.
    pub messages: Vec<TranscriptMessage>,
    /// `true` when the page ended before `limit` because it reached the kernel's size
    /// bound (older messages may remain: ask again with `before`); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
}

/// One stored message of a transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TranscriptMessage {
    /// Its id.
    pub id: String,
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: String,
    /// When, ms since the epoch.
    pub created_at: u64,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map>,
    /// An assistant's tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallRequest>>,
    /// For a `tool` message: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// For an input: the run that answers it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

/// Params of `message.dispatch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DispatchParams {
    /// The session key.
    pub session_key: String,
    /// The message text.
    pub content: String,
    /// `agentId`, `channelId`, `accountId` and anything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map>,
}

/// Result of `message.dispatch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DispatchResult {
    /// Id of this dispatch.
    pub dispatch_id: String,
    /// True when it waits behind earlier work; false when blocked (with `reason`).
    pub queued: bool,
    /// The run that will answer it, if one was started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Why it was blocked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Params of `agent.queue`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentQueueParams {
    /// The session key.
    pub session_key: String,
    /// The run's input, stored as a `user` message.
    pub text: String,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map>,
}

/// Result of `agent.queue`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentQueueResult {
    /// The run.
    pub run_id: String,
    /// True when it waits behind earlier work.
    pub queued: bool,
}

/// Params of `agent.cancel`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentCancelParams {
    /// The run.
    pub run_id: String,
}

/// Params of `agent.wait`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentWaitParams {
    /// The run.
    pub run_id: String,
    /// How long to wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// Result of `agent.wait`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentWaitResult {
    /// The run.
    pub run_id: String,
    /// Where it stands.
    pub status: RunStatus,
    /// The last assistant message, when completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Status of an agent run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Waiting behind earlier work.
    Queued,
    /// In progress.
    Running,
    /// Done.
    Completed,
    /// Ended with an error.
    Failed,
    /// Cancelled.
    Cancelled,
}

impl RunStatus {
    /// Whether the run has ended (completed, failed or cancelled).
    pub fn is_terminal(self) -> bool {
        matches!(self, RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled)
    }
}
