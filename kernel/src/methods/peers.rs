//! The trust store, for operators (`burrow peers`): `peers.trust {binding}`,
//! `peers.list {}`, `peers.revoke {kernel_id}`. Allowed before registering, like the
//! supervisor's controls: the socket admits only its owner.

use std::sync::Arc;

use burrow_protocol::methods::parse_params;
use burrow_protocol::methods::table::{PEERS_LIST, PEERS_REVOKE, PEERS_TRUST};
use burrow_protocol::{ErrorCode, ErrorObject, Value};
use serde::Deserialize;
use serde_json::json;

use crate::connection::Responder;
use crate::kernel::Kernel;
use crate::peers::Binding;

/// Whether `method` belongs to this family.
pub fn handles(method: &str) -> bool {
    matches!(method, PEERS_TRUST | PEERS_LIST | PEERS_REVOKE)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustParams {
    binding: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeParams {
    kernel_id: String,
}

/// Routes the family; answered from a task (the trust store writes to disk).
pub fn dispatch(kernel: Arc<Kernel>, method: &str, params: Value, responder: Responder) {
    let method = method.to_owned();
    tokio::spawn(async move {
        let outcome = match tokio::task::spawn_blocking(move || run(&kernel, &method, params)).await
        {
            Ok(outcome) => outcome,
            Err(e) => Err(ErrorObject::new(ErrorCode::InternalError, e.to_string())),
        };
        responder.reply(outcome);
    });
}

fn run(kernel: &Kernel, method: &str, params: Value) -> Result<Value, ErrorObject> {
    let net = kernel
        .peers
        .get()
        .ok_or_else(|| ErrorObject::new(ErrorCode::NotFound, "the peer channel is off"))?;
    let trust = net.node.trust_store();
    let failed =
        |e: crate::peers::TrustError| ErrorObject::new(ErrorCode::InvalidParams, e.to_string());
    match method {
        PEERS_TRUST => {
            let p: TrustParams = parse_params(params)?;
            let binding = Binding::from_value(p.binding)
                .map_err(|e| ErrorObject::invalid_params("binding", e.to_string()))?;
            let (kernel_id, name) = (binding.kernel_id.clone(), binding.name.clone());
            let added = trust.trust(binding).map_err(failed)?;
            net.forget(&kernel_id);
            tracing::info!(%kernel_id, %name, "peer kernel trusted");
            Ok(json!({ "kernel_id": kernel_id, "name": name, "added": added }))
        }
        PEERS_LIST => {
            let own = net.binding.lock().ok().and_then(|b| b.clone());
            Ok(json!({ "self": own, "trusted": trust.list(), "refusals": net.node.refusals() }))
        }
        _ => {
            let p: RevokeParams = parse_params(params)?;
            if !trust.revoke(&p.kernel_id).map_err(failed)? {
                return Err(ErrorObject::new(
                    ErrorCode::NotFound,
                    format!("kernel {:?} is not trusted", p.kernel_id),
                ));
            }
            net.forget(&p.kernel_id);
            tracing::info!(kernel_id = %p.kernel_id, "peer kernel revoked");
            Ok(json!({ "ok": true }))
        }
    }
}
