//! What a host connection's answers may hold in memory ([`Answers`]): the bytes queued
//! for its writer, and the large answers (a transcript page, an app's answer) prepared
//! at once. The JSON-RPC connection holds one each; the HTTP surface one for all its
//! connections (a response holds its slot until it is written).

use std::sync::Arc;

use burrow_protocol::methods::table::{self, AnswerSize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The answer bounds of one connection (or of a whole surface).
#[derive(Debug)]
pub(crate) struct Answers {
    queue: Arc<Semaphore>,
    queue_bytes: u32,
    large: Arc<Semaphore>,
}

impl Answers {
    /// At most about `queue_bytes` queued for the writer (one answer more may pass it),
    /// and `large` large answers prepared at once.
    pub(crate) fn new(queue_bytes: usize, large: usize) -> Arc<Answers> {
        let queue_bytes = u32::try_from(queue_bytes).unwrap_or(u32::MAX).max(1);
        Arc::new(Answers {
            queue: Arc::new(Semaphore::new(queue_bytes as usize)),
            queue_bytes,
            large: Arc::new(Semaphore::new(large.max(1))),
        })
    }

    /// Room for an answer of `len` bytes in the writer queue, held until it is written;
    /// waits while the queue is full. An answer larger than the whole queue takes all of
    /// it. `None` once closed.
    pub(crate) async fn reserve(&self, len: usize) -> Option<OwnedSemaphorePermit> {
        let n = u32::try_from(len).unwrap_or(u32::MAX).clamp(1, self.queue_bytes);
        self.queue.clone().acquire_many_owned(n).await.ok()
    }

    /// Resolves once the writer queue has room.
    pub(crate) async fn room(&self) {
        drop(self.queue.acquire().await);
    }

    /// Bytes queued for the writer now.
    pub(crate) fn queued_bytes(&self) -> usize {
        (self.queue_bytes as usize).saturating_sub(self.queue.available_permits())
    }

    /// Whether nothing waits to be written.
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.available_permits() == self.queue_bytes as usize
    }

    /// A slot to prepare a large answer in, taken once the writer queue has room; hold
    /// it until the answer is queued (or written).
    pub(crate) async fn large_slot(&self) -> Option<OwnedSemaphorePermit> {
        let slot = self.large.clone().acquire_owned().await.ok()?;
        self.room().await;
        Some(slot)
    }
}

/// Whether the host method `method` may answer with as much as a frame: a host method
/// the table says so of, or any other name (an app's gateway method).
pub(crate) fn is_large(method: &str) -> bool {
    table::by_host_name(method).is_none_or(|m| m.answer == AnswerSize::Large)
}

/// Whether `method` is a host method whose large answer the kernel prepares itself (a
/// transcript page, a session list), as opposed to an app's answer it routes.
pub(crate) fn prepares_large(method: &str) -> bool {
    table::by_host_name(method).is_some_and(|m| m.answer == AnswerSize::Large)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn the_queue_is_bounded_in_bytes_and_a_large_answer_waits_for_room() {
        let answers = Answers::new(1000, 1);
        let first = answers.reserve(600).await.expect("room");
        let second = answers.reserve(400).await.expect("room");
        assert!(!answers.is_empty());
        // Full: a third waits, and so does a large slot.
        let third = tokio::time::timeout(Duration::from_millis(50), answers.reserve(10)).await;
        assert!(third.is_err(), "taken while full");
        let slot = tokio::time::timeout(Duration::from_millis(50), answers.large_slot()).await;
        assert!(slot.is_err(), "a large slot while the queue is full");
        drop(first);
        let slot = answers.large_slot().await.expect("a slot");
        // One slot only.
        let again = tokio::time::timeout(Duration::from_millis(50), answers.large_slot()).await;
        assert!(again.is_err());
        drop((slot, second));
        assert!(answers.is_empty());
        // An answer larger than the queue takes all of it, and goes.
        let huge = answers.reserve(1 << 30).await.expect("room");
        assert_eq!(answers.queue.available_permits(), 0);
        drop(huge);
    }

    #[test]
    fn large_methods_come_from_the_table() {
        assert!(is_large("session/history"));
        assert!(is_large("session/list"));
        assert!(is_large("weather.now"));
        assert!(!is_large("comms/send"));
        assert!(!is_large("session/create"));
    }
}
