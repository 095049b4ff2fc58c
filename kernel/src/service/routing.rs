//! Calls routed to the app that provides them: a tool call (`tool.call`, and an agent
//! run's tool calls) through `before_tool_call`, `tool.invoke` (or, for a tool the
//! session's host provides, `tool/execute` on its connection: [`super::host_tools`]) and
//! `after_tool_call`; a registered gateway method (`gateway.invoke`); a request to an
//! app's HTTP route (`http.request`). The app's own errors are passed on as they are.

use std::sync::Arc;
use std::time::{Duration, Instant};

use burrow_protocol::methods::capability::{CapabilityConfig, CapabilityType};
use burrow_protocol::methods::contract::{ToolCallDedupeKey, ToolExecuteParams};
use burrow_protocol::methods::invoke::{
    GatewayInvoke, GatewayInvokeParams, HttpRequest, HttpRequestParams, HttpResponse,
    ToolCallParams, ToolInvoke, ToolInvokeParams, ToolResult,
};
use burrow_protocol::methods::{Method, to_value};
use burrow_protocol::rules::route_path;
use burrow_protocol::{ErrorObject, Map, Value};
use serde::Deserialize;
use serde_json::json;

use super::host_tools::HostTool;
use super::{Caller, ServiceError};
use crate::capabilities::Capability;
use crate::connection::CallCancel;
use crate::hooks;
use crate::kernel::Kernel;
use crate::service::timeline::Step;
use crate::telemetry;

/// Asks the app holding a gateway method to answer a call from `caller`.
pub async fn gateway_request(
    kernel: &Kernel,
    cap: &Capability,
    caller: &Caller,
    params: Value,
) -> Result<Value, ServiceError> {
    if !kernel.apps.is_ready(&cap.app_id) {
        return Err(unavailable("gateway method", cap));
    }
    let method = cap.name().unwrap_or_default();
    let params = GatewayInvokeParams { method, params, caller: caller.name().to_owned() };
    let timeout = Duration::from_millis(kernel.config().ipc.call_timeout_ms);
    Ok(cap.conn.request(GatewayInvoke::NAME, &params, timeout).await?)
}

/// Asks the app holding the `http_route` that matches `request` (exactly, or a route
/// ending in `*` as a prefix) to answer it with `http.request`. A path that is not in
/// normal form ([`route_path::check`], the rule routes are granted by) matches no route:
/// [`ServiceError::BadPath`].
pub async fn http_request(
    kernel: &Kernel,
    request: HttpRequestParams,
) -> Result<HttpResponse, ServiceError> {
    if let Err(why) = route_path::check(&request.path) {
        return Err(ServiceError::BadPath { path: request.path, why: why.to_string() });
    }
    let method = request.method.to_ascii_uppercase();
    let cap = route_for(kernel, &method, &request.path).ok_or_else(|| ServiceError::NoRoute {
        method: method.clone(),
        path: request.path.clone(),
    })?;
    if !kernel.apps.is_ready(&cap.app_id) {
        return Err(unavailable("http route", &cap));
    }
    let timeout = Duration::from_millis(kernel.config().ipc.call_timeout_ms);
    let answer = cap.conn.request(HttpRequest::NAME, &request, timeout).await?;
    serde_json::from_value(answer).map_err(|e| {
        ServiceError::Internal(format!(
            "app {:?} answered a malformed http.request result: {e}",
            cap.app_id
        ))
    })
}

/// The route a request goes to: one of exactly its path, else the first registered
/// prefix route (`/x/*`) that covers it; among routes of the same path, one of its
/// method before one of any method (`*`).
fn route_for(kernel: &Kernel, method: &str, path: &str) -> Option<Arc<Capability>> {
    let exact = |m: &str| kernel.caps.by_name(CapabilityType::HttpRoute, &format!("{m} {path}"));
    if let Some(route) = exact(method).or_else(|| exact("*")) {
        return Some(route);
    }
    let route = |c: &Capability| match &c.config {
        CapabilityConfig::HttpRoute(r) => Some((r.method.clone(), r.path.clone())),
        _ => None,
    };
    let mut prefixes: Vec<(Arc<Capability>, String, String)> = kernel
        .caps
        .list(Some(CapabilityType::HttpRoute))
        .into_iter()
        .filter_map(|c| route(&c).map(|(m, p)| (c, m, p)))
        .filter(|(_, m, p)| {
            (m == method || m == "*") && p.strip_suffix('*').is_some_and(|p| path.starts_with(p))
        })
        .collect();
    prefixes.sort_by_key(|(c, _, _)| c.seq);
    let (first, _, first_path) = prefixes.first()?;
    let own = prefixes.iter().find(|(_, m, p)| m == method && p == first_path);
    Some(own.map_or_else(|| first.clone(), |(c, _, _)| c.clone()))
}

/// A tool call's span, `app` doing its work (`host` for a host's tool).
fn tool_span(name: &str, app: &str) -> Option<opentelemetry::Context> {
    use opentelemetry::KeyValue;
    if !telemetry::enabled() {
        return None;
    }
    let attributes = vec![
        KeyValue::new("gen_ai.operation.name", "execute_tool"),
        KeyValue::new("gen_ai.tool.name", name.to_owned()),
        KeyValue::new("burrow.app", app.to_owned()),
    ];
    telemetry::start(
        format!("execute_tool {name}"),
        opentelemetry::trace::SpanKind::Internal,
        attributes,
    )
}

fn unavailable(what: &'static str, cap: &Capability) -> ServiceError {
    let name = cap.name().unwrap_or_default();
    ServiceError::Unready { what, name, app: cap.app_id.clone() }
}

/// Runs a tool call through `before_tool_call`, the providing app, and `after_tool_call`.
pub async fn call_tool(
    kernel: &Kernel,
    caller: &Caller,
    p: ToolCallParams,
) -> Result<Value, ServiceError> {
    ToolCallPlan::new(kernel, caller, p, None)?.run(kernel).await
}

/// Where a run's tool call comes from: the run, the round (its provider call, from 0)
/// that asked for it, and the call's id as the model gave it.
#[derive(Debug, Clone)]
pub struct InRun {
    /// The run.
    pub run_id: String,
    /// The round.
    pub round: u32,
    /// The model's call id.
    pub call_id: String,
}

/// [`call_tool`] on behalf of an agent run (`runId` in the events and in `tool.invoke`).
/// A run that stops waiting (cancelled) sends the tool's app `$/cancel`.
pub async fn call_tool_in_run(
    kernel: &Kernel,
    caller: &Caller,
    p: ToolCallParams,
    run: InRun,
) -> Result<Value, ServiceError> {
    ToolCallPlan::new(kernel, caller, p, Some(run))?.run(kernel).await
}

/// [`call_tool`] that `cancel` may cancel: the tool's app is sent `$/cancel` for its
/// `tool.invoke`, and its answer (within the deadline) is the call's.
pub async fn call_tool_cancellable(
    kernel: &Kernel,
    caller: &Caller,
    p: ToolCallParams,
    cancel: CallCancel,
) -> Result<Value, ServiceError> {
    let mut call = ToolCallPlan::new(kernel, caller, p, None)?;
    call.cancel = Some(cancel);
    call.run(kernel).await
}

/// The dedupe key of a run's call of `name` with `arguments` (see
/// [`ToolCallDedupeKey`]).
fn dedupe_key(origin: &InRun, name: &str, arguments: &Value) -> ToolCallDedupeKey {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    digest.update(name.as_bytes());
    digest.update([0]);
    // serde_json's maps keep their keys sorted: the same arguments, the same text.
    digest.update(arguments.to_string().as_bytes());
    let call_digest = hex::encode(digest.finalize());
    ToolCallDedupeKey {
        run_id: origin.run_id.clone(),
        round: origin.round,
        call_id: origin.call_id.clone(),
        call_digest,
    }
}

/// Where a tool call goes.
#[derive(Debug)]
pub enum ToolTarget {
    /// The app that registered the tool (`tool.invoke`).
    App(Arc<Capability>),
    /// The host that provides it to the call's session (`tool/execute`).
    Host(HostTool),
}

/// One tool call on its way: the tool found, the `tool.invoke` to send, what the hooks'
/// events need. [`call_tool`] runs it whole; an adapter may send an app's `tool.invoke`
/// itself ([`ToolCallPlan::invoke`], [`ToolCallPlan::target`]) and hand the answer to
/// [`ToolCallPlan::finish`] when no hook waits on `before_tool_call`.
#[derive(Debug)]
pub struct ToolCallPlan {
    target: ToolTarget,
    name: String,
    caller: String,
    arguments: Value,
    session_key: Option<String>,
    /// The run, round and call that asked for it, when a run did.
    run: Option<InRun>,
    timeout: Duration,
    /// Whether `after_tool_call` had observers when the call began (only those see it).
    observed: bool,
    /// What a caller's `$/cancel` cancels.
    cancel: Option<CallCancel>,
    /// When the call began: its latency metric, `after_tool_call`'s `durationMs`.
    began: Instant,
    /// Its span (`execute_tool`), when traces are exported.
    trace: Option<opentelemetry::Context>,
    /// Its step in its run's timeline, when it is a run's.
    step: Option<Step>,
}

impl ToolCallPlan {
    /// Finds the tool: one the session's host provides, else an app's, ready;
    /// `NOT_FOUND` otherwise.
    pub fn new(
        kernel: &Kernel,
        caller: &Caller,
        p: ToolCallParams,
        run: Option<InRun>,
    ) -> Result<Self, ServiceError> {
        let ToolCallParams { name, arguments, session_key } = p;
        let hosted = session_key.as_deref().and_then(|key| kernel.host_tools.find(key, &name));
        // Its step begins once the tool is found: a call refused here is no step of a run.
        let step = || {
            run.as_ref().map(|r| {
                let (timelines, key) = (&kernel.timelines, session_key.as_deref());
                Step::begin(timelines, &r.run_id, key, "tool", name.clone())
            })
        };
        if let Some(tool) = hosted {
            let step = step();
            let trace = tool_span(&name, "host");
            return Ok(ToolCallPlan {
                target: ToolTarget::Host(tool),
                name,
                caller: caller.name().to_owned(),
                arguments,
                session_key,
                run,
                timeout: Duration::from_millis(kernel.config().host.tool_timeout_ms),
                observed: kernel.hooks.observed("after_tool_call"),
                cancel: None,
                began: Instant::now(),
                step,
                trace,
            });
        }
        let Some(cap) = kernel.caps.by_name(CapabilityType::Tool, &name) else {
            return Err(ServiceError::NoTool(name));
        };
        let CapabilityConfig::Tool(tool) = &cap.config else {
            return Err(ServiceError::Internal("the tool registry holds a non-tool".into()));
        };
        if !kernel.apps.is_ready(&cap.app_id) {
            return Err(unavailable("tool", &cap));
        }
        let timeout =
            Duration::from_millis(tool.timeout_ms.unwrap_or(kernel.config().ipc.call_timeout_ms));
        let step = step();
        let trace = tool_span(&name, &cap.app_id);
        Ok(ToolCallPlan {
            target: ToolTarget::App(cap),
            name,
            caller: caller.name().to_owned(),
            arguments,
            session_key,
            run,
            timeout,
            observed: kernel.hooks.observed("after_tool_call"),
            cancel: None,
            began: Instant::now(),
            step,
            trace,
        })
    }

    /// Runs `before_tool_call`: interceptors may change the arguments or block the call;
    /// observers see it. Nothing is built when no hook takes the event.
    pub async fn before(&mut self, kernel: &Kernel) -> Result<(), ServiceError> {
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
        if let Some(run) = &self.run {
            payload["runId"] = run.run_id.clone().into();
        }
        let (config, context) = (kernel.config(), self.context());
        let intercepted =
            hooks::intercept(kernel.intercept_scope(), &config, event, payload, &context);
        // Interceptors' spans are the call's children.
        let cx = self.trace.clone().unwrap_or_else(opentelemetry::Context::current);
        let payload = match opentelemetry::context::FutureExt::with_context(intercepted, cx).await {
            Ok(payload) => payload,
            Err(blocked) => {
                let error = blocked.to_error();
                if let Some(step) = self.step.take() {
                    step.done(error.code.as_str(), Some(error.message.clone()));
                }
                return Err(ServiceError::Passed(error));
            }
        };
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
        if let Some(run) = &self.run {
            context.insert("runId".into(), run.run_id.clone().into());
        }
        context
    }

    /// Where the call goes, and how long it may take.
    pub fn target(&self) -> (&ToolTarget, Duration) {
        (&self.target, self.timeout)
    }

    /// [`ToolCallPlan::before`], then [`ToolCallPlan::send`].
    pub async fn run(mut self, kernel: &Kernel) -> Result<Value, ServiceError> {
        self.before(kernel).await?;
        self.send(kernel).await
    }

    /// Sends the call (after [`ToolCallPlan::before`], if anything may take
    /// `before_tool_call`) and finishes it with the answer. A host's answer
    /// (`{content, is_error}`) becomes a tool result whose content is its text.
    pub async fn send(mut self, kernel: &Kernel) -> Result<Value, ServiceError> {
        let params = self.invoke();
        let outcome = match &self.target {
            ToolTarget::App(cap) => {
                let cancel = self.cancel.as_ref();
                cap.conn.request_cancellable(ToolInvoke::NAME, &params, self.timeout, cancel).await
            }
            ToolTarget::Host(tool) => {
                let ToolInvokeParams { call_id, name, arguments, .. } = params;
                let dedupe_key = self.run.as_ref().map(|r| dedupe_key(r, &name, &arguments));
                let call = ToolExecuteParams { tool_use_id: call_id, name, arguments, dedupe_key };
                let answer = tool.host.execute(call, self.timeout).await;
                answer.map(|a| json!({ "content": a.text(), "isError": a.is_error }))
            }
        };
        self.finish(kernel, outcome)
    }

    /// The `tool.invoke` request's params.
    /// What `after_tool_call` needs is kept; without observers (when the call began),
    /// the arguments move into the request rather than being copied.
    pub fn invoke(&mut self) -> ToolInvokeParams {
        let arguments = match self.observed {
            true => self.arguments.clone(),
            false => std::mem::take(&mut self.arguments),
        };
        ToolInvokeParams {
            call_id: uuid::Uuid::now_v7()
                .hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer())
                .to_owned(),
            name: self.name.clone(),
            arguments,
            session_key: self.session_key.clone(),
            run_id: self.run.as_ref().map(|r| r.run_id.clone()),
            timeout_ms: Some(self.timeout.as_millis() as u64),
            traceparent: telemetry::traceparent(self.trace.as_ref()),
        }
    }

    /// Checks the app's answer and tells `after_tool_call` observers (if any) how it went.
    pub fn finish(
        mut self,
        kernel: &Kernel,
        outcome: Result<Value, ErrorObject>,
    ) -> Result<Value, ServiceError> {
        let outcome = outcome.map_err(ServiceError::Passed).and_then(|v| match tool_result(&v) {
            Ok(()) => Ok(v),
            Err(e) => Err(ServiceError::Internal(match &self.target {
                ToolTarget::App(cap) => {
                    format!(
                        "app {:?} answered tool.invoke with a malformed result: {e}",
                        cap.app_id
                    )
                }
                ToolTarget::Host(_) => format!("a host's tool answered a malformed result: {e}"),
            })),
        });
        let label = match &outcome {
            Ok(v) if v.get("isError") == Some(&Value::Bool(true)) => "is_error",
            Ok(_) => "ok",
            Err(e) => ErrorObject::from(e.clone()).code.as_str(),
        };
        crate::metrics::tool(&self.name).record(label, self.began.elapsed());
        let failed = (label != "ok").then_some(label);
        telemetry::end(self.trace.as_ref(), failed);
        if let Some(step) = self.step.take() {
            let why = outcome.as_ref().err().map(ToString::to_string);
            step.done(label, why);
        }
        // Observers that came after the call began do not see it.
        if !self.observed || !kernel.hooks.observed("after_tool_call") {
            return outcome;
        }
        let mut after = json!({
            "name": self.name,
            "arguments": self.arguments,
            "callerAppId": self.caller,
            "durationMs": self.began.elapsed().as_millis() as u64,
        });
        match &outcome {
            Ok(result) => {
                after["result"] = result.clone();
                after["isError"] = result.get("isError").cloned().unwrap_or(false.into());
            }
            Err(e) => {
                after["error"] = to_value(&ErrorObject::from(e.clone()));
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

/// Whether `v` is a [`ToolResult`]: a map with `content` and, if any, a boolean (or
/// null) `isError` is, at once; anything else is judged by the type itself, without
/// copying `content` in the common case.
fn tool_result(v: &Value) -> Result<(), String> {
    if let Some(map) = v.as_object()
        && map.contains_key("content")
        && map.get("isError").is_none_or(|e| e.is_boolean() || e.is_null())
    {
        return Ok(());
    }
    ToolResult::deserialize(v).map(drop).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burrow_protocol::ErrorCode;
    use burrow_protocol::methods::capability::HttpRouteConfig;

    use crate::config::Config;
    use crate::kernel::KernelPaths;
    use crate::token::KernelKey;

    #[test]
    fn a_runs_call_has_a_dedupe_key_that_names_the_same_call_the_same_way() {
        let origin = InRun { run_id: "run-1".into(), round: 2, call_id: "call-7".into() };
        let key = dedupe_key(&origin, "charge", &json!({"amount": 5, "card": "x"}));
        assert_eq!((key.run_id.as_str(), key.round, key.call_id.as_str()), ("run-1", 2, "call-7"));
        assert_eq!(key.call_digest.len(), 64);
        assert!(key.call_digest.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        // The same call (its keys in any order), the same digest; another call, another.
        let again: Value = serde_json::from_str(r#"{"card": "x", "amount": 5}"#).unwrap();
        assert_eq!(dedupe_key(&origin, "charge", &again), key);
        let other = dedupe_key(&origin, "charge", &json!({"amount": 6, "card": "x"}));
        assert_ne!(other.call_digest, key.call_digest);
        assert_ne!(dedupe_key(&origin, "refund", &again).call_digest, key.call_digest);
        // On the wire: the contract's field names.
        let wire = serde_json::to_value(&key).unwrap();
        for field in ["run_id", "round", "call_id", "call_digest"] {
            assert!(wire.get(field).is_some(), "{field}: {wire}");
        }
    }

    /// A kernel over a store in `dir`, and a connection of an app that never registers
    /// (so what it holds is not ready).
    fn kernel(dir: &std::path::Path) -> (Kernel, crate::connection::Connection) {
        let store = crate::store::sqlite::SqliteStore::open(&dir.join("b.db")).unwrap();
        let paths = KernelPaths { socket: dir.join("k.sock"), state_dir: dir.into() };
        let kernel =
            Kernel::new(Config::default(), KernelKey::from_seed([3; 32]), paths, Arc::new(store));
        let (transport, _peer) = burrow_transport::Transport::memory_pair();
        let limits = crate::connection::Limits::small(1 << 20);
        let tasks = tokio_util::task::TaskTracker::new();
        let conn = crate::connection::Connection::spawn(1, transport, limits, &tasks, |_| true);
        (kernel, conn)
    }

    #[tokio::test]
    async fn a_missing_or_unready_tool_or_method_is_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let (kernel, conn) = kernel(dir.path());
        let me = Caller::new("tester");
        let call = |name: &str| ToolCallParams {
            name: name.into(),
            arguments: json!({}),
            session_key: None,
        };
        let e = call_tool(&kernel, &me, call("nope")).await.unwrap_err();
        assert!(matches!(&e, ServiceError::NoTool(n) if n == "nope"), "{e:?}");
        assert_eq!(ErrorObject::from(e).data.unwrap()["name"], "nope");

        let tool = burrow_protocol::methods::capability::ToolConfig {
            name: "sleepy".into(),
            description: String::new(),
            input_schema: None,
            timeout_ms: None,
        };
        kernel.caps.insert("late", &conn, CapabilityConfig::Tool(tool)).unwrap();
        let e = call_tool(&kernel, &me, call("sleepy")).await.unwrap_err();
        assert!(matches!(&e, ServiceError::Unready { what: "tool", app, .. } if app == "late"));
        assert_eq!(ErrorObject::from(e).code, ErrorCode::NotFound);
        // A run's call refused here is no step of its timeline (not a cut-off one).
        for name in ["nope", "sleepy"] {
            let run = InRun { run_id: "run-1".into(), round: 0, call_id: "c1".into() };
            assert!(ToolCallPlan::new(&kernel, &me, call(name), Some(run)).is_err());
        }
        let p = burrow_protocol::methods::host::RunTimelineParams {
            run_id: Some("run-1".into()),
            session_id: None,
        };
        assert!(kernel.timelines.get(p).unwrap().runs.is_empty(), "no step recorded");

        let method = burrow_protocol::methods::capability::GatewayMethodConfig {
            method: "late.hello".into(),
            description: None,
        };
        let cap =
            kernel.caps.insert("late", &conn, CapabilityConfig::GatewayMethod(method)).unwrap();
        let e = gateway_request(&kernel, &cap, &me, json!({})).await.unwrap_err();
        assert!(matches!(e, ServiceError::Unready { what: "gateway method", .. }), "{e:?}");
    }

    #[tokio::test]
    async fn a_path_not_in_normal_form_matches_no_route_not_even_a_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let (kernel, conn) = kernel(dir.path());
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
            let e = ErrorObject::from(http_request(&kernel, get(path)).await.unwrap_err());
            assert_eq!(e.code, ErrorCode::InvalidRequest, "{path}");
            assert_eq!(e.data.unwrap()["reason"], "bad_path", "{path}");
        }
        // A normal path under the prefix finds the route (its app is not ready here).
        let e = ErrorObject::from(http_request(&kernel, get("/apps/evil/x")).await.unwrap_err());
        assert_eq!(e.code, ErrorCode::NotFound);
        assert!(e.message.contains("not ready"), "{}", e.message);
        let e = http_request(&kernel, get("/apps/other/x")).await.unwrap_err();
        assert!(matches!(e, ServiceError::NoRoute { .. }), "{e:?}");
        assert_eq!(ErrorObject::from(e).data.unwrap()["reason"], "no_route");
    }

    #[tokio::test]
    async fn a_route_of_any_method_takes_what_no_route_of_the_method_takes() {
        let dir = tempfile::tempdir().unwrap();
        let (kernel, conn) = kernel(dir.path());
        let route = |app: &str, method: &str, path: &str| {
            let config = HttpRouteConfig { method: method.into(), path: path.into() };
            kernel.caps.insert(app, &conn, CapabilityConfig::HttpRoute(config)).unwrap();
        };
        route("any", "*", "/apps/any/*");
        route("get", "GET", "/apps/any/x");
        route("post", "POST", "/apps/any/*");
        let app_of =
            |method: &str, path: &str| route_for(&kernel, method, path).map(|c| c.app_id.clone());
        assert_eq!(app_of("GET", "/apps/any/x").as_deref(), Some("get"), "exact path first");
        assert_eq!(app_of("POST", "/apps/any/y").as_deref(), Some("post"), "its method first");
        assert_eq!(app_of("DELETE", "/apps/any/y").as_deref(), Some("any"), "then any method");
        assert_eq!(app_of("GET", "/apps/other/y"), None);
        // Among prefix routes, the first registered wins, whatever its method.
        route("deep", "GET", "/apps/any/deep/*");
        assert_eq!(app_of("GET", "/apps/any/deep/z").as_deref(), Some("any"), "registered first");
    }

    #[test]
    fn a_tool_result_is_judged_as_the_type_judges_it() {
        for good in [
            json!({"content": "x"}),
            json!({"content": {"a": 1}, "isError": true}),
            json!({"content": null, "isError": null}),
            json!({"content": 1, "extra": 2}),
        ] {
            assert!(tool_result(&good).is_ok(), "{good}");
            assert!(ToolResult::deserialize(&good).is_ok(), "{good}");
        }
        for bad in [
            json!({"isError": false}),
            json!({"content": 1, "isError": "yes"}),
            json!("text"),
            json!(null),
        ] {
            assert!(tool_result(&bad).is_err(), "{bad}");
            assert!(ToolResult::deserialize(&bad).is_err(), "{bad}");
        }
    }
}
