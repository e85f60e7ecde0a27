//! Deleting an account: every record about the user goes in one write
//! (`Write::DeleteAccount`), their messages excepted.

use fjall::{Keyspace, OwnedWriteBatch};
use palaver_core::records::{FileRecord, RefreshRecord, UserRecord, Write};
use palaver_protocol::UserId;

use crate::error::StorageError;
use crate::keys;
use crate::store::{Engine, Store, decode_json, username_skeleton};

impl Engine {
    /// Removes every record about `user` but their messages (see `Write::DeleteAccount`).
    /// Reads what it removes, so that a replica applying the same write removes the same.
    pub(crate) fn apply_account_deletion(
        &self,
        batch: &mut OwnedWriteBatch,
        user: &UserId,
        at: u64,
    ) -> Result<(), StorageError> {
        let id = user.as_str();
        if let Some(bytes) = self.users.get(id)? {
            let record: UserRecord = decode_json("users", &bytes)?;
            batch.remove(&self.username_user, record.username.as_str());
            let skeleton = username_skeleton(&record.username);
            if self.username_skeleton.get(skeleton.as_bytes())?.is_some_and(|owner| &*owner == id.as_bytes())
            {
                batch.remove(&self.username_skeleton, skeleton);
            }
        }
        for keyspace in [
            &self.users,
            &self.user_profile,
            &self.user_notifications,
            &self.user_last_seen,
            &self.user_admin,
            &self.user_suspension,
            &self.user_session_epoch,
        ] {
            batch.remove(keyspace, id);
        }
        let prefix = keys::pair_prefix(id);
        // Friendships are kept on both sides.
        for guard in self.user_user_friend.prefix(&prefix) {
            let key = guard.key()?;
            let other = &key[prefix.len()..];
            let mut mirror = other.to_vec();
            mirror.push(0);
            mirror.extend_from_slice(id.as_bytes());
            batch.remove(&self.user_user_friend, mirror);
            batch.remove(&self.user_user_friend, key);
        }
        // Invitations are indexed both ways; receipts are kept per room.
        for guard in self.user_room_invite.prefix(&prefix) {
            let key = guard.key()?;
            let mut by_room = key[prefix.len()..].to_vec();
            by_room.push(0);
            by_room.extend_from_slice(id.as_bytes());
            batch.remove(&self.room_user_invite, by_room);
            batch.remove(&self.user_room_invite, key);
        }
        for guard in self.user_room.prefix(&prefix) {
            let key = guard.key()?;
            let mut by_room = key[prefix.len()..].to_vec();
            by_room.push(0);
            by_room.extend_from_slice(id.as_bytes());
            for mark in self.room_user_root_read.prefix(crate::threads::read_marks_prefix(&by_room)) {
                batch.remove(&self.room_user_root_read, mark.key()?);
            }
            batch.remove(&self.room_user_receipt, by_room);
        }
        for keyspace in [
            &self.user_user_block,
            &self.user_device,
            &self.user_device_otk,
            &self.user_push_subscription,
            &self.user_room_mention,
            &self.user_login_ended,
        ] {
            remove_prefix(batch, keyspace, &prefix)?;
        }
        // Not indexed by user: rare enough to scan.
        for guard in self.refresh_token.iter() {
            let (key, value) = guard.into_inner()?;
            let record: RefreshRecord = decode_json("refresh_token", &value)?;
            if record.user_id == *user {
                batch.remove(&self.refresh_token, key);
            }
        }
        for file in self.files_of(user)? {
            batch.remove(&self.file_record, file.file_id.as_bytes());
        }
        // Leaving the rooms is up to each room's owner, after this write: until it is
        // done (`Write::AccountDeparted`), the account is listed as departing, so a
        // crash in between only delays it.
        batch.insert(&self.account_departure, id, at.to_be_bytes());
        Ok(())
    }

    fn files_of(&self, user: &UserId) -> Result<Vec<FileRecord>, StorageError> {
        let mut files = Vec::new();
        for guard in self.file_record.iter() {
            let (_, value) = guard.into_inner()?;
            let file: FileRecord = decode_json("file_record", &value)?;
            if file.uploader == *user {
                files.push(file);
            }
        }
        Ok(files)
    }
}

fn remove_prefix(
    batch: &mut OwnedWriteBatch,
    keyspace: &Keyspace,
    prefix: &[u8],
) -> Result<(), StorageError> {
    for guard in keyspace.prefix(prefix) {
        batch.remove(keyspace, guard.key()?);
    }
    Ok(())
}

impl Store {
    /// Deleted accounts whose rooms are still to be left, with when each was deleted
    /// (ms), at most `most`.
    pub fn pending_departures(&self, most: usize) -> Result<Vec<(UserId, u64)>, StorageError> {
        let e = self.engine()?;
        let mut pending = Vec::new();
        for guard in e.account_departure.iter().take(most) {
            let (key, value) = guard.into_inner()?;
            let user =
                std::str::from_utf8(&key).ok().and_then(|id| UserId::parse(id).ok()).ok_or_else(|| {
                    StorageError::Corrupt { partition: "account_departure", detail: "bad user id".into() }
                })?;
            let at = value.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0);
            pending.push((user, at));
        }
        Ok(pending)
    }

    /// Records that the deleted account `user` has left every room it was in.
    pub fn finish_departure(&self, user: &UserId) -> Result<(), StorageError> {
        self.account_write(&[Write::AccountDeparted { user: user.clone() }])
    }

    /// Deletes `user`'s account: every record about them goes in one write (their
    /// messages stay, under their id; rooms are left through their owners by the caller),
    /// so every session ends. Returns the write (for the caller to close the sessions'
    /// sockets) and the ids of the files they uploaded (whose bytes the caller deletes).
    pub fn delete_account(&self, user: &UserId, at: u64) -> Result<(Write, Vec<String>), StorageError> {
        let e = self.engine()?;
        let _guard = self.account_writes.lock().map_err(|_| StorageError::Poisoned)?;
        let files = e.files_of(user)?.into_iter().map(|f| f.file_id).collect();
        let deletion = Write::DeleteAccount { user: user.clone(), at };
        self.account_write_locked(&e, std::slice::from_ref(&deletion))?;
        Ok((deletion, files))
    }
}
