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

mod floors;
mod measure;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burrow_protocol::methods::invoke::{AssistantMessage, ChannelDeltaParams};
use burrow_protocol::{Manifest, Message};
use burrow_sdk::{
    App, ChannelContext, ChannelSendParams, ChannelSendResult, ChannelStreamEvent, Client,
    ErrorObject, ProviderChunk, ProviderCompleteResult,
};
use burrow_tests::{DEADLINE, Kernel, RawConn};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use floors::{Floors, ProcessFloors, child_cpu, relay_child};
use measure::{Pace, Path, Tallies, Tally, cpu, metered, now_ns, per, per_delta};

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
