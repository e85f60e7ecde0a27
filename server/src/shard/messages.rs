//! What shards say to each other. Shards share nothing mutable; everything crosses by
//! these messages over each shard's inbox (a bounded-latency MPSC channel drained in
//! batches).

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use palaver_core::Moderation;
use palaver_protocol::{
    ClientMsgId, Codec, FileRef, Message, MessageKind, PresenceChoice, ReplyBody, RoomId, RoomKind,
    RoomSettingsPatch, SendOk, ServerFrame, UserId,
};
use palaver_storage::StorageError;

use crate::conn::wire::Wire;

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

/// A room operation, sent to the room's owning shard (in a cluster, perhaps to the
/// owning node: hence serializable).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum RoomAction {
    /// Create `room` (its id was drawn by the origin shard).
    Create {
        /// The new room's id.
        room: RoomId,
        /// Requested name.
        name: String,
        /// Requested kind.
        kind: RoomKind,
        /// Requested topic.
        topic: Option<String>,
        /// Settings other than the defaults.
        settings: Option<RoomSettingsPatch>,
    },
    /// Open (create if needed) the direct room of the caller and `peer`.
    DmOpen {
        /// The pair's room (derived from both ids).
        room: RoomId,
        /// The other user.
        peer: UserId,
    },
    /// Join and subscribe.
    Join {
        /// The room.
        room: RoomId,
        /// Replay after this seq.
        since: Option<u64>,
    },
    /// Leave.
    Leave {
        /// The room.
        room: RoomId,
    },
    /// Send a message.
    Send {
        /// The room.
        room: RoomId,
        /// Idempotency key.
        cid: ClientMsgId,
        /// Kind.
        kind: MessageKind,
        /// Body (validated by the room).
        text: String,
        /// Client timestamp to echo.
        client_ts: Option<u64>,
        /// The message it replies to.
        reply_to: Option<u64>,
        /// The shared file (image and file kinds).
        file: Option<Box<FileRef>>,
        /// How an encrypted body was encrypted.
        encryption: Option<Box<palaver_protocol::Encryption>>,
    },
    /// Edit one of the caller's messages.
    Edit {
        /// The room.
        room: RoomId,
        /// The message.
        seq: u64,
        /// The new text.
        text: String,
    },
    /// Delete a message (tombstone).
    Delete {
        /// The room.
        room: RoomId,
        /// The message.
        seq: u64,
    },
    /// Start or stop typing.
    Typing {
        /// The room.
        room: RoomId,
        /// Started (true) or stopped (false).
        active: bool,
    },
    /// Move the caller's receipt watermarks.
    Receipt {
        /// The room.
        room: RoomId,
        /// New delivered watermark.
        delivered: Option<u64>,
        /// New read watermark.
        read: Option<u64>,
    },
    /// Add (or remove) the caller's reaction to a message.
    React {
        /// The room.
        room: RoomId,
        /// The message.
        seq: u64,
        /// The emoji (validated by the room).
        emoji: String,
        /// Add (true) or remove (false).
        add: bool,
    },
    /// Read a page of history.
    History {
        /// The room.
        room: RoomId,
        /// Backwards from below this seq.
        before: Option<u64>,
        /// Forwards from above this seq.
        after: Option<u64>,
        /// Page size.
        limit: Option<u32>,
        /// The previous page's `next`.
        cursor: Option<String>,
    },
    /// The room's details.
    Get {
        /// The room.
        room: RoomId,
    },
    /// Change name, topic or settings.
    Update {
        /// The room.
        room: RoomId,
        /// New name.
        name: Option<String>,
        /// New topic.
        topic: Option<String>,
        /// Settings to change.
        settings: Option<RoomSettingsPatch>,
    },
    /// Delete the room.
    DeleteRoom {
        /// The room.
        room: RoomId,
    },
    /// A page of members.
    Members {
        /// The room.
        room: RoomId,
        /// Page size.
        limit: Option<u32>,
        /// The previous page's `next`.
        cursor: Option<String>,
    },
    /// Invite a user.
    Invite {
        /// The room.
        room: RoomId,
        /// The invitee.
        user: UserId,
    },
    /// Decline the caller's invitation.
    Decline {
        /// The room.
        room: RoomId,
    },
    /// A moderation action on `user`.
    Moderate {
        /// The room.
        room: RoomId,
        /// The target.
        user: UserId,
        /// What.
        action: Moderation,
    },
}

impl RoomAction {
    /// The room this action is about.
    pub fn room(&self) -> &RoomId {
        match self {
            RoomAction::Create { room, .. }
            | RoomAction::DmOpen { room, .. }
            | RoomAction::Join { room, .. }
            | RoomAction::Leave { room }
            | RoomAction::Send { room, .. }
            | RoomAction::Typing { room, .. }
            | RoomAction::Receipt { room, .. }
            | RoomAction::React { room, .. }
            | RoomAction::Edit { room, .. }
            | RoomAction::Delete { room, .. }
            | RoomAction::History { room, .. }
            | RoomAction::Get { room }
            | RoomAction::Update { room, .. }
            | RoomAction::DeleteRoom { room }
            | RoomAction::Members { room, .. }
            | RoomAction::Invite { room, .. }
            | RoomAction::Decline { room }
            | RoomAction::Moderate { room, .. } => room,
        }
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

/// Subscribe a connection to a room's events after `cursor`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Subscribe {
    /// The room.
    pub room: RoomId,
    /// Events with seq above this go to the connection (older ones are replayed).
    pub cursor: u64,
    /// The newest durable seq at join time.
    pub last_seq: u64,
}

/// An event whose complete frame per wire form (WebSocket JSON, WebSocket rkyv, QUIC
/// length-prefixed rkyv) is encoded the first time any shard needs it, then shared by
/// every socket on every shard: encode once per form actually
/// in use, never per recipient.
#[derive(Debug)]
pub struct LazyFrames {
    event: ServerFrame,
    json: OnceLock<Option<Bytes>>,
    rkyv: OnceLock<Option<Bytes>>,
    /// The rkyv payload behind its length prefix, for QUIC connections.
    quic: OnceLock<Option<Bytes>>,
}

impl LazyFrames {
    /// Frames for `event`, none encoded yet.
    pub fn new(event: ServerFrame) -> Self {
        Self { event, json: OnceLock::new(), rkyv: OnceLock::new(), quic: OnceLock::new() }
    }

    /// The event.
    pub fn event(&self) -> &ServerFrame {
        &self.event
    }

    /// The frame for a connection framed as `wire` (`None` only if encoding failed, a
    /// bug that is logged).
    pub fn frame(&self, wire: Wire) -> Option<&Bytes> {
        let cell = match wire {
            Wire::WebSocket(Codec::Json) => &self.json,
            Wire::WebSocket(Codec::Rkyv) => &self.rkyv,
            Wire::Quic => &self.quic,
        };
        cell.get_or_init(|| match wire.encode(&self.event) {
            Ok(frame) => Some(frame),
            Err(e) => {
                tracing::error!("cannot encode event: {e}");
                None
            }
        })
        .as_ref()
    }
}

/// One stored message to fan out.
#[derive(Debug)]
pub struct Delivery {
    /// The room.
    pub room: RoomId,
    /// The message's seq.
    pub seq: u64,
    /// Who sent it.
    pub sender: UserId,
    /// The `message` event, framed lazily.
    pub frames: LazyFrames,
    /// The same event flagged `blocked`, for receivers who blocked the sender (built
    /// the first time one needs it).
    pub flagged: OnceLock<LazyFrames>,
}

impl Delivery {
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
    /// A message: when durable, broadcast it and answer its sender.
    Message(Message),
    /// A reaction change: when durable, count, answer and announce it.
    Reaction {
        /// Who asked.
        origin: Origin,
        /// The room.
        room: RoomId,
        /// The message.
        seq: u64,
        /// The emoji.
        emoji: String,
        /// Added (true) or removed (false).
        added: bool,
    },
    /// A change to an existing message: when durable, answer and announce `event` to the
    /// room's subscribers.
    ReplyAndAnnounce {
        /// Which shard to answer on.
        shard: usize,
        /// The answer.
        reply: Reply,
        /// The room.
        room: RoomId,
        /// The event (edit, delete).
        event: Box<ServerFrame>,
        /// The message it rewrote, whose pending version settles with it.
        rewrote: Option<u64>,
    },
    /// Any other write: when durable, send this answer.
    Reply {
        /// Which shard to send it to.
        shard: usize,
        /// The answer.
        reply: Reply,
    },
    /// A `system` message: when durable, broadcast it like a message, then do `then`.
    Notice {
        /// The notice.
        message: Message,
        /// What follows its delivery.
        then: AfterNotice,
    },
    /// A people change (friends, blocks, profile): when durable, answer, tell the users
    /// concerned, and release the pending-state entries it held.
    People {
        /// Which shard to answer on.
        shard: usize,
        /// The answer.
        reply: Reply,
        /// Who to tell.
        notices: Vec<UserNotice>,
        /// Pending-state entries to release.
        release: Vec<super::people::PendingKey>,
    },
    /// Nothing to do when durable (for example a `last_seen`).
    Nothing,
}

/// What happens once a `system` message has been delivered.
#[derive(Debug, Clone)]
pub enum AfterNotice {
    /// Nothing more.
    Nothing,
    /// The target's subscriptions end (kicked, banned).
    RemoveMember(UserId),
    /// The room is gone: every subscription ends and the owner forgets it.
    DeleteRoom,
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

/// A change a user's sessions apply locally.
#[derive(Debug, Clone)]
pub enum LocalEffect {
    /// Start following this user's presence (a new friend).
    Follow(UserId),
    /// Stop following this user's presence (no longer a friend).
    Unfollow(UserId),
    /// Flag this user's messages `blocked`.
    Block(UserId),
    /// Stop flagging this user's messages.
    Unblock(UserId),
}

/// A people operation, handled by a user's (or a pair's) home shard: the single writer
/// of that user's profile and presence, and of that pair's friendship and blocks.
#[derive(Debug, Clone)]
pub enum PeopleAction {
    /// A friendship change with `other`.
    Friend {
        /// The other user.
        other: UserId,
        /// Which.
        op: FriendOp,
    },
    /// Block (`on`) or unblock `other`.
    Block {
        /// The other user.
        other: UserId,
        /// Block or unblock.
        on: bool,
    },
    /// Update the caller's profile.
    UpdateProfile {
        /// New display name (empty clears).
        display_name: Option<String>,
        /// New avatar (empty clears).
        avatar: Option<String>,
        /// New status text (empty clears).
        status_text: Option<String>,
    },
    /// Choose online, away or invisible.
    SetPresence(PresenceChoice),
    /// Publish the caller's device keys (at the caller's home).
    KeysUpload {
        /// The device.
        device_id: String,
        /// Its identity key.
        identity_key: String,
        /// Its signing key.
        signing_key: Option<String>,
        /// New one-time prekeys.
        one_time_keys: Vec<palaver_protocol::OneTimeKey>,
    },
    /// Claim one-time prekeys of `user`'s devices (at `user`'s home).
    KeysClaim {
        /// Whose.
        user: UserId,
        /// Only this device.
        device_id: Option<String>,
    },
}

/// A friendship operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FriendOp {
    /// Ask.
    Request,
    /// Accept an incoming request.
    Accept,
    /// Decline an incoming request.
    Decline,
    /// Withdraw an outgoing request.
    Cancel,
    /// End a friendship.
    Remove,
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
        action: PeopleAction,
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
    /// A followed user's presence changed: deliver to local followers.
    Presence(Arc<PresenceFanout>),
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
    /// Stop: drain and exit.
    Shutdown,
    /// The drain finished: leave the event loop.
    Exit,
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

/// The answer to a send, as a reply body.
pub fn sent(ok: SendOk) -> ReplyBody {
    ReplyBody::Ok(palaver_protocol::OkBody::Sent(ok))
}
