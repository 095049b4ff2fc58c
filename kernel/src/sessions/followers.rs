//! Followers of a session's events (`GET /sessions/{id}/events`, `session.events`).
//!
//! Each follower has a queue of its own, bounded in events ([`MAX_EVENTS`]) and in bytes
//! (its `max_bytes`, the events' size as JSON): a publisher never waits, and a follower
//! that falls that far behind gets a last `{type: "lagged", session_id}` event, then its
//! stream ends. Events are shared between followers, never copied per follower.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use burrow_protocol::Value;
use futures_util::Stream;
use futures_util::stream::BoxStream;
use serde_json::json;
use tokio::sync::mpsc;

/// Events queued for one follower at most.
pub const MAX_EVENTS: usize = 4096;

type Queue = mpsc::UnboundedSender<(Arc<Value>, usize)>;

/// Every follower, by session.
#[derive(Debug, Default)]
pub struct Followers {
    by_session: Mutex<HashMap<Arc<str>, HashMap<u64, Follower>>>,
    count: AtomicUsize,
    next: AtomicU64,
}

#[derive(Debug)]
struct Follower {
    queue: Queue,
    held: Arc<Held>,
}

/// What a follower's queue holds, and whether it overflowed.
#[derive(Debug, Default)]
struct Held {
    events: AtomicUsize,
    bytes: AtomicUsize,
    lagged: AtomicBool,
    max_bytes: usize,
}

impl Followers {
    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, HashMap<u64, Follower>>> {
        self.by_session.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether anyone follows any session.
    pub fn any(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0
    }

    /// The events of session `key` from now on, queued up to `max_bytes`.
    pub fn follow(self: &Arc<Self>, key: &str, max_bytes: usize) -> BoxStream<'static, Value> {
        let (queue, rx) = mpsc::unbounded_channel();
        let held = Arc::new(Held { max_bytes, ..Held::default() });
        let (id, key): (u64, Arc<str>) = (self.next.fetch_add(1, Ordering::Relaxed), key.into());
        let follower = Follower { queue, held: held.clone() };
        self.lock().entry(key.clone()).or_default().insert(id, follower);
        self.count.fetch_add(1, Ordering::Relaxed);
        let gone = Unfollow { followers: self.clone(), key: key.clone(), id };
        Box::pin(Following { rx, held, key, gone: Some(gone) })
    }

    /// Queues the event `event` makes (made only when `key` has followers) for each of
    /// `key`'s followers; one whose queue is full is told it lagged and let go.
    pub fn publish(&self, key: &str, event: impl FnOnce() -> Value) {
        if !self.any() {
            return;
        }
        let mut all = self.lock();
        let Some(followers) = all.get_mut(key) else { return };
        let event = Arc::new(event());
        let size = crate::sizes::json_len(event.as_ref());
        followers.retain(|_, f| {
            let (events, bytes) = (&f.held.events, &f.held.bytes);
            // An event larger than the bound still goes to a follower that is not
            // behind (nothing queued), as a frame larger than a writer queue does.
            let queued = bytes.load(Ordering::Relaxed);
            let full = events.load(Ordering::Relaxed) >= MAX_EVENTS
                || (queued > 0 && queued.saturating_add(size) > f.held.max_bytes);
            if full {
                // Dropping the queue's sender ends the stream after what it holds.
                f.held.lagged.store(true, Ordering::Relaxed);
                self.count.fetch_sub(1, Ordering::Relaxed);
                metrics::counter!("burrow_session_followers_lagged_total").increment(1);
                return false;
            }
            events.fetch_add(1, Ordering::Relaxed);
            bytes.fetch_add(size, Ordering::Relaxed);
            let sent = f.queue.send((event.clone(), size)).is_ok();
            if !sent {
                // Its stream went just now; its guard finds it gone.
                self.count.fetch_sub(1, Ordering::Relaxed);
            }
            sent
        });
        if followers.is_empty() {
            all.remove(key);
        }
    }

    fn unfollow(&self, key: &str, id: u64) {
        let mut all = self.lock();
        if let Some(followers) = all.get_mut(key)
            && followers.remove(&id).is_some()
        {
            self.count.fetch_sub(1, Ordering::Relaxed);
            if followers.is_empty() {
                all.remove(key);
            }
        }
    }
}

/// Every follower's queue, for `/metrics` (`session_followers`).
impl crate::metrics::queues::Probe for Followers {
    fn depth(&self) -> crate::metrics::queues::Depth {
        let all = self.lock();
        let mut depth = crate::metrics::queues::Depth::default();
        for f in all.values().flat_map(HashMap::values) {
            depth.connections += 1;
            depth.out_frames += f.held.events.load(Ordering::Relaxed) as u64;
            depth.out_bytes += f.held.bytes.load(Ordering::Relaxed) as u64;
        }
        depth
    }
}

/// Forgets a follower when its stream goes.
struct Unfollow {
    followers: Arc<Followers>,
    key: Arc<str>,
    id: u64,
}

impl Drop for Unfollow {
    fn drop(&mut self) {
        self.followers.unfollow(&self.key, self.id);
    }
}

/// One follower's stream.
struct Following {
    rx: mpsc::UnboundedReceiver<(Arc<Value>, usize)>,
    held: Arc<Held>,
    key: Arc<str>,
    /// `None` once the stream has ended.
    gone: Option<Unfollow>,
}

impl Stream for Following {
    type Item = Value;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Value>> {
        use std::task::Poll;
        if self.gone.is_none() {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some((event, size))) => {
                self.held.events.fetch_sub(1, Ordering::Relaxed);
                self.held.bytes.fetch_sub(size, Ordering::Relaxed);
                Poll::Ready(Some(Arc::unwrap_or_clone(event)))
            }
            Poll::Ready(None) => {
                self.gone = None;
                match self.held.lagged.load(Ordering::Relaxed) {
                    true => {
                        Poll::Ready(Some(json!({ "type": "lagged", "session_id": &*self.key })))
                    }
                    false => Poll::Ready(None),
                }
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    fn event(n: u64) -> Value {
        json!({ "type": "message", "n": n, "pad": "x".repeat(100) })
    }

    #[tokio::test]
    async fn a_follower_gets_its_sessions_events_in_order_and_no_others() {
        let followers = Arc::new(Followers::default());
        let mut a = followers.follow("a", 1 << 20);
        followers.publish("b", || event(0));
        for n in 1..=3 {
            followers.publish("a", || event(n));
        }
        for n in 1..=3 {
            assert_eq!(a.next().await.expect("an event")["n"], n);
        }
        drop(a);
        assert!(!followers.any(), "a dropped stream is forgotten");
        let made = AtomicBool::new(false);
        followers.publish("a", || {
            made.store(true, Ordering::Relaxed);
            event(9)
        });
        assert!(!made.load(Ordering::Relaxed), "an event nobody follows is not even made");
    }

    #[tokio::test]
    async fn a_follower_that_falls_behind_by_its_bytes_lags_and_ends_others_go_on() {
        let followers = Arc::new(Followers::default());
        // Room for about three events.
        let mut slow = followers.follow("a", 500);
        let mut fast = followers.follow("a", 1 << 20);
        for n in 0..10 {
            followers.publish("a", || event(n));
            assert_eq!(fast.next().await.expect("an event")["n"], n);
        }
        let mut got = Vec::new();
        while let Some(e) = slow.next().await {
            got.push(e);
        }
        let (last, kept) = got.split_last().expect("events");
        assert_eq!(last["type"], "lagged");
        assert_eq!(last["session_id"], "a");
        assert_eq!(kept.iter().map(|e| e["n"].as_u64().unwrap()).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(followers.any(), "the fast one still follows");
        // One event larger than the bound reaches a follower that is not behind.
        let mut small = followers.follow("b", 50);
        followers.publish("b", || event(1));
        assert_eq!(small.next().await.expect("the event")["n"], 1);
    }
}
