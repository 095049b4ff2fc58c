//! Hosts written for Meerkat drive Burrow: the Python suite in `tests/python`, run with
//! Meerkat's own SDK (`meerkat-sdk`, pinned in `tests/python/requirements.txt`, installed
//! by `scripts/test-deps` into `target/venv`), against a real kernel with the bundled
//! echo provider, through the real `burrow-rpc`. The same suite drives `burrow mcp serve`
//! and the kernel's `/mcp` (`BURROW_HTTP`) with the Python `mcp` package's client
//! (`test_mcp_serve.py`; it starts example apps from `BURROW_BIN_DIR`), and
//! `tests/python-mcp1` does with the client of its 1.x line (`target/venv-mcp1`). Also `burrow-rpc`'s own contract: what
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

/// The Python of the virtual environment `target/<venv>`, installed by
/// `scripts/test-deps`.
fn python(venv: &str) -> PathBuf {
    let python = repo().join("target").join(venv).join("bin/python");
    assert!(
        python.exists(),
        "no Python environment at {}: run scripts/test-deps (scripts/test does)",
        python.display()
    );
    python
}

/// Runs the pytest suite in `suite` with `target/<venv>`'s Python against a kernel with
/// the bundled echo provider (streaming word by word, 5 ms apart) and REST, whose MCP
/// server serves three of the example tools (`test_mcp_serve.py`).
async fn python_suite(venv: &str, suite: &str) {
    let python = python(venv);
    let config = "[ipc]\nheartbeat_timeout_ms = 60000\n\
                  [apps.echo-provider.run]\nenv = { ECHO_WORD_DELAY_MS = \"5\" }\n\
                  [mcp]\nexpose = [\"echo\", \"clock_*\", \"fail\"]\n";
    let kernel = Kernel::start_with(config, &["--http", "127.0.0.1:0"]).await;
    let http = kernel.endpoint("http").await;
    let child = tokio::process::Command::new(python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", suite])
        .current_dir(repo())
        .env("BURROW_SOCKET", &kernel.socket)
        .env("MEERKAT_BIN_PATH", bin("burrow-rpc"))
        .env("BURROW_BIN_DIR", burrow_tests::bin_dir())
        .env("BURROW_HTTP", format!("http://{http}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run pytest");
    let out = match tokio::time::timeout(SUITE_DEADLINE, child.wait_with_output()).await {
        Ok(out) => out.expect("pytest's output"),
        Err(_) => panic!("the Python suite {suite} did not end within {SUITE_DEADLINE:?}"),
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(
        out.status.success(),
        "the Python suite {suite} failed:\n{}\n{}\nkernel log:\n{}",
        text(&out.stdout),
        text(&out.stderr),
        kernel.log()
    );
}

#[tokio::test]
async fn meerkats_python_sdk_drives_burrow() {
    python_suite("venv", "tests/python").await;
}

#[tokio::test]
async fn the_mcp_packages_1x_client_drives_burrows_mcp_server() {
    python_suite("venv-mcp1", "tests/python-mcp1").await;
}

#[tokio::test]
async fn burrow_rpc_waits_for_a_slow_host_and_ends_quietly_without_input() {
    let kernel = Kernel::start_with_config("[ipc]\nheartbeat_timeout_ms = 60000\n").await;
    let mut child = tokio::process::Command::new(bin("burrow-rpc"))
        .env("BURROW_SOCKET", &kernel.socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    // Longer than the kernel gives a silent connection to say what it speaks (10 s)
    // would be too slow for a test; what matters is that nothing is connected before
    // the first message, so a host may take its time: here, a blank line first.
    tokio::io::AsyncWriteExt::write_all(&mut stdin, b"\n").await.unwrap();
    let ask = b"{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": \"initialize\", \"params\": {}}\n";
    tokio::io::AsyncWriteExt::write_all(&mut stdin, ask).await.unwrap();
    let mut line = String::new();
    let read = tokio::io::AsyncBufReadExt::read_line(&mut stdout, &mut line);
    tokio::time::timeout(Duration::from_secs(15), read).await.expect("an answer").unwrap();
    let answer: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(answer["result"]["contract_version"], "0.9.6", "{answer}");
    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait()).await.expect("exits");
    assert!(status.unwrap().success());

    // No input at all: it ends at once, without connecting.
    let quiet = tokio::process::Command::new(bin("burrow-rpc"))
        .env("BURROW_SOCKET", kernel.dir().join("nowhere.sock"))
        .stdin(Stdio::null())
        .output();
    let quiet = tokio::time::timeout(Duration::from_secs(15), quiet).await.expect("exits").unwrap();
    assert!(quiet.status.success(), "{quiet:?}");
}

#[tokio::test]
async fn burrow_rpc_exits_with_the_reason_when_no_kernel_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(bin("burrow-rpc"))
        .env("BURROW_SOCKET", dir.path().join("none.sock"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // It connects once the host's first message is there, as the SDK's `initialize`.
    let mut stdin = child.stdin.take().unwrap();
    let hello = b"{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": \"initialize\", \"params\": {}}\n";
    tokio::io::AsyncWriteExt::write_all(&mut stdin, hello).await.unwrap();
    let out = child.wait_with_output();
    let out = tokio::time::timeout(Duration::from_secs(15), out).await.expect("exits").unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("burrow-rpc: cannot reach the kernel at"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout: the host reads JSON there");
}
