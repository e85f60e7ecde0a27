//! Everything stored about one user, gathered for their export: the account (not its
//! password hash), standing, profile, people, keys, rooms, invitations, refresh tokens
//! (not their hashes or family ids), files, reports made, and the messages they sent, a
//! page at a time.

use palaver_core::admin::Suspension;
use palaver_core::logins::SessionEpoch;
use palaver_core::records::{FileRecord, ProfileRecord, RefreshRecord};
use palaver_core::reports::ReportRecord;
use palaver_protocol::{FriendState, Message, RoomId, RoomRole, UserId};
use serde::Serialize;

use crate::error::StorageError;
use crate::keys;
use crate::store::{Store, decode_json};

/// What the store holds about one user besides their messages.
#[derive(Debug, Clone, Serialize)]
pub struct UserExport {
    /// The account's id.
    pub user_id: UserId,
    /// The username.
    pub username: String,
    /// When the account was created, ms since the Unix epoch.
    pub created_ms: u64,
    /// Whether the user has the admin role.
    pub admin: bool,
    /// The account's suspension, if suspended.
    pub suspended: Option<Suspension>,
    /// The user's session epoch (raised by log out everywhere, new passwords, suspensions).
    pub session_epoch: SessionEpoch,
    /// Profile fields.
    pub profile: ProfileRecord,
    /// Notification settings.
    pub notifications: palaver_protocol::NotificationSettings,
    /// When the user's last session ended.
    pub last_seen_ms: Option<u64>,
    /// Friendships, from the user's side.
    pub friends: Vec<ExportedFriend>,
    /// Users the user blocked.
    pub blocks: Vec<UserId>,
    /// Devices' public keys.
    pub devices: Vec<ExportedDevice>,
    /// Rooms the user is a member of, with role and receipts.
    pub rooms: Vec<ExportedRoom>,
    /// Pending invitations.
    pub invitations: Vec<ExportedInvitation>,
    /// Refresh tokens stored for the user (their hashes and families left out).
    pub refresh_tokens: Vec<ExportedRefreshToken>,
    /// Files the user uploaded (metadata; the bytes are downloadable by id).
    pub files: Vec<FileRecord>,
    /// Reports the user made.
    pub reports_made: Vec<ReportRecord>,
    /// Web Push subscriptions (their keys, shared with the browser, left out).
    pub push_subscriptions: Vec<ExportedPushSubscription>,
}

/// One Web Push subscription.
#[derive(Debug, Clone, Serialize)]
pub struct ExportedPushSubscription {
    /// The push service's URL for it.
    pub endpoint: String,
    /// When it was registered, ms since the Unix epoch.
    pub created_ms: u64,
}

/// One friendship, as the user sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ExportedFriend {
    /// The other user.
    pub user: UserId,
    /// The state from this user's side.
    pub state: FriendState,
    /// Since when, ms since the Unix epoch.
    pub since: u64,
}

/// One device's published keys.
#[derive(Debug, Clone, Serialize)]
pub struct ExportedDevice {
    /// The device's id.
    pub device_id: String,
    /// Its identity key.
    pub identity_key: String,
    /// Its signing key.
    pub signing_key: Option<String>,
    /// One-time prekeys left.
    pub one_time_keys: usize,
}

/// One room membership.
#[derive(Debug, Clone, Serialize)]
pub struct ExportedRoom {
    /// The room.
    pub room_id: RoomId,
    /// Its name.
    pub name: String,
    /// The user's role.
    pub role: RoomRole,
    /// The delivered watermark.
    pub delivered: u64,
    /// The read watermark.
    pub read: u64,
}

/// One pending invitation.
#[derive(Debug, Clone, Serialize)]
pub struct ExportedInvitation {
    /// The room.
    pub room_id: RoomId,
    /// Who invited.
    pub by: UserId,
    /// When.
    pub at: u64,
}

/// One refresh token.
#[derive(Debug, Clone, Serialize)]
pub struct ExportedRefreshToken {
    /// Its expiry, ms since the Unix epoch.
    pub expires_ms: u64,
    /// Used already (a later token of its session replaced it).
    pub rotated: bool,
    /// The session epoch its session started in.
    pub epoch: u64,
}

/// A page of the messages a user sent: oldest room first (by id), then by seq.
#[derive(Debug, Clone, Serialize)]
pub struct MessagePage {
    /// The messages.
    pub messages: Vec<Message>,
    /// Where the next page starts (`room_id/seq`), if there may be more.
    pub next: Option<String>,
}

impl Store {
    /// What is stored about `user` besides their messages (`None`: no such account).
    /// Scans the refresh-token, file and report partitions: for exports, which are rare.
    pub fn user_export(&self, user: &UserId) -> Result<Option<UserExport>, StorageError> {
        let Some(account) = self.user(user)? else { return Ok(None) };
        let e = self.engine()?;
        let mut devices = Vec::new();
        for (device_id, record) in self.devices(user)? {
            let one_time_keys = self.one_time_key_count(user, &device_id)?;
            devices.push(ExportedDevice {
                device_id,
                identity_key: record.identity_key,
                signing_key: record.signing_key,
                one_time_keys,
            });
        }
        let mut rooms = Vec::new();
        for room_id in self.user_rooms(user)? {
            let Some(role) = self.member_role(&room_id, user)? else { continue };
            let name = self.room(&room_id)?.map(|r| r.name).unwrap_or_default();
            let (delivered, read) = self.receipt(&room_id, user)?;
            rooms.push(ExportedRoom { room_id, name, role, delivered, read });
        }
        let invitations = self
            .user_invites(user)?
            .into_iter()
            .map(|(room_id, record)| ExportedInvitation { room_id, by: record.by, at: record.at })
            .collect();
        let mut refresh_tokens = Vec::new();
        for guard in e.refresh_token.iter() {
            let (_, value) = guard.into_inner()?;
            let record: RefreshRecord = decode_json("refresh_token", &value)?;
            if record.user_id == *user {
                refresh_tokens.push(ExportedRefreshToken {
                    expires_ms: record.expires_ms,
                    rotated: record.rotated,
                    epoch: record.epoch,
                });
            }
        }
        let mut files = Vec::new();
        for guard in e.file_record.iter() {
            let (_, value) = guard.into_inner()?;
            let file: FileRecord = decode_json("file_record", &value)?;
            if file.uploader == *user {
                files.push(file);
            }
        }
        let mut reports_made = Vec::new();
        for guard in e.report.iter() {
            let (_, value) = guard.into_inner()?;
            let report: ReportRecord = decode_json("report", &value)?;
            if report.reporter == *user {
                reports_made.push(report);
            }
        }
        Ok(Some(UserExport {
            user_id: account.user_id,
            username: account.username,
            created_ms: account.created_ms,
            admin: self.is_admin(user)?,
            suspended: self.suspension(user)?,
            session_epoch: self.session_epoch(user)?,
            profile: self.profile(user)?,
            notifications: self.notifications(user)?,
            last_seen_ms: self.last_seen(user)?,
            friends: self
                .friends(user)?
                .into_iter()
                .map(|(user, state, since)| ExportedFriend { user, state, since })
                .collect(),
            blocks: self.blocks(user)?,
            devices,
            rooms,
            invitations,
            refresh_tokens,
            files,
            reports_made,
            push_subscriptions: self
                .push_subscriptions(user)?
                .into_iter()
                .map(|sub| ExportedPushSubscription { endpoint: sub.endpoint, created_ms: sub.created_ms })
                .collect(),
        }))
    }

    /// At most `limit` of the messages `user` sent (in any room, left or deleted ones
    /// included), after `after` (a page's `next`). Seeks each room's index of the user's
    /// idempotency keys: one seek per room on the server.
    pub fn user_messages(
        &self,
        user: &UserId,
        after: Option<(&RoomId, u64)>,
        limit: usize,
    ) -> Result<MessagePage, StorageError> {
        let e = self.engine()?;
        let mut messages = Vec::new();
        let rooms = match after {
            Some((room, _)) => {
                let mut start = room.as_str().as_bytes().to_vec();
                start.push(0);
                let first = e.rooms.get(room.as_str())?.map(|_| room.clone());
                let rest = e.rooms.range(start..);
                Box::new(first.into_iter().map(Ok).chain(rest.map(|guard| room_of_key(&guard.key()?))))
                    as Box<dyn Iterator<Item = Result<RoomId, StorageError>>>
            }
            None => Box::new(e.rooms.iter().map(|guard| room_of_key(&guard.key()?))),
        };
        for room in rooms {
            let room = room?;
            let mut prefix = keys::room_prefix(&room);
            prefix.extend_from_slice(user.as_str().as_bytes());
            prefix.push(0);
            let mut seqs = Vec::new();
            for guard in e.room_cid_seq.prefix(&prefix) {
                let (_, value) = guard.into_inner()?;
                let seq = value
                    .get(..8)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| StorageError::Corrupt {
                        partition: "room_cid_seq",
                        detail: "value".into(),
                    })?;
                seqs.push(seq);
            }
            seqs.sort_unstable();
            let from = match after {
                Some((after_room, after_seq)) if *after_room == room => after_seq,
                _ => 0,
            };
            for seq in seqs.into_iter().filter(|seq| *seq > from) {
                if messages.len() == limit {
                    let next = messages.last().map(|m: &Message| format!("{}/{}", m.room, m.seq));
                    return Ok(MessagePage { messages, next });
                }
                if let Some(message) = self.message(&room, seq)? {
                    messages.push(message);
                }
            }
        }
        Ok(MessagePage { messages, next: None })
    }
}

fn room_of_key(key: &[u8]) -> Result<RoomId, StorageError> {
    std::str::from_utf8(key)
        .ok()
        .and_then(|id| RoomId::parse(id).ok())
        .ok_or_else(|| StorageError::Corrupt { partition: "rooms", detail: "bad room id".into() })
}
