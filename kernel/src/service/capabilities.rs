//! What an app provides: `capability.register` checks a config
//! ([`burrow_protocol::rules`]), the manifest, the policy, subscriptions and uniqueness,
//! then grants it; `capability.unregister` gives one back.

use burrow_protocol::methods::Ack;
use burrow_protocol::methods::capability::{
    CapabilityConfig, CapabilityType, RegisterCapabilityParams, RegisterCapabilityResult,
    UnregisterCapabilityParams,
};
use burrow_protocol::{Map, rules};
use serde_json::json;

use super::{App, ServiceError};
use crate::capabilities::Capability;
use crate::kernel::Kernel;

fn denied(reason: String) -> Result<RegisterCapabilityResult, ServiceError> {
    Ok(RegisterCapabilityResult {
        capability_id: String::new(),
        granted: false,
        reason: Some(reason),
    })
}

/// Validates, checks manifest, policy, subscription and uniqueness, then grants.
pub fn register(
    kernel: &Kernel,
    app: App<'_>,
    p: RegisterCapabilityParams,
) -> Result<RegisterCapabilityResult, ServiceError> {
    let config = CapabilityConfig::parse(p.kind, p.config)?;
    rules::validate(&config)?;
    if let Some(reason) = rules::refusal(app.manifest, &config) {
        return denied(reason);
    }
    let policy = &kernel.config().policy;
    let app_id = app.id.to_owned();
    if let CapabilityConfig::Hook(hook) = &config {
        if !kernel.hooks.is_subscribed(app.conn.id(), &hook.event) {
            return Err(ServiceError::NotSubscribed {
                message: format!(
                    "subscribe to {:?} with hook.subscribe before intercepting it",
                    hook.event
                ),
                data: json!({ "event": hook.event }),
            });
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
    match kernel.caps.insert(&app_id, app.conn, config) {
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
    kernel: &Kernel,
    app: App<'_>,
    p: UnregisterCapabilityParams,
) -> Result<Ack, ServiceError> {
    let Some(cap) = kernel.caps.get(&p.capability_id) else {
        return Err(ServiceError::NotFound(format!("no capability {:?}", p.capability_id)));
    };
    if cap.conn.id() != app.conn.id() {
        return Err(ServiceError::Forbidden {
            message: format!("capability {:?} belongs to app {:?}", cap.id, cap.app_id),
            data: serde_json::Value::Null,
        });
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

#[cfg(test)]
mod tests {
    use burrow_protocol::methods::capability::{HookConfig, ToolConfig};
    use burrow_protocol::methods::hook::SubscribeParams;

    use super::*;
    use crate::service::testing::{connection, fixture, manifest};

    fn tool(name: &str) -> RegisterCapabilityParams {
        let config = ToolConfig {
            name: name.into(),
            description: String::new(),
            input_schema: None,
            timeout_ms: None,
        };
        RegisterCapabilityParams {
            kind: CapabilityType::Tool,
            config: serde_json::to_value(config).unwrap(),
        }
    }

    #[tokio::test]
    async fn grants_are_judged_then_unique_and_given_back_only_by_their_holder() {
        let f = fixture().await;
        let k = &f.kernel;
        let (conn_a, conn_b) = (connection(1), connection(2));
        let (ma, mb) =
            (manifest("a", &["t_*"], &["before_tool_call"], &[]), manifest("b", &["*"], &[], &[]));
        let a = App { id: "a", manifest: &ma, conn: &conn_a };
        let b = App { id: "b", manifest: &mb, conn: &conn_b };

        let granted = register(k, a, tool("t_one")).unwrap();
        assert!(granted.granted, "{granted:?}");
        let outside = register(k, a, tool("other")).unwrap();
        assert!(outside.reason.unwrap().contains("capabilities.tools"));
        let taken = register(k, b, tool("t_one")).unwrap();
        assert!(!taken.granted && taken.reason.unwrap().contains("already taken by app \"a\""));

        let hook = HookConfig {
            event: "before_tool_call".into(),
            priority: None,
            timeout_ms: None,
            fail_mode: None,
        };
        let hook = RegisterCapabilityParams {
            kind: CapabilityType::Hook,
            config: serde_json::to_value(hook).unwrap(),
        };
        let e = register(k, a, hook.clone()).unwrap_err();
        assert!(
            matches!(&e, ServiceError::NotSubscribed { data, .. } if data["event"] == "before_tool_call"),
            "{e:?}"
        );
        crate::service::hooks::subscribe(
            k,
            a,
            SubscribeParams { events: vec!["before_tool_call".into()] },
        )
        .unwrap();
        assert!(register(k, a, hook).unwrap().granted);

        let id = granted.capability_id;
        let e =
            unregister(k, b, UnregisterCapabilityParams { capability_id: id.clone() }).unwrap_err();
        assert!(matches!(e, ServiceError::Forbidden { .. }), "{e:?}");
        unregister(k, a, UnregisterCapabilityParams { capability_id: id.clone() }).unwrap();
        let e = unregister(k, a, UnregisterCapabilityParams { capability_id: id }).unwrap_err();
        assert!(matches!(e, ServiceError::NotFound(_)), "{e:?}");
        assert!(register(k, b, tool("t_one")).unwrap().granted, "free again");
    }
}
