//! Streamed chat completions (`"stream": true`, `"stream_options": {"include_usage":
//! true}`): the server answers `text/event-stream`, one `chat.completion.chunk` object per
//! `data:` event, then `data: [DONE]`. [`read_stream`] reads such a body through an
//! [`SseDecoder`], hands each chunk to an [`Assembler`], forwards the deltas it yields to a
//! [`Deltas`] sink as they come, and ends with the same [`ProviderCompleteResult`] that
//! [`parse_completion`](super::parse_completion) makes of the whole answer.
//!
//! - `choices[0].delta.content` is a [`ProviderChunk::TextDelta`]; each
//!   `choices[0].delta.tool_calls[i]` is a [`ProviderChunk::ToolCallDelta`] `{index, id?,
//!   name?, arguments?}` (the id and name come first, the arguments in fragments; a delta
//!   without `index` continues the call with its id, else the last one). The message is
//!   the text deltas joined and each call's fragments joined, then mapped as a whole
//!   answer is (arguments parsed, missing ids made up, ...);
//! - `usage` (on the last chunk, whose `choices` is empty) is the result's usage;
//! - the answer is complete at `[DONE]`, or at the end of the body after a
//!   `finish_reason`. A body that ends before either, or breaks off, is an error, as is an
//!   `error` object in a chunk, an `event: error`, a chunk that is not JSON, or more than
//!   [`MAX_ANSWER_BYTES`] of text and arguments. Events of other types are ignored.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use burrow_sdk::{ErrorCode, ErrorObject, ProviderChunk, ProviderCompleteResult, ProviderContext};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    AnswerFunction, AnswerMessage, AnswerToolCall, Choice, Completion, MAX_ANSWER_BYTES, Usage,
    causes, completion_result, content, error_message, quote,
};
use crate::sse::{Event, SseDecoder};

/// The most tool calls one streamed message may have.
const MAX_TOOL_CALLS: usize = 1024;

/// Where the deltas of a streamed answer go, in order, as they arrive.
pub trait Deltas: Sync {
    /// Forwards one delta; an `Err` (the kernel is gone) ends the completion.
    fn forward(&self, delta: ProviderChunk) -> impl Future<Output = Result<(), String>> + Send;
}

/// To the kernel, as chunks of the `provider.complete` being answered.
impl Deltas for ProviderContext {
    async fn forward(&self, delta: ProviderChunk) -> Result<(), String> {
        self.chunk(delta).await.map_err(|e| e.to_string())
    }
}

/// To the kernel, as chunks of the request a raw handler (`App::on`) serves.
impl Deltas for burrow_sdk::Context {
    async fn forward(&self, delta: ProviderChunk) -> Result<(), String> {
        let chunk = serde_json::to_value(&delta).map_err(|e| e.to_string())?;
        self.chunk(chunk).await.map_err(|e| e.to_string())
    }
}

/// Nowhere: only the result carries the answer (for tests of the result alone).
#[cfg(test)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Discard;

#[cfg(test)]
impl Deltas for Discard {
    async fn forward(&self, _: ProviderChunk) -> Result<(), String> {
        Ok(())
    }
}

/// The part of a `chat.completion.chunk` this app reads; as for a whole completion,
/// everything is optional so that the checks, not the decoder, say what is wrong.
#[derive(Debug, Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Option<Vec<ChunkChoice>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default)]
    delta: Option<MessageDelta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct MessageDelta {
    #[serde(default)]
    content: Value,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Debug, Deserialize)]
struct ToolCallDelta {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Debug, Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Value,
}

/// One tool call, as far as its deltas went.
#[derive(Debug, Default)]
struct CallParts {
    id: Option<String>,
    name: Option<String>,
    arguments: String,
}

/// The answer so far, from the chunks read.
#[derive(Debug, Default)]
pub struct Assembler {
    content: String,
    /// By index.
    calls: BTreeMap<u32, CallParts>,
    /// The last usage seen.
    usage: Option<Usage>,
    /// A chunk had a choice 0 (an answer without one has no `choices`).
    answered: bool,
    /// Choice 0 had a `finish_reason`.
    finished: bool,
    /// Bytes of text and arguments held.
    size: usize,
}

impl Assembler {
    /// Reads one chunk (an event's data); returns the deltas it adds, in order. `Err` says
    /// what is wrong, after "the model server at URL ...".
    pub fn push(&mut self, data: &str) -> Result<Vec<ProviderChunk>, String> {
        let chunk: Chunk = serde_json::from_str(data)
            .map_err(|e| format!("sent an event that is not a chat-completion chunk ({e})"))?;
        if let Some(error) = chunk.error {
            let message = error_message(&json!({ "error": error }))
                .unwrap_or_else(|| "an error without a message".to_owned());
            return Err(format!("reported an error mid-stream: {message}"));
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        let choice = chunk.choices.into_iter().flatten().find(|c| c.index.unwrap_or(0) == 0);
        let Some(choice) = choice else { return Ok(Vec::new()) };
        self.answered = true;
        self.finished |= choice.finish_reason.is_some();
        let mut deltas = Vec::new();
        let Some(delta) = choice.delta else { return Ok(deltas) };
        let text = content(delta.content);
        if !text.is_empty() {
            self.grow(text.len())?;
            self.content.push_str(&text);
            deltas.push(ProviderChunk::TextDelta { text });
        }
        for call in delta.tool_calls.into_iter().flatten() {
            deltas.extend(self.add_call(call)?);
        }
        Ok(deltas)
    }

    /// Whether choice 0 has had its `finish_reason`.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// The whole answer, mapped as [`parse_completion`](super::parse_completion) maps a
    /// whole one (`first_call` as there).
    pub fn finish(self, first_call: usize) -> Result<ProviderCompleteResult, String> {
        let tool_calls: Vec<AnswerToolCall> = self
            .calls
            .into_values()
            .map(|call| AnswerToolCall {
                id: call.id,
                function: Some(AnswerFunction {
                    name: call.name,
                    arguments: Value::String(call.arguments),
                }),
            })
            .collect();
        let message =
            AnswerMessage { content: Value::String(self.content), tool_calls: Some(tool_calls) };
        let completion = Completion {
            choices: self.answered.then(|| vec![Choice { message: Some(message) }]),
            usage: self.usage,
            error: None,
        };
        completion_result(completion, first_call)
            .map_err(|why| format!("streamed an unusable answer: {why}"))
    }

    /// Adds a tool-call delta; returns what to forward (nothing when it is empty).
    fn add_call(&mut self, call: ToolCallDelta) -> Result<Option<ProviderChunk>, String> {
        let id = call.id.filter(|id| !id.is_empty());
        let function =
            call.function.unwrap_or(FunctionDelta { name: None, arguments: Value::Null });
        let name = function.name.filter(|name| !name.is_empty());
        let arguments = match function.arguments {
            Value::Null => None,
            Value::String(text) => Some(text).filter(|text| !text.is_empty()),
            other => Some(other.to_string()),
        };
        if id.is_none() && name.is_none() && arguments.is_none() {
            return Ok(None);
        }
        let index = call.index.unwrap_or_else(|| self.index_of(id.as_deref()));
        if !self.calls.contains_key(&index) && self.calls.len() >= MAX_TOOL_CALLS {
            return Err(format!("streamed more than {MAX_TOOL_CALLS} tool calls"));
        }
        self.grow(arguments.as_ref().map_or(0, String::len))?;
        let parts = self.calls.entry(index).or_default();
        if id.is_some() {
            parts.id.clone_from(&id);
        }
        if name.is_some() {
            parts.name.clone_from(&name);
        }
        if let Some(arguments) = &arguments {
            parts.arguments.push_str(arguments);
        }
        Ok(Some(ProviderChunk::ToolCallDelta { index, id, name, arguments }))
    }

    /// The index of a tool-call delta that has none: the call with its id, a new call for
    /// an id not seen yet, else the last call.
    fn index_of(&self, id: Option<&str>) -> u32 {
        let last = self.calls.keys().next_back().copied();
        match id {
            Some(id) => self
                .calls
                .iter()
                .find(|(_, call)| call.id.as_deref() == Some(id))
                .map(|(index, _)| *index)
                .unwrap_or_else(|| last.map_or(0, |last| last.saturating_add(1))),
            None => last.unwrap_or(0),
        }
    }

    /// Counts `more` bytes of text or arguments against [`MAX_ANSWER_BYTES`].
    fn grow(&mut self, more: usize) -> Result<(), String> {
        self.size += more;
        if self.size > MAX_ANSWER_BYTES {
            return Err(format!("answered more than {MAX_ANSWER_BYTES} bytes"));
        }
        Ok(())
    }
}

/// `UNKNOWN_ERROR`: "the model server at `url` `why`".
fn failed(url: &str, why: &str) -> ErrorObject {
    ErrorObject::new(ErrorCode::UnknownError, format!("the model server at {url} {why}"))
        .with_data(json!({ "url": url }))
}

/// The error for a body that could not be read to its end: `TIMEOUT` when the deadline
/// passed, else `UNKNOWN_ERROR` with every cause.
fn broken(url: &str, timeout: Duration, e: &reqwest::Error) -> ErrorObject {
    if e.is_timeout() {
        let ms = timeout.as_millis();
        return ErrorObject::new(
            ErrorCode::Timeout,
            format!("the model server at {url} did not finish its answer within {ms} ms"),
        )
        .with_data(json!({ "url": url }));
    }
    failed(url, &format!("closed the stream before the answer was complete: {}", causes(e)))
}

/// Takes one event: forwards its deltas; `Ok(true)` at `[DONE]`.
async fn take(
    answer: &mut Assembler,
    event: Event,
    deltas: &impl Deltas,
    url: &str,
) -> Result<bool, ErrorObject> {
    match event.kind.as_deref() {
        None | Some("message") => {}
        Some("error") => {
            let detail = serde_json::from_str::<Value>(&event.data)
                .ok()
                .and_then(|json| error_message(&json))
                .unwrap_or_else(|| quote(event.data.as_bytes()));
            return Err(failed(url, &format!("reported an error mid-stream: {detail}")));
        }
        Some(other) => {
            tracing::debug!(event = other, "ignored a stream event of another type");
            return Ok(false);
        }
    }
    if event.data.trim() == "[DONE]" {
        return Ok(true);
    }
    let new = answer.push(&event.data).map_err(|why| {
        failed(url, &why).with_data(json!({ "url": url, "event": quote(event.data.as_bytes()) }))
    })?;
    for delta in new {
        if let Err(e) = deltas.forward(delta).await {
            let message = format!("cannot forward the answer to the kernel: {e}");
            return Err(ErrorObject::new(ErrorCode::UnknownError, message));
        }
    }
    Ok(false)
}

/// Reads the streamed answer `response` (a success, `text/event-stream`) to its end,
/// forwarding its deltas to `deltas`. `url` and `timeout` are for the errors; `first_call`
/// as for [`parse_completion`](super::parse_completion). Dropping the future drops the
/// response, which closes the connection.
pub async fn read_stream(
    mut response: reqwest::Response,
    deltas: &impl Deltas,
    url: &str,
    timeout: Duration,
    first_call: usize,
) -> Result<ProviderCompleteResult, ErrorObject> {
    let mut decoder = SseDecoder::new(MAX_ANSWER_BYTES);
    let mut answer = Assembler::default();
    let mut done = false;
    // Each turn reads a chunk of the body, which the client's deadline bounds.
    while !done {
        let Some(bytes) = response.chunk().await.map_err(|e| broken(url, timeout, &e))? else {
            if let Some(event) = decoder.finish() {
                done = take(&mut answer, event, deltas, url).await?;
            }
            if !done && !answer.finished() {
                let why = "closed the stream before the answer was complete \
                    (no `finish_reason` or `[DONE]`)";
                return Err(failed(url, why));
            }
            break;
        };
        let events = decoder.feed(&bytes).map_err(|e| failed(url, &format!("sent {e}")))?;
        for event in events {
            if take(&mut answer, event, deltas, url).await? {
                done = true;
                break;
            }
        }
    }
    drop(response);
    answer.finish(first_call).map_err(|why| failed(url, &why))
}

#[cfg(test)]
mod tests;
