//! What the streaming benchmark measures with: one clock for every sender and receiver
//! ([`now_ns`]), sends paced without bursts ([`Pace`]), what reached a receiver
//! ([`Tally`], by session in [`Tallies`]), a path's rounds ([`Path`]), and CPU time as
//! the scheduler counts it ([`cpu`], [`metered`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use burrow_tests::{DEADLINE, poll_until};

/// The one clock of every sender and receiver.
static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since [`EPOCH`]: a delta's text is the time it was sent.
pub(crate) fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Paces a sender at one send every `every` on average, never two closer than half of
/// that. `tokio::time::interval` catches up after late ticks (its timer has a
/// millisecond's grain, and about one tick in eight of a 1 ms interval came within
/// 100 µs of the one before), and a delta sent right behind another measures the queue
/// it waits in, not the path.
pub(crate) struct Pace {
    every: Duration,
    next: tokio::time::Instant,
    last: Option<tokio::time::Instant>,
}

impl Pace {
    pub(crate) fn new(every: Duration) -> Pace {
        Pace { every, next: tokio::time::Instant::now(), last: None }
    }

    /// Waits for the next send's moment.
    pub(crate) async fn wait(&mut self) {
        let at = match self.last {
            Some(last) => self.next.max(last + self.every / 2),
            None => self.next,
        };
        tokio::time::sleep_until(at).await;
        self.last = Some(tokio::time::Instant::now());
        self.next = at + self.every;
    }
}

/// What reached one receiver for one session.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) received: u64,
    /// Deltas `seq` skipped (dropped on the way).
    pub(crate) gaps: u64,
    pub(crate) lagged: u64,
    latencies: Vec<Duration>,
    run: String,
    next_seq: u64,
    first_sent: Option<u64>,
    last_arrival: u64,
}

impl Tally {
    /// Counts delta `seq` of run `run`, its text the time it was sent.
    pub(crate) fn record(&mut self, run: &str, seq: u64, text: &str) {
        let arrival = now_ns();
        let sent: u64 = text.parse().unwrap_or_else(|_| panic!("a delta not a time: {text:?}"));
        if self.run != run {
            (self.run, self.next_seq) = (run.to_owned(), 0);
        }
        self.gaps += seq.saturating_sub(self.next_seq);
        self.next_seq = seq + 1;
        self.received += 1;
        self.latencies.push(Duration::from_nanos(arrival.saturating_sub(sent)));
        self.first_sent = Some(self.first_sent.map_or(sent, |f| f.min(sent)));
        self.last_arrival = self.last_arrival.max(arrival);
    }

    /// An event that is not a delta, numbered `seq` in a stream that numbers every event
    /// (SSE's envelopes); for run `run`, which it may start.
    pub(crate) fn mark(&mut self, run: &str, seq: u64) {
        if self.run == run {
            self.gaps += seq.saturating_sub(self.next_seq);
        } else {
            self.run = run.to_owned();
        }
        self.next_seq = seq + 1;
    }

    pub(crate) fn add(&mut self, other: Tally) {
        self.received += other.received;
        self.gaps += other.gaps;
        self.lagged += other.lagged;
        self.latencies.extend(other.latencies);
        self.first_sent = match (self.first_sent, other.first_sent) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_arrival = self.last_arrival.max(other.last_arrival);
    }

    /// Deltas per second from the first sent to the last arrived.
    pub(crate) fn rate(&self) -> f64 {
        let span = self.last_arrival.saturating_sub(self.first_sent.unwrap_or_default());
        self.received as f64 / (span as f64 / 1e9).max(1e-9)
    }

    /// `p50 …, p99 …` of the latencies.
    pub(crate) fn percentiles(&mut self) -> String {
        self.latencies.sort();
        format!("p50 {:?}, p99 {:?}", self.percentile(0.5), self.percentile(0.99))
    }

    pub(crate) fn percentile(&self, p: f64) -> Duration {
        let all = &self.latencies;
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    }
}

/// One path of the latency part: every round's deltas, and each round's p50.
#[derive(Debug, Default)]
pub(crate) struct Path {
    pub(crate) all: Tally,
    p50s: Vec<Duration>,
}

impl Path {
    pub(crate) fn push(&mut self, mut round: Tally) {
        round.latencies.sort();
        self.p50s.push(round.percentile(0.5));
        self.all.add(round);
    }

    /// `self` against `floor`: the median of the rounds' p50 ratios (each round beside the
    /// floor's round next to it), their range, and the ratio of the p99s over all rounds.
    pub(crate) fn against(&self, floor: &Path) -> String {
        let mut ratios: Vec<f64> = (self.p50s.iter().zip(&floor.p50s))
            .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
            .collect();
        ratios.sort_by(f64::total_cmp);
        let p99 =
            self.all.percentile(0.99).as_secs_f64() / floor.all.percentile(0.99).as_secs_f64();
        format!(
            "p50 {:.2} (rounds {:.2}-{:.2}), p99 {p99:.2}",
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1]
        )
    }
}

/// One receiver's tallies, by session key.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tallies(Arc<Mutex<HashMap<String, Tally>>>);

impl Tallies {
    pub(crate) fn with<T>(&self, key: &str, f: impl FnOnce(&mut Tally) -> T) -> T {
        f(self.0.lock().unwrap().entry(key.to_owned()).or_default())
    }

    pub(crate) fn received(&self, key: &str) -> u64 {
        self.with(key, |t| t.received)
    }

    /// Session `key`'s tally, leaving it empty.
    pub(crate) fn take(&self, key: &str) -> Tally {
        self.0.lock().unwrap().remove(key).unwrap_or_default()
    }

    /// Waits (at most [`DEADLINE`]) until `n` deltas of `key` have arrived, then takes
    /// its tally: a run's reply may overtake its last deltas.
    pub(crate) async fn take_once(&self, key: &str, n: u64) -> Tally {
        poll_until(DEADLINE, || async { self.received(key) >= n }).await;
        self.take(key)
    }
}

/// Runs `round`, adding to `spent` the CPU time `cpu` counts meanwhile.
pub(crate) async fn metered<T>(
    spent: &mut Duration,
    cpu: impl Fn() -> Duration,
    round: impl Future<Output = T>,
) -> T {
    let before = cpu();
    let done = round.await;
    *spent += cpu().saturating_sub(before);
    done
}

/// The kernel's CPU per delta of `rounds` rounds that took `total` and streamed `deltas`,
/// each round's turn (`turn`) taken off.
pub(crate) fn per_delta(total: Duration, rounds: u64, turn: Duration, deltas: u64) -> String {
    per(total.saturating_sub(turn * rounds as u32), deltas)
}

/// The CPU time process `pid` has had so far: its threads' time on the CPU as the
/// scheduler counts it, exactly (`/proc/<pid>/task/*/schedstat`).
pub(crate) fn cpu(pid: i32) -> Duration {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the kernel's threads");
    threads_cpu(tasks.flatten().map(|task| task.path()))
}

/// The CPU time the threads at `tasks` (`/proc/<pid>/task/<tid>`) have had so far.
pub(crate) fn threads_cpu(tasks: impl IntoIterator<Item = std::path::PathBuf>) -> Duration {
    tasks
        .into_iter()
        .map(|task| {
            let line = std::fs::read_to_string(task.join("schedstat")).unwrap_or_default();
            Duration::from_nanos(line.split(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0))
        })
        .sum()
}

/// `cpu` per item, in µs.
pub(crate) fn per(cpu: Duration, items: u64) -> String {
    format!("{:.1} µs", cpu.as_secs_f64() * 1e6 / items.max(1) as f64)
}
