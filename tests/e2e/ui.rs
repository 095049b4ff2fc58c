//! The dashboard (`/ui`) in a real browser: a kernel with the echo provider and a managed
//! app, and `tests/ui/dashboard.test.mjs` driving headless Chromium (Debian's
//! `/usr/bin/chromium`) with Playwright (`playwright-core` from `tests/npm`) through the
//! Apps, Sessions, session and Kernel pages. The screenshots land in
//! `target/ui-screenshots/`, each path printed as `screenshot: PATH`.
//!
//! Needs Node.js, Chromium and the npm packages: `.ci/run` (or `scripts/test-deps`)
//! installs them; without them the test fails saying so, it does not skip.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use burrow_tests::{Kernel, bin, bin_dir};

/// The whole browser run, start to end.
const RUN_DEADLINE: Duration = Duration::from_secs(200);

/// Echo streams a word every 150 ms, so a page can be seen mid-answer; `greeter` is the
/// `hello` example, managed, not restarted when it dies; a secret to be redacted.
const CONFIG: &str = "[ipc]\nheartbeat_interval_ms = 500\nheartbeat_timeout_ms = 5000\n\
    [supervisor]\nbackoff_initial_ms = 100\nbackoff_max_ms = 400\n\
    [apps.echo-provider.run]\nenv = { ECHO_WORD_DELAY_MS = \"150\" }\n\
    [apps.greeter]\napi_key = \"sk-dashboard-secret\"\n\
    [apps.greeter.run]\ncommand = \"hello\"\nrestart = \"never\"\n";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the repository").to_path_buf()
}

fn chromium() -> PathBuf {
    std::env::var_os("BURROW_CHROMIUM").map_or_else(|| "/usr/bin/chromium".into(), PathBuf::from)
}

/// Fails, saying what to run, when Node.js, Chromium or Playwright is missing.
fn check_tools() {
    let how = "run .ci/run (or apt-get install chromium, then scripts/test-deps)";
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(node.is_ok_and(|o| o.status.success()), "the dashboard test needs Node.js: {how}");
    assert!(chromium().exists(), "the dashboard test needs {}: {how}", chromium().display());
    let playwright = repo().join("tests/npm/node_modules/playwright-core/package.json");
    assert!(playwright.exists(), "the dashboard test needs playwright-core in tests/npm: {how}");
}

#[tokio::test]
async fn the_dashboard_in_a_real_browser() {
    check_tools();
    let kernel = Kernel::start_with(CONFIG, &["--http", "127.0.0.1:0"]).await;
    let base = format!("http://{}", kernel.endpoint("http").await);
    let shots = bin_dir().parent().unwrap_or(bin_dir()).join("ui-screenshots");
    let child = tokio::process::Command::new("node")
        .arg(repo().join("tests/ui/dashboard.test.mjs"))
        .env("BURROW_UI_BASE", &base)
        .env("BURROW_SOCKET", &kernel.socket)
        .env("BURROW_CLOCK_TOOL", bin("clock-tool"))
        .env("BURROW_UI_SCREENSHOTS", &shots)
        .env("BURROW_CHROMIUM", chromium())
        .stdin(Stdio::null())
        // Straight to the test's output, uncaptured: the screenshots' paths show in CI.
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("run node");
    let status = match tokio::time::timeout(RUN_DEADLINE, child.wait_with_output()).await {
        Ok(out) => out.expect("node's exit").status,
        Err(_) => panic!("the dashboard test did not end within {RUN_DEADLINE:?}"),
    };
    assert!(
        status.success(),
        "tests/ui/dashboard.test.mjs failed ({status}); kernel log:\n{}",
        kernel.log()
    );
}
