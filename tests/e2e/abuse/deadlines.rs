//! Deadlines and caps of the host surfaces (issue 16.2): each test is named for the
//! `[host]` deadline or cap, or the descriptor budget, that closes its hole. Connection
//! counts stay in the hundreds and deadlines in the hundreds of milliseconds: each test
//! shows the bound at work, not the machine's limits.

use std::net::SocketAddr;
use std::time::Duration;

use burrow_kernel::descriptors::{MAX_REFUSING, clamp_cap, host_budget};
use burrow_tests::{
    DEADLINE, FAST_CONFIG, Kernel, RawConn, Rpc, http_client, poll_until, raise_nofile_limit,
};
use futures_util::future::join_all;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;

const SURFACES: [&str; 4] = ["--http", "127.0.0.1:0", "--rpc-tcp", "127.0.0.1:0"];
/// The start of a request whose header never ends.
const UNFINISHED: &[u8] = b"GET /sessions HTTP/1.1\r\nHost: localhost\r\n";

/// A kernel serving both host surfaces, with `host` as its `[host]` section.
async fn kernel(host: &str) -> (Kernel, SocketAddr, SocketAddr) {
    let kernel = Kernel::start_with(&format!("{FAST_CONFIG}[host]\n{host}"), &SURFACES).await;
    let (http, rpc) = (kernel.endpoint("http").await, kernel.endpoint("rpc_tcp").await);
    (kernel, http, rpc)
}

/// `n` connections to `addr`, each having sent `first`.
async fn open_many(addr: SocketAddr, n: usize, first: &[u8]) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        if !first.is_empty() {
            stream.write_all(first).await.expect("write");
        }
        streams.push(stream);
    }
    streams
}

/// What the peer sent before closing `stream` (EOF or reset), or `None` if it is still
/// open after `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    let closed = tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    closed.ok().map(|()| String::from_utf8_lossy(&seen).into_owned())
}

/// Which of `streams` are closed within `within` (with what they received), all at once.
async fn closings(streams: &mut [TcpStream], within: Duration) -> Vec<Option<String>> {
    join_all(streams.iter_mut().map(|s| closed_within(s, within))).await
}

/// The first line a new JSON-RPC connection to `addr` gets for `session/list`.
async fn rpc_first_answer(addr: SocketAddr) -> Value {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (read, mut write) = stream.into_split();
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "session/list", "params": {}});
    write.write_all(format!("{call}\n").as_bytes()).await.expect("write");
    let mut line = String::new();
    let read = tokio::time::timeout(DEADLINE, BufReader::new(read).read_line(&mut line)).await;
    assert!(matches!(read, Ok(Ok(n)) if n > 0), "no answer: {read:?}");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// The kernel serves again (soon): a REST request, a JSON-RPC call and a new app.
async fn still_serving(kernel: &Kernel, http: SocketAddr, rpc: SocketAddr, app: &str) {
    let url = format!("http://{http}/sessions");
    let served = poll_until(DEADLINE, || {
        let url = url.clone();
        async move { http_client().get(url).send().await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
    assert!(served, "REST never answered again; log:\n{}", kernel.log());
    let served = poll_until(DEADLINE, || async move {
        rpc_first_answer(rpc).await["result"]["sessions"].is_array()
    })
    .await;
    assert!(served, "JSON-RPC never answered again; log:\n{}", kernel.log());
    RawConn::app(&kernel.socket, json!({"id": app, "version": "1.0.0"})).await;
}

/// The JSON-RPC error line of a refused connection.
fn assert_rpc_refusal(line: &str) {
    let answer: Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(answer["id"], Value::Null, "{answer}");
    assert_eq!(answer["error"]["code"], -32000, "{answer}");
    assert_eq!(answer["error"]["data"]["reason"], "too_many_connections", "{answer}");
}

#[tokio::test]
async fn header_read_timeout_closes_http_connections_that_never_finish_their_header() {
    raise_nofile_limit();
    let (kernel, http, rpc) =
        kernel("header_read_timeout_ms = 500\nidle_timeout_ms = 60000\n").await;
    let started = Instant::now();
    let mut hostile = open_many(http, 200, UNFINISHED).await;
    for (i, closed) in closings(&mut hostile, DEADLINE).await.into_iter().enumerate() {
        assert_eq!(closed.as_deref(), Some(""), "connection {i} was not closed silently");
    }
    assert!(started.elapsed() >= Duration::from_millis(500), "closed before the deadline");
    still_serving(&kernel, http, rpc, "after-headers").await;
}

#[tokio::test]
async fn body_read_timeout_answers_a_stalled_body_408_and_closes() {
    let (kernel, http, _) = kernel("body_read_timeout_ms = 300\n").await;
    let mut stream = TcpStream::connect(http).await.unwrap();
    let head = "POST /sessions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                Content-Length: 1000\r\n\r\n{\"prompt\":";
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = closed_within(&mut stream, DEADLINE).await.expect("closed");
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}\nlog:\n{}", kernel.log());
    assert!(answer.contains("\"body_timeout\""), "{answer}");
}

#[tokio::test]
async fn idle_timeout_closes_silent_connections_on_both_surfaces() {
    let (kernel, http, rpc) = kernel("idle_timeout_ms = 300\n").await;
    let mut silent = open_many(http, 20, b"").await;
    silent.extend(open_many(rpc, 20, b"").await);
    // A JSON-RPC connection that made a call is idle from its answer on.
    let mut used = Rpc::connect(rpc).await;
    assert!(used.ok("session/list", json!({})).await["sessions"].is_array());
    for (i, closed) in closings(&mut silent, DEADLINE).await.into_iter().enumerate() {
        assert_eq!(closed.as_deref(), Some(""), "connection {i} was not closed");
    }
    assert!(used.closed().await, "the connection that made a call was not closed");
    still_serving(&kernel, http, rpc, "after-idle").await;
}

#[tokio::test]
async fn max_rpc_connections_answers_one_more_at_once_and_serves_again_when_one_leaves() {
    let (kernel, http, rpc) = kernel("max_rpc_connections = 8\nidle_timeout_ms = 60000\n").await;
    let mut held = open_many(rpc, 8, b"").await;
    // Over the cap: an error line and the end, at once, never a wait in the backlog.
    let mut over = open_many(rpc, 5, b"").await;
    for closed in closings(&mut over, Duration::from_secs(5)).await {
        assert_rpc_refusal(&closed.expect("refused at once"));
    }
    held.truncate(7);
    let served = poll_until(DEADLINE, || async move {
        let answer = rpc_first_answer(rpc).await;
        if answer.get("error").is_some() {
            assert_rpc_refusal(&answer.to_string());
        }
        answer["result"]["sessions"].is_array()
    })
    .await;
    assert!(served, "never served after one left; log:\n{}", kernel.log());
    drop(held);
    still_serving(&kernel, http, rpc, "after-rpc-cap").await;
}

#[tokio::test]
async fn max_http_connections_answers_one_more_503_at_once() {
    let (kernel, http, rpc) = kernel("max_http_connections = 8\nidle_timeout_ms = 60000\n").await;
    let held = open_many(http, 8, UNFINISHED).await;
    let request = b"GET /sessions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let mut over = open_many(http, 5, request).await;
    for closed in closings(&mut over, Duration::from_secs(5)).await {
        let answer = closed.expect("refused at once");
        assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
        assert!(answer.contains("\"too_many_connections\""), "{answer}");
    }
    drop(held);
    still_serving(&kernel, http, rpc, "after-http-cap").await;
}

#[tokio::test]
async fn the_descriptor_budget_keeps_the_app_socket_serving_while_host_surfaces_are_full() {
    raise_nofile_limit();
    // 384 descriptors, not to be raised: more than that many host connections arrive.
    const NOFILE: u64 = 384;
    const APP_CONNECTIONS: usize = 32;
    const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
    const APP_WITHIN: Duration = Duration::from_secs(2);
    // Long heartbeats: no connection of the test's own ends during the flood, so nothing
    // but the budget can leave the app socket a descriptor.
    let config = format!(
        "[ipc]\nheartbeat_timeout_ms = 60000\nmax_connections = {APP_CONNECTIONS}\n[host]\nmax_rpc_connections = 1000\n\
         max_http_connections = 1000\nheader_read_timeout_ms = {}\nidle_timeout_ms = 60000\n",
        HEADER_TIMEOUT.as_millis()
    );
    let kernel = Kernel::start_with_nofile(&config, &SURFACES, NOFILE).await;
    let (http, rpc) = (kernel.endpoint("http").await, kernel.endpoint("rpc_tcp").await);
    let budget = host_budget(NOFILE, APP_CONNECTIONS, 0);
    let http_cap = clamp_cap("http", 1000, budget.http, MAX_REFUSING);
    let rpc_cap = clamp_cap("rpc", 1000, budget.rpc, MAX_REFUSING);
    assert!(http_cap < 100 && rpc_cap < 100, "{budget:?}");
    assert!(kernel.logged("connection cap clamped").await, "{}", kernel.log());

    let opened = Instant::now();
    let mut http_hostile = open_many(http, 200, UNFINISHED).await;
    let mut rpc_hostile = open_many(rpc, 200, b"").await;
    // JSON-RPC holds exactly its cap (idle for a minute): every other connection is
    // refused at once, most with an error line.
    let closed_rpc = closings(&mut rpc_hostile, Duration::from_secs(1)).await;
    assert_eq!(closed_rpc.iter().filter(|c| c.is_none()).count(), rpc_cap, "JSON-RPC held");
    assert!(closed_rpc.iter().flatten().any(|a| a.contains("too_many_connections")));

    // Every hostile connection has been accepted: the app socket still accepts and serves,
    // at once (well before the HTTP connections' header deadline frees anything).
    let app = tokio::time::timeout(APP_WITHIN, async {
        RawConn::app(&kernel.socket, json!({"id": "during", "version": "1.0.0"})).await;
        kernel.client().await.kernel_info().await.is_ok()
    });
    let served = app.await.unwrap_or_else(|_| panic!("app socket stuck; log:\n{}", kernel.log()));
    assert!(served);
    assert!(!kernel.log().contains("Too many open files"), "{}", kernel.log());

    // HTTP held exactly its cap until the header deadline; every other connection was
    // closed at once (most with a 503).
    let closed_http = join_all(http_hostile.iter_mut().map(|s| async {
        let answer = closed_within(s, DEADLINE).await.expect("every HTTP connection closes");
        (opened.elapsed(), answer)
    }))
    .await;
    let held = closed_http.iter().filter(|(after, _)| *after >= HEADER_TIMEOUT).count();
    assert_eq!(held, http_cap, "HTTP connections held until the header deadline");
    assert!(closed_http.iter().any(|(_, a)| a.starts_with("HTTP/1.1 503 ")));

    drop(rpc_hostile);
    still_serving(&kernel, http, rpc, "after-flood").await;
    assert!(!kernel.log().contains("Too many open files"), "{}", kernel.log());
}
