//! [`Router`]: serves one connection's incoming traffic with the app's handlers.

use std::sync::Arc;

use burrow_protocol::methods::app::{AppShutdown, ShutdownParams};
use burrow_protocol::methods::hook::HookEvent;
use burrow_protocol::methods::invoke::{
    ChannelDelta, ChannelSend, ChannelStreamEnd, GatewayInvoke, ProviderComplete, ToolInvoke,
};
use burrow_protocol::methods::{Ack, Method, parse_params, to_value};
use burrow_protocol::{ErrorObject, Notification, Request, Value};
use tokio::sync::mpsc;

use super::hooks::Permits;
use super::{Context, Handlers};
use crate::Client;
use crate::peer::{BoxFuture, Service, method_not_found};

/// Routes the kernel's requests and notifications on one connection.
pub(super) struct Router {
    handlers: Arc<Handlers>,
    /// Told when the kernel sends `app.shutdown`.
    kernel_shutdown: mpsc::Sender<ShutdownParams>,
    /// Bounds on this connection's hook tasks.
    permits: Permits,
}

impl Router {
    pub(super) fn new(
        handlers: Arc<Handlers>,
        kernel_shutdown: mpsc::Sender<ShutdownParams>,
    ) -> Self {
        Self { handlers, kernel_shutdown, permits: Permits::default() }
    }
}

impl Service for Router {
    fn request(
        &self,
        request: Request,
        client: Client,
    ) -> BoxFuture<std::result::Result<Value, ErrorObject>> {
        let tools = &self.handlers.tools;
        let agents = &self.handlers.agents;
        match request.method.as_str() {
            AppShutdown::NAME => {
                // Runs on the reader task, so the run loop hears of it before it can see
                // the connection close.
                let params = parse_params::<ShutdownParams>(request.params).unwrap_or_default();
                let _ = self.kernel_shutdown.try_send(params);
                return Box::pin(std::future::ready(Ok(to_value(&Ack::OK))));
            }
            ToolInvoke::NAME if tools.has_tools() => {
                return tools.invoke_tool(request.params, client);
            }
            GatewayInvoke::NAME if tools.has_gateway_methods() => {
                return tools.invoke_gateway(request.params, client);
            }
            ProviderComplete::NAME if agents.has_providers() => {
                return agents.complete(request.params, client, request.id);
            }
            ChannelSend::NAME if agents.has_channels() => {
                return agents.send(request.params, client);
            }
            _ => {}
        }
        let Some(handler) = self.handlers.requests.get(&request.method) else {
            return Box::pin(std::future::ready(Err(method_not_found(&request.method))));
        };
        let cx = Context { client, method: request.method, request_id: Some(request.id) };
        handler(request.params, cx)
    }

    fn notification(&self, notification: Notification, client: Client) -> BoxFuture<()> {
        if notification.method == HookEvent::NAME && !self.handlers.hooks.is_empty() {
            return self.handlers.hooks.deliver(notification.params, client, &self.permits);
        }
        let streamed = [ChannelDelta::NAME, ChannelStreamEnd::NAME];
        if streamed.contains(&notification.method.as_str())
            && self.handlers.agents.has_streaming_channels()
        {
            let (method, params) = (notification.method, notification.params);
            return self.handlers.agents.stream_event(&method, params, client);
        }
        let Some(handler) = self.handlers.notifications.get(&notification.method) else {
            tracing::debug!(method = %notification.method, "notification without a handler");
            return Box::pin(async {});
        };
        let cx = Context { client, method: notification.method, request_id: None };
        handler(notification.params, cx)
    }
}
