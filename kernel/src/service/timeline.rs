//! Recent runs' timelines, kept in memory for the dashboard (`run/timeline`): each
//! provider call, tool call and interceptor decision of a run, with when it began, how
//! long it took and how it ended. Recorded where the metrics and spans are; bounded: the
//! last [`MAX_RUNS`] runs, [`MAX_STEPS`] steps each (a run's later steps are counted, not
//! kept). Nothing here is durable: the transcript is the record; this is what happened.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burrow_protocol::methods::host::{RunStep, RunSteps, RunTimelineParams, RunTimelineResult};

use super::ServiceError;

/// Runs whose timelines are kept.
pub const MAX_RUNS: usize = 1000;
/// Steps kept per run.
pub const MAX_STEPS: usize = 256;
/// The status of a step its run did not wait for (cancelled or stopped while it went on).
pub const CUT_OFF: &str = "cancelled";

/// The recent runs' steps.
#[derive(Debug, Default)]
pub struct Timelines {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    runs: HashMap<String, RunSteps>,
    /// Oldest first, for eviction.
    order: VecDeque<String>,
}

/// A step on its way: [`Step::done`] records it. One dropped before it is done (its run
/// was cancelled, or stopped, while the step went on) is recorded as `cancelled`.
#[derive(Debug)]
pub struct Step {
    timelines: Arc<Timelines>,
    run_id: String,
    session: Option<String>,
    kind: &'static str,
    name: String,
    started_ms: u64,
    began: Instant,
    recorded: bool,
}

impl Step {
    /// A step of `kind` (`provider`, `tool`, `intercept`) named `name` of run `run_id`
    /// (of `session`) begins, to be recorded in `timelines`.
    pub fn begin(
        timelines: &Arc<Timelines>,
        run_id: &str,
        session: Option<&str>,
        kind: &'static str,
        name: impl Into<String>,
    ) -> Step {
        Step {
            timelines: timelines.clone(),
            run_id: run_id.to_owned(),
            session: session.map(str::to_owned),
            kind,
            name: name.into(),
            started_ms: burrow_protocol::now_ms(),
            began: Instant::now(),
            recorded: false,
        }
    }

    /// It ended with `status` (`ok`, an error's code, an interceptor's decision) and an
    /// optional `detail` (a reason); how long it took.
    pub fn done(mut self, status: &str, detail: Option<String>) -> std::time::Duration {
        self.record(status, detail)
    }

    /// Records nothing: the step belonged to a run that never was (its input was not
    /// stored).
    pub fn forget(mut self) {
        self.recorded = true;
    }

    fn record(&mut self, status: &str, detail: Option<String>) -> std::time::Duration {
        self.recorded = true;
        let took = self.began.elapsed();
        let step = RunStep {
            kind: self.kind.to_owned(),
            name: std::mem::take(&mut self.name),
            started_ms: self.started_ms,
            duration_us: took.as_micros() as u64,
            status: status.to_owned(),
            detail,
        };
        let (run_id, session) = (std::mem::take(&mut self.run_id), self.session.take());
        self.timelines.record(run_id, session, step);
        took
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if !self.recorded {
            self.record(CUT_OFF, Some("cut off: the run ended before this step did".into()));
        }
    }
}

impl Timelines {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, run_id: String, session: Option<String>, step: RunStep) {
        let mut inner = self.lock();
        if !inner.runs.contains_key(&run_id) {
            if inner.order.len() >= MAX_RUNS
                && let Some(oldest) = inner.order.pop_front()
            {
                inner.runs.remove(&oldest);
            }
            inner.order.push_back(run_id.clone());
        }
        let kept = inner.runs.entry(run_id.clone()).or_insert_with(|| RunSteps {
            run_id,
            session_id: None,
            steps: Vec::new(),
            dropped: 0,
        });
        if kept.session_id.is_none() {
            kept.session_id = session;
        }
        match kept.steps.len() < MAX_STEPS {
            true => kept.steps.push(step),
            false => kept.dropped += 1,
        }
    }

    /// `run/timeline`: one run's steps, or a session's runs' (newest first); none kept
    /// is an empty list. `INVALID_PARAMS` without `run_id` or `session_id`.
    pub fn get(&self, p: RunTimelineParams) -> Result<RunTimelineResult, ServiceError> {
        let inner = self.lock();
        let runs = match (p.run_id, p.session_id) {
            (Some(run), _) => inner.runs.get(&run).cloned().into_iter().collect(),
            (None, Some(session)) => inner
                .order
                .iter()
                .rev()
                .filter_map(|id| inner.runs.get(id))
                .filter(|r| r.session_id.as_deref() == Some(session.as_str()))
                .cloned()
                .collect(),
            (None, None) => {
                return Err(ServiceError::InvalidParams {
                    field: "run_id".into(),
                    message: "run/timeline needs run_id or session_id".into(),
                });
            }
        };
        Ok(RunTimelineResult { runs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(timelines: &Timelines, run: Option<&str>, session: Option<&str>) -> Vec<RunSteps> {
        let p = RunTimelineParams {
            run_id: run.map(str::to_owned),
            session_id: session.map(str::to_owned),
        };
        timelines.get(p).unwrap().runs
    }

    #[test]
    fn steps_are_kept_per_run_within_bounds() {
        let timelines = Arc::new(Timelines::default());
        Step::begin(&timelines, "r1", Some("s"), "provider", "echo").done("ok", None);
        Step::begin(&timelines, "r1", Some("s"), "tool", "clock_now").done("NOT_FOUND", None);
        Step::begin(&timelines, "r2", Some("s"), "provider", "echo").done("ok", None);
        let one = get(&timelines, Some("r1"), None);
        let kinds: Vec<(&str, &str)> =
            one[0].steps.iter().map(|s| (s.kind.as_str(), s.status.as_str())).collect();
        assert_eq!(kinds, [("provider", "ok"), ("tool", "NOT_FOUND")]);
        let newest_first: Vec<String> =
            get(&timelines, None, Some("s")).into_iter().map(|r| r.run_id).collect();
        assert_eq!(newest_first, ["r2", "r1"]);
        assert!(get(&timelines, Some("nope"), None).is_empty());
        assert!(timelines.get(RunTimelineParams { run_id: None, session_id: None }).is_err());
        for _ in 0..MAX_STEPS + 3 {
            Step::begin(&timelines, "r3", None, "tool", "t").done("ok", None);
        }
        let full = &get(&timelines, Some("r3"), None)[0];
        assert_eq!((full.steps.len(), full.dropped), (MAX_STEPS, 3));
        for n in 0..MAX_RUNS {
            Step::begin(&timelines, &format!("x{n}"), None, "tool", "t").done("ok", None);
        }
        assert!(get(&timelines, Some("r1"), None).is_empty(), "evicted");
    }

    #[test]
    fn a_step_dropped_before_it_is_done_is_recorded_cut_off() {
        let timelines = Arc::new(Timelines::default());
        let step = Step::begin(&timelines, "r", Some("s"), "provider", "echo");
        assert!(get(&timelines, Some("r"), None).is_empty(), "nothing until it ends");
        drop(step);
        let steps = &get(&timelines, Some("r"), None)[0].steps;
        assert_eq!((steps.len(), steps[0].status.as_str()), (1, CUT_OFF));
        assert!(steps[0].detail.as_deref().is_some_and(|d| d.starts_with("cut off")));
    }
}
