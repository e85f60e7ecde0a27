//! Every refusal the chat rules can produce, each a named variant mapped to one protocol
//! error code; [`CoreError::to_body`] is the one conversion to the wire.

use palaver_protocol::paging::PagingError;
use palaver_protocol::{ErrorBody, ErrorCode, RoomId, TextError, UserId};

use crate::role::Role;

/// What a throttle limits (the acts a [`CoreError::Throttled`] names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    /// Creating rooms.
    RoomCreation,
    /// Inviting people who are not friends.
    StrangerInvites,
    /// Opening direct rooms with people who are not friends.
    StrangerDirectRooms,
    /// Claiming someone's one-time keys.
    KeyClaims,
}

impl Throttled {
    fn words(self) -> &'static str {
        match self {
            Throttled::RoomCreation => "rooms are being created too fast; slow down",
            Throttled::StrangerInvites => "too many invitations to people who are not your friends",
            Throttled::StrangerDirectRooms => {
                "too many new direct rooms with people who are not your friends"
            }
            Throttled::KeyClaims => "too many one-time key claims; slow down",
        }
    }
}

/// Why the chat rules refuse a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    // ----- the session -----
    /// The op needs an authenticated socket.
    #[error("authenticate first: the only op accepted before auth is `auth`")]
    NotAuthenticated,
    /// `auth` on a socket that is already authenticated.
    #[error("this socket is already authenticated")]
    AlreadyAuthenticated,
    /// Too many requests.
    #[error("too many requests; retry in {retry_after_ms} ms")]
    RateLimited {
        /// How long until a request would be admitted.
        retry_after_ms: u64,
    },
    /// Too many requests waiting for an answer on one socket.
    #[error("too many requests in flight (limit {limit})")]
    TooManyInFlight {
        /// The limit.
        limit: u32,
    },
    /// A throttle on unsolicited acts.
    #[error("{}", .what.words())]
    Throttled {
        /// What.
        what: Throttled,
        /// How long until it would be allowed.
        retry_after_ms: u64,
    },

    // ----- what a request names -----
    /// No such account.
    #[error("no user {0}")]
    NoSuchUser(UserId),
    /// No such room (or it was deleted).
    #[error("no room {0}")]
    NoSuchRoom(RoomId),
    /// No message with this seq in the room (yet).
    #[error("no message {0} in this room")]
    NoSuchMessage(u64),
    /// A thread reply names a root the room does not hold.
    #[error("no message {0} in this room to reply in a thread to")]
    NoThreadRoot(u64),
    /// A thread reply names a deleted root.
    #[error("message {0} was deleted: a thread cannot grow on it")]
    ThreadRootDeleted(u64),
    /// A thread reply names another thread's reply as its root.
    #[error("message {0} is a thread reply: threads are one level deep, reply in its thread")]
    NestedThread(u64),
    /// A thread reply replies to a message outside its thread.
    #[error("message {parent} is not in the thread of message {root}")]
    ReplyOutsideThread {
        /// The message replied to.
        parent: u64,
        /// The thread's root.
        root: u64,
    },
    /// No such file uploaded to this room.
    #[error("no file {0} in this room")]
    NoSuchFile(String),
    /// The user has no such device.
    #[error("{user} has no device {device}")]
    NoSuchDevice {
        /// Whose.
        user: UserId,
        /// The device asked for.
        device: String,
    },
    /// The target of a moderation action is not a member.
    #[error("{0} is not a member of this room")]
    TargetNotMember(UserId),

    // ----- access -----
    /// The caller is not a member of a room that requires membership.
    #[error("not a member of {0}")]
    NotMember(RoomId),
    /// A private room that the caller was not invited to.
    #[error("{0} is private")]
    PrivateRoom(RoomId),
    /// The caller is banned from the room.
    #[error("you are banned from {0}")]
    Banned(RoomId),
    /// The room has as many members as its settings allow.
    #[error("the room is full ({limit} members)")]
    RoomFull {
        /// The member limit.
        limit: u32,
    },
    /// The caller is muted in the room.
    #[error("you are muted in this room until {until} (ms since the Unix epoch)")]
    Muted {
        /// When the mute ends.
        until: u64,
    },
    /// Slow mode: the caller sent too recently.
    #[error("slow mode: wait {retry_after_ms} ms before your next message")]
    SlowMode {
        /// How long until the next message is admitted.
        retry_after_ms: u64,
    },
    /// The room does not allow files.
    #[error("file sharing is turned off in this room")]
    FilesDisabled,
    /// Only the sender may do this to a message.
    #[error("only its sender may edit message {0}")]
    NotYourMessage(u64),
    /// The edit window of a message has passed.
    #[error("message {0} can no longer be edited (the edit window has passed)")]
    EditWindowPassed(u64),
    /// Deleting someone else's message needs the moderator role or above.
    #[error("deleting others' messages needs the moderator role")]
    NotModerator,
    /// A `system` message is the room's record.
    #[error("system messages are the room's record and cannot be deleted")]
    SystemMessageStays,
    /// An act that needs a role the caller does not have.
    #[error("{to} needs the {} role or above", .role.name())]
    NeedsRole {
        /// The least role.
        role: Role,
        /// The act, in words.
        to: &'static str,
    },
    /// An act only the owner may do.
    #[error("only the owner may {0}")]
    OwnerOnly(&'static str),
    /// The target's role is not below the caller's.
    #[error("{target} is a {}: only someone above that role may do this", .role.name())]
    Outranks {
        /// The target.
        target: UserId,
        /// Their role.
        role: Role,
    },
    /// Roles are given below the giver's own only.
    #[error("a {} may give roles below their own only", .0.name())]
    RolesBelowYours(Role),
    /// Direct rooms have no invitations or moderation.
    #[error("direct rooms have no invitations or moderation")]
    DirectRoomsUngoverned,
    /// The owner tried to leave.
    #[error("the owner cannot leave: transfer the room (room.transfer) or delete it (room.delete) first")]
    OwnerCannotLeave,
    /// The invitee is banned from the room.
    #[error("{0} is banned from this room")]
    TargetBanned(UserId),
    /// The other user blocked the caller: no invitations from them.
    #[error("{0} does not accept invitations from you")]
    RefusesInvitations(UserId),
    /// The other user blocked the caller: no direct messages from them.
    #[error("{0} does not accept direct messages from you")]
    RefusesDirectMessages(UserId),
    /// The other user (by name) blocked the caller: no friend requests from them.
    #[error("{0} does not accept friend requests from you")]
    RefusesFriendRequests(String),
    /// The other user (by name) and the caller: the caller blocked them.
    #[error("you blocked {0}: unblock first")]
    YouBlocked(String),
    /// The other user blocked the caller: no key claims from them.
    #[error("{0} does not accept messages from you")]
    RefusesMessages(UserId),

    // ----- caps -----
    /// A user owns as many rooms as allowed.
    #[error("a user owns at most {max} rooms; delete or transfer one first")]
    OwnedRoomsCap {
        /// The cap.
        max: usize,
    },
    /// A user has as many pending invitations as allowed.
    #[error("{user} has {max} pending invitations, the most there can be")]
    PendingInvitesCap {
        /// The invitee.
        user: UserId,
        /// The cap.
        max: usize,
    },
    /// As many friends and requests as allowed.
    #[error("at most {max} friends and requests")]
    FriendsCap {
        /// The cap.
        max: usize,
    },
    /// As many blocked users as allowed.
    #[error("at most {max} blocked users")]
    BlocksCap {
        /// The cap.
        max: usize,
    },
    /// As many devices as allowed.
    #[error("at most {max} devices per user")]
    DevicesCap {
        /// The cap.
        max: usize,
    },

    // ----- the state -----
    /// Already a member (of a room one is invited to).
    #[error("{0} is already a member")]
    AlreadyMember(UserId),
    /// Already banned.
    #[error("{0} is already banned")]
    AlreadyBanned(UserId),
    /// Not banned.
    #[error("{0} is not banned")]
    NotBanned(UserId),
    /// Not muted.
    #[error("{0} is not muted")]
    NotMuted(UserId),
    /// The message is pinned already.
    #[error("message {0} is already pinned")]
    AlreadyPinned(u64),
    /// The message is not pinned.
    #[error("message {0} is not pinned")]
    NotPinned(u64),
    /// The target already has the role.
    #[error("{target} is already a {}", .role.name())]
    AlreadyHasRole {
        /// The target.
        target: UserId,
        /// The role.
        role: Role,
    },
    /// No invitation to decline.
    #[error("no invitation to {0}")]
    NoInvitation(RoomId),
    /// The file is shared by another message.
    #[error("file {0} is shared by another message; upload it again to share it again")]
    FileShared(String),
    /// A device's keys never change.
    #[error("device {0} already has other keys: a device's keys never change (use a new device id)")]
    DeviceKeysFixed(String),
    /// Friendship: already asked (by name).
    #[error("already asked {0}")]
    AlreadyAsked(String),
    /// Friendship: already friends (by name).
    #[error("already friends with {0}")]
    AlreadyFriends(String),
    /// Friendship: no request from them (by name).
    #[error("no friend request from {0}")]
    NoRequestFrom(String),
    /// Friendship: no request to them (by name).
    #[error("no request to {0} to cancel")]
    NoRequestTo(String),
    /// Friendship: not friends (by name).
    #[error("not friends with {0}")]
    NotFriends(String),
    /// The room has too many members for this.
    #[error("{what} is for rooms of at most {max} members")]
    TooManyMembersFor {
        /// The act, in words.
        what: &'static str,
        /// The most members.
        max: usize,
    },
    /// A room holds at most this many pins.
    #[error("a room holds at most {max} pinned messages: unpin one first")]
    PinsCap {
        /// The most.
        max: usize,
    },
    /// The room's memory is being reloaded after a refused write.
    #[error("the room is recovering from a storage failure; try again")]
    Recovering,

    // ----- the request's fields -----
    /// A text field (a message, a name, an emoji) is refused.
    #[error("{field}: {error}")]
    Text {
        /// Which field.
        field: &'static str,
        /// Why.
        error: TextError,
    },
    /// A text field is longer than its limit.
    #[error("{field} is at most {max} {unit}")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// The limit.
        max: usize,
        /// Characters or bytes.
        unit: &'static str,
    },
    /// A field holds a control character.
    #[error("{0} has no control characters")]
    ControlCharacters(&'static str),
    /// A number is out of range.
    #[error("{field} must be {min} to {max}")]
    OutOfRange {
        /// Which field.
        field: &'static str,
        /// The least.
        min: u64,
        /// The most.
        max: u64,
    },
    /// A page request is refused.
    #[error("{0}")]
    Paging(PagingError),
    /// A field is malformed (the detail says how).
    #[error("{field} {rule}")]
    Malformed {
        /// Which field.
        field: &'static str,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// A request whose fields do not go together (the detail says why).
    #[error("{0}")]
    Mismatched(&'static str),
    /// Acting on oneself where that means nothing.
    #[error("{0}")]
    Oneself(&'static str),
    /// Nothing would change.
    #[error("nothing to change")]
    NothingToChange,
}

impl CoreError {
    /// The protocol error code for this refusal.
    pub fn code(&self) -> ErrorCode {
        use CoreError as E;
        match self {
            E::NotAuthenticated => ErrorCode::Unauthorized,
            E::RateLimited { .. } | E::TooManyInFlight { .. } | E::Throttled { .. } | E::SlowMode { .. } => {
                ErrorCode::RateLimited
            }
            E::NoSuchUser(_)
            | E::NoSuchRoom(_)
            | E::NoSuchMessage(_)
            | E::NoThreadRoot(_)
            | E::ThreadRootDeleted(_)
            | E::NoSuchFile(_)
            | E::NoSuchDevice { .. }
            | E::TargetNotMember(_) => ErrorCode::NotFound,
            E::NotMember(_)
            | E::PrivateRoom(_)
            | E::Banned(_)
            | E::RoomFull { .. }
            | E::Muted { .. }
            | E::FilesDisabled
            | E::NotYourMessage(_)
            | E::EditWindowPassed(_)
            | E::NotModerator
            | E::SystemMessageStays
            | E::NeedsRole { .. }
            | E::OwnerOnly(_)
            | E::Outranks { .. }
            | E::RolesBelowYours(_)
            | E::DirectRoomsUngoverned
            | E::TargetBanned(_)
            | E::RefusesInvitations(_)
            | E::RefusesDirectMessages(_)
            | E::RefusesFriendRequests(_)
            | E::YouBlocked(_)
            | E::RefusesMessages(_)
            | E::OwnedRoomsCap { .. }
            | E::PendingInvitesCap { .. }
            | E::FriendsCap { .. }
            | E::BlocksCap { .. }
            | E::DevicesCap { .. }
            | E::PinsCap { .. }
            | E::TooManyMembersFor { .. } => ErrorCode::Forbidden,
            E::OwnerCannotLeave
            | E::AlreadyMember(_)
            | E::AlreadyBanned(_)
            | E::NotBanned(_)
            | E::NotMuted(_)
            | E::AlreadyPinned(_)
            | E::NotPinned(_)
            | E::AlreadyHasRole { .. }
            | E::NoInvitation(_)
            | E::FileShared(_)
            | E::DeviceKeysFixed(_)
            | E::AlreadyAsked(_)
            | E::AlreadyFriends(_)
            | E::NoRequestFrom(_)
            | E::NoRequestTo(_)
            | E::NotFriends(_) => ErrorCode::Conflict,
            E::Recovering => ErrorCode::Unavailable,
            E::TooLong { .. } => ErrorCode::TooLarge,
            E::AlreadyAuthenticated
            | E::Text { .. }
            | E::ControlCharacters(_)
            | E::OutOfRange { .. }
            | E::Paging(_)
            | E::Malformed { .. }
            | E::Mismatched(_)
            | E::NestedThread(_)
            | E::ReplyOutsideThread { .. }
            | E::Oneself(_)
            | E::NothingToChange => ErrorCode::Invalid,
        }
    }

    /// The error body for a reply: the one conversion of a refusal to the wire.
    pub fn to_body(&self) -> ErrorBody {
        let retry_after_ms = match self {
            CoreError::RateLimited { retry_after_ms }
            | CoreError::SlowMode { retry_after_ms }
            | CoreError::Throttled { retry_after_ms, .. } => Some(*retry_after_ms),
            CoreError::TooManyInFlight { .. } => Some(100),
            _ => None,
        };
        ErrorBody { code: self.code(), message: self.to_string(), retry_after_ms }
    }
}
