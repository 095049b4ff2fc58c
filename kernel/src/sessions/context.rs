//! A run's context: the transcript as the provider sees it.
//!
//! The transcript is stored in arrival order, which is not always the order a model can
//! read: a message that arrived while a tool ran sits between the tool call and its result,
//! and the inputs of a queued run may have arrived before the previous run's replies.
//! [`build`] keeps each assistant tool call next to its results and puts the run's own
//! inputs last; [`render`] shows comms and external events with who sent them.

use std::collections::HashSet;

use burrow_protocol::Map;
use burrow_protocol::methods::invoke::{ChatMessage, Role};
use burrow_protocol::methods::session::TranscriptMessage;

/// What a run sends its model, built from the transcript.
#[derive(Debug)]
pub struct Context {
    /// The messages, the run's input last.
    pub messages: Vec<ChatMessage>,
    /// The run's input texts (already at the end of `messages`).
    pub input: Vec<String>,
    /// The ids of the stored messages used (a steered message already read from the
    /// transcript is not added twice).
    pub seen: HashSet<String>,
}

/// The context for `run_id` from `history` (oldest first).
pub fn build(history: Vec<TranscriptMessage>, run_id: &str) -> Context {
    let seen = history.iter().map(|m| m.id.clone()).collect();
    let (messages, input) = build_inner(history, run_id);
    Context { messages, input, seen }
}

fn build_inner(history: Vec<TranscriptMessage>, run_id: &str) -> (Vec<ChatMessage>, Vec<String>) {
    let mine = |m: &TranscriptMessage| m.role == Role::User && m.run_id.as_deref() == Some(run_id);
    let (inputs, rest): (Vec<_>, Vec<_>) = if let Some(first) = history.iter().position(mine) {
        // Inputs of later runs (stored after this run's first input) are theirs to answer.
        let later = |i: usize, m: &TranscriptMessage| {
            i > first && m.role == Role::User && m.run_id.as_deref().is_some_and(|r| r != run_id)
        };
        let history: Vec<_> = history
            .into_iter()
            .enumerate()
            .filter(|(i, m)| !later(*i, m))
            .map(|(_, m)| m)
            .collect();
        history.into_iter().partition(mine)
    } else {
        // Runs recorded before inputs named their run: the user messages since the last
        // assistant message.
        let first_new =
            history.iter().rposition(|m| m.role == Role::Assistant).map_or(0, |i| i + 1);
        let mut rest = history;
        let inputs = rest.split_off(first_new);
        let (inputs, late): (Vec<_>, Vec<_>) =
            inputs.into_iter().partition(|m| m.role == Role::User);
        rest.extend(late);
        (inputs, rest)
    };
    let mut messages: Vec<ChatMessage> = tool_groups_together(rest).into_iter().map(chat).collect();
    let input: Vec<String> = inputs.into_iter().map(|m| chat(m).content).collect();
    messages.extend(input.iter().map(|c| ChatMessage {
        role: Role::User,
        content: c.clone(),
        tool_calls: None,
        tool_call_id: None,
    }));
    (messages, input)
}

/// Moves messages that arrived between an assistant's tool calls and their results to
/// after the results. A call left without a result (its run stopped while it ran: the
/// kernel stopped, the run was cancelled, or its result could not be stored) gets a
/// result saying so, in the context only: providers refuse a conversation with an
/// unanswered tool call.
fn tool_groups_together(history: Vec<TranscriptMessage>) -> Vec<TranscriptMessage> {
    let mut out = Vec::with_capacity(history.len());
    let mut deferred = Vec::new();
    let mut open: Vec<String> = Vec::new();
    for m in history {
        let answers_open =
            m.role == Role::Tool && m.tool_call_id.as_ref().is_some_and(|id| open.contains(id));
        if answers_open {
            open.retain(|id| Some(id) != m.tool_call_id.as_ref());
            out.push(m);
        } else if !open.is_empty() && m.role != Role::Assistant {
            deferred.push(m);
        } else {
            out.extend(open.drain(..).map(interrupted));
            out.append(&mut deferred);
            open = m.tool_calls.iter().flatten().map(|c| c.id.clone()).collect();
            out.push(m);
        }
        if open.is_empty() {
            out.append(&mut deferred);
        }
    }
    out.extend(open.drain(..).map(interrupted));
    out.append(&mut deferred);
    out
}

/// The result of a tool call that never returned one.
fn interrupted(call_id: String) -> TranscriptMessage {
    TranscriptMessage {
        id: format!("interrupted-{call_id}"),
        role: Role::Tool,
        content: serde_json::json!({
            "error": "interrupted",
            "message": "the run stopped before this tool call returned; its outcome is unknown",
        })
        .to_string(),
        created_at: 0,
        metadata: None,
        tool_calls: None,
        tool_call_id: Some(call_id),
        run_id: None,
    }
}

fn chat(m: TranscriptMessage) -> ChatMessage {
    let content = match m.role {
        Role::User => render(&m.content, m.metadata.as_ref()),
        _ => m.content,
    };
    ChatMessage { role: m.role, content, tool_calls: m.tool_calls, tool_call_id: m.tool_call_id }
}

/// A message's text as the model reads it: comms and external events say where they
/// come from.
pub fn render(content: &str, metadata: Option<&Map>) -> String {
    let field =
        |v: &burrow_protocol::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    if let Some(c) = metadata.and_then(|m| m.get("comms")) {
        let kind = field(c, "kind").unwrap_or_else(|| "message".into());
        let from = field(c, "from").unwrap_or_default();
        let name = field(c, "from_name").unwrap_or_else(|| from.clone());
        let mut head = format!("[{kind} from {name} ({from})");
        if let Some(k) = field(c, "from_kernel") {
            let short: String = k.chars().take(12).collect();
            head.push_str(&format!(" on kernel {short}"));
        }
        if let Some(r) = field(c, "request_id") {
            head.push_str(&format!(", request {r}"));
        }
        if let Some(r) = field(c, "in_reply_to") {
            head.push_str(&format!(", in reply to {r}"));
        }
        return format!("{head}]\n{content}");
    }
    if let Some(e) = metadata.and_then(|m| m.get("external_event")) {
        let kind = field(e, "event_type").unwrap_or_default();
        return format!("[external event {kind}]\n{content}");
    }
    content.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burrow_protocol::methods::invoke::ToolCallRequest;
    use serde_json::json;

    fn msg(id: &str, role: Role, run: Option<&str>) -> TranscriptMessage {
        TranscriptMessage {
            id: id.into(),
            role,
            content: id.into(),
            created_at: 0,
            metadata: None,
            tool_calls: None,
            tool_call_id: None,
            run_id: run.map(str::to_owned),
        }
    }

    fn ids(messages: &[ChatMessage]) -> Vec<&str> {
        messages.iter().map(|m| m.content.as_str()).collect()
    }

    #[test]
    fn the_runs_inputs_come_last_and_tool_results_follow_their_call() {
        let mut call = msg("call", Role::Assistant, None);
        call.tool_calls =
            Some(vec![ToolCallRequest { id: "t1".into(), name: "x".into(), arguments: json!({}) }]);
        let mut result = msg("result", Role::Tool, None);
        result.tool_call_id = Some("t1".into());
        let history = vec![
            msg("first", Role::User, Some("r1")),
            call,
            msg("later", Role::User, Some("r2")),
            msg("aside", Role::User, None),
            result,
            msg("reply", Role::Assistant, None),
        ];
        let c = build(history.clone(), "r2");
        assert_eq!(ids(&c.messages), ["first", "call", "result", "aside", "reply", "later"]);
        assert_eq!(c.input, ["later"]);
        // The earlier run does not see the later run's input.
        let c = build(history, "r1");
        assert_eq!(ids(&c.messages), ["call", "result", "aside", "reply", "first"]);
        assert_eq!(c.input, ["first"]);
    }

    #[test]
    fn a_tool_call_left_without_a_result_gets_one_in_the_context() {
        let calls = |ids: &[&str]| {
            Some(
                ids.iter()
                    .map(|id| ToolCallRequest {
                        id: (*id).into(),
                        name: "x".into(),
                        arguments: json!({}),
                    })
                    .collect(),
            )
        };
        let mut first = msg("call-1", Role::Assistant, None);
        first.tool_calls = calls(&["a", "b"]);
        let mut answered = msg("result-a", Role::Tool, None);
        answered.tool_call_id = Some("a".into());
        let mut last = msg("call-2", Role::Assistant, None);
        last.tool_calls = calls(&["c"]);
        let history = vec![
            msg("ask", Role::User, Some("r1")),
            first,
            answered,
            msg("meanwhile", Role::User, None),
            last,
        ];
        let c = build(history, "r1");
        let results: Vec<_> = c
            .messages
            .iter()
            .map(|m| (m.role, m.tool_call_id.as_deref(), m.content.contains("interrupted")))
            .collect();
        assert_eq!(
            results,
            [
                (Role::Assistant, None, false),
                (Role::Tool, Some("a"), false),
                (Role::Tool, Some("b"), true),
                (Role::User, None, false),
                (Role::Assistant, None, false),
                (Role::Tool, Some("c"), true),
                (Role::User, None, false),
            ]
        );
    }

    #[test]
    fn runs_without_named_inputs_answer_the_messages_since_the_last_reply() {
        let history = vec![
            msg("a", Role::User, None),
            msg("reply", Role::Assistant, None),
            msg("b", Role::User, None),
            msg("c", Role::User, None),
        ];
        let c = build(history, "r9");
        assert_eq!(ids(&c.messages), ["a", "reply", "b", "c"]);
        assert_eq!(c.input, ["b", "c"]);
    }

    #[test]
    fn comms_and_external_events_say_where_they_come_from() {
        let comms = json!({ "comms": { "kind": "peer_request", "from": "id-a", "from_name": "agent-a", "request_id": "q1" } });
        assert_eq!(
            render("hi", comms.as_object()),
            "[peer_request from agent-a (id-a), request q1]\nhi"
        );
        let event = json!({ "external_event": { "event_type": "deploy_complete" } });
        assert_eq!(render("{}", event.as_object()), "[external event deploy_complete]\n{}");
        assert_eq!(render("plain", None), "plain");
    }
}
