//! `burrow mcp serve`: Burrow's tools as an MCP server on stdin/stdout, for MCP clients
//! that spawn their servers (Claude Desktop and Code, Cursor, the MCP SDKs). It is a
//! client of the running kernel (registered as `mcp-serve-<pid>`): `tools/list` lists the
//! kernel's tools that `[mcp] expose` names (all by default), `tools/call` is `tool.call` (so interceptors and policy apply), and
//! when a tool appears or leaves (the `capability_registered` / `capability_unregistered`
//! hook events) the client is sent `notifications/tools/list_changed`. Three tools of its
//! own let the client talk to Burrow's agents ([`SESSION_TOOLS`]): `session_send` (a
//! message to a session, new or existing, answered with the agent's reply),
//! `session_history` and `session_list` (the host contract's `session/history` and
//! `session/list`). Both protocol
//! generations are served: the `initialize` handshake (up to 2025-11-25) and the
//! 2026-07-28 revision's `server/discover` (rmcp's).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use burrow_protocol::methods::Method;
use burrow_protocol::methods::app::{AppRegister, PROTOCOL_VERSION, RegisterParams};
use burrow_protocol::methods::hook::HookEvent;
use burrow_protocol::{ErrorObject, Manifest, Notification, Request, Value};
use burrow_sdk::Client;
use burrow_sdk::peer::{BoxFuture, Service};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler, ServiceExt};
use serde_json::json;
use tokio::sync::mpsc;

use super::client::unreachable_kernel;

/// The tools of `burrow mcp serve` itself: name, description, input schema.
pub const SESSION_TOOLS: [(&str, &str); 3] = [
    (
        "session_send",
        "Send a message to a Burrow session and wait for its agent's reply. Without session_id, a new session is created; the answer names it.",
    ),
    ("session_history", "A page of a Burrow session's transcript, from its start (offset, limit)."),
    ("session_list", "Burrow's sessions, newest activity first."),
];

/// The input schema of session tool `name`.
fn session_schema(name: &str) -> Value {
    match name {
        "session_send" => json!({"type": "object", "required": ["message"], "properties": {
            "message": {"type": "string"}, "session_id": {"type": "string"}}}),
        "session_history" => json!({"type": "object", "required": ["session_id"], "properties": {
            "session_id": {"type": "string"}, "offset": {"type": "integer", "minimum": 0},
            "limit": {"type": "integer", "minimum": 1}}}),
        _ => json!({"type": "object", "properties": {
            "limit": {"type": "integer", "minimum": 1}, "offset": {"type": "integer", "minimum": 0}}}),
    }
}

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
    let (changed, mut changes) = mpsc::channel(1);
    let client = Client::with_service(transport, Events { changed });
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
    let server = KernelTools { client: client.clone(), peer: Arc::default(), expose };
    let peers = server.peer.clone();
    // Tool changes become `notifications/tools/list_changed` once the client is there.
    tokio::spawn(async move {
        while changes.recv().await.is_some() {
            let peer = peers.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some(peer) = peer
                && peer.notify_tool_list_changed().await.is_err()
            {
                break;
            }
        }
    });
    let running = match server.serve(rmcp::transport::stdio()).await {
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

/// The kernel connection's service: tool events are passed on (coalesced).
struct Events {
    changed: mpsc::Sender<()>,
}

impl Service for Events {
    fn request(&self, request: Request, _client: Client) -> BoxFuture<Result<Value, ErrorObject>> {
        let missing = ErrorObject::new(
            burrow_protocol::ErrorCode::MethodNotFound,
            format!("burrow mcp serve answers no {}", request.method),
        );
        Box::pin(async move { Err(missing) })
    }

    fn notification(&self, notification: Notification, _client: Client) -> BoxFuture<()> {
        let event = notification.params.get("event").and_then(Value::as_str);
        if notification.method == HookEvent::NAME
            && event.is_some_and(|e| TOOL_EVENTS.contains(&e))
            && notification.params["payload"]["type"] == "tool"
        {
            let _ = self.changed.try_send(());
        }
        Box::pin(async {})
    }
}

/// The MCP server: the kernel's tools.
#[derive(Clone)]
struct KernelTools {
    client: Client,
    /// The MCP client, once initialized.
    peer: Arc<Mutex<Option<Peer<RoleServer>>>>,
    /// `[mcp] expose`: the kernel's tools served.
    expose: Vec<String>,
}

impl KernelTools {
    /// Whether the kernel's tool `name` is served.
    fn exposes(&self, name: &str) -> bool {
        self.expose.iter().any(|p| burrow_protocol::manifest::pattern_matches(p, name))
    }
}

impl ServerHandler for KernelTools {
    fn get_info(&self) -> ServerConfig {
        let capabilities =
            ServerCapabilities::builder().enable_tools().enable_tool_list_changed().build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("burrow", crate::VERSION))
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        *self.peer.lock().unwrap_or_else(|e| e.into_inner()) = Some(context.peer);
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        self.peer.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(context.peer);
        let listed = self.client.request("kernel.capabilities", json!({ "type": "tool" })).await;
        let listed =
            listed.map_err(|e| ErrorData::internal_error(format!("the kernel: {e}"), None))?;
        let own = SESSION_TOOLS.iter().map(|(name, description)| {
            let schema = session_schema(name).as_object().cloned().unwrap_or_default();
            Tool::new(*name, *description, Arc::new(schema))
        });
        let kernels = listed["capabilities"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|cap| {
                let config = &cap["config"];
                let name = config["name"].as_str()?.to_owned();
                let description = config["description"].as_str().unwrap_or_default().to_owned();
                let schema = match &config["inputSchema"] {
                    Value::Object(schema) => schema.clone(),
                    _ => json!({ "type": "object" }).as_object().cloned().unwrap_or_default(),
                };
                Some(Tool::new(name, description, Arc::new(schema)))
            })
            // A kernel tool of the same name as one of ours is not served.
            .filter(|tool| !SESSION_TOOLS.iter().any(|(name, _)| *name == tool.name))
            .filter(|tool| self.exposes(&tool.name));
        Ok(ListToolsResult::with_all_items(own.chain(kernels).collect()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let arguments = Value::Object(request.arguments.unwrap_or_default());
        if let Some(host) = host_call(&request.name, &arguments) {
            let answer = match host {
                Ok(call) => self.client.request("host.call", call).await,
                Err(why) => return Ok(CallToolResult::error(vec![ContentBlock::text(why)]).into()),
            };
            return Ok(match answer {
                Ok(result) => session_result(&request.name, result),
                Err(e) => CallToolResult::error(vec![ContentBlock::text(e.to_string())]),
            }
            .into());
        }
        if !self.exposes(&request.name) {
            let why = format!("no tool {:?} is served ([mcp] expose)", request.name);
            return Ok(CallToolResult::error(vec![ContentBlock::text(why)]).into());
        }
        let params = json!({ "name": request.name, "arguments": arguments });
        let answer = self.client.request("tool.call", params).await;
        let result = match answer {
            Ok(result) => tool_result(&result),
            // The kernel's refusal (no such tool, blocked by an interceptor, its app's
            // error) is the tool's failure, which a model can read.
            Err(e) => CallToolResult::error(vec![ContentBlock::text(e.to_string())]),
        };
        Ok(result.into())
    }
}

/// The `host.call` a session tool makes (`None`: not a session tool), or why its
/// arguments are wrong.
fn host_call(tool: &str, arguments: &Value) -> Option<Result<Value, String>> {
    let text = |field: &str| arguments.get(field).and_then(Value::as_str);
    let page = |mut params: Value| {
        for field in ["offset", "limit"] {
            if let Some(n) = arguments.get(field).and_then(Value::as_u64) {
                params[field] = n.into();
            }
        }
        params
    };
    let call = |method: &str, params: Value| Ok(json!({ "method": method, "params": params }));
    Some(match tool {
        "session_send" => match (text("message"), text("session_id")) {
            (None, _) => Err("session_send needs a message (a string)".to_owned()),
            (Some(message), Some(id)) => call(
                "turn/start",
                json!({ "session_id": id, "prompt": message, "session_events": false }),
            ),
            (Some(message), None) => call(
                "session/create",
                json!({ "prompt": message, "keep_alive": true, "session_events": false }),
            ),
        },
        "session_history" => match text("session_id") {
            Some(id) => call("session/history", page(json!({ "session_id": id }))),
            None => Err("session_history needs a session_id (a string)".to_owned()),
        },
        "session_list" => call("session/list", page(json!({}))),
        _ => return None,
    })
}

/// A session tool's answer: `session_send`'s reply as text, the others' JSON as text; the
/// whole answer as `structuredContent`.
fn session_result(tool: &str, result: Value) -> CallToolResult {
    let text = match (tool, result.get("text").and_then(Value::as_str)) {
        ("session_send", Some(reply)) => reply.to_owned(),
        _ => result.to_string(),
    };
    let mut mcp = CallToolResult::success(vec![ContentBlock::text(text)]);
    mcp.structured_content = Some(result);
    mcp
}

/// A Burrow tool result (`{content, isError?}`) as an MCP one: text content as a text
/// block; other JSON as its text, and as `structuredContent` when it is an object.
fn tool_result(result: &Value) -> CallToolResult {
    let content = &result["content"];
    let text = match content {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let mut mcp = match result["isError"] == true {
        true => CallToolResult::error(vec![ContentBlock::text(text)]),
        false => CallToolResult::success(vec![ContentBlock::text(text)]),
    };
    if content.is_object() {
        mcp.structured_content = Some(content.clone());
    }
    mcp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burrow_results_read_as_mcp_results() {
        let text = tool_result(&json!({"content": "hi"}));
        assert_eq!(
            serde_json::to_value(&text).unwrap()["content"],
            json!([{"type": "text", "text": "hi"}])
        );
        assert_eq!(text.is_error, Some(false));
        let failed = tool_result(&json!({"content": "no", "isError": true}));
        assert_eq!(failed.is_error, Some(true));
        let object = tool_result(&json!({"content": {"a": 1}}));
        assert_eq!(object.structured_content, Some(json!({"a": 1})));
        assert_eq!(serde_json::to_value(&object).unwrap()["content"][0]["text"], r#"{"a":1}"#);
    }

    #[test]
    fn session_tools_are_host_calls() {
        let new = host_call("session_send", &json!({"message": "hi"})).unwrap().unwrap();
        assert_eq!(
            (new["method"].clone(), new["params"]["prompt"].clone()),
            (json!("session/create"), json!("hi"))
        );
        let more = host_call("session_send", &json!({"message": "hi", "session_id": "s"}))
            .unwrap()
            .unwrap();
        assert_eq!(
            (more["method"].clone(), more["params"]["session_id"].clone()),
            (json!("turn/start"), json!("s"))
        );
        assert!(host_call("session_send", &json!({})).unwrap().is_err());
        let page =
            host_call("session_history", &json!({"session_id": "s", "limit": 2})).unwrap().unwrap();
        assert_eq!(page["params"], json!({"session_id": "s", "limit": 2}));
        assert!(host_call("session_history", &json!({})).unwrap().is_err());
        assert_eq!(
            host_call("session_list", &json!({})).unwrap().unwrap()["method"],
            "session/list"
        );
        assert!(host_call("read_file", &json!({})).is_none());
        let reply = session_result("session_send", json!({"session_id": "s", "text": "echo: hi"}));
        assert_eq!(serde_json::to_value(&reply).unwrap()["content"][0]["text"], "echo: hi");
        assert_eq!(reply.structured_content.unwrap()["session_id"], "s");
    }
}
