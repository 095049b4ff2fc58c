//! A session actor's writes in flight: submitted without waiting for the disk, behind
//! the actor's [`Fence`], counted until their completions have run and until the actor
//! has heard back from those that tell it something.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::store::{Fence, Storage, StoreError, Write, WriteDone};

/// The bookkeeping.
#[derive(Debug, Default)]
pub(super) struct Writes {
    fence: Fence,
    /// Submissions so far, numbered from 1; never reset, so a late completion of an
    /// earlier fence cannot be mistaken for a later submission.
    submitted: u64,
    /// Submissions whose completion has not finished running.
    in_flight: Arc<AtomicU64>,
    /// The last submission the actor knows is on disk: runs wait for their input here.
    known: u64,
    /// The last submission whose completion messages the actor.
    last_told: u64,
    /// The first submission behind the current fence.
    fence_start: u64,
}

impl Writes {
    /// The number the next submission gets.
    pub(super) fn next(&self) -> u64 {
        self.submitted + 1
    }

    /// Submits `writes` behind the fence as the next submission; `then` runs once they
    /// are on disk or refused (on the store's writing thread: quick, never blocking).
    /// `tells` says that `then` messages the actor, which then calls [`Writes::heard`].
    pub(super) async fn submit(
        &mut self,
        store: &dyn Storage,
        writes: Vec<Write>,
        tells: bool,
        then: impl FnOnce(Result<(), StoreError>) + Send + 'static,
    ) -> u64 {
        self.submitted += 1;
        if tells {
            self.last_told = self.submitted;
        }
        let in_flight = self.in_flight.clone();
        in_flight.fetch_add(1, Ordering::AcqRel);
        let done: WriteDone = Box::new(move |outcome| {
            then(outcome);
            in_flight.fetch_sub(1, Ordering::AcqRel);
        });
        store.submit(writes, &self.fence, done).await;
        self.submitted
    }

    /// The actor heard back from submission `seq`, and so of every earlier one: on disk,
    /// or refused (then the fence is broken, and the actor reads itself back).
    pub(super) fn heard(&mut self, seq: u64) {
        self.known = self.known.max(seq);
    }

    /// The last submission the actor knows is done.
    pub(super) fn known(&self) -> u64 {
        self.known
    }

    /// Whether submissions are on their way, or news of them is.
    pub(super) fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0 || self.known < self.last_told
    }

    /// Whether a write behind the fence was refused.
    pub(super) fn refused(&self) -> bool {
        self.fence.is_broken()
    }

    /// A new fence, once the actor holds only what the store holds.
    pub(super) fn renew(&mut self) {
        self.fence = Fence::default();
        self.fence_start = self.submitted + 1;
    }

    /// The first submission behind the current fence: a refusal of an earlier one is
    /// news of a fence gone by.
    pub(super) fn fence_start(&self) -> u64 {
        self.fence_start
    }
}
