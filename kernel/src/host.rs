//! The host surfaces' adapter: each host method parses its params, calls the service
//! layer ([`crate::service`]) and answers in the host shapes, behind every surface: JSON-RPC over TCP and
//! stdio, REST, and IPC (`session.create`, `comms.send`, `comms.peers`,
//! `session.externalEvent`, `host.call`). [`call`] routes a JSON-RPC method name;
//! [`KernelHost`] is the kernel as a [`crate::surface::Host`].
//!
//! | method | does |
//! |---|---|
//! | `initialize`, `capabilities/get` | the host contract's handshake ([`crate::service::contract`]) |
//! | `session/create`, `turn/start`, `turn/interrupt` | a new session and its first turn, another turn, stopping one: [`turns`], streaming [`events`] |
//! | `comms/send`, `comms/peers`, `session/external_event` | in the contract's shapes: [`comms`] |
//! | `session/stream_open`, `session/stream_close` | a subscription to a session's events on the caller's connection: [`streams`] |
//! | `tools/register` | tools the host runs (`tool/execute` on its connection), offered to the sessions it drives there ([`register_tools`]) |
//! | `session/list`, `session/read`, `session/history` | sessions and transcripts in the host shapes |
//! | `session/external_event` | a durable event in the session's transcript, then a turn |
//! | `comms/send`, `comms/peers` | [`crate::service::comms`] |
//! | `run/wait` | a run's status, waiting up to `timeout_ms` for its end |
//! | anything else | a gateway method an app registered, else `METHOD_NOT_FOUND` |
//!
//! [`mcp::KernelMcp`] is the kernel as the backend of its MCP endpoint (`/mcp`). An app's
//! followed log (`GET /logs/{app_id}`) is [`crate::service::supervisor::Log::events`].

use std::sync::Arc;

use burrow_protocol::methods::capability::CapabilityType;
use burrow_protocol::methods::contract::{ToolsRegisterParams, ToolsRegisterResult};
use burrow_protocol::methods::host::{
    SessionCreateTurn, StreamClose, StreamOpen, ToolsRegister, TurnInterrupt, TurnStart,
};
use burrow_protocol::methods::invoke::{HttpRequestParams, HttpResponse};
use burrow_protocol::methods::operator::LogsParams;
use burrow_protocol::methods::{Method, parse_params, to_value};
use burrow_protocol::{ErrorCode, ErrorObject, Value};
use futures_util::stream::BoxStream;
use serde_json::json;

use crate::handlers;
use crate::kernel::Kernel;
use crate::service::Caller;
use crate::service::sessions::{self};
use crate::surface::{BoxFuture, Host, Link};

pub use crate::config::host::HostSettings;

pub mod comms;
pub mod events;
pub mod mcp;
pub mod streams;
pub mod turns;

/// The host methods of turns ([`turns`]) and subscriptions ([`streams`]), answered by
/// [`call_on`] itself: they use the caller's connection.
pub const LINKED: &[&str] = &[
    SessionCreateTurn::NAME,
    TurnStart::NAME,
    TurnInterrupt::NAME,
    StreamOpen::NAME,
    StreamClose::NAME,
    ToolsRegister::NAME,
];

/// Runs the host method `method` for `caller` (an app id, or `host:rpc` / `host:http`):
/// its shared handler ([`crate::handlers`]), else an app's gateway method, else
/// `METHOD_NOT_FOUND`.
pub async fn call(
    kernel: &Arc<Kernel>,
    caller: &str,
    method: &str,
    params: Value,
) -> Result<Value, ErrorObject> {
    call_on(kernel, caller, method, params, Link::none()).await
}

/// [`call`] from a connection that takes notifications (`link`): a turn streams its
/// steps there ([`turns`]).
pub async fn call_on(
    kernel: &Arc<Kernel>,
    caller: &str,
    method: &str,
    params: Value,
    link: Link,
) -> Result<Value, ErrorObject> {
    let began = std::time::Instant::now();
    let in_flight = crate::metrics::HostCall::begin();
    // A host's `traceparent` (a param of any method): the runs the call starts continue
    // its trace.
    let mut params = params;
    let traceparent = params.as_object_mut().and_then(|p| p.remove("traceparent"));
    let routed = route(kernel, caller, method, params, link);
    let result = match traceparent.as_ref().and_then(Value::as_str) {
        Some(tp) => {
            let cx = crate::telemetry::from_traceparent(Some(tp));
            opentelemetry::context::FutureExt::with_context(routed, cx).await
        }
        None => routed.await,
    };
    drop(in_flight);
    // An unknown method's name is the caller's: it is not a label.
    let known = !matches!(&result, Err(e) if e.code == ErrorCode::MethodNotFound);
    let label = if known { method.to_owned() } else { "unknown".to_owned() };
    let outcome = crate::metrics::outcome(&result);
    metrics::counter!("burrow_host_requests_total", "method" => label.clone(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!("burrow_host_request_duration_seconds", "method" => label)
        .record(began.elapsed().as_secs_f64());
    result
}

/// [`call_on`]'s routing.
async fn route(
    kernel: &Arc<Kernel>,
    caller: &str,
    method: &str,
    params: Value,
    link: Link,
) -> Result<Value, ErrorObject> {
    let caller = Caller::new(caller);
    match method {
        SessionCreateTurn::NAME => {
            return turns::create(kernel, &caller, parse_params(params)?, link).await;
        }
        TurnStart::NAME => {
            let result = turns::start(kernel, &caller, parse_params(params)?, link).await?;
            return Ok(to_value(&result));
        }
        TurnInterrupt::NAME => return turns::interrupt(kernel, parse_params(params)?).await,
        StreamOpen::NAME => return streams::open(kernel, parse_params(params)?, link).await,
        StreamClose::NAME => return Ok(streams::close(parse_params(params)?, &link).await),
        ToolsRegister::NAME => return register_tools(kernel, parse_params(params)?, link),
        _ => {}
    }
    if let Some((handler, _)) = handlers::by_host_name(method) {
        return handler(kernel.clone(), caller, params).await;
    }
    match kernel.caps.by_name(CapabilityType::GatewayMethod, method) {
        Some(cap) => {
            Ok(crate::service::routing::gateway_request(kernel, &cap, &caller, params).await?)
        }
        None => Err(ErrorObject::new(ErrorCode::MethodNotFound, format!("no method {method:?}"))
            .with_data(json!({ "method": method }))),
    }
}

/// `tools/register`: the tools join those the caller's connection provides
/// ([`crate::service::host_tools`]) until it ends. Only a connection the kernel can send
/// requests on (JSON-RPC) can provide tools.
pub fn register_tools(
    kernel: &Arc<Kernel>,
    p: ToolsRegisterParams,
    link: Link,
) -> Result<Value, ErrorObject> {
    if !link.notifies() {
        let why = "tools/register needs a JSON-RPC connection, which tool/execute is sent on";
        return Err(ErrorObject::new(ErrorCode::InvalidRequest, why));
    }
    let host = Arc::new(link.clone());
    let (registered, first) = kernel.host_tools.register(link.id(), host, p.tools)?;
    if first {
        let kernel = kernel.clone();
        tokio::spawn(async move {
            link.closed().await;
            kernel.host_tools.forget(link.id());
        });
    }
    Ok(to_value(&ToolsRegisterResult { registered }))
}

/// The kernel as the host surfaces see it, calling as `caller`.
#[derive(Debug, Clone)]
pub struct KernelHost {
    /// The kernel.
    pub kernel: Arc<Kernel>,
    /// Who calls: `host:rpc`, `host:http`.
    pub caller: String,
}

impl Host for KernelHost {
    fn call(
        &self,
        method: String,
        params: Value,
        link: Link,
    ) -> BoxFuture<'_, Result<Value, ErrorObject>> {
        Box::pin(async move { call_on(&self.kernel, &self.caller, &method, params, link).await })
    }

    fn session_events(
        &self,
        session_id: String,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Value>, ErrorObject>> {
        Box::pin(async move {
            let events = sessions::follow(&self.kernel, &session_id, false).await?;
            let count = sessions::read(&self.kernel, &session_id).await?.row.message_count;
            Ok(events::envelope_stream(&session_id, count, events))
        })
    }

    fn app_log(
        &self,
        app_id: String,
        lines: usize,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Value>, ErrorObject>> {
        use futures_util::StreamExt;
        Box::pin(async move {
            let p = LogsParams { app_id, lines, follow: true };
            let log = crate::service::supervisor::log(&self.kernel, &p).await?;
            Ok(log.events().map(|event| to_value(&event)).boxed())
        })
    }

    fn http_request(
        &self,
        request: HttpRequestParams,
    ) -> BoxFuture<'_, Result<HttpResponse, ErrorObject>> {
        Box::pin(
            async move { Ok(crate::service::routing::http_request(&self.kernel, request).await?) },
        )
    }

    fn metrics(&self) -> String {
        let apps = self.kernel.apps.summaries();
        for state in ["registered", "ready", "leaving"] {
            let n = apps.iter().filter(|a| a.state.as_str() == state).count();
            metrics::gauge!("burrow_apps", "state" => state).set(n as f64);
        }
        let dropped: u64 = self.kernel.hooks.summaries().iter().map(|s| s.dropped).sum();
        metrics::gauge!("burrow_hook_dropped_notifications").set(dropped as f64);
        crate::metrics::render()
    }

    fn mcp(&self) -> Arc<dyn crate::mcp::Backend> {
        Arc::new(mcp::KernelMcp { kernel: self.kernel.clone() })
    }
}
