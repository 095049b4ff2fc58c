//! Apps' HTTP routes are normalised (PROTOCOL.md §5 `http_route`, §9 `/apps/...`): a
//! route whose path is not in normal form is refused at `capability.register`, and a
//! request whose path is not in normal form reaches no route (400, `bad_path`), even
//! when the client sends it as is.

use std::net::SocketAddr;

use burrow_tests::{DEADLINE, Kernel, RawConn};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Calls time out quickly: a request wrongly forwarded to an app that never answers
/// comes back as a timeout, not a 400.
const CONFIG: &str = "[ipc]\nheartbeat_timeout_ms = 60000\ncall_timeout_ms = 2000\n";

/// Sends `request_line` (as written, nothing normalised) and returns the status and the
/// body of the answer.
async fn raw_http(addr: SocketAddr, request_line: &str) -> (u16, String) {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect to the HTTP surface");
        let head = format!("{request_line}\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await.expect("write the request");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.expect("read the answer");
        answer
    };
    let answer = tokio::time::timeout(DEADLINE, exchange)
        .await
        .unwrap_or_else(|_| panic!("no answer in time to {request_line:?}"));
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer to {request_line:?}: {answer:?}"));
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

async fn app(kernel: &Kernel, id: &str) -> RawConn {
    let manifest = json!({"id": id, "version": "1.0.0", "capabilities": {"httpRoutes": [format!("/apps/{id}/*")]}});
    RawConn::app(&kernel.socket, manifest).await
}

async fn register_route(app: &mut RawConn, path: &str) -> Value {
    let config = json!({"method": "GET", "path": path});
    app.call("capability.register", json!({"type": "http_route", "config": config})).await
}

#[tokio::test]
async fn routes_and_requests_off_their_normal_form_never_reach_another_apps_route() {
    let kernel = Kernel::start_with(CONFIG, &["--http", "127.0.0.1:0"]).await;
    let mut victim = app(&kernel, "victim").await;
    let mut evil = app(&kernel, "evil").await;
    let r = register_route(&mut victim, "/apps/victim/secret").await;
    assert_eq!(r["result"]["granted"], true, "{r}");

    for path in [
        "/apps/evil/../victim/secret",
        "/apps/evil/./../victim/secret",
        "/apps/evil/%2e%2e/victim/secret",
        "/apps/evil/%2E%2E/victim/secret",
        "/apps/evil/.%2e/victim/secret",
        "/apps/evil/..%2Fvictim%2Fsecret",
        "/apps/evil/..%5Cvictim%5Csecret",
        "/apps/evil/..\\victim\\secret",
        "/apps/evil//victim/secret",
        "/apps/evil/../*",
    ] {
        let r = register_route(&mut evil, path).await;
        assert_eq!(r["result"]["granted"], false, "{path} was granted: {r}");
        let reason = r["result"]["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("not in normal form"), "{path}: {reason}");
    }
    // Evil's own prefix route is granted: the requests below go through it.
    let r = register_route(&mut evil, "/apps/evil/*").await;
    assert_eq!(r["result"]["granted"], true, "{r}");

    let addr = kernel.endpoint("http").await;
    for target in [
        "/apps/evil/../victim/secret",
        "/apps/evil/%2e%2e/victim/secret",
        "/apps/evil/%2E%2E/victim/secret",
        "/apps/evil/.%2e/victim/secret",
        "/apps/evil/..%2Fvictim%2Fsecret",
        "/apps/evil/..%5cvictim%5csecret",
        "/apps/evil/..\\victim\\secret",
        "/apps/evil//../victim/secret",
        "/apps//victim/secret",
        "/apps/victim/./secret",
        "/apps/victim/secret/.",
        "/apps/victim/%73ecret",
        &format!("http://{addr}/apps/evil/../victim/secret"),
    ] {
        let (status, body) = raw_http(addr, &format!("GET {target} HTTP/1.1")).await;
        assert_eq!(status, 400, "{target}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(body["code"], "INVALID_REQUEST", "{target}: {body}");
        assert_eq!(body["details"]["reason"], "bad_path", "{target}: {body}");
    }
    // The first request either app sees is the normal one sent now: none of the above
    // reached it.
    let get = tokio::spawn(raw_http(addr, "GET /apps/victim/secret HTTP/1.1"));
    let req = victim.expect_method("http.request").await;
    assert_eq!(req["params"]["path"], "/apps/victim/secret", "{req}");
    victim.answer(&req["id"], json!({"status": 200, "body": "victim's secret"})).await;
    assert_eq!(get.await.unwrap(), (200, "victim's secret".to_owned()));
    let get = tokio::spawn(raw_http(addr, "GET /apps/evil/ok HTTP/1.1"));
    let req = evil.expect_method("http.request").await;
    assert_eq!(req["params"]["path"], "/apps/evil/ok", "{req}");
    evil.answer(&req["id"], json!({"status": 200, "body": "evil"})).await;
    assert_eq!(get.await.unwrap(), (200, "evil".to_owned()));
}
