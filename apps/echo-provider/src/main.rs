//! `echo-provider`: a deterministic, offline model provider for Burrow, to run agents
//! end to end without a model: it echoes what the user said, and calls tools when asked.
//!
//! It registers the provider `echo` (models `["echo"]`; any model name is answered
//! alike) and answers each `provider.complete {messages, tools}` like this:
//!
//! 1. If the conversation ends with `tool` messages, it reports them: one line
//!    `tool <name> returned: <content>` per trailing tool message, joined by `\n`, `<name>`
//!    being the tool of the assistant's earlier `toolCalls` entry with that `toolCallId`
//!    (`?` if there is none). With one tool result that is the whole answer.
//! 2. Otherwise it takes the user's text: the `user` messages since the last `assistant`
//!    message, joined by `\n` (if there are none, the last `user` message; else nothing).
//! 3. Each line of that text of the form `/tool NAME {json-args}` (leading and trailing
//!    spaces allowed; the JSON object of arguments is optional and defaults to `{}`) asks
//!    for a call of tool `NAME`. If every such `NAME` is among the offered `tools`, the
//!    answer is `content: ""` with `toolCalls: [{id: "call-<n>", name, arguments}]`, one
//!    per line in order, `<n>` counting on from the tool calls already in the
//!    conversation (the first is `call-1`). If a `NAME` is not offered, the answer is
//!    `content: "echo: no tool named NAME"` (the first such name) and no call; arguments
//!    that are not a JSON object answer `echo: bad arguments for NAME: <why>`.
//! 4. With no `/tool` line, the answer is `content: "echo: <the user's text>"`.
//!
//! `usage` is `{promptTokens, completionTokens}` in words (whitespace-separated): the
//! words of every message's content, and those of the answer's content plus, per tool
//! call, its name and its arguments as compact JSON.
//!
//! So with `auto_reply`, `hello` is answered `echo: hello`, and `/tool clock_now` makes
//! the agent call `clock_now`, then answer `tool clock_now returned: {...}`.
//!
//! It streams its text as a model would: word by word (each word with the spaces after
//! it), as `text_delta` chunks `ECHO_WORD_DELAY_MS` apart (default 20; 0 sends them all
//! at once), then answers with the whole message.
//!
//! Usage: `echo-provider [--id ID] [--socket PATH]`. The id defaults to `BURROW_APP_ID`,
//! else `echo-provider`; the socket to `BURROW_SOCKET`, else the default socket. Logs go
//! to stderr (`RUST_LOG`, default `info`); stdout carries the lines scripts wait for:
//! `echo-provider: ready as <appId>`, then `echo-provider: leaving` (Ctrl-C/SIGTERM) or
//! `echo-provider: kernel asked us to shut down`.

use std::process::ExitCode;
use std::time::Duration;

use burrow_example_common::{Example, say};
use burrow_sdk::{App, Manifest};

mod echo;

const EXAMPLE: Example = Example::new("echo-provider", "echo-provider");
/// The provider id it registers.
const PROVIDER_ID: &str = "echo";
/// The models it lists.
const MODELS: [&str; 1] = ["echo"];
/// The pause between two streamed words unless `ECHO_WORD_DELAY_MS` says otherwise.
const WORD_DELAY: Duration = Duration::from_millis(20);

/// The pause between two streamed words.
fn word_delay() -> Duration {
    std::env::var("ECHO_WORD_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(WORD_DELAY, Duration::from_millis)
}

/// `text` in the pieces it is streamed in: each word with the whitespace after it, so
/// that they add up to `text`.
fn words(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let (mut start, mut in_space, mut seen_word) = (0, false, false);
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            in_space = true;
            continue;
        }
        if in_space && seen_word {
            pieces.push(&text[start..i]);
            start = i;
        }
        in_space = false;
        seen_word = true;
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

fn app(id: String) -> App {
    let mut manifest = Manifest::new(id, env!("CARGO_PKG_VERSION"));
    manifest.description = Some("A deterministic offline model provider: echoes".to_owned());
    let models = MODELS.iter().map(|m| (*m).to_owned()).collect();
    App::new(manifest)
        .provider(PROVIDER_ID, models, |params, cx| async move {
            let answer = echo::complete(&params);
            let delay = word_delay();
            for (n, word) in words(&answer.message.content).into_iter().enumerate() {
                if n > 0 && !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                if cx.text_delta(word).await.is_err() {
                    break; // The kernel is gone; the answer will not reach it either.
                }
            }
            Ok(answer)
        })
        .on_ready(|client| async move {
            say(&format!("echo-provider: ready as {}", client.app_id().unwrap_or_default()));
        })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = EXAMPLE.start();
    EXAMPLE.run(app(args.id), args.socket).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use burrow_sdk::testing::FakeKernel;
    use burrow_sdk::{ChatMessage, ErrorCode, ProviderCompleteParams, Role, ToolSpec};
    use serde_json::json;

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    fn params(messages: Vec<ChatMessage>) -> ProviderCompleteParams {
        let clock = ToolSpec {
            name: "clock_now".into(),
            description: "The time".into(),
            input_schema: json!({"type": "object"}),
        };
        ProviderCompleteParams {
            provider_id: String::new(),
            model: "echo".into(),
            messages,
            tools: vec![clock],
            traceparent: None,
        }
    }

    fn message(role: Role, content: &str) -> ChatMessage {
        ChatMessage { role, content: content.into(), tool_calls: None, tool_call_id: None }
    }

    #[test]
    fn words_keep_their_spaces_and_add_up_to_the_text() {
        assert_eq!(words("echo: hello  big world"), ["echo: ", "hello  ", "big ", "world"]);
        assert_eq!(words(" lead\nnext "), [" lead\n", "next "]);
        assert!(words("").is_empty());
        for text in ["a", "echo: x y", "tool clock_now returned: {\"t\": 1}\nline two"] {
            assert_eq!(words(text).concat(), text);
        }
    }

    #[tokio::test]
    async fn registers_the_echo_provider_and_runs_a_tool_round_trip() {
        let (kernel, transport) = FakeKernel::new();
        let running =
            tokio::spawn(app("echo-provider".into()).run_on(transport, std::future::pending()));
        kernel.wait_ready(WAIT).await.unwrap();
        let providers = kernel.providers();
        assert_eq!(providers.len(), 1);
        assert_eq!(
            (providers[0].provider_id.as_str(), providers[0].models.clone()),
            ("echo", vec!["echo".to_owned()])
        );
        assert_eq!(kernel.manifest().unwrap().capabilities.providers, ["echo"]);

        let hello =
            kernel.complete("echo", params(vec![message(Role::User, "hello")])).await.unwrap();
        assert_eq!(hello.message.content, "echo: hello");

        let mut conversation = vec![message(Role::User, "/tool clock_now")];
        let asked = kernel.complete("echo", params(conversation.clone())).await.unwrap();
        let calls = asked.message.tool_calls.clone().unwrap();
        assert_eq!((calls[0].id.as_str(), calls[0].name.as_str()), ("call-1", "clock_now"));
        conversation.push(ChatMessage {
            tool_calls: Some(calls),
            ..message(Role::Assistant, &asked.message.content)
        });
        conversation.push(ChatMessage {
            tool_call_id: Some("call-1".into()),
            ..message(Role::Tool, "{\"unixMs\":1}")
        });
        let reported = kernel.complete("echo", params(conversation)).await.unwrap();
        assert_eq!(reported.message.content, "tool clock_now returned: {\"unixMs\":1}");
        assert_eq!(reported.message.tool_calls, None);

        let unknown = kernel.complete("gpt", params(vec![])).await.unwrap_err();
        assert_eq!(unknown.code(), Some(ErrorCode::NotFound));

        kernel.shutdown_app().await.unwrap();
        running.await.unwrap().unwrap();
    }
}
