//! Session benchmark against the real kernel: durable `message.dispatch` throughput with
//! 64 concurrent senders, memory per resident session at 10k and 100k sessions, and the
//! dashboard's Sessions page there: `session.list` pages of 50, with each filter.
//!
//! Run with `cargo bench -p burrow-tests --bench sessions`; add `-- --quick` for 10k
//! sessions only, and `--seconds=N` for a throughput run of N seconds instead of 5.
//! Agents do not auto-reply here, so this measures the dispatch path: hooks, the session
//! actor, and the durable (fsynced, group-committed) append. The same load of
//! `app.heartbeat` gives the floor: what the IPC alone costs on this machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use burrow_sdk::Client;
use burrow_tests::Kernel;
use serde_json::{Value, json};

const SENDERS: usize = 64;
const CONFIG: &str = "[ipc]\nheartbeat_timeout_ms = 600000\nheartbeat_interval_ms = 300000\n\
[agents.main]\nauto_reply = false\n[sessions]\nidle_timeout_ms = 3600000\n";

/// User + system CPU seconds of `pid` so far.
fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 (11 and 12 after the command name).
    (ticks(11) + ticks(12)) / 100.0
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Sends `request(i)` from 64 senders, one request at a time each, until `total` are
/// done or `for_time` passes.
async fn load(
    clients: &[Client],
    total: u64,
    for_time: Duration,
    request: impl Fn(u64) -> (&'static str, Value) + Send + Sync + 'static,
) -> (u64, Duration) {
    let next = Arc::new(AtomicU64::new(0));
    let request = Arc::new(request);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in clients {
        let (c, next, request) = (c.clone(), next.clone(), request.clone());
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total || start.elapsed() > for_time {
                    return done;
                }
                let (method, params) = request(i);
                c.request(method, params).await.expect(method);
                done += 1;
            }
        }));
    }
    let mut done = 0;
    for t in tasks {
        done += t.await.expect("sender");
    }
    (done, start.elapsed())
}

/// `message.dispatch` of a short text to `key`.
fn dispatch(key: String) -> (&'static str, Value) {
    ("message.dispatch", json!({"sessionKey": key, "content": "benchmark message"}))
}

/// Runs `load` for `for_time` and prints its rate and the CPU each side spent per request.
async fn measure(
    what: &str,
    kernel: &Kernel,
    clients: &[Client],
    for_time: Duration,
    request: impl Fn(u64) -> (&'static str, Value) + Send + Sync + 'static,
) {
    let (k0, c0) = (cpu_seconds(kernel.pid()), cpu_seconds(std::process::id() as i32));
    let (done, took) = load(clients, u64::MAX, for_time, request).await;
    let (k1, c1) = (cpu_seconds(kernel.pid()), cpu_seconds(std::process::id() as i32));
    println!(
        "{what}, {SENDERS} concurrent senders: {done} in {took:.2?} = {:.0}/s",
        done as f64 / took.as_secs_f64()
    );
    println!(
        "  CPU per request: kernel {:.1} µs, benchmark clients {:.1} µs",
        (k1 - k0) * 1e6 / done.max(1) as f64,
        (c1 - c0) * 1e6 / done.max(1) as f64
    );
}

/// The median time of `session.list` pages of 50 (the dashboard's Sessions page), first
/// and middle pages, unfiltered and with each kind of filter, at `stored` sessions.
async fn list_pages(client: &Client, stored: u64) {
    let filters = [
        ("no filter", json!({})),
        ("resident", json!({"active": true})),
        ("not resident", json!({"active": false})),
        ("agent", json!({"agentId": "main"})),
        ("keep-alive", json!({"keepAlive": true})),
    ];
    for (what, filter) in filters {
        for offset in [0, stored / 2] {
            let mut took = Vec::new();
            for _ in 0..21 {
                let params = json!({"filter": filter, "limit": 50, "offset": offset});
                let start = Instant::now();
                client.request("session.list", params).await.expect("session.list");
                took.push(start.elapsed());
            }
            took.sort();
            println!("  session.list, {what}, offset {offset}: median {:.2?}", took[10]);
        }
    }
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // `--seconds=N`: a longer throughput run, to see a rate held rather than a burst.
    let seconds = std::env::args()
        .find_map(|a| a.strip_prefix("--seconds=").and_then(|n| n.parse().ok()))
        .unwrap_or(5);
    let kernel = Kernel::start_with_config(CONFIG).await;
    let mut clients = Vec::new();
    for n in 0..SENDERS {
        clients.push(kernel.registered_client(&format!("bench-{n}")).await);
    }

    // Throughput: 64 senders over 256 sessions for 5 s, or as long as `--seconds` says.
    let for_time = Duration::from_secs(seconds);
    measure("durable message.dispatch", &kernel, &clients, for_time, |i| {
        dispatch(format!("tp-{}", i % 256))
    })
    .await;
    // Memory per resident session.
    for target in if quick { vec![10_000u64] } else { vec![10_000u64, 100_000] } {
        let base = kernel.client().await.kernel_info().await.expect("info").sessions;
        let before = rss_kib(kernel.pid());
        let fresh = target - base.min(target);
        let (done, took) = load(&clients, fresh, Duration::from_secs(600), move |i| {
            dispatch(format!("mem-{target}-{i}"))
        })
        .await;
        let resident = kernel.client().await.kernel_info().await.expect("info").sessions;
        let after = rss_kib(kernel.pid());
        println!(
            "resident sessions {resident}: +{done} sessions in {took:.2?}; kernel RSS {before} KiB -> {after} KiB = {:.1} KiB per session",
            after.saturating_sub(before) as f64 / done.max(1) as f64
        );
        list_pages(&clients[0], target).await;
    }

    // The floor under the dispatch: the same load of a request the kernel answers at
    // once; what a dispatch costs beyond it is the dispatch itself.
    measure("app.heartbeat (the IPC floor)", &kernel, &clients, Duration::from_secs(3), |_| {
        ("app.heartbeat", json!({}))
    })
    .await;
}
