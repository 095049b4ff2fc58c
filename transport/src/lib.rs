//! # burrow-transport
//!
//! What the kernel and the SDK share below their messages: the frame codec for tokio
//! streams ([`FrameReader`], [`FrameWriter`]), the [`Outbox`] every sender of a
//! connection writes through (a lone frame written at once, a batch's frames in one
//! write: [`outbox`]), request correlation ([`requests`]: continuations with
//! deadlines), local-socket connect, the default socket path, and an in-memory pipe for
//! tests ([`Transport::memory_pair`]).

use std::io;
use std::path::{Path, PathBuf};

use burrow_protocol::Message;
use burrow_protocol::codec::{self, DecodeError, EncodeError};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Decoder, Encoder, FramedRead, FramedWrite};

pub mod outbox;
pub mod requests;

pub use outbox::{Bounds, Outbox, SendError};

/// The environment variable that names the kernel's socket.
pub const SOCKET_ENV: &str = "BURROW_SOCKET";
/// The environment variable a managed app's id is passed in.
pub const APP_ID_ENV: &str = "BURROW_APP_ID";

/// A tokio codec for protocol frames.
///
/// Decoding yields `Ok(Err(DecodeError))` for a bad frame, so the caller can answer it and
/// go on reading; after [`DecodeError::is_fatal`] (oversize) it must stop reading.
#[derive(Debug, Clone)]
pub struct MessageCodec {
    max_frame_bytes: usize,
    /// Deepest nesting a frame it reads may hold.
    max_depth: usize,
    /// Set after a fatal error: framing is lost, nothing more is decoded.
    broken: bool,
    /// Bytes of the last frame decoded (header included).
    last_frame_bytes: usize,
}

impl MessageCodec {
    /// A codec refusing frames over `max_frame_bytes`, or nested deeper than
    /// [`codec::MAX_DEPTH`].
    pub fn new(max_frame_bytes: usize) -> Self {
        Self { max_frame_bytes, max_depth: codec::MAX_DEPTH, broken: false, last_frame_bytes: 0 }
    }

    /// Refuses frames it reads nested deeper than `max_depth` (at most
    /// [`codec::MAX_DEPTH`]); the kernel reads with [`codec::MAX_DEPTH_TO_KERNEL`].
    pub fn set_max_depth(&mut self, max_depth: usize) {
        self.max_depth = max_depth.min(codec::MAX_DEPTH);
    }

    /// The largest frame body it reads or writes.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    /// The size of the last frame decoded, header included (0 after a fatal error): what
    /// the message it gave holds in memory, about.
    pub fn last_frame_bytes(&self) -> usize {
        self.last_frame_bytes
    }
}

impl Default for MessageCodec {
    fn default() -> Self {
        Self::new(codec::MAX_FRAME_BYTES)
    }
}

impl Decoder for MessageCodec {
    type Item = Result<Message, DecodeError>;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<Self::Item>> {
        if self.broken {
            src.clear();
            return Ok(None);
        }
        match codec::decode_frame_within(src, self.max_frame_bytes, self.max_depth) {
            None => {
                if let Some(extent) = codec::frame_extent(src) {
                    src.reserve(extent.saturating_sub(src.len()));
                }
                Ok(None)
            }
            Some((result, used)) => {
                if matches!(&result, Err(e) if e.is_fatal()) {
                    self.broken = true;
                    self.last_frame_bytes = 0;
                    src.clear();
                } else {
                    self.last_frame_bytes = used;
                    src.advance(used);
                }
                Ok(Some(result))
            }
        }
    }
}

impl Encoder<Message> for MessageCodec {
    type Error = io::Error;

    fn encode(&mut self, msg: Message, dst: &mut BytesMut) -> io::Result<()> {
        let frame = codec::encode_frame(&msg, self.max_frame_bytes).map_err(|e| match e {
            EncodeError::TooLarge { .. } => io::Error::new(io::ErrorKind::InvalidInput, e),
            EncodeError::Serialize(_) => io::Error::new(io::ErrorKind::InvalidData, e),
        })?;
        dst.extend_from_slice(&frame);
        Ok(())
    }
}

/// The read half of a framed transport.
pub type FrameReader = FramedRead<Box<dyn AsyncRead + Send + Unpin>, MessageCodec>;
/// The write half of a framed transport.
pub type FrameWriter = FramedWrite<Box<dyn AsyncWrite + Send + Unpin>, MessageCodec>;

/// A connected, framed, bidirectional message transport.
pub struct Transport {
    /// Incoming messages.
    pub reader: FrameReader,
    /// Outgoing messages.
    pub writer: FrameWriter,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport").finish_non_exhaustive()
    }
}

impl Transport {
    /// Frames any split byte stream.
    pub fn new<R, W>(read: R, write: W, max_frame_bytes: usize) -> Self
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let read: Box<dyn AsyncRead + Send + Unpin> = Box::new(read);
        let write: Box<dyn AsyncWrite + Send + Unpin> = Box::new(write);
        Self {
            reader: FramedRead::new(read, MessageCodec::new(max_frame_bytes)),
            writer: FramedWrite::new(write, MessageCodec::new(max_frame_bytes)),
        }
    }

    /// Connects to the kernel's local socket at `path`.
    pub async fn connect(path: impl AsRef<Path>) -> io::Result<Self> {
        let (read, write) = split(connect_stream(path.as_ref()).await?);
        Ok(Self::new(read, write, codec::MAX_FRAME_BYTES))
    }

    /// Two transports joined by an in-memory pipe: what one writes the other reads,
    /// through the real frame codec. For tests without a kernel.
    pub fn memory_pair() -> (Self, Self) {
        let (a, b) = tokio::io::duplex(256 * 1024);
        let (ar, aw) = tokio::io::split(a);
        let (br, bw) = tokio::io::split(b);
        (Self::new(ar, aw, codec::MAX_FRAME_BYTES), Self::new(br, bw, codec::MAX_FRAME_BYTES))
    }
}

/// The two halves of a local-socket stream, for a reader and a writer that share no lock
/// (`tokio::io::split`'s halves share one, and a reader and a writer busy at once contend
/// on it). On Unix they are tokio's own halves of the socket: a read that does not fill
/// the buffer counts the socket as drained, so no read is spent to learn that it is
/// empty, and the write half shuts the socket's sending side down when it closes (or is
/// dropped).
#[cfg(unix)]
pub fn split(
    stream: interprocess::local_socket::tokio::Stream,
) -> (impl AsyncRead + Send + Unpin + 'static, impl AsyncWrite + Send + Unpin + 'static) {
    let interprocess::local_socket::tokio::Stream::UdSocket(stream) = stream;
    tokio::net::UnixStream::from(stream).into_split()
}

/// The two halves of a local-socket stream (a named pipe's, on Windows).
#[cfg(windows)]
pub fn split(
    stream: interprocess::local_socket::tokio::Stream,
) -> (impl AsyncRead + Send + Unpin + 'static, impl AsyncWrite + Send + Unpin + 'static) {
    tokio::io::split(stream)
}

/// Opens a raw local-socket stream to `path` (a filesystem path on Unix, a pipe name on
/// Windows).
pub async fn connect_stream(path: &Path) -> io::Result<interprocess::local_socket::tokio::Stream> {
    use interprocess::local_socket::tokio::prelude::*;
    #[cfg(unix)]
    let name = path.to_fs_name::<interprocess::local_socket::GenericFilePath>()?;
    #[cfg(windows)]
    let name = path.as_os_str().to_ns_name::<interprocess::local_socket::GenericNamespaced>()?;
    LocalSocketStream::connect(name).await
}

/// The kernel's default state directory: `$XDG_STATE_HOME/burrow`, else
/// `~/.local/state/burrow` (on Windows `%LOCALAPPDATA%\burrow`).
pub fn default_state_dir() -> PathBuf {
    let env_dir = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from);
    if cfg!(windows) {
        return env_dir("LOCALAPPDATA").unwrap_or_else(std::env::temp_dir).join("burrow");
    }
    if let Some(dir) = env_dir("XDG_STATE_HOME") {
        return dir.join("burrow");
    }
    match env_dir("HOME") {
        Some(home) => home.join(".local/state/burrow"),
        None => std::env::temp_dir().join("burrow-state"),
    }
}

/// The default socket for a kernel with `state_dir` (PROTOCOL.md §1):
/// `$XDG_RUNTIME_DIR/burrow/kernel.sock`, else `<state dir>/run/kernel.sock`; on Windows
/// the pipe `\\.\pipe\burrow-kernel-<user>`.
pub fn default_socket_path(state_dir: &Path) -> PathBuf {
    if cfg!(windows) {
        let user = std::env::var("USERNAME").unwrap_or_else(|_| "user".into());
        return PathBuf::from(format!(r"\\.\pipe\burrow-kernel-{user}"));
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("burrow").join("kernel.sock"),
        None => state_dir.join("run").join("kernel.sock"),
    }
}

/// The socket a client should use: `BURROW_SOCKET` when set, else the default of the
/// default state directory.
pub fn socket_from_env() -> PathBuf {
    match std::env::var_os(SOCKET_ENV).filter(|v| !v.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => default_socket_path(&default_state_dir()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use serde_json::json;

    #[tokio::test]
    async fn memory_pair_carries_messages_both_ways() {
        let (mut a, mut b) = Transport::memory_pair();
        let msg = Message::request(1u64, "kernel.info", json!({}));
        a.writer.send(msg.clone()).await.unwrap();
        assert_eq!(b.reader.next().await.unwrap().unwrap().unwrap(), msg);
        let reply = Message::success(1u64.into(), json!({"ok": true}));
        b.writer.send(reply.clone()).await.unwrap();
        assert_eq!(a.reader.next().await.unwrap().unwrap().unwrap(), reply);
    }

    #[test]
    fn oversize_frame_breaks_the_codec() {
        let mut codec = MessageCodec::new(16);
        let mut buf = BytesMut::from(&[0u8, 0, 1, 0, 1, 2, 3][..]);
        let item = codec.decode(&mut buf).unwrap().unwrap();
        assert!(item.unwrap_err().is_fatal());
        buf.extend_from_slice(&[0, 0, 0, 1, 0xc0]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
    }

    #[test]
    fn bad_frame_keeps_the_codec_in_sync() {
        let mut codec = MessageCodec::default();
        let mut buf = BytesMut::from(&[0u8, 0, 0, 0][..]);
        let good = codec::encode_frame(&Message::notification("m", json!({})), 1024).unwrap();
        buf.extend_from_slice(&good);
        assert!(codec.decode(&mut buf).unwrap().unwrap().is_err());
        assert!(codec.decode(&mut buf).unwrap().unwrap().is_ok());
    }
}
