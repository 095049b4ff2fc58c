//! The host contract's views of sessions and transcripts (Meerkat's shapes), for
//! `session/list`, `session/read` and `session/history`: timestamps of sessions in whole
//! seconds, of transcript rows as RFC 3339 strings, and transcript rows in the contract's
//! roles ([`history_row`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::invoke::Role;
use super::session::TranscriptMessage;
use crate::Value;

/// Params of `session/list`. Other fields are accepted and ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ListParams {
    /// Only sessions with every one of these labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// At most this many (default 100, at most 1000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// After skipping this many.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u32>,
}

/// Result of `session/list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionsPage {
    /// Newest activity first.
    pub sessions: Vec<SessionSummary>,
}

/// A session in `session/list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionSummary {
    /// The session.
    pub session_id: String,
    /// Creation time, Unix seconds.
    pub created_at: u64,
    /// Last activity, Unix seconds.
    pub updated_at: u64,
    /// Messages in its transcript.
    pub message_count: u64,
    /// Tokens its runs' provider calls reported, in all.
    pub total_tokens: u64,
    /// Whether it is resident (its actor running).
    pub is_active: bool,
    /// Its labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

/// Result of `session/read`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionDetails {
    /// The session.
    pub session_id: String,
    /// Creation time, Unix seconds.
    pub created_at: u64,
    /// Last activity, Unix seconds.
    pub updated_at: u64,
    /// Messages in its transcript.
    pub message_count: u64,
    /// Whether it is resident.
    pub is_active: bool,
    /// Its agent's model (`"default"` when the agent names none).
    pub model: String,
    /// Its agent's provider.
    pub provider: String,
    /// Its labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// The text of its last assistant message that has any, among its last
    /// [`LAST_TEXT_WITHIN`] messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_assistant_text: Option<String>,
}

/// How many of a session's last messages `session/read` looks through for its
/// `last_assistant_text`.
pub const LAST_TEXT_WITHIN: u32 = 50;

/// Params of `session/history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryParams {
    /// The session.
    pub session_id: String,
    /// Skip this many of the oldest messages (default 0).
    #[serde(default)]
    pub offset: Option<u64>,
    /// At most this many (default 100, at most 1000).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// Result of `session/history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryPage {
    /// The session.
    pub session_id: String,
    /// Messages in the whole transcript.
    pub message_count: u64,
    /// As asked.
    pub offset: u64,
    /// As applied.
    pub limit: u32,
    /// Whether messages remain after this page.
    pub has_more: bool,
    /// Oldest first ([`history_row`]).
    pub messages: Vec<Value>,
}

/// A stored message as a row of the contract's transcript, by role: `user` (`content`),
/// `block_assistant` (`blocks`: its text and its tool calls as `tool_use`, and a
/// `stop_reason`: `tool_use`, `cancelled` for what a cancelled run had said, else
/// `end_turn`), `tool_results` (`results: [{tool_use_id, content, is_error}]`) or
/// `system` (`content`). Every row also has `created_at` (RFC 3339), and Burrow's `id`,
/// `run_id` and `metadata` when it has them.
pub fn history_row(m: &TranscriptMessage) -> Value {
    let mut row = match m.role {
        Role::User => json!({ "role": "user", "content": m.content }),
        Role::System => json!({ "role": "system", "content": m.content }),
        Role::Tool => json!({
            "role": "tool_results",
            "results": [{ "tool_use_id": m.tool_call_id.clone().unwrap_or_default(), "content": m.content, "is_error": false }],
        }),
        Role::Assistant => {
            let mut blocks = Vec::new();
            if !m.content.is_empty() {
                blocks.push(json!({ "block_type": "text", "data": { "text": m.content } }));
            }
            let calls = m.tool_calls.iter().flatten();
            blocks.extend(calls.map(|c| {
                json!({ "block_type": "tool_use", "data": { "id": c.id, "name": c.name, "args": c.arguments } })
            }));
            let cut = m.metadata.as_ref().is_some_and(|md| md.contains_key("cutShort"));
            let stop = match (m.tool_calls.as_ref().is_some_and(|c| !c.is_empty()), cut) {
                (true, _) => "tool_use",
                (false, true) => "cancelled",
                (false, false) => "end_turn",
            };
            json!({ "role": "block_assistant", "blocks": blocks, "stop_reason": stop })
        }
    };
    if let Some(map) = row.as_object_mut() {
        map.insert("created_at".into(), rfc3339(m.created_at).into());
        map.insert("id".into(), m.id.clone().into());
        if let Some(run) = &m.run_id {
            map.insert("run_id".into(), run.clone().into());
        }
        if let Some(md) = &m.metadata {
            map.insert("metadata".into(), Value::Object(md.clone()));
        }
    }
    row
}

/// `ms` since the epoch as RFC 3339 UTC with milliseconds (`2026-12-07T04:30:00.000Z`).
pub fn rfc3339(ms: u64) -> String {
    let (secs, millis) = (ms / 1000, ms % 1000);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rest / 3600, rest % 3600 / 60, rest % 60);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{d:02}T{h:02}:{m:02}:{s:02}.{millis:03}Z")
}

/// Params of the host contract's `comms/send`. Fields of other kinds, or that Burrow does
/// not act on (`blocks`, `source`, `stream`, `allow_self_session`), are accepted and
/// ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendParams {
    /// The sending session (for `input`: the session itself).
    pub session_id: String,
    /// `input`, `peer_message`, `peer_request`, `peer_response` or `peer_lifecycle`.
    pub kind: String,
    /// The receiving peer's id (from `comms/peers`); not for `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The text (`input`, `peer_message`), or any JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// `peer_request`: what is asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    /// `peer_request`: its arguments; `peer_lifecycle`: about whom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
    /// `peer_response`: the `request_id` (= `interaction_id`) of the request answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<String>,
    /// `peer_response`: `accepted`, `completed` or `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// `peer_response`: the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// `peer_lifecycle`: `mob.peer_added` or `mob.peer_retired` (`mob.peer_unwired`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle_kind: Option<String>,
    /// `queue` (default) or `steer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handling_mode: Option<super::comms::HandlingMode>,
}

/// Params of the host contract's `session/external_event`. `blocks` and other fields
/// Burrow does not act on are accepted and ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExternalEventParams {
    /// The session it is for.
    pub session_id: String,
    /// Only `generic_json` is defined.
    pub kind: String,
    /// What happened, e.g. `deploy_complete`.
    pub event_type: String,
    /// Any JSON.
    #[serde(default)]
    pub payload: Value,
    /// A repeat with this key answers `deduplicated` (see Burrow's own
    /// [`super::comms::ExternalEventParams`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// Params of `tools/register`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolsRegisterParams {
    /// The tools; a name registered again on the same connection is replaced.
    pub tools: Vec<CallbackTool>,
}

/// One tool a host provides (`CallbackToolDefinition`). Other fields (`execution`) are
/// accepted and ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackTool {
    /// Its name, as the agent calls it (a valid Burrow tool name).
    pub name: String,
    /// What it does, for the model.
    #[serde(default)]
    pub description: String,
    /// The JSON Schema of its arguments (`{"type": "object"}` when absent).
    #[serde(default = "object_schema")]
    pub input_schema: Value,
}

fn object_schema() -> Value {
    json!({ "type": "object" })
}

/// Result of `tools/register`: how many tools the connection now provides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolsRegisterResult {
    /// The connection's tools after the call.
    pub registered: usize,
}

/// Params of the kernel's `tool/execute` request to a host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolExecuteParams {
    /// The call's id, unique per call.
    pub tool_use_id: String,
    /// The tool.
    pub name: String,
    /// Its arguments (a JSON object, as the agent gave them).
    pub arguments: Value,
    /// Present when an agent run's round asked for the call: what a tool whose effects
    /// must not repeat deduplicates on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedupe_key: Option<ToolCallDedupeKey>,
}

/// The dedupe key of a call a run's round asked for (`tool/execute`'s `dedupe_key`):
/// the same call dispatched again has the same key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallDedupeKey {
    /// The run.
    pub run_id: String,
    /// The round of the run (its provider call, from 0) that asked for the call.
    pub round: u32,
    /// The call's id, as the model gave it.
    pub call_id: String,
    /// A digest of the tool's name and arguments (lowercase hex SHA-256 of the name, a
    /// 0 byte and the arguments' JSON text with sorted keys): a provider may reuse a
    /// call id for another call.
    pub call_digest: String,
}

/// A host's answer to `tool/execute`: the content (text, or the contract's content
/// blocks) and whether it describes a failure. Omitted fields read as `""` and `false`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolExecuteResult {
    /// Text, or a list of content blocks (`{"type": "text", "text"}`, ...).
    #[serde(default = "empty_text")]
    pub content: Value,
    /// True when `content` describes a failure.
    #[serde(default)]
    pub is_error: bool,
}

fn empty_text() -> Value {
    Value::String(String::new())
}

impl ToolExecuteResult {
    /// Its content as the text a transcript keeps: a string as is, a list of text blocks
    /// joined by newlines; anything else as JSON text.
    pub fn text(&self) -> String {
        match &self.content {
            Value::String(text) => text.clone(),
            Value::Array(blocks) => {
                let texts: Option<Vec<&str>> = blocks
                    .iter()
                    .map(|b| match b.get("type").and_then(Value::as_str) {
                        Some("text") => b.get("text").and_then(Value::as_str),
                        _ => None,
                    })
                    .collect();
                match texts {
                    Some(texts) => texts.join("\n"),
                    None => self.content.to_string(),
                }
            }
            other => other.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::invoke::ToolCallRequest;

    #[test]
    fn a_tool_answer_reads_as_text() {
        let answer = |v: Value| serde_json::from_value::<ToolExecuteResult>(v).unwrap();
        assert_eq!(answer(json!({})), ToolExecuteResult { content: json!(""), is_error: false });
        assert_eq!(answer(json!({"content": "hi", "is_error": true})).text(), "hi");
        let blocks =
            json!({"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]});
        assert_eq!(answer(blocks).text(), "a\nb");
        let image =
            json!({"content": [{"type": "image", "data": "AA==", "mime_type": "image/png"}]});
        assert!(answer(image).text().contains("image/png"), "other blocks stay as JSON");
        let tool: CallbackTool =
            serde_json::from_value(json!({"name": "t", "execution": {"mode": "fast"}})).unwrap();
        assert_eq!((tool.description.as_str(), tool.input_schema), ("", json!({"type": "object"})));
    }

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_796_617_800_000), "2026-12-07T04:30:00.000Z");
    }

    fn message(role: Role, content: &str) -> TranscriptMessage {
        TranscriptMessage {
            id: "m1".into(),
            role,
            content: content.into(),
            created_at: 0,
            metadata: None,
            tool_calls: None,
            tool_call_id: None,
            run_id: None,
        }
    }

    #[test]
    fn rows_take_the_contracts_roles() {
        let user = history_row(&message(Role::User, "hi"));
        assert_eq!((user["role"].as_str(), user["content"].as_str()), (Some("user"), Some("hi")));
        assert_eq!(user["created_at"], "1970-01-01T00:00:00.000Z");
        let mut asked = message(Role::Assistant, "");
        let call =
            ToolCallRequest { id: "c1".into(), name: "t".into(), arguments: json!({"a": 1}) };
        asked.tool_calls = Some(vec![call]);
        let asked = history_row(&asked);
        assert_eq!(asked["stop_reason"], "tool_use");
        assert_eq!(
            asked["blocks"],
            json!([{"block_type": "tool_use", "data": {"id": "c1", "name": "t", "args": {"a": 1}}}])
        );
        let mut result = message(Role::Tool, "42");
        result.tool_call_id = Some("c1".into());
        let result = history_row(&result);
        assert_eq!(
            result["results"][0],
            json!({"tool_use_id": "c1", "content": "42", "is_error": false})
        );
        let mut cut = message(Role::Assistant, "Once");
        cut.metadata = Some(crate::Map::from_iter([("cutShort".into(), json!("cancelled"))]));
        assert_eq!(history_row(&cut)["stop_reason"], "cancelled");
        assert_eq!(history_row(&message(Role::Assistant, "done"))["stop_reason"], "end_turn");
    }
}
