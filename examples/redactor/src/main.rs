//! `redactor`: a Burrow app that intercepts `before_tool_call`:
//! - a call to a tool named with `--block NAME` is blocked with the reason
//!   `redactor blocks NAME`;
//! - otherwise, a call whose `arguments` has a `password` key is modified: its value
//!   becomes `"[redacted]"`;
//! - anything else continues.
//!
//! It also observes `after_tool_call` and prints each one. The SDK subscribes to both
//! events and registers the interceptor (and adds them to the manifest) on every
//! connection.
//!
//! Usage: `redactor [--id ID] [--socket PATH] [--priority N] [--block NAME]...`. The id
//! defaults to `BURROW_APP_ID`, else `redactor`; the socket to `BURROW_SOCKET`, else the
//! default socket; the priority to 10. Logs go to stderr (`RUST_LOG`, default `info`);
//! stdout carries the lines scripts wait for: `redactor: ready as <appId>`,
//! `redactor: saw after_tool_call <tool name>` for each observed call, then
//! `redactor: leaving` or `redactor: kernel asked us to shut down`.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use burrow_sdk::transport::APP_ID_ENV;
use burrow_sdk::{App, HookEvent, HookVerdict, Manifest, Value, shutdown_signal};
use tracing_subscriber::EnvFilter;

const USAGE: &str = "usage: redactor [--id ID] [--socket PATH] [--priority N] [--block NAME]...";
/// The priority of the interceptor when `--priority` is not given.
const DEFAULT_PRIORITY: i64 = 10;
/// What a password becomes.
const REDACTED: &str = "[redacted]";

/// The command line.
struct Args {
    id: Option<String>,
    socket: Option<String>,
    priority: i64,
    block: BTreeSet<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        id: None,
        socket: None,
        priority: DEFAULT_PRIORITY,
        block: BTreeSet::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        if matches!(flag.as_str(), "-h" | "--help") {
            return Err(USAGE.to_owned());
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--id" => args.id = Some(value()?),
            "--socket" => args.socket = Some(value()?),
            "--priority" => {
                let text = value()?;
                args.priority = text
                    .parse()
                    .map_err(|_| format!("--priority {text:?} is not an integer"))?;
            }
            "--block" => {
                args.block.insert(value()?);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(args)
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The tool name of a tool-call event's payload.
fn tool_name(payload: &Value) -> &str {
    payload.get("name").and_then(Value::as_str).unwrap_or("")
}

/// The verdict on one `before_tool_call`: block, redact, or continue.
fn judge(event: HookEvent, blocked: &BTreeSet<String>) -> HookVerdict {
    let name = tool_name(&event.payload);
    if blocked.contains(name) {
        return HookVerdict::Block {
            reason: format!("redactor blocks {name}"),
        };
    }
    let mut payload = event.payload;
    match payload
        .get_mut("arguments")
        .and_then(|arguments| arguments.get_mut("password"))
    {
        Some(password) => {
            *password = Value::from(REDACTED);
            HookVerdict::Modify { payload }
        }
        None => HookVerdict::Continue,
    }
}

fn app(id: String, priority: i64, block: BTreeSet<String>) -> App {
    let mut manifest = Manifest::new(id, "0.1.0");
    manifest.description = Some("Redacts passwords from tool calls, blocks tools".to_owned());
    let block = Arc::new(block);
    App::new(manifest)
        .intercept("before_tool_call", priority, move |event| {
            let verdict = judge(event, &block);
            async move { verdict }
        })
        .on_event("after_tool_call", |event| async move {
            say(&format!(
                "redactor: saw after_tool_call {}",
                tool_name(&event.payload)
            ));
        })
        .on_ready(|client| async move {
            say(&format!(
                "redactor: ready as {}",
                client.app_id().unwrap_or_default()
            ));
        })
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("redactor: {message}");
            return ExitCode::from(2);
        }
    };
    let id = args
        .id
        .or_else(|| std::env::var(APP_ID_ENV).ok().filter(|id| !id.is_empty()))
        .unwrap_or_else(|| "redactor".to_owned());
    let mut app = app(id, args.priority, args.block);
    if let Some(socket) = args.socket {
        app = app.socket(socket);
    }

    let signalled = Arc::new(AtomicBool::new(false));
    let flag = signalled.clone();
    let shutdown = async move {
        shutdown_signal().await;
        flag.store(true, Ordering::Release);
    };
    match app.run_until(shutdown).await {
        Ok(()) if signalled.load(Ordering::Acquire) => {
            say("redactor: leaving");
            ExitCode::SUCCESS
        }
        Ok(()) => {
            say("redactor: kernel asked us to shut down");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("redactor: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use burrow_sdk::testing::FakeKernel;
    use serde_json::json;

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn redacts_blocks_and_continues() {
        let (kernel, transport) = FakeKernel::new();
        let block = BTreeSet::from(["rm".to_owned()]);
        let app = app("redactor".into(), 3, block);
        let running = tokio::spawn(app.run_on(transport, std::future::pending()));
        kernel.wait_ready(WAIT).await.unwrap();
        assert_eq!(
            kernel.subscriptions(),
            ["after_tool_call", "before_tool_call"]
        );
        let hook = &kernel.capabilities()[0];
        assert_eq!(hook.params.config["priority"], 3);

        let ask = |payload| kernel.intercept("before_tool_call", payload, WAIT);
        let plain = json!({"name": "ls", "arguments": {"path": "/"}});
        assert_eq!(ask(plain).await.unwrap(), HookVerdict::Continue);
        let login = json!({"name": "login", "arguments": {"user": "u", "password": "pw"}});
        let expected = json!({"name": "login", "arguments": {"user": "u", "password": REDACTED}});
        assert_eq!(
            ask(login).await.unwrap(),
            HookVerdict::Modify { payload: expected }
        );
        let rm = json!({"name": "rm", "arguments": {"password": "pw"}});
        let reason = "redactor blocks rm".to_owned();
        assert_eq!(ask(rm).await.unwrap(), HookVerdict::Block { reason });

        kernel.shutdown_app().await.unwrap();
        running.await.unwrap().unwrap();
    }
}
