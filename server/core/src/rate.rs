//! Token buckets for rate limits. Time is an argument (ms), never read from a clock.

/// A token bucket: `rate_per_sec` tokens refill per second up to `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_per_sec: u32,
    burst: u32,
    /// Tokens scaled by 1,000 so refills stay exact in integer arithmetic.
    milli_tokens: u64,
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket at time `now_ms`.
    pub fn new(rate_per_sec: u32, burst: u32, now_ms: u64) -> Self {
        let burst = burst.max(1);
        Self { rate_per_sec, burst, milli_tokens: u64::from(burst) * 1_000, last_ms: now_ms }
    }

    /// Takes one token, or says how many ms until one is available.
    pub fn take(&mut self, now_ms: u64) -> Result<(), u64> {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        let cap = u64::from(self.burst) * 1_000;
        self.milli_tokens = (self.milli_tokens + elapsed * u64::from(self.rate_per_sec)).min(cap);
        if self.milli_tokens >= 1_000 {
            self.milli_tokens -= 1_000;
            Ok(())
        } else if self.rate_per_sec == 0 {
            Err(1_000)
        } else {
            let missing = 1_000 - self.milli_tokens;
            Err(missing.div_ceil(u64::from(self.rate_per_sec)).max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let mut bucket = TokenBucket::new(10, 3, 0);
        for _ in 0..3 {
            assert!(bucket.take(0).is_ok());
        }
        assert_eq!(bucket.take(0), Err(100));
        assert_eq!(bucket.take(50), Err(50));
        assert!(bucket.take(100).is_ok());
        assert!(bucket.take(100).is_err());
        // A long pause refills only up to the burst.
        for _ in 0..3 {
            assert!(bucket.take(10_000).is_ok());
        }
        assert!(bucket.take(10_000).is_err());
    }

    #[test]
    fn time_going_backwards_does_not_refill() {
        let mut bucket = TokenBucket::new(1, 1, 1_000);
        assert!(bucket.take(1_000).is_ok());
        assert!(bucket.take(500).is_err());
    }
}
