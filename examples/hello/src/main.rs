//! `hello`: a minimal Burrow app. It registers, becomes ready, heartbeats, answers
//! `hello.greet {name?}` with `{greeting}`, and leaves cleanly on Ctrl-C/SIGTERM or when
//! the kernel asks.
//!
//! Usage: `hello [--id ID] [--socket PATH]`. The id defaults to `BURROW_APP_ID`, else
//! `hello`; the socket to `BURROW_SOCKET`, else the default socket. Logs go to stderr
//! (`RUST_LOG`, default `info`); stdout carries the lines scripts wait for:
//! `hello: ready as <appId>`, then `hello: leaving` or
//! `hello: kernel asked us to shut down`.

use std::process::ExitCode;

use burrow_example_common::{Example, say};
use burrow_sdk::{App, Manifest};
use serde_json::json;

const EXAMPLE: Example = Example::new("hello", "hello");

fn app(id: String) -> App {
    let mut manifest = Manifest::new(id, "0.1.0");
    manifest.description = Some("A minimal Burrow app that says hello".to_owned());

    App::new(manifest)
        .on_request("hello.greet", |params, cx| async move {
            let name = params.get("name").and_then(|n| n.as_str()).unwrap_or("world").to_owned();
            Ok(json!({ "greeting": format!("Hello, {name}! ({} here)", cx.app_id()) }))
        })
        .on_ready(|client| async move {
            say(&format!("hello: ready as {}", client.app_id().unwrap_or_default()));
        })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = EXAMPLE.start();
    EXAMPLE.run(app(args.id), args.socket).await
}
