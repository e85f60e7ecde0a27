//! People on disk: profiles, friendships (one record per side, `user ++ 0 ++ other`),
//! blocks (`blocker ++ 0 ++ blocked`) and when each user was last seen.

use palaver_protocol::{FriendState, NotificationSettings, RoomId, UserId};

use crate::error::StorageError;
use crate::governance::{scan_pairs_after, u64_value, user_id};
use crate::keys;
use crate::store::{Store, decode_json};
use palaver_core::records::{ProfileRecord, PushSubscriptionRecord, UserRecord};

impl Store {
    /// A user's profile fields (empty when never set).
    pub fn profile(&self, user: &UserId) -> Result<ProfileRecord, StorageError> {
        let e = self.engine()?;
        Ok(e.user_profile
            .get(user.as_str())?
            .map(|v| decode_json("user_profile", &v))
            .transpose()?
            .unwrap_or_default())
    }

    /// A user's notification settings (the defaults when never set).
    pub fn notifications(&self, user: &UserId) -> Result<NotificationSettings, StorageError> {
        let e = self.engine()?;
        Ok(e.user_notifications
            .get(user.as_str())?
            .map(|v| decode_json("user_notifications", &v))
            .transpose()?
            .unwrap_or_default())
    }

    /// A user's push subscriptions, by endpoint.
    pub fn push_subscriptions(&self, user: &UserId) -> Result<Vec<PushSubscriptionRecord>, StorageError> {
        let e = self.engine()?;
        crate::governance::scan_pairs(&e.user_push_subscription, "user_push_subscription", user.as_str())?
            .into_iter()
            .map(|(_, value)| decode_json("user_push_subscription", &value))
            .collect()
    }

    /// Accounts whose username starts with `prefix` (lower case), by username.
    pub fn users_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<UserRecord>, StorageError> {
        Ok(self.users_page(prefix, None, limit)?.0)
    }

    /// Accounts whose username starts with `prefix` (lower case) and sorts after
    /// `after`, by username, at most `limit`; and the username to pass as `after` for the
    /// next page (`None` on the last).
    pub fn users_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<UserRecord>, Option<String>), StorageError> {
        let e = self.engine()?;
        let start = match after {
            Some(after) if after.as_bytes() >= prefix.as_bytes() => {
                let mut key = after.as_bytes().to_vec();
                key.push(0);
                key
            }
            _ => prefix.as_bytes().to_vec(),
        };
        let mut users = Vec::new();
        for guard in e.username_user.range(start..) {
            let (name, value) = guard.into_inner()?;
            if !name.starts_with(prefix.as_bytes()) {
                return Ok((users, None));
            }
            if users.len() == limit {
                let next = users.last().map(|u: &UserRecord| u.username.clone());
                return Ok((users, next));
            }
            let id = std::str::from_utf8(&value).map_err(|_| StorageError::Corrupt {
                partition: "username_user",
                detail: "bad user id".into(),
            })?;
            if let Some(user) = self.user(&user_id("username_user", id)?)? {
                users.push(user);
            }
        }
        Ok((users, None))
    }

    /// One side of a friendship: the state byte and when it changed.
    pub fn friend(&self, user: &UserId, other: &UserId) -> Result<Option<(FriendState, u64)>, StorageError> {
        let e = self.engine()?;
        e.user_user_friend
            .get(keys::pair(user.as_str(), other.as_str()))?
            .map(|v| decode_friend(&v))
            .transpose()
    }

    /// Every friendship of `user` (any state), by the other user's id.
    pub fn friends(&self, user: &UserId) -> Result<Vec<(UserId, FriendState, u64)>, StorageError> {
        self.friends_after(user, None, usize::MAX)
    }

    /// At most `most` of `user`'s friendships (any state), by the other user's id, after
    /// `after`.
    pub fn friends_after(
        &self,
        user: &UserId,
        after: Option<&UserId>,
        most: usize,
    ) -> Result<Vec<(UserId, FriendState, u64)>, StorageError> {
        let e = self.engine()?;
        scan_pairs_after(
            &e.user_user_friend,
            "user_user_friend",
            user.as_str(),
            after.map(UserId::as_str),
            most,
        )?
        .into_iter()
        .map(|(other, value)| {
            let (state, since) = decode_friend(&value)?;
            Ok((user_id("user_user_friend", &other)?, state, since))
        })
        .collect()
    }

    /// Whether `user` has blocked `other`.
    pub fn is_blocked(&self, user: &UserId, other: &UserId) -> Result<bool, StorageError> {
        let e = self.engine()?;
        Ok(e.user_user_block.get(keys::pair(user.as_str(), other.as_str()))?.is_some())
    }

    /// The users `user` has blocked.
    pub fn blocks(&self, user: &UserId) -> Result<Vec<UserId>, StorageError> {
        self.blocks_after(user, None, usize::MAX)
    }

    /// At most `most` of the users `user` has blocked, by id, after `after`.
    pub fn blocks_after(
        &self,
        user: &UserId,
        after: Option<&UserId>,
        most: usize,
    ) -> Result<Vec<UserId>, StorageError> {
        let e = self.engine()?;
        scan_pairs_after(
            &e.user_user_block,
            "user_user_block",
            user.as_str(),
            after.map(UserId::as_str),
            most,
        )?
        .into_iter()
        .map(|(other, _)| user_id("user_user_block", &other))
        .collect()
    }

    /// When `user`'s last session ended, if ever recorded.
    pub fn last_seen(&self, user: &UserId) -> Result<Option<u64>, StorageError> {
        let e = self.engine()?;
        e.user_last_seen.get(user.as_str())?.map(|v| u64_value("user_last_seen", &v)).transpose()
    }

    /// Whether two users are members of some room in common.
    pub fn share_a_room(&self, a: &UserId, b: &UserId) -> Result<bool, StorageError> {
        let (small, large) = {
            let (ra, rb) = (self.user_rooms(a)?, self.user_rooms(b)?);
            if ra.len() <= rb.len() { (ra, rb) } else { (rb, ra) }
        };
        let large: std::collections::HashSet<RoomId> = large.into_iter().collect();
        Ok(small.iter().any(|room| large.contains(room)))
    }
}

fn decode_friend(value: &[u8]) -> Result<(FriendState, u64), StorageError> {
    match value {
        [state, rest @ ..] => {
            let state = FriendState::from_byte(*state).ok_or_else(|| StorageError::Corrupt {
                partition: "user_user_friend",
                detail: format!("unknown friendship byte {state}"),
            })?;
            Ok((state, u64_value("user_user_friend", rest)?))
        }
        [] => Err(StorageError::Corrupt { partition: "user_user_friend", detail: "empty value".into() }),
    }
}
