//! `burrow chat`: an interactive terminal channel. The CLI registers as app `chat-<pid>`
//! holding channel `terminal-<session key>`, dispatches each line typed into the session, and
//! prints the `channel.send` requests the kernel makes for that session.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use burrow_protocol::methods::app::{
    AppReady, AppRegister, AppShutdown, PROTOCOL_VERSION, ReadyParams, RegisterParams,
    ShutdownParams,
};
use burrow_protocol::methods::invoke::{ChannelSend, ChannelSendParams, ChannelSendResult};
use burrow_protocol::methods::session::{AgentWaitResult, RunStatus, SessionInfo};
use burrow_protocol::methods::{Ack, Method, parse_params, to_value};
use burrow_protocol::{ErrorCode, ErrorObject, Manifest, Map, Request, Value};
use burrow_sdk::peer::{BoxFuture, Service};
use burrow_sdk::{CapabilityType, Client, Transport};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::super::client::fail;
use super::{run_outcome, run_summary};

/// Arguments of `burrow chat`.
#[derive(Debug, clap::Args)]
pub struct ChatArgs {
    /// The session key [default: chat:$USER, else chat:local].
    key: Option<String>,
    /// How long to wait for the reply to a message before looking at its run.
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    reply_timeout_ms: u64,
}

/// What the chat loop hears besides stdin.
enum Event {
    /// A `channel.send` for our session.
    Reply(String),
    /// The kernel asked us to leave.
    Shutdown,
    /// An `agent.wait` on a dispatched run answered.
    RunEnded(AgentWaitResult),
}

/// Serves the kernel's requests to the terminal channel.
struct Terminal {
    key: String,
    channel_id: String,
    sent: AtomicU64,
    events: mpsc::UnboundedSender<Event>,
}

impl Terminal {
    fn channel_send(&self, params: Value) -> Result<Value, ErrorObject> {
        let p: ChannelSendParams = parse_params(params)?;
        if p.session_key != self.key {
            let why = format!("{} only shows session {:?}", self.channel_id, self.key);
            return Err(ErrorObject::new(ErrorCode::NotFound, why));
        }
        let n = self.sent.fetch_add(1, Ordering::Relaxed) + 1;
        let _ = self.events.send(Event::Reply(p.content));
        Ok(to_value(&ChannelSendResult { message_id: Some(format!("{}-{n}", self.channel_id)) }))
    }
}

impl Service for Terminal {
    fn request(&self, req: Request, _client: Client) -> BoxFuture<Result<Value, ErrorObject>> {
        let answer = match req.method.as_str() {
            ChannelSend::NAME => self.channel_send(req.params),
            AppShutdown::NAME => {
                let _ = self.events.send(Event::Shutdown);
                Ok(to_value(&Ack::OK))
            }
            m => Err(ErrorObject::new(ErrorCode::MethodNotFound, format!("no method {m:?}"))),
        };
        Box::pin(std::future::ready(answer))
    }
}

/// Registers `chat-<pid>` holding channel `channel_id` and becomes ready; the client is
/// kept alive for as long as the chat runs.
async fn setup(client: &Client, channel_id: &str) -> Result<(), ExitCode> {
    let mut manifest = Manifest::new(format!("chat-{}", std::process::id()), crate::VERSION);
    manifest.description = Some("burrow chat: a terminal channel".into());
    manifest.capabilities.channels = vec![channel_id.to_owned()];
    let params =
        RegisterParams { manifest, protocol_version: PROTOCOL_VERSION.into(), token: None };
    client.call::<AppRegister>(params).await.map_err(fail)?;
    client.keep_alive();
    client.call::<AppReady>(ReadyParams::default()).await.map_err(fail)?;
    let config = json!({ "channelId": channel_id });
    let cap = client.register_capability(CapabilityType::Channel, config).await.map_err(fail)?;
    if !cap.granted {
        let why = cap.reason.unwrap_or_default();
        eprintln!("burrow: the kernel refused channel {channel_id}: {why}");
        return Err(ExitCode::FAILURE);
    }
    Ok(())
}

/// Lines of stdin, read on a thread of their own (a pending read never holds up exit).
fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { return };
            if tx.blocking_send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Why waiting for the reply to a run that ended is pointless, if it is.
fn ended_without_reply(w: &AgentWaitResult) -> Option<String> {
    match (w.status, run_outcome(w)) {
        (RunStatus::Failed | RunStatus::Cancelled, Err(why)) => Some(why),
        (RunStatus::Completed, Ok(out)) if out.is_empty() => {
            Some(format!("run {} ended without a reply", w.run_id))
        }
        _ => None,
    }
}

/// Why no reply to run `w` came back to channel `ours` of session `key` in time.
fn no_reply_hint(
    key: &str,
    ours: &str,
    session: Option<&SessionInfo>,
    w: &AgentWaitResult,
) -> String {
    if let Some(why) = ended_without_reply(w) {
        return why;
    }
    let new = "chat in a new session here with `burrow chat NEW-KEY`";
    match (w.status, session.and_then(|s| s.channel_id.as_deref())) {
        (RunStatus::Completed, Some(c)) if c != ours => format!(
            "run {} completed, but session {key} replies through channel {c}, not this \
             terminal (a session keeps the channel it was created with); {new}",
            w.run_id
        ),
        (RunStatus::Completed, None) => format!(
            "run {} completed, but session {key} has no channel to reply through; {new}",
            w.run_id
        ),
        (RunStatus::Completed, Some(_)) => format!("run {} completed; no reply came", w.run_id),
        _ => {
            let status = run_outcome(w).err().unwrap_or_default();
            format!("{status}; its reply will show here when it comes")
        }
    }
}

/// The chat between events.
struct Chat {
    client: Client,
    key: String,
    channel_id: String,
    reply_timeout: Duration,
    events: mpsc::UnboundedSender<Event>,
    /// The run whose reply is awaited before reading on, and until when.
    pending: Option<(String, Instant)>,
    /// Whether `you: ` is the last thing on the screen.
    prompted: bool,
}

impl Chat {
    fn prompt(&mut self) {
        self.prompted = true;
        print!("you: ");
        let _ = std::io::stdout().flush();
    }

    fn on_reply(&mut self, text: &str) {
        println!("{}agent: {text}", if self.prompted { "\r" } else { "" });
        if self.pending.take().is_some() || self.prompted {
            self.prompt();
        }
    }

    fn on_run_end(&mut self, w: &AgentWaitResult) {
        let ours = self.pending.as_ref().is_some_and(|p| p.0 == w.run_id);
        if let (true, Some(why)) = (ours, ended_without_reply(w)) {
            eprintln!("burrow: {why}");
            self.pending = None;
            self.prompt();
        }
    }

    async fn on_line(&mut self, line: &str) {
        self.prompted = false;
        if !line.is_empty() {
            let mut meta = Map::new();
            meta.insert("channelId".into(), self.channel_id.clone().into());
            match self.client.dispatch(&self.key, line, Some(meta)).await {
                Err(e) => eprintln!("burrow: the message was not taken: {e}"),
                Ok(d) if d.reason.is_some() => eprintln!("burrow: {}", run_summary(&d)),
                Ok(d) => {
                    if let Some(run) = d.run_id {
                        self.watch(run);
                    }
                }
            }
        }
        if self.pending.is_none() {
            self.prompt();
        }
    }

    /// Awaits the reply to `run`, and learns early when it ends without one.
    fn watch(&mut self, run: String) {
        let (client, events, timeout) =
            (self.client.clone(), self.events.clone(), self.reply_timeout);
        let id = run.clone();
        tokio::spawn(async move {
            if let Ok(w) = client.agent_wait(&id, Some(timeout)).await {
                let _ = events.send(Event::RunEnded(w));
            }
        });
        self.pending = Some((run, Instant::now() + self.reply_timeout));
    }

    async fn on_deadline(&mut self) {
        let Some((run, _)) = self.pending.take() else { return };
        let secs = self.reply_timeout.as_secs_f64();
        let session = self.client.session_get(&self.key).await.ok().flatten();
        match self.client.agent_wait(&run, Some(Duration::ZERO)).await {
            Ok(w) => {
                let hint = no_reply_hint(&self.key, &self.channel_id, session.as_ref(), &w);
                eprintln!("burrow: no reply in {secs}s: {hint}");
            }
            Err(e) => eprintln!("burrow: no reply in {secs}s, and agent.wait failed: {e}"),
        }
        self.prompt();
    }
}

/// `burrow chat [KEY]`.
pub async fn chat(socket: Option<PathBuf>, a: ChatArgs) -> ExitCode {
    let key = a.key.unwrap_or_else(|| match std::env::var("USER") {
        Ok(user) if !user.is_empty() => format!("chat:{user}"),
        _ => "chat:local".into(),
    });
    // The channel is named after the session, so the session's replies come back to a
    // chat started again later on the same key (a session keeps its first channel).
    let channel_id = match format!("terminal-{key}") {
        id if id.len() <= 128 && !id.chars().any(|c| c.is_whitespace() || c.is_control()) => id,
        _ => format!("terminal-{}", std::process::id()),
    };
    let path = socket.unwrap_or_else(burrow_sdk::transport::socket_from_env);
    let transport = match Transport::connect(&path).await {
        Ok(t) => t,
        Err(e) => {
            crate::cli::client::unreachable_kernel(&path, &e);
            return ExitCode::from(2);
        }
    };
    let (tx, mut events) = mpsc::unbounded_channel();
    let terminal = Terminal {
        key: key.clone(),
        channel_id: channel_id.clone(),
        sent: AtomicU64::new(0),
        events: tx.clone(),
    };
    let client = Client::with_service(transport, terminal);
    if let Err(code) = setup(&client, &channel_id).await {
        return code;
    }
    if let Ok(Some(s)) = client.session_get(&key).await
        && s.channel_id.as_deref() != Some(&channel_id)
    {
        let via = s.channel_id.map_or("has no channel".into(), |c| format!("replies through {c}"));
        eprintln!("note: session {key} already exists and {via}: its replies will not show here");
    }
    eprintln!("chatting in session {key} as channel {channel_id}; /quit or end of input leaves");
    let reply_timeout = Duration::from_millis(a.reply_timeout_ms);
    let mut chat =
        Chat { client, key, channel_id, reply_timeout, events: tx, pending: None, prompted: false };
    let mut lines = stdin_lines();
    chat.prompt();
    loop {
        let deadline = chat.pending.as_ref().map_or_else(Instant::now, |p| p.1);
        tokio::select! {
            biased;
            event = events.recv() => match event {
                Some(Event::Reply(text)) => chat.on_reply(&text),
                Some(Event::RunEnded(w)) => chat.on_run_end(&w),
                Some(Event::Shutdown) | None => {
                    eprintln!("\nburrow: the kernel is stopping");
                    chat.client.close(Duration::from_secs(1)).await;
                    return ExitCode::SUCCESS;
                }
            },
            line = lines.recv(), if chat.pending.is_none() => match line.as_deref().map(str::trim) {
                Some("/quit") => return leave(&chat.client).await,
                Some(line) => chat.on_line(line).await,
                None => {
                    println!();
                    return leave(&chat.client).await;
                }
            },
            () = tokio::time::sleep_until(deadline), if chat.pending.is_some() => {
                chat.on_deadline().await;
            }
            () = chat.client.closed() => {
                eprintln!("\nburrow: the kernel went away");
                return ExitCode::FAILURE;
            }
            _ = tokio::signal::ctrl_c() => {
                println!();
                return leave(&chat.client).await;
            }
        }
    }
}

/// Leaves the kernel cleanly: `app.shutdown`, then closes.
async fn leave(client: &Client) -> ExitCode {
    let params = ShutdownParams { reason: Some("chat ended".into()), timeout: None };
    let bye = client.call_with_timeout::<AppShutdown>(params, Duration::from_secs(5)).await;
    client.close(Duration::from_secs(1)).await;
    match bye {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(status: RunStatus, output: Option<&str>, error: Option<&str>) -> AgentWaitResult {
        let (output, error) = (output.map(Into::into), error.map(Into::into));
        AgentWaitResult { run_id: "r1".into(), status, output, error }
    }

    fn session(channel: Option<&str>) -> SessionInfo {
        SessionInfo {
            key: "k".into(),
            agent_id: "main".into(),
            channel_id: channel.map(Into::into),
            account_id: None,
            created_at: 0,
            last_active_at: 0,
            message_count: 2,
            active: true,
            keep_alive: false,
            comms_name: None,
        }
    }

    #[test]
    fn a_run_that_ended_without_a_reply_is_told_at_once() {
        let failed = wait(RunStatus::Failed, None, Some("boom"));
        assert_eq!(ended_without_reply(&failed).as_deref(), Some("run r1 failed: boom"));
        let empty = wait(RunStatus::Completed, Some(""), None);
        assert_eq!(ended_without_reply(&empty).as_deref(), Some("run r1 ended without a reply"));
        assert_eq!(ended_without_reply(&wait(RunStatus::Completed, Some("hi"), None)), None);
        assert_eq!(ended_without_reply(&wait(RunStatus::Running, None, None)), None);
    }

    #[test]
    fn the_hint_names_the_channel_the_reply_went_to() {
        let done = wait(RunStatus::Completed, Some("hi"), None);
        let elsewhere = session(Some("telegram"));
        let hint = no_reply_hint("k", "terminal-1", Some(&elsewhere), &done);
        assert!(hint.contains("replies through channel telegram, not this terminal"), "{hint}");
        assert!(hint.contains("burrow chat NEW-KEY"), "{hint}");
        let hint = no_reply_hint("k", "terminal-1", Some(&session(None)), &done);
        assert!(hint.contains("has no channel"), "{hint}");
        let hint = no_reply_hint("k", "terminal-1", Some(&session(Some("terminal-1"))), &done);
        assert_eq!(hint, "run r1 completed; no reply came");
        let running = wait(RunStatus::Running, None, None);
        let hint = no_reply_hint("k", "terminal-1", None, &running);
        assert_eq!(hint, "run r1 is still running; its reply will show here when it comes");
        let failed = wait(RunStatus::Failed, None, Some("boom"));
        assert_eq!(no_reply_hint("k", "t", Some(&elsewhere), &failed), "run r1 failed: boom");
    }
}
