//! `config.get` and `config.watch` (PROTOCOL.md §7), with the access rules of
//! [`crate::config::access`].

use burrow_protocol::methods::config::{
    ConfigGetParams, ConfigGetResult, ConfigWatchEnd, ConfigWatchParams,
};
use burrow_protocol::methods::to_value;
use burrow_protocol::{ErrorObject, Id, Message, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::app_actor::AppActorState;
use crate::config::{access, watch};
use crate::connection::Responder;

/// Reads a path the app may read; a missing path is null.
pub fn get(state: &mut AppActorState, p: ConfigGetParams) -> Result<ConfigGetResult, ErrorObject> {
    let Some(app) = state.app.as_ref() else {
        return Err(super::not_registered("config.get"));
    };
    let path = p.path.unwrap_or_else(|| access::own_subtree(&app.app_id));
    access::check(&app.app_id, &app.manifest.config.read, &path)?;
    let value = state.kernel.config().get(&path).cloned().unwrap_or(Value::Null);
    Ok(ConfigGetResult { value })
}

/// Starts a stream of changes under the watched paths; `$/cancel` ends it with
/// `{ended: "cancelled"}`.
pub fn watch(state: &mut AppActorState, p: ConfigWatchParams, responder: Responder) {
    let Some(app) = state.app.as_ref() else {
        return responder.reply(Err(super::not_registered("config.watch")));
    };
    let paths = p.paths.unwrap_or_else(|| vec![access::own_subtree(&app.app_id)]);
    for (i, path) in paths.iter().enumerate() {
        if let Err(mut e) = access::check(&app.app_id, &app.manifest.config.read, path) {
            e.data = Some(serde_json::json!({ "path": path, "field": format!("paths[{i}]") }));
            return responder.reply(Err(e));
        }
    }
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
