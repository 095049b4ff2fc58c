//! Tools and gateway methods: the [`App`] builder methods that declare them, the contexts
//! their handlers get, and the dispatch of the kernel's `tool.invoke` and
//! `gateway.invoke` requests.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use burrow_protocol::methods::capability::{
    CapabilityType, GatewayMethodConfig, ToolConfig, is_valid_tool_name,
};
use burrow_protocol::methods::invoke::{GatewayInvokeParams, ToolInvokeParams, ToolResult};
use burrow_protocol::methods::{parse_params, to_value};
use burrow_protocol::{ErrorCode, ErrorObject, Value};

use super::App;
use crate::Client;
use crate::peer::{BoxFuture, method_not_found};

/// What a tool handler learns about the call it serves (`tool.invoke`).
#[derive(Debug, Clone)]
pub struct ToolContext {
    /// The kernel's id of this call.
    pub call_id: String,
    /// The tool's name (useful when one handler serves several tools).
    pub name: String,
    /// The session the call belongs to, if any.
    pub session_key: Option<String>,
    /// The agent run the call belongs to, if any.
    pub run_id: Option<String>,
    /// When the kernel stops waiting for the answer (from `tool.invoke`'s `timeoutMs`,
    /// counted from when the call arrived), if it said.
    pub deadline: Option<tokio::time::Instant>,
    /// The call's span in the kernel, when it exports traces (W3C `traceparent`); the
    /// handler runs in its context ([`crate::trace`]).
    pub traceparent: Option<String>,
    client: Client,
}

impl ToolContext {
    /// The app's connection to the kernel, to call kernel methods (e.g.
    /// [`Client::config_get`]) from the handler.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The id the app registered as.
    pub fn app_id(&self) -> &str {
        self.client.app_id().unwrap_or_default()
    }
}

/// What a gateway-method handler learns about the call it serves (`gateway.invoke`).
#[derive(Debug, Clone)]
pub struct GatewayContext {
    /// Who called: an app id, or a host surface.
    pub caller: String,
    /// The full method name, `<appId>.<name>`.
    pub method: String,
    client: Client,
}

impl GatewayContext {
    /// The app's connection to the kernel, to call kernel methods from the handler.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The id the app registered as.
    pub fn app_id(&self) -> &str {
        self.client.app_id().unwrap_or_default()
    }
}

type ToolFn = Arc<
    dyn Fn(Value, ToolContext) -> BoxFuture<std::result::Result<ToolResult, ErrorObject>>
        + Send
        + Sync,
>;
type GatewayFn = Arc<
    dyn Fn(Value, GatewayContext) -> BoxFuture<std::result::Result<Value, ErrorObject>>
        + Send
        + Sync,
>;

/// One declared tool.
struct Tool {
    config: ToolConfig,
    handler: ToolFn,
}

/// One declared gateway method.
struct Gateway {
    /// As given to the builder until [`Tools::resolve`], then the full name.
    method: String,
    handler: GatewayFn,
}

/// The tools and gateway methods of an app, in declaration order.
#[derive(Default)]
pub(super) struct Tools {
    tools: Vec<Tool>,
    gateway: Vec<Gateway>,
}

impl Tools {
    /// The tool names, in declaration order.
    pub(super) fn tool_names(&self) -> impl Iterator<Item = &str> {
        self.tools.iter().map(|t| t.config.name.as_str())
    }

    /// The full gateway method names (after [`Tools::resolve`]).
    pub(super) fn gateway_methods(&self) -> impl Iterator<Item = &str> {
        self.gateway.iter().map(|g| g.method.as_str())
    }

    pub(super) fn has_tools(&self) -> bool {
        !self.tools.is_empty()
    }

    pub(super) fn has_gateway_methods(&self) -> bool {
        !self.gateway.is_empty()
    }

    /// The `capability.register` requests: `(type, name, config)`.
    pub(super) fn capabilities(&self) -> impl Iterator<Item = (CapabilityType, String, Value)> {
        let tools = self
            .tools
            .iter()
            .map(|t| (CapabilityType::Tool, t.config.name.clone(), to_value(&t.config)));
        let gateway = self.gateway.iter().map(|g| {
            let config = GatewayMethodConfig { method: g.method.clone(), description: None };
            (CapabilityType::GatewayMethod, g.method.clone(), to_value(&config))
        });
        tools.chain(gateway)
    }

    /// Puts gateway methods in the app's namespace: `name` becomes `<appId>.name`;
    /// `<appId>.name` stays. Returns the mistakes found (another app's namespace, twice
    /// the same method).
    pub(super) fn resolve(&mut self, app_id: &str) -> Vec<String> {
        let mut mistakes = Vec::new();
        let prefix = format!("{app_id}.");
        let mut seen = std::collections::HashSet::new();
        for g in &mut self.gateway {
            if !g.method.contains('.') {
                g.method = format!("{prefix}{}", g.method);
            } else if !g.method.starts_with(&prefix) || g.method.len() == prefix.len() {
                mistakes.push(format!(
                    "gateway method {:?} is outside the app's namespace {prefix}*",
                    g.method
                ));
            }
            if !seen.insert(g.method.clone()) {
                mistakes.push(format!("two handlers for gateway method {}", g.method));
            }
        }
        mistakes
    }

    /// Answers `tool.invoke`: the named tool's handler, or `NOT_FOUND`.
    pub(super) fn invoke_tool(
        &self,
        params: Value,
        client: Client,
    ) -> BoxFuture<std::result::Result<Value, ErrorObject>> {
        let params: ToolInvokeParams = match parse_params(params) {
            Ok(params) => params,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let Some(tool) = self.tools.iter().find(|t| t.config.name == params.name) else {
            let e = ErrorObject::new(
                ErrorCode::NotFound,
                format!("this app has no tool {:?}", params.name),
            )
            .with_data(serde_json::json!({ "name": params.name }));
            return Box::pin(std::future::ready(Err(e)));
        };
        let now = tokio::time::Instant::now();
        let deadline =
            params.timeout_ms.map(|ms| now + std::time::Duration::from_millis(ms.min(86_400_000)));
        let cx = ToolContext {
            call_id: params.call_id,
            name: params.name,
            session_key: params.session_key,
            run_id: params.run_id,
            deadline,
            traceparent: params.traceparent.clone(),
            client,
        };
        let call = crate::trace::within(
            params.traceparent.as_deref(),
            (tool.handler)(params.arguments, cx),
        );
        Box::pin(async move { call.await.map(|result| to_value(&result)) })
    }

    /// Answers `gateway.invoke`: the named method's handler, or `METHOD_NOT_FOUND`.
    pub(super) fn invoke_gateway(
        &self,
        params: Value,
        client: Client,
    ) -> BoxFuture<std::result::Result<Value, ErrorObject>> {
        let params: GatewayInvokeParams = match parse_params(params) {
            Ok(params) => params,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let Some(gateway) = self.gateway.iter().find(|g| g.method == params.method) else {
            return Box::pin(std::future::ready(Err(method_not_found(&params.method))));
        };
        let cx = GatewayContext { caller: params.caller, method: params.method, client };
        (gateway.handler)(params.params, cx)
    }
}

/// Milliseconds of a deadline, rounded up; `None` for zero (the kernel refuses it).
pub(super) fn deadline_ms(timeout: Duration) -> Option<u64> {
    let ms = timeout.as_nanos().div_ceil(1_000_000);
    (ms > 0).then(|| u64::try_from(ms).unwrap_or(u64::MAX))
}

impl App {
    /// Offers a tool: registered on every connection with `capability.register {type:
    /// "tool", config: {name, description, inputSchema}}` and added to the manifest's
    /// `capabilities.tools` unless a pattern there covers it.
    ///
    /// The kernel calls it with `tool.invoke`; the handler gets the `arguments` and a
    /// [`ToolContext`], runs in a task of its own, and its `Err` is the error answer (a
    /// panic answers `INTERNAL_ERROR`). The kernel enforces the deadline (its default;
    /// see [`App::tool_with_timeout`]). A name outside `[a-zA-Z0-9_-]{1,64}` or declared
    /// twice fails the run at start-up.
    ///
    /// ```no_run
    /// use burrow_sdk::{App, Manifest, ToolResult};
    /// use serde_json::json;
    ///
    /// let app = App::new(Manifest::new("clock", "0.1.0")).tool(
    ///     "echo",
    ///     "Returns its arguments",
    ///     json!({"type": "object"}),
    ///     |arguments, _cx| async move { Ok(ToolResult { content: arguments, is_error: None }) },
    /// );
    /// ```
    pub fn tool<F, Fut>(
        self,
        name: impl Into<String>,
        description: impl Into<String>,
        input_schema: Value,
        handler: F,
    ) -> Self
    where
        F: Fn(Value, ToolContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<ToolResult, ErrorObject>> + Send + 'static,
    {
        self.add_tool(name.into(), description.into(), input_schema, None, handler)
    }

    /// [`App::tool`] with the per-call deadline the kernel enforces (`timeoutMs`, rounded
    /// up to whole milliseconds; zero fails the run at start-up).
    pub fn tool_with_timeout<F, Fut>(
        self,
        name: impl Into<String>,
        description: impl Into<String>,
        input_schema: Value,
        timeout: Duration,
        handler: F,
    ) -> Self
    where
        F: Fn(Value, ToolContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<ToolResult, ErrorObject>> + Send + 'static,
    {
        self.add_tool(name.into(), description.into(), input_schema, Some(timeout), handler)
    }

    fn add_tool<F, Fut>(
        mut self,
        name: String,
        description: String,
        input_schema: Value,
        timeout: Option<Duration>,
        handler: F,
    ) -> Self
    where
        F: Fn(Value, ToolContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<ToolResult, ErrorObject>> + Send + 'static,
    {
        if !is_valid_tool_name(&name) {
            self.mistakes.push(format!("tool name {name:?} must match [a-zA-Z0-9_-]{{1,64}}"));
        }
        if self.handlers.tools.tool_names().any(|n| n == name) {
            self.mistakes.push(format!("two tools named {name}"));
        }
        let timeout_ms = timeout.map(deadline_ms);
        if timeout_ms == Some(None) {
            self.mistakes.push(format!("the timeout of tool {name} must be positive"));
        }
        let config = ToolConfig {
            name,
            description,
            input_schema: Some(input_schema),
            timeout_ms: timeout_ms.flatten(),
        };
        let handler: ToolFn = Arc::new(move |arguments, cx| Box::pin(handler(arguments, cx)));
        self.handlers.tools.tools.push(Tool { config, handler });
        self
    }

    /// Offers a gateway method, callable by other apps and host surfaces through the
    /// kernel. It lives in the app's namespace: `"forecast"` is registered as
    /// `<appId>.forecast`, and a full `"<appId>.forecast"` is kept as it is (another
    /// namespace fails the run at start-up). Registered on every connection with
    /// `capability.register {type: "gateway_method"}` and added to the manifest's
    /// `capabilities.gatewayMethods` unless a pattern there covers it.
    ///
    /// The kernel calls it with `gateway.invoke {method, params, caller}`; the handler
    /// gets `params` and a [`GatewayContext`], and its `Ok` value is the answer.
    pub fn gateway_method<F, Fut>(mut self, name: impl Into<String>, handler: F) -> Self
    where
        F: Fn(Value, GatewayContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<Value, ErrorObject>> + Send + 'static,
    {
        let method = name.into();
        if method.is_empty() || method.chars().any(char::is_whitespace) {
            self.mistakes.push(format!("gateway method {method:?} is not a method name"));
        }
        let handler: GatewayFn = Arc::new(move |params, cx| Box::pin(handler(params, cx)));
        self.handlers.tools.gateway.push(Gateway { method, handler });
        self
    }
}

#[cfg(test)]
mod tests;
