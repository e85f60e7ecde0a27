//! Fenced writes to a cluster's shared log, as pure decisions.
//!
//! In a cluster every room's records go to the log under that room's own subject, and
//! each is appended only if the subject's last record is the one the writer expects
//! (the broker's conditional append, JetStream's `Nats-Expected-Last-Subject-Sequence`).
//! A node holds a room's **lease** while the last record on the room's subject is its
//! own: it got the lease by appending a *claim* record (an ownership epoch) after the
//! record it last saw there, and keeps it while every append it makes lands right after
//! its previous one. Another node's claim or write in between makes the next append
//! fail, so a node that stalled, or believes in an ownership view the others have left,
//! cannot append to a room someone else took over: the log itself refuses it.
//!
//! [`LogFence`] is one node's table of leases. It decides, per room and per group
//! commit, whether a room's records may be appended at once (lease held), need a claim
//! first, or are refused; and it learns each outcome. A claim is made only when this
//! node's replica holds every record the room's subject has ([`check_claim`]), and the
//! records it guards follow the room's stored seqs, so the first append of a new lease
//! continues exactly the log the others wrote.
//!
//! It does not decide who *should* own a room (that is [`crate::Membership`] and
//! rendezvous hashing), and does no I/O: the driver asks the broker and carries out the
//! appends.

use std::collections::{HashMap, HashSet};

use palaver_protocol::RoomId;

/// Why a room's records were not appended. In every case nothing was written: the
/// writes must not be applied anywhere, and the client may retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// An earlier write of the room was refused (or its outcome is unknown) and the
    /// room's owner has not been loaded again since: these records were decided from a
    /// memory of the room that storage no longer matches.
    #[error("{room}: an earlier write of the room was refused; it is being reloaded")]
    Spoiled {
        /// The room.
        room: RoomId,
    },
    /// Another node appended to the room's subject after this node's last record (it
    /// claimed the room): this node lost the room and stays away from it for a moment.
    #[error("{room}: another node wrote this room's log; it moved")]
    Fenced {
        /// The room.
        room: RoomId,
    },
    /// This node's replica has not applied the room's last record yet, so it cannot
    /// claim the room (it would continue from an older state).
    #[error("{room}: this node has applied the log up to {applied}, the room's last record is at {log_last}")]
    Behind {
        /// The room.
        room: RoomId,
        /// The log position of the room's last record.
        log_last: u64,
        /// The log position this node's replica has applied.
        applied: u64,
    },
    /// This node has not been vouched for lately: it lost the broker, or it was frozen
    /// long enough for the others to take its rooms. Its leases are gone; once it is
    /// back in touch, its first write of each room claims it again.
    #[error("{room}: this node is not in touch with the cluster; try again")]
    Adrift {
        /// The room.
        room: RoomId,
    },
    /// The records' first message does not follow the room's stored log (the owner's
    /// memory of the room is older than its replica).
    #[error("{room}: seq {seq} does not follow the stored log, whose next seq is {expected}")]
    Stale {
        /// The room.
        room: RoomId,
        /// The seq of the first appended message.
        seq: u64,
        /// The seq that would follow the stored log.
        expected: u64,
    },
}

/// What to do with a room's records in this group commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// The lease is held: append them expecting the room's last record at `expected`.
    Append {
        /// The log position of this node's last record on the room's subject.
        expected: u64,
    },
    /// No lease: read the subject's last position from the broker, [`check_claim`],
    /// append a claim record expecting that position, then the records after it.
    Claim,
}

#[derive(Debug, Clone, Copy)]
enum Lease {
    /// The room's subject ends with this node's record at `last`.
    Held { last: u64 },
    /// Another node wrote the room: no claim before `until_ms`.
    Lost { until_ms: u64 },
}

/// One node's leases on rooms' log subjects.
#[derive(Debug)]
pub struct LogFence {
    leases: HashMap<RoomId, Lease>,
    /// Rooms with a refused write whose owner has not been loaded again since.
    spoiled: HashSet<RoomId>,
    /// How long a node that was fenced out of a room stays away from it.
    backoff_ms: u64,
    /// Until when this node's standing in the cluster was last vouched for.
    vouched_until_ms: u64,
}

impl LogFence {
    /// No leases yet; a node fenced out of a room makes no claim on it for `backoff_ms`
    /// (so two nodes whose ownership views disagree for a moment do not take the room
    /// from each other at every write).
    pub fn new(backoff_ms: u64) -> Self {
        Self { leases: HashMap::new(), spoiled: HashSet::new(), backoff_ms, vouched_until_ms: u64::MAX }
    }

    /// The node is in touch with the cluster (connected to the broker, hearing the
    /// others, not frozen) and vouches for itself until `until_ms`. A node keeps doing
    /// so while it serves; once a vouch lapses, every lease is dropped at the next plan,
    /// so a node that resumes from a freeze re-validates each room (a claim after its
    /// replica caught up) before its first write, instead of trusting leases the others
    /// may have ended while it could not see them. A fence never vouched for does not
    /// lapse.
    pub fn vouch(&mut self, until_ms: u64) {
        self.vouched_until_ms = until_ms;
    }

    /// How to append `room`'s records at `now_ms`.
    pub fn plan(&mut self, room: &RoomId, now_ms: u64) -> Result<Plan, Refusal> {
        if self.spoiled.contains(room) {
            return Err(Refusal::Spoiled { room: room.clone() });
        }
        if now_ms >= self.vouched_until_ms {
            self.leases.retain(|_, lease| matches!(lease, Lease::Lost { .. }));
            return Err(Refusal::Adrift { room: room.clone() });
        }
        match self.leases.get(room) {
            Some(Lease::Held { last }) => Ok(Plan::Append { expected: *last }),
            Some(Lease::Lost { until_ms }) if now_ms < *until_ms => {
                Err(Refusal::Fenced { room: room.clone() })
            }
            Some(Lease::Lost { .. }) => {
                self.leases.remove(room);
                Ok(Plan::Claim)
            }
            None => Ok(Plan::Claim),
        }
    }

    /// This node's claim record landed at `position`: it holds the room.
    pub fn claimed(&mut self, room: &RoomId, position: u64) {
        self.leases.insert(room.clone(), Lease::Held { last: position });
    }

    /// This node's records for `room` landed at `position`.
    pub fn appended(&mut self, room: &RoomId, position: u64) {
        self.leases.insert(room.clone(), Lease::Held { last: position });
    }

    /// The broker refused an append (the subject's last record was not the expected
    /// one): another node holds the room now. The room is spoiled.
    pub fn refused(&mut self, room: &RoomId, now_ms: u64) {
        self.leases.insert(room.clone(), Lease::Lost { until_ms: now_ms.saturating_add(self.backoff_ms) });
        self.spoil(room);
    }

    /// An append's outcome is unknown (no acknowledgement): whether the subject ends
    /// with it is unknown too, so the lease is gone (the next write claims again, which
    /// waits until this node's replica has the record if it landed), and the room is
    /// spoiled.
    pub fn unknown(&mut self, room: &RoomId) {
        if matches!(self.leases.get(room), Some(Lease::Held { .. })) {
            self.leases.remove(room);
        }
        self.spoil(room);
    }

    /// A write of `room` was refused, for any reason: the writes its owner decided after
    /// it (still on their way) assumed it, so they are refused too until the owner is
    /// loaded again ([`LogFence::reloaded`]). On one node the seq fence does this (they
    /// follow a hole); in a cluster another node may fill that hole, so it takes this.
    pub fn spoil(&mut self, room: &RoomId) {
        self.spoiled.insert(room.clone());
    }

    /// `room`'s owner was loaded from storage, with nothing of its earlier memory in
    /// flight: its writes are decided afresh.
    pub fn reloaded(&mut self, room: &RoomId) {
        self.spoiled.remove(room);
    }

    /// The ownership view changed: the leases of the rooms this node no longer owns
    /// (`still_owned` is false) are given up, so that if it owns one again later it
    /// claims it anew (after its replica caught up) rather than appending from an old
    /// lease another node's records have ended. The leases it keeps stay: they are
    /// only ever as good as the log's condition, which still guards every append (and
    /// claiming thousands of rooms again at every view change would hold up writes).
    pub fn release_lost(&mut self, still_owned: impl Fn(&RoomId) -> bool) {
        self.leases.retain(|room, lease| matches!(lease, Lease::Lost { .. }) || still_owned(room));
    }

    /// The log is about to be trimmed before `position`: a lease whose last record is
    /// older would expect a record the log no longer has, so it is given up (the next
    /// write of that room claims it again, without a refusal).
    pub fn forget_before(&mut self, position: u64) {
        self.leases.retain(|_, lease| !matches!(lease, Lease::Held { last } if *last < position));
    }

    /// Whether this node holds `room`'s lease.
    pub fn holds(&self, room: &RoomId) -> bool {
        matches!(self.leases.get(room), Some(Lease::Held { .. }))
    }
}

/// Whether this node may claim `room`, whose subject's last record is at `log_last`
/// (0: none), when its replica has applied the log up to `applied`, for records whose
/// first appended message (if any) carries `first_seq`. `stored_last_seq` reads the
/// room's last stored seq; it is called only once the replica is known to hold every
/// record of the room, so it sees them.
pub fn check_claim<E>(
    room: &RoomId,
    log_last: u64,
    applied: u64,
    first_seq: Option<u64>,
    stored_last_seq: impl FnOnce() -> Result<u64, E>,
) -> Result<Result<(), Refusal>, E> {
    if applied < log_last {
        return Ok(Err(Refusal::Behind { room: room.clone(), log_last, applied }));
    }
    if let Some(seq) = first_seq {
        let expected = stored_last_seq()? + 1;
        if seq != expected {
            return Ok(Err(Refusal::Stale { room: room.clone(), seq, expected }));
        }
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod simulation;

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> RoomId {
        RoomId::parse("r_one").unwrap()
    }

    #[test]
    fn a_lease_is_claimed_then_followed_and_lost_to_another_writer() {
        let mut fence = LogFence::new(1_000);
        assert_eq!(fence.plan(&room(), 0), Ok(Plan::Claim));
        fence.claimed(&room(), 7);
        assert_eq!(fence.plan(&room(), 0), Ok(Plan::Append { expected: 7 }));
        fence.appended(&room(), 9);
        assert_eq!(fence.plan(&room(), 0), Ok(Plan::Append { expected: 9 }));
        fence.refused(&room(), 100);
        assert!(!fence.holds(&room()));
        assert_eq!(fence.plan(&room(), 0), Err(Refusal::Spoiled { room: room() }));
        fence.reloaded(&room());
        assert_eq!(fence.plan(&room(), 1_099), Err(Refusal::Fenced { room: room() }));
        // A view change does not shorten the stay-away.
        fence.release_lost(|_| false);
        assert!(fence.plan(&room(), 500).is_err());
        assert_eq!(fence.plan(&room(), 1_100), Ok(Plan::Claim));
    }

    #[test]
    fn an_unknown_outcome_or_losing_the_room_ends_the_lease() {
        let mut fence = LogFence::new(1_000);
        fence.claimed(&room(), 3);
        fence.unknown(&room());
        assert!(fence.plan(&room(), 0).is_err(), "spoiled until reloaded");
        fence.reloaded(&room());
        assert_eq!(fence.plan(&room(), 0), Ok(Plan::Claim));
        fence.claimed(&room(), 5);
        fence.release_lost(|_| true);
        assert_eq!(fence.plan(&room(), 0), Ok(Plan::Append { expected: 5 }), "still owned: kept");
        fence.release_lost(|_| false);
        assert_eq!(fence.plan(&room(), 0), Ok(Plan::Claim));
    }

    #[test]
    fn a_lapsed_vouch_drops_every_lease_so_the_next_write_claims_again() {
        let other = RoomId::parse("r_two").unwrap();
        let mut fence = LogFence::new(1_000);
        fence.vouch(500);
        fence.claimed(&room(), 3);
        fence.claimed(&other, 4);
        assert_eq!(fence.plan(&room(), 499), Ok(Plan::Append { expected: 3 }));
        // Frozen past the vouch: the first plan after it refuses and drops every lease.
        assert_eq!(fence.plan(&room(), 3_000), Err(Refusal::Adrift { room: room() }));
        assert!(!fence.holds(&other));
        fence.vouch(4_000);
        assert_eq!(fence.plan(&room(), 3_100), Ok(Plan::Claim));
        assert_eq!(fence.plan(&other, 3_100), Ok(Plan::Claim));
    }

    #[test]
    fn a_trim_ends_the_leases_it_would_break() {
        let other = RoomId::parse("r_two").unwrap();
        let mut fence = LogFence::new(1_000);
        fence.claimed(&room(), 40);
        fence.claimed(&other, 90);
        fence.forget_before(50);
        assert_eq!(fence.plan(&room(), 0), Ok(Plan::Claim));
        assert_eq!(fence.plan(&other, 0), Ok(Plan::Append { expected: 90 }));
    }

    #[test]
    fn a_claim_needs_the_whole_subject_applied_and_the_next_seq() {
        let ok = |applied, first_seq, stored: u64| {
            check_claim::<()>(&room(), 10, applied, first_seq, || Ok(stored)).unwrap()
        };
        assert_eq!(ok(10, Some(4), 3), Ok(()));
        assert_eq!(ok(12, None, 3), Ok(()));
        assert_eq!(ok(9, Some(4), 3), Err(Refusal::Behind { room: room(), log_last: 10, applied: 9 }));
        assert_eq!(ok(10, Some(3), 3), Err(Refusal::Stale { room: room(), seq: 3, expected: 4 }));
    }
}
