//! What the supervisor runs: `[apps.<id>.run]` tables and the `[supervisor]` settings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use burrow_protocol::methods::app::RestartPolicy;

/// `[apps.<id>.run]`: how to start one managed app.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// A path, or a name found next to the `burrow` binary, then on `PATH`.
    pub command: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Added to its environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// When to restart it.
    #[serde(default)]
    pub restart: RestartPolicy,
}

/// `[supervisor]`: start deadline, backoff, restart intensity, stop deadline, logs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupervisorSettings {
    /// A started app must register under its id within this time.
    pub start_timeout_ms: u64,
    /// First restart delay; doubles with each failure in a row.
    pub backoff_initial_ms: u64,
    /// Longest restart delay.
    pub backoff_max_ms: u64,
    /// At most this many restarts within `restart_window_ms`; one more and the app stays
    /// `failed`.
    pub max_restarts: usize,
    /// The window of `max_restarts`.
    pub restart_window_ms: u64,
    /// A run that lasted this long resets the backoff.
    pub stable_after_ms: u64,
    /// After SIGTERM, how long before SIGKILL.
    pub stop_timeout_ms: u64,
    /// Size of one captured log file before it is rotated.
    pub log_max_bytes: u64,
    /// Rotated log files kept per app.
    pub log_files: usize,
}

impl Default for SupervisorSettings {
    fn default() -> Self {
        Self {
            start_timeout_ms: 10_000,
            backoff_initial_ms: 500,
            backoff_max_ms: 30_000,
            max_restarts: 5,
            restart_window_ms: 60_000,
            stable_after_ms: 10_000,
            stop_timeout_ms: 5_000,
            log_max_bytes: 1024 * 1024,
            log_files: 3,
        }
    }
}

impl SupervisorSettings {
    /// Checks ranges; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.backoff_initial_ms == 0 || self.backoff_max_ms < self.backoff_initial_ms {
            return Err(
                "[supervisor]: backoff_initial_ms must be positive and at most backoff_max_ms"
                    .into(),
            );
        }
        if self.start_timeout_ms == 0 || self.stop_timeout_ms == 0 || self.log_max_bytes < 1024 {
            return Err("[supervisor]: start_timeout_ms and stop_timeout_ms must be positive, log_max_bytes at least 1024".into());
        }
        Ok(())
    }

    /// The delay before restart number `failures` in a row (0-based).
    pub fn backoff(&self, failures: u32) -> Duration {
        let ms = self
            .backoff_initial_ms
            .saturating_mul(1u64 << failures.min(32))
            .min(self.backoff_max_ms);
        Duration::from_millis(ms)
    }
}

/// Reads every `[apps.<id>.run]` of an app not switched off by `[apps.<id>] enabled = false`.
pub fn run_specs(document: &toml::Table) -> Result<BTreeMap<String, RunSpec>, String> {
    let mut specs = BTreeMap::new();
    let Some(toml::Value::Table(apps)) = document.get("apps") else { return Ok(specs) };
    for (id, section) in apps {
        match section.get("enabled") {
            None | Some(toml::Value::Boolean(true)) => {}
            Some(toml::Value::Boolean(false)) => continue,
            Some(_) => return Err(format!("[apps.{id}]: enabled must be true or false")),
        }
        let Some(run) = section.get("run") else { continue };
        if !burrow_protocol::manifest::is_valid_app_id(id) {
            return Err(format!("[apps.{id}.run]: {id:?} is not a valid app id"));
        }
        let spec: RunSpec = run.clone().try_into().map_err(|e| format!("[apps.{id}.run]: {e}"))?;
        if spec.command.trim().is_empty() {
            return Err(format!("[apps.{id}.run]: command is empty"));
        }
        specs.insert(id.clone(), spec);
    }
    Ok(specs)
}

/// Finds the program of `command`: a path (relative ones against `base`, the config
/// file's directory), else a file of that name next to the running binary, else on `PATH`.
pub fn resolve_command(command: &str, base: Option<&Path>) -> Option<PathBuf> {
    let as_path = Path::new(command);
    if command.contains(std::path::MAIN_SEPARATOR) || command.contains('/') {
        let path = match base {
            Some(dir) if as_path.is_relative() => dir.join(as_path),
            _ => as_path.to_path_buf(),
        };
        return path.is_file().then_some(path);
    }
    let beside = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|d| d.join(command)));
    if let Some(path) = beside.filter(|p| p.is_file()) {
        return Some(path);
    }
    let path_var = std::env::var_os("PATH")?;
    std::env::split_paths(&path_var).map(|dir| dir.join(command)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_tables_are_read_and_checked() {
        let doc: toml::Table = toml::from_str(
            "[apps.files.run]\ncommand = \"burrow-files\"\nargs = [\"--root\", \"/srv\"]\nenv = { RUST_LOG = \"info\" }\nrestart = \"always\"\n[apps.other]\nx = 1\n",
        )
        .unwrap();
        let specs = run_specs(&doc).unwrap();
        let files = &specs["files"];
        assert_eq!(files.args, ["--root", "/srv"]);
        assert_eq!(files.restart, RestartPolicy::Always);
        assert_eq!(files.env["RUST_LOG"], "info");
        assert_eq!(specs.len(), 1);
        for bad in [
            "[apps.x.run]\nargs = []\n",
            "[apps.x.run]\ncommand = \"a\"\nrestart = \"sometimes\"\n",
            "[apps.x.run]\ncommand = \"\"\n",
            "[apps.X.run]\ncommand = \"a\"\n",
            "[apps.x.run]\ncommand = \"a\"\nunknown = 1\n",
        ] {
            assert!(run_specs(&toml::from_str(bad).unwrap()).is_err(), "{bad}");
        }
    }

    #[test]
    fn backoff_doubles_to_the_cap() {
        let s = SupervisorSettings {
            backoff_initial_ms: 500,
            backoff_max_ms: 30_000,
            ..Default::default()
        };
        let delays: Vec<u64> = (0..8).map(|n| s.backoff(n).as_millis() as u64).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        assert_eq!(s.backoff(200).as_millis(), 30_000);
    }

    #[test]
    fn commands_resolve_by_path_and_on_path() {
        let dir = tempfile::tempdir().unwrap();
        let prog = dir.path().join("prog");
        std::fs::write(&prog, "").unwrap();
        assert_eq!(resolve_command("./prog", Some(dir.path())), Some(dir.path().join("./prog")));
        assert_eq!(resolve_command(prog.to_str().unwrap(), None), Some(prog.clone()));
        assert!(resolve_command("./missing", Some(dir.path())).is_none());
        assert!(resolve_command("sh", None).is_some(), "sh is on PATH");
        assert!(resolve_command("surely-not-a-command-here", None).is_none());
    }
}
