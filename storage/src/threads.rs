//! Threads on disk. A reply is a message like any other (`room_seq_message`, its
//! `thread` in the extension record); these partitions index it, all keyed room first
//! (so forgetting a room forgets them and rebuilding it from the log rebuilds them):
//!
//! - `room_root_seq_reply`: `room ++ 0 ++ root ++ seq` → the reply's time: a thread's
//!   live replies in seq order (a deleted reply leaves it), written with the message.
//! - `room_seq_thread_only`: `room ++ 0 ++ seq` → root: replies not also sent to the
//!   room, which `sync` leaves out of the room's unread count.
//! - `room_seq_thread`: `room ++ 0 ++ root` → the root's summary (count, newest reply's
//!   seq and time), set by the owner's `PutThread`.
//! - `room_seq_thread_activity`: `room ++ 0 ++ newest reply's seq` → root: the room's
//!   threads by their latest reply (`thread.list`).
//! - `room_user_root_read`: `room ++ 0 ++ user ++ 0 ++ root` → the user's read mark.

use fjall::OwnedWriteBatch;
use palaver_core::records::Write;
use palaver_protocol::{Message, RoomId, ThreadSummary, UserId};

use crate::error::StorageError;
use crate::keys;
use crate::store::{Engine, Store};

/// `room ++ 0 ++ root ++ seq`.
fn reply_key(room: &RoomId, root: u64, seq: u64) -> Vec<u8> {
    let mut key = keys::message(room, root);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// `room ++ 0 ++ user ++ 0 ++ root`.
fn read_key(room: &RoomId, user: &UserId, root: u64) -> Vec<u8> {
    let mut key = keys::room_member(room, user);
    key.push(0);
    key.extend_from_slice(&root.to_be_bytes());
    key
}

fn u64_at(bytes: &[u8], at: usize, partition: &'static str) -> Result<u64, StorageError> {
    bytes
        .get(at..at + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StorageError::Corrupt { partition, detail: "short value".into() })
}

fn encode_summary(summary: &ThreadSummary) -> [u8; 24] {
    let mut value = [0u8; 24];
    value[..8].copy_from_slice(&u64::from(summary.count).to_be_bytes());
    value[8..16].copy_from_slice(&summary.last_seq.to_be_bytes());
    value[16..].copy_from_slice(&summary.last_at.to_be_bytes());
    value
}

fn decode_summary(bytes: &[u8]) -> Result<ThreadSummary, StorageError> {
    const NAME: &str = "room_seq_thread";
    let count = u32::try_from(u64_at(bytes, 0, NAME)?)
        .map_err(|_| StorageError::Corrupt { partition: NAME, detail: "reply count".into() })?;
    Ok(ThreadSummary { count, last_seq: u64_at(bytes, 8, NAME)?, last_at: u64_at(bytes, 16, NAME)? })
}

impl Engine {
    /// Indexes a new message that is a thread reply (nothing for any other message).
    pub(crate) fn index_reply(&self, batch: &mut OwnedWriteBatch, message: &Message) {
        let Some(root) = message.thread else { return };
        batch.insert(
            &self.room_root_seq_reply,
            reply_key(&message.room, root, message.seq),
            message.ts.to_be_bytes(),
        );
        if !message.also_to_room {
            batch.insert(
                &self.room_seq_thread_only,
                keys::message(&message.room, message.seq),
                root.to_be_bytes(),
            );
        }
    }

    /// A rewritten message: a deleted reply leaves its thread's index (it stays in the
    /// room's timeline as a tombstone, and out of the room's unread count if it was).
    pub(crate) fn unindex_deleted_reply(&self, batch: &mut OwnedWriteBatch, message: &Message) {
        if let (Some(root), true) = (message.thread, message.deleted) {
            batch.remove(&self.room_root_seq_reply, reply_key(&message.room, root, message.seq));
        }
    }

    /// A message below a room's new history floor (retention): its thread entries go. A
    /// reply leaves its thread's index; a root takes its summary, its place by activity
    /// and its replies' index entries with it (its replies above the floor stay in the
    /// room as messages). Members' read marks of a removed root stay, unread.
    pub(crate) fn unindex_trimmed(
        &self,
        batch: &mut OwnedWriteBatch,
        message: &Message,
    ) -> Result<(), StorageError> {
        let room = &message.room;
        if let Some(root) = message.thread {
            batch.remove(&self.room_root_seq_reply, reply_key(room, root, message.seq));
            batch.remove(&self.room_seq_thread_only, keys::message(room, message.seq));
            return Ok(());
        }
        let Some(summary) = self.room_seq_thread.get(keys::message(room, message.seq))? else {
            return Ok(());
        };
        let summary = decode_summary(&summary)?;
        batch.remove(&self.room_seq_thread_activity, keys::message(room, summary.last_seq));
        batch.remove(&self.room_seq_thread, keys::message(room, message.seq));
        for guard in self.room_root_seq_reply.prefix(keys::message(room, message.seq)) {
            batch.remove(&self.room_root_seq_reply, guard.key()?);
        }
        Ok(())
    }

    /// Carries out `PutThread` and `PutThreadRead`.
    pub(crate) fn apply_thread_write(&self, batch: &mut OwnedWriteBatch, write: &Write) {
        match write {
            Write::PutThread { room, root, summary, previous_last } => {
                if let Some(previous) = previous_last.filter(|seq| *seq > 0) {
                    batch.remove(&self.room_seq_thread_activity, keys::message(room, previous));
                }
                match summary {
                    Some(summary) if summary.count > 0 => {
                        batch.insert(
                            &self.room_seq_thread,
                            keys::message(room, *root),
                            encode_summary(summary),
                        );
                        batch.insert(
                            &self.room_seq_thread_activity,
                            keys::message(room, summary.last_seq),
                            root.to_be_bytes(),
                        );
                    }
                    _ => batch.remove(&self.room_seq_thread, keys::message(room, *root)),
                }
            }
            Write::PutThreadRead { room, user, root, read } => {
                batch.insert(&self.room_user_root_read, read_key(room, user, *root), read.to_be_bytes());
            }
            _ => {}
        }
    }
}

impl Store {
    /// A thread root's summary (`None`: no replies).
    pub fn thread_summary(&self, room: &RoomId, root: u64) -> Result<Option<ThreadSummary>, StorageError> {
        let e = self.engine()?;
        e.room_seq_thread.get(keys::message(room, root))?.map(|v| decode_summary(&v)).transpose()
    }

    /// Up to `limit` live replies of thread `root` below `before`, newest first: `(seq, ts)`.
    pub fn thread_replies_before(
        &self,
        room: &RoomId,
        root: u64,
        before: u64,
        limit: usize,
    ) -> Result<Vec<(u64, u64)>, StorageError> {
        let e = self.engine()?;
        let start = reply_key(room, root, 0);
        let end = reply_key(room, root, before);
        e.room_root_seq_reply
            .range(start..end)
            .rev()
            .take(limit)
            .map(|guard| {
                let (key, value) = guard.into_inner()?;
                Ok((keys::seq_of_message_key(&key).unwrap_or(0), u64_at(&value, 0, "room_root_seq_reply")?))
            })
            .collect()
    }

    /// Up to `limit` live replies of thread `root` above `after`, oldest first.
    pub fn thread_replies_after(
        &self,
        room: &RoomId,
        root: u64,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, u64)>, StorageError> {
        let e = self.engine()?;
        let start = reply_key(room, root, after.saturating_add(1));
        let end = reply_key(room, root, u64::MAX);
        e.room_root_seq_reply
            .range(start..=end)
            .take(limit)
            .map(|guard| {
                let (key, value) = guard.into_inner()?;
                Ok((keys::seq_of_message_key(&key).unwrap_or(0), u64_at(&value, 0, "room_root_seq_reply")?))
            })
            .collect()
    }

    /// Up to `limit` of the room's threads whose newest reply is below `before`, the most
    /// recently replied to first: `(root, summary)`.
    pub fn threads_by_activity(
        &self,
        room: &RoomId,
        before: u64,
        limit: usize,
    ) -> Result<Vec<(u64, ThreadSummary)>, StorageError> {
        let e = self.engine()?;
        let start = keys::message(room, 0);
        let end = keys::message(room, before);
        let mut threads = Vec::new();
        for guard in e.room_seq_thread_activity.range(start..end).rev() {
            let value = guard.value()?;
            let root = u64_at(&value, 0, "room_seq_thread_activity")?;
            // The summary is written in the same batch as its activity entry.
            if let Some(summary) = e.room_seq_thread.get(keys::message(room, root))? {
                threads.push((root, decode_summary(&summary)?));
            }
            if threads.len() == limit {
                break;
            }
        }
        Ok(threads)
    }

    /// `user`'s read mark in thread `root` (0: none).
    pub fn thread_read(&self, room: &RoomId, user: &UserId, root: u64) -> Result<u64, StorageError> {
        let e = self.engine()?;
        e.room_user_root_read
            .get(read_key(room, user, root))?
            .map_or(Ok(0), |v| u64_at(&v, 0, "room_user_root_read"))
    }

    /// How many replies after `after` in `room` were kept in their thread (not also sent
    /// to the room): `sync` takes them out of the room's unread count.
    pub fn thread_only_after(&self, room: &RoomId, after: u64) -> Result<u64, StorageError> {
        let e = self.engine()?;
        let start = keys::message(room, after.saturating_add(1));
        let end = keys::message(room, u64::MAX);
        let mut count = 0;
        for guard in e.room_seq_thread_only.range(start..=end) {
            guard.key()?;
            count += 1;
        }
        Ok(count)
    }
}

/// The prefix of `user`'s read marks in `room` (account deletion removes them).
pub(crate) fn read_marks_prefix(room_and_user: &[u8]) -> Vec<u8> {
    let mut prefix = room_and_user.to_vec();
    prefix.push(0);
    prefix
}
