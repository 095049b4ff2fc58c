//! Capabilities (PROTOCOL.md §5): `capability.register`, `capability.unregister` and the
//! config of each of the six capability types.

use serde::{Deserialize, Serialize};

use super::{Ack, methods, parse_params};
use crate::{ErrorObject, Value};

methods! {
    /// Ask for a capability; refusal is `granted: false`, not an error.
    CapabilityRegister = "capability.register": RegisterCapabilityParams => RegisterCapabilityResult;
    /// Give a capability back.
    CapabilityUnregister = "capability.unregister": UnregisterCapabilityParams => Ack;
}

/// The six capability types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapabilityType {
    /// A tool agents and apps can call.
    Tool,
    /// A channel that delivers replies.
    Channel,
    /// Interception of one hook event.
    Hook,
    /// A method under the app's `<id>.` namespace.
    GatewayMethod,
    /// An HTTP route under `/apps/<id>/`.
    HttpRoute,
    /// A model provider.
    Provider,
}

/// Params of `capability.register`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterCapabilityParams {
    /// Which kind of capability.
    #[serde(rename = "type")]
    pub kind: CapabilityType,
    /// Its config; shape depends on `type` (see [`CapabilityConfig`]).
    pub config: Value,
}

/// Result of `capability.register`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterCapabilityResult {
    /// Id to unregister it with.
    pub capability_id: String,
    /// Whether it was granted.
    pub granted: bool,
    /// Why not, when not granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Params of `capability.unregister`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnregisterCapabilityParams {
    /// The id from `capability.register`.
    pub capability_id: String,
}

/// `tool` config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolConfig {
    /// `[a-zA-Z0-9_-]{1,64}`, unique kernel-wide.
    pub name: String,
    /// What the tool does, for models and humans.
    pub description: String,
    /// JSON Schema of the arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    /// Per-call deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// `channel` config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelConfig {
    /// Unique kernel-wide.
    pub channel_id: String,
    /// For humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Also take replies as they are produced: `channel.delta` notifications before the
    /// `channel.send` of the whole reply.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub streaming: bool,
}

/// What an interceptor's silence means.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// Continue as if it answered `continue` (default).
    #[default]
    Open,
    /// Block the action.
    Closed,
}

/// `hook` config: intercept one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookConfig {
    /// The event to intercept.
    pub event: String,
    /// Lower runs first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// How long the kernel waits for `hook.result`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// What silence means.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_mode: Option<FailMode>,
}

/// `gateway_method` config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayMethodConfig {
    /// Under the app's own `<id>.` namespace.
    pub method: String,
    /// For humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `http_route` config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpRouteConfig {
    /// HTTP method, e.g. `GET`.
    pub method: String,
    /// Under `/apps/<id>/`.
    pub path: String,
}

/// `provider` config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderConfig {
    /// Unique kernel-wide.
    pub provider_id: String,
    /// Model names it serves.
    #[serde(default)]
    pub models: Vec<String>,
}

/// A capability config parsed according to its type.
#[derive(Debug, Clone, PartialEq)]
pub enum CapabilityConfig {
    /// `tool`.
    Tool(ToolConfig),
    /// `channel`.
    Channel(ChannelConfig),
    /// `hook`.
    Hook(HookConfig),
    /// `gateway_method`.
    GatewayMethod(GatewayMethodConfig),
    /// `http_route`.
    HttpRoute(HttpRouteConfig),
    /// `provider`.
    Provider(ProviderConfig),
}

impl CapabilityConfig {
    /// Parses `config` for `kind`; errors name the field as `config.<field>`.
    pub fn parse(kind: CapabilityType, config: Value) -> Result<Self, ErrorObject> {
        let parsed = match kind {
            CapabilityType::Tool => parse_params(config).map(Self::Tool),
            CapabilityType::Channel => parse_params(config).map(Self::Channel),
            CapabilityType::Hook => parse_params(config).map(Self::Hook),
            CapabilityType::GatewayMethod => parse_params(config).map(Self::GatewayMethod),
            CapabilityType::HttpRoute => parse_params(config).map(Self::HttpRoute),
            CapabilityType::Provider => parse_params(config).map(Self::Provider),
        };
        parsed.map_err(|mut e| {
            if let Some(Value::Object(data)) = e.data.as_mut()
                && let Some(Value::String(field)) = data.get_mut("field")
            {
                *field = match field.as_str() {
                    "params" => "config".to_owned(),
                    f => format!("config.{f}"),
                };
            }
            e
        })
    }

    /// The type of this config.
    pub fn kind(&self) -> CapabilityType {
        match self {
            Self::Tool(_) => CapabilityType::Tool,
            Self::Channel(_) => CapabilityType::Channel,
            Self::Hook(_) => CapabilityType::Hook,
            Self::GatewayMethod(_) => CapabilityType::GatewayMethod,
            Self::HttpRoute(_) => CapabilityType::HttpRoute,
            Self::Provider(_) => CapabilityType::Provider,
        }
    }
}

/// Whether `name` is a valid tool name: `[a-zA-Z0-9_-]{1,64}`.
pub fn is_valid_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn config_errors_are_prefixed() {
        let e =
            CapabilityConfig::parse(CapabilityType::Tool, json!({"description": "d"})).unwrap_err();
        assert_eq!(e.data.unwrap()["field"], "config.name");
        let e = CapabilityConfig::parse(CapabilityType::Hook, json!(3)).unwrap_err();
        assert_eq!(e.data.unwrap()["field"], "config");
        let ok = CapabilityConfig::parse(
            CapabilityType::Hook,
            json!({"event": "before_tool_call", "failMode": "closed"}),
        )
        .unwrap();
        assert_eq!(ok.kind(), CapabilityType::Hook);
    }

    #[test]
    fn tool_names() {
        assert!(is_valid_tool_name("read_file-2"));
        assert!(!is_valid_tool_name(""));
        assert!(!is_valid_tool_name("a.b"));
        assert!(!is_valid_tool_name(&"a".repeat(65)));
    }
}
