//! Session commands (PROTOCOL.md §8): `sessions`, `history`, `send`, and `chat`, an
//! interactive terminal channel. All of them register the CLI as an app first.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use burrow_protocol::methods::invoke::Role;
use burrow_protocol::methods::session::{
    AgentWaitResult, DispatchResult, RunStatus, SessionFilter, SessionInfo, SessionListParams,
    TranscriptMessage,
};
use burrow_protocol::{ErrorCode, ErrorObject, now_ms};
use serde_json::json;

use super::client::{fail, human_duration, print_json};
use super::ops::registered;

mod chat;

pub use chat::{ChatArgs, chat};

/// Arguments of `burrow sessions`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only this agent's sessions.
    #[arg(long, value_name = "ID")]
    agent: Option<String>,
    /// Only sessions replying through this channel.
    #[arg(long, value_name = "ID")]
    channel: Option<String>,
    /// Only this account's sessions.
    #[arg(long, value_name = "ID")]
    account: Option<String>,
    /// Only sessions resident in memory.
    #[arg(long, conflicts_with = "inactive")]
    active: bool,
    /// Only sessions not resident in memory.
    #[arg(long)]
    inactive: bool,
    /// How many to show (kernel default 50, at most 1000).
    #[arg(long, value_name = "N")]
    limit: Option<u32>,
    /// How many to skip.
    #[arg(long, value_name = "N")]
    offset: Option<u32>,
}

/// Arguments of `burrow history`.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// The session key.
    key: String,
    /// How many of the newest messages (kernel default 100, at most 1000).
    #[arg(long, value_name = "N")]
    limit: Option<u32>,
    /// Page back: only messages before this message id.
    #[arg(long, value_name = "ID")]
    before: Option<String>,
}

/// Arguments of `burrow send`.
#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// The session key.
    key: String,
    /// The message.
    text: String,
    /// Wait for the agent run it starts and print its output.
    #[arg(long)]
    wait: bool,
    /// How long `--wait` waits for the run (the kernel waits 600000 ms at most).
    #[arg(long, default_value_t = 60_000, value_name = "MS")]
    timeout_ms: u64,
}

/// `burrow sessions`.
pub async fn list(socket: Option<PathBuf>, a: ListArgs, json: bool) -> ExitCode {
    let reg = match registered(socket).await {
        Ok(r) => r,
        Err(code) => return code,
    };
    let active = if a.active { Some(true) } else { a.inactive.then_some(false) };
    let filter = SessionFilter {
        agent_id: a.agent,
        channel_id: a.channel,
        account_id: a.account,
        active,
        keep_alive: None,
        labels: None,
    };
    let params = SessionListParams { filter: Some(filter), limit: a.limit, offset: a.offset };
    match reg.client.session_list(params).await {
        Ok(r) if json => print_json(&r),
        Ok(r) => print!("{}", sessions_table(&r.sessions, r.total, now_ms())),
        Err(e) => return fail(e),
    }
    ExitCode::SUCCESS
}

/// `burrow history KEY`.
pub async fn history(socket: Option<PathBuf>, a: HistoryArgs, json: bool) -> ExitCode {
    let reg = match registered(socket).await {
        Ok(r) => r,
        Err(code) => return code,
    };
    let client = &reg.client;
    match client.session_history(&a.key, a.limit, a.before.as_deref()).await {
        // An empty page of a session that does not exist: not found, like other lookups.
        Ok(r) if r.messages.is_empty() && matches!(client.session_get(&a.key).await, Ok(None)) => {
            let message = format!("no session {:?}", a.key);
            let hint = "`burrow sessions` lists the sessions";
            super::client::report(&ErrorObject::new(ErrorCode::NotFound, message), Some(hint));
            return ExitCode::FAILURE;
        }
        Ok(r) if json => print_json(&r),
        Ok(r) if r.messages.is_empty() => eprintln!("no messages in session {:?}", a.key),
        Ok(r) => r.messages.iter().flat_map(message_lines).for_each(|l| println!("{l}")),
        Err(e) => return fail(e),
    }
    ExitCode::SUCCESS
}

/// `burrow send KEY TEXT`.
pub async fn send(socket: Option<PathBuf>, a: SendArgs, json: bool) -> ExitCode {
    let reg = match registered(socket).await {
        Ok(r) => r,
        Err(code) => return code,
    };
    let d = match reg.client.dispatch(&a.key, &a.text, None).await {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    if json && !a.wait {
        print_json(&d);
    } else if !json {
        println!("dispatch {} in session {}: {}", d.dispatch_id, a.key, run_summary(&d));
    }
    if let Some(reason) = &d.reason {
        eprintln!("burrow: the message was blocked: {reason}");
        return ExitCode::FAILURE;
    }
    if !a.wait {
        return ExitCode::SUCCESS;
    }
    let Some(run_id) = d.run_id.clone() else {
        eprintln!("burrow: no run was started: nothing to wait for");
        return ExitCode::FAILURE;
    };
    let timeout = Duration::from_millis(a.timeout_ms);
    let wait = reg.client.agent_wait(&run_id, Some(timeout));
    let w = match tokio::time::timeout(timeout + Duration::from_secs(5), wait).await {
        Ok(Ok(w)) => w,
        Ok(Err(e)) => return fail(e),
        Err(_) => {
            eprintln!("burrow: the kernel did not answer agent.wait in time");
            return ExitCode::FAILURE;
        }
    };
    let outcome = run_outcome(&w);
    if json {
        print_json(&json!({ "dispatch": d, "run": w }));
    }
    match outcome {
        Ok(output) if !json => println!("{output}"),
        Ok(_) => {}
        Err(why) => {
            eprintln!("burrow: {why}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// What a dispatch started, in words.
fn run_summary(d: &DispatchResult) -> String {
    match (&d.reason, &d.run_id) {
        (Some(reason), _) => format!("blocked ({reason})"),
        (None, Some(run)) if d.queued => format!("run {run} (queued)"),
        (None, Some(run)) => format!("run {run}"),
        (None, None) if d.queued => "stored (queued), no run".into(),
        (None, None) => "stored, no run".into(),
    }
}

/// A run's output when it completed, else why not.
fn run_outcome(w: &AgentWaitResult) -> Result<String, String> {
    let id = &w.run_id;
    match w.status {
        RunStatus::Completed => Ok(w.output.clone().unwrap_or_default()),
        RunStatus::Failed => {
            Err(format!("run {id} failed: {}", w.error.as_deref().unwrap_or("no reason given")))
        }
        RunStatus::Cancelled => Err(format!("run {id} was cancelled")),
        RunStatus::Queued => Err(format!("run {id} is still queued")),
        RunStatus::Running => Err(format!("run {id} is still running")),
    }
}

/// The `burrow sessions` table, with a line about further pages.
fn sessions_table(sessions: &[SessionInfo], total: u64, now: u64) -> String {
    if sessions.is_empty() {
        return match total {
            0 => "no sessions\n".into(),
            n => format!("no sessions on this page ({n} in all)\n"),
        };
    }
    let header = ["KEY", "AGENT", "CHANNEL", "MESSAGES", "LAST ACTIVE", "ACTIVE"].map(String::from);
    let rows: Vec<[String; 6]> = std::iter::once(header)
        .chain(sessions.iter().map(|s| {
            [
                s.key.clone(),
                s.agent_id.clone(),
                s.channel_id.clone().unwrap_or_else(|| "-".into()),
                s.message_count.to_string(),
                format!("{} ago", human_duration(now.saturating_sub(s.last_active_at) / 1000)),
                if s.active { "yes" } else { "no" }.into(),
            ]
        }))
        .collect();
    let mut widths = [0; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    if total > sessions.len() as u64 {
        out.push_str(&format!(
            "({} of {total} sessions; see --limit and --offset)\n",
            sessions.len()
        ));
    }
    out
}

/// One transcript message as `role: content` lines.
fn message_lines(m: &TranscriptMessage) -> Vec<String> {
    let calls = m.tool_calls.as_deref().unwrap_or_default();
    match m.role {
        Role::Tool => {
            vec![format!("tool[{}]: {}", m.tool_call_id.as_deref().unwrap_or("?"), m.content)]
        }
        Role::Assistant if !calls.is_empty() => {
            let said = (!m.content.is_empty()).then(|| format!("assistant: {}", m.content));
            let asked =
                calls.iter().map(|c| format!("assistant → tool {} {}", c.name, c.arguments));
            said.into_iter().chain(asked).collect()
        }
        role => {
            let role = match role {
                Role::System => "system",
                Role::User => "user",
                Role::Assistant | Role::Tool => "assistant",
            };
            vec![format!("{role}: {}", m.content)]
        }
    }
}

#[cfg(test)]
mod tests {
    use burrow_protocol::methods::invoke::ToolCallRequest;
    use serde_json::json;

    use super::*;

    fn session(key: &str, channel: Option<&str>, ago_s: u64, active: bool) -> SessionInfo {
        SessionInfo {
            key: key.into(),
            agent_id: "main".into(),
            channel_id: channel.map(Into::into),
            account_id: None,
            created_at: 0,
            last_active_at: 1_000_000 - ago_s * 1000,
            message_count: 12,
            active,
            keep_alive: false,
            comms_name: None,
        }
    }

    fn message(role: Role, content: &str) -> TranscriptMessage {
        TranscriptMessage {
            id: "m".into(),
            role,
            content: content.into(),
            created_at: 0,
            metadata: None,
            tool_calls: None,
            tool_call_id: None,
            run_id: None,
        }
    }

    fn wait(status: RunStatus, output: Option<&str>, error: Option<&str>) -> AgentWaitResult {
        let (output, error) = (output.map(Into::into), error.map(Into::into));
        AgentWaitResult { run_id: "r1".into(), status, output, error }
    }

    #[test]
    fn the_sessions_table_aligns_columns_and_tells_of_more_pages() {
        let rows =
            [session("chat:alice", Some("terminal-7"), 65, true), session("k1", None, 5, false)];
        assert_eq!(
            sessions_table(&rows, 3, 1_000_000),
            "KEY         AGENT  CHANNEL     MESSAGES  LAST ACTIVE  ACTIVE\n\
             chat:alice  main   terminal-7  12        1m05s ago    yes\n\
             k1          main   -           12        5s ago       no\n\
             (2 of 3 sessions; see --limit and --offset)\n"
        );
        assert_eq!(sessions_table(&rows, 2, 1_000_000).lines().count(), 3);
        assert_eq!(sessions_table(&[], 0, 0), "no sessions\n");
        assert_eq!(sessions_table(&[], 4, 0), "no sessions on this page (4 in all)\n");
    }

    #[test]
    fn history_lines_show_roles_tool_calls_and_results() {
        assert_eq!(message_lines(&message(Role::User, "hi")), ["user: hi"]);
        assert_eq!(message_lines(&message(Role::System, "be nice")), ["system: be nice"]);
        assert_eq!(message_lines(&message(Role::Assistant, "echo: hi")), ["assistant: echo: hi"]);
        let mut call = message(Role::Assistant, "");
        call.tool_calls = Some(vec![
            ToolCallRequest { id: "c1".into(), name: "read".into(), arguments: json!({"p": 1}) },
            ToolCallRequest { id: "c2".into(), name: "ls".into(), arguments: json!({}) },
        ]);
        assert_eq!(
            message_lines(&call),
            ["assistant → tool read {\"p\":1}", "assistant → tool ls {}"]
        );
        call.content = "looking".into();
        assert_eq!(message_lines(&call)[0], "assistant: looking");
        assert_eq!(message_lines(&call).len(), 3);
        let mut result = message(Role::Tool, "42");
        result.tool_call_id = Some("c1".into());
        assert_eq!(message_lines(&result), ["tool[c1]: 42"]);
    }

    #[test]
    fn runs_and_dispatches_in_words() {
        assert_eq!(
            run_outcome(&wait(RunStatus::Completed, Some("echo: hi"), None)),
            Ok("echo: hi".into())
        );
        assert_eq!(
            run_outcome(&wait(RunStatus::Failed, None, Some("no provider"))),
            Err("run r1 failed: no provider".into())
        );
        assert_eq!(
            run_outcome(&wait(RunStatus::Running, None, None)),
            Err("run r1 is still running".into())
        );
        let d = |queued, run: Option<&str>, reason: Option<&str>| DispatchResult {
            dispatch_id: "d1".into(),
            queued,
            run_id: run.map(Into::into),
            reason: reason.map(Into::into),
        };
        assert_eq!(run_summary(&d(false, Some("r1"), None)), "run r1");
        assert_eq!(run_summary(&d(true, Some("r1"), None)), "run r1 (queued)");
        assert_eq!(run_summary(&d(false, None, None)), "stored, no run");
        assert_eq!(run_summary(&d(false, None, Some("spam"))), "blocked (spam)");
    }
}
