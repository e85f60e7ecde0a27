//! Trimming a cluster's shared log, as pure decisions.
//!
//! Every node applies the whole log to its own replica, so a record may go once every
//! node has applied it, and the log need keep only a tail for nodes that fall behind for
//! a while (a restart, a short outage). A node that is behind the trimmed point, or a new
//! node, starts from a copy of another node's store (a backup: it carries the log
//! position it was taken at) and reads the tail from there.
//!
//! One node trims: the live node with the lowest id, so two never race. It first
//! *announces* the point it will trim before (in its heartbeats), and trims only after
//! the others have heard it: a node drops its leases on rooms whose last record falls
//! before the point ([`crate::log_fence::LogFence::forget_before`]), since a trimmed
//! subject no longer ends with that record and an append expecting it would be refused
//! as if another node had taken the room. Usernames' records are never trimmed: each is
//! the fence that keeps its name unique.

/// How much of the log to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrimPolicy {
    /// Records kept at the tail in any case (0: never trim).
    pub keep: u64,
    /// The fewest records worth one trim.
    pub step: u64,
}

/// Where to trim a log holding positions `first..=last` when the slowest live node has
/// applied up to `slowest_applied`: the position before which every record may go (it
/// stays), or `None` when there is not yet enough to trim.
pub fn trim_point(policy: TrimPolicy, first: u64, last: u64, slowest_applied: u64) -> Option<u64> {
    if policy.keep == 0 {
        return None;
    }
    let keep_from = last.saturating_sub(policy.keep).saturating_add(1);
    let point = keep_from.min(slowest_applied.saturating_add(1));
    (point >= first.saturating_add(policy.step.max(1))).then_some(point)
}

/// Whether `me` is the node that trims among `live` (the lowest id).
pub fn is_trimmer(me: &str, live: &[String]) -> bool {
    live.iter().map(String::as_str).min() == Some(me)
}

/// Whether a node whose replica has applied up to `applied` can follow a log whose
/// first record is at `first` (0 or 1: nothing trimmed): it needs every record after
/// what it applied.
pub fn can_follow(applied: u64, first: u64) -> bool {
    first <= applied.saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: TrimPolicy = TrimPolicy { keep: 100, step: 10 };

    #[test]
    fn the_log_keeps_its_tail_and_what_a_live_node_still_needs() {
        // 1..=1000, everyone caught up: keep the last 100.
        assert_eq!(trim_point(POLICY, 1, 1_000, 1_000), Some(901));
        // A node at 500 still needs 501..: nothing before it goes beyond that.
        assert_eq!(trim_point(POLICY, 1, 1_000, 500), Some(501));
        // Already trimmed to 901: nothing more until a step's worth.
        assert_eq!(trim_point(POLICY, 901, 1_005, 1_005), None);
        assert_eq!(trim_point(POLICY, 901, 1_010, 1_010), Some(911));
        // A short log, or trimming off.
        assert_eq!(trim_point(POLICY, 1, 50, 50), None);
        assert_eq!(trim_point(TrimPolicy { keep: 0, step: 10 }, 1, 1_000_000, 1_000_000), None);
        // A node that applied nothing holds everything.
        assert_eq!(trim_point(POLICY, 1, 1_000, 0), None);
    }

    #[test]
    fn one_node_trims_and_a_replica_behind_the_trim_cannot_follow() {
        let live = vec!["n2".to_owned(), "n1".to_owned(), "n3".to_owned()];
        assert!(is_trimmer("n1", &live));
        assert!(!is_trimmer("n2", &live));
        assert!(can_follow(0, 0));
        assert!(can_follow(0, 1));
        assert!(can_follow(900, 901));
        assert!(!can_follow(899, 901));
    }
}
