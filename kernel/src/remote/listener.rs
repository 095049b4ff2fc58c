//! The listener: accepts trusted kernels over TCP and answers every envelope with one
//! signed ack line.
//!
//! Bounds: at most [`KernelChannelSettings::max_connections`] connections (more get one
//! `busy` ack, written without waiting, and are closed); a connection that sends no
//! complete line for [`KernelChannelSettings::idle_timeout`] is closed; each line is at
//! most [`KernelChannelSettings::max_line_bytes`] (read through a length-capped codec,
//! never buffered beyond it); each delivery has
//! [`KernelChannelSettings::delivery_timeout`] (then `timeout`); each ack write has
//! [`KernelChannelSettings::write_timeout`]. Envelopes on one connection are handled one
//! after another. After a framing error (`oversize`, or a line that is not UTF-8,
//! refused `malformed`) the ack is written and the connection closed; a well-framed but
//! malformed line is answered and the connection kept.
//!
//! [`KernelChannelSettings::max_connections`]: super::KernelChannelSettings::max_connections
//! [`KernelChannelSettings::idle_timeout`]: super::KernelChannelSettings::idle_timeout
//! [`KernelChannelSettings::max_line_bytes`]: super::KernelChannelSettings::max_line_bytes
//! [`KernelChannelSettings::delivery_timeout`]: super::KernelChannelSettings::delivery_timeout
//! [`KernelChannelSettings::write_timeout`]: super::KernelChannelSettings::write_timeout

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::node::Rejected;
use super::{Envelope, KernelNode, Refusal};

/// After a framing error, how long the rest of the other kernel's input is read and dropped
/// (so that closing does not reset the connection before it reads its ack).
const DRAIN_TIME: Duration = Duration::from_secs(2);
/// At most this much is drained.
const DRAIN_BYTES: usize = 1024 * 1024;
/// Pause after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The future an [`Inbox`] returns.
pub type DeliverFuture<'a> = Pin<Box<dyn Future<Output = Result<Value, Refusal>> + Send + 'a>>;

/// Where verified envelopes go.
pub trait Inbox: Send + Sync {
    /// Takes one verified envelope. `Ok(body)` means it is stored durably and becomes the
    /// accepted ack's body; `Err(refusal)` is sent as the refused ack's reason (and frees
    /// the envelope id, so the sender may retry). The listener gives up after
    /// [`super::KernelChannelSettings::delivery_timeout`] and answers `timeout`.
    fn deliver(&self, envelope: Envelope) -> DeliverFuture<'_>;
}

/// Serves connections from other kernels on `listener` until `stop` is cancelled, then
/// waits for the open connections to finish their current envelope and returns.
pub async fn serve(
    listener: TcpListener,
    node: Arc<KernelNode>,
    inbox: Arc<dyn Inbox>,
    stop: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(node.settings().max_connections));
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, addr) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "kernel channel: accept failed");
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            let rejected = Rejected::bare(Refusal::Busy);
            node.record(&rejected, Some(addr));
            // Best effort and without waiting: a short line fits the socket buffer.
            let _ = stream.try_write(node.ack_line("", "", Err(&Refusal::Busy)).as_bytes());
            continue;
        };
        let (node, inbox, stop) = (node.clone(), inbox.clone(), stop.clone());
        tracker.spawn(async move {
            connection(stream, addr, &node, inbox.as_ref(), &stop).await;
            drop(permit);
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// One connection from another kernel: lines in, acks out, until EOF, idle, a framing
/// error or stop.
async fn connection(
    stream: TcpStream,
    addr: SocketAddr,
    node: &KernelNode,
    inbox: &dyn Inbox,
    stop: &CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let settings = node.settings();
    let (read, mut write) = stream.into_split();
    let mut lines = FramedRead::new(read, LinesCodec::new_with_max_length(settings.max_line_bytes));
    loop {
        let next = tokio::select! {
            () = stop.cancelled() => return,
            next = tokio::time::timeout(settings.idle_timeout, lines.next()) => next,
        };
        let line = match next {
            Err(_) => {
                tracing::debug!(peer = %addr, "kernel connection idle: closed");
                return;
            }
            Ok(None) => return,
            Ok(Some(Ok(line))) => line,
            Ok(Some(Err(e))) => {
                let refusal = match e {
                    LinesCodecError::MaxLineLengthExceeded => Refusal::Oversize,
                    LinesCodecError::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                        Refusal::Malformed
                    }
                    LinesCodecError::Io(e) => {
                        tracing::debug!(peer = %addr, error = %e, "kernel connection failed");
                        return;
                    }
                };
                let rejected = Rejected::bare(refusal);
                node.record(&rejected, Some(addr));
                let ack = node.ack_line("", "", Err(&rejected.refusal));
                if write_ack(&mut write, &ack, settings.write_timeout).await {
                    let _ = write.shutdown().await;
                    drain(lines.into_inner(), stop).await;
                }
                return;
            }
        };
        let ack = answer(&line, addr, node, inbox).await;
        if !write_ack(&mut write, &ack, settings.write_timeout).await {
            return;
        }
    }
}

/// Checks and delivers one line; gives the ack line.
async fn answer(line: &str, addr: SocketAddr, node: &KernelNode, inbox: &dyn Inbox) -> String {
    let envelope = match node.check_line(line, burrow_protocol::now_ms()) {
        Ok(envelope) => envelope,
        Err(rejected) => {
            node.record(&rejected, Some(addr));
            return node.ack_line(&rejected.envelope_id, &rejected.from, Err(&rejected.refusal));
        }
    };
    let (id, from) = (envelope.id.clone(), envelope.from.clone());
    let delivery = tokio::time::timeout(node.settings().delivery_timeout, inbox.deliver(envelope));
    let outcome = delivery.await.unwrap_or(Err(Refusal::Timeout));
    node.settle(&from, &id, &outcome);
    match outcome {
        Ok(body) => {
            tracing::debug!(%from, envelope_id = %id, "kernel channel: envelope accepted");
            node.ack_line(&id, &from, Ok(body))
        }
        Err(refusal) => {
            let rejected = Rejected { refusal, envelope_id: id, from };
            node.record(&rejected, Some(addr));
            node.ack_line(&rejected.envelope_id, &rejected.from, Err(&rejected.refusal))
        }
    }
}

/// Writes one ack within `limit`; `false` when the connection should close.
async fn write_ack(write: &mut OwnedWriteHalf, ack: &str, limit: Duration) -> bool {
    matches!(tokio::time::timeout(limit, write.write_all(ack.as_bytes())).await, Ok(Ok(())))
}

/// Reads and drops the other kernel's remaining input, bounded in time and bytes; stop
/// ends it.
async fn drain(mut read: OwnedReadHalf, stop: &CancellationToken) {
    let mut buf = [0u8; 8192];
    let mut total = 0;
    let reading = async {
        while total < DRAIN_BYTES {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    tokio::select! {
        () = stop.cancelled() => {}
        _ = tokio::time::timeout(DRAIN_TIME, reading) => {}
    }
}
