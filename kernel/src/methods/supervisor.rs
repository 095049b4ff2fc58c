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

/// `supervisor.start`.
pub const START: &str = "supervisor.start";
/// `supervisor.stop`.
pub const STOP: &str = "supervisor.stop";
/// `supervisor.restart`.
pub const RESTART: &str = "supervisor.restart";
/// `supervisor.logs`.
pub const LOGS: &str = "supervisor.logs";

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

/// Streams an app's captured log.
pub fn stream_logs(kernel: &Kernel, conn: &Connection, params: Value, responder: Responder) {
    let p: LogsParams = match parse_params(params) {
        Ok(p) => p,
        Err(e) => return responder.reply(Err(e)),
    };
    let known = kernel.managed().iter().any(|m| m.app_id == p.app_id);
    let path = logs::log_path(&kernel.paths.state_dir, &p.app_id);
    if !known && !path.exists() {
        let err =
            ErrorObject::new(ErrorCode::NotFound, format!("no captured log for {:?}", p.app_id));
        return responder.reply(Err(err));
    }
    let Some(id) = responder.id().cloned() else { return };
    // Subscribe before reading the tail so no line falls between the two.
    let mut feed = kernel.log_feed(&p.app_id).subscribe();
    let keep = kernel.config().supervisor.log_files;
    for line in logs::tail(&path, p.lines.min(10_000), keep) {
        conn.send(Message::chunk(id.clone(), json!({ "line": line })));
    }
    if !p.follow {
        return responder.reply(Ok(json!({ "ended": "eof" })));
    }
    let conn = conn.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = conn.closed() => return,
                line = feed.recv() => match line {
                    Ok(line) => conn.send(Message::chunk(id.clone(), json!({ "line": line }))),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        conn.send(Message::chunk(id.clone(), json!({ "line": format!("[{n} lines skipped]") })));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
            }
        }
        responder.reply(Ok(json!({ "ended": "closed" })));
    });
}
