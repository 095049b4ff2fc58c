//! The app lifecycle (PROTOCOL.md §4): `app.register`, `app.heartbeat`, `app.ready`,
//! `app.shutdown` from the app.

use std::time::Duration;

use burrow_protocol::methods::Ack;
use burrow_protocol::methods::app::{
    AppState, HeartbeatResult, PROTOCOL_VERSION, RegisterParams, RegisterResult, ShutdownParams,
    protocol_major_matches,
};
use burrow_protocol::{ErrorCode, ErrorObject, now_ms};
use ractor::ActorRef;
use serde_json::json;

use crate::app_actor::{AppActorState, AppMsg, Registered};
use crate::connection::Responder;
use crate::registry::{AppEntry, Claim};

/// Longest an app may ask the kernel to wait for its in-flight calls when it leaves.
const MAX_LEAVE_WAIT: Duration = Duration::from_secs(60);
/// Longest a leaving app's requests already read are waited for before it is let go.
const DRAIN_WAIT: Duration = Duration::from_secs(1);

/// `app.register`: validate, check the token, claim the id (or take it over), sign a token.
pub fn register(
    state: &mut AppActorState,
    myself: &ActorRef<AppMsg>,
    p: RegisterParams,
) -> Result<RegisterResult, ErrorObject> {
    if let Some(app) = &state.app {
        return Err(ErrorObject::new(
            ErrorCode::InvalidRequest,
            format!("this connection is already registered as {:?}", app.app_id),
        )
        .with_data(json!({ "appId": app.app_id })));
    }
    if !protocol_major_matches(&p.protocol_version) {
        return Err(ErrorObject::new(
            ErrorCode::InvalidRequest,
            format!("protocol version {:?} is not supported", p.protocol_version),
        )
        .with_data(json!({ "supported": [PROTOCOL_VERSION] })));
    }
    p.manifest.validate()?;
    let app_id = p.manifest.id.clone();
    let now = now_ms();
    let ipc = state.kernel.config().ipc.clone();
    let token_ok = match &p.token {
        None => false,
        Some(token) => {
            state.kernel.key.verify(token, &app_id, now).map_err(|e| {
                ErrorObject::new(ErrorCode::Unauthorized, format!("token refused: {e}"))
            })?;
            true
        }
    };
    let entry = AppEntry {
        conn_id: state.conn.id(),
        displace: {
            let actor = myself.clone();
            crate::registry::Displace::new(move || drop(actor.cast(AppMsg::TakenOver)))
        },
        version: p.manifest.version.clone(),
        state: AppState::Registered,
        registered_at: now,
        last_seen: state.conn.last_seen(),
    };
    match state.kernel.apps.claim(&app_id, entry, token_ok) {
        Claim::Registered => {}
        Claim::TookOver(old) => {
            tracing::info!(app = %app_id, "taking over a live registration with its token");
            old.now();
        }
        Claim::Conflict => {
            return Err(ErrorObject::new(
                ErrorCode::Conflict,
                format!("app id {app_id:?} is held by a live app (present its token to take over)"),
            )
            .with_data(json!({ "appId": app_id })));
        }
    }
    // At debug: an app says so at info when ready; a client registered only to call
    // (the CLI) stays out of the operator's log.
    tracing::debug!(app = %app_id, version = %p.manifest.version, conn = state.conn.id(), "app registered");
    state.kernel.notify_supervisor(crate::supervisor::SupervisorMsg::Registered(app_id.clone()));
    let payload = json!({ "appId": app_id, "version": p.manifest.version });
    state.kernel.emit(
        "app_registered",
        payload,
        crate::service::capabilities::app_context(&app_id),
    );
    state.shortcut.set_caller(Some(&app_id));
    state.app = Some(Registered {
        app_id: app_id.clone(),
        manifest: p.manifest,
        state: AppState::Registered,
    });
    Ok(RegisterResult {
        token: state.kernel.key.issue(&app_id, now, ipc.token_ttl_ms),
        app_id,
        protocol_version: PROTOCOL_VERSION.to_owned(),
        heartbeat_interval_ms: ipc.heartbeat_interval_ms,
        heartbeat_timeout_ms: ipc.heartbeat_timeout_ms,
    })
}

/// `app.heartbeat`: the frame itself already counted as a sign of life.
pub fn heartbeat() -> HeartbeatResult {
    HeartbeatResult { ok: true, server_time: now_ms() }
}

/// `app.ready`: from now on the kernel routes traffic to the app.
pub fn ready(state: &mut AppActorState) -> Ack {
    if state.app.as_ref().is_some_and(|a| a.state == AppState::Registered) {
        state.set_state(AppState::Ready);
        tracing::info!(app = state.name(), "app ready");
        let app_id = state.name().to_owned();
        state.kernel.emit(
            "app_ready",
            json!({ "appId": app_id }),
            crate::service::capabilities::app_context(&app_id),
        );
    }
    Ack::OK
}

/// `app.shutdown` from the app: stop routing to it, let in-flight kernel → app calls
/// finish for up to `timeout`, then release everything, answer, and close. A repeated
/// `app.shutdown` is answered together with the first.
pub fn shutdown(
    state: &mut AppActorState,
    myself: &ActorRef<AppMsg>,
    p: ShutdownParams,
    responder: Responder,
) {
    state.leave_requests.push(responder);
    if state.leave_requests.len() > 1 {
        return;
    }
    state.set_state(AppState::Leaving);
    let reason = p.reason.unwrap_or_else(|| "app asked to leave".to_owned());
    let wait = Duration::from_millis(p.timeout.unwrap_or(0)).min(MAX_LEAVE_WAIT);
    let conn = state.conn.clone();
    let me = myself.clone();
    tokio::spawn(async move {
        // The kernel's own requests get the time the app asked for; what the app sent
        // before it reads this answer (already read, not yet handed over) is handed over
        // first, so it is answered before the app is gone.
        let now = tokio::time::Instant::now();
        conn.settle(now + wait, now + DRAIN_WAIT).await;
        let _ = me.cast(AppMsg::Leave { reason });
    });
}
