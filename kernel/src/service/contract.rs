//! The handshake of the host contract Burrow speaks (Meerkat's JSON-RPC host contract,
//! version [`CONTRACT_VERSION`]): `initialize` names the server, the contract version
//! and every host method; `capabilities/get` lists what this runtime can do as Meerkat's
//! capability entries, those it does not as `NotSupportedByProtocol`.

use burrow_protocol::methods::host::{
    CONTRACT_VERSION, CapabilitiesResult, CapabilityEntry, InitializeResult, ServerInfo,
};
use burrow_protocol::methods::table;
use serde_json::json;

use crate::kernel::Kernel;

/// What `capabilities/get` reports: `(id, description, available)`.
const CAPABILITIES: &[(&str, &str, bool)] = &[
    ("sessions", "Keep-alive agent sessions: create, turns, read, list, history", true),
    ("streaming", "A turn's events as it runs: text deltas, tool calls, its end", true),
    ("comms", "Messages and requests between named sessions, here and on trusted kernels", true),
    ("hooks", "Apps observe and intercept every step of a run", true),
    ("session_store", "Sessions and transcripts kept durably across restarts", true),
    ("skills", "Skills", false),
    ("mob", "Mobs of agents", false),
    ("memory_store", "A memory store", false),
    ("shell", "Shell command execution", false),
    ("mcp_live", "Live MCP servers", false),
];

/// `initialize`.
pub fn initialize() -> InitializeResult {
    let mut methods: Vec<String> = table::METHODS
        .iter()
        .filter(|m| m.to_kernel())
        .filter_map(|m| m.host)
        // The contract's methods; Burrow's operator methods on the host surfaces keep
        // their dotted IPC names (`kernel.apps`) and are documented, not announced.
        .filter(|name| !name.contains('.'))
        .map(str::to_owned)
        .collect();
    methods.sort();
    InitializeResult {
        server_info: ServerInfo { name: "burrow".to_owned(), version: crate::VERSION.to_owned() },
        contract_version: CONTRACT_VERSION.to_owned(),
        methods,
    }
}

/// `capabilities/get`.
pub fn capabilities(_kernel: &Kernel) -> CapabilitiesResult {
    let capabilities = CAPABILITIES
        .iter()
        .map(|&(id, description, available)| CapabilityEntry {
            id: id.to_owned(),
            description: description.to_owned(),
            status: if available {
                json!("Available")
            } else {
                json!({ "NotSupportedByProtocol": { "reason": "not provided by Burrow" } })
            },
        })
        .collect();
    CapabilitiesResult { contract_version: CONTRACT_VERSION.to_owned(), capabilities }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initialize_names_every_host_method_and_the_contract_version() {
        let init = initialize();
        assert_eq!(init.contract_version, CONTRACT_VERSION);
        for method in ["initialize", "capabilities/get", "session/create", "comms/send"] {
            assert!(init.methods.iter().any(|m| m == method), "{method} in {:?}", init.methods);
        }
        assert!(!init.methods.iter().any(|m| m.contains('.')), "no IPC names");
    }
}
