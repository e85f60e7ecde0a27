//! A shard: one pinned thread with its own monoio runtime. It accepts connections on
//! the shared port, owns the rooms that hash to it (single writer: seq, storage, fan-out
//! source), and delivers events to its own sockets. Shards talk only by messages.

mod conns;
mod fanout;
mod known_cids;
pub mod messages;
mod owner;
pub mod people;
mod relay;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

pub use conns::{Conn, Conns};
pub use fanout::{Subscribers, unsubscribe_all};
use messages::{Mesh, ShardMsg};
pub use owner::{OwnedRooms, room_ticks};
pub use people::{People, PresenceTable, presence_ticks};

use crate::conn::pacing::WritePacer;
use crate::shared::Shared;

/// How long a shutting-down shard waits for in-flight writes and for sockets to flush.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// One shard's state. Single-threaded: `Rc` and `RefCell`, never `Arc` and locks.
pub struct Shard {
    /// This shard's index.
    pub id: usize,
    /// Process-wide state.
    pub shared: Arc<Shared>,
    /// The connections living on this shard.
    pub conns: Conns,
    /// Rooms owned by this shard.
    pub owned: RefCell<OwnedRooms>,
    /// Local subscribers of any room.
    pub subscribers: RefCell<Subscribers>,
    /// Cluster: rooms owned by another node, with the local shards subscribed to them
    /// (this shard is their hub: it relays what the owner's node sends).
    pub relayed: RefCell<rustc_hash::FxHashMap<palaver_protocol::RoomId, std::collections::BTreeSet<usize>>>,
    /// Cluster: commands waiting for their room's ownership to settle.
    pub parked: RefCell<Vec<relay::Parked>>,
    /// Presence and people state (home role) and local presence followers.
    pub people: RefCell<People>,
    /// Tickets submitted to the committer and not yet reported back.
    pub outstanding_commits: Cell<usize>,
    /// Set once shutdown begins: no new connections or writes.
    pub draining: Cell<bool>,
    /// Adaptive write coalescing for this shard's sockets.
    pub write_pacer: Rc<WritePacer>,
}

impl Shard {
    /// A fresh shard.
    pub fn new(id: usize, shared: Arc<Shared>) -> Rc<Shard> {
        let people = People::new(shared.config.presence_interval_ms, shared.mesh.len());
        let write_pacer = WritePacer::new(Duration::from_millis(shared.config.write_pacing_ms));
        Rc::new(Shard {
            id,
            shared,
            conns: Conns::default(),
            owned: RefCell::new(OwnedRooms::default()),
            subscribers: RefCell::new(Subscribers::default()),
            relayed: RefCell::default(),
            parked: RefCell::default(),
            people: RefCell::new(people),
            outstanding_commits: Cell::new(0),
            draining: Cell::new(false),
            write_pacer,
        })
    }

    /// The mesh of shard inboxes.
    pub fn mesh(&self) -> &Mesh {
        &self.shared.mesh
    }

    /// Runs the inbox until the shard exits. Messages are drained in batches per wake-up.
    pub async fn run_inbox(self: &Rc<Self>, inbox: flume::Receiver<ShardMsg>) {
        while let Ok(first) = inbox.recv_async().await {
            let mut next = Some(first);
            while let Some(msg) = next {
                if matches!(msg, ShardMsg::Exit) {
                    return;
                }
                self.handle(msg);
                next = inbox.try_recv().ok();
            }
        }
    }

    fn handle(self: &Rc<Self>, msg: ShardMsg) {
        match msg {
            ShardMsg::Command { origin, action } => owner::on_command(self, origin, action),
            ShardMsg::Committed { works, result } => owner::on_committed(self, works, result),
            ShardMsg::Unsubscribe { room, shard } => owner::on_unsubscribe(self, &room, shard),
            ShardMsg::Deliver(delivery) => fanout::deliver(self, &delivery),
            ShardMsg::Ephemeral(event) => fanout::deliver_ephemeral(self, &event),
            ShardMsg::Reply(reply) => fanout::on_reply(self, reply),
            ShardMsg::MemberGone { room, user } => fanout::member_gone(self, &room, &user),
            ShardMsg::RoomGone { room } => fanout::room_gone(self, &room),
            ShardMsg::People { origin, action } => people::on_people(self, origin, action),
            ShardMsg::SessionUp { user, shard } => people::on_session_up(self, user, shard),
            ShardMsg::SessionDown { user, shard } => people::on_session_down(self, user, shard),
            ShardMsg::Watch { user, shard, on } => people::on_watch(self, user, shard, on),
            ShardMsg::Notify(notice) => people::on_notify(self, *notice),
            ShardMsg::UserEvent(notice) => people::on_user_event(self, &notice),
            ShardMsg::Presence(fanout) => people::on_presence(self, &fanout),
            ShardMsg::ClusterView => relay::on_cluster_view(self),
            ShardMsg::ForwardedReply { origin_shard, reply } => {
                relay::on_forwarded_reply(self, origin_shard, reply)
            }
            ShardMsg::Replicated(message) => relay::on_replicated(self, *message),
            ShardMsg::RoomEvent(event) => relay::on_room_event(self, *event),
            ShardMsg::Shutdown => {
                if !self.draining.replace(true) {
                    monoio::spawn(drain(self.clone()));
                }
            }
            ShardMsg::Exit => {}
        }
    }
}

/// Graceful shutdown of one shard: let acknowledged-pending writes finish and be
/// answered, then close every socket with 1001 and let the writers flush.
async fn drain(shard: Rc<Shard>) {
    let deadline = std::time::Instant::now() + DRAIN_TIMEOUT;
    while shard.outstanding_commits.get() > 0 && std::time::Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    for conn in shard.conns.all() {
        conn.outbound.close(crate::ws::CloseCode::GoingAway, "server shutting down");
    }
    while !shard.conns.is_empty() && std::time::Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    shard.mesh().send(shard.id, ShardMsg::Exit);
}
