//! PROTOCOL.md §2–3 against the real kernel: malformed, oversize, zero-length and non-map
//! frames, string ids, unknown methods, bad params, pipelining.

use std::time::Duration;

use burrow_tests::{Kernel, RawConn};
use serde_json::{Value, json};

fn error_code(resp: &Value) -> &str {
    resp["error"]["code"].as_str().unwrap_or_else(|| panic!("not an error: {resp}"))
}

/// The connection still works: kernel.info answers on it.
async fn still_open(raw: &mut RawConn) {
    raw.request(999, "kernel.info", json!({})).await;
    let resp = raw.recv_json().await;
    assert_eq!(resp["id"], 999, "{resp}");
    assert!(resp["result"]["version"].is_string(), "{resp}");
}

#[tokio::test]
async fn malformed_frames_get_invalid_request_and_the_connection_stays_open() {
    let kernel = Kernel::start().await;
    let mut raw = kernel.raw().await;

    // Not MessagePack at all.
    raw.send_body(&[0xc1, 0xff, 0x00]).await;
    let resp = raw.recv_json().await;
    assert_eq!(error_code(&resp), "INVALID_REQUEST");
    assert!(resp.get("id").is_none(), "{resp}");
    still_open(&mut raw).await;

    // Zero-length frame.
    raw.send_bytes(&[0, 0, 0, 0]).await;
    assert_eq!(error_code(&raw.recv_json().await), "INVALID_REQUEST");
    still_open(&mut raw).await;

    // A value that is not a map.
    raw.send_value(&json!([1, 2, 3])).await;
    assert_eq!(error_code(&raw.recv_json().await), "INVALID_REQUEST");
    raw.send_value(&json!("just a string")).await;
    assert_eq!(error_code(&raw.recv_json().await), "INVALID_REQUEST");
    still_open(&mut raw).await;

    // A map that is not a message keeps its id in the error.
    raw.send_value(&json!({"id": 5, "method": 42})).await;
    let resp = raw.recv_json().await;
    assert_eq!((error_code(&resp), &resp["id"]), ("INVALID_REQUEST", &json!(5)));
    raw.send_value(&json!({"id": "str-id", "neither": true})).await;
    let resp = raw.recv_json().await;
    assert_eq!((error_code(&resp), &resp["id"]), ("INVALID_REQUEST", &json!("str-id")));

    // Trailing bytes after the value.
    let mut body = rmp_serde::to_vec_named(&json!({"id": 6, "method": "kernel.info"})).unwrap();
    body.push(0xc0);
    raw.send_body(&body).await;
    assert_eq!(error_code(&raw.recv_json().await), "INVALID_REQUEST");
    still_open(&mut raw).await;
}

#[tokio::test]
async fn oversize_frame_gets_an_error_then_the_connection_closes() {
    let kernel = Kernel::start_with_config(
        "[ipc]\nmax_frame_bytes = 1024\nheartbeat_interval_ms = 200\nheartbeat_timeout_ms = 1000\n",
    )
    .await;
    let mut raw = kernel.raw().await;
    raw.send_bytes(&(10_000u32).to_be_bytes()).await;
    let resp = raw.recv_json().await;
    assert_eq!(error_code(&resp), "INVALID_REQUEST");
    assert!(resp.get("id").is_none(), "{resp}");
    assert!(raw.recv().await.is_none(), "connection should be closed");
    // The kernel is fine.
    kernel.client().await.kernel_info().await.expect("kernel still serves");
}

#[tokio::test]
async fn string_ids_unknown_methods_and_bad_params() {
    let kernel = Kernel::start().await;
    let mut raw = kernel.raw().await;

    raw.send_value(&json!({"id": "abc", "method": "kernel.info"})).await;
    let resp = raw.recv_json().await;
    assert_eq!(resp["id"], "abc");
    assert_eq!(resp["result"]["protocolVersion"], "1.0");

    raw.request(2, "capability.register", json!({"type": "tool"})).await;
    assert_eq!(error_code(&raw.recv_json().await), "APP_NOT_REGISTERED");
    // A heartbeat is allowed before registering: any client keeps itself alive with it.
    raw.request(21, "app.heartbeat", json!({})).await;
    assert_eq!(raw.recv_json().await["result"]["ok"], true);
    raw.request(3, "no.such.method", json!({})).await;
    assert_eq!(error_code(&raw.recv_json().await), "METHOD_NOT_FOUND");

    raw.request(4, "app.register", json!({"protocolVersion": "1.0"})).await;
    let resp = raw.recv_json().await;
    assert_eq!(error_code(&resp), "INVALID_PARAMS");
    assert_eq!(resp["error"]["data"]["field"], "manifest");

    raw.request(
        5,
        "app.register",
        json!({"manifest": {"id": "Bad", "version": "1.0.0"}, "protocolVersion": "1.0"}),
    )
    .await;
    let resp = raw.recv_json().await;
    assert_eq!(resp["error"]["data"]["field"], "manifest.id", "{resp}");

    raw.request(
        6,
        "app.register",
        json!({"manifest": {"id": "ok", "version": 7}, "protocolVersion": "1.0"}),
    )
    .await;
    let resp = raw.recv_json().await;
    assert_eq!(resp["error"]["data"]["field"], "manifest.version", "{resp}");

    raw.request(
        7,
        "app.register",
        json!({"manifest": {"id": "ok", "version": "1.0.0"}, "protocolVersion": "2.0"}),
    )
    .await;
    let resp = raw.recv_json().await;
    assert_eq!(error_code(&resp), "INVALID_REQUEST");
    assert_eq!(resp["error"]["data"]["supported"], json!(["1.0"]));

    raw.request(8, "app.register", json!("not a map")).await;
    let resp = raw.recv_json().await;
    assert_eq!(resp["error"]["data"]["field"], "params", "{resp}");

    let reg = raw.register("ok", None).await;
    assert_eq!(reg["result"]["appId"], "ok", "{reg}");
    raw.request(9, "no.such.method", json!({})).await;
    let resp = raw.recv_json().await;
    assert_eq!(error_code(&resp), "METHOD_NOT_FOUND");
    assert_eq!(resp["error"]["data"]["method"], "no.such.method");

    raw.request(
        10,
        "app.register",
        json!({"manifest": {"id": "ok", "version": "1.0.0"}, "protocolVersion": "1.0"}),
    )
    .await;
    assert_eq!(error_code(&raw.recv_json().await), "INVALID_REQUEST");

    // Notifications get no answer, known or not: the next answer is for id 11.
    raw.send_value(&json!({"method": "whatever"})).await;
    raw.request(11, "app.heartbeat", json!({"status": {"load": 1}})).await;
    let resp = raw.recv_json().await;
    assert_eq!(resp["id"], 11);
    assert_eq!(resp["result"]["ok"], true);
    assert!(resp["result"]["serverTime"].as_u64().unwrap() > 1_600_000_000_000);
}

#[tokio::test]
async fn pipelining_a_thousand_requests_returns_a_thousand_matching_answers() {
    let kernel = Kernel::start().await;
    let mut raw = kernel.raw().await;
    assert_eq!(raw.register("pipeliner", None).await["result"]["appId"], "pipeliner");
    let mut batch = Vec::new();
    for i in 0..1000u64 {
        let (method, id) = if i % 2 == 0 {
            ("app.heartbeat", json!(i))
        } else {
            ("kernel.info", json!(format!("s{i}")))
        };
        let body = rmp_serde::to_vec_named(&json!({"id": id, "method": method})).unwrap();
        batch.extend_from_slice(&(body.len() as u32).to_be_bytes());
        batch.extend_from_slice(&body);
    }
    raw.send_bytes(&batch).await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..1000 {
        let resp = raw.recv_json().await;
        let id = resp["id"].clone();
        let expect_heartbeat = id.is_u64();
        if expect_heartbeat {
            assert_eq!(resp["result"]["ok"], true, "{resp}");
        } else {
            assert_eq!(resp["result"]["protocolVersion"], "1.0", "{resp}");
        }
        assert!(seen.insert(id.to_string()), "duplicate answer {id}");
    }
    assert_eq!(seen.len(), 1000);
}

#[tokio::test]
async fn deeply_nested_frames_are_refused_and_the_kernel_survives() {
    let kernel = Kernel::start().await;
    let mut raw = kernel.raw().await;
    // A 1 KB frame nesting 1000 arrays: small, but deep enough to exhaust a naive
    // recursive decoder's stack.
    let mut body = rmp_serde::to_vec_named(&json!({"id": 77, "method": "app.heartbeat"})).unwrap();
    body[0] += 1; // one more map entry: "params" → [[[...]]]
    body.push(0xa6);
    body.extend_from_slice(b"params");
    body.extend(std::iter::repeat_n(0x91u8, 1000));
    body.push(0xc0);
    raw.send_body(&body).await;
    let resp = raw.recv_json().await;
    assert_eq!(error_code(&resp), "INVALID_REQUEST", "{resp}");
    assert_eq!(resp["id"], 77);
    still_open(&mut raw).await;
}

/// `levels` maps, each in the one before: `{"a": {"a": ... {}}}`.
fn nested(levels: usize) -> Value {
    (1..levels).fold(json!({}), |inner, _| json!({ "a": inner }))
}

/// The kernel takes frames nested at most `MAX_DEPTH_TO_KERNEL` deep (docs/protocol.md
/// §2), so whatever metadata it takes comes back in a history page that a reader taking
/// `MAX_DEPTH` can read. It took metadata 126 levels deep before, and the SDK could not
/// read the history page holding it.
#[tokio::test]
async fn metadata_the_kernel_takes_comes_back_in_a_history_page_an_app_can_read() {
    use burrow_protocol::codec::MAX_DEPTH_TO_KERNEL;
    use burrow_protocol::methods::app::{AppRegister, PROTOCOL_VERSION, RegisterParams};

    let kernel = Kernel::start_with_config("[agents.main]\nauto_reply = false\n").await;
    let client = kernel.client().await;
    let params = RegisterParams {
        manifest: burrow_protocol::Manifest::new("deep", "1.0.0"),
        protocol_version: PROTOCOL_VERSION.into(),
        token: None,
    };
    client.call::<AppRegister>(params).await.expect("register");
    // The frame, its params and the metadata's own levels.
    let deepest = MAX_DEPTH_TO_KERNEL - 2;
    for levels in [2, deepest - 1, deepest, deepest + 1, deepest + 16] {
        let key = format!("deep-{levels}");
        let metadata = nested(levels);
        let sent = client
            .request(
                "message.dispatch",
                json!({"sessionKey": key, "content": "deep", "metadata": metadata}),
            )
            .await;
        if levels > deepest {
            let e = sent.expect_err("too deep for the kernel");
            assert!(e.to_string().contains("INVALID_REQUEST"), "{levels} levels: {e}");
            continue;
        }
        sent.unwrap_or_else(|e| panic!("{levels} levels refused: {e}"));
        let page = client
            .request_with_timeout("session.history", json!({"key": key}), burrow_tests::DEADLINE)
            .await
            .unwrap_or_else(|e| panic!("history with {levels} levels of metadata: {e}"));
        assert_eq!(page["messages"][0]["metadata"], metadata, "{levels} levels");
    }
}

#[tokio::test]
async fn answers_to_requests_before_an_oversize_frame_are_not_lost() {
    let kernel = Kernel::start_with_config(
        "[ipc]\nmax_frame_bytes = 1024\nheartbeat_interval_ms = 200\nheartbeat_timeout_ms = 1000\n",
    )
    .await;
    for _ in 0..20 {
        let mut raw = kernel.raw().await;
        let body = rmp_serde::to_vec_named(&json!({"id": 1, "method": "kernel.info"})).unwrap();
        let mut bytes = (body.len() as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(&body);
        bytes.extend_from_slice(&100_000u32.to_be_bytes());
        raw.send_bytes(&bytes).await;
        let mut seen = Vec::new();
        while let Some(msg) = raw.recv().await {
            seen.push(burrow_tests::to_json(&msg));
        }
        assert!(seen.iter().any(|m| m["id"] == 1 && m["result"].is_object()), "{seen:?}");
        assert!(
            seen.iter().any(|m| m["error"]["code"] == "INVALID_REQUEST" && m.get("id").is_none()),
            "{seen:?}"
        );
    }
}

#[tokio::test]
async fn a_client_that_never_reads_is_cut_off_while_others_are_served() {
    use tokio::io::AsyncWriteExt;
    let config = "[ipc]\nmax_queued = 64\nwriter_queue = 64\nwrite_stall_timeout_ms = 1000\n";
    let kernel = Kernel::start_with_config(config).await;
    let stream = burrow_sdk::transport::connect_stream(&kernel.socket).await.unwrap();
    let (_rd, mut wr) = tokio::io::split(stream);
    let body = rmp_serde::to_vec_named(&json!({"id": 1, "method": "kernel.info"})).unwrap();
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    let batch: Vec<u8> = frame.iter().copied().cycle().take(frame.len() * 1000).collect();
    // Write and never read: the kernel's answers fill its writer queue, it stops reading
    // (so writing blocks), and once the client has taken nothing for
    // `write_stall_timeout_ms` it cuts the connection, after which writing fails.
    let mut cut = false;
    for _ in 0..200 {
        if tokio::time::timeout(burrow_tests::DEADLINE, wr.write_all(&batch))
            .await
            .expect("write stalled")
            .is_err()
        {
            cut = true;
            break;
        }
    }
    assert!(cut, "the kernel never cut off a client that does not read");
    assert!(kernel.logged("not reading").await, "{}", kernel.log());
    // Everyone else is served as usual.
    kernel.client().await.kernel_info().await.expect("other clients are served");
}

#[tokio::test]
async fn requests_beyond_the_in_flight_bound_wait_their_turn_and_quick_ones_go_past() {
    let kernel =
        Kernel::start_with_config("[ipc]\nmax_in_flight = 2\nheartbeat_timeout_ms = 20000\n").await;
    let mut provider = RawConn::app(
        &kernel.socket,
        json!({"id": "prov", "version": "1.0.0", "capabilities": {"tools": ["*"]}}),
    )
    .await;
    provider.register_tool("hold", None).await;
    let mut caller =
        RawConn::app(&kernel.socket, json!({"id": "caller", "version": "1.0.0"})).await;
    let first = caller.send_call("tool.call", json!({"name": "hold"})).await;
    let second = caller.send_call("tool.call", json!({"name": "hold"})).await;
    let a = provider.expect_method("tool.invoke").await;
    let b = provider
        .expect("the second invoke", |v| v["method"] == "tool.invoke" && v["id"] != a["id"])
        .await;
    // A third waits for a slot (no error, no invoke yet); quick requests behind it are
    // answered meanwhile.
    let third = caller.send_call("tool.call", json!({"name": "hold"})).await;
    assert!(caller.call("app.heartbeat", json!({})).await["result"]["ok"] == true);
    let seen = |v: &Value| v["method"] == "tool.invoke" && v["id"] != a["id"] && v["id"] != b["id"];
    assert!(!provider.sees_within(Duration::from_millis(300), seen).await, "a third invoke");
    assert!(!caller.sees_within(Duration::from_millis(50), |v| v["id"] == third).await);
    provider.answer(&a["id"], json!({"content": 1})).await;
    // Either call may have reached the provider first; the one answered comes back.
    let done = caller
        .expect("an answer", |v| (v["id"] == first || v["id"] == second) && v["result"].is_object())
        .await;
    assert_eq!(done["result"]["content"], 1);
    // One finished: the third goes on.
    let c = provider.expect("the third invoke", seen).await;
    provider.answer(&c["id"], json!({"content": 3})).await;
    provider.answer(&b["id"], json!({"content": 2})).await;
    let answered = caller.answer_to(third).await;
    assert!(answered["result"].is_object(), "{answered}");
}

#[tokio::test]
async fn connections_beyond_the_cap_are_refused_with_an_error() {
    let kernel =
        Kernel::start_with_config("[ipc]\nmax_connections = 3\nheartbeat_timeout_ms = 20000\n")
            .await;
    let mut open = Vec::new();
    let mut refused = None;
    for i in 0..10 {
        let mut conn = kernel.raw().await;
        // A refused connection gets its error frame at once, before any request.
        let wait = std::time::Duration::from_millis(300);
        if conn.sees_within(wait, |v| v["error"].is_object()).await {
            refused = Some((i, conn.recv_json().await));
            break;
        }
        open.push(conn);
    }
    let (at, msg) = refused.expect("a connection beyond the cap must be refused");
    assert!(at <= 3, "refused only at connection {at}");
    assert_eq!(msg["error"]["data"]["reason"], "too_many_connections", "{msg}");
    for conn in &mut open {
        assert!(conn.call("kernel.info", json!({})).await["result"].is_object());
    }
    // Closing one makes room.
    open.pop();
    let served = burrow_tests::poll_until(burrow_tests::DEADLINE, || async {
        match burrow_sdk::Client::connect(&kernel.socket).await {
            Ok(c) => c.kernel_info().await.is_ok(),
            Err(_) => false,
        }
    })
    .await;
    assert!(served);
}

#[cfg(unix)]
#[tokio::test]
async fn connections_from_another_user_are_refused_even_with_open_permissions() {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "SKIPPED: connections_from_another_user_are_refused: needs root to run a client as another uid"
        );
        return;
    }
    let kernel = Kernel::start().await;
    let open = |p: &std::path::Path| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap()
    };
    open(kernel.dir());
    open(kernel.socket.parent().unwrap());
    open(&kernel.socket);
    // A copy of the CLI that the other user can run.
    let cli = kernel.dir().join("burrow-cli");
    std::fs::copy(burrow_tests::bin("burrow"), &cli).unwrap();
    std::fs::set_permissions(&cli, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = tokio::process::Command::new(&cli)
        .args(["info", "--json", "--socket"])
        .arg(&kernel.socket)
        .uid(65534)
        .gid(65534)
        .output()
        .await
        .unwrap();
    assert!(
        !out.status.success(),
        "another uid was served: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(kernel.logged("another user").await, "{}", kernel.log());
    kernel.client().await.kernel_info().await.expect("the owner is still served");
}

/// Nothing acknowledged is changed (docs/protocol.md §2): a NaN or an infinity in a
/// message's metadata is refused as `INVALID_PARAMS` naming where it is, and nothing is
/// stored. Such a message was acknowledged before, and read back from the history with
/// null in the float's place.
#[tokio::test]
async fn a_non_finite_float_in_metadata_is_refused_naming_it_and_nothing_is_stored() {
    let kernel = Kernel::start_with_config("[agents.main]\nauto_reply = false\n").await;
    let mut raw = RawConn::app(&kernel.socket, json!({"id": "floats", "version": "1.0.0"})).await;
    let kept =
        json!({"sessionKey": "floats", "content": "kept", "metadata": {"v": [1, {"w": 1.5}]}});
    let d = raw.call("message.dispatch", kept).await;
    assert!(d["result"]["dispatchId"].is_string(), "{d}");
    for (n, float) in
        ["f64:NaN", "f64:inf", "f64:-inf", "f32:NaN", "f32:inf"].into_iter().enumerate()
    {
        let id = 50 + n as u64;
        let params = json!({"sessionKey": "floats", "content": "refused", "metadata": {"v": [1, {"w": float}]}});
        let body = json!({"id": id, "method": "message.dispatch", "params": params});
        raw.send_body(&burrow_tests::with_floats(&body)).await;
        let answer = raw.answer_to(id).await;
        assert_eq!(error_code(&answer), "INVALID_PARAMS", "{float}: {answer}");
        assert_eq!(answer["error"]["data"], json!({"field": "metadata.v[1].w"}), "{float}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains("`params.metadata.v[1].w`"), "{float}: {message}");
    }
    still_open(&mut raw).await;
    let page = raw.call("session.history", json!({"key": "floats"})).await;
    let messages = page["result"]["messages"].as_array().unwrap_or_else(|| panic!("{page}"));
    let contents: Vec<_> = messages.iter().map(|m| m["content"].clone()).collect();
    assert_eq!(contents, [json!("kept")], "{page}");
    assert_eq!(messages[0]["metadata"], json!({"v": [1, {"w": 1.5}]}));
}

/// An app's answer holding a NaN is not forwarded with null in its place: the call it
/// answered fails at once, and the app hears which value it was, without the kernel's id.
#[tokio::test]
async fn a_tool_answer_holding_a_non_finite_float_fails_the_call_instead_of_forwarding_null() {
    let kernel = Kernel::start().await;
    let tools = json!({"id": "tools", "version": "1.0.0", "capabilities": {"tools": ["*"]}});
    let mut tools = RawConn::app(&kernel.socket, tools).await;
    tools.register_tool("floaty", None).await;
    let mut caller =
        RawConn::app(&kernel.socket, json!({"id": "caller", "version": "1.0.0"})).await;
    let id = caller.send_call("tool.call", json!({"name": "floaty", "arguments": {}})).await;
    let invoke = tools.expect_method("tool.invoke").await;
    let answer = json!({"id": invoke["id"], "result": {"content": ["f64:NaN"]}});
    tools.send_body(&burrow_tests::with_floats(&answer)).await;
    let resp = caller.answer_to(id).await;
    assert_eq!(error_code(&resp), "INTERNAL_ERROR", "{resp}");
    let message = resp["error"]["message"].as_str().unwrap_or_else(|| panic!("{resp}"));
    assert!(message.contains("NaN at `result.content[0]`"), "{resp}");
    let complaint =
        tools.expect("the complaint", |v| v.get("id").is_none() && v.get("error").is_some()).await;
    assert_eq!(error_code(&complaint), "INVALID_REQUEST", "{complaint}");
    assert_eq!(complaint["error"]["data"], json!({"path": "result.content[0]"}));
    // The tool still answers what comes next.
    let id = caller.send_call("tool.call", json!({"name": "floaty", "arguments": {}})).await;
    let invoke = tools.expect_method("tool.invoke").await;
    tools.answer(&invoke["id"], json!({"content": 0.5})).await;
    assert_eq!(caller.answer_to(id).await["result"], json!({"content": 0.5}));
}
