//! `capability.register` and `capability.unregister` (PROTOCOL.md §5).

use burrow_protocol::methods::Ack;
use burrow_protocol::methods::capability::{
    CapabilityConfig, CapabilityType, RegisterCapabilityParams, RegisterCapabilityResult,
    UnregisterCapabilityParams,
};
use burrow_protocol::{ErrorCode, ErrorObject, Map, rules};
use serde_json::json;

use crate::app_actor::AppActorState;
use crate::capabilities::Capability;

fn denied(reason: String) -> Result<RegisterCapabilityResult, ErrorObject> {
    Ok(RegisterCapabilityResult {
        capability_id: String::new(),
        granted: false,
        reason: Some(reason),
    })
}

/// Validates, checks manifest, policy, subscription and uniqueness, then grants.
pub fn register(
    state: &mut AppActorState,
    p: RegisterCapabilityParams,
) -> Result<RegisterCapabilityResult, ErrorObject> {
    let Some(app) = state.app.as_ref() else {
        return Err(super::not_registered("capability.register"));
    };
    let config = CapabilityConfig::parse(p.kind, p.config)?;
    rules::validate(&config)?;
    if let Some(reason) = rules::refusal(&app.manifest, &config) {
        return denied(reason);
    }
    let kernel = &state.kernel;
    let policy = &kernel.config().policy;
    let app_id = app.app_id.clone();
    if let CapabilityConfig::Hook(hook) = &config {
        if !kernel.hooks.is_subscribed(state.conn.id(), &hook.event) {
            return Err(ErrorObject::new(
                ErrorCode::HookNotSubscribed,
                format!("subscribe to {:?} with hook.subscribe before intercepting it", hook.event),
            )
            .with_data(json!({ "event": hook.event })));
        }
        if policy.denies_event(&app_id, &hook.event) {
            return denied(format!("policy denies the event {:?}", hook.event));
        }
        if kernel.caps.intercepts(&app_id, &hook.event) {
            return denied(format!("app already intercepts {:?}", hook.event));
        }
    }
    let name = match &config {
        CapabilityConfig::Hook(h) => h.event.clone(),
        CapabilityConfig::HttpRoute(r) => r.path.clone(),
        other => Capability::unique_name_of(other).unwrap_or_default(),
    };
    if let Some(reason) = policy.denies_capability(&app_id, config.kind(), &name) {
        return denied(reason);
    }
    match kernel.caps.insert(&app_id, &state.conn, config) {
        Err(holder) => denied(format!("{name:?} is already taken by app {holder:?}")),
        Ok(cap) => {
            tracing::info!(app = %app_id, capability = %cap.id, kind = ?cap.config.kind(), %name, "capability granted");
            if cap.config.kind() == CapabilityType::Tool {
                kernel.known_tools.registered(&name);
            }
            kernel.emit("capability_registered", event_payload(&cap), app_context(&app_id));
            Ok(RegisterCapabilityResult {
                capability_id: cap.id.clone(),
                granted: true,
                reason: None,
            })
        }
    }
}

/// Gives back a capability the app holds.
pub fn unregister(
    state: &mut AppActorState,
    p: UnregisterCapabilityParams,
) -> Result<Ack, ErrorObject> {
    let kernel = &state.kernel;
    let Some(cap) = kernel.caps.get(&p.capability_id) else {
        return Err(ErrorObject::new(
            ErrorCode::NotFound,
            format!("no capability {:?}", p.capability_id),
        ));
    };
    if cap.conn.id() != state.conn.id() {
        return Err(ErrorObject::new(
            ErrorCode::Forbidden,
            format!("capability {:?} belongs to app {:?}", cap.id, cap.app_id),
        ));
    }
    if let Some(cap) = kernel.caps.remove(&cap.id) {
        if let (CapabilityType::Tool, Some(name)) = (cap.config.kind(), cap.name()) {
            kernel.known_tools.withdrawn(&name);
        }
        kernel.emit("capability_unregistered", event_payload(&cap), app_context(&cap.app_id));
    }
    Ok(Ack::OK)
}

/// Payload of `capability_registered` / `capability_unregistered`.
pub fn event_payload(cap: &Capability) -> serde_json::Value {
    json!({
        "appId": cap.app_id,
        "capabilityId": cap.id,
        "type": cap.config.kind(),
        "name": Capability::unique_name_of(&cap.config)
            .or_else(|| cap.as_hook().map(|h| h.event.clone())),
    })
}

/// Context of events about an app.
pub fn app_context(app_id: &str) -> Map {
    let mut context = Map::new();
    context.insert("appId".into(), app_id.into());
    context
}
