//! The app manifest sent with `app.register` (PROTOCOL.md §4) and its validation.

use serde::{Deserialize, Serialize};

use crate::ErrorObject;

/// Longest app id: `[a-z][a-z0-9-]{0,63}`.
pub const MAX_APP_ID_LEN: usize = 64;

/// What an app is and what it may ask for.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// `[a-z][a-z0-9-]{0,63}`; unique among live apps.
    pub id: String,
    /// A semver version.
    pub version: String,
    /// For humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The capabilities the app may request; nothing outside them is granted.
    #[serde(default)]
    pub capabilities: ManifestCapabilities,
    /// Configuration paths the app may read beyond its own subtree.
    #[serde(default)]
    pub config: ManifestConfig,
}

/// The `capabilities` member of a manifest. Each list holds names or trailing-`*` patterns.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestCapabilities {
    /// Tool names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    /// Channel ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    /// Provider ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<String>,
    /// Gateway method names, e.g. `weather.*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateway_methods: Vec<String>,
    /// HTTP route paths, e.g. `/apps/weather/*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_routes: Vec<String>,
    /// Hook events to observe and intercept.
    #[serde(default)]
    pub hooks: HookGrants,
}

/// The hook events an app may subscribe to and intercept.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookGrants {
    /// Events (or patterns) it may observe.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscribe: Vec<String>,
    /// Events (or patterns) it may intercept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intercept: Vec<String>,
}

/// The `config` member of a manifest.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestConfig {
    /// Dotted paths it may read with `config.get`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read: Vec<String>,
}

/// Whether `id` is a valid app id: `[a-z][a-z0-9-]{0,63}`.
pub fn is_valid_app_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some('a'..='z'))
        && id.len() <= MAX_APP_ID_LEN
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-'))
}

/// Whether `name` matches `pattern`, where a trailing `*` matches any suffix.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

impl Manifest {
    /// A manifest with an id and a version and nothing else.
    pub fn new(id: impl Into<String>, version: impl Into<String>) -> Self {
        Self { id: id.into(), version: version.into(), ..Self::default() }
    }

    /// Checks the manifest; the error names the offending field under `manifest.`.
    pub fn validate(&self) -> Result<(), ErrorObject> {
        if !is_valid_app_id(&self.id) {
            return Err(ErrorObject::invalid_params(
                "manifest.id",
                format!("app id {:?} must match [a-z][a-z0-9-]{{0,63}}", self.id),
            ));
        }
        if let Err(e) = semver::Version::parse(&self.version) {
            return Err(ErrorObject::invalid_params(
                "manifest.version",
                format!("version {:?} is not semver: {e}", self.version),
            ));
        }
        let caps = &self.capabilities;
        let lists = [
            ("tools", &caps.tools),
            ("channels", &caps.channels),
            ("providers", &caps.providers),
            ("gatewayMethods", &caps.gateway_methods),
            ("httpRoutes", &caps.http_routes),
            ("hooks.subscribe", &caps.hooks.subscribe),
            ("hooks.intercept", &caps.hooks.intercept),
        ];
        for (name, list) in lists {
            check_patterns(&format!("manifest.capabilities.{name}"), list)?;
        }
        check_patterns("manifest.config.read", &self.config.read)
    }
}

fn check_patterns(field: &str, list: &[String]) -> Result<(), ErrorObject> {
    for (i, p) in list.iter().enumerate() {
        let star_inside = p.trim_end_matches('*').contains('*') || p.ends_with("**");
        if p.is_empty() || p.len() > 256 || star_inside || p.chars().any(char::is_whitespace) {
            return Err(ErrorObject::invalid_params(
                format!("{field}[{i}]"),
                format!("{p:?} is not a name or a trailing-`*` pattern"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    fn field_of(e: ErrorObject) -> String {
        assert_eq!(e.code, ErrorCode::InvalidParams);
        e.data.unwrap()["field"].as_str().unwrap().to_owned()
    }

    #[test]
    fn app_ids() {
        for ok in ["a", "weather", "a-1", &"a".repeat(64)] {
            assert!(is_valid_app_id(ok), "{ok}");
        }
        for bad in ["", "1a", "-a", "Weather", "a_b", "a.b", &"a".repeat(65), "é"] {
            assert!(!is_valid_app_id(bad), "{bad}");
        }
    }

    #[test]
    fn validation_names_the_field() {
        let mut m = Manifest::new("Bad", "1.0.0");
        assert_eq!(field_of(m.validate().unwrap_err()), "manifest.id");
        m.id = "good".into();
        m.version = "one".into();
        assert_eq!(field_of(m.validate().unwrap_err()), "manifest.version");
        m.version = "1.2.3-beta.1".into();
        assert!(m.validate().is_ok());
        m.capabilities.hooks.subscribe = vec!["session_*".into(), "a*b".into()];
        assert_eq!(field_of(m.validate().unwrap_err()), "manifest.capabilities.hooks.subscribe[1]");
    }

    #[test]
    fn patterns() {
        assert!(pattern_matches("session_*", "session_start"));
        assert!(pattern_matches("*", "anything"));
        assert!(pattern_matches("tool", "tool"));
        assert!(!pattern_matches("tool", "tools"));
        assert!(!pattern_matches("weather.*", "weatherx"));
    }
}
