//! Rooms' governance on disk: bans, mutes and invitations, each keyed `room ++ 0 ++ user`
//! (invitations also `user ++ 0 ++ room`, so a user lists theirs with one prefix scan).

use fjall::{Keyspace, OwnedWriteBatch, Slice};
use palaver_protocol::{RoomId, UserId};

use crate::error::StorageError;
use crate::keys;
use crate::store::{Store, decode_json, encode_json};
use palaver_core::records::{ActionRecord, Write};

/// Every `(second id, value)` under the first id `first` in a pair-keyed partition.
pub(crate) fn scan_pairs(
    partition: &Keyspace,
    name: &'static str,
    first: &str,
) -> Result<Vec<(String, Slice)>, StorageError> {
    scan_pairs_after(partition, name, first, None, usize::MAX)
}

/// At most `most` `(second id, value)` under `first`, in key order, after the second id
/// `after` (from the start when `None`): one page of a pair-keyed list.
pub(crate) fn scan_pairs_after(
    partition: &Keyspace,
    name: &'static str,
    first: &str,
    after: Option<&str>,
    most: usize,
) -> Result<Vec<(String, Slice)>, StorageError> {
    let prefix = keys::pair_prefix(first);
    let mut out = Vec::new();
    let decode = |key: &[u8]| {
        std::str::from_utf8(&key[prefix.len()..])
            .map(str::to_owned)
            .map_err(|_| StorageError::Corrupt { partition: name, detail: "key is not UTF-8".into() })
    };
    let mut push = |guard: fjall::Guard| -> Result<bool, StorageError> {
        let (key, value) = guard.into_inner()?;
        out.push((decode(&key)?, value));
        Ok(out.len() < most)
    };
    match after {
        None => {
            for guard in partition.prefix(&prefix).take(most) {
                push(guard)?;
            }
        }
        Some(after) => {
            // Just past `after`: its key with a 0 byte appended is the least key above it.
            let mut start = keys::pair(first, after);
            start.push(0);
            let mut end = prefix.clone();
            if let Some(last) = end.last_mut() {
                *last += 1;
            }
            for guard in partition.range(start..end) {
                if !push(guard)? {
                    break;
                }
            }
        }
    }
    Ok(out)
}

pub(crate) fn user_id(name: &'static str, s: &str) -> Result<UserId, StorageError> {
    UserId::parse(s).map_err(|_| StorageError::Corrupt { partition: name, detail: "bad user id".into() })
}

pub(crate) fn u64_value(name: &'static str, value: &[u8]) -> Result<u64, StorageError> {
    <[u8; 8]>::try_from(value)
        .map(u64::from_be_bytes)
        .map_err(|_| StorageError::Corrupt { partition: name, detail: "value is not 8 bytes".into() })
}

impl crate::store::Engine {
    /// Carries out the governance and people writes of a batch.
    pub(crate) fn apply_governance(
        &self,
        batch: &mut OwnedWriteBatch,
        write: &Write,
    ) -> Result<(), StorageError> {
        let room_user = |room: &RoomId, user: &UserId| keys::pair(room.as_str(), user.as_str());
        let user_user = |a: &UserId, b: &UserId| keys::pair(a.as_str(), b.as_str());
        match write {
            Write::PutBan { room, user, record } => {
                batch.insert(&self.room_user_ban, room_user(room, user), encode_json(record)?);
            }
            Write::RemoveBan { room, user } => batch.remove(&self.room_user_ban, room_user(room, user)),
            Write::PutMute { room, user, until } => {
                batch.insert(&self.room_user_mute, room_user(room, user), until.to_be_bytes());
            }
            Write::RemoveMute { room, user } => batch.remove(&self.room_user_mute, room_user(room, user)),
            Write::PutInvite { room, user, record } => {
                let value = encode_json(record)?;
                batch.insert(&self.room_user_invite, room_user(room, user), value.clone());
                batch.insert(&self.user_room_invite, keys::pair(user.as_str(), room.as_str()), value);
            }
            Write::RemoveInvite { room, user } => {
                batch.remove(&self.room_user_invite, room_user(room, user));
                batch.remove(&self.user_room_invite, keys::pair(user.as_str(), room.as_str()));
            }
            Write::PutProfile { user, profile } => {
                batch.insert(&self.user_profile, user.as_str(), encode_json(profile)?);
            }
            Write::PutNotifications { user, settings } => {
                batch.insert(&self.user_notifications, user.as_str(), encode_json(settings)?);
            }
            Write::PutPushSubscription { user, subscription } => {
                let key = keys::pair(user.as_str(), &subscription.endpoint);
                batch.insert(&self.user_push_subscription, key, encode_json(subscription)?);
            }
            Write::RemovePushSubscription { user, endpoint } => {
                batch.remove(&self.user_push_subscription, keys::pair(user.as_str(), endpoint));
            }
            Write::PutFriend { user, other, state, since } => {
                let mut value = [0u8; 9];
                value[0] = state.to_byte();
                value[1..].copy_from_slice(&since.to_be_bytes());
                batch.insert(&self.user_user_friend, user_user(user, other), value);
            }
            Write::RemoveFriend { user, other } => {
                batch.remove(&self.user_user_friend, user_user(user, other))
            }
            Write::PutBlock { user, blocked, since } => {
                batch.insert(&self.user_user_block, user_user(user, blocked), since.to_be_bytes());
            }
            Write::RemoveBlock { user, blocked } => {
                batch.remove(&self.user_user_block, user_user(user, blocked))
            }
            Write::PutDevice { user, device_id, identity_key, signing_key } => {
                let record = palaver_core::records::DeviceRecord {
                    identity_key: identity_key.clone(),
                    signing_key: signing_key.clone(),
                };
                batch.insert(&self.user_device, keys::pair(user.as_str(), device_id), encode_json(&record)?);
            }
            Write::PutOneTimeKeys { user, device_id, keys: otks } => {
                for (key_id, key) in otks {
                    let mut k = keys::pair(user.as_str(), device_id);
                    k.push(0);
                    k.extend_from_slice(key_id.as_bytes());
                    batch.insert(&self.user_device_otk, k, key.as_bytes());
                }
            }
            Write::RemoveOneTimeKey { user, device_id, key_id } => {
                let mut k = keys::pair(user.as_str(), device_id);
                k.push(0);
                k.extend_from_slice(key_id.as_bytes());
                batch.remove(&self.user_device_otk, k);
            }
            // A deleted account's last session may end after its deletion: nothing of it
            // is kept then.
            Write::PutLastSeen { user, at } if self.users.get(user.as_str())?.is_some() => {
                batch.insert(&self.user_last_seen, user.as_str(), at.to_be_bytes())
            }
            // The room and message writes are carried out by `Store::apply` itself.
            _ => {}
        }
        Ok(())
    }
}

impl Store {
    /// Users banned from a room.
    pub fn bans(&self, room: &RoomId) -> Result<Vec<UserId>, StorageError> {
        let e = self.engine()?;
        scan_pairs(&e.room_user_ban, "room_user_ban", room.as_str())?
            .into_iter()
            .map(|(user, _)| user_id("room_user_ban", &user))
            .collect()
    }

    /// Muted members of a room with when each mute ends.
    pub fn mutes(&self, room: &RoomId) -> Result<Vec<(UserId, u64)>, StorageError> {
        let e = self.engine()?;
        scan_pairs(&e.room_user_mute, "room_user_mute", room.as_str())?
            .into_iter()
            .map(|(user, value)| {
                Ok((user_id("room_user_mute", &user)?, u64_value("room_user_mute", &value)?))
            })
            .collect()
    }

    /// Users invited to a room.
    pub fn invites(&self, room: &RoomId) -> Result<Vec<UserId>, StorageError> {
        let e = self.engine()?;
        scan_pairs(&e.room_user_invite, "room_user_invite", room.as_str())?
            .into_iter()
            .map(|(user, _)| user_id("room_user_invite", &user))
            .collect()
    }

    /// A user's pending invitations, by room id.
    pub fn user_invites(&self, user: &UserId) -> Result<Vec<(RoomId, ActionRecord)>, StorageError> {
        self.user_invites_after(user, None, usize::MAX)
    }

    /// At most `most` of a user's pending invitations, by room id, after `after`.
    pub fn user_invites_after(
        &self,
        user: &UserId,
        after: Option<&RoomId>,
        most: usize,
    ) -> Result<Vec<(RoomId, ActionRecord)>, StorageError> {
        let e = self.engine()?;
        scan_pairs_after(
            &e.user_room_invite,
            "user_room_invite",
            user.as_str(),
            after.map(RoomId::as_str),
            most,
        )?
        .into_iter()
        .map(|(room, value)| {
            let room = RoomId::parse(&room).map_err(|_| StorageError::Corrupt {
                partition: "user_room_invite",
                detail: "bad room id".into(),
            })?;
            Ok((room, decode_json("user_room_invite", &value)?))
        })
        .collect()
    }

    /// A member's role byte, if `user` is a member of `room`.
    pub fn member_role(
        &self,
        room: &RoomId,
        user: &UserId,
    ) -> Result<Option<palaver_protocol::RoomRole>, StorageError> {
        let e = self.engine()?;
        e.room_member
            .get(keys::room_member(room, user))?
            .map(|v| crate::store::decode_role("room_member", &v))
            .transpose()
    }
}
