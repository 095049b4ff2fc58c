//! The kernel's policy: `[policy]` for every app and `[apps.<id>.policy]` for one, each
//! able to deny capability types, names (tool names, channel ids, provider ids, gateway
//! methods, route paths) and hook events. Patterns may end in `*`. Read from the
//! configuration in force at each decision, so edits apply live.

use std::collections::HashMap;

use burrow_protocol::manifest::pattern_matches;
use burrow_protocol::methods::capability::CapabilityType;
use serde::Deserialize;

/// One set of deny rules.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rules {
    /// Capability types refused outright.
    pub deny_types: Vec<CapabilityType>,
    /// Capability names (or patterns) refused.
    pub deny_names: Vec<String>,
    /// Hook events (or patterns) that may be neither observed nor intercepted.
    pub deny_events: Vec<String>,
}

/// The whole policy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    global: Rules,
    apps: HashMap<String, Rules>,
}

impl Policy {
    /// Reads `[policy]` and `[apps.<id>.policy]` from a configuration document.
    pub fn from_document(document: &toml::Table) -> Result<Self, String> {
        let global = match document.get("policy") {
            None => Rules::default(),
            Some(v) => v.clone().try_into().map_err(|e| format!("[policy]: {e}"))?,
        };
        let mut apps = HashMap::new();
        if let Some(toml::Value::Table(table)) = document.get("apps") {
            for (id, section) in table {
                if let Some(rules) = section.get("policy") {
                    let rules: Rules =
                        rules.clone().try_into().map_err(|e| format!("[apps.{id}.policy]: {e}"))?;
                    apps.insert(id.clone(), rules);
                }
            }
        }
        Ok(Self { global, apps })
    }

    fn rules<'a>(&'a self, app_id: &str) -> impl Iterator<Item = (&'static str, &'a Rules)> {
        std::iter::once(("[policy]", &self.global))
            .chain(self.apps.get(app_id).map(|r| ("app policy", r)))
    }

    /// Why `app_id` may not hold a capability of `kind` named `name`, if it may not.
    pub fn denies_capability(
        &self,
        app_id: &str,
        kind: CapabilityType,
        name: &str,
    ) -> Option<String> {
        self.rules(app_id).find_map(|(which, rules)| {
            if rules.deny_types.contains(&kind) {
                return Some(format!("{which} denies {kind:?} capabilities"));
            }
            rules
                .deny_names
                .iter()
                .find(|p| pattern_matches(p, name))
                .map(|p| format!("{which} denies {name:?} (rule {p:?})"))
        })
    }

    /// Whether `app_id` may not observe or intercept `event`.
    pub fn denies_event(&self, app_id: &str, event: &str) -> bool {
        self.rules(app_id).any(|(_, r)| r.deny_events.iter().any(|p| pattern_matches(p, event)))
    }

    /// Whether every event matched by the subscription `pattern` is denied to `app_id`.
    pub fn denies_pattern(&self, app_id: &str, pattern: &str) -> bool {
        self.rules(app_id).any(|(_, r)| r.deny_events.iter().any(|p| covers(p, pattern)))
    }
}

/// Whether the grant `grant` covers everything the pattern `requested` can match.
pub fn covers(grant: &str, requested: &str) -> bool {
    match (grant.strip_suffix('*'), requested.strip_suffix('*')) {
        (Some(g), Some(r)) => r.starts_with(g),
        (Some(g), None) => requested.starts_with(g),
        (None, Some(_)) => false,
        (None, None) => grant == requested,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> Result<Policy, String> {
        Policy::from_document(&toml::from_str(text).unwrap())
    }

    #[test]
    fn global_and_per_app_rules() {
        let p = policy(
            "[policy]\ndeny_types = [\"http_route\"]\ndeny_events = [\"message_*\"]\n\
             [apps.weather.policy]\ndeny_names = [\"exec_*\"]\n[apps.other]\nx = 1\n",
        )
        .unwrap();
        assert!(p.denies_capability("any", CapabilityType::HttpRoute, "/apps/any/x").is_some());
        assert!(p.denies_capability("any", CapabilityType::Tool, "exec_sh").is_none());
        assert!(p.denies_capability("weather", CapabilityType::Tool, "exec_sh").is_some());
        assert!(p.denies_event("any", "message_received"));
        assert!(!p.denies_event("any", "session_start"));
        assert!(p.denies_pattern("any", "message_*"));
        assert!(!p.denies_pattern("any", "*"), "partly denied patterns are filtered per event");
    }

    #[test]
    fn bad_rules_are_errors() {
        assert!(policy("[policy]\ndeny_types = [\"rocket\"]\n").is_err());
        assert!(policy("[policy]\nallow = 1\n").is_err());
        assert!(policy("[apps.x.policy]\ndeny_names = 3\n").is_err());
    }

    #[test]
    fn coverage() {
        assert!(covers("*", "anything"));
        assert!(covers("session_*", "session_start"));
        assert!(covers("session_*", "session_s*"));
        assert!(!covers("session_start", "session_*"));
        assert!(!covers("session_*", "*"));
        assert!(covers("a", "a"));
    }
}
