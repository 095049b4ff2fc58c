//! Queue depths by connection class, read at each scrape: nothing is counted on the hot
//! path. Whatever holds a queue registers a [`Probe`] with [`watch`] (kept as a weak
//! reference: a connection that ends drops out by itself), and [`sample`] sums the live
//! ones by class into gauges.
//!
//! | class | connections | `in` (bytes) | `out` (frames, bytes) |
//! |---|---|---|---|
//! | `ipc` | apps' and clients' socket connections | requests and notifications read, not yet handled | frames waiting to be written |
//! | `jsonrpc` | JSON-RPC connections (TCP, stdio) | requests read, not yet answered | answers waiting to be written (frames only) |
//! | `session_followers` | followers of sessions' events (SSE, `session.events`, JSON-RPC streams) | — | events queued for them |

use std::sync::{Arc, Mutex, Weak};

/// The connection classes, each reported (zero when it has none).
pub const CLASSES: [&str; 3] = ["ipc", "jsonrpc", "session_followers"];

/// What one queue holder holds now.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Depth {
    /// Connections (or followers) it stands for.
    pub connections: u64,
    /// Bytes read and not yet handled.
    pub in_bytes: u64,
    /// Frames (or events) waiting to go out.
    pub out_frames: u64,
    /// Their bytes, where known.
    pub out_bytes: u64,
}

impl std::ops::AddAssign for Depth {
    fn add_assign(&mut self, d: Depth) {
        self.connections += d.connections;
        self.in_bytes += d.in_bytes;
        self.out_frames += d.out_frames;
        self.out_bytes += d.out_bytes;
    }
}

/// Something holding queues, asked at each scrape.
pub trait Probe: Send + Sync {
    /// Its depths now.
    fn depth(&self) -> Depth;
}

struct Watched {
    class: &'static str,
    probe: Weak<dyn Probe>,
}

struct Registry {
    watched: Vec<Watched>,
    /// Dead entries are swept when the list reaches this length (then it is doubled
    /// from what lives), so the list stays within twice the live holders.
    sweep_at: usize,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry { watched: Vec::new(), sweep_at: 64 });

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Watches `probe`'s queues, counted in `class` (one of [`CLASSES`]) while it lives.
pub fn watch<P: Probe + 'static>(class: &'static str, probe: &Arc<P>) {
    debug_assert!(CLASSES.contains(&class), "unknown class {class}");
    let weak: Weak<dyn Probe> = Arc::downgrade(probe) as Weak<dyn Probe>;
    let mut r = registry();
    if r.watched.len() >= r.sweep_at {
        r.watched.retain(|w| w.probe.strong_count() > 0);
        r.sweep_at = (r.watched.len() * 2).max(64);
    }
    r.watched.push(Watched { class, probe: weak });
}

/// The depths now, by class (every class of [`CLASSES`], in order).
pub fn depths() -> [(&'static str, Depth); CLASSES.len()] {
    let live: Vec<(&'static str, Arc<dyn Probe>)> = {
        let mut r = registry();
        r.watched.retain(|w| w.probe.strong_count() > 0);
        r.watched.iter().filter_map(|w| Some((w.class, w.probe.upgrade()?))).collect()
    };
    // Asked outside the registry's lock: a probe may take locks of its own.
    let mut out = CLASSES.map(|c| (c, Depth::default()));
    for (class, probe) in live {
        if let Some((_, sum)) = out.iter_mut().find(|(c, _)| *c == class) {
            *sum += probe.depth();
        }
    }
    out
}

/// Sets the gauges `burrow_connections{class}`, `burrow_queue_bytes{class, side}` and
/// `burrow_queue_frames{class, side="out"}` from [`depths`].
pub fn sample() {
    for (class, d) in depths() {
        metrics::gauge!("burrow_connections", "class" => class).set(d.connections as f64);
        metrics::gauge!("burrow_queue_bytes", "class" => class, "side" => "in")
            .set(d.in_bytes as f64);
        metrics::gauge!("burrow_queue_bytes", "class" => class, "side" => "out")
            .set(d.out_bytes as f64);
        metrics::gauge!("burrow_queue_frames", "class" => class, "side" => "out")
            .set(d.out_frames as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Depth);

    impl Probe for Fixed {
        fn depth(&self) -> Depth {
            self.0
        }
    }

    fn of(class: &str) -> Depth {
        depths().into_iter().find(|(c, _)| *c == class).unwrap().1
    }

    #[test]
    fn live_probes_are_summed_by_class_and_dead_ones_drop_out() {
        // Other tests in this process may watch queues too: compare with a baseline.
        let before = of("jsonrpc");
        let d = Depth { connections: 1, in_bytes: 10, out_frames: 2, out_bytes: 30 };
        let (a, b) = (Arc::new(Fixed(d)), Arc::new(Fixed(d)));
        watch("jsonrpc", &a);
        watch("jsonrpc", &b);
        let both = of("jsonrpc");
        assert!(both.connections >= before.connections + 2, "{both:?}");
        assert!(both.in_bytes >= 20 && both.out_frames >= 4 && both.out_bytes >= 60, "{both:?}");
        drop(b);
        // The registry's sweep keeps it bounded however many come and go.
        for _ in 0..1000 {
            watch("jsonrpc", &Arc::new(Fixed(d)));
        }
        assert!(registry().watched.len() < 1000, "swept");
        let one = of("jsonrpc");
        assert!(one.connections < both.connections + 1000, "{one:?}");
        drop(a);
        sample();
    }
}
