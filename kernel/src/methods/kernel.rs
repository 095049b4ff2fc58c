//! Kernel introspection, allowed before registering (health checks and the CLI):
//! `kernel.info`, `kernel.apps`, `kernel.capabilities`, `kernel.hooks`.

use burrow_protocol::methods::app::{KernelAppsResult, KernelInfoResult, PROTOCOL_VERSION};
use burrow_protocol::methods::capability::CapabilityType;
use burrow_protocol::methods::parse_params;
use burrow_protocol::{ErrorObject, Value};
use serde_json::json;

use crate::app_actor::AppActorState;
use crate::capabilities::fail_mode;

/// `kernel.capabilities {type?}` → `{capabilities: [{capabilityId, appId, type, config}]}`;
/// `kernel.hooks {}` → `{subscribers: [...], interceptors: [...]}`.
pub use burrow_protocol::methods::table::{
    KERNEL_CAPABILITIES as CAPABILITIES, KERNEL_HOOKS as HOOKS,
};

/// `kernel.info {}`.
pub fn info(state: &AppActorState) -> KernelInfoResult {
    KernelInfoResult {
        version: crate::VERSION.to_owned(),
        protocol_version: PROTOCOL_VERSION.to_owned(),
        started_at: state.kernel.started_at,
        apps: state.kernel.apps.len() as u64,
        sessions: state.kernel.sessions.active() as u64,
        endpoints: state.kernel.endpoints.read().map(|e| e.clone()).unwrap_or_default(),
    }
}

/// `kernel.apps {}`: the registered apps, and (a Burrow addition) `managed`, the apps
/// the kernel runs, with their process state.
pub fn apps(state: &AppActorState) -> Value {
    let mut value = burrow_protocol::methods::to_value(&KernelAppsResult {
        apps: state.kernel.apps.summaries(),
    });
    value["managed"] = burrow_protocol::methods::to_value(&state.kernel.managed());
    value
}

#[derive(serde::Deserialize)]
struct CapabilitiesParams {
    #[serde(default, rename = "type")]
    kind: Option<CapabilityType>,
}

/// `kernel.capabilities {type?}`.
pub fn capabilities(kernel: &crate::kernel::Kernel, params: Value) -> Result<Value, ErrorObject> {
    let p: CapabilitiesParams = parse_params(params)?;
    let caps: Vec<Value> = kernel.caps.list(p.kind).iter().map(|c| c.summary()).collect();
    Ok(json!({ "capabilities": caps }))
}

/// `kernel.hooks {}`: every subscriber (with its dropped-event count) and interceptor.
pub fn hooks(state: &AppActorState) -> Value {
    let interceptors: Vec<Value> = state
        .kernel
        .caps
        .list(Some(CapabilityType::Hook))
        .iter()
        .filter_map(|c| {
            let h = c.as_hook()?;
            Some(json!({
                "capabilityId": c.id,
                "appId": c.app_id,
                "event": h.event,
                "priority": h.priority.unwrap_or(0),
                "timeoutMs": h.timeout_ms,
                "failMode": fail_mode(h),
            }))
        })
        .collect();
    json!({ "subscribers": state.kernel.hooks.summaries(), "interceptors": interceptors })
}
