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
//! Its errors carry the contract's `comms/send` error data ([`contract_error`]).

use std::sync::Arc;

use burrow_protocol::methods::comms::{
    CommsKind, CommsPeersParams, CommsReceipt, CommsSendParams, ExternalEventParams as Burrows,
};
use burrow_protocol::methods::contract::{ExternalEventParams, SendParams};
use burrow_protocol::methods::host::SessionRef;
use burrow_protocol::{ErrorCode, ErrorObject, Value};
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
    let to = params.to.clone();
    let sent = comms::send(kernel, caller.name(), params).await;
    Ok(receipt(sent.map_err(|e| contract_error(e, to.as_deref()))?))
}

/// A `comms/send` error as the contract's: `data.code` one of its `comms/send` codes
/// (with `message`, and `peer` for those about a peer), Burrow's other `data` kept. Where
/// the contract has a `reason` of its own (`peer_unreachable`, `peer_admission_dropped`)
/// it takes `data.reason`, and Burrow's goes to `data.burrow_reason`. An unknown session
/// stays `SESSION_NOT_FOUND`.
fn contract_error(e: ServiceError, to: Option<&str>) -> ServiceError {
    let mut err = ErrorObject::from(e);
    let data = err.data.as_ref();
    let reason = data.and_then(|d| d.get("reason")).and_then(Value::as_str).unwrap_or_default();
    let about_peer = |code: &str| json!({ "code": code, "peer": to.unwrap_or_default() });
    let mut fields = match reason {
        "unknown_session" => return ServiceError::Passed(err),
        "unknown_peer" | "display_name" | "ambiguous_peer" | "misaddressed" => {
            about_peer("peer_not_found_or_not_trusted")
        }
        "peer_unreachable" | "no_ack" => {
            let mut f = about_peer("peer_unreachable");
            let why = if reason == "no_ack" { "offline_or_no_ack" } else { "transport_error" };
            f["reason"] = why.into();
            f["details"] = err.message.clone().into();
            f
        }
        "untrusted_sender" | "invalid_signature" | "forged_sender" | "inbox_full" | "busy" => {
            let mut f = about_peer("peer_admission_dropped");
            let why = if matches!(reason, "inbox_full" | "busy") {
                "inbox_full"
            } else {
                "untrusted_sender"
            };
            f["reason"] = why.into();
            f
        }
        "not_a_peer" | "self_addressed" | "unknown_request" | "not_your_request"
        | "already_answered" => json!({ "code": "invalid_command" }),
        _ if err.code == ErrorCode::InvalidParams => json!({ "code": "invalid_command" }),
        _ => json!({ "code": "send_failed" }),
    };
    fields["message"] = err.message.clone().into();
    let mut data = match err.data.take() {
        Some(Value::Object(map)) => map,
        _ => Default::default(),
    };
    if fields.get("reason").is_some()
        && let Some(burrow) = data.remove("reason")
    {
        data.insert("burrow_reason".into(), burrow);
    }
    if let Value::Object(fields) = fields {
        data.extend(fields);
    }
    err.data = Some(Value::Object(data));
    ServiceError::Passed(err)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::comms::refused;

    fn data(e: ServiceError) -> Value {
        let ServiceError::Passed(err) = e else { panic!("not passed on: {e:?}") };
        crate::surface::RpcError::from(&err).data
    }

    #[test]
    fn comms_errors_carry_the_contracts_error_data() {
        let unknown = refused(ErrorCode::NotFound, "unknown_peer", "no peer bob", Value::Null);
        let d = data(contract_error(unknown, Some("bob")));
        assert_eq!(d["code"], "peer_not_found_or_not_trusted", "{d}");
        assert_eq!((d["peer"].as_str(), d["message"].as_str()), (Some("bob"), Some("no peer bob")));
        assert_eq!(
            d["reason"], "unknown_peer",
            "Burrow's reason stays where the contract has none"
        );

        let extra = json!({ "kernel_id": "k2" });
        let late = refused(ErrorCode::Timeout, "no_ack", "no ack in time", extra.clone());
        let d = data(contract_error(late, Some("bob")));
        assert_eq!(
            (d["code"].as_str(), d["reason"].as_str()),
            (Some("peer_unreachable"), Some("offline_or_no_ack"))
        );
        assert_eq!(
            (d["burrow_reason"].as_str(), d["kernel_id"].as_str()),
            (Some("no_ack"), Some("k2"))
        );
        let down = refused(ErrorCode::ConnectionClosed, "peer_unreachable", "down", Value::Null);
        assert_eq!(data(contract_error(down, Some("bob")))["reason"], "transport_error");

        let full = refused(ErrorCode::UnknownError, "inbox_full", "full", extra);
        let d = data(contract_error(full, Some("bob")));
        assert_eq!(
            (d["code"].as_str(), d["reason"].as_str()),
            (Some("peer_admission_dropped"), Some("inbox_full"))
        );
        let untrusted = refused(ErrorCode::Forbidden, "untrusted_sender", "no", Value::Null);
        assert_eq!(data(contract_error(untrusted, Some("bob")))["reason"], "untrusted_sender");

        let mine = refused(ErrorCode::Forbidden, "not_your_request", "not yours", Value::Null);
        let d = data(contract_error(mine, Some("bob")));
        assert_eq!(
            (d["code"].as_str(), d["reason"].as_str()),
            (Some("invalid_command"), Some("not_your_request"))
        );
        assert_eq!(
            data(contract_error(ServiceError::invalid("to", "missing"), None))["code"],
            "invalid_command"
        );
        let unreadable = refused(ErrorCode::UnknownError, "bad_ack", "unreadable", Value::Null);
        assert_eq!(data(contract_error(unreadable, Some("bob")))["code"], "send_failed");

        // An unknown session is the contract's SESSION_NOT_FOUND, as for other methods.
        let gone = refused(ErrorCode::NotFound, "unknown_session", "no session", Value::Null);
        assert_eq!(data(contract_error(gone, None))["code"], "SESSION_NOT_FOUND");
        // On the wire the number is the Burrow code's.
        let ServiceError::Passed(err) = contract_error(
            refused(ErrorCode::NotFound, "unknown_peer", "x", Value::Null),
            Some("bob"),
        ) else {
            unreachable!()
        };
        let rpc = crate::surface::RpcError::from(&err);
        assert_eq!(rpc.code, crate::surface::rpc_code(ErrorCode::NotFound));
    }
}
