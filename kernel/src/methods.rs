//! The one dispatch point for requests from clients, and one module per family of
//! methods. Each family parses typed params and applies them to the AppActor's state.

use burrow_protocol::methods::app::{
    AppHeartbeat, AppReady, AppRegister, AppShutdown, KernelApps, KernelInfo,
};
use burrow_protocol::methods::{Method, parse_params, to_value};
use burrow_protocol::{ErrorCode, ErrorObject, Notification, Request, Value};
use ractor::ActorRef;

use crate::app_actor::{AppActorState, AppMsg};
use crate::connection::Responder;

mod app;
mod kernel;

/// Parses params as `M::Params`, applies `f`, serializes the result.
fn typed<M: Method>(
    params: Value,
    f: impl FnOnce(M::Params) -> Result<M::Result, ErrorObject>,
) -> Result<Value, ErrorObject> {
    parse_params::<M::Params>(params)
        .and_then(f)
        .map(|r| to_value(&r))
}

/// Routes one request to its family, which answers through `responder` (now, or later
/// for methods that wait, like `app.shutdown`).
pub fn dispatch(
    state: &mut AppActorState,
    myself: &ActorRef<AppMsg>,
    req: Request,
    responder: Responder,
) {
    let Request { method, params, .. } = req;
    let outcome = match method.as_str() {
        KernelInfo::NAME => typed::<KernelInfo>(params, |_| Ok(kernel::info(state))),
        KernelApps::NAME => typed::<KernelApps>(params, |_| Ok(kernel::apps(state))),
        AppRegister::NAME => typed::<AppRegister>(params, |p| app::register(state, myself, p)),
        _ if state.app.is_none() => Err(ErrorObject::new(
            ErrorCode::AppNotRegistered,
            format!("call app.register before {method}"),
        )),
        AppHeartbeat::NAME => typed::<AppHeartbeat>(params, |_| Ok(app::heartbeat())),
        AppReady::NAME => typed::<AppReady>(params, |_| Ok(app::ready(state))),
        AppShutdown::NAME => match parse_params(params) {
            Ok(p) => return app::shutdown(state, myself, p, responder),
            Err(e) => Err(e),
        },
        _ => Err(
            ErrorObject::new(ErrorCode::MethodNotFound, format!("no method {method:?}"))
                .with_data(serde_json::json!({ "method": method })),
        ),
    };
    responder.reply(outcome);
}

/// Handles a notification from a client. None needs an answer; unknown ones are logged.
pub fn notification(state: &mut AppActorState, n: Notification) {
    match n.method.as_str() {
        // Nothing the kernel does for an app yet can be cancelled.
        burrow_protocol::methods::Cancel::NAME => {}
        _ => {
            tracing::debug!(app = state.name(), method = %n.method, "unknown notification ignored")
        }
    }
}
