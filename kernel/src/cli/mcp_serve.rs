//! `burrow mcp serve`: Burrow's MCP server ([`crate::mcp`]) on stdin/stdout, for MCP
//! clients that spawn their servers (Claude Desktop and Code, Cursor, the MCP SDKs). It is
//! a client of the running kernel (registered as `mcp-serve-<pid>`, [`SdkBackend`]): the
//! kernel's tools come from `kernel.capabilities`, calls are `tool.call` (a cancelled
//! one is dropped, which sends the kernel `$/cancel`), the session tools are `host.call`,
//! tool changes are the `capability_registered` / `capability_unregistered` hook events,
//! and `[mcp] expose` is read once at start.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use burrow_protocol::methods::Method;
use burrow_protocol::methods::app::{AppRegister, PROTOCOL_VERSION, RegisterParams};
use burrow_protocol::methods::capability::CapabilityType;
use burrow_protocol::methods::hook::HookEvent;
use burrow_protocol::methods::operator::{
    KernelCapabilities, KernelCapabilitiesParams, KernelCapabilitiesResult,
};
use burrow_protocol::{ErrorCode, ErrorObject, Manifest, Notification, Request, Value};
use burrow_sdk::Client;
use burrow_sdk::peer::Service;
use rmcp::ServiceExt;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::client::unreachable_kernel;
use crate::mcp::{Backend, BoxFuture, McpServer};

/// The hook events that say the kernel's tools changed.
const TOOL_EVENTS: [&str; 2] = ["capability_registered", "capability_unregistered"];

/// Runs `burrow mcp serve` until the MCP client closes stdin.
pub async fn run(socket: Option<PathBuf>) -> ExitCode {
    let path = socket.unwrap_or_else(burrow_sdk::transport::socket_from_env);
    let transport = match burrow_sdk::transport::Transport::connect(&path).await {
        Ok(t) => t,
        Err(e) => {
            unreachable_kernel(&path, &e);
            return ExitCode::from(2);
        }
    };
    let changes = watch::Sender::new(0);
    let client = Client::with_service(transport, Events { changes: changes.clone() });
    client.keep_alive();
    if let Err(e) = register(&client).await {
        eprintln!("burrow mcp serve: cannot register with the kernel: {e}");
        return ExitCode::FAILURE;
    }
    let expose = match client.config_get(Some("mcp.expose")).await {
        Ok(Value::Array(patterns)) => {
            patterns.iter().filter_map(Value::as_str).map(str::to_owned).collect()
        }
        Ok(_) => vec!["*".to_owned()],
        Err(e) => {
            eprintln!("burrow mcp serve: cannot read [mcp] expose: {e}");
            return ExitCode::FAILURE;
        }
    };
    let backend = SdkBackend { client: client.clone(), expose, changes };
    let running = match McpServer::new(Arc::new(backend)).serve(rmcp::transport::stdio()).await {
        Ok(running) => running,
        Err(e) => {
            eprintln!("burrow mcp serve: the MCP client did not connect: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ended = tokio::select! {
        quit = running.waiting() => quit.map(drop).map_err(|e| e.to_string()),
        () = client.closed() => Err("the kernel closed the connection".to_owned()),
    };
    match ended {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("burrow mcp serve: {why}");
            ExitCode::FAILURE
        }
    }
}

/// Registers as `mcp-serve-<pid>`, following the tool events.
async fn register(client: &Client) -> Result<(), burrow_sdk::Error> {
    let mut manifest = Manifest::new(format!("mcp-serve-{}", std::process::id()), crate::VERSION);
    manifest.description = Some("burrow mcp serve: the kernel's tools for an MCP client".into());
    manifest.capabilities.hooks.subscribe = TOOL_EVENTS.iter().map(|e| (*e).to_owned()).collect();
    manifest.config.read = vec!["mcp".to_owned()];
    let params =
        RegisterParams { manifest, protocol_version: PROTOCOL_VERSION.into(), token: None };
    client.call::<AppRegister>(params).await?;
    client.hook_subscribe(TOOL_EVENTS).await?;
    Ok(())
}

/// The kernel connection's service: tool events count as changes.
struct Events {
    changes: watch::Sender<u64>,
}

impl Service for Events {
    fn request(
        &self,
        request: Request,
        _client: Client,
    ) -> burrow_sdk::peer::BoxFuture<Result<Value, ErrorObject>> {
        let missing = ErrorObject::new(
            ErrorCode::MethodNotFound,
            format!("burrow mcp serve answers no {}", request.method),
        );
        Box::pin(async move { Err(missing) })
    }

    fn notification(
        &self,
        notification: Notification,
        _client: Client,
    ) -> burrow_sdk::peer::BoxFuture<()> {
        let event = notification.params.get("event").and_then(Value::as_str);
        if notification.method == HookEvent::NAME
            && event.is_some_and(|e| TOOL_EVENTS.contains(&e))
            && notification.params["payload"]["type"] == "tool"
        {
            self.changes.send_modify(|n| *n += 1);
        }
        Box::pin(async {})
    }
}

/// The kernel reached as a client over its socket.
struct SdkBackend {
    client: Client,
    /// `[mcp] expose`, as read at start.
    expose: Vec<String>,
    changes: watch::Sender<u64>,
}

/// An SDK error as the kernel's error object.
fn error_object(e: burrow_sdk::Error) -> ErrorObject {
    e.to_error_object()
}

impl Backend for SdkBackend {
    fn tools(&self) -> BoxFuture<'_, Result<KernelCapabilitiesResult, ErrorObject>> {
        let params = KernelCapabilitiesParams { kind: Some(CapabilityType::Tool) };
        Box::pin(async move {
            self.client.call::<KernelCapabilities>(params).await.map_err(error_object)
        })
    }

    fn call_tool(
        &self,
        name: String,
        arguments: Value,
        cancel: CancellationToken,
    ) -> BoxFuture<'_, Result<Value, ErrorObject>> {
        Box::pin(async move {
            let params = json!({ "name": name, "arguments": arguments });
            // Dropping the request sends the kernel `$/cancel`.
            tokio::select! {
                answer = self.client.request("tool.call", params) => answer.map_err(error_object),
                () = cancel.cancelled() => Err(ErrorObject::new(ErrorCode::UnknownError, "cancelled")),
            }
        })
    }

    fn host_call(
        &self,
        method: String,
        params: Value,
    ) -> BoxFuture<'_, Result<Value, ErrorObject>> {
        let call = json!({ "method": method, "params": params });
        Box::pin(async move { self.client.request("host.call", call).await.map_err(error_object) })
    }

    fn expose(&self) -> Vec<String> {
        self.expose.clone()
    }

    fn tool_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}
