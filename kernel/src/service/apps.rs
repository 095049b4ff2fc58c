//! What runs: the kernel's health and counts (`kernel.info`), the registered and the
//! managed apps (`kernel.apps`), the granted capabilities (`kernel.capabilities`), and
//! who observes and intercepts what (`kernel.hooks`).

use burrow_protocol::methods::app::{KernelAppsResult, KernelInfoResult, PROTOCOL_VERSION};
use burrow_protocol::methods::capability::CapabilityType;
use burrow_protocol::methods::operator::{
    CapabilitySummary, InterceptorSummary, KernelCapabilitiesParams, KernelCapabilitiesResult,
    KernelHooksResult,
};

use crate::capabilities::fail_mode;
use crate::kernel::Kernel;

/// `kernel.info`.
pub fn info(kernel: &Kernel) -> KernelInfoResult {
    KernelInfoResult {
        version: crate::VERSION.to_owned(),
        protocol_version: PROTOCOL_VERSION.to_owned(),
        started_at: kernel.started_at,
        apps: kernel.apps.len() as u64,
        sessions: kernel.sessions.active() as u64,
        endpoints: kernel.endpoints.read().map(|e| e.clone()).unwrap_or_default(),
        heartbeat_interval_ms: kernel.config().ipc.heartbeat_interval_ms,
    }
}

/// `kernel.apps`: the registered apps by id, and the managed ones.
pub fn apps(kernel: &Kernel) -> KernelAppsResult {
    KernelAppsResult { apps: kernel.apps.summaries(), managed: kernel.managed() }
}

/// `kernel.capabilities`: app by app, in registration order.
pub fn capabilities(kernel: &Kernel, p: KernelCapabilitiesParams) -> KernelCapabilitiesResult {
    let capabilities = kernel
        .caps
        .list(p.kind)
        .iter()
        .map(|c| CapabilitySummary {
            capability_id: c.id.clone(),
            app_id: c.app_id.clone(),
            kind: c.config.kind(),
            config: c.config_value(),
        })
        .collect();
    KernelCapabilitiesResult { capabilities }
}

/// `kernel.hooks`: every subscriber (with its dropped-event count) and interceptor.
pub fn hooks(kernel: &Kernel) -> KernelHooksResult {
    let interceptors = kernel
        .caps
        .list(Some(CapabilityType::Hook))
        .iter()
        .filter_map(|c| {
            let h = c.as_hook()?;
            Some(InterceptorSummary {
                capability_id: c.id.clone(),
                app_id: c.app_id.clone(),
                event: h.event.clone(),
                priority: h.priority.unwrap_or(0),
                timeout_ms: h.timeout_ms,
                fail_mode: fail_mode(h),
            })
        })
        .collect();
    KernelHooksResult { subscribers: kernel.hooks.summaries(), interceptors }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testing::fixture;

    #[tokio::test]
    async fn a_fresh_kernel_reports_itself_and_nothing_registered() {
        let f = fixture().await;
        let info = info(&f.kernel);
        assert_eq!((info.version.as_str(), info.apps), (crate::VERSION, 0));
        assert_eq!(info.protocol_version, PROTOCOL_VERSION);
        let apps = apps(&f.kernel);
        assert!(apps.apps.is_empty() && apps.managed.is_empty());
        assert!(
            capabilities(&f.kernel, KernelCapabilitiesParams::default()).capabilities.is_empty()
        );
        let hooks = hooks(&f.kernel);
        assert!(hooks.subscribers.is_empty() && hooks.interceptors.is_empty());
    }
}
