//! Stored records other than messages (which are stored as the protocol's `Message`).

use palaver_protocol::{ClientMsgId, Message, RoomId, RoomKind, UserId};
use serde::{Deserialize, Serialize};

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// The user's id.
    pub user_id: UserId,
    /// Lower-case username.
    pub username: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// When the account was created, ms since the Unix epoch.
    pub created_ms: u64,
}

/// A room's durable description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomRecord {
    /// The room's id.
    pub room_id: RoomId,
    /// Display name.
    pub name: String,
    /// Public or private.
    pub kind: RoomKind,
    /// The creator.
    pub owner: UserId,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: u64,
}

/// A refresh token, stored under the SHA-256 of the token (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRecord {
    /// Whose token.
    pub user_id: UserId,
    /// The login this token descends from; reuse of a rotated token revokes the family.
    pub family: String,
    /// Expiry, ms since the Unix epoch.
    pub expires_ms: u64,
    /// Set once the token has been rotated: presenting it again is a replay.
    pub rotated: bool,
}

/// One durable change, carried out by [`crate::GroupCommitter`] inside one atomic batch.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Write {
    /// Append a message (and its idempotency key) to a room's log.
    AppendMessage(Message),
    /// Create a room.
    PutRoom(RoomRecord),
    /// Add (or re-add) a member to a room, with a role byte.
    PutMember {
        /// The room.
        room: RoomId,
        /// The member.
        user: UserId,
        /// Role, as `palaver-core` encodes it.
        role: u8,
    },
    /// Set a member's delivered and read watermarks (highest seqs) in a room.
    PutReceipt {
        /// The room.
        room: RoomId,
        /// The member.
        user: UserId,
        /// Highest seq delivered to one of the member's devices.
        delivered: u64,
        /// Highest seq the member has read.
        read: u64,
    },
    /// Add a user's reaction to a message (idempotent).
    PutReaction {
        /// The room.
        room: RoomId,
        /// The message.
        seq: u64,
        /// The emoji (validated: no NUL).
        emoji: String,
        /// Who reacted.
        user: UserId,
    },
    /// Remove a user's reaction (idempotent).
    RemoveReaction {
        /// The room.
        room: RoomId,
        /// The message.
        seq: u64,
        /// The emoji.
        emoji: String,
        /// Who un-reacted.
        user: UserId,
    },
    /// Rewrite a stored message in place (edit or tombstone); its cid entry is untouched.
    ReplaceMessage(Message),
    /// Keep the text a message had before an edit.
    PutEditHistory {
        /// The room.
        room: RoomId,
        /// The message.
        seq: u64,
        /// When the edit happened.
        edited_at: u64,
        /// The text before it.
        previous_text: String,
    },
    /// Drop a message's edit history (its content is being deleted).
    DropEditHistory {
        /// The room.
        room: RoomId,
        /// The message.
        seq: u64,
    },
    /// Drop a message's mention index entries (it is being deleted).
    RemoveMentions {
        /// The room.
        room: RoomId,
        /// The message.
        seq: u64,
        /// Who it mentioned.
        users: Vec<UserId>,
    },
    /// Remove a member.
    RemoveMember {
        /// The room.
        room: RoomId,
        /// The member.
        user: UserId,
    },
}

impl Write {
    /// The cid of an appended message, if this is one.
    pub fn cid(&self) -> Option<&ClientMsgId> {
        match self {
            Write::AppendMessage(m) => Some(&m.cid),
            _ => None,
        }
    }
}
