//! A session's transcript, the newest of it, kept in its actor's memory ([`Tail`]), so
//! that a run starts from it instead of reading the store (and waiting for the store's
//! applier to reach SQLite first). It holds what the store's last history page would:
//! at most [`MAX_MESSAGES`] messages and a byte bound, oldest dropped first.
//!
//! The tail is kept only while it is certainly the store's order: the actor adds the
//! messages it stores, and a run's own messages when the run ends ([`RunOutcome`]) —
//! unless a message came while the run ran (its place among the run's is the store's to
//! say), or a write failed. Then it is dropped, and the next run reads the store.

use std::collections::VecDeque;

use burrow_protocol::methods::session::TranscriptMessage;

use crate::sizes::json_len;

/// Most messages a run's context holds (as a history page's `limit`).
pub const MAX_MESSAGES: usize = 1000;

/// The newest of a session's transcript, oldest first.
#[derive(Debug)]
pub struct Tail {
    messages: VecDeque<(TranscriptMessage, usize)>,
    bytes: usize,
    max_bytes: usize,
}

impl Tail {
    /// A tail holding `history` (oldest first), within `max_bytes`.
    pub fn new(history: Vec<TranscriptMessage>, max_bytes: usize) -> Tail {
        let mut tail = Tail { messages: VecDeque::new(), bytes: 0, max_bytes };
        for m in history {
            tail.push(m);
        }
        tail
    }

    /// Adds the newest message, dropping the oldest beyond the bounds (one message
    /// stays, whatever its size).
    pub fn push(&mut self, m: TranscriptMessage) {
        let size = size(&m);
        self.bytes += size;
        self.messages.push_back((m, size));
        while self.messages.len() > 1
            && (self.messages.len() > MAX_MESSAGES || self.bytes > self.max_bytes)
        {
            if let Some((_, gone)) = self.messages.pop_front() {
                self.bytes -= gone;
            }
        }
    }

    /// The messages, oldest first.
    pub fn snapshot(&self) -> Vec<TranscriptMessage> {
        self.messages.iter().map(|(m, _)| m.clone()).collect()
    }
}

/// What a message counts for in the byte bound: as the store counts it for a page.
fn size(m: &TranscriptMessage) -> usize {
    m.content.len()
        + m.metadata.as_ref().map_or(0, json_len)
        + m.tool_calls.as_ref().map_or(0, json_len)
}

/// What a run tells its session when it ends.
#[derive(Debug, Default)]
pub struct RunOutcome {
    /// The steered messages it did not take.
    pub leftover: Vec<String>,
    /// The transcript it read from the store, when its session had none in memory.
    pub read: Option<Vec<TranscriptMessage>>,
    /// The messages it stored, in order.
    pub appended: Vec<TranscriptMessage>,
    /// Whether a write of it failed (the store's order is then not known here).
    pub failed_write: bool,
}

#[cfg(test)]
mod tests {
    use burrow_protocol::methods::invoke::Role;

    use super::*;

    fn message(n: usize, text: &str) -> TranscriptMessage {
        TranscriptMessage {
            id: format!("m{n}"),
            role: Role::User,
            content: text.to_owned(),
            created_at: n as u64,
            metadata: None,
            tool_calls: None,
            tool_call_id: None,
            run_id: None,
        }
    }

    #[test]
    fn the_tail_keeps_the_newest_within_its_bounds() {
        let mut tail = Tail::new((0..1200).map(|n| message(n, "x")).collect(), 1 << 20);
        let ids: Vec<String> = tail.snapshot().into_iter().map(|m| m.id).collect();
        assert_eq!(
            (ids.len(), ids[0].as_str(), ids[999].as_str()),
            (MAX_MESSAGES, "m200", "m1199")
        );
        tail.push(message(1200, &"y".repeat(1 << 20)));
        let ids: Vec<String> = tail.snapshot().into_iter().map(|m| m.id).collect();
        assert_eq!(ids, ["m1200"], "one message stays, whatever its size");
        tail.push(message(1201, "z"));
        assert_eq!(tail.snapshot().len(), 1, "the large one goes once another comes");
    }
}
