//! [`Client`]: a cheap, cloneable handle to one connection, for calling the far side.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use burrow_protocol::Value;
use burrow_protocol::methods::app::{
    AppHeartbeat, HeartbeatParams, HeartbeatResult, KernelApps, KernelAppsResult, KernelInfo,
    KernelInfoResult,
};
use burrow_protocol::methods::{Empty, Method, to_value};

use crate::peer::{self, CallStream, Service, Shared};
use crate::transport::{self, Transport};
use crate::{Error, Result};

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
        let value = self
            .request_with_timeout(M::NAME, to_value(&params), timeout)
            .await?;
        decode_result::<M>(value)
    }

    /// Sends a request and waits for its result, however long it takes (until the
    /// connection closes: [`Error::Closed`]). An error answer is [`Error::Remote`].
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
