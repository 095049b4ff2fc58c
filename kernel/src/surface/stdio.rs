//! `burrow rpc`: JSON-RPC on stdin/stdout for a host process, served by a running kernel
//! over its IPC socket.
//!
//! [`IpcHost`] is the [`Host`]: each call is the IPC request
//! `host.call {"method", "params"}`, which the kernel runs as if it came over
//! `--rpc-tcp`; session events are the IPC stream `session.events {"session_id"}`.
//! [`serve_stdio`] reads stdin on a thread of its own (so a kernel that goes away can end
//! `burrow rpc` while stdin is still open) and serves until end of input.

use std::io::Read;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use burrow_protocol::methods::Method;
use burrow_protocol::methods::invoke::{HttpRequestParams, HttpResponse};
use burrow_protocol::{ErrorCode, ErrorObject, Value};
use burrow_sdk::{Client, Error, StreamItem};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::surface::rpc::{Gate, RpcLimits, run_connection};
use crate::surface::{BoxFuture, Host};

/// The IPC method that runs one host method by its JSON-RPC name.
pub const HOST_CALL: &str = burrow_protocol::methods::comms::HostCall::NAME;
/// The IPC stream of one session's events.
use burrow_protocol::methods::operator::SessionEvents;

/// A [`Host`] over the kernel's IPC socket.
#[derive(Debug, Clone)]
pub struct IpcHost {
    client: Client,
}

impl IpcHost {
    /// A host calling the kernel through `client`.
    pub fn new(client: Client) -> IpcHost {
        IpcHost { client }
    }
}

/// The kernel's error as it sent it; other failures under the closest code
/// (`CONNECTION_CLOSED` when the kernel went away).
fn to_error(e: Error) -> ErrorObject {
    match e {
        Error::Remote(obj) => obj,
        Error::Closed | Error::Shutdown | Error::Io(_) => {
            ErrorObject::new(ErrorCode::ConnectionClosed, format!("the kernel went away: {e}"))
        }
        other => other.to_error_object(),
    }
}

impl Host for IpcHost {
    fn call(&self, method: String, params: Value) -> BoxFuture<'_, Result<Value, ErrorObject>> {
        Box::pin(async move {
            let params = json!({ "method": method, "params": params });
            self.client.request(HOST_CALL, params).await.map_err(to_error)
        })
    }

    /// Checks that the session exists (`session/read`), then streams `session.events`;
    /// the stream ends when the kernel ends it or fails (the failure is logged).
    fn session_events(
        &self,
        session_id: String,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Value>, ErrorObject>> {
        Box::pin(async move {
            self.call("session/read".into(), json!({ "session_id": session_id })).await?;
            let stream = self
                .client
                .request_stream(SessionEvents::NAME, json!({ "session_id": session_id }))
                .await
                .map_err(to_error)?;
            let events = stream.scan((), |(), item| {
                std::future::ready(match item {
                    Ok(StreamItem::Chunk(event)) => Some(event),
                    Ok(StreamItem::End(_)) => None,
                    Err(e) => {
                        tracing::warn!(error = %e, "session.events ended");
                        None
                    }
                })
            });
            Ok(events.boxed())
        })
    }

    fn http_request(
        &self,
        _request: HttpRequestParams,
    ) -> BoxFuture<'_, Result<HttpResponse, ErrorObject>> {
        Box::pin(async {
            Err(ErrorObject::new(
                ErrorCode::MethodNotFound,
                "app HTTP routes are not available over stdio",
            ))
        })
    }
}

/// How [`serve_stdio`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdioEnd {
    /// Stdin reached its end; every answer owed was written.
    EndOfInput,
    /// The kernel closed the IPC connection first.
    KernelGone,
}

/// Serves JSON-RPC on stdin/stdout with `client`'s kernel as the host, until end of input
/// or until the kernel goes away.
pub async fn serve_stdio(client: Client, limits: RpcLimits) -> StdioEnd {
    let stdin = ChannelReader::spawn(std::io::stdin());
    serve_ipc(stdin, tokio::io::stdout(), client, limits).await
}

/// [`serve_stdio`] on any reader and writer.
pub async fn serve_ipc<R, W>(reader: R, writer: W, client: Client, limits: RpcLimits) -> StdioEnd
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let stop = CancellationToken::new();
    let watcher = {
        let (client, stop) = (client.clone(), stop.clone());
        tokio::spawn(async move {
            client.closed().await;
            stop.cancel();
        })
    };
    let host: Arc<dyn Host> = Arc::new(IpcHost::new(client));
    run_connection(reader, writer, host, limits, Gate::trusted(), stop.clone()).await;
    watcher.abort();
    if stop.is_cancelled() { StdioEnd::KernelGone } else { StdioEnd::EndOfInput }
}

/// An [`AsyncRead`] fed by a blocking reader on a plain thread. Unlike the runtime's
/// blocking pool, that thread never holds up the runtime's shutdown.
#[derive(Debug)]
pub(crate) struct ChannelReader {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    pending: Bytes,
}

impl ChannelReader {
    pub(crate) fn spawn(mut source: impl Read + Send + 'static) -> ChannelReader {
        let (tx, rx) = mpsc::channel(4);
        let spawned = std::thread::Builder::new().name("burrow-stdin".into()).spawn(move || {
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                let item = match source.read(&mut chunk) {
                    Ok(0) => return,
                    Ok(n) => Ok(Bytes::copy_from_slice(&chunk[..n])),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => Err(e),
                };
                let failed = item.is_err();
                if tx.blocking_send(item).is_err() || failed {
                    return;
                }
            }
        });
        if let Err(e) = spawned {
            // The reader then reports end of input at once.
            tracing::error!(error = %e, "cannot start the stdin thread");
        }
        ChannelReader { rx, pending: Bytes::new() }
    }
}

impl AsyncRead for ChannelReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.pending.is_empty() {
            match self.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(Some(Ok(bytes))) => self.pending = bytes,
            }
        }
        let n = self.pending.len().min(buf.remaining());
        let chunk = self.pending.split_to(n);
        buf.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use burrow_sdk::testing::FakeKernel;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    use super::*;

    const DEADLINE: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn channel_reader_passes_bytes_then_end_of_input() {
        let source = std::io::Cursor::new(b"{\"a\":1}\nsecond line\n".to_vec());
        let mut reader = ChannelReader::spawn(source);
        let mut all = String::new();
        reader.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "{\"a\":1}\nsecond line\n");
    }

    #[tokio::test]
    async fn json_rpc_calls_go_to_the_kernel_as_host_call() {
        let (kernel, transport) = FakeKernel::new();
        kernel.on_request(HOST_CALL, |params| match params["method"].as_str() {
            Some("session/read") if params["params"]["session_id"] == "gone" => {
                Err(ErrorObject::new(ErrorCode::NotFound, "no such session"))
            }
            Some(_) => Ok(json!({"seen": params})),
            None => Err(ErrorObject::invalid_params("method", "missing")),
        });
        let client = Client::from_transport(transport);
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let (reader, writer) = tokio::io::split(theirs);
        let served = tokio::spawn(serve_ipc(reader, writer, client.clone(), RpcLimits::default()));
        let (read, mut write) = tokio::io::split(ours);
        let mut lines = BufReader::new(read).lines();
        let line =
            r#"{"jsonrpc":"2.0","id":1,"method":"comms/peers","params":{"session_id":"s1"}}"#;
        write.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        let answer =
            tokio::time::timeout(DEADLINE, lines.next_line()).await.unwrap().unwrap().unwrap();
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(
            answer["result"],
            json!({"seen": {"method": "comms/peers", "params": {"session_id": "s1"}}})
        );

        let host = IpcHost::new(client);
        let missing = host.session_events("gone".into()).await.map(drop).unwrap_err();
        assert_eq!(missing.code, ErrorCode::NotFound);
        let app = HttpRequestParams {
            method: "GET".into(),
            path: "/apps/x".into(),
            query: Default::default(),
            headers: Default::default(),
            body: None,
        };
        assert_eq!(host.http_request(app).await.unwrap_err().code, ErrorCode::MethodNotFound);

        // The kernel goes away: serving ends although input is still open.
        kernel.disconnect().await;
        let end = tokio::time::timeout(DEADLINE, served).await.unwrap().unwrap();
        assert_eq!(end, StdioEnd::KernelGone);
        let failed = host.call("session/list".into(), json!({})).await.unwrap_err();
        assert_eq!(failed.code, ErrorCode::ConnectionClosed);
    }

    #[tokio::test]
    async fn end_of_input_ends_serving() {
        let (_kernel, transport) = FakeKernel::new();
        let client = Client::from_transport(transport);
        let input = ChannelReader::spawn(std::io::Cursor::new(Vec::new()));
        let end = serve_ipc(input, tokio::io::sink(), client, RpcLimits::default()).await;
        assert_eq!(end, StdioEnd::EndOfInput);
    }

    #[test]
    fn sdk_errors_map_to_wire_codes() {
        let remote = ErrorObject::new(ErrorCode::Conflict, "taken");
        assert_eq!(to_error(Error::Remote(remote.clone())), remote);
        assert_eq!(to_error(Error::Closed).code, ErrorCode::ConnectionClosed);
        assert_eq!(to_error(Error::Timeout).code, ErrorCode::Timeout);
        assert_eq!(to_error(Error::Protocol("x".into())).code, ErrorCode::InternalError);
    }
}
