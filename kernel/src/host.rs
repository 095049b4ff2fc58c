//! The host surfaces' adapter: each host method parses its params, calls the service
//! layer ([`crate::service`]) and answers in the host shapes, behind every surface: JSON-RPC over TCP and
//! stdio, REST, and IPC (`session.create`, `comms.send`, `comms.peers`,
//! `session.externalEvent`, `host.call`). [`call`] routes a JSON-RPC method name;
//! [`KernelHost`] is the kernel as a [`surface::Host`].
//!
//! | method | does |
//! |---|---|
//! | `session/create` | a new session (UUID v7 id) whose first turn is the prompt; waits for it unless `wait: false` |
//! | `session/list`, `session/read`, `session/history` | sessions and transcripts in the host shapes |
//! | `session/external_event` | a durable event in the session's transcript, then a turn |
//! | `comms/send`, `comms/peers` | [`crate::service::comms`] |
//! | `run/wait` | a run's status, waiting up to `timeout_ms` for its end |
//! | anything else | a gateway method an app registered, else `METHOD_NOT_FOUND` |

use std::sync::Arc;
use std::time::Duration;

use burrow_protocol::methods::Method;
use burrow_protocol::methods::capability::CapabilityType;
use burrow_protocol::methods::comms::HostMessage;
use burrow_protocol::methods::host::{
    HostHistory, HostHistoryParams, HostListParams, HostSessionHistory, HostSessionList,
    HostSessionRead, HostSessions, RunWait, RunWaitParams, RunWaitResult, SessionRef,
};
use burrow_protocol::methods::invoke::{HttpRequestParams, HttpResponse};
use burrow_protocol::methods::session::SessionFilter;
use burrow_protocol::methods::table::host;
use burrow_protocol::methods::{parse_params, to_value};
use burrow_protocol::{ErrorCode, ErrorObject, Value};
use futures_util::stream::BoxStream;
use serde_json::json;

use crate::kernel::Kernel;
use crate::service::Caller;
use crate::service::sessions::{self, HistoryQuery, ListQuery, SessionView};
use crate::surface::{BoxFuture, Host};

pub use crate::config::host::HostSettings;

/// Runs the host method `method` for `caller` (an app id, or `host:rpc` / `host:http`).
pub async fn call(
    kernel: &Arc<Kernel>,
    caller: &str,
    method: &str,
    params: Value,
) -> Result<Value, ErrorObject> {
    let as_caller = Caller::new(caller);
    let caller = &as_caller;
    Ok(match method {
        host::SESSION_CREATE => {
            to_value(&sessions::create(kernel, caller, parse_params(params)?).await?)
        }
        HostSessionList::NAME => {
            let p: HostListParams = parse_params(params)?;
            let filter = SessionFilter { agent_id: p.agent_id, ..Default::default() };
            let query = ListQuery { filter, limit: p.limit, offset: p.offset };
            let (views, total) = sessions::list(kernel, query).await?;
            to_value(&HostSessions {
                sessions: views.into_iter().map(SessionView::host).collect(),
                total,
            })
        }
        HostSessionRead::NAME => {
            let p: SessionRef = parse_params(params)?;
            to_value(&sessions::read(kernel, &p.session_id).await?.host())
        }
        HostSessionHistory::NAME => {
            let p: HostHistoryParams = parse_params(params)?;
            let query = HistoryQuery { limit: p.limit, before: p.before, must_exist: true };
            let page = sessions::history(kernel, &p.session_id, query).await?;
            let messages = page.messages.into_iter().map(HostMessage::from).collect();
            let truncated = page.truncated.then_some(true);
            to_value(&HostHistory { session_id: p.session_id, messages, truncated })
        }
        host::SESSION_EXTERNAL_EVENT => {
            to_value(&sessions::external_event(kernel, caller, parse_params(params)?).await?)
        }
        host::COMMS_SEND => to_value(
            &crate::service::comms::send(kernel, caller.name(), parse_params(params)?).await?,
        ),
        host::COMMS_PEERS => {
            to_value(&crate::service::comms::peers(kernel, parse_params(params)?).await?)
        }
        RunWait::NAME => {
            let p: RunWaitParams = parse_params(params)?;
            let timeout = Duration::from_millis(p.timeout_ms.unwrap_or(30_000));
            let r = sessions::wait(kernel, &p.run_id, timeout).await?;
            to_value(&RunWaitResult {
                run_id: r.id,
                status: r.status,
                output: r.output,
                error: r.error,
            })
        }
        _ => match kernel.caps.by_name(CapabilityType::GatewayMethod, method) {
            Some(cap) => {
                return crate::service::routing::gateway_request(kernel, &cap, caller, params)
                    .await
                    .map_err(ErrorObject::from);
            }
            None => {
                return Err(ErrorObject::new(
                    ErrorCode::MethodNotFound,
                    format!("no method {method:?}"),
                )
                .with_data(json!({ "method": method })));
            }
        },
    })
}

/// The kernel as the host surfaces see it, calling as `caller`.
#[derive(Debug, Clone)]
pub struct KernelHost {
    /// The kernel.
    pub kernel: Arc<Kernel>,
    /// Who calls: `host:rpc`, `host:http`.
    pub caller: String,
}

impl Host for KernelHost {
    fn call(&self, method: String, params: Value) -> BoxFuture<'_, Result<Value, ErrorObject>> {
        Box::pin(async move { call(&self.kernel, &self.caller, &method, params).await })
    }

    fn session_events(
        &self,
        session_id: String,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Value>, ErrorObject>> {
        Box::pin(async move { Ok(sessions::follow(&self.kernel, &session_id).await?) })
    }

    fn http_request(
        &self,
        request: HttpRequestParams,
    ) -> BoxFuture<'_, Result<HttpResponse, ErrorObject>> {
        Box::pin(
            async move { Ok(crate::service::routing::http_request(&self.kernel, request).await?) },
        )
    }
}
