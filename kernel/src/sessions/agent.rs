//! The agent loop. A run builds its context from the transcript, passes
//! `before_agent_start` (interceptable) and `llm_input`, asks the agent's provider app
//! (`provider.complete`), records `llm_output`, runs tool calls through the same path as
//! `tool.call` (with `before_tool_call`, `after_tool_call`, `tool_result_persist`) —
//! waiting a while for a provider or tool whose app is not there yet — loops
//! up to `max_turns`, stores every step, ends with `agent_end`, and delivers the reply
//! through the session's channel app ([`super::delivery`]). A run that takes steered
//! messages delivers the answer it had before it took them too. A run's final reply and
//! its end are one durable write, and the reply leaves for the channel the moment that
//! write is on disk. A run may start while its input is being written: it then asks its
//! provider meanwhile, and everything else waits behind its [`Gate`].

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use burrow_protocol::methods::Method;
use burrow_protocol::methods::capability::{CapabilityType, is_valid_tool_name};
use burrow_protocol::methods::invoke::{
    ChatMessage, ProviderComplete, ProviderCompleteParams, ProviderCompleteResult, Role,
    StreamEndReason, ToolCallParams, ToolCallRequest, ToolSpec,
};
use burrow_protocol::methods::session::{RunStatus, TranscriptMessage};
use burrow_protocol::{Map, Value, now_ms};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::AgentSpec;
use super::actor::context;
use super::delivery::{Direct, send_reply};
use super::gate::Gate;
use super::stream::RunStream;
use super::tail::{self, RunOutcome};
use crate::capabilities::{Capability, Unready};
use crate::hooks;
use crate::kernel::Kernel;
use crate::service::routing::InRun;
use crate::service::sessions::page_bytes;
use crate::service::timeline::Step;
use crate::store::{Fence, NewMessage, Page, RunRow, SessionRow, StoreError, Write, WriteDone};

/// A message steered into a running turn, taken at its next turn boundary.
#[derive(Debug)]
pub struct Steered {
    /// Its stored id.
    pub message_id: String,
    /// Its text.
    pub content: String,
    /// Its metadata.
    pub metadata: Option<Map>,
    /// Its share of the bytes waiting for the run, given back when it is taken.
    pub held: SteerBytes,
}

/// Bytes of steered messages waiting for a run: counted in, counted out when dropped.
#[derive(Debug)]
pub struct SteerBytes {
    waiting: Arc<std::sync::atomic::AtomicUsize>,
    bytes: usize,
}

impl SteerBytes {
    /// Counts `bytes` into `waiting`, unless that would pass `max`.
    pub fn take(
        waiting: &Arc<std::sync::atomic::AtomicUsize>,
        bytes: usize,
        max: usize,
    ) -> Option<SteerBytes> {
        use std::sync::atomic::Ordering;
        let mut now = waiting.load(Ordering::Relaxed);
        loop {
            let next = now.checked_add(bytes).filter(|&n| n <= max)?;
            match waiting.compare_exchange(now, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Some(SteerBytes { waiting: waiting.clone(), bytes }),
                Err(actual) => now = actual,
            }
        }
    }
}

impl Drop for SteerBytes {
    fn drop(&mut self) {
        self.waiting.fetch_sub(self.bytes, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Why a run leaves no trace in the store: its input was refused.
const REFUSED: &str = "the run's input was not stored";

/// How a run ended.
enum End {
    /// With its final reply, not stored yet: it is stored with the run's end, in one
    /// write.
    Completed(ChatMessage),
    Failed(String),
    /// Cancelled, or its input was refused by the store (then it leaves no trace: see
    /// [`Gate`]).
    Cancelled,
}

/// Runs `run_id` for `session` to its end, storing every step and the final status.
/// Returns the steered messages it did not take (a failed or cancelled run): they go to
/// the next run.
pub async fn run(
    kernel: Arc<Kernel>,
    session: SessionRow,
    run_id: String,
    cancel: CancellationToken,
    mut steered: mpsc::Receiver<Steered>,
    history: Option<Vec<TranscriptMessage>>,
    gate: Gate,
) -> RunOutcome {
    let began = std::time::Instant::now();
    let key = session.key.clone();
    // "Running" is for watchers, not the store: a run the store still holds as queued
    // is resumed after a crash all the same, and the run pays no durable write for it.
    let running = RunRow {
        id: run_id.clone(),
        session_key: key.clone(),
        status: RunStatus::Running,
        output: None,
        error: None,
    };
    let k = kernel.clone();
    gate.defer(move || k.sessions.publish_run(running));
    let mut seen = HashSet::new();
    let mut outcome = RunOutcome::default();
    let stream = RunStream::new(&kernel, &session, &run_id, gate.is_open());
    let trace = crate::telemetry::run_span(&session.agent_id, &key, &run_id);
    let work = turns(
        &kernel,
        (&session, &run_id, &stream, &gate),
        &mut steered,
        &mut seen,
        history,
        &mut outcome,
    );
    // The run's provider and tool calls are its span's children.
    let work = opentelemetry::context::FutureExt::with_context(
        work,
        trace.clone().unwrap_or_else(opentelemetry::Context::current),
    );
    let end = tokio::select! {
        end = work => end,
        _ = cancel.cancelled() => End::Cancelled,
    };
    steered.close();
    while let Ok(s) = steered.try_recv() {
        // One the run read from the transcript was answered with its input.
        if !seen.contains(&s.message_id) {
            outcome.leftover.push(s.message_id);
        }
    }
    // However it ended, nothing of it is told or written before its input is on disk;
    // and nothing at all if the input was refused.
    if !gate.wait().await {
        tracing::warn!(session = %key, run = %run_id, "{REFUSED}: the run is dropped");
        // Its span, already begun, says why it is the only trace of the run.
        let refused = opentelemetry::KeyValue::new("burrow.run.status", "refused");
        crate::telemetry::annotate(trace.as_ref(), [refused]);
        crate::telemetry::end(trace.as_ref(), Some(REFUSED));
        outcome.failed_write = true;
        return outcome;
    }
    // The final reply and the run's end go in one durable write; so does, for a run
    // cancelled while its provider was streaming, what it had said until then.
    let reply = match &end {
        End::Completed(m) => Some(stored_message(m)),
        End::Cancelled => stream.cut_short().map(cut_short),
        End::Failed(_) => None,
    };
    let (mut status, mut output, mut error) = match &end {
        End::Completed(m) => (RunStatus::Completed, Some(m.content.clone()), None),
        End::Failed(why) => (RunStatus::Failed, None, Some(why.clone())),
        End::Cancelled => (RunStatus::Cancelled, None, None),
    };
    let ended = match &end {
        End::Completed(_) => "completed",
        End::Failed(_) => "failed",
        End::Cancelled => "cancelled",
    };
    metrics::counter!("burrow_runs_total", "status" => ended).increment(1);
    crate::telemetry::annotate(
        trace.as_ref(),
        [opentelemetry::KeyValue::new("burrow.run.status", ended)],
    );
    crate::telemetry::end(trace.as_ref(), (ended == "failed").then_some(ended));
    metrics::histogram!("burrow_run_duration_seconds").record(began.elapsed().as_secs_f64());
    match &end {
        End::Completed(_) => {}
        End::Failed(_) => stream.end(StreamEndReason::Failed),
        End::Cancelled => stream.end(StreamEndReason::Cancelled),
    }
    let row = |status, output: &Option<String>, error: &Option<String>| RunRow {
        id: run_id.clone(),
        session_key: key.clone(),
        status,
        output: output.clone(),
        error: error.clone(),
    };
    let mut writes: Vec<Write> = reply
        .iter()
        .map(|m| Write::Append { session_key: key.clone(), message: m.clone() })
        .collect();
    writes.push(Write::Run(row(status, &output, &error)));
    // What the run's provider calls took counts toward the session's tokens.
    let stats = stream.stats();
    if stats.input_tokens > 0 || stats.output_tokens > 0 {
        let (input_tokens, output_tokens) = (stats.input_tokens, stats.output_tokens);
        writes.push(Write::Tokens { session_key: key.clone(), input_tokens, output_tokens });
    }
    // The run's end is told (`agent_end`) before its reply is delivered, however it goes.
    let agent_end = |status: RunStatus, output: Option<String>, error: Option<String>| {
        let (k, key, run_id, agent_id) =
            (kernel.clone(), key.clone(), run_id.clone(), session.agent_id.clone());
        move || {
            k.emit_with("agent_end", || {
                let payload = json!({ "sessionKey": key, "runId": run_id, "agentId": agent_id, "status": status, "output": output, "error": error });
                (payload, run_context(&key, &run_id))
            })
        }
    };
    let direct = match &end {
        End::Completed(m) => Direct::prepare(&kernel, &session, &run_id, &m.content)
            .map(|d| d.after(agent_end(status, output.clone(), None))),
        End::Failed(_) | End::Cancelled => None,
    };
    let sent_at_once = direct.is_some();
    let stored = store_end(&kernel, writes, direct).await;
    match (&stored, &reply) {
        (Ok(()), Some(m)) => outcome.appended.push(m.transcript()),
        (Ok(()), None) => {}
        (Err(_), _) => outcome.failed_write = true,
    }
    if let Err(e) = &stored {
        tracing::error!(error = %e, "cannot store a run's end");
        if reply.is_some() && status == RunStatus::Completed {
            // The reply is not stored: it is not delivered either, and a streaming
            // channel that had pieces of it hears so.
            (status, output, error) =
                (RunStatus::Failed, None, Some(format!("cannot store the reply: {e}")));
            stream.end(StreamEndReason::Failed);
        }
    }
    if let Some(why) = &error {
        tracing::warn!(session = %key, run = %run_id, %why, "run failed");
    }
    if let (Some(m), Ok(())) = (&reply, &stored) {
        kernel.sessions.publish_message(&key, m);
    }
    if !(sent_at_once && stored.is_ok()) {
        agent_end(status, output.clone(), error.clone())();
    }
    kernel.sessions.publish_run_with(row(status, &output, &error), Some(&stream.stats()));
    if let (RunStatus::Completed, Some(text)) = (status, output)
        && !sent_at_once
    {
        send_reply(&kernel, &session, &run_id, text);
    }
    outcome
}

/// Stores a run's end; with `direct`, its reply goes to the channel the moment the
/// write is on disk, from where the write completes.
async fn store_end(
    kernel: &Kernel,
    writes: Vec<Write>,
    direct: Option<Direct>,
) -> Result<(), StoreError> {
    let Some(direct) = direct else { return kernel.store().write(writes).await };
    let (tx, rx) = oneshot::channel();
    let done: WriteDone = Box::new(move |outcome| {
        if outcome.is_ok() {
            direct.send();
        }
        let _ = tx.send(outcome);
    });
    kernel.store().submit(writes, &Fence::default(), done).await;
    rx.await.unwrap_or(Err(StoreError::Closed))
}

fn run_context(key: &str, run_id: &str) -> Map {
    let mut c = context(key);
    c.insert("runId".into(), run_id.into());
    c
}

/// `message` as the store keeps it, with a new id.
fn stored_message(message: &ChatMessage) -> NewMessage {
    NewMessage {
        id: uuid::Uuid::now_v7().to_string(),
        role: message.role,
        content: message.content.clone(),
        metadata: None,
        tool_calls: message.tool_calls.clone(),
        tool_call_id: message.tool_call_id.clone(),
        created_at: now_ms(),
        run_id: None,
    }
}

/// What a cancelled run had said, as the store keeps it: an assistant message marked
/// `metadata.cutShort: "cancelled"`.
fn cut_short(text: String) -> NewMessage {
    let mut m = stored_message(&ChatMessage {
        role: Role::Assistant,
        content: text,
        tool_calls: None,
        tool_call_id: None,
    });
    m.metadata = Some(Map::from_iter([("cutShort".to_owned(), Value::from("cancelled"))]));
    m
}

/// Stores `message` in `key`'s transcript, noting it (or the failure) in `outcome`.
async fn append(
    kernel: &Kernel,
    key: &str,
    message: &ChatMessage,
    outcome: &mut RunOutcome,
) -> Result<(), String> {
    let m = stored_message(message);
    let stored = kernel
        .store()
        .write(vec![Write::Append { session_key: key.to_owned(), message: m.clone() }])
        .await;
    if let Err(e) = stored {
        outcome.failed_write = true;
        return Err(e.to_string());
    }
    outcome.appended.push(m.transcript());
    kernel.sessions.publish_message(key, &m);
    Ok(())
}

/// The steered messages waiting at a turn boundary, as user messages; those the context
/// already has (read from the transcript when the run started) are skipped.
fn take_steered(
    steered: &mut mpsc::Receiver<Steered>,
    seen: &mut HashSet<String>,
) -> Vec<ChatMessage> {
    let mut out = Vec::new();
    while let Ok(s) = steered.try_recv() {
        if seen.insert(s.message_id) {
            out.push(user(super::context::render(&s.content, s.metadata.as_ref())));
        }
    }
    out
}

fn user(content: String) -> ChatMessage {
    ChatMessage { role: Role::User, content, tool_calls: None, tool_call_id: None }
}

async fn turns(
    kernel: &Arc<Kernel>,
    (session, run_id, stream, gate): (&SessionRow, &str, &RunStream, &Gate),
    steered: &mut mpsc::Receiver<Steered>,
    seen: &mut HashSet<String>,
    history: Option<Vec<TranscriptMessage>>,
    outcome: &mut RunOutcome,
) -> End {
    let config = kernel.config();
    let agent: AgentSpec = config.agents.get(&session.agent_id).cloned().unwrap_or_default();
    let key = &session.key;
    let ctx = run_context(key, run_id);
    // The newest of the transcript, as much as fits a provider's request: the session's
    // own, in memory, else read from the store (and handed back to the session).
    let history = match history {
        Some(history) => history,
        None => {
            let page = Page {
                limit: tail::MAX_MESSAGES as u32,
                before: None,
                max_bytes: page_bytes(kernel),
            };
            match kernel.store().history_page(key, page).await {
                Ok(h) => {
                    outcome.read = Some(h.messages.clone());
                    h.messages
                }
                Err(e) => return End::Failed(format!("cannot read the transcript: {e}")),
            }
        }
    };
    let context = super::context::build(history, run_id);
    let (mut messages, input) = (context.messages, context.input);
    seen.extend(context.seen);
    let first_new = messages.len() - input.len();
    let input = input.join("\n");
    // Interceptors are told of the input only once it is on disk; one that registers
    // meanwhile is not asked (this once).
    let intercepted = kernel.caps.intercepted("before_agent_start");
    if intercepted && !gate.wait().await {
        return End::Cancelled;
    }
    let payload = json!({
        "sessionKey": key, "runId": run_id, "agentId": session.agent_id,
        "input": input, "systemPrompt": agent.system_prompt,
    });
    let payload = if intercepted {
        let scope = kernel.intercept_scope();
        match hooks::intercept(scope, &config, "before_agent_start", payload, &ctx).await {
            Ok(p) => p,
            Err(b) => return End::Failed(format!("blocked by {}: {}", b.by, b.reason)),
        }
    } else {
        payload
    };
    gate.emit(kernel, "before_agent_start", || (payload.clone(), ctx.clone()));
    // A modified input replaces the new user messages in the context (the transcript keeps them).
    let new_input = payload["input"].as_str().unwrap_or_default().to_owned();
    if new_input != input {
        messages.truncate(first_new);
        messages.push(user(new_input));
    }
    let system = payload["systemPrompt"].as_str().unwrap_or_default().to_owned();

    let wait = Duration::from_millis(config.sessions.provider_wait_ms);
    let provider =
        match kernel.ready_capability(CapabilityType::Provider, &agent.provider, wait).await {
            Ok(p) => p,
            Err(Unready::Missing) => {
                return End::Failed(format!("no provider {:?} is registered", agent.provider));
            }
            Err(Unready::NotReady(_)) => {
                return End::Failed(format!("provider {:?} is not ready", agent.provider));
            }
        };
    let tool_wait = Duration::from_millis(config.sessions.tool_wait_ms);
    tools_known_before(kernel, &agent, tool_wait).await;
    // The tools this run waited for in vain.
    let mut given_up = HashSet::new();
    for turn in 0..agent.max_turns {
        let timed = crate::metrics::Timed::new("burrow_turn_duration_seconds");
        // The tools registered now: one whose app came back during the run is offered.
        let tools = offered_tools(kernel, key, &agent);
        // Steered messages are taken only while another turn can answer them; the last
        // turn leaves them to the next run.
        let can_take = turn + 1 < agent.max_turns;
        let mut prompt = vec![ChatMessage {
            role: Role::System,
            content: system.clone(),
            tool_calls: None,
            tool_call_id: None,
        }];
        prompt.extend(messages.iter().cloned());
        let chat = crate::telemetry::chat_span(&agent.provider, &agent.model);
        let params = ProviderCompleteParams {
            provider_id: agent.provider.clone(),
            model: agent.model.clone(),
            messages: prompt,
            tools,
            traceparent: crate::telemetry::traceparent(chat.as_ref()),
        };
        gate.emit(kernel, "llm_input", || {
            (json!({ "sessionKey": key, "runId": run_id, "provider": agent.provider, "model": agent.model, "messages": params.messages }), ctx.clone())
        });
        let timeout = Duration::from_millis(agent.timeout_ms);
        let step =
            Step::begin(&kernel.timelines, run_id, Some(key), "provider", agent.provider.clone());
        let Some(answer) = complete(stream, &provider, &params, timeout, gate).await else {
            // The run's input was refused: the turn did not happen.
            step.forget();
            timed.discard();
            crate::telemetry::chat_done(chat.as_ref(), None, Some(REFUSED));
            return End::Cancelled;
        };
        let (status, why) = match &answer {
            Ok(_) => ("ok", None),
            Err(why) => ("failed", Some(why.clone())),
        };
        let took = step.done(status, why);
        let usage = answer.as_ref().ok().and_then(|a| a.usage.as_ref());
        crate::telemetry::chat_done(
            chat.as_ref(),
            usage,
            answer.as_ref().err().map(String::as_str),
        );
        metrics::histogram!("burrow_provider_call_duration_seconds", "provider" => agent.provider.clone(), "outcome" => status)
            .record(took.as_secs_f64());
        let answer = match answer {
            Ok(a) => a,
            Err(why) => return End::Failed(why),
        };
        kernel.emit_with("llm_output", || {
            (json!({ "sessionKey": key, "runId": run_id, "message": answer.message, "usage": answer.usage }), ctx.clone())
        });
        let calls = answer.message.tool_calls.clone().filter(|c| !c.is_empty());
        let assistant = ChatMessage {
            role: Role::Assistant,
            content: answer.message.content.clone(),
            tool_calls: calls.clone(),
            tool_call_id: None,
        };
        let Some(calls) = calls else {
            // A turn boundary: steered messages get another turn; once none is waiting
            // the run stops taking them (later ones queue for the next run). The final
            // reply is stored with the run's end.
            if !can_take {
                return End::Completed(assistant);
            }
            let mut late = take_steered(steered, seen);
            if late.is_empty() {
                steered.close();
                late = take_steered(steered, seen);
                if late.is_empty() {
                    return End::Completed(assistant);
                }
            }
            // This answer is final for what came before the steered messages.
            if let Err(e) = append(kernel, key, &assistant, outcome).await {
                return End::Failed(format!("cannot store the reply: {e}"));
            }
            send_reply(kernel, session, run_id, answer.message.content.clone());
            messages.push(assistant);
            messages.extend(late);
            continue;
        };
        if let Err(e) = append(kernel, key, &assistant, outcome).await {
            return End::Failed(format!("cannot store the reply: {e}"));
        }
        messages.push(assistant);
        for call in calls {
            let name = &call.name;
            wait_for_tool(kernel, key, run_id, &agent, name, tool_wait, &mut given_up).await;
            let origin = InRun { run_id: run_id.to_owned(), round: turn, call_id: call.id.clone() };
            let result = call_tool(kernel, session, origin, &agent, &call, &config, &ctx).await;
            let tool = ChatMessage {
                role: Role::Tool,
                content: result,
                tool_calls: None,
                tool_call_id: Some(call.id.clone()),
            };
            if let Err(e) = append(kernel, key, &tool, outcome).await {
                return End::Failed(format!("cannot store a tool result: {e}"));
            }
            messages.push(tool);
        }
        if can_take {
            messages.extend(take_steered(steered, seen));
        }
    }
    End::Failed(format!("no final answer within max_turns = {}", agent.max_turns))
}

/// Waits up to `wait` for the tool a call names to be held by a ready app (or the
/// session's host) — apps
/// reconnect after a restart of the kernel, or come back under the supervisor — unless
/// the agent may not call it, no tool can have that name, or this run waited for it in
/// vain already (`given_up`). The call goes on either way: routing answers for a tool
/// still missing.
async fn wait_for_tool(
    kernel: &Kernel,
    key: &str,
    run_id: &str,
    agent: &AgentSpec,
    name: &str,
    wait: Duration,
    given_up: &mut HashSet<String>,
) {
    let allowed = agent.tools.iter().any(|p| burrow_protocol::manifest::pattern_matches(p, name));
    let here = || {
        kernel.host_tools.find(key, name).is_some()
            || kernel
                .caps
                .by_name(CapabilityType::Tool, name)
                .is_some_and(|c| kernel.apps.is_ready(&c.app_id))
    };
    if wait.is_zero() || !allowed || !is_valid_tool_name(name) || given_up.contains(name) || here()
    {
        return;
    }
    let ms = wait.as_millis();
    tracing::info!(session = %key, run = %run_id, tool = %name, "waiting up to {ms} ms for the tool's app");
    if kernel.ready_capability(CapabilityType::Tool, name, wait).await.is_err() {
        tracing::warn!(session = %key, run = %run_id, tool = %name, "no ready app holds the tool after {ms} ms; this run does not wait for it again");
        given_up.insert(name.to_owned());
    }
}

/// Soon after a restart (within `wait` of the kernel's start), gives the apps of the
/// tools registered before it time to reconnect before the provider is shown the tools:
/// until each of those the agent may use is back with a ready app, or `wait` since the
/// start has passed. A run resumed at start (its provider back first) would otherwise be
/// offered none of them.
async fn tools_known_before(kernel: &Kernel, agent: &AgentSpec, wait: Duration) {
    let up = Duration::from_millis(now_ms().saturating_sub(kernel.started_at));
    let Some(left) = wait.checked_sub(up).filter(|left| !left.is_zero()) else { return };
    let deadline = tokio::time::Instant::now() + left;
    let mut missing = Vec::new();
    for name in kernel.known_tools.before() {
        let allowed =
            agent.tools.iter().any(|p| burrow_protocol::manifest::pattern_matches(p, name));
        let here = kernel.ready_capability(CapabilityType::Tool, name, Duration::ZERO).await;
        if allowed && here.is_err() {
            missing.push(name.as_str());
        }
    }
    if missing.is_empty() {
        return;
    }
    tracing::info!(tools = ?missing, wait_ms = left.as_millis() as u64, "a run waits for the tools known before the restart");
    for name in missing {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if kernel.ready_capability(CapabilityType::Tool, name, left).await.is_err() {
            tracing::info!(
                tool = name,
                "a tool known before the restart did not come back in time"
            );
        }
    }
}

/// The tools a run is offered: those the session's host provides on its connection
/// ([`crate::service::host_tools`]), then the apps' of other names, each if the agent may
/// call it.
fn offered_tools(kernel: &Kernel, key: &str, agent: &AgentSpec) -> Vec<ToolSpec> {
    let allowed = |name: &str| {
        agent.tools.iter().any(|p| burrow_protocol::manifest::pattern_matches(p, name))
    };
    let mut tools: Vec<ToolSpec> =
        kernel.host_tools.for_session(key).into_iter().filter(|t| allowed(&t.name)).collect();
    let hosted: HashSet<String> = tools.iter().map(|t| t.name.clone()).collect();
    let registered = kernel.caps.list(Some(CapabilityType::Tool));
    let apps = registered
        .iter()
        .filter_map(|c| match &c.config {
            burrow_protocol::methods::capability::CapabilityConfig::Tool(t) if allowed(&t.name) => {
                Some(ToolSpec {
                    name: t.name.clone(),
                    description: t.description.clone(),
                    input_schema: t
                        .input_schema
                        .clone()
                        .unwrap_or_else(|| json!({ "type": "object" })),
                })
            }
            _ => None,
        })
        .filter(|t| !hosted.contains(&t.name));
    tools.extend(apps);
    tools
}

/// One `provider.complete` of a run. A provider that streams answers with chunks first
/// ([`ProviderChunk`]), which go where the run's [`RunStream`] sends them as they arrive;
/// the result's whole message is what the run goes on with. `None` when the run's input
/// was refused meanwhile (a run that started behind its [`Gate`] asks while its input
/// is being written).
async fn complete(
    stream: &RunStream,
    provider: &Capability,
    params: &ProviderCompleteParams,
    timeout: Duration,
    gate: &Gate,
) -> Option<Result<ProviderCompleteResult, String>> {
    let on_chunk = stream.call();
    // What it streams before the run's input is on disk is held until then.
    gate.defer(stream.opener());
    let request = provider.conn.request_streamed(ProviderComplete::NAME, params, timeout, on_chunk);
    let answer = gate
        .behind(request)
        .await?
        .map_err(|e| format!("provider {:?}: {}: {}", params.provider_id, e.code, e.message));
    let answer = answer.and_then(|value| {
        serde_json::from_value::<ProviderCompleteResult>(value).map_err(|e| {
            format!("provider {:?} answered a malformed completion: {e}", params.provider_id)
        })
    });
    if let Ok(answer) = &answer {
        stream.answered(answer);
    }
    Some(answer)
}

/// One tool call of a run; every outcome becomes a tool result text (errors and blocks
/// with `isError`), so the run goes on.
async fn call_tool(
    kernel: &Arc<Kernel>,
    session: &SessionRow,
    origin: InRun,
    agent: &AgentSpec,
    call: &ToolCallRequest,
    config: &crate::config::Config,
    ctx: &Map,
) -> String {
    let allowed =
        agent.tools.iter().any(|p| burrow_protocol::manifest::pattern_matches(p, &call.name));
    let run_id = origin.run_id.clone();
    let result: Value = if !allowed {
        json!({ "content": format!("tool {:?} is not allowed for this agent", call.name), "isError": true })
    } else {
        let params = ToolCallParams {
            name: call.name.clone(),
            arguments: call.arguments.clone(),
            session_key: Some(session.key.clone()),
        };
        let caller = crate::service::Caller::new(format!("agent:{}", session.agent_id));
        match crate::service::routing::call_tool_in_run(kernel, &caller, params, origin).await {
            Ok(v) => v,
            Err(e) => {
                json!({ "content": burrow_protocol::ErrorObject::from(e).message, "isError": true })
            }
        }
    };
    let payload = json!({ "name": call.name, "arguments": call.arguments, "result": result, "sessionKey": session.key, "runId": run_id });
    let result = match hooks::intercept(
        kernel.intercept_scope(),
        config,
        "tool_result_persist",
        payload,
        ctx,
    )
    .await
    {
        Ok(p) => p["result"].clone(),
        Err(b) => {
            json!({ "content": format!("result withheld by {}: {}", b.by, b.reason), "isError": true })
        }
    };
    match &result["content"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steered_bytes_are_bounded_and_given_back_when_taken() {
        let waiting = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let a = SteerBytes::take(&waiting, 600, 1000).expect("room");
        assert!(SteerBytes::take(&waiting, 600, 1000).is_none(), "over the bound");
        let b = SteerBytes::take(&waiting, 400, 1000).expect("just fits");
        drop(a);
        assert_eq!(waiting.load(std::sync::atomic::Ordering::Relaxed), 400);
        drop(b);
        assert!(SteerBytes::take(&waiting, 1000, 1000).is_some());
        assert!(SteerBytes::take(&waiting, usize::MAX, usize::MAX).is_some(), "no overflow");
    }
}
