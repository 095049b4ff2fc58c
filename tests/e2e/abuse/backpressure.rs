//! Outbound queues bounded in bytes (issue 16.1), on the IPC socket and JSON-RPC: a
//! client that reads nothing holds only a little of the kernel's memory
//! (`writer_queue_bytes`, `max_large_answers`), a client that reads is served to the end
//! (back-pressure, never disconnection), and memory comes back once an abusive client is
//! gone (jemalloc's decay).

use std::time::Duration;

use burrow_protocol::Message;
use burrow_sdk::transport::Transport;
use burrow_tests::{DEADLINE, Kernel, RawConn, memory, poll_until};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};

const CONFIG: &str = "[ipc]\nheartbeat_timeout_ms = 30000\n";
/// Resident memory the kernel may gain while a client reads nothing (debug build).
const MAX_GROWTH_KIB: u64 = 96 * 1024;

/// A registered connection whose reading and writing halves are driven apart.
async fn split_client(kernel: &Kernel, id: &str) -> Transport {
    let mut t = Transport::connect(&kernel.socket).await.expect("connect");
    let manifest = json!({"id": id, "version": "1.0.0"});
    let register = json!({"manifest": manifest, "protocolVersion": "1.0"});
    t.writer.send(Message::request(0u64, "app.register", register)).await.expect("send");
    let answer = tokio::time::timeout(DEADLINE, t.reader.next()).await.expect("answer in time");
    let Some(Ok(Ok(Message::Response(r)))) = answer else { panic!("{answer:?}") };
    assert!(r.outcome.is_ok(), "{r:?}");
    t
}

/// A session `big` holding four messages of 1 MiB each.
async fn big_session(kernel: &Kernel) {
    let mut filler =
        RawConn::app(&kernel.socket, json!({"id": "filler", "version": "1.0.0"})).await;
    for n in 0..4 {
        let content = format!("{n}{}", "x".repeat(1 << 20));
        let params = json!({"sessionKey": "big", "content": content});
        let d = filler.call("message.dispatch", params).await;
        assert!(d["result"]["dispatchId"].is_string(), "{}", d["error"]);
    }
    let page = filler.call("session.history", json!({"key": "big"})).await;
    assert_eq!(page["result"]["messages"].as_array().map(Vec::len), Some(4), "{}", page["error"]);
}

fn kernel_kib(kernel: &Kernel) -> burrow_tests::Memory {
    memory(kernel.pid()).expect("the kernel's /proc status")
}

/// The most the kernel's RSS reaches over `for_how_long`, sampled.
async fn peak_kib(kernel: &Kernel, for_how_long: Duration) -> u64 {
    let mut peak = 0;
    let deadline = tokio::time::Instant::now() + for_how_long;
    while tokio::time::Instant::now() < deadline {
        peak = peak.max(kernel_kib(kernel).rss_kib);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    peak
}

/// Waits for the kernel's RSS to come back near `baseline` (within a second or so:
/// jemalloc's decay, .cargo/config.toml).
async fn memory_comes_back(kernel: &Kernel, baseline: u64) {
    let mut now = 0;
    let back = poll_until(Duration::from_secs(10), || {
        now = kernel_kib(kernel).rss_kib;
        async move { now < baseline + 24 * 1024 }
    })
    .await;
    assert!(back, "RSS stayed at {now} KiB (baseline {baseline} KiB)");
}

#[tokio::test]
async fn a_client_that_pipelines_large_answers_and_reads_nothing_holds_a_bounded_few_mib() {
    let kernel = Kernel::start_with_config(CONFIG).await;
    big_session(&kernel).await;
    let baseline = kernel_kib(&kernel).rss_kib;

    // 256 calls (the in-flight bound), each answered with the whole 4 MiB transcript;
    // the client reads none of it.
    let Transport { mut reader, mut writer } = split_client(&kernel, "greedy").await;
    const CALLS: u64 = 256;
    let writing = tokio::spawn(async move {
        for id in 1..=CALLS {
            let params = json!({"key": "big"});
            writer.send(Message::request(id, "session.history", params)).await.expect("send");
        }
        writer
    });
    // Long enough for an unbounded kernel to prepare every answer (it took ~1 GiB).
    let grown = peak_kib(&kernel, Duration::from_secs(4)).await.saturating_sub(baseline);
    assert!(
        grown < MAX_GROWTH_KIB,
        "the kernel grew by {grown} KiB for a client that reads nothing"
    );

    // A client that reads is served: every answer comes, whole.
    let mut answered = 0;
    while answered < CALLS {
        let next = tokio::time::timeout(DEADLINE, reader.next()).await.expect("an answer in time");
        let Some(Ok(Ok(Message::Response(r)))) = next else { panic!("{next:?}") };
        let page = r.outcome.expect("a page");
        assert_eq!(page["messages"].as_array().map(Vec::len), Some(4));
        answered += 1;
    }
    let writer = writing.await.expect("writer");
    drop((reader, writer));

    memory_comes_back(&kernel, baseline).await;
}

#[tokio::test]
async fn a_json_rpc_host_that_pipelines_large_answers_and_reads_nothing_holds_a_bounded_few_mib() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let kernel = Kernel::start_with(CONFIG, &["--rpc-tcp", "127.0.0.1:0"]).await;
    big_session(&kernel).await;
    let addr = kernel.endpoint("rpc_tcp").await;
    let baseline = kernel_kib(&kernel).rss_kib;

    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (read, mut write) = stream.into_split();
    const CALLS: u64 = 256;
    let writing = tokio::spawn(async move {
        for id in 1..=CALLS {
            let call = json!({"jsonrpc": "2.0", "id": id, "method": "session/history",
                "params": {"session_id": "big"}});
            write.write_all(format!("{call}\n").as_bytes()).await.expect("write");
        }
        write
    });
    let grown = peak_kib(&kernel, Duration::from_secs(4)).await.saturating_sub(baseline);
    assert!(grown < MAX_GROWTH_KIB, "the kernel grew by {grown} KiB for a host that reads nothing");

    let mut lines = BufReader::new(read).lines();
    for n in 0..CALLS {
        let line = tokio::time::timeout(DEADLINE, lines.next_line()).await;
        let line = line.expect("an answer in time").expect("read").expect("open");
        let answer: Value = serde_json::from_str(&line).expect("JSON");
        let messages = answer["result"]["messages"].as_array().map(Vec::len);
        assert_eq!(messages, Some(4), "answer {n}: {}", answer["error"]);
    }
    drop((lines, writing.await.expect("writer")));
    memory_comes_back(&kernel, baseline).await;
}

#[tokio::test]
async fn a_client_writing_without_a_window_and_reading_everything_is_served_to_the_end() {
    let kernel = Kernel::start_with_config(CONFIG).await;
    let Transport { mut reader, mut writer } = split_client(&kernel, "eager").await;
    const CALLS: u64 = 100_000;
    let writing = tokio::spawn(async move {
        for id in 1..=CALLS {
            writer.feed(Message::request(id, "app.heartbeat", json!({}))).await.expect("send");
        }
        writer.flush().await.expect("flush");
        writer
    });
    let mut answered = 0u64;
    while answered < CALLS {
        let next = tokio::time::timeout(DEADLINE, reader.next()).await;
        let Ok(Some(Ok(Ok(Message::Response(r))))) = next else {
            panic!("after {answered} answers: {next:?}\n{}", kernel.log());
        };
        let ok: Value = r.outcome.expect("a heartbeat answer");
        assert_eq!(ok["ok"], true);
        answered += 1;
    }
    drop(writing.await.expect("writer"));
}

#[tokio::test]
async fn requests_past_the_in_flight_bound_wait_their_turn_and_every_one_is_served() {
    // 8 in-flight slots; a client writes 2 000 routed calls without a window: each
    // waits for a slot (no `too_many_in_flight`), and every one is answered.
    let config = format!("{CONFIG}max_in_flight = 8\n");
    let kernel = Kernel::start_with_config(&config).await;
    let manifest = json!({"id": "tools", "version": "1.0.0", "capabilities": {"tools": ["*"]}});
    let mut tools = RawConn::app(&kernel.socket, manifest).await;
    tools.register_tool("echo", None).await;
    const CALLS: u64 = 2_000;
    let answering = tokio::spawn(async move {
        for _ in 0..CALLS {
            let invoke = tools.expect_method("tool.invoke").await;
            tools.answer(&invoke["id"], json!({"content": invoke["params"]["arguments"]})).await;
        }
        tools
    });
    let Transport { mut reader, mut writer } = split_client(&kernel, "eager").await;
    let writing = tokio::spawn(async move {
        for id in 1..=CALLS {
            let params = json!({"name": "echo", "arguments": {"n": id}});
            writer.feed(Message::request(id, "tool.call", params)).await.expect("send");
        }
        writer.flush().await.expect("flush");
        writer
    });
    for answered in 0..CALLS {
        let next = tokio::time::timeout(DEADLINE, reader.next()).await;
        let Ok(Some(Ok(Ok(Message::Response(r))))) = next else {
            panic!("after {answered} answers: {next:?}");
        };
        let id = r.id.clone();
        let result = r.outcome.unwrap_or_else(|e| panic!("after {answered} answers: {e}"));
        assert_eq!(json!(id), result["content"]["n"], "{result}");
    }
    drop((writing.await.expect("writer"), answering.await.expect("tools")));
}

#[tokio::test]
async fn http_clients_that_ask_for_large_answers_and_read_nothing_hold_a_bounded_few_mib() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let kernel = Kernel::start_with(CONFIG, &["--http", "127.0.0.1:0"]).await;
    big_session(&kernel).await;
    let addr = kernel.endpoint("http").await;
    let baseline = kernel_kib(&kernel).rss_kib;
    // 40 connections each ask for the 4 MiB transcript and read none of it: at most
    // `[host] http_large_answers` (8) answers are prepared at once, and what the kernel
    // keeps of one while it waits to be written is a few hundred KiB (the rest waits in
    // the socket).
    let mut clients = Vec::new();
    for _ in 0..40 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = "GET /sessions/big/history HTTP/1.1\r\nHost: localhost\r\n\r\n";
        stream.write_all(request.as_bytes()).await.expect("write");
        clients.push(stream);
    }
    let grown = peak_kib(&kernel, Duration::from_secs(4)).await.saturating_sub(baseline);
    assert!(
        grown < MAX_GROWTH_KIB,
        "the kernel grew by {grown} KiB for HTTP clients that read nothing"
    );
    // A client that reads gets the whole answer.
    let mut first = clients.swap_remove(0);
    let mut body = Vec::new();
    let read = async {
        let mut chunk = vec![0u8; 1 << 16];
        while !String::from_utf8_lossy(&body).contains("\"messages\"") || body.len() < 4 << 20 {
            let n = first.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed after {} bytes", body.len());
            body.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(DEADLINE, read).await.expect("the answer in time");
    assert!(String::from_utf8_lossy(&body[..64]).starts_with("HTTP/1.1 200"));
    drop((first, clients));
    memory_comes_back(&kernel, baseline).await;
}
