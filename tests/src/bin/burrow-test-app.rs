//! A misbehaving app for the supervisor's tests. `burrow-test-app MODE`:
//! - `hang`: registers (as `BURROW_APP_ID`), says ready, then stays alive and silent;
//! - `crash`: prints a line and exits 1 at once;
//! - `ignore-term`: like `hang`, but also ignores SIGTERM (only SIGKILL ends it).
//!
//! Every mode prints `test-app: <mode> pid <pid>` first, to stdout (captured by the
//! kernel's log) and flushed.

use std::io::Write;
use std::time::Duration;

use burrow_protocol::Manifest;
use burrow_protocol::methods::app::{
    AppReady, AppRegister, PROTOCOL_VERSION, ReadyParams, RegisterParams,
};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    println!("test-app: {mode} pid {}", std::process::id());
    let _ = std::io::stdout().flush();
    match mode.as_str() {
        "crash" => std::process::exit(1),
        "hang" => hang().await,
        "ignore-term" => {
            #[cfg(unix)]
            let _term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
            hang().await
        }
        other => {
            eprintln!("test-app: unknown mode {other:?}");
            std::process::exit(2)
        }
    }
}

async fn hang() {
    let id = std::env::var("BURROW_APP_ID").unwrap_or_else(|_| "test-app".into());
    let client = match burrow_sdk::Client::connect_default().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("test-app: cannot connect: {e}");
            std::process::exit(3)
        }
    };
    let params = RegisterParams {
        manifest: Manifest::new(id, "0.0.1"),
        protocol_version: PROTOCOL_VERSION.into(),
        token: None,
    };
    if let Err(e) = client.call::<AppRegister>(params).await {
        eprintln!("test-app: register refused: {e}");
        std::process::exit(4)
    }
    let _ = client.call::<AppReady>(ReadyParams::default()).await;
    println!("test-app: registered, now silent");
    let _ = std::io::stdout().flush();
    // Never heartbeat; keep the connection (and the process) until killed.
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}
