//! The frames: what a client sends (`ClientFrame` = request id + `Op`) and what a server
//! sends (`ServerFrame` = a reply to a request, or a pushed `Event`). One set of types
//! serves both codecs; the JSON shapes are fixed by `docs/PROTOCOL.md`.

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _, ser::SerializeMap};

use crate::error::ErrorBody;
use crate::ids::{ClientMsgId, RoomId, SessionId, UserId};
use crate::keys::{ClaimedOk, DevicesOk, Encryption, KeysUploadOk, OneTimeKey};
use crate::notifications::{NotificationsOk, NotifyLevel};
use crate::people::{
    BlockedOk, FriendInfo, FriendOk, FriendsOk, PresenceChoice, PresenceInfo, PresenceListOk, ProfileOk,
    UsersOk,
};
use crate::pins::PinsOk;
use crate::rooms::{
    InviteInfo, InvitesOk, MemberEvent, MembersOk, RoomDetailsOk, RoomRole, RoomSettingsPatch, SystemNotice,
};
use crate::threads::{ThreadEvent, ThreadHistoryOk, ThreadReadOk, ThreadReplies, ThreadSummary, ThreadsOk};

/// A request from a client: `{"id":N,"op":"…",…}`.
#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct ClientFrame {
    /// Chosen by the client; echoed as `re` in the reply.
    pub id: u64,
    /// What the client asks for.
    #[serde(flatten)]
    pub op: Op,
}

/// Every operation a client may request.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
#[serde(tag = "op", deny_unknown_fields)]
pub enum Op {
    /// Authenticate the socket with an access token. The only op accepted before auth.
    #[serde(rename = "auth")]
    Auth {
        /// An access JWT from `/v1/auth/login`, `/register` or `/refresh`.
        token: String,
    },
    /// Create a room; the caller becomes its owner and first member.
    #[serde(rename = "room.create")]
    RoomCreate {
        /// Display name, 1..=100 characters.
        name: String,
        /// `public` or `private`.
        kind: RoomKind,
        /// Topic or description, up to 500 characters.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topic: Option<String>,
        /// Settings other than the defaults.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        settings: Option<RoomSettingsPatch>,
    },
    /// Join a room (or re-subscribe to one) and receive its events from now on.
    #[serde(rename = "join")]
    Join {
        /// The room.
        room: RoomId,
        /// The last seq the client holds; messages after it are replayed first, in order.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
    },
    /// Leave a room: membership ends and events stop.
    #[serde(rename = "leave")]
    Leave {
        /// The room.
        room: RoomId,
    },
    /// Send a message; answered once it is durably stored.
    #[serde(rename = "send")]
    Send {
        /// The room.
        room: RoomId,
        /// Idempotency key: resending the same `cid` returns the first send's seq.
        cid: ClientMsgId,
        /// The message kind.
        #[serde(default)]
        kind: MessageKind,
        /// The body (for `image` and `file`: an optional caption).
        #[serde(default)]
        text: String,
        /// Optional client timestamp (ms since the Unix epoch), echoed in the event.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_ts: Option<u64>,
        /// The seq of the message in the same room this one replies to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<u64>,
        /// With `image` and `file`: the stored file it shares.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<Box<FileRef>>,
        /// With `encrypted`: how `text` (the ciphertext) was encrypted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        encryption: Option<Box<Encryption>>,
        /// A thread reply: the seq of the thread's root in the same room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread: Option<u64>,
        /// With `thread`: the reply is also part of the room's own timeline.
        #[serde(default, skip_serializing_if = "is_false")]
        also_to_room: bool,
    },
    /// Forward a message of a room the caller may read into `room`, with an optional
    /// comment; the new message refers to the original.
    #[serde(rename = "forward")]
    Forward {
        /// Where to.
        room: RoomId,
        /// Idempotency key, as for `send`.
        cid: ClientMsgId,
        /// The original's room.
        from_room: RoomId,
        /// The original's seq.
        seq: u64,
        /// A comment (may be empty).
        #[serde(default)]
        text: String,
    },
    /// Page through a room's history: backwards from the newest (or from `before`),
    /// newest first; or forwards from `after`, oldest first.
    #[serde(rename = "history")]
    History {
        /// The room.
        room: RoomId,
        /// Only messages with seq below this, newest first.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<u64>,
        /// Only messages with seq above this, oldest first (not with `before`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<u64>,
        /// Page size, 1..=100 (default 50).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
        /// The previous page's `next`: continues in its direction (not with `before` or
        /// `after`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
        /// Whether thread replies not sent to the room are in the page (default: they are).
        #[serde(default, skip_serializing_if = "ThreadReplies::is_included")]
        threads: ThreadReplies,
    },
    /// Page through one thread's replies, like `history` (newest first, or forwards from
    /// `after`); the answer carries the root.
    #[serde(rename = "thread.history")]
    ThreadHistory {
        /// The room.
        room: RoomId,
        /// The thread's root.
        root: u64,
        /// Only replies with seq below this, newest first.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<u64>,
        /// Only replies with seq above this, oldest first (not with `before`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<u64>,
        /// Page size, 1..=100 (default 50).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
        /// The previous page's `next` (not with `before` or `after`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
    },
    /// The room's threads, the most recently replied to first, with the caller's unread
    /// count in each.
    #[serde(rename = "thread.list")]
    ThreadList {
        /// The room.
        room: RoomId,
        /// Page size, 1..=100 (default 50).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
        /// The previous page's `next`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
    },
    /// Move the caller's read mark in one thread (it never moves back).
    #[serde(rename = "thread.read")]
    ThreadRead {
        /// The room.
        room: RoomId,
        /// The thread's root.
        root: u64,
        /// The newest reply read.
        seq: u64,
    },
    /// Liveness check at the application level; answered with an empty ok.
    #[serde(rename = "ping")]
    Ping {},
    /// The caller is typing in a room (renew every few seconds while typing).
    #[serde(rename = "typing.start")]
    TypingStart {
        /// The room.
        room: RoomId,
    },
    /// The caller stopped typing in a room.
    #[serde(rename = "typing.stop")]
    TypingStop {
        /// The room.
        room: RoomId,
    },
    /// Move the caller's delivered and/or read watermarks in a room forward.
    #[serde(rename = "receipt")]
    Receipt {
        /// The room.
        room: RoomId,
        /// Highest seq delivered to this device.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delivered: Option<u64>,
        /// Highest seq the user has read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        read: Option<u64>,
    },
    /// The caller's rooms with their last message and unread counts, by room id.
    #[serde(rename = "sync")]
    Sync {
        /// Page size (see `paging::sizes`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
        /// The previous page's `next`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
    },
    /// Replace the text of one of the caller's own messages (within the edit window).
    #[serde(rename = "edit")]
    Edit {
        /// The room.
        room: RoomId,
        /// The message.
        seq: u64,
        /// The new text.
        text: String,
    },
    /// A message's earlier texts, oldest first (members only).
    #[serde(rename = "edit.list")]
    EditList {
        /// The room.
        room: RoomId,
        /// The message.
        seq: u64,
        /// Page size (see `paging::sizes`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
        /// The previous page's `next`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
    },
    /// Pin a message of the room (the room's `pin_role` and above).
    #[serde(rename = "pin")]
    Pin {
        /// The room.
        room: RoomId,
        /// The message.
        seq: u64,
    },
    /// Unpin a pinned message (the room's `pin_role` and above).
    #[serde(rename = "unpin")]
    Unpin {
        /// The room.
        room: RoomId,
        /// The message.
        seq: u64,
    },
    /// A page of the room's pinned messages, the most recently pinned first.
    #[serde(rename = "pin.list")]
    PinList {
        /// The room.
        room: RoomId,
        /// Page size (see `paging::sizes`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
        /// The previous page's `next`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
    },
    /// Who has read a message (or, with `delivered`, had it delivered), from the members'
    /// watermarks.
    #[serde(rename = "receipt.list")]
    ReceiptList {
        /// The room.
        room: RoomId,
        /// The message.
        seq: u64,
        /// List deliveries instead of reads (rooms of a bounded size only).
        #[serde(default, skip_serializing_if = "is_false")]
        delivered: bool,
        /// Page size (see `paging::sizes`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
        /// The previous page's `next`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
    },
    /// Delete a message: the caller's own, or anyone's for a moderator. Leaves a tombstone.
    #[serde(rename = "delete")]
    Delete {
        /// The room.
        room: RoomId,
        /// The message.
        seq: u64,
    },
    /// List public rooms, by room id, optionally filtered by name.
    #[serde(rename = "room.list")]
    RoomList {
        /// Only rooms whose name contains this (case-insensitive).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        query: Option<String>,
        /// Page size (see `paging::sizes`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
        /// The previous page's `next`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
    },
    /// Open the direct-message room with another user: the same room every time, for
    /// either of the two, created the first time.
    #[serde(rename = "dm.open")]
    DmOpen {
        /// The other user.
        user: UserId,
    },
    /// Add the caller's reaction (an emoji) to a message.
    #[serde(rename = "react")]
    React {
        /// The room.
        room: RoomId,
        /// The message.
        seq: u64,
        /// The emoji (any short Unicode string without spaces or control characters).
        emoji: String,
    },
    /// Remove the caller's reaction from a message.
    #[serde(rename = "unreact")]
    Unreact {
        /// The room.
        room: RoomId,
        /// The message.
        seq: u64,
        /// The emoji.
        emoji: String,
    },
    /// A room's details: settings, member count, the caller's role.
    #[serde(rename = "room.get")]
    RoomGet {
        /// The room.
        room: RoomId,
    },
    /// Change a room's name, topic or settings (admins and the owner).
    #[serde(rename = "room.update")]
    RoomUpdate {
        /// The room.
        room: RoomId,
        /// New name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// New topic (empty clears it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topic: Option<String>,
        /// Settings to change.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        settings: Option<RoomSettingsPatch>,
    },
    /// Delete a room for everyone (the owner only).
    #[serde(rename = "room.delete")]
    RoomDelete {
        /// The room.
        room: RoomId,
    },
    /// A page of a room's members with roles and presence.
    #[serde(rename = "room.members")]
    RoomMembers {
        /// The room.
        room: RoomId,
        /// Page size (see `paging::sizes`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
        /// The previous page's `next`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
    },
    /// Invite a user to a room (who may invite is a room setting).
    #[serde(rename = "room.invite")]
    RoomInvite {
        /// The room.
        room: RoomId,
        /// The invitee.
        user: UserId,
    },
    /// The caller's pending invitations.
    #[serde(rename = "invite.list")]
    InviteList {
        /// Page size (see `paging::sizes`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
        /// The previous page's `next`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
    },
    /// Accept an invitation: join the room (answered like `join`).
    #[serde(rename = "invite.accept")]
    InviteAccept {
        /// The room.
        room: RoomId,
    },
    /// Decline an invitation.
    #[serde(rename = "invite.decline")]
    InviteDecline {
        /// The room.
        room: RoomId,
    },
    /// Remove a member (who may come back: rejoin a public room, or be invited again).
    #[serde(rename = "kick")]
    Kick {
        /// The room.
        room: RoomId,
        /// The member.
        user: UserId,
        /// Shown in the room's notice.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Remove a member (or an outsider) for good: no rejoining, no invitations.
    #[serde(rename = "ban")]
    Ban {
        /// The room.
        room: RoomId,
        /// The user.
        user: UserId,
        /// Shown in the room's notice.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Lift a ban.
    #[serde(rename = "unban")]
    Unban {
        /// The room.
        room: RoomId,
        /// The user.
        user: UserId,
    },
    /// Stop a member from sending for a while; the mute ends by itself.
    #[serde(rename = "mute")]
    Mute {
        /// The room.
        room: RoomId,
        /// The member.
        user: UserId,
        /// How long, 1 s to 366 days.
        duration_secs: u64,
        /// Shown in the room's notice.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Lift a mute early.
    #[serde(rename = "unmute")]
    Unmute {
        /// The room.
        room: RoomId,
        /// The member.
        user: UserId,
    },
    /// Promote or demote a member (to `member`, `moderator` or `admin`).
    #[serde(rename = "role.set")]
    RoleSet {
        /// The room.
        room: RoomId,
        /// The member.
        user: UserId,
        /// The new role.
        role: RoomRole,
    },
    /// Hand the room to another member; the old owner becomes an admin.
    #[serde(rename = "room.transfer")]
    RoomTransfer {
        /// The room.
        room: RoomId,
        /// The new owner.
        user: UserId,
    },
    /// A user's profile (and presence, when the caller may see it).
    #[serde(rename = "user.get")]
    UserGet {
        /// The user.
        user: UserId,
    },
    /// Change the caller's profile; absent fields are kept, empty strings clear.
    #[serde(rename = "user.update")]
    UserUpdate {
        /// Display name, up to 64 characters.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        display_name: Option<String>,
        /// A file id or an `https://` URL, up to 512 bytes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        avatar: Option<String>,
        /// Status text, up to 140 characters.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status_text: Option<String>,
        /// Whether others see how far the caller has read (`receipt.list`, `room.members`,
        /// `receipt` events); on until turned off.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        share_read_receipts: Option<bool>,
    },
    /// Users whose username starts with a prefix.
    #[serde(rename = "user.search")]
    UserSearch {
        /// At least one character.
        prefix: String,
        /// Page size, 1..=50 (default 20).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Ask a user to be friends (accepts at once if they already asked).
    #[serde(rename = "friend.request")]
    FriendRequest {
        /// The user.
        user: UserId,
    },
    /// Accept a friend request.
    #[serde(rename = "friend.accept")]
    FriendAccept {
        /// Who asked.
        user: UserId,
    },
    /// Decline a friend request.
    #[serde(rename = "friend.decline")]
    FriendDecline {
        /// Who asked.
        user: UserId,
    },
    /// Withdraw the caller's own request.
    #[serde(rename = "friend.cancel")]
    FriendCancel {
        /// Who was asked.
        user: UserId,
    },
    /// End a friendship.
    #[serde(rename = "friend.remove")]
    FriendRemove {
        /// The friend.
        user: UserId,
    },
    /// Friends and pending requests, with friends' presence.
    #[serde(rename = "friend.list")]
    FriendList {
        /// Page size (see `paging::sizes`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
        /// The previous page's `next`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
    },
    /// Block a user: no DMs, friend requests or invitations from them; their messages
    /// arrive flagged `blocked`.
    #[serde(rename = "block")]
    Block {
        /// The user.
        user: UserId,
    },
    /// Lift a block.
    #[serde(rename = "unblock")]
    Unblock {
        /// The user.
        user: UserId,
    },
    /// The users the caller blocked.
    #[serde(rename = "block.list")]
    BlockList {
        /// Page size (see `paging::sizes`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
        /// The previous page's `next`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
    },
    /// Choose online, away or invisible.
    #[serde(rename = "presence.set")]
    PresenceSet {
        /// The choice.
        status: PresenceChoice,
    },
    /// Follow users' presence on this socket (friends are followed automatically).
    #[serde(rename = "presence.subscribe")]
    PresenceSubscribe {
        /// Up to 500 users, each a friend or someone sharing a room with the caller.
        users: Vec<UserId>,
    },
    /// Stop following users' presence on this socket.
    #[serde(rename = "presence.unsubscribe")]
    PresenceUnsubscribe {
        /// The users.
        users: Vec<UserId>,
    },
    /// Publish a device's public keys and one-time prekeys (end-to-end encryption).
    #[serde(rename = "keys.upload")]
    KeysUpload {
        /// The device (1–64 of `[A-Za-z0-9_-]`), chosen by the client.
        device_id: String,
        /// Its public identity key; fixed for the device once published.
        identity_key: String,
        /// Its public signing key, if any; fixed too.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signing_key: Option<String>,
        /// New one-time prekeys (at most 100 per upload).
        #[serde(default)]
        one_time_keys: Vec<OneTimeKey>,
    },
    /// A user's devices and their public keys.
    #[serde(rename = "keys.list")]
    KeysList {
        /// The user.
        user: UserId,
    },
    /// Full-text search of the messages in the caller's rooms.
    #[serde(rename = "search")]
    Search {
        /// Words (all must match), `"exact phrases"`, `pre*` prefixes; 1–512 bytes.
        query: String,
        /// Only this room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<RoomId>,
        /// Only messages from this sender.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<UserId>,
        /// Only messages stored before this time (ms since the Unix epoch).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<u64>,
        /// Only messages stored after this time (ms since the Unix epoch).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<u64>,
        /// `relevance` (default) or `newest`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        order: Option<SearchOrder>,
        /// Hits per page, 1–50 (default 20).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
        /// The previous page's `next`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
    },
    /// Take one one-time prekey of each of a user's devices (or of one device).
    #[serde(rename = "keys.claim")]
    KeysClaim {
        /// The user.
        user: UserId,
        /// Only this device.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device_id: Option<String>,
    },
    /// The caller's notification settings.
    #[serde(rename = "notifications.get")]
    NotificationsGet {},
    /// Change the caller's account-wide notification settings; absent fields are kept.
    #[serde(rename = "notifications.set")]
    NotificationsSet {
        /// The level of rooms without their own.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        level: Option<NotifyLevel>,
        /// Replaces the keyword list (at most 50 words of 1..=64 characters).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keywords: Option<Vec<String>>,
    },
    /// Set one room's notification setting, replacing the one it had: absent fields take
    /// their defaults, so `{"room":…}` alone returns the room to the account's settings.
    #[serde(rename = "notifications.room")]
    NotificationsRoom {
        /// The room.
        room: RoomId,
        /// The room's level; absent: the account's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        level: Option<NotifyLevel>,
        /// Mute the room.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        muted: bool,
        /// When the mute ends (ms since the Unix epoch); absent: when it is lifted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        muted_until: Option<u64>,
    },
    /// Register a browser's Web Push subscription (`PushSubscription.toJSON()`), for the
    /// messages the user's settings say notify while none of their sockets is connected
    /// (`docs/PROTOCOL.md` §3.5.30). Registering an endpoint again replaces its keys.
    #[serde(rename = "push.subscribe")]
    PushSubscribe {
        /// The push service's URL for the subscription (`https://`).
        endpoint: String,
        /// The browser's P-256 public key, base64url.
        p256dh: String,
        /// The authentication secret, base64url.
        auth: String,
    },
    /// Forget a push subscription (the browser unsubscribed, or the user signs out there).
    #[serde(rename = "push.unsubscribe")]
    PushUnsubscribe {
        /// The subscription's endpoint.
        endpoint: String,
    },
}

impl Op {
    /// The op's name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Auth { .. } => "auth",
            Op::RoomCreate { .. } => "room.create",
            Op::Join { .. } => "join",
            Op::Leave { .. } => "leave",
            Op::Send { .. } => "send",
            Op::History { .. } => "history",
            Op::ThreadHistory { .. } => "thread.history",
            Op::ThreadList { .. } => "thread.list",
            Op::ThreadRead { .. } => "thread.read",
            Op::Ping {} => "ping",
            Op::TypingStart { .. } => "typing.start",
            Op::TypingStop { .. } => "typing.stop",
            Op::Receipt { .. } => "receipt",
            Op::Sync { .. } => "sync",
            Op::React { .. } => "react",
            Op::RoomList { .. } => "room.list",
            Op::DmOpen { .. } => "dm.open",
            Op::Edit { .. } => "edit",
            Op::EditList { .. } => "edit.list",
            Op::Pin { .. } => "pin",
            Op::Unpin { .. } => "unpin",
            Op::PinList { .. } => "pin.list",
            Op::ReceiptList { .. } => "receipt.list",
            Op::Forward { .. } => "forward",
            Op::Delete { .. } => "delete",
            Op::Unreact { .. } => "unreact",
            Op::RoomGet { .. } => "room.get",
            Op::RoomUpdate { .. } => "room.update",
            Op::RoomDelete { .. } => "room.delete",
            Op::RoomMembers { .. } => "room.members",
            Op::RoomInvite { .. } => "room.invite",
            Op::InviteList { .. } => "invite.list",
            Op::InviteAccept { .. } => "invite.accept",
            Op::InviteDecline { .. } => "invite.decline",
            Op::Kick { .. } => "kick",
            Op::Ban { .. } => "ban",
            Op::Unban { .. } => "unban",
            Op::Mute { .. } => "mute",
            Op::Unmute { .. } => "unmute",
            Op::RoleSet { .. } => "role.set",
            Op::RoomTransfer { .. } => "room.transfer",
            Op::UserGet { .. } => "user.get",
            Op::UserUpdate { .. } => "user.update",
            Op::UserSearch { .. } => "user.search",
            Op::FriendRequest { .. } => "friend.request",
            Op::FriendAccept { .. } => "friend.accept",
            Op::FriendDecline { .. } => "friend.decline",
            Op::FriendCancel { .. } => "friend.cancel",
            Op::FriendRemove { .. } => "friend.remove",
            Op::FriendList { .. } => "friend.list",
            Op::Block { .. } => "block",
            Op::Unblock { .. } => "unblock",
            Op::BlockList { .. } => "block.list",
            Op::PresenceSet { .. } => "presence.set",
            Op::PresenceSubscribe { .. } => "presence.subscribe",
            Op::PresenceUnsubscribe { .. } => "presence.unsubscribe",
            Op::KeysUpload { .. } => "keys.upload",
            Op::KeysList { .. } => "keys.list",
            Op::KeysClaim { .. } => "keys.claim",
            Op::Search { .. } => "search",
            Op::NotificationsGet {} => "notifications.get",
            Op::NotificationsSet { .. } => "notifications.set",
            Op::NotificationsRoom { .. } => "notifications.room",
            Op::PushSubscribe { .. } => "push.subscribe",
            Op::PushUnsubscribe { .. } => "push.unsubscribe",
        }
    }
}

/// How `search` orders its hits.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
#[serde(rename_all = "snake_case")]
pub enum SearchOrder {
    /// Best match first.
    Relevance,
    /// Newest first.
    Newest,
}

/// One `search` hit.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct SearchHit {
    /// The room.
    pub room: RoomId,
    /// The message.
    pub seq: u64,
    /// When it was stored.
    pub ts: u64,
    /// Who sent it.
    pub sender: UserId,
    /// Up to about 150 characters around the match, HTML-escaped, matches in `<b>…</b>`.
    pub snippet: String,
    /// Relevance (0 in `newest` order).
    pub score: f32,
    /// A thread reply: its thread's root (open the thread with `thread.history`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<u64>,
}

/// Answer to `search`.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct SearchOk {
    /// Hits, in the requested order.
    pub hits: Vec<SearchHit>,
    /// Pass as `cursor` for the next page; absent on the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Who may join a room.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
#[serde(rename_all = "snake_case")]
pub enum RoomKind {
    /// Anyone may join.
    Public,
    /// Members only; outsiders get `forbidden`.
    Private,
    /// A conversation between exactly two users, opened with `dm.open`.
    Direct,
}

/// What a message carries.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// Plain Unicode text.
    #[default]
    Text,
    /// An image shared as a stored file (`file`), with an optional caption in `text`.
    Image,
    /// Any other file (`file`), with an optional caption in `text`.
    File,
    /// A notice written by the server about the room (never sent by clients).
    System,
    /// End-to-end encrypted: `text` is ciphertext the server cannot read, `encryption`
    /// says how. Never indexed or inspected.
    Encrypted,
}

/// A stored file shared in a message.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct FileRef {
    /// The file's id, from the upload.
    pub file_id: String,
    /// Display name (sanitized by clients before use as a download name).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Content type, `type/subtype`.
    pub content_type: String,
    /// Image width in pixels, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Image height in pixels, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
}

/// What a reply shows of the message it answers.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct ReplyPreview {
    /// The parent's seq.
    pub seq: u64,
    /// The parent's sender.
    pub sender: UserId,
    /// The start of the parent's text (empty when deleted).
    pub excerpt: String,
    /// True when the parent has been deleted.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deleted: bool,
}

/// A room as clients see it.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct RoomInfo {
    /// The room's id.
    pub room_id: RoomId,
    /// Display name.
    pub name: String,
    /// Public or private.
    pub kind: RoomKind,
    /// Topic or description (absent when empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub topic: String,
}

/// A stored message, as delivered live (`message` event) and by `history`.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct Message {
    /// The room.
    pub room: RoomId,
    /// Position in the room: 1, 2, 3, … with no gaps.
    pub seq: u64,
    /// Server time when stored, ms since the Unix epoch.
    pub ts: u64,
    /// Who sent it.
    pub sender: UserId,
    /// The sender's idempotency key.
    pub cid: ClientMsgId,
    /// The kind of message.
    pub kind: MessageKind,
    /// The body, exactly as sent.
    pub text: String,
    /// The sender's own timestamp, when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ts: Option<u64>,
    /// Reactions, aggregated per emoji (in `history`; live `message` events have none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<ReactionSummary>,
    /// The message this one replies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<u64>,
    /// In `history`: enough of the parent to show it. (Boxed: an absent preview costs a
    /// plain message's archive a few bytes instead of the whole struct.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<Box<ReplyPreview>>,
    /// Users mentioned with `@username` (members of the room only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<UserId>,
    /// With `image` and `file`: the shared file. (Boxed, like `reply`.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<Box<FileRef>>,
    /// When the text was last edited, ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<u64>,
    /// A tombstone: the message was deleted, its content is gone, its seq stays.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deleted: bool,
    /// With kind `system`: what happened, structured (`text` has it in words).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<Box<SystemNotice>>,
    /// The receiver has blocked the sender: clients hide the message (or fold it away).
    #[serde(default, skip_serializing_if = "is_false")]
    pub blocked: bool,
    /// With kind `encrypted`: how `text` was encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Box<Encryption>>,
    /// The message mentions the whole room (`@everyone`) or its members online
    /// (`@here`): set when its sender had the room's `mention_all_role`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mention_all: Option<MentionAll>,
    /// A forwarded message: where it came from (and, in `history`, what it said, for
    /// readers who may read the room it came from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<Box<ForwardRef>>,
    /// A thread reply: the seq of its thread's root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<u64>,
    /// A thread reply that is also part of the room's own timeline.
    #[serde(default, skip_serializing_if = "is_false")]
    pub also_to_room: bool,
    /// A thread's root, in `history` and the thread ops: its replies so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_summary: Option<Box<ThreadSummary>>,
}

impl Message {
    /// Whether its `cid` is its sender's idempotency key, found again by a retry: every
    /// message but the server's own notices (their `cid` is `system:SEQ`, informational).
    /// An announcement is a `system` message whose cid is the poster's, so it is one.
    pub fn has_idempotent_cid(&self) -> bool {
        self.kind != MessageKind::System
            || self.system.as_ref().is_some_and(|n| n.action == crate::SystemAction::Announcement)
    }
}

/// A mention of many members at once.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
#[serde(rename_all = "snake_case")]
pub enum MentionAll {
    /// `@everyone`: every member.
    Everyone,
    /// `@here`: the members online when it was sent.
    Here,
}

/// Where a forwarded message came from.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct ForwardRef {
    /// The room of the original.
    pub room: RoomId,
    /// Its seq there.
    pub seq: u64,
    /// The original, in `history`, for a reader who may read its room; never in live
    /// events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Box<ForwardedMessage>>,
}

/// What a forwarded message's original says, as its room holds it now.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct ForwardedMessage {
    /// Who wrote it.
    pub sender: UserId,
    /// When it was stored.
    pub ts: u64,
    /// Its kind.
    pub kind: MessageKind,
    /// Its text (empty once deleted).
    pub text: String,
    /// Its file, for `image` and `file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<Box<FileRef>>,
    /// When it was last edited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<u64>,
    /// The original was deleted: its content is gone.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deleted: bool,
}

/// All reactions with one emoji on a message.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct ReactionSummary {
    /// The emoji.
    pub emoji: String,
    /// How many users reacted with it.
    pub count: u32,
    /// Who (at most 50, oldest first by user id order).
    pub users: Vec<UserId>,
}

/// A frame from the server: a reply to one request, or an event.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum ServerFrame {
    /// `{"re":N,"ok":{…}}` or `{"re":N,"err":{…}}`.
    Reply {
        /// The request's `id`, or 0 when the request's id could not be read.
        re: u64,
        /// Success or failure.
        body: ReplyBody,
    },
    /// `{"ev":"…",…}`: something happened that the client subscribed to.
    Event(Event),
}

impl ServerFrame {
    /// A successful reply.
    pub fn ok(re: u64, body: OkBody) -> Self {
        Self::Reply { re, body: ReplyBody::Ok(body) }
    }

    /// A failed reply.
    pub fn err(re: u64, body: ErrorBody) -> Self {
        Self::Reply { re, body: ReplyBody::Err(body) }
    }
}

/// The outcome carried by a reply.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum ReplyBody {
    /// The request succeeded.
    Ok(OkBody),
    /// The request failed.
    Err(ErrorBody),
}

/// The payload of a successful reply; its shape depends on the op. In JSON it is the
/// bare object (no tag): clients know which op they asked. Decoding tries the variants
/// in order, most specific first, and tolerates fields added by later versions.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
// Untagged on the wire: readers that know their request decode the body as its answer
// (`Answer::decode_json`); `Deserialize` here guesses by shape, for tools that do not.
#[serde(untagged)]
pub enum OkBody {
    /// `room.get`, `room.update`.
    RoomDetails(RoomDetailsOk),
    /// `join`, `invite.accept`.
    Joined(JoinOk),
    /// `room.create`.
    Room(RoomOk),
    /// `send`.
    Sent(SendOk),
    /// `thread.history` (before `History`: a shape guess would take it for one). (Boxed:
    /// the root would widen every reply.)
    ThreadHistory(Box<ThreadHistoryOk>),
    /// `history`.
    History(HistoryOk),
    /// `auth`.
    Authed(AuthOk),
    /// `receipt`.
    Receipt(ReceiptOk),
    /// `react`, `unreact`.
    Reaction(ReactionOk),
    /// `edit.list`.
    Edits(EditsOk),
    /// `pin.list`.
    Pins(PinsOk),
    /// `thread.list`.
    Threads(ThreadsOk),
    /// `thread.read`.
    ThreadRead(ThreadReadOk),
    /// `receipt.list`.
    ReceiptList(ReceiptListOk),
    /// `edit`.
    Edited(EditOk),
    /// `room.list`.
    RoomList(RoomListOk),
    /// `sync`.
    Sync(SyncOk),
    /// `room.members`.
    Members(MembersOk),
    /// `invite.list`.
    Invites(InvitesOk),
    /// `user.get`, `user.update`. (Boxed: the largest answer would widen every reply.)
    Profile(Box<ProfileOk>),
    /// `user.search`.
    Users(UsersOk),
    /// `friend.request`, `friend.accept`, `friend.decline`, `friend.cancel`, `friend.remove`.
    Friend(FriendOk),
    /// `friend.list`.
    Friends(FriendsOk),
    /// `block.list`.
    Blocked(BlockedOk),
    /// `presence.subscribe`.
    PresenceList(PresenceListOk),
    /// `keys.upload`.
    KeysUploaded(KeysUploadOk),
    /// `keys.list`.
    Devices(DevicesOk),
    /// `keys.claim`.
    Claimed(ClaimedOk),
    /// `search`.
    Search(SearchOk),
    /// `notifications.get`, `notifications.set`, `notifications.room`.
    Notifications(NotificationsOk),
    /// `leave`, `ping` and other ops with nothing to say: `{}`.
    Empty(Empty),
}

/// `{}`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct Empty {}

/// Answer to `auth`.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct AuthOk {
    /// The authenticated user.
    pub user_id: UserId,
    /// This connection's session.
    pub session_id: SessionId,
}

/// Answer to `room.create`.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct RoomOk {
    /// The new room.
    pub room: RoomInfo,
}

/// Answer to `join`.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct JoinOk {
    /// The room.
    pub room: RoomInfo,
    /// The newest seq at the time of joining (0 for an empty room).
    pub last_seq: u64,
    /// The oldest seq the room still keeps, when retention removed older messages
    /// (absent: history starts at seq 1). A `since` below `history_from - 1` resumes
    /// here: the messages in between were removed on purpose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_from: Option<std::num::NonZeroU64>,
}

/// Answer to `send`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct SendOk {
    /// The stored message's seq.
    pub seq: u64,
    /// The stored message's server timestamp.
    pub ts: u64,
    /// True when this `cid` had already been stored: nothing new was written.
    #[serde(default, skip_serializing_if = "is_false")]
    pub duplicate: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Answer to `receipt`: the caller's watermarks in the room after the update.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct ReceiptOk {
    /// Highest seq delivered to one of the user's devices.
    pub delivered: u64,
    /// Highest seq the user has read.
    pub read: u64,
}

/// Answer to `react` and `unreact`: the emoji's count on the message afterwards.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct ReactionOk {
    /// The message.
    pub seq: u64,
    /// The emoji.
    pub emoji: String,
    /// Users reacting with this emoji now.
    pub count: u32,
}

/// Answer to `room.list`.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct RoomListOk {
    /// Public rooms, by room id. (Not named `rooms`: JSON replies are untagged, and
    /// `sync` answers `{"rooms":[…]}`.)
    pub results: Vec<RoomInfo>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Answer to `edit`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct EditOk {
    /// The message.
    pub seq: u64,
    /// When the edit was stored.
    pub edited_at: u64,
}

/// One member's watermarks, in `receipt.list`.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct MemberReceipt {
    /// The member.
    pub user: UserId,
    /// The highest seq delivered to one of their devices.
    pub delivered: u64,
    /// The highest seq they read; absent when they do not share read receipts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<u64>,
}

/// Answer to `receipt.list`.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct ReceiptListOk {
    /// The message.
    pub seq: u64,
    /// Members who read it (or had it delivered), by user id.
    pub receipts: Vec<MemberReceipt>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// One earlier text of an edited message.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct EditVersion {
    /// The text the message had.
    pub text: String,
    /// When an edit replaced it (ms since the Unix epoch).
    pub replaced_at: u64,
}

/// Answer to `edit.list`.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct EditsOk {
    /// The message.
    pub seq: u64,
    /// Its earlier texts, oldest first.
    pub versions: Vec<EditVersion>,
    /// Whether the reader blocked the message's sender (shown, flagged, as in `history`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub blocked: bool,
    /// The cursor of the following page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Answer to `sync`.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct SyncOk {
    /// A page of the rooms the caller is a member of, by room id.
    pub rooms: Vec<RoomSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// One room in a `sync` answer.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct RoomSummary {
    /// The room.
    pub room: RoomInfo,
    /// The newest stored seq (0 for an empty room).
    pub last_seq: u64,
    /// The newest stored message, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_message: Option<Message>,
    /// The caller's delivered watermark.
    pub delivered: u64,
    /// The caller's read watermark.
    pub read: u64,
    /// Messages after the read watermark (`last_seq - read`): the caller's own messages
    /// count as read.
    pub unread: u64,
    /// Messages after the read watermark that mention the caller.
    #[serde(default)]
    pub mentions: u64,
}

/// Answer to `history`.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct HistoryOk {
    /// Newest first (a page backwards), or oldest first (a page forwards from `after`).
    pub messages: Vec<Message>,
    /// Pass as `cursor` for the next page in the same direction; absent when there is
    /// none (forwards: the newest message is in this page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// The oldest seq the room still keeps, when retention removed older messages
    /// (absent: history starts at seq 1): no page goes below it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_from: Option<std::num::NonZeroU64>,
}

/// Events the server pushes.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
#[serde(tag = "ev")]
pub enum Event {
    /// A message stored in a room the client has joined.
    #[serde(rename = "message")]
    Message(Message),
    /// Someone in a joined room started or stopped typing. Never stored, never replayed.
    #[serde(rename = "typing")]
    Typing(Typing),
    /// A member's delivered/read watermarks moved (coalesced). Not replayed: `sync` has
    /// the current state.
    #[serde(rename = "receipt")]
    Receipt(Receipt),
    /// A member added or removed a reaction. Not replayed: `history` has the aggregates.
    #[serde(rename = "reaction")]
    Reaction(Reaction),
    /// A message's text was edited. Not replayed: `history` has the current text.
    #[serde(rename = "edit")]
    Edit(Edit),
    /// A message was deleted (now a tombstone). Not replayed: `history` has the tombstone.
    #[serde(rename = "delete")]
    Delete(Delete),
    /// A thread's summary changed (a reply was stored or deleted). Not replayed:
    /// `history` carries each root's summary.
    #[serde(rename = "thread")]
    Thread(ThreadEvent),
    /// Someone joined or left a joined room. Not replayed.
    #[serde(rename = "member")]
    Member(MemberEvent),
    /// The receiver was invited to a room.
    #[serde(rename = "invite")]
    Invite(InviteInfo),
    /// A friendship of the receiver changed (seen from the receiver's side).
    #[serde(rename = "friend")]
    Friend(FriendInfo),
    /// A followed user's presence changed (at most one per user per second).
    #[serde(rename = "presence")]
    Presence(PresenceInfo),
    /// A message was reported in a room the receiver moderates (or, to an admin, in any
    /// room). Not replayed: the report routes list reports.
    #[serde(rename = "report")]
    Report(crate::rooms::ReportNotice),
    /// The receiver's notification settings changed (on any of their devices). Not
    /// replayed: `notifications.get` has them.
    #[serde(rename = "notifications")]
    Notifications(NotificationsOk),
}

/// The `edit` event.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct Edit {
    /// The room.
    pub room: RoomId,
    /// The message.
    pub seq: u64,
    /// The new text.
    pub text: String,
    /// When it was edited.
    pub edited_at: u64,
}

/// The `delete` event.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct Delete {
    /// The room.
    pub room: RoomId,
    /// The message.
    pub seq: u64,
    /// Who deleted it (the sender, or a moderator).
    pub by: UserId,
}

/// The `reaction` event.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct Reaction {
    /// The room.
    pub room: RoomId,
    /// The message.
    pub seq: u64,
    /// The emoji.
    pub emoji: String,
    /// Who reacted (or un-reacted).
    pub user: UserId,
    /// Added (true) or removed (false).
    pub added: bool,
    /// Users reacting with this emoji now.
    pub count: u32,
}

/// The `receipt` event.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct Receipt {
    /// The room.
    pub room: RoomId,
    /// Whose watermarks.
    pub user: UserId,
    /// Highest seq delivered to one of their devices.
    pub delivered: u64,
    /// Highest seq they have read.
    pub read: u64,
}

/// The `typing` event.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct Typing {
    /// The room.
    pub room: RoomId,
    /// Who is (or was) typing.
    pub user: UserId,
    /// True while typing; false once stopped, timed out, or a message was sent.
    pub active: bool,
    /// With `active`: the indicator lapses by itself after this long unless renewed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_ms: Option<u64>,
}

impl Serialize for ServerFrame {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ServerFrame::Reply { re, body } => {
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("re", re)?;
                match body {
                    ReplyBody::Ok(ok) => map.serialize_entry("ok", ok)?,
                    ReplyBody::Err(err) => map.serialize_entry("err", err)?,
                }
                map.end()
            }
            ServerFrame::Event(event) => event.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for ServerFrame {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut value = serde_json::Value::deserialize(deserializer)?;
        let object = value.as_object_mut().ok_or_else(|| D::Error::custom("expected an object"))?;
        if object.contains_key("ev") {
            return Event::deserialize(value).map(ServerFrame::Event).map_err(D::Error::custom);
        }
        let re = object
            .get("re")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| D::Error::custom("a server frame has `ev` or a numeric `re`"))?;
        let body = match (object.remove("ok"), object.remove("err")) {
            (Some(ok), None) => ReplyBody::Ok(OkBody::deserialize(ok).map_err(D::Error::custom)?),
            (None, Some(err)) => ReplyBody::Err(ErrorBody::deserialize(err).map_err(D::Error::custom)?),
            _ => return Err(D::Error::custom("a reply has exactly one of `ok` and `err`")),
        };
        Ok(ServerFrame::Reply { re, body })
    }
}
