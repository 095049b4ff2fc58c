//! `burrow mcp status [--json]`: the MCP servers the bundled `mcp` app mounts, as its
//! gateway method `mcp.status` reports them (docs/mcp.md); `burrow mcp serve`: the
//! kernel's tools as an MCP server ([`super::mcp_serve`]).

use std::path::PathBuf;
use std::process::ExitCode;

use burrow_protocol::Value;
use serde_json::json;

use super::client::{fail_with, print_json};
use super::ops::registered;

/// What `burrow mcp` does.
#[derive(Debug, clap::Subcommand)]
pub enum McpAction {
    /// Serve the kernel's tools as an MCP server on stdin/stdout, for MCP clients that
    /// spawn their servers (`"command": "burrow", "args": ["mcp", "serve"]`).
    Serve,
    /// Each MCP server's state: ready with its tools and the MCP revision negotiated,
    /// connecting, or failed with the reason and when it is tried again; and the tools
    /// not offered, with why.
    Status,
}

/// Runs `burrow mcp ACTION`.
pub async fn run(socket: Option<PathBuf>, action: McpAction, json: bool) -> ExitCode {
    if let McpAction::Serve = action {
        return super::mcp_serve::run(socket).await;
    }
    let reg = match registered(socket).await {
        Ok(r) => r,
        Err(code) => return code,
    };
    let status = match reg.client.request("mcp.status", json!({})).await {
        Ok(status) => status,
        Err(e) => {
            let hint = "is the `mcp` app running? `burrow apps` lists it ([apps.mcp] enabled = false switches it off)";
            return fail_with(e, Some(hint));
        }
    };
    if json {
        print_json(&status);
    } else {
        print!("{}", lines(&status, burrow_protocol::now_ms()));
    }
    ExitCode::SUCCESS
}

/// The status for people: a line a server, then its refused tools.
fn lines(status: &Value, now_ms: u64) -> String {
    let servers = status["servers"].as_array().map(Vec::as_slice).unwrap_or_default();
    if servers.is_empty() {
        return "no MCP servers are configured ([apps.mcp.servers.<name>], or mcp_json)\n"
            .to_owned();
    }
    let mut out = String::new();
    for server in servers {
        let (name, transport) =
            (server["name"].as_str().unwrap_or("?"), server["transport"].as_str().unwrap_or("?"));
        let state = match server["state"].as_str().unwrap_or("?") {
            "ready" => {
                let mut ready = format!("ready, {} tools", server["tools"].as_u64().unwrap_or(0));
                if let Some(version) = server["protocol_version"].as_str().filter(|v| !v.is_empty())
                {
                    ready.push_str(&format!(", MCP {version}"));
                }
                ready
            }
            "failed" => {
                let at = server["retry_at_ms"].as_u64().unwrap_or(now_ms);
                let secs = at.saturating_sub(now_ms).div_ceil(1000);
                format!(
                    "failed: {} (retrying in {secs} s)",
                    server["reason"].as_str().unwrap_or("?")
                )
            }
            other => other.to_owned(),
        };
        out.push_str(&format!("{name}\t{transport}\t{state}\n"));
        for refused in server["refused"].as_array().into_iter().flatten() {
            let (tool, why) = (
                refused["tool"].as_str().unwrap_or("?"),
                refused["reason"].as_str().unwrap_or("?"),
            );
            out.push_str(&format!("  not offered: {tool}: {why}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_read_as_lines() {
        let status = json!({"servers": [
            {"name": "fs", "transport": "stdio", "state": "ready", "tools": 3, "protocol_version": "2025-11-25", "refused": [{"tool": "bad.name", "reason": "not a valid name"}]},
            {"name": "web", "transport": "http", "state": "failed", "reason": "connection refused", "retry_at_ms": 12_500, "refused": []},
            {"name": "slow", "transport": "stdio", "state": "connecting", "refused": []},
        ]});
        assert_eq!(
            lines(&status, 10_000),
            "fs\tstdio\tready, 3 tools, MCP 2025-11-25\n  not offered: bad.name: not a valid name\n\
             web\thttp\tfailed: connection refused (retrying in 3 s)\nslow\tstdio\tconnecting\n"
        );
        assert!(lines(&json!({"servers": []}), 0).starts_with("no MCP servers"));
    }
}
