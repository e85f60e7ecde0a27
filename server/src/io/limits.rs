//! Connection limits per client IP and per user, counted across all shards.
//!
//! A count changes only when a connection opens, authenticates or closes, never per
//! message, so a few mutex-guarded maps (split by key hash to keep shards off each
//! other's locks) cost nothing measurable. A [`ConnectionPermit`] gives its slot back
//! when the connection that holds it is dropped.

use std::hash::{BuildHasher as _, Hash};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use palaver_protocol::UserId;
use rustc_hash::{FxBuildHasher, FxHashMap};

/// How many independently locked parts a counter is split into.
const PARTS: usize = 16;

/// Open connections per key, each key held to at most `max` (0: no limit).
#[derive(Debug)]
pub struct ConnectionCounter<K> {
    max: u32,
    parts: Box<[Mutex<FxHashMap<K, u32>>]>,
}

/// Connections per client address.
pub type IpCounter = ConnectionCounter<IpAddr>;
/// Authenticated connections per user.
pub type UserCounter = ConnectionCounter<UserId>;

impl<K: Hash + Eq + Clone> ConnectionCounter<K> {
    /// A counter allowing `max` connections per key (0: unlimited).
    pub fn new(max: u32) -> Arc<Self> {
        Arc::new(Self { max, parts: (0..PARTS).map(|_| Mutex::default()).collect() })
    }

    /// The configured limit (0: none).
    pub fn max(&self) -> u32 {
        self.max
    }

    fn part(&self, key: &K) -> &Mutex<FxHashMap<K, u32>> {
        &self.parts[(FxBuildHasher.hash_one(key) as usize) % PARTS]
    }

    /// Takes a slot for `key`, or `None` when it already has `max` connections.
    pub fn try_acquire(self: &Arc<Self>, key: &K) -> Option<ConnectionPermit<K>> {
        if self.max == 0 {
            return Some(ConnectionPermit { counter: self.clone(), key: None });
        }
        let mut map = self.part(key).lock().ok()?;
        let count = map.entry(key.clone()).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ConnectionPermit { counter: self.clone(), key: Some(key.clone()) })
    }

    /// Current connections of `key`.
    pub fn count(&self, key: &K) -> u32 {
        self.part(key).lock().map(|m| m.get(key).copied().unwrap_or(0)).unwrap_or(0)
    }
}

/// One connection's slot; released on drop.
#[derive(Debug)]
pub struct ConnectionPermit<K: Hash + Eq + Clone> {
    counter: Arc<ConnectionCounter<K>>,
    /// `None` when the counter has no limit (nothing was counted).
    key: Option<K>,
}

impl<K: Hash + Eq + Clone> Drop for ConnectionPermit<K> {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        if let Ok(mut map) = self.counter.part(&key).lock()
            && let Some(count) = map.get_mut(&key)
        {
            *count -= 1;
            if *count == 0 {
                map.remove(&key);
            }
        }
    }
}

/// A connection's permits, carried from the accept to the socket's task.
#[derive(Debug, Default)]
pub struct Permits {
    /// The socket's place in the descriptor budget.
    #[expect(dead_code, reason = "held for its Drop: the place is given back with the connection")]
    pub socket: Option<crate::descriptors::Slot>,
    /// The client address's slot.
    #[expect(dead_code, reason = "held for its Drop: the slot is released with the connection")]
    pub ip: Option<ConnectionPermit<IpAddr>>,
    /// The user's slot, once authenticated.
    pub user: Option<ConnectionPermit<UserId>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_limited_per_key_and_returned_on_drop() {
        let counter = ConnectionCounter::<u32>::new(2);
        let a1 = counter.try_acquire(&1).unwrap();
        let _a2 = counter.try_acquire(&1).unwrap();
        assert!(counter.try_acquire(&1).is_none());
        let _b = counter.try_acquire(&2).unwrap();
        drop(a1);
        assert_eq!(counter.count(&1), 1);
        assert!(counter.try_acquire(&1).is_some());
        let unlimited = ConnectionCounter::<u32>::new(0);
        let many: Vec<_> = (0..1_000).map(|_| unlimited.try_acquire(&7).unwrap()).collect();
        assert_eq!(many.len(), 1_000);
        assert_eq!(unlimited.count(&7), 0);
    }
}
