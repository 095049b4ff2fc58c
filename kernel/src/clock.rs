//! A monotonic millisecond clock for deadlines, immune to wall-clock jumps.

use std::sync::OnceLock;
use std::time::Instant;

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Milliseconds on the monotonic clock (since the first call in this process).
pub fn mono_ms() -> u64 {
    origin().elapsed().as_millis() as u64
}

/// The wall-clock time (ms since the epoch) of a monotonic instant `mono` in the past.
pub fn wall_of(mono: u64) -> u64 {
    burrow_protocol::now_ms().saturating_sub(mono_ms().saturating_sub(mono))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_of_now_is_now() {
        let m = mono_ms();
        let w = wall_of(m);
        let now = burrow_protocol::now_ms();
        assert!(now >= w && now - w < 1000);
        assert!(mono_ms() >= m);
    }
}
