use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::*;
use crate::surface::auth::Auth;
use crate::surface::fake::FakeHost;
use crate::surface::http::router;

/// Small deadlines, all different, so a test sees which one closed a connection.
const LIMITS: HttpLimits = HttpLimits {
    max_connections: 4,
    header_read_timeout: Duration::from_secs(2),
    body_read_timeout: Duration::from_secs(3),
    idle_timeout: Duration::from_secs(5),
    write_timeout: Duration::from_secs(7),
};

/// The longest a test waits for anything (virtual time in paused tests).
const DEADLINE: Duration = Duration::from_secs(60);

/// One connection served over an in-memory stream, as `serve_http` serves one.
fn connect(limits: HttpLimits) -> (DuplexStream, JoinHandle<()>) {
    connect_over(limits, 64 * 1024)
}

/// [`connect`] over a pipe holding `pipe` bytes.
fn connect_over(limits: HttpLimits, pipe: usize) -> (DuplexStream, JoinHandle<()>) {
    let (client, server) = tokio::io::duplex(pipe);
    let router = router(Arc::new(FakeHost::new()), Arc::new(Auth::open()));
    let slot = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
    let served = tokio::spawn(serve_one(server, router, limits, CancellationToken::new(), slot));
    (client, served)
}

/// Reads until `until` appears; returns what was read.
async fn read_until(client: &mut DuplexStream, until: &str) -> String {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(DEADLINE, async {
        while !String::from_utf8_lossy(&seen).contains(until) {
            let n = client.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before {until:?}: {:?}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {until:?} in {:?}", String::from_utf8_lossy(&seen)));
    String::from_utf8_lossy(&seen).into_owned()
}

/// Reads until the server closes; returns what was read and when it closed.
async fn read_to_close(client: &mut DuplexStream) -> (String, Instant) {
    let mut seen = Vec::new();
    tokio::time::timeout(DEADLINE, client.read_to_end(&mut seen))
        .await
        .expect("the server closes the connection")
        .unwrap();
    (String::from_utf8_lossy(&seen).into_owned(), Instant::now())
}

fn assert_about(elapsed: Duration, expected: Duration) {
    assert!(
        elapsed >= expected && elapsed < expected + Duration::from_millis(50),
        "closed after {elapsed:?}, expected {expected:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_header_that_trickles_in_is_cut_off_at_the_header_deadline() {
    let (client, served) = connect(LIMITS);
    // Silence first: the header clock starts with the first byte, not with the connection.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (mut read, mut write) = tokio::io::split(client);
    let start = Instant::now();
    let trickle = tokio::spawn(async move {
        let _ = write.write_all(b"GET /sessions HTTP/1.1\r\nHost: localhost\r\n").await;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if write.write_all(b"X-Pad: 1\r\n").await.is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    tokio::time::timeout(DEADLINE, read.read_to_end(&mut seen)).await.unwrap().unwrap();
    assert!(seen.is_empty(), "{:?}", String::from_utf8_lossy(&seen));
    assert_about(start.elapsed(), LIMITS.header_read_timeout);
    served.await.unwrap();
    trickle.abort();
}

#[tokio::test(start_paused = true)]
async fn a_silent_connection_is_closed_at_the_idle_deadline() {
    let start = Instant::now();
    let (mut client, served) = connect(LIMITS);
    let (seen, closed) = read_to_close(&mut client).await;
    assert_eq!(seen, "");
    assert_about(closed - start, LIMITS.idle_timeout);
    served.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_kept_alive_connection_is_served_again_and_closed_when_idle() {
    let (mut client, served) = connect(LIMITS);
    for _ in 0..2 {
        // Each request waits longer than the header deadline after the previous answer:
        // the wait between requests is idle time, not header time.
        tokio::time::sleep(LIMITS.header_read_timeout * 2).await;
        client.write_all(b"GET /sessions HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
        let answer = read_until(&mut client, "\"params\":{}}").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    }
    let answered = Instant::now();
    let (seen, closed) = read_to_close(&mut client).await;
    assert_eq!(seen, "");
    assert_about(closed - answered, LIMITS.idle_timeout);
    served.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_event_stream_is_in_flight_and_outlives_every_deadline() {
    let (mut client, served) = connect(LIMITS);
    client
        .write_all(b"GET /sessions/forever/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut client, "event: run_started").await;
    let start = Instant::now();
    // Two keep-alive comments (every 15 s), far past the idle and header deadlines.
    let mut seen = String::new();
    while seen.matches(":\n\n").count() < 2 {
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(DEADLINE, client.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "the stream was closed after {:?}", start.elapsed());
        seen.push_str(&String::from_utf8_lossy(&chunk[..n]));
    }
    assert!(start.elapsed() > LIMITS.idle_timeout * 5);
    drop(client);
    tokio::time::timeout(DEADLINE, served).await.expect("ends when the client leaves").unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_response_the_client_takes_nothing_of_is_cut_off_at_the_write_deadline() {
    // A 64 KiB answer through a 1 KiB pipe, and a client that reads none of it.
    let (mut client, served) = connect_over(LIMITS, 1024);
    let body = format!(r#"{{"pad": "{}"}}"#, "x".repeat(64 * 1024));
    let head = format!(
        "POST /comms/send HTTP/1.1\r\nHost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    let start = Instant::now();
    let writing = tokio::spawn(async move {
        client.write_all(head.as_bytes()).await.unwrap();
        client.write_all(body.as_bytes()).await.unwrap();
        client
    });
    tokio::time::timeout(DEADLINE, served).await.expect("cut off").unwrap();
    let waited = start.elapsed();
    assert!(waited >= LIMITS.write_timeout, "cut after {waited:?}");
    assert!(waited < LIMITS.write_timeout * 2, "cut after {waited:?}");
    drop(writing.await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn a_body_that_does_not_arrive_in_time_is_answered_408_and_the_connection_closed() {
    let (mut client, served) = connect(LIMITS);
    let head = "POST /sessions HTTP/1.1\r\nHost: localhost\r\n\
                Content-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    client.write_all(head.as_bytes()).await.unwrap();
    client.write_all(b"{\"prompt\":").await.unwrap();
    let start = Instant::now();
    let (answer, closed) = read_to_close(&mut client).await;
    assert_about(closed - start, LIMITS.body_read_timeout);
    assert!(answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close\r\n"), "{answer}");
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["code"], "TIMEOUT", "{body}");
    assert_eq!(body["details"]["reason"], "body_timeout", "{body}");
    served.await.unwrap();
}

/// Reads from a TCP stream until it closes (or resets); returns what was read.
async fn tcp_read_to_close(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .expect("closed in time");
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn one_connection_over_the_cap_is_answered_503_and_a_freed_slot_serves_again() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let limits = HttpLimits { max_connections: 2, ..HttpLimits::default() };
    let router = router(Arc::new(FakeHost::new()), Arc::new(Auth::open()));
    let server = tokio::spawn(serve_http(listener, router, limits, stop.clone()));

    // Two silent connections fill the surface (idle deadline: minutes).
    let first = TcpStream::connect(addr).await.unwrap();
    let _second = TcpStream::connect(addr).await.unwrap();
    let request = b"GET /sessions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let mut third = TcpStream::connect(addr).await.unwrap();
    third.write_all(request).await.unwrap();
    let answer = tcp_read_to_close(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{answer}");
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["code"], "UNKNOWN_ERROR", "{body}");
    assert_eq!(body["details"]["reason"], "too_many_connections", "{body}");
    assert_eq!(body["details"]["limit"], 2, "{body}");

    // One leaves: a new connection is served.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut next = TcpStream::connect(addr).await.unwrap();
        next.write_all(request).await.unwrap();
        let answer = tcp_read_to_close(&mut next).await;
        if answer.starts_with("HTTP/1.1 200 OK\r\n") {
            break;
        }
        assert!(Instant::now() < deadline, "never served again: {answer}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Stopping closes the silent connection at once, long before its idle deadline.
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), server).await.expect("serve_http ends").unwrap();
}
