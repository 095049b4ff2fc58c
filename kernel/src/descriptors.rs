//! The kernel's file descriptors. At start [`raise_limit`] lifts the soft `RLIMIT_NOFILE`
//! to the hard one; [`host_budget`] then sets aside what the kernel itself needs — the
//! app socket's connections (`ipc.max_connections`), managed apps' pipes and log files,
//! the store, listeners, the runtime, the kernel channel — and splits the rest between the
//! JSON-RPC and HTTP surfaces. Each surface's connection cap is clamped to its share
//! ([`clamp_cap`]), so no number of host connections can starve the app socket or the
//! store of descriptors.

/// Descriptors kept for the kernel's own use whatever the configuration: the store
/// (SQLite, its WAL and shared memory, the journal), the listeners, the runtime (epoll,
/// event and timer descriptors), the config watcher, standard streams, the kernel channel
/// (64 incoming connections and the kernel's own dials), app connections being refused.
pub const RESERVED: u64 = 256;

/// Descriptors per managed app: its stdout and stderr pipes, its log file, and one spare
/// (a log file being rotated). Its socket connection counts in `ipc.max_connections`.
pub const PER_MANAGED_APP: u64 = 4;

/// Descriptors each host surface may hold for refusals being written (connections over
/// its cap, answered and closed); part of the surface's share.
pub const MAX_REFUSING: usize = 16;

/// The descriptor limits in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    /// The soft limit, which `open`/`accept` run into.
    pub soft: u64,
    /// The hard limit, the most the soft one may be raised to.
    pub hard: u64,
}

/// Raises the soft descriptor limit to the hard one and logs both; returns the limits now
/// in force (`None` where the platform has none).
pub fn raise_limit() -> Option<NofileLimit> {
    #[cfg(unix)]
    {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
            Ok(limits) => limits,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the descriptor limit");
                return None;
            }
        };
        let mut now = NofileLimit { soft, hard };
        if soft < hard {
            match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                Ok(()) => now.soft = hard,
                Err(e) => {
                    tracing::warn!(error = %e, soft, hard, "cannot raise the descriptor limit")
                }
            }
        }
        tracing::info!(
            soft_before = soft,
            soft = now.soft,
            hard,
            "descriptor limit (RLIMIT_NOFILE)"
        );
        Some(now)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The soft descriptor limit in force, if the platform has one.
pub fn soft_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .ok()
            .map(|(soft, _)| soft)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Descriptors each host surface may hold (its connections and the refusals it is
/// writing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostBudget {
    /// JSON-RPC over TCP.
    pub rpc: usize,
    /// REST.
    pub http: usize,
}

/// The host surfaces' share of `soft` descriptors once [`RESERVED`], `app_connections`
/// (the app socket's cap) and [`PER_MANAGED_APP`] for each of `managed_apps` are set
/// aside: half each for JSON-RPC and HTTP.
pub fn host_budget(soft: u64, app_connections: usize, managed_apps: usize) -> HostBudget {
    let apps = u64::try_from(app_connections).unwrap_or(u64::MAX);
    let managed = u64::try_from(managed_apps).unwrap_or(u64::MAX);
    let reserved =
        RESERVED.saturating_add(apps).saturating_add(PER_MANAGED_APP.saturating_mul(managed));
    let left = soft.saturating_sub(reserved);
    let rpc = left / 2;
    let to_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    HostBudget { rpc: to_usize(rpc), http: to_usize(left - rpc) }
}

/// The connection cap `surface` runs with: `configured`, clamped so that it and
/// `refusing` refusals in progress fit in `budget` (at least 1); logs when clamped.
pub fn clamp_cap(surface: &str, configured: usize, budget: usize, refusing: usize) -> usize {
    let allowed = budget.saturating_sub(refusing).max(1);
    if configured > allowed {
        tracing::warn!(
            surface,
            configured,
            allowed,
            "connection cap clamped to what the descriptor limit leaves for host surfaces"
        );
        allowed
    } else {
        configured
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_surfaces_share_what_the_kernel_does_not_keep() {
        // 1024 - 256 reserved - 512 app connections - 4 * 3 managed apps = 244.
        assert_eq!(host_budget(1024, 512, 3), HostBudget { rpc: 122, http: 122 });
        assert_eq!(host_budget(1025, 512, 3), HostBudget { rpc: 122, http: 123 });
        // Nothing left: nothing for hosts, never an underflow.
        assert_eq!(host_budget(256, 512, 3), HostBudget { rpc: 0, http: 0 });
        assert_eq!(host_budget(u64::MAX, usize::MAX, usize::MAX), HostBudget { rpc: 0, http: 0 });
        // No limit to speak of: the configured caps stand.
        let unlimited = host_budget(u64::MAX, 512, 3);
        assert!(unlimited.rpc > 1 << 40 && unlimited.http > 1 << 40);
    }

    #[test]
    fn a_cap_is_clamped_to_its_budget_less_refusals_and_never_to_zero() {
        assert_eq!(clamp_cap("rpc", 256, 10_000, 16), 256);
        assert_eq!(clamp_cap("rpc", 256, 122, 16), 106);
        assert_eq!(clamp_cap("http", 512, 0, 16), 1);
    }

    #[cfg(unix)]
    #[test]
    fn raising_leaves_the_soft_limit_at_the_hard_one() {
        let now = raise_limit().expect("unix has descriptor limits");
        assert_eq!(now.soft, now.hard);
        assert_eq!(soft_limit(), Some(now.soft));
    }
}
