//! Peers on other kernels, reached over the signed peer channel.

use std::sync::Arc;

use burrow_protocol::{ErrorCode, ErrorObject, Value};

use super::{Delivered, Letter, refused};
use crate::kernel::Kernel;

/// The peer channel of this kernel: its node (identity, trust store, replay cache) and
/// what it learned of other kernels' peers.
#[derive(Debug)]
pub struct PeerNet {}

/// A peer on a trusted kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct RemotePeer {
    /// Its canonical id (its session id there).
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

/// The peers of every trusted kernel (asked again when `refresh` or the view is old).
pub async fn peers(_kernel: &Arc<Kernel>, _refresh: bool) -> RemoteView {
    RemoteView::default()
}

/// Sends `letter` to `peer`'s kernel and returns what it acknowledged.
pub async fn send_letter(
    _kernel: &Arc<Kernel>,
    peer: &RemotePeer,
    _letter: &Letter,
) -> Result<Delivered, ErrorObject> {
    Err(refused(
        ErrorCode::NotFound,
        "peer_unreachable",
        format!("kernel {} is not reachable", peer.kernel_id),
        Value::Null,
    ))
}
