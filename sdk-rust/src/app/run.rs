//! The run loop of an [`App`](super::App): one connection's lifecycle, and reconnecting.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use burrow_protocol::Manifest;
use burrow_protocol::methods::app::{AppShutdown, ShutdownParams};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::router::Router;
use super::{
    DEFAULT_DRAIN, Handlers, ReadyFn, ReadyTask, ReconnectPolicy, Shutdown, heartbeat_loop,
    is_refusal, ready, register, setup,
};
use crate::transport::Transport;
use crate::{Client, Error, Result};

/// Shortest pause between two reconnection attempts, whatever the policy says.
const MIN_RECONNECT_DELAY: Duration = Duration::from_millis(10);

/// How one connection ended.
pub(super) enum Outcome {
    /// Left cleanly: we or the kernel asked.
    Done,
    /// The kernel refused the app: it must be fixed, trying again will not help.
    Refused(Error),
    /// Failed before registering (connection dropped, no answer).
    NotRegistered(Error),
    /// Lost after registering.
    Lost(Error),
}

/// An [`App`](super::App) whose configuration has been checked.
pub(super) struct Runner {
    pub(super) manifest: Manifest,
    pub(super) socket: PathBuf,
    pub(super) reconnect: ReconnectPolicy,
    pub(super) shutdown_timeout: Duration,
    pub(super) handlers: Arc<Handlers>,
    pub(super) on_ready: Option<ReadyFn>,
}

impl Runner {
    /// Connects (failing fast when there is no kernel), serves, reconnects after losses.
    pub(super) async fn run_reconnecting(&self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut token = None;
        let connected = tokio::select! {
            connected = Transport::connect(&self.socket) => connected,
            () = shutdown.as_mut() => return Ok(()),
        };
        let transport = connected.map_err(|e| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("cannot connect to the kernel at {}: {e}", self.socket.display()),
            ))
        })?;
        let mut outcome = self.serve(transport, &mut token, shutdown.as_mut()).await;
        loop {
            match outcome {
                Outcome::Done => return Ok(()),
                Outcome::Refused(e) | Outcome::NotRegistered(e) => return Err(e),
                Outcome::Lost(e) => {
                    tracing::warn!(error = %e, "lost the kernel; reconnecting");
                    outcome = self.reconnect(e, &mut token, shutdown.as_mut()).await?;
                }
            }
        }
    }

    /// Tries to connect and register again within the policy's bounds. Returns the
    /// outcome of the first connection that registered, or an error when giving up.
    async fn reconnect<F: Future<Output = ()>>(
        &self,
        lost: Error,
        token: &mut Option<String>,
        mut shutdown: Shutdown<'_, F>,
    ) -> Result<Outcome> {
        let policy = self.reconnect;
        let started = Instant::now();
        let mut delay = policy.initial.max(MIN_RECONNECT_DELAY);
        let mut attempts = 0u32;
        let mut last = lost;
        loop {
            let left = policy.max_elapsed.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(Error::ReconnectFailed { attempts, last: Box::new(last) });
            }
            tokio::select! {
                () = tokio::time::sleep(delay.min(left)) => {}
                () = shutdown.as_mut() => return Ok(Outcome::Done),
            }
            attempts += 1;
            let connected = tokio::select! {
                connected = Transport::connect(&self.socket) => connected,
                () = shutdown.as_mut() => return Ok(Outcome::Done),
            };
            match connected {
                Err(e) => {
                    tracing::debug!(attempts, error = %e, "cannot reach the kernel yet");
                    last = Error::Io(e);
                }
                Ok(transport) => match self.serve(transport, token, shutdown.as_mut()).await {
                    Outcome::NotRegistered(e) => {
                        tracing::debug!(attempts, error = %e, "registration failed; retrying");
                        last = e;
                    }
                    Outcome::Refused(e) => return Err(e),
                    other => return Ok(other),
                },
            }
            delay = (delay * 2).min(policy.max).max(MIN_RECONNECT_DELAY);
        }
    }

    /// One connection: register, ready, serve and heartbeat until it ends.
    pub(super) async fn serve<F: Future<Output = ()>>(
        &self,
        transport: Transport,
        token: &mut Option<String>,
        mut shutdown: Shutdown<'_, F>,
    ) -> Outcome {
        let (kernel_tx, mut kernel_rx) = mpsc::channel(1);
        let router = Router::new(self.handlers.clone(), kernel_tx);
        let client = Client::with_service(transport, router);

        let registered = tokio::select! {
            registered = register(&client, &self.manifest, token) => registered,
            () = shutdown.as_mut() => {
                client.close(Duration::ZERO).await;
                return Outcome::Done;
            }
        };
        let registered = match registered {
            Ok(registered) => registered,
            Err(e) => {
                client.close(Duration::ZERO).await;
                tracing::debug!(error = %e, "registration failed");
                return if is_refusal(&e) {
                    Outcome::Refused(e)
                } else {
                    Outcome::NotRegistered(e)
                };
            }
        };
        let app_id = registered.app_id.clone();
        client.set_app_id(app_id.clone());
        tracing::debug!(%app_id, "registered with the kernel");

        // Declare everything, then become ready.
        let readied = tokio::select! {
            readied = async {
                let grants = setup::announce(&client, &self.handlers).await?;
                client.set_grants(grants);
                ready(&client).await
            } => readied,
            () = shutdown.as_mut() => {
                self.leave(&client).await;
                return Outcome::Done;
            }
        };
        if let Err(e) = readied {
            if let Ok(params) = kernel_rx.try_recv() {
                self.obey(&client, params).await;
                return Outcome::Done;
            }
            client.close(Duration::ZERO).await;
            return match e {
                Error::Remote(_) | Error::Protocol(_) => Outcome::Refused(e),
                other => Outcome::Lost(other),
            };
        }
        // The one line an app logs when all went well.
        tracing::info!(%app_id, "registered with the kernel and ready");
        let _ready_task = ReadyTask::start(self.on_ready.as_ref(), &client);

        let every = Duration::from_millis(registered.heartbeat_interval_ms.max(10));
        let deadline = match registered.heartbeat_timeout_ms {
            0 => every * 3,
            ms => Duration::from_millis(ms),
        };
        let mut heartbeat = std::pin::pin!(heartbeat_loop(client.clone(), every, deadline));
        let lost = tokio::select! {
            biased;
            Some(params) = kernel_rx.recv() => {
                self.obey(&client, params).await;
                return Outcome::Done;
            }
            () = shutdown.as_mut() => {
                self.leave(&client).await;
                return Outcome::Done;
            }
            () = client.closed() => Error::Closed,
            e = heartbeat.as_mut() => e,
        };
        // The kernel may have asked us to leave just before it closed the connection:
        // the request was routed before the end of the stream was read.
        if let Ok(params) = kernel_rx.try_recv() {
            self.obey(&client, params).await;
            return Outcome::Done;
        }
        client.close(Duration::ZERO).await;
        Outcome::Lost(lost)
    }

    /// The kernel sent `app.shutdown` (already answered): let the handlers in flight
    /// finish within its timeout, then close.
    async fn obey(&self, client: &Client, params: ShutdownParams) {
        tracing::info!(reason = ?params.reason, "the kernel asked us to shut down");
        let grace = params.timeout.map(Duration::from_millis).unwrap_or(DEFAULT_DRAIN);
        client.close(grace).await;
    }

    /// Our own shutdown: tell the kernel (within the shutdown timeout), then close.
    async fn leave(&self, client: &Client) {
        tracing::info!("leaving the kernel");
        let params =
            ShutdownParams { reason: Some("the app is stopping".to_owned()), timeout: None };
        match client.call_with_timeout::<AppShutdown>(params, self.shutdown_timeout).await {
            Ok(_) => tracing::debug!("the kernel let us go"),
            Err(e) => tracing::warn!(error = %e, "app.shutdown was not acknowledged"),
        }
        client.close(Duration::ZERO).await;
    }
}
