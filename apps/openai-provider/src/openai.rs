//! The OpenAI chat-completions wire format and the HTTP exchange: [`request_body`] maps
//! a `provider.complete` to the body of `POST {base_url}/chat/completions`,
//! [`parse_completion`] maps the server's answer back, and [`Backend::complete`] does the
//! exchange, turning every failure into an [`ErrorObject`]. A streamed answer
//! (`text/event-stream`) is read by [`stream`], which forwards its deltas as they come and
//! assembles the same result. Nothing the server sends can make it panic; answers are read
//! up to [`MAX_ANSWER_BYTES`] (a streamed one: that much text and arguments, and lines
//! and events up to that size).

use std::error::Error as _;
use std::time::Duration;

use burrow_sdk::{
    AssistantMessage, ChatMessage, ErrorCode, ErrorObject, Map, ProviderCompleteParams,
    ProviderCompleteResult, Role, ToolCallRequest, ToolSpec, Value,
};
use serde::Deserialize;
use serde_json::json;

use crate::settings::Settings;

mod stream;

pub use stream::Deltas;
use stream::read_stream;

/// The largest answer read from the server.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
/// The most of an error body quoted in a message when it carries no error message.
const MAX_QUOTED_CHARS: usize = 500;

/// The body of `POST /chat/completions` asking `model` for the next message of `params`.
///
/// Empty system messages are left out (some chat templates reject them); `tools` is left
/// out when no tool is offered.
pub fn request_body(model: &str, params: &ProviderCompleteParams) -> Value {
    let messages: Vec<Value> = params
        .messages
        .iter()
        .filter(|m| !(m.role == Role::System && m.content.is_empty()))
        .map(message)
        .collect();
    let mut body = json!({ "model": model, "messages": messages });
    if !params.tools.is_empty() {
        body["tools"] = params.tools.iter().map(tool).collect();
    }
    body
}

/// One message in OpenAI's shape.
fn message(m: &ChatMessage) -> Value {
    match m.role {
        Role::System => json!({ "role": "system", "content": m.content }),
        Role::User => json!({ "role": "user", "content": m.content }),
        Role::Assistant => {
            let mut out = json!({ "role": "assistant", "content": m.content });
            if let Some(calls) = m.tool_calls.as_ref().filter(|calls| !calls.is_empty()) {
                out["tool_calls"] = calls.iter().map(tool_call).collect();
            }
            out
        }
        Role::Tool => json!({
            "role": "tool",
            "tool_call_id": m.tool_call_id.as_deref().unwrap_or_default(),
            "content": m.content,
        }),
    }
}

/// An assistant's tool call in OpenAI's shape: the arguments as a JSON string.
fn tool_call(call: &ToolCallRequest) -> Value {
    json!({
        "id": call.id,
        "type": "function",
        "function": { "name": call.name, "arguments": call.arguments.to_string() },
    })
}

/// An offered tool in OpenAI's shape; a schema that is not an object becomes the schema
/// of an object without properties.
fn tool(spec: &ToolSpec) -> Value {
    let parameters = match &spec.input_schema {
        schema @ Value::Object(_) => schema.clone(),
        _ => json!({ "type": "object", "properties": {} }),
    };
    json!({
        "type": "function",
        "function": { "name": spec.name, "description": spec.description, "parameters": parameters },
    })
}

/// The part of a chat completion this app reads. Everything is optional or defaulted, so
/// that the checks below, not the decoder, say what is missing.
#[derive(Debug, Deserialize)]
struct Completion {
    #[serde(default)]
    choices: Option<Vec<Choice>>,
    #[serde(default)]
    usage: Option<Usage>,
    /// Some servers and proxies answer errors with status 200.
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<AnswerMessage>,
}

#[derive(Debug, Deserialize)]
struct AnswerMessage {
    #[serde(default)]
    content: Value,
    #[serde(default)]
    tool_calls: Option<Vec<AnswerToolCall>>,
}

#[derive(Debug, Deserialize)]
struct AnswerToolCall {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<AnswerFunction>,
}

#[derive(Debug, Deserialize)]
struct AnswerFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Value,
}

#[derive(Debug, Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
}

/// The assistant message and usage of a chat completion `body` (a success answer).
///
/// `choices[0].message` gives `content` (`null` → `""`; a list of parts → their texts
/// joined) and `toolCalls` (each call's `arguments` JSON string parsed; an empty one is
/// `{}`, one that does not parse is `{"_raw": "<string>"}`; a missing call id is made up
/// from `first_call`, the number of tool calls earlier in the conversation).
/// `usage` gives `{promptTokens, completionTokens}`.
pub fn parse_completion(
    body: &[u8],
    first_call: usize,
) -> Result<ProviderCompleteResult, ErrorObject> {
    let completion: Completion = serde_json::from_slice(body)
        .map_err(|e| bad_answer(format!("it is not a chat completion ({e})"), body))?;
    completion_result(completion, first_call).map_err(|why| bad_answer(why, body))
}

/// The result a chat completion gives (see [`parse_completion`]); `Err` says why it is
/// unusable. The streamed answer, once assembled, goes through it too.
fn completion_result(
    completion: Completion,
    first_call: usize,
) -> Result<ProviderCompleteResult, String> {
    let Some(choices) = completion.choices else {
        if let Some(error) = completion.error {
            let message = error_message(&json!({ "error": error }))
                .unwrap_or_else(|| "an error without a message".to_owned());
            return Err(format!("it reports an error: {message}"));
        }
        return Err("it has no `choices`".to_owned());
    };
    let Some(answer) = choices.into_iter().next().and_then(|c| c.message) else {
        return Err("`choices[0].message` is missing".to_owned());
    };

    let mut calls = Vec::new();
    for (i, call) in answer.tool_calls.into_iter().flatten().enumerate() {
        let function =
            call.function.unwrap_or(AnswerFunction { name: None, arguments: Value::Null });
        let Some(name) = function.name.filter(|n| !n.is_empty()) else {
            return Err(format!("tool call {i} has no function name"));
        };
        let id = call.id.filter(|id| !id.is_empty());
        calls.push(ToolCallRequest {
            id: id.unwrap_or_else(|| format!("call_{}", first_call + i + 1)),
            name,
            arguments: arguments(function.arguments),
        });
    }

    let message = AssistantMessage {
        content: content(answer.content),
        tool_calls: (!calls.is_empty()).then_some(calls),
    };
    let usage = completion.usage.and_then(|u| {
        let mut usage = Map::new();
        if let Some(n) = u.prompt_tokens {
            usage.insert("promptTokens".into(), n.into());
        }
        if let Some(n) = u.completion_tokens {
            usage.insert("completionTokens".into(), n.into());
        }
        (!usage.is_empty()).then_some(usage)
    });
    Ok(ProviderCompleteResult { message, usage })
}

/// A message's content as text.
fn content(content: Value) -> String {
    match content {
        Value::Null => String::new(),
        Value::String(text) => text,
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str).or_else(|| part.as_str()))
            .collect(),
        other => other.to_string(),
    }
}

/// A tool call's arguments: the JSON string parsed (`{}` when empty, `{"_raw": ...}` when
/// it does not parse); a server that sends JSON itself is taken at its word.
fn arguments(arguments: Value) -> Value {
    match arguments {
        Value::Null => json!({}),
        Value::String(text) if text.trim().is_empty() => json!({}),
        Value::String(text) => match serde_json::from_str(&text) {
            Ok(value) => value,
            Err(_) => json!({ "_raw": text }),
        },
        other => other,
    }
}

/// `UNKNOWN_ERROR` for a success answer that is not a usable chat completion.
fn bad_answer(why: String, body: &[u8]) -> ErrorObject {
    ErrorObject::new(
        ErrorCode::UnknownError,
        format!("the model server's answer is unusable: {why}"),
    )
    .with_data(json!({ "body": quote(body) }))
}

/// The error message of an error body: `error.message`, `error` (a string), `message` or
/// `detail`, whichever comes first.
fn error_message(body: &Value) -> Option<String> {
    let candidates = [
        body.pointer("/error/message"),
        body.get("error"),
        body.get("message"),
        body.get("detail"),
    ];
    candidates
        .into_iter()
        .flatten()
        .find_map(|v| v.as_str())
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty())
}

/// Up to [`MAX_QUOTED_CHARS`] characters of `body`, as text.
fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// `UNKNOWN_ERROR` for an answer with an error status: the status and the server's
/// message (`error.message` of a JSON body, else the start of the body).
pub fn http_error(url: &str, status: reqwest::StatusCode, body: &[u8]) -> ErrorObject {
    let detail = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|json| error_message(&json))
        .unwrap_or_else(|| quote(body));
    let mut message = format!("the model server at {url} answered HTTP {status}");
    if !detail.is_empty() {
        message.push_str(": ");
        message.push_str(&detail);
    }
    ErrorObject::new(ErrorCode::UnknownError, message)
        .with_data(json!({ "url": url, "status": status.as_u16(), "body": quote(body) }))
}

/// The error for a failed exchange: `TIMEOUT` when the deadline passed, else
/// `UNKNOWN_ERROR` (connection refused, reset, DNS, TLS, ...) with every cause.
fn exchange_error(url: &str, timeout: Duration, e: &reqwest::Error) -> ErrorObject {
    let data = json!({ "url": url });
    if e.is_timeout() {
        let ms = timeout.as_millis();
        return ErrorObject::new(
            ErrorCode::Timeout,
            format!("the model server at {url} did not answer within {ms} ms"),
        )
        .with_data(data);
    }
    let what = if e.is_connect() { "cannot connect to" } else { "the exchange failed with" };
    ErrorObject::new(
        ErrorCode::UnknownError,
        format!("{what} the model server at {url}: {}", causes(e)),
    )
    .with_data(data)
}

/// The causes of `e`, joined: e.g. `tcp connect error: Connection refused (os error 111)`
/// rather than reqwest's own `error sending request for url (...)`, without hyper's
/// wrapper `client error (Connect)`.
fn causes(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.starts_with("client error (") && !parts.contains(&text) {
            parts.push(text);
        }
        source = cause.source();
    }
    if parts.is_empty() { e.to_string() } else { parts.join(": ") }
}

/// The model server, as the settings describe it, with its HTTP client.
#[derive(Debug)]
pub struct Backend {
    settings: Settings,
    endpoint: String,
    http: reqwest::Client,
}

impl Backend {
    /// A backend for `settings`. Proxies from the environment are used, except for a
    /// server on a loopback address.
    pub fn new(settings: Settings) -> Result<Backend, String> {
        let endpoint = settings.endpoint();
        let mut builder = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .user_agent(concat!("burrow-openai-provider/", env!("CARGO_PKG_VERSION")));
        if is_loopback(&endpoint) {
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        Ok(Backend { settings, endpoint, http })
    }

    /// The settings it was made with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Asks the server for the next assistant message of `params`. With `stream` set,
    /// the server is asked to stream it and `deltas` gets its pieces as they come; the
    /// result is the whole message either way (and a server that answers a whole
    /// completion although asked to stream is read as one).
    pub async fn complete(
        &self,
        params: &ProviderCompleteParams,
        deltas: &impl Deltas,
    ) -> Result<ProviderCompleteResult, ErrorObject> {
        let Some(model) = self.settings.model_for(&params.model) else {
            return Err(ErrorObject::new(
                ErrorCode::InvalidParams,
                format!(
                    "no model: the agent asks for {:?} and apps.<id>.model names no default",
                    params.model
                ),
            )
            .with_data(json!({ "field": "model" })));
        };
        let mut body = request_body(model, params);
        if self.settings.stream {
            body["stream"] = true.into();
            body["stream_options"] = json!({ "include_usage": true });
        }
        let mut request = self.http.post(&self.endpoint).json(&body);
        if let Some(key) = &self.settings.api_key {
            request = request.bearer_auth(key);
        }
        let url = self.endpoint.as_str();
        let timeout = self.settings.timeout;
        let failed = |e: reqwest::Error| exchange_error(url, timeout, &e);
        let mut response = request.send().await.map_err(failed)?;
        let status = response.status();
        let earlier_calls =
            params.messages.iter().map(|m| m.tool_calls.as_ref().map_or(0, Vec::len)).sum();
        if status.is_success() && is_event_stream(&response) {
            return read_stream(response, deltas, url, timeout, earlier_calls).await;
        }

        // A whole answer: an error, or a server that does not stream.
        let mut answer = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if answer.len() + chunk.len() > MAX_ANSWER_BYTES {
                if !status.is_success() {
                    break; // the start is enough to quote
                }
                let message = format!(
                    "the model server at {url} answered more than {MAX_ANSWER_BYTES} bytes"
                );
                return Err(ErrorObject::new(ErrorCode::UnknownError, message)
                    .with_data(json!({ "url": url })));
            }
            answer.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(http_error(url, status, &answer));
        }
        parse_completion(&answer, earlier_calls).map_err(|mut e| {
            if let Some(Value::Object(data)) = e.data.as_mut() {
                data.insert("url".into(), url.into());
            }
            e
        })
    }
}

/// Whether the answer is an event stream (`Content-Type: text/event-stream`).
fn is_event_stream(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("text/event-stream"))
}

/// Whether `url`'s host is a loopback address or `localhost`.
fn is_loopback(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else { return false };
    let Some(host) = url.host_str() else { return false };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn say(role: Role, content: &str) -> ChatMessage {
        ChatMessage { role, content: content.into(), tool_calls: None, tool_call_id: None }
    }

    /// A conversation with every kind of message, and two tools.
    pub(crate) fn conversation() -> ProviderCompleteParams {
        let call = ToolCallRequest {
            id: "call-1".into(),
            name: "clock_now".into(),
            arguments: json!({"tz": "UTC"}),
        };
        ProviderCompleteParams {
            provider_id: "openai".into(),
            model: "default".into(),
            messages: vec![
                say(Role::System, "You are terse."),
                say(Role::User, "What time is it?"),
                ChatMessage { tool_calls: Some(vec![call]), ..say(Role::Assistant, "") },
                ChatMessage {
                    tool_call_id: Some("call-1".into()),
                    ..say(Role::Tool, "{\"unixMs\":1}")
                },
            ],
            tools: vec![
                ToolSpec {
                    name: "clock_now".into(),
                    description: "The time".into(),
                    input_schema: json!({"type": "object", "properties": {"tz": {"type": "string"}}}),
                },
                ToolSpec {
                    name: "ping".into(),
                    description: String::new(),
                    input_schema: Value::Null,
                },
            ],
            traceparent: None,
        }
    }

    #[test]
    fn maps_the_conversation_and_the_tools() {
        let body = request_body("llama3", &conversation());
        assert_eq!(
            body,
            json!({
                "model": "llama3",
                "messages": [
                    {"role": "system", "content": "You are terse."},
                    {"role": "user", "content": "What time is it?"},
                    {"role": "assistant", "content": "", "tool_calls": [{
                        "id": "call-1",
                        "type": "function",
                        "function": {"name": "clock_now", "arguments": "{\"tz\":\"UTC\"}"},
                    }]},
                    {"role": "tool", "tool_call_id": "call-1", "content": "{\"unixMs\":1}"},
                ],
                "tools": [
                    {"type": "function", "function": {
                        "name": "clock_now",
                        "description": "The time",
                        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}},
                    }},
                    {"type": "function", "function": {
                        "name": "ping",
                        "description": "",
                        "parameters": {"type": "object", "properties": {}},
                    }},
                ],
            })
        );
    }

    #[test]
    fn leaves_out_empty_tools_and_empty_system_prompts() {
        let params = ProviderCompleteParams {
            provider_id: "openai".into(),
            model: "m".into(),
            messages: vec![say(Role::System, ""), say(Role::User, "hi")],
            tools: vec![],
            traceparent: None,
        };
        let body = request_body("m", &params);
        assert_eq!(body, json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
    }

    #[test]
    fn reads_a_plain_answer() {
        let body = br#"{"id": "x", "object": "chat.completion", "choices": [{"index": 0,
            "message": {"role": "assistant", "content": "Noon."}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}}"#;
        let done = parse_completion(body, 0).unwrap();
        assert_eq!(done.message, AssistantMessage { content: "Noon.".into(), tool_calls: None });
        let usage = done.usage.unwrap();
        assert_eq!(Value::Object(usage), json!({"promptTokens": 12, "completionTokens": 3}));
    }

    #[test]
    fn reads_tool_calls() {
        let body = br#"{"choices": [{"message": {"role": "assistant", "content": null,
            "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "clock_now", "arguments": "{\"tz\": \"UTC\"}"}},
                {"type": "function", "function": {"name": "ping", "arguments": ""}},
                {"id": "call_c", "type": "function", "function": {"name": "echo", "arguments": "{oops"}},
                {"id": "call_d", "type": "function", "function": {"name": "obj", "arguments": {"a": 1}}}
            ]}}]}"#;
        let done = parse_completion(body, 2).unwrap();
        assert_eq!(done.message.content, "");
        assert_eq!(done.usage, None);
        let calls = done.message.tool_calls.unwrap();
        let expected = [
            ("call_a", "clock_now", json!({"tz": "UTC"})),
            ("call_4", "ping", json!({})),
            ("call_c", "echo", json!({"_raw": "{oops"})),
            ("call_d", "obj", json!({"a": 1})),
        ];
        assert_eq!(calls.len(), expected.len());
        for (call, (id, name, arguments)) in calls.iter().zip(expected) {
            assert_eq!(
                (call.id.as_str(), call.name.as_str(), &call.arguments),
                (id, name, &arguments)
            );
        }
    }

    #[test]
    fn reads_content_parts_and_empty_tool_call_lists() {
        let body = br#"{"choices": [{"message": {"content": [{"type": "text", "text": "a"},
            {"type": "text", "text": "b"}], "tool_calls": []}}]}"#;
        let done = parse_completion(body, 0).unwrap();
        assert_eq!(done.message, AssistantMessage { content: "ab".into(), tool_calls: None });
    }

    #[test]
    fn unusable_answers_are_errors() {
        let cases: [(&[u8], &str); 8] = [
            (b"<html>oops</html>", "not a chat completion"),
            (b"", "not a chat completion"),
            (b"[1, 2]", "not a chat completion"),
            (br#"{"choices": 5}"#, "not a chat completion"),
            (br#"{"object": "list"}"#, "no `choices`"),
            (br#"{"choices": []}"#, "`choices[0].message` is missing"),
            (
                br#"{"error": {"message": "model is loading"}}"#,
                "reports an error: model is loading",
            ),
            (
                br#"{"choices": [{"message": {"tool_calls": [{"id": "x", "function": {}}]}}]}"#,
                "tool call 0 has no function name",
            ),
        ];
        for (body, expected) in cases {
            let e = parse_completion(body, 0).unwrap_err();
            assert_eq!(e.code, ErrorCode::UnknownError);
            assert!(
                e.message.contains(expected),
                "{}: {}",
                String::from_utf8_lossy(body),
                e.message
            );
        }
    }

    #[test]
    fn error_statuses_quote_the_servers_message() {
        let url = "http://127.0.0.1:1/v1/chat/completions";
        let status = reqwest::StatusCode::NOT_FOUND;
        let e = http_error(
            url,
            status,
            br#"{"error": {"message": "model \"x\" not found", "type": "invalid_request_error"}}"#,
        );
        assert_eq!(e.code, ErrorCode::UnknownError);
        assert_eq!(
            e.message,
            format!("the model server at {url} answered HTTP 404 Not Found: model \"x\" not found")
        );
        assert_eq!(e.data.as_ref().unwrap()["status"], 404);
        let e = http_error(url, status, br#"{"error": "no such model"}"#);
        assert!(e.message.ends_with(": no such model"), "{}", e.message);
        let e = http_error(url, reqwest::StatusCode::BAD_GATEWAY, b"upstream down\n");
        assert!(e.message.ends_with("HTTP 502 Bad Gateway: upstream down"), "{}", e.message);
        let e = http_error(url, reqwest::StatusCode::SERVICE_UNAVAILABLE, b"");
        assert!(e.message.ends_with("HTTP 503 Service Unavailable"), "{}", e.message);
        let long = "x".repeat(10_000);
        let e = http_error(url, reqwest::StatusCode::INTERNAL_SERVER_ERROR, long.as_bytes());
        assert!(e.message.len() < 700, "{}", e.message.len());
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("http://127.0.0.1:11434/v1"));
        assert!(is_loopback("http://localhost:8080/v1"));
        assert!(is_loopback("http://[::1]:8080/v1"));
        assert!(!is_loopback("https://api.openai.com/v1"));
        assert!(!is_loopback("http://10.0.0.2/v1"));
    }
}
