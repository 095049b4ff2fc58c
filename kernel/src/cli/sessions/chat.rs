//! `burrow chat`: an interactive terminal channel. The CLI registers as app `chat-<pid>`
//! holding channel `terminal-<session key>`, dispatches each line typed into the session,
//! prints the `channel.send` requests the kernel makes for that session, and shows what
//! others put into the session (comms, external events, other channels' messages) as
//! `<<` lines. Lines starting with a chat command ([`commands`]) are the chat's own.

mod commands;

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
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
    /// More of a reply's text as the model produces it: `(run id, seq, text)`.
    Delta(String, u64, String),
    /// Something others put into our session, as a line.
    Injected(String),
    /// The kernel asked us to leave.
    Shutdown,
    /// An `agent.wait` on a dispatched run answered.
    RunEnded(AgentWaitResult),
}

/// The session the chat shows and the channel it holds for it (`/switch` changes both).
#[derive(Debug, Clone, Default)]
struct Shown {
    key: String,
    channel_id: String,
}

/// The channel a chat holds for session `key`: named after it, so the session's replies
/// come back to a chat started again later on the same key (a session keeps its first
/// channel).
fn channel_for(key: &str) -> String {
    match format!("terminal-{key}") {
        id if id.len() <= 128 && !id.chars().any(|c| c.is_whitespace() || c.is_control()) => id,
        _ => format!("terminal-{}", std::process::id()),
    }
}

/// Serves the kernel's requests to the terminal channel.
struct Terminal {
    shown: Arc<RwLock<Shown>>,
    sent: AtomicU64,
    events: mpsc::UnboundedSender<Event>,
}

impl Terminal {
    fn channel_send(&self, params: Value) -> Result<Value, ErrorObject> {
        let p: ChannelSendParams = parse_params(params)?;
        let shown = self.shown.read().map(|s| s.clone()).unwrap_or_default();
        if p.session_key != shown.key {
            let why = format!("{} only shows session {:?}", shown.channel_id, shown.key);
            return Err(ErrorObject::new(ErrorCode::NotFound, why));
        }
        let n = self.sent.fetch_add(1, Ordering::Relaxed) + 1;
        let _ = self.events.send(Event::Reply(p.content));
        let message_id = Some(format!("{}-{n}", shown.channel_id));
        Ok(to_value(&ChannelSendResult { message_id }))
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

/// Registers `chat-<pid>`, which may hold the terminal channels, and becomes ready; the
/// client is kept alive for as long as the chat runs.
async fn setup(client: &Client) -> Result<(), ExitCode> {
    let mut manifest = Manifest::new(format!("chat-{}", std::process::id()), crate::VERSION);
    manifest.description = Some("burrow chat: a terminal channel".into());
    manifest.capabilities.channels = vec!["terminal-*".to_owned()];
    let params =
        RegisterParams { manifest, protocol_version: PROTOCOL_VERSION.into(), token: None };
    client.call::<AppRegister>(params).await.map_err(fail)?;
    client.keep_alive();
    client.call::<AppReady>(ReadyParams::default()).await.map_err(fail)?;
    Ok(())
}

/// A line for a session event that others caused: a user message that did not come
/// from channel `ours` (comms, an external event, another channel's message).
fn injected(event: &Value, ours: &str) -> Option<String> {
    if event["type"] != "message" || event["role"] != "user" {
        return None;
    }
    let meta = &event["metadata"];
    if meta["channelId"].as_str() == Some(ours) {
        return None;
    }
    let content = event["content"].as_str().unwrap_or_default();
    Some(if let Some(c) = meta.get("comms").filter(|c| c.is_object()) {
        let from = c["from_name"].as_str().or(c["from"].as_str()).unwrap_or("?");
        format!("<< {} from {from}: {content}", c["kind"].as_str().unwrap_or("comms"))
    } else if let Some(e) = meta.get("external_event").filter(|e| e.is_object()) {
        format!("<< event {}: {content}", e["event_type"].as_str().unwrap_or("?"))
    } else {
        let via = meta["channelId"].as_str().map_or(String::new(), |c| format!(" (via {c})"));
        format!("<< {content}{via}")
    })
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
    shown: Arc<RwLock<Shown>>,
    reply_timeout: Duration,
    events: mpsc::UnboundedSender<Event>,
    /// The run whose reply is awaited before reading on, and until when.
    pending: Option<(String, Instant)>,
    /// Whether `you: ` is the last thing on the screen.
    prompted: bool,
    /// The channel capability held for the session shown.
    channel_cap: Option<String>,
    /// Follows the session's events (what others put into it), once it exists.
    follower: Option<tokio::task::JoinHandle<()>>,
    /// The reply being shown as it is produced: its run, and the text shown so far.
    streamed: Option<(String, String)>,
    /// The run whose reply was shown last: deltas of it that come later are ignored.
    finished: Option<String>,
}

impl Drop for Chat {
    fn drop(&mut self) {
        if let Some(f) = self.follower.take() {
            f.abort();
        }
    }
}

impl Chat {
    fn key(&self) -> String {
        self.shown.read().map(|s| s.key.clone()).unwrap_or_default()
    }

    fn channel_id(&self) -> String {
        self.shown.read().map(|s| s.channel_id.clone()).unwrap_or_default()
    }

    fn prompt(&mut self) {
        self.prompted = true;
        print!("you: ");
        let _ = std::io::stdout().flush();
    }

    /// Prints `text` above the prompt.
    fn say(&mut self, text: &str) {
        println!("{}{text}", if self.prompted { "\r" } else { "" });
    }

    fn on_reply(&mut self, text: &str) {
        match self.streamed.take() {
            // Shown as it was produced, maybe not to its end yet (the reply can overtake
            // its last deltas): the rest, and the line ends. Its late deltas are ignored.
            Some((run, shown)) if text.starts_with(&shown) => {
                println!("{}", &text[shown.len()..]);
                self.finished = Some(run);
            }
            // Changed on its way (an interceptor): the reply as sent.
            Some((run, _)) => {
                println!("\nagent: {text}");
                self.finished = Some(run);
            }
            None => self.say(&format!("agent: {text}")),
        }
        if self.pending.take().is_some() || self.prompted {
            self.prompt();
        }
    }

    /// Prints more of a reply as the model produces it, on the `agent:` line. A reply
    /// whose beginning was missed (the chat followed the session only after its first
    /// message) is not streamed: it shows whole when it comes.
    fn on_delta(&mut self, run: String, seq: u64, text: &str) {
        if self.finished.as_deref() == Some(run.as_str()) {
            return;
        }
        match &mut self.streamed {
            Some((current, shown)) if *current == run => shown.push_str(text),
            _ if seq > 0 => return,
            _ => {
                if let Some(_unfinished) = self.streamed.take() {
                    println!();
                }
                print!("{}agent: ", if self.prompted { "\r" } else { "" });
                self.prompted = false;
                self.streamed = Some((run, text.to_owned()));
            }
        }
        print!("{text}");
        let _ = std::io::stdout().flush();
    }

    fn on_injected(&mut self, line: &str) {
        let again = self.prompted;
        self.say(line);
        if again {
            self.prompt();
        }
    }

    fn on_run_end(&mut self, w: &AgentWaitResult) {
        // A run streamed here whose reply went elsewhere (or nowhere): end its line.
        if ended_without_reply(w).is_some()
            && self.streamed.as_ref().is_some_and(|(run, _)| *run == w.run_id)
        {
            self.streamed = None;
            println!();
        }
        let ours = self.pending.as_ref().is_some_and(|p| p.0 == w.run_id);
        if let (true, Some(why)) = (ours, ended_without_reply(w)) {
            eprintln!("burrow: {why}");
            self.pending = None;
            self.prompt();
        }
    }

    /// Holds session `key`'s channel (letting go of the one before) and shows it.
    async fn attach(&mut self, key: &str) -> Result<(), String> {
        if self.channel_cap.is_some() && self.key() == key {
            eprintln!("already chatting in session {key}");
            return Ok(());
        }
        let channel_id = channel_for(key);
        let config = json!({ "channelId": channel_id });
        let cap = self
            .client
            .register_capability(CapabilityType::Channel, config)
            .await
            .map_err(|e| e.to_string())?;
        if !cap.granted {
            let why = cap.reason.unwrap_or_default();
            return Err(format!(
                "session {key} is open in another chat ({why}); chat in another session: \
                 `burrow chat OTHER-KEY`, or /switch OTHER-KEY"
            ));
        }
        if let Some(old) = self.channel_cap.replace(cap.capability_id) {
            let _ = self.client.unregister_capability(&old).await;
        }
        if let Ok(mut shown) = self.shown.write() {
            *shown = Shown { key: key.to_owned(), channel_id: channel_id.clone() };
        }
        if let Some(f) = self.follower.take() {
            f.abort();
        }
        self.follow().await;
        if let Ok(Some(s)) = self.client.session_get(key).await
            && s.channel_id.as_deref() != Some(&channel_id)
        {
            let via =
                s.channel_id.map_or("has no channel".into(), |c| format!("replies through {c}"));
            eprintln!(
                "note: session {key} already exists and {via}: its replies will not show here"
            );
        }
        eprintln!("chatting in session {key} as channel {channel_id}; /help lists the commands");
        Ok(())
    }

    /// Starts following the session's events (from its creation, when it has not been
    /// created yet), unless followed already (a follower that ended, as at a kernel's
    /// stop, is started again).
    async fn follow(&mut self) {
        if self.follower.as_ref().is_some_and(|f| !f.is_finished()) {
            return;
        }
        let (key, ours) = (self.key(), self.channel_id());
        let params = json!({ "session_id": key, "allow_new": true });
        let Ok(mut stream) = self.client.request_stream("session.events", params).await else {
            return;
        };
        let events = self.events.clone();
        self.follower = Some(tokio::spawn(async move {
            use futures_util::StreamExt;
            while let Some(Ok(burrow_sdk::StreamItem::Chunk(event))) = stream.next().await {
                let sent = match (event["type"].as_str(), event["run_id"].as_str()) {
                    (Some("text_delta"), Some(run)) => {
                        let text = event["text"].as_str().unwrap_or_default().to_owned();
                        let seq = event["seq"].as_u64().unwrap_or_default();
                        events.send(Event::Delta(run.to_owned(), seq, text))
                    }
                    _ => match injected(&event, &ours) {
                        Some(line) => events.send(Event::Injected(line)),
                        None => Ok(()),
                    },
                };
                if sent.is_err() {
                    return;
                }
            }
        }));
    }

    /// A line typed: a chat command, or a message for the agent. False to leave.
    async fn on_line(&mut self, line: &str) -> bool {
        self.prompted = false;
        let shown = |lines: Result<Vec<String>, String>| match lines {
            Ok(lines) => lines.iter().for_each(|l| println!("{l}")),
            Err(e) => eprintln!("burrow: {e}"),
        };
        match commands::parse(line) {
            commands::Line::Quit => return false,
            commands::Line::Empty => {}
            commands::Line::Help => println!("{}", commands::HELP),
            commands::Line::Usage(usage) => eprintln!("usage: {usage}"),
            commands::Line::Tools => shown(commands::tools(&self.client).await),
            commands::Line::Sessions => shown(commands::sessions(&self.client).await),
            commands::Line::History(n) => {
                shown(commands::history(&self.client, &self.key(), n).await)
            }
            commands::Line::Switch(key) => {
                if let Err(e) = self.attach(key).await {
                    eprintln!("burrow: {e}");
                }
            }
            commands::Line::Message(text) => self.send(text).await,
        }
        if self.pending.is_none() {
            self.prompt();
        }
        true
    }

    /// Dispatches `text` into the session, and awaits the reply.
    async fn send(&mut self, text: &str) {
        let mut meta = Map::new();
        meta.insert("channelId".into(), self.channel_id().into());
        match self.client.dispatch(&self.key(), text, Some(meta)).await {
            Err(e) => eprintln!("burrow: the message was not taken: {e}"),
            Ok(d) if d.reason.is_some() => eprintln!("burrow: {}", run_summary(&d)),
            Ok(d) => {
                self.follow().await;
                if let Some(run) = d.run_id {
                    self.watch(run);
                }
            }
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

    /// Cancels run `run` (Ctrl-C while its reply is awaited): the kernel stops its
    /// provider, and the run's end shows as for any run that ends without a reply.
    async fn interrupt(&mut self, run: &str) {
        match self.client.agent_cancel(run).await {
            // It ended meanwhile: its end shows as it is.
            Ok(())
            | Err(burrow_sdk::Error::Remote(ErrorObject { code: ErrorCode::Conflict, .. })) => {}
            Err(e) => {
                eprintln!("\nburrow: cannot cancel run {run}: {e}");
                self.pending = None;
                self.prompt();
            }
        }
    }

    async fn on_deadline(&mut self) {
        let Some((run, _)) = self.pending.take() else { return };
        let secs = self.reply_timeout.as_secs_f64();
        let (key, ours) = (self.key(), self.channel_id());
        let session = self.client.session_get(&key).await.ok().flatten();
        match self.client.agent_wait(&run, Some(Duration::ZERO)).await {
            Ok(w) => {
                let hint = no_reply_hint(&key, &ours, session.as_ref(), &w);
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
    let path = socket.unwrap_or_else(burrow_sdk::transport::socket_from_env);
    let transport = match Transport::connect(&path).await {
        Ok(t) => t,
        Err(e) => {
            crate::cli::client::unreachable_kernel(&path, &e);
            return ExitCode::from(2);
        }
    };
    let (tx, mut events) = mpsc::unbounded_channel();
    let shown = Arc::new(RwLock::new(Shown::default()));
    let terminal = Terminal { shown: shown.clone(), sent: AtomicU64::new(0), events: tx.clone() };
    let client = Client::with_service(transport, terminal);
    if let Err(code) = setup(&client).await {
        return code;
    }
    let reply_timeout = Duration::from_millis(a.reply_timeout_ms);
    let mut chat = Chat {
        client,
        shown,
        reply_timeout,
        events: tx,
        pending: None,
        prompted: false,
        channel_cap: None,
        follower: None,
        streamed: None,
        finished: None,
    };
    if let Err(e) = chat.attach(&key).await {
        eprintln!("burrow: {e}");
        let _ = leave(&chat.client).await;
        return ExitCode::FAILURE;
    }
    let mut lines = stdin_lines();
    let mut interrupts = interrupts();
    chat.prompt();
    loop {
        let deadline = chat.pending.as_ref().map_or_else(Instant::now, |p| p.1);
        tokio::select! {
            biased;
            event = events.recv() => match event {
                Some(Event::Reply(text)) => chat.on_reply(&text),
                Some(Event::Delta(run, seq, text)) => chat.on_delta(run, seq, &text),
                Some(Event::Injected(line)) => chat.on_injected(&line),
                Some(Event::RunEnded(w)) => chat.on_run_end(&w),
                Some(Event::Shutdown) | None => {
                    eprintln!("\nburrow: the kernel is stopping");
                    chat.client.close(Duration::from_secs(1)).await;
                    return ExitCode::SUCCESS;
                }
            },
            line = lines.recv(), if chat.pending.is_none() => match line.as_deref().map(str::trim) {
                Some(line) => {
                    if !chat.on_line(line).await {
                        return leave(&chat.client).await;
                    }
                }
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
            Some(()) = interrupts.recv() => match chat.pending.clone() {
                // Ctrl-C while a reply is coming stops it; the chat goes on.
                Some((run, _)) => chat.interrupt(&run).await,
                None => {
                    println!();
                    return leave(&chat.client).await;
                }
            },
        }
    }
}

/// Ctrl-C, each one, from now on: listened for all along, so that one pressed while the
/// chat is busy (printing a reply) is not lost.
fn interrupts() -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut signals) = signal(SignalKind::interrupt()) else { return };
            while signals.recv().await.is_some() {
                if tx.send(()).await.is_err() {
                    return;
                }
            }
        }
        #[cfg(not(unix))]
        while tokio::signal::ctrl_c().await.is_ok() {
            if tx.send(()).await.is_err() {
                return;
            }
        }
    });
    rx
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
    fn what_others_put_into_the_session_is_a_line_and_our_own_messages_are_not() {
        let msg = |meta: Value| json!({"type": "message", "role": "user", "content": "hi", "metadata": meta});
        assert_eq!(injected(&msg(json!({"channelId": "terminal-k"})), "terminal-k"), None);
        assert_eq!(injected(&msg(json!({})), "terminal-k").as_deref(), Some("<< hi"));
        let other = msg(json!({"channelId": "telegram"}));
        assert_eq!(injected(&other, "terminal-k").as_deref(), Some("<< hi (via telegram)"));
        let comms =
            msg(json!({"comms": {"kind": "peer_message", "from": "id", "from_name": "ann"}}));
        assert_eq!(injected(&comms, "terminal-k").as_deref(), Some("<< peer_message from ann: hi"));
        let event = msg(json!({"external_event": {"event_type": "deploy"}}));
        assert_eq!(injected(&event, "terminal-k").as_deref(), Some("<< event deploy: hi"));
        let reply = json!({"type": "message", "role": "assistant", "content": "x", "metadata": {}});
        assert_eq!(injected(&reply, "terminal-k"), None);
        assert_eq!(injected(&json!({"type": "run", "status": "completed"}), "terminal-k"), None);
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
