//! The kernel's listeners besides its socket: the host surfaces (`--rpc-tcp`, `--http`)
//! and the signed kernel channel (`--comms-listen-tcp`). Each bound address is published in
//! `kernel.info` (`endpoints`), so `127.0.0.1:0` works: the port chosen is reported.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use burrow_protocol::{ErrorCode, ErrorObject};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::descriptors::MAX_REFUSING;
use crate::host::KernelHost;
use crate::kernel::Kernel;
use crate::server::KernelError;
use crate::service::comms::remote::{KernelInbox, RemoteKernels};
use crate::surface::Host;
use crate::surface::auth::Auth;
use crate::surface::http::HttpLimits;
use crate::surface::rpc::RpcLimits;

/// What to listen on, besides the socket.
#[derive(Debug, Clone, Default)]
pub struct Listen {
    /// JSON-RPC over TCP.
    pub rpc_tcp: Option<SocketAddr>,
    /// REST.
    pub http: Option<SocketAddr>,
    /// The signed kernel channel.
    pub comms_listen: Option<SocketAddr>,
    /// `HOST:PORT` other kernels dial (port 0: the bound port); default: the bound address.
    pub comms_advertise: Option<String>,
    /// Where to write this kernel's binding file (0600).
    pub comms_binding_out: Option<PathBuf>,
}

/// The socket's JSON-RPC connections, with the first byte the accept loop read.
type LocalConns = mpsc::Sender<(u8, interprocess::local_socket::tokio::Stream)>;

/// Where the kernel's socket hands the connections that speak JSON-RPC: the host
/// surface, while it serves ([`Bound::serve`] installs it, its stop removes it). The
/// server hands one to the root actor (which accepts) and one to the endpoints.
#[derive(Debug, Clone, Default)]
pub struct LocalRpc(Arc<std::sync::Mutex<Option<LocalConns>>>);

impl LocalRpc {
    /// Hands a JSON-RPC connection to the host surface; when it is not serving (not yet,
    /// or no more) or has a backlog, the connection gets one error line and is closed.
    pub fn accept(&self, first: u8, stream: interprocess::local_socket::tokio::Stream) {
        let sender = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let refused = match sender {
            Some(sender) => match sender.try_send((first, stream)) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full((_, stream))) => (stream, "busy"),
                Err(mpsc::error::TrySendError::Closed((_, stream))) => (stream, "not_serving"),
            },
            None => (stream, "not_serving"),
        };
        tokio::spawn(refuse_rpc(refused.0, refused.1));
    }

    fn install(
        &self,
        backlog: usize,
    ) -> mpsc::Receiver<(u8, interprocess::local_socket::tokio::Stream)> {
        let (tx, rx) = mpsc::channel(backlog.max(1));
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        rx
    }
}

/// Answers a JSON-RPC connection the surface cannot take with one error line, then
/// closes it.
async fn refuse_rpc(mut stream: interprocess::local_socket::tokio::Stream, reason: &'static str) {
    use tokio::io::AsyncWriteExt;
    let message = match reason {
        "busy" => "the kernel's JSON-RPC surface is busy; retry later",
        _ => "the kernel is not serving JSON-RPC (starting or stopping)",
    };
    let error = ErrorObject::new(ErrorCode::UnknownError, message)
        .with_data(serde_json::json!({ "reason": reason }));
    let line = serde_json::json!({"jsonrpc": "2.0", "id": null, "error": crate::surface::RpcError::from(&error).to_value()});
    let line = format!("{line}\n");
    let write = async {
        let _ = stream.write_all(line.as_bytes()).await;
        let _ = stream.shutdown().await;
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), write).await;
}

/// The running listeners.
#[derive(Debug)]
pub struct Endpoints {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    local: LocalRpc,
}

impl Endpoints {
    /// Stops accepting; `stop` is answered once every listener has ended.
    pub fn stop(self, stop: crate::stop::Stop) {
        self.stop.cancel();
        *self.local.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
        tokio::spawn(async move {
            for task in self.tasks {
                let _ = task.await;
            }
            stop.done();
        });
    }
}

fn setup(what: &str, e: impl std::fmt::Display) -> KernelError {
    KernelError::Endpoint(format!("{what}: {e}"))
}

async fn bind(addr: SocketAddr, what: &str) -> Result<(TcpListener, SocketAddr), KernelError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| setup(&format!("cannot listen for {what} on {addr}"), e))?;
    let bound = listener.local_addr().map_err(|e| setup("cannot read a bound address", e))?;
    Ok((listener, bound))
}

/// Listeners bound (so a taken port fails the start before anything runs), not yet
/// serving.
#[derive(Debug)]
pub struct Bound {
    comms: Option<TcpListener>,
    rpc: Option<(TcpListener, Arc<Auth>)>,
    http: Option<(TcpListener, Arc<Auth>)>,
}

/// Opens the kernel channel (trust store, binding file) and binds every listener `listen`
/// asks for.
pub async fn bind_all(kernel: &Arc<Kernel>, listen: &Listen) -> Result<Bound, KernelError> {
    let net =
        Arc::new(RemoteKernels::open(kernel).map_err(|e| setup("cannot open the trust store", e))?);
    let _ = kernel.remote.set(net.clone());
    if listen.comms_binding_out.is_some() && listen.comms_listen.is_none() {
        return Err(setup("--comms-binding-out", "needs --comms-listen-tcp"));
    }
    let mut bound = Bound { comms: None, rpc: None, http: None };
    let require = kernel.config().host.require_token;
    let state_dir = &kernel.paths.state_dir;
    let surface = |addr: SocketAddr, what: &str| {
        let auth = Auth::for_surface(&addr, require, state_dir).map_err(|e| setup(what, e))?;
        Ok::<_, KernelError>(Arc::new(auth))
    };
    if let Some(addr) = listen.rpc_tcp {
        let auth = surface(addr, "--rpc-tcp")?;
        let (listener, local) = bind(addr, "JSON-RPC").await?;
        publish(kernel, "rpc_tcp", local);
        tracing::info!(%local, token_required = auth.required(), "serving JSON-RPC for hosts");
        bound.rpc = Some((listener, auth));
    }
    if let Some(addr) = listen.http {
        let auth = surface(addr, "--http")?;
        let (listener, local) = bind(addr, "HTTP").await?;
        publish(kernel, "http", local);
        tracing::info!(%local, token_required = auth.required(), "serving REST for hosts");
        bound.http = Some((listener, auth));
    }
    if let Some(addr) = listen.comms_listen {
        let (listener, local) = bind(addr, "other kernels").await?;
        let address = advertised(listen.comms_advertise.as_deref(), local)?;
        let binding = net.node.binding(&net.name, &address);
        if let Some(path) = &listen.comms_binding_out {
            binding
                .write(path)
                .map_err(|e| setup(&format!("cannot write {}", path.display()), e))?;
        }
        if let Ok(mut own) = net.binding.lock() {
            *own = Some(binding);
        }
        publish(kernel, "comms", local);
        tracing::info!(%local, %address, kernel_id = net.node.kernel_id(), "listening for trusted kernels");
        bound.comms = Some(listener);
    }
    Ok(bound)
}

fn publish(kernel: &Kernel, name: &str, addr: SocketAddr) {
    if let Ok(mut e) = kernel.endpoints.write() {
        e.insert(name.to_owned(), addr.to_string());
    }
}

impl Bound {
    /// Starts serving on every bound listener.
    pub fn serve(self, kernel: &Arc<Kernel>, local: LocalRpc) -> Endpoints {
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        if let (Some(listener), Some(net)) = (self.comms, kernel.remote.get()) {
            let inbox = Arc::new(KernelInbox { kernel: kernel.clone() });
            tasks.push(tokio::spawn(crate::remote::serve(
                listener,
                net.node.clone(),
                inbox,
                stop.clone(),
            )));
        }
        let host = |caller: &str| -> Arc<dyn Host> {
            Arc::new(KernelHost { kernel: kernel.clone(), caller: caller.into() })
        };
        let (rpc_limits, http_limits) = host_limits(kernel);
        let incoming = local.install(rpc_limits.max_connections);
        let serve =
            crate::surface::rpc::serve_local(incoming, host("host:rpc"), rpc_limits, stop.clone());
        tasks.push(tokio::spawn(serve));
        if let Some((listener, auth)) = self.rpc {
            let limits = rpc_limits;
            tracing::info!(max_connections = limits.max_connections, "JSON-RPC connection cap");
            let serve = crate::surface::rpc::serve_tcp(
                listener,
                host("host:rpc"),
                auth,
                limits,
                stop.clone(),
            );
            tasks.push(tokio::spawn(serve));
        }
        if let Some((listener, auth)) = self.http {
            let large = kernel.config().host.http_large_answers;
            let router = crate::surface::http::router_with_limits(
                host("host:http"),
                auth,
                crate::surface::http::MAX_CONCURRENT,
                crate::surface::http::MAX_STREAMS,
                large,
            );
            tracing::info!(max_connections = http_limits.max_connections, "HTTP connection cap");
            let serve =
                crate::surface::http::serve_http(listener, router, http_limits, stop.clone());
            tasks.push(tokio::spawn(serve));
        }
        Endpoints { stop, tasks, local }
    }
}

/// The bounds of the host surfaces: `[host]`, with each connection cap clamped to the
/// surface's share of the descriptor limit ([`crate::descriptors::host_budget`]).
fn host_limits(kernel: &Kernel) -> (RpcLimits, HttpLimits) {
    let config = kernel.config();
    let host = &config.host;
    let (mut rpc_cap, mut http_cap) = (host.max_rpc_connections, host.max_http_connections);
    if let Some(soft) = crate::descriptors::soft_limit() {
        let budget =
            crate::descriptors::host_budget(soft, config.ipc.max_connections, config.run.len());
        rpc_cap = crate::descriptors::clamp_cap("rpc", rpc_cap, budget.rpc, MAX_REFUSING);
        http_cap = crate::descriptors::clamp_cap("http", http_cap, budget.http, MAX_REFUSING);
    }
    let idle = Duration::from_millis(host.idle_timeout_ms);
    // A JSON-RPC connection holds what an app's does: the same bytes bounds.
    let ipc = &config.ipc;
    let rpc = RpcLimits {
        max_connections: rpc_cap,
        idle_timeout: Some(idle),
        max_queued_bytes: ipc.max_queued_bytes,
        writer_queue_bytes: ipc.writer_queue_bytes,
        max_large_answers: ipc.max_large_answers,
        write_timeout: Duration::from_millis(ipc.write_stall_timeout_ms),
        ..RpcLimits::default()
    };
    let http = HttpLimits {
        max_connections: http_cap,
        header_read_timeout: Duration::from_millis(host.header_read_timeout_ms),
        body_read_timeout: Duration::from_millis(host.body_read_timeout_ms),
        idle_timeout: idle,
        write_timeout: Duration::from_millis(ipc.write_stall_timeout_ms),
    };
    (rpc, http)
}

/// The address other kernels dial: `--comms-advertise-tcp` (a port of 0 meaning the bound
/// one), else the bound address when it is a specific one.
fn advertised(advertise: Option<&str>, bound: SocketAddr) -> Result<String, KernelError> {
    match advertise {
        Some(a) => match a.rsplit_once(':') {
            Some((host, "0")) => Ok(format!("{host}:{}", bound.port())),
            Some(_) => Ok(a.to_owned()),
            None => Err(setup("--comms-advertise-tcp", format!("{a:?} is not HOST:PORT"))),
        },
        None if bound.ip().is_unspecified() => Err(setup(
            "--comms-listen-tcp",
            format!(
                "{bound} is not an address others can dial; add --comms-advertise-tcp HOST:PORT"
            ),
        )),
        None => Ok(bound.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advertised_address_takes_the_bound_port_when_asked() {
        let bound: SocketAddr = "127.0.0.1:4200".parse().unwrap();
        assert_eq!(
            advertised(Some("reviewer.example.com:0"), bound).unwrap(),
            "reviewer.example.com:4200"
        );
        assert_eq!(
            advertised(Some("reviewer.example.com:7"), bound).unwrap(),
            "reviewer.example.com:7"
        );
        assert_eq!(advertised(None, bound).unwrap(), "127.0.0.1:4200");
        assert!(advertised(None, "0.0.0.0:4200".parse().unwrap()).is_err());
        assert!(advertised(Some("no-port"), bound).is_err());
    }
}
