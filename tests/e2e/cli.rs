//! The `burrow` CLI against a real kernel.

use burrow_tests::Kernel;
use serde_json::Value;

fn stdout_json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout))
    })
}

#[tokio::test]
async fn info_apps_and_call() {
    let kernel = Kernel::start().await;
    let mut app = kernel.hello("listed").await;
    app.wait_line("hello: ready as listed").await;

    let out = kernel.cli(&["info"]).await;
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("apps:     1"), "{text}");

    let info = stdout_json(&kernel.cli(&["info", "--json"]).await);
    assert_eq!(info["protocolVersion"], "1.0");

    let out = kernel.cli(&["apps"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("listed") && text.contains("connected-unmanaged") && text.contains("0.1.0"),
        "{text}"
    );
    let apps = stdout_json(&kernel.cli(&["apps", "--json"]).await);
    assert_eq!(apps["apps"][0]["appId"], "listed");

    let out = kernel.cli(&["call", "kernel.info", "{}"]).await;
    assert!(out.status.success());
    assert_eq!(stdout_json(&out)["apps"], 1);

    // An error answer: non-zero exit, a sentence on stderr with the code and what to do.
    let out = kernel.cli(&["call", "capability.register", r#"{"type": "tool"}"#]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut lines = stderr.lines();
    let first = lines.next().unwrap_or_default();
    assert!(first.starts_with("burrow: ") && first.ends_with(" (APP_NOT_REGISTERED)"), "{stderr}");
    assert_eq!(lines.next(), Some("hint: this method is for registered apps: pass --register"));
    // With --json, the error object.
    let out = kernel.cli(&["call", "no.such.method", "--json"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err: Value = serde_json::from_slice(&out.stderr).expect("error JSON on stderr");
    assert_eq!(err["code"], "METHOD_NOT_FOUND");
    let out = kernel.cli(&["call", "no.such.method"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr, "burrow: no method \"no.such.method\" (METHOD_NOT_FOUND)\n");
    // A session that does not exist is not found, like other lookups.
    let out = kernel.cli(&["history", "no-such-session"]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("burrow: no session \"no-such-session\" (NOT_FOUND)\n"), "{stderr}");
    // A heartbeat keeps any connection alive, registered or not.
    let out = kernel.cli(&["call", "app.heartbeat"]).await;
    assert!(out.status.success());
    assert_eq!(stdout_json(&out)["ok"], true);

    let out = kernel.cli(&["call", "kernel.info", "{not json"]).await;
    assert!(!out.status.success());
}

#[tokio::test]
async fn cli_without_a_kernel_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(burrow_tests::bin("burrow"))
        .args(["info", "--socket"])
        .arg(dir.path().join("nothing.sock"))
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("burrow: cannot reach the kernel at "), "{stderr}");
    assert!(stderr.contains("(CONNECTION_CLOSED)\nhint: is `burrow kernel` running?"), "{stderr}");
}

#[tokio::test]
async fn json_logs() {
    let kernel_dir = tempfile::tempdir().unwrap();
    let socket = kernel_dir.path().join("k.sock");
    let child = tokio::process::Command::new(burrow_tests::bin("burrow"))
        .args(["kernel", "--log-format", "json", "--state-dir"])
        .arg(kernel_dir.path().join("state"))
        .arg("--socket")
        .arg(&socket)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let up = burrow_tests::poll_until(burrow_tests::DEADLINE, || {
        let socket = socket.clone();
        async move { burrow_sdk::Client::connect(&socket).await.is_ok() }
    })
    .await;
    assert!(up);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = tokio::time::timeout(burrow_tests::DEADLINE, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
    }
    assert!(stderr.contains("kernel listening"));
}

#[tokio::test]
async fn default_paths_follow_xdg_and_burrow_socket_overrides_them() {
    let home = tempfile::tempdir().unwrap();
    let runtime = home.path().join("rt");
    std::fs::create_dir(&runtime).unwrap();
    let env = |cmd: &mut tokio::process::Command| {
        cmd.env("HOME", home.path())
            .env("XDG_RUNTIME_DIR", &runtime)
            .env("XDG_STATE_HOME", home.path().join("state"))
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .env_remove("BURROW_SOCKET")
            .env_remove("BURROW_STATE_DIR")
            .env_remove("BURROW_CONFIG")
            .kill_on_drop(true);
    };
    let mut kernel = tokio::process::Command::new(burrow_tests::bin("burrow"));
    kernel.arg("kernel").stderr(std::process::Stdio::null());
    env(&mut kernel);
    let mut kernel = kernel.spawn().unwrap();
    let socket = runtime.join("burrow").join("kernel.sock");
    let up = burrow_tests::poll_until(burrow_tests::DEADLINE, || {
        let socket = socket.clone();
        async move { burrow_sdk::Client::connect(&socket).await.is_ok() }
    })
    .await;
    assert!(up, "no socket at {}", socket.display());
    assert!(home.path().join("state/burrow/kernel.key").is_file());
    // A client with the same environment finds it without being told.
    let mut info = tokio::process::Command::new(burrow_tests::bin("burrow"));
    info.args(["info", "--json"]);
    env(&mut info);
    let out = info.output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // BURROW_SOCKET wins over the defaults, for clients and kernels alike.
    let elsewhere = home.path().join("elsewhere.sock");
    let mut second = tokio::process::Command::new(burrow_tests::bin("burrow"));
    second.arg("kernel").arg("--state-dir").arg(home.path().join("state2"));
    env(&mut second);
    second.env("BURROW_SOCKET", &elsewhere).stderr(std::process::Stdio::null());
    let mut second = second.spawn().unwrap();
    let up = burrow_tests::poll_until(burrow_tests::DEADLINE, || {
        let socket = elsewhere.clone();
        async move { burrow_sdk::Client::connect(&socket).await.is_ok() }
    })
    .await;
    assert!(up, "BURROW_SOCKET not honoured by the kernel");
    for child in [&mut kernel, &mut second] {
        let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let status =
            tokio::time::timeout(burrow_tests::DEADLINE, child.wait()).await.unwrap().unwrap();
        assert!(status.success());
    }
}

#[tokio::test]
async fn tools_hooks_call_tool_and_config_get() {
    use burrow_tests::RawConn;
    use serde_json::json;
    let kernel = Kernel::start_with_config(&format!(
        "{}[apps.shop]\ncurrency = \"EUR\"\n",
        burrow_tests::FAST_CONFIG
    ))
    .await;
    let manifest = json!({"id": "shop", "version": "2.0.0", "capabilities": {"tools": ["*"], "hooks": {"subscribe": ["app_*"]}}});
    let mut shop = RawConn::app(&kernel.socket, manifest).await;
    shop.register_tool("price", Some(5000)).await;
    shop.call("hook.subscribe", json!({"events": ["app_*"]})).await;

    let out = kernel.cli(&["tools"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("price") && text.contains("shop") && text.contains("5000ms"), "{text}");
    let tools = stdout_json(&kernel.cli(&["tools", "--json"]).await);
    assert_eq!(tools["capabilities"][0]["config"]["name"], "price");

    let out = kernel.cli(&["hooks"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("shop") && text.contains("observes:    app_*"), "{text}");

    // call-tool: the CLI registers as an app, the tool answers, the result is printed.
    let cli = tokio::spawn({
        let socket = kernel.socket.clone();
        async move {
            tokio::process::Command::new(burrow_tests::bin("burrow"))
                .args(["call-tool", "price", r#"{"item": "apple"}"#])
                .env("BURROW_SOCKET", socket)
                .output()
                .await
                .unwrap()
        }
    });
    let invoke = shop.expect_method("tool.invoke").await;
    assert_eq!(invoke["params"]["arguments"], json!({"item": "apple"}));
    shop.answer(&invoke["id"], json!({"content": {"cents": 42}})).await;
    let out = cli.await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout_json(&out)["content"]["cents"], 42);

    let out = kernel.cli(&["call-tool", "missing", "--json"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(err["code"], "NOT_FOUND");
    let out = kernel.cli(&["call-tool", "missing"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("burrow: ") && stderr.contains("(NOT_FOUND)"), "{stderr}");

    let out = kernel.cli(&["config", "get", "apps.shop.currency"]).await;
    assert_eq!(stdout_json(&out), json!("EUR"));
    let out = kernel.cli(&["config", "get", "ipc.heartbeat_timeout_ms"]).await;
    assert_eq!(stdout_json(&out), json!(1000));
    let out = kernel.cli(&["config", "get", "no.such.path"]).await;
    assert_eq!(stdout_json(&out), Value::Null);
}

#[tokio::test]
async fn completions_for_each_shell_and_quiet_logs_for_cli_connections() {
    let kernel = Kernel::start().await;
    let out = kernel.cli(&["completions", "bash"]).await;
    assert!(out.status.success());
    let script = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(script.contains("_burrow()") && script.contains("kernels"), "{script}");
    // bash reads it without a syntax error.
    let path = kernel.dir().join("burrow.bash");
    std::fs::write(&path, &script).unwrap();
    let checked = tokio::process::Command::new("bash").arg("-n").arg(&path).output().await;
    if let Ok(checked) = checked {
        assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stderr));
    }
    for shell in ["zsh", "fish"] {
        let out = kernel.cli(&["completions", shell]).await;
        assert!(out.status.success() && !out.stdout.is_empty(), "{shell}");
    }
    let out = kernel.cli(&["completions", "tcsh"]).await;
    assert_eq!(out.status.code(), Some(2));

    // A command that registers to call leaves no trace in the kernel's log at info.
    let out = kernel.cli(&["sessions"]).await;
    assert!(out.status.success());
    let mut hello = kernel.hello("visible").await;
    hello.wait_line("hello: ready as visible").await;
    assert!(kernel.logged("app ready").await);
    let log = kernel.log();
    let cli_lines: Vec<&str> = log.lines().filter(|l| l.contains("cli-")).collect();
    assert!(cli_lines.is_empty(), "{cli_lines:?}");
}
