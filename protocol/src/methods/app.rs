//! App lifecycle and kernel introspection (PROTOCOL.md §4): `app.register`,
//! `app.heartbeat`, `app.ready`, `app.shutdown`, `kernel.info`, `kernel.apps`.

use serde::{Deserialize, Serialize};

use super::{Ack, Empty, methods};
use crate::{Manifest, Map};

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: &str = "1.0";

methods! {
    /// Must be the first request of an app.
    AppRegister = "app.register": RegisterParams => RegisterResult;
    /// A sign of life; also any frame counts.
    AppHeartbeat = "app.heartbeat": HeartbeatParams => HeartbeatResult;
    /// The app is ready for traffic.
    AppReady = "app.ready": ReadyParams => Ack;
    /// Graceful leave, in either direction.
    AppShutdown = "app.shutdown": ShutdownParams => Ack;
    /// Health and counts; allowed before registering.
    KernelInfo = "kernel.info": Empty => KernelInfoResult;
    /// The live apps; allowed before registering (Burrow addition, see docs/protocol.md).
    KernelApps = "kernel.apps": Empty => KernelAppsResult;
}

/// Params of `app.register`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterParams {
    /// What the app is and may ask for.
    pub manifest: Manifest,
    /// `"1.0"`-style; the major version must match the kernel's.
    pub protocol_version: String,
    /// A token from an earlier registration, to take over a live id or resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Result of `app.register`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterResult {
    /// The registered id.
    pub app_id: String,
    /// Signed by the kernel; names the app id; survives a kernel restart.
    pub token: String,
    /// The kernel's protocol version.
    pub protocol_version: String,
    /// Send something at least this often.
    pub heartbeat_interval_ms: u64,
    /// Silence this long and the app is treated as dead.
    pub heartbeat_timeout_ms: u64,
}

/// Params of `app.heartbeat`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatParams {
    /// Free-form status the app wants to report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Map>,
}

/// Result of `app.heartbeat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatResult {
    /// Always true.
    pub ok: bool,
    /// The kernel's clock, ms since the epoch.
    pub server_time: u64,
}

/// Params of `app.ready`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReadyParams {
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map>,
}

/// Params of `app.shutdown` (either direction).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShutdownParams {
    /// Why, for humans and logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How long in-flight work may take to finish, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

/// Result of `kernel.info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KernelInfoResult {
    /// The kernel's version.
    pub version: String,
    /// The protocol version it speaks.
    pub protocol_version: String,
    /// When it started, ms since the epoch.
    pub started_at: u64,
    /// How many apps are registered.
    pub apps: u64,
    /// How many sessions are active.
    pub sessions: u64,
    /// Addresses the kernel listens on besides its socket, by name (`rpc_tcp`, `http`,
    /// `comms`): a Burrow addition, absent when there are none.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub endpoints: std::collections::BTreeMap<String, String>,
    /// How often a connection should send something (`app.heartbeat` will do, registered
    /// or not) to stay connected: a Burrow addition, 0 when not reported.
    #[serde(default)]
    pub heartbeat_interval_ms: u64,
}

/// Result of `kernel.apps`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelAppsResult {
    /// One entry per registered app, ordered by id.
    pub apps: Vec<AppSummary>,
    /// The apps the kernel runs (`[apps.<id>.run]`), with their process state.
    #[serde(default)]
    pub managed: Vec<ManagedSummary>,
}

/// Where a managed app stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProcState {
    /// Started, not registered yet.
    Starting,
    /// Registered with the kernel.
    Running,
    /// Waiting out its backoff before the next start.
    Restarting,
    /// Gave up: restart intensity exceeded, or it failed with `restart = "never"`.
    Failed,
    /// Not running, on purpose.
    Stopped,
}

/// One managed app as `kernel.apps` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedSummary {
    /// The app id.
    pub app_id: String,
    /// Where it stands.
    pub state: ProcState,
    /// Its process, while there is one.
    pub pid: Option<u32>,
    /// When the current process started, ms since the epoch.
    pub started_at: Option<u64>,
    /// How many times it was restarted.
    pub restarts: u64,
    /// How the last process ended.
    pub last_exit: Option<String>,
    /// Its restart policy.
    pub restart: RestartPolicy,
    /// The command from the configuration.
    pub command: String,
}

/// When a managed app is started again after it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// After every exit.
    Always,
    /// After a non-zero exit, a signal, or being dropped (heartbeat, start timeout).
    #[default]
    OnFailure,
    /// Never.
    Never,
}

/// One live app as `kernel.apps` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppSummary {
    /// The app id.
    pub app_id: String,
    /// Its manifest version.
    pub version: String,
    /// Lifecycle state.
    pub state: AppState,
    /// When it registered, ms since the epoch.
    pub registered_at: u64,
    /// When the kernel last heard from it, ms since the epoch.
    pub last_seen_at: u64,
}

/// Lifecycle state of a connected app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppState {
    /// Registered, not ready yet.
    Registered,
    /// Receiving traffic.
    Ready,
    /// Shutting down.
    Leaving,
}

impl AppState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AppState::Registered => "registered",
            AppState::Ready => "ready",
            AppState::Leaving => "leaving",
        }
    }
}

/// Whether `version` (e.g. `"1.3"`) has the same major version as [`PROTOCOL_VERSION`].
pub fn protocol_major_matches(version: &str) -> bool {
    let major = |v: &str| v.split('.').next().and_then(|m| m.trim().parse::<u64>().ok());
    major(version).is_some() && major(version) == major(PROTOCOL_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn major_version_check() {
        assert!(protocol_major_matches("1.0"));
        assert!(protocol_major_matches("1.7"));
        assert!(protocol_major_matches("1"));
        assert!(!protocol_major_matches("2.0"));
        assert!(!protocol_major_matches("0.9"));
        assert!(!protocol_major_matches("x"));
        assert!(!protocol_major_matches(""));
    }
}
