//! The dashboard (`/ui`) in a real browser: a kernel with the echo provider and a managed
//! app, and `tests/ui/dashboard.test.mjs` driving headless Chromium (Debian's
//! `/usr/bin/chromium`) with Playwright (`playwright-core` from `tests/npm`) through the
//! Apps, Sessions, session and Kernel pages, and `tests/ui/token.test.mjs` through the
//! login of a kernel that requires a host token. The screenshots land in
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

pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the repository").to_path_buf()
}

pub(crate) fn chromium() -> PathBuf {
    std::env::var_os("BURROW_CHROMIUM").map_or_else(|| "/usr/bin/chromium".into(), PathBuf::from)
}

/// Fails, saying what to run, when Node.js, Chromium or Playwright is missing.
pub(crate) fn check_tools() {
    let how = "run .ci/run (or apt-get install chromium, then scripts/test-deps)";
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(node.is_ok_and(|o| o.status.success()), "the dashboard test needs Node.js: {how}");
    assert!(chromium().exists(), "the dashboard test needs {}: {how}", chromium().display());
    let playwright = repo().join("tests/npm/node_modules/playwright-core/package.json");
    assert!(playwright.exists(), "the dashboard test needs playwright-core in tests/npm: {how}");
}

/// Where the browser tests' screenshots go: `target/ui-screenshots/`.
pub(crate) fn screenshots() -> PathBuf {
    bin_dir().parent().unwrap_or(bin_dir()).join("ui-screenshots")
}

/// Runs the browser script `tests/ui/<script>` with Node.js against `kernel` (its HTTP
/// surface as `BURROW_UI_BASE`, the screenshots' directory and the browser passed too,
/// and `env`), its output straight to the test's (uncaptured: the screenshots' paths and
/// the figures it prints show in CI); fails with the kernel's log unless it exits 0
/// within `deadline`.
pub(crate) async fn run_script(
    script: &str,
    kernel: &Kernel,
    env: &[(&str, &std::ffi::OsStr)],
    deadline: Duration,
) {
    let base = format!("http://{}", kernel.endpoint("http").await);
    let child = tokio::process::Command::new("node")
        .arg(repo().join("tests/ui").join(script))
        .env("BURROW_UI_BASE", &base)
        .env("BURROW_UI_SCREENSHOTS", screenshots())
        .env("BURROW_CHROMIUM", chromium())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("run node");
    let status = match tokio::time::timeout(deadline, child.wait_with_output()).await {
        Ok(out) => out.expect("node's exit").status,
        Err(_) => panic!("tests/ui/{script} did not end within {deadline:?}"),
    };
    assert!(status.success(), "tests/ui/{script} failed ({status}); kernel log:\n{}", kernel.log());
}

#[tokio::test]
async fn the_dashboard_in_a_real_browser() {
    check_tools();
    let kernel = Kernel::start_with(CONFIG, &["--http", "127.0.0.1:0"]).await;
    let clock = bin("clock-tool");
    let env =
        [("BURROW_SOCKET", kernel.socket.as_os_str()), ("BURROW_CLOCK_TOOL", clock.as_os_str())];
    run_script("dashboard.test.mjs", &kernel, &env, RUN_DEADLINE).await;
}

/// A kernel that requires host tokens: the page loads without one, asks for it, and
/// then reads everything with it (its requests, the session's and the log's streams,
/// `/metrics`).
#[tokio::test]
async fn the_dashboard_of_a_kernel_that_requires_a_token() {
    check_tools();
    let config = format!("{CONFIG}[host]\nrequire_token = true\n");
    let mut token = String::new();
    let kernel = Kernel::start_prepared(&config, &["--http", "127.0.0.1:0"], |state| {
        let out = std::process::Command::new(bin("burrow"))
            .args(["token", "create", "--state-dir"])
            .arg(state)
            .output()
            .expect("burrow token create");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        token = String::from_utf8(out.stdout).expect("a token").trim().to_owned();
    })
    .await;
    let env = [("BURROW_UI_TOKEN", std::ffi::OsStr::new(&token))];
    run_script("token.test.mjs", &kernel, &env, RUN_DEADLINE).await;
}
