//! Request correlation: a side's own requests awaiting answers ([`Requests`]), for the
//! kernel's connections and the SDK's alike.
//!
//! Each request's answer goes to a continuation ([`Then`]) that whoever resolves the
//! request calls, on the spot: the connection's reader with the answer, the deadline
//! keeper when the answer is late, the reader's end when the far side is gone. So a
//! call costs no task of its own and no hop between tasks (a task that wants to await
//! the answer passes a continuation that sends it on a oneshot channel). Each
//! continuation is called exactly once: whoever removes the request from the table
//! calls it. The outcome type `O` is the side's own (the kernel's wire errors, the SDK's
//! `Result`); the table makes only one outcome itself, a late answer's, with the
//! function it was built with.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What an answer goes to.
pub type Then<O> = Box<dyn FnOnce(O) + Send + Sync>;

/// What a request still waiting at its deadline gets: made from its method and timeout.
pub type Late<O> = fn(&'static str, Duration) -> O;

/// Where a streamed answer's chunks go, in order, as the reader reads them: called on
/// the reader's thread, so it only hands them on.
pub type OnChunk = Box<dyn Fn(burrow_protocol::Value) + Send + Sync>;

/// Called with the answer, or with a late one at `deadline` (if it has one).
struct Waiter<O> {
    then: Then<O>,
    method: &'static str,
    timeout: Duration,
    deadline: Option<Instant>,
    chunks: Option<OnChunk>,
}

/// The table of requests awaiting answers, and the deadlines of continuations.
pub struct Requests<O> {
    /// By request id: this side's own sequential numbers, hashed cheaply.
    pending: DashMap<u64, Waiter<O>, rustc_hash::FxBuildHasher>,
    next: AtomicU64,
    /// `(deadline, id)` of every continuation waiting, earliest first.
    deadlines: Mutex<BTreeSet<(Instant, u64)>>,
    /// Woken when a continuation with the earliest deadline is added.
    earlier: Notify,
    /// Woken when the connection may have settled.
    pub settle: Settle,
    late: Late<O>,
}

impl<O> std::fmt::Debug for Requests<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Requests").field("pending", &self.pending.len()).finish()
    }
}

/// Wakes whoever waits for the connection to settle (its requests answered, its input
/// handed over), and costs an atomic load when nobody does.
#[derive(Debug, Default)]
pub struct Settle {
    waiting: AtomicUsize,
    changed: Notify,
}

impl Settle {
    /// Something that settling depends on changed.
    pub fn poke(&self) {
        if self.waiting.load(Ordering::Acquire) > 0 {
            self.changed.notify_waiters();
        }
    }

    /// Waits until `done()` holds (true) or `until` passes (false), checking again each
    /// time it is poked.
    pub async fn until(&self, until: Instant, done: impl Fn() -> bool) -> bool {
        struct Counted<'a>(&'a AtomicUsize);
        impl Drop for Counted<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let _counted = Counted(&self.waiting);
        loop {
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            if done() {
                return true;
            }
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep_until(until) => return done(),
            }
        }
    }
}

impl<O> Requests<O> {
    /// An empty table; a request still waiting at its deadline gets `late(method,
    /// timeout)`.
    pub fn new(late: Late<O>) -> Self {
        Requests {
            pending: DashMap::default(),
            next: AtomicU64::new(0),
            deadlines: Mutex::new(BTreeSet::new()),
            earlier: Notify::new(),
            settle: Settle::default(),
            late,
        }
    }

    /// A new request id.
    pub fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Hands the answer to `id` to `then`, or an error `TIMEOUT` after `timeout`.
    pub fn wait_then(&self, id: u64, method: &'static str, timeout: Duration, then: Then<O>) {
        let deadline = Instant::now() + timeout;
        // The entry first: a deadline the keeper finds due must find its request.
        let waiter = Waiter { then, method, timeout, deadline: Some(deadline), chunks: None };
        self.pending.insert(id, waiter);
        let first = {
            let mut deadlines = self.lock();
            deadlines.insert((deadline, id));
            deadlines.first() == Some(&(deadline, id))
        };
        if first {
            self.earlier.notify_one();
        }
    }

    /// Hands the answer to `id` to `then`, with no deadline of the table's: for a caller
    /// that keeps its own (and forgets the request when it gives up).
    pub fn wait(&self, id: u64, then: Then<O>) {
        let waiter =
            Waiter { then, method: "", timeout: Duration::ZERO, deadline: None, chunks: None };
        self.pending.insert(id, waiter);
    }

    /// Sends the chunks of `id`'s answer to `sink` until it is answered.
    pub fn on_chunks(&self, id: u64, sink: OnChunk) {
        if let Some(mut waiter) = self.pending.get_mut(&id) {
            waiter.chunks = Some(sink);
        }
    }

    /// Hands a chunk of `id`'s answer to its sink; false when nobody takes chunks of it.
    pub fn chunk(&self, id: u64, chunk: burrow_protocol::Value) -> bool {
        match self.pending.get(&id) {
            Some(waiter) => match &waiter.chunks {
                Some(sink) => {
                    sink(chunk);
                    true
                }
                None => false,
            },
            None => false,
        }
    }

    /// Takes `id`'s deadline off the keeper's list while its sender waits for room to
    /// send it (the sender then answers a late request itself, saying why).
    pub fn disarm(&self, id: u64) {
        if let Some(deadline) = self.pending.get(&id).and_then(|w| w.deadline) {
            self.lock().remove(&(deadline, id));
        }
    }

    /// Puts `id`'s deadline back on the keeper's list, once the request was sent.
    pub fn arm(&self, id: u64) {
        let first = match self.pending.get(&id).and_then(|w| w.deadline) {
            Some(deadline) => {
                let mut deadlines = self.lock();
                deadlines.insert((deadline, id));
                deadlines.first() == Some(&(deadline, id))
            }
            None => false,
        };
        if first {
            self.earlier.notify_one();
        }
    }

    /// Resolves `id` with `outcome`; gives the outcome back when nobody waited for it
    /// (any more).
    pub fn resolve(&self, id: u64, outcome: O) -> Option<O> {
        match self.take(id) {
            Some(waiter) => {
                (waiter.then)(outcome);
                None
            }
            None => Some(outcome),
        }
    }

    /// Ends `id` with `outcome`, if it still waits.
    pub fn fail(&self, id: u64, outcome: O) {
        if let Some(waiter) = self.take(id) {
            (waiter.then)(outcome);
        }
    }

    /// Ends every request waiting with what `outcome` makes.
    pub fn fail_all(&self, outcome: impl Fn() -> O) {
        let ids: Vec<u64> = self.pending.iter().map(|entry| *entry.key()).collect();
        for id in ids {
            self.fail(id, outcome());
        }
    }

    /// Forgets `id` without calling its continuation (its caller stopped waiting).
    pub fn forget(&self, id: u64) -> bool {
        self.take(id).is_some()
    }

    /// How many requests await answers.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no request awaits an answer.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Ends late continuations with their late outcome, at their deadlines, until `stop`.
    pub async fn keep_deadlines(&self, stop: CancellationToken) {
        loop {
            let earlier = self.earlier.notified();
            let mut earlier = std::pin::pin!(earlier);
            earlier.as_mut().enable();
            let first = self.lock().first().copied();
            let Some((deadline, _)) = first else {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = earlier => continue,
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = earlier => continue,
                () = tokio::time::sleep_until(deadline) => {}
            }
            let now = Instant::now();
            loop {
                let due = {
                    let mut deadlines = self.lock();
                    match deadlines.first() {
                        Some(&(at, id)) if at <= now => {
                            deadlines.pop_first();
                            Some(id)
                        }
                        _ => None,
                    }
                };
                let Some(id) = due else { break };
                if let Some((_, waiter)) = self.pending.remove(&id) {
                    (waiter.then)((self.late)(waiter.method, waiter.timeout));
                    self.settle.poke();
                }
            }
        }
    }

    /// Removes `id` from the table, and its deadline.
    fn take(&self, id: u64) -> Option<Waiter<O>> {
        let (_, waiter) = self.pending.remove(&id)?;
        if let Some(deadline) = waiter.deadline {
            self.lock().remove(&(deadline, id));
        }
        self.settle.poke();
        Some(waiter)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<(Instant, u64)>> {
        // Nothing panics under this lock.
        self.deadlines.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use burrow_protocol::{ErrorCode, ErrorObject, Value};

    use super::*;

    type Outcome = Result<Value, ErrorObject>;

    fn timed_out(_method: &str, _timeout: Duration) -> Outcome {
        Err(ErrorObject::new(ErrorCode::Timeout, "late"))
    }

    fn table() -> Requests<Outcome> {
        Requests::new(timed_out)
    }

    /// Starts `requests`' deadline keeper; cancel the token to stop it.
    fn keeper(requests: &Arc<Requests<Outcome>>) -> CancellationToken {
        let (requests, stop) = (requests.clone(), CancellationToken::new());
        let token = stop.clone();
        tokio::spawn(async move { requests.keep_deadlines(stop).await });
        token
    }

    fn counting(calls: &Arc<Mutex<Vec<Result<Value, ErrorCode>>>>) -> Then<Outcome> {
        let calls = calls.clone();
        Box::new(move |outcome| calls.lock().unwrap().push(outcome.map_err(|e| e.code)))
    }

    #[tokio::test(start_paused = true)]
    async fn a_continuation_gets_its_answer_or_a_timeout_exactly_once() {
        let requests = Arc::new(table());
        let stop = keeper(&requests);
        let calls = Arc::new(Mutex::new(Vec::new()));
        let (answered, late) = (requests.next_id(), requests.next_id());
        requests.wait_then(answered, "tool.invoke", Duration::from_secs(5), counting(&calls));
        requests.wait_then(late, "tool.invoke", Duration::from_secs(1), counting(&calls));
        assert!(requests.resolve(answered, Ok(Value::from(7))).is_none());
        assert!(requests.resolve(answered, Ok(Value::from(8))).is_some(), "answered once");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(*calls.lock().unwrap(), vec![Ok(Value::from(7)), Err(ErrorCode::Timeout)]);
        assert!(requests.resolve(late, Ok(Value::Null)).is_some(), "a late answer finds nobody");
        assert_eq!(requests.len(), 0);
        // The answered request's deadline went with it: nothing fires at 5 s.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(calls.lock().unwrap().len(), 2);
        stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_added_later_fires_first() {
        let requests = Arc::new(table());
        let stop = keeper(&requests);
        let fired = Arc::new(AtomicUsize::new(0));
        let note = |n: usize| -> Then<Outcome> {
            let fired = fired.clone();
            Box::new(move |_| {
                fired.fetch_add(n, Ordering::SeqCst);
            })
        };
        requests.wait_then(requests.next_id(), "a", Duration::from_secs(60), note(100));
        tokio::task::yield_now().await;
        requests.wait_then(requests.next_id(), "b", Duration::from_secs(1), note(1));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(fired.load(Ordering::SeqCst), 1);
        stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_disarmed_request_is_not_timed_out_until_armed_again() {
        let requests = Arc::new(table());
        let stop = keeper(&requests);
        let calls = Arc::new(Mutex::new(Vec::new()));
        let id = requests.next_id();
        requests.wait_then(id, "tool.invoke", Duration::from_secs(1), counting(&calls));
        requests.disarm(id);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(calls.lock().unwrap().is_empty(), "its sender keeps the deadline meanwhile");
        requests.arm(id);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(*calls.lock().unwrap(), vec![Err(ErrorCode::Timeout)], "past its deadline");
        stop.cancel();
    }

    #[tokio::test]
    async fn failing_all_calls_every_continuation() {
        let requests = table();
        let calls = Arc::new(Mutex::new(Vec::new()));
        requests.wait_then(requests.next_id(), "x", Duration::from_secs(60), counting(&calls));
        requests.wait_then(requests.next_id(), "y", Duration::from_secs(60), counting(&calls));
        requests.fail_all(|| Err(ErrorObject::new(ErrorCode::ConnectionClosed, "gone")));
        let gone = Err(ErrorCode::ConnectionClosed);
        assert_eq!(*calls.lock().unwrap(), vec![gone.clone(), gone]);
        assert_eq!(requests.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn settling_wakes_on_each_change_and_ends_at_its_deadline() {
        let settle = Arc::new(Settle::default());
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, d) = (settle.clone(), done.clone());
        let until = Instant::now() + Duration::from_secs(60);
        let waiter =
            tokio::spawn(async move { s.until(until, || d.load(Ordering::Acquire)).await });
        tokio::task::yield_now().await;
        assert_eq!(settle.waiting.load(Ordering::Acquire), 1, "counted while waiting");
        settle.poke();
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "a poke without the change goes back to waiting");
        done.store(true, Ordering::Release);
        settle.poke();
        assert!(waiter.await.unwrap(), "woken by the poke, long before the deadline");
        assert!(Instant::now() + Duration::from_secs(59) < until, "not at the deadline");
        assert_eq!(settle.waiting.load(Ordering::Acquire), 0);
        // Nobody poking: it ends at its deadline, saying the condition did not hold.
        let never = settle.until(Instant::now() + Duration::from_secs(2), || false);
        assert!(!never.await);
    }
}
