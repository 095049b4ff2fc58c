//! The trusted kernels, for operators (`burrow kernels`, through the IPC methods
//! `peers.*`, which keep their wire names): trust one by its binding, list
//! them with this kernel's own binding and the refusals counted, revoke one. The trust
//! store writes to disk, so each runs on the blocking pool.

use std::sync::Arc;

use burrow_protocol::methods::Ack;
use burrow_protocol::methods::operator::{
    PeersListResult, PeersRevokeParams, PeersTrustParams, PeersTrustResult,
};

use super::ServiceError;
use crate::kernel::Kernel;
use crate::remote::Binding;
use crate::service::comms::remote::RemoteKernels;

/// The kernel channel, when on.
fn net(kernel: &Kernel) -> Result<Arc<RemoteKernels>, ServiceError> {
    kernel
        .remote
        .get()
        .cloned()
        .ok_or_else(|| ServiceError::NotFound("the kernel channel is off".into()))
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ServiceError::Internal(e.to_string()))?
}

/// `peers.trust`: trusts the kernel of `p.binding` (replacing its binding if trusted).
pub async fn trust(kernel: &Kernel, p: PeersTrustParams) -> Result<PeersTrustResult, ServiceError> {
    let net = net(kernel)?;
    blocking(move || {
        let binding = Binding::from_value(p.binding)
            .map_err(|e| ServiceError::invalid("binding", e.to_string()))?;
        let (kernel_id, name) = (binding.kernel_id.clone(), binding.name.clone());
        let added = net
            .node
            .trust_store()
            .trust(binding)
            .map_err(|e| ServiceError::invalid("binding", e.to_string()))?;
        net.forget(&kernel_id);
        tracing::info!(%kernel_id, %name, "kernel trusted");
        Ok(PeersTrustResult { kernel_id, name, added })
    })
    .await
}

/// `peers.list`.
pub async fn list(kernel: &Kernel) -> Result<PeersListResult, ServiceError> {
    let net = net(kernel)?;
    blocking(move || {
        let value = |b: &Binding| serde_json::to_value(b).unwrap_or_default();
        let own = net.binding.lock().ok().and_then(|b| b.as_ref().map(value));
        let trusted = net.node.trust_store().list().iter().map(value).collect();
        let last_contact = net.node.last_contacts();
        Ok(PeersListResult { own, trusted, refusals: net.node.refusals(), last_contact })
    })
    .await
}

/// `peers.revoke`.
pub async fn revoke(kernel: &Kernel, p: PeersRevokeParams) -> Result<Ack, ServiceError> {
    let net = net(kernel)?;
    blocking(move || {
        let revoked = net
            .node
            .trust_store()
            .revoke(&p.kernel_id)
            .map_err(|e| ServiceError::invalid("kernel_id", e.to_string()))?;
        if !revoked {
            return Err(ServiceError::NotFound(format!("kernel {:?} is not trusted", p.kernel_id)));
        }
        net.forget(&p.kernel_id);
        tracing::info!(kernel_id = %p.kernel_id, "kernel revoked");
        Ok(Ack::OK)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testing::fixture;

    #[tokio::test]
    async fn with_the_kernel_channel_off_each_says_so() {
        let f = fixture().await;
        let off = |e: ServiceError| matches!(e, ServiceError::NotFound(m) if m.contains("kernel channel is off"));
        assert!(off(list(&f.kernel).await.unwrap_err()));
        let revoke_p = PeersRevokeParams { kernel_id: "ab".into() };
        assert!(off(revoke(&f.kernel, revoke_p).await.unwrap_err()));
        let trust_p = PeersTrustParams { binding: serde_json::json!({}) };
        assert!(off(trust(&f.kernel, trust_p).await.unwrap_err()));
    }
}
