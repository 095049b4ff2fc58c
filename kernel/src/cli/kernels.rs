//! `burrow [--json] kernels [list | trust FILE | revoke KERNEL_ID]` (alias `burrow peers`):
//! the kernels the running kernel trusts on its kernel channel ([`crate::remote`]), through
//! the IPC methods `peers.list`, `peers.trust` and `peers.revoke` (wire names kept for
//! compatibility).

use std::path::PathBuf;
use std::process::ExitCode;

use burrow_protocol::Value;
use clap::Subcommand;
use serde_json::json;

use super::client::{connect, fail, print_json};
use crate::remote::Binding;

/// Kernel ids are shown shortened to this many characters.
const SHORT_ID: usize = 12;

/// What `burrow kernels` does (listing without one).
#[derive(Debug, Subcommand)]
pub enum KernelsAction {
    /// Trust the kernel described by a binding file (another kernel's
    /// `--comms-binding-out`); replaces an earlier binding of the same kernel.
    Trust {
        /// The binding file (JSON).
        file: PathBuf,
    },
    /// Show this kernel's binding, the trusted kernels and refusal counts.
    List,
    /// Stop trusting a kernel.
    Revoke {
        /// The kernel id (the hex public key).
        kernel_id: String,
    },
}

/// Runs `burrow kernels`.
pub async fn run(socket: Option<PathBuf>, action: Option<KernelsAction>, json: bool) -> ExitCode {
    match action.unwrap_or(KernelsAction::List) {
        KernelsAction::Trust { file } => trust(socket, file).await,
        KernelsAction::List => list(socket, json).await,
        KernelsAction::Revoke { kernel_id } => revoke(socket, &kernel_id).await,
    }
}

async fn trust(socket: Option<PathBuf>, file: PathBuf) -> ExitCode {
    // Checked here first, so a bad file gets a clear message without a kernel round trip.
    let binding = match Binding::read(&file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("burrow: {e}");
            return ExitCode::from(2);
        }
    };
    let client = match connect(socket).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client.request("peers.trust", json!({ "binding": binding })).await {
        Ok(result) => {
            let verb = if result["added"] == true { "trusted" } else { "updated" };
            println!("{verb}: {} ({})", binding.name, short(&binding.kernel_id));
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

async fn list(socket: Option<PathBuf>, json_out: bool) -> ExitCode {
    let client = match connect(socket).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let result = match client.request("peers.list", json!({})).await {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    if json_out {
        print_json(&result);
    } else {
        print!("{}", render(&result));
    }
    ExitCode::SUCCESS
}

async fn revoke(socket: Option<PathBuf>, kernel_id: &str) -> ExitCode {
    let client = match connect(socket).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client.request("peers.revoke", json!({ "kernel_id": kernel_id })).await {
        Ok(result) if result["ok"] == true => {
            println!("revoked: {kernel_id}");
            ExitCode::SUCCESS
        }
        Ok(_) => {
            eprintln!("burrow: {kernel_id} is not trusted");
            ExitCode::FAILURE
        }
        Err(e) => fail(e),
    }
}

/// The human form of a `peers.list` result: this kernel, a table of trusted kernels,
/// and refusal counts when there are any.
fn render(list: &Value) -> String {
    let mut out = String::new();
    let me = &list["self"];
    if me.is_object() {
        out.push_str(&format!(
            "this kernel: {} {} {}\n",
            short(str_of(&me["kernel_id"])),
            str_of(&me["name"]),
            str_of(&me["address"])
        ));
    } else {
        out.push_str("this kernel: not reachable by other kernels (no --comms-listen-tcp)\n");
    }
    let trusted = list["trusted"].as_array().map(Vec::as_slice).unwrap_or_default();
    if trusted.is_empty() {
        out.push_str("no trusted kernels\n");
    } else {
        let now = burrow_protocol::now_ms();
        let row = |id: &str, name: &str, address: &str, contact: &str| {
            format!("{id:<12}  {name:<24}  {address:<28}  {contact}\n")
        };
        out.push_str(&row("KERNEL", "NAME", "ADDRESS", "LAST CONTACT"));
        for b in trusted {
            let id = str_of(&b["kernel_id"]);
            let contact = match list["last_contact"][id].as_u64() {
                Some(at) => format!("{} ago", ago(now.saturating_sub(at))),
                None => "none since start".to_owned(),
            };
            out.push_str(&row(short(id), str_of(&b["name"]), str_of(&b["address"]), &contact));
        }
    }
    if let Some(refusals) = list["refusals"].as_object().filter(|r| !r.is_empty()) {
        let counts: Vec<String> = refusals
            .iter()
            .map(|(reason, n)| format!("{reason}={}", n.as_u64().unwrap_or(0)))
            .collect();
        out.push_str(&format!("refusals: {}\n", counts.join(" ")));
    }
    out
}

/// `ms` as a short age: "4 s", "3 min", "2 h", "5 d".
fn ago(ms: u64) -> String {
    match ms / 1000 {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("?")
}

fn short(id: &str) -> &str {
    id.char_indices().nth(SHORT_ID).map_or(id, |(i, _)| &id[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_renders_a_table() {
        let id = "ab".repeat(32);
        let list = json!({
            "self": {"kernel_id": "cd".repeat(32), "name": "home", "address": "10.0.0.1:7400"},
            "trusted": [{"kernel_id": id, "name": "work", "address": "work.example:7400"}],
            "refusals": {"stale": 2, "replayed": 1},
            "last_contact": {id.clone(): burrow_protocol::now_ms() - 5_000}
        });
        let text = render(&list);
        assert!(text.starts_with("this kernel: cdcdcdcdcdcd home 10.0.0.1:7400\n"), "{text}");
        assert!(text.contains("KERNEL"), "{text}");
        assert!(text.contains("abababababab  work"), "{text}");
        assert!(text.contains("LAST CONTACT") && text.contains("  5 s ago\n"), "{text}");
        assert!(!text.contains(&id), "ids are shortened: {text}");
        assert!(text.ends_with("refusals: replayed=1 stale=2\n"), "{text}");
        let empty = render(&json!({"self": null, "trusted": [], "refusals": {}}));
        assert!(empty.contains("no trusted kernels"), "{empty}");
        assert!(!empty.contains("refusals"), "{empty}");
        assert_eq!(short("abc"), "abc");
        let never = json!({"self": null, "trusted": [{"kernel_id": id}], "refusals": {}});
        assert!(render(&never).contains("none since start"));
        assert_eq!(
            [ago(0), ago(180_000), ago(7_200_000), ago(200_000_000)],
            ["0 s", "3 min", "2 h", "2 d"]
        );
    }
}
