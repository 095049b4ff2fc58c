//! `config-watch`: a Burrow app that reads its own configuration subtree (`apps.<id>`)
//! and prints every change the kernel reports while the configuration file is edited.
//!
//! Each time it is ready it opens `config.watch` on `apps.<id>`, then reads the subtree
//! with `config.get` and prints it, so a change made after the `value` line is seen. It
//! prints one line per change, until the kernel ends the watch or the app leaves.
//!
//! Usage: `config-watch [--id ID] [--socket PATH]`. The id defaults to `BURROW_APP_ID`,
//! else `watcher`; the socket to `BURROW_SOCKET`, else the default socket. Logs go to
//! stderr (`RUST_LOG`, default `info`); stdout carries the lines scripts wait for:
//! `config-watch: ready as <appId>`, `config-watch: value <json>`,
//! `config-watch: changed <path> <old json> -> <new json>` for each change, then
//! `config-watch: leaving` or `config-watch: kernel asked us to shut down`.

use std::process::ExitCode;

use burrow_example_common::{Example, say};
use burrow_sdk::{App, Client, ConfigChange, Error, Manifest, Value};
use futures_util::StreamExt;

const EXAMPLE: Example = Example::new("config-watch", "watcher");

/// Compact JSON of a value.
fn json(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

/// The line printed for one change.
fn changed_line(change: &ConfigChange) -> String {
    format!(
        "config-watch: changed {} {} -> {}",
        change.path,
        json(&change.old_value),
        json(&change.new_value)
    )
}

/// Prints the subtree, then every change to it, while this connection lasts.
async fn watch(client: Client) {
    let app_id = client.app_id().unwrap_or_default().to_owned();
    say(&format!("config-watch: ready as {app_id}"));
    // Watch first, read second: nothing changed after the `value` line is missed.
    let mut changes = match client.config_watch(Some(vec![format!("apps.{app_id}")])).await {
        Ok(changes) => changes,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch the configuration");
            return;
        }
    };
    match client.config_get(None).await {
        Ok(value) => say(&format!("config-watch: value {}", json(&value))),
        Err(e) => tracing::error!(error = %e, "cannot read the configuration"),
    }
    while let Some(change) = changes.next().await {
        match change {
            Ok(change) => say(&changed_line(&change)),
            Err(e @ Error::Protocol(_)) => tracing::warn!(error = %e, "bad config.watch chunk"),
            Err(e) => {
                // The connection is closing; the SDK reconnects or the app leaves.
                tracing::info!(error = %e, "the configuration watch stopped");
                return;
            }
        }
    }
    tracing::info!(ended = ?changes.ended(), "the kernel ended the configuration watch");
}

fn app(id: String) -> App {
    let mut manifest = Manifest::new(id, "0.1.0");
    manifest.description = Some("Prints its configuration and every change to it".to_owned());
    App::new(manifest).on_ready(watch)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = EXAMPLE.start();
    EXAMPLE.run(app(args.id), args.socket).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use burrow_sdk::testing::FakeKernel;
    use serde_json::json;

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn watches_its_own_subtree() {
        let (kernel, transport) = FakeKernel::new();
        kernel.set_config(json!({"apps": {"watcher": {"greeting": "hi"}}}));
        let running = tokio::spawn(app("watcher".into()).run_on(transport, std::future::pending()));
        kernel.wait_config_watches(1, WAIT).await.unwrap();
        kernel.wait_calls("config.get", 1, WAIT).await.unwrap();
        let change = ConfigChange {
            path: "apps.watcher.greeting".into(),
            old_value: json!("hi"),
            new_value: json!("hello"),
        };
        assert_eq!(kernel.push_config_change(change.clone()).await.unwrap(), 1);
        assert_eq!(
            changed_line(&change),
            r#"config-watch: changed apps.watcher.greeting "hi" -> "hello""#
        );
        kernel.shutdown_app().await.unwrap();
        running.await.unwrap().unwrap();
    }
}
