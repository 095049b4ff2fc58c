//! The kernel as the backend of its own MCP endpoint (`/mcp`, [`crate::mcp`]): tools
//! from the capability registry, calls through [`routing::call_tool_cancellable`] as
//! `host:mcp` (interceptors and policy apply; a client's cancellation sends the tool's
//! app `$/cancel`), session tools through [`super::call`], `[mcp] expose` read at each
//! request (so it follows reloads), tool changes from the registry.

use std::sync::Arc;

use burrow_protocol::methods::capability::CapabilityType;
use burrow_protocol::methods::invoke::ToolCallParams;
use burrow_protocol::methods::operator::{KernelCapabilitiesParams, KernelCapabilitiesResult};
use burrow_protocol::{ErrorObject, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::connection::CallCancel;
use crate::kernel::Kernel;
use crate::mcp::{Backend, BoxFuture};
use crate::service::{Caller, apps, routing};

/// Who calls, in events and stored messages.
pub const CALLER: &str = "host:mcp";

/// The kernel, for its MCP endpoint.
#[derive(Debug, Clone)]
pub struct KernelMcp {
    /// The kernel.
    pub kernel: Arc<Kernel>,
}

impl Backend for KernelMcp {
    fn tools(&self) -> BoxFuture<'_, Result<KernelCapabilitiesResult, ErrorObject>> {
        let params = KernelCapabilitiesParams { kind: Some(CapabilityType::Tool) };
        Box::pin(async move { Ok(apps::capabilities(&self.kernel, params)) })
    }

    fn call_tool(
        &self,
        name: String,
        arguments: Value,
        cancel: CancellationToken,
    ) -> BoxFuture<'_, Result<Value, ErrorObject>> {
        Box::pin(async move {
            let params = ToolCallParams { name, arguments, session_key: None };
            let handle = CallCancel::default();
            let caller = Caller::new(CALLER);
            let call =
                routing::call_tool_cancellable(&self.kernel, &caller, params, handle.clone());
            tokio::pin!(call);
            let answer = tokio::select! {
                answer = &mut call => answer,
                () = cancel.cancelled() => {
                    // The app is told; its answer (within the call's deadline) ends it.
                    handle.cancel();
                    call.await
                }
            };
            Ok(answer?)
        })
    }

    fn host_call(
        &self,
        method: String,
        params: Value,
    ) -> BoxFuture<'_, Result<Value, ErrorObject>> {
        Box::pin(async move { super::call(&self.kernel, CALLER, &method, params).await })
    }

    fn expose(&self) -> Vec<String> {
        self.kernel.config().mcp.expose.clone()
    }

    fn tool_changes(&self) -> watch::Receiver<u64> {
        self.kernel.caps.tool_changes()
    }
}
