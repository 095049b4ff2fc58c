//! Hot reload: watch the configuration file (its directory, since editors replace files),
//! debounce bursts of events, re-parse, and hand a valid result to the kernel. A file
//! that does not parse is logged and changes nothing. Also the diff that turns two
//! documents into `{path, oldValue, newValue}` changes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use burrow_protocol::Value;
use burrow_protocol::methods::config::ConfigChange;
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::Config;
use super::access::is_under;
use crate::kernel::Kernel;

/// Quiet time after the last file event before the file is read.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// The changes between two documents, one per changed subtree: where both sides are maps
/// the diff descends, elsewhere a differing value is one change (null when absent).
pub fn diff(old: &Value, new: &Value) -> Vec<ConfigChange> {
    let mut out = Vec::new();
    diff_into(old, new, String::new(), &mut out);
    out
}

fn diff_into(old: &Value, new: &Value, path: String, out: &mut Vec<ConfigChange>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> =
                a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))).collect();
            keys.sort();
            for key in keys {
                let sub = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                let (x, y) =
                    (a.get(key).unwrap_or(&Value::Null), b.get(key).unwrap_or(&Value::Null));
                diff_into(x, y, sub, out);
            }
        }
        _ if old != new => {
            out.push(ConfigChange { path, old_value: old.clone(), new_value: new.clone() })
        }
        _ => {}
    }
}

/// The changes a watcher of `watched` sees: changes under it as they are, and a change
/// above it narrowed to `watched` itself.
pub fn changes_under(
    watched: &str,
    changes: &[ConfigChange],
    old: &Config,
    new: &Config,
) -> Vec<ConfigChange> {
    let mut out: Vec<ConfigChange> =
        changes.iter().filter(|c| is_under(&c.path, watched)).cloned().collect();
    if changes.iter().any(|c| is_under(watched, &c.path) && c.path != watched) {
        let old_value = old.get(watched).cloned().unwrap_or(Value::Null);
        let new_value = new.get(watched).cloned().unwrap_or(Value::Null);
        if old_value != new_value {
            out.push(ConfigChange { path: watched.to_owned(), old_value, new_value });
        }
    }
    out
}

/// Keeps the file watcher alive; dropping it stops watching.
#[derive(Debug)]
pub struct FileWatcher {
    _watcher: notify::RecommendedWatcher,
}

/// Watches `path` and applies every valid new version to `kernel`.
pub fn spawn(kernel: Arc<Kernel>, path: PathBuf) -> notify::Result<FileWatcher> {
    let (tx, rx) = mpsc::channel::<()>(16);
    let name = path.file_name().map(|n| n.to_owned());
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        if event.paths.iter().any(|p| p.file_name().map(|n| n.to_owned()) == name) {
            // A full queue already holds a wake-up: nothing is lost by dropping this one.
            let _ = tx.try_send(());
        }
    })?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    tokio::spawn(reload_loop(kernel, path, rx));
    Ok(FileWatcher { _watcher: watcher })
}

async fn reload_loop(kernel: Arc<Kernel>, path: PathBuf, mut rx: mpsc::Receiver<()>) {
    while rx.recv().await.is_some() {
        // Debounce: wait until the file has been quiet for a moment.
        loop {
            match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) => return,
                Err(_) => break,
            }
        }
        match Config::load(&path, &kernel.paths.state_dir) {
            Ok(config) => kernel.apply_config(config),
            Err(e) => {
                tracing::warn!(error = %e, "config file changed but is invalid; keeping the configuration in force")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(text: &str) -> Config {
        Config::parse(text, Path::new("t.toml"), Path::new("/state")).unwrap()
    }

    #[test]
    fn diff_descends_maps_and_reports_values() {
        let old = json!({"a": {"x": 1, "y": 2}, "b": 1, "gone": {"deep": true}});
        let new = json!({"a": {"x": 1, "y": 3, "z": [1]}, "b": "one"});
        let paths: Vec<(String, Value, Value)> =
            diff(&old, &new).into_iter().map(|c| (c.path, c.old_value, c.new_value)).collect();
        assert_eq!(
            paths,
            vec![
                ("a.y".into(), json!(2), json!(3)),
                ("a.z".into(), json!(null), json!([1])),
                ("b".into(), json!(1), json!("one")),
                ("gone".into(), json!({"deep": true}), json!(null)),
            ]
        );
        assert!(diff(&new, &new).is_empty());
    }

    #[test]
    fn watchers_see_changes_under_and_above_their_path() {
        let old = config("[apps.w]\nx = 1\n");
        let new = config("[apps.w]\nx = 2\n[apps.v]\ny = 1\n");
        let changes = diff(&old.document, &new.document);
        let seen = changes_under("apps.w", &changes, &old, &new);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].path, "apps.w.x");
        // A change above the watched path (a whole table appearing) is narrowed to it.
        let gone = config("");
        let changes = diff(&old.document, &gone.document);
        let seen = changes_under("apps.w.x", &changes, &old, &gone);
        assert_eq!((seen[0].path.as_str(), &seen[0].new_value), ("apps.w.x", &json!(null)));
        assert!(changes_under("apps.z", &changes, &old, &gone).is_empty());
    }
}
