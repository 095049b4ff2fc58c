//! [`App`]: the builder an app is written with, and the lifecycle it runs.
//!
//! A run: connect → `app.register` → `hook.subscribe` (every observed pattern and
//! intercepted event, in one call) → one `capability.register` per tool, gateway method,
//! provider, channel and interceptor → `app.ready` → `on_ready` → serve the kernel's requests and send
//! `app.heartbeat` every interval, until
//! - the shutdown future resolves (Ctrl-C/SIGTERM for [`App::run`]): send `app.shutdown`,
//!   close, return `Ok`;
//! - the kernel sends `app.shutdown`: answer `{ok: true}`, let the handlers in flight
//!   finish (up to the request's `timeout`), close, return `Ok`;
//! - the connection drops: reconnect with bounded backoff ([`ReconnectPolicy`]),
//!   registering again with the token the kernel gave, and declaring everything again;
//!   giving up is an `Err`.
//!
//! Mistakes in the app's setup (an invalid manifest, a bad tool name, a refused
//! registration, no kernel at start-up) end the run with an `Err` at once. A subscription
//! or capability the kernel denies does not: it is logged and recorded in [`Grants`].
//!
//! Submodules: `tools` (tools and gateway methods), `agents` (model providers and
//! channels), `hooks` (observers and interceptors), `setup` (what is declared between register and ready, [`Grants`],
//! manifest auto-grants), `router` (dispatch of the kernel's traffic), `run` (the loop).

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use burrow_protocol::methods::app::{
    AppHeartbeat, AppReady, AppRegister, AppShutdown, PROTOCOL_VERSION, ReadyParams,
    RegisterParams, RegisterResult, protocol_major_matches,
};
use burrow_protocol::methods::hook::HookEvent as HookEventMethod;
use burrow_protocol::methods::invoke::{ChannelSend, GatewayInvoke, ProviderComplete, ToolInvoke};
use burrow_protocol::methods::{Method, parse_params, to_value};
use burrow_protocol::{ErrorCode, ErrorObject, Id, Manifest, Value};
use futures_util::FutureExt;
use tokio::time::Instant;

use crate::peer::BoxFuture;
use crate::transport::{self, APP_ID_ENV, Transport};
use crate::{Client, Error, Result};

mod agents;
mod hooks;
mod router;
mod run;
mod setup;
mod tools;

pub use agents::{ChannelContext, ChannelStreamEvent, MAX_ID_LEN, ProviderContext};
pub use hooks::{HookEvent, InterceptSpec, MAX_INTERCEPT_TASKS, MAX_OBSERVER_TASKS};
pub use setup::{CapabilityGrant, Grants};
pub use tools::{GatewayContext, ToolContext};

/// Deadline of `app.register` and `app.ready`.
const LIFECYCLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight handlers may take when the kernel's `app.shutdown` names no timeout.
const DEFAULT_DRAIN: Duration = Duration::from_secs(5);

/// How an [`App`] reconnects after losing the kernel: exponential backoff from `initial`,
/// doubling up to `max` between attempts, giving up once `max_elapsed` has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// The first delay.
    pub initial: Duration,
    /// The longest delay between two attempts.
    pub max: Duration,
    /// Give up after trying this long.
    pub max_elapsed: Duration,
}

impl Default for ReconnectPolicy {
    /// 200 ms, doubling to 5 s, for at most 30 s.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(5),
            max_elapsed: Duration::from_secs(30),
        }
    }
}

impl ReconnectPolicy {
    /// Never reconnect: losing the kernel ends the run with an error.
    pub const NEVER: ReconnectPolicy = ReconnectPolicy {
        initial: Duration::ZERO,
        max: Duration::ZERO,
        max_elapsed: Duration::ZERO,
    };
}

/// What a handler learns about the request it serves.
#[derive(Debug, Clone)]
pub struct Context {
    client: Client,
    method: String,
    request_id: Option<Id>,
}

impl Context {
    /// The app's connection to the kernel, to call kernel methods from a handler.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The id the app registered as.
    pub fn app_id(&self) -> &str {
        self.client.app_id().unwrap_or_default()
    }

    /// The method being served.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The kernel's id of the request being served; `None` for a notification.
    pub fn request_id(&self) -> Option<&Id> {
        self.request_id.as_ref()
    }

    /// Sends one chunk of the answer (`{id, chunk}`) before the handler returns its
    /// result: what a request that streams its answer does (e.g. a `provider.complete`
    /// served with [`App::on_request`], whose chunks are [`crate::ProviderChunk`]s).
    /// A notification has no answer to stream: that is an [`Error::Protocol`].
    pub async fn chunk(&self, chunk: Value) -> Result<()> {
        let Some(id) = self.request_id.clone() else {
            return Err(Error::Protocol(format!("{} is a notification: no chunks", self.method)));
        };
        self.client.send_chunk(id, chunk).await
    }
}

type RequestFn =
    Arc<dyn Fn(Value, Context) -> BoxFuture<std::result::Result<Value, ErrorObject>> + Send + Sync>;
type NotificationFn = Arc<dyn Fn(Value, Context) -> BoxFuture<()> + Send + Sync>;
type ReadyFn = Arc<dyn Fn(Client) -> BoxFuture<()> + Send + Sync>;

/// Everything an app answers the kernel with.
#[derive(Default)]
struct Handlers {
    requests: HashMap<String, RequestFn>,
    notifications: HashMap<String, NotificationFn>,
    tools: tools::Tools,
    agents: agents::Agents,
    hooks: hooks::Hooks,
}

impl Handlers {
    /// Raw handlers that the declared tools, gateway methods or hooks would shadow.
    fn conflicts(&self) -> Vec<String> {
        let mut conflicts = Vec::new();
        let mut check = |declared: bool, raw: bool, method: &str, what: &str| {
            if declared && raw {
                conflicts.push(format!("a handler for {method} cannot be combined with {what}"));
            }
        };
        check(
            self.tools.has_tools(),
            self.requests.contains_key(ToolInvoke::NAME),
            ToolInvoke::NAME,
            "App::tool",
        );
        check(
            self.tools.has_gateway_methods(),
            self.requests.contains_key(GatewayInvoke::NAME),
            GatewayInvoke::NAME,
            "App::gateway_method",
        );
        check(
            self.agents.has_providers(),
            self.requests.contains_key(ProviderComplete::NAME),
            ProviderComplete::NAME,
            "App::provider",
        );
        check(
            self.agents.has_channels(),
            self.requests.contains_key(ChannelSend::NAME),
            ChannelSend::NAME,
            "App::channel",
        );
        check(
            !self.hooks.is_empty(),
            self.notifications.contains_key(HookEventMethod::NAME),
            HookEventMethod::NAME,
            "App::on_event or App::intercept",
        );
        conflicts
    }
}

/// A Burrow app: a manifest, handlers for what the kernel sends it, and a run loop.
///
/// ```no_run
/// use burrow_sdk::{App, Manifest};
/// use serde_json::json;
///
/// # async fn demo() -> burrow_sdk::Result<()> {
/// App::new(Manifest::new("hello", "0.1.0"))
///     .on_request("hello.greet", |params, _cx| async move {
///         Ok(json!({ "greeting": format!("Hello, {}!", params["name"]) }))
///     })
///     .on_ready(|client| async move {
///         println!("ready as {}", client.app_id().unwrap_or_default());
///     })
///     .run()
///     .await
/// # }
/// ```
#[must_use = "an App does nothing until `run` is awaited"]
pub struct App {
    manifest: Manifest,
    socket: Option<PathBuf>,
    reconnect: ReconnectPolicy,
    shutdown_timeout: Duration,
    handlers: Handlers,
    on_ready: Option<ReadyFn>,
    mistakes: Vec<String>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut requests: Vec<_> = self.handlers.requests.keys().collect();
        requests.sort();
        f.debug_struct("App")
            .field("manifest", &self.manifest)
            .field("socket", &self.socket)
            .field("reconnect", &self.reconnect)
            .field("requests", &requests)
            .field("tools", &self.handlers.tools.tool_names().collect::<Vec<_>>())
            .field("gateway_methods", &self.handlers.tools.gateway_methods().collect::<Vec<_>>())
            .field("providers", &self.handlers.agents.provider_ids().collect::<Vec<_>>())
            .field("channels", &self.handlers.agents.channel_ids().collect::<Vec<_>>())
            .field("events", &self.handlers.hooks.subscriptions())
            .finish_non_exhaustive()
    }
}

impl App {
    /// An app with this manifest. An empty `id` is taken from `BURROW_APP_ID` at run time.
    pub fn new(manifest: Manifest) -> Self {
        Self {
            manifest,
            socket: None,
            reconnect: ReconnectPolicy::default(),
            shutdown_timeout: Duration::from_secs(5),
            handlers: Handlers::default(),
            on_ready: None,
            mistakes: Vec::new(),
        }
    }

    /// The kernel's socket; default `BURROW_SOCKET`, else the default socket path.
    pub fn socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.socket = Some(path.into());
        self
    }

    /// How to reconnect after losing the kernel; default [`ReconnectPolicy::default`].
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = policy;
        self
    }

    /// How long leaving may take: the deadline of our own `app.shutdown` (default 5 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Answers the kernel's requests for `method`. Each request runs in a task of its own;
    /// a panic answers `INTERNAL_ERROR`. Methods without a handler answer
    /// `METHOD_NOT_FOUND`. `app.shutdown` is the SDK's own and cannot be handled; prefer
    /// [`App::tool`], [`App::gateway_method`], [`App::provider`] and [`App::channel`] to
    /// raw `tool.invoke`, `gateway.invoke`, `provider.complete` and `channel.send`
    /// handlers (combining them fails the run at start-up).
    pub fn on_request<F, Fut>(mut self, method: impl Into<String>, handler: F) -> Self
    where
        F: Fn(Value, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<Value, ErrorObject>> + Send + 'static,
    {
        let method = method.into();
        if method == AppShutdown::NAME {
            self.mistakes.push(format!("{method} is handled by the SDK itself"));
        }
        let handler: RequestFn = Arc::new(move |params, cx| Box::pin(handler(params, cx)));
        if self.handlers.requests.insert(method.clone(), handler).is_some() {
            self.mistakes.push(format!("two request handlers for {method}"));
        }
        self
    }

    /// [`App::on_request`] with typed params and result: params that do not decode are
    /// answered `INVALID_PARAMS` naming the field.
    pub fn on<M, F, Fut>(self, handler: F) -> Self
    where
        M: Method,
        F: Fn(M::Params, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<M::Result, ErrorObject>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        self.on_request(M::NAME, move |params, cx| {
            let handler = handler.clone();
            async move {
                let params = parse_params::<M::Params>(params)?;
                handler(params, cx).await.map(|result| to_value(&result))
            }
        })
    }

    /// Takes the kernel's notifications for `method`, one at a time in the order they
    /// came. For `hook.event`, prefer [`App::on_event`] and [`App::intercept`] (combining
    /// them with a raw handler fails the run at start-up).
    pub fn on_notification<F, Fut>(mut self, method: impl Into<String>, handler: F) -> Self
    where
        F: Fn(Value, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let method = method.into();
        let handler: NotificationFn = Arc::new(move |params, cx| Box::pin(handler(params, cx)));
        if self.handlers.notifications.insert(method.clone(), handler).is_some() {
            self.mistakes.push(format!("two notification handlers for {method}"));
        }
        self
    }

    /// Called each time the app (re)became ready, in a task of its own that is cancelled
    /// when the connection ends. The client knows the app id ([`Client::app_id`]) and
    /// what the kernel granted ([`Client::grants`]).
    pub fn on_ready<F, Fut>(mut self, callback: F) -> Self
    where
        F: Fn(Client) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_ready = Some(Arc::new(move |client| Box::pin(callback(client))));
        self
    }

    /// Runs until Ctrl-C or SIGTERM (then leaves with `app.shutdown`), until the kernel
    /// sends `app.shutdown`, or until reconnecting gives up (`Err`).
    pub async fn run(self) -> Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// [`App::run`] with a shutdown future of your own instead of the signals.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let runner = self.prepare()?;
        runner.run_reconnecting(shutdown).await
    }

    /// Serves one established connection, without reconnecting: for tests with
    /// [`Transport::memory_pair`] or [`crate::testing::FakeKernel`]. Losing the connection
    /// is an `Err`.
    pub async fn run_on(
        self,
        transport: Transport,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        let runner = self.prepare()?;
        let mut shutdown = std::pin::pin!(shutdown);
        let mut token = None;
        match runner.serve(transport, &mut token, shutdown.as_mut()).await {
            run::Outcome::Done => Ok(()),
            run::Outcome::Refused(e) | run::Outcome::NotRegistered(e) | run::Outcome::Lost(e) => {
                Err(e)
            }
        }
    }

    /// Settles the configuration: the app id, gateway namespaces, the manifest's grants
    /// and validity, builder mistakes.
    fn prepare(mut self) -> Result<run::Runner> {
        if self.manifest.id.is_empty()
            && let Some(id) = std::env::var(APP_ID_ENV).ok().filter(|id| !id.is_empty())
        {
            self.manifest.id = id;
        }
        self.manifest.validate().map_err(Error::InvalidManifest)?;
        let namespace = self.handlers.tools.resolve(&self.manifest.id);
        self.mistakes.extend(namespace);
        self.mistakes.extend(self.handlers.conflicts());
        if !self.mistakes.is_empty() {
            return Err(Error::Config(self.mistakes.join("; ")));
        }
        setup::grant_in_manifest(&mut self.manifest, &self.handlers);
        self.manifest.validate().map_err(Error::InvalidManifest)?;
        Ok(run::Runner {
            manifest: self.manifest,
            socket: self.socket.unwrap_or_else(transport::socket_from_env),
            reconnect: self.reconnect,
            shutdown_timeout: self.shutdown_timeout,
            handlers: Arc::new(self.handlers),
            on_ready: self.on_ready,
        })
    }
}

/// Resolves on Ctrl-C, or on SIGTERM on Unix.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                return;
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for SIGTERM"),
        }
    }
    if let Err(e) = tokio::signal::ctrl_c().await {
        tracing::warn!(error = %e, "cannot listen for Ctrl-C; only the kernel can stop this app");
        std::future::pending::<()>().await;
    }
}

/// Whether a registration error means "fix the app", not "try again later".
fn is_refusal(e: &Error) -> bool {
    matches!(e, Error::Protocol(_))
        || matches!(
            e.code(),
            Some(
                ErrorCode::Conflict
                    | ErrorCode::InvalidParams
                    | ErrorCode::InvalidRequest
                    | ErrorCode::Unauthorized
                    | ErrorCode::Forbidden
            )
        )
}

/// Registers, retrying once without the token when the kernel refuses it.
async fn register(
    client: &Client,
    manifest: &Manifest,
    token: &mut Option<String>,
) -> Result<RegisterResult> {
    let attempt = |token: Option<String>| {
        let params = RegisterParams {
            manifest: manifest.clone(),
            protocol_version: PROTOCOL_VERSION.to_owned(),
            token,
        };
        client.call_with_timeout::<AppRegister>(params, LIFECYCLE_TIMEOUT)
    };
    let result = match attempt(token.clone()).await {
        Err(e) if token.is_some() && e.code() == Some(ErrorCode::Unauthorized) => {
            tracing::warn!(error = %e, "the kernel refused our token; registering afresh");
            *token = None;
            attempt(None).await
        }
        other => other,
    }?;
    if !protocol_major_matches(&result.protocol_version) {
        tracing::warn!(
            kernel = %result.protocol_version,
            ours = PROTOCOL_VERSION,
            "the kernel speaks another protocol version"
        );
    }
    *token = Some(result.token.clone());
    Ok(result)
}

/// `app.ready`.
async fn ready(client: &Client) -> Result<()> {
    client.call_with_timeout::<AppReady>(ReadyParams::default(), LIFECYCLE_TIMEOUT).await.map(drop)
}

/// Sends `app.heartbeat` every `every`; returns the error that ended the connection.
async fn heartbeat_loop(client: Client, every: Duration, deadline: Duration) -> Error {
    let mut ticker = tokio::time::interval_at(Instant::now() + every, every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let params = Default::default();
        match client.call_with_timeout::<AppHeartbeat>(params, deadline).await {
            Ok(_) => tracing::trace!("heartbeat"),
            Err(e @ (Error::Closed | Error::Shutdown)) => return e,
            Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
        }
    }
}

/// Runs `on_ready` in a task that is aborted when dropped.
struct ReadyTask(Option<tokio::task::JoinHandle<()>>);

impl ReadyTask {
    fn start(callback: Option<&ReadyFn>, client: &Client) -> Self {
        Self(callback.map(|callback| {
            let future = callback(client.clone());
            tokio::spawn(async move {
                if std::panic::AssertUnwindSafe(future).catch_unwind().await.is_err() {
                    tracing::error!("on_ready panicked");
                }
            })
        }))
    }
}

impl Drop for ReadyTask {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// Borrowed, pinned shutdown future, polled across connections.
type Shutdown<'a, F> = Pin<&'a mut F>;

#[cfg(test)]
mod tests;
