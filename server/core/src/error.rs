//! Refusals the chat rules can produce, each mapped to one protocol error code.

use palaver_protocol::{ErrorBody, ErrorCode, RoomId};

/// Why the chat rules refuse a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// The op needs an authenticated socket.
    #[error("authenticate first: the only op accepted before auth is `auth`")]
    NotAuthenticated,
    /// `auth` on a socket that is already authenticated.
    #[error("this socket is already authenticated")]
    AlreadyAuthenticated,
    /// The caller is not a member of a room that requires membership.
    #[error("not a member of {0}")]
    NotMember(RoomId),
    /// A private room that the caller was not invited to.
    #[error("{0} is private")]
    PrivateRoom(RoomId),
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
    /// Only the sender may do this to a message.
    #[error("only its sender may edit message {0}")]
    NotYourMessage(u64),
    /// The edit window of a message has passed.
    #[error("message {0} can no longer be edited (the edit window has passed)")]
    EditWindowPassed(u64),
    /// Deleting someone else's message needs the moderator role or above.
    #[error("deleting others' messages needs the moderator role")]
    NotModerator,
    /// No message with this seq in the room (yet).
    #[error("no message {0} in this room")]
    NoSuchMessage(u64),
    /// A field is out of range.
    #[error("{0}")]
    Invalid(String),
    /// A text is longer than allowed.
    #[error("{0}")]
    TooLarge(String),
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
    /// The owner tried to leave.
    #[error("the owner cannot leave: transfer the room (room.transfer) or delete it (room.delete) first")]
    OwnerCannotLeave,
    /// The caller's role (or a block, or the room's kind) does not allow this.
    #[error("{0}")]
    NotPermitted(String),
    /// The request contradicts the current state (already a member, not banned, …).
    #[error("{0}")]
    Conflict(String),
    /// Something the request names does not exist.
    #[error("{0}")]
    NotFound(String),
}

impl CoreError {
    /// The protocol error code for this refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            CoreError::NotAuthenticated => ErrorCode::Unauthorized,
            CoreError::AlreadyAuthenticated | CoreError::Invalid(_) => ErrorCode::Invalid,
            CoreError::NotMember(_)
            | CoreError::PrivateRoom(_)
            | CoreError::Banned(_)
            | CoreError::RoomFull { .. }
            | CoreError::Muted { .. }
            | CoreError::FilesDisabled
            | CoreError::NotPermitted(_) => ErrorCode::Forbidden,
            CoreError::NoSuchMessage(_) | CoreError::NotFound(_) => ErrorCode::NotFound,
            CoreError::OwnerCannotLeave | CoreError::Conflict(_) => ErrorCode::Conflict,
            CoreError::SlowMode { .. } => ErrorCode::RateLimited,
            CoreError::NotYourMessage(_) | CoreError::EditWindowPassed(_) | CoreError::NotModerator => {
                ErrorCode::Forbidden
            }
            CoreError::RateLimited { .. } | CoreError::TooManyInFlight { .. } => ErrorCode::RateLimited,
            CoreError::TooLarge(_) => ErrorCode::TooLarge,
        }
    }

    /// The error body for a reply.
    pub fn to_body(&self) -> ErrorBody {
        let retry_after_ms = match self {
            CoreError::RateLimited { retry_after_ms } | CoreError::SlowMode { retry_after_ms } => {
                Some(*retry_after_ms)
            }
            CoreError::TooManyInFlight { .. } => Some(100),
            _ => None,
        };
        ErrorBody { code: self.code(), message: self.to_string(), retry_after_ms }
    }
}
