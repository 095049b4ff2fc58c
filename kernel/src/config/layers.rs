//! Where the configuration in force comes from: the built-in defaults (every setting's
//! default value and the bundled apps) with the user's file laid over them. A file adds
//! to or changes the defaults, never replaces them: a bundled app is switched off only by
//! `[apps.<id>] enabled = false`. Also the checks on a file's top level and the origin
//! of each value (`burrow config get --origin`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

/// The tables a configuration file may have at its top level. `[shared]` is the apps':
/// the kernel never reads it, and apps read what their manifest's `config.read` grants.
pub const TOP_LEVEL: &[&str] = &[
    "agents",
    "apps",
    "comms",
    "hooks",
    "host",
    "ipc",
    "mcp",
    "policy",
    "sessions",
    "shared",
    "supervisor",
    "telemetry",
];

/// The bundled apps, as `[apps.<id>.run]` tables; `{audit}` is replaced by a quoted path.
const BUNDLED: &str = r#"
[apps.echo-provider.run]
command = "echo-provider"

[apps.files.run]
command = "burrow-files"
args = ["--root", "."]

[apps.audit-log.run]
command = "audit-log"
args = ["--out", {audit}]

[apps.mcp.run]
command = "burrow-mcp"
"#;

/// The ids of the bundled apps.
pub const BUNDLED_APPS: &[&str] = &["audit-log", "echo-provider", "files", "mcp"];

/// The configuration without a file: every typed setting at its default, the `main`
/// agent, and the bundled apps (`audit-log` writing to `<state_dir>/audit.jsonl`).
pub fn defaults(state_dir: &Path) -> toml::Table {
    let audit = toml::Value::String(state_dir.join("audit.jsonl").display().to_string());
    let mut table: toml::Table =
        toml::from_str(&BUNDLED.replace("{audit}", &audit.to_string())).unwrap_or_default();
    let mut put = |name: &str, value: Result<toml::Table, toml::ser::Error>| match value {
        Ok(v) => {
            table.insert(name.to_owned(), toml::Value::Table(v));
        }
        Err(e) => tracing::error!(section = name, error = %e, "cannot show a default section"),
    };
    put("ipc", typed(&super::IpcConfig::default()));
    put("hooks", typed(&super::HookSettings::default()));
    put("policy", typed(&super::policy::Rules::default()));
    put("supervisor", typed(&crate::supervisor::spec::SupervisorSettings::default()));
    put("sessions", typed(&crate::sessions::SessionSettings::default()));
    put("host", typed(&super::host::HostSettings::default()));
    put("comms", typed(&crate::service::comms::CommsSettings::default()));
    put("mcp", typed(&super::host::McpSettings::default()));
    put("telemetry", typed(&crate::telemetry::TelemetrySettings::default()));
    let main = typed(&crate::sessions::AgentSpec::default())
        .map(|main| toml::Table::from_iter([("main".to_owned(), toml::Value::Table(main))]));
    put("agents", main);
    table
}

fn typed<T: Serialize>(value: &T) -> Result<toml::Table, toml::ser::Error> {
    toml::Table::try_from(value)
}

/// Lays `over` on `base`: tables merge key by key, any other value replaces the one
/// below it (an array as a whole).
pub fn overlay(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(below)), toml::Value::Table(above)) => overlay(below, above),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Refuses a table or key at the top level of a file that the kernel does not know,
/// with the nearest known name when one is close.
pub fn check_top_level(file: &toml::Table) -> Result<(), String> {
    for key in file.keys() {
        if TOP_LEVEL.contains(&key.as_str()) {
            continue;
        }
        let what = match file.get(key) {
            Some(toml::Value::Table(_)) => format!("unknown table [{key}]"),
            _ => format!("unknown key `{key}` at the top level"),
        };
        return Err(match nearest(key, TOP_LEVEL) {
            Some(near) => format!("{what}; did you mean [{near}]?"),
            None => format!("{what}; known tables: {}", TOP_LEVEL.join(", ")),
        });
    }
    Ok(())
}

/// The candidate closest to `word` by edit distance, if close enough to be a typo.
pub fn nearest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|c| (distance(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c)
}

/// Levenshtein distance over chars.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Where each value set by a file was set: the line of its key, by dotted path.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Origins {
    file: Option<String>,
    lines: BTreeMap<String, usize>,
}

impl Origins {
    /// The lines of every key in `text` (a file that parsed as `toml::Table`).
    pub fn read(text: &str, file: &Path) -> Self {
        let mut lines = BTreeMap::new();
        if let Ok(doc) = toml::de::DeTable::parse(text) {
            collect(text, doc.get_ref(), "", &mut lines);
        }
        Self { file: Some(file.display().to_string()), lines }
    }

    /// Where the value at `path` comes from: `FILE:LINE` when the file sets it or
    /// something under it, else the built-in default.
    pub fn of(&self, path: &str) -> String {
        let set = self.lines.get(path).copied().or_else(|| {
            let prefix = format!("{path}.");
            self.lines.iter().find(|(k, _)| k.starts_with(&prefix)).map(|(_, l)| *l)
        });
        match (&self.file, set) {
            (Some(file), Some(line)) => format!("{file}:{line}"),
            _ => "built-in default".to_owned(),
        }
    }
}

fn collect(
    text: &str,
    table: &toml::de::DeTable<'_>,
    path: &str,
    out: &mut BTreeMap<String, usize>,
) {
    for (key, value) in table {
        let sub = if path.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{path}.{}", key.get_ref())
        };
        let line = text[..key.span().start.min(text.len())].matches('\n').count() + 1;
        out.entry(sub.clone()).or_insert(line);
        if let toml::de::DeValue::Table(inner) = value.get_ref() {
            collect(text, inner, &sub, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_changes_and_adds_to_the_defaults_and_replaces_arrays_whole() {
        let mut base = defaults(Path::new("/state"));
        let file: toml::Table = toml::from_str(
            "[ipc]\nmax_queued = 7\n[apps.files.run]\nargs = [\"--root\", \"/srv\"]\n[apps.mine.run]\ncommand = \"mine\"\n",
        )
        .unwrap();
        overlay(&mut base, file);
        assert_eq!(base["ipc"]["max_queued"].as_integer(), Some(7));
        assert!(base["ipc"].get("max_frame_bytes").is_some(), "the other defaults stay");
        assert_eq!(base["apps"]["files"]["run"]["command"].as_str(), Some("burrow-files"));
        let args = base["apps"]["files"]["run"]["args"].as_array().unwrap();
        assert_eq!(args.len(), 2);
        assert_eq!(args[1].as_str(), Some("/srv"));
        for id in BUNDLED_APPS {
            assert!(base["apps"].get(*id).is_some(), "{id} is still there");
        }
        assert_eq!(base["apps"]["mine"]["run"]["command"].as_str(), Some("mine"));
        let audit = &base["apps"]["audit-log"]["run"]["args"][1];
        assert_eq!(audit.as_str(), Some("/state/audit.jsonl"));
    }

    #[test]
    fn unknown_top_level_names_are_refused_with_the_nearest_known_one() {
        let file: toml::Table = toml::from_str("[supervisr]\nmax_restarts = 1\n").unwrap();
        let e = check_top_level(&file).unwrap_err();
        assert_eq!(e, "unknown table [supervisr]; did you mean [supervisor]?");
        let file: toml::Table = toml::from_str("verbose = true\n").unwrap();
        let e = check_top_level(&file).unwrap_err();
        assert!(
            e.starts_with("unknown key `verbose` at the top level; known tables: agents"),
            "{e}"
        );
        let file: toml::Table = toml::from_str("[ipc]\n[apps.x]\n").unwrap();
        assert!(check_top_level(&file).is_ok());
        assert_eq!(nearest("hoks", TOP_LEVEL), Some("hooks"));
        assert_eq!(nearest("zzzzzz", TOP_LEVEL), None);
    }

    #[test]
    fn origins_name_the_line_that_set_a_value_or_the_default() {
        let text = "# comment\n[ipc]\nmax_queued = 7\n\n[apps.mine.run]\ncommand = \"x\"\n";
        let origins = Origins::read(text, Path::new("/etc/burrow.toml"));
        assert_eq!(origins.of("ipc.max_queued"), "/etc/burrow.toml:3");
        assert_eq!(origins.of("ipc"), "/etc/burrow.toml:2");
        assert_eq!(origins.of("apps.mine.run.command"), "/etc/burrow.toml:6");
        assert_eq!(origins.of("ipc.max_frame_bytes"), "built-in default");
        assert_eq!(Origins::default().of("ipc"), "built-in default");
    }
}
