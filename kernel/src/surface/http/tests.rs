use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use super::*;
use crate::surface::auth::TokenStore;
use crate::surface::fake::FakeHost;

const DEADLINE: Duration = Duration::from_secs(5);

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }

    /// Checks the error shape (`{error: message, code, details?}`) and returns it as
    /// Burrow's error object, `{code, message, data}`.
    fn error(&self, status: StatusCode, code: &str) -> Value {
        assert_eq!(self.status, status, "{}", self.text);
        let body = self.json();
        assert_eq!(body["code"], code, "{}", self.text);
        assert!(body["error"].is_string(), "{}", self.text);
        let fields = body
            .as_object()
            .map(|b| b.keys().all(|k| ["error", "code", "details"].contains(&k.as_str())));
        assert_eq!(fields, Some(true), "nothing else: {}", self.text);
        serde_json::json!({"code": body["code"], "message": body["error"], "data": body["details"]})
    }
}

fn open_router() -> (Router, Arc<FakeHost>) {
    let host = Arc::new(FakeHost::new());
    (router(host.clone(), Arc::new(Auth::open())), host)
}

async fn send(router: &Router, request: Request<Body>) -> Answer {
    let response =
        tokio::time::timeout(DEADLINE, router.clone().oneshot(request)).await.unwrap().unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    Answer { status, headers, text: String::from_utf8(body.to_vec()).unwrap() }
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn post_json(uri: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(uri).header(header::CONTENT_TYPE, "application/json").body(body.into()).unwrap()
}

#[tokio::test]
async fn routes_call_their_host_methods() {
    let (router, _) = open_router();
    let body =
        json!({"prompt": "You are a coordinator.", "keep_alive": true, "comms_name": "agent-a"});
    let created = send(&router, post_json("/sessions", body.to_string())).await;
    assert_eq!(created.status, StatusCode::OK);
    assert_eq!(created.json(), json!({"method": "session/create", "params": body}));

    let cases = [
        (
            get("/sessions?limit=5&offset=10&other=x"),
            "session/list",
            json!({"limit": 5, "offset": 10}),
        ),
        (get("/sessions"), "session/list", json!({})),
        (get("/sessions/s1"), "session/read", json!({"session_id": "s1"})),
        (
            get("/sessions/s1/history?offset=6&limit=3"),
            "session/history",
            json!({"session_id": "s1", "limit": 3, "offset": 6}),
        ),
        (get("/comms/peers?session_id=s1"), "comms/peers", json!({"session_id": "s1"})),
        (
            post_json("/sessions/s1/messages", r#"{"prompt":"more","session_id":"s1"}"#),
            "turn/start",
            json!({"session_id": "s1", "prompt": "more"}),
        ),
        (
            post_json("/sessions/s1/messages", r#"{"prompt":"more"}"#),
            "turn/start",
            json!({"session_id": "s1", "prompt": "more"}),
        ),
        (
            Request::post("/sessions/s1/interrupt").body(Body::empty()).unwrap(),
            "turn/interrupt",
            json!({"session_id": "s1"}),
        ),
        (
            post_json(
                "/comms/send",
                r#"{"session_id":"s1","kind":"peer_message","to":"b","body":"hi"}"#,
            ),
            "comms/send",
            json!({"session_id": "s1", "kind": "peer_message", "to": "b", "body": "hi"}),
        ),
    ];
    for (request, method, params) in cases {
        let uri = request.uri().clone();
        let answer = send(&router, request).await;
        assert_eq!(answer.status, StatusCode::OK, "{uri}: {}", answer.text);
        assert_eq!(answer.json(), json!({"method": method, "params": params}), "{uri}");
    }

    let event = json!({"session_id": "other", "kind": "generic_json", "event_type": "deploy_complete",
                       "payload": {"environment": "prod"}});
    let accepted =
        send(&router, post_json("/sessions/s1/external-events", event.to_string())).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED);
    let params = &accepted.json()["params"];
    assert_eq!(params["session_id"], "s1", "the path names the session");
    assert_eq!(params["payload"], json!({"environment": "prod"}));
    assert_eq!(accepted.json()["queued"], true, "Meerkat's receipt, with the outcome");

    // Archiving answers Meerkat's shape; a body's session id must be the path's.
    let archived =
        send(&router, Request::delete("/sessions/s1").body(Body::empty()).unwrap()).await;
    assert_eq!(
        (archived.status, archived.json()),
        (StatusCode::OK, json!({"session_id": "s1", "archived": true}))
    );
    let error =
        send(&router, post_json("/sessions/s1/messages", r#"{"prompt":"x","session_id":"s2"}"#))
            .await
            .error(StatusCode::BAD_REQUEST, "INVALID_PARAMS");
    assert_eq!(error["data"]["field"], "session_id");
    let missing = send(&router, Request::delete("/sessions/missing").body(Body::empty()).unwrap());
    missing.await.error(StatusCode::NOT_FOUND, "NOT_FOUND");
}

#[tokio::test]
async fn errors_have_one_shape_and_fitting_statuses() {
    let (router, host) = open_router();
    let error =
        send(&router, get("/sessions/missing")).await.error(StatusCode::NOT_FOUND, "NOT_FOUND");
    assert_eq!(error["message"], "no such session");

    let error = send(&router, get("/sessions?limit=ten"))
        .await
        .error(StatusCode::BAD_REQUEST, "INVALID_PARAMS");
    assert_eq!(error["data"]["field"], "limit");

    let error = send(&router, post_json("/sessions", "{not json"))
        .await
        .error(StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    assert_eq!(error["data"]["reason"], "invalid_json");
    // The reserved key (docs/protocol.md §2) is refused in bodies as in frames.
    let body = r#"{"prompt":"x","metadata":{"a":1,"$serde_json::private::RawValue":5}}"#;
    let error = send(&router, post_json("/sessions", body))
        .await
        .error(StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    assert!(error["message"].as_str().unwrap().contains("reserved"), "{error}");
    // A number out of a double's range: refused, not read as null or an infinity.
    let body = r#"{"prompt":"x","metadata":{"v":[1,-1e400]}}"#;
    let error = send(&router, post_json("/sessions", body))
        .await
        .error(StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    assert!(error["message"].as_str().unwrap().contains("out of range"), "{error}");

    let error = send(&router, post_json("/sessions", "[1]"))
        .await
        .error(StatusCode::BAD_REQUEST, "INVALID_PARAMS");
    assert_eq!(error["data"]["field"], "body");

    let plain = Request::post("/sessions").body(Body::from(r#"{"prompt":"x"}"#)).unwrap();
    let error =
        send(&router, plain).await.error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "INVALID_REQUEST");
    assert_eq!(error["data"]["reason"], "content_type");

    let huge = format!(r#"{{"prompt":"{}"}}"#, "x".repeat(MAX_BODY_BYTES));
    let error = send(&router, post_json("/sessions", huge))
        .await
        .error(StatusCode::PAYLOAD_TOO_LARGE, "INVALID_REQUEST");
    assert_eq!(error["data"]["reason"], "oversize");

    let error =
        send(&router, get("/no/such/route")).await.error(StatusCode::NOT_FOUND, "NOT_FOUND");
    assert_eq!(error["data"], json!({"reason": "no_route", "path": "/no/such/route"}));

    let delete = Request::delete("/sessions").body(Body::empty()).unwrap();
    let error =
        send(&router, delete).await.error(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_FOUND");
    assert_eq!(error["data"]["reason"], "method_not_allowed");

    assert!(host.calls().iter().all(|(_, p)| p["session_id"] == "missing"), "{:?}", host.calls());
}

#[tokio::test]
async fn session_events_are_server_sent_events() {
    let (router, _) = open_router();
    let answer = send(&router, get("/sessions/s1/events")).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers[header::CONTENT_TYPE], "text/event-stream");
    let expected = concat!(
        "event: run_started\n",
        "data: {\"session_id\":\"s1\",\"type\":\"run_started\"}\n\n",
        // A type that would break the framing is not an event name; the data is one line.
        "data: {\"text\":\"line one\\nline two\",\"type\":\"text\\ninjected\"}\n\n",
        "data: {\"no_type\":true}\n\n",
    );
    assert_eq!(answer.text, expected);

    let error = send(&router, get("/sessions/missing/events"))
        .await
        .error(StatusCode::NOT_FOUND, "NOT_FOUND");
    assert_eq!(error["message"], "no such session");
}

#[tokio::test]
async fn app_logs_are_followed_as_server_sent_events() {
    let (router, host) = open_router();
    let answer = send(&router, get("/logs/greeter")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.headers[header::CONTENT_TYPE], "text/event-stream");
    // The tail first; then the new lines, the ones the reader fell behind on said to be
    // skipped; the stream ends with the feed.
    let expected = concat!(
        "event: tail\n",
        "data: {\"lines\":[\"old 1\",\"old 2\"],\"type\":\"tail\"}\n\n",
        "event: lagged\n",
        "data: {\"missed\":1,\"type\":\"lagged\"}\n\n",
        "event: line\n",
        "data: {\"line\":\"two\",\"type\":\"line\"}\n\n",
        "event: line\n",
        "data: {\"line\":\"three\",\"type\":\"line\"}\n\n",
    );
    assert_eq!(answer.text, expected);
    let one = send(&router, get("/logs/greeter?lines=1")).await;
    assert!(one.text.starts_with("event: tail\ndata: {\"lines\":[\"old 1\"],"), "{}", one.text);

    // How many lines of the tail: 200 unless asked, at most MAX_TAIL_LINES.
    send(&router, get("/logs/greeter?lines=99999999999")).await;
    let asked: Vec<_> = host
        .calls()
        .into_iter()
        .filter(|(m, _)| m == "app_log")
        .map(|(_, p)| (p["app_id"].clone(), p["lines"].clone()))
        .collect();
    assert_eq!(
        asked,
        [("greeter", 200), ("greeter", 1), ("greeter", MAX_TAIL_LINES)]
            .map(|(a, n)| (json!(a), json!(n)))
    );

    let error = send(&router, get("/logs/missing")).await.error(StatusCode::NOT_FOUND, "NOT_FOUND");
    assert_eq!(error["message"], "no captured log");
    let error = send(&router, get("/logs/Not%20Valid"))
        .await
        .error(StatusCode::BAD_REQUEST, "INVALID_PARAMS");
    assert_eq!(error["data"]["field"], "appId");
    let error = send(&router, get("/logs/greeter?lines=ten"))
        .await
        .error(StatusCode::BAD_REQUEST, "INVALID_PARAMS");
    assert_eq!(error["data"]["field"], "lines");
    let post = Request::post("/logs/greeter").body(Body::empty()).unwrap();
    send(&router, post).await.error(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_FOUND");
}

#[tokio::test]
async fn a_followed_log_holds_an_event_streams_place_while_it_lasts() {
    use futures_util::StreamExt;
    let host = Arc::new(FakeHost::new());
    let router = router_with_limits(host, Arc::new(Auth::open()), 4, 1, 1);
    let open = |uri: &'static str| tokio::time::timeout(DEADLINE, router.clone().oneshot(get(uri)));
    let forever = open("/logs/forever").await.unwrap().unwrap();
    assert_eq!(forever.status(), StatusCode::OK);
    // Its events come as they are read, and the stream stays open for more.
    let mut body = forever.into_body().into_data_stream();
    let mut seen = String::new();
    while !seen.contains("\"three\"") {
        let chunk = tokio::time::timeout(DEADLINE, body.next()).await.expect("an event in time");
        seen.push_str(&String::from_utf8_lossy(&chunk.expect("still open").unwrap()));
    }
    assert!(seen.starts_with("event: tail\n"), "{seen}");
    let more = tokio::time::timeout(Duration::from_millis(100), body.next()).await;
    assert!(more.is_err(), "nothing more, and not ended: {more:?}");
    // While it is open, no other stream has a place.
    let error = send(&router, get("/logs/greeter"))
        .await
        .error(StatusCode::SERVICE_UNAVAILABLE, "UNKNOWN_ERROR");
    assert_eq!(error["data"]["reason"], "busy");
    let refused = open("/sessions/s1/events").await.unwrap().unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    drop(body);
    assert_eq!(send(&router, get("/logs/greeter")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn event_streams_and_requests_are_bounded() {
    let host = Arc::new(FakeHost::new());
    let router = router_with_limits(host, Arc::new(Auth::open()), 1, 1, 1);
    let open = |router: &Router| {
        tokio::time::timeout(DEADLINE, router.clone().oneshot(get("/sessions/s1/events")))
    };
    let stream = open(&router).await.unwrap().unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    // The open stream holds its place: a second one is refused, other requests are not.
    let refused = open(&router).await.unwrap().unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(send(&router, get("/sessions")).await.status, StatusCode::OK);
    drop(stream);
    assert_eq!(open(&router).await.unwrap().unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn beyond_the_request_limit_requests_get_503() {
    let host = Arc::new(FakeHost::new());
    let router = router_with_limits(host.clone(), Arc::new(Auth::open()), 1, 1, 1);
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"slow"}"#;
    let slow = tokio::spawn({
        let router = router.clone();
        async move { send(&router, post_json("/rpc", body)).await }
    });
    host.wait_calls(1).await;
    let error = send(&router, get("/sessions"))
        .await
        .error(StatusCode::SERVICE_UNAVAILABLE, "UNKNOWN_ERROR");
    assert_eq!(error["data"]["reason"], "busy");
    host.release();
    assert_eq!(slow.await.unwrap().status, StatusCode::OK);
    assert_eq!(send(&router, get("/sessions")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn rpc_over_http() {
    let (router, _) = open_router();
    let single = r#"{"jsonrpc":"2.0","id":1,"method":"gateway/hello","params":{"n":1}}"#;
    let answer = send(&router, post_json("/rpc", single)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.json(),
        json!({"jsonrpc": "2.0", "id": 1, "result": {"method": "gateway/hello", "params": {"n": 1}}})
    );

    let note = send(&router, post_json("/rpc", r#"{"jsonrpc":"2.0","method":"note"}"#)).await;
    assert_eq!(note.status, StatusCode::NO_CONTENT);

    let batch =
        r#"[{"jsonrpc":"2.0","id":1,"method":"echo"},{"jsonrpc":"2.0","id":2,"method":"fail"}]"#;
    let answer = send(&router, post_json("/rpc", batch)).await.json();
    assert_eq!(answer[0]["result"], json!({}));
    assert_eq!(answer[1]["error"]["code"], -32044);

    let answer = send(&router, post_json("/rpc", "nope")).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["error"]["code"], -32700);
}

#[tokio::test]
async fn apps_routes_are_proxied() {
    let (router, _) = open_router();
    let request = Request::post("/apps/files/read?path=a.txt&path=b.txt&x=1")
        .header(header::AUTHORIZATION, "Bearer brw_secret")
        .header("X-Custom", "yes")
        .body(Body::from("hello"))
        .unwrap();
    let answer = send(&router, request).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers["x-app"], "files");
    assert_eq!(answer.headers[header::CONTENT_TYPE], "application/json");
    assert!(!answer.headers.contains_key("bad header"));
    let seen = answer.json();
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/apps/files/read");
    assert_eq!(seen["query"], json!({"path": "b.txt", "x": "1"}));
    assert_eq!(seen["headers"]["x-custom"], "yes");
    assert!(seen["headers"].get("authorization").is_none());
    assert_eq!(seen["body"], "hello");

    let empty = send(&router, get("/apps/files/list")).await.json();
    assert!(empty.get("body").is_none());

    let error = send(&router, get("/apps/files/bad-status"))
        .await
        .error(StatusCode::BAD_GATEWAY, "UNKNOWN_ERROR");
    assert_eq!(error["data"], json!({"reason": "bad_status", "status": 42}));
    send(&router, get("/apps/nobody/missing")).await.error(StatusCode::NOT_FOUND, "NOT_FOUND");
}

#[tokio::test]
async fn bearer_tokens_when_required() {
    let dir = tempfile::tempdir().unwrap();
    let token = TokenStore::create(dir.path()).unwrap().token;
    let store = TokenStore::open(dir.path()).unwrap();
    let auth = Arc::new(Auth::new(&"0.0.0.0:8080".parse().unwrap(), false, store));
    let host = Arc::new(FakeHost::new());
    let router = router(host.clone(), auth);

    let answer = send(&router, get("/sessions")).await;
    let error = answer.error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert_eq!(error["data"]["reason"], "token_required");
    assert_eq!(answer.headers[header::WWW_AUTHENTICATE], "Bearer");

    let wrong = Request::get("/sessions")
        .header(header::AUTHORIZATION, "Bearer brw_wrong")
        .body(Body::empty())
        .unwrap();
    let answer = send(&router, wrong).await;
    assert_eq!(
        answer.error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED")["data"]["reason"],
        "invalid_token"
    );
    assert_eq!(answer.headers[header::WWW_AUTHENTICATE], r#"Bearer error="invalid_token""#);

    let basic = Request::get("/sessions")
        .header(header::AUTHORIZATION, format!("Basic {token}"))
        .body(Body::empty())
        .unwrap();
    send(&router, basic).await.error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    send(&router, get("/no/such/route")).await.error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let mcp = post_json("/mcp", mcp_initialize().to_string());
    send(&router, mcp).await.error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    send(&router, get("/logs/greeter")).await.error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    send(&router, get("/metrics")).await.error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert!(host.calls().is_empty());
    // The dashboard's files are the same for everyone: served without a token (the page
    // then asks for one); anything else under /ui, or another method, is not.
    for file in ["/ui", "/ui/", "/ui/wire.js", "/ui/app.js", "/ui/stats.js", "/ui/style.css"] {
        assert_eq!(send(&router, get(file)).await.status, StatusCode::OK, "{file}");
        // Reached by any name, as a kernel off loopback is.
        let named = Request::get(file).header(header::HOST, "kernel.example:8080");
        let answer = send(&router, named.body(Body::empty()).unwrap()).await;
        assert_eq!(answer.status, StatusCode::OK, "{file} by name");
        // What a GET gets, a HEAD gets (its headers).
        let head = Request::head(file).body(Body::empty()).unwrap();
        assert_eq!(send(&router, head).await.status, StatusCode::OK, "HEAD {file}");
    }
    send(&router, get("/ui/secret")).await.error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let post = post_json("/ui/app.js", "{}");
    send(&router, post).await.error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");

    // Any Host is fine once a token is required.
    let right = Request::get("/sessions")
        .header(header::AUTHORIZATION, format!("bearer {token}"))
        .header(header::HOST, "kernel.example:8080")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&router, right).await.status, StatusCode::OK);
    let mut mcp = post_json("/mcp", mcp_initialize().to_string());
    let headers = mcp.headers_mut();
    headers.insert(header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    headers.insert(header::HOST, "kernel.example:8080".parse().unwrap());
    headers.insert(header::ACCEPT, "application/json, text/event-stream".parse().unwrap());
    let answer = send(&router, mcp).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert!(answer.text.contains(r#""serverInfo""#), "{}", answer.text);
}

/// An MCP `initialize` request (for `/mcp`).
pub(super) fn mcp_initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"}}})
}

#[tokio::test]
async fn without_tokens_only_loopback_host_names_are_answered() {
    let (router, _) = open_router();
    let evil =
        Request::get("/sessions").header(header::HOST, "evil.example").body(Body::empty()).unwrap();
    let error = send(&router, evil).await.error(StatusCode::FORBIDDEN, "FORBIDDEN");
    assert_eq!(error["data"]["reason"], "host_not_allowed");
    let mut mcp = post_json("/mcp", mcp_initialize().to_string());
    mcp.headers_mut().insert(header::HOST, "evil.example".parse().unwrap());
    send(&router, mcp).await.error(StatusCode::FORBIDDEN, "FORBIDDEN");
    let local = Request::get("/sessions")
        .header(header::HOST, "localhost:8080")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&router, local).await.status, StatusCode::OK);
}

/// One HTTP/1.1 exchange on a fresh connection; returns what the server sent until `until`
/// appears (or the connection closes).
async fn raw_http(addr: std::net::SocketAddr, request: &str, until: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(DEADLINE, async {
        loop {
            let n = stream.read(&mut chunk).await.unwrap();
            seen.extend_from_slice(&chunk[..n]);
            if n == 0 || String::from_utf8_lossy(&seen).contains(until) {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {until:?} in {:?}", String::from_utf8_lossy(&seen)));
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn serve_http_answers_over_tcp_and_stop_ends_event_streams() {
    let (router, _) = open_router();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let server = tokio::spawn(serve_http(listener, router, HttpLimits::default(), stop.clone()));

    let list = "GET /sessions?limit=2 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let answer = raw_http(addr, list, "\"limit\":2").await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");

    // An event stream that never ends on its own...
    let events = "GET /sessions/forever/events HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(events.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(DEADLINE, async {
        while !String::from_utf8_lossy(&seen).contains("event: run_started") {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed early");
            seen.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .unwrap();

    // ...ends when the server stops, and the server is then done.
    stop.cancel();
    tokio::time::timeout(DEADLINE, server).await.expect("serve_http ends").unwrap();
    let rest = tokio::time::timeout(DEADLINE, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(rest.is_ok(), "the event stream closed");
}
