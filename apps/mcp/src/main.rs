//! `burrow-mcp`: a Burrow app that mounts MCP servers. Each server's tools become Burrow
//! tools named `<server>__<tool>`, which agents call like any tool (through the kernel's
//! tool hooks); a call is the server's `tools/call`, its deadline and a caller's cancel
//! passed on (`notifications/cancelled`).
//!
//! | module | role |
//! |---|---|
//! | [`config`] | the servers: the app's configuration subtree and an `.mcp.json` |
//! | [`server`] | one server kept connected: connect, list, re-list on change, reconnect with backoff |
//! | [`bridge`] | the servers running, their tools registered on the kernel, calls, `mcp.status` |
//! | [`result`] | an MCP tool result as a Burrow one |
//!
//! Configuration changes apply live (`config.watch` of the app's subtree). The gateway
//! method `<appId>.status` (`mcp.status`) answers every server's state: `connecting`,
//! `ready` with its tools, or `failed` with the reason and when it retries, and the tools
//! not offered with why.
//!
//! Usage: `burrow-mcp [--id ID] [--socket PATH]`. The id defaults to `BURROW_APP_ID`, else
//! `mcp`. Logs go to stderr (`RUST_LOG`, default `info`); stdout carries `burrow-mcp:
//! ready as <appId>` once the app is ready, then `burrow-mcp: leaving` (Ctrl-C/SIGTERM)
//! or `burrow-mcp: kernel asked us to shut down`.

use std::process::ExitCode;
use std::sync::Arc;

use burrow_example_common::{Example, say};
use burrow_sdk::protocol::methods::invoke::ToolInvokeParams;
use burrow_sdk::protocol::methods::parse_params;
use burrow_sdk::{App, Client, Manifest};
use futures_util::StreamExt;

mod bridge;
mod config;
mod result;
mod server;

use bridge::Bridge;

const EXAMPLE: Example = Example::new("burrow-mcp", "mcp");

/// Reads the configuration and applies it; a mistake is logged and changes nothing.
async fn reload(bridge: &Arc<Bridge>, client: &Client) {
    let own = match client.config_get(None).await {
        Ok(own) => own,
        Err(e) => return tracing::error!(error = %e, "cannot read the configuration"),
    };
    let base = std::env::current_dir().unwrap_or_default();
    match config::read(&own, &base, &|var| std::env::var(var).ok()) {
        Ok(config) => bridge.apply(&config),
        Err(e) => {
            tracing::error!(error = %e, "the MCP configuration is not usable; nothing changed")
        }
    }
}

fn app(id: String) -> App {
    let mut manifest = Manifest::new(id.clone(), env!("CARGO_PKG_VERSION"));
    manifest.description = Some("MCP servers' tools as Burrow tools".to_owned());
    manifest.capabilities.tools = vec!["*".to_owned()];
    manifest.capabilities.gateway_methods = vec![format!("{id}.*")];
    let bridge = Arc::new(Bridge::default());
    let (calls, status, ready) = (bridge.clone(), bridge.clone(), bridge);
    App::new(manifest)
        .on_request("tool.invoke", move |params, _cx| {
            let bridge = calls.clone();
            async move {
                let params: ToolInvokeParams = parse_params(params)?;
                let now = tokio::time::Instant::now();
                let deadline =
                    params.timeout_ms.map(|ms| now + std::time::Duration::from_millis(ms));
                bridge.call(&params.name, params.arguments, deadline).await
            }
        })
        .gateway_method("status", move |_params, _cx| {
            let bridge = status.clone();
            async move { Ok(bridge.status()) }
        })
        .on_ready(move |client| {
            let bridge = ready.clone();
            async move {
                bridge.connected(client.clone()).await;
                reload(&bridge, &client).await;
                say(&format!("burrow-mcp: ready as {}", client.app_id().unwrap_or_default()));
                let mut watch = match client.config_watch(None).await {
                    Ok(watch) => watch,
                    Err(e) => return tracing::error!(error = %e, "cannot watch the configuration"),
                };
                while let Some(change) = watch.next().await {
                    if change.is_err() {
                        break;
                    }
                    reload(&bridge, &client).await;
                }
            }
        })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = EXAMPLE.start();
    EXAMPLE.run(app(args.id), args.socket).await
}
