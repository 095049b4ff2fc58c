//! Metrics in Prometheus's text format (`GET /metrics` on the HTTP surface): recorded
//! with the `metrics` crate's macros where things happen, kept and rendered by
//! `metrics-exporter-prometheus`. Latencies are histograms (`_bucket`, `_sum`, `_count`;
//! [`BUCKETS`], 10 µs to 10 minutes), not summaries.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `burrow_host_requests_total` | `method`, `outcome` | host calls (JSON-RPC, REST, IPC's `host.call`, `/mcp`'s session tools): `ok` or the error's code |
//! | `burrow_host_request_duration_seconds` | `method` | their latency |
//! | `burrow_tool_calls_total` | `tool`, `outcome` | tool calls routed to an app or a host: `ok`, `is_error` or the error's code |
//! | `burrow_tool_call_duration_seconds` | `tool` | their latency |
//! | `burrow_ipc_requests_total` | `method`, `outcome` | apps' requests on the socket (an app's gateway method counts as `gateway`) |
//! | `burrow_ipc_request_duration_seconds` | `method` | their latency, arrival to answer (not for streams, nor `app.heartbeat`) |
//! | `burrow_runs_total` | `status` | agent runs ended: `completed`, `failed`, `cancelled` |
//! | `burrow_run_duration_seconds` | | their latency |
//! | `burrow_turn_duration_seconds` | | a run's turns: a provider call and the tool calls it asks for |
//! | `burrow_provider_call_duration_seconds` | `provider`, `outcome` | provider calls (`ok`, `failed`) |
//! | `burrow_interceptions_total` | `event`, `app`, `decision` | interceptors' decisions: `continue`, `modify`, `block`, `fail_open`, `fail_closed` (no answer in time) |
//! | `burrow_interception_duration_seconds` | `event`, `app` | how long each took |
//! | `burrow_app_restarts_total` | `app` | managed apps restarted after exiting |
//! | `burrow_store_journal_flushes_total` | | journal appends (each one `fdatasync`) |
//! | `burrow_store_journal_writes_total` | | writes they carried |
//! | `burrow_store_apply_backlog_bytes` | | journaled bytes not yet applied to SQLite |
//! | `burrow_session_followers_lagged_total` | | session event followers (SSE, `session.events`, JSON-RPC streams) let go for falling behind |
//! | `burrow_apps` | `state` | registered apps by state, at the scrape |
//! | `burrow_requests_in_flight` | `surface` | requests being answered: `ipc` (apps'), `host` (host calls), at the scrape |
//! | `burrow_hook_dropped_notifications` | | observer notifications dropped on full queues, at the scrape |
//! | `burrow_connections` | `class` | connections by class (`ipc`, `jsonrpc`, `session_followers`), at the scrape ([`queues`]) |
//! | `burrow_queue_bytes` | `class`, `side` | bytes queued on them: `in` read and not yet handled, `out` waiting to be written |
//! | `burrow_queue_frames` | `class`, `side` | frames (events, for followers) waiting to be written (`side="out"`) |
//!
//! One recorder serves the process ([`install`], by the first kernel to start); method
//! and tool labels are bounded by what is registered (an unknown method counts as
//! `unknown`).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{LazyLock, OnceLock};
use std::time::{Duration, Instant};

use burrow_protocol::methods::app::AppHeartbeat;
use burrow_protocol::methods::table;
use burrow_protocol::{ErrorCode, ErrorObject};
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use rustc_hash::{FxBuildHasher, FxHashMap};

pub mod queues;

/// Histogram buckets, in seconds: 10 µs to 10 minutes.
pub const BUCKETS: [f64; 24] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// How often histograms' samples are folded into their buckets between scrapes, which
/// bounds the samples held.
const UPKEEP: Duration = Duration::from_secs(1);

/// Installs the process's recorder, once; `false` when another recorder was installed
/// first (then nothing is rendered).
pub fn install() -> bool {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().set_buckets(&BUCKETS).ok()?.build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new().name("burrow-metrics".into()).spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP);
                    upkeep.run_upkeep();
                }
            });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "metrics: no upkeep thread; histograms fold at scrapes only");
            }
            Some(handle)
        })
        .is_some()
}

/// Everything recorded, in Prometheus's text format.
pub fn render() -> String {
    queues::sample();
    for (surface, count) in [("ipc", &IPC_IN_FLIGHT), ("host", &HOST_IN_FLIGHT)] {
        let now = count.load(Ordering::Relaxed) as f64;
        metrics::gauge!("burrow_requests_in_flight", "surface" => surface).set(now);
    }
    HANDLE.get().and_then(Option::as_ref).map(PrometheusHandle::render).unwrap_or_default()
}

/// IPC requests arrived and not answered yet (read at the scrape: no per-request
/// registry lookup).
static IPC_IN_FLIGHT: AtomicI64 = AtomicI64::new(0);
/// Host calls begun and not ended yet.
static HOST_IN_FLIGHT: AtomicI64 = AtomicI64::new(0);

/// A host call in progress, counted in `burrow_requests_in_flight{surface="host"}` until
/// dropped.
#[derive(Debug)]
pub struct HostCall(());

impl HostCall {
    /// A host call began.
    pub fn begin() -> HostCall {
        HOST_IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
        HostCall(())
    }
}

impl Drop for HostCall {
    fn drop(&mut self) {
        HOST_IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A request's outcome as a label: `ok`, or its error's code.
pub fn outcome<T>(result: &Result<T, ErrorObject>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => e.code.as_str(),
    }
}

/// One IPC method's handles, registered once.
#[derive(Debug)]
struct MethodMetrics {
    name: &'static str,
    ok: Counter,
    /// `None` for streams (their life is not a latency) and `app.heartbeat` (counted
    /// only: it is the hottest path there is).
    duration: Option<Histogram>,
}

/// The kernel's IPC methods' handles, by name (Fx-hashed; the reader found the method's
/// table row once, and this is the only lookup the metrics add); an app's gateway
/// method counts as [`GATEWAY`].
static METHODS: LazyLock<FxHashMap<&'static str, MethodMetrics>> = LazyLock::new(|| {
    let timed = |m: &table::MethodInfo| {
        m.shape != table::Shape::Stream
            && m.ipc != Some(<AppHeartbeat as burrow_protocol::methods::Method>::NAME)
    };
    table::METHODS
        .iter()
        .filter(|m| m.to_kernel() && m.shape != table::Shape::Notification)
        .filter_map(|m| Some((m.ipc?, timed(m))))
        .map(|(name, timed)| (name, MethodMetrics::new(name, timed)))
        .collect()
});

/// The handles of requests for methods the kernel does not have (apps' gateway methods).
static GATEWAY: LazyLock<MethodMetrics> = LazyLock::new(|| MethodMetrics::new("gateway", true));

impl MethodMetrics {
    fn new(name: &'static str, timed: bool) -> Self {
        let ok =
            metrics::counter!("burrow_ipc_requests_total", "method" => name, "outcome" => "ok");
        let duration = timed
            .then(|| metrics::histogram!("burrow_ipc_request_duration_seconds", "method" => name));
        MethodMetrics { name, ok, duration }
    }
}

/// An IPC request from its arrival to its answer ([`RequestTimer::done`]).
#[derive(Debug)]
pub struct RequestTimer {
    metrics: Option<&'static MethodMetrics>,
    began: Option<Instant>,
}

impl RequestTimer {
    /// A request for the method of table row `method` arrived (`None`: a name the table
    /// does not have, an app's gateway method).
    pub fn start(method: Option<&'static table::MethodInfo>) -> RequestTimer {
        let metrics = method.and_then(|m| METHODS.get(m.ipc?)).or(Some(&*GATEWAY));
        let began = metrics.and_then(|m| m.duration.as_ref()).map(|_| Instant::now());
        IPC_IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
        RequestTimer { metrics, began }
    }

    /// It was answered with `outcome` (`Ok`, or the error's code).
    pub fn done(&self, outcome: Result<(), ErrorCode>) {
        IPC_IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
        let Some(m) = self.metrics else { return };
        match outcome {
            Ok(()) => m.ok.increment(1),
            Err(code) => {
                metrics::counter!("burrow_ipc_requests_total", "method" => m.name, "outcome" => code.as_str())
                    .increment(1);
            }
        }
        if let (Some(duration), Some(began)) = (&m.duration, self.began) {
            duration.record(began.elapsed().as_secs_f64());
        }
    }
}

/// One tool's handles: its calls that answered (`ok`, `is_error`) and its latency.
#[derive(Debug)]
pub struct ToolMetrics {
    name: String,
    ok: Counter,
    is_error: Counter,
    duration: Histogram,
}

impl ToolMetrics {
    /// A call ended with `outcome` (`ok`, `is_error` or an error's code) after `took`.
    pub fn record(&self, outcome: &'static str, took: Duration) {
        match outcome {
            "ok" => self.ok.increment(1),
            "is_error" => self.is_error.increment(1),
            code => {
                metrics::counter!("burrow_tool_calls_total", "tool" => self.name.clone(), "outcome" => code)
                    .increment(1);
            }
        }
        self.duration.record(took.as_secs_f64());
    }
}

/// Tools' handles by name, each registered once: a routed call looks its tool up here
/// instead of building its labels (as many as tools were ever called).
static TOOLS: LazyLock<dashmap::DashMap<String, std::sync::Arc<ToolMetrics>, FxBuildHasher>> =
    LazyLock::new(Default::default);

/// Tool `name`'s handles.
pub fn tool(name: &str) -> std::sync::Arc<ToolMetrics> {
    if let Some(found) = TOOLS.get(name) {
        return found.clone();
    }
    let counter = |outcome: &'static str| metrics::counter!("burrow_tool_calls_total", "tool" => name.to_owned(), "outcome" => outcome);
    let made = ToolMetrics {
        name: name.to_owned(),
        ok: counter("ok"),
        is_error: counter("is_error"),
        duration: metrics::histogram!("burrow_tool_call_duration_seconds", "tool" => name.to_owned()),
    };
    TOOLS.entry(name.to_owned()).or_insert_with(|| std::sync::Arc::new(made)).clone()
}

/// Records the time from its making to its drop in the histogram `name`.
#[derive(Debug)]
pub struct Timed {
    name: &'static str,
    began: Instant,
}

impl Timed {
    /// Starts timing.
    pub fn new(name: &'static str) -> Timed {
        Timed { name, began: Instant::now() }
    }

    /// Records nothing: what was timed did not happen (a run whose input was refused).
    pub fn discard(self) {
        // Nothing to free: only the drop's sample is skipped.
        std::mem::forget(self);
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        metrics::histogram!(self.name).record(self.began.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_render_as_buckets() {
        assert!(install());
        metrics::histogram!("burrow_test_seconds", "kind" => "unit").record(0.003);
        let text = render();
        assert!(text.contains(r#"burrow_test_seconds_bucket{kind="unit",le="0.005"} 1"#), "{text}");
        assert!(text.contains(r#"burrow_test_seconds_count{kind="unit"} 1"#), "{text}");
        assert!(!text.contains("quantile"), "{text}");
    }

    #[test]
    fn a_timed_span_records_one_sample_when_dropped_and_none_when_discarded() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            drop(Timed::new("burrow_test_timed_seconds"));
            Timed::new("burrow_test_timed_seconds").discard();
        });
        let samples: Vec<usize> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, ..)| key.key().name() == "burrow_test_timed_seconds")
            .map(|(.., value)| match value {
                DebugValue::Histogram(samples) => samples.len(),
                _ => 0,
            })
            .collect();
        assert_eq!(samples, vec![1], "one histogram, one sample");
    }
}
