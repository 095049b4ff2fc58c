//! `burrow config`: `get` reads the configuration in force from the running kernel
//! (defaults included; `--origin` says where each value was set), `check` validates a
//! file the way the kernel would load it, without starting one.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use burrow_protocol::methods::config::{ConfigGet, ConfigGetParams};

use super::client::{fail, print_json};
use super::ops::registered;
use crate::config::Config;

/// `burrow config get [PATH] [--origin]`: the value as JSON (`null` when absent); with
/// `--origin`, one line per value, `path = value  # origin`.
pub async fn get(socket: Option<PathBuf>, path: Option<&str>, origin: bool) -> ExitCode {
    let reg = match registered(socket).await {
        Ok(r) => r,
        Err(code) => return code,
    };
    let params = ConfigGetParams { path: Some(path.unwrap_or("").to_owned()), origin };
    let result = match reg.client.call::<ConfigGet>(params).await {
        Ok(result) => result,
        Err(e) => return fail(e),
    };
    match result.origins {
        Some(origins) if origin => {
            let root = path.unwrap_or("");
            for (at, from) in &origins {
                let value = crate::config::lookup(&result.value, relative(root, at));
                let shown = value.map(|v| v.to_string()).unwrap_or_else(|| "null".into());
                println!("{at} = {shown}  # {from}");
            }
            if origins.is_empty() {
                println!("{} = null  # not set", if root.is_empty() { "(all)" } else { root });
            }
        }
        _ => print_json(&result.value),
    }
    ExitCode::SUCCESS
}

/// `at`, a path under `root`, relative to it.
fn relative<'a>(root: &str, at: &'a str) -> &'a str {
    if root.is_empty() {
        return at;
    }
    at.strip_prefix(root).map(|rest| rest.trim_start_matches('.')).unwrap_or(at)
}

/// `burrow config check FILE`: loads it as the kernel would (over the defaults) and says
/// what it would run; exit 1 with the reason when the kernel would refuse it.
pub fn check(file: &Path, state_dir: &Path) -> ExitCode {
    match Config::load(file, state_dir) {
        Ok(config) => {
            let apps: Vec<&str> = config.run.keys().map(String::as_str).collect();
            let agents: Vec<&str> = config.agents.keys().map(String::as_str).collect();
            println!("{}: ok", file.display());
            println!("  managed apps: {}", list(&apps));
            println!("  agents: {}", list(&agents));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("burrow: {e}");
            ExitCode::FAILURE
        }
    }
}

fn list(names: &[&str]) -> String {
    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_print_paths_relative_to_what_was_asked() {
        assert_eq!(relative("", "ipc.max_queued"), "ipc.max_queued");
        assert_eq!(relative("ipc", "ipc.max_queued"), "max_queued");
        assert_eq!(relative("ipc.max_queued", "ipc.max_queued"), "");
    }
}
