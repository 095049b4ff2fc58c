//! The dashboard's Sessions page at 100 000 stored sessions (issue 23), in a real browser:
//! the state directory's store is seeded before the kernel starts, then
//! `tests/ui/sessions_scale.test.mjs` drives headless Chromium through the page (first,
//! next, previous and last pages; each filter; the page reacting while a page loads) and
//! prints each page's load time. Only generous liveness deadlines are asserted: the
//! performance goals are the `sessions` benchmark's (`docs/benchmarks.md`).
//!
//! Seeding goes through the kernel's own store ([`SqliteStore`], the engine the kernel
//! opens at `<state>/burrow.db`): [`Write::CreateSession`] batches, journaled and applied
//! as the kernel's writes are: about 2 s for 100 000 in a debug build. Dispatching the
//! messages to the kernel instead took 14 s for 20 000 in a debug build (≈ 70 s for
//! 100 000) and would leave every session resident (the kernel at ≈ 240 MB by 20 000).

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use burrow_kernel::store::sqlite::SqliteStore;
use burrow_kernel::store::{SessionRow, Storage, Write};
use burrow_tests::{Kernel, bin_dir};
use serde_json::json;

use crate::ui::{check_tools, run_script};

/// The whole browser run, start to end.
const RUN_DEADLINE: Duration = Duration::from_secs(180);
/// Sessions stored before the kernel starts.
const STORED: u64 = 100_000;
/// Session `i` is of agent `AGENTS[i % 4]` (`main` is the one agent configured: the
/// browser script sends a message to one of its sessions)...
const AGENTS: [&str; 4] = ["main", "support", "sales", "ops"];
/// ... on channel `CHANNELS[i % 5]` ...
const CHANNELS: [&str; 5] = ["web", "slack", "email", "sms", "voice"];
/// ... and keep-alive (so resident once the kernel starts) when `i % KEEP_ALIVE_EVERY` is
/// 0: 101 of them, spread over the agents and channels (997 is prime).
const KEEP_ALIVE_EVERY: u64 = 997;
/// Sessions per store write.
const BATCH: u64 = 1000;
/// The store's file in a state directory, where `burrow kernel` opens it.
const STORE_FILE: &str = "burrow.db";

/// Session `i` of the seed, last active `STORED - i` seconds before `now` (ms): the
/// higher `i`, the newer. `tests/ui/sessions_scale.test.mjs` derives the same rows.
fn seeded(i: u64, now: u64) -> SessionRow {
    let last_active_at = now - (STORED - i) * 1000;
    SessionRow {
        channel_id: Some(CHANNELS[(i % 5) as usize].into()),
        last_active_at,
        keep_alive: i.is_multiple_of(KEEP_ALIVE_EVERY),
        ..SessionRow::new(format!("seed-{i:06}"), AGENTS[(i % 4) as usize], last_active_at - 60_000)
    }
}

/// Stores the [`STORED`] sessions in `state`'s store (the kernel not yet started), as
/// of `now` (ms), and checks they all read back.
async fn seed(state: &Path, now: u64) {
    let store = SqliteStore::open(&state.join(STORE_FILE)).expect("open the store");
    for start in (0..STORED).step_by(BATCH as usize) {
        let batch = (start..(start + BATCH).min(STORED))
            .map(|i| Write::CreateSession(seeded(i, now)))
            .collect();
        store.write(batch).await.expect("seed sessions");
    }
    // A read waits until every write is applied; the kernel opens the store once this
    // one's threads are done with it.
    let (_, total) = store.sessions(Default::default(), 1, 0).await.expect("list");
    assert_eq!(total, STORED, "every seeded session reads back");
}

/// [`seed`], from `prepare` (synchronous, inside the test's runtime): on a thread of its
/// own with a runtime of its own. How long it took.
fn seed_blocking(state: &Path, now: u64) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(seed(state, now));
        })
        .join()
        .expect("seeding");
    });
    start.elapsed()
}

#[tokio::test]
async fn the_sessions_page_at_100k_stored_sessions() {
    check_tools();
    // The binaries built first, so that the seeded activity ends about now.
    bin_dir();
    let mut took = Duration::ZERO;
    let kernel = Kernel::start_prepared("", &["--http", "127.0.0.1:0"], |state| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis();
        took = seed_blocking(state, now as u64);
    })
    .await;
    println!("seeded {STORED} sessions through the store in {took:.2?} (writes of {BATCH})");
    let spec = json!({
        "stored": STORED,
        "agents": AGENTS,
        "channels": CHANNELS,
        "keepAliveEvery": KEEP_ALIVE_EVERY,
    });
    let spec = spec.to_string();
    let env = [("BURROW_SEED", std::ffi::OsStr::new(&spec))];
    run_script("sessions_scale.test.mjs", &kernel, &env, RUN_DEADLINE).await;
}
