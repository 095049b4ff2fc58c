//! `/apps/{*rest}`: an app's own HTTP routes, answered through [`Host::http_request`].
//!
//! The request goes to the app as `{method, path, query, headers, body?}`: `path` is the
//! full path (`/apps/<id>/...`), `query` maps each key to its (last) value, `headers` have
//! lower-case names with values joined by `", "` (`authorization` is never passed on),
//! `body` is the text of a non-empty body (a body that is not UTF-8 → 400). The answer's
//! status, headers and body are sent back; a status outside 200..=999 → 502, headers that
//! are not valid HTTP or are hop-by-hop are dropped. The path is passed as the client
//! sent it: the host refuses one not in normal form (400 `bad_path`) before matching.

use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use burrow_protocol::methods::invoke::{HttpRequestParams, HttpResponse};
use burrow_protocol::{ErrorCode, Map, Value};
use bytes::Bytes;
use serde_json::json;

use super::{ApiError, AppState, BodyRoom, body_rejection, query_params_all};

/// Headers that belong to one hop, never passed back from an app.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub(super) async fn proxy(
    State(state): State<AppState>,
    _room: BodyRoom,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(body_rejection)?;
    let body = if body.is_empty() {
        None
    } else {
        Some(String::from_utf8(body.into()).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidRequest,
                "app routes take text bodies only",
                json!({"reason": "body_not_utf8"}),
            )
        })?)
    };
    let request = HttpRequestParams {
        method: method.as_str().to_owned(),
        path: uri.path().to_owned(),
        query: query_params_all(&uri)?,
        headers: request_headers(&headers),
        body,
    };
    // An app's answer may be as large as a frame: it takes a slot once in hand.
    let answer = state.host.http_request(request).await?;
    let slot = state.large_slot().await?;
    respond(answer).map(|response| super::holding(response, Some(slot)))
}

fn request_headers(headers: &HeaderMap) -> Map {
    let mut out = Map::new();
    for name in headers.keys() {
        if name == header::AUTHORIZATION {
            continue;
        }
        let values: Vec<&str> =
            headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
        if !values.is_empty() {
            out.insert(name.as_str().to_owned(), Value::from(values.join(", ")));
        }
    }
    out
}

fn respond(answer: HttpResponse) -> Result<Response, ApiError> {
    let status = StatusCode::from_u16(answer.status)
        .ok()
        .filter(|s| !s.is_informational())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                ErrorCode::UnknownError,
                format!("the app answered with an invalid status {}", answer.status),
                json!({"reason": "bad_status", "status": answer.status}),
            )
        })?;
    let mut response = (status, answer.body.unwrap_or_default()).into_response();
    // The app's content-type (if any) replaces the default text/plain.
    let headers = response.headers_mut();
    for (name, value) in answer.headers.unwrap_or_default() {
        let value = match value {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => String::new(),
        };
        let parsed = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&value));
        match parsed {
            (Ok(name), Ok(value))
                if !value.is_empty()
                    && name != header::CONTENT_LENGTH
                    && !HOP_BY_HOP.contains(&name.as_str()) =>
            {
                headers.insert(name, value);
            }
            _ => tracing::debug!(header = %name, "http: dropped a header an app answered"),
        }
    }
    Ok(response)
}
