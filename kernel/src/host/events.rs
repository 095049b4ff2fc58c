//! A turn's steps as the host contract's agent events ([`Envelopes`]): Burrow's session
//! events of one run (`run`, `text_delta`, `message`) become `session/event`
//! notification params `{session_id, event}`, each event an envelope `{event_id (UUID),
//! source: {type: "session", session_id}, seq, timestamp_ms, payload}` whose payload is
//! one of the contract's event types:
//!
//! | Burrow | contract |
//! |---|---|
//! | the run starts | `run_started {session_id, input, identity: {run_id}}`, `turn_started {turn_number}` |
//! | `text_delta` | `text_delta {delta}` (a turn after tool calls first opens with `turn_started`) |
//! | an assistant message with tool calls | `text_complete` (when it has text), `turn_completed {stop_reason: "tool_use"}`, `tool_call_requested {id, name, args}` per call |
//! | a tool result | `tool_result_received {id, name, is_error: false, content: [text block]}` |
//! | the final assistant message | `text_complete {content}`, `turn_completed {stop_reason: "end_turn"}` (`"cancelled"` for what a cancelled run had said) |
//! | the run completes | `run_completed {session_id, result, usage}` |
//! | the run fails or is cancelled | `run_failed {session_id, error_report: {class, message}}` (`class` `"cancelled"` or `"llm"`) |
//! | the follower lags | `stream_truncated {reason: {kind: "stream_lagged", dropped: 0}}` |
//!
//! Burrow's tool-call deltas have no counterpart and are not sent; events of other runs
//! (and messages outside this run) are skipped.

use std::collections::HashMap;

use burrow_protocol::{Value, now_ms};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde_json::json;

/// The envelopes of one run's events ([`Envelopes::new`]), or of every run of a session
/// ([`Envelopes::session`]), numbered from 1.
#[derive(Debug)]
pub struct Envelopes {
    session_id: String,
    run_id: String,
    /// Every run of the session, each in turn (a subscription), not one.
    every_run: bool,
    prompt: String,
    seq: u64,
    /// The provider call under way, from 1 (0: the run has not started).
    turn: u64,
    /// A turn ended with tool calls: the next step opens another.
    between_turns: bool,
    ended: bool,
    /// Tool names by call id, for their results.
    tools: HashMap<String, String>,
    /// A subscription's: the inputs of runs not started yet, by run.
    inputs: HashMap<String, Vec<String>>,
}

impl Envelopes {
    /// For run `run_id` of session `session_id`, whose input is `prompt`.
    pub fn new(session_id: &str, run_id: &str, prompt: &str) -> Self {
        Self {
            session_id: session_id.to_owned(),
            run_id: run_id.to_owned(),
            every_run: false,
            prompt: prompt.to_owned(),
            seq: 0,
            turn: 0,
            between_turns: false,
            ended: false,
            tools: HashMap::new(),
            inputs: HashMap::new(),
        }
    }

    /// For every run of session `session_id` from now on (a subscription): each run's
    /// input is the user messages it answers (those stored with its id).
    pub fn session(session_id: &str) -> Self {
        Self { every_run: true, ended: true, ..Self::new(session_id, "", "") }
    }

    /// A subscription's next run: its steps start over (the numbering goes on).
    fn next_run(&mut self, run_id: &str) {
        self.prompt = self.inputs.remove(run_id).unwrap_or_default().join("\n");
        self.run_id = run_id.to_owned();
        (self.turn, self.between_turns, self.ended) = (0, false, false);
        self.tools.clear();
    }

    /// The notification params `{session_id, event}` of one payload.
    fn note(&mut self, payload: Value) -> Value {
        self.seq += 1;
        let event = json!({
            "event_id": uuid::Uuid::now_v7().to_string(),
            "source": { "type": "session", "session_id": self.session_id },
            "seq": self.seq,
            "timestamp_ms": now_ms(),
            "payload": payload,
        });
        json!({ "session_id": self.session_id, "event": event })
    }

    /// `run_started` and the first `turn_started`, once.
    fn start(&mut self, out: &mut Vec<Value>) {
        if self.turn > 0 {
            return;
        }
        self.turn = 1;
        let started = json!({
            "type": "run_started", "session_id": self.session_id,
            "input": { "kind": "content", "content": self.prompt },
            "identity": { "run_id": self.run_id },
        });
        out.push(self.note(started));
        out.push(self.note(json!({ "type": "turn_started", "turn_number": 1 })));
    }

    /// The next turn's `turn_started`, after a turn that called tools.
    fn next_turn(&mut self, out: &mut Vec<Value>) {
        self.start(out);
        if self.between_turns {
            self.between_turns = false;
            self.turn += 1;
            out.push(self.note(json!({ "type": "turn_started", "turn_number": self.turn })));
        }
    }

    /// The notifications session event `event` makes for this run (none for most).
    pub fn of(&mut self, event: &Value) -> Vec<Value> {
        let mut out = Vec::new();
        if self.every_run {
            let run_id = event["run_id"].as_str().unwrap_or_default();
            match (event["type"].as_str(), event["role"].as_str()) {
                (Some("message"), Some("user")) if !run_id.is_empty() && run_id != self.run_id => {
                    let text = event["content"].as_str().unwrap_or_default().to_owned();
                    self.inputs.entry(run_id.to_owned()).or_default().push(text);
                }
                (Some("run"), _) if run_id != self.run_id && event["status"] == "running" => {
                    self.next_run(run_id);
                }
                (Some("run"), _) if run_id != self.run_id => {
                    // A run that ends without having run (cancelled while queued).
                    if matches!(
                        event["status"].as_str(),
                        Some("completed" | "failed" | "cancelled")
                    ) {
                        self.inputs.remove(run_id);
                    }
                }
                _ => {}
            }
        }
        if self.ended {
            return out;
        }
        let ours = event["run_id"] == self.run_id.as_str();
        match event["type"].as_str() {
            Some("run") if ours => self.run(event, &mut out),
            Some("text_delta") if ours => {
                self.next_turn(&mut out);
                let delta = event["text"].as_str().unwrap_or_default();
                out.push(self.note(json!({ "type": "text_delta", "delta": delta })));
            }
            // The run's own steps: between its start and its end, the session runs
            // nothing else.
            Some("message") if self.turn > 0 => self.message(event, &mut out),
            _ => {}
        }
        out
    }

    fn run(&mut self, event: &Value, out: &mut Vec<Value>) {
        let status = event["status"].as_str().unwrap_or_default();
        if !matches!(status, "running" | "completed" | "failed" | "cancelled") {
            return;
        }
        self.start(out);
        let payload = match status {
            "completed" => json!({
                "type": "run_completed", "session_id": self.session_id,
                "result": event["output"].as_str().unwrap_or_default(),
                "usage": usage(event),
            }),
            "failed" => json!({
                "type": "run_failed", "session_id": self.session_id,
                "error_report": { "class": "llm", "message": event["error"].as_str().unwrap_or("the run failed") },
            }),
            "cancelled" => json!({
                "type": "run_failed", "session_id": self.session_id,
                "error_report": { "class": "cancelled", "message": "the turn was interrupted" },
            }),
            _ => return,
        };
        self.ended = true;
        out.push(self.note(payload));
    }

    fn message(&mut self, event: &Value, out: &mut Vec<Value>) {
        match event["role"].as_str() {
            Some("assistant") => {
                self.next_turn(out);
                let content = event["content"].as_str().unwrap_or_default();
                let calls = event["tool_calls"].as_array().filter(|c| !c.is_empty());
                if calls.is_none() || !content.is_empty() {
                    out.push(self.note(json!({ "type": "text_complete", "content": content })));
                }
                let Some(calls) = calls else {
                    let cut = event["metadata"]["cutShort"].is_string();
                    let stop = if cut { "cancelled" } else { "end_turn" };
                    out.push(self.note(json!({ "type": "turn_completed", "stop_reason": stop })));
                    return;
                };
                out.push(self.note(json!({ "type": "turn_completed", "stop_reason": "tool_use" })));
                for call in calls.clone() {
                    let (id, name) = (call["id"].as_str(), call["name"].as_str());
                    let (id, name) = (id.unwrap_or_default(), name.unwrap_or_default());
                    self.tools.insert(id.to_owned(), name.to_owned());
                    let args = call.get("arguments").cloned().unwrap_or_else(|| json!({}));
                    let requested = json!({ "type": "tool_call_requested", "id": id, "name": name, "args": args });
                    out.push(self.note(requested));
                }
                self.between_turns = true;
            }
            Some("tool") => {
                let id = event["tool_call_id"].as_str().unwrap_or_default().to_owned();
                let name = self.tools.get(&id).cloned().unwrap_or_default();
                let text = event["content"].as_str().unwrap_or_default();
                let received = json!({
                    "type": "tool_result_received", "id": id, "name": name, "is_error": false,
                    "content": [{ "type": "text", "text": text }],
                });
                out.push(self.note(received));
            }
            _ => {}
        }
    }

    /// The notification saying the follower lost steps (it fell too far behind).
    pub fn lagged(&mut self) -> Vec<Value> {
        let truncated = json!({ "type": "stream_truncated", "reason": { "kind": "stream_lagged", "dropped": 0 } });
        vec![self.note(truncated)]
    }
}

/// Every run of session `session_id` as the host contract's envelopes (REST's event
/// stream): first `{type: "session_loaded", session_id, message_count}`, then each
/// envelope `{event_id, source, seq, timestamp_ms, payload}` of [`Envelopes::session`];
/// a follower that falls behind gets `stream_truncated`, and the stream ends.
pub fn envelope_stream(
    session_id: &str,
    message_count: u64,
    events: BoxStream<'static, Value>,
) -> BoxStream<'static, Value> {
    let loaded = json!({ "type": "session_loaded", "session_id": session_id, "message_count": message_count });
    let mut envelopes = Envelopes::session(session_id);
    // The follower's stream ends after its `lagged` event.
    let steps = events.flat_map(move |event| {
        let notes = match event["type"] == "lagged" {
            true => envelopes.lagged(),
            false => envelopes.of(&event),
        };
        futures_util::stream::iter(notes.into_iter().map(|mut n| n["event"].take()))
    });
    futures_util::stream::once(std::future::ready(loaded)).chain(steps).boxed()
}

/// A run event's `usage` in the contract's shape.
fn usage(event: &Value) -> Value {
    let tokens = |name: &str| event["usage"][name].as_u64().unwrap_or(0);
    json!({ "input_tokens": tokens("input_tokens"), "output_tokens": tokens("output_tokens") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads(notes: Vec<Value>) -> Vec<Value> {
        notes.into_iter().map(|n| n["event"]["payload"].clone()).collect()
    }

    #[test]
    fn a_run_with_a_tool_call_becomes_the_contracts_events_in_order() {
        let sid = "0193a1b2-0000-7000-8000-000000000001";
        let mut env = Envelopes::new(sid, "r1", "weather?");
        let run = |status: &str| json!({"type": "run", "run_id": "r1", "status": status, "output": "sunny", "usage": {"input_tokens": 7, "output_tokens": 3}});
        let mut all = Vec::new();
        // Another run's events and the input message are not this run's steps.
        all.extend(env.of(&json!({"type": "text_delta", "run_id": "r0", "text": "old"})));
        all.extend(env.of(&json!({"type": "message", "role": "user", "content": "weather?"})));
        all.extend(env.of(&run("running")));
        let call = json!([{"id": "c1", "name": "forecast", "arguments": {"city": "Oslo"}}]);
        all.extend(env.of(
            &json!({"type": "message", "role": "assistant", "content": "", "tool_calls": call}),
        ));
        all.extend(env.of(
            &json!({"type": "message", "role": "tool", "tool_call_id": "c1", "content": "sun"}),
        ));
        all.extend(env.of(&json!({"type": "text_delta", "run_id": "r1", "text": "sunny"})));
        all.extend(env.of(&json!({"type": "message", "role": "assistant", "content": "sunny"})));
        all.extend(env.of(&run("completed")));
        all.extend(env.of(&json!({"type": "text_delta", "run_id": "r1", "text": "late"})));
        let seqs: Vec<u64> = all.iter().map(|n| n["event"]["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
        for note in &all {
            assert_eq!(note["session_id"], sid);
            assert_eq!(note["event"]["source"], json!({"type": "session", "session_id": sid}));
            let id = note["event"]["event_id"].as_str().unwrap();
            assert_eq!(uuid::Uuid::parse_str(id).unwrap().to_string(), id, "canonical");
        }
        let types: Vec<String> =
            payloads(all).iter().map(|p| p["type"].as_str().unwrap().to_owned()).collect();
        assert_eq!(
            types,
            [
                "run_started",
                "turn_started",
                "turn_completed",
                "tool_call_requested",
                "tool_result_received",
                "turn_started",
                "text_delta",
                "text_complete",
                "turn_completed",
                "run_completed",
            ]
        );
    }

    #[test]
    fn a_subscription_gives_each_run_the_inputs_stored_with_it() {
        let mut env = Envelopes::session("s");
        let input = |run: &str, text: &str| json!({"type": "message", "role": "user", "run_id": run, "content": text});
        let run = |run: &str, status: &str| json!({"type": "run", "run_id": run, "status": status});
        env.of(&input("r1", "first"));
        let started = payloads(env.of(&run("r1", "running")));
        assert_eq!(started[0]["input"]["content"], "first");
        // Queued while r1 runs: r2's input, not r1's.
        env.of(&input("r2", "second"));
        env.of(&input("r2", "and more"));
        env.of(&run("r1", "completed"));
        let started = payloads(env.of(&run("r2", "running")));
        assert_eq!(started[0]["input"]["content"], "second\nand more");
        assert_eq!(started[0]["identity"]["run_id"], "r2");
        // A queued run cancelled before it ran leaves nothing behind.
        env.of(&input("r3", "never"));
        env.of(&run("r3", "cancelled"));
        assert!(env.inputs.is_empty());
    }

    #[test]
    fn a_cancelled_run_ends_with_run_failed_of_class_cancelled() {
        let mut env = Envelopes::new("s", "r1", "go");
        env.of(&json!({"type": "run", "run_id": "r1", "status": "running"}));
        let cut = json!({"type": "message", "role": "assistant", "content": "Once", "metadata": {"cutShort": "cancelled"}});
        let said = payloads(env.of(&cut));
        assert_eq!(said[1], json!({"type": "turn_completed", "stop_reason": "cancelled"}));
        let end = payloads(env.of(&json!({"type": "run", "run_id": "r1", "status": "cancelled"})));
        assert_eq!(end[0]["type"], "run_failed");
        assert_eq!(end[0]["error_report"]["class"], "cancelled");
    }
}
