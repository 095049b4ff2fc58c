//! The IPC adapter of `supervisor.logs`: a managed app's captured log
//! ([`crate::service::supervisor::log`]) as a stream of `{line}` chunks — the tail, then
//! (following) new lines until `$/cancel` or the connection closes. Chunks wait for room
//! in the writer queue rather than overflowing it, so a slow reader is slowed, not cut
//! off.

use burrow_protocol::methods::operator::{LogLine, LogsParams, StreamEnd};
use burrow_protocol::methods::{parse_params, to_value};
use burrow_protocol::{ErrorObject, Message, Value};
use tokio::sync::broadcast::error::RecvError;

use crate::app_actor::AppActorState;
use crate::connection::Responder;
use crate::service::supervisor::log;

/// Streams an app's captured log.
pub fn stream_logs(state: &mut AppActorState, params: Value, responder: Responder) {
    let p: LogsParams = match parse_params(params) {
        Ok(p) => p,
        Err(e) => return responder.reply(Err(e)),
    };
    let Some(id) = responder.id().cloned() else { return };
    let stop = tokio_util::sync::CancellationToken::new();
    if p.follow {
        state.watches.insert(id.clone(), stop.clone());
    }
    let (kernel, conn) = (state.kernel.clone(), state.conn.clone());
    let chunk = move |line: String| Message::chunk(id.clone(), to_value(&LogLine { line }));
    tokio::spawn(async move {
        let log = match log(&kernel, &p).await {
            Ok(log) => log,
            Err(e) => return responder.reply(Err(ErrorObject::from(e))),
        };
        for line in log.tail {
            if !conn.send_wait(chunk(line)).await {
                return;
            }
        }
        let end = |ended: &str| Ok(to_value(&StreamEnd { ended: ended.to_owned() }));
        let Some(mut feed) = log.feed else { return responder.reply(end("eof")) };
        let ended = loop {
            let line = tokio::select! {
                _ = stop.cancelled() => break "cancelled",
                _ = conn.closed() => return,
                line = feed.recv() => line,
            };
            let text = match line {
                Ok(line) => line,
                Err(RecvError::Lagged(n)) => format!("[{n} lines skipped]"),
                Err(RecvError::Closed) => break "closed",
            };
            if !conn.send_wait(chunk(text)).await {
                return;
            }
        };
        responder.reply(end(ended));
    });
}
