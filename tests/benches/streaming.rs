//! Streaming benchmark against the real kernel (issue 20): a provider app in this process
//! streams its answers as `text_delta` chunks whose text is the moment each was sent, and
//! the kernel hands each on to the session's streaming channel (`channel.delta`, the same
//! app) and to its followers (`GET /sessions/{key}/events`, server-sent events over
//! loopback TCP, read here with reqwest). Every receiver computes a delta's latency in
//! this process, against one clock. Reports:
//!
//! - a delta's latency, one session streaming a delta every millisecond (so that it
//!   measures the path, not a queue): sent by the provider → at the channel's delta
//!   handler, and → at an SSE client; the same through the kernel alone, its provider and
//!   streaming channel played over raw sockets by this process (no SDK at either end), with
//!   the kernel's CPU per delta. Beside them the floors, measured in turn with them (ten
//!   rounds each; a ratio is the median of the rounds'): relays in this process forwarding
//!   frames of a `channel.delta`'s size from a "provider" socket to a "channel" socket,
//!   unchanged, two hops as provider → kernel → channel: a thread (Unix → Unix; Unix →
//!   TCP beside the SSE client), a task in a tokio runtime of its own with two workers,
//!   as the kernel's, and, in processes of their own (this binary, started with
//!   `--relay-child`), apart from the sender and the receiver as the kernel is, a relay
//!   thread and a tokio relay task that decodes every frame into a message and encodes
//!   it again (the least any process that reads the protocol does);
//! - throughput: 64 sessions streaming at once, a delta every 20 ms each, each session
//!   with its streaming channel and one SSE follower: deltas/s delivered at each,
//!   `lagged` events, deltas missing (and gaps in `seq`), the latency under that load and
//!   the kernel's CPU per delta.
//!
//! Run with `cargo bench -p burrow-tests --bench streaming`; `-- --seconds=N` streams N
//! seconds under load instead of 10, `--quick` shortens both parts, and `--alone=N` runs
//! only the kernel alone against the relays, N rounds (a steady load to profile).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use burrow_protocol::methods::invoke::{AssistantMessage, ChannelDeltaParams};
use burrow_protocol::{Manifest, Message, codec};
use burrow_sdk::{
    App, ChannelContext, ChannelSendParams, ChannelSendResult, ChannelStreamEvent, Client,
    ErrorObject, ProviderChunk, ProviderCompleteResult,
};
use burrow_tests::{DEADLINE, Kernel, RawConn, poll_until};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const SESSIONS: usize = 64;
/// Rounds of the latency part: the kernel's and the relays' in turn.
const ROUNDS: u64 = 10;
/// Time between two deltas of the one session of the latency part.
const PACE: Duration = Duration::from_millis(1);
/// Time between two deltas of one session under load: 50 deltas/s.
const LOAD_PACE: Duration = Duration::from_millis(20);
const CONFIG: &str = "[ipc]\nheartbeat_timeout_ms = 600000\nheartbeat_interval_ms = 300000\n\
[agents.main]\nprovider = \"stream\"\ntools = []\ntimeout_ms = 600000\n\
[agents.raw]\nprovider = \"raw\"\ntools = []\ntimeout_ms = 600000\n\
[sessions]\nidle_timeout_ms = 3600000\n";

/// The one clock of every sender and receiver.
static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since [`EPOCH`]: a delta's text is the time it was sent.
fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Paces a sender at one send every `every` on average, never two closer than half of
/// that. `tokio::time::interval` catches up after late ticks (its timer has a
/// millisecond's grain, and about one tick in eight of a 1 ms interval came within
/// 100 µs of the one before), and a delta sent right behind another measures the queue
/// it waits in, not the path.
struct Pace {
    every: Duration,
    next: tokio::time::Instant,
    last: Option<tokio::time::Instant>,
}

impl Pace {
    fn new(every: Duration) -> Pace {
        Pace { every, next: tokio::time::Instant::now(), last: None }
    }

    /// Waits for the next send's moment.
    async fn wait(&mut self) {
        let at = match self.last {
            Some(last) => self.next.max(last + self.every / 2),
            None => self.next,
        };
        tokio::time::sleep_until(at).await;
        self.last = Some(tokio::time::Instant::now());
        self.next = at + self.every;
    }
}

/// What reached one receiver for one session.
#[derive(Debug, Default)]
struct Tally {
    received: u64,
    /// Deltas `seq` skipped (dropped on the way).
    gaps: u64,
    lagged: u64,
    latencies: Vec<Duration>,
    run: String,
    next_seq: u64,
    first_sent: Option<u64>,
    last_arrival: u64,
}

impl Tally {
    /// Counts delta `seq` of run `run`, its text the time it was sent.
    fn record(&mut self, run: &str, seq: u64, text: &str) {
        let arrival = now_ns();
        let sent: u64 = text.parse().unwrap_or_else(|_| panic!("a delta not a time: {text:?}"));
        if self.run != run {
            (self.run, self.next_seq) = (run.to_owned(), 0);
        }
        self.gaps += seq.saturating_sub(self.next_seq);
        self.next_seq = seq + 1;
        self.received += 1;
        self.latencies.push(Duration::from_nanos(arrival.saturating_sub(sent)));
        self.first_sent = Some(self.first_sent.map_or(sent, |f| f.min(sent)));
        self.last_arrival = self.last_arrival.max(arrival);
    }

    /// An event that is not a delta, numbered `seq` in a stream that numbers every event
    /// (SSE's envelopes); for run `run`, which it may start.
    fn mark(&mut self, run: &str, seq: u64) {
        if self.run == run {
            self.gaps += seq.saturating_sub(self.next_seq);
        } else {
            self.run = run.to_owned();
        }
        self.next_seq = seq + 1;
    }

    fn add(&mut self, other: Tally) {
        self.received += other.received;
        self.gaps += other.gaps;
        self.lagged += other.lagged;
        self.latencies.extend(other.latencies);
        self.first_sent = match (self.first_sent, other.first_sent) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_arrival = self.last_arrival.max(other.last_arrival);
    }

    /// Deltas per second from the first sent to the last arrived.
    fn rate(&self) -> f64 {
        let span = self.last_arrival.saturating_sub(self.first_sent.unwrap_or_default());
        self.received as f64 / (span as f64 / 1e9).max(1e-9)
    }

    /// `p50 …, p99 …` of the latencies.
    fn percentiles(&mut self) -> String {
        self.latencies.sort();
        format!("p50 {:?}, p99 {:?}", self.percentile(0.5), self.percentile(0.99))
    }

    fn percentile(&self, p: f64) -> Duration {
        let all = &self.latencies;
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    }
}

/// One path of the latency part: every round's deltas, and each round's p50.
#[derive(Debug, Default)]
struct Path {
    all: Tally,
    p50s: Vec<Duration>,
}

impl Path {
    fn push(&mut self, mut round: Tally) {
        round.latencies.sort();
        self.p50s.push(round.percentile(0.5));
        self.all.add(round);
    }

    /// `self` against `floor`: the median of the rounds' p50 ratios (each round beside the
    /// floor's round next to it), their range, and the ratio of the p99s over all rounds.
    fn against(&self, floor: &Path) -> String {
        let mut ratios: Vec<f64> = (self.p50s.iter().zip(&floor.p50s))
            .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
            .collect();
        ratios.sort_by(f64::total_cmp);
        let p99 =
            self.all.percentile(0.99).as_secs_f64() / floor.all.percentile(0.99).as_secs_f64();
        format!(
            "p50 {:.2} (rounds {:.2}-{:.2}), p99 {p99:.2}",
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1]
        )
    }
}

/// One receiver's tallies, by session key.
#[derive(Debug, Clone, Default)]
struct Tallies(Arc<Mutex<HashMap<String, Tally>>>);

impl Tallies {
    fn with<T>(&self, key: &str, f: impl FnOnce(&mut Tally) -> T) -> T {
        f(self.0.lock().unwrap().entry(key.to_owned()).or_default())
    }

    fn received(&self, key: &str) -> u64 {
        self.with(key, |t| t.received)
    }

    /// Session `key`'s tally, leaving it empty.
    fn take(&self, key: &str) -> Tally {
        self.0.lock().unwrap().remove(key).unwrap_or_default()
    }

    /// Waits (at most [`DEADLINE`]) until `n` deltas of `key` have arrived, then takes
    /// its tally: a run's reply may overtake its last deltas.
    async fn take_once(&self, key: &str, n: u64) -> Tally {
        poll_until(DEADLINE, || async { self.received(key) >= n }).await;
        self.take(key)
    }
}

/// Replies awaited at a channel, by session.
type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<()>>>>;

/// The benchmark's receivers and what its provider sent.
#[derive(Debug, Clone, Default)]
struct Bench {
    channel: Tallies,
    sse: Tallies,
    /// At the raw streaming channel.
    raw: Tallies,
    waiting: Waiting,
    sent: Arc<AtomicU64>,
}

/// A channel handler telling the turn's waiter of the reply.
fn replies(
    waiting: Waiting,
) -> impl Fn(
    ChannelSendParams,
    ChannelContext,
) -> std::future::Ready<Result<ChannelSendResult, ErrorObject>>
+ Send
+ Sync
+ 'static {
    move |sent, _cx| {
        if let Some(tx) = waiting.lock().unwrap().remove(&sent.session_key) {
            let _ = tx.send(());
        }
        std::future::ready(Ok(ChannelSendResult { message_id: None }))
    }
}

/// The benchmark's app, in this process: provider `stream` answers `stream N P` with N
/// text deltas, one every P µs, then `ok`, and anything else with `ok` at once; channel
/// `live` streams (its deltas are tallied), channel `plain` does not.
fn bench_app(kernel: &Kernel, bench: &Bench) {
    let (sent, tallies) = (bench.sent.clone(), bench.channel.clone());
    let app = App::new(Manifest::new("bench-stream", "1.0.0"))
        .provider("stream", vec!["stream".to_owned()], move |params, cx| {
            let sent = sent.clone();
            async move {
                let ask = params.messages.last().map(|m| m.content.clone()).unwrap_or_default();
                let mut words = ask.strip_prefix("stream ").unwrap_or_default().split(' ');
                let mut number = || words.next().and_then(|w| w.parse::<u64>().ok());
                if let (Some(n), Some(pace)) = (number(), number()) {
                    let mut pace = Pace::new(Duration::from_micros(pace));
                    for _ in 0..n {
                        pace.wait().await;
                        cx.text_delta(now_ns().to_string()).await.expect("send a delta");
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let message = AssistantMessage { content: "ok".to_owned(), tool_calls: None };
                Ok(ProviderCompleteResult { message, usage: None })
            }
        })
        .channel("live", "", replies(bench.waiting.clone()))
        .channel_deltas("live", move |event, _cx| {
            if let ChannelStreamEvent::Delta(piece) = event
                && let ProviderChunk::TextDelta { text } = &piece.delta
            {
                tallies.with(&piece.session_key, |t| t.record(&piece.run_id, piece.seq, text));
            }
            std::future::ready(())
        })
        .channel("plain", "", replies(bench.waiting.clone()))
        .socket(kernel.socket.clone());
    tokio::spawn(async move { app.run_until(std::future::pending()).await });
}

/// Dispatches `content` in session `key`, its replies going to `channel` (and its run to
/// `agent`): the receiver of the reply at the channel.
async fn dispatch(
    client: &Client,
    bench: &Bench,
    (key, channel, agent): (&str, &str, &str),
    content: &str,
) -> oneshot::Receiver<()> {
    let (tx, rx) = oneshot::channel();
    bench.waiting.lock().unwrap().insert(key.to_owned(), tx);
    let metadata = json!({"channelId": channel, "agentId": agent});
    let params = json!({"sessionKey": key, "content": content, "metadata": metadata});
    client.request("message.dispatch", params).await.expect("dispatch");
    rx
}

/// Waits (at most `within`) for session `key`'s reply at its channel.
async fn reply(rx: oneshot::Receiver<()>, key: &str, within: Duration) {
    if !matches!(tokio::time::timeout(within, rx).await, Ok(Ok(()))) {
        panic!("no reply in session {key} within {within:?}");
    }
}

/// A turn of agent `main` in session `key`, its replies going to `channel`: the dispatch
/// of `content`, then the reply at the channel within `within`.
async fn turn(
    client: &Client,
    bench: &Bench,
    (key, channel): (&str, &str),
    content: &str,
    within: Duration,
) {
    let rx = dispatch(client, bench, (key, channel, "main"), content).await;
    reply(rx, key, within).await;
}

/// `stream N P`: N deltas, one every `pace`.
fn stream(n: u64, pace: Duration) -> String {
    format!("stream {n} {}", pace.as_micros())
}

/// Follows session `key`'s events over SSE until `until`, tallying its deltas and
/// `stream_truncated` events into `tallies`; returns once the kernel has answered (the follower is
/// registered), with the task reading the stream.
async fn follow_sse(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    tallies: Tallies,
    until: tokio::time::Instant,
) -> JoinHandle<()> {
    let get = http.get(format!("{base}/sessions/{key}/events")).send();
    let mut response = tokio::time::timeout(DEADLINE, get)
        .await
        .unwrap_or_else(|_| panic!("GET /sessions/{key}/events: no answer in {DEADLINE:?}"))
        .unwrap_or_else(|e| panic!("GET /sessions/{key}/events: {e}"));
    assert_eq!(response.status(), 200, "GET /sessions/{key}/events");
    let key = key.to_owned();
    tokio::spawn(async move {
        let (mut buf, mut run) = (Vec::new(), String::new());
        loop {
            let bytes = match tokio::time::timeout_at(until, response.chunk()).await {
                Ok(Ok(Some(bytes))) => bytes,
                Ok(Ok(None)) | Err(_) => return,
                Ok(Err(e)) => panic!("the event stream of {key} failed: {e}"),
            };
            buf.extend_from_slice(&bytes);
            while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = buf.drain(..end + 2).collect();
                let text = std::str::from_utf8(&event).expect("an event in UTF-8");
                // The host contract's envelopes, numbered across the stream.
                for data in text.lines().filter_map(|l| l.strip_prefix("data:")) {
                    let event: Value = serde_json::from_str(data.trim_start()).expect("JSON");
                    let Some(seq) = event["seq"].as_u64() else { continue }; // session_loaded
                    let session = event["source"]["session_id"].as_str().unwrap_or_default();
                    let payload = &event["payload"];
                    match payload["type"].as_str() {
                        Some("run_started") => {
                            run = payload["identity"]["run_id"].as_str().unwrap_or_default().into();
                            tallies.with(session, |t| t.mark(&run, seq));
                        }
                        Some("text_delta") => tallies.with(session, |t| {
                            t.record(&run, seq, payload["delta"].as_str().unwrap_or_default())
                        }),
                        Some("stream_truncated") => tallies.with(session, |t| t.lagged += 1),
                        _ => tallies.with(session, |t| t.mark(&run, seq)),
                    }
                }
            }
        }
    })
}

/// The floor's frame: the `channel.delta` notification a channel gets, its text the time.
fn delta_frame(key: &str, seq: u64) -> Vec<u8> {
    let params = ChannelDeltaParams {
        channel_id: "live".to_owned(),
        session_key: key.to_owned(),
        run_id: "run_relay".to_owned(),
        seq,
        delta: ProviderChunk::TextDelta { text: now_ns().to_string() },
    };
    let note = Message::notification("channel.delta", serde_json::to_value(params).expect("json"));
    codec::encode_frame(&note, codec::MAX_FRAME_BYTES).expect("encode")
}

type Socket = std::os::unix::net::UnixStream;

/// A socket pair: the end this process writes to (async), and the other.
fn pair() -> (tokio::net::UnixStream, Socket) {
    let (ours, theirs) = Socket::pair().expect("socket pair");
    ours.set_nonblocking(true).expect("nonblocking");
    (tokio::net::UnixStream::from_std(ours).expect("tokio socket"), theirs)
}

/// A relay thread writing what it reads from `from` to `to`, unchanged, each read in one
/// write.
fn relay_thread(from: Socket, to: impl Write + Send + 'static) {
    std::thread::spawn(move || relay_blocking(from, to));
}

/// What a relay thread runs: reads from `from` and writes each read to `to`, until either
/// ends.
fn relay_blocking(mut from: Socket, mut to: impl Write) {
    let mut chunk = vec![0u8; 64 * 1024];
    while let Ok(n) = from.read(&mut chunk) {
        if n == 0 || to.write_all(&chunk[..n]).is_err() {
            return;
        }
    }
}

/// The same relay as a task of a tokio runtime of its own, with two workers as the
/// kernel's: the floor of an event-driven relay. When `recode`, it decodes each frame it
/// reads into a message and encodes it again before writing it (the least a relay that
/// looks at what it forwards does).
///
/// Returns where its runtime's threads are (`/proc/<pid>/task/<tid>`), for their CPU time.
fn relay_task(from: Socket, to: Socket, recode: bool) -> RelayThreads {
    let threads = RelayThreads::default();
    let started = threads.clone();
    std::thread::spawn(move || relay_runtime(from, to, recode, started));
    threads
}

/// What a relay task's thread runs: a runtime of two workers (whose threads it lists in
/// `threads`) and the relay as a task on it, until either socket ends.
fn relay_runtime(from: Socket, to: Socket, recode: bool, threads: RelayThreads) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || {
            if let Ok(task) = std::fs::read_link("/proc/thread-self") {
                threads.0.lock().unwrap().push(std::path::Path::new("/proc").join(task));
            }
        })
        .build()
        .expect("runtime");
    // Spawned, as the kernel's connections are: it runs on a worker.
    let relay = runtime.spawn(async move {
        for s in [&from, &to] {
            s.set_nonblocking(true).expect("nonblocking");
        }
        let mut from = tokio::net::UnixStream::from_std(from).expect("tokio socket");
        let mut to = tokio::net::UnixStream::from_std(to).expect("tokio socket");
        let (mut buf, mut out) = (Vec::new(), Vec::new());
        loop {
            buf.reserve(64 * 1024);
            match from.read_buf(&mut buf).await {
                Ok(n) if n > 0 => {}
                _ => return,
            }
            if !recode {
                std::mem::swap(&mut buf, &mut out);
            } else {
                while let Some((msg, used)) = codec::decode_frame(&buf, codec::MAX_FRAME_BYTES) {
                    buf.drain(..used);
                    let msg = msg.expect("a frame of the benchmark's");
                    out.extend(codec::encode_frame(&msg, codec::MAX_FRAME_BYTES).expect("encode"));
                }
            }
            if to.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
    });
    let _ = runtime.block_on(relay);
}

/// The argument that makes this benchmark's binary a relay process: `--relay-child
/// <socket> <thread|task|recoding>` connects twice to `socket` (the first connection is
/// read, the second written) and relays as a relay thread, a relay task or the recoding
/// relay task does.
const RELAY_CHILD: &str = "--relay-child";

/// This process as a relay child (see [`RELAY_CHILD`]), when its arguments say so.
fn relay_child() -> Option<()> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == RELAY_CHILD)?;
    let (socket, mode) = (args.get(at + 1)?, args.get(at + 2)?);
    let from = Socket::connect(socket).expect("the benchmark's socket");
    let to = Socket::connect(socket).expect("the benchmark's socket");
    match mode.as_str() {
        "thread" => relay_blocking(from, to),
        "task" => relay_runtime(from, to, false, RelayThreads::default()),
        "recoding" => relay_runtime(from, to, true, RelayThreads::default()),
        other => panic!("no relay mode {other:?}: thread, task or recoding"),
    }
    Some(())
}

/// A relay in a process of its own (this binary, as [`relay_child`]), `mode` `thread`,
/// `task` or `recoding`: as the kernel is, apart from the sender and the receiver.
/// Returns the socket to write into it, the one to read from it, and the process (killed
/// when dropped).
async fn relay_process(
    dir: &std::path::Path,
    mode: &str,
) -> (tokio::net::UnixStream, tokio::net::UnixStream, tokio::process::Child) {
    let socket = dir.join(format!("relay-{mode}.sock"));
    let listener = tokio::net::UnixListener::bind(&socket).expect("bind the relay's socket");
    let child = tokio::process::Command::new(std::env::current_exe().expect("this binary"))
        .arg(RELAY_CHILD)
        .arg(&socket)
        .arg(mode)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn a relay process");
    let accept = async || {
        let accepted = tokio::time::timeout(DEADLINE, listener.accept()).await;
        accepted.expect("the relay process connects in time").expect("accept").0
    };
    // Its first connection is what it reads, its second what it writes.
    let into = accept().await;
    let out = accept().await;
    (into, out, child)
}

/// The threads of a relay task's runtime.
#[derive(Debug, Clone, Default)]
struct RelayThreads(Arc<Mutex<Vec<std::path::PathBuf>>>);

impl RelayThreads {
    /// The CPU time they have had so far.
    fn cpu(&self) -> Duration {
        threads_cpu(self.0.lock().unwrap().clone())
    }
}

/// The floor's channel: reads frames from `from` until `until`, tallying their deltas
/// (decoded as the SDK decodes a `channel.delta`) into `tallies`.
fn relay_reader(
    mut from: impl AsyncRead + Unpin + Send + 'static,
    tallies: Tallies,
    until: tokio::time::Instant,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        // Read as `RawConn` reads the kernel's channel end: into the buffer's spare room.
        let mut buf = Vec::new();
        loop {
            buf.reserve(64 * 1024);
            match tokio::time::timeout_at(until, from.read_buf(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
            while let Some((msg, used)) = codec::decode_frame(&buf, codec::MAX_FRAME_BYTES) {
                buf.drain(..used);
                let Ok(Message::Notification(note)) = msg else { panic!("not a delta: {msg:?}") };
                let p: ChannelDeltaParams = serde_json::from_value(note.params).expect("delta");
                if let ProviderChunk::TextDelta { text } = &p.delta {
                    tallies.with(&p.session_key, |t| t.record(&p.run_id, p.seq, text));
                }
            }
        }
    })
}

/// The floors: relays in this process, from a "provider" socket to a "channel" socket
/// read as [`relay_reader`] reads, two hops as provider → kernel → channel.
struct Floors {
    /// Into a relay thread, out over a Unix socket.
    thread: tokio::net::UnixStream,
    /// Into a relay task in a runtime of its own, out over a Unix socket.
    task: tokio::net::UnixStream,
    /// The same, decoding each frame and encoding it again.
    recoding: tokio::net::UnixStream,
    /// The threads of the two relay tasks' runtimes: `task`'s, `recoding`'s.
    task_threads: [RelayThreads; 2],
    /// Into a relay thread, out over loopback TCP (as the SSE client reads).
    tcp: tokio::net::UnixStream,
    tallies: Tallies,
    readers: Vec<JoinHandle<()>>,
}

impl Floors {
    fn start(until: tokio::time::Instant) -> Floors {
        let tallies = Tallies::default();
        let mut readers = Vec::new();
        let mut unix_out = || {
            let (reader, writer) = pair();
            readers.push(relay_reader(reader, tallies.clone(), until));
            writer
        };
        let (thread, relay_in) = pair();
        relay_thread(relay_in, unix_out());
        let (task, relay_in) = pair();
        let plain = relay_task(relay_in, unix_out(), false);
        let (recoding, relay_in) = pair();
        let task_threads = [plain, relay_task(relay_in, unix_out(), true)];
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let out = std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("tcp");
        let (relay_out, _) = listener.accept().expect("accept");
        for s in [&out, &relay_out] {
            s.set_nodelay(true).expect("nodelay");
        }
        out.set_nonblocking(true).expect("nonblocking");
        let out = tokio::net::TcpStream::from_std(out).expect("tokio socket");
        readers.push(relay_reader(out, tallies.clone(), until));
        let (tcp, relay_in) = pair();
        relay_thread(relay_in, relay_out);
        Floors { thread, task, recoding, task_threads, tcp, tallies, readers }
    }

    /// One round through the relay `into` writes to: `n` frames at [`PACE`].
    async fn round(tallies: &Tallies, into: &mut tokio::net::UnixStream, n: u64) -> Tally {
        let mut pace = Pace::new(PACE);
        for seq in 0..n {
            pace.wait().await;
            into.write_all(&delta_frame("floor", seq)).await.expect("write to a relay");
        }
        tallies.take_once("floor", n).await
    }
}

/// The floors as processes of their own ([`relay_process`]), as the kernel is: a relay
/// thread, a relay task, and a relay task that decodes every frame into a message and
/// encodes it again (the least any reader of the protocol does), read as
/// [`relay_reader`] reads.
struct ProcessFloors {
    thread: tokio::net::UnixStream,
    task: tokio::net::UnixStream,
    recoding: tokio::net::UnixStream,
    /// The thread's process, the task's, the recoding task's.
    processes: [tokio::process::Child; 3],
    _dir: tempfile::TempDir,
}

/// The CPU time process `child` has had so far.
fn child_cpu(child: &tokio::process::Child) -> Duration {
    cpu(child.id().map_or(0, |id| id as i32))
}

impl ProcessFloors {
    async fn start(floors: &mut Floors, until: tokio::time::Instant) -> ProcessFloors {
        let dir = tempfile::tempdir().expect("a directory for the relays' socket");
        let (thread, thread_out, a) = relay_process(dir.path(), "thread").await;
        let (task, task_out, b) = relay_process(dir.path(), "task").await;
        let (recoding, recoding_out, c) = relay_process(dir.path(), "recoding").await;
        for out in [thread_out, task_out, recoding_out] {
            floors.readers.push(relay_reader(out, floors.tallies.clone(), until));
        }
        ProcessFloors { thread, task, recoding, processes: [a, b, c], _dir: dir }
    }
}

/// App `id` over a raw socket, holding capability `raw` of `kind` registered with `config`.
async fn raw_app(kernel: &Kernel, id: &str, kind: &str, config: Value) -> RawConn {
    let capabilities = json!({ format!("{kind}s"): ["raw"] });
    let manifest = json!({"id": id, "version": "1.0.0", "capabilities": capabilities});
    let mut conn = RawConn::app(&kernel.socket, manifest).await;
    let r = conn.call("capability.register", json!({"type": kind, "config": config})).await;
    assert_eq!(r["result"]["granted"], true, "{r}");
    conn
}

/// The kernel alone: provider `raw` and streaming channel `raw`, played over raw sockets
/// by this process. Returns the provider's connection and the task reading the channel's
/// until `until` (tallying its deltas into `bench.raw`, answering its `channel.send`).
async fn raw_ends(
    kernel: &Kernel,
    bench: &Bench,
    until: tokio::time::Instant,
) -> (RawConn, JoinHandle<()>) {
    let provider = raw_app(
        kernel,
        "raw-provider",
        "provider",
        json!({"providerId": "raw", "models": ["raw"]}),
    )
    .await;
    let mut channel =
        raw_app(kernel, "raw-channel", "channel", json!({"channelId": "raw", "streaming": true}))
            .await;
    let (tallies, waiting) = (bench.raw.clone(), bench.waiting.clone());
    let reader = tokio::spawn(async move {
        while let Some(msg) = channel.recv_until(until).await {
            match msg {
                Message::Notification(note) if note.method == "channel.delta" => {
                    let p: ChannelDeltaParams = serde_json::from_value(note.params).expect("delta");
                    if let ProviderChunk::TextDelta { text } = &p.delta {
                        tallies.with(&p.session_key, |t| t.record(&p.run_id, p.seq, text));
                    }
                }
                Message::Request(sent) if sent.method == "channel.send" => {
                    let id = serde_json::to_value(&sent.id).expect("an id");
                    channel.answer(&id, json!({"messageId": null})).await;
                    let key = sent.params["sessionKey"].as_str().unwrap_or_default();
                    if let Some(tx) = waiting.lock().unwrap().remove(key) {
                        let _ = tx.send(());
                    }
                }
                _ => {}
            }
        }
    });
    (provider, reader)
}

/// One round of the kernel alone: a run of agent `raw` in session `key`, its provider
/// streaming `n` deltas at [`PACE`] over its raw socket.
async fn raw_round(
    provider: &mut RawConn,
    client: &Client,
    bench: &Bench,
    key: &str,
    n: u64,
) -> Tally {
    let rx = dispatch(client, bench, (key, "raw", "raw"), "go").await;
    let call = provider.expect_method("provider.complete").await;
    let mut pace = Pace::new(PACE);
    for _ in 0..n {
        pace.wait().await;
        let text = now_ns().to_string();
        provider
            .send_value(&json!({"id": call["id"], "chunk": {"type": "text_delta", "text": text}}))
            .await;
    }
    provider.answer(&call["id"], json!({"message": {"content": "ok"}})).await;
    reply(rx, key, DEADLINE).await;
    bench.raw.take_once(key, n).await
}

/// Runs `round`, adding to `spent` the CPU time `cpu` counts meanwhile.
async fn metered<T>(
    spent: &mut Duration,
    cpu: impl Fn() -> Duration,
    round: impl Future<Output = T>,
) -> T {
    let before = cpu();
    let done = round.await;
    *spent += cpu().saturating_sub(before);
    done
}

/// The kernel's CPU for one turn of the kernel alone that streams nothing (the mean of
/// three): what each round's CPU holds besides its deltas (the dispatch, the run, the
/// transcript's writes), taken off to give the CPU per delta.
async fn turn_cpu(
    provider: &mut RawConn,
    client: &Client,
    bench: &Bench,
    kernel: &Kernel,
) -> Duration {
    let before = cpu(kernel.pid());
    for _ in 0..3 {
        raw_round(provider, client, bench, "lat-raw", 0).await;
    }
    cpu(kernel.pid()).saturating_sub(before) / 3
}

/// The kernel's CPU per delta of `rounds` rounds that took `total` and streamed `deltas`,
/// each round's turn (`turn`) taken off.
fn per_delta(total: Duration, rounds: u64, turn: Duration, deltas: u64) -> String {
    per(total.saturating_sub(turn * rounds as u32), deltas)
}

/// The CPU time process `pid` has had so far: its threads' time on the CPU as the
/// scheduler counts it, exactly (`/proc/<pid>/task/*/schedstat`).
fn cpu(pid: i32) -> Duration {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the kernel's threads");
    threads_cpu(tasks.flatten().map(|task| task.path()))
}

/// The CPU time the threads at `tasks` (`/proc/<pid>/task/<tid>`) have had so far.
fn threads_cpu(tasks: impl IntoIterator<Item = std::path::PathBuf>) -> Duration {
    tasks
        .into_iter()
        .map(|task| {
            let line = std::fs::read_to_string(task.join("schedstat")).unwrap_or_default();
            Duration::from_nanos(line.split(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0))
        })
        .sum()
}

/// `cpu` per item, in µs.
fn per(cpu: Duration, items: u64) -> String {
    format!("{:.1} µs", cpu.as_secs_f64() * 1e6 / items.max(1) as f64)
}

/// Everything the benchmark runs against.
struct Setup {
    kernel: Kernel,
    bench: Bench,
    client: Client,
    http: reqwest::Client,
    /// The REST surface's base URL.
    base: String,
    /// A bound for every reader.
    end: tokio::time::Instant,
}

/// The latency part: one session streaming at [`PACE`], through the kernel (SDK ends, raw
/// ends, SSE) and through the floors, `per_round` deltas each in turn, [`ROUNDS`] times.
async fn latency(s: &Setup, per_round: u64) {
    let Setup { kernel, bench, client, .. } = s;
    turn(client, bench, ("lat-sse", "plain"), "hi", DEADLINE).await;
    let follower = follow_sse(&s.http, &s.base, "lat-sse", bench.sse.clone(), s.end).await;
    let mut floors = Floors::start(s.end);
    let mut processes = ProcessFloors::start(&mut floors, s.end).await;
    let (mut provider, raw_reader) = raw_ends(kernel, bench, s.end).await;
    let within = DEADLINE + PACE * per_round as u32;
    let ask = stream(per_round, PACE);
    let [mut sdk, mut raw, mut sse, mut thread, mut task, mut tcp, mut p_thread, mut p_recoding] =
        std::array::from_fn(|_| Path::default());
    let turn_cost = turn_cpu(&mut provider, client, bench, kernel).await;
    let mut raw_cpu = Duration::ZERO;
    for _ in 0..ROUNDS {
        turn(client, bench, ("lat-live", "live"), &ask, within).await;
        sdk.push(bench.channel.take_once("lat-live", per_round).await);
        let round = raw_round(&mut provider, client, bench, "lat-raw", per_round);
        raw.push(metered(&mut raw_cpu, || cpu(kernel.pid()), round).await);
        thread.push(Floors::round(&floors.tallies, &mut floors.thread, per_round).await);
        task.push(Floors::round(&floors.tallies, &mut floors.task, per_round).await);
        p_thread.push(Floors::round(&floors.tallies, &mut processes.thread, per_round).await);
        let round = Floors::round(&floors.tallies, &mut processes.recoding, per_round);
        p_recoding.push(round.await);
        turn(client, bench, ("lat-sse", "plain"), &ask, within).await;
        sse.push(bench.sse.take_once("lat-sse", per_round).await);
        tcp.push(Floors::round(&floors.tallies, &mut floors.tcp, per_round).await);
    }
    for reader in floors.readers.iter().chain([&follower, &raw_reader]) {
        reader.abort();
    }
    let total = ROUNDS * per_round;
    println!(
        "one session streaming a delta every {PACE:?}: {total} deltas to each receiver, \
         in {ROUNDS} rounds of {per_round} taken in turn"
    );
    for (name, path) in [("SDK channel", &sdk), ("raw channel", &raw), ("SSE client", &sse)] {
        if path.all.received < total || path.all.gaps > 0 {
            let (received, gaps) = (path.all.received, path.all.gaps);
            println!("  at the {name}: {received} of {total} arrived ({gaps} seq gaps)");
        }
    }
    let rows = [
        ("SDK provider -> kernel -> SDK channel (channel.delta handler)", &mut sdk),
        ("raw provider -> kernel -> raw channel (the kernel alone)", &mut raw),
        ("floor: relay thread, Unix -> Unix", &mut thread),
        ("floor: relay task, own runtime (2 workers), Unix -> Unix", &mut task),
        ("floor: relay thread in a process of its own, Unix -> Unix", &mut p_thread),
        ("floor: recoding relay task in a process of its own", &mut p_recoding),
        ("SDK provider -> kernel -> SSE client (GET /sessions/{key}/events)", &mut sse),
        ("floor: relay thread, Unix -> loopback TCP", &mut tcp),
    ];
    for (name, path) in rows {
        println!("  {name:<66} {}", path.all.percentiles());
    }
    println!("  the kernel alone / relay thread: {} (goal <= 1.5)", raw.against(&thread));
    println!("  the kernel alone / relay task:   {}", raw.against(&task));
    println!("  the kernel alone / relay process (thread): {}", raw.against(&p_thread));
    println!("  the kernel alone / recoding relay process: {}", raw.against(&p_recoding));
    println!("  recoding relay process / relay thread: {}", p_recoding.against(&thread));
    println!("  SDK ends / relay thread:         {}", sdk.against(&thread));
    println!("  SSE / relay thread to TCP:       {}", sse.against(&tcp));
    println!(
        "  kernel CPU per delta, the kernel alone: {} (each round's turn, {}, taken off)",
        per_delta(raw_cpu, ROUNDS, turn_cost, raw.all.received),
        per(turn_cost, 1)
    );
}

/// The kernel alone against the Unix relays only (in this process: thread, task,
/// recoding task; in processes of their own: thread, task, recoding task), `rounds`
/// rounds of `per_round` deltas in turn, with the CPU per delta of the kernel and of the
/// relay tasks and processes: a steady load to profile the kernel's path with
/// (`--alone=N`).
async fn alone(s: &Setup, rounds: u64, per_round: u64) {
    let Setup { kernel, bench, client, .. } = s;
    let mut floors = Floors::start(s.end);
    let mut processes = ProcessFloors::start(&mut floors, s.end).await;
    let (mut provider, raw_reader) = raw_ends(kernel, bench, s.end).await;
    let [mut raw, mut thread, mut task, mut recoding, mut p_thread, mut p_task, mut p_recoding] =
        std::array::from_fn(|_| Path::default());
    let turn_cost = turn_cpu(&mut provider, client, bench, kernel).await;
    let (mut raw_cpu, mut task_cpu) = (Duration::ZERO, [Duration::ZERO; 2]);
    let mut process_cpu = [Duration::ZERO; 3];
    for _ in 0..rounds {
        let round = raw_round(&mut provider, client, bench, "lat-raw", per_round);
        raw.push(metered(&mut raw_cpu, || cpu(kernel.pid()), round).await);
        thread.push(Floors::round(&floors.tallies, &mut floors.thread, per_round).await);
        let (tallies, threads) = (&floors.tallies, &floors.task_threads);
        let round = Floors::round(tallies, &mut floors.task, per_round);
        task.push(metered(&mut task_cpu[0], || threads[0].cpu(), round).await);
        let round = Floors::round(tallies, &mut floors.recoding, per_round);
        recoding.push(metered(&mut task_cpu[1], || threads[1].cpu(), round).await);
        let children = &processes.processes;
        let round = Floors::round(tallies, &mut processes.thread, per_round);
        p_thread.push(metered(&mut process_cpu[0], || child_cpu(&children[0]), round).await);
        let round = Floors::round(tallies, &mut processes.task, per_round);
        p_task.push(metered(&mut process_cpu[1], || child_cpu(&children[1]), round).await);
        let round = Floors::round(tallies, &mut processes.recoding, per_round);
        p_recoding.push(metered(&mut process_cpu[2], || child_cpu(&children[2]), round).await);
    }
    for reader in floors.readers.iter().chain([&raw_reader]) {
        reader.abort();
    }
    println!("the kernel alone, {rounds} rounds of {per_round} deltas every {PACE:?}:");
    println!("  the kernel alone  {}", raw.all.percentiles());
    println!("  the relay thread  {}", thread.all.percentiles());
    println!("  the relay task    {}", task.all.percentiles());
    println!("  the relay task decoding and encoding each frame {}", recoding.all.percentiles());
    println!("  a relay process, thread  {}", p_thread.all.percentiles());
    println!("  a relay process, task    {}", p_task.all.percentiles());
    println!("  a relay process, recoding task {}", p_recoding.all.percentiles());
    println!("  the kernel alone / relay thread: {} (goal <= 1.5)", raw.against(&thread));
    println!("  the kernel alone / relay task:   {}", raw.against(&task));
    println!("  the recoding relay task / relay thread: {}", recoding.against(&thread));
    println!("  the kernel alone / relay process (thread): {}", raw.against(&p_thread));
    println!("  the kernel alone / relay process (task):   {}", raw.against(&p_task));
    println!("  the kernel alone / recoding relay process: {}", raw.against(&p_recoding));
    println!("  relay process (thread) / relay thread: {}", p_thread.against(&thread));
    println!("  recoding relay process / relay thread: {}", p_recoding.against(&thread));
    println!(
        "  kernel CPU per delta: {} (each round's turn, {}, taken off)",
        per_delta(raw_cpu, rounds, turn_cost, raw.all.received),
        per(turn_cost, 1)
    );
    println!(
        "  relay task CPU per delta: {}; the recoding relay task's: {}",
        per(task_cpu[0], task.all.received),
        per(task_cpu[1], recoding.all.received)
    );
    println!(
        "  relay process CPU per delta: thread {}, task {}, recoding task {}",
        per(process_cpu[0], p_thread.all.received),
        per(process_cpu[1], p_task.all.received),
        per(process_cpu[2], p_recoding.all.received)
    );
}

/// The throughput part: 64 sessions streaming at once at [`LOAD_PACE`] for `seconds`,
/// each with its streaming channel and an SSE follower.
async fn load(s: &Setup, seconds: u64) {
    let Setup { kernel, bench, client, .. } = s;
    let n = seconds * 1000 / LOAD_PACE.as_millis() as u64;
    let keys: Vec<String> = (0..SESSIONS).map(|i| format!("load-{i}")).collect();
    let mut followers = Vec::new();
    for key in &keys {
        // A session is followed once it exists.
        turn(client, bench, (key, "live"), "hi", DEADLINE).await;
        followers.push(follow_sse(&s.http, &s.base, key, bench.sse.clone(), s.end).await);
    }
    let sent_before = bench.sent.load(Ordering::Relaxed);
    let cpu_before = cpu(kernel.pid());
    let started = Instant::now();
    let within = DEADLINE + LOAD_PACE * n as u32 * 2;
    let mut streams = Vec::new();
    for key in &keys {
        let (client, bench, key) = (client.clone(), bench.clone(), key.clone());
        let ask = stream(n, LOAD_PACE);
        streams.push(tokio::spawn(async move {
            turn(&client, &bench, (&key, "live"), &ask, within).await;
        }));
    }
    for stream in streams {
        stream.await.expect("a streaming session");
    }
    let (mut at_channel, mut at_sse) = (Tally::default(), Tally::default());
    for key in &keys {
        at_channel.add(bench.channel.take_once(key, n).await);
        at_sse.add(bench.sse.take_once(key, n).await);
    }
    let took = started.elapsed();
    let cpu_after = cpu(kernel.pid());
    for follower in followers {
        follower.abort();
    }
    let sent = bench.sent.load(Ordering::Relaxed) - sent_before;
    let offered = SESSIONS as f64 / LOAD_PACE.as_secs_f64();
    println!(
        "{SESSIONS} sessions streaming at once, a delta every {LOAD_PACE:?} each for {seconds} s \
         (offered {offered:.0}/s; {sent} sent in {took:.2?}), each with its streaming channel \
         and an SSE follower:"
    );
    for (name, tally) in [("channel", &mut at_channel), ("SSE followers", &mut at_sse)] {
        let latency = tally.percentiles();
        println!(
            "  at the {name}: {:.0} deltas/s; {} missing ({} seq gaps), {} lagged (goal 0); \
             latency {latency}",
            tally.rate(),
            sent.saturating_sub(tally.received),
            tally.gaps,
            tally.lagged,
        );
    }
    println!("  kernel CPU per delta sent: {}", per(cpu_after.saturating_sub(cpu_before), sent));
}

fn main() {
    if relay_child().is_some() {
        return;
    }
    tokio::runtime::Runtime::new().expect("runtime").block_on(bench_main());
}

async fn bench_main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let seconds: u64 = std::env::args()
        .find_map(|a| a.strip_prefix("--seconds=").and_then(|n| n.parse().ok()))
        .unwrap_or(if quick { 3 } else { 10 });
    now_ns();
    let kernel = Kernel::start_with(CONFIG, &["--http", "127.0.0.1:0"]).await;
    let base = format!("http://{}", kernel.endpoint("http").await);
    let bench = Bench::default();
    bench_app(&kernel, &bench);
    let client = kernel.registered_client("bench-user").await;
    // The app is ready once its provider answers a first turn.
    turn(&client, &bench, ("warm", "plain"), "hi", DEADLINE).await;
    // No timeout on a whole request: each read of an event stream has its deadline.
    let http = reqwest::Client::builder().build().expect("http client");
    let end = tokio::time::Instant::now() + Duration::from_secs(600 + 2 * seconds);
    let setup = Arc::new(Setup { kernel, bench, client, http, base, end });
    // On a worker, as the SDK's provider and every reader: a sender on the main thread
    // would wake the runtime's workers differently.
    let alone_rounds: Option<u64> =
        std::env::args().find_map(|a| a.strip_prefix("--alone=").and_then(|n| n.parse().ok()));
    let parts = tokio::spawn(async move {
        if let Some(rounds) = alone_rounds {
            return alone(&setup, rounds, 200).await;
        }
        latency(&setup, if quick { 100 } else { 200 }).await;
        load(&setup, seconds).await;
    });
    parts.await.expect("the benchmark");
}
