//! The bridge's configuration: its subtree of the kernel's (`[apps.<id>]`) and, when it
//! names one, an `.mcp.json`-shaped file (`mcp_json = "PATH"`: `{"mcpServers": {name:
//! {command, args, env, cwd} | {type: "http", url, headers}}}`, the shape Claude
//! Desktop and Claude Code use). A server of the subtree wins over one of the file with
//! the same name.
//!
//! ```toml
//! [apps.mcp.servers.fs]
//! command = "npx"
//! args = ["-y", "@modelcontextprotocol/server-filesystem", "/srv/data"]
//! env = { TOKEN = "${FS_TOKEN}" }     # ${VAR}: from the bridge's environment
//! tools = ["read_*", "list_*"]        # optional allowlist; `deny` likewise
//! [apps.mcp.servers.search]
//! url = "http://127.0.0.1:9000/mcp"   # streamable HTTP
//! headers = { Authorization = "Bearer ${SEARCH_KEY}" }
//! ```
//!
//! `init_timeout_ms` (30 000) bounds a server's `initialize` and `tools/list`.
//! `roots = ["/some/dir", ...]` makes the bridge advertise the MCP `roots` capability
//! with those directories; without it, it does not (servers such as `server-filesystem`
//! replace their allowed directories with a client's roots).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

/// What one server is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// A process speaking MCP on its stdin/stdout.
    Stdio {
        /// The program.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Variables added to the bridge's environment (values expanded).
        env: BTreeMap<String, String>,
        /// Its working directory (default: the bridge's).
        cwd: Option<PathBuf>,
    },
    /// A streamable-HTTP endpoint.
    Http {
        /// The endpoint.
        url: String,
        /// Headers sent with every request (values expanded).
        headers: BTreeMap<String, String>,
    },
}

/// One configured server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// Its name: the prefix of its tools' Burrow names (`<name>__<tool>`).
    pub name: String,
    /// How to reach it.
    pub transport: Transport,
    /// Tool-name patterns to offer (`*` wildcards); empty: all.
    pub tools: Vec<String>,
    /// Tool-name patterns never to offer.
    pub deny: Vec<String>,
}

impl ServerSpec {
    /// Whether the server's tool `name` is offered.
    pub fn offers(&self, name: &str) -> bool {
        let matches = |p: &String| burrow_sdk::protocol::manifest::pattern_matches(p, name);
        (self.tools.is_empty() || self.tools.iter().any(matches)) && !self.deny.iter().any(matches)
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The servers, by name.
    pub servers: BTreeMap<String, ServerSpec>,
    /// Roots to advertise; `None`: the capability is not advertised.
    pub roots: Option<Vec<PathBuf>>,
    /// How long a server may take to answer `initialize`, and `tools/list`.
    pub init_timeout: std::time::Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config { servers: BTreeMap::new(), roots: None, init_timeout: DEFAULT_INIT_TIMEOUT }
    }
}

/// [`Config::init_timeout`] when the configuration sets none.
pub const DEFAULT_INIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A server as either source writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    cwd: Option<PathBuf>,
    /// `.mcp.json`'s `type`: `stdio` (default), `http` or `streamable-http`.
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    tools: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
}

/// The subtree as the kernel's configuration holds it.
#[derive(Debug, Default, Deserialize)]
struct RawConfig {
    #[serde(default)]
    servers: BTreeMap<String, RawServer>,
    #[serde(default)]
    mcp_json: Option<PathBuf>,
    #[serde(default)]
    roots: Option<Vec<PathBuf>>,
    #[serde(default)]
    init_timeout_ms: Option<u64>,
}

/// An `.mcp.json` file.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct McpJson {
    #[serde(default)]
    mcp_servers: BTreeMap<String, RawServer>,
}

/// Reads the configuration from the bridge's subtree (`own`, a JSON object or null),
/// reading the `.mcp.json` it names (relative to `base`) and expanding `${VAR}` with
/// `env`. Every mistake is an error naming where it is.
pub fn read(
    own: &Value,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, String> {
    let raw: RawConfig = match own {
        Value::Null => RawConfig::default(),
        other => {
            serde_json::from_value(other.clone()).map_err(|e| format!("the configuration: {e}"))?
        }
    };
    let mut servers = BTreeMap::new();
    if let Some(path) = &raw.mcp_json {
        let path = base.join(path);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("mcp_json {}: {e}", path.display()))?;
        let file: McpJson =
            serde_json::from_str(&text).map_err(|e| format!("mcp_json {}: {e}", path.display()))?;
        for (name, server) in file.mcp_servers {
            let spec = spec(&name, server, env)
                .map_err(|e| format!("mcp_json {}: {e}", path.display()))?;
            servers.insert(name, spec);
        }
    }
    for (name, server) in raw.servers {
        servers.insert(name.clone(), spec(&name, server, env)?);
    }
    let init_timeout = match raw.init_timeout_ms {
        Some(0) => return Err("init_timeout_ms must be positive".to_owned()),
        Some(ms) => std::time::Duration::from_millis(ms),
        None => DEFAULT_INIT_TIMEOUT,
    };
    Ok(Config { servers, roots: raw.roots, init_timeout })
}

/// One server's spec, checked.
fn spec(
    name: &str,
    raw: RawServer,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ServerSpec, String> {
    let at = |what: &str| format!("server {name:?}: {what}");
    if name.is_empty()
        || name.len() > 24
        || name.contains("__")
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(at("a name is 1 to 24 of A-Z a-z 0-9 _ - (no \"__\")"));
    }
    let expand_all = |map: BTreeMap<String, String>| -> Result<BTreeMap<String, String>, String> {
        map.into_iter().map(|(k, v)| Ok((k, expand(&v, env).map_err(|e| at(&e))?))).collect()
    };
    let http = matches!(raw.kind.as_deref(), Some("http" | "streamable-http" | "streamableHttp"));
    let transport = match (raw.command, raw.url) {
        (Some(command), None) if !http => Transport::Stdio {
            command: expand(&command, env).map_err(|e| at(&e))?,
            args: raw
                .args
                .iter()
                .map(|a| expand(a, env))
                .collect::<Result<_, _>>()
                .map_err(|e| at(&e))?,
            env: expand_all(raw.env)?,
            cwd: raw.cwd,
        },
        (None, Some(url)) => Transport::Http {
            url: expand(&url, env).map_err(|e| at(&e))?,
            headers: expand_all(raw.headers)?,
        },
        (Some(_), Some(_)) => return Err(at("has both command and url")),
        _ => return Err(at("needs a command (stdio) or a url (streamable HTTP)")),
    };
    if let Some(kind) = raw
        .kind
        .as_deref()
        .filter(|k| !matches!(*k, "stdio" | "http" | "streamable-http" | "streamableHttp"))
    {
        return Err(at(&format!("unknown type {kind:?}")));
    }
    Ok(ServerSpec { name: name.to_owned(), transport, tools: raw.tools, deny: raw.deny })
}

/// `text` with every `${VAR}` replaced by `env(VAR)`; an unset variable is an error.
fn expand(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("an unclosed ${{ in {text:?}"));
        };
        let var = &after[..end];
        match env(var) {
            Some(value) => out.push_str(&value),
            None => return Err(format!("${{{var}}} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(var: &str) -> Option<String> {
        (var == "FS_TOKEN").then(|| "s3cret".to_owned())
    }

    #[test]
    fn the_subtree_and_an_mcp_json_make_the_servers() {
        let dir = tempfile::tempdir().unwrap();
        let file = json!({"mcpServers": {
            "everything": {"command": "mcp-server-everything", "args": ["stdio"]},
            "search": {"type": "http", "url": "http://127.0.0.1:9000/mcp", "headers": {"Authorization": "Bearer ${FS_TOKEN}"}},
            "fs": {"command": "overridden"}
        }});
        std::fs::write(dir.path().join(".mcp.json"), file.to_string()).unwrap();
        let own = json!({
            "mcp_json": ".mcp.json",
            "servers": {"fs": {"command": "npx", "args": ["-y", "server-filesystem"], "env": {"TOKEN": "${FS_TOKEN}"}, "tools": ["read_*"], "deny": ["read_secret"]}},
        });
        let config = read(&own, dir.path(), &vars).unwrap();
        assert_eq!(config.servers.keys().collect::<Vec<_>>(), ["everything", "fs", "search"]);
        let fs = &config.servers["fs"];
        let Transport::Stdio { command, env, .. } = &fs.transport else { panic!("{fs:?}") };
        assert_eq!(
            (command.as_str(), env["TOKEN"].as_str()),
            ("npx", "s3cret"),
            "the subtree wins"
        );
        assert!(fs.offers("read_file") && !fs.offers("write_file") && !fs.offers("read_secret"));
        let Transport::Http { headers, .. } = &config.servers["search"].transport else { panic!() };
        assert_eq!(headers["Authorization"], "Bearer s3cret");
        assert_eq!(config.roots, None, "no roots unless configured");
        assert_eq!(read(&Value::Null, dir.path(), &vars).unwrap(), Config::default());
    }

    #[test]
    fn mistakes_name_where_they_are() {
        let base = Path::new(".");
        let err = |own: Value| read(&own, base, &vars).unwrap_err();
        assert!(err(json!({"servers": {"a": {}}})).contains("needs a command"));
        assert!(err(json!({"servers": {"a": {"command": "x", "url": "y"}}})).contains("both"));
        assert!(err(json!({"servers": {"a__b": {"command": "x"}}})).contains("name"));
        assert!(
            err(json!({"servers": {"a": {"command": "${NOPE}"}}})).contains("${NOPE} is not set")
        );
        assert!(err(json!({"servers": {"a": {"command": "x", "colour": 1}}})).contains("colour"));
        assert!(err(json!({"mcp_json": "/no/such/file.json"})).contains("/no/such/file.json"));
        assert_eq!(expand("a${FS_TOKEN}b${FS_TOKEN}", &vars).unwrap(), "as3cretbs3cret");
        assert!(expand("${FS_TOKEN", &vars).is_err());
    }
}
