//! Test support: a [`FakeKernel`] to unit-test apps without a kernel.
//!
//! The fake speaks the app lifecycle of PROTOCOL.md §4 over [`Transport::memory_pair`]
//! (or any transport): it answers `app.register` (recording the manifest and handing out a
//! token and a short heartbeat interval), `app.ready`, `app.heartbeat`, `app.shutdown` and
//! `kernel.info`, and any method you give it a handler for; everything else is
//! `METHOD_NOT_FOUND`. It can call the app, ask it to shut down, and wait for its state.
//!
//! ```
//! use std::time::Duration;
//! use burrow_sdk::{App, Manifest, testing::FakeKernel};
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let (kernel, transport) = FakeKernel::new();
//! let app = App::new(Manifest::new("echo", "0.1.0"))
//!     .on_request("echo.say", |params, _cx| async move { Ok(params) });
//! let running = tokio::spawn(app.run_on(transport, std::future::pending()));
//!
//! kernel.wait_ready(Duration::from_secs(5)).await.unwrap();
//! let answer = kernel.request("echo.say", json!({"text": "hi"})).await.unwrap();
//! assert_eq!(answer, json!({"text": "hi"}));
//!
//! kernel.shutdown_app().await.unwrap();
//! running.await.unwrap().unwrap();
//! # }
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use burrow_protocol::methods::app::{
    AppHeartbeat, AppReady, AppRegister, AppShutdown, HeartbeatResult, KernelInfo,
    KernelInfoResult, PROTOCOL_VERSION, RegisterParams, RegisterResult, ShutdownParams,
    protocol_major_matches,
};
use burrow_protocol::methods::{Ack, Method, parse_params, to_value};
use burrow_protocol::{ErrorCode, ErrorObject, Manifest, Request, Value, now_ms};
use tokio::sync::Notify;

use crate::peer::{BoxFuture, Service, method_not_found};
use crate::transport::Transport;
use crate::{Client, Error, Result};

/// The deadline of [`FakeKernel::request`].
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

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
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(50),
            heartbeat_timeout: Duration::from_secs(1),
            refuse_registration: None,
            reject_tokens: false,
        }
    }
}

type FakeHandler = Arc<dyn Fn(Value) -> std::result::Result<Value, ErrorObject> + Send + Sync>;

/// What the fake has seen; every change wakes the waiters.
#[derive(Default)]
struct Seen {
    registrations: Vec<RegisterParams>,
    manifest: Option<Manifest>,
    app_shutdown: Option<ShutdownParams>,
}

struct State {
    config: FakeConfig,
    seen: Mutex<Seen>,
    ready: AtomicBool,
    heartbeats: AtomicU64,
    changed: Notify,
    handlers: Mutex<HashMap<String, FakeHandler>>,
}

impl State {
    fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn registered(&self) -> std::result::Result<(), ErrorObject> {
        if self.seen().manifest.is_some() {
            Ok(())
        } else {
            Err(ErrorObject::new(
                ErrorCode::AppNotRegistered,
                "register first",
            ))
        }
    }

    fn register(&self, params: Value) -> std::result::Result<Value, ErrorObject> {
        let params: RegisterParams = parse_params(params)?;
        let presented_token = params.token.is_some();
        let manifest = params.manifest.clone();
        let mut seen = self.seen();
        seen.registrations.push(params.clone());
        let attempt = seen.registrations.len();
        drop(seen);
        self.changed.notify_waiters();
        if let Some(e) = &self.config.refuse_registration {
            return Err(e.clone());
        }
        if presented_token && self.config.reject_tokens {
            return Err(ErrorObject::new(ErrorCode::Unauthorized, "unknown token"));
        }
        if !protocol_major_matches(&params.protocol_version) {
            return Err(ErrorObject::new(
                ErrorCode::InvalidRequest,
                "unsupported protocol version",
            )
            .with_data(serde_json::json!({ "supported": [PROTOCOL_VERSION] })));
        }
        manifest.validate()?;
        let result = RegisterResult {
            app_id: manifest.id.clone(),
            token: format!("fake-token-{}-{attempt}", manifest.id),
            protocol_version: PROTOCOL_VERSION.to_owned(),
            heartbeat_interval_ms: self.config.heartbeat_interval.as_millis() as u64,
            heartbeat_timeout_ms: self.config.heartbeat_timeout.as_millis() as u64,
        };
        self.seen().manifest = Some(manifest);
        self.changed.notify_waiters();
        Ok(to_value(&result))
    }

    fn answer(&self, request: &Request) -> Option<std::result::Result<Value, ErrorObject>> {
        let answer = match request.method.as_str() {
            AppRegister::NAME => self.register(request.params.clone()),
            AppReady::NAME => self.registered().map(|()| {
                self.ready.store(true, Ordering::Release);
                to_value(&Ack::OK)
            }),
            AppHeartbeat::NAME => self.registered().map(|()| {
                self.heartbeats.fetch_add(1, Ordering::AcqRel);
                to_value(&HeartbeatResult {
                    ok: true,
                    server_time: now_ms(),
                })
            }),
            AppShutdown::NAME => {
                let params = parse_params(request.params.clone()).unwrap_or_default();
                self.seen().app_shutdown = Some(params);
                self.ready.store(false, Ordering::Release);
                Ok(to_value(&Ack::OK))
            }
            KernelInfo::NAME => Ok(to_value(&KernelInfoResult {
                version: "fake".to_owned(),
                protocol_version: PROTOCOL_VERSION.to_owned(),
                started_at: 0,
                apps: u64::from(self.seen().manifest.is_some()),
                sessions: 0,
            })),
            _ => return None,
        };
        self.changed.notify_waiters();
        Some(answer)
    }

    /// Waits until `done` holds, for at most `timeout`.
    async fn wait_for(&self, timeout: Duration, done: impl Fn(&State) -> bool) -> Result<()> {
        let wait = async {
            loop {
                let notified = self.changed.notified();
                let mut notified = std::pin::pin!(notified);
                notified.as_mut().enable();
                if done(self) {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| Error::Timeout)
    }
}

struct FakeService(Arc<State>);

impl Service for FakeService {
    fn request(
        &self,
        request: Request,
        client: Client,
    ) -> BoxFuture<std::result::Result<Value, ErrorObject>> {
        let answer = match self.0.answer(&request) {
            Some(answer) => answer,
            None => {
                let handler = self
                    .0
                    .handlers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&request.method)
                    .cloned();
                match handler {
                    Some(handler) => handler(request.params),
                    None => Err(method_not_found(&request.method)),
                }
            }
        };
        if request.method == AppShutdown::NAME {
            // Like the kernel: answer, then close.
            tokio::spawn(async move { client.close(Duration::from_secs(1)).await });
        }
        Box::pin(std::future::ready(answer))
    }
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
        let state = Arc::new(State {
            config,
            seen: Mutex::default(),
            ready: AtomicBool::new(false),
            heartbeats: AtomicU64::new(0),
            changed: Notify::new(),
            handlers: Mutex::default(),
        });
        let client = Client::with_service(transport, FakeService(state.clone()));
        FakeKernel { client, state }
    }

    /// Answers the app's requests for `method` with `handler` (e.g. `config.get`).
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
        self.client
            .request_with_timeout(method, params, REQUEST_TIMEOUT)
            .await
    }

    /// Sends the app a notification.
    pub async fn notify(&self, method: &str, params: Value) -> Result<()> {
        self.client.notify(method, params).await
    }

    /// Sends the app `app.shutdown` (as the kernel does when it stops) and returns once
    /// it answered.
    pub async fn shutdown_app(&self) -> Result<()> {
        let params = ShutdownParams {
            reason: Some("fake kernel stopping".to_owned()),
            timeout: Some(1000),
        };
        self.request(AppShutdown::NAME, to_value(&params))
            .await
            .map(drop)
    }

    /// Drops the connection abruptly, as a dying kernel would.
    pub async fn disconnect(&self) {
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
        self.state
            .wait_for(timeout, |s| s.ready.load(Ordering::Acquire))
            .await
    }

    /// Waits until the app has sent at least `count` heartbeats.
    pub async fn wait_heartbeats(&self, count: u64, timeout: Duration) -> Result<()> {
        self.state
            .wait_for(timeout, |s| s.heartbeats.load(Ordering::Acquire) >= count)
            .await
    }

    /// Waits until the app sent `app.shutdown` itself, and returns its params.
    pub async fn wait_app_shutdown(&self, timeout: Duration) -> Result<ShutdownParams> {
        self.state
            .wait_for(timeout, |s| s.seen().app_shutdown.is_some())
            .await?;
        Ok(self.state.seen().app_shutdown.clone().unwrap_or_default())
    }

    /// Waits until the connection is gone.
    pub async fn wait_disconnected(&self, timeout: Duration) -> Result<()> {
        tokio::time::timeout(timeout, self.client.closed())
            .await
            .map_err(|_| Error::Timeout)
    }
}
