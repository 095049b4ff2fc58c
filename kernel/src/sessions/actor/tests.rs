//! The actor over a store whose writes a test holds back and lets go (or refuses), and
//! whose reads it can make fail: what waits for the disk, and what a refused write does
//! to the session.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::Actor;
use tokio::sync::oneshot;

use super::*;
use crate::config::Config;
use crate::kernel::KernelPaths;
use crate::service::sessions::to_session;
use crate::sessions::SessionsActor;
use crate::store::sqlite::SqliteStore;
use crate::store::{Fence, PeerRequestRow, Storage, StoreFuture, Write, WriteDone};
use crate::token::KernelKey;
use burrow_protocol::Message;
use burrow_protocol::methods::Method;
use burrow_protocol::methods::session::TranscriptMessage;
use serde_json::json;

type Held = Vec<(Vec<Write>, Fence, WriteDone)>;

/// SQLite, except that submissions are held back while `held` is `Some`, and that
/// reads of sessions fail while `unreadable`.
struct Gated {
    inner: SqliteStore,
    held: Mutex<Option<Held>>,
    unreadable: AtomicBool,
    /// Reads refused while unreadable.
    refused_reads: AtomicUsize,
}

impl std::fmt::Debug for Gated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gated")
    }
}

impl Gated {
    fn read<'a, T: 'a>(&'a self, read: StoreFuture<'a, T>) -> StoreFuture<'a, T> {
        if self.unreadable.load(Ordering::SeqCst) {
            self.refused_reads.fetch_add(1, Ordering::SeqCst);
            return Box::pin(async { Err(StoreError::Db("unreadable for the test".into())) });
        }
        read
    }

    fn hold(&self) {
        *self.held.lock().unwrap() = Some(Vec::new());
    }

    fn held(&self) -> usize {
        self.held.lock().unwrap().as_ref().map_or(0, Vec::len)
    }

    /// Hands what was held to the store, in order, refusing the first if asked (as the
    /// store would: breaking its fence).
    async fn release(&self, refuse_first: bool) {
        let held = self.held.lock().unwrap().take().unwrap_or_default();
        for (i, (writes, fence, done)) in held.into_iter().enumerate() {
            if i == 0 && refuse_first {
                fence.break_now();
                done(Err(StoreError::Db("refused by the test".into())));
            } else {
                self.inner.submit(writes, &fence, done).await;
            }
        }
    }
}

impl Storage for Gated {
    fn write(&self, writes: Vec<Write>) -> StoreFuture<'_, ()> {
        self.inner.write(writes)
    }
    fn submit<'a>(
        &'a self,
        writes: Vec<Write>,
        fence: &Fence,
        done: WriteDone,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        if let Some(held) = self.held.lock().unwrap().as_mut() {
            held.push((writes, fence.clone(), done));
            return Box::pin(async {});
        }
        self.inner.submit(writes, fence, done)
    }
    fn session(&self, key: &str) -> StoreFuture<'_, Option<SessionRow>> {
        self.read(self.inner.session(key))
    }
    fn sessions(
        &self,
        query: crate::store::SessionQuery,
        limit: u32,
        offset: u32,
    ) -> StoreFuture<'_, (Vec<SessionRow>, u64)> {
        self.inner.sessions(query, limit, offset)
    }
    fn history_page(
        &self,
        key: &str,
        page: crate::store::Page,
    ) -> StoreFuture<'_, crate::store::HistoryPage> {
        self.inner.history_page(key, page)
    }
    fn history_range(
        &self,
        key: &str,
        offset: u64,
        limit: u32,
    ) -> StoreFuture<'_, Vec<burrow_protocol::methods::session::TranscriptMessage>> {
        self.inner.history_range(key, offset, limit)
    }
    fn run(&self, id: &str) -> StoreFuture<'_, Option<RunRow>> {
        self.inner.run(id)
    }
    fn unfinished_runs(&self, session_key: Option<&str>) -> StoreFuture<'_, Vec<RunRow>> {
        self.read(self.inner.unfinished_runs(session_key))
    }
    fn resident_sessions(&self) -> StoreFuture<'_, Vec<SessionRow>> {
        self.inner.resident_sessions()
    }
    fn peers(&self) -> StoreFuture<'_, Vec<SessionRow>> {
        self.inner.peers()
    }
    fn peer_request(&self, id: &str) -> StoreFuture<'_, Option<PeerRequestRow>> {
        self.inner.peer_request(id)
    }
    fn external_event(
        &self,
        key: &str,
        idempotency_key: &str,
    ) -> StoreFuture<'_, Option<burrow_protocol::methods::session::TranscriptMessage>> {
        self.inner.external_event(key, idempotency_key)
    }
}

/// A kernel over a gated store, with its session supervisor; no provider, so a started
/// run waits for one (and stays running).
async fn kernel(dir: &std::path::Path) -> (Arc<Kernel>, Arc<Gated>, ActorRef<crate::stop::Stop>) {
    let mut config = Config::default();
    config.sessions.provider_wait_ms = 60_000;
    let inner = SqliteStore::open(&dir.join("burrow.db")).unwrap();
    let store = Arc::new(Gated {
        inner,
        held: Mutex::new(None),
        unreadable: AtomicBool::new(false),
        refused_reads: AtomicUsize::new(0),
    });
    let paths = KernelPaths { socket: dir.join("k.sock"), state_dir: dir.to_owned() };
    let kernel = Arc::new(Kernel::new(config, KernelKey::from_seed([2; 32]), paths, store.clone()));
    let (sessions, _) = Actor::spawn(None, SessionsActor, kernel.clone()).await.unwrap();
    (kernel, store, sessions)
}

/// Polls `ready` every 10 ms for up to 10 s.
async fn until(what: &str, mut ready: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !ready().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The id of `key`'s running run, asked of its actor (after everything sent it before).
async fn running(kernel: &Arc<Kernel>, key: &str) -> Option<String> {
    let (tx, rx) = oneshot::channel();
    kernel.sessions.actor(kernel, key).unwrap().cast(SessionMsg::Running(tx)).unwrap();
    tokio::time::timeout(Duration::from_secs(10), rx).await.expect("the actor answers").unwrap()
}

fn inbound(text: &str, wake: Wake) -> Inbound {
    Inbound::new(text.into(), None, "test".into(), wake)
}

/// The events `events` holds now, as `type` or `type:status`.
fn seen(events: &mut futures_util::stream::BoxStream<'static, serde_json::Value>) -> Vec<String> {
    use futures_util::FutureExt;
    let mut seen = Vec::new();
    while let Some(Some(e)) = futures_util::StreamExt::next(events).now_or_never() {
        let kind = e["type"].as_str().unwrap_or_default().to_owned();
        seen.push(match e["status"].as_str() {
            Some(status) => format!("{kind}:{status}"),
            None => kind,
        });
    }
    seen
}

#[tokio::test]
async fn a_run_starts_while_its_message_is_written_but_shows_nothing_until_it_is_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (kernel, store, sessions) = kernel(dir.path()).await;
    let mut events = kernel.sessions.follow("k1", 1 << 20);
    store.hold();
    let k = kernel.clone();
    let answer =
        tokio::spawn(async move { to_session(&k, "k1", inbound("hello", Wake::Always)).await });
    until("the message's writes are submitted", async || store.held() == 1).await;
    // The run started at once (it waits for its provider), behind its gate: the caller
    // has not heard, and nobody has seen the message or the run.
    until("the run starts", async || running(&kernel, "k1").await.is_some()).await;
    let run_id = running(&kernel, "k1").await.unwrap();
    assert!(!answer.is_finished(), "answered before the message was on disk");
    // What a follower would get comes from the actor and the run, both of which have
    // been asked something since: a negative check with a margin all the same.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(seen(&mut events), Vec::<String>::new(), "seen before the message was on disk");
    assert!(!kernel.sessions.running("k1"), "the run was made known before its input was on disk");

    store.release(false).await;
    let acked = answer.await.unwrap().expect("taken once on disk");
    assert_eq!(acked.run_id.as_deref(), Some(run_id.as_str()), "the run that started is the one");
    // Once it is: the message, then the run queued, then running, in that order.
    let mut got = Vec::new();
    until("three events", async || {
        got.extend(seen(&mut events));
        got.len() >= 3
    })
    .await;
    assert_eq!(got, ["message", "run:queued", "run:running"]);
    assert!(kernel.sessions.running("k1"));
    let history = kernel.store().history("k1", 10, None).await.unwrap();
    assert_eq!(contents(&history), ["hello"]);
    assert_eq!(running(&kernel, "k1").await, Some(run_id));
    sessions.stop(None);
}

/// Sends `text` to `key` from a task: its answer, when it comes.
fn send(
    kernel: &Arc<Kernel>,
    key: &'static str,
    text: &'static str,
    wake: Wake,
) -> tokio::task::JoinHandle<Result<DispatchResult, ErrorObject>> {
    let k = kernel.clone();
    tokio::spawn(async move { Ok(to_session(&k, key, inbound(text, wake)).await?) })
}

fn contents(history: &[TranscriptMessage]) -> Vec<&str> {
    history.iter().map(|m| m.content.as_str()).collect()
}

#[tokio::test]
async fn a_refused_write_refuses_the_sessions_later_ones_and_the_session_reads_itself_back() {
    let dir = tempfile::tempdir().unwrap();
    let (kernel, store, sessions) = kernel(dir.path()).await;
    // A run in progress (waiting for a provider), which the refusal must not disturb.
    let one = to_session(&kernel, "k1", inbound("one", Wake::Always)).await.expect("taken");
    let run = one.run_id.expect("a run");
    until("the run starts", async || running(&kernel, "k1").await.as_ref() == Some(&run)).await;
    let actor = kernel.sessions.actor(&kernel, "k1").unwrap();

    store.hold();
    let two = send(&kernel, "k1", "two", Wake::Never);
    until("the second message's writes are submitted", async || store.held() == 1).await;
    let three = send(&kernel, "k1", "three", Wake::Never);
    until("the third message's writes are submitted", async || store.held() == 2).await;
    // "two" is refused; "three" was written assuming "two" took effect: refused too, by
    // the store itself, although the store takes writes again.
    store.release(true).await;
    let two = two.await.unwrap().expect_err("refused").message;
    assert!(two.contains("refused by the test"), "{two}");
    let three = three.await.unwrap().expect_err("refused behind it").message;
    assert!(three.contains("earlier write of the same writer was refused"), "{three}");

    // The same actor goes on from what the store holds, with its run still going (not
    // started a second time), and takes messages again.
    to_session(&kernel, "k1", inbound("four", Wake::Never)).await.expect("taken again");
    assert_eq!(kernel.sessions.actor(&kernel, "k1").unwrap().get_id(), actor.get_id());
    assert_eq!(running(&kernel, "k1").await, Some(run.clone()));
    let unfinished = kernel.store().unfinished_runs(Some("k1")).await.unwrap();
    assert_eq!(unfinished.into_iter().map(|r| r.id).collect::<Vec<_>>(), [run]);
    let history = kernel.store().history("k1", 10, None).await.unwrap();
    assert_eq!(contents(&history), ["one", "four"]);
    assert_eq!(kernel.store().session("k1").await.unwrap().unwrap().message_count, 2);
    sessions.stop(None);
}

#[tokio::test]
async fn a_run_started_on_a_message_the_store_refuses_ends_and_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let (kernel, store, sessions) = kernel(dir.path()).await;
    let mut events = kernel.sessions.follow("k1", 1 << 20);
    store.hold();
    let hello = send(&kernel, "k1", "hello", Wake::Always);
    until("the message's writes are submitted", async || store.held() == 1).await;
    until("the run starts", async || running(&kernel, "k1").await.is_some()).await;

    store.release(true).await;
    let refused = hello.await.unwrap().expect_err("refused").message;
    assert!(refused.contains("refused by the test"), "{refused}");
    // The run, which was waiting for its provider, ends there, telling and writing
    // nothing; the session goes on.
    until("the run ends", async || running(&kernel, "k1").await.is_none()).await;
    assert!(kernel.store().unfinished_runs(Some("k1")).await.unwrap().is_empty());
    assert!(kernel.store().history("k1", 10, None).await.unwrap().is_empty());
    assert_eq!(seen(&mut events), Vec::<String>::new(), "the refused message or its run was told");
    let again = to_session(&kernel, "k1", inbound("again", Wake::Always)).await.expect("taken");
    let run = again.run_id.expect("a run");
    until("the next run starts", async || running(&kernel, "k1").await.as_ref() == Some(&run))
        .await;
    let history = kernel.store().history("k1", 10, None).await.unwrap();
    assert_eq!(contents(&history), ["again"]);
    sessions.stop(None);
}

/// A ready app holding the `echo` provider (the `main` agent's), whose far end the
/// test reads and answers.
fn provider(kernel: &Arc<Kernel>) -> burrow_transport::Transport {
    use crate::registry::{AppEntry, Displace};
    use burrow_protocol::methods::app::AppState;
    use burrow_protocol::methods::capability::{CapabilityConfig, ProviderConfig};
    let (near, far) = burrow_transport::Transport::memory_pair();
    let limits = crate::connection::Limits::small(1 << 20);
    let tasks = tokio_util::task::TaskTracker::new();
    let conn = crate::connection::Connection::spawn(900, near, limits, &tasks, |_| true);
    let entry = AppEntry {
        conn_id: conn.id(),
        displace: Displace::new(|| {}),
        version: "1.0.0".into(),
        state: AppState::Ready,
        registered_at: 0,
        last_seen: conn.last_seen(),
    };
    assert!(matches!(kernel.apps.claim("prov", entry, false), crate::registry::Claim::Registered));
    let config = ProviderConfig { provider_id: "echo".into(), models: Vec::new() };
    kernel.caps.insert("prov", &conn, CapabilityConfig::Provider(config)).unwrap();
    far
}

/// The next message the kernel sends the test's app (within 10 s).
async fn next_message(app: &mut burrow_transport::Transport) -> burrow_protocol::Message {
    let next = tokio::time::timeout(
        Duration::from_secs(10),
        futures_util::StreamExt::next(&mut app.reader),
    );
    next.await.expect("the kernel sends the app something").unwrap().unwrap().unwrap()
}

/// The request `provider.complete` the kernel sends the test's app next.
async fn asked(app: &mut burrow_transport::Transport) -> burrow_protocol::Request {
    match next_message(app).await {
        burrow_protocol::Message::Request(r) if r.method == "provider.complete" => r,
        other => panic!("expected provider.complete, got {other:?}"),
    }
}

/// A kernel over a gated store with a provider app, and a follower of session k1; "hello"
/// sent to k1 (waking its agent) while the store holds writes back, and the provider's
/// request it brought.
struct Asked {
    _dir: tempfile::TempDir,
    kernel: Arc<Kernel>,
    store: Arc<Gated>,
    sessions: ActorRef<crate::stop::Stop>,
    app: burrow_transport::Transport,
    events: futures_util::stream::BoxStream<'static, serde_json::Value>,
    hello: tokio::task::JoinHandle<Result<DispatchResult, ErrorObject>>,
    request: burrow_protocol::Request,
}

async fn hello_asked_while_held() -> Asked {
    let dir = tempfile::tempdir().unwrap();
    let (kernel, store, sessions) = kernel(dir.path()).await;
    let mut app = provider(&kernel);
    let events = kernel.sessions.follow("k1", 1 << 20);
    store.hold();
    let hello = send(&kernel, "k1", "hello", Wake::Always);
    let request = asked(&mut app).await;
    Asked { _dir: dir, kernel, store, sessions, app, events, hello, request }
}

#[tokio::test]
async fn a_run_asks_its_provider_while_its_message_is_written_and_shows_what_it_said_after() {
    let Asked { _dir, kernel, store, sessions, mut app, mut events, hello, request } =
        hello_asked_while_held().await;
    // The provider was asked while the message's write is held back...
    assert_eq!(store.held(), 1);
    assert!(!hello.is_finished(), "answered before the message was on disk");
    let prompt = request.params["messages"].to_string();
    assert!(prompt.contains("hello"), "{prompt}");
    // ...and streams, then answers at once; the run waits to store, tell or send anything.
    let piece = json!({ "type": "text_delta", "text": "hi" });
    let answer = json!({ "message": { "role": "assistant", "content": "hi" } });
    for m in [Message::chunk(request.id.clone(), piece), Message::success(request.id, answer)] {
        futures_util::SinkExt::send(&mut app.writer, m).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(store.held(), 1, "the run wrote before its input was on disk");
    assert_eq!(seen(&mut events), Vec::<String>::new(), "told before the input was on disk");

    store.release(false).await;
    hello.await.unwrap().expect("taken once on disk");
    let mut got = Vec::new();
    until("the run completes", async || {
        got.extend(seen(&mut events));
        got.last().is_some_and(|e| e == "run:completed")
    })
    .await;
    let order = ["message", "run:queued", "run:running", "text_delta", "message", "run:completed"];
    assert_eq!(got, order);
    let history = kernel.store().history("k1", 10, None).await.unwrap();
    assert_eq!(contents(&history), ["hello", "hi"]);
    sessions.stop(None);
}

#[tokio::test]
async fn a_provider_asked_about_a_message_the_store_refuses_is_told_to_stop() {
    let Asked { _dir, kernel, store, sessions, mut app, hello, request, events: _events } =
        hello_asked_while_held().await;
    store.release(true).await;
    hello.await.unwrap().expect_err("refused");
    match next_message(&mut app).await {
        Message::Notification(n) if n.method == burrow_protocol::methods::Cancel::NAME => {
            assert_eq!(n.params["id"], serde_json::to_value(&request.id).unwrap());
        }
        other => panic!("expected $/cancel, got {other:?}"),
    }
    until("the run ends", async || running(&kernel, "k1").await.is_none()).await;
    assert!(kernel.store().unfinished_runs(Some("k1")).await.unwrap().is_empty());
    assert!(kernel.store().history("k1", 10, None).await.unwrap().is_empty());
    sessions.stop(None);
}

#[tokio::test]
async fn a_message_steered_while_the_run_s_own_input_is_written_queues_instead() {
    // The app and the directory live as long as the test (not `..`: that drops them).
    let Asked { _dir, kernel, store, sessions, hello, app: _app, events: _events, .. } =
        hello_asked_while_held().await;
    // The run is asking its provider, its input not on disk yet: a message steered now
    // would be made known before that input, so it goes to the next run.
    let mut steered = inbound("more", Wake::Always);
    steered.mode = burrow_protocol::methods::comms::HandlingMode::Steer;
    let k = kernel.clone();
    let more = tokio::spawn(async move { to_session(&k, "k1", steered).await });
    until("the steered message's writes are submitted", async || store.held() == 2).await;
    store.release(false).await;
    let first = hello.await.unwrap().expect("taken").run_id.expect("a run");
    let second = more.await.unwrap().expect("taken");
    assert!(second.queued, "{second:?}");
    assert_ne!(second.run_id.expect("a run"), first);
    sessions.stop(None);
}

/// Stores "one" in session k1, then sends "two", whose writes the store holds back.
async fn one_stored_two_held(
    kernel: &Arc<Kernel>,
    store: &Gated,
) -> tokio::task::JoinHandle<Result<DispatchResult, ErrorObject>> {
    to_session(kernel, "k1", inbound("one", Wake::Never)).await.expect("taken");
    store.hold();
    let two = send(kernel, "k1", "two", Wake::Never);
    until("the second message's writes are submitted", async || store.held() == 1).await;
    two
}

#[tokio::test]
async fn a_session_that_cannot_read_itself_back_refuses_work_until_it_can() {
    let dir = tempfile::tempdir().unwrap();
    let (kernel, store, sessions) = kernel(dir.path()).await;
    let two = one_stored_two_held(&kernel, &store).await;
    store.unreadable.store(true, Ordering::SeqCst);
    store.release(true).await;
    assert!(two.await.unwrap().is_err());
    let three = to_session(&kernel, "k1", inbound("three", Wake::Never)).await;
    let three = ErrorObject::from(three.expect_err("no work while stale")).message;
    assert!(three.contains("read back from the store"), "{three}");
    // It keeps trying by itself, with nothing sent to it.
    let tries = store.refused_reads.load(Ordering::SeqCst);
    until("two more tries to read the session back", async || {
        store.refused_reads.load(Ordering::SeqCst) >= tries + 2
    })
    .await;

    // Readable again: it reads itself back by itself and takes work.
    store.unreadable.store(false, Ordering::SeqCst);
    until("the session takes work again", async || {
        to_session(&kernel, "k1", inbound("four", Wake::Never)).await.is_ok()
    })
    .await;
    let history = kernel.store().history("k1", 10, None).await.unwrap();
    assert_eq!(contents(&history), ["one", "four"]);
    sessions.stop(None);
}

#[tokio::test]
async fn an_error_answer_waits_for_the_answers_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (kernel, store, sessions) = kernel(dir.path()).await;
    let two = one_stored_two_held(&kernel, &store).await;
    // The session exists: a create is refused, but only after the answer to "two".
    let k = kernel.clone();
    let create = tokio::spawn(async move {
        let row = kernel_row("k1");
        let mut item = inbound("again", Wake::Never);
        item.create = Some(Box::new(row));
        to_session(&k, "k1", item).await
    });
    until("the refusal waits in turn", async || store.held() == 2).await;
    assert!(!create.is_finished() && !two.is_finished());
    store.release(false).await;
    two.await.unwrap().expect("taken");
    let create = create.await.unwrap().expect_err("exists");
    assert_eq!(ErrorObject::from(create).code, ErrorCode::Conflict);
    sessions.stop(None);
}

fn kernel_row(key: &str) -> SessionRow {
    SessionRow::new(key, "main", 1)
}
