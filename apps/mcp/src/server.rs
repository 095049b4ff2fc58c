//! One MCP server, kept connected: a task connects (spawning a stdio server, or reaching
//! a streamable-HTTP one), lists its tools and hands them to the bridge
//! ([`Tools::publish`]), lists them again on `notifications/tools/list_changed`, and when
//! the connection ends (the process exits, the transport closes) withdraws them and
//! connects again after a backoff (1 s doubling to 60 s, back to 1 s after a connection
//! that lasted a minute). A streamable-HTTP server's tools are listed again every 5 s:
//! a failure counts as the connection's end. Its state ([`Phase`]) is what `mcp.status` shows.
//!
//! Roots (`roots = [...]`): the newest MCP revision deprecates them (SEP-2577), but
//! servers of the 2025 revisions such as `server-filesystem` still ask for them.
#![allow(deprecated)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    ClientCapabilities, ClientConfig, Implementation, ListRootsResult, ProtocolVersion, Root,
    ServerNotification, SubscriptionFilter,
};
use rmcp::service::{NotificationContext, RequestContext, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, ClientServiceExt, ErrorData, Peer, RoleClient};
use serde::Serialize;
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{ServerSpec, Transport};

/// The longest wait between two attempts to connect.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often a streamable-HTTP server's tools are listed again while connected: its
/// transport does not end when the server goes away (each request fails on its own), so
/// this is how the bridge notices, and how a server that cannot send
/// `notifications/tools/list_changed` (no event stream) has its changes applied.
const HTTP_CHECK: Duration = Duration::from_secs(5);
/// The last lines of a stdio server's stderr kept to explain its failure.
const STDERR_LINES: usize = 5;

/// Where a server stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Phase {
    /// Connecting (the first time, or again).
    Connecting,
    /// Connected; its tools are offered.
    Ready {
        /// Its tools offered (allowed by the configuration, and granted).
        tools: usize,
        /// The MCP revision negotiated: the one the server answered `initialize` with.
        protocol_version: String,
    },
    /// The last attempt failed, or the connection ended; another comes at `retry_at_ms`.
    Failed {
        /// Why.
        reason: String,
        /// When the next attempt is (ms since the epoch).
        retry_at_ms: u64,
    },
}

/// Where the bridge keeps what servers offer: the tools they list, for the kernel.
pub trait Tools: Send + Sync + 'static {
    /// `server`, kept by the handle numbered `owner`, is connected over `peer` and offers
    /// `tools` (its whole list, filtered by the configuration); returns how many the
    /// kernel granted. An `owner` that is no longer the server's current handle (it was
    /// stopped: the server changed or went away) publishes nothing.
    fn publish(
        &self,
        server: &str,
        owner: u64,
        peer: Peer<RoleClient>,
        tools: Vec<rmcp::model::Tool>,
    ) -> impl Future<Output = usize> + Send;
    /// `server` is gone: the tools `owner` published are withdrawn (not those a newer
    /// handle of the same name has).
    fn withdraw(&self, server: &str, owner: u64) -> impl Future<Output = ()> + Send;
}

/// A running server's handle: its state, and what stops it.
#[derive(Debug, Clone)]
pub struct Handle {
    /// Unique among the handles made in this process.
    pub id: u64,
    /// Its configuration.
    pub spec: ServerSpec,
    /// Its state.
    pub phase: Arc<Mutex<Phase>>,
    /// The bound of its `initialize` and `tools/list`.
    pub init_timeout: Duration,
    /// The roots it is told.
    pub roots: Option<Vec<Root>>,
    stop: CancellationToken,
}

impl Handle {
    /// Stops the server (its tools are withdrawn by its task).
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Its state now.
    pub fn phase(&self) -> Phase {
        self.phase.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Starts keeping `spec`'s server connected, offering its tools to `tools`.
/// `init_timeout` bounds `initialize` and `tools/list`.
pub fn start<T: Tools>(
    spec: ServerSpec,
    roots: Option<Vec<Root>>,
    init_timeout: Duration,
    tools: Arc<T>,
) -> Handle {
    let phase = Arc::new(Mutex::new(Phase::Connecting));
    let stop = CancellationToken::new();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let handle = Handle { id, spec, phase, init_timeout, roots: roots.clone(), stop };
    let task = handle.clone();
    tokio::spawn(async move { keep_connected(task, roots, init_timeout, tools).await });
    handle
}

/// The MCP client's side of one connection: what it advertises, and what it hears.
#[derive(Clone)]
struct Client {
    /// Told (coalesced) that the server's tools changed.
    changed: mpsc::Sender<()>,
    /// Roots to answer `roots/list` with; `None`: the capability is not advertised.
    roots: Option<Vec<Root>>,
}

impl ClientHandler for Client {
    fn get_info(&self) -> ClientConfig {
        let mut capabilities = ClientCapabilities::default();
        if self.roots.is_some() {
            capabilities.roots = Some(Default::default());
        }
        let me = Implementation::new("burrow-mcp", env!("CARGO_PKG_VERSION"));
        ClientConfig::new(capabilities, me)
            .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
    }

    async fn on_tool_list_changed(&self, _cx: NotificationContext<RoleClient>) {
        let _ = self.changed.try_send(());
    }

    #[allow(deprecated)]
    async fn list_roots(
        &self,
        _cx: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        match &self.roots {
            Some(roots) => Ok(ListRootsResult::new(roots.clone())),
            None => Err(ErrorData::method_not_found::<rmcp::model::ListRootsRequestMethod>()),
        }
    }
}

async fn keep_connected<T: Tools>(
    handle: Handle,
    roots: Option<Vec<Root>>,
    init_timeout: Duration,
    tools: Arc<T>,
) {
    let name = handle.spec.name.clone();
    let mut backoff = Duration::from_secs(1);
    while !handle.stop.is_cancelled() {
        set(&handle, Phase::Connecting);
        let (changed, mut changes) = mpsc::channel(1);
        let client = Client { changed: changed.clone(), roots: roots.clone() };
        let stderr = Arc::new(Mutex::new(std::collections::VecDeque::new()));
        let connected = tokio::select! {
            connected = connect(&handle.spec, client, stderr.clone(), init_timeout) => connected,
            () = handle.stop.cancelled() => break,
        };
        let began = tokio::time::Instant::now();
        let reason = match connected {
            Err(reason) => reason,
            Ok(running) => {
                let peer = running.peer().clone();
                let protocol_version =
                    peer.peer_info().map(|i| i.protocol_version.to_string()).unwrap_or_default();
                let (stop, mut ended) = watch_end(running);
                if protocol_version.as_str() >= ProtocolVersion::V_2026_07_28.as_str() {
                    listen_for_changes(peer.clone(), changed.clone(), stop.clone());
                }
                // Lists the server's tools and offers them: `Err` when it cannot.
                let offer = async || {
                    let listed = list(&peer, init_timeout).await?;
                    let offered = listed.into_iter().filter(|t| handle.spec.offers(&t.name));
                    let granted =
                        tools.publish(&name, handle.id, peer.clone(), offered.collect()).await;
                    let protocol_version = protocol_version.clone();
                    set(&handle, Phase::Ready { tools: granted, protocol_version });
                    Ok::<usize, String>(granted)
                };
                let mut why = match offer().await {
                    Ok(granted) => {
                        tracing::info!(server = %name, tools = granted, "MCP server ready");
                        None
                    }
                    Err(e) => Some(e),
                };
                let http = matches!(handle.spec.transport, Transport::Http { .. });
                let mut check =
                    tokio::time::interval_at(tokio::time::Instant::now() + HTTP_CHECK, HTTP_CHECK);
                while why.is_none() {
                    tokio::select! {
                        () = handle.stop.cancelled() => break,
                        _ = check.tick(), if http => why = offer().await.err(),
                        end = &mut ended => {
                            why = Some(end.unwrap_or_else(|_| "the connection ended".to_owned()));
                        }
                        Some(()) = changes.recv() => why = offer().await.err(),
                    }
                }
                stop.cancel();
                tools.withdraw(&name, handle.id).await;
                why.unwrap_or_default()
            }
        };
        if handle.stop.is_cancelled() {
            break;
        }
        if began.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_secs(1);
        }
        let reason = explained(reason, &stderr);
        tracing::warn!(server = %name, %reason, retry_in_ms = backoff.as_millis() as u64, "MCP server unavailable");
        let retry_at_ms = burrow_sdk::protocol::now_ms() + backoff.as_millis() as u64;
        set(&handle, Phase::Failed { reason, retry_at_ms });
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = handle.stop.cancelled() => break,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    tools.withdraw(&name, handle.id).await;
}

fn set(handle: &Handle, phase: Phase) {
    *handle.phase.lock().unwrap_or_else(|e| e.into_inner()) = phase;
}

/// `reason`, with the last lines the server wrote on stderr, if any.
fn explained(reason: String, stderr: &Mutex<std::collections::VecDeque<String>>) -> String {
    let lines = stderr.lock().unwrap_or_else(|e| e.into_inner());
    match lines.is_empty() {
        true => reason,
        false => {
            format!("{reason} (stderr: {})", lines.iter().cloned().collect::<Vec<_>>().join(" | "))
        }
    }
}

/// Watches the connection's end: the token ends it; the receiver says why it ended.
fn watch_end(
    running: RunningService<RoleClient, Client>,
) -> (CancellationToken, tokio::sync::oneshot::Receiver<String>) {
    let (stop, (tx, rx)) = (CancellationToken::new(), tokio::sync::oneshot::channel());
    let stopping = stop.clone();
    tokio::spawn(async move {
        let cancel = running.cancellation_token();
        let waiting = running.waiting();
        tokio::pin!(waiting);
        let why = tokio::select! {
            () = stopping.cancelled() => {
                // Closing ends the server (a stdio one: stdin closed, then signals).
                cancel.cancel();
                let _ = tokio::time::timeout(Duration::from_secs(10), waiting).await;
                return;
            }
            quit = &mut waiting => format!("the connection ended ({quit:?})"),
        };
        let _ = tx.send(why);
    });
    (stop, rx)
}

/// All the server's tools (within `timeout`).
async fn list(
    peer: &Peer<RoleClient>,
    timeout: Duration,
) -> Result<Vec<rmcp::model::Tool>, String> {
    match tokio::time::timeout(timeout, peer.list_all_tools()).await {
        Ok(Ok(tools)) => Ok(tools),
        Ok(Err(e)) => Err(format!("tools/list failed: {e}")),
        Err(_) => Err(format!("tools/list took more than {} ms", timeout.as_millis())),
    }
}

/// How a connection begins: the 2026-07-28 revision's `server/discover` when the server
/// knows it, else the `initialize` handshake of 2025-11-25.
fn lifecycle() -> rmcp::ClientLifecycleMode {
    rmcp::ClientLifecycleMode::Auto {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        legacy_version: Some(ProtocolVersion::LATEST_WITH_INITIALIZE),
    }
}

/// In the 2026-07-28 revision, a server tells of tool changes on a
/// `subscriptions/listen` stream: they go to `changed` until `stop` or the stream ends.
fn listen_for_changes(peer: Peer<RoleClient>, changed: mpsc::Sender<()>, stop: CancellationToken) {
    tokio::spawn(async move {
        let filter = SubscriptionFilter::builder().tools_list_changed().build();
        let Ok(mut subscription) = peer.listen(filter).await else { return };
        loop {
            tokio::select! {
                heard = subscription.next() => match heard {
                    Ok(Some(ServerNotification::ToolListChangedNotification(_))) => {
                        let _ = changed.try_send(());
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => return,
                },
                () = stop.cancelled() => return,
            }
        }
    });
}

/// Connects to the server and completes `initialize` within `timeout`.
async fn connect(
    spec: &ServerSpec,
    client: Client,
    stderr: Arc<Mutex<std::collections::VecDeque<String>>>,
    timeout: Duration,
) -> Result<RunningService<RoleClient, Client>, String> {
    let served = match &spec.transport {
        Transport::Stdio { command, args, env, cwd } => {
            let mut cmd = tokio::process::Command::new(command);
            cmd.args(args).envs(env).kill_on_drop(true);
            if let Some(cwd) = cwd {
                cmd.current_dir(cwd);
            }
            let (transport, err) = TokioChildProcess::builder(cmd)
                .stderr(std::process::Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot start {command:?}: {e}"))?;
            if let Some(err) = err {
                tokio::spawn(keep_stderr(spec.name.clone(), err, stderr));
            }
            tokio::time::timeout(timeout, client.serve_with_lifecycle(transport, lifecycle())).await
        }
        Transport::Http { url, headers } => {
            let mut custom = std::collections::HashMap::new();
            for (name, value) in headers {
                let name = http::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|e| format!("header {name:?}: {e}"))?;
                let value = http::HeaderValue::from_str(value)
                    .map_err(|e| format!("header {name}: {e}"))?;
                custom.insert(name, value);
            }
            let config =
                StreamableHttpClientTransportConfig::with_uri(url.clone()).custom_headers(custom);
            let transport = StreamableHttpClientTransport::from_config(config);
            tokio::time::timeout(timeout, client.serve_with_lifecycle(transport, lifecycle())).await
        }
    };
    match served {
        Ok(Ok(running)) => Ok(running),
        Ok(Err(e)) => Err(format!("initialize failed: {e}")),
        Err(_) => Err(format!("no answer to initialize within {} ms", timeout.as_millis())),
    }
}

/// Logs a stdio server's stderr, keeping its last lines.
async fn keep_stderr(
    server: String,
    stderr: tokio::process::ChildStderr,
    last: Arc<Mutex<std::collections::VecDeque<String>>>,
) {
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line: String = line.chars().take(500).collect();
        tracing::debug!(server = %server, "{line}");
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        if last.len() == STDERR_LINES {
            last.pop_front();
        }
        last.push_back(line);
    }
}
