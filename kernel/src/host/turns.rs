//! Turns in the host contract: `session/create` (a new session and, unless deferred, its
//! first turn) and `turn/start` answer a [`RunResult`] once the turn has ended;
//! `turn/interrupt` cancels a session's turn. A turn
//! follows its session's events from before its input is handed over, so it sees every
//! step of its own run: what it took (`turns`, `tool_calls`, `usage`, from the run's end
//! event) and, on a connection that takes notifications unless the call says
//! `session_events: false`, each step as a `session/event` notification
//! ([`super::events`]), all of them before the answer.

use std::sync::Arc;
use std::time::Duration;

use burrow_protocol::methods::host::{
    CreateParams, DeferredCreated, RunResult, SessionRef, TurnParams, Usage,
};
use burrow_protocol::methods::session::RunStatus;
use burrow_protocol::{ErrorCode, ErrorObject, Value, now_ms};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde_json::json;

use super::events::Envelopes;
use crate::kernel::Kernel;
use crate::service::sessions::{self, check_comms_name, existing, to_session};
use crate::service::{Caller, ServiceError};
use crate::sessions::{Inbound, Wake};
use crate::store::{SessionRow, Write};
use crate::surface::Link;

/// The longest a turn is waited for before its call is answered `TIMEOUT` (the run goes
/// on).
const TURN_WAIT: Duration = Duration::from_secs(600);

/// `session/create`.
pub async fn create(
    kernel: &Arc<Kernel>,
    caller: &Caller,
    p: CreateParams,
    link: Link,
) -> Result<Value, ErrorObject> {
    let deferred = match p.initial_turn.as_deref() {
        None | Some("immediate") => false,
        Some("deferred") => true,
        Some(other) => {
            let why = format!("initial_turn is \"immediate\" or \"deferred\", not {other:?}");
            return Err(ServiceError::invalid("initial_turn", why).into());
        }
    };
    let prompt = prompt_text(&p.prompt)?;
    if !deferred && prompt.trim().is_empty() {
        return Err(ServiceError::invalid("prompt", "the prompt is empty").into());
    }
    if let Some(name) = &p.comms_name {
        check_comms_name(name)?;
    }
    let key = uuid::Uuid::now_v7().to_string();
    kernel.host_tools.bind(&key, link.id());
    let now = now_ms();
    let row = SessionRow {
        keep_alive: p.keep_alive.unwrap_or(false),
        comms_name: p.comms_name.clone(),
        labels: p.labels.clone(),
        ..SessionRow::new(key.clone(), "main", now)
    };
    if deferred {
        kernel.store().write(vec![Write::CreateSession(row)]).await.map_err(ServiceError::from)?;
        return Ok(serde_json::to_value(DeferredCreated { session_id: key }).unwrap_or_default());
    }
    let mut item = Inbound::new(prompt.clone(), None, caller.name().to_owned(), Wake::Always);
    item.create = Some(Box::new(row));
    let streaming = p.session_events != Some(false) && link.notifies();
    let result = turn(kernel, &key, item, (prompt, streaming), &link).await?;
    Ok(serde_json::to_value(result).unwrap_or_default())
}

/// `turn/start`.
pub async fn start(
    kernel: &Arc<Kernel>,
    caller: &Caller,
    p: TurnParams,
    link: Link,
) -> Result<RunResult, ErrorObject> {
    let prompt = prompt_text(&p.prompt)?;
    if prompt.trim().is_empty() {
        return Err(ServiceError::invalid("prompt", "the prompt is empty").into());
    }
    existing(kernel, &p.session_id).await?;
    kernel.host_tools.bind(&p.session_id, link.id());
    if kernel.sessions.running(&p.session_id) {
        let message = format!("session {} is running a turn; wait for its end", p.session_id);
        return Err(ErrorObject::new(ErrorCode::Conflict, message)
            .with_data(json!({ "code": "SESSION_BUSY", "session_id": p.session_id })));
    }
    let mut item = Inbound::new(prompt.clone(), None, caller.name().to_owned(), Wake::Always);
    item.must_exist = true;
    let streaming = p.session_events != Some(false) && link.notifies();
    turn(kernel, &p.session_id, item, (prompt, streaming), &link).await
}

/// `turn/interrupt {session_id}`: cancels the session's runs queued or running (a
/// provider call in progress is sent `$/cancel`; a turn waiting on a tool stops waiting);
/// their `turn/start` answers `REQUEST_CANCELLED`. A session with no run going answers
/// the same (nothing to interrupt is not an error).
pub async fn interrupt(kernel: &Arc<Kernel>, p: SessionRef) -> Result<Value, ErrorObject> {
    existing(kernel, &p.session_id).await?;
    for run_id in kernel.sessions.runs_of(&p.session_id) {
        match sessions::cancel(kernel, &run_id).await {
            // It ended meanwhile.
            Ok(()) | Err(ServiceError::Conflict(_) | ServiceError::UnknownRun(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(json!({ "interrupted": true, "result": "interrupted", "session_id": p.session_id }))
}

/// Hands `item` to session `key` and follows the run it starts to its end, sending its
/// steps as notifications when `streaming`.
async fn turn(
    kernel: &Arc<Kernel>,
    key: &str,
    item: Inbound,
    (prompt, streaming): (String, bool),
    link: &Link,
) -> Result<RunResult, ErrorObject> {
    // Followed before the input is handed over: no step of the run can be missed.
    let events = sessions::follow(kernel, key, true).await?;
    let acked = to_session(kernel, key, item).await?;
    let Some(run_id) = acked.run_id else {
        let why = acked.reason.unwrap_or_else(|| "the input was not taken".into());
        return Err(ErrorObject::new(ErrorCode::Conflict, why)
            .with_data(json!({ "code": "HOOK_DENIED", "session_id": key })));
    };
    let mut envelopes = Envelopes::new(key, &run_id, &prompt);
    let outcome = tokio::time::timeout(
        TURN_WAIT,
        follow_run(kernel, events, &run_id, &mut envelopes, streaming.then_some(link)),
    )
    .await
    .map_err(|_| {
        ErrorObject::new(
            ErrorCode::Timeout,
            format!("turn {run_id} did not end within {TURN_WAIT:?}"),
        )
    })??;
    match outcome.status {
        RunStatus::Completed => Ok(RunResult {
            session_id: key.to_owned(),
            text: outcome.output.unwrap_or_default(),
            turns: outcome.turns,
            tool_calls: outcome.tool_calls,
            usage: outcome.usage,
        }),
        RunStatus::Cancelled => {
            Err(ErrorObject::new(ErrorCode::Conflict, format!("turn {run_id} was interrupted"))
                .with_data(
                    json!({ "code": "REQUEST_CANCELLED", "session_id": key, "run_id": run_id }),
                ))
        }
        _ => {
            let why = outcome.error.unwrap_or_else(|| "the turn failed".into());
            Err(ErrorObject::new(ErrorCode::UnknownError, why)
                .with_data(json!({ "code": "AGENT_ERROR", "session_id": key, "run_id": run_id })))
        }
    }
}

/// How a followed run ended.
#[derive(Debug)]
struct Outcome {
    status: RunStatus,
    output: Option<String>,
    error: Option<String>,
    turns: u64,
    tool_calls: u64,
    usage: Usage,
}

impl Outcome {
    /// The end a run's terminal `run` event tells, with what the run took.
    fn of(status: RunStatus, event: &Value) -> Self {
        Outcome {
            status,
            output: event["output"].as_str().map(str::to_owned),
            error: event["error"].as_str().map(str::to_owned),
            turns: event["turns"].as_u64().unwrap_or(0),
            tool_calls: event["tool_calls"].as_u64().unwrap_or(0),
            usage: serde_json::from_value(event["usage"].clone()).unwrap_or_default(),
        }
    }
}

/// Reads the session's events until run `run_id` ends, sending each step of it to `link`
/// as a `session/event` notification when there is one. A follower that lags stops
/// seeing steps (the last notification says so) and waits for the run's end instead.
async fn follow_run(
    kernel: &Arc<Kernel>,
    mut events: BoxStream<'static, Value>,
    run_id: &str,
    envelopes: &mut Envelopes,
    link: Option<&Link>,
) -> Result<Outcome, ErrorObject> {
    while let Some(event) = events.next().await {
        if event["type"] == "lagged" {
            if let Some(link) = link {
                for note in envelopes.lagged() {
                    link.notify("session/event", note).await;
                }
            }
            let run = sessions::wait(kernel, run_id, TURN_WAIT).await?;
            let (turns, tool_calls, usage) = (0, 0, Usage::default());
            let (status, output, error) = (run.status, run.output, run.error);
            return Ok(Outcome { status, output, error, turns, tool_calls, usage });
        }
        if let Some(link) = link {
            for note in envelopes.of(&event) {
                link.notify("session/event", note).await;
            }
        }
        if event["type"] == "run" && event["run_id"] == run_id {
            let status: Option<RunStatus> = serde_json::from_value(event["status"].clone()).ok();
            if let Some(status) = status.filter(|s| s.is_terminal()) {
                return Ok(Outcome::of(status, &event));
            }
        }
    }
    // The follower ended (the kernel is stopping): say where the run stands.
    let run = sessions::wait(kernel, run_id, Duration::ZERO).await?;
    Err(ErrorObject::new(
        ErrorCode::ConnectionClosed,
        format!("the kernel stopped following turn {run_id} ({:?})", run.status),
    ))
}

/// A prompt's text: a string, or the text of its content blocks (one per line); a block
/// of another kind is refused.
pub fn prompt_text(prompt: &Value) -> Result<String, ErrorObject> {
    match prompt {
        Value::String(text) => Ok(text.clone()),
        Value::Array(blocks) => {
            let mut texts = Vec::new();
            for block in blocks {
                match (block["type"].as_str(), block["text"].as_str()) {
                    (Some("text"), Some(text)) => texts.push(text),
                    (kind, _) => {
                        let kind = kind.unwrap_or("untyped");
                        let why = format!("Burrow takes text content only, not a {kind} block");
                        return Err(ServiceError::invalid("prompt", why).into());
                    }
                }
            }
            Ok(texts.join("\n"))
        }
        _ => Err(ServiceError::invalid("prompt", "a string or a list of content blocks").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prompt_is_a_string_or_text_blocks() {
        assert_eq!(prompt_text(&json!("hi")).unwrap(), "hi");
        let blocks = json!([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]);
        assert_eq!(prompt_text(&blocks).unwrap(), "a\nb");
        let image =
            json!([{"type": "image", "media_type": "image/png", "source": "inline", "data": ""}]);
        let e = prompt_text(&image).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidParams);
        assert!(e.message.contains("image"), "{e}");
        assert!(prompt_text(&json!(3)).is_err());
    }
}
