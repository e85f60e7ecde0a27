//! What the application sees: [`ClientEvent`], one variant per server event plus the
//! connection's own events, and its JSON form for bindings (JavaScript, Python).

use palaver_protocol::{
    Delete, Edit, Event, FriendInfo, InviteInfo, MemberEvent, Message, NotificationSettings, PresenceInfo,
    Reaction, Receipt, ReportNotice, RoomId, SessionId, ThreadEvent, Typing, UserId,
};
use serde_json::json;

use crate::error::Error;
use crate::tokens::Tokens;

/// What the application sees: every event the server pushes (docs/PROTOCOL.md §3.6), and
/// the connection's own changes.
///
/// Room events (`Message`, `Typing`, `Receipt`, `Reaction`, `Edit`, `Delete`, `Thread`,
/// `Member`) arrive for the rooms this client has joined; `Invite`, `Friend`, `Presence`
/// and `Report` concern the user. Matching on it needs a `_` arm: new server events become
/// new variants.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A message in a joined room: each seq once, in order, with no gap.
    Message(Message),
    /// Someone started or stopped typing in a joined room.
    Typing(Typing),
    /// A member's receipt watermarks moved.
    Receipt(Receipt),
    /// A reaction was added or removed.
    Reaction(Reaction),
    /// A message was edited.
    Edit(Edit),
    /// A message was deleted.
    Delete(Delete),
    /// A thread's summary changed (a reply was stored or deleted).
    Thread(ThreadEvent),
    /// Someone joined or left a joined room (kicks and bans are `system` messages).
    Member(MemberEvent),
    /// The user was invited to a room.
    Invite(InviteInfo),
    /// A friendship of the user changed (seen from the user's side).
    Friend(FriendInfo),
    /// A followed user's presence: a change pushed by the server (friends are followed
    /// automatically, others after [`presence_subscribe`](crate::Client::presence_subscribe)),
    /// or, after a reconnect, the current presence of each user followed by subscription.
    Presence(PresenceInfo),
    /// A message was reported in a room the user moderates (or, to an admin, in any room).
    Report(ReportNotice),
    /// The user's notification settings changed (on this device or another).
    Notifications(NotificationSettings),
    /// The socket is authenticated and every room is re-joined (rejoins may still be
    /// replaying).
    Connected {
        /// The authenticated user.
        user_id: UserId,
        /// This connection's session id.
        session_id: SessionId,
    },
    /// The connection dropped; the client reconnects by itself after `retry_in_ms`.
    Disconnected {
        /// Why.
        reason: String,
        /// Delay before the next attempt.
        retry_in_ms: u64,
    },
    /// The access/refresh tokens changed: store them if the app keeps sessions (the old
    /// refresh token no longer works).
    Tokens(Tokens),
    /// The server holds fewer messages of a room than this client had seen (lost in
    /// `buffered` durability mode); seqs after `last_seq` will be new messages.
    RoomReset {
        /// The room.
        room: RoomId,
        /// The server's newest seq.
        last_seq: u64,
    },
    /// A joined room could not be re-joined after a reconnect (deleted, or access lost);
    /// the client stopped tracking it.
    RoomLost {
        /// The room.
        room: RoomId,
        /// Why.
        error: Error,
    },
    /// This event stream fell behind: its buffer was full, so its `missed` oldest events
    /// were dropped (other streams and the client itself are unaffected). Messages among
    /// them are still in `history`. Never produced by the core, only by a stream.
    Lagged {
        /// How many events this stream lost.
        missed: u64,
    },
    /// The client stopped for good (closed by the application, or credentials refused).
    Closed {
        /// Why, when not closed by the application.
        error: Option<Error>,
    },
}

/// Every server event becomes a client event: this match has no `_` arm, so a new
/// protocol event does not compile until the SDK surfaces it.
impl From<Event> for ClientEvent {
    fn from(event: Event) -> Self {
        match event {
            Event::Message(e) => ClientEvent::Message(e),
            Event::Typing(e) => ClientEvent::Typing(e),
            Event::Receipt(e) => ClientEvent::Receipt(e),
            Event::Reaction(e) => ClientEvent::Reaction(e),
            Event::Edit(e) => ClientEvent::Edit(e),
            Event::Delete(e) => ClientEvent::Delete(e),
            Event::Thread(e) => ClientEvent::Thread(e),
            Event::Member(e) => ClientEvent::Member(e),
            Event::Invite(e) => ClientEvent::Invite(e),
            Event::Friend(e) => ClientEvent::Friend(e),
            Event::Presence(e) => ClientEvent::Presence(e),
            Event::Report(e) => ClientEvent::Report(e),
            Event::Notifications(e) => ClientEvent::Notifications(e.notifications),
        }
    }
}

impl ClientEvent {
    /// Every [`ClientEvent::kind`], in declaration order.
    pub const KINDS: &'static [&'static str] = &[
        "message",
        "typing",
        "receipt",
        "reaction",
        "edit",
        "delete",
        "thread",
        "member",
        "invite",
        "friend",
        "presence",
        "report",
        "notifications",
        "connected",
        "disconnected",
        "tokens",
        "room_reset",
        "room_lost",
        "lagged",
        "closed",
    ];

    /// The event's name: the server's `ev` for server events (`"message"`, `"presence"`,
    /// …), else `"connected"`, `"disconnected"`, `"tokens"`, `"room_reset"`,
    /// `"room_lost"`, `"lagged"` or `"closed"`.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientEvent::Message(_) => "message",
            ClientEvent::Typing(_) => "typing",
            ClientEvent::Receipt(_) => "receipt",
            ClientEvent::Reaction(_) => "reaction",
            ClientEvent::Edit(_) => "edit",
            ClientEvent::Delete(_) => "delete",
            ClientEvent::Thread(_) => "thread",
            ClientEvent::Member(_) => "member",
            ClientEvent::Invite(_) => "invite",
            ClientEvent::Friend(_) => "friend",
            ClientEvent::Presence(_) => "presence",
            ClientEvent::Report(_) => "report",
            ClientEvent::Notifications(_) => "notifications",
            ClientEvent::Connected { .. } => "connected",
            ClientEvent::Disconnected { .. } => "disconnected",
            ClientEvent::Tokens(_) => "tokens",
            ClientEvent::RoomReset { .. } => "room_reset",
            ClientEvent::RoomLost { .. } => "room_lost",
            ClientEvent::Lagged { .. } => "lagged",
            ClientEvent::Closed { .. } => "closed",
        }
    }

    /// The event as a JSON object with a `type` (its [`kind`](Self::kind)). A server
    /// event's body is under a key named like the type, in the protocol's JSON form
    /// (`{"type":"message","message":{"room":…,"seq":…}}`); the others have their fields
    /// at the top level (`{"type":"disconnected","reason":…,"retry_in_ms":…}`); an error
    /// is `{"code": <protocol code or null>, "message": …}`. Tokens are included.
    pub fn to_json(&self) -> serde_json::Value {
        let kind = self.kind();
        let body = |value: serde_json::Value| json!({ "type": kind, kind: value });
        match self {
            ClientEvent::Message(e) => body(json!(e)),
            ClientEvent::Typing(e) => body(json!(e)),
            ClientEvent::Receipt(e) => body(json!(e)),
            ClientEvent::Reaction(e) => body(json!(e)),
            ClientEvent::Edit(e) => body(json!(e)),
            ClientEvent::Delete(e) => body(json!(e)),
            ClientEvent::Thread(e) => body(json!(e)),
            ClientEvent::Member(e) => body(json!(e)),
            ClientEvent::Invite(e) => body(json!(e)),
            ClientEvent::Friend(e) => body(json!(e)),
            ClientEvent::Presence(e) => body(json!(e)),
            ClientEvent::Report(e) => body(json!(e)),
            ClientEvent::Notifications(e) => body(json!(e)),
            ClientEvent::Tokens(tokens) => body(json!(tokens)),
            ClientEvent::Connected { user_id, session_id } => {
                json!({ "type": kind, "user_id": user_id, "session_id": session_id })
            }
            ClientEvent::Disconnected { reason, retry_in_ms } => {
                json!({ "type": kind, "reason": reason, "retry_in_ms": retry_in_ms })
            }
            ClientEvent::RoomReset { room, last_seq } => {
                json!({ "type": kind, "room": room, "last_seq": last_seq })
            }
            ClientEvent::RoomLost { room, error } => {
                json!({ "type": kind, "room": room, "error": error.to_json() })
            }
            ClientEvent::Lagged { missed } => json!({ "type": kind, "missed": missed }),
            ClientEvent::Closed { error } => {
                json!({ "type": kind, "error": error.as_ref().map(Error::to_json) })
            }
        }
    }
}
