//! Retention in the store: a room's history floor (`room_history_floor`, keyed
//! `room ++ 0`, the oldest seq kept), the removal of everything below it
//! ([`Write::TrimHistory`]), and the reads the sweeper decides from.

use fjall::OwnedWriteBatch;
use palaver_protocol::{RoomId, UserId};

use crate::error::StorageError;
use crate::store::{Engine, Store, decode_json};
use crate::{RoomRecord, keys, message_record};

/// One of a room's oldest messages, as the sweeper needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgedMessage {
    /// Its seq.
    pub seq: u64,
    /// When it was stored, ms since the Unix epoch.
    pub ts: u64,
    /// The file it shares, whose bytes go with it.
    pub file_id: Option<String>,
}

/// The floor stored as a big-endian u64 (absent: 1, nothing removed).
fn decode_floor(value: &[u8]) -> Result<u64, StorageError> {
    <[u8; 8]>::try_from(value)
        .map(u64::from_be_bytes)
        .map_err(|_| StorageError::Corrupt { partition: "room_history_floor", detail: "floor".into() })
}

impl Engine {
    pub(crate) fn history_floor(&self, room: &RoomId) -> Result<u64, StorageError> {
        match self.room_history_floor.get(keys::room_prefix(room))? {
            Some(value) => Ok(decode_floor(&value)?.max(1)),
            None => Ok(1),
        }
    }

    /// Removes every message of `room` below `floor` and everything about each, and
    /// records the floor. Reads what it removes from this store, so a replica that
    /// applies the same write removes the same; applying it again removes nothing more.
    pub(crate) fn apply_trim_history(
        &self,
        batch: &mut OwnedWriteBatch,
        room: &RoomId,
        floor: u64,
    ) -> Result<(), StorageError> {
        if floor <= self.history_floor(room)? {
            return Ok(());
        }
        let start = keys::message(room, 0);
        let end = keys::message(room, floor);
        let mut members: Option<Vec<UserId>> = None;
        for guard in self.room_seq_message.range(start.clone()..end.clone()) {
            let (key, value) = guard.into_inner()?;
            let message = self.read_message(&value)?;
            if message.has_idempotent_cid() {
                batch.remove(&self.room_cid_seq, keys::room_sender_cid(room, &message.sender, &message.cid));
            }
            for user in &message.mentions {
                batch.remove(&self.user_room_mention, keys::user_room_seq(user, room, message.seq));
            }
            if message.mention_all.is_some() {
                // `@everyone`/`@here` indexed it for the members of the time: every member
                // now covers those still here (a departed member's entries are harmless).
                let members = match &mut members {
                    Some(members) => members,
                    None => members.insert(self.member_ids(room)?),
                };
                for user in members.iter() {
                    batch.remove(&self.user_room_mention, keys::user_room_seq(user, room, message.seq));
                }
            }
            if let Some(file) = &message.file {
                batch.remove(&self.file_record, file.file_id.as_bytes());
            }
            self.unindex_trimmed(batch, &message)?;
            batch.remove(&self.room_seq_ext, key.clone());
            batch.remove(&self.room_seq_message, key);
        }
        // Keyed by message first: edits, pins and reactions below the floor.
        for keyspace in [&self.room_seq_edit, &self.room_seq_pin, &self.room_seq_reaction] {
            for guard in keyspace.range(start.clone()..end.clone()) {
                batch.remove(keyspace, guard.key()?);
            }
        }
        batch.insert(&self.room_history_floor, keys::room_prefix(room), floor.to_be_bytes());
        Ok(())
    }

    fn member_ids(&self, room: &RoomId) -> Result<Vec<UserId>, StorageError> {
        let prefix = keys::room_prefix(room);
        let mut users = Vec::new();
        for guard in self.room_member.prefix(&prefix) {
            let key = guard.key()?;
            let user = std::str::from_utf8(&key[prefix.len()..])
                .ok()
                .and_then(|u| UserId::parse(u).ok())
                .ok_or_else(|| StorageError::Corrupt {
                    partition: "room_member",
                    detail: "bad user id".into(),
                })?;
            users.push(user);
        }
        Ok(users)
    }
}

impl Store {
    /// The oldest seq `room` keeps: retention removed everything below it (1: nothing
    /// was removed).
    pub fn history_floor(&self, room: &RoomId) -> Result<u64, StorageError> {
        self.engine()?.history_floor(room)
    }

    /// Up to `limit` of `room`'s oldest stored messages from seq `from` on, oldest first:
    /// what a sweep decides from.
    pub fn aged_messages(
        &self,
        room: &RoomId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<AgedMessage>, StorageError> {
        let e = self.engine()?;
        let start = keys::message(room, from);
        let end = keys::message(room, u64::MAX);
        let mut found = Vec::new();
        for guard in e.room_seq_message.range(start..=end).take(limit) {
            let value = guard.value()?;
            let record = message_record::decode(&value)?;
            // A shared file lives in the extension record: read it only for file kinds.
            let file_id = match record.kind {
                palaver_protocol::MessageKind::Image | palaver_protocol::MessageKind::File => {
                    e.read_message(&value)?.file.map(|f| f.file_id)
                }
                _ => None,
            };
            found.push(AgedMessage { seq: record.seq, ts: record.ts, file_id });
        }
        Ok(found)
    }

    /// Every room (deleted ones too, as stored) after `after` by id, at most `limit`,
    /// and the cursor of the next page: the sweeper's walk.
    pub fn rooms_after(
        &self,
        after: Option<&RoomId>,
        limit: usize,
    ) -> Result<(Vec<RoomRecord>, Option<RoomId>), StorageError> {
        let e = self.engine()?;
        let start = after.map(|r| {
            let mut key = r.as_str().as_bytes().to_vec();
            key.push(0);
            key
        });
        let iter = match &start {
            Some(start) => e.rooms.range(start.clone()..),
            None => e.rooms.iter(),
        };
        let mut found = Vec::new();
        for guard in iter.take(limit) {
            let (_, value) = guard.into_inner()?;
            found.push(decode_json::<RoomRecord>("rooms", &value)?);
        }
        let next = (found.len() == limit).then(|| found.last().map(|r| r.room_id.clone())).flatten();
        Ok((found, next))
    }
}
