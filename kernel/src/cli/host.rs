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
    // The first turn's text shows as it is produced, while its end is awaited.
    let mut live = Live::default();
    let first = {
        let waited = client.request_with_timeout("host.call", wait, timeout);
        let mut waited = std::pin::pin!(waited);
        loop {
            tokio::select! {
                first = &mut waited => break first,
                Some(Ok(StreamItem::Chunk(event))) = events.next(), if !json => {
                    live.event(&event);
                }
            }
        }
    };
    let first = match first {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let first_ok = first["status"] == "completed";
    if json {
        print_json(&first);
    } else if first_ok {
        let run = created["run_id"].as_str().unwrap_or_default();
        // The answer may overtake the run's last deltas: they come before its end event.
        let ended = async {
            while let Some(Ok(StreamItem::Chunk(event))) = events.next().await {
                live.event(&event);
                if event["type"] == "run" && event["run_id"] == run && event["status"] != "running"
                {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), ended).await;
        live.finish(Some(run), first["output"].as_str().unwrap_or_default());
    } else {
        live.end_line();
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
                } else if live.event(&event) {
                    // Shown as it came.
                } else if event["type"] == "run" && event["status"] == "completed" {
                    if event["run_id"] != first_run {
                        let output = event["output"].as_str().unwrap_or_default();
                        live.finish(event["run_id"].as_str(), output);
                    }
                } else if let Some(line) = describe(&event, &first_run) {
                    live.end_line();
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

/// The answer being shown as the model produces it: its run, and the text shown.
#[derive(Debug, Default)]
struct Live {
    run: Option<String>,
    shown: String,
    /// Runs whose first delta was missed (followed too late): shown whole at their end.
    missed: Vec<String>,
}

impl Live {
    /// Shows a `text_delta` event; false for any other event.
    fn event(&mut self, event: &Value) -> bool {
        if event["type"] != "text_delta" {
            return false;
        }
        let (Some(run), Some(text)) = (event["run_id"].as_str(), event["text"].as_str()) else {
            return true;
        };
        if self.missed.iter().any(|m| m == run) {
            return true;
        }
        if self.run.as_deref() != Some(run) {
            if event["seq"].as_u64().unwrap_or_default() > 0 {
                self.missed.push(run.to_owned());
                return true;
            }
            self.end_line();
            self.run = Some(run.to_owned());
        }
        self.shown.push_str(text);
        print!("{text}");
        let _ = std::io::Write::flush(&mut std::io::stdout());
        true
    }

    /// Ends the line of a run shown as it came, if one is open.
    fn end_line(&mut self) {
        if self.run.take().is_some() {
            println!();
            self.shown.clear();
        }
    }

    /// Run `run` completed with `output`: the line ends if it was all shown, else the
    /// output shows whole.
    fn finish(&mut self, run: Option<&str>, output: &str) {
        let streamed = run.is_some() && self.run.as_deref() == run && self.shown == output;
        if streamed {
            self.end_line();
        } else {
            self.end_line();
            println!("{output}");
        }
        if let Some(run) = run {
            self.missed.retain(|m| m != run);
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

/// What `burrow event` sends.
#[derive(Debug)]
pub struct EventArgs {
    /// The session.
    pub session: String,
    /// What happened.
    pub event_type: String,
    /// The payload, as JSON text.
    pub payload: String,
    /// Its idempotency key, if any.
    pub idempotency_key: Option<String>,
}

/// `burrow event SESSION TYPE JSON [--idempotency-key KEY]`: prints Burrow's receipt
/// (`session.externalEvent`'s: the run it wakes, which the host contract's outcome does
/// not name).
pub async fn event(socket: Option<PathBuf>, args: EventArgs) -> ExitCode {
    let EventArgs { session, event_type, payload, idempotency_key } = args;
    let payload: Value = match serde_json::from_str(&payload) {
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
    let params = json!({ "session_id": session, "kind": "generic_json", "event_type": event_type, "payload": payload, "idempotency_key": idempotency_key });
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
