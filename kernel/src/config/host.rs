//! `[host]`: the bounds of the host surfaces (JSON-RPC and REST); `[mcp]`: what Burrow
//! serves as an MCP server (`burrow mcp serve`).

use serde::Deserialize;

/// `[host]`: the JSON-RPC and REST surfaces. Read at start.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
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
    /// How long a call of a tool a host provides (`tool/execute`) may take.
    pub tool_timeout_ms: u64,
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
            tool_timeout_ms: 300_000,
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
            || self.tool_timeout_ms == 0
            || self.header_read_timeout_ms == 0
            || self.body_read_timeout_ms == 0
        {
            return Err("[host] idle_timeout_ms, tool_timeout_ms, header_read_timeout_ms and body_read_timeout_ms must be positive".to_owned());
        }
        Ok(())
    }
}

/// `[mcp]`: Burrow as an MCP server (`burrow mcp serve`, docs/mcp.md). Read by the
/// server when it starts.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpSettings {
    /// Patterns (`*` wildcards) of the kernel's tools served to MCP clients.
    pub expose: Vec<String>,
}

impl Default for McpSettings {
    fn default() -> Self {
        McpSettings { expose: vec!["*".to_owned()] }
    }
}

impl McpSettings {
    /// Checks that every pattern is a name or a pattern of names.
    pub fn validate(&self) -> Result<(), String> {
        match self.expose.iter().find(|p| p.is_empty() || p.chars().any(char::is_whitespace)) {
            Some(bad) => Err(format!("[mcp] expose: {bad:?} is not a tool name or pattern")),
            None => Ok(()),
        }
    }
}
