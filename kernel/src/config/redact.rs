//! Secrets out of a configuration shown to operators (`kernel.config`, the dashboard):
//! a string whose key looks like a secret's becomes [`REDACTED`].
//!
//! A key looks like a secret's when one of its words (split at `_`, `-`, `.` and
//! lower-to-upper case changes) is `token`, `secret`, `password`, `passwd`, `key`,
//! `apikey`, `credential(s)`, `auth` or `authorization`: `api_key`, `OPENAI_API_KEY`,
//! `apiKey`, `bearer_token`, `client-secret`. Every string under such a key is replaced,
//! in nested tables and arrays too; numbers and flags are not secrets and stay
//! (`token_ttl_ms = 3600000`). A secret written where no key says so (inside `args`, a URL with a
//! password) is not recognised: keep such values in the environment of the app
//! (`[apps.<id>.run] env`), whose keys are checked.

use serde_json::Value;

/// What a secret's value is shown as.
pub const REDACTED: &str = "[redacted]";

/// The words of a key that make its value a secret.
const SECRET_WORDS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "key",
    "apikey",
    "credential",
    "credentials",
    "secrets",
    "tokens",
    "passwords",
    "keys",
    "auth",
    "authorization",
];

/// Whether `key` names a secret (see the module's doc).
pub fn is_secret_key(key: &str) -> bool {
    words(key).any(|w| SECRET_WORDS.contains(&w.as_str()))
}

/// `key`'s words, lower case: split at `_`, `-`, `.`, spaces, and where a lower-case
/// letter or digit is followed by an upper-case one (`apiKey` → `api`, `key`).
fn words(key: &str) -> impl Iterator<Item = String> + '_ {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut prev_lower = false;
    for c in key.chars() {
        if matches!(c, '_' | '-' | '.' | ' ') {
            out.push(std::mem::take(&mut word));
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower {
            out.push(std::mem::take(&mut word));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        word.extend(c.to_lowercase());
    }
    out.push(word);
    out.into_iter().filter(|w| !w.is_empty())
}

/// `value` with every secret replaced by [`REDACTED`], and the dotted paths of those
/// replaced, in order.
pub fn redacted(value: &Value) -> (Value, Vec<String>) {
    let mut paths = Vec::new();
    let out = walk(value, "", false, &mut paths);
    (out, paths)
}

fn walk(value: &Value, at: &str, secret: bool, paths: &mut Vec<String>) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, sub)| {
                    let below = if at.is_empty() { key.clone() } else { format!("{at}.{key}") };
                    (key.clone(), walk(sub, &below, secret || is_secret_key(key), paths))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| walk(item, &format!("{at}.{i}"), secret, paths))
                .collect(),
        ),
        Value::String(_) if secret => {
            paths.push(at.to_owned());
            Value::from(REDACTED)
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_keys_by_their_words() {
        for key in [
            "api_key",
            "OPENAI_API_KEY",
            "apiKey",
            "bearer_token",
            "client-secret",
            "password",
            "Authorization",
            "credentials",
            "key",
            "secrets",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in ["keep_alive", "monkey", "max_keyspace", "tokenizer", "author", "hotkeys", ""] {
            assert!(!is_secret_key(key), "{key}");
        }
    }

    #[test]
    fn strings_under_secret_keys_are_replaced_and_named() {
        let config = json!({
            "ipc": {"token_ttl_ms": 3_600_000, "max_frame_bytes": 1024},
            "apps": {
                "openai": {
                    "api_key": "sk-live",
                    "run": {"command": "openai-provider", "env": {"OPENAI_API_KEY": "sk-env", "HOME": "/h"}},
                    "headers": {"Authorization": ["Bearer a", "Bearer b"]},
                },
                "x": {"password": null, "secrets": {"inner": "s3", "n": 1}},
                "mcp": {"servers": [{"url": "http://h", "bearer_token": "t"}]},
            },
        });
        let (out, paths) = redacted(&config);
        assert_eq!(out["ipc"]["token_ttl_ms"], 3_600_000);
        assert_eq!(out["apps"]["openai"]["api_key"], REDACTED);
        assert_eq!(out["apps"]["openai"]["run"]["env"]["OPENAI_API_KEY"], REDACTED);
        assert_eq!(out["apps"]["openai"]["run"]["env"]["HOME"], "/h");
        assert_eq!(out["apps"]["openai"]["headers"]["Authorization"], json!([REDACTED, REDACTED]));
        assert_eq!(out["apps"]["x"]["password"], Value::Null);
        assert_eq!(out["apps"]["x"]["secrets"], json!({"inner": REDACTED, "n": 1}));
        assert_eq!(out["apps"]["mcp"]["servers"][0]["url"], "http://h");
        assert_eq!(
            paths,
            [
                "apps.mcp.servers.0.bearer_token",
                "apps.openai.api_key",
                "apps.openai.headers.Authorization.0",
                "apps.openai.headers.Authorization.1",
                "apps.openai.run.env.OPENAI_API_KEY",
                "apps.x.secrets.inner",
            ]
        );
        assert!(!out.to_string().contains("sk-"));
    }
}
