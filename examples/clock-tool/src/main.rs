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

use std::process::ExitCode;
use std::time::Duration;

use burrow_example_common::{Example, say};
use burrow_sdk::{App, ErrorCode, ErrorObject, Manifest, ToolResult, Value};
use serde_json::json;

const EXAMPLE: Example = Example::new("clock-tool", "clock");
/// How long `slow_echo` sleeps when `ms` is not given.
const DEFAULT_SLOW_MS: u64 = 500;
/// The deadline the kernel gives `slow_echo`.
const SLOW_TIMEOUT: Duration = Duration::from_secs(60);

fn content(content: Value) -> Result<ToolResult, ErrorObject> {
    Ok(ToolResult { content, is_error: None })
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
                let ms = arguments.get("ms").and_then(Value::as_u64).unwrap_or(DEFAULT_SLOW_MS);
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
            say(&format!("clock-tool: ready as {}", client.app_id().unwrap_or_default()));
        })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = EXAMPLE.start();
    EXAMPLE.run(app(args.id), args.socket).await
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
        let slow = kernel.invoke_tool("slow_echo", json!({"ms": 1})).await.unwrap();
        assert_eq!(slow.content, json!({"ms": 1}));
        let failed = kernel.invoke_tool("fail", json!({"message": "boom"})).await.unwrap_err();
        assert_eq!(failed.code(), Some(ErrorCode::UnknownError));
        assert!(failed.to_string().contains("boom"), "{failed}");

        kernel.shutdown_app().await.unwrap();
        running.await.unwrap().unwrap();
    }
}
