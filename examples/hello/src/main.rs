//! `hello`: a minimal Burrow app. It registers, becomes ready, heartbeats, answers
//! `hello.greet {name?}` with `{greeting}`, and leaves cleanly on Ctrl-C/SIGTERM or when
//! the kernel asks.
//!
//! Usage: `hello [--id ID] [--socket PATH]`. The id defaults to `BURROW_APP_ID`, else
//! `hello`; the socket to `BURROW_SOCKET`, else the default socket. Logs go to stderr
//! (`RUST_LOG`, default `info`); stdout carries the lines scripts wait for:
//! `hello: ready as <appId>`, then `hello: leaving` or
//! `hello: kernel asked us to shut down`.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use burrow_sdk::transport::APP_ID_ENV;
use burrow_sdk::{App, Manifest, shutdown_signal};
use serde_json::json;
use tracing_subscriber::EnvFilter;

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
            "-h" | "--help" => {
                return Err("usage: hello [--id ID] [--socket PATH]".to_owned());
            }
            other => return Err(format!("unknown argument {other:?}")),
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
            eprintln!("hello: {message}");
            return ExitCode::from(2);
        }
    };
    let id = args
        .id
        .or_else(|| std::env::var(APP_ID_ENV).ok().filter(|id| !id.is_empty()))
        .unwrap_or_else(|| "hello".to_owned());
    let mut manifest = Manifest::new(id, "0.1.0");
    manifest.description = Some("A minimal Burrow app that says hello".to_owned());

    let mut app = App::new(manifest)
        .on_request("hello.greet", |params, cx| async move {
            let name = params
                .get("name")
                .and_then(|n| n.as_str())
                .unwrap_or("world")
                .to_owned();
            Ok(json!({ "greeting": format!("Hello, {name}! ({} here)", cx.app_id()) }))
        })
        .on_ready(|client| async move {
            say(&format!(
                "hello: ready as {}",
                client.app_id().unwrap_or_default()
            ));
        });
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
            say("hello: leaving");
            ExitCode::SUCCESS
        }
        Ok(()) => {
            say("hello: kernel asked us to shut down");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hello: {e}");
            ExitCode::FAILURE
        }
    }
}
