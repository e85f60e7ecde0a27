//! Storage as plain maps, for driving the pure machines without a database: their unit
//! tests, the fuzz targets, the deterministic simulation and the benches. It applies
//! every [`Write`] the way the real store does (what a later lookup sees), answers the
//! owners' and homes' lookups, and reads a room back the way a restart does. The throttles
//! allow everything unless told otherwise, and storage can be made to refuse.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};

use palaver_protocol::{
    ClientMsgId, FriendState, Message, NotificationSettings, PresenceStatus, ReactionSummary, RoomId,
    ThreadSummary, UserId, Username,
};

use crate::owner::{Found, LookupError, Lookups, StoredRoom};
use crate::people::PeopleLookups;
use crate::records::{
    DeviceRecord, FileRecord, ProfileRecord, PushSubscriptionRecord, RoomRecord, SENDER_RECEIPT_TAIL,
    UserRecord, Write, sender_receipts,
};
use crate::role::Role;

/// One room's stored state.
#[derive(Debug, Clone, Default)]
struct StoredRoomState {
    record: Option<RoomRecord>,
    members: BTreeMap<UserId, Role>,
    messages: BTreeMap<u64, Message>,
    receipts: BTreeMap<UserId, (u64, u64)>,
    reactions: BTreeSet<(u64, String, UserId)>,
    /// Earlier texts by `(seq, replaced_at)`, as the store keys them.
    edits: BTreeMap<(u64, u64), String>,
    bans: BTreeSet<UserId>,
    mutes: BTreeMap<UserId, u64>,
    invites: BTreeSet<UserId>,
    /// Pinned messages: who pinned each and when.
    pins: BTreeMap<u64, (UserId, u64)>,
    /// The oldest seq kept (0 or 1: nothing removed).
    history_floor: u64,
    /// Thread roots' summaries.
    threads: BTreeMap<u64, ThreadSummary>,
    /// Members' read marks by `(member, root)`.
    thread_reads: BTreeMap<(UserId, u64), u64>,
}

impl StoredRoomState {
    /// Live replies of thread `root`, oldest first, as the store's index holds them.
    fn replies(&self, root: u64) -> impl DoubleEndedIterator<Item = (u64, u64)> + '_ {
        self.messages.values().filter(move |m| m.thread == Some(root) && !m.deleted).map(|m| (m.seq, m.ts))
    }
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct MemoryStore {
    rooms: BTreeMap<RoomId, StoredRoomState>,
    users: BTreeMap<UserId, UserRecord>,
    profiles: BTreeMap<UserId, ProfileRecord>,
    notifications: BTreeMap<UserId, NotificationSettings>,
    push_subscriptions: BTreeMap<(UserId, String), PushSubscriptionRecord>,
    friends: BTreeMap<(UserId, UserId), (FriendState, u64)>,
    blocks: BTreeSet<(UserId, UserId)>,
    last_seen: BTreeMap<UserId, u64>,
    devices: BTreeMap<(UserId, String), DeviceRecord>,
    one_time_keys: BTreeMap<(UserId, String, String), String>,
    files: BTreeMap<String, FileRecord>,
    online: BTreeSet<UserId>,
    /// How many more of each throttled act are allowed (unlimited when absent).
    allowances: RefCell<HashMap<&'static str, u32>>,
    refusing: Cell<bool>,
}

/// The throttled acts, as [`MemoryStore::allow`] names them.
pub mod acts {
    /// An invitation of someone who is not a friend.
    pub const STRANGER_INVITE: &str = "stranger invite";
    /// A new direct room with someone who is not a friend.
    pub const STRANGER_DIRECT_ROOM: &str = "stranger direct room";
    /// A room creation.
    pub const ROOM_CREATION: &str = "room creation";
    /// A claim of someone's one-time keys.
    pub const KEY_CLAIM: &str = "key claim";
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the account `user` with `username`.
    pub fn add_user(&mut self, user: &UserId, username: &str) {
        let record = UserRecord {
            user_id: user.clone(),
            username: username.to_owned(),
            password_hash: String::new(),
            created_ms: 0,
            bot: false,
        };
        self.users.insert(user.clone(), record);
    }

    /// Lets `act` (see [`acts`]) happen `times` more times, then refuses it.
    pub fn allow(&self, act: &'static str, times: u32) {
        self.allowances.borrow_mut().insert(act, times);
    }

    /// Makes every lookup fail as unavailable (`true`) or answer again.
    pub fn refuse(&self, refusing: bool) {
        self.refusing.set(refusing);
    }

    /// Marks a user online (`true`) or offline for presence lookups.
    pub fn set_online(&mut self, user: &UserId, online: bool) {
        if online {
            self.online.insert(user.clone());
        } else {
            self.online.remove(user);
        }
    }

    fn check(&self) -> Found<()> {
        if self.refusing.get() { Err(LookupError::Unavailable) } else { Ok(()) }
    }

    fn take(&self, act: &'static str) -> Result<(), u64> {
        let mut allowances = self.allowances.borrow_mut();
        match allowances.get_mut(act) {
            None => Ok(()),
            Some(0) => Err(60_000),
            Some(left) => {
                *left -= 1;
                Ok(())
            }
        }
    }

    fn room(&self, room: &RoomId) -> Option<&StoredRoomState> {
        self.rooms.get(room)
    }

    fn room_mut(&mut self, room: &RoomId) -> &mut StoredRoomState {
        self.rooms.entry(room.clone()).or_default()
    }

    /// Applies one batch of writes, as one group commit does.
    pub fn apply(&mut self, writes: &[Write]) {
        for write in writes {
            self.apply_one(write);
        }
    }

    fn apply_one(&mut self, write: &Write) {
        match write {
            Write::AppendMessage(m) | Write::ReplaceMessage(m) => {
                self.room_mut(&m.room).messages.insert(m.seq, m.clone());
            }
            Write::PutRoom(record) => self.room_mut(&record.room_id).record = Some(record.clone()),
            Write::PutMember { room, user, role } => {
                self.room_mut(room).members.insert(user.clone(), *role);
            }
            Write::RemoveMember { room, user } => {
                self.room_mut(room).members.remove(user);
            }
            Write::PutReceipt { room, user, delivered, read } => {
                self.room_mut(room).receipts.insert(user.clone(), (*delivered, *read));
            }
            Write::PutReaction { room, seq, emoji, user } => {
                self.room_mut(room).reactions.insert((*seq, emoji.clone(), user.clone()));
            }
            Write::RemoveReaction { room, seq, emoji, user } => {
                self.room_mut(room).reactions.remove(&(*seq, emoji.clone(), user.clone()));
            }
            Write::PutEditHistory { room, seq, edited_at, previous_text } => {
                self.room_mut(room).edits.insert((*seq, *edited_at), previous_text.clone());
            }
            Write::DropEditHistory { room, seq } => {
                self.room_mut(room).edits.retain(|(edited, _), _| edited != seq);
            }
            Write::PutPin { room, seq, record } => {
                self.room_mut(room).pins.insert(*seq, (record.by.clone(), record.at));
            }
            Write::RemovePin { room, seq } => {
                self.room_mut(room).pins.remove(seq);
            }
            Write::PutThread { room, root, summary, .. } => match summary {
                Some(summary) => {
                    self.room_mut(room).threads.insert(*root, *summary);
                }
                None => {
                    self.room_mut(room).threads.remove(root);
                }
            },
            Write::PutThreadRead { room, user, root, read } => {
                self.room_mut(room).thread_reads.insert((user.clone(), *root), *read);
            }
            Write::RemoveMentions { .. }
            | Write::PutMentions { .. }
            | Write::PutRefresh { .. }
            | Write::RevokeFamily { .. }
            | Write::EndLogin { .. }
            | Write::EndAllLogins { .. }
            | Write::SetAdmin { .. }
            | Write::SetSuspension { .. }
            | Write::AppendAudit { .. }
            | Write::PutReport(_)
            | Write::PutApiKey(_)
            | Write::PutWebhook(_)
            | Write::RemoveWebhook { .. }
            | Write::PutOutbound(_)
            | Write::AccountDeparted { .. } => {}
            Write::DeleteAccount { user, .. } => {
                // As storage: a member's watermarks go with the account (rooms are left after).
                for state in self.rooms.values_mut().filter(|r| r.members.contains_key(user)) {
                    state.receipts.remove(user);
                }
                self.users.remove(user);
                self.profiles.remove(user);
                self.notifications.remove(user);
                self.push_subscriptions.retain(|(u, _), _| u != user);
                self.last_seen.remove(user);
                self.friends.retain(|(a, b), _| a != user && b != user);
                self.blocks.retain(|(a, _)| a != user);
                self.devices.retain(|(u, _), _| u != user);
                self.one_time_keys.retain(|(u, _, _), _| u != user);
                self.files.retain(|_, f| f.uploader != *user);
            }
            Write::SetPassword { user, password_hash } => {
                if let Some(record) = self.users.get_mut(user) {
                    record.password_hash.clone_from(password_hash);
                }
            }
            Write::PutBan { room, user, .. } => {
                self.room_mut(room).bans.insert(user.clone());
            }
            Write::RemoveBan { room, user } => {
                self.room_mut(room).bans.remove(user);
            }
            Write::PutMute { room, user, until } => {
                self.room_mut(room).mutes.insert(user.clone(), *until);
            }
            Write::RemoveMute { room, user } => {
                self.room_mut(room).mutes.remove(user);
            }
            Write::PutInvite { room, user, .. } => {
                self.room_mut(room).invites.insert(user.clone());
            }
            Write::RemoveInvite { room, user } => {
                self.room_mut(room).invites.remove(user);
            }
            Write::PutProfile { user, profile } => {
                self.profiles.insert(user.clone(), profile.clone());
            }
            Write::PutNotifications { user, settings } => {
                self.notifications.insert(user.clone(), settings.clone());
            }
            Write::PutPushSubscription { user, subscription } => {
                self.push_subscriptions
                    .insert((user.clone(), subscription.endpoint.clone()), subscription.clone());
            }
            Write::RemovePushSubscription { user, endpoint } => {
                self.push_subscriptions.remove(&(user.clone(), endpoint.clone()));
            }
            Write::PutFriend { user, other, state, since } => {
                self.friends.insert((user.clone(), other.clone()), (*state, *since));
            }
            Write::RemoveFriend { user, other } => {
                self.friends.remove(&(user.clone(), other.clone()));
            }
            Write::PutBlock { user, blocked, .. } => {
                self.blocks.insert((user.clone(), blocked.clone()));
            }
            Write::RemoveBlock { user, blocked } => {
                self.blocks.remove(&(user.clone(), blocked.clone()));
            }
            Write::PutDevice { user, device_id, identity_key, signing_key } => {
                let record =
                    DeviceRecord { identity_key: identity_key.clone(), signing_key: signing_key.clone() };
                self.devices.insert((user.clone(), device_id.clone()), record);
            }
            Write::PutOneTimeKeys { user, device_id, keys } => {
                for (key_id, key) in keys {
                    self.one_time_keys.insert((user.clone(), device_id.clone(), key_id.clone()), key.clone());
                }
            }
            Write::RemoveOneTimeKey { user, device_id, key_id } => {
                self.one_time_keys.remove(&(user.clone(), device_id.clone(), key_id.clone()));
            }
            Write::PutLastSeen { user, at } => {
                self.last_seen.insert(user.clone(), *at);
            }
            Write::PutUser(record) => {
                self.users.insert(record.user_id.clone(), record.clone());
            }
            Write::PutFile(file) => {
                self.files.insert(file.file_id.clone(), file.clone());
            }
            Write::RemoveFile { file_id } => {
                self.files.remove(file_id);
            }
            Write::TrimHistory { room, floor, .. } => {
                let state = self.room_mut(room);
                let kept = state.messages.split_off(floor);
                let removed = std::mem::replace(&mut state.messages, kept);
                state.history_floor = state.history_floor.max(*floor);
                state.reactions.retain(|(seq, _, _)| seq >= floor);
                state.edits.retain(|(seq, _), _| seq >= floor);
                state.pins.retain(|seq, _| seq >= floor);
                state.threads.retain(|root, _| root >= floor);
                for file in removed.values().filter_map(|m| m.file.as_ref()) {
                    self.files.remove(&file.file_id);
                }
            }
        }
    }

    /// A room as a restart reads it.
    pub fn stored_room(&self, room: &RoomId) -> Option<StoredRoom> {
        let state = self.room(room)?;
        let stored_receipts = state.receipts.iter().map(|(u, (d, r))| (u.clone(), *d, *r)).collect();
        let tail =
            state.messages.values().rev().take(SENDER_RECEIPT_TAIL).map(|m| (m.seq, &m.sender, m.kind));
        let (receipts, unstored_receipts) =
            sender_receipts(stored_receipts, tail, |user| state.members.contains_key(user));
        Some(StoredRoom {
            record: state.record.clone()?,
            members: state.members.iter().map(|(u, r)| (u.clone(), *r)).collect(),
            newest: state
                .messages
                .values()
                .next_back()
                .map(|m| (m.seq, m.ts))
                .or_else(|| (state.history_floor > 1).then(|| (state.history_floor - 1, 0))),
            receipts,
            unstored_receipts,
            bans: state.bans.iter().cloned().collect(),
            mutes: state.mutes.iter().map(|(u, t)| (u.clone(), *t)).collect(),
            invites: state.invites.iter().cloned().collect(),
            pins: state.pins.iter().map(|(seq, (by, at))| (*seq, by.clone(), *at)).collect(),
            history_floor: state.history_floor.max(1),
        })
    }

    /// A room's last stored seq (0 when it has no message).
    pub fn last_seq(&self, room: &RoomId) -> u64 {
        self.room(room)
            .map(|r| r.messages.keys().next_back().copied().unwrap_or(r.history_floor.saturating_sub(1)))
            .unwrap_or(0)
    }

    /// A room's stored messages, by seq.
    pub fn messages(&self, room: &RoomId) -> Vec<Message> {
        self.room(room).map(|r| r.messages.values().cloned().collect()).unwrap_or_default()
    }

    /// A stored room's members and their roles.
    pub fn members(&self, room: &RoomId) -> BTreeMap<UserId, Role> {
        self.room(room).map(|r| r.members.clone()).unwrap_or_default()
    }
}

impl Lookups for MemoryStore {
    fn message(&self, room: &RoomId, seq: u64) -> Found<Option<Message>> {
        self.check()?;
        Ok(self.room(room).and_then(|r| r.messages.get(&seq).cloned()))
    }

    fn edits(&self, room: &RoomId, seq: u64, after: u64, limit: usize) -> Found<Vec<(u64, String)>> {
        self.check()?;
        let Some(r) = self.room(room) else { return Ok(Vec::new()) };
        let from = (seq, after.saturating_add(1));
        Ok(r.edits
            .range(from..=(seq, u64::MAX))
            .take(limit)
            .map(|((_, at), text)| (*at, text.clone()))
            .collect())
    }

    fn messages_before(&self, room: &RoomId, before: u64, limit: usize) -> Found<Vec<Message>> {
        self.check()?;
        let Some(r) = self.room(room) else { return Ok(Vec::new()) };
        Ok(r.messages.range(..before).rev().take(limit).map(|(_, m)| m.clone()).collect())
    }

    fn messages_between(&self, room: &RoomId, from: u64, to: u64, limit: usize) -> Found<Vec<Message>> {
        self.check()?;
        let Some(r) = self.room(room) else { return Ok(Vec::new()) };
        if from > to {
            return Ok(Vec::new());
        }
        Ok(r.messages.range(from..=to).take(limit).map(|(_, m)| m.clone()).collect())
    }

    fn thread_summary(&self, room: &RoomId, root: u64) -> Found<Option<ThreadSummary>> {
        self.check()?;
        Ok(self.room(room).and_then(|r| r.threads.get(&root).copied()))
    }

    fn thread_replies_before(
        &self,
        room: &RoomId,
        root: u64,
        before: u64,
        limit: usize,
    ) -> Found<Vec<(u64, u64)>> {
        self.check()?;
        Ok(self
            .room(room)
            .map(|r| r.replies(root).rev().filter(|(seq, _)| *seq < before).take(limit).collect())
            .unwrap_or_default())
    }

    fn thread_replies_after(
        &self,
        room: &RoomId,
        root: u64,
        after: u64,
        limit: usize,
    ) -> Found<Vec<(u64, u64)>> {
        self.check()?;
        Ok(self
            .room(room)
            .map(|r| r.replies(root).filter(|(seq, _)| *seq > after).take(limit).collect())
            .unwrap_or_default())
    }

    fn threads_by_activity(
        &self,
        room: &RoomId,
        before: u64,
        limit: usize,
    ) -> Found<Vec<(u64, ThreadSummary)>> {
        self.check()?;
        let Some(r) = self.room(room) else { return Ok(Vec::new()) };
        let mut threads: Vec<(u64, ThreadSummary)> =
            r.threads.iter().filter(|(_, s)| s.last_seq < before).map(|(root, s)| (*root, *s)).collect();
        threads.sort_by_key(|(_, s)| std::cmp::Reverse(s.last_seq));
        threads.truncate(limit);
        Ok(threads)
    }

    fn thread_read(&self, room: &RoomId, user: &UserId, root: u64) -> Found<u64> {
        self.check()?;
        Ok(self.room(room).and_then(|r| r.thread_reads.get(&(user.clone(), root)).copied()).unwrap_or(0))
    }

    fn cid_seq(&self, room: &RoomId, sender: &UserId, cid: &ClientMsgId) -> Found<Option<(u64, u64)>> {
        self.check()?;
        let Some(r) = self.room(room) else { return Ok(None) };
        let found =
            r.messages.values().find(|m| m.has_idempotent_cid() && &m.sender == sender && &m.cid == cid);
        Ok(found.map(|m| (m.seq, m.ts)))
    }

    fn reactions(&self, room: &RoomId, seq: u64) -> Found<Vec<ReactionSummary>> {
        self.check()?;
        let mut by_emoji: BTreeMap<String, Vec<UserId>> = BTreeMap::new();
        for (s, emoji, user) in self.room(room).map(|r| &r.reactions).into_iter().flatten() {
            if *s == seq {
                by_emoji.entry(emoji.clone()).or_default().push(user.clone());
            }
        }
        Ok(by_emoji
            .into_iter()
            .map(|(emoji, users)| ReactionSummary {
                emoji,
                count: u32::try_from(users.len()).unwrap_or(u32::MAX),
                users,
            })
            .collect())
    }

    fn has_reaction(&self, room: &RoomId, seq: u64, emoji: &str, user: &UserId) -> Found<bool> {
        self.check()?;
        Ok(self.room(room).is_some_and(|r| r.reactions.contains(&(seq, emoji.to_owned(), user.clone()))))
    }

    fn reaction_count(&self, room: &RoomId, seq: u64, emoji: &str) -> Found<u32> {
        self.check()?;
        let count = self
            .room(room)
            .map_or(0, |r| r.reactions.iter().filter(|(s, e, _)| *s == seq && e == emoji).count());
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    fn room_record(&self, room: &RoomId) -> Found<Option<RoomRecord>> {
        self.check()?;
        Ok(self.room(room).and_then(|r| r.record.clone()))
    }

    fn username(&self, user: &UserId) -> Found<Option<String>> {
        self.check()?;
        Ok(self.users.get(user).map(|u| u.username.clone()))
    }

    fn user_by_name(&self, name: &Username) -> Found<Option<UserId>> {
        self.check()?;
        Ok(self.users.values().find(|u| u.username == name.as_str()).map(|u| u.user_id.clone()))
    }

    fn file(&self, file_id: &str) -> Found<Option<FileRecord>> {
        self.check()?;
        Ok(self.files.get(file_id).cloned())
    }

    fn member_role(&self, room: &RoomId, user: &UserId) -> Found<Option<Role>> {
        self.check()?;
        Ok(self.room(room).and_then(|r| r.members.get(user).copied()))
    }

    fn hides_read_receipts(&self, user: &UserId) -> Found<bool> {
        self.check()?;
        Ok(self.profiles.get(user).is_some_and(|p| p.hide_read_receipts))
    }

    fn is_blocked(&self, user: &UserId, other: &UserId) -> Found<bool> {
        self.check()?;
        Ok(self.blocks.contains(&(user.clone(), other.clone())))
    }

    fn blocks(&self, user: &UserId) -> Found<Vec<UserId>> {
        self.check()?;
        Ok(self.blocks.iter().filter(|(u, _)| u == user).map(|(_, o)| o.clone()).collect())
    }

    fn friendship(&self, user: &UserId, other: &UserId) -> Found<FriendState> {
        self.check()?;
        Ok(self.friends.get(&(user.clone(), other.clone())).map_or(FriendState::None, |(s, _)| *s))
    }

    fn pending_invites(&self, user: &UserId, stop_at: usize) -> Found<usize> {
        self.check()?;
        Ok(self.rooms.values().filter(|r| r.invites.contains(user)).take(stop_at).count())
    }

    fn owned_rooms(&self, user: &UserId, stop_at: usize) -> Found<usize> {
        self.check()?;
        let owned = self.rooms.values().filter(|r| {
            r.record.as_ref().is_some_and(|rec| !rec.deleted) && r.members.get(user) == Some(&Role::Owner)
        });
        Ok(owned.take(stop_at).count())
    }

    fn presence(&self, user: &UserId) -> PresenceStatus {
        if self.online.contains(user) { PresenceStatus::Online } else { PresenceStatus::Offline }
    }

    fn take_stranger_invite(&self, _sender: &UserId, _now_ms: u64) -> Result<(), u64> {
        self.take(acts::STRANGER_INVITE)
    }

    fn take_stranger_direct_room(
        &self,
        _sender: &UserId,
        _recipient: &UserId,
        _now_ms: u64,
    ) -> Result<(), u64> {
        self.take(acts::STRANGER_DIRECT_ROOM)
    }

    fn take_room_creation(&self, _creator: &UserId, _now_ms: u64) -> Result<(), u64> {
        self.take(acts::ROOM_CREATION)
    }
}

impl PeopleLookups for MemoryStore {
    fn account(&self, user: &UserId) -> Found<Option<UserRecord>> {
        self.check()?;
        Ok(self.users.get(user).cloned())
    }

    fn friendship(&self, user: &UserId, other: &UserId) -> Found<Option<(FriendState, u64)>> {
        self.check()?;
        Ok(self.friends.get(&(user.clone(), other.clone())).copied())
    }

    fn friend_count(&self, user: &UserId) -> Found<usize> {
        self.check()?;
        Ok(self.friends.keys().filter(|(u, _)| u == user).count())
    }

    fn is_blocked(&self, user: &UserId, other: &UserId) -> Found<bool> {
        Lookups::is_blocked(self, user, other)
    }

    fn block_count(&self, user: &UserId) -> Found<usize> {
        self.check()?;
        Ok(self.blocks.iter().filter(|(u, _)| u == user).count())
    }

    fn profile(&self, user: &UserId) -> Found<ProfileRecord> {
        self.check()?;
        Ok(self.profiles.get(user).cloned().unwrap_or_default())
    }

    fn notifications(&self, user: &UserId) -> Found<NotificationSettings> {
        self.check()?;
        Ok(self.notifications.get(user).cloned().unwrap_or_default())
    }

    fn push_subscriptions(&self, user: &UserId) -> Found<Vec<PushSubscriptionRecord>> {
        self.check()?;
        Ok(self.push_subscriptions.iter().filter(|((u, _), _)| u == user).map(|(_, s)| s.clone()).collect())
    }

    fn last_seen(&self, user: &UserId) -> Found<Option<u64>> {
        self.check()?;
        Ok(self.last_seen.get(user).copied())
    }

    fn device(&self, user: &UserId, device_id: &str) -> Found<Option<DeviceRecord>> {
        self.check()?;
        Ok(self.devices.get(&(user.clone(), device_id.to_owned())).cloned())
    }

    fn devices(&self, user: &UserId) -> Found<Vec<(String, DeviceRecord)>> {
        self.check()?;
        let devices = self.devices.iter().filter(|((u, _), _)| u == user);
        Ok(devices.map(|((_, d), r)| (d.clone(), r.clone())).collect())
    }

    fn one_time_key_count(&self, user: &UserId, device_id: &str) -> Found<usize> {
        self.check()?;
        Ok(self.one_time_keys.keys().filter(|(u, d, _)| u == user && d == device_id).count())
    }

    fn one_time_keys(&self, user: &UserId, device_id: &str, limit: usize) -> Found<Vec<(String, String)>> {
        self.check()?;
        let keys = self.one_time_keys.iter().filter(|((u, d, _), _)| u == user && d == device_id);
        Ok(keys.take(limit).map(|((_, _, id), key)| (id.clone(), key.clone())).collect())
    }

    fn take_key_claim(&self, _claimer: &UserId, _user: &UserId, _now_ms: u64) -> Result<(), u64> {
        self.take(acts::KEY_CLAIM)
    }
}
