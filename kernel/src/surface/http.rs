//! REST with server-sent events: routes that each call one host method, plus `/rpc` (one
//! JSON-RPC message over HTTP) and `/apps/...` (an app's own HTTP routes).
//!
//! The routes are Meerkat's REST surface's, in its shapes (the host contract's results),
//! plus Burrow's `history`, `/rpc` and `/apps/...`:
//!
//! | route | host call | success |
//! |---|---|---|
//! | `POST /sessions` (JSON body) | `session/create` (body as params) | 200 |
//! | `GET /sessions?limit=&offset=` | `session/list` | 200 |
//! | `GET /sessions/{id}` | `session/read {session_id}`, times as RFC 3339 | 200 |
//! | `POST /sessions/{id}/messages` (JSON body) | `turn/start` (body + `session_id` from the path, which a body's must match) | 200 |
//! | `POST /sessions/{id}/interrupt` | `turn/interrupt {session_id}` | 200 |
//! | `DELETE /sessions/{id}` | `session/archive {session_id}` → `{session_id, archived: true}` | 200 |
//! | `GET /sessions/{id}/history?offset=&limit=` | `session/history {session_id, ...}` | 200 |
//! | `GET /sessions/{id}/events` | [`Host::session_events`] as `text/event-stream` | 200 |
//! | `POST /sessions/{id}/external-events` (JSON body) | `session/external_event` (body + `session_id` from the path) → `{queued: true, outcome_type, ...}` | 202 |
//! | `POST /comms/send` (JSON body) | `comms/send` (body as params) | 200 |
//! | `GET /comms/peers?session_id=` | `comms/peers` | 200 |
//! | `POST /rpc` (JSON-RPC request or batch) | as [`super::rpc`]; notifications only → 204 | 200 |
//! | any method `/apps/{*rest}` | [`Host::http_request`] | the app's |
//! | `GET /logs/{app_id}?lines=` | [`Host::app_log`] as `text/event-stream`: the last `lines` (default 200, at most [`MAX_TAIL_LINES`]), then new lines | 200 |
//! | `GET /metrics` | the kernel's metrics, Prometheus's text format ([`crate::metrics`]) | 200 |
//! | `POST`, `GET`, `DELETE /mcp` | Burrow's MCP server over streamable HTTP ([`mcp`]) | MCP's |
//! | `GET /ui`, `/ui/app.js`, `/ui/style.css` | the dashboard's assets ([`ui`]) | 200 |
//!
//! Success bodies are the host's result as JSON. Errors are Meerkat's REST errors,
//! `{"error": "<message>", "code": "NOT_FOUND", "details": {...}}` (Burrow's code; its
//! `data` as `details`, left out when none), with the status of [`super::http_status`];
//! besides host errors: a JSON body that is not JSON → 400
//! (`INVALID_REQUEST`, `data.reason: "invalid_json"`), not an object → 400
//! (`INVALID_PARAMS`); no `Content-Type: application/json` → 415 (`reason:
//! "content_type"`); a body over 8 MiB → 413 (`reason: "oversize"`); a query number that
//! is not one → 400 (`INVALID_PARAMS`, `data.field`); no such route → 404 (`reason:
//! "no_route"`); wrong method → 405 (`reason: "method_not_allowed"`); auth → 401/403 (see
//! [`super::auth`]). Under `/apps/`, a path not in normal form → 400 (`INVALID_REQUEST`,
//! `reason: "bad_path"`, from the host: [`burrow_protocol::rules::route_path`]).
//!
//! Deadlines and the connection cap: [`serve_http`], [`HttpLimits`] (a body that does
//! not arrive in time → 408, `reason: "body_timeout"`, and the connection is closed; one
//! connection over the cap → 503, `reason: "too_many_connections"`).
//!
//! Events: one SSE event per item, `event:` its payload's `type` (an envelope of the host
//! contract's, `{event_id, source, seq, timestamp_ms, payload}`) or its own `type`
//! (`session_loaded`, first), omitted when it has none or it would break the framing;
//! `data:` the item as one line of JSON; a keep-alive comment every 15 s. The stream ends
//! when the host's does, or when the server stops. An app's log has the events `tail`
//! (first), `line` and `lagged` ([`crate::service::supervisor::LogEvent`]).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Extension, Json, Router};
use burrow_protocol::methods::Method;
use burrow_protocol::methods::host;
use burrow_protocol::{ErrorCode, ErrorObject, Map, Value};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::service::supervisor::MAX_TAIL_LINES;
use crate::surface::answers::Answers;
use crate::surface::auth::{Auth, is_loopback_host};
use crate::surface::rpc::{Gate, complete, triage};
use crate::surface::{Host, http_error_body, http_status};

mod apps;
pub mod mcp;
mod serve;
mod ui;

pub use serve::{HttpLimits, serve_http};

/// Largest request body.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Host calls one `/rpc` batch makes at once.
const RPC_BATCH_CONCURRENCY: usize = 16;
/// How often an idle event stream gets a keep-alive comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Lines of an app's log sent first when `GET /logs/{app_id}` does not say (`?lines=`).
const LOG_TAIL_LINES: usize = 200;
/// How long [`serve_http`] waits for requests in progress after `stop`.
const DRAIN: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct AppState {
    host: Arc<dyn Host>,
    /// Event streams open at once.
    streams: Arc<tokio::sync::Semaphore>,
    /// Large answers prepared and held at once, by all connections.
    large: Arc<Answers>,
    /// Bytes of request bodies being read or handled, by all connections.
    bodies: Arc<tokio::sync::Semaphore>,
}

/// Room for a request's body, out of [`BODY_BUDGET`]: its declared length (a body with
/// none, [`MAX_BODY_BYTES`]), taken before the body is read and held while the request
/// is handled; 503 `busy` when none comes within [`LARGE_WAIT`].
struct BodyRoom(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit);

impl axum::extract::FromRequestParts<AppState> for BodyRoom {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, ApiError> {
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(MAX_BODY_BYTES)
            .clamp(1, MAX_BODY_BYTES);
        let room = state.bodies.clone().acquire_many_owned(declared as u32);
        match tokio::time::timeout(LARGE_WAIT, room).await {
            Ok(Ok(permit)) => Ok(BodyRoom(permit)),
            Ok(Err(_)) | Err(_) => Err(busy_error()),
        }
    }
}

/// A large answer's slot, carried by its response until it is written
/// ([`serve::serve_http`] moves it into the body).
#[derive(Debug, Clone)]
pub(crate) struct LargeSlot(#[allow(dead_code)] Arc<tokio::sync::OwnedSemaphorePermit>);

impl AppState {
    /// Waits (up to [`LARGE_WAIT`]) for a slot to prepare or hold a large answer in;
    /// 503 `busy` when none comes in time.
    async fn large_slot(&self) -> Result<LargeSlot, ApiError> {
        match tokio::time::timeout(LARGE_WAIT, self.large.large_slot()).await {
            Ok(Some(slot)) => Ok(LargeSlot(Arc::new(slot))),
            Ok(None) | Err(_) => Err(busy_error()),
        }
    }
}

/// `response`, holding `slot` until it is written.
fn holding(mut response: Response, slot: Option<LargeSlot>) -> Response {
    if let Some(slot) = slot {
        response.extensions_mut().insert(slot);
    }
    response
}

/// Requests answered at once; one more gets 503 `busy`.
pub const MAX_CONCURRENT: usize = 512;
/// Event streams open at once; one more gets 503 `busy`.
pub const MAX_STREAMS: usize = 256;
/// Large answers prepared and held at once by default (`[host] http_large_answers`).
pub const LARGE_ANSWERS: usize = 8;
/// How long a request waits for a large answer's slot, or room for its body, before it
/// is answered 503 `busy`.
const LARGE_WAIT: Duration = Duration::from_secs(10);
/// Bytes of request bodies read and held at once, all connections together.
pub const BODY_BUDGET: usize = 64 * 1024 * 1024;

/// Tells event streams that the server is stopping (added by [`serve_http`]).
#[derive(Clone)]
struct StopSignal(CancellationToken);

/// The REST routes over `host`, every request checked by `auth`.
pub fn router(host: Arc<dyn Host>, auth: Arc<Auth>) -> Router {
    router_with_limits(host, auth, MAX_CONCURRENT, MAX_STREAMS, LARGE_ANSWERS)
}

/// [`router`] answering at most `requests` requests, keeping at most `streams` event
/// streams open and preparing or holding at most `large` large answers at once.
pub fn router_with_limits(
    host: Arc<dyn Host>,
    auth: Arc<Auth>,
    requests: usize,
    streams: usize,
    large: usize,
) -> Router {
    let busy = Arc::new(tokio::sync::Semaphore::new(requests));
    let streams = Arc::new(tokio::sync::Semaphore::new(streams));
    let large = Answers::new(usize::MAX, large);
    let bodies = Arc::new(tokio::sync::Semaphore::new(BODY_BUDGET));
    Router::new()
        .route("/sessions", post(create_session).get(list_sessions))
        .route("/sessions/{id}", get(read_session).delete(archive_session))
        .route("/sessions/{id}/messages", post(continue_session))
        .route("/sessions/{id}/interrupt", post(interrupt_session))
        .route("/sessions/{id}/history", get(session_history))
        .route("/sessions/{id}/events", get(session_events))
        .route("/sessions/{id}/external-events", post(external_event))
        .route("/comms/send", post(comms_send))
        .route("/comms/peers", get(comms_peers))
        .route("/rpc", post(rpc))
        .route("/apps/{*rest}", any(apps::proxy))
        .route("/logs/{app_id}", get(app_log))
        .route("/metrics", get(metrics))
        .merge(mcp::routes(host.mcp()))
        .merge(ui::routes())
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(busy.clone(), limit_concurrency))
        .layer(middleware::from_fn(continue_trace))
        .layer(middleware::from_fn_with_state(auth, require_auth))
        .with_state(AppState { host, streams, large, bodies })
}

/// An error answer: `{"error": {...}}` with its status.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    error: ErrorObject,
}

impl ApiError {
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>, data: Value) -> Self {
        ApiError { status, error: ErrorObject::new(code, message).with_data(data) }
    }
}

impl From<ErrorObject> for ApiError {
    fn from(error: ErrorObject) -> Self {
        ApiError { status: http_status(error.code), error }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(http_error_body(&self.error))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            let invalid = self.error.data.as_ref().and_then(|d| d.get("reason"))
                == Some(&Value::from("invalid_token"));
            let challenge = if invalid { r#"Bearer error="invalid_token""# } else { "Bearer" };
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        if self.status == StatusCode::REQUEST_TIMEOUT {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// A request's W3C `traceparent` header: what it does (a run it starts) continues that
/// trace when the kernel exports traces.
async fn continue_trace(request: Request, next: Next) -> Response {
    let traceparent = request.headers().get("traceparent").and_then(|v| v.to_str().ok());
    match traceparent.filter(|_| crate::telemetry::enabled()) {
        Some(tp) => {
            let cx = crate::telemetry::from_traceparent(Some(tp));
            opentelemetry::context::FutureExt::with_context(next.run(request), cx).await
        }
        None => next.run(request).await,
    }
}

/// Holds a permit while a request is answered; none left: 503 `busy`.
async fn limit_concurrency(
    State(busy): State<Arc<tokio::sync::Semaphore>>,
    request: Request,
    next: Next,
) -> Response {
    match busy.try_acquire_owned() {
        Ok(_permit) => next.run(request).await,
        Err(_) => busy_error().into_response(),
    }
}

async fn require_auth(State(auth): State<Arc<Auth>>, request: Request, next: Next) -> Response {
    // The dashboard's files are the same for everyone and hold nothing of the kernel's:
    // a browser gets them without a token, and the page asks for one (every request it
    // makes carries it).
    let read = matches!(*request.method(), axum::http::Method::GET | axum::http::Method::HEAD);
    let public = read && ui::is_asset(request.uri().path());
    if auth.required() {
        if public {
            return next.run(request).await;
        }
        let presented = request.headers().get(header::AUTHORIZATION).map(|value| {
            value
                .to_str()
                .ok()
                .and_then(|v| v.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map_or("", |(_, token)| token.trim())
        });
        if let Err(e) = auth.check(presented) {
            return ApiError::from(e).into_response();
        }
    } else if let Some(host) = request.headers().get(header::HOST)
        && !host.to_str().is_ok_and(is_loopback_host)
    {
        let message = "this server answers loopback names only (or set a host token)";
        return ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            message,
            json!({"reason": "host_not_allowed"}),
        )
        .into_response();
    }
    next.run(request).await
}

/// The text of a body declared as JSON (`Content-Type: application/json` or `+json`).
struct JsonText(String);

impl<S: Send + Sync> FromRequest<S> for JsonText {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .is_some_and(|v| {
                v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
            });
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::InvalidRequest,
                "the body must be JSON with Content-Type: application/json",
                json!({"reason": "content_type"}),
            ));
        }
        let bytes = Bytes::from_request(request, state).await.map_err(body_rejection)?;
        String::from_utf8(bytes.into())
            .map(JsonText)
            .map_err(|_| invalid_json("the body is not UTF-8"))
    }
}

/// A JSON object body.
struct JsonObject(Map);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let JsonText(text) = JsonText::from_request(request, state).await?;
        match burrow_protocol::strict::from_json(&text) {
            Ok(Value::Object(map)) => Ok(JsonObject(map)),
            Ok(_) => {
                Err(ErrorObject::invalid_params("body", "the body must be a JSON object").into())
            }
            Err(e) => Err(invalid_json(&format!("the body is not JSON: {e}"))),
        }
    }
}

fn invalid_json(message: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidRequest,
        message,
        json!({"reason": "invalid_json"}),
    )
}

fn body_rejection(rejection: BytesRejection) -> ApiError {
    if serve::is_body_timeout(&rejection) {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::Timeout,
            "the request body did not arrive in time",
            json!({"reason": "body_timeout"}),
        )
    } else if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::InvalidRequest,
            format!("the body is larger than {MAX_BODY_BYTES} bytes"),
            json!({"reason": "oversize", "max_bytes": MAX_BODY_BYTES}),
        )
    } else {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            rejection.body_text(),
            json!({"reason": "body_unreadable"}),
        )
    }
}

fn path_id(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(id)| id).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            e.body_text(),
            json!({"reason": "bad_path"}),
        )
    })
}

fn query_pairs(uri: &Uri) -> Result<Vec<(String, String)>, ApiError> {
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            e.body_text(),
            json!({"reason": "bad_query"}),
        )
    })?;
    Ok(pairs)
}

/// Every query parameter as a string (the last value of a repeated key).
fn query_params_all(uri: &Uri) -> Result<Map, ApiError> {
    Ok(query_pairs(uri)?.into_iter().map(|(k, v)| (k, Value::from(v))).collect())
}

/// The query's `keys` as params: numbers for `numeric` ones, strings otherwise; other
/// keys are ignored.
fn query_params(uri: &Uri, keys: &[&str], numeric: &[&str]) -> Result<Map, ApiError> {
    let mut params = Map::new();
    for (key, value) in query_pairs(uri)? {
        if !keys.contains(&key.as_str()) {
            continue;
        }
        let value = if numeric.contains(&key.as_str()) {
            let n: u64 = value.parse().map_err(|_| {
                ErrorObject::invalid_params(&key, format!("{key} must be a non-negative integer"))
            })?;
            Value::from(n)
        } else {
            Value::from(value)
        };
        params.insert(key, value);
    }
    Ok(params)
}

async fn call(state: &AppState, method: &str, params: Map) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        state
            .host
            .call(method.to_owned(), Value::Object(params), crate::surface::Link::none())
            .await?,
    ))
}

async fn create_session(
    State(state): State<AppState>,
    _room: BodyRoom,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    Ok(call(&state, "session/create", body).await?.into_response())
}

/// `POST /sessions/{id}/messages`: another turn. A body's `session_id` must be the path's.
async fn continue_session(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    _room: BodyRoom,
    JsonObject(mut body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(id)?;
    if body.get("session_id").is_some_and(|b| b.as_str() != Some(id.as_str())) {
        let why = format!("the body's session_id is not the path's ({id})");
        return Err(ErrorObject::invalid_params("session_id", why).into());
    }
    body.insert("session_id".into(), Value::from(id));
    call(&state, host::TurnStart::NAME, body).await
}

/// `POST /sessions/{id}/interrupt` (any body is ignored).
async fn interrupt_session(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let params = Map::from_iter([("session_id".to_owned(), Value::from(path_id(id)?))]);
    call(&state, host::TurnInterrupt::NAME, params).await
}

/// `DELETE /sessions/{id}`: archives it.
async fn archive_session(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(id)?;
    let params = Map::from_iter([("session_id".to_owned(), Value::from(id.clone()))]);
    let _archived = call(&state, host::SessionArchive::NAME, params).await?;
    Ok(Json(json!({ "session_id": id, "archived": true })))
}

async fn list_sessions(State(state): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    let params = query_params(&uri, &["limit", "offset"], &["limit", "offset"])?;
    let slot = state.large_slot().await?;
    Ok(holding(
        call(&state, host::HostSessionList::NAME, params).await?.into_response(),
        Some(slot),
    ))
}

/// `GET /sessions/{id}`: `session/read`'s result, its times as RFC 3339 strings (as
/// Meerkat's REST has them; its JSON-RPC has seconds).
async fn read_session(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let params = Map::from_iter([("session_id".to_owned(), Value::from(path_id(id)?))]);
    let Json(mut details) = call(&state, "session/read", params).await?;
    for field in ["created_at", "updated_at"] {
        if let Some(seconds) = details.get(field).and_then(Value::as_u64) {
            let text = burrow_protocol::methods::contract::rfc3339(seconds.saturating_mul(1000));
            details[field] = Value::from(text);
        }
    }
    Ok(Json(details))
}

async fn session_history(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let mut params = query_params(&uri, &["limit", "offset"], &["limit", "offset"])?;
    params.insert("session_id".into(), Value::from(path_id(id)?));
    let slot = state.large_slot().await?;
    Ok(holding(
        call(&state, host::HostSessionHistory::NAME, params).await?.into_response(),
        Some(slot),
    ))
}

async fn external_event(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    _room: BodyRoom,
    JsonObject(mut body): JsonObject,
) -> Result<Response, ApiError> {
    body.insert("session_id".into(), Value::from(path_id(id)?));
    let Json(mut outcome) = call(&state, "session/external_event", body).await?;
    if let Some(outcome) = outcome.as_object_mut() {
        outcome.insert("queued".into(), Value::Bool(true));
    }
    Ok((StatusCode::ACCEPTED, Json(outcome)).into_response())
}

async fn comms_send(
    State(state): State<AppState>,
    _room: BodyRoom,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    call(&state, "comms/send", body).await
}

async fn comms_peers(State(state): State<AppState>, uri: Uri) -> Result<Json<Value>, ApiError> {
    call(&state, "comms/peers", query_params(&uri, &["session_id"], &[])?).await
}

async fn session_events(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    stop: Option<Extension<StopSignal>>,
) -> Result<Response, ApiError> {
    // A stream holds its permit for as long as it lasts.
    let permit = state.streams.clone().try_acquire_owned().map_err(|_| busy_error())?;
    let events = state.host.session_events(path_id(id)?).await?;
    Ok(event_stream(events, permit, stop))
}

/// `GET /logs/{app_id}?lines=N`: a managed app's captured log, its last lines then the
/// new ones as they are written.
async fn app_log(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    uri: Uri,
    stop: Option<Extension<StopSignal>>,
) -> Result<Response, ApiError> {
    let id = path_id(id)?;
    let params = query_params(&uri, &["lines"], &["lines"])?;
    let lines = params
        .get("lines")
        .and_then(Value::as_u64)
        .map_or(LOG_TAIL_LINES, |n| usize::try_from(n).unwrap_or(usize::MAX))
        .min(MAX_TAIL_LINES);
    let permit = state.streams.clone().try_acquire_owned().map_err(|_| busy_error())?;
    let events = state.host.app_log(id, lines).await?;
    Ok(event_stream(events, permit, stop))
}

/// `events` as server-sent events, holding `permit` (a place among [`MAX_STREAMS`]) for
/// as long as the stream lasts, and ending when the server stops. The body is pulled:
/// an event is taken from `events` when the connection has room for it, so nothing
/// queues up for a slow client beyond the connection's own buffers.
fn event_stream(
    mut events: futures_util::stream::BoxStream<'static, Value>,
    permit: tokio::sync::OwnedSemaphorePermit,
    stop: Option<Extension<StopSignal>>,
) -> Response {
    if let Some(Extension(StopSignal(stop))) = stop {
        events = events.take_until(stop.cancelled_owned()).boxed();
    }
    let events = events.map(move |event| {
        let _held = &permit;
        Ok::<_, Infallible>(sse_event(&event))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response()
}

/// The kernel's metrics, in Prometheus's text format.
async fn metrics(State(state): State<AppState>) -> Response {
    let content_type = "text/plain; version=0.0.4; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], state.host.metrics()).into_response()
}

/// 503: too many requests, or event streams, at once.
fn busy_error() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::UnknownError,
        "too many requests at once; retry later",
        json!({"reason": "busy"}),
    )
}

fn sse_event(item: &Value) -> Event {
    let mut event = Event::default();
    let kind = item.get("payload").and_then(|p| p.get("type")).or_else(|| item.get("type"));
    if let Some(kind) = kind.and_then(Value::as_str)
        && !kind.is_empty()
        && !kind.contains(['\r', '\n'])
    {
        event = event.event(kind);
    }
    event
        .json_data(item)
        .unwrap_or_else(|_| Event::default().comment("an event could not be encoded"))
}

async fn rpc(
    State(state): State<AppState>,
    _room: BodyRoom,
    JsonText(text): JsonText,
) -> Result<Response, ApiError> {
    let triaged = triage(&text, &mut Gate::trusted());
    drop(text);
    // The kernel's own large answers are prepared in a slot; an app's take one once in
    // hand.
    let mut slot = match triaged.prepares_large() {
        true => Some(state.large_slot().await?),
        false => None,
    };
    let routed = triaged.is_routed();
    let answer = complete(
        &*state.host,
        triaged,
        RPC_BATCH_CONCURRENCY,
        MAX_BODY_BYTES,
        &crate::surface::Link::none(),
    )
    .await;
    if routed && slot.is_none() {
        slot = Some(state.large_slot().await?);
    }
    Ok(match answer {
        Some(answer) => holding(Json(answer).into_response(), slot),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

async fn no_route(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "no such route",
        json!({"reason": "no_route", "path": uri.path()}),
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotFound,
        "this route does not take that method",
        json!({"reason": "method_not_allowed"}),
    )
}

#[cfg(test)]
mod tests;
