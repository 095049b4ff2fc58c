//! The kernel's TOML configuration (PROTOCOL.md §7): typed `[ipc]`, `[hooks]` and
//! `[policy]` / `[apps.<id>.policy]` settings, and the whole document as JSON for
//! `config.get`, `config.watch` and diffs. [`watch`] reloads the file when it changes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use burrow_protocol::codec::MAX_FRAME_BYTES;
use serde::Deserialize;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has a mistyped setting.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the position.
        message: String,
    },
    /// A setting is out of range.
    #[error("invalid setting {key}: {message}")]
    Invalid {
        /// The dotted key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

pub mod access;
pub mod host;
pub mod layers;
pub mod policy;
pub mod redact;
pub mod watch;

pub use policy::Policy;

use std::collections::BTreeMap;

use crate::supervisor::spec::{RunSpec, SupervisorSettings};

/// The loaded configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Typed `[ipc]` settings.
    pub ipc: IpcConfig,
    /// Typed `[hooks]` settings.
    pub hooks: HookSettings,
    /// `[policy]` and every `[apps.<id>.policy]`.
    pub policy: Policy,
    /// `[supervisor]`.
    pub supervisor: SupervisorSettings,
    /// Every `[apps.<id>.run]`: the apps the kernel starts and keeps alive.
    pub run: BTreeMap<String, RunSpec>,
    /// `[agents.<id>]`; `main` always exists.
    pub agents: BTreeMap<String, crate::sessions::AgentSpec>,
    /// `[sessions]`.
    pub sessions: crate::sessions::SessionSettings,
    /// `[host]`: the JSON-RPC and REST surfaces.
    pub host: host::HostSettings,
    /// `[comms]`: the signed kernel channel.
    pub comms: crate::service::comms::CommsSettings,
    /// `[mcp]`: Burrow as an MCP server.
    pub mcp: host::McpSettings,
    /// `[telemetry]`: traces over OTLP (read at start).
    pub telemetry: crate::telemetry::TelemetrySettings,
    /// The configuration file's directory: relative `command` paths start there.
    pub base_dir: Option<PathBuf>,
    /// The whole effective document as JSON (TOML datetimes become strings).
    pub document: serde_json::Value,
    /// Where the file's values were set.
    pub origins: layers::Origins,
    /// The file read, if any.
    pub file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ipc: IpcConfig::default(),
            hooks: HookSettings::default(),
            policy: Policy::default(),
            supervisor: SupervisorSettings::default(),
            run: BTreeMap::new(),
            agents: BTreeMap::from([("main".to_owned(), crate::sessions::AgentSpec::default())]),
            sessions: crate::sessions::SessionSettings::default(),
            host: Default::default(),
            comms: Default::default(),
            mcp: Default::default(),
            telemetry: Default::default(),
            base_dir: None,
            document: serde_json::Value::Object(Default::default()),
            origins: layers::Origins::default(),
            file: None,
        }
    }
}

/// `[hooks]`: observer queues and interception deadlines.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HookSettings {
    /// Notifications queued per observer; beyond it they are dropped and counted.
    pub observer_queue: usize,
    /// Deadline of an interceptor that names no `timeoutMs`.
    pub intercept_timeout_ms: u64,
    /// Longest `timeoutMs` an interceptor may ask for.
    pub max_intercept_timeout_ms: u64,
}

impl Default for HookSettings {
    fn default() -> Self {
        Self { observer_queue: 256, intercept_timeout_ms: 5_000, max_intercept_timeout_ms: 60_000 }
    }
}

/// `[ipc]`: framing, heartbeats and per-connection bounds. All values in ms or counts.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct IpcConfig {
    /// Largest frame accepted or sent (default 8 MiB; 64 B to 1 GiB).
    pub max_frame_bytes: usize,
    /// How often apps must send something.
    pub heartbeat_interval_ms: u64,
    /// Silence after which an app (or an unregistered connection) is dropped.
    pub heartbeat_timeout_ms: u64,
    /// Requests and notifications read from one connection but not yet handled; beyond
    /// it the kernel stops reading that connection until some are (back-pressure).
    pub max_queued: usize,
    /// Bytes (as decoded in memory) of the requests read from one connection and not yet
    /// answered, and of its notifications not yet handled; beyond it the kernel stops
    /// reading that connection until some are.
    pub max_queued_bytes: usize,
    /// Requests of one connection being worked on after their handler returned (routed
    /// calls, a leaving app's `app.shutdown`); one more waits for a slot while the
    /// connection goes on being read, and is answered `too_many_in_flight` if none frees
    /// within `call_timeout_ms`. Streams have as many slots of their own; a stream
    /// beyond them is refused at once.
    pub max_in_flight: usize,
    /// Frames queued for one connection's writer; once reached, the kernel reads no more
    /// requests from that connection until some are written (back-pressure).
    pub writer_queue: usize,
    /// Bytes queued for one connection's writer; once reached, likewise.
    pub writer_queue_bytes: usize,
    /// Answers that may be as large as a frame (stored messages, another app's answer)
    /// prepared at once for one connection.
    pub max_large_answers: usize,
    /// How long a client may take none of what the kernel has to write to it before it
    /// is disconnected.
    pub write_stall_timeout_ms: u64,
    /// Connections at once; one more is answered with an error and closed.
    pub max_connections: usize,
    /// How long the kernel waits for apps to answer `app.shutdown` when it stops.
    pub shutdown_timeout_ms: u64,
    /// How long an app token stays valid.
    pub token_ttl_ms: u64,
    /// Deadline of a routed call (`tool.invoke`, `gateway.invoke`) whose capability
    /// names none.
    pub call_timeout_ms: u64,
}

impl Default for IpcConfig {
    fn default() -> Self {
        Self {
            max_frame_bytes: MAX_FRAME_BYTES,
            heartbeat_interval_ms: 5_000,
            heartbeat_timeout_ms: 15_000,
            max_queued: 256,
            max_queued_bytes: 8 * 1024 * 1024,
            max_in_flight: 256,
            writer_queue: 1024,
            writer_queue_bytes: 8 * 1024 * 1024,
            max_large_answers: 2,
            write_stall_timeout_ms: 30_000,
            max_connections: 512,
            shutdown_timeout_ms: 5_000,
            token_ttl_ms: 30 * 24 * 3600 * 1000,
            call_timeout_ms: 30_000,
        }
    }
}

impl IpcConfig {
    /// The heartbeat timeout as a duration.
    pub fn heartbeat_timeout(&self) -> Duration {
        Duration::from_millis(self.heartbeat_timeout_ms)
    }

    /// The shutdown timeout as a duration.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }

    /// The bounds of one connection.
    pub fn limits(&self) -> crate::connection::Limits {
        crate::connection::Limits {
            max_frame_bytes: self.max_frame_bytes,
            max_queued: self.max_queued,
            max_queued_bytes: self.max_queued_bytes,
            max_in_flight: self.max_in_flight,
            writer_queue: self.writer_queue,
            writer_queue_bytes: self.writer_queue_bytes,
            max_large_answers: self.max_large_answers,
            slot_wait: Duration::from_millis(self.call_timeout_ms),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid =
            |key, message: &str| Err(ConfigError::Invalid { key, message: message.into() });
        if !(64..=1 << 30).contains(&self.max_frame_bytes) {
            return invalid("ipc.max_frame_bytes", "must be between 64 bytes and 1 GiB");
        }
        if self.heartbeat_interval_ms == 0
            || self.heartbeat_timeout_ms <= self.heartbeat_interval_ms
        {
            return invalid(
                "ipc.heartbeat_timeout_ms",
                "heartbeat_interval_ms must be positive and below heartbeat_timeout_ms",
            );
        }
        if self.max_in_flight == 0 || self.max_queued == 0 || self.max_connections == 0 {
            return invalid(
                "ipc.max_in_flight",
                "max_in_flight, max_queued and max_connections must be positive",
            );
        }
        if self.writer_queue == 0 || self.max_large_answers == 0 {
            return invalid(
                "ipc.writer_queue",
                "writer_queue and max_large_answers must be positive",
            );
        }
        let gib = 1 << 30;
        if !(1..=gib).contains(&self.max_queued_bytes)
            || !(1..=gib).contains(&self.writer_queue_bytes)
        {
            return invalid(
                "ipc.writer_queue_bytes",
                "max_queued_bytes and writer_queue_bytes must be between 1 byte and 1 GiB",
            );
        }
        if self.write_stall_timeout_ms == 0 {
            return invalid("ipc.write_stall_timeout_ms", "must be positive");
        }
        Ok(())
    }
}

impl Config {
    /// Reads a configuration file's text: its tables laid over the built-in defaults
    /// ([`layers`]); nothing is taken from a file with any error.
    pub fn parse(text: &str, path: &Path, state_dir: &Path) -> Result<Self, ConfigError> {
        let parse_err = |message: String| ConfigError::Parse { path: path.to_owned(), message };
        let file: toml::Table = toml::from_str(text).map_err(|e| parse_err(e.to_string()))?;
        layers::check_top_level(&file).map_err(parse_err)?;
        let mut document = layers::defaults(state_dir);
        layers::overlay(&mut document, file);
        let mut config = Self::from_document(document, path)?;
        config.base_dir = path.parent().map(Path::to_path_buf);
        config.origins = layers::Origins::read(text, path);
        config.file = Some(path.to_owned());
        Ok(config)
    }

    /// The configuration without a file: the defaults plus the bundled apps
    /// (`echo-provider`, `burrow-files` rooted at the working directory, `audit-log`
    /// writing to `<state dir>/audit.jsonl`, `burrow-mcp` mounting the MCP servers
    /// `[apps.mcp]` names), so `burrow kernel` alone gives a working agent.
    pub fn builtin(state_dir: &Path) -> Self {
        let whence = Path::new("(built-in configuration)");
        Self::from_document(layers::defaults(state_dir), whence).unwrap_or_else(|e| {
            tracing::error!(error = %e, "the built-in configuration is invalid; running without bundled apps");
            Self::default()
        })
    }

    /// The typed settings of an effective document (`path`: whence, for errors).
    fn from_document(document: toml::Table, path: &Path) -> Result<Self, ConfigError> {
        let parse_err = |message: String| ConfigError::Parse { path: path.to_owned(), message };
        let ipc: IpcConfig = section(&document, "ipc").map_err(parse_err)?;
        ipc.validate()?;
        let hooks: HookSettings = section(&document, "hooks").map_err(parse_err)?;
        let policy = Policy::from_document(&document).map_err(parse_err)?;
        let supervisor: SupervisorSettings = section(&document, "supervisor").map_err(parse_err)?;
        supervisor.validate().map_err(parse_err)?;
        let run = crate::supervisor::spec::run_specs(&document).map_err(parse_err)?;
        let agents = crate::sessions::agents(&document).map_err(parse_err)?;
        let sessions: crate::sessions::SessionSettings =
            section(&document, "sessions").map_err(parse_err)?;
        let host: host::HostSettings = section(&document, "host").map_err(parse_err)?;
        host.validate().map_err(parse_err)?;
        let comms: crate::service::comms::CommsSettings =
            section(&document, "comms").map_err(parse_err)?;
        comms.validate().map_err(parse_err)?;
        let mcp: host::McpSettings = section(&document, "mcp").map_err(parse_err)?;
        mcp.validate().map_err(parse_err)?;
        let telemetry: crate::telemetry::TelemetrySettings =
            section(&document, "telemetry").map_err(parse_err)?;
        telemetry.validate().map_err(parse_err)?;
        let document = json(&toml::Value::Table(document), "").map_err(parse_err)?;
        Ok(Self {
            ipc,
            hooks,
            policy,
            supervisor,
            run,
            agents,
            sessions,
            host,
            comms,
            mcp,
            telemetry,
            base_dir: None,
            document,
            origins: layers::Origins::default(),
            file: None,
        })
    }

    /// The value at a dotted `path` of the document, if any.
    pub fn get(&self, path: &str) -> Option<&serde_json::Value> {
        lookup(&self.document, path)
    }

    /// Where the value at `path` comes from: `FILE:LINE` or `built-in default`.
    pub fn origin(&self, path: &str) -> String {
        self.origins.of(path)
    }

    /// Every value under `path` (a table's values, each array as a whole) by its dotted
    /// path, with its [`Config::origin`]; nothing when the path is missing.
    pub fn origins_under(&self, path: &str) -> BTreeMap<String, String> {
        fn walk(c: &Config, v: &serde_json::Value, at: String, out: &mut BTreeMap<String, String>) {
            match v {
                serde_json::Value::Object(map) if !map.is_empty() => {
                    for (key, sub) in map {
                        let below = if at.is_empty() { key.clone() } else { format!("{at}.{key}") };
                        walk(c, sub, below, out);
                    }
                }
                _ => {
                    out.insert(at.clone(), c.origin(&at));
                }
            }
        }
        let mut out = BTreeMap::new();
        if let Some(v) = self.get(path) {
            walk(self, v, path.to_owned(), &mut out);
        }
        out
    }

    /// Loads the file at `path`, over the defaults.
    pub fn load(path: &Path, state_dir: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(&text, path, state_dir)
    }
}

/// Reads the table `[name]` into `T`; absent means `T::default()`.
fn section<T: serde::de::DeserializeOwned + Default>(
    document: &toml::Table,
    name: &str,
) -> Result<T, String> {
    match document.get(name) {
        None => Ok(T::default()),
        Some(value) => value.clone().try_into::<T>().map_err(|e| format!("[{name}]: {e}")),
    }
}

/// The configuration as `config.get` serves it: a datetime becomes its TOML text (RFC
/// 3339), and a NaN or infinite float, which JSON cannot hold, is refused by its `path`.
fn json(value: &toml::Value, path: &str) -> Result<serde_json::Value, String> {
    use serde_json::Value as Json;
    let under = |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
    Ok(match value {
        toml::Value::String(s) => Json::String(s.clone()),
        toml::Value::Integer(n) => Json::from(*n),
        toml::Value::Float(f) => {
            serde_json::Number::from_f64(*f).map(Json::Number).ok_or_else(|| {
                format!("{path}: {f} has no JSON form, so apps could not read it; use a string")
            })?
        }
        toml::Value::Boolean(b) => Json::Bool(*b),
        toml::Value::Datetime(d) => Json::String(d.to_string()),
        toml::Value::Array(items) => Json::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| json(v, &under(&i.to_string())))
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Table(table) => Json::Object(
            table
                .iter()
                .map(|(k, v)| Ok((k.clone(), json(v, &under(k))?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

/// The value at a dotted `path` under `root`; the empty path is the root.
pub fn lookup<'a>(root: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    if path.is_empty() {
        return Some(root);
    }
    path.split('.').try_fold(root, |value, key| value.as_object()?.get(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/test.toml"), Path::new("/var/lib/burrow"))
    }

    #[test]
    fn a_file_adds_to_the_bundled_apps_and_switches_one_off_only_when_told() {
        let c = parse("[apps.mine.run]\ncommand = \"mine\"\n[ipc]\nmax_queued = 9\n").unwrap();
        let ids: Vec<&String> = c.run.keys().collect();
        assert_eq!(ids, ["audit-log", "echo-provider", "files", "mcp", "mine"]);
        let c = parse("[apps.files]\nenabled = false\n[apps.audit-log]\nenabled = true\n").unwrap();
        assert_eq!(c.run.keys().collect::<Vec<_>>(), ["audit-log", "echo-provider", "mcp"]);
        let e = parse("[apps.files]\nenabled = \"no\"\n").unwrap_err();
        assert!(e.to_string().contains("[apps.files]: enabled must be true or false"), "{e}");
    }

    #[test]
    fn the_document_holds_every_effective_value_and_where_it_came_from() {
        let c = parse("[ipc]\nmax_queued = 9\n").unwrap();
        assert_eq!(c.get("ipc.max_queued"), Some(&serde_json::json!(9)));
        let frame = serde_json::json!(MAX_FRAME_BYTES);
        assert_eq!(c.get("ipc.max_frame_bytes"), Some(&frame), "defaults are shown");
        assert_eq!(c.get("agents.main.provider"), Some(&serde_json::json!("echo")));
        assert!(c.get("supervisor.stop_timeout_ms").is_some());
        assert!(c.get("host").is_some() && c.get("comms").is_some() && c.get("policy").is_some());
        assert_eq!(c.origin("ipc.max_queued"), "/etc/test.toml:2");
        assert_eq!(c.origin("ipc.max_frame_bytes"), "built-in default");
        let under = c.origins_under("ipc");
        assert_eq!(under["ipc.max_queued"], "/etc/test.toml:2");
        assert_eq!(under["ipc.max_frame_bytes"], "built-in default");
        assert_eq!(under.len(), c.get("ipc").unwrap().as_object().unwrap().len());
        assert!(c.origins_under("no.such").is_empty());
        assert_eq!(c.file.as_deref(), Some(Path::new("/etc/test.toml")));
        let builtin = Config::builtin(Path::new("/s"));
        assert_eq!(builtin.get("ipc.max_frame_bytes"), Some(&frame));
        assert_eq!(builtin.origin("ipc"), "built-in default");
        assert_eq!(builtin.file, None);
    }

    #[test]
    fn an_unknown_top_level_table_is_refused_with_a_suggestion() {
        let e = parse("[supervisr]\nmax_restarts = 2\n").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("unknown table [supervisr]; did you mean [supervisor]?"), "{text}");
    }

    #[test]
    fn the_builtin_configuration_runs_the_bundled_apps() {
        let c = Config::builtin(Path::new("/var/lib/burrow"));
        assert_eq!(
            c.run.keys().collect::<Vec<_>>(),
            ["audit-log", "echo-provider", "files", "mcp"]
        );
        assert_eq!(c.run["audit-log"].args, ["--out", "/var/lib/burrow/audit.jsonl"]);
        assert_eq!(c.agents["main"].provider, "echo");
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.ipc, IpcConfig::default());
    }

    #[test]
    fn ipc_section_is_read() {
        let c = parse(
            "[ipc]\nheartbeat_interval_ms = 100\nheartbeat_timeout_ms = 300\n[apps.x]\na = 1\n",
        )
        .unwrap();
        assert_eq!(c.ipc.heartbeat_interval_ms, 100);
        assert_eq!(c.ipc.heartbeat_timeout_ms, 300);
        assert_eq!(c.ipc.max_frame_bytes, MAX_FRAME_BYTES);
        assert_eq!(c.get("apps.x.a"), Some(&serde_json::json!(1)));
        assert_eq!(c.get("apps.y"), None);
        assert!(c.get("").is_some());
    }

    #[test]
    fn apps_read_toml_values_as_json_and_floats_json_cannot_hold_are_refused() {
        let c = parse(
            "[apps.x]\nwhen = 1979-05-27T07:32:00Z\nday = 1979-05-27\nf = [0.5, -0.0]\n\
             t = {n = [1, {s = \"x\"}]}\n",
        )
        .unwrap();
        let json = serde_json::json!({
            "when": "1979-05-27T07:32:00Z", "day": "1979-05-27", "f": [0.5, -0.0],
            "t": {"n": [1, {"s": "x"}]},
        });
        assert_eq!(c.get("apps.x"), Some(&json));
        for (text, key) in
            [("[apps.x]\nv = nan\n", "apps.x.v"), ("[apps.y]\nv = [1.0, -inf]\n", "apps.y.v.1")]
        {
            let Err(ConfigError::Parse { message, .. }) = parse(text) else { panic!("{text}") };
            assert!(message.starts_with(&format!("{key}: ")), "{text}: {message}");
        }
    }

    #[test]
    fn bad_settings_are_refused_with_the_key() {
        assert!(matches!(
            parse("[ipc]\nheartbeat_interval_ms = \"x\"\n"),
            Err(ConfigError::Parse { .. })
        ));
        assert!(matches!(parse("[ipc]\nunknown_key = 1\n"), Err(ConfigError::Parse { .. })));
        assert!(matches!(parse("not toml ="), Err(ConfigError::Parse { .. })));
        let e =
            parse("[ipc]\nheartbeat_interval_ms = 500\nheartbeat_timeout_ms = 400\n").unwrap_err();
        assert!(e.to_string().contains("ipc.heartbeat_timeout_ms"), "{e}");
        assert!(parse("[ipc]\nmax_frame_bytes = 1\n").is_err());
        let e = parse("[ipc]\nwriter_queue = 0\n").unwrap_err();
        assert!(e.to_string().contains("ipc.writer_queue"), "{e}");
        let e = parse("[ipc]\nwriter_queue_bytes = 0\n").unwrap_err();
        assert!(e.to_string().contains("ipc.writer_queue_bytes"), "{e}");
        let e = parse("[ipc]\nmax_queued_bytes = 2147483648\n").unwrap_err();
        assert!(e.to_string().contains("ipc.writer_queue_bytes"), "{e}");
        let e = parse("[ipc]\nwrite_stall_timeout_ms = 0\n").unwrap_err();
        assert!(e.to_string().contains("ipc.write_stall_timeout_ms"), "{e}");
    }
}
