//! Test support: [`TestServer`], a tiny HTTP/1.1 server on 127.0.0.1 (an ephemeral port)
//! standing in for an OpenAI-compatible one. It records each request and answers every
//! one with the same [`Reply`], one request per connection. Every read is bounded in time.
//!
//! A [`Reply::Stream`] is an event stream sent in parts of the test's choosing, each its
//! own HTTP chunk (`Transfer-Encoding: chunked`), which the client never reads together
//! with the next: a part may end in the middle of a line, a UTF-8 character or a JSON
//! object, and the reader sees it cut there. The stream then
//! ends as [`End`] says: properly, cut off, or held open until the client goes away
//! ([`TestServer::wait_client_gone`]).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
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
    /// `text/event-stream` with status 200, in these parts, ending so.
    Stream { parts: Vec<Vec<u8>>, end: End },
}

/// How a [`Reply::Stream`] ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The last chunk of the body, then the connection closes.
    Complete,
    /// The connection closes without the last chunk: the body breaks off.
    Cut,
    /// The connection stays open (for at most 10 s) until the client closes it.
    Hold,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply::Body { status, content_type: "application/json", body: body.to_string() }
    }

    pub fn text(status: u16, body: &str) -> Reply {
        Reply::Body { status, content_type: "application/json", body: body.to_owned() }
    }

    /// A stream of these parts, each sent as it is.
    pub fn stream<P: AsRef<[u8]>>(parts: &[P], end: End) -> Reply {
        Reply::Stream { parts: parts.iter().map(|p| p.as_ref().to_vec()).collect(), end }
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
    /// How many held streams ([`End::Hold`]) the client closed.
    gone: watch::Receiver<usize>,
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
        let (went, gone) = watch::channel(0);
        let went = Arc::new(went);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (reply, recorded, went) = (reply.clone(), recorded.clone(), went.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, reply, recorded, &went).await;
                });
            }
        });
        TestServer { port, requests, gone, task }
    }

    /// Waits until the client has closed `count` held streams; false when `timeout`
    /// passed first.
    pub async fn wait_client_gone(&self, count: usize, timeout: Duration) -> bool {
        let mut gone = self.gone.clone();
        tokio::time::timeout(timeout, gone.wait_for(|n| *n >= count))
            .await
            .is_ok_and(|seen| seen.is_ok())
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
    went: &watch::Sender<usize>,
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
        Reply::Stream { parts, end } => return stream_reply(stream, &parts, end, went).await,
    };
    let head = format!(
        "HTTP/1.1 {status} Whatever\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// Sends `parts` as the chunks of an event stream, then ends it as `end` says.
async fn stream_reply(
    mut stream: TcpStream,
    parts: &[Vec<u8>],
    end: End,
    went: &watch::Sender<usize>,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n\
        cache-control: no-cache\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    stream.write_all(head.as_bytes()).await?;
    for part in parts.iter().filter(|p| !p.is_empty()) {
        let mut chunk = format!("{:x}\r\n", part.len()).into_bytes();
        chunk.extend_from_slice(part);
        chunk.extend_from_slice(b"\r\n");
        stream.write_all(&chunk).await?;
    }
    match end {
        End::Complete => stream.write_all(b"0\r\n\r\n").await?,
        End::Cut => {}
        End::Hold => {
            let mut byte = [0u8; 1];
            if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(SILENCE, stream.read(&mut byte)).await
            {
                went.send_modify(|n| *n += 1);
            }
            return Ok(());
        }
    }
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
