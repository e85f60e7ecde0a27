//! Putting indexing's threads at their [`IndexingShare`]: the indexer thread and the
//! tantivy threads it starts (they inherit its policy when created, and are found again by
//! name to change it later).
//!
//! Yielding is `SCHED_IDLE` (nice 19 where the kernel refuses it); catching up is
//! `SCHED_OTHER` at nice 10. Going back from a yield needs `CAP_SYS_NICE` or an
//! `RLIMIT_NICE` of at least 10 (the kernel treats a yielded thread as nice 20, and an
//! unprivileged thread may not lower its nice value past that limit), so indexing yields
//! only where a probe at start shows it can come back ([`starting_share`]): a backlog it
//! could never catch up would grow without bound.

use std::time::Duration;

use crate::backlog::IndexingShare;

/// The nice value of indexing when it catches up (and of the other background threads).
const CATCH_UP_NICE: i32 = 10;
/// The nice value of a yield where `SCHED_IDLE` is refused.
const YIELD_NICE: i32 = 19;
/// The short names (`/proc/.../comm`, 15 bytes) of indexing's threads: the indexer's own
/// and tantivy's indexing, document-store compression, segment updating and merge threads.
const THREAD_NAME_PREFIXES: [&str; 5] =
    ["search-indexer", "thrd-tantivy-in", "docstore-compre", "segment_updater", "merge_thread_"];
/// How often the pacer looks at the backlog.
pub(crate) const PACER_TICK: Duration = Duration::from_millis(250);

/// The share indexing starts at: yielding where it can take CPU back later, otherwise the
/// catch-up share for good (nice 10 keeps up with a saturated shard, so the backlog stays
/// bounded).
pub fn starting_share(can_take_back: bool) -> IndexingShare {
    if can_take_back { IndexingShare::Idle } else { IndexingShare::CatchUp }
}

/// How a thread is scheduled, as `/proc/<pid>/task/<tid>/stat` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadScheduling {
    /// The policy: 0 `SCHED_OTHER`, 3 `SCHED_BATCH`, 5 `SCHED_IDLE`.
    pub policy: u32,
    /// The nice value.
    pub nice: i32,
}

impl ThreadScheduling {
    /// Parses a `stat` line (fields after the parenthesised name: nice is the 19th field
    /// of the line, policy the 41st).
    pub fn parse(stat: &str) -> Option<ThreadScheduling> {
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        // `rest` starts at field 3 (the state).
        Some(ThreadScheduling {
            nice: fields.get(19 - 3)?.parse().ok()?,
            policy: fields.get(41 - 3)?.parse().ok()?,
        })
    }

    /// Whether this is `share`'s scheduling (the nice-19 fallback counts as a yield).
    pub fn is(self, share: IndexingShare) -> bool {
        match share {
            IndexingShare::Idle => self.policy == 5 || (self.policy == 0 && self.nice == YIELD_NICE),
            IndexingShare::CatchUp => self.policy == 0 && self.nice == CATCH_UP_NICE,
        }
    }
}

/// The threads of this process that do indexing, with their names and scheduling.
pub fn indexing_threads() -> Vec<(i32, String, ThreadScheduling)> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
    tasks
        .filter_map(|task| {
            let task = task.ok()?;
            let tid: i32 = task.file_name().to_str()?.parse().ok()?;
            let name = std::fs::read_to_string(task.path().join("comm")).ok()?.trim_end().to_owned();
            if !THREAD_NAME_PREFIXES.iter().any(|prefix| name.starts_with(prefix)) {
                return None;
            }
            let scheduling =
                ThreadScheduling::parse(&std::fs::read_to_string(task.path().join("stat")).ok()?)?;
            Some((tid, name, scheduling))
        })
        .collect()
}

/// Puts thread `tid` (0: the calling thread) at `share`. The nice value is set first: a
/// thread leaves `SCHED_IDLE` at the nice value it has.
fn put(tid: i32, share: IndexingShare) -> std::io::Result<&'static str> {
    let nice = |value| {
        let pid = if tid == 0 { Some(rustix::thread::gettid()) } else { rustix::process::Pid::from_raw(tid) };
        rustix::process::setpriority_process(pid, value).map_err(std::io::Error::from)
    };
    let policy = |policy| scheduler::set_policy(tid, policy, 0).map_err(|()| std::io::Error::last_os_error());
    match share {
        IndexingShare::CatchUp => {
            nice(CATCH_UP_NICE)?;
            policy(scheduler::Policy::Other)?;
            Ok("nice 10")
        }
        IndexingShare::Idle => match policy(scheduler::Policy::Idle) {
            Ok(()) => Ok("SCHED_IDLE"),
            Err(refused) => {
                tracing::debug!("SCHED_IDLE refused ({refused}); yielding at nice 19");
                nice(YIELD_NICE)?;
                Ok("nice 19")
            }
        },
    }
}

/// Puts the calling thread at `share` (before it creates tantivy's threads, which then
/// inherit it); returns how it yields or catches up, for the log.
pub(crate) fn put_this_thread(share: IndexingShare) -> std::io::Result<&'static str> {
    put(0, share)
}

/// Puts every indexing thread of the process at `share`. Every thread is tried, whatever
/// another's failure; one that has exited since the listing (tantivy's compressor and
/// merge threads come and go) is done. Returns the first real failure.
pub(crate) fn put_indexing_threads(share: IndexingShare) -> std::io::Result<()> {
    let mut first_failure = None;
    for (tid, name, scheduling) in indexing_threads() {
        if !scheduling.is(share) {
            match put(tid, share) {
                Err(e) if e.raw_os_error() != Some(rustix::io::Errno::SRCH.raw_os_error()) => {
                    first_failure.get_or_insert(std::io::Error::new(e.kind(), format!("thread {name}: {e}")));
                }
                _ => {}
            }
        }
    }
    first_failure.map_or(Ok(()), Err)
}

/// Whether indexing may yield: a throwaway thread yields and tries to come back.
pub(crate) fn can_take_back() -> Result<(), String> {
    let probe = std::thread::Builder::new().name("search-probe".into()).spawn(|| {
        put(0, IndexingShare::CatchUp).map_err(|e| format!("cannot set nice 10: {e}"))?;
        put(0, IndexingShare::Idle).map_err(|e| format!("cannot yield: {e}"))?;
        put(0, IndexingShare::CatchUp).map(|_| ()).map_err(|e| format!("cannot come back from a yield: {e}"))
    });
    match probe {
        Ok(probe) => probe.join().unwrap_or_else(|_| Err("the probe thread panicked".into())),
        Err(e) => Err(format!("cannot start the probe thread: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexing_yields_only_where_it_can_take_cpu_back() {
        assert_eq!(starting_share(true), IndexingShare::Idle);
        assert_eq!(starting_share(false), IndexingShare::CatchUp);
    }

    #[test]
    fn a_threads_scheduling_is_read_from_its_stat_line() {
        let stat = "4242 (thrd-tantivy-in) S 1 2 3 0 -1 4194368 10 0 0 0 5 1 0 0 39 19 9 0 100 \
                    0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 -1 1 0 5 0 0 0 0 0 0 0 0 0 0 0";
        let scheduling = ThreadScheduling::parse(stat).unwrap();
        assert_eq!(scheduling, ThreadScheduling { policy: 5, nice: 19 });
        assert!(scheduling.is(IndexingShare::Idle) && !scheduling.is(IndexingShare::CatchUp));
        // A name with spaces and parentheses does not shift the fields.
        let odd = stat.replace("(thrd-tantivy-in)", "(a (b) c)");
        assert_eq!(ThreadScheduling::parse(&odd), Some(scheduling));
        assert!(ThreadScheduling { policy: 0, nice: 10 }.is(IndexingShare::CatchUp));
        assert!(ThreadScheduling { policy: 0, nice: 19 }.is(IndexingShare::Idle));
        assert!(!ThreadScheduling { policy: 0, nice: 0 }.is(IndexingShare::Idle));
    }
}
