//! Calls routed to other apps (PROTOCOL.md §5): `tool.call` → `tool.invoke`, and a
//! registered gateway method → `gateway.invoke`. Each call runs in its own task, so a
//! slow provider delays only its own callers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use burrow_protocol::methods::capability::{CapabilityConfig, CapabilityType};
use burrow_protocol::methods::invoke::{
    GatewayInvoke, GatewayInvokeParams, HttpRequest, HttpRequestParams, HttpResponse,
    ToolCallParams, ToolInvoke, ToolInvokeParams, ToolResult,
};
use burrow_protocol::methods::{Method, to_value};
use burrow_protocol::{ErrorCode, ErrorObject, Map, Value};
use serde::Deserialize;
use serde_json::json;

use burrow_protocol::rules::route_path;

use crate::capabilities::Capability;
use crate::connection::Responder;
use crate::hooks;
use crate::kernel::Kernel;

/// A call to a registered gateway method from `caller`: answered from a task, a large
/// answer (the app's).
pub fn gateway_call(
    kernel: Arc<Kernel>,
    cap: Arc<Capability>,
    caller: String,
    params: Value,
    responder: Responder,
) {
    super::answer_routed(
        responder,
        async move { gateway_request(&kernel, &cap, caller, params).await },
    );
}

/// Asks the app holding a gateway method to answer a call from `caller`.
pub async fn gateway_request(
    kernel: &Kernel,
    cap: &Capability,
    caller: String,
    params: Value,
) -> Result<Value, ErrorObject> {
    if !kernel.apps.is_ready(&cap.app_id) {
        return Err(unavailable("gateway method", cap));
    }
    let method = cap.name().unwrap_or_default();
    let params = GatewayInvokeParams { method, params, caller };
    let timeout = Duration::from_millis(kernel.config().ipc.call_timeout_ms);
    cap.conn.request(GatewayInvoke::NAME, &params, timeout).await
}

/// Asks the app holding the `http_route` that matches `request` (exactly, or a route
/// ending in `*` as a prefix) to answer it with `http.request`. A path that is not in
/// normal form ([`route_path::check`], the rule routes are granted by) matches no route:
/// `INVALID_REQUEST` with `data.reason: "bad_path"`.
pub async fn http_request(
    kernel: &Kernel,
    request: HttpRequestParams,
) -> Result<HttpResponse, ErrorObject> {
    if let Err(why) = route_path::check(&request.path) {
        return Err(ErrorObject::new(
            ErrorCode::InvalidRequest,
            format!("the path {:?} is not in normal form: {why}", request.path),
        )
        .with_data(json!({ "reason": "bad_path", "path": request.path })));
    }
    let method = request.method.to_ascii_uppercase();
    let cap = kernel
        .caps
        .by_name(CapabilityType::HttpRoute, &format!("{method} {}", request.path))
        .or_else(|| {
            kernel.caps.list(Some(CapabilityType::HttpRoute)).into_iter().find(|c| {
                match &c.config {
                    CapabilityConfig::HttpRoute(r) => {
                        r.method.eq_ignore_ascii_case(&method)
                            && r.path.strip_suffix('*').is_some_and(|p| request.path.starts_with(p))
                    }
                    _ => false,
                }
            })
        })
        .ok_or_else(|| {
            ErrorObject::new(ErrorCode::NotFound, format!("no route {method} {}", request.path))
                .with_data(json!({ "reason": "no_route" }))
        })?;
    if !kernel.apps.is_ready(&cap.app_id) {
        return Err(unavailable("http route", &cap));
    }
    let timeout = Duration::from_millis(kernel.config().ipc.call_timeout_ms);
    let answer = cap.conn.request(HttpRequest::NAME, &request, timeout).await?;
    serde_json::from_value(answer).map_err(|e| {
        ErrorObject::new(
            ErrorCode::InternalError,
            format!("app {:?} answered a malformed http.request result: {e}", cap.app_id),
        )
    })
}

fn unavailable(what: &str, cap: &Capability) -> ErrorObject {
    ErrorObject::new(
        ErrorCode::NotFound,
        format!(
            "{what} {:?} is unavailable: app {:?} is not ready",
            cap.name().unwrap_or_default(),
            cap.app_id
        ),
    )
}

/// Runs a tool call through `before_tool_call`, the providing app, and `after_tool_call`.
pub async fn call_tool(
    kernel: &Kernel,
    caller: &str,
    p: ToolCallParams,
) -> Result<Value, ErrorObject> {
    call_tool_in_run(kernel, caller, p, None).await
}

/// [`call_tool`] on behalf of an agent run (`runId` in the events and in `tool.invoke`).
pub async fn call_tool_in_run(
    kernel: &Kernel,
    caller: &str,
    p: ToolCallParams,
    run_id: Option<String>,
) -> Result<Value, ErrorObject> {
    let mut call = ToolCallPlan::new(kernel, caller, p, run_id)?;
    call.before(kernel).await?;
    let params = to_value(&call.invoke());
    let outcome = call.cap.conn.request(ToolInvoke::NAME, &params, call.timeout).await;
    call.finish(kernel, outcome)
}

/// `tool.call` from `caller`. With no `before_tool_call` hook to wait for, the call is
/// sent at once and its answer handled by whoever resolves it
/// ([`crate::connection::Connection::request_then`]): no task per call. Otherwise it runs
/// in a task, through the hooks.
pub fn tool_call(kernel: Arc<Kernel>, caller: String, p: ToolCallParams, responder: Responder) {
    if kernel.caps.intercepted("before_tool_call") || kernel.hooks.observed("before_tool_call") {
        return super::answer_routed(
            responder,
            async move { call_tool(&kernel, &caller, p).await },
        );
    }
    let call = match ToolCallPlan::new(&kernel, &caller, p, None) {
        Ok(call) => call,
        Err(e) => return responder.reply(Err(e)),
    };
    let (params, timeout, conn) = (call.invoke(), call.timeout, call.cap.conn.clone());
    let then = Box::new(move |outcome| {
        super::answer_now_or_later(responder, call.finish(&kernel, outcome));
    });
    conn.request_then(ToolInvoke::NAME, &params, timeout, then);
}

/// One tool call on its way: the tool found, the `tool.invoke` to send, what the hooks'
/// events need.
struct ToolCallPlan {
    cap: Arc<Capability>,
    name: String,
    caller: String,
    arguments: Value,
    session_key: Option<String>,
    run_id: Option<String>,
    timeout: Duration,
    /// When the call began, for `after_tool_call`'s `durationMs` (read only if that
    /// event has observers when the call begins).
    started: Option<Instant>,
}

impl ToolCallPlan {
    /// Finds the tool, ready; `NOT_FOUND` otherwise.
    fn new(
        kernel: &Kernel,
        caller: &str,
        p: ToolCallParams,
        run_id: Option<String>,
    ) -> Result<Self, ErrorObject> {
        let ToolCallParams { name, arguments, session_key } = p;
        let cap = kernel.caps.by_name(CapabilityType::Tool, &name).ok_or_else(|| {
            ErrorObject::new(ErrorCode::NotFound, format!("no tool named {name:?}"))
                .with_data(json!({ "name": name }))
        })?;
        let CapabilityConfig::Tool(tool) = &cap.config else {
            return Err(ErrorObject::new(
                ErrorCode::InternalError,
                "tool registry holds a non-tool",
            ));
        };
        if !kernel.apps.is_ready(&cap.app_id) {
            return Err(unavailable("tool", &cap));
        }
        let timeout =
            Duration::from_millis(tool.timeout_ms.unwrap_or(kernel.config().ipc.call_timeout_ms));
        Ok(ToolCallPlan {
            cap,
            name,
            caller: caller.to_owned(),
            arguments,
            session_key,
            run_id,
            timeout,
            started: kernel.hooks.observed("after_tool_call").then(Instant::now),
        })
    }

    /// Runs `before_tool_call`: interceptors may change the arguments or block the call;
    /// observers see it. Nothing is built when no hook takes the event.
    async fn before(&mut self, kernel: &Kernel) -> Result<(), ErrorObject> {
        let event = "before_tool_call";
        if !kernel.caps.intercepted(event) && !kernel.hooks.observed(event) {
            return Ok(());
        }
        let arguments = std::mem::take(&mut self.arguments);
        let mut payload =
            json!({ "name": self.name, "arguments": arguments, "callerAppId": self.caller });
        if let Some(key) = &self.session_key {
            payload["sessionKey"] = key.clone().into();
        }
        if let Some(run) = &self.run_id {
            payload["runId"] = run.clone().into();
        }
        let (config, context) = (kernel.config(), self.context());
        let payload = hooks::intercept(kernel.intercept_scope(), &config, event, payload, &context)
            .await
            .map_err(|blocked| blocked.to_error())?;
        self.arguments = payload["arguments"].clone();
        kernel.emit(event, payload, context);
        Ok(())
    }

    /// The hooks' context: `callerAppId`, `sessionKey`, `runId`.
    fn context(&self) -> Map {
        let mut context = Map::new();
        context.insert("callerAppId".into(), self.caller.clone().into());
        if let Some(key) = &self.session_key {
            context.insert("sessionKey".into(), key.clone().into());
        }
        if let Some(run) = &self.run_id {
            context.insert("runId".into(), run.clone().into());
        }
        context
    }

    /// The `tool.invoke` request's params.
    fn invoke(&self) -> ToolInvokeParams {
        ToolInvokeParams {
            call_id: uuid::Uuid::now_v7()
                .hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer())
                .to_owned(),
            name: self.name.clone(),
            arguments: self.arguments.clone(),
            session_key: self.session_key.clone(),
            run_id: self.run_id.clone(),
        }
    }

    /// Checks the app's answer and tells `after_tool_call` observers (if any) how it went.
    fn finish(
        self,
        kernel: &Kernel,
        outcome: Result<Value, ErrorObject>,
    ) -> Result<Value, ErrorObject> {
        let outcome = outcome.and_then(|v| match ToolResult::deserialize(&v) {
            Ok(_) => Ok(v),
            Err(e) => Err(ErrorObject::new(
                ErrorCode::InternalError,
                format!(
                    "app {:?} answered tool.invoke with a malformed result: {e}",
                    self.cap.app_id
                ),
            )),
        });
        if !kernel.hooks.observed("after_tool_call") {
            return outcome;
        }
        let mut after = json!({
            "name": self.name,
            "arguments": self.arguments,
            "callerAppId": self.caller,
            "durationMs": self.started.map_or(0, |t| t.elapsed().as_millis() as u64),
        });
        match &outcome {
            Ok(result) => {
                after["result"] = result.clone();
                after["isError"] = result.get("isError").cloned().unwrap_or(false.into());
            }
            Err(e) => {
                after["error"] = to_value(e);
                after["isError"] = true.into();
            }
        }
        if let Some(key) = &self.session_key {
            after["sessionKey"] = key.clone().into();
        }
        kernel.emit("after_tool_call", after, self.context());
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burrow_protocol::methods::capability::HttpRouteConfig;

    use crate::config::Config;
    use crate::kernel::KernelPaths;
    use crate::token::KernelKey;

    #[tokio::test]
    async fn a_path_not_in_normal_form_matches_no_route_not_even_a_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::sqlite::SqliteStore::open(&dir.path().join("b.db")).unwrap();
        let paths = KernelPaths { socket: dir.path().join("k.sock"), state_dir: dir.path().into() };
        let kernel =
            Kernel::new(Config::default(), KernelKey::from_seed([3; 32]), paths, Arc::new(store));
        let (transport, _peer) = burrow_sdk::transport::Transport::memory_pair();
        let limits = crate::connection::Limits::small(1 << 20);
        let tasks = tokio_util::task::TaskTracker::new();
        let conn = crate::connection::Connection::spawn(1, transport, limits, &tasks, |_| true);
        let route = HttpRouteConfig { method: "GET".into(), path: "/apps/evil/*".into() };
        kernel.caps.insert("evil", &conn, CapabilityConfig::HttpRoute(route)).unwrap();
        let get = |path: &str| HttpRequestParams {
            method: "GET".into(),
            path: path.into(),
            query: Map::new(),
            headers: Map::new(),
            body: None,
        };
        for path in [
            "/apps/evil/../victim/secret",
            "/apps/evil/%2e%2e/victim/secret",
            "/apps/evil//x",
            "/apps/evil/..\\victim",
            "/apps/evil/x%2Fy",
        ] {
            let e = http_request(&kernel, get(path)).await.unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest, "{path}");
            assert_eq!(e.data.unwrap()["reason"], "bad_path", "{path}");
        }
        // A normal path under the prefix finds the route (its app is not ready here).
        let e = http_request(&kernel, get("/apps/evil/x")).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
        assert!(e.message.contains("not ready"), "{}", e.message);
    }
}
