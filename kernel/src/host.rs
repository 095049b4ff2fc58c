//! The host methods, one implementation behind every surface: JSON-RPC over TCP and
//! stdio, REST, and IPC (`session.create`, `comms.send`, `comms.peers`,
//! `session.externalEvent`, `host.call`). [`call`] routes a JSON-RPC method name;
//! [`KernelHost`] is the kernel as a [`surface::Host`].
//!
//! | method | does |
//! |---|---|
//! | `session/create` | a new session (UUID v7 id) whose first turn is the prompt; waits for it unless `wait: false` |
//! | `session/list`, `session/read`, `session/history` | sessions and transcripts in the host shapes |
//! | `session/external_event` | a durable event in the session's transcript, then a turn |
//! | `comms/send`, `comms/peers` | [`crate::comms`] |
//! | `run/wait` | a run's status, waiting up to `timeout_ms` for its end |
//! | anything else | a gateway method an app registered, else `METHOD_NOT_FOUND` |

use std::sync::Arc;

use burrow_protocol::methods::capability::CapabilityType;
use burrow_protocol::methods::comms::{
    ExternalEventParams, ExternalEventReceipt, HostMessage, HostSession, MAX_COMMS_NAME,
    MAX_EVENT_TYPE, SessionCreateParams, SessionCreateResult,
};
use burrow_protocol::methods::invoke::{HttpRequestParams, HttpResponse};
use burrow_protocol::methods::session::{AgentWaitParams, MAX_HISTORY_LIMIT, MAX_LIST_LIMIT};
use burrow_protocol::methods::table::host;
use burrow_protocol::methods::{parse_params, to_value};
use burrow_protocol::{ErrorCode, ErrorObject, Map, Value, now_ms};
use futures_util::stream::BoxStream;
use serde::Deserialize;
use serde_json::json;

use crate::kernel::Kernel;
use crate::methods::session::{limit, page_bytes, store_err, to_session, wait};
use crate::sessions::{Inbound, Wake};
use crate::store::Page;
use crate::store::SessionRow;
use crate::surface::{BoxFuture, Host};

/// `[host]`: the JSON-RPC and REST surfaces. Read at start.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostSettings {
    /// Require a bearer token even on loopback (off loopback it is always required).
    pub require_token: bool,
    /// JSON-RPC connections at once (clamped to the descriptor budget,
    /// [`crate::descriptors`]); one more is answered with an error and closed.
    pub max_rpc_connections: usize,
    /// HTTP connections at once (clamped likewise); one more is answered 503 and closed.
    pub max_http_connections: usize,
    /// A connection with nothing in flight that sends nothing for this long is closed.
    pub idle_timeout_ms: u64,
    /// How long an HTTP request's header may take from its first byte.
    pub header_read_timeout_ms: u64,
    /// How long an HTTP request's body may take from its complete header.
    pub body_read_timeout_ms: u64,
    /// Large answers (transcript pages, session lists, apps' answers) the HTTP surface
    /// prepares and holds at once, all connections together; each is held until it is
    /// written.
    pub http_large_answers: usize,
}

impl Default for HostSettings {
    fn default() -> Self {
        HostSettings {
            require_token: false,
            max_rpc_connections: 256,
            max_http_connections: 512,
            idle_timeout_ms: 300_000,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            http_large_answers: 8,
        }
    }
}

impl HostSettings {
    /// Checks that caps and timeouts are positive.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_rpc_connections == 0
            || self.max_http_connections == 0
            || self.http_large_answers == 0
        {
            return Err("[host] max_rpc_connections, max_http_connections and \
                 http_large_answers must be positive"
                .to_owned());
        }
        if self.idle_timeout_ms == 0
            || self.header_read_timeout_ms == 0
            || self.body_read_timeout_ms == 0
        {
            return Err("[host] idle_timeout_ms, header_read_timeout_ms and body_read_timeout_ms must be positive".to_owned());
        }
        Ok(())
    }
}

/// Longest wait of `session/create` and `run/wait`, ms.
const MAX_WAIT_MS: u64 = 600_000;

/// Runs the host method `method` for `caller` (an app id, or `host:rpc` / `host:http`).
pub async fn call(
    kernel: &Arc<Kernel>,
    caller: &str,
    method: &str,
    params: Value,
) -> Result<Value, ErrorObject> {
    match method {
        host::SESSION_CREATE => {
            create(kernel, caller, parse_params(params)?).await.map(|r| to_value(&r))
        }
        host::SESSION_LIST => list(kernel, parse_params(params)?).await,
        host::SESSION_READ => {
            let p: SessionRef = parse_params(params)?;
            read(kernel, &p.session_id).await.map(|s| to_value(&s))
        }
        host::SESSION_HISTORY => history(kernel, parse_params(params)?).await,
        host::SESSION_EXTERNAL_EVENT => {
            external_event(kernel, caller, parse_params(params)?).await.map(|r| to_value(&r))
        }
        host::COMMS_SEND => {
            crate::comms::send(kernel, caller, parse_params(params)?).await.map(|r| to_value(&r))
        }
        host::COMMS_PEERS => {
            crate::comms::peers(kernel, parse_params(params)?).await.map(|r| to_value(&r))
        }
        host::RUN_WAIT => {
            let p: RunWait = parse_params(params)?;
            let p = AgentWaitParams { run_id: p.run_id, timeout_ms: p.timeout_ms };
            wait(kernel, p).await.map(|r| {
                json!({ "run_id": r.run_id, "status": r.status, "output": r.output, "error": r.error })
            })
        }
        _ => match kernel.caps.by_name(CapabilityType::GatewayMethod, method) {
            Some(cap) => {
                crate::methods::route::gateway_request(kernel, &cap, caller.to_owned(), params)
                    .await
            }
            None => {
                Err(ErrorObject::new(ErrorCode::MethodNotFound, format!("no method {method:?}"))
                    .with_data(json!({ "method": method })))
            }
        },
    }
}

/// `{session_id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionRef {
    session_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunWait {
    run_id: String,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ListParams {
    limit: Option<u32>,
    offset: Option<u32>,
    agent_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryParams {
    session_id: String,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    before: Option<String>,
}

/// The session as the host surfaces show it.
pub fn host_session(kernel: &Kernel, row: SessionRow) -> HostSession {
    HostSession {
        active: kernel.sessions.is_active(&row.key),
        session_id: row.key,
        agent_id: row.agent_id,
        channel_id: row.channel_id,
        keep_alive: row.keep_alive,
        comms_name: row.comms_name,
        created_at: row.created_at,
        last_active_at: row.last_active_at,
        message_count: row.message_count,
    }
}

/// `NOT_FOUND` with `data.reason: "unknown_session"`.
pub fn unknown_session(id: &str) -> ErrorObject {
    ErrorObject::new(ErrorCode::NotFound, format!("no session {id:?}"))
        .with_data(json!({ "reason": "unknown_session", "session_id": id }))
}

/// The stored session `id`, or `NOT_FOUND`.
pub async fn existing(kernel: &Kernel, id: &str) -> Result<SessionRow, ErrorObject> {
    kernel.store().session(id).await.map_err(store_err)?.ok_or_else(|| unknown_session(id))
}

/// Checks a comms name: 1–64 of `[A-Za-z0-9._-]`.
pub fn check_comms_name(name: &str) -> Result<(), ErrorObject> {
    let ok = !name.is_empty()
        && name.len() <= MAX_COMMS_NAME
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ErrorObject::invalid_params(
            "comms_name",
            format!("a comms name is 1 to {MAX_COMMS_NAME} of A-Z a-z 0-9 . _ -"),
        ))
    }
}

async fn create(
    kernel: &Arc<Kernel>,
    caller: &str,
    p: SessionCreateParams,
) -> Result<SessionCreateResult, ErrorObject> {
    if p.prompt.trim().is_empty() {
        return Err(ErrorObject::invalid_params("prompt", "the prompt is empty"));
    }
    if let Some(name) = &p.comms_name {
        check_comms_name(name)?;
    }
    let agent_id = p.agent_id.unwrap_or_else(|| "main".into());
    if !kernel.config().agents.contains_key(&agent_id) {
        return Err(ErrorObject::invalid_params("agent_id", format!("no agent {agent_id:?}")));
    }
    let key = uuid::Uuid::now_v7().to_string();
    let now = now_ms();
    let row = SessionRow {
        key: key.clone(),
        agent_id,
        channel_id: None,
        account_id: None,
        created_at: now,
        last_active_at: now,
        message_count: 0,
        keep_alive: p.keep_alive,
        comms_name: p.comms_name.clone(),
    };
    let mut item = Inbound::new(p.prompt, None, caller.to_owned(), Wake::Always);
    item.create = Some(Box::new(row));
    let acked = to_session(kernel, &key, item).await?;
    let run_id = acked.run_id.ok_or_else(|| {
        ErrorObject::new(ErrorCode::InternalError, "the first turn was not queued")
    })?;
    let mut result = SessionCreateResult {
        session_id: key,
        run_id: run_id.clone(),
        status: burrow_protocol::methods::session::RunStatus::Queued,
        output: None,
        error: None,
        keep_alive: p.keep_alive,
        comms_name: p.comms_name,
    };
    if p.wait.unwrap_or(true) {
        let timeout_ms = Some(p.timeout_ms.unwrap_or(60_000).min(MAX_WAIT_MS));
        let r = wait(kernel, AgentWaitParams { run_id, timeout_ms }).await?;
        result.status = r.status;
        result.output = r.output;
        result.error = r.error;
    }
    Ok(result)
}

async fn list(kernel: &Kernel, p: ListParams) -> Result<Value, ErrorObject> {
    let limit = limit(p.limit, 50, MAX_LIST_LIMIT)?;
    let filter = burrow_protocol::methods::session::SessionFilter {
        agent_id: p.agent_id,
        ..Default::default()
    };
    let (rows, total) =
        kernel.store().sessions(filter, limit, p.offset.unwrap_or(0)).await.map_err(store_err)?;
    let sessions: Vec<HostSession> = rows.into_iter().map(|r| host_session(kernel, r)).collect();
    Ok(json!({ "sessions": sessions, "total": total }))
}

async fn read(kernel: &Kernel, id: &str) -> Result<HostSession, ErrorObject> {
    Ok(host_session(kernel, existing(kernel, id).await?))
}

async fn history(kernel: &Kernel, p: HistoryParams) -> Result<Value, ErrorObject> {
    let limit = limit(p.limit, 100, MAX_HISTORY_LIMIT)?;
    existing(kernel, &p.session_id).await?;
    let page = Page { limit, before: p.before, max_bytes: page_bytes(kernel) };
    let page = kernel.store().history_page(&p.session_id, page).await.map_err(store_err)?;
    let messages: Vec<HostMessage> = page.messages.into_iter().map(HostMessage::from).collect();
    let mut answer = json!({ "session_id": p.session_id, "messages": messages });
    if page.truncated {
        answer["truncated"] = Value::Bool(true);
    }
    Ok(answer)
}

async fn external_event(
    kernel: &Arc<Kernel>,
    caller: &str,
    p: ExternalEventParams,
) -> Result<ExternalEventReceipt, ErrorObject> {
    if p.kind != "generic_json" {
        return Err(ErrorObject::invalid_params(
            "kind",
            format!("unsupported event kind {:?}; only \"generic_json\" is defined", p.kind),
        ));
    }
    if p.event_type.is_empty() || p.event_type.chars().count() > MAX_EVENT_TYPE {
        return Err(ErrorObject::invalid_params(
            "event_type",
            format!("event_type is 1 to {MAX_EVENT_TYPE} characters"),
        ));
    }
    // Checked here too, so an unknown id does not start a session actor.
    existing(kernel, &p.session_id).await?;
    let mut meta = Map::new();
    meta.insert("external_event".into(), json!({ "kind": p.kind, "event_type": p.event_type }));
    let content = serde_json::to_string(&p.payload).unwrap_or_default();
    let mut item = Inbound::new(content, Some(meta), caller.to_owned(), Wake::Always);
    item.must_exist = true;
    let acked = to_session(kernel, &p.session_id, item).await?;
    let mut ctx = Map::new();
    ctx.insert("sessionKey".into(), p.session_id.clone().into());
    let event = json!({ "sessionKey": p.session_id, "eventId": acked.dispatch_id, "eventType": p.event_type, "payload": p.payload });
    kernel.emit("external_event", event, ctx);
    Ok(ExternalEventReceipt {
        status: "accepted".into(),
        event_id: acked.dispatch_id,
        run_id: acked.run_id,
        queued: acked.queued,
    })
}

/// The events of session `id` from now on, as JSON objects; the stream ends if the
/// follower lags too far behind (after a `{type: "lagged"}` event).
pub async fn follow(kernel: &Kernel, id: &str) -> Result<BoxStream<'static, Value>, ErrorObject> {
    // Followed before the session is looked up, so no event falls between the two; a
    // follower's queue is an outbound queue: bounded like a connection's.
    let events = kernel.sessions.follow(id, kernel.config().ipc.writer_queue_bytes);
    existing(kernel, id).await?;
    Ok(events)
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
        Box::pin(async move { follow(&self.kernel, &session_id).await })
    }

    fn http_request(
        &self,
        request: HttpRequestParams,
    ) -> BoxFuture<'_, Result<HttpResponse, ErrorObject>> {
        Box::pin(async move { crate::methods::route::http_request(&self.kernel, request).await })
    }
}
