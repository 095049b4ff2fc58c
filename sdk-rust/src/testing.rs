//! Test support: a [`FakeKernel`] to unit-test apps without a kernel.
//!
//! The fake speaks the kernel's side of PROTOCOL.md §4–7 over [`Transport::memory_pair`]
//! (or any transport):
//! - lifecycle: it answers `app.register` (recording the manifest and handing out a token
//!   and a short heartbeat interval), `app.ready`, `app.heartbeat`, `app.shutdown` and
//!   `kernel.info`;
//! - capabilities: it records every `capability.register` and grants it with an id
//!   `cap-N`, unless its name is in [`FakeConfig::deny_capabilities`], the manifest does
//!   not cover it, or the name is taken (then `granted: false` with a reason, as the
//!   kernel does); a `hook` capability for an event not subscribed first is
//!   `HOOK_NOT_SUBSCRIBED`;
//! - hooks: `hook.subscribe` subscribes every event the manifest covers and
//!   [`FakeConfig::deny_events`] does not name; [`FakeKernel::send_event`] and
//!   [`FakeKernel::intercept`] send `hook.event` (the latter waits for `hook.result`);
//! - calls into the app: [`FakeKernel::invoke_tool`], [`FakeKernel::invoke_gateway`],
//!   [`FakeKernel::complete`] (`provider.complete`), [`FakeKernel::channel_send`]
//!   (`channel.send`), [`FakeKernel::request`]; [`FakeKernel::providers`] and
//!   [`FakeKernel::channels`] list the providers and channels the app holds;
//! - streaming: [`FakeKernel::complete_streamed`] collects a provider's chunks with its
//!   result, [`FakeKernel::channel_stream`] sends a streaming channel `channel.delta` /
//!   `channel.stream_end`, and `session.events` streams what
//!   [`FakeKernel::push_session_event`] pushes, until the app drops it or leaves;
//! - configuration: `config.get` reads the document of [`FakeKernel::set_config`],
//!   `config.watch` streams what [`FakeKernel::push_config_change`] pushes, until the app
//!   cancels it or leaves;
//!
//! and any method you give it a handler for ([`FakeKernel::on_request`], e.g. `tool.call`);
//! everything else is `METHOD_NOT_FOUND`. Unlike the kernel it sends events to the app
//! whether or not it subscribed, so tests can check the app's own dispatch.
//!
//! ```
//! use std::time::Duration;
//! use burrow_sdk::{App, HookVerdict, Manifest, ToolResult, testing::FakeKernel};
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let (kernel, transport) = FakeKernel::new();
//! let app = App::new(Manifest::new("echo", "0.1.0"))
//!     .tool("echo", "Echoes", json!({}), |args, _cx| async move {
//!         Ok(ToolResult { content: args, is_error: None })
//!     })
//!     .intercept("before_tool_call", 0, |_event| async { HookVerdict::Continue });
//! let running = tokio::spawn(app.run_on(transport, std::future::pending()));
//!
//! kernel.wait_ready(Duration::from_secs(5)).await.unwrap();
//! assert!(kernel.capabilities().iter().all(|c| c.result.granted));
//! let answer = kernel.invoke_tool("echo", json!({"text": "hi"})).await.unwrap();
//! assert_eq!(answer.content, json!({"text": "hi"}));
//! let verdict = kernel
//!     .intercept("before_tool_call", json!({}), Duration::from_secs(5))
//!     .await
//!     .unwrap();
//! assert_eq!(verdict, HookVerdict::Continue);
//!
//! kernel.shutdown_app().await.unwrap();
//! running.await.unwrap().unwrap();
//! # }
//! ```

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use burrow_protocol::methods::app::{AppShutdown, RegisterParams, ShutdownParams};
use burrow_protocol::methods::capability::{
    CapabilityType, ChannelConfig, ProviderConfig, RegisterCapabilityParams,
    RegisterCapabilityResult,
};
use burrow_protocol::methods::config::ConfigChange;
use burrow_protocol::methods::hook::HookVerdict;
use burrow_protocol::methods::invoke::{
    ChannelDelta, ChannelSend, ChannelSendParams, ChannelSendResult, ChannelStreamEnd,
    GatewayInvoke, GatewayInvokeParams, ProviderChunk, ProviderComplete, ProviderCompleteParams,
    ProviderCompleteResult, ToolInvoke, ToolInvokeParams, ToolResult,
};
use burrow_protocol::methods::{Method, to_value};
use burrow_protocol::{ErrorObject, Manifest, Value};

use burrow_protocol::methods::operator::SessionEvent;
use futures_util::StreamExt;

use crate::app::ChannelStreamEvent;
use crate::peer::StreamItem;
use crate::transport::Transport;
use crate::{Client, Error, Result};

mod state;

use state::{FakeService, State};

/// The deadline of [`FakeKernel::request`] and of the calls into the app
/// ([`FakeKernel::invoke_tool`], [`FakeKernel::invoke_gateway`], [`FakeKernel::complete`],
/// [`FakeKernel::channel_send`]).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The `caller` of [`FakeKernel::invoke_gateway`].
pub const FAKE_CALLER: &str = "fake-caller";

/// How a [`FakeKernel`] behaves.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// `heartbeatIntervalMs` handed out at registration (default 50 ms).
    pub heartbeat_interval: Duration,
    /// `heartbeatTimeoutMs` handed out at registration (default 1 s).
    pub heartbeat_timeout: Duration,
    /// Answer `app.register` with this error.
    pub refuse_registration: Option<ErrorObject>,
    /// Answer `app.register` with `UNAUTHORIZED` when it presents a token (a kernel with
    /// a new key).
    pub reject_tokens: bool,
    /// Capability names to deny (`granted: false`): tool names, full gateway methods,
    /// intercepted events, channel and provider ids, route paths.
    pub deny_capabilities: Vec<String>,
    /// Events (or patterns, as the app sends them) `hook.subscribe` denies.
    pub deny_events: Vec<String>,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(50),
            heartbeat_timeout: Duration::from_secs(1),
            refuse_registration: None,
            reject_tokens: false,
            deny_capabilities: Vec::new(),
            deny_events: Vec::new(),
        }
    }
}

/// One `capability.register` the fake received, and its answer.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedCapability {
    /// The request.
    pub params: RegisterCapabilityParams,
    /// The name it is granted by: tool name, gateway method, event, ...
    pub name: String,
    /// The answer.
    pub result: RegisterCapabilityResult,
    /// Granted and not unregistered since.
    pub active: bool,
}

/// A stand-in for the kernel on one connection. See the [module docs](self).
pub struct FakeKernel {
    client: Client,
    state: Arc<State>,
}

impl std::fmt::Debug for FakeKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeKernel")
            .field("ready", &self.is_ready())
            .field("heartbeats", &self.heartbeats())
            .finish_non_exhaustive()
    }
}

impl FakeKernel {
    /// A fake kernel with the default [`FakeConfig`], and the transport an app should
    /// run on (e.g. with [`crate::App::run_on`]).
    pub fn new() -> (FakeKernel, Transport) {
        FakeKernel::with_config(FakeConfig::default())
    }

    /// [`FakeKernel::new`] with a configuration.
    pub fn with_config(config: FakeConfig) -> (FakeKernel, Transport) {
        let (ours, theirs) = Transport::memory_pair();
        (FakeKernel::serve(ours, config), theirs)
    }

    /// A fake kernel serving an established transport (e.g. an accepted socket).
    pub fn serve(transport: Transport, config: FakeConfig) -> FakeKernel {
        let state = Arc::new(State::new(config));
        let client = Client::with_service(transport, FakeService(state.clone()));
        FakeKernel { client, state }
    }

    /// Answers the app's requests for `method` with `handler` (e.g. `tool.call`); the
    /// methods the fake answers itself cannot be overridden.
    pub fn on_request(
        &self,
        method: impl Into<String>,
        handler: impl Fn(Value) -> std::result::Result<Value, ErrorObject> + Send + Sync + 'static,
    ) {
        self.state
            .handlers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(method.into(), Arc::new(handler));
    }

    /// Sends the app a request, waiting at most [`REQUEST_TIMEOUT`] for the answer.
    pub async fn request(&self, method: &str, params: Value) -> Result<Value> {
        self.client.request_with_timeout(method, params, REQUEST_TIMEOUT).await
    }

    /// Sends the app a notification.
    pub async fn notify(&self, method: &str, params: Value) -> Result<()> {
        self.client.notify(method, params).await
    }

    /// Sends the app `app.shutdown` (as the kernel does when it stops), after ending its
    /// config watches with `{ended: "closed"}`, and returns once it answered.
    pub async fn shutdown_app(&self) -> Result<()> {
        self.state.end_watches("closed");
        let params =
            ShutdownParams { reason: Some("fake kernel stopping".to_owned()), timeout: Some(1000) };
        self.request(AppShutdown::NAME, to_value(&params)).await.map(drop)
    }

    /// Drops the connection abruptly, as a dying kernel would.
    pub async fn disconnect(&self) {
        self.state.end_watches("closed");
        self.client.close(Duration::ZERO).await;
    }

    /// The kernel side of the connection, for anything the helpers do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Whether the app sent `app.ready` (and has not left since).
    pub fn is_ready(&self) -> bool {
        self.state.ready.load(Ordering::Acquire)
    }

    /// How many `app.heartbeat` requests the app sent.
    pub fn heartbeats(&self) -> u64 {
        self.state.heartbeats.load(Ordering::Acquire)
    }

    /// The manifest of the last successful registration.
    pub fn manifest(&self) -> Option<Manifest> {
        self.state.seen().manifest.clone()
    }

    /// Every `app.register` request received, in order (refused ones too).
    pub fn registrations(&self) -> Vec<RegisterParams> {
        self.state.seen().registrations.clone()
    }

    /// Waits until the app is ready; [`Error::Timeout`] after `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        self.state.wait_for(timeout, |s| s.ready.load(Ordering::Acquire)).await
    }

    /// Waits until the app has sent at least `count` heartbeats.
    pub async fn wait_heartbeats(&self, count: u64, timeout: Duration) -> Result<()> {
        self.state.wait_for(timeout, |s| s.heartbeats.load(Ordering::Acquire) >= count).await
    }

    /// Waits until the app sent `app.shutdown` itself, and returns its params.
    pub async fn wait_app_shutdown(&self, timeout: Duration) -> Result<ShutdownParams> {
        self.state.wait_for(timeout, |s| s.seen().app_shutdown.is_some()).await?;
        Ok(self.state.seen().app_shutdown.clone().unwrap_or_default())
    }

    /// Every request the app sent, by method, in arrival order (`app.heartbeat` left
    /// out), e.g. `["app.register", "hook.subscribe", "capability.register", "app.ready"]`.
    pub fn calls(&self) -> Vec<String> {
        self.state.seen().calls.clone()
    }

    /// Every `capability.register` received, in order, with the fake's answers.
    pub fn capabilities(&self) -> Vec<RecordedCapability> {
        self.state.seen().capabilities.clone()
    }

    /// The events and patterns the app is subscribed to.
    pub fn subscriptions(&self) -> Vec<String> {
        self.state.seen().subscriptions.clone()
    }

    /// Calls one of the app's tools (`tool.invoke` with a fresh `callId`, no session).
    pub async fn invoke_tool(&self, name: &str, arguments: Value) -> Result<ToolResult> {
        let params = ToolInvokeParams {
            call_id: self.state.mint("call"),
            name: name.to_owned(),
            arguments,
            session_key: None,
            run_id: None,
            timeout_ms: None,
            traceparent: None,
        };
        self.invoke_tool_with(params).await
    }

    /// `tool.invoke` with every parameter.
    pub async fn invoke_tool_with(&self, params: ToolInvokeParams) -> Result<ToolResult> {
        self.client.call_with_timeout::<ToolInvoke>(params, REQUEST_TIMEOUT).await
    }

    /// Calls one of the app's gateway methods by its full name (`gateway.invoke`, with
    /// [`FAKE_CALLER`] as the caller).
    pub async fn invoke_gateway(&self, method: &str, params: Value) -> Result<Value> {
        let params = GatewayInvokeParams {
            method: method.to_owned(),
            params,
            caller: FAKE_CALLER.to_owned(),
        };
        self.client.call_with_timeout::<GatewayInvoke>(params, REQUEST_TIMEOUT).await
    }

    /// The configs of the providers the app holds (granted and not unregistered), in
    /// registration order.
    pub fn providers(&self) -> Vec<ProviderConfig> {
        self.active_configs(CapabilityType::Provider)
    }

    /// The configs of the channels the app holds (granted and not unregistered), in
    /// registration order.
    pub fn channels(&self) -> Vec<ChannelConfig> {
        self.active_configs(CapabilityType::Channel)
    }

    fn active_configs<T: serde::de::DeserializeOwned>(&self, kind: CapabilityType) -> Vec<T> {
        self.state
            .seen()
            .capabilities
            .iter()
            .filter(|c| c.active && c.params.kind == kind)
            .filter_map(|c| serde_json::from_value(c.params.config.clone()).ok())
            .collect()
    }

    /// Asks one of the app's providers for a completion: `provider.complete` with
    /// `params`, its `providerId` set to `provider_id`. Whether the app registered that
    /// provider is not checked, so tests can see how the app answers an unknown one.
    pub async fn complete(
        &self,
        provider_id: &str,
        mut params: ProviderCompleteParams,
    ) -> Result<ProviderCompleteResult> {
        provider_id.clone_into(&mut params.provider_id);
        self.client.call_with_timeout::<ProviderComplete>(params, REQUEST_TIMEOUT).await
    }

    /// Like [`FakeKernel::complete`], for a provider that streams: the chunks it sent
    /// before its result (`{id, chunk}` frames, as the kernel reads them), in order, and
    /// the result. A chunk that is not a [`ProviderChunk`] is an [`Error::Protocol`].
    pub async fn complete_streamed(
        &self,
        provider_id: &str,
        mut params: ProviderCompleteParams,
    ) -> Result<(Vec<ProviderChunk>, ProviderCompleteResult)> {
        provider_id.clone_into(&mut params.provider_id);
        let mut stream =
            self.client.request_stream(ProviderComplete::NAME, to_value(&params)).await?;
        let mut chunks = Vec::new();
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, async {
            while let Some(item) = stream.next().await {
                match item? {
                    StreamItem::Chunk(chunk) => {
                        chunks.push(serde_json::from_value(chunk).map_err(|e| {
                            Error::Protocol(format!("a chunk that is not a ProviderChunk: {e}"))
                        })?)
                    }
                    StreamItem::End(result) => return Ok(result),
                }
            }
            Err(Error::Closed)
        });
        let result = answer.await.map_err(|_| Error::Timeout)??;
        let result = serde_json::from_value(result)
            .map_err(|e| Error::Protocol(format!("unexpected provider.complete result: {e}")))?;
        Ok((chunks, result))
    }

    /// Hands one of the app's streaming channels a piece of a reply (`channel.delta`) or
    /// the news that no reply follows the pieces (`channel.stream_end`), as the kernel
    /// does ([`crate::App::channel_deltas`]).
    pub async fn channel_stream(&self, event: ChannelStreamEvent) -> Result<()> {
        match event {
            ChannelStreamEvent::Delta(d) => {
                self.client.notify(ChannelDelta::NAME, to_value(&d)).await
            }
            ChannelStreamEvent::End(e) => {
                self.client.notify(ChannelStreamEnd::NAME, to_value(&e)).await
            }
        }
    }

    /// Sends `event` to the app's open `session.events` streams of session `key` (as
    /// chunks, as the kernel does); returns how many got it.
    pub async fn push_session_event(&self, key: &str, event: &SessionEvent) -> Result<usize> {
        let followers = self.state.followers(key);
        for id in &followers {
            self.client.send_chunk(id.clone(), to_value(event)).await?;
        }
        Ok(followers.len())
    }

    /// Waits until exactly `count` `session.events` streams of session `key` are open.
    pub async fn wait_session_followers(
        &self,
        key: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<()> {
        self.state.wait_for(timeout, |s| s.followers(key).len() == count).await
    }

    /// Hands one of the app's channels a message to deliver (`channel.send`).
    pub async fn channel_send(&self, params: ChannelSendParams) -> Result<ChannelSendResult> {
        self.client.call_with_timeout::<ChannelSend>(params, REQUEST_TIMEOUT).await
    }

    /// Sends the app an observed event (`hook.event` notification, empty context) and
    /// returns its `eventId`.
    pub async fn send_event(&self, event: &str, payload: Value) -> Result<String> {
        let event_id = self.state.mint("evt");
        let params = serde_json::json!({
            "eventId": event_id, "event": event, "payload": payload, "context": {},
        });
        self.client.notify("hook.event", params).await?;
        Ok(event_id)
    }

    /// Asks the app to intercept an event (`hook.event` with `intercept: true` and a
    /// `deadlineMs` `timeout` from now) and waits for its `hook.result`;
    /// [`Error::Timeout`] when none came in time (e.g. the handler panicked).
    pub async fn intercept(
        &self,
        event: &str,
        payload: Value,
        timeout: Duration,
    ) -> Result<HookVerdict> {
        self.state.intercept(&self.client, event, payload, timeout).await
    }

    /// Sets the configuration document `config.get` reads (default `{}`).
    pub fn set_config(&self, document: Value) {
        self.state.set_document(document);
    }

    /// Applies a change to the configuration document (`newValue` at `path`; `null`
    /// removes it) and sends it to every open `config.watch` concerned, as the kernel
    /// would: as it is to a watch of `path` or of a path above it, narrowed to the watched
    /// path (with the values there) to a watch of a path under it. Returns how many
    /// chunks were sent.
    pub async fn push_config_change(&self, change: ConfigChange) -> Result<usize> {
        let chunks = self.state.change(&change);
        for (id, chunk) in &chunks {
            self.client.send_chunk(id.clone(), to_value(chunk)).await?;
        }
        Ok(chunks.len())
    }

    /// How many `config.watch` streams are open.
    pub fn config_watches(&self) -> usize {
        self.state.watch_count()
    }

    /// Waits until exactly `count` `config.watch` streams are open.
    pub async fn wait_config_watches(&self, count: usize, timeout: Duration) -> Result<()> {
        self.state.wait_for(timeout, |s| s.watch_count() == count).await
    }

    /// Waits until the app sent `count` requests for `method`.
    pub async fn wait_calls(&self, method: &str, count: usize, timeout: Duration) -> Result<()> {
        self.state
            .wait_for(timeout, |s| s.seen().calls.iter().filter(|m| *m == method).count() >= count)
            .await
    }

    /// Waits until the connection is gone.
    pub async fn wait_disconnected(&self, timeout: Duration) -> Result<()> {
        tokio::time::timeout(timeout, self.client.closed()).await.map_err(|_| Error::Timeout)
    }
}
