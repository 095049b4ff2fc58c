//! Pipelined throughput and round trips against the real kernel with raw, blocking
//! clients (each request's frame built once, answers counted by their length prefix), so
//! that the client costs little beside the kernel; and each figure's floor, measured in
//! the same run over the same kind of socket, in this process:
//!
//! - `app.heartbeat` pipelined on one connection, 256 in flight; floor: an echo server
//!   answering each read with one write;
//! - `tool.call` routed to a tool app (raw, answering every read's calls in one write),
//!   64 in flight; floor: a relay forwarding the caller's frames to the same kind of tool
//!   app and its answers back, unchanged (a thread per direction);
//! - `app.heartbeat` one at a time: the round trip; floor: the echo server's.
//!
//! Run with `cargo bench -p burrow-tests --bench pipeline`; `-- tool` (or any word of a
//! part's name) runs only the parts whose names hold it.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use burrow_protocol::{Message, codec};
use burrow_tests::Kernel;
use serde_json::{Value, json};

/// Rounds of each throughput figure (the kernel's and its floor's in turn): the median
/// is reported, with the range.
const ROUNDS: usize = 5;
const TOTAL: u64 = 400_000;
const ROUTED: u64 = 150_000;
const ROUND_TRIPS: usize = 20_000;

fn frame(msg: &Message) -> Vec<u8> {
    codec::encode_frame(msg, codec::MAX_FRAME_BYTES).expect("encode")
}

/// Reads whole frames from `stream` into `buf`, calling `each` with every frame's body;
/// false at the end of the stream.
fn read_frames(stream: &mut UnixStream, buf: &mut Vec<u8>, mut each: impl FnMut(&[u8])) -> bool {
    let mut chunk = [0u8; 64 * 1024];
    let n = match stream.read(&mut chunk) {
        Ok(0) | Err(_) => return false,
        Ok(n) => n,
    };
    buf.extend_from_slice(&chunk[..n]);
    let mut at = 0;
    while buf.len() - at >= 4 {
        let len = u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
        if buf.len() - at - 4 < len {
            break;
        }
        each(&buf[at + 4..at + 4 + len]);
        at += 4 + len;
    }
    buf.drain(..at);
    true
}

/// Sends `request` and waits for its answer (a blocking call, for setting up).
fn call(stream: &mut UnixStream, method: &str, params: Value) -> Value {
    stream.write_all(&frame(&Message::request(1u64, method, params))).expect("write");
    let mut buf = Vec::new();
    let mut answer = None;
    while answer.is_none() {
        assert!(read_frames(stream, &mut buf, |body| {
            let mut framed = (body.len() as u32).to_be_bytes().to_vec();
            framed.extend_from_slice(body);
            if let Some((Ok(Message::Response(r)), _)) = codec::decode_frame(&framed, 1 << 30) {
                answer = Some(r.outcome.unwrap_or_else(|e| json!({ "error": e.message })));
            }
        }));
    }
    answer.unwrap_or_default()
}

/// A connection registered as `id` (with `manifest` capabilities), ready.
fn app(socket: &Path, id: &str, capabilities: Value) -> UnixStream {
    let mut stream = UnixStream::connect(socket).expect("connect");
    let manifest = json!({"id": id, "version": "1.0.0", "capabilities": capabilities});
    let registered =
        call(&mut stream, "app.register", json!({"manifest": manifest, "protocolVersion": "1.0"}));
    assert!(registered["appId"].is_string(), "{registered}");
    call(&mut stream, "app.ready", json!({}));
    stream
}

/// Writes `request` `total` times with at most `window` unanswered, reading the answers on
/// another thread; the rate of answers.
fn pipelined(stream: &UnixStream, request: &[u8], total: u64, window: u64) -> f64 {
    let answered = Arc::new(AtomicU64::new(0));
    let mut reader = stream.try_clone().expect("clone");
    let counted = answered.clone();
    let start = Instant::now();
    let reading = std::thread::spawn(move || {
        let mut buf = Vec::new();
        while counted.load(Ordering::Relaxed) < total {
            let mut n = 0;
            if !read_frames(&mut reader, &mut buf, |_| n += 1) {
                break;
            }
            counted.fetch_add(n, Ordering::Relaxed);
        }
    });
    let mut writer = stream.try_clone().expect("clone");
    let mut sent = 0u64;
    let batch: Vec<u8> = request.repeat(window as usize);
    while sent < total {
        let room = window - (sent - answered.load(Ordering::Relaxed)).min(window);
        if room < window / 4 {
            std::thread::yield_now();
            continue;
        }
        let n = room.min(total - sent);
        writer.write_all(&batch[..n as usize * request.len()]).expect("write");
        sent += n;
    }
    reading.join().expect("reader");
    answered.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// One request at a time: the p50 round trip.
fn round_trip(mut stream: UnixStream, request: &[u8]) -> Duration {
    let mut buf = Vec::new();
    let mut samples = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let start = Instant::now();
        stream.write_all(request).expect("write");
        let mut got = 0;
        while got == 0 {
            assert!(read_frames(&mut stream, &mut buf, |_| got += 1));
        }
        samples.push(start.elapsed());
    }
    samples.sort();
    samples[samples.len() / 2]
}

/// The floor: an echo server on `path` answering each read with one write of it.
fn echo_server(path: PathBuf) {
    let listener = UnixListener::bind(&path).expect("bind");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut chunk = vec![0u8; 64 * 1024];
                while let Ok(n) = stream.read(&mut chunk) {
                    if n == 0 || stream.write_all(&chunk[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// The head of a request, its params skipped unread.
#[derive(serde::Deserialize)]
struct Head {
    id: u64,
    method: String,
}

/// An answer to request `id`: `{content: null}`.
#[derive(serde::Serialize)]
struct Answer {
    id: u64,
    result: Content,
}

#[derive(serde::Serialize)]
struct Content {
    content: (),
}

/// A tool app answering every `tool.invoke` of a read in one write.
fn tool_app(socket: &Path) {
    let mut stream = app(socket, "bench-tools", json!({"tools": ["*"]}));
    let config = json!({"name": "bench_echo", "description": "answers at once"});
    let granted =
        call(&mut stream, "capability.register", json!({"type": "tool", "config": config}));
    assert_eq!(granted["granted"], true, "{granted}");
    std::thread::spawn(move || answer_requests(stream, Some("tool.invoke")));
}

/// Answers every request on `stream` (of `method`, if given) with `{content: null}`, all
/// the answers to one read in one write. It reads only each request's id and method, and
/// writes its answers without building values, so that it costs little beside the kernel.
fn answer_requests(mut stream: UnixStream, method: Option<&str>) {
    let mut buf = Vec::new();
    let mut writer = stream.try_clone().expect("clone");
    loop {
        let mut out = Vec::new();
        let ok = read_frames(&mut stream, &mut buf, |body| {
            if let Ok(head) = rmp_serde::from_slice::<Head>(body)
                && method.is_none_or(|m| head.method == m)
            {
                let answer = Answer { id: head.id, result: Content { content: () } };
                let answer = rmp_serde::to_vec_named(&answer).expect("encode");
                out.extend_from_slice(&(answer.len() as u32).to_be_bytes());
                out.extend_from_slice(&answer);
            }
        });
        if !ok || (!out.is_empty() && writer.write_all(&out).is_err()) {
            return;
        }
    }
}

/// The floor of a routed call: a relay on `path` that forwards what the caller writes to
/// a tool app (as [`tool_app`] answers) and the answers back, unchanged, with a thread
/// for each direction, each read in one write.
fn relay_server(path: PathBuf) {
    let listener = UnixListener::bind(&path).expect("bind");
    std::thread::spawn(move || {
        for caller in listener.incoming() {
            let Ok(caller) = caller else { return };
            let (relay_end, tool_end) = UnixStream::pair().expect("pair");
            std::thread::spawn(move || answer_requests(tool_end, None));
            let forward = |mut from: UnixStream, mut to: UnixStream| {
                std::thread::spawn(move || {
                    let mut chunk = vec![0u8; 64 * 1024];
                    while let Ok(n) = from.read(&mut chunk) {
                        if n == 0 || to.write_all(&chunk[..n]).is_err() {
                            return;
                        }
                    }
                });
            };
            forward(caller.try_clone().expect("clone"), relay_end.try_clone().expect("clone"));
            forward(relay_end, caller);
        }
    });
}

/// A rate's median over [`ROUNDS`], with its range.
struct Rate(Vec<f64>);

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut all = self.0.clone();
        all.sort_by(f64::total_cmp);
        let (low, mid, high) = (all[0], all[all.len() / 2], all[all.len() - 1]);
        write!(f, "{mid:.0}/s (range {low:.0}-{high:.0})")
    }
}

/// Runs `ours` and `floor` in turn, [`ROUNDS`] times each, so that both see the same
/// machine.
fn rounds(mut ours: impl FnMut() -> f64, mut floor: impl FnMut() -> f64) -> (Rate, Rate) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        a.push(ours());
        b.push(floor());
    }
    (Rate(a), Rate(b))
}

#[tokio::main]
async fn main() {
    let kernel = Kernel::start_with_config("[ipc]\nheartbeat_timeout_ms = 600000\n").await;
    let socket = kernel.socket.clone();
    let echo = kernel.dir().join("echo.sock");
    echo_server(echo.clone());
    let heartbeat = frame(&Message::request(7u64, "app.heartbeat", json!({})));
    // `cargo bench --bench pipeline -- tool` runs only the parts whose names hold a word.
    let words: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let wanted = |name: &str| words.is_empty() || words.iter().any(|w| name.contains(w.as_str()));

    if wanted("heartbeat pipelined") {
        let kernel_side = app(&socket, "bench-beat", json!({}));
        let echo_side = UnixStream::connect(&echo).expect("echo");
        let (rate, floor) = rounds(
            || pipelined(&kernel_side, &heartbeat, TOTAL, 256),
            || pipelined(&echo_side, &heartbeat, TOTAL, 256),
        );
        println!(
            "app.heartbeat pipelined, 256 in flight on one connection: {rate} (echo floor {floor})"
        );
    }

    if wanted("tool.call routed") {
        tool_app(&socket);
        let routed = frame(&Message::request(
            9u64,
            "tool.call",
            json!({"name": "bench_echo", "arguments": {}}),
        ));
        let caller = app(&socket, "bench-caller", json!({}));
        let relay = kernel.dir().join("relay.sock");
        relay_server(relay.clone());
        let relayed = UnixStream::connect(&relay).expect("relay");
        let (rate, floor) = rounds(
            || pipelined(&caller, &routed, ROUTED, 64),
            || pipelined(&relayed, &routed, ROUTED, 64),
        );
        println!("tool.call routed, 64 in flight: {rate} (relay floor {floor})");
    }

    if wanted("heartbeat round trip") {
        let p50 = round_trip(app(&socket, "bench-rtt", json!({})), &heartbeat);
        let floor = round_trip(UnixStream::connect(&echo).expect("echo"), &heartbeat);
        println!(
            "app.heartbeat one at a time: p50 {p50:?} (echo floor {floor:?}, {:.2}x)",
            p50.as_secs_f64() / floor.as_secs_f64()
        );
    }
}
