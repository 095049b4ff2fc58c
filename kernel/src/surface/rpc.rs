//! JSON-RPC 2.0 over newline-delimited JSON: the connections of the kernel's socket
//! ([`serve_local`]; what `burrow-rpc` pipes stdin/stdout to) and a TCP listener
//! ([`serve_tcp`], `burrow kernel --rpc-tcp`).
//!
//! ## Wire
//!
//! One JSON value per line (UTF-8, `\n`-terminated, `\r\n` accepted; blank lines are
//! skipped). Requests are answered as their calls finish, so answers may come out of
//! order; match them by `id`. Notifications (no `id`) run and are never answered. A batch
//! (an array) is answered with one array once all of its calls are done, or not at all if
//! it held only notifications; an empty batch is one `-32600` error.
//!
//! - `params` may be omitted (it is then `{}`) and must be an object; an array is
//!   answered `-32602`, any other value `-32600`.
//! - Errors: a line that is not JSON (or not UTF-8) is `-32700` with `id: null`; a request
//!   that is not an object, lacks `"jsonrpc": "2.0"`, has a non-string `method` or an `id`
//!   that is not a string, number or null is `-32600`; a line over
//!   [`RpcLimits::max_line_bytes`] (8 MiB) is `-32600` with `data.reason: "oversize"`,
//!   and reading goes on with the next line. Host errors map per
//!   [`crate::surface::rpc_code`]; `data` is always an object with the Burrow `code`.
//! - Bad input never closes a connection, with one exception: a line that looks like
//!   HTTP (`POST / HTTP/1.1`, `Host: ...`) closes it at once, so that a web page cannot
//!   smuggle JSON-RPC to a loopback port inside an HTTP request (cross-protocol attack).
//!
//! ## Authentication (TCP)
//!
//! Where a token is required ([`crate::surface::auth`]), a connection must first call
//!
//! ```json
//! {"jsonrpc": "2.0", "id": 1, "method": "rpc/authenticate", "params": {"token": "brw_..."}}
//! ```
//!
//! answered `{"ok": true}`, or `-32040` (`UNAUTHORIZED`) with `data.reason`
//! `token_required` / `invalid_token`. Until it succeeds every other request is answered
//! `-32040` with `data.reason: "token_required"` (notifications are dropped). Messages are
//! admitted in the order they are read, so a client may pipeline its calls right behind
//! `rpc/authenticate`. Where no token is required, `rpc/authenticate` answers
//! `{"ok": true}` without looking at the token.
//!
//! ## Bounds
//!
//! Back-pressure, not errors: the connection stops reading while
//! [`RpcLimits::max_in_flight`] host calls run, while the calls running hold
//! [`RpcLimits::max_queued_bytes`] (their lines and params, as read into memory), or
//! while [`RpcLimits::writer_queue_bytes`] of answers wait to be written. Calls that may
//! answer with as much as a frame (`session/history`, `session/list`, gateway methods)
//! start at most [`RpcLimits::max_large_answers`] at a time and only while the writer
//! has room, and a batch runs them one at a time, its answer capped at
//! [`RpcLimits::max_line_bytes`] (the calls beyond are answered `batch_too_large`). So a
//! peer that reads nothing holds at most about `max_queued_bytes + writer_queue_bytes +
//! (max_large_answers + 1) × max_line_bytes`. Answers go through one writer task; a peer
//! that takes longer than [`RpcLimits::write_timeout`] to accept an answer is
//! disconnected. At end of input the
//! answers still owed are written (for up to [`RpcLimits::drain_timeout`]) before the
//! connection closes. [`serve_tcp`] serves at most [`RpcLimits::max_connections`] at once:
//! one more is answered with one error line (`id: null`, −32000, `data.reason:
//! "too_many_connections"`) and closed at once. A TCP connection with no call running and
//! no answer queued that sends nothing for [`RpcLimits::idle_timeout`] is closed.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::codec::{Decoder, LinesCodec, LinesCodecError};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::surface::admit::Admission;
use crate::surface::answers::Answers;
use crate::surface::auth::Auth;
use crate::surface::{Host, Link, RpcError};

mod message;

pub use message::AUTHENTICATE;
pub(crate) use message::{Gate, complete, triage};

/// How much is read from the peer at a time.
const READ_CHUNK: usize = 16 * 1024;

/// Bounds of the JSON-RPC surface.
#[derive(Debug, Clone, Copy)]
pub struct RpcLimits {
    /// Longest line (one message or batch), in bytes.
    pub max_line_bytes: usize,
    /// Host calls running at once per connection (a batch counts each of its calls).
    pub max_in_flight: usize,
    /// Bytes the calls running hold (their lines, and their params as read).
    pub max_queued_bytes: usize,
    /// Answers queued for the writer.
    pub writer_queue: usize,
    /// Bytes of answers queued for the writer.
    pub writer_queue_bytes: usize,
    /// Calls that may answer with as much as a frame, prepared at once.
    pub max_large_answers: usize,
    /// How long writing one answer may take before the peer is dropped.
    pub write_timeout: Duration,
    /// How long answers still owed are waited for when input ends.
    pub drain_timeout: Duration,
    /// Connections [`serve_tcp`] serves at once; one more is answered with an error and
    /// closed.
    pub max_connections: usize,
    /// How long a connection with no call running and no answer queued may send nothing
    /// before it is closed; `None`: no limit (the socket's connections, whose clients own their end).
    pub idle_timeout: Option<Duration>,
    /// How long a TCP connection that must authenticate may take to call
    /// `rpc/authenticate` before it is closed.
    pub auth_deadline: Duration,
}

impl Default for RpcLimits {
    fn default() -> Self {
        RpcLimits {
            max_line_bytes: 8 * 1024 * 1024,
            max_in_flight: 64,
            max_queued_bytes: 8 * 1024 * 1024,
            writer_queue: 256,
            writer_queue_bytes: 8 * 1024 * 1024,
            max_large_answers: 2,
            write_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
            max_connections: 256,
            idle_timeout: None,
            auth_deadline: Duration::from_secs(10),
        }
    }
}

/// Serves JSON-RPC on one connection until end of input, then writes the answers still
/// owed (within [`RpcLimits::drain_timeout`]) and shuts `writer` down. No token is asked
/// for: the caller owns the transport (the tests' duplex pipes).
#[cfg(test)]
pub(crate) async fn serve_connection<R, W>(
    reader: R,
    writer: W,
    host: Arc<dyn Host>,
    limits: RpcLimits,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    run_connection(reader, writer, host, limits, Gate::trusted(), CancellationToken::new()).await;
}

/// Serves the JSON-RPC connections made on the kernel's own socket (what `burrow-rpc`
/// and `burrow rpc` pipe stdin and stdout to), handed over by its accept loop with the
/// first byte it read, until `stop`; at most [`RpcLimits::max_connections`] at once. The
/// socket admits only its owner, so no token is asked for. After `stop`, open
/// connections stop reading, write what they owe, and close; this returns when all have.
pub async fn serve_local<S>(
    mut incoming: mpsc::Receiver<(u8, S)>,
    host: Arc<dyn Host>,
    limits: RpcLimits,
    stop: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let admission = Admission::new("rpc", limits.max_connections, refusal(limits.max_connections));
    let tracker = TaskTracker::new();
    loop {
        let (first, stream) = tokio::select! {
            next = incoming.recv() => match next {
                Some(conn) => conn,
                None => break,
            },
            () = stop.cancelled() => break,
        };
        let Some(slot) = admission.try_admit() else {
            admission.refuse(stream);
            continue;
        };
        let (reader, writer) = tokio::io::split(stream);
        let reader = std::io::Cursor::new([first]).chain(reader);
        let (host, stop) = (host.clone(), stop.child_token());
        tracker.spawn(async move {
            run_connection(reader, writer, host, limits, Gate::trusted(), stop).await;
            drop(slot);
        });
    }
    drop(incoming);
    tracker.close();
    tracker.wait().await;
}

/// Accepts JSON-RPC connections on `listener` until `stop`, each checked by `auth`, at
/// most [`RpcLimits::max_connections`] at once. After `stop`, open connections stop
/// reading, write what they owe, and close; this returns when all have.
pub async fn serve_tcp(
    listener: TcpListener,
    host: Arc<dyn Host>,
    auth: Arc<Auth>,
    limits: RpcLimits,
    stop: CancellationToken,
) {
    let admission = Admission::new("rpc", limits.max_connections, refusal(limits.max_connections));
    let tracker = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // E.g. out of file descriptors: wait a little instead of spinning.
                    tracing::warn!(error = %e, "rpc: accept failed");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                        () = stop.cancelled() => break,
                    }
                }
            },
            () = stop.cancelled() => break,
        };
        let Some(slot) = admission.try_admit() else {
            admission.refuse(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (reader, writer) = stream.into_split();
        let (host, gate, stop) = (host.clone(), Gate::new(auth.clone()), stop.child_token());
        // A connection that must authenticate and does not do so in time gives its slot
        // back: silent connections cannot hold the surface.
        let (admitted, login_over) = (gate.admitted(), stop.clone());
        tracker.spawn(async move {
            tokio::select! {
                () = admitted.cancelled() => {}
                () = tokio::time::sleep(limits.auth_deadline) => {
                    tracing::debug!(%peer, "rpc: no rpc/authenticate in time; closing");
                    login_over.cancel();
                }
                () = login_over.cancelled() => {}
            }
        });
        tracker.spawn(async move {
            tracing::debug!(%peer, "rpc: connection opened");
            run_connection(reader, writer, host, limits, gate, stop).await;
            tracing::debug!(%peer, "rpc: connection closed");
            drop(slot);
        });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

/// One connection's queues, as `/metrics` reports them.
struct Queues {
    /// Requests read and not yet answered hold their bytes of `max_bytes` permits.
    read: Arc<Semaphore>,
    max_bytes: usize,
    answers: Arc<Answers>,
    /// The writer's queue (weak: the writer ends when the last sender goes).
    out: mpsc::WeakSender<Queued>,
}

impl crate::metrics::queues::Probe for Queues {
    fn depth(&self) -> crate::metrics::queues::Depth {
        let out_frames = self.out.upgrade().map_or(0, |tx| tx.max_capacity() - tx.capacity());
        crate::metrics::queues::Depth {
            connections: 1,
            in_bytes: self.max_bytes.saturating_sub(self.read.available_permits()) as u64,
            out_frames: out_frames as u64,
            out_bytes: self.answers.queued_bytes() as u64,
        }
    }
}

/// The connection loop behind [`serve_local`] and [`serve_tcp`]; `stop` ends reading
/// early (what is owed is still written).
pub(crate) async fn run_connection<R, W>(
    mut reader: R,
    writer: W,
    host: Arc<dyn Host>,
    limits: RpcLimits,
    mut gate: Gate,
    stop: CancellationToken,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Queued>(limits.writer_queue.max(1));
    let writer_failed = CancellationToken::new();
    let mut writer_task =
        tokio::spawn(write_answers(writer, rx, limits.write_timeout, writer_failed.clone()));
    let answers = Answers::new(limits.writer_queue_bytes, limits.max_large_answers);
    let max_in_flight = limits.max_in_flight.max(1);
    let permits = Arc::new(Semaphore::new(max_in_flight));
    let max_bytes = u32::try_from(limits.max_queued_bytes).unwrap_or(u32::MAX).max(1);
    let bytes = Arc::new(Semaphore::new(max_bytes as usize));
    let queues = Arc::new(Queues {
        read: bytes.clone(),
        max_bytes: max_bytes as usize,
        answers: answers.clone(),
        out: tx.downgrade(),
    });
    crate::metrics::queues::watch("jsonrpc", &queues);
    let mut tasks = JoinSet::new();
    let mut codec = LinesCodec::new_with_max_length(limits.max_line_bytes);
    let mut buf = BytesMut::new();
    let mut eof = false;
    let link = link(&tx, &answers);

    loop {
        while tasks.try_join_next().is_some() {}
        // Read only while the answers have room to go: a peer that does not read is
        // not given more work.
        tokio::select! {
            () = answers.room() => {}
            () = stop.cancelled() => break,
            () = writer_failed.cancelled() => break,
        }
        let decoded = if eof { codec.decode_eof(&mut buf) } else { codec.decode(&mut buf) };
        let answer_now = match decoded {
            Ok(Some(line)) => {
                let text = line.trim();
                if text.is_empty() {
                    continue;
                }
                if looks_like_http(text) {
                    tracing::warn!("rpc: an HTTP request was sent to the JSON-RPC port; closing");
                    break;
                }
                let triaged = triage(text, &mut gate);
                let calls = triaged.calls();
                if calls == 0 {
                    complete(&*host, triaged, 1, limits.max_line_bytes, &link).await
                } else {
                    let wanted = u32::try_from(calls.min(max_in_flight)).unwrap_or(1);
                    let weight = text.len().saturating_add(triaged.weight());
                    let weight = u32::try_from(weight).unwrap_or(u32::MAX).clamp(1, max_bytes);
                    drop(line);
                    let held = async {
                        let calls = permits.clone().acquire_many_owned(wanted).await.ok()?;
                        Some((calls, bytes.clone().acquire_many_owned(weight).await.ok()?))
                    };
                    let held = tokio::select! {
                        held = held => match held {
                            Some(held) => held,
                            None => break,
                        },
                        () = stop.cancelled() => break,
                        () = writer_failed.cancelled() => break,
                    };
                    let (host, tx, answers) = (host.clone(), tx.clone(), answers.clone());
                    let link = link.clone();
                    let max_answer = limits.max_line_bytes;
                    tasks.spawn(async move {
                        // The kernel's own large answers are prepared in a slot; an app's
                        // (routed) take one once in hand, before they are queued.
                        let mut slot = match triaged.prepares_large() {
                            true => answers.large_slot().await,
                            false => None,
                        };
                        let routed = triaged.is_routed();
                        let answer =
                            complete(&*host, triaged, wanted as usize, max_answer, &link).await;
                        if routed && slot.is_none() {
                            slot = answers.large_slot().await;
                        }
                        if let Some(answer) = answer {
                            queue(&tx, &answers, &answer).await;
                        }
                        drop((held, slot));
                    });
                    None
                }
            }
            Err(LinesCodecError::MaxLineLengthExceeded) => {
                Some(message::oversize(limits.max_line_bytes))
            }
            Err(LinesCodecError::Io(_)) => Some(message::not_utf8()),
            Ok(None) if eof => break,
            Ok(None) => {
                buf.reserve(READ_CHUNK);
                // The idle clock runs while no call is running; it restarts with every
                // read and every call that ends.
                let idle = limits.idle_timeout.filter(|_| tasks.is_empty());
                tokio::select! {
                    read = reader.read_buf(&mut buf) => match read {
                        Ok(0) => eof = true,
                        Ok(_) => {}
                        Err(e) => {
                            tracing::debug!(error = %e, "rpc: read failed");
                            break;
                        }
                    },
                    () = stop.cancelled() => break,
                    () = writer_failed.cancelled() => break,
                    Some(_) = tasks.join_next(), if limits.idle_timeout.is_some() && !tasks.is_empty() => {}
                    () = tokio::time::sleep(idle.unwrap_or_default()), if idle.is_some() => {
                        if !answers.is_empty() {
                            // Answers are still queued: not idle yet.
                            continue;
                        }
                        tracing::debug!("rpc: idle connection; closing");
                        break;
                    }
                }
                None
            }
        };
        if let Some(answer) = answer_now
            && !queue(&tx, &answers, &answer).await
        {
            break;
        }
    }

    // Write what is owed, within the deadline; then let the writer finish its queue.
    // The connection's subscriptions end (and let go of the writer) now.
    link.close();
    drop((tx, link));
    if writer_failed.is_cancelled() {
        tasks.abort_all();
    }
    let drained = tokio::time::timeout(limits.drain_timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(unanswered = tasks.len(), "rpc: closing with calls still running");
        tasks.shutdown().await;
    }
    if tokio::time::timeout(limits.drain_timeout, &mut writer_task).await.is_err() {
        writer_task.abort();
    }
}

/// What a call sends on its connection besides its answer: notifications, queued for the
/// writer like answers (so those it sends before answering come first).
fn link(tx: &mpsc::Sender<Queued>, answers: &Arc<Answers>) -> Link {
    let (tx, answers) = (tx.clone(), answers.clone());
    Link::new(Arc::new(move |note| {
        let (tx, answers) = (tx.clone(), answers.clone());
        Box::pin(async move { queue(&tx, &answers, &note).await })
    }))
}

/// An answer line for the writer, holding its room in the writer queue until written.
type Queued = (String, OwnedSemaphorePermit);

/// Queues `answer` for the writer once it has room; false when the writer is gone.
async fn queue(tx: &mpsc::Sender<Queued>, answers: &Answers, answer: &serde_json::Value) -> bool {
    let line = to_line(answer);
    match answers.reserve(line.len()).await {
        Some(room) => tx.send((line, room)).await.is_ok(),
        None => false,
    }
}

/// Writes queued answers, one per line, flushing whenever the queue is empty; on a write
/// error or timeout cancels `failed` and stops.
async fn write_answers<W: AsyncWrite + Unpin>(
    writer: W,
    mut rx: mpsc::Receiver<Queued>,
    write_timeout: Duration,
    failed: CancellationToken,
) {
    let mut writer = BufWriter::new(writer);
    // The deadline is on progress: each write (of at most the buffer's 8 KiB, or what
    // the peer takes) must go through within it, so a peer that reads, however slowly,
    // is never cut off; one that takes nothing for that long is.
    let stalled = || std::io::Error::new(std::io::ErrorKind::TimedOut, "the peer does not read");
    let result: std::io::Result<()> = async {
        while let Some((line, _room)) = rx.recv().await {
            let mut rest = line.as_bytes();
            while !rest.is_empty() {
                let wrote = tokio::time::timeout(write_timeout, writer.write(rest)).await;
                match wrote.map_err(|_| stalled())?? {
                    0 => return Err(std::io::ErrorKind::WriteZero.into()),
                    n => rest = &rest[n..],
                }
            }
            if rx.is_empty() {
                tokio::time::timeout(write_timeout, writer.flush())
                    .await
                    .map_err(|_| stalled())??;
            }
        }
        tokio::time::timeout(write_timeout, async {
            writer.flush().await?;
            writer.shutdown().await
        })
        .await
        .map_err(|_| stalled())?
    }
    .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "rpc: write failed; dropping the connection");
        failed.cancel();
    }
}

/// The answer to a connection over the cap: one error line.
fn refusal(max: usize) -> bytes::Bytes {
    let error = burrow_protocol::ErrorObject::new(
        burrow_protocol::ErrorCode::UnknownError,
        format!("the JSON-RPC surface serves at most {max} connections at once; retry later"),
    )
    .with_data(serde_json::json!({"reason": "too_many_connections", "limit": max}));
    let answer = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": RpcError::from(&error).to_value(),
    });
    to_line(&answer).into()
}

fn to_line(answer: &serde_json::Value) -> String {
    let mut line = serde_json::to_string(answer).unwrap_or_else(|_| {
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"unserializable answer","data":{"code":"INTERNAL_ERROR"}}}"#.to_owned()
    });
    line.push('\n');
    line
}

/// Whether a line is an HTTP request line or a `Host` header rather than JSON.
fn looks_like_http(line: &str) -> bool {
    const METHODS: [&str; 9] =
        ["GET ", "POST ", "PUT ", "DELETE ", "HEAD ", "OPTIONS ", "PATCH ", "CONNECT ", "TRACE "];
    let request_line = METHODS.iter().any(|m| line.starts_with(m)) && line.contains(" HTTP/");
    let host_header = line.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("host:"));
    request_line || host_header
}

#[cfg(test)]
mod accept_tests;
#[cfg(test)]
mod tests;
