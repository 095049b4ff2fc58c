//! `audit-log`: a Burrow app that observes every hook event (`hook.subscribe ["*"]`) and
//! appends each one it receives to a file as one JSON line:
//!
//! ```json
//! {"ts": 1767225600000, "eventId": "…", "event": "after_tool_call", "payload": {…}, "context": {…}}
//! ```
//!
//! `ts` is when the app received it (ms since the epoch); the rest is the `hook.event` as
//! the kernel sent it. Each line is written whole and flushed before the next, so a
//! reader (`tail -f`) never sees half a line. Events are handled concurrently, so two
//! that arrive in the same instant may be written in either order; the kernel's
//! `eventId`s (UUID v7) order them. The kernel drops events for an observer that reads too
//! slowly (`kernel.hooks` counts them); the log then lacks them.
//!
//! The file is `--out PATH`, else the string `apps.<id>.path` of the kernel's
//! configuration (read with `config.get` when the app is first ready), else
//! `./audit.jsonl`. It is opened for appending (created with mode 0600, parent
//! directories too) once per process. A write that fails is logged and the event lost.
//!
//! Usage: `audit-log [--id ID] [--socket PATH] [--out PATH]`. The id defaults to
//! `BURROW_APP_ID`, else `audit-log`; the socket to `BURROW_SOCKET`, else the default
//! socket. Logs go to stderr (`RUST_LOG`, default `info`); stdout carries the lines
//! scripts wait for: `audit-log: ready as <appId>`, then `audit-log: leaving`
//! (Ctrl-C/SIGTERM) or `audit-log: kernel asked us to shut down`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use burrow_example_common::{Example, say};
use burrow_sdk::protocol::now_ms;
use burrow_sdk::{App, Client, HookEvent, Manifest, Value};
use serde_json::json;
use tokio::sync::OnceCell;

const EXAMPLE: Example = Example::new("audit-log", "audit-log").flags("[--out PATH]");
/// The file when neither `--out` nor the configuration names one.
const DEFAULT_PATH: &str = "audit.jsonl";

/// The log file, opened once.
#[derive(Debug)]
struct Log {
    path: PathBuf,
    file: Mutex<File>,
}

impl Log {
    /// Opens `path` for appending, creating it (mode 0600) and its parent directories.
    fn open(path: &Path) -> std::io::Result<Log> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path)?;
        Ok(Log { path: path.to_owned(), file: Mutex::new(file) })
    }

    /// Appends one line and flushes it.
    fn append(&self, line: &str) -> std::io::Result<()> {
        let mut buffer = String::with_capacity(line.len() + 1);
        buffer.push_str(line);
        buffer.push('\n');
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.write_all(buffer.as_bytes())?;
        file.flush()
    }
}

/// Where the log comes from: opened from `--out` at start, or from the configuration
/// once, when first needed.
#[derive(Debug)]
struct Sink {
    log: OnceCell<Log>,
}

impl Sink {
    /// The log, opening the configured file through `client` if it is not open yet.
    async fn log(&self, client: &Client) -> Result<&Log, String> {
        self.log
            .get_or_try_init(|| async {
                let own = client
                    .config_get(None)
                    .await
                    .map_err(|e| format!("cannot read the configuration: {e}"))?;
                let path = match own.get("path") {
                    None | Some(Value::Null) => PathBuf::from(DEFAULT_PATH),
                    Some(Value::String(path)) => PathBuf::from(path),
                    Some(other) => {
                        return Err(format!("apps.<id>.path must be a string, not {other}"));
                    }
                };
                let log =
                    Log::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
                tracing::info!(path = %log.path.display(), "auditing");
                Ok(log)
            })
            .await
    }

    /// Writes one event.
    async fn record(&self, event: HookEvent) {
        let ts = now_ms();
        let log = match self.log(event.client()).await {
            Ok(log) => log,
            Err(e) => {
                tracing::error!(error = %e, event = %event.event, "event not logged");
                return;
            }
        };
        let line = json!({
            "ts": ts,
            "eventId": event.event_id,
            "event": event.event,
            "payload": event.payload,
            "context": event.context,
        });
        if let Err(e) = log.append(&line.to_string()) {
            tracing::error!(error = %e, path = %log.path.display(), "cannot write the audit log");
        }
    }
}

fn app(id: String, log: Option<Log>) -> App {
    let mut manifest = Manifest::new(id, env!("CARGO_PKG_VERSION"));
    manifest.description = Some("Appends every hook event to a JSON-lines file".to_owned());
    let sink = Arc::new(Sink { log: OnceCell::new_with(log) });
    let ready = sink.clone();
    App::new(manifest)
        .on_event("*", move |event| {
            let sink = sink.clone();
            async move { sink.record(event).await }
        })
        .on_ready(move |client| {
            let sink = ready.clone();
            async move {
                if let Err(e) = sink.log(&client).await {
                    tracing::error!(error = %e, "no audit log; events are not recorded");
                }
                say(&format!("audit-log: ready as {}", client.app_id().unwrap_or_default()));
            }
        })
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut out = None;
    let args = EXAMPLE.start_with(|flag| match flag.name() {
        "--out" => {
            out = Some(flag.value()?);
            Ok(())
        }
        _ => Err(flag.unknown()),
    });
    let log = match out.map(|path| (Log::open(Path::new(&path)), path)) {
        None => None,
        Some((Ok(log), _)) => Some(log),
        Some((Err(e), path)) => {
            eprintln!("audit-log: cannot open --out {path}: {e}");
            return ExitCode::from(2);
        }
    };
    EXAMPLE.run(app(args.id, log), args.socket).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use burrow_sdk::testing::FakeKernel;

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    /// The lines of `path` once it has `count` of them (polling, within [`WAIT`]).
    async fn lines(path: &Path, count: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.lines().count() >= count || tokio::time::Instant::now() > deadline {
                assert!(text.is_empty() || text.ends_with('\n'), "a partial line: {text:?}");
                return text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn every_event_becomes_one_json_line_in_the_out_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/audit.jsonl");
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        std::fs::write(&path, "{\"earlier\":true}\n").unwrap();
        let log = Log::open(&path).unwrap();
        let (kernel, transport) = FakeKernel::new();
        let running = tokio::spawn(
            app("audit-log".into(), Some(log)).run_on(transport, std::future::pending()),
        );
        kernel.wait_ready(WAIT).await.unwrap();
        assert_eq!(kernel.subscriptions(), ["*"]);
        assert_eq!(kernel.manifest().unwrap().capabilities.hooks.subscribe, ["*"]);

        let before = now_ms();
        let first = kernel.send_event("session_start", json!({"sessionKey": "s-1"})).await.unwrap();
        let written = lines(&path, 2).await;
        assert_eq!(written.len(), 2);
        // One event at a time, so their order is known.
        let second = kernel.send_event("after_tool_call", json!({"name": "echo"})).await.unwrap();
        let written = lines(&path, 3).await;

        assert_eq!(written.len(), 3);
        assert_eq!(written[0], json!({"earlier": true}));
        let line = &written[1];
        assert!(line["ts"].as_u64().unwrap() >= before);
        assert_eq!(line["eventId"], json!(first));
        assert_eq!(line["event"], "session_start");
        assert_eq!(line["payload"], json!({"sessionKey": "s-1"}));
        assert_eq!(line["context"], json!({}));
        assert_eq!(written[2]["eventId"], json!(second));
        assert_eq!(written[2]["event"], "after_tool_call");
        assert_eq!(written[2]["payload"], json!({"name": "echo"}));

        kernel.shutdown_app().await.unwrap();
        running.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn without_a_flag_the_path_comes_from_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/dir/events.jsonl");
        let (kernel, transport) = FakeKernel::new();
        kernel.set_config(json!({"apps": {"auditor": {"path": path.display().to_string()}}}));
        let running =
            tokio::spawn(app("auditor".into(), None).run_on(transport, std::future::pending()));
        kernel.wait_ready(WAIT).await.unwrap();
        for n in 0..20 {
            kernel.send_event("external_event", json!({"n": n})).await.unwrap();
        }
        let written = lines(&path, 20).await;
        let mut seen: Vec<u64> =
            written.iter().map(|l| l["payload"]["n"].as_u64().unwrap()).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..20).collect::<Vec<_>>());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        kernel.shutdown_app().await.unwrap();
        running.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_log_that_cannot_be_opened_loses_events_but_the_app_runs_on() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let (kernel, transport) = FakeKernel::new();
        let path = blocker.join("audit.jsonl").display().to_string();
        kernel.set_config(json!({"apps": {"audit-log": {"path": path}}}));
        let running =
            tokio::spawn(app("audit-log".into(), None).run_on(transport, std::future::pending()));
        kernel.wait_ready(WAIT).await.unwrap();
        kernel.send_event("session_end", json!({})).await.unwrap();
        // Still alive: it keeps heartbeating.
        kernel.wait_heartbeats(kernel.heartbeats() + 2, WAIT).await.unwrap();
        assert!(!running.is_finished());
        kernel.shutdown_app().await.unwrap();
        assert!(!blocker.join("audit.jsonl").exists());
        running.await.unwrap().unwrap();
    }
}
