//! The bridge: the servers running ([`crate::server`]), the Burrow tools their MCP tools
//! are registered as (`<server>__<tool>`), and the kernel connection they are registered
//! on. A configuration is applied as a difference: servers added start, servers removed
//! stop (their tools withdrawn), servers changed restart. A tool whose Burrow name is not
//! valid, or that the kernel refuses (another app holds the name), is not offered; the
//! reason shows in [`Bridge::status`].
#![allow(deprecated)] // MCP roots (see `crate::server`)

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use burrow_sdk::protocol::methods::capability::{CapabilityType, ToolConfig, is_valid_tool_name};
use burrow_sdk::{Client, ErrorCode, ErrorObject, Value};
use rmcp::model::{CallToolRequestParams, Root};
use rmcp::{Peer, RoleClient};
use serde_json::json;

use crate::config::Config;
use crate::server::{self, Handle};

/// A call's deadline when the kernel gives none.
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// One MCP tool offered as a Burrow tool.
#[derive(Debug, Clone)]
struct Offered {
    server: String,
    /// Its MCP name.
    tool: String,
    config: ToolConfig,
    /// Its capability id, once the kernel granted it on the current connection.
    capability: Option<String>,
}

#[derive(Default)]
struct State {
    /// The kernel connection (the latest).
    client: Option<Client>,
    servers: BTreeMap<String, Handle>,
    /// The connected servers' peers, and the handle that published each.
    peers: BTreeMap<String, (u64, Peer<RoleClient>)>,
    /// By Burrow name.
    tools: BTreeMap<String, Offered>,
    /// Tools not offered, by server: `(MCP name, why)`.
    refused: BTreeMap<String, Vec<(String, String)>>,
}

/// The bridge: see the module's documentation.
#[derive(Default)]
pub struct Bridge {
    state: Mutex<State>,
}

impl Bridge {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The app is (again) connected to the kernel over `client`: every tool offered is
    /// registered on it (a new connection holds none of the old one's).
    pub async fn connected(&self, client: Client) {
        let names: Vec<String> = {
            let mut state = self.lock();
            state.client = Some(client);
            state.tools.values_mut().for_each(|t| t.capability = None);
            state.tools.keys().cloned().collect()
        };
        for name in names {
            self.register(&name).await;
        }
    }

    /// Applies `config`: starts, stops and restarts servers to match it.
    pub fn apply(self: &Arc<Self>, config: &Config) {
        let roots: Option<Vec<Root>> = config.roots.as_ref().map(|dirs| {
            dirs.iter().map(|d| Root::new(format!("file://{}", d.display()))).collect()
        });
        let mut state = self.lock();
        let gone: Vec<String> = state
            .servers
            .iter()
            .filter(|(name, h)| {
                config.servers.get(*name) != Some(&h.spec)
                    || h.init_timeout != config.init_timeout
                    || h.roots != roots
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let Some(handle) = state.servers.remove(&name) {
                tracing::info!(server = %name, "MCP server removed or changed");
                handle.stop();
            }
        }
        for (name, spec) in &config.servers {
            if !state.servers.contains_key(name) {
                let handle =
                    server::start(spec.clone(), roots.clone(), config.init_timeout, self.clone());
                state.servers.insert(name.clone(), handle);
            }
        }
    }

    /// Every server's state, for `mcp.status`.
    pub fn status(&self) -> Value {
        let state = self.lock();
        let servers: Vec<Value> = state
            .servers
            .iter()
            .map(|(name, handle)| {
                let transport = match handle.spec.transport {
                    crate::config::Transport::Stdio { .. } => "stdio",
                    crate::config::Transport::Http { .. } => "http",
                };
                let mut entry = json!({ "name": name, "transport": transport });
                if let (Some(entry), Ok(Value::Object(phase))) =
                    (entry.as_object_mut(), serde_json::to_value(handle.phase()))
                {
                    entry.extend(phase);
                }
                let tools: Vec<&String> = state
                    .tools
                    .iter()
                    .filter(|(_, t)| t.server == *name && t.capability.is_some())
                    .map(|(n, _)| n)
                    .collect();
                entry["offered"] = json!(tools);
                let refused = state.refused.get(name).into_iter().flatten();
                entry["refused"] = json!(
                    refused
                        .map(|(tool, why)| json!({"tool": tool, "reason": why}))
                        .collect::<Vec<_>>()
                );
                entry
            })
            .collect();
        json!({ "servers": servers })
    }

    /// Runs `tool.invoke` for Burrow tool `name`: its server's `tools/call`, within
    /// `deadline` (dropping the call, as a cancelled one is, sends the server
    /// `notifications/cancelled`).
    pub async fn call(
        &self,
        name: &str,
        arguments: Value,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Value, ErrorObject> {
        let (tool, peer) = {
            let state = self.lock();
            let Some(offered) = state.tools.get(name) else {
                return Err(ErrorObject::new(ErrorCode::NotFound, format!("no MCP tool {name:?}")));
            };
            let Some((_, peer)) = state.peers.get(&offered.server) else {
                let why = format!("MCP server {:?} is not connected", offered.server);
                return Err(ErrorObject::new(ErrorCode::ConnectionClosed, why));
            };
            (offered.tool.clone(), peer.clone())
        };
        let arguments = match arguments {
            Value::Object(map) => map,
            Value::Null => Default::default(),
            other => {
                let why = format!("MCP tool arguments are an object, not {other}");
                return Err(ErrorObject::invalid_params("arguments", why));
            }
        };
        let params = CallToolRequestParams::new(tool).with_arguments(arguments);
        let deadline =
            deadline.unwrap_or_else(|| tokio::time::Instant::now() + DEFAULT_CALL_TIMEOUT);
        match tokio::time::timeout_at(deadline, peer.call_tool(params)).await {
            Ok(Ok(result)) => Ok(crate::result::to_burrow(result)),
            Ok(Err(e)) => Err(call_error(e)),
            Err(_) => {
                Err(ErrorObject::new(ErrorCode::Timeout, "the MCP server did not answer in time"))
            }
        }
    }

    /// Registers Burrow tool `name` on the current connection, if it is not; a refusal
    /// moves it to the refused.
    async fn register(&self, name: &str) {
        let (client, config) = {
            let state = self.lock();
            let Some(client) = state.client.clone() else { return };
            match state.tools.get(name) {
                Some(t) if t.capability.is_none() => (client, t.config.clone()),
                _ => return,
            }
        };
        let outcome = client.register_capability(CapabilityType::Tool, &config).await;
        let mut state = self.lock();
        match outcome {
            Ok(granted) if granted.granted => {
                if let Some(t) = state.tools.get_mut(name) {
                    t.capability = Some(granted.capability_id);
                }
            }
            Ok(refused) => {
                let why = refused.reason.unwrap_or_else(|| "refused by the kernel".to_owned());
                if let Some(t) = state.tools.remove(name) {
                    tracing::warn!(tool = %name, %why, "an MCP tool was not granted");
                    state.refused.entry(t.server).or_default().push((t.tool, why));
                }
            }
            Err(e) => tracing::warn!(tool = %name, error = %e, "cannot register an MCP tool"),
        }
    }
}

/// A failed `tools/call` as Burrow's error: the server's own error (`UNKNOWN_ERROR`, its
/// code and data in `data`), a connection that ended (`CONNECTION_CLOSED`), no answer in
/// time (`TIMEOUT`), or an answer that is not a tool result (`INTERNAL_ERROR`).
fn call_error(e: rmcp::ServiceError) -> ErrorObject {
    use rmcp::ServiceError as E;
    match e {
        E::McpError(e) => {
            let data = json!({ "mcpCode": e.code.0, "mcpData": e.data });
            ErrorObject::new(ErrorCode::UnknownError, e.message.to_string()).with_data(data)
        }
        E::TransportClosed | E::TransportSend(_) => ErrorObject::new(
            ErrorCode::ConnectionClosed,
            format!("the MCP server's connection ended during the call: {e}"),
        ),
        E::Timeout { .. } => {
            ErrorObject::new(ErrorCode::Timeout, format!("the MCP call timed out: {e}"))
        }
        other => ErrorObject::new(
            ErrorCode::InternalError,
            format!("the MCP server's answer is not a tool result: {other}"),
        ),
    }
}

impl server::Tools for Bridge {
    async fn publish(
        &self,
        server: &str,
        owner: u64,
        peer: Peer<RoleClient>,
        tools: Vec<rmcp::model::Tool>,
    ) -> usize {
        let (dropped, added) = {
            let mut state = self.lock();
            if state.servers.get(server).map(|h| h.id) != Some(owner) {
                return 0;
            }
            state.peers.insert(server.to_owned(), (owner, peer));
            let mut refused = Vec::new();
            let mut wanted = BTreeMap::new();
            for tool in tools {
                let name = format!("{server}__{}", tool.name);
                if !is_valid_tool_name(&name) {
                    refused.push((
                        tool.name.to_string(),
                        format!(
                            "{name:?} is not a valid Burrow tool name (1–64 of A-Z a-z 0-9 _ -)"
                        ),
                    ));
                    continue;
                }
                let config = ToolConfig {
                    name: name.clone(),
                    description: tool.description.as_deref().unwrap_or_default().to_owned(),
                    input_schema: Some(Value::Object((*tool.input_schema).clone())),
                    timeout_ms: None,
                };
                wanted.insert(name, (tool.name.to_string(), config));
            }
            state.refused.insert(server.to_owned(), refused);
            let dropped: Vec<(String, Option<String>)> = state
                .tools
                .iter()
                .filter(|(n, t)| {
                    t.server == server && wanted.get(*n).is_none_or(|(_, c)| *c != t.config)
                })
                .map(|(n, t)| (n.clone(), t.capability.clone()))
                .collect();
            for (name, _) in &dropped {
                state.tools.remove(name);
            }
            let mut added = Vec::new();
            for (name, (tool, config)) in wanted {
                if !state.tools.contains_key(&name) {
                    let offered =
                        Offered { server: server.to_owned(), tool, config, capability: None };
                    state.tools.insert(name.clone(), offered);
                    added.push(name);
                }
            }
            (dropped, added)
        };
        self.unregister(dropped).await;
        for name in added {
            self.register(&name).await;
        }
        let state = self.lock();
        state.tools.values().filter(|t| t.server == server && t.capability.is_some()).count()
    }

    async fn withdraw(&self, server: &str, owner: u64) {
        let dropped = {
            let mut state = self.lock();
            if state.peers.get(server).is_none_or(|(published, _)| *published != owner) {
                return;
            }
            state.peers.remove(server);
            state.refused.remove(server);
            let names: Vec<String> = state
                .tools
                .iter()
                .filter(|(_, t)| t.server == server)
                .map(|(n, _)| n.clone())
                .collect();
            names
                .into_iter()
                .filter_map(|n| state.tools.remove(&n).map(|t| (n, t.capability)))
                .collect()
        };
        self.unregister(dropped).await;
    }
}

impl Bridge {
    /// Gives the kernel back the capabilities of tools no longer offered.
    async fn unregister(&self, dropped: Vec<(String, Option<String>)>) {
        let client = self.lock().client.clone();
        let Some(client) = client else { return };
        for (name, capability) in dropped {
            if let Some(id) = capability
                && let Err(e) = client.unregister_capability(&id).await
            {
                tracing::debug!(tool = %name, error = %e, "cannot unregister an MCP tool");
            }
        }
    }
}
