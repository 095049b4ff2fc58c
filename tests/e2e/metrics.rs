//! `GET /metrics`: the kernel's metrics in Prometheus's text format, read by a
//! Prometheus text-format parser (`prometheus-parse`) after a session's run and tool calls
//! over the real surfaces: counters by label, latencies as histograms with buckets.

use burrow_tests::{Kernel, http_client};
use prometheus_parse::{Sample, Scrape, Value as Metric};
use serde_json::json;

/// The samples named `name` whose labels include `labels`.
fn samples<'a>(scrape: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect()
}

fn count(sample: &Sample) -> f64 {
    match &sample.value {
        Metric::Counter(n) | Metric::Gauge(n) | Metric::Untyped(n) => *n,
        Metric::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
        Metric::Summary(_) => panic!("a summary, not a histogram: {sample:?}"),
    }
}

#[tokio::test]
async fn metrics_count_requests_runs_and_tool_calls_with_histograms() {
    let kernel =
        Kernel::start_with("[ipc]\nheartbeat_timeout_ms = 60000\n", &["--http", "127.0.0.1:0"])
            .await;
    let _echo = kernel.echo_provider().await;
    let mut clock = kernel.example("clock-tool", "clock", &[]);
    let mut redactor = kernel.example("redactor", "redactor", &[]);
    clock.wait_line("clock-tool: ready as clock").await;
    redactor.wait_line("redactor: ready as redactor").await;
    let base = format!("http://{}", kernel.endpoint("http").await);
    let http = http_client();
    let created = http.post(format!("{base}/sessions")).json(&json!({"prompt": "hi"})).send().await;
    assert_eq!(created.unwrap().status(), 200);
    let app = kernel.registered_client("caller").await;
    app.call_tool("echo", json!({"n": 1})).await.unwrap();
    app.call_tool("fail", json!({"message": "no"})).await.unwrap_err();

    let answer = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let kind = answer.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    let text = answer.text().await.unwrap();
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text");

    let created = samples(
        &scrape,
        "burrow_host_requests_total",
        &[("method", "session/create"), ("outcome", "ok")],
    );
    assert_eq!(created.iter().map(|s| count(s)).sum::<f64>(), 1.0, "{text}");
    let latency =
        samples(&scrape, "burrow_host_request_duration_seconds", &[("method", "session/create")]);
    assert!(matches!(latency[0].value, Metric::Histogram(ref b) if b.len() >= 20), "{text}");
    let runs = samples(&scrape, "burrow_runs_total", &[("status", "completed")]);
    assert_eq!(runs.iter().map(|s| count(s)).sum::<f64>(), 1.0, "{text}");
    assert_eq!(count(samples(&scrape, "burrow_run_duration_seconds", &[])[0]), 1.0, "{text}");
    let ok = samples(&scrape, "burrow_tool_calls_total", &[("tool", "echo"), ("outcome", "ok")]);
    assert_eq!(count(ok[0]), 1.0, "{text}");
    // Its app answers with an error: counted under the error's code.
    let failed = samples(&scrape, "burrow_tool_calls_total", &[("tool", "fail")]);
    let by_outcome = |outcome: &str| -> f64 {
        failed.iter().filter(|s| s.labels.get("outcome") == Some(outcome)).map(|s| count(s)).sum()
    };
    assert_eq!(by_outcome("UNKNOWN_ERROR"), 1.0, "{text}");
    assert_eq!(by_outcome("ok") + by_outcome("is_error"), 0.0, "{text}");
    let tool_latency = samples(&scrape, "burrow_tool_call_duration_seconds", &[("tool", "echo")]);
    assert_eq!(count(tool_latency[0]), 1.0, "{text}");
    // The app's requests over the socket: its `tool.call`s, timed.
    let ipc = samples(
        &scrape,
        "burrow_ipc_requests_total",
        &[("method", "tool.call"), ("outcome", "ok")],
    );
    assert_eq!(count(ipc[0]), 1.0, "{text}");
    let ipc_latency =
        samples(&scrape, "burrow_ipc_request_duration_seconds", &[("method", "tool.call")]);
    assert_eq!(count(ipc_latency[0]), 2.0, "{text}");
    // The run's one turn, its provider call, the interceptor's decisions.
    assert_eq!(count(samples(&scrape, "burrow_turn_duration_seconds", &[])[0]), 1.0, "{text}");
    let provider = samples(
        &scrape,
        "burrow_provider_call_duration_seconds",
        &[("provider", "echo"), ("outcome", "ok")],
    );
    assert_eq!(count(provider[0]), 1.0, "{text}");
    let decisions = samples(
        &scrape,
        "burrow_interceptions_total",
        &[("event", "before_tool_call"), ("app", "redactor")],
    );
    assert_eq!(decisions.iter().map(|s| count(s)).sum::<f64>(), 2.0, "{text}");
    assert!(count(samples(&scrape, "burrow_store_journal_flushes_total", &[])[0]) >= 1.0, "{text}");
    let in_flight = samples(&scrape, "burrow_requests_in_flight", &[("surface", "host")]);
    assert_eq!(count(in_flight[0]), 0.0, "{text}");
    let ready = samples(&scrape, "burrow_apps", &[("state", "ready")]);
    assert!(count(ready[0]) >= 2.0, "the echo provider and clock: {text}");
}

/// One scrape of `base`'s `/metrics`.
async fn scrape(http: &reqwest::Client, base: &str) -> (Scrape, String) {
    let text = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text");
    (scrape, text)
}

/// The one gauge named `name` with exactly `labels`' values.
fn gauge(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found = samples(scrape, name, labels);
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    count(found[0])
}

/// Scrapes until `ok` holds of one, for at most 20 s; that scrape.
async fn scrape_until(
    http: &reqwest::Client,
    base: &str,
    what: &str,
    ok: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (scrape, text) = scrape(http, base).await;
        if ok(&scrape) {
            return scrape;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what} never held:\n{text}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn queue_depths_and_connections_are_reported_by_class() {
    let kernel = Kernel::start_with(
        "[ipc]\nheartbeat_timeout_ms = 60000\n",
        &["--http", "127.0.0.1:0", "--rpc-tcp", "127.0.0.1:0"],
    )
    .await;
    let _echo = kernel.echo_provider().await;
    let base = format!("http://{}", kernel.endpoint("http").await);
    let http = http_client();
    let mut rpc = burrow_tests::Rpc::connect(kernel.endpoint("rpc_tcp").await).await;
    let session = rpc.ok("session/create", json!({"prompt": "hi"})).await["session_id"].clone();
    // A follower of the session's events, held open.
    let events = http
        .get(format!("{base}/sessions/{}/events", session.as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let classes = |s: &Scrape| {
        ["ipc", "jsonrpc", "session_followers"]
            .map(|class| gauge(s, "burrow_connections", &[("class", class)]))
    };
    let seen = scrape_until(&http, &base, "a connection of each class", |s| {
        let [ipc, rpc, followers] = classes(s);
        ipc >= 1.0 && rpc == 1.0 && followers == 1.0
    })
    .await;
    for side in ["in", "out"] {
        let bytes = gauge(&seen, "burrow_queue_bytes", &[("class", "jsonrpc"), ("side", side)]);
        assert_eq!(bytes, 0.0, "an idle connection queues nothing ({side})");
    }

    // An app that asks and does not read its answers: they wait in its writer queue.
    let manifest = json!({"id": "slow-reader", "version": "1.0.0", "capabilities": {}});
    let mut app = burrow_tests::RawConn::app(&kernel.socket, manifest).await;
    let mut ids = Vec::new();
    for _ in 0..1000 {
        ids.push(app.send_call("kernel.capabilities", json!({})).await);
    }
    let out = |s: &Scrape| {
        let frames = gauge(s, "burrow_queue_frames", &[("class", "ipc"), ("side", "out")]);
        let bytes = gauge(s, "burrow_queue_bytes", &[("class", "ipc"), ("side", "out")]);
        (frames, bytes)
    };
    scrape_until(&http, &base, "answers queued for the app that does not read", |s| {
        let (frames, bytes) = out(s);
        frames > 0.0 && bytes > 0.0
    })
    .await;
    for id in ids {
        assert!(app.try_answer_to(id).await.is_some(), "answer {id}");
    }
    scrape_until(&http, &base, "the queue drained once the app read", |s| out(s) == (0.0, 0.0))
        .await;
    drop(events);
    scrape_until(&http, &base, "the follower gone", |s| classes(s)[2] == 0.0).await;
}
