//! Comms between sessions (`comms/send`, `comms/peers`). A session with a comms name is
//! a peer; its canonical peer id is its session key. A message to a peer on this kernel
//! goes straight into that session's queue; one to a peer on a trusted kernel goes over
//! the signed kernel channel ([`remote`]), and the receipt comes only after the other
//! kernel stored it and signed its acknowledgement.
//!
//! Every delivered message is a `user` message in the receiver's transcript with
//! `metadata.comms = {kind, from, from_name, from_kernel?, request_id?, in_reply_to?}`;
//! `peer_request`s are recorded so their `peer_response` can be checked and correlated.

use std::sync::Arc;

use burrow_protocol::methods::comms::{
    CommsKind, CommsPeersParams, CommsPeersResult, CommsReceipt, CommsSendParams, HandlingMode,
    PeerInfo,
};
use burrow_protocol::{ErrorCode, Map, Value, now_ms};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::kernel::Kernel;
use crate::service::ServiceError;
use crate::service::sessions::{check_comms_name, existing, to_session};
use crate::sessions::{Inbound, Wake};
use crate::store::{PeerRequestRow, Write};

pub mod remote;

/// `[comms]`: the signed kernel channel.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CommsSettings {
    /// This kernel's display name in its binding file (default: the host name).
    pub kernel_name: Option<String>,
    /// Envelopes older or newer than this are refused as `stale`, ms.
    pub freshness_ms: u64,
    /// Longest envelope line, bytes.
    pub max_envelope_bytes: usize,
    /// Deadline of a send to another kernel (connect, write, signed acknowledgement), ms.
    pub send_timeout_ms: u64,
    /// How long another kernel's list of peers is trusted before it is asked again, ms.
    pub directory_ttl_ms: u64,
}

impl Default for CommsSettings {
    fn default() -> Self {
        Self {
            kernel_name: None,
            freshness_ms: 60_000,
            max_envelope_bytes: 64 * 1024,
            send_timeout_ms: 5_000,
            directory_ttl_ms: 10_000,
        }
    }
}

impl CommsSettings {
    /// Checks the bounds.
    pub fn validate(&self) -> Result<(), String> {
        if self.freshness_ms == 0 || self.send_timeout_ms == 0 || self.max_envelope_bytes < 1024 {
            return Err("[comms]: freshness_ms and send_timeout_ms must be positive, max_envelope_bytes at least 1024".into());
        }
        Ok(())
    }
}

/// A comms message on its way to a session of this kernel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Letter {
    /// The sending session (peer id).
    pub from: String,
    /// Its display name.
    pub from_name: String,
    /// Its kernel, when it is another one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_kernel: Option<String>,
    /// The receiving session (peer id).
    pub to: String,
    /// What it is.
    pub kind: CommsKind,
    /// The text.
    pub body: String,
    /// Queue or steer.
    pub handling_mode: HandlingMode,
    /// A request's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The request a response answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<String>,
}

/// What the receiving kernel says it did with a letter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivered {
    /// The stored message.
    pub message_id: String,
    /// The run that will answer it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Whether it waits behind earlier work.
    pub queued: bool,
}

/// A typed comms error: `code`, and `data.reason` a stable snake_case word.
pub fn refused(
    code: ErrorCode,
    reason: &str,
    message: impl Into<String>,
    extra: Value,
) -> ServiceError {
    ServiceError::Refused { code, reason: reason.to_owned(), message: message.into(), extra }
}

/// The body's text: a string as it is, anything else as its JSON text.
fn body_text(body: &Value) -> String {
    match body {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `comms/send`.
pub async fn send(
    kernel: &Arc<Kernel>,
    caller: &str,
    p: CommsSendParams,
) -> Result<CommsReceipt, ServiceError> {
    let sender = existing(kernel, &p.session_id).await?;
    let mode = p.handling_mode.unwrap_or_default();
    let body = body_text(&p.body);
    if p.kind == CommsKind::Input {
        if p.to.as_ref().is_some_and(|to| *to != sender.key) {
            return Err(ServiceError::invalid(
                "to",
                "input goes to the session itself: leave `to` out",
            ));
        }
        if body.trim().is_empty() {
            return Err(ServiceError::invalid("body", "the input is empty"));
        }
        let mut item = Inbound::new(body, None, caller.to_owned(), Wake::Always);
        item.mode = mode;
        item.must_exist = true;
        let acked = to_session(kernel, &sender.key, item).await?;
        return Ok(CommsReceipt {
            status: "accepted".into(),
            message_id: acked.dispatch_id,
            kind: p.kind,
            to: sender.key,
            handling_mode: mode,
            request_id: None,
            in_reply_to: None,
            run_id: acked.run_id,
            queued: acked.queued,
            remote_kernel: None,
        });
    }
    let Some(from_name) = sender.comms_name.clone() else {
        return Err(refused(
            ErrorCode::Forbidden,
            "not_a_peer",
            format!("session {:?} has no comms_name, so it cannot message peers", sender.key),
            Value::Null,
        ));
    };
    let to = p.to.clone().ok_or_else(|| {
        ServiceError::invalid(
            "to",
            format!("{} needs `to`: a peer id from comms/peers", p.kind.as_str()),
        )
    })?;
    if to == sender.key {
        return Err(refused(
            ErrorCode::InvalidParams,
            "self_addressed",
            "a session cannot message itself as a peer; use kind \"input\"",
            Value::Null,
        ));
    }
    let target = resolve(kernel, &to).await?;
    let target_kernel = match &target {
        Target::Local => None,
        Target::Remote(peer) => Some(peer.kernel_id.clone()),
    };
    let mut claimed = None;
    let (request_id, in_reply_to) = match p.kind {
        CommsKind::PeerRequest => (Some(uuid::Uuid::now_v7().to_string()), None),
        CommsKind::PeerResponse => {
            let id = p.in_reply_to.clone().ok_or_else(|| {
                ServiceError::invalid(
                    "in_reply_to",
                    "a peer_response names the request_id it answers",
                )
            })?;
            claimed = Some(claim(kernel, &id)?);
            open_request(kernel, &id, &to, &sender.key, target_kernel.as_deref()).await?;
            (None, Some(id))
        }
        _ => {
            if p.in_reply_to.is_some() {
                return Err(ServiceError::invalid(
                    "in_reply_to",
                    "only a peer_response answers a request",
                ));
            }
            (None, None)
        }
    };
    let letter = Letter {
        from: sender.key.clone(),
        from_name,
        from_kernel: None,
        to: to.clone(),
        kind: p.kind,
        body,
        handling_mode: mode,
        request_id: request_id.clone(),
        in_reply_to: in_reply_to.clone(),
    };
    if let Some(id) = &request_id {
        record_request(kernel, id, &sender.key, &to, None, target_kernel.as_deref()).await?;
    }
    let (delivered, remote_kernel) = match target {
        Target::Local => (deliver(kernel, caller, letter.clone()).await?, None),
        Target::Remote(peer) => {
            let kernel_id = peer.kernel_id.clone();
            (remote::send_letter(kernel, &peer, &letter).await?, Some(kernel_id))
        }
    };
    if let Some(id) = &in_reply_to {
        let at = Some(now_ms());
        record_request(kernel, id, &to, &sender.key, at, target_kernel.as_deref()).await?;
    }
    drop(claimed);
    Ok(CommsReceipt {
        status: "delivered".into(),
        message_id: delivered.message_id,
        kind: p.kind,
        to,
        handling_mode: mode,
        request_id,
        in_reply_to,
        run_id: delivered.run_id,
        queued: delivered.queued,
        remote_kernel,
    })
}

/// Where a peer id leads.
enum Target {
    Local,
    Remote(remote::RemotePeer),
}

/// Resolves a canonical peer id; a display name is refused with the ids it could mean.
async fn resolve(kernel: &Arc<Kernel>, to: &str) -> Result<Target, ServiceError> {
    if let Some(row) = kernel.store().session(to).await?
        && row.comms_name.is_some()
    {
        return Ok(Target::Local);
    }
    let mut remote = remote::peers(kernel, false).await;
    if !remote.peers.iter().any(|p| p.peer_id == to) {
        // Maybe a peer that appeared since we last asked.
        remote = remote::peers(kernel, true).await;
    }
    let claimed_by: Vec<&remote::RemotePeer> =
        remote.peers.iter().filter(|p| p.peer_id == to).collect();
    match claimed_by.as_slice() {
        [peer] => return Ok(Target::Remote((*peer).clone())),
        [] => {}
        several => {
            // Two kernels claim one id: one of them lies; send to neither.
            let kernels: Vec<&str> = several.iter().map(|p| p.kernel_id.as_str()).collect();
            return Err(refused(
                ErrorCode::Conflict,
                "ambiguous_peer",
                format!("peer id {to:?} is claimed by {} kernels", kernels.len()),
                json!({ "to": to, "kernels": kernels }),
            ));
        }
    }
    let mut candidates: Vec<String> = kernel
        .store()
        .peers()
        .await?
        .into_iter()
        .filter(|r| r.comms_name.as_deref() == Some(to))
        .map(|r| r.key)
        .collect();
    candidates.extend(remote.peers.iter().filter(|p| p.name == to).map(|p| p.peer_id.clone()));
    let extra = json!({ "to": to, "candidates": candidates });
    Err(match candidates.len() {
        0 => refused(
            ErrorCode::NotFound,
            "unknown_peer",
            format!("no peer {to:?}; use a peer_id from comms/peers"),
            extra,
        ),
        1 => refused(
            ErrorCode::InvalidParams,
            "display_name",
            format!("{to:?} is a display name; `to` takes the canonical peer id"),
            extra,
        ),
        _ => refused(
            ErrorCode::Conflict,
            "ambiguous_peer",
            format!(
                "{} peers are named {to:?}; `to` takes the canonical peer id",
                candidates.len()
            ),
            extra,
        ),
    })
}

/// The right to deliver the response to request `id`, held until it is recorded: two
/// responses to one request cannot both pass [`open_request`].
struct Claim<'a> {
    kernel: &'a Kernel,
    id: String,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.kernel.comms_claims.remove(&self.id);
    }
}

fn claim<'a>(kernel: &'a Kernel, id: &str) -> Result<Claim<'a>, ServiceError> {
    if kernel.comms_claims.insert(id.to_owned(), ()).is_some() {
        return Err(refused(
            ErrorCode::Conflict,
            "already_answered",
            format!("request {id:?} is being answered"),
            json!({ "in_reply_to": id }),
        ));
    }
    Ok(Claim { kernel, id: id.to_owned() })
}

/// Checks that `id` is an open request from `requester` to `responder`, the remote one of
/// them on `peer_kernel`.
async fn open_request(
    kernel: &Kernel,
    id: &str,
    requester: &str,
    responder: &str,
    peer_kernel: Option<&str>,
) -> Result<PeerRequestRow, ServiceError> {
    let row = kernel.store().peer_request(id).await?;
    let extra = json!({ "in_reply_to": id });
    match row {
        None => Err(refused(
            ErrorCode::NotFound,
            "unknown_request",
            format!("no peer_request {id:?}"),
            extra,
        )),
        Some(r)
            if r.requester != requester
                || r.responder != responder
                || r.peer_kernel.as_deref() != peer_kernel =>
        {
            Err(refused(
                ErrorCode::Forbidden,
                "not_your_request",
                format!("request {id:?} was not sent by {requester:?} to {responder:?}"),
                extra,
            ))
        }
        Some(r) if r.answered_at.is_some() => Err(refused(
            ErrorCode::Conflict,
            "already_answered",
            format!("request {id:?} was answered already"),
            extra,
        )),
        Some(r) => Ok(r),
    }
}

async fn record_request(
    kernel: &Kernel,
    id: &str,
    requester: &str,
    responder: &str,
    answered_at: Option<u64>,
    peer_kernel: Option<&str>,
) -> Result<(), ServiceError> {
    let row = PeerRequestRow {
        id: id.to_owned(),
        requester: requester.to_owned(),
        responder: responder.to_owned(),
        created_at: now_ms(),
        answered_at,
        peer_kernel: peer_kernel.map(str::to_owned),
    };
    kernel.store().write(vec![Write::PeerRequest(row)]).await.map_err(ServiceError::from)
}

/// Stores `letter` in the transcript of its local receiver (and wakes it unless it is a
/// lifecycle notice). Letters from another kernel are checked the same way as local
/// ones: the receiver must be a peer here, and a response must answer an open request.
pub async fn deliver(
    kernel: &Arc<Kernel>,
    caller: &str,
    letter: Letter,
) -> Result<Delivered, ServiceError> {
    let target = kernel.store().session(&letter.to).await?;
    if target.as_ref().is_none_or(|t| t.comms_name.is_none()) {
        return Err(refused(
            ErrorCode::NotFound,
            "unknown_peer",
            format!("no peer {:?} here", letter.to),
            Value::Null,
        ));
    }
    let mut claimed = None;
    if let Some(origin) = letter.from_kernel.as_deref() {
        // Another kernel speaks only for its own sessions.
        let local = kernel.store().session(&letter.from).await?;
        if local.is_some() || check_comms_name(&letter.from_name).is_err() {
            return Err(refused(
                ErrorCode::Forbidden,
                "forged_sender",
                format!("kernel {origin} cannot send as {:?}", letter.from),
                Value::Null,
            ));
        }
        match (letter.kind, &letter.in_reply_to, &letter.request_id) {
            (CommsKind::PeerResponse, Some(id), _) => {
                claimed = Some(claim(kernel, id)?);
                open_request(kernel, id, &letter.to, &letter.from, Some(origin)).await?;
            }
            (CommsKind::PeerRequest, _, Some(id)) => {
                if kernel.store().peer_request(id).await?.is_some() {
                    return Err(refused(
                        ErrorCode::Conflict,
                        "duplicate_request",
                        format!("request {id:?} exists already"),
                        Value::Null,
                    ));
                }
                record_request(kernel, id, &letter.from, &letter.to, None, Some(origin)).await?;
            }
            _ => {}
        }
    }
    let mut comms =
        json!({ "kind": letter.kind, "from": letter.from, "from_name": letter.from_name });
    for (k, v) in [
        ("from_kernel", &letter.from_kernel),
        ("request_id", &letter.request_id),
        ("in_reply_to", &letter.in_reply_to),
    ] {
        if let Some(v) = v {
            comms[k] = v.clone().into();
        }
    }
    let mut meta = Map::new();
    meta.insert("comms".into(), comms.clone());
    let wake = if letter.kind.wakes() { Wake::Always } else { Wake::Never };
    let mut item = Inbound::new(letter.body, Some(meta), caller.to_owned(), wake);
    item.mode = letter.handling_mode;
    item.must_exist = true;
    let acked = to_session(kernel, &letter.to, item).await?;
    if let Some(origin) = letter.from_kernel.as_deref()
        && let (CommsKind::PeerResponse, Some(id)) = (letter.kind, &letter.in_reply_to)
    {
        let at = Some(now_ms());
        record_request(kernel, id, &letter.to, &letter.from, at, Some(origin)).await?;
    }
    drop(claimed);
    let mut ctx = Map::new();
    ctx.insert("sessionKey".into(), letter.to.clone().into());
    comms["to"] = letter.to.into();
    comms["messageId"] = acked.dispatch_id.clone().into();
    kernel.emit("comms_message", comms, ctx);
    Ok(Delivered { message_id: acked.dispatch_id, run_id: acked.run_id, queued: acked.queued })
}

/// The local peers other than `except`.
pub async fn local_peers(
    kernel: &Kernel,
    except: Option<&str>,
) -> Result<Vec<PeerInfo>, ServiceError> {
    Ok(kernel
        .store()
        .peers()
        .await?
        .into_iter()
        .filter(|r| Some(r.key.as_str()) != except)
        .map(|r| PeerInfo {
            name: r.comms_name.unwrap_or_default(),
            peer_id: r.key,
            location: "local".into(),
            kernel_id: None,
            kernel_name: None,
            keep_alive: r.keep_alive,
        })
        .collect())
}

/// `comms/peers`: the peers on this kernel, then those on trusted kernels.
pub async fn peers(
    kernel: &Arc<Kernel>,
    p: CommsPeersParams,
) -> Result<CommsPeersResult, ServiceError> {
    existing(kernel, &p.session_id).await?;
    let mut peers = local_peers(kernel, Some(&p.session_id)).await?;
    let remote = remote::peers(kernel, true).await;
    peers.extend(remote.peers.into_iter().map(|r| PeerInfo {
        peer_id: r.peer_id,
        name: r.name,
        location: "remote".into(),
        kernel_id: Some(r.kernel_id),
        kernel_name: Some(r.kernel_name),
        keep_alive: r.keep_alive,
    }));
    Ok(CommsPeersResult { peers, unreachable: remote.unreachable })
}

#[cfg(test)]
mod tests;
