//! Cluster mode (`--cluster nats://… --node-id ID`): several nodes serve one chat
//! service, coordinated through NATS. Nothing here runs on a shard's event loop: one
//! `palaver-cluster` thread runs async-nats on a small tokio runtime, one
//! `palaver-replica` thread applies other nodes' writes, and shards talk to both by
//! message through the mesh's gateway index.
//!
//! - **Membership**: heartbeats on `palaver.hb`; a node is live while they arrive and
//!   owns rooms once it says it is ready ([`palaver_core::Membership`]).
//! - **Ownership**: a room belongs to the live ready node with the highest rendezvous
//!   weight, then to `shard_for` inside it. A room a node has just gained is `Moving`
//!   until the node has waited out the old owner and caught up with the log.
//! - **Forwarding**: a command for a room owned elsewhere goes to the owner by NATS
//!   request/reply (`palaver.cmd.<node>`); the owner alone assigns seq and stores.
//! - **The log**: every write a node originates is published to the JetStream stream
//!   `PALAVER_LOG` and acknowledged by it *before* it is applied locally and answered;
//!   every node applies everyone's writes in log order, so each keeps a full replica
//!   (history, search and reads are local) and a new owner continues a room's seqs
//!   from its replica.
//! - **The fence**: each room's records go to the room's own subject, appended only
//!   after the record the writer last saw there (`palaver_core::log_fence`): a node
//!   claims a room in the log before its first write, and one that lost the room (a
//!   stall, a view the others left) finds its late writes refused by the log.
//! - **Events**: stored messages reach other nodes' subscribers from the log (after
//!   their replica has them); ephemeral room events on `palaver.ev.<room>`; presence
//!   session changes on `palaver.presence`.

mod replica;
mod service;
mod wire;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use palaver_core::log_fence::LogFence;
use palaver_core::rendezvous_owner;
use palaver_protocol::{RoomId, UserId};

pub use crate::config::ClusterConfig;
pub use service::start;

/// Why this node could not join the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A cluster thread could not be started.
    #[error("cannot start a cluster thread: {0}")]
    Thread(std::io::Error),
    /// NATS is unreachable, or JetStream is off or refused the stream.
    #[error("{0}")]
    Nats(String),
    /// The local store could not say how far into the log it is.
    #[error("cannot read the log position: {0}")]
    Storage(#[from] palaver_storage::StorageError),
}

use crate::mesh::{Origin, RoomAction};

/// Heartbeat period.
const HEARTBEAT_MS: u64 = 250;
/// A node silent this long is dead; its rooms move.
const DEAD_AFTER_MS: u64 = 1_500;
/// A node that gains rooms waits this long before catching up with the log, so that
/// the previous owner (which lets go of them when it sees the same change) has
/// published what it had in flight.
const SETTLE_MS: u64 = 500;
/// A forwarded request without an answer after this long is answered `unavailable`.
const FORWARD_TIMEOUT_MS: u64 = 5_000;

/// Where a room's commands go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// This node owns the room and has caught up with its log.
    Local,
    /// Another node owns it.
    Remote(String),
    /// This node has just gained it (or no node owns rooms yet): not servable for a
    /// moment; clients are told `unavailable` and retry.
    Moving,
}

#[derive(Debug, Default)]
struct Ownership {
    /// Live ready nodes, sorted.
    owners: Vec<String>,
    /// The owner set this node last caught up under.
    settled: Vec<String>,
}

/// What shards (and the rest of the process) see of the cluster.
#[derive(Debug)]
pub struct Cluster {
    /// This node's id.
    pub node: String,
    /// Random per process start.
    pub incarnation: u64,
    ownership: RwLock<Ownership>,
    to_service: flume::Sender<service::ServiceCmd>,
    /// Live nodes (for `/metrics`).
    pub live_nodes: AtomicU64,
    /// Whether this node is in touch with the cluster and may own rooms (connected to
    /// NATS, not just resumed from a freeze); `/readyz` fails while it is not.
    pub serving: std::sync::atomic::AtomicBool,
    /// Commands forwarded to other nodes.
    pub forwarded: AtomicU64,
    /// Log records applied from other nodes.
    pub applied_records: AtomicU64,
    /// The log position this replica has applied.
    pub log_position: Arc<AtomicU64>,
    /// Messages another node stored in a room this node believed it owned.
    pub ownership_conflicts: AtomicU64,
    /// Log positions of this node's own records already applied to its store.
    own_applied: std::sync::Mutex<std::collections::BTreeSet<u64>>,
    /// Serials of this node's own records whose outcome stayed unknown (never applied
    /// here: the replica applies them from the log if it has them).
    own_abandoned: std::sync::Mutex<std::collections::BTreeSet<u64>>,
    /// The serial of this node's next record.
    next_serial: AtomicU64,
    /// This node's leases on rooms' log subjects (used by the commit thread).
    fence: std::sync::Mutex<LogFence>,
    /// The clock of the fence's stay-away times.
    started: std::time::Instant,
    /// Room writes the log refused because another node had written the room.
    pub fenced_writes: AtomicU64,
    /// Rooms this node claimed in the log.
    pub claims: AtomicU64,
    /// The position before which this node last trimmed the log (0: never).
    pub trimmed_before: AtomicU64,
    /// Rooms whose replica here was found to differ from the log, being rebuilt.
    diverged: std::sync::Mutex<std::collections::HashSet<RoomId>>,
    /// Whether `diverged` holds any room (the route's fast path).
    diverged_any: std::sync::atomic::AtomicBool,
    /// Rooms this replica rebuilt from the log.
    pub rebuilt_rooms: AtomicU64,
    /// The log position of this node's last change of each pair of users it changed,
    /// while this replica has not passed it (absent once an append's outcome was
    /// unknown).
    own_pairs: std::sync::Mutex<std::collections::HashMap<(UserId, UserId), u64>>,
}

impl Cluster {
    /// Where commands for `room` go now.
    pub fn route(&self, room: &RoomId) -> Route {
        let ownership = self.ownership.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        match rendezvous_owner(&ownership.owners, room) {
            None => Route::Moving,
            Some(owner) if owner == self.node => {
                if self.is_diverged(room) {
                    // Being rebuilt from the log: not served from this replica meanwhile.
                    Route::Moving
                } else if rendezvous_owner(&ownership.settled, room) == Some(self.node.as_str()) {
                    Route::Local
                } else {
                    Route::Moving
                }
            }
            Some(owner) => Route::Remote(owner.to_owned()),
        }
    }

    /// Sends a command to the node that owns its room; the answer comes back to shard
    /// `hub` as a `ForwardedReply`.
    pub fn forward(&self, node: String, hub: usize, origin: Origin, action: RoomAction) {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
        let _ = self.to_service.send(service::ServiceCmd::Forward { node, hub, origin, action });
    }

    fn set_owners(&self, owners: Vec<String>) {
        // A room this node loses is claimed anew if it owns it again later.
        self.fence().release_lost(|room| rendezvous_owner(&owners, room) == Some(self.node.as_str()));
        self.ownership.write().unwrap_or_else(std::sync::PoisonError::into_inner).owners = owners;
    }

    /// Whether `room`'s replica here was found to differ from the log and is being
    /// rebuilt.
    pub fn is_diverged(&self, room: &RoomId) -> bool {
        self.diverged_any.load(Ordering::Acquire)
            && self.diverged.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(room)
    }

    /// `room`'s replica differs from the log: this node stops serving it (and refuses its
    /// own writes still on their way) until it is rebuilt.
    fn mark_diverged(&self, room: &RoomId) {
        let mut diverged = self.diverged.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        diverged.insert(room.clone());
        self.diverged_any.store(true, Ordering::Release);
        self.fence().spoil(room);
    }

    /// `room` was rebuilt from the log: served again.
    fn clear_diverged(&self, room: &RoomId) {
        let mut diverged = self.diverged.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        diverged.remove(room);
        self.diverged_any.store(!diverged.is_empty(), Ordering::Release);
    }

    /// Records this node's last change of a pair (`None`: its outcome is unknown).
    fn own_pair_last(&self, lower: &UserId, higher: &UserId, position: Option<u64>) {
        let mut pairs = self.own_pairs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // A change this replica has passed is seen by every decision made from now on
        // (they read the position first): only the ones still ahead of it need
        // remembering. (A decision made before and still on its way may then be refused
        // and retried: safe, and rare.)
        let seen = self.seen();
        pairs.retain(|_, at| *at > seen);
        let key = (lower.clone(), higher.clone());
        match position {
            Some(position) => pairs.insert(key, position),
            None => pairs.remove(&key),
        };
    }

    /// Whether the pair's record at `position` is this node's last change of it.
    fn own_pair_last_is(&self, lower: &UserId, higher: &UserId, position: u64) -> bool {
        let pairs = self.own_pairs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        pairs.get(&(lower.clone(), higher.clone())) == Some(&position)
    }

    /// The log position this node's replica has applied: what a decision made now sees
    /// of other nodes' writes.
    pub fn seen(&self) -> u64 {
        self.log_position.load(Ordering::Acquire)
    }

    /// A room's owner was loaded from storage here: its writes are decided afresh (a
    /// refused write no longer spoils them).
    pub fn room_loaded(&self, room: &RoomId) {
        self.fence().reloaded(room);
    }

    fn fence(&self) -> std::sync::MutexGuard<'_, LogFence> {
        self.fence.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Milliseconds since this process joined (the fence's clock).
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Records that this node caught up under `owners` (if they are still current).
    fn settle(&self, owners: &[String]) -> bool {
        let mut ownership = self.ownership.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if ownership.owners == owners {
            ownership.settled = owners.to_vec();
            true
        } else {
            false
        }
    }

    /// The cluster's metric families for `/metrics`.
    pub fn render_metrics(&self, out: &mut crate::metrics::Exposition) {
        out.gauge(
            "palaver_cluster_live_nodes",
            "Live nodes this node hears (itself included).",
            self.live_nodes.load(Ordering::Relaxed) as f64,
        );
        out.gauge(
            "palaver_cluster_serving",
            "1 while this node is in touch with the cluster (connected to NATS, not resuming from a freeze) and may own rooms.",
            u8::from(self.serving.load(Ordering::Relaxed)) as f64,
        );
        out.counter(
            "palaver_cluster_forwarded",
            "Commands forwarded to the owning node.",
            self.forwarded.load(Ordering::Relaxed),
        );
        out.counter(
            "palaver_cluster_applied_records",
            "Cluster log records from other nodes applied here.",
            self.applied_records.load(Ordering::Relaxed),
        );
        out.gauge(
            "palaver_cluster_log_position",
            "Cluster log position applied by this replica.",
            self.log_position.load(Ordering::Relaxed) as f64,
        );
        out.counter(
            "palaver_cluster_fenced_writes",
            "Room writes the cluster log refused because another node had written the room.",
            self.fenced_writes.load(Ordering::Relaxed),
        );
        out.counter(
            "palaver_cluster_room_claims",
            "Rooms this node claimed in the cluster log (ownership epochs).",
            self.claims.load(Ordering::Relaxed),
        );
        out.gauge(
            "palaver_cluster_diverged_rooms",
            "Rooms whose replica here differs from the cluster log, being rebuilt from it (0 when healthy).",
            self.diverged.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len() as f64,
        );
        out.counter(
            "palaver_cluster_rebuilt_rooms",
            "Rooms this replica found different from the cluster log and rebuilt from it.",
            self.rebuilt_rooms.load(Ordering::Relaxed),
        );
        out.gauge(
            "palaver_cluster_log_trimmed_before",
            "The position before which this node (the trimmer) last trimmed the cluster log (0: never).",
            self.trimmed_before.load(Ordering::Relaxed) as f64,
        );
        out.counter(
            "palaver_cluster_ownership_conflicts",
            "Messages stored by another node in a room this node owned.",
            self.ownership_conflicts.load(Ordering::Relaxed),
        );
    }
}
