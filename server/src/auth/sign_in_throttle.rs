//! Sign-in throttling, shared by every shard: attempts per client address (each costs a
//! password hash), and wrong passwords per account *and* address. Never per account
//! alone: that would let anyone lock a victim out by failing on their name.

use std::net::IpAddr;
use std::sync::Mutex;

use palaver_core::Throttle;
use palaver_protocol::Username;

/// Wrong passwords allowed per account and address at once; after that, one per
/// [`FAILURE_INTERVAL_MS`].
pub const FAILURE_BURST: u32 = 5;
/// How often one more wrong password per account and address is allowed.
pub const FAILURE_INTERVAL_MS: u64 = 60_000;
/// Sign-in attempts allowed from one address at once, before the per-minute rate.
pub const ADDRESS_BURST: u32 = 10;
/// Keys each throttle remembers (idle ones are forgotten first).
const MAX_KEYS: usize = 100_000;

/// The throttles; one lock (sign-ins cost milliseconds of hashing each, so a lock held
/// for microseconds is never contended).
#[derive(Debug)]
pub struct SignInThrottle {
    inner: Mutex<Throttles>,
}

#[derive(Debug)]
struct Throttles {
    /// `None` when the per-address limit is off (behind a reverse proxy).
    per_address: Option<Throttle<IpAddr>>,
    failures: Throttle<(Username, IpAddr)>,
}

impl SignInThrottle {
    /// Allows `per_minute_per_address` sign-in attempts a minute from one address (after
    /// a burst of [`ADDRESS_BURST`]); 0 turns the per-address limit off.
    pub fn new(per_minute_per_address: u32) -> Self {
        let per_address = (per_minute_per_address > 0)
            .then(|| Throttle::new(ADDRESS_BURST, 60_000 / u64::from(per_minute_per_address), MAX_KEYS));
        let failures = Throttle::new(FAILURE_BURST, FAILURE_INTERVAL_MS, MAX_KEYS);
        SignInThrottle { inner: Mutex::new(Throttles { per_address, failures }) }
    }

    /// Takes an attempt for `address` (and checks `account`'s failures from it), or says
    /// how many ms to wait.
    pub fn admit(&self, address: IpAddr, account: Option<&Username>, now_ms: u64) -> Result<(), u64> {
        let Ok(mut throttles) = self.inner.lock() else { return Ok(()) };
        if let Some(account) = account {
            let wait = throttles.failures.wait_ms(&(account.clone(), address), now_ms);
            if wait > 0 {
                return Err(wait);
            }
        }
        match &mut throttles.per_address {
            Some(per_address) => per_address.take(&address, now_ms),
            None => Ok(()),
        }
    }

    /// Counts a wrong password for `account` from `address`.
    pub fn failed(&self, address: IpAddr, account: &Username, now_ms: u64) {
        if let Ok(mut throttles) = self.inner.lock() {
            throttles.failures.record(&(account.clone(), address), now_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guessing_one_account_stops_that_address_but_not_the_owner() {
        let throttle = SignInThrottle::new(0);
        let (attacker, owner): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let victim = Username::parse("victim").unwrap_or_else(|_| unreachable!());
        for _ in 0..FAILURE_BURST {
            assert!(throttle.admit(attacker, Some(&victim), 0).is_ok());
            throttle.failed(attacker, &victim, 0);
        }
        assert_eq!(throttle.admit(attacker, Some(&victim), 0), Err(FAILURE_INTERVAL_MS));
        assert!(throttle.admit(owner, Some(&victim), 0).is_ok(), "the owner is not locked out");
        assert!(throttle.admit(attacker, Some(&victim), FAILURE_INTERVAL_MS).is_ok());
    }

    #[test]
    fn an_address_gets_a_burst_then_its_rate() {
        let throttle = SignInThrottle::new(30);
        let address: IpAddr = [10, 0, 0, 3].into();
        for _ in 0..ADDRESS_BURST {
            assert!(throttle.admit(address, None, 0).is_ok());
        }
        assert_eq!(throttle.admit(address, None, 0), Err(2_000));
        assert!(throttle.admit([10, 0, 0, 4].into(), None, 0).is_ok());
    }
}
