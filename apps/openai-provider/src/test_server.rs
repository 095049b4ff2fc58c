//! Test support: [`TestServer`], a tiny HTTP/1.1 server on 127.0.0.1 (an ephemeral port)
//! standing in for an OpenAI-compatible one. It records each request and answers every
//! one with the same [`Reply`], one request per connection. Every read is bounded in time.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long the server waits for a request to arrive whole.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a [`Reply::Silent`] connection is held open.
const SILENCE: Duration = Duration::from_secs(10);
/// The largest request head read.
const MAX_HEAD: usize = 64 * 1024;

/// What the server answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A status and a body of this content type.
    Body { status: u16, content_type: &'static str, body: String },
    /// Nothing: the connection is held open, unanswered.
    Silent,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply::Body { status, content_type: "application/json", body: body.to_string() }
    }

    pub fn text(status: u16, body: &str) -> Reply {
        Reply::Body { status, content_type: "application/json", body: body.to_owned() }
    }
}

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the request body is JSON")
    }
}

/// The server; it stops when dropped.
#[derive(Debug)]
pub struct TestServer {
    port: u16,
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    pub async fn start(reply: Reply) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (reply, recorded) = (reply.clone(), recorded.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, reply, recorded).await;
                });
            }
        });
        TestServer { port, requests, task }
    }

    /// The `base_url` to configure: `http://127.0.0.1:<port>/v1`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// A port on 127.0.0.1 that nothing listens on (just bound and released).
pub async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

async fn serve(
    mut stream: TcpStream,
    reply: Reply,
    recorded: Arc<Mutex<Vec<Recorded>>>,
) -> std::io::Result<()> {
    let request = tokio::time::timeout(READ_TIMEOUT, read_request(&mut stream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "slow request"))??;
    recorded.lock().unwrap_or_else(PoisonError::into_inner).push(request);
    let (status, content_type, body) = match reply {
        Reply::Body { status, content_type, body } => (status, content_type, body),
        Reply::Silent => {
            tokio::time::sleep(SILENCE).await;
            return Ok(());
        }
    };
    let head = format!(
        "HTTP/1.1 {status} Whatever\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

async fn read_request(stream: &mut TcpStream) -> std::io::Result<Recorded> {
    let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_owned());
    let mut buffer = Vec::new();
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if buffer.len() > MAX_HEAD {
            return Err(bad("head too large"));
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(bad("closed before the head ended"));
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let path = first.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(bad("closed before the body ended"));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Recorded { method, path, headers, body })
}
