//! What an owner knows of a room's stored cids, so that the idempotency check of a new
//! message (almost always "not stored") skips the storage lookup. The knowledge is a
//! [`CidFilter`]: exact in the direction that matters (a stored cid is never reported
//! absent), with the storage lookup for "maybe".
//!
//! A room created here, or loaded with no messages, starts with an empty filter. A room
//! loaded with history is scanned only when it takes its first message (a room that is
//! only read costs no scan): a background thread scans its stored cids into a filter
//! while its sends look every cid up, and the cids it appends meanwhile are kept and
//! added on arrival, so the filter misses none that the scan could not see.
//!
//! Not in a cluster: there another node's writes to a room can reach this node's storage
//! (from the shared log) before its owner hears of them, and only the storage lookup
//! sees those.

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use palaver_protocol::RoomId;
use palaver_storage::{CidFilter, CidHash};

use super::Shard;
use crate::mesh::ShardMsg;

/// Tells the builds apart: the answer to an earlier load of the same room (unloaded and
/// loaded again since) must not replace the filter of the later one.
static NEXT_BUILD: AtomicU64 = AtomicU64::new(1);

/// See the module docs.
#[derive(Debug)]
pub(super) enum KnownCids {
    /// Every cid stored for the room, and every cid appended since, is in the filter.
    Filter(CidFilter),
    /// Loaded with history and no message taken since: not scanned yet.
    Unscanned,
    /// A filter is being built; the hashes of the cids appended since it started.
    Building { build: u64, appended: Vec<CidHash> },
    /// Look every cid up: in a cluster, or the room holds more than a filter takes, or
    /// the build failed.
    LookUp,
}

impl KnownCids {
    /// Whether a scan building the room's filter is under way (its answer would find
    /// the room gone).
    pub(super) fn is_building(&self) -> bool {
        matches!(self, Self::Building { .. })
    }

    /// What an owner knows as it starts holding a room, with or without messages.
    pub(super) fn at_start(shard: &Shard, has_messages: bool) -> Self {
        match (shard.shared.cluster.is_some(), has_messages) {
            (true, _) => Self::LookUp,
            (false, true) => Self::Unscanned,
            (false, false) => Self::Filter(CidFilter::new()),
        }
    }

    /// `false` only if storage certainly holds no such cid for the room.
    pub(super) fn may_be_stored(&self, hash: CidHash) -> bool {
        match self {
            Self::Filter(filter) => filter.may_contain(hash),
            Self::Unscanned | Self::Building { .. } | Self::LookUp => true,
        }
    }

    /// Notes a cid submitted for storage in `room`; the first one of an unscanned room
    /// starts its scan (a rejected send never does).
    pub(super) fn appended(&mut self, shard: &Rc<Shard>, room: &RoomId, hash: CidHash) {
        if matches!(self, Self::Unscanned) {
            *self = start_build(shard, room.clone());
        }
        self.record(hash);
    }

    fn record(&mut self, hash: CidHash) {
        match self {
            Self::Filter(filter) => {
                if filter.insert(hash).is_err() {
                    *self = Self::LookUp;
                }
            }
            Self::Building { appended, .. } => appended.push(hash),
            // Unscanned is not reached (`appended` starts the scan first); looking up
            // is always safe.
            Self::Unscanned | Self::LookUp => {}
        }
    }

    /// The build `build` ended with `filter` (`None`: too many cids, or it failed).
    pub(super) fn built(&mut self, build: u64, filter: Option<CidFilter>) {
        let Self::Building { build: current, appended } = self else { return };
        if *current != build {
            return;
        }
        *self = match filter {
            Some(mut filter) => {
                if appended.iter().all(|&hash| filter.insert(hash).is_ok()) {
                    Self::Filter(filter)
                } else {
                    Self::LookUp
                }
            }
            None => Self::LookUp,
        };
    }
}

/// Starts building the filter of a room loaded with history: returns the state to hold
/// it in until the answer comes back.
fn start_build(shard: &Rc<Shard>, room: RoomId) -> KnownCids {
    let build = NEXT_BUILD.fetch_add(1, Ordering::Relaxed);
    let shard = Rc::clone(shard);
    monoio::spawn(async move {
        let store = Arc::clone(&shard.shared.store);
        let scanned = room.clone();
        let filter = shard.shared.lanes.scans.run(move || store.cid_filter(&scanned)).await;
        let filter = match filter {
            Ok(Ok(filter)) => filter,
            Ok(Err(e)) => {
                tracing::warn!("building the cid filter of {room}: {e}; its sends look cids up");
                None
            }
            Err(_) => None,
        };
        // The room's state belongs to the inbox task: the answer goes there.
        shard.mesh().send(shard.id, ShardMsg::CidsBuilt { room, build, filter });
    });
    KnownCids::Building { build, appended: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palaver_protocol::ClientMsgId;

    fn hash(s: &str) -> CidHash {
        CidHash::of(
            &palaver_protocol::UserId::parse("u_tester").expect("valid id"),
            &ClientMsgId::parse(s).expect("valid cid"),
        )
    }

    #[test]
    fn cids_appended_during_a_build_join_its_filter() {
        let mut known = KnownCids::Building { build: 7, appended: Vec::new() };
        known.record(hash("during"));
        assert!(known.may_be_stored(hash("anything")), "while building, everything is looked up");
        let mut scanned = CidFilter::new();
        scanned.insert(hash("before")).expect("room");
        known.built(7, Some(scanned));
        assert!(known.may_be_stored(hash("before")));
        assert!(known.may_be_stored(hash("during")));
        known.record(hash("after"));
        assert!(known.may_be_stored(hash("after")));
    }

    #[test]
    fn an_unscanned_room_looks_everything_up() {
        let mut known = KnownCids::Unscanned;
        assert!(known.may_be_stored(hash("anything")));
        known.record(hash("x"));
        assert!(matches!(known, KnownCids::Unscanned));
    }

    #[test]
    fn an_answer_for_an_earlier_load_is_ignored() {
        let mut known = KnownCids::Building { build: 8, appended: Vec::new() };
        known.built(7, Some(CidFilter::new()));
        assert!(matches!(known, KnownCids::Building { build: 8, .. }));
    }

    #[test]
    fn a_failed_build_falls_back_to_lookups() {
        let mut known = KnownCids::Building { build: 1, appended: vec![hash("x")] };
        known.built(1, None);
        assert!(matches!(known, KnownCids::LookUp));
        assert!(known.may_be_stored(hash("y")));
    }
}
