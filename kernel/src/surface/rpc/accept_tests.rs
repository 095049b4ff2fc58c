//! The TCP surface's connection cap (enforced at accept) and idle deadline.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::*;
use crate::surface::fake::FakeHost;

/// The longest a test waits for anything (virtual time in paused tests).
const DEADLINE: Duration = Duration::from_secs(60);
const IDLE: Duration = Duration::from_secs(5);

/// A peer over an in-memory stream, served as a TCP connection is (with an idle deadline).
struct Peer {
    write: tokio::io::WriteHalf<tokio::io::DuplexStream>,
    lines: Lines<BufReader<tokio::io::ReadHalf<tokio::io::DuplexStream>>>,
    served: tokio::task::JoinHandle<()>,
}

fn start(host: Arc<FakeHost>) -> Peer {
    let limits = RpcLimits { idle_timeout: Some(IDLE), ..RpcLimits::default() };
    let (client, server) = tokio::io::duplex(64 * 1024);
    let (reader, writer) = tokio::io::split(server);
    let served = tokio::spawn(serve_connection(reader, writer, host, limits));
    let (read, write) = tokio::io::split(client);
    Peer { write, lines: BufReader::new(read).lines(), served }
}

impl Peer {
    async fn send(&mut self, text: &str) {
        self.write.write_all(format!("{text}\n").as_bytes()).await.unwrap();
    }

    async fn next(&mut self) -> Option<Value> {
        let line = tokio::time::timeout(DEADLINE, self.lines.next_line()).await;
        line.expect("an answer or the end in time")
            .unwrap()
            .map(|l| serde_json::from_str(&l).unwrap())
    }
}

fn request(id: u64, method: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": {}}).to_string()
}

fn assert_about(elapsed: Duration, expected: Duration) {
    assert!(
        elapsed >= expected && elapsed < expected + Duration::from_millis(50),
        "closed after {elapsed:?}, expected {expected:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_sends_nothing_is_closed_at_the_idle_deadline() {
    let mut peer = start(Arc::new(FakeHost::new()));
    // Activity restarts the clock.
    tokio::time::sleep(IDLE / 2).await;
    peer.send(&request(1, "echo")).await;
    assert_eq!(peer.next().await.unwrap()["result"], json!({}));
    let answered = Instant::now();
    assert_eq!(peer.next().await, None, "closed");
    assert_about(answered.elapsed(), IDLE);
    peer.served.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_connection_with_a_call_running_is_not_idle() {
    let host = Arc::new(FakeHost::new());
    let mut peer = start(host.clone());
    peer.send(&request(1, "slow")).await;
    tokio::time::sleep(IDLE * 3).await;
    assert!(!peer.served.is_finished(), "closed with a call running");
    host.release();
    assert_eq!(peer.next().await.unwrap()["result"], "slow done");
    let answered = Instant::now();
    assert_eq!(peer.next().await, None, "closed once idle");
    assert_about(answered.elapsed(), IDLE);
}

#[tokio::test(start_paused = true)]
async fn stdio_has_no_idle_deadline() {
    let (client, server) = tokio::io::duplex(1024);
    let (reader, writer) = tokio::io::split(server);
    let host = Arc::new(FakeHost::new());
    let served = tokio::spawn(serve_connection(reader, writer, host, RpcLimits::default()));
    tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
    assert!(!served.is_finished());
    drop(client);
    tokio::time::timeout(DEADLINE, served).await.unwrap().unwrap();
}

async fn line_then_close(stream: TcpStream) -> (Option<Value>, bool) {
    let mut lines = BufReader::new(stream).lines();
    let first = tokio::time::timeout(Duration::from_secs(5), lines.next_line()).await;
    let first = first.expect("answered at once").ok().flatten();
    let end = tokio::time::timeout(Duration::from_secs(5), lines.next_line()).await;
    let closed = matches!(end, Ok(Ok(None)) | Ok(Err(_)));
    (first.map(|l| serde_json::from_str(&l).unwrap()), closed)
}

#[tokio::test]
async fn one_connection_over_the_cap_gets_an_error_line_and_is_closed_at_once() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = RpcLimits { max_connections: 2, ..RpcLimits::default() };
    let stop = CancellationToken::new();
    let host = Arc::new(FakeHost::new());
    let auth = Arc::new(crate::surface::auth::Auth::open());
    let server = tokio::spawn(serve_tcp(listener, host, auth, limits, stop.clone()));

    let first = TcpStream::connect(addr).await.unwrap();
    let _second = TcpStream::connect(addr).await.unwrap();
    let (answer, closed) = line_then_close(TcpStream::connect(addr).await.unwrap()).await;
    let answer = answer.expect("an error line");
    assert_eq!(answer["id"], Value::Null, "{answer}");
    assert_eq!(answer["error"]["code"], -32000, "{answer}");
    assert_eq!(answer["error"]["data"]["code"], "UNKNOWN_ERROR", "{answer}");
    assert_eq!(answer["error"]["data"]["reason"], "too_many_connections", "{answer}");
    assert_eq!(answer["error"]["data"]["limit"], 2, "{answer}");
    assert!(closed, "closed after the answer");

    // One leaves: a new connection is served.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (read, mut write) = stream.into_split();
        write.write_all(format!("{}\n", request(1, "echo")).as_bytes()).await.unwrap();
        let mut lines = BufReader::new(read).lines();
        let line = tokio::time::timeout(Duration::from_secs(5), lines.next_line()).await;
        let answer: Value = serde_json::from_str(&line.unwrap().unwrap().unwrap()).unwrap();
        if answer["result"] == json!({}) {
            break;
        }
        assert_eq!(answer["error"]["data"]["reason"], "too_many_connections", "{answer}");
        assert!(Instant::now() < deadline, "never served again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap();
}
