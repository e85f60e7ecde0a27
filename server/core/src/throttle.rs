//! Attempts per key over time (sign-ins per address, wrong passwords per account and
//! address), by the generic cell rate algorithm: each key keeps one timestamp, the time
//! its bucket would be empty again. Time is an argument (ms), never read from a clock.

use std::collections::HashMap;
use std::hash::Hash;

/// `burst` attempts per key at once, then one every `interval_ms`; at most `max_keys`
/// keys are remembered (idle ones are forgotten first, so memory is bounded whatever the
/// keys a client makes up).
#[derive(Debug, Clone)]
pub struct Throttle<K> {
    burst: u32,
    interval_ms: u64,
    max_keys: usize,
    /// Per key, when its bucket is full again (a key at or before `now` is full).
    full_at: HashMap<K, u64>,
}

impl<K: Hash + Eq + Clone> Throttle<K> {
    /// A throttle allowing `burst` attempts at once and one per `interval_ms` after that.
    pub fn new(burst: u32, interval_ms: u64, max_keys: usize) -> Self {
        Throttle { burst: burst.max(1), interval_ms: interval_ms.max(1), max_keys, full_at: HashMap::new() }
    }

    /// How long `key` must wait before its next attempt (`0`: it may go now).
    pub fn wait_ms(&self, key: &K, now_ms: u64) -> u64 {
        let full_at = self.full_at.get(key).copied().unwrap_or(0).max(now_ms);
        let allowance = self.interval_ms * u64::from(self.burst);
        // Taking one more would move `full_at` past `now + allowance`: too soon.
        (full_at + self.interval_ms).saturating_sub(now_ms + allowance)
    }

    /// Takes an attempt for `key`, or says how many ms until one is available.
    pub fn take(&mut self, key: &K, now_ms: u64) -> Result<(), u64> {
        match self.wait_ms(key, now_ms) {
            0 => {
                self.record(key, now_ms);
                Ok(())
            }
            wait => Err(wait),
        }
    }

    /// Counts an attempt for `key` without checking first (a failure found after the
    /// attempt was let through).
    pub fn record(&mut self, key: &K, now_ms: u64) {
        if self.full_at.len() >= self.max_keys && !self.full_at.contains_key(key) {
            self.forget_idle(now_ms);
        }
        if self.full_at.len() < self.max_keys || self.full_at.contains_key(key) {
            let full_at = self.full_at.entry(key.clone()).or_insert(0);
            *full_at = (*full_at).max(now_ms) + self.interval_ms;
        }
    }

    /// Forgets every key whose bucket is full again (it behaves as unseen); if none is,
    /// the half closest to full.
    fn forget_idle(&mut self, now_ms: u64) {
        self.full_at.retain(|_, full_at| *full_at > now_ms);
        if self.full_at.len() >= self.max_keys {
            let mut times: Vec<u64> = self.full_at.values().copied().collect();
            let middle = times.len() / 2;
            let median = *times.select_nth_unstable(middle).1;
            self.full_at.retain(|_, full_at| *full_at > median);
        }
    }

    /// Keys remembered now.
    pub fn len(&self) -> usize {
        self.full_at.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.full_at.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_per_interval_per_key() {
        let mut t = Throttle::new(3, 1_000, 100);
        for _ in 0..3 {
            assert_eq!(t.take(&"a", 0), Ok(()));
        }
        assert_eq!(t.take(&"a", 0), Err(1_000));
        assert_eq!(t.take(&"a", 400), Err(600));
        assert_eq!(t.take(&"a", 1_000), Ok(()));
        assert_eq!(t.take(&"a", 1_000), Err(1_000));
        // Another key is not affected.
        assert_eq!(t.take(&"b", 1_000), Ok(()));
        // A long pause refills up to the burst only.
        for _ in 0..3 {
            assert_eq!(t.take(&"a", 100_000), Ok(()));
        }
        assert!(t.take(&"a", 100_000).is_err());
    }

    #[test]
    fn recording_without_checking_counts_and_waiting_does_not() {
        let mut t = Throttle::new(2, 60_000, 100);
        assert_eq!(t.wait_ms(&1, 0), 0);
        assert_eq!(t.wait_ms(&1, 0), 0, "asking is free");
        t.record(&1, 0);
        t.record(&1, 0);
        assert_eq!(t.wait_ms(&1, 0), 60_000);
        assert_eq!(t.wait_ms(&1, 30_000), 30_000);
    }

    #[test]
    fn memory_is_bounded_and_idle_keys_go_first() {
        let mut t = Throttle::new(1, 1_000, 10);
        for key in 0..10 {
            t.record(&key, 0);
        }
        // At 5 s every key is full again: all are forgotten to make room.
        t.record(&99, 5_000);
        assert_eq!(t.len(), 1);
        // When none is idle, half are forgotten; the newest stays throttled.
        for key in 0..20u32 {
            t.record(&key, 10_000 + u64::from(key));
        }
        assert!(t.len() <= 10);
        assert!(t.wait_ms(&19, 10_019) > 0);
    }
}
