//! [`Settings`]: what the app's configuration subtree `[apps.<id>]` and its command line
//! say, checked. The keys are listed in the crate's documentation (`main.rs`).

use std::fmt;
use std::time::Duration;

use burrow_sdk::app::MAX_ID_LEN;
use burrow_sdk::{Map, Value};

/// `base_url` when none is configured: Ollama's OpenAI-compatible endpoint.
pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:11434/v1";
/// `provider_id` when none is configured.
pub const DEFAULT_PROVIDER_ID: &str = "openai";
/// `timeout_ms` when none is configured.
pub const DEFAULT_TIMEOUT_MS: u64 = 120_000;
/// The keys of `[apps.<id>]` the app reads; others are reported and ignored.
const KEYS: [&str; 8] = [
    "base_url",
    "model",
    "api_key",
    "api_key_env",
    "provider_id",
    "models",
    "timeout_ms",
    "stream",
];

/// What the command line sets; it wins over the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--base-url`.
    pub base_url: Option<String>,
    /// `--provider-id`.
    pub provider_id: Option<String>,
}

/// The settings in force, checked.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    /// The server's API root, without a trailing `/` (e.g. `http://127.0.0.1:11434/v1`).
    pub base_url: String,
    /// The model used when the agent names none (`""` or `"default"`).
    pub model: Option<String>,
    /// The bearer token, if any.
    pub api_key: Option<String>,
    /// The provider id registered with the kernel.
    pub provider_id: String,
    /// The models advertised in the capability.
    pub models: Vec<String>,
    /// Deadline of one HTTP exchange with the server (a streamed answer included).
    pub timeout: Duration,
    /// Whether the server is asked to stream its answers (server-sent events).
    pub stream: bool,
}

/// Never shows the API key.
impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("provider_id", &self.provider_id)
            .field("models", &self.models)
            .field("timeout", &self.timeout)
            .field("stream", &self.stream)
            .finish()
    }
}

impl Settings {
    /// The settings from the app's configuration subtree `own` (as `config.get` answers
    /// it: `null` when there is none) and the command line; `env` reads environment
    /// variables (for `api_key_env`). Unknown keys are logged and ignored; a mistyped or
    /// invalid value is an `Err` naming the key.
    pub fn from_config(
        own: &Value,
        overrides: &Overrides,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, String> {
        let empty = Map::new();
        let table = match own {
            Value::Null => &empty,
            Value::Object(table) => table,
            other => return Err(format!("[apps.<id>] must be a table, not {other}")),
        };
        for key in table.keys().filter(|k| !KEYS.contains(&k.as_str())) {
            tracing::warn!(%key, "unknown key in [apps.<id>], ignored");
        }

        let base_url = match &overrides.base_url {
            Some(url) => url.clone(),
            None => string(table, "base_url")?.unwrap_or_else(|| DEFAULT_BASE_URL.to_owned()),
        };
        let base_url = check_base_url(&base_url)?;

        let model = string(table, "model")?.filter(|m| !m.is_empty());

        let api_key = match string(table, "api_key")?.filter(|k| !k.is_empty()) {
            Some(key) => Some(key),
            None => match string(table, "api_key_env")?.filter(|v| !v.is_empty()) {
                Some(var) => {
                    let key = env(&var).filter(|k| !k.is_empty());
                    if key.is_none() {
                        tracing::warn!(%var, "api_key_env names an unset or empty variable; no API key");
                    }
                    key
                }
                None => None,
            },
        };

        let provider_id = match &overrides.provider_id {
            Some(id) => id.clone(),
            None => string(table, "provider_id")?.unwrap_or_else(|| DEFAULT_PROVIDER_ID.to_owned()),
        };
        check_provider_id(&provider_id)?;

        let models = match table.get("models") {
            None | Some(Value::Null) => model.iter().cloned().collect(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|m| match m {
                    Value::String(m) if !m.is_empty() => Ok(m.clone()),
                    other => Err(format!("models must be a list of model names, not {other}")),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => return Err(format!("models must be a list of strings, not {other}")),
        };

        let timeout_ms = match table.get("timeout_ms") {
            None | Some(Value::Null) => DEFAULT_TIMEOUT_MS,
            Some(value) => value
                .as_u64()
                .filter(|ms| *ms > 0)
                .ok_or_else(|| format!("timeout_ms must be a positive integer, not {value}"))?,
        };

        let stream = match table.get("stream") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(stream)) => *stream,
            Some(other) => return Err(format!("stream must be true or false, not {other}")),
        };

        Ok(Settings {
            base_url,
            model,
            api_key,
            provider_id,
            models,
            timeout: Duration::from_millis(timeout_ms),
            stream,
        })
    }

    /// The URL completions are posted to.
    pub fn endpoint(&self) -> String {
        format!("{}/chat/completions", self.base_url)
    }

    /// The model to ask for when the agent asks for `model`: the configured default for
    /// `""` and `"default"`, else `model` itself; `None` when neither names one.
    pub fn model_for<'a>(&'a self, model: &'a str) -> Option<&'a str> {
        match model.trim() {
            "" | "default" => self.model.as_deref(),
            _ => Some(model),
        }
    }
}

/// The string at `key`, if any; another type is an error.
fn string(table: &Map, key: &str) -> Result<Option<String>, String> {
    match table.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
        Some(other) => Err(format!("{key} must be a string, not {other}")),
    }
}

/// An `http://` or `https://` URL, without its trailing slashes.
fn check_base_url(url: &str) -> Result<String, String> {
    let trimmed = url.trim().trim_end_matches('/');
    let parsed =
        reqwest::Url::parse(trimmed).map_err(|e| format!("base_url {url:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!("base_url {url:?} must be an http:// or https:// URL"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!("base_url {url:?} must not have a query or a fragment"));
    }
    Ok(trimmed.to_owned())
}

/// A provider id the kernel accepts: 1–128 bytes, no whitespace, control characters or `*`.
fn check_provider_id(id: &str) -> Result<(), String> {
    let valid = (1..=MAX_ID_LEN).contains(&id.len())
        && !id.chars().any(|c| c.is_whitespace() || c.is_control() || c == '*');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "provider_id {id:?} must be 1–{MAX_ID_LEN} bytes without whitespace, control characters or `*`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn read(own: Value) -> Result<Settings, String> {
        Settings::from_config(&own, &Overrides::default(), no_env)
    }

    #[test]
    fn defaults_without_a_table() {
        let settings = read(Value::Null).unwrap();
        assert_eq!(settings.base_url, DEFAULT_BASE_URL);
        assert_eq!(settings.endpoint(), "http://127.0.0.1:11434/v1/chat/completions");
        assert_eq!(settings.model, None);
        assert_eq!(settings.api_key, None);
        assert_eq!(settings.provider_id, "openai");
        assert!(settings.models.is_empty());
        assert_eq!(settings.timeout, Duration::from_secs(120));
        assert!(settings.stream);
        assert_eq!(read(json!({})).unwrap(), settings);
    }

    #[test]
    fn reads_every_key() {
        let settings = read(json!({
            "base_url": "https://api.example.com/v1/",
            "model": "gpt-4o-mini",
            "api_key": "sk-test",
            "provider_id": "hosted",
            "models": ["gpt-4o-mini", "gpt-4o"],
            "timeout_ms": 5000,
            "stream": false,
        }))
        .unwrap();
        assert_eq!(settings.endpoint(), "https://api.example.com/v1/chat/completions");
        assert_eq!(settings.model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(settings.api_key.as_deref(), Some("sk-test"));
        assert_eq!(settings.provider_id, "hosted");
        assert_eq!(settings.models, ["gpt-4o-mini", "gpt-4o"]);
        assert_eq!(settings.timeout, Duration::from_secs(5));
        assert!(!settings.stream);
        assert!(!format!("{settings:?}").contains("sk-test"));
    }

    #[test]
    fn models_default_to_the_model() {
        let settings = read(json!({"model": "qwen3:8b"})).unwrap();
        assert_eq!(settings.models, ["qwen3:8b"]);
        assert_eq!(settings.model_for(""), Some("qwen3:8b"));
        assert_eq!(settings.model_for("default"), Some("qwen3:8b"));
        assert_eq!(settings.model_for("llama3"), Some("llama3"));
        assert_eq!(read(Value::Null).unwrap().model_for("default"), None);
    }

    #[test]
    fn the_key_may_come_from_the_environment() {
        let env = |var: &str| (var == "MY_KEY").then(|| "sk-env".to_owned());
        let own = json!({"api_key_env": "MY_KEY"});
        let settings = Settings::from_config(&own, &Overrides::default(), env).unwrap();
        assert_eq!(settings.api_key.as_deref(), Some("sk-env"));
        let unset = json!({"api_key_env": "OTHER"});
        let settings = Settings::from_config(&unset, &Overrides::default(), env).unwrap();
        assert_eq!(settings.api_key, None);
        let both = json!({"api_key": "sk-file", "api_key_env": "MY_KEY"});
        let settings = Settings::from_config(&both, &Overrides::default(), env).unwrap();
        assert_eq!(settings.api_key.as_deref(), Some("sk-file"));
    }

    #[test]
    fn the_command_line_wins() {
        let overrides = Overrides {
            base_url: Some("http://localhost:8080/v1".into()),
            provider_id: Some("local".into()),
        };
        let own = json!({"base_url": "http://elsewhere/v1", "provider_id": "x"});
        let settings = Settings::from_config(&own, &overrides, no_env).unwrap();
        assert_eq!(settings.base_url, "http://localhost:8080/v1");
        assert_eq!(settings.provider_id, "local");
    }

    #[test]
    fn rejects_bad_values() {
        let cases = [
            (json!("x"), "must be a table"),
            (json!({"base_url": 5}), "base_url must be a string"),
            (json!({"base_url": "localhost:8080"}), "must be an http:// or https:// URL"),
            (json!({"base_url": "ftp://host/v1"}), "must be an http:// or https:// URL"),
            (json!({"base_url": "not a url"}), "is not a URL"),
            (json!({"base_url": "http://h/v1?x=1"}), "must not have a query"),
            (json!({"model": ["a"]}), "model must be a string"),
            (json!({"models": "a"}), "models must be a list"),
            (json!({"models": ["a", 1]}), "models must be a list of model names"),
            (json!({"timeout_ms": 0}), "timeout_ms must be a positive integer"),
            (json!({"timeout_ms": "5s"}), "timeout_ms must be a positive integer"),
            (json!({"provider_id": "has space"}), "provider_id"),
            (json!({"provider_id": ""}), "provider_id"),
            (json!({"provider_id": "a*"}), "provider_id"),
            (json!({"stream": "yes"}), "stream must be true or false"),
        ];
        for (own, expected) in cases {
            let why = read(own.clone()).unwrap_err();
            assert!(why.contains(expected), "{own}: {why}");
        }
    }
}
