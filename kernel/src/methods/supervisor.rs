//! Operator control of managed apps (Burrow additions, allowed before registering, like
//! the `kernel.*` introspection): `supervisor.start`, `supervisor.stop`,
//! `supervisor.restart {appId}` → `{ok}`, and `supervisor.logs {appId, lines?, follow?}`,
//! a stream of `{line}` chunks (the last `lines` lines, then new ones while following).

use std::sync::Arc;
use std::time::Duration;

use burrow_protocol::methods::{Ack, parse_params, to_value};
use burrow_protocol::{ErrorCode, ErrorObject, Message, Value};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::oneshot;

use crate::connection::{Connection, Responder};
use crate::kernel::Kernel;
use crate::supervisor::{Control, SupervisorMsg, logs};

pub use burrow_protocol::methods::table::{
    SUPERVISOR_LOGS as LOGS, SUPERVISOR_RESTART as RESTART, SUPERVISOR_START as START,
    SUPERVISOR_STOP as STOP,
};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ControlParams {
    app_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogsParams {
    app_id: String,
    #[serde(default = "default_lines")]
    lines: usize,
    #[serde(default)]
    follow: bool,
}

fn default_lines() -> usize {
    100
}

/// Start, stop or restart a managed app; answered from a task.
pub fn control(kernel: Arc<Kernel>, control: Control, params: Value, responder: Responder) {
    let p: ControlParams = match parse_params(params) {
        Ok(p) => p,
        Err(e) => return responder.reply(Err(e)),
    };
    tokio::spawn(async move {
        let outcome = match kernel.supervisor() {
            None => Err(ErrorObject::new(ErrorCode::NotFound, "no supervisor is running")),
            Some(supervisor) => {
                let (tx, rx) = oneshot::channel();
                let _ = supervisor.cast(SupervisorMsg::Control(p.app_id, control, tx));
                match tokio::time::timeout(Duration::from_secs(30), rx).await {
                    Ok(Ok(result)) => result.map(|()| to_value(&Ack::OK)),
                    _ => Err(ErrorObject::new(ErrorCode::Timeout, "the supervisor did not answer")),
                }
            }
        };
        responder.reply(outcome);
    });
}

/// Streams an app's captured log: the tail, then (following) new lines until `$/cancel`
/// or the connection closes. Chunks wait for room in the writer queue rather than
/// overflowing it, so a slow reader is slowed, not cut off.
pub fn stream_logs(
    state: &mut crate::app_actor::AppActorState,
    params: Value,
    responder: Responder,
) {
    let kernel = state.kernel.clone();
    let p: LogsParams = match parse_params(params) {
        Ok(p) => p,
        Err(e) => return responder.reply(Err(e)),
    };
    if !burrow_protocol::manifest::is_valid_app_id(&p.app_id) {
        return responder.reply(Err(ErrorObject::invalid_params("appId", "not a valid app id")));
    }
    let path = logs::log_path(&kernel.paths.state_dir, &p.app_id);
    let known = kernel.managed().iter().any(|m| m.app_id == p.app_id);
    if !known && !path.exists() {
        let err =
            ErrorObject::new(ErrorCode::NotFound, format!("no captured log for {:?}", p.app_id));
        return responder.reply(Err(err));
    }
    let Some(id) = responder.id().cloned() else { return };
    // Subscribe before reading the tail so no line falls between the two.
    let mut feed =
        p.follow.then(|| kernel.existing_log_feed(&p.app_id)).flatten().map(|f| f.subscribe());
    let stop = tokio_util::sync::CancellationToken::new();
    if p.follow {
        state.watches.insert(id.clone(), stop.clone());
    }
    let conn: Connection = state.conn.clone();
    let keep = kernel.config().supervisor.log_files;
    tokio::spawn(async move {
        let tail =
            tokio::task::spawn_blocking(move || logs::tail(&path, p.lines.min(10_000), keep))
                .await
                .unwrap_or_default();
        for line in tail {
            if !conn.send_wait(Message::chunk(id.clone(), json!({ "line": line }))).await {
                return;
            }
        }
        let Some(feed) = feed.as_mut() else {
            return responder.reply(Ok(json!({ "ended": "eof" })));
        };
        let ended = loop {
            let line = tokio::select! {
                _ = stop.cancelled() => break "cancelled",
                _ = conn.closed() => return,
                line = feed.recv() => line,
            };
            let text = match line {
                Ok(line) => line,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    format!("[{n} lines skipped]")
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break "closed",
            };
            if !conn.send_wait(Message::chunk(id.clone(), json!({ "line": text }))).await {
                return;
            }
        };
        responder.reply(Ok(json!({ "ended": ended })));
    });
}
