//! Starting and stopping a kernel: state directory, configuration, key, the local-socket
//! listener (stale sockets reclaimed, live ones never stolen), the root actor, and
//! graceful shutdown driven by a future (`run(settings, shutdown)`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use interprocess::local_socket::tokio::Listener;
use ractor::{Actor, ActorRef};
use tokio::time::Instant;

use crate::config::{Config, ConfigError};
use crate::fsutil;
use crate::kernel::Kernel;
use crate::root::{KernelActor, KernelArgs, KernelMsg};
use crate::stop::{self, Stop};
use crate::supervisor::{SupervisorActor, SupervisorMsg};
use crate::token::{KernelKey, KeyError};

/// Where and how a kernel runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The local socket (a path on Unix, a pipe name on Windows).
    pub socket: PathBuf,
    /// Where the key and other state live.
    pub state_dir: PathBuf,
    /// The TOML configuration file, if any.
    pub config_path: Option<PathBuf>,
    /// Host surfaces and the kernel channel to listen on.
    pub listen: crate::endpoints::Listen,
}

/// Why a kernel could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// Another kernel is serving the socket.
    #[error("another kernel is already listening on {0}")]
    AlreadyRunning(PathBuf),
    /// Another kernel uses the state directory.
    #[error("another kernel is using the state directory {0}")]
    StateDirInUse(PathBuf),
    /// Something that is not a socket is in the way; it is never deleted.
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The key is unusable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A file or socket operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The actor system failed.
    #[error("actor system: {0}")]
    Actor(String),
    /// A host surface or the kernel channel could not be set up.
    #[error("{0}")]
    Endpoint(String),
}

/// A bound listener and the lock that makes it ours.
#[derive(Debug)]
pub struct BoundSocket {
    listener: Listener,
    _lock: File,
}

/// Binds the kernel socket with mode 0600. A lock file beside the socket
/// (`<socket>.lock`) tells a live kernel from a stale socket file: while another kernel
/// holds it, this fails with [`KernelError::AlreadyRunning`]; once we hold it, a leftover
/// socket file is stale and is replaced.
pub async fn bind(socket: &Path) -> Result<BoundSocket, KernelError> {
    let io = |what, source| KernelError::Io { what, path: socket.to_owned(), source };
    #[cfg(unix)]
    if let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty()) {
        fsutil::create_private_dir(dir).map_err(|e| io("cannot create socket directory for", e))?;
    }
    let lock = lock_socket(socket)?;
    if let Some(is_socket) = existing_file_is_socket(socket) {
        if !is_socket {
            return Err(KernelError::NotASocket(socket.to_owned()));
        }
        // Belt and braces: something answering there is never stolen, lock or not. Only
        // a refused connection proves the socket stale.
        let probe =
            tokio::time::timeout(Duration::from_secs(1), burrow_transport::connect_stream(socket))
                .await;
        match probe {
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                tracing::info!(socket = %socket.display(), "reclaiming a stale socket left by a dead kernel");
                std::fs::remove_file(socket).map_err(|e| io("cannot remove stale socket", e))?;
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
            _ => return Err(KernelError::AlreadyRunning(socket.to_owned())),
        }
    }
    let listener = create_listener(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => KernelError::AlreadyRunning(socket.to_owned()),
        _ => io("cannot listen on", e),
    })?;
    Ok(BoundSocket { listener, _lock: lock })
}

/// Opens `path` (0600) and takes an exclusive lock on it, held while the file is open.
fn lock_socket(socket: &Path) -> Result<File, KernelError> {
    let mut lock_path = socket.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    if cfg!(windows) {
        // Named pipes need no lock file: a live pipe name cannot be created twice.
        return File::open(std::env::current_exe().unwrap_or_default())
            .map_err(|source| KernelError::Io { what: "cannot open", path: lock_path, source });
    }
    let mut options = std::fs::OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(&lock_path).map_err(|source| KernelError::Io {
        what: "cannot open lock file",
        path: lock_path.clone(),
        source,
    })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(KernelError::AlreadyRunning(socket.to_owned()))
        }
        Err(std::fs::TryLockError::Error(source)) => {
            Err(KernelError::Io { what: "cannot lock", path: lock_path, source })
        }
    }
}

/// `None` when nothing is at `path` (or on Windows, where pipes leave no files), else
/// whether it is a socket.
fn existing_file_is_socket(path: &Path) -> Option<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        std::fs::symlink_metadata(path).ok().map(|m| m.file_type().is_socket())
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

#[cfg(unix)]
fn create_listener(socket: &Path) -> std::io::Result<Listener> {
    use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
    use interprocess::os::unix::local_socket::ListenerOptionsExt;
    ListenerOptions::new().name(socket.to_fs_name::<GenericFilePath>()?).mode(0o600).create_tokio()
}

#[cfg(windows)]
fn create_listener(socket: &Path) -> std::io::Result<Listener> {
    use interprocess::local_socket::{GenericNamespaced, ListenerOptions, ToNsName};
    ListenerOptions::new()
        .name(socket.as_os_str().to_ns_name::<GenericNamespaced>()?)
        .create_tokio()
}

/// Loads the configuration file, or the built-in configuration (with the bundled apps)
/// when there is none.
pub fn load_config(path: Option<&Path>, state_dir: &Path) -> Result<Config, KernelError> {
    Ok(match path {
        Some(path) => Config::load(path, state_dir)?,
        None => Config::builtin(state_dir),
    })
}

/// Runs a kernel until `shutdown` resolves, then stops it gracefully: every app gets
/// `app.shutdown` and up to `ipc.shutdown_timeout_ms` to answer.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), KernelError> {
    // Before anything is opened; the host surfaces' caps are derived from it.
    crate::descriptors::raise_limit();
    crate::metrics::install();
    let config = load_config(settings.config_path.as_deref(), &settings.state_dir)?;
    let traces = crate::telemetry::init(&config.telemetry).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "no traces");
        None
    });
    let managed: Vec<&str> = config.run.keys().map(String::as_str).collect();
    match &config.file {
        Some(file) => {
            tracing::info!(file = %file.display(), apps = ?managed, "configuration loaded over the built-in defaults")
        }
        None => {
            tracing::info!(apps = ?managed, "no configuration file: running on the built-in defaults")
        }
    }
    // The bundled files app shows a directory to agents' tools; say which, loudly when a
    // file was given that does not mention it (it came with the defaults).
    if config.run.contains_key("files") && config.origin("apps.files") == "built-in default" {
        let dir = std::env::current_dir().unwrap_or_default();
        let what = "the bundled files app serves this directory to agents' tools \
                    ([apps.files] enabled = false switches it off)";
        match &config.file {
            Some(_) => tracing::warn!(dir = %dir.display(), "{what}"),
            None => tracing::info!(dir = %dir.display(), "{what}"),
        }
    }
    fsutil::create_private_dir(&settings.state_dir).map_err(|source| KernelError::Io {
        what: "cannot create state directory",
        path: settings.state_dir.clone(),
        source,
    })?;
    let key = KernelKey::load_or_create(&settings.state_dir)?;
    let bound = bind(&settings.socket).await?;
    // One kernel per state directory: two would end each other's managed apps as strays.
    let state_lock = fsutil::lock_file(&settings.state_dir.join("kernel.lock"), Duration::ZERO)
        .map_err(|_| KernelError::StateDirInUse(settings.state_dir.clone()))?;

    let paths = crate::kernel::KernelPaths {
        socket: settings.socket.clone(),
        state_dir: settings.state_dir.clone(),
    };
    let store = crate::store::sqlite::SqliteStore::open(&settings.state_dir.join("burrow.db"))
        .map_err(|e| KernelError::Actor(format!("cannot open the store: {e}")))?;
    let kernel = Arc::new(Kernel::new(config, key, paths, Arc::new(store)));
    let endpoints = crate::endpoints::bind_all(&kernel, &settings.listen).await?;
    let local_rpc = crate::endpoints::LocalRpc::default();
    let args = KernelArgs {
        kernel: kernel.clone(),
        listener: bound.listener,
        local_rpc: local_rpc.clone(),
    };
    // Hot reload: watching ends when `_watcher` is dropped at the end of the run.
    let _watcher = match &settings.config_path {
        Some(path) => match crate::config::watch::spawn(kernel.clone(), path.clone()) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, path = %path.display(), "cannot watch the config file; changes need a restart");
                None
            }
        },
        None => None,
    };
    // The supervisor ends strays of an earlier run, then starts the managed apps.
    let (supervisor, _) = Actor::spawn(None, SupervisorActor, kernel.clone())
        .await
        .map_err(|e| KernelError::Actor(e.to_string()))?;
    kernel.set_supervisor(supervisor.clone());
    // Sessions resume the runs acknowledged before the last stop.
    let (sessions, _) = Actor::spawn(None, crate::sessions::SessionsActor, kernel.clone())
        .await
        .map_err(|e| KernelError::Actor(e.to_string()))?;
    let (actor, handle) = Actor::spawn(None, KernelActor, args)
        .await
        .map_err(|e| KernelError::Actor(e.to_string()))?;
    let endpoints = endpoints.serve(&kernel, local_rpc);
    tracing::info!(
        socket = %settings.socket.display(),
        state_dir = %settings.state_dir.display(),
        version = crate::VERSION,
        "kernel listening"
    );
    let mut handle = handle;
    tokio::select! {
        _ = shutdown => {}
        joined = &mut handle => {
            return Err(KernelError::Actor(format!("kernel actor stopped unexpectedly: {joined:?}")));
        }
    }
    tracing::info!("shutdown requested");
    let parts = Parts { endpoints, supervisor, sessions, root: actor };
    stop(&kernel, parts).await;
    // The spans still buffered go out (blocking, off the runtime's threads).
    if let Some(traces) = traces {
        let _ = tokio::task::spawn_blocking(move || drop(traces)).await;
    }
    drop(bound._lock);
    drop(state_lock);
    tracing::info!("kernel stopped");
    Ok(())
}

/// How long a step of the stop that waits on no app and no process may take: it takes
/// milliseconds unless something is wrong, and then the stop goes on without it.
const STEP: Duration = Duration::from_secs(2);

/// What a running kernel is made of, as [`stop`] takes it down.
struct Parts {
    endpoints: crate::endpoints::Endpoints,
    supervisor: ActorRef<SupervisorMsg>,
    sessions: ActorRef<Stop>,
    root: ActorRef<KernelMsg>,
}

/// Stops a running kernel: one ordered sequence, each step handing one part's owner a
/// [`Stop`] and waiting for its answer within the deadline (see [`crate::stop`]). The
/// apps get `ipc.shutdown_timeout_ms` to leave, managed processes
/// `supervisor.stop_timeout_ms` after SIGTERM, every other step [`STEP`].
async fn stop(kernel: &Kernel, parts: Parts) {
    let Parts { endpoints, supervisor, sessions, root } = parts;
    let config = kernel.config();
    let (apps, processes) =
        (config.ipc.shutdown_timeout(), Duration::from_millis(config.supervisor.stop_timeout_ms));
    let after = |d: Duration| Instant::now() + d;
    // 1. Hosts and trusted kernels first: no new work while apps are asked to leave.
    stop::part("host surfaces", after(STEP), Duration::ZERO, |s| {
        endpoints.stop(s);
        true
    })
    .await;
    // 2. No restarts from now on.
    stop::part("restarts", after(STEP), Duration::ZERO, |s| {
        supervisor.cast(SupervisorMsg::Quiesce(s)).is_ok()
    })
    .await;
    // 3. The sessions, before the apps their runs call leave: a run in progress stops
    //    where it is and stays unfinished in the store, to resume at the next start
    //    (rather than fail for want of its provider). What they acknowledged is on disk.
    stop::part("sessions", after(STEP), Duration::ZERO, |s| sessions.cast(s).is_ok()).await;
    // 4. `app.shutdown` to every app; the root actor lets them go at the deadline, gives
    //    their actors LAST_WORDS to release what they held, and closes the socket.
    stop::part("apps", after(apps), crate::root::LAST_WORDS + STEP, |s| {
        root.cast(KernelMsg::Shutdown(s)).is_ok()
    })
    .await;
    // 5. SIGTERM to the managed processes left, SIGKILL after their stop timeout.
    stop::part("managed processes", after(processes), STEP, |s| {
        supervisor.cast(SupervisorMsg::StopAll(s)).is_ok()
    })
    .await;
    // 6. The last answers (e.g. to an app's own app.shutdown) reach the socket.
    stop::part("last answers", after(STEP), Duration::ZERO, |s| {
        kernel.tasks.close();
        let tasks = kernel.tasks.clone();
        tokio::spawn(async move {
            tasks.wait().await;
            s.done();
        });
        true
    })
    .await;
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    #[tokio::test]
    async fn a_file_that_is_not_a_socket_is_never_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, "keep me").unwrap();
        assert!(matches!(bind(&path).await, Err(KernelError::NotASocket(_))));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
    }

    #[tokio::test]
    async fn a_stale_socket_is_reclaimed_and_a_live_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.sock");
        // A socket file with nobody listening: what a SIGKILLed kernel leaves.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let first = bind(&path).await.expect("stale socket reclaimed");
        // Same process, second bind: the lock refuses it and the socket stays.
        assert!(matches!(bind(&path).await, Err(KernelError::AlreadyRunning(_))));
        assert!(burrow_transport::connect_stream(&path).await.is_ok());
        drop(first);
        assert!(!path.exists(), "dropping the listener removes the socket file");
    }

    #[tokio::test]
    async fn a_live_listener_without_our_lock_is_not_stolen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.sock");
        let _other = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert!(matches!(bind(&path).await, Err(KernelError::AlreadyRunning(_))));
        assert!(path.exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_serves_until_its_shutdown_future_then_sends_every_app_away() {
        let dir = tempfile::tempdir().unwrap();
        let (socket, state_dir) = (dir.path().join("k.sock"), dir.path().join("state"));
        // A file of its own, the bundled apps switched off: no managed apps to start.
        let config = dir.path().join("burrow.toml");
        let mut text = "[ipc]\nshutdown_timeout_ms = 2000\n".to_owned();
        for id in crate::config::layers::BUNDLED_APPS {
            text.push_str(&format!("[apps.{id}]\nenabled = false\n"));
        }
        std::fs::write(&config, text).unwrap();
        let settings = Settings {
            socket: socket.clone(),
            state_dir: state_dir.clone(),
            config_path: Some(config),
            listen: Default::default(),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let kernel = tokio::spawn(run(settings, async move { drop(stopped.await) }));
        let deadline = Duration::from_secs(15);
        let listening = async {
            while burrow_transport::connect_stream(&socket).await.is_err() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(deadline, listening).await.expect("the kernel listens");

        // An app joins and is ready.
        let (ready_tx, ready_rx) = oneshot::channel();
        let ready_tx = std::sync::Mutex::new(Some(ready_tx));
        let app = burrow_sdk::App::new(burrow_protocol::Manifest::new("guest", "1.0.0"))
            .socket(socket.clone())
            .on_ready(move |_client| {
                if let Some(tx) = ready_tx.lock().unwrap().take() {
                    let _ = tx.send(());
                }
                async {}
            });
        let app = tokio::spawn(app.run_until(std::future::pending()));
        tokio::time::timeout(deadline, ready_rx).await.expect("the app got ready").unwrap();

        // The shutdown future resolves: the app is told to leave and leaves cleanly, and
        // run returns with the socket gone and the state directory free again.
        stop.send(()).unwrap();
        let left = tokio::time::timeout(deadline, app).await.expect("the app was sent away");
        assert!(left.unwrap().is_ok(), "the app left on the kernel's app.shutdown");
        let ran = tokio::time::timeout(deadline, kernel).await.expect("run returned");
        assert!(ran.unwrap().is_ok());
        assert!(!socket.exists(), "the socket file is removed");
        let lock = crate::fsutil::lock_file(&state_dir.join("kernel.lock"), Duration::ZERO);
        assert!(lock.is_ok(), "the state directory is free for the next kernel");
    }
}
