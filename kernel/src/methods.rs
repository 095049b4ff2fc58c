//! The IPC adapter: the one dispatch point for requests from apps and clients on the
//! socket. A method answered by one service call runs its shared handler
//! ([`crate::handlers`]); the rest (lifecycle, what an app registers and reads, streams)
//! are answered here from the connection's state, each by its service; work that waits
//! runs in a task holding the request's [`Responder`].

use burrow_protocol::methods::app::{AppHeartbeat, AppReady, AppRegister, AppShutdown};
use burrow_protocol::methods::capability::{
    CapabilityRegister, CapabilityType, CapabilityUnregister,
};
use burrow_protocol::methods::config::{ConfigGet, ConfigWatch};
use burrow_protocol::methods::hook::{HookResult, HookSubscribe, HookUnsubscribe};
use burrow_protocol::methods::invoke::ToolCall;
use burrow_protocol::methods::operator::SupervisorLogs;
use burrow_protocol::methods::session::{AgentQueue, MessageDispatch};
use burrow_protocol::methods::{Cancel, CancelParams, Method, parse_params, table, to_value};
use burrow_protocol::{ErrorCode, ErrorObject, Notification, Request, Value};
use std::sync::Arc;

use ractor::ActorRef;

use crate::app_actor::{AppActorState, AppMsg};
use crate::connection::Responder;
use crate::handlers;
use crate::kernel::Kernel;
use crate::service::{self, Caller, ServiceError};

mod app;
mod comms;
mod config;
pub(crate) mod route;
pub(crate) mod session;
mod supervisor;

/// Runs a shared handler ([`crate::handlers`]) for the method of table row `row`. A
/// small answer that is ready at once goes out at once, in order with the frames around
/// it (the introspection methods); others come from the handler's task, a large one
/// once a large-answer slot is free.
fn run(
    handler: &'static handlers::Handler,
    row: &table::MethodInfo,
    kernel: Arc<Kernel>,
    caller: Caller,
    params: Value,
    responder: Responder,
) {
    let mut call = handler(kernel, caller, params);
    if row.answer == table::AnswerSize::Large {
        return answer_large(responder, call);
    }
    // Polled once here; if it must wait, its task polls it again at once, so no wake-up
    // is missed.
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match call.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(outcome) => responder.reply(outcome),
        std::task::Poll::Pending => drop(tokio::spawn(async move { responder.reply(call.await) })),
    }
}

/// Parses params as `M::Params`, applies `f`, serializes the result.
fn typed<M: Method>(
    params: Value,
    f: impl FnOnce(M::Params) -> Result<M::Result, ErrorObject>,
) -> Result<Value, ErrorObject> {
    parse_params::<M::Params>(params).and_then(f).map(|r| to_value(&r))
}

/// [`typed`] for a service: its error mapped to the wire.
fn service_now<M: Method>(
    params: Value,
    f: impl FnOnce(M::Params) -> Result<M::Result, ServiceError>,
) -> Result<Value, ErrorObject> {
    typed::<M>(params, |p| f(p).map_err(ErrorObject::from))
}

/// The registered app `state` speaks for, as the per-app services see it.
fn as_app<'a>(state: &'a AppActorState, method: &str) -> Result<service::App<'a>, ErrorObject> {
    let app = state.app.as_ref().ok_or_else(|| not_registered(method))?;
    Ok(service::App { id: &app.app_id, manifest: &app.manifest, conn: &state.conn })
}

/// Answers from a task with what `f` gives, started once a large-answer slot is free
/// and the writer queue has room ([`Responder::prepare_large`]): for answers that may be
/// as large as a frame.
pub(crate) fn answer_large<F>(responder: Responder, f: F)
where
    F: Future<Output = Result<Value, ErrorObject>> + Send + 'static,
{
    let mut responder = responder;
    tokio::spawn(async move {
        responder.prepare_large().await;
        responder.reply(f.await);
    });
}

/// Answers from a task with another app's answer (a routed call's): at once when the
/// writer queue takes it within its bounds, else once a large-answer slot is free and
/// the queue has room. The call itself runs at once (the in-flight bound counts those),
/// only its answer may wait its turn.
pub(crate) fn answer_routed<F>(responder: Responder, f: F)
where
    F: Future<Output = Result<Value, ErrorObject>> + Send + 'static,
{
    tokio::spawn(async move { answer_now_or_later(responder, f.await) });
}

/// Answers with another app's answer at once when the writer queue takes it within its
/// bounds, else from a task once a large-answer slot is free and the queue has room.
pub(crate) fn answer_now_or_later(responder: Responder, outcome: Result<Value, ErrorObject>) {
    let mut responder = responder;
    let Some(outcome) = responder.try_reply_now(outcome) else { return };
    tokio::spawn(async move {
        responder.prepare_large().await;
        responder.reply(outcome);
    });
}

/// Answers a method the table marks `off_actor` (`method` is its row), from `caller`, a
/// registered app: it needs only the kernel. Called by the connection's reader, or by the
/// actor for what the reader left to it. Holds an in-flight slot for long-running ones.
pub(crate) fn off_actor(
    kernel: &Arc<Kernel>,
    caller: &str,
    method: &table::MethodInfo,
    name: &str,
    params: Value,
    responder: Responder,
) {
    let mut responder = responder;
    if method.long_running
        && let Err(e) = responder.hold_in_flight()
    {
        return responder.reply(Err(e));
    }
    match name {
        AppHeartbeat::NAME => {
            // The connection's reader noted the app is alive.
            responder.reply(typed::<AppHeartbeat>(params, |_| Ok(app::heartbeat())))
        }
        ToolCall::NAME => match parse_params(params) {
            Ok(p) => route::tool_call(kernel.clone(), Caller::new(caller), p, responder),
            Err(e) => responder.reply(Err(e)),
        },
        MessageDispatch::NAME | AgentQueue::NAME => {
            session::take(kernel, caller, name, params, responder)
        }
        _ => match handlers::by_ipc_name(name) {
            Some(handler) => {
                run(handler, method, kernel.clone(), Caller::new(caller), params, responder)
            }
            None => responder.reply(Err(no_method(name))),
        },
    }
}

/// `APP_NOT_REGISTERED` for `method`.
pub fn not_registered(method: &str) -> ErrorObject {
    ErrorObject::new(ErrorCode::AppNotRegistered, format!("call app.register before {method}"))
}

/// Routes one request to its family, which answers through `responder` (now, or later
/// for methods that wait).
pub fn dispatch(
    state: &mut AppActorState,
    myself: &ActorRef<AppMsg>,
    req: Request,
    responder: Responder,
) {
    let Request { method, params, .. } = req;
    let mut responder = responder;
    // Only the table's names reach the kernel's own families; any other is an app's.
    let own = responder.method().filter(|m| m.to_kernel() && m.shape != table::Shape::Notification);
    let Some(own) = own else {
        return gateway(state, method, params, responder);
    };
    if !own.before_register && state.app.is_none() {
        return responder.reply(Err(not_registered(&method)));
    }
    if own.off_actor {
        let caller = state.name().to_owned();
        return off_actor(&state.kernel, &caller, own, &method, params, responder);
    }
    if own.long_running
        && let Err(e) = responder.hold_in_flight()
    {
        return responder.reply(Err(e));
    }
    let kernel = state.kernel.clone();
    if let Some(handler) = handlers::by_ipc_name(&method) {
        return run(handler, own, kernel, Caller::new(state.name()), params, responder);
    }
    let outcome = match method.as_str() {
        SupervisorLogs::NAME => return supervisor::stream_logs(state, params, responder),
        AppRegister::NAME => typed::<AppRegister>(params, |p| app::register(state, myself, p)),
        AppReady::NAME => typed::<AppReady>(params, |_| Ok(app::ready(state))),
        AppShutdown::NAME => match parse_params(params) {
            Ok(p) => return app::shutdown(state, myself, p, responder),
            Err(e) => Err(e),
        },
        CapabilityRegister::NAME => as_app(state, &method).and_then(|app| {
            service_now::<CapabilityRegister>(params, |p| {
                service::capabilities::register(&kernel, app, p)
            })
        }),
        CapabilityUnregister::NAME => as_app(state, &method).and_then(|app| {
            service_now::<CapabilityUnregister>(params, |p| {
                service::capabilities::unregister(&kernel, app, p)
            })
        }),
        HookSubscribe::NAME => as_app(state, &method).and_then(|app| {
            service_now::<HookSubscribe>(params, |p| service::hooks::subscribe(&kernel, app, p))
        }),
        HookUnsubscribe::NAME => as_app(state, &method).and_then(|app| {
            service_now::<HookUnsubscribe>(params, |p| {
                Ok(service::hooks::unsubscribe(&kernel, app, p))
            })
        }),
        HookResult::NAME => as_app(state, &method).and_then(|app| {
            service_now::<HookResult>(params, |p| service::hooks::result(&kernel, app, p))
        }),
        ConfigGet::NAME => as_app(state, &method).and_then(|app| {
            service_now::<ConfigGet>(params, |p| service::config::get(&kernel, app, p))
        }),
        ConfigWatch::NAME => match parse_params(params) {
            Ok(p) => return config::watch(state, p, responder),
            Err(e) => Err(e),
        },
        _ if comms::handles(&method) => return comms::dispatch(state, &method, params, responder),
        _ => Err(no_method(&method)),
    };
    responder.reply(outcome);
}

/// `METHOD_NOT_FOUND` for `method`.
fn no_method(method: &str) -> ErrorObject {
    ErrorObject::new(ErrorCode::MethodNotFound, format!("no method {method:?}"))
        .with_data(serde_json::json!({ "method": method }))
}

/// A name that is not the kernel's: an app's gateway method (after registration), which
/// holds an in-flight permit while the app answers, or `METHOD_NOT_FOUND`.
fn gateway(state: &mut AppActorState, method: String, params: Value, responder: Responder) {
    let mut responder = responder;
    let cap = state.kernel.caps.by_name(CapabilityType::GatewayMethod, &method);
    let outcome = match cap {
        None => Err(no_method(&method)),
        Some(_) if state.app.is_none() => Err(not_registered(&method)),
        Some(cap) => match responder.hold_in_flight() {
            Ok(()) => {
                let caller = crate::service::Caller::new(state.name());
                return route::gateway_call(state.kernel.clone(), cap, caller, params, responder);
            }
            Err(e) => Err(e),
        },
    };
    responder.reply(outcome);
}

/// Handles a notification from a client. None needs an answer; unknown ones are logged.
pub fn notification(state: &mut AppActorState, n: Notification) {
    match n.method.as_str() {
        Cancel::NAME => match parse_params::<CancelParams>(n.params) {
            Ok(p) => {
                config::cancel(state, &p.id);
                state.conn.cancel_call(&p.id);
            }
            Err(e) => tracing::debug!(app = state.name(), error = %e, "malformed $/cancel ignored"),
        },
        _ => {
            tracing::debug!(app = state.name(), method = %n.method, "unknown notification ignored")
        }
    }
}
