//! Tests of streamed completions: the [`Assembler`] alone, then [`Backend::complete`]
//! against [`TestServer`] streams cut at awkward places, then the deltas reaching a
//! kernel through an SDK provider's [`ProviderContext`].

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use burrow_sdk::testing::FakeKernel;
use burrow_sdk::{
    App, ChatMessage, ErrorCode, Manifest, ProviderChunk, ProviderCompleteParams, Role, StreamItem,
    Value,
};
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::Notify;

use super::*;
use crate::openai::{Backend, parse_completion};
use crate::settings::{Overrides, Settings};
use crate::test_server::{End, Reply, TestServer};

const WAIT: Duration = Duration::from_secs(10);

/// One `data:` event carrying choice 0's `delta`, `\r\n` line ends.
fn delta(delta: Value) -> String {
    let chunk = json!({"id": "c1", "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": null}]});
    format!("data: {chunk}\r\n\r\n")
}

/// The event carrying choice 0's `finish_reason`.
fn finish(reason: &str) -> String {
    let chunk = json!({"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]});
    format!("data: {chunk}\r\n\r\n")
}

/// The last event with `include_usage`: usage and no choices.
fn usage(prompt: u64, completion: u64) -> String {
    let chunk = json!({"choices": [], "usage": {"prompt_tokens": prompt,
        "completion_tokens": completion, "total_tokens": prompt + completion}});
    format!("data: {chunk}\r\n\r\n")
}

const DONE: &str = "data: [DONE]\r\n\r\n";

/// `bytes` cut at the offsets `at`.
fn cut(bytes: &[u8], at: &[usize]) -> Vec<Vec<u8>> {
    let mut at = at.to_vec();
    at.sort_unstable();
    let mut parts = Vec::new();
    let mut start = 0;
    for &end in at.iter().chain([bytes.len()].iter()) {
        parts.push(bytes[start..end].to_vec());
        start = end;
    }
    parts
}

/// The offset of the first `needle` in `haystack`, plus `plus`.
fn offset(haystack: &str, needle: &str, plus: usize) -> usize {
    haystack.find(needle).unwrap() + plus
}

fn text(text: &str) -> ProviderChunk {
    ProviderChunk::TextDelta { text: text.to_owned() }
}

fn call(
    index: u32,
    id: Option<&str>,
    name: Option<&str>,
    arguments: Option<&str>,
) -> ProviderChunk {
    ProviderChunk::ToolCallDelta {
        index,
        id: id.map(str::to_owned),
        name: name.map(str::to_owned),
        arguments: arguments.map(str::to_owned),
    }
}

/// Keeps the deltas, and says when the first came.
#[derive(Debug, Default)]
struct Collect {
    deltas: Mutex<Vec<ProviderChunk>>,
    first: Notify,
}

impl Collect {
    fn deltas(&self) -> Vec<ProviderChunk> {
        self.deltas.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The text deltas, joined.
    fn text(&self) -> String {
        self.deltas()
            .into_iter()
            .filter_map(|d| match d {
                ProviderChunk::TextDelta { text } => Some(text),
                ProviderChunk::ToolCallDelta { .. } => None,
            })
            .collect()
    }
}

impl Deltas for Collect {
    async fn forward(&self, delta: ProviderChunk) -> Result<(), String> {
        self.deltas.lock().unwrap_or_else(PoisonError::into_inner).push(delta);
        self.first.notify_one();
        Ok(())
    }
}

fn backend(server: &TestServer, more: Value) -> Backend {
    let mut own = json!({"base_url": server.base_url(), "model": "m", "timeout_ms": 5000});
    own.as_object_mut().unwrap().extend(more.as_object().unwrap().clone());
    Backend::new(Settings::from_config(&own, &Overrides::default(), |_| None).unwrap()).unwrap()
}

fn hello() -> ProviderCompleteParams {
    let user = ChatMessage {
        role: Role::User,
        content: "hi".into(),
        tool_calls: None,
        tool_call_id: None,
    };
    ProviderCompleteParams {
        provider_id: "openai".into(),
        model: "default".into(),
        messages: vec![user],
        tools: vec![],
        traceparent: None,
    }
}

/// A text answer: a keep-alive, a role-only delta, "Café 😀 ok" in three deltas, the
/// finish, the usage and `[DONE]`.
fn text_answer() -> String {
    let mut body = String::from(": keep-alive\r\n\r\n");
    body += &delta(json!({"role": "assistant", "content": ""}));
    body += &delta(json!({"content": "Caf"}));
    body += &delta(json!({"content": "é 😀"}));
    body += ": ping\r\n\r\n";
    body += &delta(json!({"content": " ok"}));
    body += &finish("stop");
    body += &usage(9, 4);
    body += DONE;
    body
}

/// A tool-call answer: one call's id and name, then its arguments in two fragments; a
/// second call without id; the finish and the usage.
fn tool_answer() -> String {
    let mut body = String::new();
    body += &delta(json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0,
        "id": "call_a", "type": "function", "function": {"name": "clock_now", "arguments": ""}}]}));
    body += &delta(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"tz\""}}]}));
    body += &delta(
        json!({"tool_calls": [{"index": 0, "function": {"arguments": ": \"Europe/Paris\"}"}}]}),
    );
    body += &delta(json!({"tool_calls": [{"index": 1, "type": "function",
        "function": {"name": "ping", "arguments": ""}}]}));
    body += &delta(json!({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}));
    body += &finish("tool_calls");
    body += &usage(20, 7);
    body += DONE;
    body
}

/// The same answer as [`tool_answer`], whole.
fn tool_answer_whole() -> Value {
    json!({"choices": [{"message": {"role": "assistant", "content": null, "tool_calls": [
        {"id": "call_a", "type": "function",
         "function": {"name": "clock_now", "arguments": "{\"tz\": \"Europe/Paris\"}"}},
        {"type": "function", "function": {"name": "ping", "arguments": "{}"}},
    ]}, "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": 20, "completion_tokens": 7}})
}

/// Every event's data of `body` pushed into an assembler (`[DONE]` left out).
fn assemble(body: &str) -> (Assembler, Vec<ProviderChunk>) {
    let mut decoder = crate::sse::SseDecoder::new(MAX_ANSWER_BYTES);
    let mut answer = Assembler::default();
    let mut deltas = Vec::new();
    for event in decoder.feed(body.as_bytes()).unwrap() {
        if event.data != "[DONE]" {
            deltas.extend(answer.push(&event.data).unwrap());
        }
    }
    (answer, deltas)
}

#[test]
fn assembles_text_as_a_whole_answer_would_be_read() {
    let (answer, deltas) = assemble(&text_answer());
    assert_eq!(deltas, [text("Caf"), text("é 😀"), text(" ok")]);
    assert!(answer.finished());
    let whole = json!({"choices": [{"message": {"role": "assistant", "content": "Café 😀 ok"}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4}});
    let expected = parse_completion(whole.to_string().as_bytes(), 0).unwrap();
    assert_eq!(answer.finish(0).unwrap(), expected);
}

#[test]
fn assembles_tool_calls_as_a_whole_answer_would_be_read() {
    let (answer, deltas) = assemble(&tool_answer());
    assert_eq!(
        deltas,
        [
            call(0, Some("call_a"), Some("clock_now"), None),
            call(0, None, None, Some("{\"tz\"")),
            call(0, None, None, Some(": \"Europe/Paris\"}")),
            call(1, None, Some("ping"), None),
            call(1, None, None, Some("{}")),
        ]
    );
    let done = answer.finish(3).unwrap();
    assert_eq!(done, parse_completion(tool_answer_whole().to_string().as_bytes(), 3).unwrap());
    let calls = done.message.tool_calls.unwrap();
    assert_eq!(calls[0].arguments, json!({"tz": "Europe/Paris"}));
    assert_eq!(calls[1].id, "call_5");
    assert_eq!(done.message.content, "");
}

#[test]
fn tool_call_deltas_without_an_index_follow_their_id() {
    let mut answer = Assembler::default();
    let pieces = [
        json!({"id": "a", "function": {"name": "one"}}),
        json!({"function": {"arguments": "{\"x\":"}}),
        json!({"function": {"arguments": "1}"}}),
        json!({"id": "b", "function": {"name": "two", "arguments": {"y": 2}}}),
        json!({"id": "a", "function": {"arguments": ""}}),
        json!({}),
    ];
    let mut deltas = Vec::new();
    for piece in pieces {
        let chunk = json!({"choices": [{"delta": {"tool_calls": [piece]}}]});
        deltas.extend(answer.push(&chunk.to_string()).unwrap());
    }
    assert_eq!(
        deltas,
        [
            call(0, Some("a"), Some("one"), None),
            call(0, None, None, Some("{\"x\":")),
            call(0, None, None, Some("1}")),
            call(1, Some("b"), Some("two"), Some("{\"y\":2}")),
            call(0, Some("a"), None, None),
        ]
    );
    assert!(!answer.finished());
    let calls = answer.finish(0).unwrap().message.tool_calls.unwrap();
    assert_eq!((calls[0].name.as_str(), &calls[0].arguments), ("one", &json!({"x": 1})));
    assert_eq!((calls[1].name.as_str(), &calls[1].arguments), ("two", &json!({"y": 2})));
}

#[test]
fn unusable_chunks_are_errors() {
    let cases = [
        ("not json", "sent an event that is not a chat-completion chunk"),
        ("[1]", "sent an event that is not a chat-completion chunk"),
        (
            r#"{"error": {"message": "model crashed"}}"#,
            "reported an error mid-stream: model crashed",
        ),
        (r#"{"error": "overloaded"}"#, "reported an error mid-stream: overloaded"),
    ];
    for (data, expected) in cases {
        let why = Assembler::default().push(data).unwrap_err();
        assert!(why.contains(expected), "{data}: {why}");
    }
    let nameless = json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "x"}]}}]});
    let mut answer = Assembler::default();
    answer.push(&nameless.to_string()).unwrap();
    let why = answer.finish(0).unwrap_err();
    assert_eq!(why, "streamed an unusable answer: tool call 0 has no function name");
    let why = Assembler::default().finish(0).unwrap_err();
    assert_eq!(why, "streamed an unusable answer: it has no `choices`");
}

#[test]
fn too_much_text_is_an_error() {
    let mut answer = Assembler::default();
    let half = "x".repeat(MAX_ANSWER_BYTES / 2 + 1);
    let chunk = json!({"choices": [{"delta": {"content": half}}]}).to_string();
    answer.push(&chunk).unwrap();
    let why = answer.push(&chunk).unwrap_err();
    assert_eq!(why, format!("answered more than {MAX_ANSWER_BYTES} bytes"));
}

#[tokio::test]
async fn streams_text_cut_in_characters_json_and_line_ends() {
    let body = text_answer();
    let at = [
        offset(&body, "é", 1),          // in the middle of a two-byte character
        offset(&body, "😀", 2),         // in the middle of a four-byte one
        offset(&body, "\" ok\"", 3),    // in a JSON object
        offset(&body, "\r\n: ping", 1), // between \r and \n
        offset(&body, "[DONE]", 2),
    ];
    let parts = cut(body.as_bytes(), &at);
    assert!(std::str::from_utf8(&parts[0]).is_err(), "the first part ends mid-character");
    assert!(std::str::from_utf8(&parts[1]).is_err(), "the second part starts mid-character");
    assert!(parts[2].ends_with(b"\r") && parts[3].starts_with(b"\n: ping"));
    let server = TestServer::start(Reply::stream(&parts, End::Complete)).await;
    let sink = Collect::default();
    let done = backend(&server, json!({})).complete(&hello(), &sink).await.unwrap();

    assert_eq!(sink.deltas(), [text("Caf"), text("é 😀"), text(" ok")]);
    assert_eq!(sink.text(), done.message.content);
    assert_eq!(done.message.content, "Café 😀 ok");
    assert_eq!(done.message.tool_calls, None);
    assert_eq!(
        Value::Object(done.usage.unwrap()),
        json!({"promptTokens": 9, "completionTokens": 4})
    );
    let request = server.requests()[0].json();
    assert_eq!(request["stream"], true);
    assert_eq!(request["stream_options"], json!({"include_usage": true}));
    assert_eq!(request["model"], "m");
}

#[tokio::test]
async fn streams_tool_calls_in_fragments() {
    let body = tool_answer();
    let at = [offset(&body, "Europe", 3), offset(&body, "ping", 2), offset(&body, "usage", 0)];
    let server = TestServer::start(Reply::stream(&cut(body.as_bytes(), &at), End::Complete)).await;
    let sink = Collect::default();
    let done = backend(&server, json!({})).complete(&hello(), &sink).await.unwrap();

    assert_eq!(sink.deltas().len(), 5);
    assert_eq!(sink.deltas()[0], call(0, Some("call_a"), Some("clock_now"), None));
    let arguments: String = sink
        .deltas()
        .into_iter()
        .filter_map(|d| match d {
            ProviderChunk::ToolCallDelta { index: 0, arguments, .. } => arguments,
            _ => None,
        })
        .collect();
    assert_eq!(arguments, "{\"tz\": \"Europe/Paris\"}");
    let whole = parse_completion(tool_answer_whole().to_string().as_bytes(), 0).unwrap();
    assert_eq!(done, whole);
    assert_eq!(done.message.tool_calls.as_ref().unwrap()[1].id, "call_2");
    assert_eq!(
        Value::Object(done.usage.unwrap()),
        json!({"promptTokens": 20, "completionTokens": 7})
    );
}

#[tokio::test]
async fn the_end_of_the_body_after_a_finish_reason_completes_the_answer() {
    let body = delta(json!({"content": "Hi"})) + &finish("stop");
    let server = TestServer::start(Reply::stream(&[body], End::Complete)).await;
    let sink = Collect::default();
    let done = backend(&server, json!({})).complete(&hello(), &sink).await.unwrap();
    assert_eq!(done.message.content, "Hi");
    assert_eq!(done.usage, None);
}

#[tokio::test]
async fn a_stream_that_stops_early_is_an_error() {
    let url = |server: &TestServer| format!("{}/chat/completions", server.base_url());
    let start = delta(json!({"content": "Hal"})) + "data: {\"choices\": [{\"delta\": {\"con";

    // The connection closes without ending the body.
    let server = TestServer::start(Reply::stream(std::slice::from_ref(&start), End::Cut)).await;
    let sink = Collect::default();
    let e = backend(&server, json!({})).complete(&hello(), &sink).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::UnknownError);
    let expected = format!(
        "the model server at {} closed the stream before the answer was complete: ",
        url(&server)
    );
    assert!(e.message.starts_with(&expected), "{}", e.message);
    assert_eq!(sink.deltas(), [text("Hal")]);

    // The body ends properly, but the answer does not.
    let server = TestServer::start(Reply::stream(&[start], End::Complete)).await;
    let e = backend(&server, json!({})).complete(&hello(), &Discard).await.unwrap_err();
    assert_eq!(
        e.message,
        format!(
            "the model server at {} closed the stream before the answer was complete \
             (no `finish_reason` or `[DONE]`)",
            url(&server)
        )
    );
}

#[tokio::test]
async fn errors_in_the_stream_are_errors() {
    let cases = [
        (
            "data: {\"error\": {\"message\": \"KV cache full\"}}\n\n",
            "reported an error mid-stream: KV cache full",
        ),
        (
            "event: error\ndata: {\"message\": \"overloaded\"}\n\n",
            "reported an error mid-stream: overloaded",
        ),
        ("data: <html>\n\n", "sent an event that is not a chat-completion chunk"),
    ];
    for (event, expected) in cases {
        let body = delta(json!({"content": "a"})) + event + DONE;
        let server = TestServer::start(Reply::stream(&[body], End::Complete)).await;
        let e = backend(&server, json!({})).complete(&hello(), &Discard).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownError);
        assert!(e.message.contains(expected), "{event}: {}", e.message);
        assert!(e.message.starts_with("the model server at http://127.0.0.1:"), "{}", e.message);
    }
}

#[tokio::test]
async fn events_of_other_types_are_ignored() {
    let body = String::from("event: ping\ndata: {}\n\n")
        + &delta(json!({"content": "ok"}))
        + &finish("stop")
        + DONE;
    let server = TestServer::start(Reply::stream(&[body], End::Complete)).await;
    let done = backend(&server, json!({})).complete(&hello(), &Discard).await.unwrap();
    assert_eq!(done.message.content, "ok");
}

#[tokio::test]
async fn error_statuses_and_whole_answers_are_read_as_without_streaming() {
    let server = TestServer::start(Reply::json(
        400,
        json!({"error": {"message": "stream_options is not supported"}}),
    ))
    .await;
    let e = backend(&server, json!({})).complete(&hello(), &Discard).await.unwrap_err();
    assert!(
        e.message.ends_with("answered HTTP 400 Bad Request: stream_options is not supported"),
        "{}",
        e.message
    );

    // A server that ignores `"stream": true`.
    let whole = json!({"choices": [{"message": {"content": "whole"}}]});
    let server = TestServer::start(Reply::json(200, whole)).await;
    let sink = Collect::default();
    let done = backend(&server, json!({})).complete(&hello(), &sink).await.unwrap();
    assert_eq!(done.message.content, "whole");
    assert!(sink.deltas().is_empty());
    assert_eq!(server.requests()[0].json()["stream"], true);
}

#[tokio::test]
async fn stream_false_asks_for_a_whole_answer() {
    let whole = json!({"choices": [{"message": {"content": "whole"}}]});
    let server = TestServer::start(Reply::json(200, whole)).await;
    let done = backend(&server, json!({"stream": false})).complete(&hello(), &Discard).await;
    assert_eq!(done.unwrap().message.content, "whole");
    let request = server.requests()[0].json();
    assert_eq!(request.get("stream"), None);
    assert_eq!(request.get("stream_options"), None);
}

#[tokio::test]
async fn a_stream_that_stalls_times_out() {
    let server =
        TestServer::start(Reply::stream(&[delta(json!({"content": "slow"}))], End::Hold)).await;
    let sink = Collect::default();
    let backend = backend(&server, json!({"timeout_ms": 300}));
    let e = backend.complete(&hello(), &sink).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Timeout);
    assert!(e.message.ends_with("did not finish its answer within 300 ms"), "{}", e.message);
    assert_eq!(sink.deltas(), [text("slow")]);
}

#[tokio::test]
async fn dropping_the_completion_closes_the_connection() {
    let server =
        TestServer::start(Reply::stream(&[delta(json!({"content": "one"}))], End::Hold)).await;
    let backend = Arc::new(backend(&server, json!({})));
    let sink = Arc::new(Collect::default());
    let task = tokio::spawn({
        let (backend, sink) = (backend.clone(), sink.clone());
        async move { backend.complete(&hello(), &*sink).await }
    });
    tokio::time::timeout(WAIT, sink.first.notified()).await.unwrap();
    assert!(!task.is_finished());
    task.abort();
    assert!(server.wait_client_gone(1, WAIT).await, "the server still holds the connection");
}

#[tokio::test]
async fn a_provider_context_forwards_the_deltas_to_the_kernel() {
    let body = text_answer();
    let server = TestServer::start(Reply::stream(&[body], End::Complete)).await;
    let backend = Arc::new(backend(&server, json!({})));
    let app = App::new(Manifest::new("openai-provider", "0.0.0")).provider(
        "openai",
        vec!["m".into()],
        move |params, cx| {
            let backend = backend.clone();
            async move { backend.complete(&params, &cx).await }
        },
    );
    let (kernel, transport) = FakeKernel::new();
    tokio::spawn(app.run_on(transport, std::future::pending()));
    kernel.wait_ready(WAIT).await.unwrap();

    let params = serde_json::to_value(hello()).unwrap();
    let mut stream = kernel.client().request_stream("provider.complete", params).await.unwrap();
    let mut chunks = Vec::new();
    let mut result = None;
    for _ in 0..100 {
        match tokio::time::timeout(WAIT, stream.next()).await.unwrap() {
            Some(Ok(StreamItem::Chunk(chunk))) => {
                chunks.push(serde_json::from_value::<ProviderChunk>(chunk).unwrap());
            }
            Some(Ok(StreamItem::End(value))) => {
                result = Some(serde_json::from_value::<ProviderCompleteResult>(value).unwrap());
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(chunks, [text("Caf"), text("é 😀"), text(" ok")]);
    assert_eq!(result.unwrap().message.content, "Café 😀 ok");
}

/// What the tests above rely on: the client reads the server's parts apart, so the
/// decoder really gets a character or a line end cut in two.
#[tokio::test]
async fn the_test_servers_parts_reach_the_client_apart() {
    let body = text_answer();
    let at = [offset(&body, "é", 1), offset(&body, "\r\n: ping", 1)];
    let parts = cut(body.as_bytes(), &at);
    let server = TestServer::start(Reply::stream(&parts, End::Complete)).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("{}/chat/completions", server.base_url());
    let mut response = client.post(url).send().await.unwrap();
    let (mut read, mut ends) = (Vec::new(), Vec::new());
    while let Some(chunk) = response.chunk().await.unwrap() {
        read.extend_from_slice(&chunk);
        ends.push(read.len());
    }
    assert_eq!(read, body.as_bytes());
    for end in at {
        assert!(ends.contains(&end), "a read went past the end of a part, at {end}: {ends:?}");
    }
}
