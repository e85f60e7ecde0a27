//! The process's file-descriptor budget.
//!
//! Every socket, table file, index segment and file transfer takes a descriptor from one
//! limit (`RLIMIT_NOFILE`). Running out is not a local failure: the storage engine's
//! background flush cannot open its next table file and the store stops taking writes.
//! So the limit is split up front — storage and search get a reserve sized from it, file
//! transfers a cap, and client sockets what is left — and sockets past their share are
//! refused at accept, long before the process reaches the limit
//! (docs/OPERATIONS.md#descriptors).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Descriptors the process holds whatever the load: standard streams, listeners, the
/// QUIC socket, the NATS connection, log files, `/proc` reads, thread wake-ups.
const FIXED: usize = 64;
/// Per shard: its io_uring instance, its wake-up eventfd, its listener.
const PER_SHARD: usize = 8;
/// What fjall needs beyond its cache of open table files: journals, version files,
/// tables being written by a flush or compaction.
const STORAGE_WORKING_SET: usize = 64;

/// How the descriptor limit is shared out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorBudget {
    /// The soft `RLIMIT_NOFILE` the budget was derived from.
    pub limit: usize,
    /// Table files fjall keeps open (its `max_cached_files`).
    pub storage_cached_files: usize,
    /// Held back for the search index's segment files and merges.
    pub search: usize,
    /// File uploads and downloads streaming at once (each holds one file open).
    pub file_transfers: usize,
    /// Client sockets (TCP: HTTP, WebSocket; accepted and not yet closed).
    pub sockets: usize,
}

impl DescriptorBudget {
    /// Shares out `limit` descriptors for a server of `shards` shards.
    pub fn from_limit(limit: usize, shards: usize) -> Self {
        let storage_cached_files = (limit / 10).clamp(32, 900);
        let search = (limit / 20).clamp(64, 512);
        let file_transfers = (limit / 20).clamp(16, 1_024);
        let reserve =
            FIXED + PER_SHARD * shards + storage_cached_files + STORAGE_WORKING_SET + search + file_transfers;
        // A limit too small for the reserve still serves a few sockets (and says so at
        // start-up) rather than none.
        let sockets = limit.saturating_sub(reserve).max(16);
        DescriptorBudget { limit, storage_cached_files, search, file_transfers, sockets }
    }

    /// Whether the reserve left sockets fewer than a server should have.
    pub fn is_cramped(&self) -> bool {
        self.sockets < 256
    }
}

/// Raises the soft descriptor limit to the hard one (the usual default soft limit, 1,024,
/// is far below what a chat server needs) and returns the soft limit now in force.
pub fn raise_soft_limit() -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limits = getrlimit(Resource::Nofile);
    if limits.current < limits.maximum {
        let raised = rustix::process::Rlimit { current: limits.maximum, maximum: limits.maximum };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            limits = getrlimit(Resource::Nofile);
        }
    }
    // `None` is unlimited; no real process sees that, but it must not wrap.
    limits.current.map_or(1 << 20, |n| usize::try_from(n).unwrap_or(usize::MAX).min(1 << 24))
}

/// A count of open resources held to a maximum, shared by every shard; a [`Slot`] gives
/// its place back when dropped.
#[derive(Debug)]
pub struct Slots {
    max: usize,
    taken: AtomicUsize,
}

impl Slots {
    /// Allows `max` at once.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Slots { max, taken: AtomicUsize::new(0) })
    }

    /// Takes a place, or `None` when all `max` are taken.
    pub fn try_take(self: &Arc<Self>) -> Option<Slot> {
        self.taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1))
            .ok()
            .map(|_| Slot(self.clone()))
    }

    /// Places taken now.
    pub fn taken(&self) -> usize {
        self.taken.load(Ordering::Relaxed)
    }

    /// The maximum.
    pub fn max(&self) -> usize {
        self.max
    }
}

/// One taken place of a [`Slots`].
#[derive(Debug)]
pub struct Slot(Arc<Slots>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.taken.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_never_gives_sockets_the_reserve() {
        for limit in [256, 1_024, 4_096, 20_000, 1 << 20] {
            let b = DescriptorBudget::from_limit(limit, 2);
            let reserve = FIXED + 2 * PER_SHARD + b.storage_cached_files + STORAGE_WORKING_SET + b.search;
            assert!(b.sockets + reserve + b.file_transfers <= limit.max(reserve + b.file_transfers + 16));
            assert!(b.storage_cached_files <= 900);
        }
        let small = DescriptorBudget::from_limit(1_024, 2);
        assert!(small.sockets >= 500, "{small:?}");
        assert!(!small.is_cramped());
        let big = DescriptorBudget::from_limit(1 << 20, 8);
        assert!(big.sockets > 1_000_000, "{big:?}");
    }

    #[test]
    fn slots_are_held_to_the_maximum_and_given_back() {
        let slots = Slots::new(2);
        let a = slots.try_take().unwrap();
        let _b = slots.try_take().unwrap();
        assert!(slots.try_take().is_none());
        drop(a);
        assert_eq!(slots.taken(), 1);
        assert!(slots.try_take().is_some());
    }
}
