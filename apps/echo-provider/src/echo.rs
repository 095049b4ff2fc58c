//! The echo model, as a pure function of the conversation: [`complete`]. The rules are
//! in the crate's documentation (`main.rs`).

use burrow_sdk::{
    AssistantMessage, ChatMessage, Map, ProviderCompleteParams, ProviderCompleteResult, Role,
    ToolCallRequest, Value,
};

/// The command that asks for a tool call, at the start of a line.
const COMMAND: &str = "/tool";
/// The name of a called tool when no earlier assistant message made that call.
const UNKNOWN_TOOL: &str = "?";

/// The next assistant message of the conversation, with its usage in words.
pub fn complete(params: &ProviderCompleteParams) -> ProviderCompleteResult {
    let messages = &params.messages;
    let message = match trailing(messages, Role::Tool) {
        [] => answer_user(messages, &params.tools),
        results => {
            let lines: Vec<String> = results
                .iter()
                .map(|m| {
                    let id = m.tool_call_id.as_deref().unwrap_or_default();
                    format!("tool {} returned: {}", tool_name(messages, id), m.content)
                })
                .collect();
            text(lines.join("\n"))
        }
    };
    let prompt_tokens: usize = messages.iter().map(|m| words(&m.content)).sum();
    let call_tokens: usize = message
        .tool_calls
        .iter()
        .flatten()
        .map(|c| words(&c.name) + words(&c.arguments.to_string()))
        .sum();
    let mut usage = Map::new();
    usage.insert("promptTokens".into(), prompt_tokens.into());
    usage.insert("completionTokens".into(), (words(&message.content) + call_tokens).into());
    ProviderCompleteResult { message, usage: Some(usage) }
}

/// The messages of `role` at the end of the conversation.
fn trailing(messages: &[ChatMessage], role: Role) -> &[ChatMessage] {
    let start = messages.iter().rposition(|m| m.role != role).map_or(0, |i| i + 1);
    &messages[start..]
}

/// The name of the tool the assistant called with `id`, the latest such call.
fn tool_name<'m>(messages: &'m [ChatMessage], id: &str) -> &'m str {
    messages
        .iter()
        .rev()
        .filter(|m| m.role == Role::Assistant)
        .flat_map(|m| m.tool_calls.iter().flatten())
        .find(|call| call.id == id)
        .map_or(UNKNOWN_TOOL, |call| call.name.as_str())
}

/// The user's text: the user messages since the last assistant message, joined by
/// newlines; else the last user message; else nothing.
fn user_text(messages: &[ChatMessage]) -> String {
    let since = messages.iter().rposition(|m| m.role == Role::Assistant).map_or(0, |i| i + 1);
    let recent: Vec<&str> = messages[since..]
        .iter()
        .filter(|m| m.role == Role::User)
        .map(|m| m.content.as_str())
        .collect();
    if !recent.is_empty() {
        return recent.join("\n");
    }
    let last = messages.iter().rev().find(|m| m.role == Role::User);
    last.map(|m| m.content.clone()).unwrap_or_default()
}

/// Answers the user's text: the tool calls its `/tool` lines ask for, or an echo.
fn answer_user(messages: &[ChatMessage], offered: &[burrow_sdk::ToolSpec]) -> AssistantMessage {
    let said = user_text(messages);
    let commands: Vec<(&str, &str)> = said.lines().filter_map(command).collect();
    if commands.is_empty() {
        return text(format!("echo: {said}"));
    }
    let earlier = messages
        .iter()
        .filter(|m| m.role == Role::Assistant)
        .map(|m| m.tool_calls.as_ref().map_or(0, Vec::len))
        .sum::<usize>();
    let mut calls = Vec::new();
    for (name, args) in commands {
        if !offered.iter().any(|t| t.name == name) {
            return text(format!("echo: no tool named {name}"));
        }
        let arguments = match parse_arguments(args) {
            Ok(arguments) => arguments,
            Err(why) => return text(format!("echo: bad arguments for {name}: {why}")),
        };
        let id = format!("call-{}", earlier + calls.len() + 1);
        calls.push(ToolCallRequest { id, name: name.to_owned(), arguments });
    }
    AssistantMessage { content: String::new(), tool_calls: Some(calls) }
}

/// A `/tool NAME [ARGS]` line: the name and the (trimmed, maybe empty) arguments text.
fn command(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim().strip_prefix(COMMAND)?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let rest = rest.trim_start();
    let (name, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    (!name.is_empty()).then(|| (name, args.trim()))
}

/// The arguments of a `/tool` line: a JSON object, `{}` when absent.
fn parse_arguments(args: &str) -> Result<Value, String> {
    if args.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    match serde_json::from_str::<Value>(args) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err("expected a JSON object".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

fn text(content: String) -> AssistantMessage {
    AssistantMessage { content, tool_calls: None }
}

fn words(text: &str) -> usize {
    text.split_whitespace().count()
}

#[cfg(test)]
mod tests {
    use burrow_sdk::ToolSpec;
    use serde_json::json;

    use super::*;

    fn say(role: Role, content: &str) -> ChatMessage {
        ChatMessage { role, content: content.into(), tool_calls: None, tool_call_id: None }
    }

    fn user(content: &str) -> ChatMessage {
        say(Role::User, content)
    }

    fn called(calls: &[(&str, &str)]) -> ChatMessage {
        let calls = calls
            .iter()
            .map(|(id, name)| ToolCallRequest {
                id: (*id).into(),
                name: (*name).into(),
                arguments: json!({}),
            })
            .collect();
        ChatMessage { tool_calls: Some(calls), ..say(Role::Assistant, "") }
    }

    fn result(id: &str, content: &str) -> ChatMessage {
        ChatMessage { tool_call_id: Some(id.into()), ..say(Role::Tool, content) }
    }

    fn tools(names: &[&str]) -> Vec<ToolSpec> {
        let spec = |n: &&str| ToolSpec {
            name: (*n).into(),
            description: String::new(),
            input_schema: json!({}),
        };
        names.iter().map(spec).collect()
    }

    fn run(messages: Vec<ChatMessage>, offered: &[&str]) -> ProviderCompleteResult {
        complete(&ProviderCompleteParams {
            provider_id: "echo".into(),
            model: "echo".into(),
            messages,
            tools: tools(offered),
            traceparent: None,
        })
    }

    fn content(messages: Vec<ChatMessage>, offered: &[&str]) -> String {
        let done = run(messages, offered);
        assert_eq!(done.message.tool_calls, None);
        done.message.content
    }

    #[test]
    fn echoes_the_last_user_message() {
        let system = say(Role::System, "You are a parrot");
        assert_eq!(content(vec![system, user("hello there")], &[]), "echo: hello there");
        let earlier = vec![user("first"), say(Role::Assistant, "echo: first"), user("second")];
        assert_eq!(content(earlier, &[]), "echo: second");
    }

    #[test]
    fn echoes_several_user_messages_since_the_last_assistant_joined() {
        let messages = vec![user("old"), say(Role::Assistant, "echo: old"), user("a"), user("b c")];
        assert_eq!(content(messages, &[]), "echo: a\nb c");
        assert_eq!(content(vec![user("x"), say(Role::Assistant, "y")], &[]), "echo: x");
        assert_eq!(content(vec![], &[]), "echo: ");
    }

    #[test]
    fn a_tool_line_calls_an_offered_tool() {
        let done = run(vec![user("please\n  /tool clock_now")], &["clock_now", "echo"]);
        assert_eq!(done.message.content, "");
        let call =
            ToolCallRequest { id: "call-1".into(), name: "clock_now".into(), arguments: json!({}) };
        assert_eq!(done.message.tool_calls, Some(vec![call]));

        let done = run(vec![user(r#"/tool echo {"text": "hi", "n": [1, 2]}"#)], &["echo"]);
        let calls = done.message.tool_calls.unwrap();
        assert_eq!(calls[0].arguments, json!({"text": "hi", "n": [1, 2]}));
    }

    #[test]
    fn tool_call_ids_count_the_earlier_calls_and_several_lines_make_several_calls() {
        let messages = vec![
            user("/tool a"),
            called(&[("call-1", "a")]),
            result("call-1", "1"),
            say(Role::Assistant, "tool a returned: 1"),
            user("/tool a\n/tool b {\"x\": true}"),
        ];
        let calls = run(messages, &["a", "b"]).message.tool_calls.unwrap();
        let ids: Vec<(&str, &str)> =
            calls.iter().map(|c| (c.id.as_str(), c.name.as_str())).collect();
        assert_eq!(ids, [("call-2", "a"), ("call-3", "b")]);
        assert_eq!(calls[1].arguments, json!({"x": true}));
    }

    #[test]
    fn unknown_tools_and_bad_arguments_are_answered_in_words() {
        assert_eq!(content(vec![user("/tool rm -rf")], &["echo"]), "echo: no tool named rm");
        assert_eq!(
            content(vec![user("/tool echo\n/tool nope")], &["echo"]),
            "echo: no tool named nope"
        );
        let bad = content(vec![user("/tool echo {oops")], &["echo"]);
        assert!(bad.starts_with("echo: bad arguments for echo: "), "{bad}");
        let array = content(vec![user("/tool echo [1]")], &["echo"]);
        assert_eq!(array, "echo: bad arguments for echo: expected a JSON object");
    }

    #[test]
    fn lines_that_are_not_commands_are_echoed() {
        for said in ["/tool", "/toolbox x", "say /tool x", "/tool   "] {
            assert_eq!(content(vec![user(said)], &["x"]), format!("echo: {said}"));
        }
    }

    #[test]
    fn tool_results_are_reported_with_the_tool_name() {
        let messages = vec![
            user("/tool clock_now"),
            called(&[("call-1", "clock_now")]),
            result("call-1", "{\"unixMs\":5}"),
        ];
        assert_eq!(content(messages, &["clock_now"]), "tool clock_now returned: {\"unixMs\":5}");

        let both = vec![
            user("go"),
            called(&[("call-1", "a"), ("call-2", "b")]),
            result("call-1", "A"),
            result("call-2", "B"),
        ];
        assert_eq!(content(both, &[]), "tool a returned: A\ntool b returned: B");
        assert_eq!(content(vec![result("zzz", "lost")], &[]), "tool ? returned: lost");
    }

    #[test]
    fn usage_counts_words() {
        let done = run(vec![say(Role::System, "be brief"), user("one two three")], &[]);
        let usage = done.usage.unwrap();
        assert_eq!(usage["promptTokens"], 5);
        assert_eq!(usage["completionTokens"], 4); // "echo: one two three"
        let call = run(vec![user("/tool echo {\"a\": 1}")], &["echo"]).usage.unwrap();
        assert_eq!(call["promptTokens"], 4);
        assert_eq!(call["completionTokens"], 2); // echo {"a":1}
    }
}
