//! The chat's own commands: `/help`, `/tools`, `/history`, `/sessions`, `/switch`,
//! `/quit`. Any other line, `/tool NAME {args}` for the echo provider among them, goes to
//! the agent.

use burrow_protocol::methods::session::SessionListParams;
use burrow_protocol::now_ms;
use burrow_sdk::Client;
use serde_json::json;

/// What a line typed in the chat is.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// Nothing typed.
    Empty,
    /// A message for the agent.
    Message(&'a str),
    /// `/help`.
    Help,
    /// `/tools`.
    Tools,
    /// `/history [N]`.
    History(u32),
    /// `/sessions`.
    Sessions,
    /// `/switch KEY`.
    Switch(&'a str),
    /// `/switch` without a key, or `/history` with a bad count: what to type instead.
    Usage(&'static str),
    /// `/quit`.
    Quit,
}

/// The help text, a line per command.
pub const HELP: &str = "\
/help             this list
/tools            the tools the agent may call
/history [N]      the last N messages of this session (default 20)
/sessions         the sessions, newest activity first
/switch KEY       chat in session KEY from now on
/quit             leave (also Ctrl-D, Ctrl-C)
anything else, /tool NAME {args} among it, goes to the agent";

/// Reads a line (already trimmed).
pub fn parse(line: &str) -> Line<'_> {
    let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let rest = rest.trim();
    match word {
        "" => Line::Empty,
        "/help" | "/?" => Line::Help,
        "/tools" => Line::Tools,
        "/sessions" => Line::Sessions,
        "/quit" | "/exit" => Line::Quit,
        "/history" if rest.is_empty() => Line::History(20),
        "/history" => match rest.parse() {
            Ok(n) if n > 0 => Line::History(n),
            _ => Line::Usage("/history [N]: N a positive number of messages"),
        },
        "/switch" if rest.is_empty() || rest.contains(char::is_whitespace) => {
            Line::Usage("/switch KEY: the session key to chat in")
        }
        "/switch" => Line::Switch(rest),
        _ => Line::Message(line),
    }
}

/// `/tools`: a line per tool, `name — description`.
pub async fn tools(client: &Client) -> Result<Vec<String>, String> {
    let list = client
        .request("kernel.capabilities", json!({ "type": "tool" }))
        .await
        .map_err(|e| e.to_string())?;
    let caps = list["capabilities"].as_array().cloned().unwrap_or_default();
    let mut lines: Vec<String> = caps
        .iter()
        .map(|c| {
            let name = c["config"]["name"].as_str().unwrap_or("?");
            match c["config"]["description"].as_str() {
                Some(d) if !d.is_empty() => format!("{name} — {d}"),
                _ => name.to_owned(),
            }
        })
        .collect();
    lines.sort();
    if lines.is_empty() {
        lines.push("no tools registered".into());
    }
    Ok(lines)
}

/// `/history N`: the session's last `n` messages.
pub async fn history(client: &Client, key: &str, n: u32) -> Result<Vec<String>, String> {
    let page = client.session_history(key, Some(n), None).await.map_err(|e| e.to_string())?;
    let lines: Vec<String> = page.messages.iter().flat_map(super::super::message_lines).collect();
    Ok(if lines.is_empty() { vec![format!("no messages in session {key} yet")] } else { lines })
}

/// `/sessions`: the sessions table.
pub async fn sessions(client: &Client) -> Result<Vec<String>, String> {
    let params = SessionListParams { limit: Some(20), ..Default::default() };
    let page = client.session_list(params).await.map_err(|e| e.to_string())?;
    let table = super::super::sessions_table(&page.sessions, page.total, now_ms());
    Ok(table.lines().map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_commands_are_read_and_everything_else_goes_to_the_agent() {
        assert_eq!(parse(""), Line::Empty);
        assert_eq!(parse("/help"), Line::Help);
        assert_eq!(parse("/tools"), Line::Tools);
        assert_eq!(parse("/sessions"), Line::Sessions);
        assert_eq!(parse("/quit"), Line::Quit);
        assert_eq!(parse("/history"), Line::History(20));
        assert_eq!(parse("/history 5"), Line::History(5));
        assert!(matches!(parse("/history zero"), Line::Usage(_)));
        assert!(matches!(parse("/history 0"), Line::Usage(_)));
        assert_eq!(parse("/switch work:1"), Line::Switch("work:1"));
        assert!(matches!(parse("/switch"), Line::Usage(_)));
        assert!(matches!(parse("/switch a b"), Line::Usage(_)));
        // The echo provider's tool syntax, other slashes and plain text: the agent's.
        assert_eq!(parse("/tool list_files {}"), Line::Message("/tool list_files {}"));
        assert_eq!(parse("/shrug"), Line::Message("/shrug"));
        assert_eq!(parse("hello there"), Line::Message("hello there"));
        for command in ["/help", "/tools", "/history", "/sessions", "/switch", "/quit"] {
            assert!(HELP.contains(command), "{command} is in /help");
        }
    }
}
