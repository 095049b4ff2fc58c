//! `burrow run` (create a session and follow it) and `burrow event` (a durable external
//! event), as a registered client over IPC calling the host methods.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use burrow_protocol::Value;
use burrow_sdk::StreamItem;
use futures_util::StreamExt;
use serde_json::json;

use super::client::{fail, print_json};
use super::ops::registered;

/// Arguments of `burrow run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The first turn's input.
    prompt: String,
    /// Make the session a peer with this display name.
    #[arg(long, value_name = "NAME")]
    comms_name: Option<String>,
    /// Keep the session resident; keep following it (until Ctrl-C) for the turns that
    /// comms and external events start.
    #[arg(long)]
    keep_alive: bool,
    /// The agent (`[agents.<id>]`).
    #[arg(long, value_name = "ID")]
    agent: Option<String>,
    /// How long to wait for the first turn.
    #[arg(long, default_value_t = 120_000, value_name = "MS")]
    timeout_ms: u64,
}

/// `burrow run`: creates the session, prints the first turn's output, then (keep-alive)
/// prints what arrives and what the agent answers.
pub async fn run(socket: Option<PathBuf>, args: RunArgs, json: bool) -> ExitCode {
    let reg = match registered(socket).await {
        Ok(r) => r,
        Err(code) => return code,
    };
    let client = &reg.client;
    let params = json!({
        "prompt": args.prompt, "keep_alive": args.keep_alive, "comms_name": args.comms_name,
        "agent_id": args.agent, "wait": false,
    });
    let created = match client.request("session.create", params).await {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let key = created["session_id"].as_str().unwrap_or_default().to_owned();
    eprintln!("session {key}");
    // Follow before waiting, so nothing the first turn does falls between the two.
    let mut events =
        match client.request_stream("session.events", json!({ "session_id": key })).await {
            Ok(s) => s,
            Err(e) => return fail(e),
        };
    let wait = json!({ "method": "run/wait", "params": { "run_id": created["run_id"], "timeout_ms": args.timeout_ms } });
    let timeout = Duration::from_millis(args.timeout_ms + 5_000);
    let first = match client.request_with_timeout("host.call", wait, timeout).await {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let first_ok = first["status"] == "completed";
    if json {
        print_json(&first);
    } else if first_ok {
        println!("{}", first["output"].as_str().unwrap_or_default());
    } else {
        eprintln!("burrow: the first turn ended {}: {}", first["status"], first["error"]);
    }
    if !args.keep_alive {
        return if first_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    }
    let first_run = created["run_id"].clone();
    loop {
        let item = tokio::select! {
            item = events.next() => item,
            _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
        };
        match item {
            Some(Ok(StreamItem::Chunk(event))) => {
                if json {
                    println!("{event}");
                } else if let Some(line) = describe(&event, &first_run) {
                    println!("{line}");
                }
            }
            Some(Ok(StreamItem::End(end))) => {
                eprintln!("burrow: the kernel ended the stream: {end}");
                return ExitCode::FAILURE;
            }
            Some(Err(e)) => return fail(e),
            None => return ExitCode::SUCCESS,
        }
    }
}

/// A line for a followed event: what arrived from outside, and the agent's answers.
fn describe(event: &Value, first_run: &Value) -> Option<String> {
    match event["type"].as_str()? {
        "message" if event["role"] == "user" => {
            let meta = &event["metadata"];
            let content = event["content"].as_str().unwrap_or_default();
            if let Some(c) = meta.get("comms").filter(|c| c.is_object()) {
                let from = c["from_name"].as_str().or(c["from"].as_str()).unwrap_or("?");
                Some(format!("<< {} from {from}: {content}", c["kind"].as_str().unwrap_or("comms")))
            } else if let Some(e) = meta.get("external_event").filter(|e| e.is_object()) {
                Some(format!("<< event {}: {content}", e["event_type"].as_str().unwrap_or("?")))
            } else {
                Some(format!("<< {content}"))
            }
        }
        "run" if event["run_id"] != *first_run => match event["status"].as_str()? {
            "completed" => Some(event["output"].as_str().unwrap_or_default().to_owned()),
            "failed" => Some(format!("!! run failed: {}", event["error"].as_str().unwrap_or("?"))),
            _ => None,
        },
        _ => None,
    }
}

/// `burrow event SESSION TYPE JSON`.
pub async fn event(
    socket: Option<PathBuf>,
    session: &str,
    event_type: &str,
    payload: &str,
) -> ExitCode {
    let payload: Value = match serde_json::from_str(payload) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("burrow: the payload is not valid JSON: {e}");
            return ExitCode::from(2);
        }
    };
    let reg = match registered(socket).await {
        Ok(r) => r,
        Err(code) => return code,
    };
    let params = json!({ "session_id": session, "kind": "generic_json", "event_type": event_type, "payload": payload });
    match reg.client.request("session.externalEvent", params).await {
        Ok(receipt) => {
            print_json(&receipt);
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn followed_events_read_as_lines() {
        let first = json!("r1");
        let comms = json!({"type": "message", "role": "user", "content": "hi", "metadata": {"comms": {"kind": "peer_message", "from": "id", "from_name": "agent-a"}}});
        assert_eq!(describe(&comms, &first).unwrap(), "<< peer_message from agent-a: hi");
        let event = json!({"type": "message", "role": "user", "content": "{}", "metadata": {"external_event": {"event_type": "deploy"}}});
        assert_eq!(describe(&event, &first).unwrap(), "<< event deploy: {}");
        let done = json!({"type": "run", "run_id": "r2", "status": "completed", "output": "ok"});
        assert_eq!(describe(&done, &first).unwrap(), "ok");
        let first_done =
            json!({"type": "run", "run_id": "r1", "status": "completed", "output": "ok"});
        assert_eq!(describe(&first_done, &first), None);
        let reply = json!({"type": "message", "role": "assistant", "content": "ok"});
        assert_eq!(describe(&reply, &first), None);
    }
}
