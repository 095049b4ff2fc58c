//! Installing and running as a service, as `docs/operating.md` says: `scripts/install`
//! installs every binary the built-in configuration runs, and the systemd user unit in the
//! docs is one systemd accepts.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the repository").to_owned()
}

/// The crate directory under `apps/` whose `[[bin]]` (or package) is named `command`.
fn crate_of(command: &str) -> Option<String> {
    let apps = std::fs::read_dir(repo().join("apps")).expect("apps/");
    apps.filter_map(|e| e.ok()).map(|e| e.path()).find_map(|dir| {
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).ok()?;
        let named = format!("name = \"{command}\"");
        let name = dir.file_name()?.to_str()?.to_owned();
        manifest.contains(&named).then(|| format!("apps/{name}"))
    })
}

#[test]
fn the_install_script_installs_the_kernel_and_every_app_the_defaults_run() {
    let script = std::fs::read_to_string(repo().join("scripts/install")).expect("scripts/install");
    let line = script.lines().find(|l| l.starts_with("crates=(")).expect("a crates=(...) line");
    let crates: Vec<&str> =
        line.trim_start_matches("crates=(").trim_end_matches(')').split_whitespace().collect();
    assert!(crates.contains(&"kernel"), "{line}");
    let config = burrow_kernel::config::Config::builtin(Path::new("/state"));
    assert!(!config.run.is_empty());
    for (id, spec) in &config.run {
        let dir = crate_of(&spec.command)
            .unwrap_or_else(|| panic!("no crate under apps/ builds {:?} ({id})", spec.command));
        assert!(crates.contains(&dir.as_str()), "{id}: {dir} is not installed by {line}");
    }
    let checked =
        std::process::Command::new("bash").arg("-n").arg(repo().join("scripts/install")).output();
    if let Ok(out) = checked {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

/// The `ini` block of `docs/operating.md`: the unit.
fn documented_unit() -> String {
    let doc = std::fs::read_to_string(repo().join("docs/operating.md")).expect("operating.md");
    let start = doc.find("```ini\n").expect("an ini block") + "```ini\n".len();
    doc[start..start + doc[start..].find("```").expect("its end")].to_owned()
}

#[test]
fn the_documented_systemd_unit_is_sound() {
    let unit = documented_unit();
    let lines: Vec<&str> = unit.lines().map(str::trim).collect();
    // Ordered after the target that wants it, it would wait for itself.
    assert!(lines.contains(&"WantedBy=default.target"));
    assert!(!lines.iter().any(|l| l.starts_with("After=") && l.contains("default.target")));
    // An explicit working directory that is not the home directory: the files app
    // serves it.
    let dir = lines.iter().find_map(|l| l.strip_prefix("WorkingDirectory=")).expect("one");
    assert!(!["~", "%h", "%h/"].contains(&dir), "{dir}");
    assert!(lines.iter().any(|l| l.starts_with("ExecStart=%h/.cargo/bin/burrow kernel")));

    let Ok(found) = std::process::Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed: the unit's syntax is not checked by systemd");
        return;
    };
    assert!(found.status.success());
    // As systemd would read it, with the binary that `scripts/install` puts in place.
    let dir = tempfile::tempdir().unwrap();
    let burrow = burrow_tests::bin("burrow");
    let text = unit.replace("%h/.cargo/bin/burrow", &burrow.display().to_string());
    let path = dir.path().join("burrow.service");
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new("systemd-analyze").arg("verify").arg(&path).output();
    let out = out.expect("systemd-analyze runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !stderr.contains("burrow.service"), "{stderr}");
}
