//! Client commands about capabilities, hooks and configuration: `tools`, `hooks`,
//! `call-tool`. Those that call app methods register the CLI as a
//! short-lived app `cli-<pid>` (which may read any configuration path).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use burrow_protocol::Manifest;
use burrow_protocol::Value;
use burrow_protocol::methods::app::{AppRegister, PROTOCOL_VERSION, RegisterParams};
use burrow_sdk::Client;
use serde_json::json;

use super::client::{connect, fail, print_json};

/// A client registered as an app (kept alive by [`connect`]).
pub(super) struct Registered {
    pub(super) client: Client,
}

/// Connects and registers as `cli-<pid>`.
pub(super) async fn registered(socket: Option<PathBuf>) -> Result<Registered, ExitCode> {
    let client = connect(socket).await?;
    let mut manifest = Manifest::new(format!("cli-{}", std::process::id()), crate::VERSION);
    manifest.description = Some("the burrow command line".into());
    manifest.config.read = vec!["*".into()];
    let params =
        RegisterParams { manifest, protocol_version: PROTOCOL_VERSION.into(), token: None };
    client.call::<AppRegister>(params).await.map_err(fail)?;
    Ok(Registered { client })
}

/// `burrow tools`.
pub async fn tools(socket: Option<PathBuf>, json_out: bool) -> ExitCode {
    let client = match connect(socket).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let list = match client.request("kernel.capabilities", json!({ "type": "tool" })).await {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    if json_out {
        print_json(&list);
        return ExitCode::SUCCESS;
    }
    let caps = list["capabilities"].as_array().cloned().unwrap_or_default();
    if caps.is_empty() {
        println!("no tools registered");
        return ExitCode::SUCCESS;
    }
    println!("{:<28} {:<20} {:>9}  DESCRIPTION", "TOOL", "APP", "TIMEOUT");
    for cap in caps {
        let c = &cap["config"];
        let timeout = c["timeoutMs"].as_u64().map_or("default".to_owned(), |ms| format!("{ms}ms"));
        println!(
            "{:<28} {:<20} {:>9}  {}",
            c["name"].as_str().unwrap_or("?"),
            cap["appId"].as_str().unwrap_or("?"),
            timeout,
            c["description"].as_str().unwrap_or(""),
        );
    }
    ExitCode::SUCCESS
}

/// `burrow hooks`.
pub async fn hooks(socket: Option<PathBuf>, json_out: bool) -> ExitCode {
    let client = match connect(socket).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let hooks = match client.request("kernel.hooks", json!({})).await {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    if json_out {
        print_json(&hooks);
        return ExitCode::SUCCESS;
    }
    let empty = Vec::new();
    let subs = hooks["subscribers"].as_array().unwrap_or(&empty);
    let interceptors = hooks["interceptors"].as_array().unwrap_or(&empty);
    if subs.is_empty() && interceptors.is_empty() {
        println!("no hook subscriptions or interceptors");
        return ExitCode::SUCCESS;
    }
    let mut apps: Vec<&str> =
        subs.iter().chain(interceptors).filter_map(|x| x["appId"].as_str()).collect();
    apps.sort();
    apps.dedup();
    for app in apps {
        println!("{app}");
        for s in subs.iter().filter(|s| s["appId"] == app) {
            let list: Vec<&str> = s["subscriptions"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .filter_map(Value::as_str)
                .collect();
            println!("  observes:    {}", list.join(", "));
            if s["dropped"].as_u64().unwrap_or(0) > 0 {
                println!("  dropped:     {} events (too slow)", s["dropped"]);
            }
        }
        for i in interceptors.iter().filter(|i| i["appId"] == app) {
            println!(
                "  intercepts:  {} (priority {}, {}, timeout {})",
                i["event"].as_str().unwrap_or("?"),
                i["priority"],
                i["failMode"].as_str().map_or("open".to_owned(), |m| format!("fail-{m}")),
                i["timeoutMs"].as_u64().map_or("default".to_owned(), |ms| format!("{ms}ms")),
            );
        }
    }
    ExitCode::SUCCESS
}

/// `burrow call-tool NAME [ARGS]`.
pub async fn call_tool(
    socket: Option<PathBuf>,
    name: &str,
    arguments: Option<&str>,
    timeout_ms: u64,
) -> ExitCode {
    let arguments: Value = match arguments.map(serde_json::from_str).transpose() {
        Ok(a) => a.unwrap_or_else(|| json!({})),
        Err(e) => {
            eprintln!("burrow: arguments are not valid JSON: {e}");
            return ExitCode::from(2);
        }
    };
    let reg = match registered(socket).await {
        Ok(r) => r,
        Err(code) => return code,
    };
    let params = json!({ "name": name, "arguments": arguments });
    match reg
        .client
        .request_with_timeout("tool.call", params, Duration::from_millis(timeout_ms))
        .await
    {
        Ok(result) => {
            print_json(&result);
            if result["isError"] == true { ExitCode::FAILURE } else { ExitCode::SUCCESS }
        }
        Err(e) => fail(e),
    }
}
