//! Cluster membership and room ownership, as pure functions of what a node has heard.
//!
//! Nodes announce themselves with heartbeats; a node is live while its heartbeats keep
//! arriving, and owns rooms only once it says it is ready (its replica has caught up
//! with the shared log). Each room is owned by the live, ready node with the highest
//! rendezvous weight for it, so a node joining or leaving moves only its own share.

use std::collections::BTreeMap;

use palaver_protocol::RoomId;

use crate::sharding::stable_hash;

/// A finalizer over FNV-1a: FNV alone mixes the last bytes poorly, and rendezvous
/// weights of similar node names must look independent.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The rendezvous (highest random weight) weight of `node` for `room`.
pub fn rendezvous_weight(node: &str, room: &RoomId) -> u64 {
    mix(stable_hash(node.as_bytes()) ^ mix(stable_hash(room.as_str().as_bytes())))
}

/// The owner of `room` among `nodes` (ties, which need a 64-bit collision, go to the
/// lower name), or `None` when there is no node.
pub fn rendezvous_owner<'a>(nodes: &'a [String], room: &RoomId) -> Option<&'a str> {
    nodes
        .iter()
        .map(|n| (rendezvous_weight(n, room), std::cmp::Reverse(n.as_str())))
        .max()
        .map(|(_, std::cmp::Reverse(n))| n)
}

/// What one heartbeat says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// The node's id.
    pub node: String,
    /// Random per process start: a restarted node is a new incarnation.
    pub incarnation: u64,
    /// Caught up with the shared log: may own rooms.
    pub ready: bool,
}

#[derive(Debug, Clone)]
struct Heard {
    incarnation: u64,
    ready: bool,
    last_ms: u64,
}

/// Who this node believes is live, from heartbeats and their absence.
#[derive(Debug, Clone)]
pub struct Membership {
    me: String,
    dead_after_ms: u64,
    heard: BTreeMap<String, Heard>,
}

/// How the live set changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembershipChange {
    /// Nodes that appeared (or came back as a new incarnation).
    pub joined: Vec<String>,
    /// Nodes that went silent, left, or were replaced by a new incarnation.
    pub left: Vec<String>,
    /// Whether the set of nodes that own rooms changed.
    pub owners_changed: bool,
}

impl Membership {
    /// A membership seen from node `me`; others are dead after `dead_after_ms` without
    /// a heartbeat.
    pub fn new(me: impl Into<String>, dead_after_ms: u64) -> Self {
        Self { me: me.into(), dead_after_ms, heard: BTreeMap::new() }
    }

    /// Records a heartbeat (this node's own included) received at `now_ms`.
    pub fn observe(&mut self, beat: &Heartbeat, now_ms: u64) -> MembershipChange {
        let before = self.owners();
        let mut change = MembershipChange::default();
        match self.heard.get_mut(&beat.node) {
            Some(h) if h.incarnation == beat.incarnation => {
                h.ready = beat.ready;
                h.last_ms = h.last_ms.max(now_ms);
            }
            Some(h) => {
                // A restart: the old incarnation is gone (its sessions with it).
                change.left.push(beat.node.clone());
                change.joined.push(beat.node.clone());
                *h = Heard { incarnation: beat.incarnation, ready: beat.ready, last_ms: now_ms };
            }
            None => {
                change.joined.push(beat.node.clone());
                let heard = Heard { incarnation: beat.incarnation, ready: beat.ready, last_ms: now_ms };
                self.heard.insert(beat.node.clone(), heard);
            }
        }
        change.owners_changed = before != self.owners();
        change
    }

    /// A node said it is leaving (graceful shutdown).
    pub fn depart(&mut self, node: &str, incarnation: u64) -> MembershipChange {
        let before = self.owners();
        let mut change = MembershipChange::default();
        if self.heard.get(node).is_some_and(|h| h.incarnation == incarnation) {
            self.heard.remove(node);
            change.left.push(node.to_owned());
        }
        change.owners_changed = before != self.owners();
        change
    }

    /// Forgets nodes silent for longer than the limit at `now_ms` (never this node).
    pub fn expire(&mut self, now_ms: u64) -> MembershipChange {
        let before = self.owners();
        let limit = self.dead_after_ms;
        let me = self.me.clone();
        let dead: Vec<String> = self
            .heard
            .iter()
            .filter(|(node, h)| **node != me && now_ms.saturating_sub(h.last_ms) > limit)
            .map(|(node, _)| node.clone())
            .collect();
        for node in &dead {
            self.heard.remove(node);
        }
        let owners_changed = before != self.owners();
        MembershipChange { joined: Vec::new(), left: dead, owners_changed }
    }

    /// Every live node, sorted.
    pub fn live(&self) -> Vec<String> {
        self.heard.keys().cloned().collect()
    }

    /// The live nodes that own rooms (ready), sorted.
    pub fn owners(&self) -> Vec<String> {
        self.heard.iter().filter(|(_, h)| h.ready).map(|(n, _)| n.clone()).collect()
    }

    /// The incarnation heard from `node`, if it is live.
    pub fn incarnation(&self, node: &str) -> Option<u64> {
        self.heard.get(node).map(|h| h.incarnation)
    }
}

/// Whether this node's view of the cluster is current enough for it to own rooms.
///
/// A node that cannot reach the broker hears no heartbeats and can publish nothing, so
/// it owns nothing; one that was frozen (a stopped process, a paused VM) must assume the
/// others declared it dead and took its rooms. In both cases it listens to heartbeats
/// for a full period after it is back before its ownership view counts again: by then
/// it has heard every live node, so it does not claim rooms that others hold.
#[derive(Debug, Clone)]
pub struct Standing {
    connected: bool,
    listening_since_ms: u64,
    last_tick_ms: Option<u64>,
    listen_ms: u64,
    max_gap_ms: u64,
}

impl Standing {
    /// A node that has just connected at time 0: it listens for `listen_ms`; a gap
    /// longer than `max_gap_ms` between two of its ticks means it was frozen.
    pub fn new(listen_ms: u64, max_gap_ms: u64) -> Self {
        Self { connected: true, listening_since_ms: 0, last_tick_ms: None, listen_ms, max_gap_ms }
    }

    /// The broker connection was lost.
    pub fn disconnected(&mut self) {
        self.connected = false;
    }

    /// The broker connection is back at `now_ms`: listen again.
    pub fn connected(&mut self, now_ms: u64) {
        self.connected = true;
        self.listening_since_ms = now_ms;
    }

    /// The node's periodic tick at `now_ms`; returns whether it may own rooms now.
    pub fn tick(&mut self, now_ms: u64) -> bool {
        if self.last_tick_ms.is_some_and(|last| now_ms.saturating_sub(last) > self.max_gap_ms) {
            self.listening_since_ms = now_ms;
        }
        self.last_tick_ms = Some(now_ms);
        self.serving(now_ms)
    }

    /// Whether the node may own rooms at `now_ms`.
    pub fn serving(&self, now_ms: u64) -> bool {
        self.connected && now_ms >= self.listening_since_ms.saturating_add(self.listen_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(node: &str, incarnation: u64, ready: bool) -> Heartbeat {
        Heartbeat { node: node.into(), incarnation, ready }
    }

    fn rooms(n: usize) -> Vec<RoomId> {
        (0..n).map(|i| RoomId::parse(&format!("r_room{i}")).unwrap()).collect()
    }

    #[test]
    fn ownership_spreads_and_a_leaving_node_moves_only_its_rooms() {
        let three: Vec<String> = ["n1", "n2", "n3"].map(String::from).to_vec();
        let two: Vec<String> = ["n1", "n3"].map(String::from).to_vec();
        let mut counts = BTreeMap::new();
        for room in rooms(3_000) {
            let before = rendezvous_owner(&three, &room).unwrap();
            *counts.entry(before).or_insert(0) += 1;
            let after = rendezvous_owner(&two, &room).unwrap();
            if before != "n2" {
                assert_eq!(before, after, "a room not owned by the leaver must not move");
            } else {
                assert_ne!(after, "n2");
            }
        }
        for (node, count) in counts {
            assert!((800..1200).contains(&count), "{node} owns {count} of 3000");
        }
        assert_eq!(rendezvous_owner(&[], &rooms(1)[0]), None);
    }

    #[test]
    fn nodes_live_while_heard_and_own_once_ready() {
        let mut m = Membership::new("n1", 1_500);
        let c = m.observe(&beat("n1", 1, true), 0);
        assert_eq!((c.joined.clone(), c.owners_changed), (vec!["n1".to_owned()], true));
        let c = m.observe(&beat("n2", 7, false), 100);
        assert_eq!(c.joined, vec!["n2".to_owned()]);
        assert!(!c.owners_changed, "not ready: owns nothing yet");
        assert!(m.observe(&beat("n2", 7, true), 300).owners_changed);
        assert_eq!(m.owners(), vec!["n1".to_owned(), "n2".to_owned()]);
        // Silence past the limit: n2 is dead; n1 (this node) never expires.
        assert!(m.expire(1_700).left.is_empty());
        let c = m.expire(1_801);
        assert_eq!((c.left, c.owners_changed), (vec!["n2".to_owned()], true));
        assert_eq!(m.live(), vec!["n1".to_owned()]);
        // A restart is a new incarnation: it leaves and joins at once.
        m.observe(&beat("n3", 1, true), 2_000);
        let c = m.observe(&beat("n3", 2, false), 2_100);
        assert_eq!((c.left, c.joined), (vec!["n3".to_owned()], vec!["n3".to_owned()]));
        assert!(c.owners_changed);
        // A departure of an older incarnation is ignored.
        assert!(m.depart("n3", 1).left.is_empty());
        assert_eq!(m.depart("n3", 2).left, vec!["n3".to_owned()]);
    }

    #[test]
    fn a_node_cut_off_or_frozen_owns_nothing_until_it_has_listened_again() {
        let mut standing = Standing::new(750, 500);
        assert!(!standing.tick(0), "listens at start");
        assert!(!standing.tick(400));
        assert!(standing.tick(750));
        standing.disconnected();
        assert!(!standing.tick(800), "no broker: owns nothing");
        assert!(!standing.tick(1_200));
        standing.connected(1_250);
        assert!(!standing.tick(1_600));
        assert!(standing.tick(2_000));
        // Frozen for 3 s: the first tick after it starts listening again.
        assert!(!standing.tick(5_000));
        assert!(!standing.tick(5_400));
        assert!(standing.tick(5_750));
        // Ticks late but within the gap: still serving.
        assert!(standing.tick(6_200));
    }
}
