//! The root [`KernelActor`]: it owns the accept loop and supervises one AppActor per
//! connection. Its supervision handler is overridden: a child stopping or failing is
//! cleaned up and never stops the kernel. Shutdown flows down from it: it stops
//! accepting, asks every AppActor to send `app.shutdown` to its app, and stops when all
//! are gone or the deadline passes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use burrow_transport::Transport;
use interprocess::local_socket::tokio::Listener;
use interprocess::local_socket::traits::tokio::Listener as _;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use burrow_protocol::{Map, codec};

use crate::app_actor::{AppActor, AppArgs, AppMsg};

use crate::kernel::Kernel;
use crate::stop::Stop;

/// How long the app actors get to finish stopping once the apps' time to leave is up.
pub const LAST_WORDS: Duration = Duration::from_secs(2);

/// Messages of the KernelActor.
#[derive(Debug)]
pub enum KernelMsg {
    /// An IPC client connected (its first byte already read).
    Accepted(Sniffed),
    /// The kernel's stop: send every app away, let go of those still there at the
    /// stop's deadline, then stop; answered once the socket is closed.
    Shutdown(Stop),
    /// The shutdown deadline passed: stop whatever is left.
    ShutdownDeadline,
}

/// The root actor.
#[derive(Debug)]
pub struct KernelActor;

/// Arguments of the KernelActor.
#[derive(Debug)]
pub struct KernelArgs {
    /// The shared context.
    pub kernel: Arc<Kernel>,
    /// The bound listener; dropping it removes the socket file.
    pub listener: Listener,
    /// Where the socket's JSON-RPC connections go (the host surface).
    pub local_rpc: crate::endpoints::LocalRpc,
}

/// State of the KernelActor.
#[derive(Debug)]
pub struct KernelState {
    kernel: Arc<Kernel>,
    accepting: CancellationToken,
    accept_task: Option<JoinHandle<()>>,
    /// Each connection's actor, with its connection id and its slot among
    /// `ipc.max_connections` (given back when it is gone).
    children: HashMap<ActorId, (u64, ActorRef<AppMsg>, tokio::sync::OwnedSemaphorePermit)>,
    stopping: Option<Stop>,
}

impl Actor for KernelActor {
    type Msg = KernelMsg;
    type State = KernelState;
    type Arguments = KernelArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<KernelMsg>,
        args: KernelArgs,
    ) -> Result<KernelState, ActorProcessingErr> {
        let accepting = CancellationToken::new();
        let max = args.kernel.config().ipc.max_connections;
        let sniffing = Sniffing {
            kernel: myself,
            local_rpc: args.local_rpc,
            permits: Arc::new(tokio::sync::Semaphore::new(max)),
            max,
        };
        let accept_task = tokio::spawn(accept_loop(args.listener, sniffing, accepting.clone()));
        let start = serde_json::json!({ "version": crate::VERSION });
        args.kernel.emit("gateway_start", start, Map::new());
        Ok(KernelState {
            kernel: args.kernel,
            accepting,
            accept_task: Some(accept_task),
            children: HashMap::new(),
            stopping: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<KernelMsg>,
        msg: KernelMsg,
        state: &mut KernelState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            KernelMsg::Accepted(Sniffed { first, stream, slot }) => {
                if state.stopping.is_some() {
                    return Ok(());
                }
                let max = state.kernel.config().ipc.max_connections;
                if state.children.len() >= max {
                    tracing::warn!(max, "connection refused: too many connections");
                    tokio::spawn(refuse(
                        stream,
                        "too_many_connections",
                        format!("the kernel serves at most {max} connections"),
                    ));
                    return Ok(());
                }
                let conn_id = state.kernel.next_conn_id();
                let (read, write) = burrow_transport::split(stream);
                let read = tokio::io::AsyncReadExt::chain(std::io::Cursor::new([first]), read);
                let limits = state.kernel.config().ipc.max_frame_bytes;
                let mut transport = Transport::new(read, write, limits);
                // Room to send back, wrapped in its answers, whatever the kernel takes.
                transport.reader.decoder_mut().set_max_depth(codec::MAX_DEPTH_TO_KERNEL);
                let args = AppArgs { kernel: state.kernel.clone(), transport, conn_id };
                match Actor::spawn_linked(None, AppActor, args, myself.get_cell()).await {
                    Ok((child, _)) => {
                        state.children.insert(child.get_id(), (conn_id, child, slot));
                    }
                    Err(e) => tracing::error!(error = %e, "could not start an app actor"),
                }
            }
            KernelMsg::Shutdown(stop) => {
                state.accepting.cancel();
                let timeout = stop.by().saturating_duration_since(tokio::time::Instant::now());
                state.stopping = Some(stop);
                let reason = serde_json::json!({ "reason": "kernel stopping" });
                state.kernel.emit("gateway_stop", reason, Map::new());
                tracing::info!(
                    apps = state.kernel.apps.len(),
                    "kernel stopping: shutting apps down"
                );
                for (_, child, _) in state.children.values() {
                    let _ = child.cast(AppMsg::KernelShutdown { timeout });
                }
                myself.send_after(timeout, || KernelMsg::ShutdownDeadline);
                finish_if_idle(&myself, state);
            }
            KernelMsg::ShutdownDeadline => {
                // The apps' time is up: their actors stop, each releasing what its app
                // held and saying so, before the root does.
                let reason = Some("kernel shutdown deadline".to_owned());
                myself.get_cell().stop_children_and_wait(reason, Some(LAST_WORDS)).await;
                myself.stop(None);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<KernelMsg>,
        event: SupervisionEvent,
        state: &mut KernelState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, failure) = match event {
            SupervisionEvent::ActorTerminated(cell, _, _) => (cell, None),
            SupervisionEvent::ActorFailed(cell, err) => (cell, Some(err)),
            _ => return Ok(()),
        };
        if let Some((conn_id, _, _)) = state.children.remove(&cell.get_id())
            && let Some(err) = failure
        {
            // A failed actor may not have cleaned up: release what it held.
            let released = state.kernel.apps.release_conn(conn_id);
            tracing::error!(conn = conn_id, error = %err, ?released, "app actor failed");
        }
        finish_if_idle(&myself, state);
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<KernelMsg>,
        state: &mut KernelState,
    ) -> Result<(), ActorProcessingErr> {
        state.accepting.cancel();
        // The listener is dropped (and its socket file removed) before the kernel's lock
        // is released, so a successor's socket is never removed by ours.
        if let Some(task) = state.accept_task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        if let Some(stop) = state.stopping.take() {
            stop.done();
        }
        Ok(())
    }
}

/// During shutdown, stops the root actor once no app actor is left; its `post_stop`
/// answers the stop.
fn finish_if_idle(myself: &ActorRef<KernelMsg>, state: &KernelState) {
    if state.children.is_empty() && state.stopping.is_some() {
        myself.stop(None);
    }
}

/// Answers a connection the kernel will not serve with one error frame (no `id`,
/// `UNKNOWN_ERROR`, `data.reason`), then closes it.
async fn refuse(
    mut stream: interprocess::local_socket::tokio::Stream,
    reason: &'static str,
    message: String,
) {
    use tokio::io::AsyncWriteExt;
    let err = burrow_protocol::ErrorObject::new(burrow_protocol::ErrorCode::UnknownError, message)
        .with_data(serde_json::json!({ "reason": reason }));
    let msg = burrow_protocol::Message::error(None, err);
    if let Ok(frame) =
        burrow_protocol::codec::encode_frame(&msg, burrow_protocol::codec::MAX_FRAME_BYTES)
    {
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&frame)).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
    }
}

/// Whether the peer runs as this process's user. Connections from other users are
/// refused even when the socket's permissions have been loosened.
#[cfg(unix)]
fn same_user(stream: &interprocess::local_socket::tokio::Stream) -> Result<(), String> {
    use interprocess::local_socket::traits::StreamCommon;
    let ours = nix::unistd::geteuid().as_raw();
    let creds = stream.peer_creds().map_err(|e| format!("cannot read peer credentials: {e}"))?;
    match creds.euid() {
        Some(uid) if uid == ours => Ok(()),
        Some(uid) => Err(format!("peer runs as uid {uid}, the kernel as uid {ours}")),
        None => Err("peer credentials carry no uid".to_owned()),
    }
}

#[cfg(not(unix))]
fn same_user(_stream: &interprocess::local_socket::tokio::Stream) -> Result<(), String> {
    // Named pipes are created for the current user only.
    Ok(())
}

/// A connection whose first byte was read: what tells an IPC client (a frame's length
/// prefix) from a JSON-RPC one (`{` or `[`).
#[derive(Debug)]
pub struct Sniffed {
    /// The first byte.
    pub first: u8,
    /// The connection, from its second byte on.
    pub stream: interprocess::local_socket::tokio::Stream,
    /// Its slot among `ipc.max_connections`, held from its accept on.
    pub slot: tokio::sync::OwnedSemaphorePermit,
}

/// How long a new connection may take to send its first byte.
const FIRST_BYTE_WITHIN: Duration = Duration::from_secs(10);

/// Where the accept loop sends a connection once its first byte says what it speaks.
struct Sniffing {
    kernel: ActorRef<KernelMsg>,
    /// JSON-RPC connections go to the host surface ([`crate::endpoints`]).
    local_rpc: crate::endpoints::LocalRpc,
    /// Slots for `ipc.max_connections` connections: taken at accept, held by an IPC
    /// client for as long as it is connected, given back by a JSON-RPC one (whose
    /// surface has a cap of its own).
    permits: Arc<tokio::sync::Semaphore>,
    max: usize,
}

impl Sniffing {
    /// Reads `stream`'s first byte (waiting [`FIRST_BYTE_WITHIN`] at most) and hands the
    /// connection on: `{` or `[` (JSON, which no IPC frame can start with: its length
    /// prefix would exceed the largest frame) to the JSON-RPC host surface, anything
    /// else to the root as an IPC client.
    fn sniff(&self, mut stream: interprocess::local_socket::tokio::Stream) {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            let max = self.max;
            tracing::warn!(max, "connection refused: too many connections");
            let why = format!("the kernel serves at most {max} connections");
            tokio::spawn(refuse(stream, "too_many_connections", why));
            return;
        };
        let (kernel, local_rpc) = (self.kernel.clone(), self.local_rpc.clone());
        tokio::spawn(async move {
            let mut first = [0u8; 1];
            let read = tokio::io::AsyncReadExt::read(&mut stream, &mut first);
            let got = tokio::time::timeout(FIRST_BYTE_WITHIN, read).await;
            match got {
                Ok(Ok(1)) => {}
                Ok(_) => return,
                Err(_) => {
                    tracing::debug!("a connection sent nothing in time; closed");
                    return;
                }
            }
            if matches!(first[0], b'{' | b'[') {
                drop(permit);
                local_rpc.accept(first[0], stream);
            } else {
                let sniffed = Sniffed { first: first[0], stream, slot: permit };
                let _ = kernel.cast(KernelMsg::Accepted(sniffed));
            }
        });
    }
}

async fn accept_loop(listener: Listener, sniffing: Sniffing, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok(stream) => {
                if let Err(why) = same_user(&stream) {
                    tracing::warn!(%why, "connection refused: another user");
                    tokio::spawn(refuse(
                        stream,
                        "wrong_user",
                        "connections from other users are refused".to_owned(),
                    ));
                    continue;
                }
                sniffing.sniff(stream);
            }
            Err(e) => {
                // Usually EMFILE: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // Dropping the listener removes the socket file.
    drop(listener);
}
