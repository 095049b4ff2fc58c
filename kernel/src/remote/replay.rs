//! The replay cache: envelope ids accepted within the freshness window.
//!
//! An id is kept until its envelope could no longer pass the freshness check
//! (`sent_at + window`), so a replay is always caught by one check or the other. The cache
//! is bounded; when full of unexpired ids it refuses new envelopes (`inbox_full`) rather
//! than forgetting ids early.

use std::collections::{BTreeSet, HashMap};

use super::Refusal;

/// Seen ids with their expiry (ms since the epoch).
#[derive(Debug)]
pub(crate) struct ReplayCache {
    capacity: usize,
    seen: HashMap<String, u64>,
    by_expiry: BTreeSet<(u64, String)>,
}

impl ReplayCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { capacity, seen: HashMap::new(), by_expiry: BTreeSet::new() }
    }

    /// Marks `key` as seen until `expires_at`: [`Refusal::Replayed`] if it already is,
    /// [`Refusal::InboxFull`] if the cache is full of unexpired ids.
    pub(crate) fn reserve(&mut self, key: &str, expires_at: u64, now: u64) -> Result<(), Refusal> {
        self.prune(now);
        if self.seen.contains_key(key) {
            return Err(Refusal::Replayed);
        }
        if self.seen.len() >= self.capacity {
            return Err(Refusal::InboxFull);
        }
        self.seen.insert(key.to_owned(), expires_at);
        self.by_expiry.insert((expires_at, key.to_owned()));
        Ok(())
    }

    /// Forgets `key` (its delivery was refused, so a retry must be possible).
    pub(crate) fn release(&mut self, key: &str) {
        if let Some(expires_at) = self.seen.remove(key) {
            self.by_expiry.remove(&(expires_at, key.to_owned()));
        }
    }

    /// Drops ids that expired before `now`.
    fn prune(&mut self, now: u64) {
        while let Some((expires_at, _)) = self.by_expiry.first() {
            if *expires_at >= now {
                break;
            }
            if let Some((_, key)) = self.by_expiry.pop_first() {
                self.seen.remove(&key);
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_full_and_expiry() {
        let mut cache = ReplayCache::new(2);
        assert_eq!(cache.reserve("a", 100, 0), Ok(()));
        assert_eq!(cache.reserve("a", 100, 50), Err(Refusal::Replayed));
        assert_eq!(cache.reserve("b", 200, 50), Ok(()));
        assert_eq!(cache.reserve("c", 200, 50), Err(Refusal::InboxFull));
        cache.release("b");
        assert_eq!(cache.reserve("c", 200, 50), Ok(()));
        // At 100 "a" is still live; after it, it is gone and room is made.
        assert_eq!(cache.reserve("d", 300, 100), Err(Refusal::InboxFull));
        assert_eq!(cache.reserve("d", 300, 101), Ok(()));
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.reserve("a", 400, 101), Err(Refusal::InboxFull));
    }
}
