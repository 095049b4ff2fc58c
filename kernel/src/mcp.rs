//! Burrow as an MCP server, on both transports: `burrow mcp serve` (stdio; a client of
//! the kernel, [`crate::cli::mcp_serve`]) and `/mcp` on the kernel's HTTP surface
//! (streamable HTTP; inside the kernel, [`crate::surface::mcp`]). Both serve [`McpServer`]
//! over a [`Backend`] that reaches the kernel their way:
//!
//! - `tools/list` lists the kernel's tools that `[mcp] expose` names (all by default),
//!   plus three tools of its own ([`SESSION_TOOLS`]) that talk to Burrow's agents:
//!   `session_send` (a message to a session, new or existing, answered with the agent's
//!   reply), `session_history` and `session_list` (the host contract's `session/history`
//!   and `session/list`);
//! - `tools/call` of a kernel tool is `tool.call`, so interceptors and policy apply; the
//!   client's cancellation (`notifications/cancelled`, or an HTTP client going away)
//!   cancels it, and the tool's app is sent `$/cancel`;
//! - when the kernel's tools change ([`Backend::tool_changes`]), the client hears
//!   `notifications/tools/list_changed`: a client of the `initialize` handshake (up to
//!   2025-11-25) on its session, one of the 2026-07-28 revision on its
//!   `subscriptions/listen` stream.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use burrow_protocol::methods::operator::KernelCapabilitiesResult;
use burrow_protocol::{ErrorObject, Map, Value};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, SubscriptionFilter,
    Tool,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A boxed future, so [`Backend`] stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How the MCP server reaches the kernel.
pub trait Backend: Send + Sync + 'static {
    /// The kernel's tools (`kernel.capabilities` of type `tool`).
    fn tools(&self) -> BoxFuture<'_, Result<KernelCapabilitiesResult, ErrorObject>>;

    /// `tool.call` of `name`; `cancel` fires when the MCP client cancels the call.
    fn call_tool(
        &self,
        name: String,
        arguments: Value,
        cancel: CancellationToken,
    ) -> BoxFuture<'_, Result<Value, ErrorObject>>;

    /// A host method (`session/create`, `turn/start`, `session/history`, ...).
    fn host_call(&self, method: String, params: Value)
    -> BoxFuture<'_, Result<Value, ErrorObject>>;

    /// `[mcp] expose`: patterns of the kernel's tools served.
    fn expose(&self) -> Vec<String>;

    /// Changes each time the kernel's tools change.
    fn tool_changes(&self) -> watch::Receiver<u64>;
}

/// The tools of Burrow's MCP server itself: name, description.
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

/// One MCP client's server (one per stdio process, one per HTTP session or stateless
/// request). Dropping it ends its watch on the kernel's tools.
pub struct McpServer {
    backend: Arc<dyn Backend>,
    /// The tool changes since the server was made, until a client of the `initialize`
    /// handshake takes them.
    changes: std::sync::Mutex<Option<watch::Receiver<u64>>>,
    /// Ends the task that tells an initialized client of tool changes.
    watching: CancellationToken,
}

impl McpServer {
    /// A server over `backend`.
    pub fn new(backend: Arc<dyn Backend>) -> McpServer {
        let changes = std::sync::Mutex::new(Some(backend.tool_changes()));
        McpServer { backend, changes, watching: CancellationToken::new() }
    }

    /// Whether the kernel's tool `name` is served.
    fn exposes(&self, expose: &[String], name: &str) -> bool {
        expose.iter().any(|p| burrow_protocol::manifest::pattern_matches(p, name))
    }
}

impl std::fmt::Debug for McpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServer").finish_non_exhaustive()
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        self.watching.cancel();
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        let capabilities =
            ServerCapabilities::builder().enable_tools().enable_tool_list_changed().build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("burrow", crate::VERSION))
    }

    /// A client of the `initialize` handshake hears of tool changes on its session (of
    /// any since the server was made, too).
    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        let taken = self.changes.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(mut changes) = taken else { return };
        let (peer, stop) = (context.peer, self.watching.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = changes.changed() => {
                        if changed.is_err() || peer.notify_tool_list_changed().await.is_err() {
                            return;
                        }
                    }
                    () = stop.cancelled() => return,
                }
            }
        });
    }

    /// A client of the 2026-07-28 revision listens for tool changes.
    fn accepted_subscription_filter(
        &self,
        _requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(SubscriptionFilter::builder().tools_list_changed().build())
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let mut changes = self.backend.tool_changes();
        changes.mark_unchanged();
        loop {
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() || context.sink().notify_tool_list_changed().await.is_err() {
                        return Ok(());
                    }
                }
                () = context.cancelled() => return Ok(()),
            }
        }
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let listed = self.backend.tools().await;
        let listed =
            listed.map_err(|e| ErrorData::internal_error(format!("the kernel: {e}"), None))?;
        let expose = self.backend.expose();
        let own = SESSION_TOOLS.iter().map(|(name, description)| {
            let schema = session_schema(name).as_object().cloned().unwrap_or_default();
            Tool::new(*name, *description, Arc::new(schema))
        });
        let kernels = listed
            .capabilities
            .iter()
            .filter_map(|cap| {
                let config = &cap.config;
                let name = config["name"].as_str()?.to_owned();
                let description = config["description"].as_str().unwrap_or_default().to_owned();
                let schema = match &config["inputSchema"] {
                    Value::Object(schema) => schema.clone(),
                    _ => Map::from_iter([("type".to_owned(), json!("object"))]),
                };
                Some(Tool::new(name, description, Arc::new(schema)))
            })
            // A kernel tool of the same name as one of ours is not served.
            .filter(|tool| !SESSION_TOOLS.iter().any(|(name, _)| *name == tool.name))
            .filter(|tool| self.exposes(&expose, &tool.name));
        Ok(ListToolsResult::with_all_items(own.chain(kernels).collect()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let arguments = Value::Object(request.arguments.unwrap_or_default());
        if let Some(host) = host_call(&request.name, &arguments) {
            let answer = match host {
                Ok(call) => {
                    let (method, params) = call;
                    // A cancelled request's answer is not read: the turn goes on.
                    tokio::select! {
                        answer = self.backend.host_call(method, params) => answer,
                        () = context.ct.cancelled() => return Err(cancelled()),
                    }
                }
                Err(why) => return Ok(CallToolResult::error(vec![ContentBlock::text(why)]).into()),
            };
            return Ok(match answer {
                Ok(result) => session_result(&request.name, result),
                Err(e) => CallToolResult::error(vec![ContentBlock::text(e.to_string())]),
            }
            .into());
        }
        if !self.exposes(&self.backend.expose(), &request.name) {
            let why = format!("no tool {:?} is served ([mcp] expose)", request.name);
            return Ok(CallToolResult::error(vec![ContentBlock::text(why)]).into());
        }
        let answer =
            self.backend.call_tool(request.name.to_string(), arguments, context.ct.clone()).await;
        let result = match answer {
            Ok(result) => tool_result(&result),
            // The kernel's refusal (no such tool, blocked by an interceptor, its app's
            // error) is the tool's failure, which a model can read.
            Err(e) => CallToolResult::error(vec![ContentBlock::text(e.to_string())]),
        };
        Ok(result.into())
    }
}

/// The answer to a request its client cancelled (which the client no longer reads).
fn cancelled() -> ErrorData {
    ErrorData::internal_error("cancelled by the client", None)
}

/// The host method and params a session tool calls (`None`: not a session tool), or why
/// its arguments are wrong.
fn host_call(tool: &str, arguments: &Value) -> Option<Result<(String, Value), String>> {
    let text = |field: &str| arguments.get(field).and_then(Value::as_str);
    let page = |mut params: Value| {
        for field in ["offset", "limit"] {
            if let Some(n) = arguments.get(field).and_then(Value::as_u64) {
                params[field] = n.into();
            }
        }
        params
    };
    let call = |method: &str, params: Value| Ok((method.to_owned(), params));
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
        let (method, params) =
            host_call("session_send", &json!({"message": "hi"})).unwrap().unwrap();
        assert_eq!((method.as_str(), &params["prompt"]), ("session/create", &json!("hi")));
        let (method, params) =
            host_call("session_send", &json!({"message": "hi", "session_id": "s"}))
                .unwrap()
                .unwrap();
        assert_eq!((method.as_str(), &params["session_id"]), ("turn/start", &json!("s")));
        assert!(host_call("session_send", &json!({})).unwrap().is_err());
        let (_, page) =
            host_call("session_history", &json!({"session_id": "s", "limit": 2})).unwrap().unwrap();
        assert_eq!(page, json!({"session_id": "s", "limit": 2}));
        assert!(host_call("session_history", &json!({})).unwrap().is_err());
        assert_eq!(host_call("session_list", &json!({})).unwrap().unwrap().0, "session/list");
        assert!(host_call("read_file", &json!({})).is_none());
        let reply = session_result("session_send", json!({"session_id": "s", "text": "echo: hi"}));
        assert_eq!(serde_json::to_value(&reply).unwrap()["content"][0]["text"], "echo: hi");
        assert_eq!(reply.structured_content.unwrap()["session_id"], "s");
    }
}
