//! The REST surface (`--http`), its server-sent events, apps' HTTP routes and gateway
//! methods, operator methods over `POST /rpc`, bearer tokens, `burrow rpc` on stdio, and
//! the `run`/`event` commands.

use std::process::Stdio;

use burrow_tests::{DEADLINE, Kernel, RawConn, Rpc, bin, http_client, poll_until};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const CONFIG: &str = "[ipc]\nheartbeat_timeout_ms = 60000\n";

#[tokio::test]
async fn rest_creates_sessions_sends_comms_and_streams_events() {
    let kernel = Kernel::start_with(CONFIG, &["--http", "127.0.0.1:0"]).await;
    let _echo = kernel.echo_provider().await;
    let base = format!("http://{}", kernel.endpoint("http").await);
    let http = http_client();

    let created = http
        .post(format!("{base}/sessions"))
        .json(&json!({"prompt": "You are a coordinator.", "keep_alive": true, "comms_name": "agent-a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["text"], "echo: You are a coordinator.", "{created}");
    let id = created["session_id"].as_str().unwrap().to_owned();

    let list: Value =
        http.get(format!("{base}/sessions")).send().await.unwrap().json().await.unwrap();
    assert!(
        list["sessions"].as_array().unwrap().iter().any(|s| s["session_id"] == json!(id)),
        "{list}"
    );
    let one: Value =
        http.get(format!("{base}/sessions/{id}")).send().await.unwrap().json().await.unwrap();
    // The host contract's view: the agent's model and provider.
    assert_eq!(
        (one["session_id"].as_str(), one["is_active"].clone()),
        (Some(id.as_str()), json!(true))
    );
    assert_eq!(
        (one["model"].as_str(), one["provider"].as_str()),
        (Some("echo"), Some("echo")),
        "{one}"
    );
    // Times as Meerkat's REST has them: RFC 3339 strings.
    let created = one["created_at"].as_str().unwrap_or_default();
    assert!(created.len() == 24 && created.ends_with('Z') && created.starts_with("20"), "{one}");
    let peers = http.get(format!("{base}/comms/peers?session_id={id}")).send().await.unwrap();
    assert_eq!(peers.status(), 200);
    let missing = http.get(format!("{base}/sessions/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(
        (body["code"].as_str(), body["error"].is_string()),
        (Some("NOT_FOUND"), true),
        "{body}"
    );
    let bad = http
        .post(format!("{base}/comms/send"))
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    // Follow the session's events, then wake it with input and with an external event.
    let mut events = http.get(format!("{base}/sessions/{id}/events")).send().await.unwrap();
    assert_eq!(events.status(), 200);
    let sent = http
        .post(format!("{base}/comms/send"))
        .json(&json!({"session_id": id, "kind": "input", "body": "status report"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200, "{:?}", sent.text().await);
    let ev = http
        .post(format!("{base}/sessions/{id}/external-events"))
        .json(&json!({"kind": "generic_json", "event_type": "deploy_complete", "payload": {"environment": "prod"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(ev.status(), 202);
    let receipt: Value = ev.json().await.unwrap();
    assert_eq!(
        (receipt["queued"].clone(), receipt["outcome_type"].clone()),
        (json!(true), json!("accepted")),
        "{receipt}"
    );

    // The host contract's envelopes, named by their payload's type.
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !(seen.contains("echo: status report")
        && seen.matches("event: run_completed").count() >= 2)
    {
        assert!(tokio::time::Instant::now() < deadline, "events not streamed; got:\n{seen}");
        let chunk =
            tokio::time::timeout_at(deadline, events.chunk()).await.expect("no event in time");
        match chunk.expect("stream failed") {
            Some(bytes) => seen.push_str(&String::from_utf8_lossy(&bytes)),
            None => panic!("the event stream ended; got:\n{seen}"),
        }
    }
    assert!(seen.starts_with("event: session_loaded"), "{seen}");
    assert!(seen.contains(r#"\"environment\":\"prod\""#), "the event's run's input: {seen}");

    // Another turn, an interrupt with nothing running, and the archive.
    let more = http
        .post(format!("{base}/sessions/{id}/messages"))
        .json(&json!({"session_id": id, "prompt": "and more"}))
        .send()
        .await
        .unwrap();
    assert_eq!(more.status(), 200);
    let more: Value = more.json().await.unwrap();
    assert_eq!(
        (more["text"].as_str(), more["session_id"].as_str()),
        (Some("echo: and more"), Some(id.as_str())),
        "{more}"
    );
    let stop = http.post(format!("{base}/sessions/{id}/interrupt")).send().await.unwrap();
    assert_eq!(stop.status(), 200);
    let stop: Value = stop.json().await.unwrap();
    assert_eq!(stop["interrupted"], true, "{stop}");
    let archived = http.delete(format!("{base}/sessions/{id}")).send().await.unwrap();
    assert_eq!(archived.status(), 200);
    assert_eq!(
        archived.json::<Value>().await.unwrap(),
        json!({"session_id": id, "archived": true})
    );
    let listed: Value =
        http.get(format!("{base}/sessions")).send().await.unwrap().json().await.unwrap();
    assert!(!listed.to_string().contains(&id), "archived sessions are not listed: {listed}");
    let gone = http.delete(format!("{base}/sessions/nope")).send().await.unwrap();
    assert_eq!(gone.status(), 404);
}

#[tokio::test]
async fn app_routes_and_gateway_methods_are_served_to_hosts() {
    let kernel =
        Kernel::start_with(CONFIG, &["--http", "127.0.0.1:0", "--rpc-tcp", "127.0.0.1:0"]).await;
    let mut app = RawConn::app(
        &kernel.socket,
        json!({"id": "weather", "version": "1.0.0", "capabilities": {"gatewayMethods": ["weather.*"], "httpRoutes": ["/apps/weather/*"]}}),
    )
    .await;
    let r = app
        .call(
            "capability.register",
            json!({"type": "gateway_method", "config": {"method": "weather.now"}}),
        )
        .await;
    assert_eq!(r["result"]["granted"], true, "{r}");
    let r = app
        .call("capability.register", json!({"type": "http_route", "config": {"method": "GET", "path": "/apps/weather/today"}}))
        .await;
    assert_eq!(r["result"]["granted"], true, "{r}");

    let addr = kernel.endpoint("rpc_tcp").await;
    let call = tokio::spawn(async move {
        let mut rpc = Rpc::connect(addr).await;
        rpc.ok("weather.now", json!({"city": "Oslo"})).await
    });
    let inv = app.expect_method("gateway.invoke").await;
    assert_eq!(inv["params"]["params"]["city"], "Oslo");
    assert_eq!(inv["params"]["caller"], "host:rpc");
    app.answer(&inv["id"], json!({"tempC": 3})).await;
    assert_eq!(call.await.unwrap(), json!({"tempC": 3}));

    let base = format!("http://{}", kernel.endpoint("http").await);
    let get = tokio::spawn(async move {
        http_client().get(format!("{base}/apps/weather/today?unit=c")).send().await.unwrap()
    });
    let req = app.expect_method("http.request").await;
    assert_eq!(
        (req["params"]["method"].clone(), req["params"]["path"].clone()),
        (json!("GET"), json!("/apps/weather/today"))
    );
    assert_eq!(req["params"]["query"]["unit"], "c");
    app.answer(
        &req["id"],
        json!({"status": 200, "headers": {"content-type": "text/plain"}, "body": "sunny"}),
    )
    .await;
    let resp = get.await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "sunny");
}

/// Posts a JSON-RPC request (or batch) to `/rpc`; the answer.
async fn post_rpc(base: &str, body: Value) -> Value {
    let response = http_client().post(format!("{base}/rpc")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn request(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

#[tokio::test]
async fn operator_methods_are_host_methods_over_rpc() {
    let config = format!(
        "{CONFIG}[apps.greeter]\ntoken = \"s3cret-value\"\n[apps.greeter.run]\ncommand = \"hello\"\n"
    );
    let kernel = Kernel::start_with(&config, &["--http", "127.0.0.1:0"]).await;
    let base = format!("http://{}", kernel.endpoint("http").await);
    let greeter = || async {
        let apps = post_rpc(&base, request(1, "kernel.apps", json!({}))).await;
        apps["result"]["managed"].as_array().and_then(|m| m.first().cloned()).unwrap_or_default()
    };
    assert!(
        poll_until(DEADLINE, || async { greeter().await["state"] == "running" }).await,
        "{}",
        kernel.log()
    );
    let pid = greeter().await["pid"].clone();

    let answers = post_rpc(
        &base,
        json!([
            request(1, "kernel.info", json!({})),
            request(2, "session.list", json!({"filter": {"agentId": "main"}, "limit": 1})),
            request(3, "supervisor.tail", json!({"appId": "greeter", "lines": 50})),
            request(4, "supervisor.tail", json!({"appId": "ghost"})),
            request(5, "kernel.config", json!({})),
            request(6, "config.get", json!({})),
            request(7, "supervisor.logs", json!({"appId": "greeter"})),
        ]),
    )
    .await;
    let by_id = |id: u64| {
        answers.as_array().unwrap().iter().find(|a| a["id"] == id).cloned().unwrap_or_default()
    };
    assert!(by_id(1)["result"]["version"].is_string(), "{answers}");
    assert_eq!(by_id(2)["result"]["total"], 0, "{answers}");
    let tail = by_id(3)["result"]["lines"].as_array().cloned().unwrap_or_default();
    assert!(tail.iter().any(|l| l.as_str().unwrap_or("").contains("hello")), "{answers}");
    assert_eq!(by_id(4)["error"]["code"], -32044, "NOT_FOUND: {answers}");
    let shown = &by_id(5)["result"];
    assert_eq!(shown["config"]["apps"]["greeter"]["token"], "[redacted]", "{answers}");
    assert!(shown["redacted"].as_array().unwrap().contains(&json!("apps.greeter.token")));
    assert!(!answers.to_string().contains("s3cret-value"), "{answers}");
    // What needs an app's connection, or streams, is not on the host surfaces.
    for id in [6, 7] {
        assert_eq!(by_id(id)["error"]["code"], -32601, "METHOD_NOT_FOUND: {answers}");
    }

    // The supervisor's controls: answered once the restart has taken effect.
    let restarted =
        post_rpc(&base, request(8, "supervisor.restart", json!({"appId": "greeter"}))).await;
    assert_eq!(restarted["result"]["ok"], true, "{restarted}");
    let now = greeter().await;
    assert!(now["state"] == "running" && now["pid"] != pid, "{now}");

    // An app reaching kernel.config through host.call is refused: it reads config.get.
    let app = kernel.registered_client("nosy").await;
    let e = app.request("host.call", json!({"method": "kernel.config"})).await.unwrap_err();
    assert_eq!(e.code(), Some(burrow_protocol::ErrorCode::Forbidden), "{e:?}");
}

#[tokio::test]
async fn a_surface_that_requires_a_token_refuses_requests_without_one() {
    let config = format!("{CONFIG}\n[host]\nrequire_token = true\n");
    let args = ["--http", "127.0.0.1:0", "--rpc-tcp", "127.0.0.1:0"];
    // Without any token, a surface that requires one does not start.
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("burrow.toml"), burrow_tests::bundled_off(&config)).unwrap();
    let out = tokio::process::Command::new(bin("burrow"))
        .arg("kernel")
        .arg("--socket")
        .arg(empty.path().join("k.sock"))
        .arg("--state-dir")
        .arg(empty.path().join("state"))
        .arg("--config")
        .arg(empty.path().join("burrow.toml"))
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(DEADLINE, out).await.expect("the kernel did not exit").unwrap();
    assert!(!out.status.success(), "a kernel requiring tokens started without any");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("token create"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut token = String::new();
    let kernel = Kernel::start_prepared(&config, &args, |state| {
        let out = std::process::Command::new(bin("burrow"))
            .args(["token", "create", "--state-dir"])
            .arg(state)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    })
    .await;
    assert!(token.starts_with("brw_"), "{token}");

    let base = format!("http://{}", kernel.endpoint("http").await);
    let http = http_client();
    let anon = http.get(format!("{base}/sessions")).send().await.unwrap();
    assert_eq!(anon.status(), 401);
    let wrong = http.get(format!("{base}/sessions")).bearer_auth("brw_wrong").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let ok = http.get(format!("{base}/sessions")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(ok.status(), 200);

    let mut rpc = Rpc::connect(kernel.endpoint("rpc_tcp").await).await;
    let refused = rpc.call("session/list", json!({})).await;
    assert_eq!(refused["error"]["code"], -32040, "{refused}");
    let bad = rpc.call("rpc/authenticate", json!({"token": "brw_wrong"})).await;
    assert_eq!(bad["error"]["code"], -32040, "{bad}");
    rpc.ok("rpc/authenticate", json!({"token": token})).await;
    rpc.ok("session/list", json!({})).await;
}

#[tokio::test]
async fn burrow_rpc_serves_json_rpc_on_stdio_and_the_cli_runs_sessions_and_events() {
    let kernel = Kernel::start_with_config(CONFIG).await;
    let _echo = kernel.echo_provider().await;
    let mut rpc = tokio::process::Command::new(bin("burrow"))
        .arg("rpc")
        .env("BURROW_SOCKET", &kernel.socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = rpc.stdin.take().unwrap();
    let mut stdout = BufReader::new(rpc.stdout.take().unwrap()).lines();
    let req = json!({"jsonrpc": "2.0", "id": 1, "method": "session/create", "params": {"prompt": "hi", "keep_alive": true, "comms_name": "stdio-peer"}});
    stdin.write_all(format!("{req}\n").as_bytes()).await.unwrap();
    // The turn's steps come as `session/event` notifications, then its answer.
    let mut steps = Vec::new();
    let answer = loop {
        let line = tokio::time::timeout(DEADLINE, stdout.next_line()).await.unwrap().unwrap();
        let line: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if line.get("id").is_some() {
            break line;
        }
        assert_eq!(line["method"], "session/event", "{line}");
        steps.push(line["params"]["event"]["payload"]["type"].as_str().unwrap().to_owned());
    };
    assert_eq!(
        (answer["id"].clone(), answer["result"]["text"].clone()),
        (json!(1), json!("echo: hi")),
        "{answer}"
    );
    assert_eq!(steps.first().map(String::as_str), Some("run_started"), "{steps:?}");
    assert_eq!(steps.last().map(String::as_str), Some("run_completed"), "{steps:?}");
    let id = answer["result"]["session_id"].as_str().unwrap().to_owned();

    // `burrow event` appends a durable event; the session answers it.
    let event =
        ["event", &id, "deploy_complete", r#"{"release": "1.2"}"#, "--idempotency-key", "r1.2"];
    let out = kernel.cli(&event).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let receipt: Value = serde_json::from_slice(&out.stdout).unwrap();
    // Sent again, it is not taken again.
    let again: Value = serde_json::from_slice(&kernel.cli(&event).await.stdout).unwrap();
    assert_eq!(
        (again["status"].clone(), again["event_id"].clone()),
        (json!("deduplicated"), receipt["event_id"].clone()),
        "{again}"
    );
    let wait = json!({"jsonrpc": "2.0", "id": 2, "method": "run/wait", "params": {"run_id": receipt["run_id"], "timeout_ms": 15000}});
    stdin.write_all(format!("{wait}\n").as_bytes()).await.unwrap();
    let line = tokio::time::timeout(DEADLINE, stdout.next_line()).await.unwrap().unwrap().unwrap();
    let done: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(done["result"]["status"], "completed", "{done}");

    // `burrow run --keep-alive` prints the first answer, then follows the session.
    let mut run = tokio::process::Command::new(bin("burrow"))
        .args(["run", "--comms-name", "runner", "--keep-alive", "You are a coordinator."])
        .env("BURROW_SOCKET", &kernel.socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut run_out = BufReader::new(run.stdout.take().unwrap()).lines();
    let mut run_err = BufReader::new(run.stderr.take().unwrap()).lines();
    let first =
        tokio::time::timeout(DEADLINE, run_out.next_line()).await.unwrap().unwrap().unwrap();
    assert_eq!(first, "echo: You are a coordinator.");
    let session_line =
        tokio::time::timeout(DEADLINE, run_err.next_line()).await.unwrap().unwrap().unwrap();
    let runner = session_line.strip_prefix("session ").unwrap().to_owned();
    let send = json!({"jsonrpc": "2.0", "id": 3, "method": "comms/send", "params": {"session_id": id, "kind": "peer_message", "to": runner, "body": "ping"}});
    stdin.write_all(format!("{send}\n").as_bytes()).await.unwrap();
    let mut lines = Vec::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !lines.iter().any(|l: &String| l.starts_with("echo: [peer_message from stdio-peer")) {
        let line = tokio::time::timeout_at(deadline, run_out.next_line())
            .await
            .unwrap_or_else(|_| panic!("`burrow run` printed only {lines:?}"))
            .unwrap()
            .unwrap();
        lines.push(line);
    }
    assert!(lines.iter().any(|l| l == "<< peer_message from stdio-peer: ping"), "{lines:?}");
}
