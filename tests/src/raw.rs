//! [`RawConn`]: a frame-level client for tests — malformed input, hand-written protocol
//! exchanges, and playing an app (answering the kernel's requests by hand).

use std::collections::VecDeque;
use std::path::Path;

use burrow_protocol::{Message, codec};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{DEADLINE, to_json};

/// A frame-level connection. Messages read while waiting for something else are kept,
/// in order, for later `expect` calls.
#[allow(missing_debug_implementations)]
pub struct RawConn {
    stream: interprocess::local_socket::tokio::Stream,
    buf: Vec<u8>,
    next_id: u64,
    stash: VecDeque<Value>,
}

impl RawConn {
    /// Connects to `socket`.
    pub async fn connect(socket: &Path) -> RawConn {
        let stream = burrow_sdk::transport::connect_stream(socket).await.expect("raw connect");
        RawConn { stream, buf: Vec::new(), next_id: 1000, stash: VecDeque::new() }
    }

    /// Writes raw bytes.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Writes a frame holding `body`.
    pub async fn send_body(&mut self, body: &[u8]) {
        self.send_bytes(&frame(body)).await;
    }

    /// Writes `value` as one MessagePack frame.
    pub async fn send_value(&mut self, value: &Value) {
        let body = rmp_serde::to_vec_named(value).expect("encode value");
        self.send_body(&body).await;
    }

    /// Sends a request.
    pub async fn request(&mut self, id: u64, method: &str, params: Value) {
        self.send_value(&json!({"id": id, "method": method, "params": params})).await;
    }

    /// Answers a request of the kernel's.
    pub async fn answer(&mut self, id: &Value, result: Value) {
        self.send_value(&json!({"id": id, "result": result})).await;
    }

    /// Reads the next message from the socket (ignoring the stash), or `None` when the
    /// kernel closed the connection.
    pub async fn recv(&mut self) -> Option<Message> {
        tokio::time::timeout(DEADLINE, self.read_message())
            .await
            .expect("no message from the kernel in time")
    }

    /// [`RawConn::recv`] with one deadline, `until`: `None` when it passes first (or the
    /// kernel closed the connection).
    pub async fn recv_until(&mut self, until: tokio::time::Instant) -> Option<Message> {
        tokio::time::timeout_at(until, self.read_message()).await.ok().flatten()
    }

    async fn read_message(&mut self) -> Option<Message> {
        loop {
            if let Some((msg, used)) = codec::decode_frame(&self.buf, codec::MAX_FRAME_BYTES) {
                self.buf.drain(..used);
                return Some(msg.expect("kernel sent a valid message"));
            }
            // Read straight into the buffer's spare room: nothing to zero or copy.
            self.buf.reserve(64 * 1024);
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Reads the next message and returns its JSON form.
    pub async fn recv_json(&mut self) -> Value {
        if let Some(v) = self.stash.pop_front() {
            return v;
        }
        let msg = self.recv().await.expect("connection closed");
        to_json(&msg)
    }

    /// Waits for the first message (stashed or new) matching `pred`; others are stashed.
    pub async fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.stash.iter().position(&pred) {
            return self.stash.remove(i).expect("stashed");
        }
        let found = tokio::time::timeout(DEADLINE, async {
            while let Some(msg) = self.read_message().await {
                let v = to_json(&msg);
                if pred(&v) {
                    return Some(v);
                }
                self.stash.push_back(v);
            }
            None
        })
        .await;
        match found {
            Ok(Some(v)) => v,
            Ok(None) => panic!("connection closed while waiting for {what}; saw {:?}", self.stash),
            Err(_) => panic!("no {what} in time; saw {:?}", self.stash),
        }
    }

    /// Whether a message matching `pred` arrives within `wait` (stashing the others).
    pub async fn sees_within(
        &mut self,
        wait: std::time::Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> bool {
        if self.stash.iter().any(&pred) {
            return true;
        }
        tokio::time::timeout(wait, async {
            while let Some(msg) = self.read_message().await {
                // The match stays stashed too: this only looks.
                let v = to_json(&msg);
                let hit = pred(&v);
                self.stash.push_back(v);
                if hit {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false)
    }

    /// Sends a request with a fresh id and waits for its answer (success or error).
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.request(id, method, params).await;
        self.expect(&format!("the answer to {method}"), |v| {
            v["id"] == id && v.get("method").is_none()
        })
        .await
    }

    /// Sends a request with a fresh id without waiting; returns the id.
    pub async fn send_call(&mut self, method: &str, params: Value) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.request(id, method, params).await;
        id
    }

    /// Like [`send_call`](Self::send_call), but `None` when the write fails (the kernel
    /// is gone) instead of a panic.
    pub async fn try_send_call(&mut self, method: &str, params: Value) -> Option<u64> {
        self.next_id += 1;
        let id = self.next_id;
        let body = rmp_serde::to_vec_named(&json!({"id": id, "method": method, "params": params}))
            .expect("encode");
        self.stream.write_all(&frame(&body)).await.ok().map(|()| id)
    }

    /// Waits for the answer to a request sent with [`send_call`](Self::send_call).
    pub async fn answer_to(&mut self, id: u64) -> Value {
        self.expect("an answer", |v| v["id"] == id && v.get("method").is_none()).await
    }

    /// Like [`answer_to`](Self::answer_to), but `None` if the connection closes first.
    pub async fn try_answer_to(&mut self, id: u64) -> Option<Value> {
        let is_answer = |v: &Value| v["id"] == id && v.get("method").is_none();
        if let Some(i) = self.stash.iter().position(is_answer) {
            return self.stash.remove(i);
        }
        let wait = tokio::time::timeout(DEADLINE, async {
            while let Some(msg) = self.read_message().await {
                let v = to_json(&msg);
                if is_answer(&v) {
                    return Some(v);
                }
                self.stash.push_back(v);
            }
            None
        });
        wait.await.ok().flatten()
    }

    /// Waits for a request or notification of `method` from the kernel.
    pub async fn expect_method(&mut self, method: &str) -> Value {
        self.expect(method, |v| v["method"] == method).await
    }

    /// Waits for a `hook.event` of `event`.
    pub async fn expect_event(&mut self, event: &str) -> Value {
        self.expect(&format!("hook event {event}"), |v| {
            v["method"] == "hook.event" && v["params"]["event"] == event
        })
        .await
    }

    /// Registers as `id` and returns the result.
    pub async fn register(&mut self, id: &str, token: Option<&str>) -> Value {
        let mut params =
            json!({"manifest": {"id": id, "version": "1.0.0"}, "protocolVersion": "1.0"});
        if let Some(t) = token {
            params["token"] = json!(t);
        }
        self.request(1, "app.register", params).await;
        self.recv_json().await
    }

    /// Registers with a full manifest and becomes ready; panics on refusal.
    pub async fn app(socket: &Path, manifest: Value) -> RawConn {
        let mut conn = RawConn::connect(socket).await;
        let reg = conn
            .call("app.register", json!({"manifest": manifest, "protocolVersion": "1.0"}))
            .await;
        assert!(reg["result"]["appId"].is_string(), "register refused: {reg}");
        let ready = conn.call("app.ready", json!({})).await;
        assert_eq!(ready["result"]["ok"], true);
        conn
    }

    /// Calls `name` until the kernel answers `NOT_FOUND` (its app's death has been
    /// processed); calls in between may fail with `CONNECTION_CLOSED`. False if it never
    /// does within the deadline.
    pub async fn wait_tool_gone(&mut self, name: &str) -> bool {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while tokio::time::Instant::now() < deadline {
            let resp = self.call("tool.call", json!({"name": name})).await;
            match resp["error"]["code"].as_str() {
                Some("NOT_FOUND") => return true,
                Some("CONNECTION_CLOSED") => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await
                }
                _ => panic!("unexpected answer while waiting for {name} to go: {resp}"),
            }
        }
        false
    }

    /// Registers a tool capability and returns the whole answer.
    pub async fn register_tool(&mut self, name: &str, timeout_ms: Option<u64>) -> Value {
        let mut config = json!({"name": name, "description": format!("the {name} tool")});
        if let Some(ms) = timeout_ms {
            config["timeoutMs"] = json!(ms);
        }
        self.call("capability.register", json!({"type": "tool", "config": config})).await
    }
}

/// `v` as a MessagePack body, with the strings `"f64:NaN"`, `"f32:-inf"`, `"f64:1.5"`...
/// written as floats of that width and value: frames `serde_json` cannot write, since its
/// values hold no NaN or infinity.
pub fn with_floats(v: &Value) -> Vec<u8> {
    use rmpv::Value as Mp;
    fn mp(v: &Value) -> Mp {
        match v {
            Value::String(s) => match s.split_once(':') {
                Some(("f64", f)) => Mp::F64(f.parse().expect("a float")),
                Some(("f32", f)) => Mp::F32(f.parse().expect("a float")),
                _ => Mp::from(s.as_str()),
            },
            Value::Array(items) => Mp::Array(items.iter().map(mp).collect()),
            Value::Object(m) => {
                Mp::Map(m.iter().map(|(k, v)| (Mp::from(k.as_str()), mp(v))).collect())
            }
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => Mp::from(u),
                (None, Some(i), _) => Mp::from(i),
                (None, None, f) => Mp::F64(f.expect("a number")),
            },
            Value::Bool(b) => Mp::from(*b),
            Value::Null => Mp::Nil,
        }
    }
    let mut body = Vec::new();
    rmpv::encode::write_value(&mut body, &mp(v)).expect("encodes into a vector");
    body
}

/// `body` with its length header.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    frame
}
