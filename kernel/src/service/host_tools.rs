//! Tools a host provides on its JSON-RPC connection (`tools/register`), and the sessions
//! it drives there: a session created or given a turn on a connection that provides
//! tools is offered them in its runs (besides the apps' tools; a host's tool shadows an
//! app's of the same name for those sessions), called through the same hooks as any
//! tool ([`crate::service::routing`]) and answered by the host (`tool/execute`). When the
//! connection ends its tools are gone, and so are its sessions' ties to it.
//!
//! The registry knows no connection: a host is a [`ToolHost`], which the JSON-RPC
//! surface implements on its connections.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use burrow_protocol::ErrorObject;
use burrow_protocol::methods::capability::is_valid_tool_name;
use burrow_protocol::methods::contract::{CallbackTool, ToolExecuteParams, ToolExecuteResult};
use burrow_protocol::methods::invoke::ToolSpec;

use crate::service::ServiceError;

/// A boxed future, so [`ToolHost`] stays object-safe.
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// Tools one connection may provide at once.
pub const MAX_TOOLS: usize = 256;

/// A host connection that runs the tools it registered.
pub trait ToolHost: Send + Sync + 'static {
    /// Asks the host to run one call and waits up to `timeout` for its answer:
    /// `CONNECTION_CLOSED` once the connection has ended, `TIMEOUT` after `timeout`. A
    /// host's JSON-RPC error comes back as the error it is.
    fn execute(
        &self,
        params: ToolExecuteParams,
        timeout: Duration,
    ) -> BoxFuture<Result<ToolExecuteResult, ErrorObject>>;
}

/// One tool a host provides, and the host to call.
#[derive(Clone)]
pub struct HostTool {
    /// What the agent is shown.
    pub spec: ToolSpec,
    /// Who runs it.
    pub host: Arc<dyn ToolHost>,
}

impl std::fmt::Debug for HostTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostTool").field("name", &self.spec.name).finish()
    }
}

/// The tools hosts provide, by connection, and which connection each session is tied to.
#[derive(Default)]
pub struct HostTools {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// By connection id.
    conns: HashMap<u64, Provided>,
    /// Session key → the connection whose tools its runs are offered.
    bound: HashMap<String, u64>,
}

struct Provided {
    host: Arc<dyn ToolHost>,
    tools: BTreeMap<String, ToolSpec>,
}

impl std::fmt::Debug for HostTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("HostTools")
            .field("connections", &inner.conns.len())
            .field("sessions", &inner.bound.len())
            .finish()
    }
}

impl HostTools {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `tools` to those connection `conn` provides (a name it provided already is
    /// replaced) and answers how many it provides now. Every name must be a valid tool
    /// name, and a connection provides at most [`MAX_TOOLS`]; otherwise nothing changes.
    /// Returns whether this is the connection's first registration, so its caller
    /// knows to [`HostTools::forget`] it when it ends.
    pub fn register(
        &self,
        conn: u64,
        host: Arc<dyn ToolHost>,
        tools: Vec<CallbackTool>,
    ) -> Result<(usize, bool), ServiceError> {
        for (n, tool) in tools.iter().enumerate() {
            if !is_valid_tool_name(&tool.name) {
                return Err(ServiceError::InvalidParams {
                    field: format!("tools[{n}].name"),
                    message: format!(
                        "{:?} is not a valid tool name (1–64 of A–Z a–z 0–9 _ -)",
                        tool.name
                    ),
                });
            }
        }
        let mut inner = self.lock();
        let first = !inner.conns.contains_key(&conn);
        let provided =
            inner.conns.entry(conn).or_insert_with(|| Provided { host, tools: BTreeMap::new() });
        let mut after = provided.tools.clone();
        for tool in tools {
            let spec = ToolSpec {
                name: tool.name.clone(),
                description: tool.description,
                input_schema: tool.input_schema,
            };
            after.insert(tool.name, spec);
        }
        if after.len() > MAX_TOOLS {
            if first {
                inner.conns.remove(&conn);
            }
            return Err(ServiceError::InvalidParams {
                field: "tools".to_owned(),
                message: format!("a connection provides at most {MAX_TOOLS} tools"),
            });
        }
        let count = after.len();
        provided.tools = after;
        Ok((count, first))
    }

    /// Forgets connection `conn`: its tools, and the sessions tied to it.
    pub fn forget(&self, conn: u64) {
        let mut inner = self.lock();
        inner.conns.remove(&conn);
        inner.bound.retain(|_, c| *c != conn);
    }

    /// Ties session `key` to connection `conn` when it provides tools (its runs are
    /// offered them from now on, instead of those of a connection it was tied to); a
    /// connection that provides none changes nothing.
    pub fn bind(&self, key: &str, conn: u64) {
        let mut inner = self.lock();
        if inner.conns.contains_key(&conn) {
            inner.bound.insert(key.to_owned(), conn);
        }
    }

    /// The tools session `key` is offered by its host, by name.
    pub fn for_session(&self, key: &str) -> Vec<ToolSpec> {
        let inner = self.lock();
        let provided = inner.bound.get(key).and_then(|conn| inner.conns.get(conn));
        provided.map(|p| p.tools.values().cloned().collect()).unwrap_or_default()
    }

    /// The tool `name` session `key`'s host provides, if it does.
    pub fn find(&self, key: &str, name: &str) -> Option<HostTool> {
        let inner = self.lock();
        let provided = inner.conns.get(inner.bound.get(key)?)?;
        let spec = provided.tools.get(name)?.clone();
        Some(HostTool { spec, host: provided.host.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A host that answers every call with its arguments' text.
    struct Echo;

    impl ToolHost for Echo {
        fn execute(
            &self,
            params: ToolExecuteParams,
            _timeout: Duration,
        ) -> BoxFuture<Result<ToolExecuteResult, ErrorObject>> {
            let content = params.arguments.to_string().into();
            Box::pin(async move { Ok(ToolExecuteResult { content, is_error: false }) })
        }
    }

    fn tool(name: &str) -> CallbackTool {
        CallbackTool { name: name.into(), description: "d".into(), input_schema: json!({}) }
    }

    #[tokio::test]
    async fn a_connections_tools_reach_the_sessions_tied_to_it_until_it_ends() {
        let tools = HostTools::default();
        tools.bind("s1", 1);
        assert!(tools.for_session("s1").is_empty(), "a connection without tools ties nothing");
        assert_eq!(
            tools.register(1, Arc::new(Echo), vec![tool("a"), tool("b")]).unwrap(),
            (2, true)
        );
        // Registering a name again replaces it.
        let mut again = tool("a");
        again.description = "newer".into();
        assert_eq!(tools.register(1, Arc::new(Echo), vec![again]).unwrap(), (2, false));
        tools.bind("s1", 1);
        let offered = tools.for_session("s1");
        assert_eq!(offered.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(offered[0].description, "newer");
        assert!(tools.for_session("s2").is_empty(), "only the sessions tied to it");
        let found = tools.find("s1", "b").expect("b");
        let answer = found.host.execute(
            ToolExecuteParams {
                tool_use_id: "c".into(),
                name: "b".into(),
                arguments: json!({"q": 1}),
                dedupe_key: None,
            },
            Duration::from_secs(1),
        );
        assert_eq!(answer.await.unwrap().text(), r#"{"q":1}"#);
        assert!(tools.find("s1", "zzz").is_none());
        // Another connection with tools takes the session over.
        tools.register(2, Arc::new(Echo), vec![tool("c")]).unwrap();
        tools.bind("s1", 2);
        assert!(tools.find("s1", "a").is_none() && tools.find("s1", "c").is_some());
        tools.forget(2);
        assert!(tools.for_session("s1").is_empty(), "gone with its connection");
        assert!(tools.find("s1", "c").is_none());
    }

    #[test]
    fn bad_names_and_too_many_tools_change_nothing() {
        let tools = HostTools::default();
        let err =
            tools.register(1, Arc::new(Echo), vec![tool("ok"), tool("no spaces")]).unwrap_err();
        assert!(
            matches!(&err, ServiceError::InvalidParams { field, .. } if field == "tools[1].name"),
            "{err}"
        );
        tools.bind("s", 1);
        assert!(tools.for_session("s").is_empty(), "nothing was registered");
        let many: Vec<_> = (0..=MAX_TOOLS).map(|n| tool(&format!("t{n}"))).collect();
        let err = tools.register(1, Arc::new(Echo), many).unwrap_err();
        assert!(
            matches!(&err, ServiceError::InvalidParams { field, .. } if field == "tools"),
            "{err}"
        );
        tools.register(1, Arc::new(Echo), vec![tool("one")]).unwrap();
        let more: Vec<_> = (0..MAX_TOOLS).map(|n| tool(&format!("t{n}"))).collect();
        assert!(tools.register(1, Arc::new(Echo), more).is_err(), "the cap counts what is there");
        tools.bind("s", 1);
        assert_eq!(tools.for_session("s").len(), 1);
    }
}
