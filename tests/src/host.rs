//! Host-side clients for the kernel's host surfaces: JSON-RPC 2.0 over TCP (one JSON
//! object per line) and an HTTP client for REST.

use std::net::SocketAddr;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::DEADLINE;

/// A JSON-RPC connection over TCP.
#[allow(missing_debug_implementations)]
pub struct Rpc {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    next_id: u64,
}

impl Rpc {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> Rpc {
        let stream = tokio::time::timeout(DEADLINE, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect to JSON-RPC");
        let (r, w) = stream.into_split();
        Rpc { reader: BufReader::new(r), writer: w, next_id: 1 }
    }

    /// Sends one raw line (a newline is added).
    pub async fn send_line(&mut self, line: &str) {
        self.writer.write_all(line.as_bytes()).await.expect("write");
        self.writer.write_all(b"\n").await.expect("write");
    }

    /// Reads the next line as JSON, within [`DEADLINE`].
    pub async fn read(&mut self) -> Value {
        let mut line = String::new();
        let n = tokio::time::timeout(DEADLINE, self.reader.read_line(&mut line))
            .await
            .expect("no JSON-RPC answer in time")
            .expect("read");
        assert!(n > 0, "JSON-RPC connection closed");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// Waits (up to [`DEADLINE`]) for the server to close the connection, skipping any
    /// lines; whether it did.
    pub async fn closed(&mut self) -> bool {
        let mut line = String::new();
        let end = tokio::time::timeout(DEADLINE, async {
            loop {
                line.clear();
                match self.reader.read_line(&mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        end.is_ok()
    }

    /// Calls `method` and returns the whole response object (with `result` or `error`).
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let req = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        self.send_line(&req.to_string()).await;
        loop {
            let answer = self.read().await;
            if answer["id"] == json!(id) {
                return answer;
            }
        }
    }

    /// Polls `session/history` of `session_id` (up to [`DEADLINE`]) until one of its
    /// assistant rows (the host contract's `block_assistant`) has text holding `needle`;
    /// returns that text.
    pub async fn assistant_text(&mut self, session_id: &str, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let page = self
                .ok("session/history", json!({ "session_id": session_id, "limit": 1000 }))
                .await;
            let texts = page["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|m| m["role"] == "block_assistant");
            let texts =
                texts.filter_map(|m| m["blocks"][0]["data"]["text"].as_str().map(str::to_owned));
            if let Some(text) = texts.into_iter().find(|t| t.contains(needle)) {
                return text;
            }
            assert!(tokio::time::Instant::now() < deadline, "no answer holding {needle:?}: {page}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Calls `method` and returns its `result`, failing the test on an error.
    pub async fn ok(&mut self, method: &str, params: Value) -> Value {
        let answer = self.call(method, params).await;
        assert!(answer.get("error").is_none(), "{method} failed: {answer}");
        answer["result"].clone()
    }
}

/// An HTTP client with the test deadline.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().timeout(DEADLINE).build().expect("http client")
}
