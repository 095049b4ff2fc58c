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
use std::process::ExitCode;
use std::sync::Arc;

use burrow_example_common::{Example, say};
use burrow_sdk::{App, HookEvent, HookVerdict, Manifest, Value};

const EXAMPLE: Example =
    Example::new("redactor", "redactor").flags("[--priority N] [--block NAME]...");
/// The priority of the interceptor when `--priority` is not given.
const DEFAULT_PRIORITY: i64 = 10;
/// What a password becomes.
const REDACTED: &str = "[redacted]";

/// The tool name of a tool-call event's payload.
fn tool_name(payload: &Value) -> &str {
    payload.get("name").and_then(Value::as_str).unwrap_or("")
}

/// The verdict on one `before_tool_call`: block, redact, or continue.
fn judge(event: HookEvent, blocked: &BTreeSet<String>) -> HookVerdict {
    let name = tool_name(&event.payload);
    if blocked.contains(name) {
        return HookVerdict::Block { reason: format!("redactor blocks {name}") };
    }
    let mut payload = event.payload;
    match payload.get_mut("arguments").and_then(|arguments| arguments.get_mut("password")) {
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
            say(&format!("redactor: saw after_tool_call {}", tool_name(&event.payload)));
        })
        .on_ready(|client| async move {
            say(&format!("redactor: ready as {}", client.app_id().unwrap_or_default()));
        })
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut priority = DEFAULT_PRIORITY;
    let mut block = BTreeSet::new();
    let args = EXAMPLE.start_with(|flag| {
        match flag.name() {
            "--priority" => {
                let text = flag.value()?;
                priority =
                    text.parse().map_err(|_| format!("--priority {text:?} is not an integer"))?;
            }
            "--block" => {
                block.insert(flag.value()?);
            }
            _ => return Err(flag.unknown()),
        }
        Ok(())
    });
    EXAMPLE.run(app(args.id, priority, block), args.socket).await
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
        assert_eq!(kernel.subscriptions(), ["after_tool_call", "before_tool_call"]);
        let hook = &kernel.capabilities()[0];
        assert_eq!(hook.params.config["priority"], 3);

        let ask = |payload| kernel.intercept("before_tool_call", payload, WAIT);
        let plain = json!({"name": "ls", "arguments": {"path": "/"}});
        assert_eq!(ask(plain).await.unwrap(), HookVerdict::Continue);
        let login = json!({"name": "login", "arguments": {"user": "u", "password": "pw"}});
        let expected = json!({"name": "login", "arguments": {"user": "u", "password": REDACTED}});
        assert_eq!(ask(login).await.unwrap(), HookVerdict::Modify { payload: expected });
        let rm = json!({"name": "rm", "arguments": {"password": "pw"}});
        let reason = "redactor blocks rm".to_owned();
        assert_eq!(ask(rm).await.unwrap(), HookVerdict::Block { reason });

        kernel.shutdown_app().await.unwrap();
        running.await.unwrap().unwrap();
    }
}
