//! Reconnect backoff: bounded exponential with "equal jitter", from a seeded generator so
//! tests are deterministic.

/// A small deterministic generator (splitmix64); the driver seeds it from the OS.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix(u64);

impl SplitMix {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Delays between reconnect attempts: the n-th failure in a row waits a random time in
/// `[d/2, d]` with `d = min(initial · 2ⁿ, max)`.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial_ms: u64,
    max_ms: u64,
    failures: u32,
}

impl Backoff {
    pub(crate) fn new(initial_ms: u64, max_ms: u64) -> Self {
        Backoff { initial_ms: initial_ms.max(1), max_ms: max_ms.max(initial_ms.max(1)), failures: 0 }
    }

    /// The delay before the next attempt; counts one more failure.
    pub(crate) fn next_delay(&mut self, rng: &mut SplitMix) -> u64 {
        let ceiling = self.initial_ms.saturating_mul(1u64 << self.failures.min(32)).min(self.max_ms);
        self.failures = self.failures.saturating_add(1);
        let half = ceiling / 2;
        half + rng.next_u64() % (ceiling - half + 1)
    }

    /// A connection succeeded: start again from the initial delay.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_with_jitter_and_stay_bounded() {
        let mut rng = SplitMix::new(7);
        let mut b = Backoff::new(100, 5_000);
        let mut ceiling = 100u64;
        for _ in 0..40 {
            let d = b.next_delay(&mut rng);
            assert!(d >= ceiling / 2 && d <= ceiling, "{d} not in [{}, {ceiling}]", ceiling / 2);
            ceiling = (ceiling * 2).min(5_000);
        }
        b.reset();
        assert!(b.next_delay(&mut rng) <= 100);
    }

    #[test]
    fn jitter_spreads_clients_apart() {
        let delays: std::collections::BTreeSet<u64> =
            (0..20).map(|seed| Backoff::new(1_000, 30_000).next_delay(&mut SplitMix::new(seed))).collect();
        assert!(delays.len() > 10);
    }
}
