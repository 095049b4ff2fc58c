//! Hosts written for Meerkat drive Burrow: the Python suite in `tests/python`, run with
//! Meerkat's own SDK (`meerkat-sdk`, pinned in `tests/python/requirements.txt`, installed
//! by `scripts/test-deps` into `target/venv`), against a real kernel with the bundled
//! echo provider, through the real `burrow-rpc`. Also `burrow-rpc`'s own contract: what
//! it says when no kernel answers.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use burrow_tests::{Kernel, bin};

/// The whole Python suite may take this long.
const SUITE_DEADLINE: Duration = Duration::from_secs(300);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the repository")
}

/// The virtual environment's Python, installed by `scripts/test-deps`.
fn python() -> PathBuf {
    let python = repo().join("target/venv/bin/python");
    assert!(
        python.exists(),
        "no Python environment at {}: run scripts/test-deps (scripts/test does)",
        python.display()
    );
    python
}

#[tokio::test]
async fn meerkats_python_sdk_drives_burrow() {
    let python = python();
    // The echo provider streams word by word, 5 ms apart.
    let config = "[ipc]\nheartbeat_timeout_ms = 60000\n\
                  [apps.echo-provider.run]\nenv = { ECHO_WORD_DELAY_MS = \"5\" }\n";
    let kernel = Kernel::start_with_config(config).await;
    let child = tokio::process::Command::new(python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/python"])
        .current_dir(repo())
        .env("BURROW_SOCKET", &kernel.socket)
        .env("MEERKAT_BIN_PATH", bin("burrow-rpc"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run pytest");
    let out = match tokio::time::timeout(SUITE_DEADLINE, child.wait_with_output()).await {
        Ok(out) => out.expect("pytest's output"),
        Err(_) => panic!("the Python suite did not end within {SUITE_DEADLINE:?}"),
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(
        out.status.success(),
        "the Python suite failed:\n{}\n{}\nkernel log:\n{}",
        text(&out.stdout),
        text(&out.stderr),
        kernel.log()
    );
}

#[tokio::test]
async fn burrow_rpc_exits_with_the_reason_when_no_kernel_answers() {
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(bin("burrow-rpc"))
        .env("BURROW_SOCKET", dir.path().join("none.sock"))
        .stdin(Stdio::piped())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(15), out).await.expect("exits").unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("burrow-rpc: cannot reach the kernel at"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout: the host reads JSON there");
}
