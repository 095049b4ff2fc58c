//! The request handlers every surface shares: for each method answered by one service
//! call, the call and the projection of its result into the method's shape, keyed by
//! the method's marker ([`Method`]). The IPC adapter ([`crate::methods`]) and the host
//! surfaces ([`crate::host`]) look a method up here by name and run it; what the method
//! table says of it (in-flight slot, answer size, surfaces) decides how its answer is
//! sent.
//!
//! Adding such a method is its protocol type (params, result, table row), its service
//! function, and its line here.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use burrow_protocol::methods::app::{KernelApps, KernelInfo};
use burrow_protocol::methods::comms::{CommsPeers, CommsSend, SessionCreate, SessionExternalEvent};
use burrow_protocol::methods::contract::SessionsPage;
use burrow_protocol::methods::host::{
    CapabilitiesGet, HostCommsPeers, HostCommsSend, HostExternalEvent, HostSessionHistory,
    HostSessionList, HostSessionRead, Initialize, RunTimeline, RunWait, RunWaitResult,
    SessionArchive,
};
use burrow_protocol::methods::operator::{
    KernelCapabilities, KernelConfig, KernelHooks, PeersList, PeersRevoke, PeersTrust,
    SupervisorRestart, SupervisorStart, SupervisorStop, SupervisorTail,
};
use burrow_protocol::methods::session::{
    AgentCancel, AgentWait, AgentWaitResult, SessionFilter, SessionGet, SessionGetResult,
    SessionHistory, SessionHistoryResult, SessionList, SessionListResult,
};
use burrow_protocol::methods::{Ack, Method, parse_params, table, to_value};
use burrow_protocol::{ErrorObject, Value};
use futures_util::future::BoxFuture;

use crate::kernel::Kernel;
use crate::service::sessions::{HistoryQuery, ListQuery, SessionView};
use crate::service::{self, Caller, ServiceError};
use crate::store::RunRow;
use crate::supervisor::Control;

/// A method's handler, its types erased at the wire's edge.
pub type Handler = Box<
    dyn Fn(Arc<Kernel>, Caller, Value) -> BoxFuture<'static, Result<Value, ErrorObject>>
        + Send
        + Sync,
>;

/// `M`'s handler from its typed form.
fn handler<M, F, Fut>(f: F) -> (&'static str, Handler)
where
    M: Method,
    F: Fn(Arc<Kernel>, Caller, M::Params) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<M::Result, ServiceError>> + Send + 'static,
{
    let erased: Handler = Box::new(move |kernel, caller, params| {
        let call = parse_params::<M::Params>(params).map(|p| f(kernel, caller, p));
        Box::pin(async move {
            let outcome = call?.await;
            outcome.map(|r| to_value(&r)).map_err(ErrorObject::from)
        })
    });
    (M::NAME, erased)
}

/// How long a wait for a run's end may be by default.
const WAIT: Duration = Duration::from_secs(30);

fn control(
    control: Control,
) -> impl Fn(
    Arc<Kernel>,
    Caller,
    <SupervisorStart as Method>::Params,
) -> BoxFuture<'static, Result<Ack, ServiceError>>
+ Send
+ Sync {
    move |k, _, p| Box::pin(async move { service::supervisor::control(&k, control, p).await })
}

static HANDLERS: LazyLock<HashMap<&'static str, Handler>> = LazyLock::new(|| {
    use service::{apps, comms, sessions, trust};
    let wait_for = |ms: Option<u64>| ms.map_or(WAIT, Duration::from_millis);
    [
        // The host contract's handshake.
        handler::<Initialize, _, _>(|_, _, _| async move { Ok(service::contract::initialize()) }),
        handler::<CapabilitiesGet, _, _>(|k, _, _| async move {
            Ok(service::contract::capabilities(&k))
        }),
        // What runs.
        handler::<KernelInfo, _, _>(|k, _, _| async move { Ok(apps::info(&k)) }),
        handler::<KernelApps, _, _>(|k, _, _| async move { Ok(apps::apps(&k)) }),
        handler::<KernelCapabilities, _, _>(|k, _, p| async move { Ok(apps::capabilities(&k, p)) }),
        handler::<KernelHooks, _, _>(|k, _, _| async move { Ok(apps::hooks(&k)) }),
        handler::<SupervisorStart, _, _>(control(Control::Start)),
        handler::<SupervisorStop, _, _>(control(Control::Stop)),
        handler::<SupervisorRestart, _, _>(control(Control::Restart)),
        handler::<SupervisorTail, _, _>(
            |k, _, p| async move { service::supervisor::tail(&k, p).await },
        ),
        handler::<KernelConfig, _, _>(|k, c, _| async move { service::config::effective(&k, &c) }),
        handler::<PeersTrust, _, _>(|k, _, p| async move { trust::trust(&k, p).await }),
        handler::<PeersList, _, _>(|k, _, _| async move { trust::list(&k).await }),
        handler::<PeersRevoke, _, _>(|k, _, p| async move { trust::revoke(&k, p).await }),
        // Sessions, in the IPC's shapes.
        handler::<SessionGet, _, _>(|k, _, p| async move {
            Ok(SessionGetResult { session: sessions::get(&k, &p.key).await?.map(|s| s.ipc()) })
        }),
        handler::<SessionList, _, _>(|k, _, p| async move {
            let query = ListQuery {
                filter: p.filter.unwrap_or_default(),
                limit: p.limit,
                offset: p.offset,
            };
            let (views, total) = sessions::list(&k, query).await?;
            Ok(SessionListResult { sessions: views.iter().map(SessionView::ipc).collect(), total })
        }),
        handler::<SessionHistory, _, _>(|k, _, p| async move {
            let query = HistoryQuery { limit: p.limit, before: p.before, must_exist: false };
            let page = sessions::history(&k, &p.key, query).await?;
            Ok(SessionHistoryResult {
                messages: page.messages,
                truncated: page.truncated.then_some(true),
            })
        }),
        handler::<AgentWait, _, _>(move |k, _, p| async move {
            Ok(sessions::wait(&k, &p.run_id, wait_for(p.timeout_ms)).await?.into())
        }),
        handler::<AgentCancel, _, _>(|k, _, p| async move {
            sessions::cancel(&k, &p.run_id).await.map(|()| Ack::OK)
        }),
        // Sessions and comms for apps, in Burrow's shapes (hosts: the contract's, below).
        handler::<SessionCreate, _, _>(|k, c, p| async move { sessions::create(&k, &c, p).await }),
        handler::<SessionExternalEvent, _, _>(|k, c, p| async move {
            sessions::external_event(&k, &c, p).await
        }),
        handler::<CommsSend, _, _>(|k, c, p| async move { comms::send(&k, c.name(), p).await }),
        handler::<CommsPeers, _, _>(|k, _, p| async move { comms::peers(&k, p).await }),
        handler::<HostSessionList, _, _>(|k, _, p| async move {
            let filter = SessionFilter { labels: p.labels, ..Default::default() };
            let limit = Some(sessions::limit(p.limit, 100, 1000)?);
            let (views, _) =
                sessions::list(&k, ListQuery { filter, limit, offset: p.offset }).await?;
            Ok(SessionsPage { sessions: views.into_iter().map(SessionView::summary).collect() })
        }),
        handler::<HostSessionRead, _, _>(|k, _, p| async move {
            sessions::details(&k, &p.session_id).await
        }),
        handler::<HostSessionHistory, _, _>(|k, _, p| async move {
            sessions::history_from(&k, &p.session_id, p.offset, p.limit).await
        }),
        handler::<HostCommsSend, _, _>(|k, c, p| async move {
            crate::host::comms::send(&k, &c, p).await
        }),
        handler::<HostCommsPeers, _, _>(
            |k, _, p| async move { crate::host::comms::peers(&k, p).await },
        ),
        handler::<HostExternalEvent, _, _>(|k, c, p| async move {
            crate::host::comms::external_event(&k, &c, p).await
        }),
        handler::<SessionArchive, _, _>(|k, _, p| async move {
            sessions::archive(&k, &p.session_id).await?;
            Ok(serde_json::json!({ "archived": true }))
        }),
        handler::<RunWait, _, _>(move |k, _, p| async move {
            Ok(sessions::wait(&k, &p.run_id, wait_for(p.timeout_ms)).await?.into())
        }),
        handler::<RunTimeline, _, _>(|k, _, p| async move { k.timelines.get(p) }),
    ]
    .into_iter()
    .collect()
});

impl From<RunRow> for AgentWaitResult {
    fn from(run: RunRow) -> Self {
        AgentWaitResult { run_id: run.id, status: run.status, output: run.output, error: run.error }
    }
}

impl From<RunRow> for RunWaitResult {
    fn from(run: RunRow) -> Self {
        RunWaitResult { run_id: run.id, status: run.status, output: run.output, error: run.error }
    }
}

/// The handler of the method named `name` on the IPC socket.
pub fn by_ipc_name(name: &str) -> Option<&'static Handler> {
    HANDLERS.get(name)
}

/// The handler of the method named `name` on the host surfaces (a host-only method's
/// own name, or the host name of one apps may call too), with its table row.
pub fn by_host_name(name: &str) -> Option<(&'static Handler, &'static table::MethodInfo)> {
    let row = table::by_host_name(name)?;
    HANDLERS.get(row.ipc.unwrap_or(name)).map(|h| (h, row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_handler_is_a_method_of_the_table_on_its_surfaces() {
        for name in HANDLERS.keys() {
            let row = table::by_ipc_name(name).or_else(|| table::by_host_name(name));
            let row = row.unwrap_or_else(|| panic!("{name} is not in the method table"));
            assert_eq!(row.direction, table::Direction::ToKernel, "{name}");
        }
        // Every host method of the table has a handler: the host surfaces answer
        // nothing else (but an app's gateway methods).
        for row in table::METHODS.iter().filter(|m| m.host.is_some() && m.to_kernel()) {
            let host = row.host.unwrap_or_default();
            assert!(
                by_host_name(host).is_some()
                    || host == "rpc/authenticate"
                    || crate::host::LINKED.contains(&host),
                "{host} has no handler"
            );
        }
        // The host contract's `session/create` is a turn, not the IPC's `session.create`.
        assert!(by_ipc_name("session.create").is_some());
        assert!(by_host_name("session/create").is_none());
        assert!(by_ipc_name("session/create").is_none());
    }

    #[tokio::test]
    async fn a_handler_parses_its_params_and_maps_its_errors() {
        let f = crate::service::testing::fixture().await;
        let (read, _) = by_host_name("session/read").unwrap();
        let bad = read(f.kernel.clone(), Caller::new("t"), serde_json::json!({"nope": 1})).await;
        assert_eq!(bad.unwrap_err().code, burrow_protocol::ErrorCode::InvalidParams);
        let missing =
            read(f.kernel.clone(), Caller::new("t"), serde_json::json!({"session_id": "s"})).await;
        let e = missing.unwrap_err();
        assert_eq!(
            (e.code, e.data.unwrap()["reason"].clone()),
            (burrow_protocol::ErrorCode::NotFound, serde_json::json!("unknown_session"))
        );
        let info = by_ipc_name("kernel.info").unwrap();
        let answer = info(f.kernel.clone(), Caller::new("t"), serde_json::json!({})).await.unwrap();
        assert_eq!(answer["version"], crate::VERSION);
        // Operator methods are the host surfaces' too, under the same name and handler.
        let (info, row) = by_host_name("kernel.info").unwrap();
        assert_eq!(row.ipc, Some("kernel.info"));
        let answer = info(f.kernel.clone(), Caller::new("host:http"), serde_json::json!({}));
        assert_eq!(answer.await.unwrap()["version"], crate::VERSION);
    }
}
