//! `kernel.info` and `kernel.apps`: allowed before registering, for health checks and the CLI.

use burrow_protocol::methods::app::{KernelAppsResult, KernelInfoResult, PROTOCOL_VERSION};

use crate::app_actor::AppActorState;

/// `kernel.info {}`.
pub fn info(state: &AppActorState) -> KernelInfoResult {
    KernelInfoResult {
        version: crate::VERSION.to_owned(),
        protocol_version: PROTOCOL_VERSION.to_owned(),
        started_at: state.kernel.started_at,
        apps: state.kernel.apps.len() as u64,
        // Sessions arrive with the session runtime; none exist yet.
        sessions: 0,
    }
}

/// `kernel.apps {}`.
pub fn apps(state: &AppActorState) -> KernelAppsResult {
    KernelAppsResult {
        apps: state.kernel.apps.summaries(),
    }
}
