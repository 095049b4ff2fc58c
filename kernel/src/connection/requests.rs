//! The kernel's own requests to an app, awaiting answers ([`Requests`]).
//!
//! A request is answered one of two ways. A task may await it
//! ([`super::Connection::request`]): it holds its own deadline. Or a continuation takes
//! the answer ([`super::Connection::request_then`]): whoever resolves the request calls
//! it, on the spot — the connection's reader with the app's answer, the deadline keeper
//! when the answer is late, the reader's end when the app is gone — so a routed call
//! costs no task of its own and no hop between tasks. Each continuation is called
//! exactly once: whoever removes the request from the table calls it.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use burrow_protocol::{ErrorCode, ErrorObject, Value};
use dashmap::DashMap;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What an answer goes to.
pub type Then = Box<dyn FnOnce(Result<Value, ErrorObject>) + Send + Sync>;

enum Waiter {
    /// A task awaits the answer, within a deadline of its own.
    Task(oneshot::Sender<Result<Value, ErrorObject>>),
    /// Called with the answer, or with an error at `deadline`.
    Then { then: Then, method: &'static str, timeout: Duration, deadline: Instant },
}

/// The table of requests awaiting answers, and the deadlines of continuations.
#[derive(Default)]
pub struct Requests {
    pending: DashMap<u64, Waiter>,
    next: AtomicU64,
    /// `(deadline, id)` of every continuation waiting, earliest first.
    deadlines: Mutex<BTreeSet<(Instant, u64)>>,
    /// Woken when a continuation with the earliest deadline is added.
    earlier: Notify,
}

impl Requests {
    /// A new request id.
    pub fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Awaits the answer to `id` with a task.
    pub fn wait_task(&self, id: u64) -> oneshot::Receiver<Result<Value, ErrorObject>> {
        let (tx, rx) = oneshot::channel();
        self.pending.insert(id, Waiter::Task(tx));
        rx
    }

    /// Hands the answer to `id` to `then`, or an error `TIMEOUT` after `timeout`.
    pub fn wait_then(&self, id: u64, method: &'static str, timeout: Duration, then: Then) {
        let deadline = Instant::now() + timeout;
        let first = {
            let mut deadlines = self.lock();
            deadlines.insert((deadline, id));
            deadlines.first() == Some(&(deadline, id))
        };
        self.pending.insert(id, Waiter::Then { then, method, timeout, deadline });
        if first {
            self.earlier.notify_one();
        }
    }

    /// Resolves `id` with `outcome`; gives the outcome back when nobody waited for it
    /// (any more).
    pub fn resolve(
        &self,
        id: u64,
        outcome: Result<Value, ErrorObject>,
    ) -> Option<Result<Value, ErrorObject>> {
        match self.take(id) {
            Some(Waiter::Task(tx)) => {
                let _ = tx.send(outcome);
                None
            }
            Some(Waiter::Then { then, .. }) => {
                then(outcome);
                None
            }
            None => Some(outcome),
        }
    }

    /// Forgets `id`; a continuation is called with `err` (a task's await has its own).
    pub fn fail(&self, id: u64, err: ErrorObject) {
        if let Some(Waiter::Then { then, .. }) = self.take(id) {
            then(Err(err));
        }
    }

    /// Fails every request waiting with `err` (tasks see their sender dropped).
    pub fn fail_all(&self, err: &ErrorObject) {
        let ids: Vec<u64> = self.pending.iter().map(|entry| *entry.key()).collect();
        for id in ids {
            self.fail(id, err.clone());
        }
    }

    /// How many requests await answers.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Fails late continuations with `TIMEOUT`, at their deadlines, until `stop`.
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
                if let Some((_, Waiter::Then { then, method, timeout, .. })) =
                    self.pending.remove(&id)
                {
                    then(Err(timed_out(method, timeout)));
                }
            }
        }
    }

    /// Removes `id` from the table (and its deadline, for a continuation).
    fn take(&self, id: u64) -> Option<Waiter> {
        let (_, waiter) = self.pending.remove(&id)?;
        if let Waiter::Then { deadline, .. } = &waiter {
            self.lock().remove(&(*deadline, id));
        }
        Some(waiter)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<(Instant, u64)>> {
        // Nothing panics under this lock.
        self.deadlines.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `TIMEOUT` for a request to `method` unanswered after `timeout`.
pub fn timed_out(method: &str, timeout: Duration) -> ErrorObject {
    ErrorObject::new(
        ErrorCode::Timeout,
        format!("no answer to {method} within {} ms", timeout.as_millis()),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn counting(calls: &Arc<Mutex<Vec<Result<Value, ErrorCode>>>>) -> Then {
        let calls = calls.clone();
        Box::new(move |outcome| calls.lock().unwrap().push(outcome.map_err(|e| e.code)))
    }

    #[tokio::test(start_paused = true)]
    async fn a_continuation_gets_its_answer_or_a_timeout_exactly_once() {
        let requests = Arc::new(Requests::default());
        let stop = CancellationToken::new();
        let keeper = tokio::spawn({
            let (requests, stop) = (requests.clone(), stop.clone());
            async move { requests.keep_deadlines(stop).await }
        });
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
        keeper.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_added_later_fires_first() {
        let requests = Arc::new(Requests::default());
        let stop = CancellationToken::new();
        tokio::spawn({
            let (requests, stop) = (requests.clone(), stop.clone());
            async move { requests.keep_deadlines(stop).await }
        });
        let fired = Arc::new(AtomicUsize::new(0));
        let note = |n: usize| -> Then {
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

    #[tokio::test]
    async fn failing_all_calls_every_continuation_and_ends_every_task_wait() {
        let requests = Requests::default();
        let calls = Arc::new(Mutex::new(Vec::new()));
        requests.wait_then(requests.next_id(), "x", Duration::from_secs(60), counting(&calls));
        let task = requests.wait_task(requests.next_id());
        requests.fail_all(&ErrorObject::new(ErrorCode::ConnectionClosed, "gone"));
        assert_eq!(*calls.lock().unwrap(), vec![Err(ErrorCode::ConnectionClosed)]);
        assert!(task.await.is_err(), "the task's sender was dropped");
        assert_eq!(requests.len(), 0);
    }
}
