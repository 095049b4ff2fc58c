//! The streaming benchmark's floors: relays from a "provider" socket to a "channel"
//! socket, two hops as provider → kernel → channel, each read as [`relay_reader`] reads
//! the kernel's channel end. In the benchmark's process ([`Floors`]): a thread, a task of
//! a tokio runtime of its own, and the same task decoding and encoding every frame; in
//! processes of their own ([`ProcessFloors`], this binary started as [`relay_child`]): a
//! thread, a task and the recoding task.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use burrow_protocol::methods::invoke::ChannelDeltaParams;
use burrow_protocol::{Message, codec};
use burrow_sdk::ProviderChunk;
use burrow_tests::DEADLINE;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::PACE;
use crate::measure::{Pace, Tallies, Tally, cpu, now_ns, threads_cpu};

/// The floor's frame: the `channel.delta` notification a channel gets, its text the time.
fn delta_frame(key: &str, seq: u64) -> Vec<u8> {
    let params = ChannelDeltaParams {
        channel_id: "live".to_owned(),
        session_key: key.to_owned(),
        run_id: "run_relay".to_owned(),
        seq,
        delta: ProviderChunk::TextDelta { text: now_ns().to_string() },
    };
    let note = Message::notification("channel.delta", serde_json::to_value(params).expect("json"));
    codec::encode_frame(&note, codec::MAX_FRAME_BYTES).expect("encode")
}

type Socket = std::os::unix::net::UnixStream;

/// A socket pair: the end this process writes to (async), and the other.
fn pair() -> (tokio::net::UnixStream, Socket) {
    let (ours, theirs) = Socket::pair().expect("socket pair");
    ours.set_nonblocking(true).expect("nonblocking");
    (tokio::net::UnixStream::from_std(ours).expect("tokio socket"), theirs)
}

/// A relay thread writing what it reads from `from` to `to`, unchanged, each read in one
/// write.
fn relay_thread(from: Socket, to: impl Write + Send + 'static) {
    std::thread::spawn(move || relay_blocking(from, to));
}

/// What a relay thread runs: reads from `from` and writes each read to `to`, until either
/// ends.
fn relay_blocking(mut from: Socket, mut to: impl Write) {
    let mut chunk = vec![0u8; 64 * 1024];
    while let Ok(n) = from.read(&mut chunk) {
        if n == 0 || to.write_all(&chunk[..n]).is_err() {
            return;
        }
    }
}

/// The same relay as a task of a tokio runtime of its own, with two workers as the
/// kernel's: the floor of an event-driven relay. When `recode`, it decodes each frame it
/// reads into a message and encodes it again before writing it (the least a relay that
/// looks at what it forwards does).
///
/// Returns where its runtime's threads are (`/proc/<pid>/task/<tid>`), for their CPU time.
fn relay_task(from: Socket, to: Socket, recode: bool) -> RelayThreads {
    let threads = RelayThreads::default();
    let started = threads.clone();
    std::thread::spawn(move || relay_runtime(from, to, recode, started));
    threads
}

/// What a relay task's thread runs: a runtime of two workers (whose threads it lists in
/// `threads`) and the relay as a task on it, until either socket ends.
fn relay_runtime(from: Socket, to: Socket, recode: bool, threads: RelayThreads) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || {
            if let Ok(task) = std::fs::read_link("/proc/thread-self") {
                threads.0.lock().unwrap().push(std::path::Path::new("/proc").join(task));
            }
        })
        .build()
        .expect("runtime");
    // Spawned, as the kernel's connections are: it runs on a worker.
    let relay = runtime.spawn(async move {
        for s in [&from, &to] {
            s.set_nonblocking(true).expect("nonblocking");
        }
        let mut from = tokio::net::UnixStream::from_std(from).expect("tokio socket");
        let mut to = tokio::net::UnixStream::from_std(to).expect("tokio socket");
        let (mut buf, mut out) = (Vec::new(), Vec::new());
        loop {
            buf.reserve(64 * 1024);
            match from.read_buf(&mut buf).await {
                Ok(n) if n > 0 => {}
                _ => return,
            }
            if !recode {
                std::mem::swap(&mut buf, &mut out);
            } else {
                while let Some((msg, used)) = codec::decode_frame(&buf, codec::MAX_FRAME_BYTES) {
                    buf.drain(..used);
                    let msg = msg.expect("a frame of the benchmark's");
                    out.extend(codec::encode_frame(&msg, codec::MAX_FRAME_BYTES).expect("encode"));
                }
            }
            if to.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
    });
    let _ = runtime.block_on(relay);
}

/// The argument that makes this benchmark's binary a relay process: `--relay-child
/// <socket> <thread|task|recoding>` connects twice to `socket` (the first connection is
/// read, the second written) and relays as a relay thread, a relay task or the recoding
/// relay task does.
const RELAY_CHILD: &str = "--relay-child";

/// This process as a relay child (see [`RELAY_CHILD`]), when its arguments say so.
pub(crate) fn relay_child() -> Option<()> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == RELAY_CHILD)?;
    let (socket, mode) = (args.get(at + 1)?, args.get(at + 2)?);
    let from = Socket::connect(socket).expect("the benchmark's socket");
    let to = Socket::connect(socket).expect("the benchmark's socket");
    match mode.as_str() {
        "thread" => relay_blocking(from, to),
        "task" => relay_runtime(from, to, false, RelayThreads::default()),
        "recoding" => relay_runtime(from, to, true, RelayThreads::default()),
        other => panic!("no relay mode {other:?}: thread, task or recoding"),
    }
    Some(())
}

/// A relay in a process of its own (this binary, as [`relay_child`]), `mode` `thread`,
/// `task` or `recoding`: as the kernel is, apart from the sender and the receiver.
/// Returns the socket to write into it, the one to read from it, and the process (killed
/// when dropped).
async fn relay_process(
    dir: &std::path::Path,
    mode: &str,
) -> (tokio::net::UnixStream, tokio::net::UnixStream, tokio::process::Child) {
    let socket = dir.join(format!("relay-{mode}.sock"));
    let listener = tokio::net::UnixListener::bind(&socket).expect("bind the relay's socket");
    let child = tokio::process::Command::new(std::env::current_exe().expect("this binary"))
        .arg(RELAY_CHILD)
        .arg(&socket)
        .arg(mode)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn a relay process");
    let accept = async || {
        let accepted = tokio::time::timeout(DEADLINE, listener.accept()).await;
        accepted.expect("the relay process connects in time").expect("accept").0
    };
    // Its first connection is what it reads, its second what it writes.
    let into = accept().await;
    let out = accept().await;
    (into, out, child)
}

/// The threads of a relay task's runtime.
#[derive(Debug, Clone, Default)]
pub(crate) struct RelayThreads(Arc<Mutex<Vec<std::path::PathBuf>>>);

impl RelayThreads {
    /// The CPU time they have had so far.
    pub(crate) fn cpu(&self) -> Duration {
        threads_cpu(self.0.lock().unwrap().clone())
    }
}

/// The floor's channel: reads frames from `from` until `until`, tallying their deltas
/// (decoded as the SDK decodes a `channel.delta`) into `tallies`.
fn relay_reader(
    mut from: impl AsyncRead + Unpin + Send + 'static,
    tallies: Tallies,
    until: tokio::time::Instant,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        // Read as `RawConn` reads the kernel's channel end: into the buffer's spare room.
        let mut buf = Vec::new();
        loop {
            buf.reserve(64 * 1024);
            match tokio::time::timeout_at(until, from.read_buf(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
            while let Some((msg, used)) = codec::decode_frame(&buf, codec::MAX_FRAME_BYTES) {
                buf.drain(..used);
                let Ok(Message::Notification(note)) = msg else { panic!("not a delta: {msg:?}") };
                let p: ChannelDeltaParams = serde_json::from_value(note.params).expect("delta");
                if let ProviderChunk::TextDelta { text } = &p.delta {
                    tallies.with(&p.session_key, |t| t.record(&p.run_id, p.seq, text));
                }
            }
        }
    })
}

/// The floors: relays in this process, from a "provider" socket to a "channel" socket
/// read as [`relay_reader`] reads, two hops as provider → kernel → channel.
pub(crate) struct Floors {
    /// Into a relay thread, out over a Unix socket.
    pub(crate) thread: tokio::net::UnixStream,
    /// Into a relay task in a runtime of its own, out over a Unix socket.
    pub(crate) task: tokio::net::UnixStream,
    /// The same, decoding each frame and encoding it again.
    pub(crate) recoding: tokio::net::UnixStream,
    /// The threads of the two relay tasks' runtimes: `task`'s, `recoding`'s.
    pub(crate) task_threads: [RelayThreads; 2],
    /// Into a relay thread, out over loopback TCP (as the SSE client reads).
    pub(crate) tcp: tokio::net::UnixStream,
    pub(crate) tallies: Tallies,
    pub(crate) readers: Vec<JoinHandle<()>>,
}

impl Floors {
    pub(crate) fn start(until: tokio::time::Instant) -> Floors {
        let tallies = Tallies::default();
        let mut readers = Vec::new();
        let mut unix_out = || {
            let (reader, writer) = pair();
            readers.push(relay_reader(reader, tallies.clone(), until));
            writer
        };
        let (thread, relay_in) = pair();
        relay_thread(relay_in, unix_out());
        let (task, relay_in) = pair();
        let plain = relay_task(relay_in, unix_out(), false);
        let (recoding, relay_in) = pair();
        let task_threads = [plain, relay_task(relay_in, unix_out(), true)];
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let out = std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("tcp");
        let (relay_out, _) = listener.accept().expect("accept");
        for s in [&out, &relay_out] {
            s.set_nodelay(true).expect("nodelay");
        }
        out.set_nonblocking(true).expect("nonblocking");
        let out = tokio::net::TcpStream::from_std(out).expect("tokio socket");
        readers.push(relay_reader(out, tallies.clone(), until));
        let (tcp, relay_in) = pair();
        relay_thread(relay_in, relay_out);
        Floors { thread, task, recoding, task_threads, tcp, tallies, readers }
    }

    /// One round through the relay `into` writes to: `n` frames at [`PACE`].
    pub(crate) async fn round(
        tallies: &Tallies,
        into: &mut tokio::net::UnixStream,
        n: u64,
    ) -> Tally {
        let mut pace = Pace::new(PACE);
        for seq in 0..n {
            pace.wait().await;
            into.write_all(&delta_frame("floor", seq)).await.expect("write to a relay");
        }
        tallies.take_once("floor", n).await
    }
}

/// The floors as processes of their own ([`relay_process`]), as the kernel is: a relay
/// thread, a relay task, and a relay task that decodes every frame into a message and
/// encodes it again (the least any reader of the protocol does), read as
/// [`relay_reader`] reads.
pub(crate) struct ProcessFloors {
    pub(crate) thread: tokio::net::UnixStream,
    pub(crate) task: tokio::net::UnixStream,
    pub(crate) recoding: tokio::net::UnixStream,
    /// The thread's process, the task's, the recoding task's.
    pub(crate) processes: [tokio::process::Child; 3],
    pub(crate) _dir: tempfile::TempDir,
}

/// The CPU time process `child` has had so far.
pub(crate) fn child_cpu(child: &tokio::process::Child) -> Duration {
    cpu(child.id().map_or(0, |id| id as i32))
}

impl ProcessFloors {
    pub(crate) async fn start(floors: &mut Floors, until: tokio::time::Instant) -> ProcessFloors {
        let dir = tempfile::tempdir().expect("a directory for the relays' socket");
        let (thread, thread_out, a) = relay_process(dir.path(), "thread").await;
        let (task, task_out, b) = relay_process(dir.path(), "task").await;
        let (recoding, recoding_out, c) = relay_process(dir.path(), "recoding").await;
        for out in [thread_out, task_out, recoding_out] {
            floors.readers.push(relay_reader(out, floors.tallies.clone(), until));
        }
        ProcessFloors { thread, task, recoding, processes: [a, b, c], _dir: dir }
    }
}
