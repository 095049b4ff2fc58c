//! How a running kernel stops: the one mechanism every part of it answers to.
//!
//! [`crate::server`] takes the parts down in a fixed order (host surfaces, restarts,
//! sessions, apps, managed processes, the last answers). Each is stopped the same way:
//! its owner (an actor, or the value that owns a set of listeners) is handed a [`Stop`]
//! saying by when, does what stopping means for it, and calls [`Stop::done`]. [`part`]
//! waits for that until the deadline and then goes on, so no part can hold the kernel's
//! stop, and nothing in the sequence sleeps or polls.

use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

/// A request to stop, handed to a part's owner.
#[derive(Debug)]
pub struct Stop {
    by: Instant,
    done: oneshot::Sender<()>,
}

impl Stop {
    /// When the part has to be done by: what it waits on may be let go then.
    pub fn by(&self) -> Instant {
        self.by
    }

    /// The part has stopped. Dropping a `Stop` unanswered says the same: an owner that
    /// is gone has nothing left to stop.
    pub fn done(self) {
        let _ = self.done.send(());
    }
}

/// Stops one part: `ask` hands its owner a [`Stop`] due at `by` (and returns false when
/// the owner is already gone); waits for the answer until `by` + `slack`, the time the
/// owner takes to tidy up after its own deadline.
pub async fn part(
    name: &'static str,
    by: Instant,
    slack: Duration,
    ask: impl FnOnce(Stop) -> bool,
) {
    let (done, answered) = oneshot::channel();
    if !ask(Stop { by, done }) {
        tracing::debug!(part = name, "already stopped");
        return;
    }
    match tokio::time::timeout_at(by + slack, answered).await {
        Ok(_) => tracing::debug!(part = name, "stopped"),
        Err(_) => tracing::warn!(part = name, "did not stop in time; going on without it"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_part_that_answers_ends_the_wait_at_once() {
        let start = Instant::now();
        let by = start + Duration::from_secs(5);
        part("test", by, Duration::ZERO, |stop| {
            assert_eq!(stop.by(), by);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(30)).await;
                stop.done();
            });
            true
        })
        .await;
        assert_eq!(start.elapsed(), Duration::from_millis(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_part_that_never_answers_is_left_at_its_deadline() {
        let start = Instant::now();
        let by = start + Duration::from_secs(2);
        let mut kept = None;
        part("test", by, Duration::from_secs(1), |stop| {
            kept = Some(stop);
            true
        })
        .await;
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        assert!(kept.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_gone_owner_costs_no_wait() {
        let start = Instant::now();
        let far = start + Duration::from_secs(60);
        // The owner dropped the request (an actor that stopped with it in its mailbox).
        part("dropped", far, Duration::ZERO, |stop| {
            drop(stop);
            true
        })
        .await;
        // The owner could not be reached at all.
        part("unreachable", far, Duration::ZERO, |_| false).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
