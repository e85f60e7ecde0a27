//! The durable vocabulary: the records Palaver stores, and the [`Write`]s the rules
//! decide and storage carries out (messages are stored as the protocol's `Message`).
//! Plain data, typed throughout: storage encodes a role or a friendship state as a byte
//! and reads an unknown byte as corruption, never as a default.

use palaver_protocol::{
    ClientMsgId, FriendState, Message, MessageKind, NotificationSettings, RoomId, RoomKind, RoomRole,
    RoomSettings, ThreadSummary, UserId,
};
use serde::{Deserialize, Serialize};

/// A message's sender has read it, but their watermarks are not written with every
/// message: storage derives them from the room's newest `SENDER_RECEIPT_TAIL` messages
/// (a member's watermark is the stored one or the seq of their newest message among
/// those, whichever is higher). The room's owner writes the senders' watermarks before
/// a message of theirs leaves that tail ([`sender_receipts`]), in the batch of the
/// message that pushes it out, so what a reader derives is what the owner holds.
pub const SENDER_RECEIPT_TAIL: usize = 64;

/// Every member's `(delivered, read)` watermarks, and the members whose watermarks are
/// derived from their own messages, ahead of what is written ([`sender_receipts`]).
pub type DerivedReceipts = (Vec<(UserId, u64, u64)>, Vec<UserId>);

/// Members' `(delivered, read)` watermarks as storage holds them, raised by their own
/// messages among the room's newest (`tail`: `(seq, sender, kind)`, any order). A room's
/// notices (`MessageKind::System`, sent in the name of the member who acted) are nobody's
/// reading, and only current members (`is_member`) are raised: a leaver's watermark is
/// written when they leave, a deleted account's is gone. Returns every watermark and the
/// members whose derived one is ahead of the stored (their owner writes it before their
/// message leaves the tail).
pub fn sender_receipts<'a>(
    stored: Vec<(UserId, u64, u64)>,
    tail: impl IntoIterator<Item = (u64, &'a UserId, MessageKind)>,
    is_member: impl Fn(&UserId) -> bool,
) -> DerivedReceipts {
    let mut newest_own: std::collections::HashMap<&UserId, u64> = std::collections::HashMap::new();
    for (seq, sender, kind) in tail {
        if raises_sender_receipt(sender, kind) && is_member(sender) {
            let newest = newest_own.entry(sender).or_default();
            *newest = (*newest).max(seq);
        }
    }
    let mut ahead = Vec::new();
    let mut receipts = stored;
    for (user, delivered, read) in &mut receipts {
        if let Some(own) = newest_own.remove(&*user)
            && own > *read
        {
            *delivered = (*delivered).max(own);
            *read = own;
            ahead.push(user.clone());
        }
    }
    for (user, own) in newest_own {
        receipts.push((user.clone(), own, own));
        ahead.push(user.clone());
    }
    (receipts, ahead)
}

/// Whether a stored message raises its sender's watermarks (see [`SENDER_RECEIPT_TAIL`]):
/// what they sent, not a notice of what they did.
pub fn raises_sender_receipt(sender: &UserId, kind: MessageKind) -> bool {
    kind != MessageKind::System && !sender.is_system()
}

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
    /// A bot: an account a backend acts as (made through the server API), shown as one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bot: bool,
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
    /// Topic (added within format 1: older records read as empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub topic: String,
    /// Settings (older records: the defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<RoomSettings>,
    /// Deleted by its owner: the room no longer exists for anyone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// Why and by whom a user was banned from a room, or invited to one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// Who did it.
    pub by: UserId,
    /// When, ms since the Unix epoch.
    pub at: u64,
    /// The reason given, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A user's profile fields (the username lives in the account record).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileRecord {
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// A file id or URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
    /// Status text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_text: Option<String>,
    /// The user does not share how far they read (absent: they do).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hide_read_receipts: bool,
}

/// A shared file: where its bytes are, what they are, and the room it was shared to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// The file's id (also its object key).
    pub file_id: String,
    /// The room it was uploaded for: only its members may download it.
    pub room: RoomId,
    /// Who uploaded it.
    pub uploader: UserId,
    /// Size in bytes.
    pub size: u64,
    /// The content type found from its magic bytes.
    pub content_type: String,
    /// Sanitized display name.
    pub name: String,
    /// Image width, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Image height, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// When it was stored, ms since the Unix epoch.
    pub created_ms: u64,
    /// The message that shares it, once one does (a file is shared by one message, and
    /// goes with it when it is deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_in: Option<u64>,
}

/// A browser's Web Push subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushSubscriptionRecord {
    /// The push service's URL for it.
    pub endpoint: String,
    /// The browser's P-256 public key, base64url.
    pub p256dh: String,
    /// The authentication secret, base64url.
    pub auth: String,
    /// When it was registered, ms since the Unix epoch.
    pub created_ms: u64,
}

/// A device's published keys (end-to-end encryption: public material only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// Identity key.
    pub identity_key: String,
    /// Signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
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
    /// The user's session epoch when the family started (older records: 0); a family of
    /// an epoch the user has left is refused (see [`crate::logins`]).
    #[serde(default)]
    pub epoch: u64,
}

/// One durable change, carried out by [`crate::GroupCommitter`] inside one atomic batch.
/// Serializable: in a cluster, batches of writes are the records of the shared log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Write {
    /// Append a message (and its idempotency key) to a room's log.
    AppendMessage(Message),
    /// Create a room.
    PutRoom(RoomRecord),
    /// Add (or re-add) a member to a room, with a role.
    PutMember {
        /// The room.
        room: RoomId,
        /// The member.
        user: UserId,
        /// The member's role.
        role: RoomRole,
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
    /// Index a message as mentioning these users too (`@everyone`, `@here`), so their
    /// mention counts include it.
    PutMentions {
        /// The room.
        room: RoomId,
        /// The message.
        seq: u64,
        /// Who it mentions.
        users: Vec<UserId>,
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
    /// Pin a message of a room.
    PutPin {
        /// The room.
        room: RoomId,
        /// The message.
        seq: u64,
        /// By whom and when.
        record: ActionRecord,
    },
    /// Unpin a message.
    RemovePin {
        /// The room.
        room: RoomId,
        /// The message.
        seq: u64,
    },
    /// Set a thread root's summary (`None`: no replies left), moving it in the room's
    /// threads by activity. A reply's own index entries follow its message's writes.
    PutThread {
        /// The room.
        room: RoomId,
        /// The root.
        root: u64,
        /// The root's replies now.
        summary: Option<ThreadSummary>,
        /// The newest reply's seq before this change (its activity entry goes).
        previous_last: Option<u64>,
    },
    /// Set a member's read mark in one thread.
    PutThreadRead {
        /// The room.
        room: RoomId,
        /// The member.
        user: UserId,
        /// The root.
        root: u64,
        /// The newest reply read.
        read: u64,
    },
    /// Remove a member.
    RemoveMember {
        /// The room.
        room: RoomId,
        /// The member.
        user: UserId,
    },
    /// Ban a user from a room.
    PutBan {
        /// The room.
        room: RoomId,
        /// The user.
        user: UserId,
        /// By whom, when, why.
        record: ActionRecord,
    },
    /// Lift a ban.
    RemoveBan {
        /// The room.
        room: RoomId,
        /// The user.
        user: UserId,
    },
    /// Mute a member until a time (ms since the Unix epoch).
    PutMute {
        /// The room.
        room: RoomId,
        /// The member.
        user: UserId,
        /// When the mute ends.
        until: u64,
    },
    /// Lift a mute.
    RemoveMute {
        /// The room.
        room: RoomId,
        /// The member.
        user: UserId,
    },
    /// Invite a user to a room (indexed both ways).
    PutInvite {
        /// The room.
        room: RoomId,
        /// The invitee.
        user: UserId,
        /// By whom and when.
        record: ActionRecord,
    },
    /// Drop an invitation (accepted, declined, or made moot by a ban).
    RemoveInvite {
        /// The room.
        room: RoomId,
        /// The invitee.
        user: UserId,
    },
    /// Replace a user's profile fields.
    PutProfile {
        /// The user.
        user: UserId,
        /// The fields.
        profile: ProfileRecord,
    },
    /// Replace a user's notification settings.
    PutNotifications {
        /// The user.
        user: UserId,
        /// The settings.
        settings: NotificationSettings,
    },
    /// Add (or replace, by endpoint) a user's push subscription.
    PutPushSubscription {
        /// The user.
        user: UserId,
        /// The subscription.
        subscription: PushSubscriptionRecord,
    },
    /// Forget a user's push subscription.
    RemovePushSubscription {
        /// The user.
        user: UserId,
        /// Its endpoint.
        endpoint: String,
    },
    /// Set one side of a friendship (callers write both sides in one batch).
    PutFriend {
        /// Whose view.
        user: UserId,
        /// The other user.
        other: UserId,
        /// The friendship, seen from `user`.
        state: FriendState,
        /// When it changed.
        since: u64,
    },
    /// Remove one side of a friendship.
    RemoveFriend {
        /// Whose view.
        user: UserId,
        /// The other user.
        other: UserId,
    },
    /// `user` blocks `blocked`.
    PutBlock {
        /// The blocker.
        user: UserId,
        /// The blocked user.
        blocked: UserId,
        /// When.
        since: u64,
    },
    /// `user` unblocks `blocked`.
    RemoveBlock {
        /// The blocker.
        user: UserId,
        /// The blocked user.
        blocked: UserId,
    },
    /// Publish (or re-publish) a device's public keys.
    PutDevice {
        /// The user.
        user: UserId,
        /// The device.
        device_id: String,
        /// Its identity key.
        identity_key: String,
        /// Its signing key.
        signing_key: Option<String>,
    },
    /// Add one-time prekeys to a device.
    PutOneTimeKeys {
        /// The user.
        user: UserId,
        /// The device.
        device_id: String,
        /// `(key_id, key)` pairs.
        keys: Vec<(String, String)>,
    },
    /// Remove a claimed one-time prekey.
    RemoveOneTimeKey {
        /// The user.
        user: UserId,
        /// The device.
        device_id: String,
        /// The key's id.
        key_id: String,
    },
    /// When a user's last session ended.
    PutLastSeen {
        /// The user.
        user: UserId,
        /// ms since the Unix epoch.
        at: u64,
    },
    /// A new account (written by `Store::create_user`; a write of its own only so that
    /// a cluster can replicate it).
    PutUser(UserRecord),
    /// A refresh token record (new, or marked rotated), under the token's hash.
    PutRefresh {
        /// SHA-256 of the token.
        token_hash: Vec<u8>,
        /// The record.
        record: RefreshRecord,
    },
    /// A refresh-token family is revoked (a rotated token was replayed).
    RevokeFamily {
        /// The family.
        family: String,
        /// When, ms since the Unix epoch.
        at: u64,
    },
    /// One login of a user is over: its refresh tokens and access tokens are refused and
    /// its live sockets closed.
    EndLogin {
        /// The user.
        user: UserId,
        /// The login's id (an access token's `sid`, a refresh-token family).
        login: String,
        /// Why.
        reason: crate::logins::EndReason,
        /// When, ms since the Unix epoch.
        at: u64,
    },
    /// Every login of a user older than `standing` is over (log out everywhere, a new
    /// password).
    EndAllLogins {
        /// The user.
        user: UserId,
        /// The user's standing from now on (a replica keeps the latest it has seen).
        standing: crate::logins::SessionEpoch,
        /// Why.
        reason: crate::logins::EndReason,
    },
    /// A user's new password (a hash).
    SetPassword {
        /// The user.
        user: UserId,
        /// argon2id PHC string.
        password_hash: String,
    },
    /// Grant (`admin`) or revoke the admin role.
    SetAdmin {
        /// The user.
        user: UserId,
        /// Whether they are an admin from now on.
        admin: bool,
    },
    /// Suspend an account (`Some`) or lift its suspension (`None`).
    SetSuspension {
        /// The user.
        user: UserId,
        /// The suspension.
        suspension: Option<crate::admin::Suspension>,
    },
    /// Add an entry to the audit log (never rewritten or removed).
    AppendAudit {
        /// The entry's id: unique, and ordered by time.
        id: String,
        /// The entry.
        entry: crate::admin::AuditEntry,
    },
    /// Delete an account: its record and username, profile, last seen, friendships (both
    /// sides), its own blocks, devices and one-time keys, invitations, mention index,
    /// receipts, refresh tokens, ended-session records, standing, admin role and
    /// suspension, and its files' records. Its messages stay, under its id.
    DeleteAccount {
        /// The user.
        user: UserId,
        /// When, ms since the Unix epoch (older records: 0).
        #[serde(default)]
        at: u64,
    },
    /// A deleted account has left (or deleted) every room it was in: its pending
    /// departure, recorded with its deletion, is done.
    AccountDeparted {
        /// The user.
        user: UserId,
    },
    /// Store a report (new, or resolved), indexed by its room.
    PutReport(crate::reports::ReportRecord),
    /// Store an API key's record (new, or revoked).
    PutApiKey(crate::api_keys::ApiKeyRecord),
    /// Store a webhook registration (new, or changed).
    PutWebhook(crate::webhooks::WebhookRecord),
    /// Remove a webhook registration.
    RemoveWebhook {
        /// The registration's id.
        webhook_id: String,
    },
    /// Queue an outbound delivery on this node only: never sent to the cluster log, so
    /// the event it tells of is delivered from the one node that decided it.
    PutOutbound(crate::outbound::OutboundDelivery),
    /// A shared file's metadata.
    PutFile(FileRecord),
    /// A file's metadata goes (its message was deleted): downloads stop.
    RemoveFile {
        /// The file.
        file_id: String,
    },
    /// Retention: the room's history starts at `floor` from now on. Every message below
    /// it goes with everything about it — extension record, edit history, reactions,
    /// pins, mention index entries, its cid and its file's record — read from the store
    /// it is applied to, so every replica removes the same. Seqs are not reused.
    TrimHistory {
        /// The room.
        room: RoomId,
        /// The floor before (what this write removes is `from..floor`; anything below
        /// `from` was removed before and is removed again if found).
        from: u64,
        /// The oldest seq kept.
        floor: u64,
    },
}

impl Write {
    /// The room this write belongs to, if it belongs to one (a room's records go to the
    /// cluster log under that room's fence).
    pub fn room(&self) -> Option<&palaver_protocol::RoomId> {
        match self {
            Write::AppendMessage(m) | Write::ReplaceMessage(m) => Some(&m.room),
            Write::PutRoom(r) => Some(&r.room_id),
            Write::PutMember { room, .. }
            | Write::PutReceipt { room, .. }
            | Write::PutReaction { room, .. }
            | Write::RemoveReaction { room, .. }
            | Write::PutEditHistory { room, .. }
            | Write::DropEditHistory { room, .. }
            | Write::RemoveMentions { room, .. }
            | Write::PutMentions { room, .. }
            | Write::PutPin { room, .. }
            | Write::RemovePin { room, .. }
            | Write::PutThread { room, .. }
            | Write::PutThreadRead { room, .. }
            | Write::RemoveMember { room, .. }
            | Write::PutBan { room, .. }
            | Write::RemoveBan { room, .. }
            | Write::PutMute { room, .. }
            | Write::RemoveMute { room, .. }
            | Write::PutInvite { room, .. }
            | Write::RemoveInvite { room, .. }
            | Write::TrimHistory { room, .. } => Some(room),
            Write::PutOutbound(delivery) => delivery.room.as_ref(),
            Write::PutProfile { .. }
            | Write::PutNotifications { .. }
            | Write::PutPushSubscription { .. }
            | Write::RemovePushSubscription { .. }
            | Write::PutFriend { .. }
            | Write::RemoveFriend { .. }
            | Write::PutBlock { .. }
            | Write::RemoveBlock { .. }
            | Write::PutDevice { .. }
            | Write::PutOneTimeKeys { .. }
            | Write::RemoveOneTimeKey { .. }
            | Write::PutLastSeen { .. }
            | Write::PutUser(_)
            | Write::PutRefresh { .. }
            | Write::RevokeFamily { .. }
            | Write::EndLogin { .. }
            | Write::EndAllLogins { .. }
            | Write::SetPassword { .. }
            | Write::SetAdmin { .. }
            | Write::SetSuspension { .. }
            | Write::AppendAudit { .. }
            | Write::PutReport(_)
            | Write::PutApiKey(_)
            | Write::PutWebhook(_)
            | Write::RemoveWebhook { .. }
            | Write::DeleteAccount { .. }
            | Write::AccountDeparted { .. }
            | Write::PutFile(_)
            | Write::RemoveFile { .. } => None,
        }
    }

    /// The pair of users (lower id first) a friendship or block write is about: a
    /// pair's changes go to the cluster log under that pair's fence.
    pub fn pair(&self) -> Option<(&UserId, &UserId)> {
        let (a, b) = match self {
            Write::PutFriend { user, other, .. } | Write::RemoveFriend { user, other } => (user, other),
            Write::PutBlock { user, blocked, .. } | Write::RemoveBlock { user, blocked } => (user, blocked),
            _ => return None,
        };
        Some(if a <= b { (a, b) } else { (b, a) })
    }

    /// The one pair every write of `writes` is about, if there is one.
    pub fn single_pair(writes: &[Write]) -> Option<(&UserId, &UserId)> {
        let first = writes.first()?.pair()?;
        writes.iter().all(|w| w.pair() == Some(first)).then_some(first)
    }

    /// The one room every write of `writes` belongs to, if there is one (`None` for
    /// writes of no room or of several).
    pub fn single_room(writes: &[Write]) -> Option<&palaver_protocol::RoomId> {
        let first = writes.first()?.room()?;
        writes.iter().all(|w| w.room() == Some(first)).then_some(first)
    }

    /// Whether this write stays on the node that decided it (see [`Write::PutOutbound`]).
    pub fn node_local(&self) -> bool {
        matches!(self, Write::PutOutbound(_))
    }

    /// The cid of an appended message, if this is one.
    pub fn cid(&self) -> Option<&ClientMsgId> {
        match self {
            Write::AppendMessage(m) => Some(&m.cid),
            _ => None,
        }
    }
}

/// A message append that would leave a hole in (or rewrite) its room's log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{room}: seq {seq} does not follow the log, whose next seq is {expected}")]
pub struct OutOfOrder {
    /// The room.
    pub room: palaver_protocol::RoomId,
    /// The seq the append carries.
    pub seq: u64,
    /// The seq that would follow the room's log.
    pub expected: u64,
}

/// The fence on a room's log: every appended message takes the seq right after the
/// room's last, so a log never has a hole, whatever an owner decided before a refused
/// write. It learns each room's last stored seq once (`last_seq`) and follows the
/// appends it admitted: the group committer keeps one from group to group while it is
/// the only writer of messages and its groups are stored.
#[derive(Debug, Default)]
pub struct SeqFence {
    next: std::collections::HashMap<palaver_protocol::RoomId, u64>,
}

impl SeqFence {
    /// A fence knowing nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many rooms' next seqs the fence holds.
    pub fn rooms(&self) -> usize {
        self.next.len()
    }

    /// Admits `writes` (one submission, all or nothing) if each of their appends takes
    /// its room's next seq; `last_seq` reads a room's last stored seq the first time the
    /// fence meets the room.
    pub fn admit<E>(
        &mut self,
        writes: &[Write],
        mut last_seq: impl FnMut(&palaver_protocol::RoomId) -> Result<u64, E>,
    ) -> Result<Result<(), OutOfOrder>, E> {
        let mut admitted: Vec<(&palaver_protocol::RoomId, u64)> = Vec::new();
        for write in writes {
            let Write::AppendMessage(message) = write else { continue };
            let room = &message.room;
            let expected = match admitted.iter().rev().find(|(r, _)| *r == room) {
                Some((_, seq)) => seq + 1,
                None => match self.next.get(room) {
                    Some(next) => *next,
                    None => last_seq(room)? + 1,
                },
            };
            if message.seq != expected {
                return Ok(Err(OutOfOrder { room: room.clone(), seq: message.seq, expected }));
            }
            admitted.push((room, message.seq));
        }
        for (room, seq) in admitted {
            self.next.insert(room.clone(), seq + 1);
        }
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

    use super::*;

    fn user(name: &str) -> UserId {
        UserId::parse(&format!("u_{name}")).unwrap()
    }

    #[test]
    fn a_senders_newest_message_in_the_tail_raises_their_stored_watermarks() {
        let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
        let system = UserId::system();
        let stored = vec![(alice.clone(), 9, 4), (bob.clone(), 12, 12)];
        let text = MessageKind::Text;
        let tail = [
            (12, &alice, text),
            (11, &bob, text),
            (10, &carol, text),
            (8, &alice, text),
            (13, &system, text),
        ];
        let (mut receipts, mut ahead) = sender_receipts(stored, tail, |_| true);
        receipts.sort();
        ahead.sort();
        assert_eq!(
            receipts,
            vec![(alice.clone(), 12, 12), (bob.clone(), 12, 12), (carol.clone(), 10, 10)],
            "alice's newest (12) over her stored read; bob read past his own; the system is nobody"
        );
        assert_eq!(ahead, vec![alice, carol]);
    }

    #[test]
    fn a_notice_in_a_members_name_is_not_their_reading() {
        let (alice, bob) = (user("alice"), user("bob"));
        let stored = vec![(alice.clone(), 5, 5)];
        // Alice pinned (a notice sent in her name) after her last message.
        let tail =
            [(9, &alice, MessageKind::System), (7, &alice, MessageKind::Text), (8, &bob, MessageKind::Text)];
        let (mut receipts, ahead) = sender_receipts(stored, tail, |_| true);
        receipts.sort();
        assert_eq!(receipts, vec![(alice.clone(), 7, 7), (bob.clone(), 8, 8)], "the notice (9) is not read");
        assert_eq!(ahead.len(), 2);
    }

    #[test]
    fn only_members_are_raised_by_their_messages() {
        let (alice, gone) = (user("alice"), user("gone"));
        let tail = [(3, &gone, MessageKind::Text), (2, &alice, MessageKind::Text)];
        let (receipts, ahead) = sender_receipts(Vec::new(), tail, |u| *u == alice);
        assert_eq!(receipts, vec![(alice.clone(), 2, 2)], "a deleted account's row never comes back");
        assert_eq!(ahead, vec![alice]);
    }
}
