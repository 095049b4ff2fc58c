//! Connection caps enforced where connections are accepted: a connection over the cap is
//! answered at once with one error (an HTTP 503, a JSON-RPC error line) and closed, never
//! left waiting in the listen backlog. Refusals being written hold descriptors too, so at
//! most [`MAX_REFUSING`] run at once; past that a connection over the cap is closed
//! without an answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::descriptors::MAX_REFUSING;

/// How long writing a refusal may take.
const REFUSE_WRITE: Duration = Duration::from_secs(1);
/// How long, after its answer, what a refused peer sends is read and dropped before the
/// connection is closed (closing with unread input would reset the connection, and the
/// peer might lose the answer).
const LINGER: Duration = Duration::from_millis(500);
/// The most read from a refused peer while lingering.
const LINGER_BYTES: usize = 64 * 1024;
/// How often a surface at its cap says so in the log.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The connection cap of one surface.
#[derive(Debug, Clone)]
pub(crate) struct Admission {
    surface: &'static str,
    max: usize,
    slots: Arc<Semaphore>,
    refusing: Arc<Semaphore>,
    answer: Bytes,
    refused: Arc<AtomicU64>,
    last_warning: Arc<std::sync::Mutex<Option<tokio::time::Instant>>>,
}

impl Admission {
    /// At most `max` connections (at least 1) of `surface`; one more is sent `answer`.
    pub(crate) fn new(surface: &'static str, max: usize, answer: Bytes) -> Admission {
        let max = max.max(1);
        Admission {
            surface,
            max,
            slots: Arc::new(Semaphore::new(max)),
            refusing: Arc::new(Semaphore::new(MAX_REFUSING)),
            answer,
            refused: Arc::new(AtomicU64::new(0)),
            last_warning: Arc::new(std::sync::Mutex::new(None)),
        }
    }

    /// A slot for a new connection, to hold while it is served; `None` at the cap.
    pub(crate) fn try_admit(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Connections being served.
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.max - self.slots.available_permits()
    }

    /// Sends the refusal to `stream` and closes it, in the background.
    pub(crate) fn refuse<S>(&self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        self.warn(refused);
        let Ok(permit) = self.refusing.clone().try_acquire_owned() else {
            // Too many refusals in progress: close at once, without an answer.
            return;
        };
        tokio::spawn(refuse(stream, self.answer.clone(), permit));
    }

    fn warn(&self, refused: u64) {
        let now = tokio::time::Instant::now();
        let mut last = self.last_warning.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|at| now.duration_since(at) >= WARN_EVERY) {
            *last = Some(now);
            tracing::warn!(
                surface = self.surface,
                max = self.max,
                refused_so_far = refused,
                "connection refused: too many connections"
            );
        }
    }
}

async fn refuse<S>(mut stream: S, answer: Bytes, _permit: OwnedSemaphorePermit)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if tokio::time::timeout(REFUSE_WRITE, stream.write_all(&answer)).await.is_err() {
        return;
    }
    let _ = stream.shutdown().await;
    let mut chunk = [0u8; 4096];
    let mut seen = 0;
    let _ = tokio::time::timeout(LINGER, async {
        while seen < LINGER_BYTES {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen += n,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    #[tokio::test]
    async fn one_over_the_cap_is_answered_and_closed_and_a_freed_slot_admits_again() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let admission = Admission::new("test", 1, Bytes::from_static(b"full\n"));

        let _first = TcpStream::connect(addr).await.unwrap();
        let slot = admission.try_admit().expect("a slot for the first");
        let _served = listener.accept().await.unwrap();
        assert_eq!(admission.open(), 1);

        let mut second = TcpStream::connect(addr).await.unwrap();
        assert!(admission.try_admit().is_none());
        admission.refuse(listener.accept().await.unwrap().0);
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), second.read_to_end(&mut answer))
            .await
            .expect("answered and closed at once")
            .unwrap();
        assert_eq!(answer, b"full\n");

        drop(slot);
        assert!(admission.try_admit().is_some());
    }
}
