//! Writing: the journal thread (append, sync, acknowledge) and the applier thread (apply
//! journaled writes to SQLite in large transactions, through [`super::apply`]), and how
//! readers wake the applier.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot, watch};

use super::super::journal::{self, Journal};
use super::super::{Fence, StoreError, Write, WriteDone};
use super::apply::{apply_all, set_applied};

/// Most writes the journal thread takes in one group.
const MAX_BATCH: usize = 1024;
/// Writes waiting for the journal thread.
const QUEUE: usize = 8192;
/// Groups journaled and waiting for the applier (back-pressure beyond).
const APPLY_QUEUE: usize = 1024;
/// Bytes (as journaled) of writes waiting for the applier, at most: the journal takes no
/// more writes while the applier is this far behind (back-pressure on the callers).
pub(super) const APPLY_BACKLOG: usize = 64 << 20;
/// How long the journal thread sleeps at most between looks at a full backlog.
const BACKLOG_POLL: Duration = Duration::from_millis(100);
/// Most writes one applier transaction takes.
const MAX_APPLY: usize = 16 * 1024;
/// How often, at most, the applier commits while nobody waits to read.
const APPLY_EVERY: Duration = Duration::from_millis(400);
/// How long the applier waits before trying again writes the database refused.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// The writing side of the store: cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Job>,
    /// The last LSN acknowledged to a caller.
    acked: Arc<AtomicU64>,
    /// The last LSN applied to the database.
    applied: watch::Receiver<u64>,
    /// Wakes the applier for waiting readers.
    nudge: Arc<Nudge>,
}

/// Starts the journal and applier threads; `conn` has applied everything up to
/// `applied`, which `journal` continues after. The applier holds `lock` until it ends,
/// and falls at most `max_backlog` bytes behind the journal.
pub(super) fn start(
    conn: Connection,
    journal: Journal,
    dir: PathBuf,
    lock: File,
    applied: u64,
    max_backlog: usize,
) -> Result<Writer, StoreError> {
    let (tx, rx) = mpsc::channel::<Job>(QUEUE);
    let (apply_tx, apply_rx) = std_mpsc::sync_channel(APPLY_QUEUE);
    let (applied_tx, applied_rx) = watch::channel(applied);
    let acked = Arc::new(AtomicU64::new(applied));
    let thread_err = |name: &str, e: std::io::Error| {
        StoreError::Db(format!("cannot start the {name} thread: {e}"))
    };
    let applier = Applier { dir, applied: applied_tx, _lock: lock };
    let nudge = Arc::new(Nudge::default());
    let applier_nudge = nudge.clone();
    let handle = std::thread::Builder::new()
        .name("burrow-store".into())
        .spawn(move || {
            // However it ends, the journal thread stops waiting for it.
            let _gone = Gone(&applier_nudge);
            applier.run(conn, apply_rx, &applier_nudge)
        })
        .map_err(|e| thread_err("store", e))?;
    let _ = nudge.applier.set(handle.thread().clone());
    let (journal_acked, journal_nudge) = (acked.clone(), nudge.clone());
    let journal = std::thread::Builder::new()
        .name("burrow-journal".into())
        .spawn(move || {
            journal_loop(journal, rx, apply_tx, journal_acked, &journal_nudge, max_backlog)
        })
        .map_err(|e| thread_err("journal", e))?;
    let _ = nudge.journal.set(journal.thread().clone());
    Ok(Writer { jobs: tx, acked, applied: applied_rx, nudge })
}

impl Writer {
    /// Bytes of journaled writes the applier has not applied yet.
    #[cfg(test)]
    pub(super) fn backlog(&self) -> usize {
        self.nudge.backlog.load(Ordering::Acquire)
    }

    /// Journals `writes`; `Ok` once they are on disk.
    pub(super) async fn write(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        let done: WriteDone = Box::new(move |outcome| {
            let _ = tx.send(outcome);
        });
        self.submit(writes, None, done).await;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues `writes` for the journal thread, which runs `done` once they are on disk
    /// or refused (see [`Storage::submit`](super::super::Storage::submit)). Writes that
    /// cannot be encoded are refused in their turn, so the writes queued before them are
    /// not refused with them.
    pub(super) async fn submit(&self, writes: Vec<Write>, fence: Option<Fence>, done: WriteDone) {
        let payload = if writes.is_empty() { Ok(Vec::new()) } else { journal::payload(&writes) };
        let job = Job { writes, payload, fence, done: Some(done) };
        if let Err(mpsc::error::SendError(job)) = self.jobs.send(job).await {
            job.finish(Err(StoreError::Closed));
        }
    }

    /// Waits (up to `deadline`) until every write acknowledged so far is applied.
    pub(super) async fn caught_up(&self, deadline: Duration) -> Result<(), StoreError> {
        let target = self.acked.load(Ordering::Acquire);
        let mut applied = self.applied.clone();
        if *applied.borrow() >= target {
            return Ok(());
        }
        let _waiting = Waiting::new(&self.nudge.readers);
        self.nudge.wake();
        let until = tokio::time::Instant::now() + deadline;
        loop {
            // While the database refuses writes, say so rather than hold the reader.
            if self.nudge.failing.load(Ordering::Acquire) {
                return Err(StoreError::Db(
                    "the database cannot take the journaled writes now (see the kernel log)".into(),
                ));
            }
            let step = until.min(tokio::time::Instant::now() + Duration::from_secs(1));
            match tokio::time::timeout_at(step, applied.wait_for(|a| *a >= target)).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(_)) => return Err(StoreError::Closed),
                Err(_) if tokio::time::Instant::now() >= until => {
                    return Err(StoreError::Db(format!(
                        "the database did not catch up with the journal within {deadline:?}"
                    )));
                }
                Err(_) => {}
            }
        }
    }
}

/// One caller's submission: its writes and their encoded form for the journal (or why
/// they cannot be encoded), its fence, and what to do once they are on disk. No writes
/// make a barrier: it only keeps its place in the order. A job dropped unfinished (the
/// journal thread gone) is refused.
struct Job {
    writes: Vec<Write>,
    payload: Result<Vec<u8>, StoreError>,
    fence: Option<Fence>,
    done: Option<WriteDone>,
}

impl Job {
    /// Tells the caller; a refusal refuses the writes behind the same fence too.
    fn finish(mut self, outcome: Result<(), StoreError>) {
        self.complete(outcome);
    }

    /// The first call tells; later ones (the drop after `finish`) do nothing.
    fn complete(&mut self, outcome: Result<(), StoreError>) {
        let Some(done) = self.done.take() else { return };
        if outcome.is_err()
            && let Some(fence) = &self.fence
        {
            fence.break_now();
        }
        done_now(done, outcome);
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        self.complete(Err(StoreError::Closed));
    }
}

/// Runs a caller's `done`: one that panics (a bug) is logged, and the journal thread,
/// which everyone's writes need, goes on.
fn done_now(done: WriteDone, outcome: Result<(), StoreError>) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| done(outcome))).is_err() {
        tracing::error!("a write's completion panicked; the journal goes on");
    }
}

/// What the journal thread hands the applier.
enum ToApply {
    /// Journaled (and acknowledged) writes, one entry per caller, ending at `last_lsn`;
    /// `bytes` as journaled.
    Writes { jobs: Vec<Vec<Write>>, last_lsn: u64, bytes: usize },
    /// A sealed segment, to delete once the database durably holds its writes.
    Sealed(PathBuf),
}

/// How the applier is woken before its interval is up.
#[derive(Debug, Default)]
struct Nudge {
    /// Readers waiting for the applier.
    readers: AtomicUsize,
    /// Set with an unpark: apply what is there now.
    now: AtomicBool,
    /// The database refuses what the applier has: the journal takes no more meanwhile.
    failing: AtomicBool,
    /// The applier's thread, once started.
    applier: std::sync::OnceLock<std::thread::Thread>,
    /// Bytes of journaled writes not applied yet.
    backlog: AtomicUsize,
    /// The applier thread has ended: the backlog no longer shrinks.
    applier_gone: AtomicBool,
    /// The journal's thread, once started: woken when the backlog shrinks.
    journal: std::sync::OnceLock<std::thread::Thread>,
}

impl Nudge {
    fn wake(&self) {
        self.now.store(true, Ordering::SeqCst);
        if let Some(applier) = self.applier.get() {
            applier.unpark();
        }
    }

    /// The applier applied `bytes`: the journal thread may go on.
    fn applied(&self, bytes: usize) {
        let backlog = self.backlog.fetch_sub(bytes, Ordering::AcqRel).saturating_sub(bytes);
        metrics::gauge!("burrow_store_apply_backlog_bytes").set(backlog as f64);
        if let Some(journal) = self.journal.get() {
            journal.unpark();
        }
    }

    /// Waits (on the journal thread) while more than `max` bytes wait for the applier,
    /// waking it; returns at once while the database refuses writes or once the applier
    /// is gone, since the backlog would then never shrink.
    fn wait_for_room(&self, max: usize) {
        while self.backlog.load(Ordering::Acquire) > max
            && !self.failing.load(Ordering::Acquire)
            && !self.applier_gone.load(Ordering::Acquire)
        {
            self.wake();
            std::thread::park_timeout(BACKLOG_POLL);
        }
    }
}

/// Marks the applier gone when dropped.
struct Gone<'a>(&'a Nudge);

impl Drop for Gone<'_> {
    fn drop(&mut self) {
        self.0.applier_gone.store(true, Ordering::Release);
        if let Some(journal) = self.0.journal.get() {
            journal.unpark();
        }
    }
}

/// Counts a waiting reader for as long as it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The journal thread: take what waits, append it, sync once, acknowledge everyone, hand
/// it to the applier.
fn journal_loop(
    mut journal: Journal,
    mut rx: mpsc::Receiver<Job>,
    apply: std_mpsc::SyncSender<ToApply>,
    acked: Arc<AtomicU64>,
    nudge: &Nudge,
    max_backlog: usize,
) {
    // The applier sleeps between transactions: wake it when it must make room, when
    // readers wait, and when the journal closes.
    let send = |msg: ToApply| match apply.try_send(msg) {
        Ok(()) => true,
        Err(std_mpsc::TrySendError::Full(msg)) => {
            nudge.wake();
            apply.send(msg).is_ok()
        }
        Err(std_mpsc::TrySendError::Disconnected(_)) => false,
    };
    let mut frames = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        nudge.wait_for_room(max_backlog);
        if nudge.failing.load(Ordering::Acquire) {
            // What is journaled must reach the database before more is taken: callers
            // hear so now instead of waiting behind it.
            let e = StoreError::Db(
                "the database cannot take writes now (see the kernel log); refused".into(),
            );
            for job in batch {
                job.finish(Err(e.clone()));
            }
            continue;
        }
        let Framed { order, jobs, bytes, lsn } = frame_batch(&journal, &mut frames, batch);
        if !jobs.is_empty()
            && let Err(e) = journal.append(&frames, jobs.len() as u64)
        {
            tracing::error!(error = %e, "journal append failed; the writes are refused");
            for (job, refused) in order {
                job.finish(Err(refused.unwrap_or_else(|| e.clone())));
            }
            continue;
        }
        if !jobs.is_empty() {
            acked.store(lsn - 1, Ordering::Release);
            metrics::counter!("burrow_store_journal_flushes_total").increment(1);
            metrics::counter!("burrow_store_journal_writes_total").increment(jobs.len() as u64);
        }
        for (job, refused) in order {
            job.finish(refused.map_or(Ok(()), Err));
        }
        if jobs.is_empty() {
            continue;
        }
        let last_lsn = lsn - 1;
        let backlog = nudge.backlog.fetch_add(bytes, Ordering::AcqRel) + bytes;
        metrics::gauge!("burrow_store_apply_backlog_bytes").set(backlog as f64);
        if !send(ToApply::Writes { jobs, last_lsn, bytes }) {
            tracing::error!("the store's applier stopped; journaled writes wait for a restart");
            // Whoever waits hears so; later submissions find the queue closed.
            rx.close();
            while let Ok(job) = rx.try_recv() {
                job.finish(Err(StoreError::Closed));
            }
            return;
        }
        if nudge.readers.load(Ordering::SeqCst) > 0 {
            nudge.wake();
        }
        match journal.rotate_if_full() {
            Ok(Some(sealed)) => {
                send(ToApply::Sealed(sealed));
            }
            Ok(None) => {}
            // The segment just grows on; rotation is tried again after the next append.
            Err(e) => tracing::warn!(error = %e, "cannot start a new journal segment"),
        }
    }
    drop(apply);
    nudge.wake();
}

/// A batch framed for the journal.
struct Framed {
    /// Every job in its order, with why it is refused when it is refused now; the others
    /// wait for the append.
    order: Vec<(Job, Option<StoreError>)>,
    /// The writes framed, for the applier, and their size as journaled.
    jobs: Vec<Vec<Write>>,
    bytes: usize,
    /// The LSN after the last frame.
    lsn: u64,
}

/// Frames a batch's jobs into `frames` (cleared first), refusing those behind a broken
/// fence and those that could not be encoded. A refusal breaks its fence only when it is
/// answered, after the jobs before it, so a writer that sees its fence broken finds those
/// written; its writer's later jobs in this batch are refused meanwhile.
fn frame_batch(journal: &Journal, frames: &mut Vec<u8>, batch: Vec<Job>) -> Framed {
    frames.clear();
    let mut framed = Framed {
        order: Vec::with_capacity(batch.len()),
        jobs: Vec::with_capacity(batch.len()),
        bytes: 0,
        lsn: journal.next_lsn(),
    };
    let mut refusing: Vec<Fence> = Vec::new();
    for mut job in batch {
        let broken = |f: &Fence| f.is_broken() || refusing.iter().any(|r| r.is(f));
        let refused = if job.fence.as_ref().is_some_and(broken) {
            // Written on the assumption that a refused write took effect.
            Some(StoreError::Db("an earlier write of the same writer was refused".into()))
        } else {
            match &job.payload {
                Err(e) => Some(e.clone()),
                Ok(_) if job.writes.is_empty() => None,
                Ok(payload) => {
                    journal.frame(frames, framed.lsn, payload);
                    framed.lsn += 1;
                    framed.bytes += payload.len();
                    framed.jobs.push(std::mem::take(&mut job.writes));
                    None
                }
            }
        };
        if refused.is_some()
            && let Some(fence) = &job.fence
        {
            refusing.push(fence.clone());
        }
        framed.order.push((job, refused));
    }
    framed
}

/// The applier thread's state.
struct Applier {
    dir: PathBuf,
    applied: watch::Sender<u64>,
    /// Held until the thread ends.
    _lock: File,
}

impl Applier {
    /// Applies journaled writes in large transactions, publishes the LSN reached, and
    /// deletes sealed segments once durably applied.
    fn run(self, mut conn: Connection, rx: std_mpsc::Receiver<ToApply>, nudge: &Nudge) {
        let mut sealed = Vec::new();
        // Journaled writes not applied yet, and the LSN they end at.
        let mut jobs = Vec::new();
        // Their size as journaled, and the LSN they end at.
        let mut bytes = 0;
        let mut last = None;
        let mut since = Instant::now();
        let mut failing = false;
        // The last drain stopped at MAX_APPLY: more may be waiting.
        let mut backlog = false;
        // Sealed segments could not be made durable: try again after RETRY_EVERY.
        let mut retiring_failed = false;
        let mut open = true;
        while open {
            // Sleep until APPLY_EVERY has passed since the last transaction began, unless
            // nudged (a reader waits, the queue is full, the journal closed) or a backlog
            // is left: the larger the transaction, the fewer B-tree pages each write
            // dirties. While the database refuses writes, try again every RETRY_EVERY
            // whatever the nudges.
            let until = since + if failing || retiring_failed { RETRY_EVERY } else { APPLY_EVERY };
            if failing || !backlog {
                loop {
                    if nudge.now.swap(false, Ordering::SeqCst) && !failing {
                        break;
                    }
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    std::thread::park_timeout(left);
                }
            }
            // While failing, take everything so the journal thread never blocks on a
            // full queue (it takes no new writes meanwhile, so this is bounded).
            while jobs.len() < MAX_APPLY || failing {
                match rx.try_recv() {
                    Ok(ToApply::Writes { jobs: more, last_lsn, bytes: size }) => {
                        jobs.extend(more);
                        bytes += size;
                        last = Some(last_lsn);
                    }
                    Ok(ToApply::Sealed(path)) => sealed.push(path),
                    Err(std_mpsc::TryRecvError::Empty) => break,
                    Err(std_mpsc::TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            backlog = jobs.len() >= MAX_APPLY;
            since = Instant::now();
            if let Some(lsn) = last {
                match apply_all(&mut conn, &jobs, lsn) {
                    Ok(()) => {
                        jobs.clear();
                        nudge.applied(std::mem::take(&mut bytes));
                        last = None;
                        failing = false;
                        nudge.failing.store(false, Ordering::Release);
                        self.applied.send_replace(lsn);
                    }
                    // Kept, and tried again: they stay journaled meanwhile, and readers
                    // wait (up to their deadline) rather than miss them.
                    Err(e) => {
                        if !failing {
                            tracing::error!(error = %e, writes = jobs.len(), "cannot apply journaled writes to the database; retrying");
                        }
                        failing = true;
                        nudge.failing.store(true, Ordering::Release);
                        continue;
                    }
                }
            }
            if !sealed.is_empty() {
                if let Err(e) = set_applied(&mut conn, *self.applied.borrow()) {
                    if !retiring_failed {
                        tracing::error!(error = %e, "cannot make applied writes durable; keeping journal segments");
                    }
                    retiring_failed = true;
                    continue;
                }
                retiring_failed = false;
                journal::retire(&self.dir, sealed.drain(..));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_job_refuses_its_writers_later_ones_and_breaks_its_fence_only_when_answered() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::create(dir.path(), 1).unwrap();
        let answers = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (f, g) = (Fence::default(), Fence::default());
        let job = |name: &'static str, writes: Vec<Write>, payload, fence: &Fence| {
            let (answers, seen) = (answers.clone(), fence.clone());
            let done: WriteDone = Box::new(move |outcome: Result<(), StoreError>| {
                answers.lock().unwrap().push((name, outcome.is_ok(), seen.is_broken()));
            });
            Job { writes, payload, fence: Some(fence.clone()), done: Some(done) }
        };
        let run = Write::AssignRun { message_id: "m".into(), run_id: "r".into() };
        let payload = journal::payload(std::slice::from_ref(&run));
        let too_big = Err(StoreError::Db("too big".into()));
        let batch = vec![
            job("a", vec![run.clone()], payload.clone(), &f),
            job("b", vec![run.clone()], too_big, &f),
            job("c", vec![run.clone()], payload.clone(), &f),
            job("d", vec![run.clone()], payload, &g),
            job("barrier", Vec::new(), Ok(Vec::new()), &g),
        ];
        let mut frames = Vec::new();
        let framed = frame_batch(&journal, &mut frames, batch);
        // a and d are framed; b cannot be encoded, and c is its writer's after it.
        assert_eq!(framed.jobs.len(), 2);
        assert_eq!(framed.lsn, 3);
        let refused: Vec<bool> = framed.order.iter().map(|(_, r)| r.is_some()).collect();
        assert_eq!(refused, [false, true, true, false, false]);
        assert!(!f.is_broken(), "not before the jobs before the refusal are answered");
        for (job, refused) in framed.order {
            job.finish(refused.map_or(Ok(()), Err));
        }
        let answers = answers.lock().unwrap().clone();
        assert_eq!(
            answers,
            [
                ("a", true, false),
                ("b", false, true),
                ("c", false, true),
                ("d", true, false),
                ("barrier", true, false)
            ]
        );
    }

    #[test]
    fn the_journal_waits_while_the_backlog_is_full_and_goes_on_once_applied() {
        let nudge = Arc::new(Nudge::default());
        let _ = nudge.journal.set(std::thread::current());
        nudge.backlog.store(100, Ordering::SeqCst);
        // Stands in for the applier: applies once woken.
        let fake = nudge.clone();
        let applier = std::thread::spawn(move || {
            for _ in 0..1000 {
                if fake.now.swap(false, Ordering::SeqCst) {
                    fake.applied(60);
                    return true;
                }
                std::thread::park_timeout(Duration::from_millis(10));
            }
            false
        });
        let _ = nudge.applier.set(applier.thread().clone());
        nudge.wait_for_room(50);
        assert_eq!(nudge.backlog.load(Ordering::SeqCst), 40, "returned once applied");
        assert!(applier.join().unwrap(), "the applier was woken");
    }

    #[test]
    fn the_journal_does_not_wait_for_an_applier_that_cannot_apply() {
        let nudge = Nudge::default();
        nudge.backlog.store(100, Ordering::SeqCst);
        nudge.failing.store(true, Ordering::SeqCst);
        nudge.wait_for_room(50); // the database refuses: callers hear so instead
        nudge.failing.store(false, Ordering::SeqCst);
        drop(Gone(&nudge));
        nudge.wait_for_room(50); // the applier ended
        assert_eq!(nudge.backlog.load(Ordering::SeqCst), 100);
    }
}
