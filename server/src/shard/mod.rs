//! A shard: one pinned thread with its own monoio runtime. It accepts connections on
//! the shared port, owns the rooms that hash to it (single writer: seq, storage, fan-out
//! source), and delivers events to its own sockets. Shards talk only by messages.

mod conns;
pub mod fanout;
mod known_cids;
mod owner;
pub mod people;
mod relay;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::mesh::{Mesh, ShardMsg};
pub use conns::{Conn, Conns};
pub use fanout::{Subscribers, unsubscribe_all};
pub use owner::OwnedRooms;

use crate::io::pacing::WritePacer;
use crate::shared::Shared;

/// Takes a QUIC datagram another shard passed on (the shard's QUIC endpoint).
pub type QuicInlet = Box<dyn Fn(crate::mesh::ForwardedDatagram)>;

/// How long a shutting-down shard waits for in-flight writes and for sockets to flush.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// One shard: what its tasks share (the connections and their plumbing). Single-threaded:
/// `Rc` and `RefCell`, never `Arc` and locks. The rooms, the relay and the people home
/// are the inbox task's alone ([`State`]).
pub struct Shard {
    /// This shard's index.
    pub id: usize,
    /// Process-wide state.
    pub shared: Arc<Shared>,
    /// The connections living on this shard.
    pub conns: Conns,
    /// Local subscribers of any room.
    pub subscribers: RefCell<Subscribers>,
    /// Local sockets following users' presence.
    pub followers: RefCell<people::Followers>,
    /// Tickets submitted to the committer and not yet reported back.
    pub outstanding_commits: Cell<usize>,
    /// Set once shutdown begins: no new connections or writes.
    pub draining: Cell<bool>,
    /// Adaptive write coalescing for this shard's sockets.
    pub write_pacer: Rc<WritePacer>,
    /// HTTP routes waiting for a room command's answer, by the id they asked as.
    pub route_waiters:
        RefCell<rustc_hash::FxHashMap<crate::mesh::ConnId, flume::Sender<palaver_protocol::ReplyBody>>>,
    /// Where QUIC datagrams other shards pass on go (the shard's QUIC endpoint, once
    /// it runs).
    pub quic_inlet: RefCell<Option<QuicInlet>>,
}

impl Shard {
    /// A fresh shard.
    pub fn new(id: usize, shared: Arc<Shared>) -> Rc<Shard> {
        let write_pacer = WritePacer::new(Duration::from_millis(shared.config.write_pacing_ms));
        Rc::new(Shard {
            id,
            shared,
            conns: Conns::default(),
            subscribers: RefCell::new(Subscribers::default()),
            followers: RefCell::default(),
            outstanding_commits: Cell::new(0),
            draining: Cell::new(false),
            write_pacer,
            route_waiters: RefCell::default(),
            quic_inlet: RefCell::default(),
        })
    }

    /// The mesh of shard inboxes.
    pub fn mesh(&self) -> &Mesh {
        &self.shared.mesh
    }

    /// Sends `op` on `room` to the room's owner as `user`, for an HTTP route: the answer
    /// arrives on the returned channel (the room's owner decides, as for a socket's op).
    pub fn ask_room(
        &self,
        user: palaver_protocol::UserId,
        room: palaver_protocol::RoomId,
        op: palaver_core::owner::RoomOp,
    ) -> (crate::mesh::ConnId, flume::Receiver<palaver_protocol::ReplyBody>) {
        self.ask(user, crate::mesh::RoomAction::On { room, op })
    }

    /// Sends `action` to its room's owner as `user` (no socket): the answer arrives on
    /// the receiver, under the returned id (remove its waiter if you stop waiting).
    pub fn ask(
        &self,
        user: palaver_protocol::UserId,
        action: crate::mesh::RoomAction,
    ) -> (crate::mesh::ConnId, flume::Receiver<palaver_protocol::ReplyBody>) {
        let id = self.conns.reserve_id();
        let (answer, answered) = flume::bounded(1);
        self.route_waiters.borrow_mut().insert(id, answer);
        let origin = crate::mesh::Origin { shard: self.id, conn: id, re: 0, user };
        let owner = self.mesh().owner(action.room());
        self.mesh().send(owner, ShardMsg::Command { origin, action });
        (id, answered)
    }

    /// Closes this shard's sockets of the logins `end` ended (their tokens are refused
    /// from now on, so they would never authenticate again).
    fn close_ended_logins(&self, end: &palaver_core::logins::SessionEnd) {
        for conn in self.conns.of_ended_logins(end) {
            conn.outbound.close(crate::ws::CloseCode::SessionEnded, end.reason.close_reason());
        }
    }

    /// Runs the inbox until the shard exits: the task that owns the shard's [`State`].
    /// Messages are drained in batches per wake-up.
    pub async fn run_inbox(self: &Rc<Self>, inbox: flume::Receiver<ShardMsg>) {
        let mut state = State::new(&self.shared);
        while let Ok(first) = inbox.recv_async().await {
            let mut next = Some(first);
            while let Some(msg) = next {
                if matches!(msg, ShardMsg::Exit) {
                    return;
                }
                self.handle(&mut state, msg);
                next = inbox.try_recv().ok();
            }
        }
    }

    fn handle(self: &Rc<Self>, state: &mut State, msg: ShardMsg) {
        match msg {
            ShardMsg::Command { origin, action } => owner::on_command(self, state, origin, action),
            ShardMsg::Committed { works, result } => owner::on_committed(self, state, works, result),
            ShardMsg::Unsubscribe { room, shard } => owner::on_unsubscribe(state, &room, shard),
            ShardMsg::CidsBuilt { room, build, filter } => owner::on_cids_built(state, &room, build, filter),
            ShardMsg::RoomTick => owner::on_tick(self, state),
            ShardMsg::PresenceTick => people::on_tick(self, &mut state.home),
            ShardMsg::Deliver(delivery) => fanout::deliver(self, &delivery),
            ShardMsg::Ephemeral(event) => fanout::deliver_ephemeral(self, &event),
            ShardMsg::Reply(reply) => fanout::on_reply(self, reply),
            ShardMsg::DeliverThenReply { delivery, reply } => {
                fanout::deliver(self, &delivery);
                fanout::on_reply(self, reply);
            }
            ShardMsg::MemberGone { room, user } => fanout::member_gone(self, &room, &user),
            ShardMsg::RoomGone { room } => fanout::room_gone(self, &room),
            ShardMsg::LoginsEnded(end) => self.close_ended_logins(&end),
            ShardMsg::People { origin, action } => people::on_people(self, &mut state.home, origin, action),
            ShardMsg::SessionUp { user, shard } => people::on_session_up(self, &mut state.home, user, shard),
            ShardMsg::SessionDown { user, shard } => {
                people::on_session_down(self, &mut state.home, user, shard)
            }
            ShardMsg::Watch { user, shard, on } => people::on_watch(&mut state.home, user, shard, on),
            ShardMsg::Notify(notice) => people::on_notify(self, &state.home, *notice),
            ShardMsg::UserEvent(notice) => people::on_user_event(self, &notice),
            // Only the cluster gateway carries these.
            ShardMsg::RemoteUserEvent { .. } => {}
            ShardMsg::Presence(fanout) => people::on_presence(self, &fanout),
            ShardMsg::ClusterView => relay::on_cluster_view(self, state),
            ShardMsg::ForwardedReply { origin_shard, reply } => {
                relay::on_forwarded_reply(self, &mut state.relay, origin_shard, reply)
            }
            ShardMsg::Replicated(message) => relay::on_replicated(self, state, *message),
            ShardMsg::RoomEvent(event) => relay::on_room_event(self, state, *event),
            ShardMsg::QuicDatagram(datagram) => {
                if let Some(inlet) = self.quic_inlet.borrow().as_ref() {
                    inlet(*datagram);
                }
            }
            ShardMsg::Shutdown => {
                if !self.draining.replace(true) {
                    monoio::spawn(drain(self.clone()));
                }
            }
            ShardMsg::Exit => {}
        }
    }
}

/// What a shard's inbox task owns: the rooms it owns, its hub role in a cluster and its
/// people home. Nothing else reaches them: they change only by the messages it handles.
pub struct State {
    rooms: OwnedRooms,
    relay: relay::Relay,
    home: people::Home,
}

impl State {
    fn new(shared: &Shared) -> Self {
        Self {
            rooms: OwnedRooms::default(),
            relay: relay::Relay::default(),
            home: people::Home::new(shared.config.presence_interval_ms, shared.mesh.len()),
        }
    }
}

/// Ticks a shard's inbox for its periodic work: the owners' every 0.5 s, the people
/// home's several times per presence interval.
pub async fn ticks(shard: Rc<Shard>) {
    let presence_every = Duration::from_millis((shard.shared.config.presence_interval_ms / 4).clamp(25, 250));
    let mut next_room_tick = std::time::Instant::now() + owner::ROOM_TICK;
    loop {
        monoio::time::sleep(presence_every).await;
        if shard.draining.get() {
            return;
        }
        shard.mesh().send(shard.id, ShardMsg::PresenceTick);
        if std::time::Instant::now() >= next_room_tick {
            next_room_tick += owner::ROOM_TICK;
            shard.mesh().send(shard.id, ShardMsg::RoomTick);
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
