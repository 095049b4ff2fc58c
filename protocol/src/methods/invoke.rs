//! Calls routed through the kernel (PROTOCOL.md §5): `tool.call` (app → kernel) and the
//! kernel → app requests `tool.invoke`, `channel.send`, `gateway.invoke`, `http.request`,
//! `provider.complete`.

use serde::{Deserialize, Serialize};

use super::{Ack, methods};
use crate::{Map, Value};

methods! {
    /// App → kernel: call a tool by name.
    ToolCall = "tool.call": ToolCallParams => ToolResult;
    /// Kernel → app: run one of your tools.
    ToolInvoke = "tool.invoke": ToolInvokeParams => ToolResult;
    /// Kernel → app: deliver a message through your channel.
    ChannelSend = "channel.send": ChannelSendParams => ChannelSendResult;
    /// Kernel → app (notification): more of a reply as it is produced, for a streaming
    /// channel.
    ChannelDelta = "channel.delta": ChannelDeltaParams => Ack;
    /// Kernel → app (notification): a reply a streaming channel may have had pieces of
    /// will not be sent.
    ChannelStreamEnd = "channel.stream_end": ChannelStreamEndParams => Ack;
    /// Kernel → app: one of your gateway methods was called.
    GatewayInvoke = "gateway.invoke": GatewayInvokeParams => Value;
    /// Kernel → app: a request to one of your HTTP routes.
    HttpRequest = "http.request": HttpRequestParams => HttpResponse;
    /// Kernel → app: complete a conversation.
    ProviderComplete = "provider.complete": ProviderCompleteParams => ProviderCompleteResult;
}

/// Params of `tool.call`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolCallParams {
    /// The tool's name.
    pub name: String,
    /// Its arguments.
    #[serde(default = "empty_object")]
    pub arguments: Value,
    /// The session the call belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
}

/// Params of `tool.invoke`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolInvokeParams {
    /// Unique per call.
    pub call_id: String,
    /// The tool's name.
    pub name: String,
    /// Its arguments.
    #[serde(default = "empty_object")]
    pub arguments: Value,
    /// The session the call belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
    /// The agent run the call belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// How long the kernel waits for the answer, in ms from when it sends the request:
    /// the call's deadline (the tool's `timeoutMs`, else `[ipc] call_timeout_ms`). An
    /// answer after it is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// The call's span, as a W3C `traceparent`, when the kernel exports traces: the
    /// app's spans for the call belong under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// Result of `tool.invoke` and `tool.call`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolResult {
    /// What the tool returned.
    pub content: Value,
    /// True when `content` describes a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
}

/// Params of `channel.send`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelSendParams {
    /// The channel.
    pub channel_id: String,
    /// The session the message belongs to.
    pub session_key: String,
    /// The account on the channel, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// The message.
    pub content: String,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map>,
}

/// Result of `channel.send`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelSendResult {
    /// The channel's id for the delivered message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

/// Params of `gateway.invoke`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayInvokeParams {
    /// The method called.
    pub method: String,
    /// Its params.
    #[serde(default = "empty_object")]
    pub params: Value,
    /// Who called: an app id, or a host surface.
    pub caller: String,
}

/// Params of `http.request`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpRequestParams {
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Query parameters.
    #[serde(default)]
    pub query: Map,
    /// Headers, lower-case names.
    #[serde(default)]
    pub headers: Map,
    /// Body as text, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// Result of `http.request`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpResponse {
    /// HTTP status code.
    pub status: u16,
    /// Response headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Map>,
    /// Body as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// One message of the conversation a provider completes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessage {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: String,
    /// An assistant's tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallRequest>>,
    /// For a `tool` message: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

/// A message role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The system prompt.
    System,
    /// The user.
    User,
    /// The model.
    Assistant,
    /// A tool result.
    Tool,
}

/// A tool call requested by a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallRequest {
    /// The call's id, echoed by the tool message.
    pub id: String,
    /// The tool.
    pub name: String,
    /// Its arguments.
    #[serde(default = "empty_object")]
    pub arguments: Value,
}

/// A tool as offered to a provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolSpec {
    /// The tool's name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// JSON Schema of its arguments.
    #[serde(default = "empty_object")]
    pub input_schema: Value,
}

/// Params of `provider.complete`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderCompleteParams {
    /// Which of the app's providers.
    pub provider_id: String,
    /// Which model.
    pub model: String,
    /// The conversation so far.
    pub messages: Vec<ChatMessage>,
    /// Tools the model may call.
    #[serde(default)]
    pub tools: Vec<ToolSpec>,
    /// The call's span, as a W3C `traceparent`, when the kernel exports traces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// Result of `provider.complete`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderCompleteResult {
    /// The model's answer.
    pub message: AssistantMessage,
    /// Token counts or similar, free-form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Map>,
}

/// The assistant message a provider returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssistantMessage {
    /// Text.
    #[serde(default)]
    pub content: String,
    /// Tool calls requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallRequest>>,
}

/// Params of `channel.delta`: a piece of a reply on its way to a streaming channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelDeltaParams {
    /// The channel.
    pub channel_id: String,
    /// The session the reply is for.
    pub session_key: String,
    /// The run producing it.
    pub run_id: String,
    /// Its place among the run's provider call's chunks, from 0.
    pub seq: u64,
    /// The piece.
    pub delta: ProviderChunk,
}

/// Params of `channel.stream_end`: no `channel.send` will follow the pieces of run
/// `runId`'s reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelStreamEndParams {
    /// The channel.
    pub channel_id: String,
    /// The session the reply was for.
    pub session_key: String,
    /// The run.
    pub run_id: String,
    /// Why no reply comes.
    pub reason: StreamEndReason,
}

/// Why a streamed reply is not sent (`channel.stream_end`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamEndReason {
    /// The run was cancelled.
    Cancelled,
    /// The run failed (e.g. its provider died mid-stream).
    Failed,
    /// A `message_sending` interceptor blocked the reply.
    Blocked,
}

/// A chunk of a streamed `provider.complete` answer (`{id, chunk}` frames before the
/// result): a piece of the message as the model produces it. The result still carries the
/// whole message, which is what the kernel stores and the hooks see.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProviderChunk {
    /// More of the message's text.
    TextDelta {
        /// The text, appended to what came before.
        text: String,
    },
    /// More of a tool call: the first delta of a call names it, later ones add to its
    /// arguments' JSON text.
    ToolCallDelta {
        /// Which call of the message, from 0.
        index: u32,
        /// The call's id, once known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The tool's name, once known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// A fragment of the arguments' JSON text, appended to what came before.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        arguments: Option<String>,
    },
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}
