//! Test support for Burrow's end-to-end tests: start the real `burrow` binary on a
//! temporary socket, start real app processes, speak raw frames, and poll for conditions
//! with deadlines.
//!
//! The binaries are built on first use (`cargo build --bins`), so `cargo test` alone is
//! enough on a fresh clone; `BURROW_BIN_DIR` points at prebuilt ones instead.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use burrow_protocol::{Message, codec};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

mod host;
mod raw;
pub use host::{Rpc, http_client};
pub use raw::{RawConn, with_floats};

/// A generous bound for anything that should happen "soon" in a test.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// The directory holding the workspace's binaries, built once per test run.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // Prebuilt binaries, e.g. to compare two builds in one benchmark sitting.
        if let Some(dir) = std::env::var_os("BURROW_BIN_DIR") {
            return PathBuf::from(dir);
        }
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/e2e-<hash> → target/<profile>
        let dir = exe.parent().and_then(Path::parent).expect("target dir").to_path_buf();
        // Build with the profile this test binary was built with (its directory's name).
        // Under `cargo test`, that is the test profile with the tests' features unified
        // in, as `cargo test --workspace` built them: the binaries it built are reused,
        // not built again with other features.
        let args: &[&str] = match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => &["--profile", "test", "--workspace", "--bins", "--tests"],
            Some(other) => &["--profile", other, "--workspace", "--bins"],
        };
        let status = std::process::Command::new(env!("CARGO"))
            .arg("build")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the binaries failed");
        dir
    })
}

/// Path of a workspace binary.
pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// Polls `cond` every 20 ms until it is true or `timeout` passes; returns whether it held.
pub async fn poll_until<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A process's memory as `/proc/<pid>/status` gives it, in KiB: resident now (`VmRSS`)
/// and at its peak so far (`VmHWM`).
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// Resident now.
    pub rss_kib: u64,
    /// The most it has been resident.
    pub peak_kib: u64,
}

/// The memory of process `pid` (Linux), or `None` when it cannot be read.
pub fn memory(pid: i32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line[name.len()..].trim().trim_end_matches("kB").trim().parse::<u64>().ok()
    };
    Some(Memory { rss_kib: field("VmRSS:")?, peak_kib: field("VmHWM:")? })
}

/// Config for tests: short heartbeats so timeouts are observable quickly.
pub const FAST_CONFIG: &str =
    "[ipc]\nheartbeat_interval_ms = 200\nheartbeat_timeout_ms = 1000\nshutdown_timeout_ms = 2000\n";

/// The bundled apps, defaults of every configuration file.
pub const BUNDLED_APPS: [&str; 4] = ["audit-log", "echo-provider", "files", "mcp"];

/// `config` with every bundled app it does not mention switched off: a test's kernel runs
/// only the apps the test asks for.
pub fn bundled_off(config: &str) -> String {
    let mut out = config.to_owned();
    for id in BUNDLED_APPS {
        if !config.contains(&format!("[apps.{id}")) {
            out.push_str(&format!("\n[apps.{id}]\nenabled = false\n"));
        }
    }
    out
}

/// A kernel process on a temporary socket and state directory.
#[allow(missing_debug_implementations)]
pub struct Kernel {
    child: Child,
    dir: tempfile::TempDir,
    /// Its socket.
    pub socket: PathBuf,
    /// Its state directory.
    pub state_dir: PathBuf,
    log: PathBuf,
    args: Vec<String>,
    nofile: Option<u64>,
}

impl Kernel {
    /// Starts a kernel with [`FAST_CONFIG`] and waits until it answers.
    pub async fn start() -> Kernel {
        Self::start_with_config(FAST_CONFIG).await
    }

    /// Starts a kernel with `config` and waits until it answers.
    pub async fn start_with_config(config: &str) -> Kernel {
        Self::start_with(config, &[]).await
    }

    /// Starts a kernel with `config` and extra `burrow kernel` arguments (kept for
    /// restarts; `{dir}` in them is the kernel's temporary directory) and waits until it
    /// answers.
    pub async fn start_with(config: &str, args: &[&str]) -> Kernel {
        Self::start_prepared(config, args, |_| {}).await
    }

    /// [`Kernel::start_with`], running `prepare` on the (not yet created) state directory
    /// first, e.g. to create host tokens.
    pub async fn start_prepared(
        config: &str,
        args: &[&str],
        prepare: impl FnOnce(&Path),
    ) -> Kernel {
        Self::start_full(&bundled_off(config), args, prepare, None).await
    }

    /// Starts a kernel with `config` written as it is: the bundled apps run unless it
    /// switches them off.
    pub async fn start_as_written(config: &str) -> Kernel {
        Self::start_full(config, &[], |_| {}, None).await
    }

    /// [`Kernel::start_with`], the kernel's descriptor limit (soft and hard, so that it
    /// cannot raise it) set to `nofile`.
    pub async fn start_with_nofile(config: &str, args: &[&str], nofile: u64) -> Kernel {
        Self::start_full(&bundled_off(config), args, |_| {}, Some(nofile)).await
    }

    async fn start_full(
        config: &str,
        args: &[&str],
        prepare: impl FnOnce(&Path),
        nofile: Option<u64>,
    ) -> Kernel {
        let dir = tempfile::Builder::new().prefix("burrow-e2e").tempdir().expect("tempdir");
        let socket = dir.path().join("run").join("kernel.sock");
        let state_dir = dir.path().join("state");
        std::fs::write(dir.path().join("burrow.toml"), config).expect("write config");
        prepare(&state_dir);
        let k = Self::spawn_in(dir, socket, state_dir, args, nofile);
        k.wait_ready().await;
        k
    }

    /// An endpoint the kernel reports in `kernel.info` (`rpc_tcp`, `http`, `comms`).
    pub async fn endpoint(&self, name: &str) -> std::net::SocketAddr {
        let info = self.client().await.request("kernel.info", json!({})).await.expect("info");
        info["endpoints"][name]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no endpoint {name:?} in {info}"))
    }

    /// Starts another kernel process on the same socket, state and config as `self`
    /// (extra args appended); does not wait.
    pub fn spawn_again(&self, extra: &[&str]) -> Child {
        let mut args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        args.extend_from_slice(extra);
        kernel_command(
            self.dir.path(),
            &self.socket,
            &self.state_dir,
            &args,
            &self.log,
            self.nofile,
        )
        .spawn()
        .expect("spawn burrow kernel")
    }

    fn spawn_in(
        dir: tempfile::TempDir,
        socket: PathBuf,
        state_dir: PathBuf,
        extra: &[&str],
        nofile: Option<u64>,
    ) -> Kernel {
        let log = dir.path().join("kernel.log");
        let extra: Vec<String> =
            extra.iter().map(|a| a.replace("{dir}", &dir.path().display().to_string())).collect();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let extra = extra.as_slice();
        let child = kernel_command(dir.path(), &socket, &state_dir, extra, &log, nofile)
            .spawn()
            .expect("spawn burrow kernel");
        let args = extra.iter().map(|a| a.to_string()).collect();
        Kernel { child, dir, socket, state_dir, log, args, nofile }
    }

    /// Restarts the kernel (after it exited) on the same socket, state and config.
    pub async fn restart(&mut self) {
        self.child = self.spawn_again(&[]);
        self.wait_ready().await;
    }

    /// Waits until `kernel.info` answers.
    pub async fn wait_ready(&self) {
        let socket = self.socket.clone();
        let up = poll_until(DEADLINE, || {
            let socket = socket.clone();
            async move {
                match burrow_sdk::Client::connect(&socket).await {
                    Ok(c) => c.kernel_info().await.is_ok(),
                    Err(_) => false,
                }
            }
        })
        .await;
        assert!(up, "kernel did not come up; log:\n{}", self.log());
    }

    /// The temporary directory everything lives in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The kernel's pid.
    pub fn pid(&self) -> i32 {
        self.child.id().expect("kernel still running") as i32
    }

    /// Sends a signal to the kernel process (ours, by pid).
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).expect("signal kernel");
    }

    /// Waits for the kernel to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("kernel did not exit in {timeout:?}; log:\n{}", self.log()))
            .expect("wait kernel")
    }

    /// What the kernel logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the kernel logs `needle` within 10 s: a log line is written on its own
    /// schedule, not before the effect a test observes, so a test polls for it.
    pub async fn logged(&self, needle: &str) -> bool {
        poll_until(Duration::from_secs(10), || async { self.log().contains(needle) }).await
    }

    /// A plain SDK client.
    pub async fn client(&self) -> burrow_sdk::Client {
        burrow_sdk::Client::connect(&self.socket).await.expect("connect client")
    }

    /// An SDK client registered as app `id` (no capabilities, no token).
    pub async fn registered_client(&self, id: &str) -> burrow_sdk::Client {
        use burrow_protocol::methods::app::{AppRegister, PROTOCOL_VERSION, RegisterParams};
        let client = self.client().await;
        let params = RegisterParams {
            manifest: burrow_protocol::Manifest::new(id, "1.0.0"),
            protocol_version: PROTOCOL_VERSION.into(),
            token: None,
        };
        client.call::<AppRegister>(params).await.expect("register");
        client
    }

    /// A raw frame-level connection.
    pub async fn raw(&self) -> RawConn {
        RawConn::connect(&self.socket).await
    }

    /// Runs the `burrow` CLI against this kernel.
    pub async fn cli(&self, args: &[&str]) -> std::process::Output {
        let out = Command::new(bin("burrow"))
            .args(args)
            .env("BURROW_SOCKET", &self.socket)
            .kill_on_drop(true)
            .output();
        tokio::time::timeout(DEADLINE, out).await.expect("cli timed out").expect("run cli")
    }

    /// Starts the `hello` example app against this kernel, as `id`.
    pub async fn hello(&self, id: &str) -> AppProcess {
        AppProcess::spawn(bin("hello"), &self.socket, id, &[])
    }

    /// Starts the example app binary `name` against this kernel, as `id`, with `args`.
    pub fn example(&self, name: &str, id: &str, args: &[&str]) -> AppProcess {
        AppProcess::spawn(bin(name), &self.socket, id, args)
    }

    /// The bundled `echo-provider` app (provider `echo`) against this kernel, once ready.
    pub async fn echo_provider(&self) -> AppProcess {
        let mut echo = self.example("echo-provider", "echo-provider", &[]);
        echo.wait_line("echo-provider: ready as echo-provider").await;
        echo
    }

    /// A channel `term` played by the test (app `term`): the test answers each
    /// `channel.send` itself.
    pub async fn hand_channel(&self) -> RawConn {
        let config = json!({"channelId": "term"});
        self.hand_app("term", json!({"channels": ["term"]}), "channel", config).await
    }

    /// A provider `echo` played by the test (app `prov`): the test answers each
    /// `provider.complete` itself.
    pub async fn hand_provider(&self) -> RawConn {
        let config = json!({"providerId": "echo", "models": ["echo"]});
        self.hand_app("prov", json!({"providers": ["echo"]}), "provider", config).await
    }

    /// App `id`, declaring `capabilities` in its manifest, ready and holding one
    /// capability of `kind` registered with `config`.
    async fn hand_app(&self, id: &str, capabilities: Value, kind: &str, config: Value) -> RawConn {
        let manifest = json!({"id": id, "version": "1.0.0", "capabilities": capabilities});
        let mut app = RawConn::app(&self.socket, manifest).await;
        let r = app.call("capability.register", json!({"type": kind, "config": config})).await;
        assert_eq!(r["result"]["granted"], true, "{r}");
        app
    }

    /// The app ids `kernel.apps` lists.
    pub async fn app_ids(&self) -> Vec<String> {
        let apps =
            self.client().await.request("kernel.apps", json!({})).await.expect("kernel.apps");
        apps["apps"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x["appId"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }
}

fn kernel_command(
    dir: &Path,
    socket: &Path,
    state: &Path,
    extra: &[&str],
    log: &Path,
    nofile: Option<u64>,
) -> Command {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
    let mut cmd = match nofile {
        // The shell sets both limits, then becomes the kernel (same pid).
        Some(n) => {
            let mut sh = Command::new("sh");
            sh.arg("-c").arg(format!("ulimit -n {n} && exec \"$0\" \"$@\"")).arg(bin("burrow"));
            sh
        }
        None => Command::new(bin("burrow")),
    };
    cmd.arg("kernel")
        .arg("--socket")
        .arg(socket)
        .arg("--state-dir")
        .arg(state)
        .arg("--config")
        .arg(dir.join("burrow.toml"))
        .args(extra)
        .env("RUST_LOG", std::env::var("BURROW_TEST_LOG").unwrap_or_else(|_| "info".into()))
        .env_remove("BURROW_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true);
    cmd
}

/// Where an app's stderr goes: `<id>.log` beside the kernel's socket directory.
fn app_log(socket: &Path, id: &str) -> Stdio {
    let dir = socket.parent().and_then(Path::parent).unwrap_or(Path::new("."));
    match std::fs::OpenOptions::new().create(true).append(true).open(dir.join(format!("{id}.log")))
    {
        Ok(file) => Stdio::from(file),
        Err(_) => Stdio::null(),
    }
}

/// A running app process whose stdout lines can be awaited.
#[allow(missing_debug_implementations)]
pub struct AppProcess {
    /// The process.
    pub child: Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl AppProcess {
    /// Spawns `program` with `BURROW_SOCKET` and `BURROW_APP_ID` set.
    pub fn spawn(program: PathBuf, socket: &Path, id: &str, args: &[&str]) -> AppProcess {
        let mut child = Command::new(program)
            .args(args)
            .env("BURROW_SOCKET", socket)
            .env("BURROW_APP_ID", id)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(app_log(socket, id))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn app");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        AppProcess { child, lines: rx, seen: Vec::new() }
    }

    /// Waits for a stdout line containing `needle`.
    pub async fn wait_line(&mut self, needle: &str) {
        if self.seen.iter().any(|l| l.contains(needle)) {
            return;
        }
        let found = tokio::time::timeout(DEADLINE, async {
            while let Some(line) = self.lines.recv().await {
                let hit = line.contains(needle);
                self.seen.push(line);
                if hit {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(matches!(found, Ok(true)), "app never printed {needle:?}; saw {:?}", self.seen);
    }

    /// The app's pid.
    pub fn pid(&self) -> i32 {
        self.child.id().expect("app still running") as i32
    }

    /// Sends a signal to the app (ours, by pid).
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).expect("signal app");
    }

    /// Waits for the app to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .expect("app did not exit in time")
            .expect("wait app")
    }
}

/// Raises this process's soft descriptor limit to its hard one, for tests that open many
/// connections; returns the limit now in force.
pub fn raise_nofile_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return hard;
    }
    soft
}

/// A message as the JSON map it is on the wire.
pub fn to_json(msg: &Message) -> Value {
    let body = codec::encode_body(msg).expect("encode");
    rmp_serde::from_slice(&body).expect("decode as json")
}
