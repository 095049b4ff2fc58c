//! `/mcp`: Burrow's MCP server ([`crate::mcp`]) over streamable HTTP, rmcp's server
//! transport, behind the same token, loopback and concurrency rules as the other routes
//! (the router's layers). Clients of the `initialize` handshake get an MCP session
//! (`Mcp-Session-Id`; `GET /mcp` is its stream of `notifications/tools/list_changed`;
//! `DELETE /mcp` ends it; it closes after [`SESSION_IDLE`] without a request); those of
//! the 2026-07-28 revision are served statelessly, and listen for changes with
//! `subscriptions/listen`.
//!
//! Bounds: at most [`MAX_SESSIONS`] MCP sessions; a request that could open one more is
//! answered 503 (`reason: "busy"`). Requests carrying an `Origin` header (a browser's)
//! are refused: no web page may drive the kernel's tools. `Host` is checked by the
//! router (loopback names only, unless a token is required). Streams end when the
//! server stops.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use super::{StopSignal, busy_error};
use crate::mcp::{Backend, McpServer};

/// MCP sessions (clients of the `initialize` handshake) open at once.
pub const MAX_SESSIONS: usize = 128;

/// An MCP session with no request for this long is closed.
pub const SESSION_IDLE: Duration = Duration::from_secs(600);

/// The `/mcp` route over `backend`.
pub(super) fn routes<S: Clone + Send + Sync + 'static>(backend: Arc<dyn Backend>) -> Router<S> {
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(SESSION_IDLE);
    let sessions = Arc::new(sessions);
    // The router's auth layer checks `Host` (or the token); rmcp checks `Origin`.
    let config = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .enforce_origin_validation()
        .with_max_request_body_bytes(super::MAX_BODY_BYTES);
    let service = StreamableHttpService::new(
        move || Ok(McpServer::new(backend.clone())),
        sessions.clone(),
        config,
    );
    Router::new()
        .route_service("/mcp", service)
        .layer(middleware::from_fn_with_state(sessions, limit_sessions))
        .layer(middleware::from_fn(end_at_stop))
}

/// Refuses a request that could open a session (a POST with neither `Mcp-Session-Id` nor
/// `MCP-Protocol-Version`: an `initialize`) when [`MAX_SESSIONS`] are open.
async fn limit_sessions(
    State(sessions): State<Arc<LocalSessionManager>>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let opens = request.method() == Method::POST
        && !headers.contains_key("mcp-session-id")
        && !headers.contains_key("mcp-protocol-version");
    if opens && sessions.sessions.read().await.len() >= MAX_SESSIONS {
        return busy_error().into_response();
    }
    next.run(request).await
}

/// Ends a response's body (an event stream) when the server stops.
async fn end_at_stop(request: Request, next: Next) -> Response {
    let stop = request.extensions().get::<StopSignal>().map(|s| s.0.clone());
    let response = next.run(request).await;
    match stop {
        Some(stop) => response.map(|body| {
            Body::from_stream(body.into_data_stream().take_until(stop.cancelled_owned()))
        }),
        None => response,
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{StatusCode, header};
    use serde_json::{Value, json};
    use tower::ServiceExt;

    use super::*;
    use crate::surface::auth::Auth;
    use crate::surface::fake::FakeHost;
    use crate::surface::http::tests::mcp_initialize as initialize;

    const VERSION: &str = "2025-11-25";

    fn router() -> Router {
        fake_router().0
    }

    fn fake_router() -> (Router, Arc<FakeHost>) {
        let host = Arc::new(FakeHost::new());
        (crate::surface::http::router(host.clone(), Arc::new(Auth::open())), host)
    }

    /// Opens a session: its id.
    async fn open_session(router: &Router) -> String {
        let (status, session, answer) = send(router, post(None, initialize())).await;
        assert_eq!(status, StatusCode::OK, "{answer:?}");
        let session = session.expect("an Mcp-Session-Id");
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let (status, _, _) = send(router, post(Some(&session), initialized)).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        session
    }

    fn post(session: Option<&str>, message: Value) -> Request {
        let mut request = Request::post("/mcp")
            .header(header::HOST, "127.0.0.1")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, text/event-stream");
        if let Some(id) = session {
            request = request.header("mcp-session-id", id).header("mcp-protocol-version", VERSION);
        }
        request.body(Body::from(message.to_string())).unwrap()
    }

    /// The status, the session id, and the JSON-RPC messages of an answer (JSON or SSE).
    async fn send(router: &Router, request: Request) -> (StatusCode, Option<String>, Vec<Value>) {
        let answer = tokio::time::timeout(Duration::from_secs(5), router.clone().oneshot(request));
        let response = answer.await.unwrap().unwrap();
        let status = response.status();
        let session = response.headers().get("mcp-session-id").map(|v| v.to_str().unwrap().into());
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        let messages = match serde_json::from_str(&text) {
            Ok(message) => vec![message],
            Err(_) => text
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter_map(|d| serde_json::from_str(d.trim()).ok())
                .collect(),
        };
        (status, session, messages)
    }

    #[tokio::test]
    async fn a_session_lists_and_calls_the_backends_tools() {
        let router = router();
        let (_, _, answer) = send(&router, post(None, initialize())).await;
        assert_eq!(answer[0]["result"]["serverInfo"]["name"], "burrow", "{answer:?}");
        let session = open_session(&router).await;
        let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
        let (_, _, answer) = send(&router, post(Some(&session), list)).await;
        let names: Vec<&str> = answer[0]["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert_eq!(names, ["session_send", "session_history", "session_list", "echo"]);
        let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"a": 1}}});
        let (_, _, answer) = send(&router, post(Some(&session), call)).await;
        assert_eq!(answer[0]["result"]["structuredContent"], json!({"a": 1}), "{answer:?}");
    }

    #[tokio::test]
    async fn a_sessions_stream_hears_that_the_tools_changed() {
        let (router, host) = fake_router();
        let session = open_session(&router).await;
        let stream = Request::get("/mcp")
            .header(header::HOST, "127.0.0.1")
            .header(header::ACCEPT, "text/event-stream")
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", VERSION)
            .body(Body::empty())
            .unwrap();
        let response = router.clone().oneshot(stream).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let mut frames = response.into_body().into_data_stream();
        host.change_tools();
        let heard = async {
            let mut text = String::new();
            while let Some(Ok(frame)) = frames.next().await {
                text.push_str(&String::from_utf8_lossy(&frame));
                if text.contains("notifications/tools/list_changed") {
                    return true;
                }
            }
            false
        };
        assert!(tokio::time::timeout(Duration::from_secs(5), heard).await.unwrap());
    }

    #[tokio::test]
    async fn browsers_are_refused_and_sessions_are_bounded() {
        let router = router();
        let mut from_page = post(None, initialize());
        from_page.headers_mut().insert(header::ORIGIN, "http://example.com".parse().unwrap());
        let (status, _, _) = send(&router, from_page).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        for n in 0..MAX_SESSIONS {
            let (status, session, _) = send(&router, post(None, initialize())).await;
            assert!(status == StatusCode::OK && session.is_some(), "session {n}: {status}");
        }
        let (status, _, answer) = send(&router, post(None, initialize())).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer[0]["details"]["reason"], "busy");
    }
}
