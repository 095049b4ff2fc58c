//! IPC benchmark against the real kernel: round-trip latency of one request at a time,
//! and throughput of pipelined requests on one connection.
//!
//! Run with `cargo bench -p burrow-tests --bench ipc`. Numbers vary with the machine; on
//! a 2-vCPU VM the floor is ≈ 45–55 µs per process-to-process round trip (NOTES.md), so
//! compare ratios within one run rather than absolute values across machines.

use std::time::{Duration, Instant};

use burrow_tests::Kernel;
use futures_util::StreamExt;

const ROUND_TRIPS: usize = 5_000;
const PIPELINED: usize = 50_000;
const IN_FLIGHT: usize = 256;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize]
}

#[tokio::main]
async fn main() {
    // Default settings: the benchmark's connections are idle only between phases.
    let kernel = Kernel::start_with_config("").await;

    // Latency: one request at a time through the SDK client.
    let client = kernel.client().await;
    let mut samples = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let start = Instant::now();
        client.kernel_info().await.expect("kernel.info");
        samples.push(start.elapsed());
    }
    samples.sort();
    println!(
        "round trip (kernel.info, SDK client): p50 {:?}  p99 {:?}  max {:?}  over {ROUND_TRIPS}",
        percentile(&samples, 0.50),
        percentile(&samples, 0.99),
        samples[samples.len() - 1],
    );

    // Throughput: many requests in flight at once on one connection (the SDK pipelines
    // them over one socket and correlates the answers by id).
    let start = Instant::now();
    let answered = futures_util::stream::iter(0..PIPELINED)
        .map(|_| client.kernel_info())
        .buffer_unordered(IN_FLIGHT)
        .filter(|r| std::future::ready(r.is_ok()))
        .count()
        .await;
    let elapsed = start.elapsed();
    assert_eq!(answered, PIPELINED);
    println!(
        "pipelined kernel.info, {IN_FLIGHT} in flight on one connection: {PIPELINED} in {elapsed:?} = {:.0} req/s",
        PIPELINED as f64 / elapsed.as_secs_f64()
    );
}
