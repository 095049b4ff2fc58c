//! The method table: every method the kernel answers or sends, on every surface, with
//! the facts the kernel acts on (direction, whether it holds an in-flight slot, whether
//! it is allowed before `app.register`, how large its answer can be, and its name on
//! each surface).
//!
//! The kernel dispatches only names found here (anything else is an app's gateway
//! method or `METHOD_NOT_FOUND`), and the reserved method families an app may not name
//! a gateway method in are derived from it ([`is_reserved_family`]), so the two cannot
//! drift apart.

use super::app::{AppHeartbeat, AppReady, AppRegister, AppShutdown, KernelApps, KernelInfo};
use super::capability::{CapabilityRegister, CapabilityUnregister};
use super::comms::{CommsPeers, CommsSend, HostCall, SessionCreate, SessionExternalEvent};
use super::config::{ConfigGet, ConfigWatch};
use super::hook::{HookEvent, HookResult, HookSubscribe, HookUnsubscribe};
use super::host::{
    Authenticate, CapabilitiesGet, HostCommsPeers, HostCommsSend, HostExternalEvent,
    HostSessionHistory, HostSessionList, HostSessionRead, Initialize, RunTimeline, RunWait,
    SessionArchive, SessionCreateTurn, StreamClose, StreamOpen, ToolExecute, ToolsRegister,
    TurnInterrupt, TurnStart,
};
use super::invoke::{
    ChannelDelta, ChannelSend, ChannelStreamEnd, GatewayInvoke, HttpRequest, ProviderComplete,
    ToolCall, ToolInvoke,
};
use super::operator::{
    KernelCapabilities, KernelConfig, KernelHooks, PeersList, PeersRevoke, PeersTrust,
    SessionEvents, SupervisorLogs, SupervisorRestart, SupervisorStart, SupervisorStop,
    SupervisorTail,
};
use super::session::{
    AgentCancel, AgentQueue, AgentWait, MessageDispatch, SessionGet, SessionHistory, SessionList,
};
use super::{Cancel, Method};

/// Who sends a method's requests (or notifications).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A client (an app or a host) asks the kernel.
    ToKernel,
    /// The kernel asks an app.
    ToApp,
    /// The kernel asks a host, on the JSON-RPC connection the host called it on.
    ToHost,
    /// Either side.
    Both,
}

/// What a method's request gets back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One answer.
    Request,
    /// Chunks, then one answer.
    Stream,
    /// Nothing: a notification.
    Notification,
}

/// How large a method's answer can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerSize {
    /// Bounded by the kernel's own small shapes (acknowledgements, ids, statuses).
    Small,
    /// Up to a whole frame: stored messages, another app's answer. The kernel prepares
    /// only a few such answers per connection at a time (`ipc.max_large_answers`).
    Large,
}

/// One method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodInfo {
    /// Its name on the IPC socket (`None`: host surfaces only).
    pub ipc: Option<&'static str>,
    /// Its name on the host surfaces (JSON-RPC, and the REST routes over them).
    pub host: Option<&'static str>,
    /// Who sends it.
    pub direction: Direction,
    /// What comes back.
    pub shape: Shape,
    /// Answered after its handler returns, so it holds one of the connection's
    /// in-flight slots (`ipc.max_in_flight`).
    pub long_running: bool,
    /// Allowed on an IPC connection before `app.register`.
    pub before_register: bool,
    /// How large its answer can be.
    pub answer: AnswerSize,
    /// Answered without the app's actor (by the connection's reader, or a task): it
    /// needs only the kernel and who calls, not the connection's state.
    pub off_actor: bool,
}

impl MethodInfo {
    const fn ipc(name: &'static str) -> Self {
        MethodInfo {
            ipc: Some(name),
            host: None,
            direction: Direction::ToKernel,
            shape: Shape::Request,
            long_running: false,
            before_register: false,
            answer: AnswerSize::Small,
            off_actor: false,
        }
    }

    const fn host_only(name: &'static str) -> Self {
        MethodInfo { ipc: None, host: Some(name), long_running: true, ..Self::ipc(name) }
    }

    const fn to_host(name: &'static str) -> Self {
        MethodInfo { direction: Direction::ToHost, ..Self::host_only(name) }
    }

    const fn to_app(name: &'static str) -> Self {
        MethodInfo { direction: Direction::ToApp, ..Self::ipc(name) }
    }

    const fn long(self) -> Self {
        MethodInfo { long_running: true, ..self }
    }

    const fn open(self) -> Self {
        MethodInfo { before_register: true, ..self }
    }

    const fn off_actor(self) -> Self {
        MethodInfo { off_actor: true, ..self }
    }

    const fn large(self) -> Self {
        MethodInfo { answer: AnswerSize::Large, ..self }
    }

    const fn stream(self) -> Self {
        MethodInfo { shape: Shape::Stream, long_running: true, ..self }
    }

    const fn notification(self) -> Self {
        MethodInfo { shape: Shape::Notification, ..self }
    }

    /// Also on the host surfaces, under its IPC name (an operator method the dashboard
    /// and scripts call over JSON-RPC).
    const fn on_host(self) -> Self {
        MethodInfo { host: self.ipc, ..self }
    }

    const fn both(self) -> Self {
        MethodInfo { direction: Direction::Both, ..self }
    }

    /// Whether the kernel answers it (a client may send it).
    pub const fn to_kernel(&self) -> bool {
        matches!(self.direction, Direction::ToKernel | Direction::Both)
    }

    /// Its names, on every surface it is on.
    pub fn names(&self) -> impl Iterator<Item = &'static str> {
        self.ipc.into_iter().chain(self.host)
    }
}

/// Every method of every surface.
pub const METHODS: &[MethodInfo] = &[
    // §4 lifecycle and introspection
    MethodInfo::ipc(AppRegister::NAME).open(),
    MethodInfo::ipc(AppHeartbeat::NAME).off_actor().open(),
    MethodInfo::ipc(AppReady::NAME),
    MethodInfo::ipc(AppShutdown::NAME).both().long(),
    MethodInfo::ipc(KernelInfo::NAME).open().on_host(),
    MethodInfo::ipc(KernelApps::NAME).open().on_host(),
    MethodInfo::ipc(KernelCapabilities::NAME).open().long().large().on_host(),
    MethodInfo::ipc(KernelHooks::NAME).open().on_host(),
    MethodInfo::host_only(KernelConfig::NAME).large(),
    MethodInfo::ipc(SupervisorStart::NAME).open().long().on_host(),
    MethodInfo::ipc(SupervisorStop::NAME).open().long().on_host(),
    MethodInfo::ipc(SupervisorRestart::NAME).open().long().on_host(),
    MethodInfo::ipc(SupervisorLogs::NAME).open().stream(),
    MethodInfo::ipc(SupervisorTail::NAME).open().long().large().on_host(),
    MethodInfo::ipc(PeersTrust::NAME).open().long(),
    MethodInfo::ipc(PeersList::NAME).open().long().on_host(),
    MethodInfo::ipc(PeersRevoke::NAME).open().long(),
    // §5 capabilities and routing
    MethodInfo::ipc(CapabilityRegister::NAME),
    MethodInfo::ipc(CapabilityUnregister::NAME),
    MethodInfo::ipc(ToolCall::NAME).long().large().off_actor(),
    MethodInfo::to_app(ToolInvoke::NAME).large(),
    MethodInfo::to_app(ChannelSend::NAME),
    MethodInfo::to_app(GatewayInvoke::NAME).large(),
    MethodInfo::to_app(HttpRequest::NAME).large(),
    MethodInfo::to_app(ProviderComplete::NAME).large(),
    // §6 hooks
    MethodInfo::ipc(HookSubscribe::NAME),
    MethodInfo::ipc(HookUnsubscribe::NAME),
    MethodInfo::ipc(HookResult::NAME),
    MethodInfo::to_app(ChannelDelta::NAME).notification(),
    MethodInfo::to_app(ChannelStreamEnd::NAME).notification(),
    MethodInfo::to_app(HookEvent::NAME).notification(),
    // §7 configuration
    MethodInfo::ipc(ConfigGet::NAME),
    MethodInfo::ipc(ConfigWatch::NAME).stream(),
    // §8 sessions
    MethodInfo::ipc(SessionGet::NAME).long().off_actor(),
    MethodInfo::ipc(SessionList::NAME).long().large().off_actor().on_host(),
    MethodInfo::ipc(SessionHistory::NAME).long().large().off_actor(),
    MethodInfo::ipc(MessageDispatch::NAME).long().off_actor(),
    MethodInfo::ipc(AgentQueue::NAME).long().off_actor(),
    MethodInfo::ipc(AgentWait::NAME).long().off_actor(),
    MethodInfo::ipc(AgentCancel::NAME).long().off_actor(),
    // §9 comms and host methods
    MethodInfo::ipc(SessionCreate::NAME).long(),
    MethodInfo::ipc(CommsSend::NAME).long(),
    MethodInfo::ipc(CommsPeers::NAME).long(),
    MethodInfo::ipc(SessionExternalEvent::NAME).long(),
    MethodInfo::ipc(HostCall::NAME).long().large(),
    MethodInfo::ipc(SessionEvents::NAME).stream(),
    MethodInfo::host_only(Initialize::NAME),
    MethodInfo::host_only(CapabilitiesGet::NAME),
    MethodInfo::host_only(SessionCreateTurn::NAME),
    MethodInfo::host_only(TurnStart::NAME),
    MethodInfo::host_only(TurnInterrupt::NAME),
    MethodInfo::host_only(StreamOpen::NAME),
    MethodInfo::host_only(StreamClose::NAME),
    MethodInfo::host_only(HostSessionList::NAME).large(),
    MethodInfo::host_only(HostSessionRead::NAME),
    MethodInfo::host_only(HostSessionHistory::NAME).large(),
    MethodInfo::host_only(SessionArchive::NAME),
    MethodInfo::host_only(HostCommsSend::NAME),
    MethodInfo::host_only(HostCommsPeers::NAME),
    MethodInfo::host_only(HostExternalEvent::NAME),
    MethodInfo::host_only(ToolsRegister::NAME),
    MethodInfo::to_host(ToolExecute::NAME),
    MethodInfo::host_only(RunWait::NAME),
    MethodInfo::host_only(RunTimeline::NAME),
    MethodInfo::host_only(Authenticate::NAME),
    // §3
    MethodInfo::ipc(Cancel::NAME).both().notification(),
];

/// Families the kernel keeps for itself beyond those of [`METHODS`].
pub const EXTRA_RESERVED_FAMILIES: &[&str] = &["burrow"];

/// The method named `name` on the IPC socket (looked up on every request: hashed).
pub fn by_ipc_name(name: &str) -> Option<&'static MethodInfo> {
    static BY_NAME: std::sync::LazyLock<
        std::collections::HashMap<&'static str, &'static MethodInfo>,
    > = std::sync::LazyLock::new(|| METHODS.iter().filter_map(|m| Some((m.ipc?, m))).collect());
    BY_NAME.get(name).copied()
}

/// The method named `name` on the host surfaces.
pub fn by_host_name(name: &str) -> Option<&'static MethodInfo> {
    static BY_NAME: std::sync::LazyLock<
        std::collections::HashMap<&'static str, &'static MethodInfo>,
    > = std::sync::LazyLock::new(|| METHODS.iter().filter_map(|m| Some((m.host?, m))).collect());
    BY_NAME.get(name).copied()
}

/// A method name's family: what comes before its first `.` or `/` (`peers` for
/// `peers.trust`, `session` for `session/create`, `$` for `$/cancel`).
pub fn family(name: &str) -> &str {
    name.split(['.', '/']).next().unwrap_or(name)
}

/// Whether `family` belongs to the kernel: the family of any method in [`METHODS`], on
/// any surface, or one of [`EXTRA_RESERVED_FAMILIES`]. No app may name a gateway
/// method in it.
pub fn is_reserved_family(name: &str) -> bool {
    EXTRA_RESERVED_FAMILIES.contains(&name)
        || METHODS.iter().flat_map(MethodInfo::names).any(|n| family(n) == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_on_each_surface() {
        let mut ipc = std::collections::HashSet::new();
        let mut host = std::collections::HashSet::new();
        for m in METHODS {
            if let Some(n) = m.ipc {
                assert!(ipc.insert(n), "{n} twice on IPC");
            }
            if let Some(n) = m.host {
                assert!(host.insert(n), "{n} twice on the host surfaces");
            }
            assert!(m.ipc.is_some() || m.host.is_some());
        }
    }

    #[test]
    fn families_come_from_every_surface() {
        for reserved in [
            "app",
            "kernel",
            "capability",
            "hook",
            "config",
            "session",
            "message",
            "agent",
            "tool",
            "channel",
            "gateway",
            "http",
            "provider",
            "comms",
            "burrow",
            "$",
            "peers",
            "supervisor",
            "host",
            "rpc",
            "run",
        ] {
            assert!(is_reserved_family(reserved), "{reserved}");
        }
        for free in ["weather", "files", "sessions", "kernels", ""] {
            assert!(!is_reserved_family(free), "{free}");
        }
        assert_eq!(family("peers.trust"), "peers");
        assert_eq!(family("session/create"), "session");
        assert_eq!(family("$/cancel"), "$");
        assert_eq!(family("plain"), "plain");
    }

    #[test]
    fn streams_and_host_methods_hold_an_in_flight_slot() {
        for m in METHODS {
            if m.shape == Shape::Stream || (m.ipc.is_none() && m.host.is_some()) {
                assert!(m.long_running, "{:?}", m.names().collect::<Vec<_>>());
            }
            if m.direction == Direction::ToApp {
                assert!(!m.before_register && !m.long_running, "{:?}", m.ipc);
            }
            if m.off_actor {
                // Off the actor there is no registration to check against: only a method
                // that needs no caller at all (the heartbeat) may be open too.
                assert!(m.ipc.is_some());
                assert!(!m.before_register || m.ipc == Some(AppHeartbeat::NAME), "{:?}", m.ipc);
            }
        }
        assert_eq!(by_ipc_name("session.history").map(|m| m.answer), Some(AnswerSize::Large));
        // The host contract's `session/create` is a method of its own, not `session.create`.
        assert_eq!(by_host_name("session/create").map(|m| m.ipc), Some(None));
        // Hosts speak the contract; apps keep Burrow's `comms.send`, a method of its own.
        assert_eq!(by_host_name("comms/send").map(|m| m.ipc), Some(None));
        assert!(by_ipc_name("comms.send").is_some_and(|m| m.host.is_none()));
        assert!(by_ipc_name("session/create").is_none());
        // Operator methods are on the host surfaces under their IPC names; streams and
        // what changes trust are not.
        for name in ["kernel.apps", "supervisor.restart", "session.list", "peers.list"] {
            assert_eq!(by_host_name(name).and_then(|m| m.ipc), Some(name));
        }
        for name in ["supervisor.logs", "session.events", "peers.trust", "config.get"] {
            assert!(by_host_name(name).is_none(), "{name}");
        }
        assert_eq!(by_host_name("kernel.config").map(|m| m.ipc), Some(None));
    }
}
