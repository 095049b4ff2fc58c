//! The IPC adapter of routed calls: `tool.call` and an app's gateway methods, over
//! [`crate::service::routing`]. Each answer is another app's, so it may be as large as a
//! frame ([`super::answer_routed`]); a slow app delays only its own callers.

use std::sync::Arc;

use burrow_protocol::methods::Method;
use burrow_protocol::methods::invoke::{ToolCallParams, ToolInvoke};
use burrow_protocol::{ErrorObject, Value};

use crate::capabilities::Capability;
use crate::connection::CallCancel;
use crate::connection::Responder;
use crate::kernel::Kernel;
use crate::service::Caller;
use crate::service::routing::{self, ToolCallPlan, ToolTarget};

/// A call to a registered gateway method from `caller`, answered from a task.
pub fn gateway_call(
    kernel: Arc<Kernel>,
    cap: Arc<Capability>,
    caller: Caller,
    params: Value,
    responder: Responder,
) {
    super::answer_routed(responder, async move {
        Ok(routing::gateway_request(&kernel, &cap, &caller, params).await?)
    });
}

/// `tool.call` from `caller`. With no `before_tool_call` hook to wait for, the call is
/// sent at once and its answer handled by whoever resolves it
/// ([`crate::connection::Connection::request_then`]): no task per call. Otherwise it runs
/// in a task, through the hooks.
pub fn tool_call(kernel: Arc<Kernel>, caller: Caller, p: ToolCallParams, responder: Responder) {
    // The caller's `$/cancel` of its call is passed on to the tool's app.
    let (mut responder, cancel) = (responder, CallCancel::default());
    responder.cancellable(cancel.clone());
    if kernel.caps.intercepted("before_tool_call") || kernel.hooks.observed("before_tool_call") {
        return super::answer_routed(responder, async move {
            Ok(routing::call_tool_cancellable(&kernel, &caller, p, cancel).await?)
        });
    }
    let mut call = match ToolCallPlan::new(&kernel, &caller, p, None) {
        Ok(call) => call,
        Err(e) => return responder.reply(Err(e.into())),
    };
    let (conn, timeout) = match call.target() {
        (ToolTarget::App(cap), timeout) => (cap.conn.clone(), timeout),
        (ToolTarget::Host(_), _) => {
            return super::answer_routed(responder, async move { Ok(call.send(&kernel).await?) });
        }
    };
    let params = call.invoke();
    let then = Box::new(move |outcome| {
        let answer = call.finish(&kernel, outcome).map_err(ErrorObject::from);
        super::answer_now_or_later(responder, answer);
    });
    let id = conn.request_then(ToolInvoke::NAME, &params, timeout, then);
    cancel.sent(&conn, id);
}
