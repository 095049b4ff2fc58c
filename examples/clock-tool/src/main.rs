//! `clock-tool`: a Burrow app offering four tools, for trying tool calls end to end:
//! - `clock_now {}` → `{content: {unixMs}}`, the app's clock;
//! - `echo {..}` → `{content: <arguments>}`;
//! - `slow_echo {ms?}` → sleeps `ms` milliseconds (default 500), then echoes; its deadline
//!   is 60 s, to try deadlines and concurrency;
//! - `fail {message?}` → an `UNKNOWN_ERROR` answer with that message.
//!
//! The SDK registers the tools (and adds them to the manifest) on every connection.
//!
//! Usage: `clock-tool [--id ID] [--socket PATH]`. The id defaults to `BURROW_APP_ID`, else
//! `clock`; the socket to `BURROW_SOCKET`, else the default socket. Logs go to stderr
//! (`RUST_LOG`, default `info`); stdout carries the lines scripts wait for:
//! `clock-tool: ready as <appId>`, then `clock-tool: leaving` or
//! `clock-tool: kernel asked us to shut down`.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use burrow_sdk::transport::APP_ID_ENV;
use burrow_sdk::{App, ErrorCode, ErrorObject, Manifest, ToolResult, Value, shutdown_signal};
use serde_json::json;
use tracing_subscriber::EnvFilter;

const USAGE: &str = "usage: clock-tool [--id ID] [--socket PATH]";
/// How long `slow_echo` sleeps when `ms` is not given.
const DEFAULT_SLOW_MS: u64 = 500;
/// The deadline the kernel gives `slow_echo`.
const SLOW_TIMEOUT: Duration = Duration::from_secs(60);

/// The command line.
struct Args {
    id: Option<String>,
    socket: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        id: None,
        socket: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        let slot = match flag.as_str() {
            "--id" => &mut args.id,
            "--socket" => &mut args.socket,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        };
        let value = inline
            .or_else(|| it.next())
            .ok_or_else(|| format!("{flag} needs a value"))?;
        *slot = Some(value);
    }
    Ok(args)
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn content(content: Value) -> Result<ToolResult, ErrorObject> {
    Ok(ToolResult {
        content,
        is_error: None,
    })
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn app(id: String) -> App {
    let mut manifest = Manifest::new(id, "0.1.0");
    manifest.description = Some("Tools to try tool calls with".to_owned());
    let no_arguments = json!({"type": "object", "properties": {}});
    App::new(manifest)
        .tool(
            "clock_now",
            "The current time, in milliseconds since the Unix epoch",
            no_arguments,
            |_arguments, _cx| async { content(json!({ "unixMs": unix_ms() })) },
        )
        .tool(
            "echo",
            "Returns its arguments",
            json!({"type": "object"}),
            |arguments, _cx| async move { content(arguments) },
        )
        .tool_with_timeout(
            "slow_echo",
            "Waits `ms` milliseconds (default 500), then returns its arguments",
            json!({"type": "object", "properties": {"ms": {"type": "integer", "minimum": 0}}}),
            SLOW_TIMEOUT,
            |arguments, _cx| async move {
                let ms = arguments
                    .get("ms")
                    .and_then(Value::as_u64)
                    .unwrap_or(DEFAULT_SLOW_MS);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                content(arguments)
            },
        )
        .tool(
            "fail",
            "Always fails, with `message`",
            json!({"type": "object", "properties": {"message": {"type": "string"}}}),
            |arguments, _cx| async move {
                let message = arguments
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("fail was asked to fail");
                Err(ErrorObject::new(ErrorCode::UnknownError, message))
            },
        )
        .on_ready(|client| async move {
            say(&format!(
                "clock-tool: ready as {}",
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
            eprintln!("clock-tool: {message}");
            return ExitCode::from(2);
        }
    };
    let id = args
        .id
        .or_else(|| std::env::var(APP_ID_ENV).ok().filter(|id| !id.is_empty()))
        .unwrap_or_else(|| "clock".to_owned());
    let mut app = app(id);
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
            say("clock-tool: leaving");
            ExitCode::SUCCESS
        }
        Ok(()) => {
            say("clock-tool: kernel asked us to shut down");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("clock-tool: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use burrow_sdk::testing::FakeKernel;

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn the_tools_answer() {
        let (kernel, transport) = FakeKernel::new();
        let running = tokio::spawn(app("clock".into()).run_on(transport, std::future::pending()));
        kernel.wait_ready(WAIT).await.unwrap();
        let names: Vec<String> = kernel.capabilities().into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["clock_now", "echo", "slow_echo", "fail"]);

        let before = unix_ms();
        let now = kernel.invoke_tool("clock_now", json!({})).await.unwrap();
        assert!(now.content["unixMs"].as_u64().unwrap() >= before);
        let echo = kernel.invoke_tool("echo", json!({"a": 1})).await.unwrap();
        assert_eq!(echo.content, json!({"a": 1}));
        let slow = kernel
            .invoke_tool("slow_echo", json!({"ms": 1}))
            .await
            .unwrap();
        assert_eq!(slow.content, json!({"ms": 1}));
        let failed = kernel
            .invoke_tool("fail", json!({"message": "boom"}))
            .await
            .unwrap_err();
        assert_eq!(failed.code(), Some(ErrorCode::UnknownError));
        assert!(failed.to_string().contains("boom"), "{failed}");

        kernel.shutdown_app().await.unwrap();
        running.await.unwrap().unwrap();
    }
}
