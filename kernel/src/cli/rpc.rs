//! `burrow rpc` and the `burrow-rpc` binary: JSON-RPC 2.0 on stdin/stdout (one message
//! per line), served by the running kernel. The kernel's socket takes a connection whose
//! first byte is `{` or `[` as a JSON-RPC client of the host surface
//! ([`crate::surface::rpc`]); this pipes stdin to it and its answers and notifications
//! to stdout, as they come, so a host that spawns `burrow-rpc` (Meerkat's SDK does)
//! speaks to the kernel itself.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// How the pipe ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipeEnd {
    /// Input ended and the kernel wrote what it owed, then closed: exit 0.
    EndOfInput,
    /// The kernel closed the connection while input went on: exit 1.
    KernelGone,
}

/// `burrow rpc` / `burrow-rpc`: connects to the kernel at `socket` (or where
/// `BURROW_SOCKET` and the default say) and pipes stdin and stdout to it. Exits 0 at end
/// of input, 1 when the kernel went away first, 2 when it cannot be reached; `program`
/// names the command in what it says on stderr.
pub async fn run_stdio(socket: Option<PathBuf>, program: &str) -> ExitCode {
    let path = socket.unwrap_or_else(burrow_sdk::transport::socket_from_env);
    // Connected once the first message is there: the kernel gives a new connection a
    // few seconds to say what it speaks, and a host may spawn this well before it writes.
    let mut input = BufReader::new(tokio::io::stdin());
    let Some(first) = first_message(&mut input).await else { return ExitCode::SUCCESS };
    let stream = match connect(&path).await {
        Ok(stream) => stream,
        Err(e) => {
            unreachable(program, &path, &e);
            return ExitCode::from(2);
        }
    };
    let input = std::io::Cursor::new(first).chain(input);
    match pipe(input, tokio::io::stdout(), stream).await {
        PipeEnd::EndOfInput => ExitCode::SUCCESS,
        PipeEnd::KernelGone => {
            eprintln!("{program}: the kernel closed the connection");
            ExitCode::FAILURE
        }
    }
}

/// The kernel's socket. On Unix a plain Unix stream, whose shutdown for writing at end
/// of input reaches the kernel (which then writes what it owes and closes).
#[cfg(unix)]
async fn connect(path: &Path) -> std::io::Result<tokio::net::UnixStream> {
    tokio::net::UnixStream::connect(path).await
}

#[cfg(not(unix))]
async fn connect(path: &Path) -> std::io::Result<interprocess::local_socket::tokio::Stream> {
    burrow_transport::connect_stream(path).await
}

/// The first line of `input` that is not blank; `None` at end of input.
async fn first_message<R: AsyncRead + Unpin>(input: &mut BufReader<R>) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return None,
            Ok(_) if line.iter().all(u8::is_ascii_whitespace) => {}
            Ok(_) => return Some(line),
        }
    }
}

fn unreachable(program: &str, path: &Path, e: &std::io::Error) {
    eprintln!(
        "{program}: cannot reach the kernel at {}: {e} (CONNECTION_CLOSED)\n\
         hint: is `burrow kernel` running? Start it, or set BURROW_SOCKET to the socket it \
         listens on",
        path.display()
    );
}

/// Pipes `input` (lines; blank lines before the first message are dropped, so that the
/// kernel sees `{` or `[` first) to `kernel`, and `kernel` to `output`, until the kernel
/// closes. At end of input the kernel's side is shut for writing and what it still owes
/// is copied before the end.
pub async fn pipe<I, O, K>(input: I, mut output: O, kernel: K) -> PipeEnd
where
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
    K: AsyncRead + AsyncWrite + Unpin,
{
    let (mut from_kernel, mut to_kernel) = tokio::io::split(kernel);
    let upstream = async {
        let mut lines = BufReader::new(input);
        let mut line = Vec::new();
        let mut started = false;
        loop {
            line.clear();
            match lines.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if !started {
                let Some(at) = line.iter().position(|b| !b.is_ascii_whitespace()) else {
                    continue;
                };
                line.drain(..at);
                started = true;
            }
            if to_kernel.write_all(&line).await.is_err() || to_kernel.flush().await.is_err() {
                return false;
            }
        }
        let _ = to_kernel.shutdown().await;
        true
    };
    let downstream = async {
        let _ = tokio::io::copy(&mut from_kernel, &mut output).await;
        let _ = output.flush().await;
    };
    tokio::pin!(upstream, downstream);
    tokio::select! {
        input_ended = &mut upstream => {
            if !input_ended {
                return PipeEnd::KernelGone;
            }
            (&mut downstream).await;
            PipeEnd::EndOfInput
        }
        () = &mut downstream => PipeEnd::KernelGone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_go_up_without_leading_blank_lines_and_answers_come_down_until_the_end() {
        let (kernel, mut far) = tokio::io::duplex(1024);
        let (mut stdout, mut shown) = tokio::io::duplex(1024);
        let input: &[u8] = b"\n  \n {\"a\":1}\n\n{\"b\":2}\n";
        let far_end = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut got = Vec::new();
            far.read_to_end(&mut got).await.unwrap();
            far.write_all(b"{\"answer\":true}\n").await.unwrap();
            far.shutdown().await.unwrap();
            got
        });
        let end = pipe(input, &mut stdout, kernel).await;
        assert_eq!(end, PipeEnd::EndOfInput);
        drop(stdout);
        assert_eq!(far_end.await.unwrap(), b"{\"a\":1}\n\n{\"b\":2}\n");
        let mut out = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut shown, &mut out).await.unwrap();
        assert_eq!(out, "{\"answer\":true}\n");
    }

    #[tokio::test]
    async fn the_first_message_is_the_first_line_not_blank() {
        let mut input = BufReader::new(&b"\n  \n{\"a\":1}\nrest\n"[..]);
        assert_eq!(first_message(&mut input).await.as_deref(), Some(&b"{\"a\":1}\n"[..]));
        let mut empty = BufReader::new(&b"\n \n"[..]);
        assert_eq!(first_message(&mut empty).await, None);
    }

    #[tokio::test]
    async fn a_kernel_that_closes_first_ends_the_pipe() {
        let (kernel, far) = tokio::io::duplex(1024);
        drop(far);
        let (input, _keep_open) = tokio::io::duplex(16);
        let end = pipe(input, tokio::io::sink(), kernel).await;
        assert_eq!(end, PipeEnd::KernelGone);
    }
}
