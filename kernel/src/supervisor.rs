//! The supervisor of app processes: the apps named in `[apps.<id>.run]` are started with
//! `BURROW_SOCKET` and `BURROW_APP_ID`, must register within a start timeout, and are
//! restarted like OTP children — exponential backoff, a restart intensity after which the
//! app stays `failed`, and a reset of the backoff after a run that stayed up. The
//! supervisor also ends strays of an earlier kernel, captures logs, follows configuration
//! changes, and stops everything (SIGTERM, then SIGKILL) when the kernel stops.

use std::collections::{BTreeMap, VecDeque};
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burrow_protocol::{ErrorCode, ErrorObject, now_ms};
use burrow_transport::{APP_ID_ENV, SOCKET_ENV};
use nix::sys::signal::Signal;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use tokio::sync::{broadcast, oneshot};

use crate::kernel::Kernel;
use crate::stop::Stop;
use spec::{RestartPolicy, RunSpec};

pub mod logs;
pub mod process;
pub mod spec;
pub mod strays;

pub use burrow_protocol::methods::app::{ManagedSummary, ProcState};

/// An operator's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Start a stopped or failed app.
    Start,
    /// Stop it (SIGTERM, then SIGKILL) and keep it stopped.
    Stop,
    /// Stop it and start it again.
    Restart,
}

/// Messages of the supervisor.
#[derive(Debug)]
pub enum SupervisorMsg {
    /// The configuration changed: start, stop or restart to match `[apps.*.run]`.
    Sync,
    /// `burrow apps start|stop|restart`.
    Control(String, Control, oneshot::Sender<Result<(), ErrorObject>>),
    /// A process ended (or could not start: the error); reaping waits for the handle.
    Exited(String, u64, Result<ExitStatus, String>, Option<process::Reap>),
    /// The start timeout of a generation passed.
    StartDeadline(String, u64),
    /// A backoff ended.
    RestartDue(String, u64),
    /// The stop timeout of a generation passed: SIGKILL.
    StopDeadline(String, u64),
    /// An app registered with the kernel.
    Registered(String),
    /// The kernel dropped an app for missing heartbeats.
    HeartbeatLost(String),
    /// The kernel is stopping: start nothing any more.
    Quiesce(Stop),
    /// Stop every process, then the supervisor itself; answered when all have ended.
    StopAll(Stop),
}

/// What to do when the current process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    Policy,
    Stop,
    Restart,
    Remove,
}

#[derive(Debug)]
struct Managed {
    spec: RunSpec,
    state: ProcState,
    pid: Option<u32>,
    generation: u64,
    started: Option<(Instant, u64)>,
    window: VecDeque<Instant>,
    restarts: u64,
    failures_in_row: u32,
    last_exit: Option<String>,
    then: Then,
    kill_reason: Option<String>,
    log: Arc<Mutex<logs::LogFile>>,
}

/// The actor.
#[derive(Debug)]
pub struct SupervisorActor;

/// Its state.
#[derive(Debug)]
pub struct SupervisorState {
    kernel: Arc<Kernel>,
    spawner: process::Spawner,
    records: strays::Registry,
    apps: BTreeMap<String, Managed>,
    quiesced: bool,
    stopping: Option<Stop>,
    /// Operators' starts, stops and restarts waiting to learn how they went.
    waiters: Vec<Waiter>,
}

/// An operator's control, answered once the app is running or has failed (a start or
/// restart), or has stopped (a stop).
#[derive(Debug)]
struct Waiter {
    id: String,
    /// The app's generation when asked: a start counts from the next one.
    after: u64,
    stop: bool,
    reply: oneshot::Sender<Result<(), ErrorObject>>,
}

impl Actor for SupervisorActor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = Arc<Kernel>;

    async fn pre_start(
        &self,
        myself: ActorRef<SupervisorMsg>,
        kernel: Arc<Kernel>,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let records = strays::Registry::new(&kernel.paths.state_dir);
        let ended = records.end_strays(Duration::from_secs(2)).await;
        if !ended.is_empty() {
            tracing::warn!(?ended, "ended managed processes left by an earlier kernel");
        }
        let spawner = process::Spawner::start()?;
        let _ = myself.cast(SupervisorMsg::Sync);
        Ok(SupervisorState {
            kernel,
            spawner,
            records,
            apps: BTreeMap::new(),
            quiesced: false,
            stopping: None,
            waiters: Vec::new(),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(stop) = state.stopping.take() {
            stop.done();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Sync => sync(state, &myself).await,
            SupervisorMsg::Control(id, control, reply) => {
                let before = state.apps.get(&id).map(|m| (m.generation, m.state, m.then));
                let result = control_app(state, &myself, &id, control).await;
                if result.is_ok() {
                    supersede(state, &id, control);
                }
                match (result, before) {
                    (Err(e), _) => drop(reply.send(Err(e))),
                    // Starting what runs (and is not being stopped) changes nothing.
                    (Ok(()), Some((_, ProcState::Running, Then::Policy)))
                        if control == Control::Start =>
                    {
                        drop(reply.send(Ok(())))
                    }
                    (Ok(()), before) => {
                        // A start of an app still starting waits for that very process.
                        let after = match before {
                            Some((generation, ProcState::Starting, Then::Policy))
                                if control == Control::Start =>
                            {
                                generation.saturating_sub(1)
                            }
                            Some((generation, ..)) => generation,
                            None => 0,
                        };
                        let stop = control == Control::Stop;
                        state.waiters.push(Waiter { after, stop, id, reply });
                    }
                }
            }
            SupervisorMsg::Exited(id, generation, status, _reap) => {
                exited(state, &myself, &id, generation, status).await
            }
            SupervisorMsg::StartDeadline(id, generation) => {
                let timeout = state.kernel.config().supervisor.start_timeout_ms;
                if let Some(m) = current(state, &id, generation)
                    && m.state == ProcState::Starting
                {
                    kill(m, format!("did not register within {timeout} ms"));
                }
            }
            SupervisorMsg::RestartDue(id, generation) => {
                if !state.quiesced
                    && current(state, &id, generation)
                        .is_some_and(|m| m.state == ProcState::Restarting)
                {
                    start(state, &myself, &id).await;
                }
            }
            SupervisorMsg::StopDeadline(id, generation) => {
                if let Some(m) = current(state, &id, generation)
                    && let Some(pid) = m.pid
                {
                    tracing::warn!(app = %id, pid, "did not stop after SIGTERM: SIGKILL");
                    process::signal(pid, Signal::SIGKILL);
                }
            }
            SupervisorMsg::Registered(id) => {
                if let Some(m) = state.apps.get_mut(&id)
                    && m.state == ProcState::Starting
                {
                    m.state = ProcState::Running;
                }
            }
            SupervisorMsg::HeartbeatLost(id) => {
                if let Some(m) = state.apps.get_mut(&id) {
                    kill(m, "dropped for missing heartbeats".to_owned());
                }
            }
            SupervisorMsg::Quiesce(stop) => {
                state.quiesced = true;
                stop.done();
            }
            SupervisorMsg::StopAll(stop) => {
                state.quiesced = true;
                state.stopping = Some(stop);
                let ids: Vec<String> = state.apps.keys().cloned().collect();
                for id in ids {
                    terminate(state, &myself, &id, Then::Stop);
                }
                finish_stop_all(&myself, state);
            }
        }
        settle(state);
        publish(state);
        Ok(())
    }
}

fn current<'a>(
    state: &'a mut SupervisorState,
    id: &str,
    generation: u64,
) -> Option<&'a mut Managed> {
    state.apps.get_mut(id).filter(|m| m.generation == generation)
}

/// SIGKILL for a process that must go now; its exit counts as a failure.
fn kill(m: &mut Managed, reason: String) {
    if let Some(pid) = m.pid {
        tracing::warn!(pid, %reason, "killing a managed app");
        m.kill_reason = Some(reason);
        process::signal(pid, Signal::SIGKILL);
    }
}

/// Asks a process to end (SIGTERM, SIGKILL after the stop timeout); `then` says what
/// follows its exit. An app without a process takes `then` at once.
fn terminate(state: &mut SupervisorState, myself: &ActorRef<SupervisorMsg>, id: &str, then: Then) {
    let stop_timeout = Duration::from_millis(state.kernel.config().supervisor.stop_timeout_ms);
    let Some(m) = state.apps.get_mut(id) else { return };
    m.then = then;
    match m.pid {
        Some(pid) => {
            process::signal(pid, Signal::SIGTERM);
            send_after(
                myself,
                stop_timeout,
                SupervisorMsg::StopDeadline(id.to_owned(), m.generation),
            );
        }
        None => {
            m.generation += 1; // cancels a pending restart
            match then {
                Then::Remove => {
                    state.apps.remove(id);
                }
                _ => m.state = ProcState::Stopped,
            }
        }
    }
}

fn send_after(myself: &ActorRef<SupervisorMsg>, delay: Duration, msg: SupervisorMsg) {
    let me = myself.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let _ = me.cast(msg);
    });
}

/// Matches the running set to the configuration's `[apps.*.run]` tables.
async fn sync(state: &mut SupervisorState, myself: &ActorRef<SupervisorMsg>) {
    if state.quiesced {
        return;
    }
    let desired = state.kernel.config().run.clone();
    let gone: Vec<String> =
        state.apps.keys().filter(|id| !desired.contains_key(*id)).cloned().collect();
    for id in gone {
        tracing::info!(app = %id, "run table removed: stopping the app");
        terminate(state, myself, &id, Then::Remove);
    }
    for (id, spec) in desired {
        let restart_now = match state.apps.get_mut(&id) {
            Some(m) if m.spec == spec => {
                // Removed and put back before its process ended: keep it after all.
                if m.then == Then::Remove {
                    m.then = Then::Restart;
                }
                continue;
            }
            Some(m) => {
                tracing::info!(app = %id, "run table changed: restarting the app");
                m.spec = spec;
                m.failures_in_row = 0;
                m.window.clear();
                m.pid.is_none()
            }
            None => {
                let log = open_log(&state.kernel, &id);
                let managed = Managed {
                    spec,
                    state: ProcState::Stopped,
                    pid: None,
                    generation: 0,
                    started: None,
                    window: VecDeque::new(),
                    restarts: 0,
                    failures_in_row: 0,
                    last_exit: None,
                    then: Then::Policy,
                    kill_reason: None,
                    log,
                };
                state.apps.insert(id.clone(), managed);
                true
            }
        };
        if restart_now {
            start(state, myself, &id).await;
        } else {
            terminate(state, myself, &id, Then::Restart);
        }
    }
}

fn open_log(kernel: &Kernel, id: &str) -> Arc<Mutex<logs::LogFile>> {
    let settings = kernel.config().supervisor.clone();
    let feed = kernel.log_feed(id);
    let path = logs::log_path(&kernel.paths.state_dir, id);
    Arc::new(Mutex::new(logs::LogFile::open(
        path,
        settings.log_max_bytes,
        settings.log_files,
        feed,
    )))
}

/// Starts a new process for `id`.
async fn start(state: &mut SupervisorState, myself: &ActorRef<SupervisorMsg>, id: &str) {
    let config = state.kernel.config();
    let socket = state.kernel.paths.socket.clone();
    let Some(m) = state.apps.get_mut(id) else { return };
    m.generation += 1;
    m.then = Then::Policy;
    m.kill_reason = None;
    let generation = m.generation;
    let Some(program) = spec::resolve_command(&m.spec.command, config.base_dir.as_deref()) else {
        let reason = format!(
            "command {:?} not found (as a path, next to burrow, or on PATH)",
            m.spec.command
        );
        tracing::error!(app = %id, %reason, "cannot start managed app");
        note(m, format!("failed: {reason}"));
        m.last_exit = Some(reason);
        m.state = ProcState::Failed;
        return;
    };
    let command = process::managed_command(&program, &m.spec.args).map(|mut c| {
        c.envs(&m.spec.env).env(SOCKET_ENV, &socket).env(APP_ID_ENV, id);
        c
    });
    let spawned = match command {
        Ok(c) => state.spawner.spawn(c).await,
        Err(e) => Err(e),
    };
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            tracing::error!(app = %id, error = %e, "cannot start managed app");
            note(m, format!("cannot start: {e}"));
            m.last_exit = Some(format!("cannot start: {e}"));
            // Starting until its `Exited` is handled: the policy decides what comes next.
            m.state = ProcState::Starting;
            let _ = myself.cast(SupervisorMsg::Exited(
                id.to_owned(),
                generation,
                Err(format!("cannot start: {e}")),
                None,
            ));
            return;
        }
    };
    let pid = child.id();
    tracing::info!(app = %id, pid, program = %program.display(), "started managed app");
    for pipe in [
        child.stdout.take().map(|p| tokio::process::ChildStdout::from_std(p).map(Pipe::Out)),
        child.stderr.take().map(|p| tokio::process::ChildStderr::from_std(p).map(Pipe::Err)),
    ]
    .into_iter()
    .flatten()
    .flatten()
    {
        let log = m.log.clone();
        match pipe {
            Pipe::Out(p) => drop(tokio::spawn(logs::pump(p, log))),
            Pipe::Err(p) => drop(tokio::spawn(logs::pump(p, log))),
        }
    }
    let me = myself.clone();
    let app = id.to_owned();
    let watched = process::watch_exit(child, move |status, reap| {
        let status = status.map_err(|e| format!("wait failed: {e}"));
        let _ = me.cast(SupervisorMsg::Exited(app, generation, status, Some(reap)));
    });
    if !watched {
        process::signal(pid, Signal::SIGKILL);
        let why = Err("cannot watch the process".to_owned());
        let _ = myself.cast(SupervisorMsg::Exited(id.to_owned(), generation, why, None));
    }
    m.pid = Some(pid);
    m.started = Some((Instant::now(), now_ms()));
    m.state = ProcState::Starting;
    let timeout = Duration::from_millis(config.supervisor.start_timeout_ms);
    send_after(myself, timeout, SupervisorMsg::StartDeadline(id.to_owned(), generation));
    record(state);
}

enum Pipe {
    Out(tokio::process::ChildStdout),
    Err(tokio::process::ChildStderr),
}

/// Writes the live pids to the record file.
fn record(state: &SupervisorState) {
    let live: BTreeMap<String, strays::Record> = state
        .apps
        .iter()
        .filter_map(|(id, m)| {
            let pid = m.pid?;
            let start_time = strays::start_time(pid)?;
            Some((id.clone(), strays::Record { app_id: id.clone(), pid, start_time }))
        })
        .collect();
    state.records.write(&live);
}

async fn exited(
    state: &mut SupervisorState,
    myself: &ActorRef<SupervisorMsg>,
    id: &str,
    generation: u64,
    status: Result<ExitStatus, String>,
) {
    let settings = state.kernel.config().supervisor.clone();
    let quiesced = state.quiesced;
    let Some(m) = current(state, id, generation) else { return };
    let (how, mut failed) = process::describe(&status);
    if let Some(reason) = m.kill_reason.take() {
        failed = true;
        m.last_exit = Some(reason);
    } else {
        m.last_exit = Some(how);
    }
    let ran = m.started.map(|(t, _)| t.elapsed()).unwrap_or_default();
    m.pid = None;
    m.started = None;
    tracing::info!(app = %id, exit = ?m.last_exit, "managed app ended");
    note(m, format!("ended: {}", m.last_exit.as_deref().unwrap_or("?")));
    let then = m.then;
    m.then = Then::Policy;
    let mut restart_now = false;
    match then {
        Then::Remove => {
            state.apps.remove(id);
        }
        Then::Stop => m.state = ProcState::Stopped,
        _ if quiesced => m.state = ProcState::Stopped,
        Then::Restart => restart_now = true,
        Then::Policy => match (m.spec.restart, failed) {
            (RestartPolicy::Never | RestartPolicy::OnFailure, false) => {
                m.state = ProcState::Stopped
            }
            (RestartPolicy::Never, true) => m.state = ProcState::Failed,
            _ => schedule_restart(m, myself, id, &settings, ran),
        },
    }
    if restart_now {
        start(state, myself, id).await;
    }
    record(state);
    finish_stop_all(myself, state);
}

/// Backoff and restart intensity: after a run, decide when (or whether) to start again.
fn schedule_restart(
    m: &mut Managed,
    myself: &ActorRef<SupervisorMsg>,
    id: &str,
    settings: &spec::SupervisorSettings,
    ran: Duration,
) {
    let now = Instant::now();
    let window = Duration::from_millis(settings.restart_window_ms);
    m.window.retain(|t| now.duration_since(*t) < window);
    if m.window.len() >= settings.max_restarts {
        tracing::error!(app = %id, restarts = m.window.len(), window_ms = settings.restart_window_ms,
            "restart intensity exceeded: the app stays failed (burrow apps start to try again)");
        let last = m.last_exit.take().unwrap_or_else(|| "ended".into());
        m.last_exit = Some(format!(
            "{last}; restart intensity reached ({} restarts within {} ms)",
            m.window.len(),
            settings.restart_window_ms
        ));
        m.state = ProcState::Failed;
        note(m, format!("failed: {}", m.last_exit.as_deref().unwrap_or("?")));
        return;
    }
    if ran >= Duration::from_millis(settings.stable_after_ms) {
        m.failures_in_row = 0;
    }
    let delay = settings.backoff(m.failures_in_row);
    m.failures_in_row += 1;
    m.window.push_back(now);
    m.restarts += 1;
    metrics::counter!("burrow_app_restarts_total", "app" => id.to_owned()).increment(1);
    m.state = ProcState::Restarting;
    tracing::info!(app = %id, delay_ms = delay.as_millis() as u64, "restarting after backoff");
    send_after(myself, delay, SupervisorMsg::RestartDue(id.to_owned(), m.generation));
}

async fn control_app(
    state: &mut SupervisorState,
    myself: &ActorRef<SupervisorMsg>,
    id: &str,
    control: Control,
) -> Result<(), ErrorObject> {
    if state.quiesced {
        return Err(ErrorObject::new(ErrorCode::Forbidden, "the kernel is stopping"));
    }
    let Some(m) = state.apps.get_mut(id) else {
        return Err(ErrorObject::new(
            ErrorCode::NotFound,
            format!("{id:?} is not a managed app (no [apps.{id}.run] in the config)"),
        ));
    };
    if m.then == Then::Remove {
        return Err(ErrorObject::new(
            ErrorCode::NotFound,
            format!("{id:?} is being removed from the config"),
        ));
    }
    let running = m.pid.is_some();
    match (control, running) {
        // Still stopping (stop answered before the exit): start it again afterwards.
        (Control::Start, true) if m.then == Then::Stop => m.then = Then::Restart,
        (Control::Start, true) => {}
        (Control::Start | Control::Restart, false) => {
            m.failures_in_row = 0;
            m.window.clear();
            start(state, myself, id).await;
        }
        (Control::Restart, true) => terminate(state, myself, id, Then::Restart),
        (Control::Stop, _) => terminate(state, myself, id, Then::Stop),
    }
    Ok(())
}

/// During the kernel's stop, stops the supervisor once no process is left; its
/// `post_stop` answers the stop.
fn finish_stop_all(myself: &ActorRef<SupervisorMsg>, state: &SupervisorState) {
    if state.stopping.is_some() && state.apps.values().all(|m| m.pid.is_none()) {
        myself.stop(None);
    }
}

/// Adds what the supervisor saw to the app's captured log (`burrow logs ID`), as a
/// `[burrow]` line: why it could not start, how it ended, why it stays failed.
fn note(m: &Managed, text: String) {
    let log = m.log.clone();
    // Off the actor: an app's output may be holding the log for a moment.
    tokio::task::spawn_blocking(move || {
        if let Ok(mut log) = log.lock() {
            log.write_line(&format!("[burrow] {text}"));
        }
    });
}

/// Answers the controls of app `id` still waiting that a later control (`now`) undoes:
/// a stop undoes a start or restart, and the other way round.
fn supersede(state: &mut SupervisorState, id: &str, now: Control) {
    let undone = |w: &Waiter| w.id == id && w.stop != (now == Control::Stop);
    let (done, waiting) = std::mem::take(&mut state.waiters).into_iter().partition(undone);
    state.waiters = waiting;
    for w in done {
        let what = format!("{id}: superseded by a later {}", format!("{now:?}").to_lowercase());
        let _ = w.reply.send(Err(ErrorObject::new(ErrorCode::Conflict, what)));
    }
}

/// Answers the controls whose outcome is known; forgets those nobody waits for any more.
fn settle(state: &mut SupervisorState) {
    for w in std::mem::take(&mut state.waiters) {
        if w.reply.is_closed() {
            continue;
        }
        match outcome(state.apps.get(&w.id), &w) {
            Some(result) => drop(w.reply.send(result)),
            None => state.waiters.push(w),
        }
    }
}

/// How a control went, once it is known: a start or restart when a later generation
/// runs (registered) or has failed or stopped, a stop when no process is left.
fn outcome(m: Option<&Managed>, w: &Waiter) -> Option<Result<(), ErrorObject>> {
    let Some(m) = m else {
        // Removed from the config: stopped for good, which is what a stop asked.
        let gone = format!("{:?} was removed from the config", w.id);
        return Some(if w.stop {
            Ok(())
        } else {
            Err(ErrorObject::new(ErrorCode::NotFound, gone))
        });
    };
    let why = || m.last_exit.clone().unwrap_or_else(|| "no reason recorded".into());
    match m.state {
        _ if w.stop => (m.pid.is_none()
            && matches!(m.state, ProcState::Stopped | ProcState::Failed))
        .then_some(Ok(())),
        _ if m.generation <= w.after => None,
        ProcState::Running => Some(Ok(())),
        ProcState::Failed => {
            let failed = format!("{} failed: {}", w.id, why());
            Some(Err(ErrorObject::new(ErrorCode::UnknownError, failed)))
        }
        ProcState::Stopped => {
            let stopped = format!("{} stopped before it was ready: {}", w.id, why());
            Some(Err(ErrorObject::new(ErrorCode::UnknownError, stopped)))
        }
        _ => None,
    }
}

/// Shares the current picture with the kernel (for `kernel.apps`).
fn publish(state: &SupervisorState) {
    let summaries = state
        .apps
        .iter()
        .map(|(id, m)| ManagedSummary {
            app_id: id.clone(),
            state: m.state,
            pid: m.pid,
            started_at: m.started.map(|(_, wall)| wall),
            restarts: m.restarts,
            last_exit: m.last_exit.clone(),
            restart: m.spec.restart,
            command: m.spec.command.clone(),
        })
        .collect();
    state.kernel.set_managed(summaries);
}

/// A follower feed for an app's log lines.
pub fn new_feed() -> broadcast::Sender<String> {
    broadcast::channel(1024).0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn managed(state: ProcState, generation: u64, pid: Option<u32>, last: Option<&str>) -> Managed {
        let spec: RunSpec = toml::from_str("command = \"x\"").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let log = logs::LogFile::open(dir.path().join("a.log"), 1024, 0, broadcast::channel(1).0);
        Managed {
            spec,
            state,
            pid,
            generation,
            started: None,
            window: VecDeque::new(),
            restarts: 0,
            failures_in_row: 0,
            last_exit: last.map(str::to_owned),
            then: Then::Policy,
            kill_reason: None,
            log: Arc::new(Mutex::new(log)),
        }
    }

    fn waiter(after: u64, stop: bool) -> Waiter {
        Waiter { id: "a".into(), after, stop, reply: oneshot::channel().0 }
    }

    #[test]
    fn a_start_waits_for_a_later_generation_to_run_or_fail() {
        let start = waiter(3, false);
        // The generation asked about (a restart whose old process still runs): not yet.
        let old = managed(ProcState::Running, 3, Some(7), None);
        assert!(outcome(Some(&old), &start).is_none());
        let starting = managed(ProcState::Starting, 4, Some(8), None);
        assert!(outcome(Some(&starting), &start).is_none());
        let restarting = managed(ProcState::Restarting, 4, None, Some("exit status: 1"));
        assert!(outcome(Some(&restarting), &start).is_none());
        let up = managed(ProcState::Running, 4, Some(8), None);
        assert_eq!(outcome(Some(&up), &start), Some(Ok(())));
        let failed = managed(ProcState::Failed, 5, None, Some("command \"x\" not found"));
        let Some(Err(e)) = outcome(Some(&failed), &start) else { panic!("a failure") };
        assert_eq!(e.message, "a failed: command \"x\" not found");
        let stopped = managed(ProcState::Stopped, 4, None, None);
        let Some(Err(e)) = outcome(Some(&stopped), &start) else { panic!("stopped") };
        assert_eq!(e.message, "a stopped before it was ready: no reason recorded");
        let Some(Err(e)) = outcome(None, &start) else { panic!("removed") };
        assert_eq!(e.code, ErrorCode::NotFound);
    }

    #[test]
    fn a_stop_is_done_when_no_process_is_left() {
        let stop = waiter(3, true);
        let ending = managed(ProcState::Running, 3, Some(7), None);
        assert!(outcome(Some(&ending), &stop).is_none());
        let stopped = managed(ProcState::Stopped, 3, None, Some("signal: 15"));
        assert_eq!(outcome(Some(&stopped), &stop), Some(Ok(())));
        let failed = managed(ProcState::Failed, 3, None, None);
        assert_eq!(outcome(Some(&failed), &stop), Some(Ok(())));
    }
}
