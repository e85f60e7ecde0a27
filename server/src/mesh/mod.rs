//! What shards say to each other. Shards share nothing mutable; everything crosses by
//! these messages over each shard's inbox (a bounded-latency MPSC channel drained in
//! batches).

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
pub use palaver_core::owner::Subscribe;
use palaver_core::owner::{NewRoom, RoomOp, Settle};
use palaver_core::people::HomeSettle as PeopleSettle;
pub use palaver_core::people::LocalEffect;
pub use palaver_core::route::PeopleOp;
use palaver_protocol::{Codec, Message, ReplyBody, RoomId, ServerFrame, UserId};
use palaver_storage::StorageError;

use crate::io::lane::Lane;
use crate::io::wire::{DeflatedFrames, Wire};

mod presence;
pub use presence::PresenceTable;

/// A connection's id on its shard (never reused while the process runs).
pub type ConnId = u64;

/// Who asked: the connection (and its shard) an answer must go back to.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The shard holding the connection.
    pub shard: usize,
    /// The connection.
    pub conn: ConnId,
    /// The request id to answer.
    pub re: u64,
    /// The authenticated user.
    pub user: UserId,
}

/// A room command, sent to the room's owning shard (in a cluster, perhaps to the owning
/// node: hence serializable).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum RoomAction {
    /// Create a group room (its id was drawn by the origin shard).
    Create(NewRoom),
    /// Open (create if needed) the direct room of the caller and `peer`.
    OpenDirect {
        /// The pair's room (derived from both ids).
        room: RoomId,
        /// The other user.
        peer: UserId,
    },
    /// A request on an existing room.
    On {
        /// The room.
        room: RoomId,
        /// The request.
        op: RoomOp,
    },
}

impl RoomAction {
    /// The room this action is about.
    pub fn room(&self) -> &RoomId {
        match self {
            RoomAction::Create(new) => &new.id,
            RoomAction::OpenDirect { room, .. } | RoomAction::On { room, .. } => room,
        }
    }

    /// Whether it is a join (whose answer, ok or not, ends a pending join).
    pub fn is_join(&self) -> bool {
        matches!(self, RoomAction::On { op: RoomOp::Join { .. }, .. })
    }
}

/// An answer travelling back to the origin shard.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The connection.
    pub conn: ConnId,
    /// The request id.
    pub re: u64,
    /// Ok or error.
    pub body: ReplyBody,
    /// After a join: subscribe the connection.
    pub subscribe: Option<Subscribe>,
    /// After a leave: unsubscribe the connection from this room.
    pub unsubscribe: Option<RoomId>,
    /// This answers a join (success or not): the origin's pending-join count drops.
    pub was_join: Option<RoomId>,
}

impl Reply {
    /// A plain answer with no subscription change.
    pub fn plain(origin: &Origin, body: ReplyBody) -> Reply {
        Reply { conn: origin.conn, re: origin.re, body, subscribe: None, unsubscribe: None, was_join: None }
    }
}

/// An event whose complete frame per wire form (WebSocket JSON, WebSocket rkyv, QUIC
/// length-prefixed rkyv, and their permessage-deflate forms) is encoded the first time
/// any shard needs it, then shared by every socket on every shard: encode once per form
/// actually in use, never per recipient.
#[derive(Debug)]
pub struct LazyFrames {
    event: ServerFrame,
    /// Which lane the event travels in (read off the event once, for every recipient).
    lane: Lane,
    json: OnceLock<Option<Bytes>>,
    rkyv: OnceLock<Option<Bytes>>,
    /// The rkyv payload behind its length prefix, for QUIC connections.
    quic: OnceLock<Option<Bytes>>,
    /// The JSON payload behind its length prefix, for QUIC connections that chose JSON.
    quic_json: OnceLock<Option<Bytes>>,
    /// Compressed forms, made from the plain ones (allocated for the first recipient
    /// that negotiated permessage-deflate).
    deflated: OnceLock<Box<DeflatedFrames>>,
}

impl LazyFrames {
    /// Frames for `event`, none encoded yet.
    pub fn new(event: ServerFrame) -> Self {
        Self {
            lane: Lane::of(&event),
            event,
            json: OnceLock::new(),
            rkyv: OnceLock::new(),
            quic: OnceLock::new(),
            quic_json: OnceLock::new(),
            deflated: OnceLock::new(),
        }
    }

    /// The event.
    pub fn event(&self) -> &ServerFrame {
        &self.event
    }

    /// The lane the event travels in.
    pub fn lane(&self) -> Lane {
        self.lane
    }

    /// The frame for a connection framed as `wire` (`None` only if encoding failed, a
    /// bug that is logged).
    pub fn frame(&self, wire: Wire) -> Option<&Bytes> {
        let cell = match wire {
            Wire::WebSocket(Codec::Json, _) => &self.json,
            Wire::WebSocket(Codec::Rkyv, _) => &self.rkyv,
            Wire::Quic(Codec::Rkyv) => &self.quic,
            Wire::Quic(Codec::Json) => &self.quic_json,
        };
        let plain = cell
            .get_or_init(|| match wire.plain().encode(&self.event) {
                Ok(frame) => Some(frame),
                Err(e) => {
                    tracing::error!("cannot encode event: {e}");
                    None
                }
            })
            .as_ref()?;
        match wire.deflated_form(plain) {
            None => Some(plain),
            Some(form) => Some(self.deflated.get_or_init(Box::default).frame(form, plain)),
        }
    }
}

/// One stored message to fan out.
#[derive(Debug)]
pub struct Delivery {
    /// The `message` event, framed lazily (the message is read from it: room, seq and
    /// sender are not copied out).
    pub frames: LazyFrames,
    /// The same event flagged `blocked`, for receivers who blocked the sender (built
    /// the first time one needs it).
    pub flagged: OnceLock<LazyFrames>,
    /// When the message was known durable here (for `palaver_message_delivery_seconds`).
    pub durable_at: std::time::Instant,
}

impl Delivery {
    /// The delivery of a durable `message`, known durable now, none of its frames encoded
    /// yet.
    pub fn of(message: Message) -> Self {
        let frames = LazyFrames::new(ServerFrame::Event(palaver_protocol::Event::Message(message)));
        Delivery { frames, flagged: OnceLock::new(), durable_at: std::time::Instant::now() }
    }

    /// The message delivered (always there in a delivery made by [`Delivery::of`]).
    pub fn message(&self) -> Option<&Message> {
        match self.frames.event() {
            ServerFrame::Event(palaver_protocol::Event::Message(message)) => Some(message),
            _ => None,
        }
    }

    /// The frame for a connection framed as `wire` whose user has (`blocked`) or has
    /// not blocked the sender.
    pub fn frame(&self, wire: Wire, blocked: bool) -> Option<&Bytes> {
        if !blocked {
            return self.frames.frame(wire);
        }
        self.flagged
            .get_or_init(|| {
                let mut event = self.frames.event().clone();
                if let ServerFrame::Event(palaver_protocol::Event::Message(message)) = &mut event {
                    message.blocked = true;
                }
                LazyFrames::new(event)
            })
            .frame(wire)
    }
}

/// An event that carries no seq (typing, receipts): delivered to the live subscribers of
/// a room, optionally not to one user's own sockets, and never replayed.
#[derive(Debug)]
pub struct Ephemeral {
    /// The room.
    pub room: RoomId,
    /// A user whose own sockets do not get it (the typist).
    pub skip: Option<UserId>,
    /// The event, framed lazily.
    pub frames: LazyFrames,
}

/// Work whose durability a shard is waiting for.
#[derive(Debug)]
pub enum CommitWork {
    /// A room owner's writes: its owner is told how they settled.
    Room {
        /// The room.
        room: RoomId,
        /// What the owner decided to do then.
        settle: Settle<Origin>,
    },
    /// A people home's writes: its home is told how they settled.
    People(PeopleSettle<Origin>),
}

/// Something to tell every live session of one user, wherever it is.
#[derive(Debug)]
pub struct UserNotice {
    /// The user.
    pub user: UserId,
    /// The event to deliver, if any.
    pub frames: Option<LazyFrames>,
    /// A change to the sessions' local state.
    pub effect: Option<LocalEffect>,
}

/// A presence announcement for the shards whose sockets follow `user`.
#[derive(Debug)]
pub struct PresenceFanout {
    /// Whose presence.
    pub user: UserId,
    /// The `presence` event.
    pub frames: LazyFrames,
}

/// A ticket given to the group committer; it comes back to `shard` when durable.
#[derive(Debug)]
pub struct Ticket {
    /// The shard that submitted (the room's owner).
    pub shard: usize,
    /// What to do then.
    pub work: CommitWork,
}

/// Everything a shard's inbox carries.
#[derive(Debug)]
pub enum ShardMsg {
    /// A room operation for the room's owner.
    Command {
        /// Who asked.
        origin: Origin,
        /// What.
        action: RoomAction,
    },
    /// A room's cid filter finished building, for its owner (`known_cids`).
    CidsBuilt {
        /// The room.
        room: RoomId,
        /// Which build.
        build: u64,
        /// The filter (`None`: too many cids, or the build failed).
        filter: Option<palaver_storage::CidFilter>,
    },
    /// Time for the owners' periodic work.
    RoomTick,
    /// Time for the people home's periodic work.
    PresenceTick,
    /// A group commit finished (for the submitting owner).
    Committed {
        /// This shard's tickets of the group.
        works: Vec<CommitWork>,
        /// The group's outcome.
        result: Result<(), Arc<StorageError>>,
    },
    /// A message to fan out to local subscribers.
    Deliver(Arc<Delivery>),
    /// An ephemeral event to fan out to local live subscribers.
    Ephemeral(Arc<Ephemeral>),
    /// An answer for a local connection.
    Reply(Reply),
    /// A message to fan out, then an answer that waited for it: one message, so the
    /// answer and the fan-out are handled in the same turn of the inbox (the asker's
    /// answer and its own copy of the message leave in one socket write).
    DeliverThenReply {
        /// The message.
        delivery: Arc<Delivery>,
        /// The answer.
        reply: Reply,
    },
    /// `user` is no longer a member of `room`: drop their subscriptions here.
    MemberGone {
        /// The room.
        room: RoomId,
        /// The user.
        user: UserId,
    },
    /// Shard `shard` has no more subscribers to `room` (for the owner).
    Unsubscribe {
        /// The room.
        room: RoomId,
        /// The shard.
        shard: usize,
    },
    /// A people operation for its home shard.
    People {
        /// Who asked.
        origin: Origin,
        /// What.
        action: PeopleOp,
    },
    /// A session of `user` started on `shard` (for the user's home shard).
    SessionUp {
        /// The user.
        user: UserId,
        /// Where.
        shard: usize,
    },
    /// A session of `user` on `shard` ended (for the user's home shard).
    SessionDown {
        /// The user.
        user: UserId,
        /// Where.
        shard: usize,
    },
    /// Shard `shard` starts (`on`) or stops following `user`'s presence (for the home shard).
    Watch {
        /// The user followed.
        user: UserId,
        /// The following shard.
        shard: usize,
        /// Start or stop.
        on: bool,
    },
    /// Tell a user's sessions something (for the user's home shard, which knows where they are).
    Notify(Box<UserNotice>),
    /// Tell the local sessions of a user something.
    UserEvent(Arc<UserNotice>),
    /// Cluster (to the gateway): a notice for a user's sessions on the other node that
    /// `slot` stands for in the presence books.
    RemoteUserEvent {
        /// The other node's stand-in shard index.
        slot: usize,
        /// The notice.
        notice: Arc<UserNotice>,
    },
    /// A followed user's presence changed: deliver to local followers.
    Presence(Arc<PresenceFanout>),
    /// Logins of a user were ended: close their sockets here.
    LoginsEnded(Arc<palaver_core::logins::SessionEnd>),
    /// A room was deleted: drop its local subscriptions.
    RoomGone {
        /// The room.
        room: RoomId,
    },
    /// Cluster: room ownership changed; let go of rooms this node no longer owns.
    ClusterView,
    /// Cluster: the owning node's answer to a forwarded request, for `origin_shard`
    /// (sent to the room's local hub, which keeps the subscription bookkeeping).
    ForwardedReply {
        /// The shard holding the connection.
        origin_shard: usize,
        /// The answer.
        reply: Reply,
    },
    /// Cluster: a message another node stored, already applied to this node's store.
    Replicated(Box<Message>),
    /// Cluster: an event from a room's owner on another node, for the local hub.
    RoomEvent(Box<RemoteRoomEvent>),
    /// A QUIC datagram another shard's socket received for a connection of this shard.
    QuicDatagram(Box<ForwardedDatagram>),
    /// Stop: drain and exit.
    Shutdown,
    /// The drain finished: leave the event loop.
    Exit,
}

/// A QUIC datagram passed from the shard whose socket received it to the shard that
/// owns its connection (named by its destination connection id).
#[derive(Debug)]
pub struct ForwardedDatagram {
    /// Who sent it.
    pub remote: std::net::SocketAddr,
    /// The local address it was sent to, when the socket reports it.
    pub local_ip: Option<std::net::IpAddr>,
    /// Its ECN bits, when set.
    pub ecn: Option<u8>,
    /// The datagram.
    pub data: bytes::BytesMut,
}

/// What a room's owner on another node tells the nodes with subscribers.
#[derive(Debug)]
pub enum RemoteRoomEvent {
    /// An event without seq (typing, receipts, edits, reactions, member changes).
    Ephemeral(Arc<Ephemeral>),
    /// `user` left or was removed.
    MemberGone {
        /// The room.
        room: RoomId,
        /// The user.
        user: UserId,
    },
    /// The room was deleted.
    RoomGone {
        /// The room.
        room: RoomId,
    },
}

impl RemoteRoomEvent {
    /// The room it is about.
    pub fn room(&self) -> &RoomId {
        match self {
            RemoteRoomEvent::Ephemeral(e) => &e.room,
            RemoteRoomEvent::MemberGone { room, .. } | RemoteRoomEvent::RoomGone { room } => room,
        }
    }
}

/// The senders to every shard's inbox, and in a cluster the gateway: one more index
/// (`len()`) that stands for "the other nodes", served by the cluster thread.
#[derive(Debug, Clone)]
pub struct Mesh {
    inboxes: Arc<Vec<flume::Sender<ShardMsg>>>,
    gateway: Option<flume::Sender<ShardMsg>>,
}

impl Mesh {
    /// Creates one inbox per shard.
    pub fn new(shards: usize) -> (Mesh, Vec<flume::Receiver<ShardMsg>>) {
        let (senders, receivers) = (0..shards).map(|_| flume::unbounded()).unzip();
        (Mesh { inboxes: Arc::new(senders), gateway: None }, receivers)
    }

    /// One inbox per shard plus the cluster gateway's.
    pub fn with_gateway(shards: usize) -> (Mesh, Vec<flume::Receiver<ShardMsg>>, flume::Receiver<ShardMsg>) {
        let (mut mesh, receivers) = Self::new(shards);
        let (gateway, gateway_rx) = flume::unbounded();
        mesh.gateway = Some(gateway);
        (mesh, receivers, gateway_rx)
    }

    /// The index that addresses the cluster gateway (`None` outside a cluster).
    pub fn gateway(&self) -> Option<usize> {
        self.gateway.as_ref().map(|_| self.len())
    }

    /// Number of shards.
    pub fn len(&self) -> usize {
        self.inboxes.len()
    }

    /// Sends to one shard (or the gateway); a shard that has exited drops the message.
    pub fn send(&self, shard: usize, msg: ShardMsg) {
        if let Some(inbox) = self.inboxes.get(shard) {
            let _ = inbox.send(msg);
        } else if shard == self.len()
            && let Some(gateway) = &self.gateway
            // Other nodes learn of stored messages from the shared log, not from here.
            && !matches!(msg, ShardMsg::Deliver(_))
        {
            let _ = gateway.send(msg);
        }
    }

    /// The owning shard of a room.
    pub fn owner(&self, room: &RoomId) -> usize {
        palaver_core::shard_for(room, self.len())
    }

    /// A user's home shard: keeper of their presence and profile.
    pub fn home(&self, user: &UserId) -> usize {
        palaver_core::jump_hash(palaver_core::stable_hash(user.as_str().as_bytes()), self.len())
    }

    /// The home shard of a pair of users (the lower id's): the single writer of their
    /// friendship and blocks.
    pub fn pair_home(&self, a: &UserId, b: &UserId) -> usize {
        self.home(a.min(b))
    }

    /// Sends to every shard.
    pub fn broadcast(&self, mut make: impl FnMut() -> ShardMsg) {
        for shard in 0..self.len() {
            self.send(shard, make());
        }
    }
}
