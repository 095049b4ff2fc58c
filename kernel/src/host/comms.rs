//! Comms and external events in the host contract's shapes, over the same services as
//! the IPC's `comms.send`, `comms.peers` and `session.externalEvent` (which keep Burrow's
//! own shapes, for apps).
//!
//! `comms/send` takes the contract's kinds: `input`, `peer_message`, `peer_request`
//! (`intent` and `params`, sent as the JSON `{intent, params}`), `peer_response`
//! (`in_reply_to` the request's `request_id`, which is also its `interaction_id`;
//! `status` and `result`: a completed text result is sent as that text, anything else as
//! the JSON `{status, result}`) and `peer_lifecycle` (`mob.peer_added`,
//! `mob.peer_retired` / `mob.peer_unwired`). It answers the contract's receipt, with no
//! other fields: `input_accepted {interaction_id, stream_reserved}`, `peer_message_sent`,
//! `peer_request_sent {interaction_id, request_id, stream_reserved}`,
//! `peer_response_sent {in_reply_to}`, `peer_lifecycle_sent`, each with `envelope_id`
//! (the stored message's id) and `delivery`: `{durably_resolved: {outcome: "accepted"}}`
//! for a peer here (stored in its transcript), `"acked"` for one on a trusted kernel.

use std::sync::Arc;

use burrow_protocol::Value;
use burrow_protocol::methods::comms::{
    CommsKind, CommsPeersParams, CommsReceipt, CommsSendParams, ExternalEventParams as Burrows,
};
use burrow_protocol::methods::contract::{ExternalEventParams, SendParams};
use burrow_protocol::methods::host::SessionRef;
use serde_json::json;

use crate::kernel::Kernel;
use crate::service::{Caller, ServiceError, comms, sessions};

/// `comms/send`.
pub async fn send(
    kernel: &Arc<Kernel>,
    caller: &Caller,
    p: SendParams,
) -> Result<Value, ServiceError> {
    let (kind, body) = match p.kind.as_str() {
        "input" => (CommsKind::Input, p.body),
        "peer_message" => (CommsKind::PeerMessage, p.body),
        "peer_request" => {
            let body = match p.intent {
                Some(intent) => Some(
                    json!({ "intent": intent, "params": p.params.unwrap_or_else(|| json!({})) }),
                ),
                None => p.body,
            };
            (CommsKind::PeerRequest, body)
        }
        "peer_response" => {
            let body = match (p.status.as_deref(), p.result) {
                (None | Some("completed"), Some(Value::String(text))) => Some(Value::String(text)),
                (None, None) => p.body,
                (status, result) => Some(json!({ "status": status, "result": result })),
            };
            (CommsKind::PeerResponse, body)
        }
        "peer_lifecycle" => {
            let kind = match p.lifecycle_kind.as_deref() {
                Some("mob.peer_added") => CommsKind::PeerAdded,
                Some("mob.peer_retired" | "mob.peer_unwired") => CommsKind::PeerRetired,
                other => {
                    let why = format!(
                        "Burrow records mob.peer_added and mob.peer_retired, not {other:?}"
                    );
                    return Err(ServiceError::invalid("lifecycle_kind", why));
                }
            };
            (kind, p.params.or(p.body))
        }
        other => {
            let why = format!(
                "kind is input, peer_message, peer_request, peer_response or peer_lifecycle, not {other:?}"
            );
            return Err(ServiceError::invalid("kind", why));
        }
    };
    let params = CommsSendParams {
        session_id: p.session_id,
        kind,
        to: p.to,
        body: body.unwrap_or(Value::Null),
        handling_mode: p.handling_mode,
        in_reply_to: p.in_reply_to,
    };
    Ok(receipt(comms::send(kernel, caller.name(), params).await?))
}

/// The contract's receipt of what Burrow did.
fn receipt(r: CommsReceipt) -> Value {
    let delivery = match r.remote_kernel {
        Some(_) => json!("acked"),
        None => json!({ "durably_resolved": { "outcome": "accepted" } }),
    };
    let envelope = r.message_id;
    match r.kind {
        CommsKind::Input => {
            json!({ "kind": "input_accepted", "interaction_id": envelope, "stream_reserved": false })
        }
        CommsKind::PeerMessage => {
            json!({ "kind": "peer_message_sent", "envelope_id": envelope, "delivery": delivery })
        }
        CommsKind::PeerAdded | CommsKind::PeerRetired => {
            json!({ "kind": "peer_lifecycle_sent", "envelope_id": envelope, "delivery": delivery })
        }
        CommsKind::PeerRequest => {
            let request = r.request_id.unwrap_or_default();
            json!({
                "kind": "peer_request_sent", "envelope_id": envelope, "interaction_id": request,
                "request_id": request, "stream_reserved": false, "delivery": delivery,
            })
        }
        CommsKind::PeerResponse => json!({
            "kind": "peer_response_sent", "envelope_id": envelope,
            "in_reply_to": r.in_reply_to.unwrap_or_default(), "delivery": delivery,
        }),
    }
}

/// `comms/peers`: the peers session `p.session_id` sees, as the contract's directory
/// entries (a peer here is `inproc`, one on a trusted kernel `trusted`, reached over
/// `tcp` at its kernel).
pub async fn peers(kernel: &Arc<Kernel>, p: SessionRef) -> Result<Value, ServiceError> {
    let found = comms::peers(kernel, CommsPeersParams { session_id: p.session_id }).await?;
    let entries: Vec<Value> = found
        .peers
        .into_iter()
        .map(|peer| {
            let here = peer.location == "local";
            let (transport, endpoint, source) = match here {
                true => ("inproc", peer.peer_id.clone(), "inproc"),
                false => ("tcp", peer.kernel_name.clone().unwrap_or_default(), "trusted"),
            };
            json!({
                "peer_id": peer.peer_id, "name": peer.name,
                "address": { "transport": transport, "endpoint": endpoint },
                "source": source,
                "sendable_kinds": ["peer_message", "peer_request", "peer_response"],
                "capabilities": {}, "meta": { "keep_alive": peer.keep_alive, "kernel_id": peer.kernel_id },
            })
        })
        .collect();
    Ok(json!({ "peers": entries }))
}

/// `session/external_event`: stored durably, then it wakes the session; answers
/// `{outcome_type: "accepted", input_id}` (the stored event's id), or for a repeat of
/// its `idempotency_key` `{outcome_type: "deduplicated", existing_id}`.
pub async fn external_event(
    kernel: &Arc<Kernel>,
    caller: &Caller,
    p: ExternalEventParams,
) -> Result<Value, ServiceError> {
    let params = Burrows {
        session_id: p.session_id,
        kind: p.kind,
        event_type: p.event_type,
        payload: p.payload,
        idempotency_key: p.idempotency_key,
    };
    let receipt = sessions::external_event(kernel, caller, params).await?;
    Ok(match receipt.status.as_str() {
        "deduplicated" => {
            json!({ "outcome_type": "deduplicated", "existing_id": receipt.event_id })
        }
        _ => json!({ "outcome_type": "accepted", "input_id": receipt.event_id }),
    })
}
