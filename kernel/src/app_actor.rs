//! The [`AppActor`]: one per client connection, the app's lifecycle once it registers.
//!
//! States: connected (unregistered) → registered → ready → leaving. The actor owns the
//! connection handle and the app's registry entry; when it stops for any reason the entry
//! is released and the connection closed, so every call waiting on the app fails with
//! `CONNECTION_CLOSED`. A ticker enforces the heartbeat timeout, for unregistered
//! connections too.
//!
//! The session family (`message.dispatch` and friends) and `tool.call` need only the
//! kernel and the caller's app id, and `app.heartbeat` nothing at all, so once an app is
//! registered and the actor has nothing queued, the connection's reader answers
//! heartbeats itself and hands the others straight to the session runtime or the router
//! ([`Shortcut`]): one task hop fewer on the hottest paths, with the same order as through the actor (the shortcut is
//! taken only when every earlier request was handled).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use std::collections::HashMap;

use burrow_protocol::methods::app::{AppShutdown, AppState, ShutdownParams};
use burrow_protocol::methods::{Ack, Method, to_value};
use burrow_protocol::{Id, Manifest};
use burrow_transport::Transport;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::mono_ms;
use crate::connection::{Connection, Inbound, Responder};
use crate::kernel::Kernel;
use crate::methods;

/// How long a closing connection may take to flush before it is cut.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Messages of an AppActor.
// Nearly every message is `Inbound`: boxing it would add an allocation per request to
// make the rare small variants smaller.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum AppMsg {
    /// Something the connection read.
    Inbound(Inbound),
    /// Time to check the heartbeat deadline.
    Tick,
    /// Another connection took this app's id over with its token.
    TakenOver,
    /// The kernel is stopping: send `app.shutdown` to the app and leave.
    KernelShutdown {
        /// How long the app has to answer.
        timeout: Duration,
    },
    /// Finish leaving: release the id, answer the app's `app.shutdown` requests, close,
    /// stop.
    Leave {
        /// For the log.
        reason: String,
    },
}

/// The actor.
#[derive(Debug)]
pub struct AppActor;

/// Arguments of an AppActor.
#[derive(Debug)]
pub struct AppArgs {
    /// The shared kernel context.
    pub kernel: Arc<Kernel>,
    /// The accepted connection, framed.
    pub transport: Transport,
    /// Its kernel-wide id.
    pub conn_id: u64,
}

/// An app that registered on this connection.
#[derive(Debug)]
pub struct Registered {
    /// Its id.
    pub app_id: String,
    /// Its manifest.
    pub manifest: Manifest,
    /// Its lifecycle state.
    pub state: AppState,
}

/// What the connection's reader needs to answer the methods the table marks `off_actor`
/// itself: who the connection speaks for, and whether the actor has work queued.
#[derive(Debug)]
pub struct Shortcut {
    /// The connection.
    conn_id: u64,
    /// Inbound messages cast to the actor and not yet handled.
    queued: AtomicUsize,
    /// The registered app's id; `None` before registration and once it left.
    caller: RwLock<Option<Arc<str>>>,
}

impl Shortcut {
    /// Records who the connection speaks for (`None` when nobody).
    pub fn set_caller(&self, app_id: Option<&str>) {
        if let Ok(mut caller) = self.caller.write() {
            *caller = app_id.map(Arc::from);
        }
    }

    /// Handles `inbound` here when the method table marks it `off_actor`, the app is
    /// registered and the actor has nothing queued; gives it back otherwise.
    fn take(&self, kernel: &Arc<Kernel>, inbound: Inbound) -> Option<Inbound> {
        let Inbound::Request(req, responder, permit) = inbound else { return Some(inbound) };
        let method = responder.method().filter(|m| m.off_actor);
        let caller: Option<Arc<str>> = self.caller.read().ok().and_then(|c| c.clone());
        // Taken over, stopped from outside or failed: the actor answers (or drops) it.
        let caller = caller.filter(|c| {
            self.queued.load(Ordering::Acquire) == 0 && kernel.apps.holds(c, self.conn_id)
        });
        let (Some(method), Some(caller)) = (method, caller) else {
            return Some(Inbound::Request(req, responder, permit));
        };
        methods::off_actor(kernel, &caller, method, &req.method, req.params, responder);
        drop(permit);
        None
    }
}

/// State of an AppActor; the method families work on it.
#[derive(Debug)]
pub struct AppActorState {
    /// The shared kernel context.
    pub kernel: Arc<Kernel>,
    /// The connection.
    pub conn: Connection,
    /// The registered app, once `app.register` succeeded.
    pub app: Option<Registered>,
    /// The app's own `app.shutdown` requests, answered when it has left.
    pub leave_requests: Vec<Responder>,
    /// Open `config.watch` streams by request id.
    pub watches: HashMap<Id, CancellationToken>,
    /// Why the actor stops, for `app_disconnected`.
    pub stop_reason: String,
    /// Shared with the connection's reader.
    pub shortcut: Arc<Shortcut>,
    ticker: JoinHandle<()>,
}

impl AppActorState {
    /// Moves the app to `state`, in the actor and in the registry.
    pub fn set_state(&mut self, state: AppState) {
        if let Some(app) = self.app.as_mut() {
            app.state = state;
            self.kernel.apps.set_state(&app.app_id, self.conn.id(), state);
        }
    }

    /// The app id, or `-` before registration (for logs).
    pub fn name(&self) -> &str {
        self.app.as_ref().map_or("-", |a| a.app_id.as_str())
    }
}

impl Actor for AppActor {
    type Msg = AppMsg;
    type State = AppActorState;
    type Arguments = AppArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<AppMsg>,
        args: AppArgs,
    ) -> Result<AppActorState, ActorProcessingErr> {
        let ipc = args.kernel.config().ipc.clone();
        let limits = ipc.limits();
        let me = myself.clone();
        let tasks = &args.kernel.tasks;
        let shortcut = Arc::new(Shortcut {
            conn_id: args.conn_id,
            queued: AtomicUsize::new(0),
            caller: RwLock::new(None),
        });
        let (short, kernel) = (shortcut.clone(), args.kernel.clone());
        let conn = Connection::spawn(args.conn_id, args.transport, limits, tasks, move |inbound| {
            let Some(inbound) = short.take(&kernel, inbound) else { return true };
            short.queued.fetch_add(1, Ordering::AcqRel);
            let sent = me.cast(AppMsg::Inbound(inbound)).is_ok();
            if !sent {
                short.queued.fetch_sub(1, Ordering::AcqRel);
            }
            sent
        });
        let period = Duration::from_millis((ipc.heartbeat_timeout_ms / 4).clamp(10, 1000));
        let ticker = tokio::spawn(tick(myself, conn.clone(), period));
        tracing::debug!(conn = args.conn_id, "client connected");
        Ok(AppActorState {
            kernel: args.kernel,
            conn,
            app: None,
            leave_requests: Vec::new(),
            watches: HashMap::new(),
            stop_reason: "connection closed".to_owned(),
            shortcut,
            ticker,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<AppMsg>,
        msg: AppMsg,
        state: &mut AppActorState,
    ) -> Result<(), ActorProcessingErr> {
        let inbound = matches!(msg, AppMsg::Inbound(_));
        match msg {
            AppMsg::Inbound(Inbound::Request(req, responder, _queued)) => {
                methods::dispatch(state, &myself, req, responder);
            }
            AppMsg::Inbound(Inbound::Notification(n, _permit)) => methods::notification(state, n),
            AppMsg::Inbound(Inbound::Closed(reason)) => {
                // An app that got ready says goodbye at info; a client that only
                // registered to call (the CLI) comes and goes at debug.
                let ready = state.app.as_ref().is_some_and(|a| a.state != AppState::Registered);
                if ready {
                    tracing::info!(app = state.name(), conn = state.conn.id(), %reason, "app disconnected");
                } else if state.app.is_some() {
                    tracing::debug!(app = state.name(), conn = state.conn.id(), %reason, "app disconnected before it was ready");
                } else {
                    tracing::debug!(conn = state.conn.id(), %reason, "client disconnected");
                }
                stop(state, &myself, reason);
            }
            AppMsg::Tick => {
                let ipc = &state.kernel.config().ipc;
                let (timeout, stall_timeout) =
                    (ipc.heartbeat_timeout_ms, ipc.write_stall_timeout_ms);
                let stalled = state.conn.write_stalled_ms();
                // A reader held back by back-pressure reads nothing: that silence is the
                // kernel's, not the client's.
                let silent = match state.conn.reading_paused() {
                    true => 0,
                    false => {
                        mono_ms().saturating_sub(state.conn.last_seen().load(Ordering::Relaxed))
                    }
                };
                if stalled > stall_timeout {
                    tracing::warn!(
                        app = state.name(),
                        conn = state.conn.id(),
                        stalled_ms = stalled,
                        "not reading: took nothing the kernel wrote for {stall_timeout} ms; dropping the app"
                    );
                    drop_unresponsive(state, &myself, "not reading");
                } else if silent > timeout {
                    tracing::warn!(
                        app = state.name(),
                        conn = state.conn.id(),
                        silent_ms = silent,
                        "no heartbeat within {timeout} ms: dropping the app"
                    );
                    drop_unresponsive(state, &myself, "heartbeat timeout");
                }
            }
            AppMsg::TakenOver => {
                tracing::info!(
                    app = state.name(),
                    conn = state.conn.id(),
                    "taken over by a new connection"
                );
                state.app = None; // the id belongs to the new connection now
                state.shortcut.set_caller(None);
                stop(state, &myself, "taken over");
            }
            AppMsg::KernelShutdown { timeout } => kernel_shutdown(state, &myself, timeout),
            AppMsg::Leave { reason } => {
                tracing::info!(app = state.name(), %reason, "app left");
                // Released and answered while the actor still runs: once it stops, its
                // ticker finds it gone and closes the connection, which could come
                // before `post_stop` and refuse these answers.
                state.stop_reason = reason.clone();
                release(state);
                answer_leave_requests(state);
                stop(state, &myself, reason);
            }
        }
        if inbound {
            state.shortcut.queued.fetch_sub(1, Ordering::AcqRel);
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<AppMsg>,
        state: &mut AppActorState,
    ) -> Result<(), ActorProcessingErr> {
        state.ticker.abort();
        state.shortcut.set_caller(None);
        for (_, watch) in state.watches.drain() {
            watch.cancel();
        }
        release(state);
        answer_leave_requests(state);
        state.conn.close_within(CLOSE_GRACE);
        Ok(())
    }
}

/// Answers the app's own `app.shutdown` requests; the app is gone from the registry
/// (`release`) before it learns it has left.
fn answer_leave_requests(state: &mut AppActorState) {
    for responder in state.leave_requests.drain(..) {
        responder.reply(Ok(to_value(&Ack::OK)));
    }
}

/// Releases everything the app held (capabilities, subscriptions, its id) and says so,
/// before anyone hears it is gone. Safe to call twice.
fn release(state: &mut AppActorState) {
    let kernel = &state.kernel;
    for cap in kernel.caps.release_conn(state.conn.id()) {
        let payload = crate::service::capabilities::event_payload(&cap);
        kernel.emit(
            "capability_unregistered",
            payload,
            crate::service::capabilities::app_context(&cap.app_id),
        );
    }
    kernel.hooks.release_conn(state.conn.id());
    if let Some(app) = state.app.take() {
        kernel.apps.release(&app.app_id, state.conn.id());
        let payload = serde_json::json!({ "appId": app.app_id, "reason": state.stop_reason });
        kernel.emit(
            "app_disconnected",
            payload,
            crate::service::capabilities::app_context(&app.app_id),
        );
    }
}

/// Drops an app that stopped sending or stopped reading: its supervisor (if managed)
/// hears of it, and the connection is cut at once, not closed gracefully (it would not
/// be read). Released first, so nobody sees the cut before the release.
fn drop_unresponsive(state: &mut AppActorState, myself: &ActorRef<AppMsg>, why: &str) {
    if let Some(app) = &state.app {
        let lost = crate::supervisor::SupervisorMsg::HeartbeatLost(app.app_id.clone());
        state.kernel.notify_supervisor(lost);
    }
    stop(state, myself, why);
    release(state);
    state.conn.abort();
}

/// Stops the actor, remembering why for `app_disconnected`.
fn stop(state: &mut AppActorState, myself: &ActorRef<AppMsg>, reason: impl Into<String>) {
    state.stop_reason = reason.into();
    state.shortcut.set_caller(None);
    myself.stop(Some(state.stop_reason.clone()));
}

/// Sends the app `app.shutdown` and leaves when it answers or the timeout passes.
fn kernel_shutdown(state: &mut AppActorState, myself: &ActorRef<AppMsg>, timeout: Duration) {
    let reason = "kernel stopping".to_owned();
    // Said when the app is let go, however that happens (its answer, or the deadline).
    state.stop_reason = reason.clone();
    if state.app.is_none() {
        stop(state, myself, reason); // post_stop closes the connection
        return;
    }
    state.set_state(AppState::Leaving);
    let params =
        ShutdownParams { reason: Some(reason.clone()), timeout: Some(timeout.as_millis() as u64) };
    let answer = state.conn.request(AppShutdown::NAME, &params, timeout);
    let me = myself.clone();
    tokio::spawn(async move {
        if let Err(e) = answer.await {
            tracing::debug!(error = %e, "app did not acknowledge app.shutdown");
        }
        let _ = me.cast(AppMsg::Leave { reason });
    });
}

/// Casts `Tick` every `period`; closes the connection if the actor is gone.
async fn tick(actor: ActorRef<AppMsg>, conn: Connection, period: Duration) {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if actor.cast(AppMsg::Tick).is_err() {
            conn.close_within(CLOSE_GRACE);
            return;
        }
    }
}
