//! What the owner asks of the world around it: durable state (through the store), who
//! is online, and the shared throttles. Synchronous and small; the driver answers from
//! storage's caches, a test from maps. The owner lays its own pending writes over what
//! these return (it never asks storage about a message it is rewriting).

use palaver_protocol::{
    ClientMsgId, FriendState, Message, PresenceStatus, ReactionSummary, RoomId, ThreadSummary, UserId,
    Username,
};

use crate::records::{FileRecord, RoomRecord};

/// A lookup that could not be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// Storage is not answering now (refusing writes, reopening, shutting down): the
    /// request may be retried.
    #[error("storage is not answering now; try again later")]
    Unavailable,
    /// A write's outcome is unknown: the cluster's log may hold it (it did not answer in
    /// time). Nothing was applied here; a retry with the same request is exactly-once.
    #[error("the cluster log did not answer; the write may be stored")]
    Unknown,
    /// Storage failed (damage, a bug): logged by the driver, `internal` to the client.
    #[error("storage failure: {0}")]
    Failed(String),
}

/// A lookup's result.
pub type Found<T> = Result<T, LookupError>;

/// The owner's view of everything outside its room.
pub trait Lookups {
    /// A stored message.
    fn message(&self, room: &RoomId, seq: u64) -> Found<Option<Message>>;
    /// Up to `limit` earlier texts of message `seq` replaced after `after` (ms), oldest
    /// first, with when each was replaced.
    fn edits(&self, room: &RoomId, seq: u64, after: u64, limit: usize) -> Found<Vec<(u64, String)>>;
    /// Up to `limit` stored messages below `before`, newest first.
    fn messages_before(&self, room: &RoomId, before: u64, limit: usize) -> Found<Vec<Message>>;
    /// Up to `limit` stored messages with seqs in `from..=to`, oldest first.
    fn messages_between(&self, room: &RoomId, from: u64, to: u64, limit: usize) -> Found<Vec<Message>>;
    /// A thread root's summary (`None`: no replies).
    fn thread_summary(&self, room: &RoomId, root: u64) -> Found<Option<ThreadSummary>>;
    /// Up to `limit` live replies of thread `root` below `before`, newest first, as
    /// `(seq, ts)`.
    fn thread_replies_before(
        &self,
        room: &RoomId,
        root: u64,
        before: u64,
        limit: usize,
    ) -> Found<Vec<(u64, u64)>>;
    /// Up to `limit` live replies of thread `root` above `after`, oldest first.
    fn thread_replies_after(
        &self,
        room: &RoomId,
        root: u64,
        after: u64,
        limit: usize,
    ) -> Found<Vec<(u64, u64)>>;
    /// Up to `limit` of the room's threads whose newest reply is below `before`, the most
    /// recently replied to first: `(root, summary)`.
    fn threads_by_activity(
        &self,
        room: &RoomId,
        before: u64,
        limit: usize,
    ) -> Found<Vec<(u64, ThreadSummary)>>;
    /// `user`'s read mark in thread `root` (0: none).
    fn thread_read(&self, room: &RoomId, user: &UserId, root: u64) -> Found<u64>;
    /// The `(seq, ts)` a sender's cid is stored under in a room, if it is.
    fn cid_seq(&self, room: &RoomId, sender: &UserId, cid: &ClientMsgId) -> Found<Option<(u64, u64)>>;
    /// A message's reactions, aggregated per emoji.
    fn reactions(&self, room: &RoomId, seq: u64) -> Found<Vec<ReactionSummary>>;
    /// Whether `user` reacted to `seq` with `emoji`.
    fn has_reaction(&self, room: &RoomId, seq: u64, emoji: &str, user: &UserId) -> Found<bool>;
    /// How many reacted to `seq` with `emoji`.
    fn reaction_count(&self, room: &RoomId, seq: u64, emoji: &str) -> Found<u32>;
    /// A room's stored record.
    fn room_record(&self, room: &RoomId) -> Found<Option<RoomRecord>>;
    /// A user's username, if the account exists.
    fn username(&self, user: &UserId) -> Found<Option<String>>;
    /// The account of a username, if there is one.
    fn user_by_name(&self, name: &Username) -> Found<Option<UserId>>;
    /// A shared file's record.
    fn file(&self, file_id: &str) -> Found<Option<FileRecord>>;
    /// `user`'s role in `room`, if they are a member (of any room, as storage has it).
    fn member_role(&self, room: &RoomId, user: &UserId) -> Found<Option<crate::role::Role>>;
    /// Whether `user` keeps how far they read private.
    fn hides_read_receipts(&self, user: &UserId) -> Found<bool>;
    /// Whether `user` blocked `other`.
    fn is_blocked(&self, user: &UserId, other: &UserId) -> Found<bool>;
    /// The users `user` blocked.
    fn blocks(&self, user: &UserId) -> Found<Vec<UserId>>;
    /// `user`'s side of their friendship with `other`.
    fn friendship(&self, user: &UserId, other: &UserId) -> Found<FriendState>;
    /// How many invitations `user` has pending, counting up to `stop_at`.
    fn pending_invites(&self, user: &UserId, stop_at: usize) -> Found<usize>;
    /// How many rooms `user` owns, counting up to `stop_at`.
    fn owned_rooms(&self, user: &UserId, stop_at: usize) -> Found<usize>;
    /// Whether `user` is online now, as others may see them.
    fn presence(&self, user: &UserId) -> PresenceStatus;
    /// Takes an invitation of a stranger by `sender` from the shared throttle, or says
    /// how many ms to wait.
    fn take_stranger_invite(&self, sender: &UserId, now_ms: u64) -> Result<(), u64>;
    /// Takes a new direct room between `sender` and the stranger `recipient`.
    fn take_stranger_direct_room(&self, sender: &UserId, recipient: &UserId, now_ms: u64) -> Result<(), u64>;
    /// Takes a room creation by `creator`.
    fn take_room_creation(&self, creator: &UserId, now_ms: u64) -> Result<(), u64>;
}
