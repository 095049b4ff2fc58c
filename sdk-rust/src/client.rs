//! [`Client`]: a cheap, cloneable handle to one connection, for calling the far side.

use std::marker::PhantomData;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Poll, ready};
use std::time::Duration;

use burrow_protocol::Value;
use burrow_protocol::methods::app::{
    AppHeartbeat, HeartbeatParams, HeartbeatResult, KernelApps, KernelAppsResult, KernelInfo,
    KernelInfoResult,
};
use burrow_protocol::methods::capability::{
    CapabilityRegister, CapabilityType, CapabilityUnregister, RegisterCapabilityParams,
    RegisterCapabilityResult, UnregisterCapabilityParams,
};
use burrow_protocol::methods::config::{
    ConfigChange, ConfigGet, ConfigGetParams, ConfigWatch, ConfigWatchParams,
};
use burrow_protocol::methods::hook::{
    HookSubscribe, HookUnsubscribe, SubscribeParams, SubscribeResult, UnsubscribeParams,
    UnsubscribeResult,
};
use burrow_protocol::methods::invoke::{ToolCall, ToolCallParams, ToolResult};
use burrow_protocol::methods::operator::SessionEvent;
use burrow_protocol::methods::{Empty, Method, to_value};
use futures_util::Stream;
use serde::de::DeserializeOwned;

use crate::app::Grants;
use crate::peer::{self, CallStream, Service, Shared, StreamItem};
use crate::transport::{self, Transport};
use crate::{Error, Result};

/// How long [`Client::keep_alive`] waits for `kernel.info` to learn the heartbeat pace.
const ASK_PACE: Duration = Duration::from_secs(5);

/// A handle to one connection: send requests and notifications, and learn when it closes.
///
/// Clones share the connection. A plain client ([`Client::connect`]) answers every request
/// from the far side with `METHOD_NOT_FOUND`; [`Client::with_service`] serves them. The
/// connection closes when [`Client::close`] is called, when the far side leaves, or when
/// the last clone is dropped.
///
/// ```no_run
/// # async fn demo() -> burrow_sdk::Result<()> {
/// let client = burrow_sdk::Client::connect_default().await?;
/// let info = client.kernel_info().await?;
/// println!("kernel {} with {} apps", info.version, info.apps);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.shared.fmt(f)
    }
}

impl Client {
    /// Connects to the kernel's socket at `path`, without registering as an app (enough
    /// for `kernel.info`, `kernel.apps` and other calls allowed before registering).
    pub async fn connect(path: impl AsRef<Path>) -> Result<Client> {
        let transport = Transport::connect(path).await?;
        Ok(Client::from_transport(transport))
    }

    /// Connects to the socket named by `BURROW_SOCKET`, else the default socket.
    pub async fn connect_default() -> Result<Client> {
        Client::connect(transport::socket_from_env()).await
    }

    /// A plain client over an established transport. Needs a tokio runtime.
    pub fn from_transport(transport: Transport) -> Client {
        Client::from_shared(peer::spawn(transport, None))
    }

    /// A client over an established transport whose far side's requests and
    /// notifications are served by `service`. Needs a tokio runtime.
    pub fn with_service(transport: Transport, service: impl Service) -> Client {
        Client::from_shared(peer::spawn(transport, Some(Arc::new(service))))
    }

    pub(crate) fn from_shared(shared: Arc<Shared>) -> Client {
        Client { shared }
    }

    /// Calls a typed method and waits for its result.
    ///
    /// A result that does not decode as `M::Result` is [`Error::Protocol`].
    pub async fn call<M: Method>(&self, params: M::Params) -> Result<M::Result> {
        let value = self.request(M::NAME, to_value(&params)).await?;
        decode_result::<M>(value)
    }

    /// [`Client::call`] that gives up after `timeout` with [`Error::Timeout`].
    pub async fn call_with_timeout<M: Method>(
        &self,
        params: M::Params,
        timeout: Duration,
    ) -> Result<M::Result> {
        let value = self.request_with_timeout(M::NAME, to_value(&params), timeout).await?;
        decode_result::<M>(value)
    }

    /// Sends a request and waits for its result, however long it takes (until the
    /// connection closes: [`Error::Closed`]). An error answer is [`Error::Remote`].
    /// Dropping the future before the answer comes cancels the request: the far side is
    /// sent `$/cancel`.
    pub async fn request(&self, method: &str, params: Value) -> Result<Value> {
        self.shared.request(method, params, None).await
    }

    /// [`Client::request`] that gives up after `timeout` with [`Error::Timeout`]; the
    /// request is forgotten and the far side is sent `$/cancel`.
    pub async fn request_with_timeout(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value> {
        self.shared.request(method, params, Some(timeout)).await
    }

    /// Sends a streaming request (e.g. `config.watch`): the returned stream yields its
    /// chunks, then its final result. Dropping the stream cancels the request.
    pub async fn request_stream(&self, method: &str, params: Value) -> Result<CallStream> {
        self.shared.request_stream(method, params).await
    }

    /// Sends a notification (no answer).
    pub async fn notify(&self, method: &str, params: Value) -> Result<()> {
        self.shared.notify(method, params).await
    }

    /// `kernel.info`: the kernel's version, protocol version and counts.
    pub async fn kernel_info(&self) -> Result<KernelInfoResult> {
        self.call::<KernelInfo>(Empty {}).await
    }

    /// `kernel.apps`: the live apps.
    pub async fn kernel_apps(&self) -> Result<KernelAppsResult> {
        self.call::<KernelApps>(Empty {}).await
    }

    /// Keeps this connection alive for as long as any clone of the client is held and
    /// the connection is open, registered or not: the kernel drops a connection that
    /// sends nothing for `ipc.heartbeat_timeout_ms`, so a client that only waits (a
    /// followed log, a stream of events, a long call) sends `app.heartbeat` at the pace
    /// `kernel.info` reports (`heartbeatIntervalMs`; 5 s when not reported).
    pub fn keep_alive(&self) {
        let weak = Arc::downgrade(&self.shared);
        tokio::spawn(async move {
            let every = match Client::upgrade(&weak) {
                Some(client) => {
                    let asked = client.call_with_timeout::<KernelInfo>(Empty {}, ASK_PACE);
                    match asked.await {
                        Ok(info) if info.heartbeat_interval_ms > 0 => info.heartbeat_interval_ms,
                        _ => 5_000,
                    }
                }
                None => return,
            };
            let every = Duration::from_millis(every.max(10));
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(client) = Client::upgrade(&weak) else { return };
                match client.call_with_timeout::<AppHeartbeat>(Default::default(), every * 2).await
                {
                    Ok(_) => {}
                    Err(Error::Closed | Error::Shutdown) => return,
                    Err(e) => tracing::debug!(error = %e, "keep-alive heartbeat failed"),
                }
            }
        });
    }

    fn upgrade(weak: &std::sync::Weak<Shared>) -> Option<Client> {
        weak.upgrade().map(Client::from_shared)
    }

    /// `app.heartbeat` with no status.
    pub async fn heartbeat(&self) -> Result<HeartbeatResult> {
        self.call::<AppHeartbeat>(HeartbeatParams::default()).await
    }

    /// The app id this connection registered as, when an [`crate::App`] runs it.
    pub fn app_id(&self) -> Option<&str> {
        self.shared.app_id()
    }

    pub(crate) fn set_app_id(&self, app_id: String) {
        self.shared.set_app_id(app_id);
    }

    /// What the kernel granted the app on this connection (subscriptions and
    /// capabilities), once an [`crate::App`] has declared them: set before `app.ready`, so
    /// `on_ready` and every handler see it. `None` on a plain client.
    pub fn grants(&self) -> Option<Arc<Grants>> {
        self.shared.grants()
    }

    pub(crate) fn set_grants(&self, grants: Grants) {
        self.shared.set_grants(grants);
    }

    /// Sends one chunk of the far side's streaming request `id`.
    pub(crate) async fn send_chunk(&self, id: burrow_protocol::Id, chunk: Value) -> Result<()> {
        self.shared.send_chunk(id, chunk).await
    }

    /// `tool.call`: calls a tool through the kernel, outside any session. A tool that
    /// failed in its own terms is `Ok` with `is_error: Some(true)`; the kernel's refusals
    /// (`NOT_FOUND`, `TIMEOUT`, `FORBIDDEN` when an interceptor blocked it, ...) are
    /// [`Error::Remote`].
    pub async fn call_tool(&self, name: &str, arguments: Value) -> Result<ToolResult> {
        self.call_tool_params(ToolCallParams {
            name: name.to_owned(),
            arguments,
            session_key: None,
        })
        .await
    }

    /// [`Client::call_tool`] on behalf of a session.
    pub async fn call_tool_in_session(
        &self,
        name: &str,
        arguments: Value,
        session_key: &str,
    ) -> Result<ToolResult> {
        self.call_tool_params(ToolCallParams {
            name: name.to_owned(),
            arguments,
            session_key: Some(session_key.to_owned()),
        })
        .await
    }

    /// `tool.call` with every parameter.
    pub async fn call_tool_params(&self, params: ToolCallParams) -> Result<ToolResult> {
        self.call::<ToolCall>(params).await
    }

    /// `config.get`: the value at a dotted `path` of the kernel's configuration (`null`
    /// when missing); `None` reads the app's own subtree `apps.<appId>`. Paths outside it
    /// need the manifest's `config.read` (else `FORBIDDEN`).
    pub async fn config_get(&self, path: Option<&str>) -> Result<Value> {
        let params = ConfigGetParams { path: path.map(str::to_owned), origin: false };
        Ok(self.call::<ConfigGet>(params).await?.value)
    }

    /// `config.watch`: a stream of the changes under `paths` (`None`: the app's own
    /// subtree) each time the kernel's configuration file changes. Dropping the stream
    /// sends the kernel `$/cancel`; the stream ends when the kernel ends the watch.
    pub async fn config_watch(&self, paths: Option<Vec<String>>) -> Result<ConfigWatchStream> {
        let params = to_value(&ConfigWatchParams { paths });
        let inner = self.request_stream(ConfigWatch::NAME, params).await?;
        Ok(WatchStream::new(inner, ConfigWatch::NAME))
    }

    /// `hook.subscribe`: observe `events` (names or trailing-`*` patterns). The events
    /// arrive as `hook.event` notifications; an [`crate::App`] declares its subscriptions
    /// with [`crate::App::on_event`] instead.
    pub async fn hook_subscribe(
        &self,
        events: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<SubscribeResult> {
        let events = events.into_iter().map(Into::into).collect();
        self.call::<HookSubscribe>(SubscribeParams { events }).await
    }

    /// `hook.unsubscribe`: stop observing `events` (as subscribed).
    pub async fn hook_unsubscribe(
        &self,
        events: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<UnsubscribeResult> {
        let events = events.into_iter().map(Into::into).collect();
        self.call::<HookUnsubscribe>(UnsubscribeParams { events }).await
    }

    /// `capability.register`: ask for a capability of `kind` with `config` (e.g. a
    /// [`burrow_protocol::methods::capability::ToolConfig`] or a `json!` map). A refusal
    /// is `Ok` with `granted: false` and a `reason`. An [`crate::App`] declares its
    /// capabilities with the builder instead, and registers them on every connection.
    pub async fn register_capability(
        &self,
        kind: CapabilityType,
        config: impl serde::Serialize,
    ) -> Result<RegisterCapabilityResult> {
        let config = serde_json::to_value(config)
            .map_err(|e| Error::Protocol(format!("unencodable capability config: {e}")))?;
        self.call::<CapabilityRegister>(RegisterCapabilityParams { kind, config }).await
    }

    /// `capability.unregister`: give a capability back.
    pub async fn unregister_capability(&self, capability_id: &str) -> Result<()> {
        let params = UnregisterCapabilityParams { capability_id: capability_id.to_owned() };
        self.call::<CapabilityUnregister>(params).await.map(drop)
    }

    /// Resolves once the connection is gone.
    pub async fn closed(&self) {
        self.shared.closed().await;
    }

    /// Whether the connection is gone.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Closes gracefully: waits up to `grace` for the answers to the far side's requests
    /// in flight (their handlers may still call the far side meanwhile), then refuses new
    /// requests ([`Error::Shutdown`]), writes everything queued and shuts the connection
    /// down. Requests still pending then fail with [`Error::Closed`].
    pub async fn close(&self, grace: Duration) {
        self.shared.close(grace).await;
    }
}

fn decode_result<M: Method>(value: Value) -> Result<M::Result> {
    serde_json::from_value(value)
        .map_err(|e| Error::Protocol(format!("unexpected result of {}: {e}", M::NAME)))
}

/// The changes of a `config.watch` ([`Client::config_watch`]).
pub type ConfigWatchStream = WatchStream<ConfigChange>;

/// The events of a followed session ([`Client::session_events`]).
pub type SessionEventStream = WatchStream<SessionEvent>;

/// The typed chunks of a streaming request that runs until the kernel ends it or it is
/// dropped: `config.watch` ([`ConfigWatchStream`]), `session.events`
/// ([`SessionEventStream`]).
///
/// Yields one `Ok(T)` per chunk; a chunk that does not decode is an
/// `Err(Error::Protocol)` and the stream goes on. It ends (`None`) when the kernel ends
/// the request with `{ended}` ([`WatchStream::ended`] tells why), or after one `Err`
/// when the request fails or the connection closes. Dropping it before the end sends the
/// kernel `$/cancel {id}`.
#[derive(Debug)]
pub struct WatchStream<T> {
    inner: CallStream,
    method: &'static str,
    ended: Option<String>,
    _item: PhantomData<fn() -> T>,
}

impl<T> WatchStream<T> {
    fn new(inner: CallStream, method: &'static str) -> Self {
        Self { inner, method, ended: None, _item: PhantomData }
    }

    /// Why the kernel ended the request (e.g. `"cancelled"`, `"lagged"`), once it has.
    pub fn ended(&self) -> Option<&str> {
        self.ended.as_deref()
    }

    /// The id of the request (what `$/cancel` names).
    pub fn id(&self) -> u64 {
        self.inner.id()
    }
}

impl<T: DeserializeOwned> Stream for WatchStream<T> {
    type Item = Result<T>;

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let item = match ready!(Pin::new(&mut this.inner).poll_next(cx)) {
            None => None,
            Some(Ok(StreamItem::Chunk(chunk))) => Some(
                serde_json::from_value(chunk)
                    .map_err(|e| Error::Protocol(format!("unexpected {} chunk: {e}", this.method))),
            ),
            Some(Ok(StreamItem::End(end))) => {
                let reason = end.get("ended").and_then(Value::as_str).unwrap_or("ended");
                this.ended = Some(reason.to_owned());
                None
            }
            Some(Err(e)) => Some(Err(e)),
        };
        Poll::Ready(item)
    }
}

mod sessions;

#[cfg(test)]
mod tests;
