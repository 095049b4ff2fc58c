//! A configuration file adds to the built-in defaults and never silently drops them:
//! the bundled apps run under any file unless switched off, `config get` shows every
//! value in force and where it came from, and a mistyped table is refused with a
//! suggestion — at start, on reload, and by `burrow config check`.

use burrow_tests::{BUNDLED_APPS, DEADLINE, FAST_CONFIG, Kernel};
use serde_json::{Value, json};

async fn managed_running(kernel: &Kernel) -> Vec<String> {
    let Ok(apps) = kernel.client().await.request("kernel.apps", json!({})).await else {
        return Vec::new();
    };
    let managed = apps["managed"].as_array().cloned().unwrap_or_default();
    managed
        .iter()
        .filter(|m| m["state"] == "running")
        .filter_map(|m| m["appId"].as_str().map(str::to_owned))
        .collect()
}

fn text(out: &std::process::Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[tokio::test]
async fn a_file_that_does_not_mention_the_bundled_apps_still_runs_them() {
    // The README's kind of file: settings of its own, nothing about apps.
    let kernel =
        Kernel::start_as_written(&format!("{FAST_CONFIG}[agents.main]\nmodel = \"echo\"\n")).await;
    let all = burrow_tests::poll_until(DEADLINE, || async {
        let running = managed_running(&kernel).await;
        BUNDLED_APPS.iter().all(|id| running.iter().any(|r| r == id))
    })
    .await;
    assert!(all, "running: {:?}\n{}", managed_running(&kernel).await, kernel.log());
    // The start says which file it read and what it runs.
    assert!(kernel.logged("configuration loaded over the built-in defaults").await);
    let log = kernel.log();
    let line = log.lines().find(|l| l.contains("configuration loaded")).unwrap();
    assert!(line.contains("burrow.toml") && line.contains("echo-provider"), "{line}");
    // And a message reaches the echo provider: the first agent reply works.
    let out = kernel.cli(&["send", "defaults:1", "hello", "--wait"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("hello"), "{stdout}");
}

#[tokio::test]
async fn enabled_false_switches_a_bundled_app_off_and_config_get_shows_values_in_force() {
    let config = format!(
        "{FAST_CONFIG}[apps.files]\nenabled = false\n[apps.audit-log]\nenabled = false\n[apps.mcp]\nenabled = false\n"
    );
    let kernel = Kernel::start_as_written(&config).await;
    let echo = burrow_tests::poll_until(DEADLINE, || async {
        managed_running(&kernel).await == ["echo-provider"]
    })
    .await;
    assert!(echo, "running: {:?}", managed_running(&kernel).await);
    let apps = kernel.client().await.request("kernel.apps", json!({})).await.unwrap();
    let ids: Vec<&str> =
        apps["managed"].as_array().unwrap().iter().filter_map(|m| m["appId"].as_str()).collect();
    assert_eq!(ids, ["echo-provider"], "switched-off apps are not managed at all");

    // A default the file does not set is shown, not null.
    let out = kernel.cli(&["config", "get", "ipc.max_frame_bytes"]).await;
    assert!(out.status.success());
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), json!(8 * 1024 * 1024));
    let out = kernel.cli(&["config", "get", "ipc"]).await;
    let ipc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ipc["heartbeat_interval_ms"], 200, "the file's value");
    assert_eq!(ipc["call_timeout_ms"], 30_000, "the default");

    // --origin: each value with the line that set it, or the default.
    let out = kernel.cli(&["config", "get", "ipc", "--origin"]).await;
    let (stdout, _) = text(&out);
    let file = kernel.dir().join("burrow.toml");
    let set = format!("ipc.heartbeat_interval_ms = 200  # {}:2", file.display());
    assert!(stdout.lines().any(|l| l == set), "{stdout}");
    assert!(stdout.lines().any(|l| l == "ipc.call_timeout_ms = 30000  # built-in default"));
    let out = kernel.cli(&["config", "get", "apps.files.enabled", "--origin"]).await;
    let expected = format!("apps.files.enabled = false  # {}:6\n", file.display());
    assert_eq!(text(&out).0, expected);
}

#[tokio::test]
async fn a_mistyped_table_is_refused_at_start_on_reload_and_by_config_check() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[supervisr]\nmax_restarts = 2\n").unwrap();
    let hint = "unknown table [supervisr]; did you mean [supervisor]?";

    // `config check` needs no kernel.
    let check = |file: std::path::PathBuf| {
        let out = tokio::process::Command::new(burrow_tests::bin("burrow"))
            .args(["config", "check"])
            .arg(file)
            .env("BURROW_STATE_DIR", dir.path().join("state"))
            .kill_on_drop(true)
            .output();
        async move { tokio::time::timeout(DEADLINE, out).await.unwrap().unwrap() }
    };
    let out = check(bad.clone()).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains(hint), "{}", text(&out).1);
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[apps.files]\nenabled = false\n").unwrap();
    let out = check(good).await;
    assert!(out.status.success());
    assert!(text(&out).0.contains("managed apps: audit-log, echo-provider"), "{}", text(&out).0);

    // At start: the kernel does not run.
    let out = tokio::process::Command::new(burrow_tests::bin("burrow"))
        .arg("kernel")
        .arg("--socket")
        .arg(dir.path().join("k.sock"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--config")
        .arg(&bad)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(DEADLINE, out).await.unwrap().unwrap();
    assert_eq!(out.status.code(), Some(1));
    // Said once, as a sentence.
    assert_eq!(text(&out).1.matches(hint).count(), 1, "{}", text(&out).1);
    assert!(text(&out).1.lines().any(|l| l.starts_with("burrow: invalid config file")));

    // On reload: warned, and the configuration in force stays.
    let kernel = Kernel::start_with_config(FAST_CONFIG).await;
    let path = kernel.dir().join("burrow.toml");
    let edited =
        format!("{}[supervisr]\nmax_restarts = 2\n", std::fs::read_to_string(&path).unwrap());
    std::fs::write(&path, edited).unwrap();
    assert!(kernel.logged(hint).await, "{}", kernel.log());
    let out = kernel.cli(&["config", "get", "ipc.heartbeat_interval_ms"]).await;
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), json!(200));
}

#[tokio::test]
async fn a_client_whose_reader_went_away_ends_without_a_panic() {
    let kernel = Kernel::start().await;
    let mut child = tokio::process::Command::new(burrow_tests::bin("burrow"))
        .args(["config", "get", "--origin"])
        .env("BURROW_SOCKET", &kernel.socket)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The reader quits before reading anything, as `| head -0` would.
    drop(child.stdout.take());
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output()).await.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(matches!(out.status.code(), Some(0 | 141)), "{:?} {stderr}", out.status);
}

/// The README's configuration example, as a user would copy it.
fn readme_config() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let section = &readme[readme.find("### Configuration").expect("a Configuration section")..];
    let start = section.find("```toml\n").expect("a toml block") + "```toml\n".len();
    section[start..start + section[start..].find("```").expect("its end")].to_owned()
}

#[tokio::test]
async fn the_readmes_configuration_example_keeps_a_working_agent() {
    let kernel = Kernel::start_as_written(&readme_config()).await;
    let up = burrow_tests::poll_until(DEADLINE, || async {
        let running = managed_running(&kernel).await;
        running.iter().any(|r| r == "echo-provider") && running.iter().any(|r| r == "files")
    })
    .await;
    assert!(up, "running: {:?}\n{}", managed_running(&kernel).await, kernel.log());
    let out = kernel.cli(&["send", "readme:1", "/tool list_files {}", "--wait"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("Cargo.toml"), "the files app lists its folder: {stdout}");
    let out = kernel.cli(&["config", "get", "apps.watcher.color"]).await;
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), json!("blue"));
}
