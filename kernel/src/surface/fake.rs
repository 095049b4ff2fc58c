//! A fake [`Host`] for the surfaces' tests.
//!
//! - `echo` answers its params; the host methods the REST routes call (`session/create`,
//!   `session/list`, ...) answer `{"method", "params"}`, so tests see what was called;
//!   with `session_id: "missing"` they answer `NOT_FOUND`;
//! - `fail` answers `NOT_FOUND` with `data: {"session_id": "s0", "code": "ignored"}`;
//! - `fail_text` answers `CONFLICT` with a string `data`;
//! - `slow` waits until [`FakeHost::release`] and answers `"slow done"`;
//! - `panic` panics; anything else is `METHOD_NOT_FOUND`.
//!
//! Session `missing` has no events (`NOT_FOUND`); others have three, then end, except
//! `forever`, whose stream never ends. App logs ([`Log::events`], recorded as calls of
//! `app_log`): app `missing` has none (`NOT_FOUND`), an id that is not an app id is
//! `INVALID_PARAMS`; others have a tail of at most two lines (`old 1`, `old 2`), then
//! lines `one`, `two`, `three` from a feed that holds two (so `lagged` 1 first), then
//! end, except `forever`'s, which never ends. App requests answer 200 with the request as JSON,
//! except paths ending `/missing` (`NOT_FOUND`) and `/bad-status` (status 42).
//!
//! Every call is recorded first ([`FakeHost::calls`]).
//!
//! Its MCP backend ([`FakeMcp`]) has one tool, `echo` (its arguments as its content);
//! session tools answer `{"method", "params"}`; [`FakeHost::change_tools`] announces a
//! change.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use burrow_protocol::methods::capability::CapabilityType;
use burrow_protocol::methods::invoke::{HttpRequestParams, HttpResponse};
use burrow_protocol::methods::operator::{CapabilitySummary, KernelCapabilitiesResult};
use burrow_protocol::{ErrorCode, ErrorObject, Map, Value};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{BoxFuture, Host};
use crate::mcp::Backend;
use crate::service::supervisor::Log;

/// Methods answered `{"method", "params"}`.
const ROUTED: [&str; 12] = [
    "session/create",
    "session/list",
    "session/read",
    "turn/start",
    "turn/interrupt",
    "session/archive",
    "session/history",
    "session/external_event",
    "comms/send",
    "comms/peers",
    "gateway/hello",
    "note",
];

#[derive(Debug)]
pub(crate) struct FakeHost {
    calls: Mutex<Vec<(String, Value)>>,
    released: watch::Sender<bool>,
    tools: watch::Sender<u64>,
}

impl FakeHost {
    pub(crate) fn new() -> FakeHost {
        FakeHost {
            calls: Mutex::new(Vec::new()),
            released: watch::channel(false).0,
            tools: watch::Sender::new(0),
        }
    }

    /// Tells MCP clients the tools changed.
    pub(crate) fn change_tools(&self) {
        self.tools.send_modify(|n| *n += 1);
    }

    /// Lets every `slow` call (past and future) answer.
    pub(crate) fn release(&self) {
        self.released.send_replace(true);
    }

    /// The calls seen so far, oldest first.
    pub(crate) fn calls(&self) -> Vec<(String, Value)> {
        self.calls.lock().unwrap().clone()
    }

    /// Waits (up to 5 s) until `n` calls have been seen.
    pub(crate) async fn wait_calls(&self, n: usize) -> Vec<(String, Value)> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let calls = self.calls();
            if calls.len() >= n {
                return calls;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} calls: {calls:?}",
                calls.len()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Host for FakeHost {
    fn call(
        &self,
        method: String,
        params: Value,
        link: crate::surface::Link,
    ) -> BoxFuture<'_, Result<Value, ErrorObject>> {
        self.calls.lock().unwrap().push((method.clone(), params.clone()));
        Box::pin(async move {
            match method.as_str() {
                "echo" => Ok(params),
                "fail" => Err(ErrorObject::new(ErrorCode::NotFound, "no such session")
                    .with_data(json!({"session_id": "s0", "code": "ignored"}))),
                "fail_text" => Err(ErrorObject::new(ErrorCode::Conflict, "taken")
                    .with_data(Value::from("already there"))),
                "slow" => {
                    let mut released = self.released.subscribe();
                    let _ = released.wait_for(|r| *r).await;
                    Ok(Value::from("slow done"))
                }
                "panic" => panic!("the fake host panics on purpose"),
                // Asks the caller's connection and answers with what it said.
                "ask" => {
                    let asked = link.request("peer/question", params, Duration::from_secs(5));
                    asked.await.map_err(|e| e.with_data(json!({"asked": "failed"})))
                }
                m if ROUTED.contains(&m) && params["session_id"] == "missing" => {
                    Err(ErrorObject::new(ErrorCode::NotFound, "no such session"))
                }
                m if ROUTED.contains(&m) => Ok(json!({"method": m, "params": params})),
                m => Err(ErrorObject::new(ErrorCode::MethodNotFound, format!("no method {m}"))),
            }
        })
    }

    fn session_events(
        &self,
        session_id: String,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Value>, ErrorObject>> {
        Box::pin(async move {
            if session_id == "missing" {
                return Err(ErrorObject::new(ErrorCode::NotFound, "no such session"));
            }
            let events = vec![
                json!({"type": "run_started", "session_id": session_id}),
                json!({"type": "text\ninjected", "text": "line one\nline two"}),
                json!({"no_type": true}),
            ];
            let events = futures_util::stream::iter(events);
            if session_id == "forever" {
                return Ok(events.chain(futures_util::stream::pending()).boxed());
            }
            Ok(events.boxed())
        })
    }

    fn app_log(
        &self,
        app_id: String,
        lines: usize,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Value>, ErrorObject>> {
        let call = json!({"app_id": app_id, "lines": lines});
        self.calls.lock().unwrap().push(("app_log".to_owned(), call));
        Box::pin(async move {
            if !burrow_protocol::manifest::is_valid_app_id(&app_id) {
                return Err(ErrorObject::invalid_params("appId", "not a valid app id"));
            }
            if app_id == "missing" {
                return Err(ErrorObject::new(ErrorCode::NotFound, "no captured log"));
            }
            let tail = (1..=lines.min(2)).map(|n| format!("old {n}")).collect();
            let (feed, rx) = tokio::sync::broadcast::channel(2);
            for line in ["one", "two", "three"] {
                let _ = feed.send(line.to_owned());
            }
            // `forever`'s feed stays open for as long as its stream lasts.
            let open = (app_id == "forever").then_some(feed);
            let events = Log { tail, feed: Some(rx) }.events();
            Ok(events
                .map(move |e| {
                    let _open = &open;
                    serde_json::to_value(e).unwrap_or_default()
                })
                .boxed())
        })
    }

    fn http_request(
        &self,
        request: HttpRequestParams,
    ) -> BoxFuture<'_, Result<HttpResponse, ErrorObject>> {
        Box::pin(async move {
            if request.path.ends_with("/missing") {
                return Err(ErrorObject::new(ErrorCode::NotFound, "no such app"));
            }
            let status = if request.path.ends_with("/bad-status") { 42 } else { 200 };
            let mut headers = Map::new();
            headers.insert("content-type".into(), Value::from("application/json"));
            headers.insert("x-app".into(), Value::from("files"));
            headers.insert("bad header".into(), Value::from("dropped"));
            let body = serde_json::to_string(&request).unwrap();
            Ok(HttpResponse { status, headers: Some(headers), body: Some(body) })
        })
    }

    fn metrics(&self) -> String {
        "# TYPE fake_total counter\nfake_total 1\n".to_owned()
    }

    fn mcp(&self) -> Arc<dyn Backend> {
        Arc::new(FakeMcp { tools: self.tools.clone() })
    }
}

/// The fake host's MCP backend.
struct FakeMcp {
    tools: watch::Sender<u64>,
}

impl Backend for FakeMcp {
    fn tools(&self) -> BoxFuture<'_, Result<KernelCapabilitiesResult, ErrorObject>> {
        let echo = CapabilitySummary {
            capability_id: "cap-1".into(),
            app_id: "fake".into(),
            kind: CapabilityType::Tool,
            config: json!({"type": "tool", "name": "echo", "description": "its arguments"}),
        };
        Box::pin(async move { Ok(KernelCapabilitiesResult { capabilities: vec![echo] }) })
    }

    fn call_tool(
        &self,
        name: String,
        arguments: Value,
        _cancel: CancellationToken,
    ) -> BoxFuture<'_, Result<Value, ErrorObject>> {
        Box::pin(async move {
            match name.as_str() {
                "echo" => Ok(json!({ "content": arguments })),
                _ => Err(ErrorObject::new(ErrorCode::NotFound, format!("no tool {name}"))),
            }
        })
    }

    fn host_call(
        &self,
        method: String,
        params: Value,
    ) -> BoxFuture<'_, Result<Value, ErrorObject>> {
        Box::pin(async move { Ok(json!({"method": method, "params": params})) })
    }

    fn expose(&self) -> Vec<String> {
        vec!["*".to_owned()]
    }

    fn tool_changes(&self) -> watch::Receiver<u64> {
        self.tools.subscribe()
    }
}
