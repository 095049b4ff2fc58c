//! The IPC adapter of `config.watch`: the changes under the paths the app may watch
//! ([`crate::service::config::watched`]) as a stream of chunks until `$/cancel`; and
//! `$/cancel` itself.

use burrow_protocol::methods::config::{ConfigWatchEnd, ConfigWatchParams};
use burrow_protocol::methods::to_value;
use burrow_protocol::{ErrorObject, Id, Message};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::app_actor::AppActorState;
use crate::config::watch;
use crate::connection::Responder;

/// Starts a stream of changes under the watched paths; `$/cancel` ends it with
/// `{ended: "cancelled"}`.
pub fn watch(state: &mut AppActorState, p: ConfigWatchParams, responder: Responder) {
    let watched = super::as_app(state, "config.watch")
        .and_then(|app| crate::service::config::watched(app, p).map_err(ErrorObject::from));
    let paths = match watched {
        Ok(paths) => paths,
        Err(e) => return responder.reply(Err(e)),
    };
    let Some(id) = responder.id().cloned() else {
        return;
    };
    let stop = CancellationToken::new();
    state.watches.insert(id.clone(), stop.clone());
    let mut updates = state.kernel.config_updates();
    let conn = state.conn.clone();
    tokio::spawn(async move {
        let ended = loop {
            let update = tokio::select! {
                _ = stop.cancelled() => break "cancelled",
                _ = conn.closed() => return,
                update = updates.recv() => update,
            };
            match update {
                Ok(u) => {
                    for path in &paths {
                        for change in watch::changes_under(path, &u.changes, &u.old, &u.new) {
                            if !conn.send_wait(Message::chunk(id.clone(), to_value(&change))).await
                            {
                                return;
                            }
                        }
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "config watcher lagged behind")
                }
                Err(RecvError::Closed) => break "closed",
            }
        };
        responder.reply(Ok(to_value(&ConfigWatchEnd { ended: ended.to_owned() })));
    });
}

/// `$/cancel {id}` for a watch; unknown ids are ignored.
pub fn cancel(state: &mut AppActorState, id: &Id) {
    if let Some(stop) = state.watches.remove(id) {
        stop.cancel();
    }
}
