//! The sending side: dial a trusted kernel, send a signed envelope, read and verify its
//! ack.
//!
//! [`send`] is the whole exchange. [`KernelConnection`] and [`open_ack`] are the parts, for
//! callers (and tests) that send pre-built or deliberately wrong lines.
//!
//! What each error says about delivery: [`SendError::Unreachable`] — nothing was sent;
//! [`SendError::Refused`] — the other kernel did not take it; [`SendError::Timeout`] and
//! [`SendError::Lost`] — it was (at least partly) sent and the outcome is unknown (a retry
//! with the same envelope id is refused `replayed` if the first one was taken);
//! [`SendError::BadAck`] — an answer came that cannot be trusted.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

use super::binding::{Binding, BindingError};
use super::envelope::{Ack, AckStatus, ENVELOPE_VERSION, Envelope, SignedEnvelope};
use super::{KernelNode, Refusal};

/// Why sending failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be made (within the deadline); nothing was sent.
    #[error("kernel unreachable: {0}")]
    Unreachable(String),
    /// Sent, but no ack came within the deadline; the outcome is unknown.
    #[error("no ack within the deadline")]
    Timeout,
    /// The connection failed while sending or before the ack; the outcome is unknown.
    #[error("connection lost: {0}")]
    Lost(String),
    /// The other kernel answered with a signed refusal.
    #[error("refused by the other kernel: {}", .0.as_str())]
    Refused(Refusal),
    /// The answer is not a valid ack from that kernel for this envelope.
    #[error("bad ack: {0}")]
    BadAck(String),
    /// The other kernel's binding is invalid.
    #[error(transparent)]
    Binding(#[from] BindingError),
}

/// A raw connection to another kernel's listener: write lines, read ack lines.
#[derive(Debug)]
pub struct KernelConnection {
    lines: FramedRead<OwnedReadHalf, LinesCodec>,
    write: OwnedWriteHalf,
}

impl KernelConnection {
    /// Dials `address` (`HOST:PORT`) within `deadline`; ack lines longer than
    /// `max_ack_bytes` are refused.
    pub async fn connect(
        address: &str,
        deadline: Duration,
        max_ack_bytes: usize,
    ) -> Result<Self, SendError> {
        let stream = match tokio::time::timeout(deadline, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(SendError::Unreachable(format!("{address}: {e}"))),
            Err(_) => {
                return Err(SendError::Unreachable(format!(
                    "{address}: no connection within {deadline:?}"
                )));
            }
        };
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        Ok(Self {
            lines: FramedRead::new(read, LinesCodec::new_with_max_length(max_ack_bytes)),
            write,
        })
    }

    /// Writes `line` as is, adding the newline if it has none.
    pub async fn write_line(&mut self, line: &str) -> Result<(), SendError> {
        let lost = |e: std::io::Error| SendError::Lost(e.to_string());
        if line.ends_with('\n') {
            self.write.write_all(line.as_bytes()).await.map_err(lost)
        } else {
            let mut owned = String::with_capacity(line.len() + 1);
            owned.push_str(line);
            owned.push('\n');
            self.write.write_all(owned.as_bytes()).await.map_err(lost)
        }
    }

    /// Reads one line (without its newline).
    pub async fn read_line(&mut self) -> Result<String, SendError> {
        match self.lines.next().await {
            Some(Ok(line)) => Ok(line),
            Some(Err(LinesCodecError::MaxLineLengthExceeded)) => {
                Err(SendError::BadAck("ack longer than the limit".into()))
            }
            Some(Err(LinesCodecError::Io(e))) => Err(SendError::Lost(e.to_string())),
            None => Err(SendError::Lost("connection closed before an ack".into())),
        }
    }

    /// Writes `line` and reads the answer line, within `deadline` ([`SendError::Timeout`]).
    pub async fn exchange(&mut self, line: &str, deadline: Duration) -> Result<String, SendError> {
        tokio::time::timeout(deadline, async {
            self.write_line(line).await?;
            self.read_line().await
        })
        .await
        .unwrap_or(Err(SendError::Timeout))
    }
}

/// How old a refusal of a whole line may be, ms.
const LINE_REFUSAL_FRESHNESS_MS: u64 = 60_000;

/// Verifies a raw ack line from kernel `from` answering envelope `envelope_id` sent by
/// `self_id`.
///
/// Gives the ack whatever its status, once its signature (by `from`'s key), version,
/// `from`, `to` and `ack_of` check out. A refusal of the whole line or connection
/// (`oversize`, `malformed`, `busy`) has empty `ack_of` and `to` and is accepted as such.
pub fn open_ack(
    raw: &str,
    from: &Binding,
    self_id: &str,
    envelope_id: &str,
) -> Result<Ack, SendError> {
    let key = from.verifying_key()?;
    let signed = SignedEnvelope::from_line(raw)
        .ok_or_else(|| SendError::BadAck("not a signed ack line".into()))?;
    if !signed.verify(&key) {
        return Err(SendError::BadAck(format!("signature is not {}'s", from.kernel_id)));
    }
    let ack: Ack = serde_json::from_str(&signed.payload)
        .map_err(|e| SendError::BadAck(format!("payload is not an ack: {e}")))?;
    if ack.v != ENVELOPE_VERSION {
        return Err(SendError::BadAck(format!("unsupported ack version {}", ack.v)));
    }
    if ack.from != from.kernel_id {
        return Err(SendError::BadAck(format!(
            "ack from {:?}, expected the kernel sent to",
            ack.from
        )));
    }
    // A refusal of the whole line names no envelope, so only its kinds may, and only a
    // fresh one counts (an old one replayed by someone on the path would not).
    let line_refusal = ack.ack_of.is_empty()
        && ack.to.is_empty()
        && ack.status == AckStatus::Refused
        && matches!(ack.reason.as_deref(), Some("oversize" | "malformed" | "busy"));
    if line_refusal && burrow_protocol::now_ms().abs_diff(ack.sent_at) > LINE_REFUSAL_FRESHNESS_MS {
        return Err(SendError::BadAck("a stale refusal of the whole line".into()));
    }
    if !line_refusal && ack.to != self_id {
        return Err(SendError::BadAck(format!("ack addressed to {:?}, not to us", ack.to)));
    }
    if !line_refusal && ack.ack_of != envelope_id {
        return Err(SendError::BadAck(format!(
            "ack of {:?}, expected {envelope_id:?}",
            ack.ack_of
        )));
    }
    if ack.status == AckStatus::Refused && ack.reason.as_deref().is_none_or(str::is_empty) {
        return Err(SendError::BadAck("refused without a reason".into()));
    }
    Ok(ack)
}

/// Sends one new envelope of `kind` with `body` to the kernel `to` and waits for its ack,
/// all within `deadline`; gives the accepted ack's body.
pub async fn send(
    node: &KernelNode,
    to: &Binding,
    kind: &str,
    body: Value,
    deadline: Duration,
) -> Result<Value, SendError> {
    let envelope = node.envelope(&to.kernel_id, kind, body);
    send_envelope(node, to, &envelope, deadline).await
}

/// Sends a given envelope (e.g. a retry with the same id) to `to`; as [`send`].
pub async fn send_envelope(
    node: &KernelNode,
    to: &Binding,
    envelope: &Envelope,
    deadline: Duration,
) -> Result<Value, SendError> {
    to.verifying_key()?;
    let line = node.sign(envelope).to_line();
    let end = Instant::now() + deadline;
    let max = node.settings().max_line_bytes;
    let mut conn = KernelConnection::connect(&to.address, deadline, max).await?;
    let raw = conn.exchange(&line, end.saturating_duration_since(Instant::now())).await?;
    let ack = open_ack(&raw, to, node.kernel_id(), &envelope.id)?;
    node.heard_from(&to.kernel_id);
    match ack.status {
        AckStatus::Accepted => Ok(ack.body),
        AckStatus::Refused => {
            Err(SendError::Refused(Refusal::from_reason(ack.reason.as_deref().unwrap_or_default())))
        }
    }
}
