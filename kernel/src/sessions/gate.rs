//! A run that starts before its input is on disk ([`Gate`]).
//!
//! A message's write and the run it feeds start together: the run asks its provider
//! while the journal's `fdatasync` is under way, so a turn costs one durable wait instead
//! of a provider round trip after one. Nothing of the run is seen before its input is
//! known to be on disk: its start, its hook events and its streamed pieces wait behind
//! the gate, in order (the pieces held by [`RunStream`](super::stream::RunStream)); no
//! interceptor is asked, no tool is called, nothing is written and no reply leaves until
//! then. The session's actor opens the gate ([`Opener`]) the moment it hears that the
//! input is on disk, right after it has published the input, so followers see the
//! message before its run, and what waited is done there and then. If the write is
//! refused, the actor cancels the run: its provider call is cancelled, and it writes and
//! tells nothing (the actor reads the session back from the store, as for any refused
//! write).
//!
//! A provider may so be asked about a message the kernel then fails to store, which only
//! happens when the disk refuses a write; the caller hears the error, and the provider's
//! answer is dropped.

use std::sync::{Arc, Mutex, MutexGuard};

use burrow_protocol::{Map, Value};
use tokio::sync::watch;

use crate::kernel::Kernel;

/// The run's side: see the module's documentation.
#[derive(Clone)]
pub struct Gate(Arc<Shared>);

/// The actor's side: opens the gate (or refuses it). Dropped unused, it refuses. What
/// waited is done by the opener, so it must not block nor defer more.
pub struct Opener(Option<Arc<Shared>>);

struct Shared {
    /// What the run did meanwhile that others see, in order; `None` once decided.
    deferred: Mutex<Option<Vec<Deferred>>>,
    /// `None` while pending, then whether the input is on disk.
    decided: watch::Sender<Option<bool>>,
}

type Deferred = Box<dyn FnOnce() + Send>;

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Gate").field(&*self.0.decided.borrow()).finish()
    }
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Opener")
    }
}

impl Default for Gate {
    /// A gate open from the start: the run's input was on disk when it started.
    fn default() -> Self {
        Self(Arc::new(Shared {
            deferred: Mutex::new(None),
            decided: watch::Sender::new(Some(true)),
        }))
    }
}

impl Shared {
    fn deferred(&self) -> MutexGuard<'_, Option<Vec<Deferred>>> {
        self.deferred.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Gate {
    /// A closed gate and what opens it.
    pub fn pending() -> (Opener, Gate) {
        let shared = Arc::new(Shared {
            deferred: Mutex::new(Some(Vec::new())),
            decided: watch::Sender::new(None),
        });
        (Opener(Some(shared.clone())), Gate(shared))
    }

    /// Whether the input is known to be on disk.
    pub fn is_open(&self) -> bool {
        *self.0.decided.borrow() == Some(true)
    }

    /// Does `then` now when the gate is open, else when it opens (never if the input is
    /// refused).
    pub fn defer(&self, then: impl FnOnce() + Send + 'static) {
        let mut deferred = self.0.deferred();
        match deferred.as_mut() {
            Some(waiting) => waiting.push(Box::new(then)),
            // Decided: the list goes only under the lock, with the decision.
            None => {
                drop(deferred);
                if self.is_open() {
                    then();
                }
            }
        }
    }

    /// [`Kernel::emit_with`], once the gate opens: the payload is made now (only when
    /// someone observes `event`), emitted then.
    pub fn emit(
        &self,
        kernel: &Arc<Kernel>,
        event: &'static str,
        make: impl FnOnce() -> (Value, Map),
    ) {
        if self.is_open() {
            return kernel.emit_with(event, make);
        }
        if kernel.hooks.observed(event) {
            let (payload, context) = make();
            let kernel = kernel.clone();
            self.defer(move || kernel.emit(event, payload, context));
        }
    }

    /// Waits until the input is on disk (true) or refused (false); at once when that
    /// is known. Cancel-safe.
    pub async fn wait(&self) -> bool {
        let mut decided = self.0.decided.subscribe();
        match decided.wait_for(Option::is_some).await {
            Ok(decided) => *decided == Some(true),
            // The sender lives in `Shared`, which this gate holds.
            Err(_) => false,
        }
    }
}

impl Gate {
    /// Does `work` while waiting for the input to be on disk: its outcome once the
    /// input is, `None` (`work` dropped, so a request is cancelled) when it was refused.
    pub async fn behind<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        if self.is_open() {
            return Some(work.await);
        }
        let mut work = std::pin::pin!(work);
        let done = tokio::select! {
            stored = self.wait() => {
                if !stored {
                    return None;
                }
                None
            }
            done = &mut work => Some(done),
        };
        match done {
            Some(done) => self.wait().await.then_some(done),
            None => Some(work.await),
        }
    }
}

impl Opener {
    /// Says whether the run's input is on disk: if it is, what the run deferred is
    /// done now, in order, and later things at once.
    pub fn open(mut self, stored: bool) {
        self.decide(stored);
    }

    fn decide(&mut self, stored: bool) {
        let Some(shared) = self.0.take() else { return };
        // Under the lock, so that nothing deferred meanwhile overtakes what waited, nor
        // finds the list gone before the gate shows what was decided.
        let mut deferred = shared.deferred();
        let waited = deferred.take().unwrap_or_default();
        if stored {
            waited.into_iter().for_each(|then| then());
        }
        shared.decided.send_replace(Some(stored));
    }
}

impl Drop for Opener {
    fn drop(&mut self) {
        self.decide(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Log = Arc<Mutex<Vec<u32>>>;

    fn push(log: &Log, n: u32) -> impl FnOnce() + Send + 'static {
        let log = log.clone();
        move || log.lock().unwrap().push(n)
    }

    #[tokio::test]
    async fn an_open_gate_does_things_at_once() {
        let log = Log::default();
        let gate = Gate::default();
        assert!(gate.is_open());
        gate.defer(push(&log, 1));
        assert_eq!(*log.lock().unwrap(), [1]);
        assert!(gate.wait().await);
    }

    #[tokio::test]
    async fn a_pending_gate_does_what_waited_in_order_once_the_input_is_stored() {
        let log = Log::default();
        let (opener, gate) = Gate::pending();
        assert!(!gate.is_open());
        gate.defer(push(&log, 1));
        gate.defer(push(&log, 2));
        assert!(log.lock().unwrap().is_empty(), "nothing is seen before the input is stored");
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.wait().await }
        });
        opener.open(true);
        assert_eq!(*log.lock().unwrap(), [1, 2], "done by the opener, at once");
        assert!(waiting.await.unwrap());
        assert!(gate.is_open());
        gate.defer(push(&log, 3));
        assert_eq!(*log.lock().unwrap(), [1, 2, 3]);
    }

    #[tokio::test]
    async fn a_refused_input_drops_what_waited_and_stays_refused() {
        let log = Log::default();
        let (opener, gate) = Gate::pending();
        gate.defer(push(&log, 1));
        opener.open(false);
        assert!(!gate.wait().await);
        gate.defer(push(&log, 2));
        assert!(!gate.wait().await, "refused stays refused");
        assert!(!gate.is_open());
        assert!(log.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_wait_given_up_leaves_the_gate_closed() {
        let (opener, gate) = Gate::pending();
        tokio::select! {
            biased;
            _ = gate.wait() => panic!("nothing was decided"),
            () = std::future::ready(()) => {}
        }
        assert!(!gate.is_open(), "still waiting for the input");
        opener.open(true);
        assert!(gate.wait().await);
    }

    #[tokio::test]
    async fn work_behind_the_gate_ends_when_both_have() {
        // Done first, then stored: its outcome, once stored.
        let (opener, gate) = Gate::pending();
        let behind = tokio::spawn({
            let gate = gate.clone();
            async move { gate.behind(async { 7 }).await }
        });
        tokio::task::yield_now().await;
        assert!(!behind.is_finished(), "ended before the input was stored");
        opener.open(true);
        assert_eq!(behind.await.unwrap(), Some(7));
        // Stored first, then done.
        let (opener, gate) = Gate::pending();
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let behind = tokio::spawn({
            let gate = gate.clone();
            async move { gate.behind(async { rx.await.unwrap() }).await }
        });
        opener.open(true);
        tx.send(8).unwrap();
        assert_eq!(behind.await.unwrap(), Some(8));
        // Refused while working: the work is dropped.
        let (opener, gate) = Gate::pending();
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let behind = tokio::spawn({
            let gate = gate.clone();
            async move { gate.behind(async { rx.await.unwrap_or(0) }).await }
        });
        tokio::task::yield_now().await;
        opener.open(false);
        assert_eq!(behind.await.unwrap(), None);
        assert!(tx.is_closed(), "the work was dropped");
    }

    #[tokio::test]
    async fn a_dropped_opener_refuses() {
        let log = Log::default();
        let (opener, gate) = Gate::pending();
        gate.defer(push(&log, 1));
        drop(opener);
        assert!(!gate.wait().await);
        assert!(log.lock().unwrap().is_empty());
    }
}
