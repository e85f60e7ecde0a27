//! The indexing backlog: changes accepted from producers but not yet searchable, how old
//! the oldest of them is, and the rules that decide from these how much CPU indexing
//! takes and how often it commits.
//!
//! Indexing is background work: it runs under `SCHED_IDLE` (see [`crate::IndexerHandle`])
//! and so only uses CPU the rest of the server leaves idle. On a saturated core that is
//! next to none, and the backlog grows. It may not grow without limit — neither in memory
//! (every queued change holds its message) nor in staleness — so past a bound
//! ([`BacklogBound`]) indexing takes a normal background share (nice 10) until it has
//! caught up, then yields again ([`next_share`]). While behind, it commits less often, so
//! the catch-up spends its CPU on documents rather than on commits ([`commit_every`]).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How much CPU indexing takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum IndexingShare {
    /// `SCHED_IDLE` (nice 19 where the kernel refuses it): only CPU nothing else wants.
    #[default]
    Idle,
    /// A normal background share, nice 10 (about a tenth of a core contended by
    /// nice-0 shards): used to catch up once the backlog is past its bound.
    CatchUp,
}

/// The most the backlog may hold before indexing takes a normal share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BacklogBound {
    /// Changes accepted but not yet searchable (each queued one holds its message).
    pub max_changes: u64,
    /// Age of the oldest change not yet searchable.
    pub max_lag: Duration,
}

impl BacklogBound {
    /// A bound of `max_changes` changes or `max_lag` of staleness.
    pub fn new(max_changes: u64, max_lag: Duration) -> BacklogBound {
        BacklogBound { max_changes, max_lag }
    }
}

impl Default for BacklogBound {
    /// 100,000 changes (a few seconds of saturated sends; tens of MB of queued messages)
    /// or 30 seconds of search staleness, whichever comes first.
    fn default() -> BacklogBound {
        BacklogBound { max_changes: 100_000, max_lag: Duration::from_secs(30) }
    }
}

/// The share indexing should run at, given the current one and the backlog. Past the bound
/// it catches up; it yields again only once well under it (a quarter of both limits), so
/// it does not flip at the edge — each switch costs a commit and new indexing threads.
pub fn next_share(current: IndexingShare, changes: u64, lag: Duration, bound: BacklogBound) -> IndexingShare {
    match current {
        IndexingShare::Idle if changes >= bound.max_changes || lag >= bound.max_lag => IndexingShare::CatchUp,
        IndexingShare::CatchUp if changes <= bound.max_changes / 4 && lag <= bound.max_lag / 4 => {
            IndexingShare::Idle
        }
        share => share,
    }
}

/// How long changes may stay uncommitted. Caught up (the oldest change younger than the
/// commit interval), it is the commit interval: a change is searchable within it, as
/// always. Behind, it stretches to a quarter of the lag (at most eight intervals): each
/// commit then takes a bigger batch, and fewer commits per document leave more of the
/// scarce CPU to the documents themselves, for at most a quarter more staleness.
pub fn commit_every(commit_interval: Duration, lag: Duration) -> Duration {
    (lag / 4).clamp(commit_interval, commit_interval * 8)
}

/// How many changes an [`crate::IndexOp`] counts as in the backlog: each message of an
/// insert, one per other change; requests (flush, rebuild, shutdown) none.
pub(crate) fn changes_in(op: &crate::IndexOp) -> u64 {
    use crate::IndexOp;
    match op {
        IndexOp::Insert(messages) => messages.len() as u64,
        IndexOp::Upsert(_) | IndexOp::Remove { .. } | IndexOp::RemoveRange { .. } => 1,
        IndexOp::Flush(_) | IndexOp::Rebuild { .. } | IndexOp::Shutdown => 0,
    }
}

/// Where the backlog stands: changes still in the channel, and changes the indexer has
/// taken but not yet made searchable, each with the arrival time of its oldest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BacklogState {
    queued: u64,
    queued_since: Option<Instant>,
    taken: u64,
    taken_since: Option<Instant>,
    /// The share indexing runs at.
    pub(crate) share: IndexingShare,
    /// How many times indexing has started catching up.
    pub(crate) catch_ups: u64,
}

impl BacklogState {
    /// A producer queued `changes` at `now`.
    pub(crate) fn queue(&mut self, changes: u64, now: Instant) {
        if changes > 0 {
            self.queued += changes;
            self.queued_since.get_or_insert(now);
        }
    }

    /// The indexer took everything queued; returns when the oldest of it was queued.
    pub(crate) fn take(&mut self) -> Option<Instant> {
        let since = self.queued_since.take();
        self.taken += std::mem::take(&mut self.queued);
        self.taken_since = self.taken_since.or(since);
        since
    }

    /// A commit made `changes` of the taken ones searchable; the rest (taken after the
    /// commit's point) were queued no earlier than `rest_since`.
    pub(crate) fn searchable(&mut self, changes: u64, rest_since: Option<Instant>) {
        self.taken = self.taken.saturating_sub(changes);
        self.taken_since = if self.taken == 0 { None } else { rest_since.or(self.taken_since) };
    }

    /// Changes accepted but not yet searchable.
    pub(crate) fn changes(&self) -> u64 {
        self.queued + self.taken
    }

    /// Age at `now` of the oldest change not yet searchable; zero when caught up.
    pub(crate) fn lag(&self, now: Instant) -> Duration {
        self.taken_since
            .or(self.queued_since)
            .map_or(Duration::ZERO, |since| now.saturating_duration_since(since))
    }
}

/// A view of an indexer's backlog, for metrics. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct IndexBacklog {
    pub(crate) state: Arc<Mutex<BacklogState>>,
}

impl IndexBacklog {
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut BacklogState) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Changes (messages inserted, edited or removed) accepted but not yet searchable.
    pub fn changes(&self) -> u64 {
        self.with(|state| state.changes())
    }

    /// How long the oldest change not yet searchable has waited; zero when caught up.
    pub fn lag(&self) -> Duration {
        self.with(|state| state.lag(Instant::now()))
    }

    /// The share indexing runs at now.
    pub fn share(&self) -> IndexingShare {
        self.with(|state| state.share)
    }

    /// How many times indexing has started catching up (its backlog passed its bound).
    pub fn catch_ups(&self) -> u64 {
        self.with(|state| state.catch_ups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: BacklogBound = BacklogBound { max_changes: 1_000, max_lag: Duration::from_secs(40) };

    #[test]
    fn indexing_yields_until_the_backlog_passes_its_bound_then_catches_up_well_under_it() {
        use IndexingShare::{CatchUp, Idle};
        let secs = Duration::from_secs;
        assert_eq!(next_share(Idle, 999, secs(39), BOUND), Idle);
        assert_eq!(next_share(Idle, 1_000, secs(0), BOUND), CatchUp);
        assert_eq!(next_share(Idle, 0, secs(40), BOUND), CatchUp);
        // Catching up, it keeps its share until both are at a quarter of the bound.
        assert_eq!(next_share(CatchUp, 999, secs(1), BOUND), CatchUp);
        assert_eq!(next_share(CatchUp, 250, secs(11), BOUND), CatchUp);
        assert_eq!(next_share(CatchUp, 251, secs(10), BOUND), CatchUp);
        assert_eq!(next_share(CatchUp, 250, secs(10), BOUND), Idle);
        assert_eq!(next_share(CatchUp, 0, secs(0), BOUND), Idle);
        assert_eq!(next_share(Idle, 500, secs(20), BOUND), Idle);
    }

    #[test]
    fn commits_come_at_the_interval_when_caught_up_and_take_bigger_batches_when_behind() {
        let interval = Duration::from_secs(1);
        assert_eq!(commit_every(interval, Duration::ZERO), interval);
        assert_eq!(commit_every(interval, Duration::from_secs(3)), interval);
        assert_eq!(commit_every(interval, Duration::from_secs(12)), Duration::from_secs(3));
        assert_eq!(commit_every(interval, Duration::from_secs(600)), Duration::from_secs(8));
    }

    #[test]
    fn the_backlog_counts_changes_until_searchable_and_ages_from_the_oldest() {
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        let mut state = BacklogState::default();
        assert_eq!((state.changes(), state.lag(at(5))), (0, Duration::ZERO));
        state.queue(10, at(1));
        state.queue(0, at(2));
        state.queue(5, at(3));
        assert_eq!((state.changes(), state.lag(at(5))), (15, Duration::from_secs(4)));
        assert_eq!(state.take(), Some(at(1)));
        state.queue(2, at(6));
        assert_eq!((state.changes(), state.lag(at(7))), (17, Duration::from_secs(6)));
        // A commit of everything taken leaves the two queued since: they are the oldest.
        state.searchable(15, None);
        assert_eq!((state.changes(), state.lag(at(7))), (2, Duration::from_secs(1)));
        assert_eq!(state.take(), Some(at(6)));
        // A commit in the middle of a batch: the rest counts from the batch's arrival.
        state.searchable(1, Some(at(6)));
        assert_eq!((state.changes(), state.lag(at(8))), (1, Duration::from_secs(2)));
        state.searchable(1, None);
        assert_eq!((state.changes(), state.lag(at(9))), (0, Duration::ZERO));
    }
}
