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
//! | `burrow_runs_total` | `status` | agent runs ended: `completed`, `failed`, `cancelled` |
//! | `burrow_run_duration_seconds` | | their latency |
//! | `burrow_apps` | `state` | registered apps by state, at the scrape |
//! | `burrow_hook_dropped_notifications` | | observer notifications dropped on full queues, at the scrape |
//!
//! One recorder serves the process ([`install`], by the first kernel to start); method
//! and tool labels are bounded by what is registered (an unknown method counts as
//! `unknown`).

use std::sync::OnceLock;

use burrow_protocol::ErrorObject;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Histogram buckets, in seconds: 10 µs to 10 minutes.
pub const BUCKETS: [f64; 24] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process's recorder, once; `false` when another recorder was installed
/// first (then nothing is rendered).
pub fn install() -> bool {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().set_buckets(&BUCKETS).ok()?.build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .is_some()
}

/// Everything recorded, in Prometheus's text format.
pub fn render() -> String {
    HANDLE.get().and_then(Option::as_ref).map(PrometheusHandle::render).unwrap_or_default()
}

/// A request's outcome as a label: `ok`, or its error's code.
pub fn outcome<T>(result: &Result<T, ErrorObject>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => e.code.as_str(),
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
}
