//! Host surfaces: JSON-RPC 2.0 (newline-delimited JSON over TCP with
//! `burrow kernel --rpc-tcp`, over stdio with `burrow rpc`) and REST with server-sent
//! events (`burrow kernel --http`). Both are thin: they turn requests into calls on a
//! [`Host`] and its answers and errors into their own shapes. Off loopback, every request
//! must carry a bearer token (`burrow token create`), compared in constant time.

use std::future::Future;
use std::pin::Pin;

use burrow_protocol::methods::invoke::{HttpRequestParams, HttpResponse};
use burrow_protocol::{ErrorObject, Value};
use futures_util::stream::BoxStream;

/// A boxed future, so [`Host`] stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the host surfaces need: the kernel itself, or (for `burrow rpc`) a client of it.
pub trait Host: Send + Sync + 'static {
    /// One host method by its JSON-RPC name (`session/create`, `comms/send`, ...) or the
    /// name of a gateway method an app registered.
    fn call(&self, method: String, params: Value) -> BoxFuture<'_, Result<Value, ErrorObject>>;

    /// The events of one session from now on (JSON objects with a `type`);
    /// `NOT_FOUND` when there is no such session.
    fn session_events(
        &self,
        session_id: String,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Value>, ErrorObject>>;

    /// A request for an app's `http_route` (a path under `/apps/<id>/`), answered by the
    /// app through `http.request`.
    fn http_request(
        &self,
        request: HttpRequestParams,
    ) -> BoxFuture<'_, Result<HttpResponse, ErrorObject>>;
}
