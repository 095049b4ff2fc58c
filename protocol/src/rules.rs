//! The rules both ends of the protocol apply, so that an app tested against the SDK's
//! fake kernel meets the same decisions on the real one: which capability configs are
//! well-formed ([`validate`]) and which a manifest grants ([`refusal`]), which events an
//! interceptor may hold and what it may change ([`INTERCEPTABLE`]), the normal form of
//! HTTP route paths ([`route_path`]), W3C `traceparent`s ([`traceparent`]), and the limits
//! of ids and session keys.

use crate::ErrorObject;
use crate::manifest::{Manifest, pattern_matches};
use crate::methods::capability::{CapabilityConfig, is_valid_tool_name};

pub mod route_path;
pub mod traceparent;

/// The longest session key, in characters.
pub const MAX_SESSION_KEY_CHARS: usize = 256;

/// Checks a session key given as `field`: 1 to [`MAX_SESSION_KEY_CHARS`] characters.
pub fn check_session_key(key: &str, field: &str) -> Result<(), ErrorObject> {
    if key.is_empty() || key.chars().count() > MAX_SESSION_KEY_CHARS {
        return Err(ErrorObject::invalid_params(
            field,
            format!("a session key is 1 to {MAX_SESSION_KEY_CHARS} characters"),
        ));
    }
    Ok(())
}

/// Events an interceptor may hold (`docs/protocol.md`, Hooks), with the payload fields a `modify`
/// may change.
pub const INTERCEPTABLE: &[(&str, &[&str])] = &[
    ("message_received", &["content", "metadata"]),
    ("message_sending", &["content", "metadata"]),
    ("before_agent_start", &["input", "systemPrompt"]),
    ("before_tool_call", &["arguments"]),
    ("tool_result_persist", &["result"]),
];

/// The fields of `event`'s payload a `modify` may change; `None` if not interceptable.
pub fn modifiable_fields(event: &str) -> Option<&'static [&'static str]> {
    INTERCEPTABLE.iter().find(|(e, _)| *e == event).map(|(_, f)| *f)
}

/// Whether an interceptor may hold `event`.
pub fn is_interceptable(event: &str) -> bool {
    modifiable_fields(event).is_some()
}

/// The name the manifest and policy judge: for routes the path, for hooks the event.
pub fn grant_name(config: &CapabilityConfig) -> &str {
    match config {
        CapabilityConfig::Tool(c) => &c.name,
        CapabilityConfig::Channel(c) => &c.channel_id,
        CapabilityConfig::Provider(c) => &c.provider_id,
        CapabilityConfig::GatewayMethod(c) => &c.method,
        CapabilityConfig::HttpRoute(c) => &c.path,
        CapabilityConfig::Hook(c) => &c.event,
    }
}

/// Checks the shape of a parsed config beyond its types; errors are `INVALID_PARAMS`.
pub fn validate(config: &CapabilityConfig) -> Result<(), ErrorObject> {
    let bad =
        |field: &str, msg: String| Err(ErrorObject::invalid_params(format!("config.{field}"), msg));
    match config {
        CapabilityConfig::Tool(c) if !is_valid_tool_name(&c.name) => {
            bad("name", format!("tool name {:?} must match [a-zA-Z0-9_-]{{1,64}}", c.name))
        }
        CapabilityConfig::Tool(c) if c.timeout_ms == Some(0) => {
            bad("timeoutMs", "must be positive".into())
        }
        CapabilityConfig::Channel(c) if !is_id(&c.channel_id) => {
            bad("channelId", format!("{:?} must be 1–128 printable characters", c.channel_id))
        }
        CapabilityConfig::Provider(c) if !is_id(&c.provider_id) => {
            bad("providerId", format!("{:?} must be 1–128 printable characters", c.provider_id))
        }
        CapabilityConfig::GatewayMethod(c) if !c.method.contains('.') || !is_id(&c.method) => {
            bad("method", format!("{:?} must be `<appId>.<name>`", c.method))
        }
        CapabilityConfig::HttpRoute(c) if !is_http_method(&c.method) => {
            bad("method", format!("{:?} is not an HTTP method", c.method))
        }
        CapabilityConfig::HttpRoute(c)
            if !c.path.starts_with('/') || c.path.chars().any(char::is_whitespace) =>
        {
            bad("path", format!("{:?} must be an absolute path", c.path))
        }
        CapabilityConfig::Hook(c) if c.event.is_empty() || c.event.contains('*') => {
            bad("event", "must name one event".into())
        }
        CapabilityConfig::Hook(c) if c.timeout_ms == Some(0) => {
            bad("timeoutMs", "must be positive".into())
        }
        _ => Ok(()),
    }
}

fn is_id(s: &str) -> bool {
    (1..=128).contains(&s.len()) && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn is_http_method(m: &str) -> bool {
    matches!(m, "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS" | "*")
}

/// Why the manifest or the namespace rules refuse `config` to `manifest`'s app, if so.
pub fn refusal(manifest: &Manifest, config: &CapabilityConfig) -> Option<String> {
    let id = &manifest.id;
    let caps = &manifest.capabilities;
    let (grants, field): (&[String], &str) = match config {
        CapabilityConfig::Tool(_) => (&caps.tools, "tools"),
        CapabilityConfig::Channel(_) => (&caps.channels, "channels"),
        CapabilityConfig::Provider(_) => (&caps.providers, "providers"),
        CapabilityConfig::GatewayMethod(_) => (&caps.gateway_methods, "gatewayMethods"),
        CapabilityConfig::HttpRoute(_) => (&caps.http_routes, "httpRoutes"),
        CapabilityConfig::Hook(_) => (&caps.hooks.intercept, "hooks.intercept"),
    };
    match config {
        CapabilityConfig::GatewayMethod(c) => {
            let namespace = crate::methods::table::family(&c.method);
            if crate::methods::table::is_reserved_family(namespace) {
                return Some(format!("the {namespace} method family is reserved for the kernel"));
            }
            if namespace != id {
                return Some(format!("gateway methods of app {id:?} must be named {id}.<name>"));
            }
        }
        CapabilityConfig::HttpRoute(c) => {
            if let Err(why) = route_path::check(&c.path) {
                return Some(format!("route path {:?} is not in normal form: {why}", c.path));
            }
            if !c.path.starts_with(&format!("/apps/{id}/")) {
                return Some(format!("routes of app {id:?} must be under /apps/{id}/"));
            }
        }
        CapabilityConfig::Hook(c) if modifiable_fields(&c.event).is_none() => {
            return Some(format!("event {:?} cannot be intercepted", c.event));
        }
        _ => {}
    }
    let name = grant_name(config);
    if !grants.iter().any(|g| pattern_matches(g, name)) {
        return Some(format!("{name:?} is not in the manifest's capabilities.{field}"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::capability::{
        GatewayMethodConfig, HookConfig, HttpRouteConfig, ToolConfig,
    };

    fn tool(name: &str) -> CapabilityConfig {
        CapabilityConfig::Tool(ToolConfig {
            name: name.into(),
            description: "d".into(),
            input_schema: None,
            timeout_ms: None,
        })
    }

    #[test]
    fn manifest_and_namespace_refusals() {
        let mut m = Manifest::new("weather", "1.0.0");
        m.capabilities.tools = vec!["weather_*".into()];
        m.capabilities.gateway_methods = vec!["*".into()];
        m.capabilities.http_routes = vec!["/apps/weather/*".into()];
        assert!(refusal(&m, &tool("weather_now")).is_none());
        assert!(refusal(&m, &tool("rm")).unwrap().contains("capabilities.tools"));
        let gw = |method: &str| {
            CapabilityConfig::GatewayMethod(GatewayMethodConfig {
                method: method.into(),
                description: None,
            })
        };
        assert!(refusal(&m, &gw("weather.now")).is_none());
        assert!(refusal(&m, &gw("other.now")).unwrap().contains("must be named weather."));
        // Every family the kernel answers on any surface, and only those.
        for (id, method) in [
            ("kernel", "kernel.info"),
            ("peers", "peers.trust"),
            ("supervisor", "supervisor.logs"),
            ("host", "host.call"),
            ("rpc", "rpc.authenticate"),
            ("run", "run.wait"),
            ("session", "session.create"),
            ("burrow", "burrow.x"),
        ] {
            let mut k = Manifest::new(id, "1.0.0");
            k.capabilities.gateway_methods = vec!["*".into()];
            let why = refusal(&k, &gw(method)).expect(method);
            assert!(why.contains(&format!("the {id} method family is reserved")), "{why}");
        }
        let mut free = Manifest::new("peersx", "1.0.0");
        free.capabilities.gateway_methods = vec!["*".into()];
        assert!(refusal(&free, &gw("peersx.trust")).is_none());
        let route = |path: &str| {
            CapabilityConfig::HttpRoute(HttpRouteConfig { method: "GET".into(), path: path.into() })
        };
        assert!(refusal(&m, &route("/apps/weather/x")).is_none());
        assert!(refusal(&m, &route("/apps/other/x")).is_some());
        let hook = |event: &str| {
            CapabilityConfig::Hook(HookConfig {
                event: event.into(),
                priority: None,
                timeout_ms: None,
                fail_mode: None,
            })
        };
        assert!(refusal(&m, &hook("app_ready")).unwrap().contains("cannot be intercepted"));
        assert!(refusal(&m, &hook("before_tool_call")).unwrap().contains("hooks.intercept"));
    }

    #[test]
    fn routes_are_granted_in_normal_form_only() {
        let mut m = Manifest::new("evil", "1.0.0");
        m.capabilities.http_routes = vec!["/apps/evil/*".into()];
        let route = |path: &str| {
            CapabilityConfig::HttpRoute(HttpRouteConfig { method: "GET".into(), path: path.into() })
        };
        for good in ["/apps/evil/x", "/apps/evil/", "/apps/evil/*", "/apps/evil/a%20b/..."] {
            assert_eq!(refusal(&m, &route(good)), None, "{good}");
        }
        for (bad, why) in [
            ("/apps/evil/../victim/secret", "dot segment"),
            ("/apps/evil/./x", "dot segment"),
            ("/apps/evil/..;/victim/secret", "dot segment"),
            ("/apps/evil/%2e%2e/victim/secret", "encodes '.'"),
            ("/apps/evil/%2E%2E/victim/secret", "encodes '.'"),
            ("/apps/evil/.%2e/victim/secret", "encodes '.'"),
            ("/apps/evil/..%2Fvictim", "encoded separator"),
            ("/apps/evil/..%5cvictim", "encoded separator"),
            ("/apps/evil/..\\victim\\secret", "backslash"),
            ("/apps/evil//x", "empty segment"),
            ("/apps/evil/../*", "dot segment"),
            ("/apps/evil/a%3ab", "lower case"),
            ("/apps/evil/x?y", "percent-encoded"),
        ] {
            let reason = refusal(&m, &route(bad)).unwrap_or_default();
            assert!(
                reason.contains("not in normal form") && reason.contains(why),
                "{bad}: {reason}"
            );
        }
        // The normal-form rule comes before the prefix rule, which still holds.
        assert!(refusal(&m, &route("/apps/victim/x")).unwrap().contains("must be under"));
    }

    #[test]
    fn validation_names_fields() {
        let e = validate(&tool("bad name")).unwrap_err();
        assert_eq!(e.data.unwrap()["field"], "config.name");
        assert!(validate(&tool("ok_name")).is_ok());
    }

    #[test]
    fn session_keys_are_one_to_256_characters() {
        assert!(check_session_key("k", "sessionKey").is_ok());
        assert!(check_session_key(&"é".repeat(256), "sessionKey").is_ok());
        let e = check_session_key(&"k".repeat(257), "sessionKey").unwrap_err();
        assert_eq!(e.data.unwrap()["field"], "sessionKey");
        assert!(check_session_key("", "session_id").is_err());
        assert!(is_interceptable("before_tool_call") && !is_interceptable("app_ready"));
    }
}
