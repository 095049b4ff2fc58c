//! Agent-turn benchmark against the real kernel: 64 senders, each running turns one after
//! another against a provider and a channel (one app, in this process) that answer at
//! once, 20 turns to a session before it starts the next (so the database grows while a
//! run's context does not). Reports runs/s in windows of 10 000 runs (issue 17: the rate
//! must not fall as runs are stored), the whole run's rate, and the turn's latency: from
//! the `message.dispatch` answer to the reply's `channel.send` at the channel, beside
//! the dispatch round trip itself.
//!
//! Run with `cargo bench -p burrow-tests --bench turns`; `-- --runs=N` for N runs
//! instead of 100 000 (`--quick`: 20 000).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burrow_protocol::Manifest;
use burrow_protocol::methods::invoke::{AssistantMessage, ProviderCompleteResult};
use burrow_sdk::{App, ChannelSendResult, Client};
use burrow_tests::Kernel;
use serde_json::json;
use tokio::sync::oneshot;

const SESSIONS: usize = 64;
const WINDOW: u64 = 10_000;
/// Turns in one session before its sender starts another.
const TURNS_PER_SESSION: u64 = 20;
const CONFIG: &str = "[ipc]\nheartbeat_timeout_ms = 600000\nheartbeat_interval_ms = 300000\n\
[agents.main]\nprovider = \"fast\"\ntools = []\n[agents.quiet]\nauto_reply = false\n\
[sessions]\nidle_timeout_ms = 3600000\n";

/// Replies awaited, by session: the sender of a turn waits on its own.
type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<Instant>>>>;

/// The provider and the channel, answering at once; the channel tells the turn's sender.
async fn agent_app(kernel: &Kernel, waiting: Waiting) {
    let app = App::new(Manifest::new("bench-agent", "1.0.0"))
        .provider("fast", vec!["fast".to_owned()], |_params, _cx| async move {
            let message = AssistantMessage { content: "ok".to_owned(), tool_calls: None };
            Ok(ProviderCompleteResult { message, usage: None })
        })
        .channel("bench", "", move |sent, _cx| {
            let waiting = waiting.clone();
            async move {
                let tx = waiting.lock().unwrap().remove(&sent.session_key);
                if let Some(tx) = tx {
                    let _ = tx.send(Instant::now());
                }
                Ok(ChannelSendResult { message_id: None })
            }
        });
    let app = app.socket(kernel.socket.clone());
    tokio::spawn(async move { app.run_until(std::future::pending()).await });
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runs: u64 = std::env::args()
        .find_map(|a| a.strip_prefix("--runs=").and_then(|n| n.parse().ok()))
        .unwrap_or(if quick { 20_000 } else { 100_000 });
    let kernel = Kernel::start_with_config(CONFIG).await;
    let waiting: Waiting = Arc::default();
    agent_app(&kernel, waiting.clone()).await;
    let mut clients = Vec::new();
    for n in 0..SESSIONS {
        clients.push(kernel.registered_client(&format!("bench-user-{n}")).await);
    }
    // The agent's app is ready once its provider answers a first turn.
    let warm = run_turn(&clients[0], "warm", &waiting).await;
    assert!(warm.is_some(), "no reply to a first turn");

    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let windows = Arc::new(Mutex::new(Vec::<(u64, Instant)>::new()));
    let start = Instant::now();
    windows.lock().unwrap().push((0, start));
    let mut tasks = Vec::new();
    for (n, client) in clients.iter().enumerate() {
        let (client, waiting, done, windows) =
            (client.clone(), waiting.clone(), done.clone(), windows.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for turn in 0u64.. {
                let i = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= runs {
                    break;
                }
                // A conversation of TURNS_PER_SESSION turns, then a new one: the
                // database grows, each run's context does not.
                let key = format!("turns-{n}-{}", turn / TURNS_PER_SESSION);
                let Some(turn) = run_turn(&client, &key, &waiting).await else {
                    panic!("no reply in session {key}");
                };
                latencies.push(turn);
                if (i + 1) % WINDOW == 0 {
                    windows.lock().unwrap().push((i + 1, Instant::now()));
                }
            }
            latencies
        }));
    }
    let mut turns = Vec::new();
    for t in tasks {
        turns.extend(t.await.expect("sender"));
    }
    let took = start.elapsed();
    let marks = windows.lock().unwrap().clone();
    let rates: Vec<f64> = marks
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) as f64 / w[1].1.duration_since(w[0].1).as_secs_f64())
        .collect();
    println!("agent turns, {SESSIONS} sessions, provider and channel answering at once:");
    for (k, rate) in rates.iter().enumerate() {
        println!(
            "  runs {:>7}–{:>7}: {rate:.0} runs/s",
            k as u64 * WINDOW,
            (k as u64 + 1) * WINDOW
        );
    }
    println!("  all {runs} runs in {took:.2?} = {:.0} runs/s", runs as f64 / took.as_secs_f64());
    if let (Some(first), Some(last)) = (rates.first(), rates.last()) {
        println!("  last window / first window = {:.2} (goal >= 0.9)", last / first);
    }
    turns.sort();
    println!(
        "  turn under that load (dispatch answered -> channel.send at the channel): p50 {:?}, p99 {:?}",
        percentile(&turns, 0.5),
        percentile(&turns, 0.99)
    );
    // One turn at a time: the turn's own latency.
    let mut single = Vec::new();
    for i in 0..1_000u64 {
        let key = format!("single-{}", i / TURNS_PER_SESSION);
        single.push(run_turn(&clients[0], &key, &waiting).await.expect("a reply"));
    }
    single.sort();
    let turn = percentile(&single, 0.5);
    println!("  turn, one at a time: p50 {turn:?}, p99 {:?}", percentile(&single, 0.99));
    // The floor: the durable dispatch round trip, one at a time, agents not replying.
    let mut trips = Vec::new();
    for i in 0..2_000 {
        let params = json!({"sessionKey": format!("floor-{}", i % 64), "content": "x",
            "metadata": {"agentId": "quiet"}});
        let t = Instant::now();
        clients[0].request("message.dispatch", params).await.expect("dispatch");
        trips.push(t.elapsed());
    }
    trips.sort();
    let floor = percentile(&trips, 0.5);
    println!("  durable message.dispatch round trip, one at a time: p50 {floor:?}");
    println!(
        "  the disk's floor, a 300-byte append + fdatasync: p50 {:?}",
        sync_floor(kernel.dir())
    );
    println!(
        "  turn p50 / dispatch p50, one at a time = {:.1} (goal <= 1.5)",
        turn.as_secs_f64() / floor.as_secs_f64()
    );
}

/// One turn in session `key`: the dispatch, then the reply at the channel; the time from
/// the dispatch's answer to the reply (`None` if none came within 30 s).
async fn run_turn(client: &Client, key: &str, waiting: &Waiting) -> Option<Duration> {
    let (tx, rx) = oneshot::channel();
    waiting.lock().unwrap().insert(key.to_owned(), tx);
    let params = json!({"sessionKey": key, "content": "hello", "metadata": {"channelId": "bench"}});
    client.request("message.dispatch", params).await.expect("dispatch");
    let answered = Instant::now();
    let replied = tokio::time::timeout(Duration::from_secs(30), rx).await.ok()?.ok()?;
    Some(replied.saturating_duration_since(answered))
}

/// The disk's floor beside the kernel's state: the p50 of 2 000 appends of 300 bytes to a
/// file in `dir`, each followed by `fdatasync`, as the store's journal does.
fn sync_floor(dir: &std::path::Path) -> Duration {
    use std::io::Write;
    let path = dir.join("sync-floor.bin");
    let mut file = std::fs::File::create(&path).expect("floor file");
    let record = [0x5au8; 300];
    let mut samples: Vec<Duration> = (0..2_000)
        .map(|_| {
            let t = Instant::now();
            file.write_all(&record).expect("append");
            file.sync_data().expect("fdatasync");
            t.elapsed()
        })
        .collect();
    let _ = std::fs::remove_file(&path);
    samples.sort();
    percentile(&samples, 0.5)
}
