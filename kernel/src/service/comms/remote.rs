//! Peers on trusted kernels, over the signed kernel channel ([`crate::remote`]).
//!
//! Two envelope kinds travel between kernels: `directory` (which peers do you have?) and
//! `comms` (a [`Letter`] for one of your peers). The receiving kernel's [`KernelInbox`]
//! stores a letter through the same path as a local one before it acknowledges it, so a
//! signed `accepted` acknowledgement means the message is durable over there.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burrow_protocol::{ErrorCode, ErrorObject, Value};
use serde::Deserialize;
use serde_json::json;

use super::{Delivered, Letter, deliver, local_peers, refused};
use crate::kernel::Kernel;
use crate::remote::{
    Binding, DeliverFuture, Envelope, Inbox, KernelChannelSettings, KernelNode, Refusal, SendError,
    TrustStore, send,
};
use crate::service::ServiceError;

/// Envelope kind: a letter for one of the receiver's peers.
pub const KIND_COMMS: &str = "comms";
/// Envelope kind: a request for the receiver's list of peers.
pub const KIND_DIRECTORY: &str = "directory";

/// This kernel's end of the kernel channel: its node (identity, trust store, replay cache)
/// and what it learned of other kernels' peers.
#[derive(Debug)]
pub struct RemoteKernels {
    /// The node.
    pub node: Arc<KernelNode>,
    /// Our display name.
    pub name: String,
    /// Our binding, when we listen.
    pub binding: Mutex<Option<Binding>>,
    directory: Mutex<HashMap<String, Asked>>,
}

impl RemoteKernels {
    /// The kernel channel of `kernel`: its key, its trust store in its state dir, its
    /// `[comms]` limits.
    pub fn open(kernel: &Kernel) -> Result<RemoteKernels, crate::remote::TrustError> {
        let config = kernel.config();
        let id = crate::remote::kernel_id(kernel.key.verifying_key());
        let trust = Arc::new(TrustStore::open(&kernel.paths.state_dir, &id)?);
        let settings = KernelChannelSettings {
            max_line_bytes: config.comms.max_envelope_bytes,
            freshness: Duration::from_millis(config.comms.freshness_ms),
            // Within a sender's deadline (same defaults), so it gets a definite answer.
            delivery_timeout: Duration::from_millis(config.comms.send_timeout_ms * 3 / 4),
            ..KernelChannelSettings::default()
        };
        let name = config.comms.kernel_name.clone().unwrap_or_else(host_name);
        Ok(RemoteKernels {
            node: Arc::new(KernelNode::new(&kernel.key, trust, settings)),
            name,
            binding: Mutex::new(None),
            directory: Mutex::new(HashMap::new()),
        })
    }

    /// A recent answer: its peers, and whether the kernel was reachable.
    fn cached(&self, kernel_id: &str, ttl: Duration) -> Option<(Vec<RemotePeer>, bool)> {
        let dir = self.directory.lock().ok()?;
        dir.get(kernel_id).filter(|(at, ..)| at.elapsed() < ttl).map(|(_, p, ok)| (p.clone(), *ok))
    }

    fn last_known(&self, kernel_id: &str) -> Vec<RemotePeer> {
        let dir = self.directory.lock();
        dir.ok().and_then(|d| d.get(kernel_id).map(|(_, p, _)| p.clone())).unwrap_or_default()
    }

    /// Forgets what a kernel told us (after it is revoked).
    pub fn forget(&self, kernel_id: &str) {
        if let Ok(mut dir) = self.directory.lock() {
            dir.remove(kernel_id);
        }
    }
}

/// What a trusted kernel said when it was last asked: when, its peers, whether it
/// answered at all.
type Asked = (Instant, Vec<RemotePeer>, bool);

/// The machine's host name, for a kernel without `[comms] kernel_name`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .map_or_else(|| "burrow".to_owned(), |h| format!("burrow@{h}"))
}

/// A peer on a trusted kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct RemotePeer {
    /// Its canonical id (its session key there).
    pub peer_id: String,
    /// Its display name.
    pub name: String,
    /// Its kernel.
    pub kernel_id: String,
    /// Its kernel's display name.
    pub kernel_name: String,
    /// Whether it stays resident.
    pub keep_alive: bool,
}

/// The remote peers known now.
#[derive(Debug, Clone, Default)]
pub struct RemoteView {
    /// The peers.
    pub peers: Vec<RemotePeer>,
    /// Trusted kernels that did not answer.
    pub unreachable: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct DirectoryEntry {
    peer_id: String,
    name: String,
    #[serde(default)]
    keep_alive: bool,
}

/// The peers of every trusted kernel; a kernel's answer is reused for
/// `[comms] directory_ttl_ms` unless `fresh`.
pub async fn peers(kernel: &Arc<Kernel>, fresh: bool) -> RemoteView {
    let Some(net) = kernel.remote.get() else { return RemoteView::default() };
    let config = kernel.config();
    let ttl =
        if fresh { Duration::ZERO } else { Duration::from_millis(config.comms.directory_ttl_ms) };
    let deadline = Duration::from_millis(config.comms.send_timeout_ms);
    let asks = net.node.trust_store().list().into_iter().map(|b| {
        let net = net.clone();
        async move {
            match net.cached(&b.kernel_id, ttl) {
                Some((peers, true)) => return Ok(peers),
                Some((peers, false)) => return Err((b.kernel_id.clone(), peers)),
                None => {}
            }
            let answer = send(&net.node, &b, KIND_DIRECTORY, json!({}), deadline).await;
            let peers = answer.ok().and_then(|v| {
                let entries: Vec<DirectoryEntry> =
                    serde_json::from_value(v["peers"].clone()).ok()?;
                Some(
                    entries
                        .into_iter()
                        .map(|e| RemotePeer {
                            peer_id: e.peer_id,
                            name: e.name,
                            kernel_id: b.kernel_id.clone(),
                            kernel_name: b.name.clone(),
                            keep_alive: e.keep_alive,
                        })
                        .collect::<Vec<_>>(),
                )
            });
            match peers {
                Some(p) => {
                    if let Ok(mut dir) = net.directory.lock() {
                        dir.insert(b.kernel_id.clone(), (Instant::now(), p.clone(), true));
                    }
                    Ok(p)
                }
                None => {
                    // Remembered as unreachable (with what it last said) for the TTL.
                    let last = net.last_known(&b.kernel_id);
                    if let Ok(mut dir) = net.directory.lock() {
                        dir.insert(b.kernel_id.clone(), (Instant::now(), last.clone(), false));
                    }
                    Err((b.kernel_id.clone(), last))
                }
            }
        }
    });
    let mut view = RemoteView::default();
    for answer in futures_util::future::join_all(asks).await {
        match answer {
            Ok(p) => view.peers.extend(p),
            Err((kernel_id, last)) => {
                view.unreachable.push(kernel_id);
                view.peers.extend(last);
            }
        }
    }
    view
}

/// Sends `letter` to `peer`'s kernel; the receipt comes from its signed acknowledgement.
pub async fn send_letter(
    kernel: &Arc<Kernel>,
    peer: &RemotePeer,
    letter: &Letter,
) -> Result<Delivered, ServiceError> {
    let net = kernel.remote.get().ok_or_else(|| {
        refused(
            ErrorCode::ConnectionClosed,
            "peer_unreachable",
            "the kernel channel is off",
            Value::Null,
        )
    })?;
    let binding = net.node.trust_store().get(&peer.kernel_id).ok_or_else(|| {
        refused(
            ErrorCode::NotFound,
            "unknown_peer",
            format!("kernel {} is no longer trusted", peer.kernel_id),
            Value::Null,
        )
    })?;
    let mut letter = letter.clone();
    letter.from_kernel = Some(net.node.kernel_id().to_owned());
    let body = serde_json::to_value(&letter).unwrap_or_default();
    let deadline = Duration::from_millis(kernel.config().comms.send_timeout_ms);
    let extra = json!({ "kernel_id": peer.kernel_id });
    match send(&net.node, &binding, KIND_COMMS, body, deadline).await {
        Ok(ack) => serde_json::from_value(ack).map_err(|e| {
            refused(
                ErrorCode::UnknownError,
                "bad_ack",
                format!("an unreadable receipt: {e}"),
                extra,
            )
        }),
        Err(SendError::Refused(Refusal::Timeout)) => Err(refused(
            ErrorCode::Timeout,
            "no_ack",
            format!(
                "kernel {} did not finish storing the message in time; it may or may not have arrived",
                peer.kernel_id
            ),
            extra,
        )),
        Err(SendError::Refused(r)) => {
            // The other kernel's reasons, in this kernel's words where they mean the same.
            let reason = match &r {
                Refusal::UnknownRecipient => "unknown_peer".to_owned(),
                other => other.as_str().to_owned(),
            };
            Err(refused(
                refusal_code(&r),
                &reason,
                format!("kernel {} refused the message: {reason}", peer.kernel_id),
                extra,
            ))
        }
        Err(SendError::Unreachable(why)) => Err(refused(
            ErrorCode::ConnectionClosed,
            "peer_unreachable",
            format!("kernel {} is unreachable: {why}", peer.kernel_id),
            extra,
        )),
        Err(SendError::Timeout | SendError::Lost(_)) => Err(refused(
            ErrorCode::Timeout,
            "no_ack",
            format!(
                "kernel {} did not acknowledge in time; the message may or may not have arrived",
                peer.kernel_id
            ),
            extra,
        )),
        Err(e) => Err(refused(ErrorCode::UnknownError, "bad_ack", e.to_string(), extra)),
    }
}

fn refusal_code(r: &Refusal) -> ErrorCode {
    match r {
        // Not `UNAUTHORIZED`: that would read as the host's own token being wrong.
        Refusal::UntrustedSender | Refusal::InvalidSignature => ErrorCode::Forbidden,
        Refusal::Misaddressed | Refusal::UnknownRecipient => ErrorCode::NotFound,
        Refusal::Stale | Refusal::Replayed => ErrorCode::Conflict,
        Refusal::Oversize => ErrorCode::InvalidParams,
        Refusal::Malformed => ErrorCode::InvalidRequest,
        Refusal::Timeout => ErrorCode::Timeout,
        Refusal::InboxFull | Refusal::Busy => ErrorCode::UnknownError,
        Refusal::Other(reason) => match reason.as_str() {
            "unknown_request" | "unknown_peer" | "unknown_session" => ErrorCode::NotFound,
            "already_answered" | "duplicate_request" => ErrorCode::Conflict,
            "not_your_request" | "forged_sender" => ErrorCode::Forbidden,
            _ => ErrorCode::UnknownError,
        },
    }
}

/// Envelopes from trusted kernels, delivered into this kernel's sessions.
#[derive(Debug)]
pub struct KernelInbox {
    /// The kernel.
    pub kernel: Arc<Kernel>,
}

impl Inbox for KernelInbox {
    fn deliver(&self, envelope: Envelope) -> DeliverFuture<'_> {
        Box::pin(async move {
            match envelope.kind.as_str() {
                KIND_DIRECTORY => {
                    let peers = local_peers(&self.kernel, None)
                        .await
                        .map_err(|e| Refusal::Other(reason_of(&e)))?;
                    let name = self.kernel.remote.get().map(|n| n.name.clone()).unwrap_or_default();
                    Ok(json!({ "kernel_name": name, "peers": peers }))
                }
                KIND_COMMS => {
                    let mut letter: Letter =
                        serde_json::from_value(envelope.body).map_err(|_| Refusal::Malformed)?;
                    // A kernel speaks only for itself: its signature names the origin.
                    letter.from_kernel = Some(envelope.from.clone());
                    let caller = format!("peer:{}", envelope.from);
                    match deliver(&self.kernel, &caller, letter).await {
                        Ok(d) => Ok(serde_json::to_value(d).unwrap_or_default()),
                        Err(e) => Err(match reason_of(&e).as_str() {
                            "unknown_peer" | "unknown_session" => Refusal::UnknownRecipient,
                            "session_queue_full" => Refusal::InboxFull,
                            other => Refusal::Other(other.to_owned()),
                        }),
                    }
                }
                _ => Err(Refusal::Malformed),
            }
        })
    }
}

/// `data.reason` of an error, else its code.
fn reason_of(e: &ServiceError) -> String {
    let e = ErrorObject::from(e.clone());
    e.data
        .as_ref()
        .and_then(|d| d.get("reason"))
        .and_then(Value::as_str)
        .map_or_else(|| format!("{:?}", e.code).to_lowercase(), str::to_owned)
}
