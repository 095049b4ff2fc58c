//! Host surfaces: JSON-RPC 2.0 (newline-delimited JSON over TCP with
//! `burrow kernel --rpc-tcp`, and over the kernel's own socket, which `burrow-rpc` and
//! `burrow rpc` pipe stdin/stdout to) and REST with server-sent events
//! (`burrow kernel --http`). Both are thin: they turn requests into calls on a
//! [`Host`] and its answers and errors into their own shapes. Off loopback, every request
//! must carry a bearer token (`burrow token create`), compared in constant time.
//!
//! | module | role |
//! |---|---|
//! | [`rpc`] | JSON-RPC 2.0: the socket's connections ([`rpc::serve_local`]), the TCP listener ([`rpc::serve_tcp`]) |
//! | [`http`] | REST routes, server-sent events, the `/apps/...` proxy ([`http::router`], [`http::serve_http`]) |
//! | `admit` | connection caps enforced at accept: one over the cap is answered and closed at once |
//! | [`auth`] | when a token is required ([`auth::requires_token`]), [`auth::Auth`], the hashed [`auth::TokenStore`] |
//!
//! This file holds the [`Host`] trait and the one mapping of Burrow's [`ErrorCode`]s onto
//! JSON-RPC error codes ([`rpc_code`], [`RpcError`]) and HTTP statuses ([`http_status`],
//! [`http_error_body`]).

use std::future::Future;
use std::pin::Pin;

use axum::http::StatusCode;
use burrow_protocol::methods::invoke::{HttpRequestParams, HttpResponse};
use burrow_protocol::{ErrorCode, ErrorObject, Map, Value};
use futures_util::stream::BoxStream;
use serde::Serialize;
use serde_json::json;

pub(crate) mod admit;
pub(crate) mod answers;
pub mod auth;
pub mod http;
pub mod rpc;

#[cfg(test)]
mod fake;

/// A boxed future, so [`Host`] stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Sends one notification on the connection a call came on; false once it is gone.
type NotifyFn = dyn Fn(Value) -> BoxFuture<'static, bool> + Send + Sync;

/// The connection a host call came on, for what the call sends there besides its answer:
/// notifications (a streaming turn's `session/event`s, queued in order before the
/// answer; a subscription's `session/stream_event`s), and the subscriptions it keeps
/// open, which end with the connection. REST has none ([`Link::none`]).
#[derive(Clone)]
pub struct Link {
    notify: Option<std::sync::Arc<NotifyFn>>,
    conn: std::sync::Arc<LinkState>,
}

/// What one connection keeps for the calls made on it.
#[derive(Debug)]
struct LinkState {
    /// Unique among the kernel's connections.
    id: u64,
    /// Cancelled when the connection ends.
    closed: tokio_util::sync::CancellationToken,
    /// Open subscriptions, by stream id: each ends when its token is cancelled, and says
    /// it has ended (its last notification sent) by dropping its end's sender.
    streams: std::sync::Mutex<std::collections::HashMap<String, StreamHandle>>,
    /// The kernel's requests to the peer awaiting its answer, by id (`srv-N`).
    pending: std::sync::Mutex<std::collections::HashMap<String, Waiter>>,
    /// The number in the next request's id.
    next_request: std::sync::atomic::AtomicU64,
}

/// Where the peer's answer to a request goes.
type Waiter = tokio::sync::oneshot::Sender<Result<Value, ErrorObject>>;

impl Default for LinkState {
    fn default() -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        LinkState {
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            closed: Default::default(),
            streams: Default::default(),
            pending: Default::default(),
            next_request: Default::default(),
        }
    }
}

/// Subscriptions one connection may hold open at once.
pub const MAX_STREAMS: usize = 64;

/// Requests the kernel may await on one connection at once (`tool/execute`).
pub const MAX_REQUESTS: usize = 64;

/// An open subscription: what ends it, and what tells that it has ended.
#[derive(Debug)]
struct StreamHandle {
    stop: tokio_util::sync::CancellationToken,
    ended: tokio::sync::oneshot::Receiver<()>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("notifies", &self.notify.is_some()).finish()
    }
}

impl Link {
    /// No connection to send on.
    pub fn none() -> Link {
        Link { notify: None, conn: Default::default() }
    }

    /// Notifications go through `notify` (the whole JSON-RPC object).
    pub(crate) fn new(notify: std::sync::Arc<NotifyFn>) -> Link {
        Link { notify: Some(notify), conn: Default::default() }
    }

    /// Whether notifications can be sent.
    pub fn notifies(&self) -> bool {
        self.notify.is_some()
    }

    /// Sends `{jsonrpc, method, params}` (no `id`), waiting for room in the connection's
    /// queue; false when there is no connection or it is gone.
    pub async fn notify(&self, method: &str, params: Value) -> bool {
        let Some(notify) = &self.notify else { return false };
        notify(json!({ "jsonrpc": "2.0", "method": method, "params": params })).await
    }

    /// Resolves once the connection has ended.
    pub async fn closed(&self) {
        self.conn.closed.cancelled().await;
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.conn.closed.is_cancelled()
    }

    /// Marks the connection ended: its subscriptions stop.
    pub(crate) fn close(&self) {
        self.conn.closed.cancel();
    }

    /// Registers subscription `id`: the token ends it ([`Link::end_stream`]); the
    /// subscription drops the sender once it has sent its last notification. `None` when
    /// the connection has [`MAX_STREAMS`] open already.
    pub fn open_stream(
        &self,
        id: &str,
    ) -> Option<(tokio_util::sync::CancellationToken, tokio::sync::oneshot::Sender<()>)> {
        let mut streams = self.conn.streams.lock().unwrap_or_else(|e| e.into_inner());
        if streams.len() >= MAX_STREAMS {
            return None;
        }
        let stop = self.conn.closed.child_token();
        let (done, ended) = tokio::sync::oneshot::channel();
        streams.insert(id.to_owned(), StreamHandle { stop: stop.clone(), ended });
        Some((stop, done))
    }

    /// Ends subscription `id` and waits (a few seconds at most) until it has sent its
    /// last notification; false when it was not open.
    pub async fn end_stream(&self, id: &str) -> bool {
        let handle = self.conn.streams.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
        let Some(handle) = handle else { return false };
        handle.stop.cancel();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), handle.ended).await;
        true
    }

    /// Forgets subscription `id` once it has ended by itself.
    pub fn forget_stream(&self, id: &str) {
        self.conn.streams.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }

    /// The connection's id, unique among the kernel's connections.
    pub fn id(&self) -> u64 {
        self.conn.id
    }

    /// Sends the request `method` to the peer (id `srv-N`) and waits up to `timeout` for
    /// its answer: its `result`, or its `error` as an [`ErrorObject`] (`UNKNOWN_ERROR`,
    /// the peer's error object in `data`). `CONNECTION_CLOSED` when there is no
    /// connection or it ends first; `TIMEOUT` after `timeout`; `CONFLICT` (`reason:
    /// too_many_requests`) when [`MAX_REQUESTS`] are awaited already. An answer that
    /// comes after the wait ended is dropped.
    pub async fn request(
        &self,
        method: &str,
        params: Value,
        timeout: std::time::Duration,
    ) -> Result<Value, ErrorObject> {
        let closed =
            || ErrorObject::new(ErrorCode::ConnectionClosed, "the host's connection has ended");
        let Some(notify) = &self.notify else { return Err(closed()) };
        let n = self.conn.next_request.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("srv-{n}");
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let mut pending = self.conn.pending.lock().unwrap_or_else(|e| e.into_inner());
            if pending.len() >= MAX_REQUESTS {
                let message = format!("{MAX_REQUESTS} requests to this host await answers already");
                return Err(ErrorObject::new(ErrorCode::Conflict, message)
                    .with_data(json!({ "reason": "too_many_requests", "limit": MAX_REQUESTS })));
            }
            pending.insert(id.clone(), tx);
        }
        // However the wait ends, the id is forgotten: a late answer finds no waiter.
        let _forget = ForgetRequest { conn: &self.conn, id: id.clone() };
        let request = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        let answer = async {
            if !notify(request).await {
                return Err(closed());
            }
            rx.await.unwrap_or_else(|_| Err(closed()))
        };
        tokio::select! {
            answer = answer => answer,
            () = self.closed() => Err(closed()),
            () = tokio::time::sleep(timeout) => Err(ErrorObject::new(
                ErrorCode::Timeout,
                format!("the host did not answer {method} within {} ms", timeout.as_millis()),
            )),
        }
    }

    /// Hands the peer's answer to the kernel's request `id` to whoever awaits it; false
    /// when nobody does (an unknown id, or a wait that has ended).
    pub(crate) fn answered(&self, id: &Value, outcome: Result<Value, ErrorObject>) -> bool {
        let Some(id) = id.as_str() else { return false };
        let waiter = self.conn.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
        waiter.is_some_and(|w| w.send(outcome).is_ok())
    }
}

/// Forgets an awaited request when its wait ends.
struct ForgetRequest<'a> {
    conn: &'a LinkState,
    id: String,
}

impl Drop for ForgetRequest<'_> {
    fn drop(&mut self) {
        self.conn.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
    }
}

/// A host's connection runs the tools it registered: `tool/execute` is a request on it.
impl crate::service::host_tools::ToolHost for Link {
    fn execute(
        &self,
        params: burrow_protocol::methods::contract::ToolExecuteParams,
        timeout: std::time::Duration,
    ) -> crate::service::host_tools::BoxFuture<
        Result<burrow_protocol::methods::contract::ToolExecuteResult, ErrorObject>,
    > {
        use burrow_protocol::methods::{Method, host::ToolExecute};
        let link = self.clone();
        Box::pin(async move {
            let params = burrow_protocol::methods::to_value(&params);
            let answer = link.request(ToolExecute::NAME, params, timeout).await?;
            serde_json::from_value(answer).map_err(|e| {
                ErrorObject::new(
                    ErrorCode::InvalidRequest,
                    format!("the host answered tool/execute with a malformed result: {e}"),
                )
            })
        })
    }
}

/// What the host surfaces need: the kernel ([`crate::host::KernelHost`]), or a fake of it
/// in tests.
pub trait Host: Send + Sync + 'static {
    /// One host method by its JSON-RPC name (`session/create`, `comms/send`, ...) or the
    /// name of a gateway method an app registered, made on the connection `link` (JSON-RPC:
    /// a streaming turn sends its events there before its answer; REST: [`Link::none`]).
    fn call(
        &self,
        method: String,
        params: Value,
        link: Link,
    ) -> BoxFuture<'_, Result<Value, ErrorObject>>;

    /// The events of one session from now on, as the host contract's envelopes (JSON
    /// objects whose `payload` has a `type`), after one `session_loaded`; `NOT_FOUND`
    /// when there is no such session.
    fn session_events(
        &self,
        session_id: String,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Value>, ErrorObject>>;

    /// Managed app `app_id`'s captured log, followed (`GET /logs/{app_id}`): its last
    /// `lines` lines as one `{type: "tail", lines}`, then `{type: "line", line}` per new
    /// line, `{type: "lagged", missed}` where the reader fell behind, until the log's
    /// feed closes. `INVALID_PARAMS` for an id that is not an app id, `NOT_FOUND` for an
    /// app that is not managed and left no log.
    fn app_log(
        &self,
        app_id: String,
        lines: usize,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Value>, ErrorObject>>;

    /// A request for an app's `http_route` (a path under `/apps/<id>/`), answered by the
    /// app through `http.request`.
    fn http_request(
        &self,
        request: HttpRequestParams,
    ) -> BoxFuture<'_, Result<HttpResponse, ErrorObject>>;

    /// The kernel's metrics in Prometheus's text format (`/metrics`, [`crate::metrics`]).
    fn metrics(&self) -> String;

    /// The kernel as its MCP endpoint's backend (`/mcp`, [`crate::mcp`]).
    fn mcp(&self) -> std::sync::Arc<dyn crate::mcp::Backend>;
}

/// JSON-RPC's code for a line that is not JSON. It has no Burrow [`ErrorCode`]: it is
/// the transport's own (its `data.code` says `INVALID_REQUEST`).
pub const PARSE_ERROR: i64 = -32700;

/// The JSON-RPC error code of a Burrow [`ErrorCode`]: the spec's reserved codes where one
/// fits, `-320xx` (the spec's server-error range) for Burrow's own, clear of the numbers
/// Meerkat's host contract uses (see [`CONTRACT_CODES`]).
pub const fn rpc_code(code: ErrorCode) -> i64 {
    // Exhaustive on purpose: a new ErrorCode does not compile until it has a number.
    match code {
        ErrorCode::InvalidRequest => -32600,
        ErrorCode::MethodNotFound => -32601,
        ErrorCode::InvalidParams => -32602,
        ErrorCode::InternalError => -32603,
        ErrorCode::UnknownError => -32000,
        ErrorCode::Unauthorized => -32040,
        ErrorCode::Forbidden => -32043,
        ErrorCode::NotFound => -32044,
        ErrorCode::Timeout => -32008,
        ErrorCode::Conflict => -32009,
        ErrorCode::ConnectionClosed => -32050,
        ErrorCode::AppNotRegistered => -32051,
        ErrorCode::CapabilityDenied => -32052,
        ErrorCode::HookNotSubscribed => -32053,
    }
}

/// The `error` member of a JSON-RPC error response: `{code, message, data}`.
///
/// `data` is always an object whose `code` is the host contract's code where the error
/// has one ([`contract_code`]: `"SESSION_NOT_FOUND"`, `"SESSION_BUSY"`, ...), else the
/// Burrow code string (`"NOT_FOUND"`); the original `data` is merged in when it is an
/// object (its keys win, except `code`), else kept under `detail`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RpcError {
    /// The JSON-RPC code ([`rpc_code`], or [`PARSE_ERROR`]).
    pub code: i64,
    /// Text for humans.
    pub message: String,
    /// `{code: "<Burrow code>", ...}`.
    pub data: Value,
}

impl RpcError {
    /// A parse error (`-32700`): the line is not JSON.
    pub fn parse(detail: impl std::fmt::Display) -> Self {
        RpcError {
            code: PARSE_ERROR,
            message: format!("parse error: {detail}"),
            data: json!({ "code": ErrorCode::InvalidRequest.as_str(), "reason": "parse_error" }),
        }
    }

    /// The error as a JSON value.
    pub fn to_value(&self) -> Value {
        json!({ "code": self.code, "message": self.message, "data": self.data })
    }
}

impl From<&ErrorObject> for RpcError {
    fn from(err: &ErrorObject) -> Self {
        let (code, number) = contract_code(err);
        let mut data = Map::new();
        data.insert("code".into(), Value::from(code));
        match &err.data {
            None => {}
            Some(Value::Object(fields)) => {
                for (key, value) in fields {
                    if key != "code" {
                        data.insert(key.clone(), value.clone());
                    }
                }
            }
            Some(other) => {
                data.insert("detail".into(), other.clone());
            }
        }
        RpcError { code: number, message: err.message.clone(), data: Value::Object(data) }
    }
}

/// The host contract's codes Burrow answers with, and their JSON-RPC numbers (Meerkat's).
const CONTRACT_CODES: &[(&str, i64)] = &[
    ("SESSION_NOT_FOUND", -32001),
    ("SESSION_BUSY", -32002),
    ("REQUEST_CANCELLED", -32005),
    ("PROVIDER_ERROR", -32010),
    ("HOOK_DENIED", -32012),
    ("AGENT_ERROR", -32013),
    // Meerkat's table has no number for it: Burrow's own CONFLICT's.
    ("INPUT_IDEMPOTENCY_CONFLICT", rpc_code(ErrorCode::Conflict)),
];

/// The host contract's `comms/send` error codes (`data.code` of its error data): their
/// number is the Burrow code's.
const COMMS_SEND_CODES: &[&str] = &[
    "peer_not_found_or_not_trusted",
    "peer_unreachable",
    "peer_admission_dropped",
    "peer_input_rejected",
    "send_ambiguous",
    "send_failed",
    "invalid_command",
];

/// An error's `data.code` and number on JSON-RPC: the host contract's code an error
/// names (`data.code`, e.g. `SESSION_BUSY`), or an unknown session's
/// `SESSION_NOT_FOUND`, with Meerkat's number (a `comms/send` code with the Burrow
/// code's number); else the Burrow code and [`rpc_code`].
pub fn contract_code(err: &ErrorObject) -> (String, i64) {
    let data = err.data.as_ref();
    let named = data.and_then(|d| d.get("code")).and_then(Value::as_str);
    if let Some(code) = named.filter(|c| COMMS_SEND_CODES.contains(c)) {
        return (code.to_owned(), rpc_code(err.code));
    }
    let unknown_session = err.code == ErrorCode::NotFound
        && data.and_then(|d| d.get("reason")).and_then(Value::as_str) == Some("unknown_session");
    let contract = named.or(unknown_session.then_some("SESSION_NOT_FOUND"));
    match contract.and_then(|c| CONTRACT_CODES.iter().find(|(name, _)| *name == c)) {
        Some((name, number)) => ((*name).to_owned(), *number),
        None => (err.code.as_str().to_owned(), rpc_code(err.code)),
    }
}

/// The HTTP status of a Burrow [`ErrorCode`] on the REST surface.
pub fn http_status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidParams | ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden | ErrorCode::CapabilityDenied => StatusCode::FORBIDDEN,
        ErrorCode::NotFound | ErrorCode::MethodNotFound => StatusCode::NOT_FOUND,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::ConnectionClosed => StatusCode::BAD_GATEWAY,
        ErrorCode::UnknownError
        | ErrorCode::InternalError
        | ErrorCode::AppNotRegistered
        | ErrorCode::HookNotSubscribed => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The body of a REST error, as Meerkat's REST surface has it: `{"error": "<message>",
/// "code": "NOT_FOUND", "details"?}` — Burrow's code, and the error's `data` as
/// `details` (left out when there is none).
pub fn http_error_body(err: &ErrorObject) -> Value {
    let mut body = json!({ "error": err.message, "code": err.code.as_str() });
    if let Some(data) = &err.data {
        body["details"] = data.clone();
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_distinct_rpc_code_in_the_reserved_ranges() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let n = rpc_code(code);
            assert!(seen.insert(n), "{code} shares {n}");
            assert!((-32768..=-32000).contains(&n), "{code} → {n}");
            assert_ne!(n, PARSE_ERROR);
        }
        assert_eq!(rpc_code(ErrorCode::NotFound), -32044);
        assert_eq!(rpc_code(ErrorCode::HookNotSubscribed), -32053);
        // None of Burrow's own numbers means something else in Meerkat's contract.
        let meerkats = [
            -32001, -32002, -32003, -32004, -32005, -32010, -32011, -32012, -32013, -32020, -32021,
            -32022, -32023, -32025, -32026, -32027, -32028, -32036,
        ];
        for code in ErrorCode::ALL {
            let n = rpc_code(code);
            assert!(!meerkats.contains(&n), "{code} → {n} is one of Meerkat's numbers");
        }
    }

    #[tokio::test]
    async fn a_connection_holds_a_bounded_number_of_subscriptions_ended_with_it() {
        let link = Link::none();
        let mut open = Vec::new();
        for n in 0..MAX_STREAMS {
            open.push(link.open_stream(&format!("s{n}")).expect("room"));
        }
        assert!(link.open_stream("one-more").is_none(), "the cap holds");
        // Ending one makes room; its end is told once its sender is dropped.
        let (stop, done) = open.remove(0);
        drop(done);
        assert!(link.end_stream("s0").await);
        assert!(stop.is_cancelled());
        assert!(!link.end_stream("s0").await, "already ended");
        assert!(link.open_stream("again").is_some());
        // The connection's end stops every subscription.
        link.close();
        assert!(open.iter().all(|(stop, _)| stop.is_cancelled()));
        assert!(link.is_closed());
    }

    #[tokio::test]
    async fn the_kernels_requests_on_a_connection_get_their_answers_or_a_clear_end() {
        use std::time::Duration;
        let (tx, mut sent) = tokio::sync::mpsc::unbounded_channel::<Value>();
        let link = Link::new(std::sync::Arc::new(move |line| {
            let ok = tx.send(line).is_ok();
            Box::pin(async move { ok })
        }));
        let long = Duration::from_secs(30);
        // Answered: the result comes back; the id is the kernel's own.
        let call = tokio::spawn({
            let link = link.clone();
            async move { link.request("tool/execute", json!({"name": "t"}), long).await }
        });
        let request = sent.recv().await.unwrap();
        assert_eq!(
            (request["method"].clone(), request["params"].clone()),
            (json!("tool/execute"), json!({"name": "t"}))
        );
        assert!(request["id"].as_str().unwrap().starts_with("srv-"), "{request}");
        assert!(link.answered(&request["id"], Ok(json!({"content": "x"}))));
        assert_eq!(call.await.unwrap().unwrap(), json!({"content": "x"}));
        assert!(!link.answered(&request["id"], Ok(json!(1))), "answered once");
        assert!(!link.answered(&json!(7), Ok(json!(1))), "not an id the kernel gave");

        // Not answered in time: TIMEOUT, and the late answer finds nobody.
        let err =
            link.request("tool/execute", json!({}), Duration::from_millis(20)).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::Timeout);
        let late = sent.recv().await.unwrap();
        assert!(!link.answered(&late["id"], Ok(json!(1))));

        // At most MAX_REQUESTS awaited at once.
        let waits: Vec<_> = (0..MAX_REQUESTS)
            .map(|_| {
                let link = link.clone();
                tokio::spawn(async move { link.request("tool/execute", json!({}), long).await })
            })
            .collect();
        for _ in 0..MAX_REQUESTS {
            sent.recv().await.unwrap();
        }
        let refused = link.request("tool/execute", json!({}), long).await.unwrap_err();
        assert_eq!(refused.data.unwrap()["reason"], "too_many_requests");

        // The connection's end ends every wait.
        link.close();
        for wait in waits {
            assert_eq!(wait.await.unwrap().unwrap_err().code, ErrorCode::ConnectionClosed);
        }
        let none = Link::none().request("tool/execute", json!({}), long).await.unwrap_err();
        assert_eq!(none.code, ErrorCode::ConnectionClosed);
    }

    #[test]
    fn host_contract_codes_take_meerkats_names_and_numbers() {
        let unknown = ErrorObject::new(ErrorCode::NotFound, "no session")
            .with_data(json!({"reason": "unknown_session", "session_id": "s"}));
        let e = RpcError::from(&unknown);
        assert_eq!((e.code, e.data["code"].clone()), (-32001, json!("SESSION_NOT_FOUND")));
        assert_eq!(e.data["reason"], "unknown_session", "Burrow's reason stays");
        let busy = ErrorObject::new(ErrorCode::Conflict, "busy")
            .with_data(json!({"code": "SESSION_BUSY"}));
        assert_eq!(contract_code(&busy), ("SESSION_BUSY".to_owned(), -32002));
        // A code the contract does not know stays Burrow's.
        let odd = ErrorObject::new(ErrorCode::Conflict, "x").with_data(json!({"code": "MADE_UP"}));
        assert_eq!(contract_code(&odd), ("CONFLICT".to_owned(), rpc_code(ErrorCode::Conflict)));
    }

    #[test]
    fn data_is_an_object_with_the_burrow_code() {
        let plain = RpcError::from(&ErrorObject::new(ErrorCode::NotFound, "no session"));
        assert_eq!(plain.code, -32044);
        assert_eq!(plain.message, "no session");
        assert_eq!(plain.data, json!({"code": "NOT_FOUND"}));

        let merged = RpcError::from(
            &ErrorObject::invalid_params("prompt", "missing")
                .with_data(json!({"field": "prompt", "code": "sneaky"})),
        );
        assert_eq!(merged.code, -32602);
        assert_eq!(merged.data, json!({"code": "INVALID_PARAMS", "field": "prompt"}));

        let detail =
            RpcError::from(&ErrorObject::new(ErrorCode::Timeout, "slow").with_data(json!([1, 2])));
        assert_eq!(detail.data, json!({"code": "TIMEOUT", "detail": [1, 2]}));
        assert_eq!(
            detail.to_value(),
            json!({"code": -32008, "message": "slow", "data": {"code": "TIMEOUT", "detail": [1, 2]}})
        );

        let parse = RpcError::parse("expected value");
        assert_eq!(parse.code, -32700);
        assert_eq!(parse.data["code"], "INVALID_REQUEST");
    }

    #[test]
    fn http_statuses_and_body() {
        let cases = [
            (ErrorCode::InvalidParams, 400),
            (ErrorCode::InvalidRequest, 400),
            (ErrorCode::Unauthorized, 401),
            (ErrorCode::Forbidden, 403),
            (ErrorCode::CapabilityDenied, 403),
            (ErrorCode::NotFound, 404),
            (ErrorCode::MethodNotFound, 404),
            (ErrorCode::Conflict, 409),
            (ErrorCode::Timeout, 504),
            (ErrorCode::ConnectionClosed, 502),
            (ErrorCode::InternalError, 500),
            (ErrorCode::UnknownError, 500),
            (ErrorCode::AppNotRegistered, 500),
            (ErrorCode::HookNotSubscribed, 500),
        ];
        assert_eq!(cases.len(), ErrorCode::ALL.len());
        for (code, status) in cases {
            assert_eq!(http_status(code).as_u16(), status, "{code}");
        }
        let body = http_error_body(
            &ErrorObject::new(ErrorCode::NotFound, "gone").with_data(json!({"id": "s1"})),
        );
        assert_eq!(body, json!({"error": "gone", "code": "NOT_FOUND", "details": {"id": "s1"}}));
        let bare = http_error_body(&ErrorObject::new(ErrorCode::Conflict, "taken"));
        assert_eq!(bare, json!({"error": "taken", "code": "CONFLICT"}));
    }
}
