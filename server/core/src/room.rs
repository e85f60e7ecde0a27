//! One room as a state machine: who is in it, who may do what, and the next `seq`.
//!
//! The room is driven by its owning shard, the single writer. It assigns seqs before the
//! write is durable (so sends pipeline through group commit) and is told by
//! [`Room::committed`] when they are; `join` reports only durable seqs, so a subscriber
//! never hears of a message that a crash could still take back.

mod announcements;
mod forwards;
mod governance;
mod history_floor;
mod pins;
mod receipts;
mod threads;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::BuildHasher as _;

use palaver_protocol::{
    ClientMsgId, Emoji, Encryption, FileRef, ForwardRef, MentionAll, Message, MessageKind, MessageText,
    RoomId, RoomInfo, RoomKind, RoomName, RoomSettings, RoomSettingsPatch, TextError, ThreadReplies, UserId,
    Username, limits,
};

pub use announcements::Announcing;
pub use forwards::{check_forwardable, forwarded_content, may_read_room};
pub use governance::{Governance, Moderation};
pub use pins::Pin;
pub use threads::{
    MAX_THREAD_UNREAD_COUNT, check_reply_in_thread, check_thread_root, in_room_timeline, moved_thread_read,
    summary_with_reply, summary_without_reply,
};

use crate::error::CoreError;
use crate::records::SENDER_RECEIPT_TAIL;
use crate::role::Role;
use palaver_protocol::paging::sizes;

/// A message assigned a seq that is not durable yet.
#[derive(Debug, Clone)]
struct PendingSend {
    seq: u64,
    ts: u64,
    sender: UserId,
    cid: ClientMsgId,
}

/// One room's live state.
#[derive(Debug, Clone)]
pub struct Room {
    id: RoomId,
    name: String,
    kind: RoomKind,
    members: HashMap<UserId, Role>,
    /// Highest seq assigned (durable or not).
    last_seq: u64,
    /// Highest seq known durable.
    durable_seq: u64,
    /// Timestamp of the newest message: timestamps never go backwards inside a room.
    last_ts: u64,
    /// Cids assigned a seq that is not yet durable, oldest first, so a retry that races
    /// its own first attempt gets the same seq instead of a second copy. A cid is its
    /// sender's: the same cid from another member is another message.
    pending: VecDeque<PendingSend>,
    /// How many of `pending` have each fingerprint of their `(sender, cid)`: a lookup of
    /// a new cid (nearly every send) ends here, without building a key.
    pending_cids: HashMap<u64, u32>,
    /// Members typing now, with when their indicator lapses and when it was last announced.
    typing: HashMap<UserId, Typer>,
    /// Members' `(delivered, read)` watermarks.
    receipts: HashMap<UserId, (u64, u64)>,
    /// Members whose watermarks moved since the last announcement (coalescing).
    receipts_to_announce: Vec<UserId>,
    /// Senders whose watermarks their own messages moved and storage derives from its
    /// newest messages until they are written (see [`SENDER_RECEIPT_TAIL`]), and the
    /// oldest seq that may be the only record of one of them.
    unstored_receipts: Vec<UserId>,
    oldest_unstored: Option<u64>,
    limits: RoomLimits,
    topic: String,
    settings: RoomSettings,
    /// Users who may not join or be invited.
    bans: HashSet<UserId>,
    /// Muted members and when each mute ends (ms since the epoch).
    mutes: HashMap<UserId, u64>,
    /// Users invited and not yet joined (private rooms admit only them).
    invites: HashSet<UserId>,
    /// When each member last sent (slow mode); not persisted: a restart forgives.
    last_sent: HashMap<UserId, u64>,
    /// Pinned messages by seq: who pinned each and when.
    pins: BTreeMap<u64, (UserId, u64)>,
    /// The oldest seq kept: retention removed everything below it (1: nothing removed).
    history_floor: u64,
}

/// The outcome of a `receipt` op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiptChange {
    /// The member's delivered watermark now.
    pub delivered: u64,
    /// The member's read watermark now.
    pub read: u64,
    /// Whether anything moved (and must be persisted).
    pub changed: bool,
}

/// Per-room limits, configured by the operator; the defaults are the server's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomLimits {
    /// Longest message text, in characters.
    pub max_text_chars: usize,
    /// How long a typing indicator lasts without renewal, in ms.
    pub typing_ttl_ms: u64,
    /// How long after sending its sender may edit a message, in ms.
    pub edit_window_ms: u64,
    /// The most members any room may be set to admit.
    pub max_members_cap: u32,
}

impl Default for RoomLimits {
    fn default() -> Self {
        Self {
            max_text_chars: limits::DEFAULT_MAX_TEXT_CHARS,
            typing_ttl_ms: 6_000,
            edit_window_ms: 3_600_000,
            max_members_cap: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Typer {
    expires_ms: u64,
    announced_ms: u64,
}

/// What a typing op changed, for the room's other members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypingChange {
    /// Announce: typing, lapsing after `expires_in_ms` unless renewed.
    Started {
        /// Time left before the indicator lapses.
        expires_in_ms: u64,
    },
    /// Announce: stopped.
    Stopped,
    /// Nothing to announce (a renewal inside the coalescing window, or a stop while not typing).
    Unchanged,
}

/// What `join` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinOutcome {
    /// The caller was not a member before: membership must be persisted.
    pub newly_member: bool,
    /// The caller's role.
    pub role: Role,
    /// The caller was admitted by an invitation, now used up (drop the stored one).
    pub used_invite: bool,
    /// The newest durable seq: events after it will follow.
    pub last_seq: u64,
}

/// What `send` decided.
#[expect(clippy::large_enum_variant, reason = "returned once per send and consumed at once")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// A new message: persist it, then broadcast it and answer with its seq.
    Append(Appended),
    /// This cid is already stored (or being stored) under `seq`: store nothing, answer
    /// once `seq` is durable.
    Duplicate {
        /// The first send's seq.
        seq: u64,
        /// The first send's timestamp.
        ts: u64,
    },
}

/// A `history` request's paging fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HistoryRequest {
    /// Backwards from below this seq.
    pub before: Option<u64>,
    /// Forwards from above this seq.
    pub after: Option<u64>,
    /// Page size asked for.
    pub limit: Option<u32>,
    /// The previous page's `next`.
    pub cursor: Option<String>,
    /// Whether thread replies kept in their thread are in the page.
    #[serde(default)]
    pub threads: ThreadReplies,
}

/// Which stored messages a `history` page reads, all durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryWindow {
    /// Seqs below `before`, newest first.
    Backward {
        /// Exclusive upper bound.
        before: u64,
        /// Page size.
        limit: usize,
    },
    /// Seqs above `after` up to `through` (the newest durable), oldest first.
    Forward {
        /// Exclusive lower bound.
        after: u64,
        /// Inclusive upper bound.
        through: u64,
        /// Page size.
        limit: usize,
    },
}

impl HistoryWindow {
    /// The cursor key continuing past `seq` in this window's direction.
    pub fn cursor_key(&self, seq: u64) -> String {
        match self {
            HistoryWindow::Backward { .. } => format!("b{seq}"),
            HistoryWindow::Forward { .. } => format!("a{seq}"),
        }
    }

    /// `(before, after)` of a cursor of `list` (`history`, `thread.history`).
    fn decode_cursor(list: &str, cursor: &str) -> Result<(Option<u64>, Option<u64>), CoreError> {
        let invalid = || CoreError::Paging(palaver_protocol::paging::PagingError::Cursor);
        let key = palaver_protocol::paging::decode_cursor(list, cursor).map_err(|_| invalid())?;
        let (direction, seq) = key.split_at_checked(1).ok_or_else(invalid)?;
        let seq: u64 = seq.parse().map_err(|_| invalid())?;
        match direction {
            "b" => Ok((Some(seq), None)),
            "a" => Ok((None, Some(seq))),
            _ => Err(invalid()),
        }
    }
}

/// What a member asks to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    /// The client's idempotency key.
    pub cid: ClientMsgId,
    /// The kind of message.
    pub kind: MessageKind,
    /// The body, not yet validated.
    pub text: String,
    /// The client's own timestamp, echoed back.
    pub client_ts: Option<u64>,
    /// The message it replies to.
    pub reply_to: Option<u64>,
    /// With `image` and `file`: the shared file.
    pub file: Option<Box<FileRef>>,
    /// Users named with `@username` in the text (resolved by the caller; the room keeps
    /// only its members).
    pub mentions: Vec<UserId>,
    /// With `encrypted`: how the ciphertext in `text` was encrypted.
    pub encryption: Option<Box<Encryption>>,
    /// A forward: the original it refers to (checked readable by the caller).
    pub forward: Option<Box<ForwardRef>>,
    /// `@everyone` or `@here` in the text (the room keeps it for senders with its
    /// `mention_all_role`).
    pub mention_all: Option<MentionAll>,
    /// A thread reply: its root (checked by the caller against the stored root).
    pub thread: Option<u64>,
    /// A thread reply also in the room's timeline.
    pub also_to_room: bool,
}

/// A message accepted by the room, not yet durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The message to persist and broadcast.
    pub message: Message,
}

impl Room {
    /// A new room created by `owner`, who becomes its owner and only member.
    pub fn create(
        id: RoomId,
        name: String,
        kind: RoomKind,
        owner: UserId,
        limits: RoomLimits,
    ) -> Result<Room, CoreError> {
        if kind == RoomKind::Direct {
            return Err(CoreError::Mismatched("direct rooms are opened with dm.open"));
        }
        let name = RoomName::new(name).map_err(|error| CoreError::Text { field: "room name", error })?;
        Ok(Room::restore(id, name.into_string(), kind, [(owner, Role::Owner)], 0, 0, limits))
    }

    /// A new group room with a topic and settings other than the defaults.
    pub fn create_with(
        id: RoomId,
        name: String,
        kind: RoomKind,
        owner: UserId,
        topic: Option<String>,
        settings: Option<RoomSettingsPatch>,
        limits: RoomLimits,
    ) -> Result<Room, CoreError> {
        let mut room = Room::create(id, name, kind, owner, limits)?;
        if let Some(topic) = topic {
            room.topic = governance::check_topic(topic)?;
        }
        if let Some(patch) = settings {
            room.settings = room.patched_settings(&patch)?;
        }
        Ok(room)
    }

    /// A new direct room between two users, both plain members (nobody moderates a DM).
    pub fn direct(id: RoomId, a: UserId, b: UserId, limits: RoomLimits) -> Room {
        Room::restore(
            id,
            "direct".into(),
            RoomKind::Direct,
            [(a, Role::Member), (b, Role::Member)],
            0,
            0,
            limits,
        )
    }

    /// A room rebuilt from storage.
    pub fn restore(
        id: RoomId,
        name: String,
        kind: RoomKind,
        members: impl IntoIterator<Item = (UserId, Role)>,
        last_seq: u64,
        last_ts: u64,
        limits: RoomLimits,
    ) -> Room {
        Room {
            id,
            name,
            kind,
            members: members.into_iter().collect(),
            last_seq,
            durable_seq: last_seq,
            last_ts,
            pending: VecDeque::new(),
            pending_cids: HashMap::new(),
            typing: HashMap::new(),
            receipts: HashMap::new(),
            receipts_to_announce: Vec::new(),
            unstored_receipts: Vec::new(),
            oldest_unstored: None,
            limits: RoomLimits { max_text_chars: limits.max_text_chars.max(1), ..limits },
            topic: String::new(),
            settings: RoomSettings {
                max_members: limits::DEFAULT_MAX_MEMBERS.min(limits.max_members_cap).max(2),
                ..RoomSettings::default()
            },
            bans: HashSet::new(),
            mutes: HashMap::new(),
            invites: HashSet::new(),
            last_sent: HashMap::new(),
            pins: BTreeMap::new(),
            history_floor: 1,
        }
    }

    /// The room as clients see it.
    pub fn info(&self) -> RoomInfo {
        RoomInfo {
            room_id: self.id.clone(),
            name: self.name.clone(),
            kind: self.kind,
            topic: self.topic.clone(),
        }
    }

    /// The room's id.
    pub fn id(&self) -> &RoomId {
        &self.id
    }

    /// A member's role, if `user` is a member.
    pub fn role_of(&self, user: &UserId) -> Option<Role> {
        self.members.get(user).copied()
    }

    /// Number of members.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// The newest durable seq.
    pub fn durable_seq(&self) -> u64 {
        self.durable_seq
    }

    /// The newest assigned seq.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Joins `user`: anyone not banned may join a public room while it has room; a
    /// private room admits its members and the users invited to it.
    pub fn join(&mut self, user: &UserId) -> Result<JoinOutcome, CoreError> {
        if let Some(role) = self.role_of(user) {
            return Ok(JoinOutcome {
                newly_member: false,
                role,
                used_invite: false,
                last_seq: self.durable_seq,
            });
        }
        if self.bans.contains(user) {
            return Err(CoreError::Banned(self.id.clone()));
        }
        let invited = self.invites.contains(user);
        if self.kind != RoomKind::Public && !invited {
            return Err(CoreError::PrivateRoom(self.id.clone()));
        }
        if self.members.len() >= self.settings.max_members as usize {
            return Err(CoreError::RoomFull { limit: self.settings.max_members });
        }
        self.invites.remove(user);
        self.members.insert(user.clone(), Role::Member);
        Ok(JoinOutcome {
            newly_member: true,
            role: Role::Member,
            used_invite: invited,
            last_seq: self.durable_seq,
        })
    }

    /// One of a direct room's pair comes back after leaving it (`dm.open` derives the
    /// room from the pair, so the caller is one of them): returns whether they became a
    /// member again. Anyone else is refused: a direct room has two members at most.
    pub fn readmit_direct(&mut self, user: &UserId) -> Result<bool, CoreError> {
        if self.kind != RoomKind::Direct {
            return Err(CoreError::Mismatched("not a direct room"));
        }
        if self.role_of(user).is_some() {
            return Ok(false);
        }
        if self.members.len() >= 2 {
            return Err(CoreError::PrivateRoom(self.id.clone()));
        }
        self.members.insert(user.clone(), Role::Member);
        Ok(true)
    }

    /// `user` leaves; returns whether they were a member. The owner of a group room
    /// cannot leave it: they transfer it or delete it first.
    pub fn leave(&mut self, user: &UserId) -> Result<bool, CoreError> {
        if self.kind != RoomKind::Direct && self.role_of(user) == Some(Role::Owner) {
            return Err(CoreError::OwnerCannotLeave);
        }
        Ok(self.forget_member(user))
    }

    /// Removes `user` whatever their role (undoing a join whose write failed, or a kick).
    /// A mute stays: it is stored apart from the membership (leaving or a kick writes no
    /// `RemoveMute`) and ends by itself, so leaving and rejoining must not lift it — nor
    /// may a restart bring back one that memory had dropped (reproducer
    /// `fuzz/regressions/room_model/mute-survives-leave`). A running slow-mode wait stays
    /// too: leaving and rejoining must not reset it.
    pub fn forget_member(&mut self, user: &UserId) -> bool {
        self.typing.remove(user);
        // Storage derives watermarks for members only: a leaver's is written with their
        // leaving (see `Owner::commit`), a deleted account's is gone.
        self.unstored_receipts.retain(|u| u != user);
        self.members.remove(user).is_some()
    }

    /// Checks that `user` may read the history: members always, anyone for public rooms.
    /// Returns the page bounds to read.
    pub fn history_page(&self, user: &UserId, request: HistoryRequest) -> Result<HistoryWindow, CoreError> {
        self.page_window("history", user, request)
    }

    /// Like [`Room::history_page`], for one thread's replies (`thread.history`).
    pub fn thread_history_page(
        &self,
        user: &UserId,
        request: HistoryRequest,
    ) -> Result<HistoryWindow, CoreError> {
        self.page_window("thread.history", user, request)
    }

    fn page_window(
        &self,
        list: &str,
        user: &UserId,
        request: HistoryRequest,
    ) -> Result<HistoryWindow, CoreError> {
        if self.kind != RoomKind::Public && self.role_of(user).is_none() {
            return Err(CoreError::PrivateRoom(self.id.clone()));
        }
        let limit = sizes::HISTORY.of(request.limit).map_err(CoreError::Paging)?;
        let HistoryRequest { before, after, cursor, .. } = request;
        let (before, after) = match (before, after, cursor) {
            (None, None, Some(cursor)) => HistoryWindow::decode_cursor(list, &cursor)?,
            (before, after, None) if before.is_none() || after.is_none() => (before, after),
            _ => return Err(CoreError::Mismatched("give one of before, after and cursor")),
        };
        // Never show what is not yet durable.
        let durable = self.durable_seq;
        Ok(match after {
            Some(after) => HistoryWindow::Forward { after, through: durable, limit },
            None => {
                HistoryWindow::Backward { before: before.map_or(durable + 1, |b| b.min(durable + 1)), limit }
            }
        })
    }

    /// Whether `user`'s message with `cid` is being stored (a retry of it is a duplicate).
    pub fn is_pending(&self, user: &UserId, cid: &ClientMsgId) -> bool {
        self.pending_send(user, cid).is_some()
    }

    /// The `(seq, ts)` assigned to `sender`'s message with `cid` if it is being stored.
    fn pending_send(&self, sender: &UserId, cid: &ClientMsgId) -> Option<(u64, u64)> {
        if !self.pending_cids.contains_key(&self.pending_fingerprint(sender, cid)) {
            return None;
        }
        self.pending.iter().find(|p| &p.sender == sender && &p.cid == cid).map(|p| (p.seq, p.ts))
    }

    fn pending_fingerprint(&self, sender: &UserId, cid: &ClientMsgId) -> u64 {
        self.pending_cids.hasher().hash_one((sender, cid))
    }

    /// Remembers that `sender`'s message with `cid` has seq `self.last_seq` until durable.
    fn add_pending(&mut self, sender: UserId, cid: ClientMsgId) {
        let fingerprint = self.pending_fingerprint(&sender, &cid);
        *self.pending_cids.entry(fingerprint).or_default() += 1;
        self.pending.push_back(PendingSend { seq: self.last_seq, ts: self.last_ts, sender, cid });
    }

    /// Accepts a message from `user`, or says it is a duplicate of a stored one.
    /// `stored_cid` looks the cid up among `user`'s messages in durable storage (for retries
    /// after a restart): a cid is its sender's, so another member cannot squat it.
    pub fn send(
        &mut self,
        now_ms: u64,
        user: &UserId,
        draft: Draft,
        stored_cid: impl FnOnce(&ClientMsgId) -> Option<(u64, u64)>,
    ) -> Result<SendOutcome, CoreError> {
        let Draft {
            cid,
            kind,
            text,
            client_ts,
            reply_to,
            file,
            mentions,
            encryption,
            forward,
            mention_all,
            thread,
            also_to_room,
        } = draft;
        let Some(role) = self.role_of(user) else {
            return Err(CoreError::NotMember(self.id.clone()));
        };
        if let Some(until) = self.muted_until(user, now_ms) {
            return Err(CoreError::Muted { until });
        }
        if file.is_some() && !self.settings.file_sharing {
            return Err(CoreError::FilesDisabled);
        }
        if forward.is_some() && kind != MessageKind::Text {
            return Err(CoreError::Mismatched("a forward is a text message (its comment)"));
        }
        let text = self.check_body(kind, text, file.as_deref(), forward.is_some())?;
        check_encryption(kind, encryption.as_deref())?;
        if let Some(parent) = reply_to
            && (parent == 0 || parent > self.last_seq)
        {
            return Err(CoreError::NoSuchMessage(parent));
        }
        match thread {
            Some(root) if root == 0 || root > self.last_seq => return Err(CoreError::NoThreadRoot(root)),
            None if also_to_room => return Err(CoreError::Mismatched("also_to_room goes with thread")),
            _ => {}
        }
        let mut mentions: Vec<UserId> =
            mentions.into_iter().filter(|u| self.members.contains_key(u)).collect();
        mentions.sort_unstable();
        mentions.dedup();
        mentions.truncate(limits::MAX_MENTIONS);
        let mention_all = mention_all.filter(|_| self.may_mention_all(user));
        if let Some((seq, ts)) = self.pending_send(user, &cid) {
            return Ok(SendOutcome::Duplicate { seq, ts });
        }
        if let Some((seq, ts)) = stored_cid(&cid) {
            return Ok(SendOutcome::Duplicate { seq, ts });
        }
        // Slow mode spaces a member's messages (a retry above is not a new message).
        let gap_ms = u64::from(self.settings.slow_mode_secs) * 1000;
        if gap_ms > 0 && role < Role::Moderator {
            if let Some(&last) = self.last_sent.get(user) {
                let wait = (last + gap_ms).saturating_sub(now_ms);
                if wait > 0 {
                    return Err(CoreError::SlowMode { retry_after_ms: wait });
                }
            }
            self.last_sent.insert(user.clone(), now_ms);
        }
        // A message ends its sender's typing indicator; clients hide it on the message.
        self.typing.remove(user);
        self.last_seq += 1;
        // Its sender has read it: their own messages never count as unread.
        let receipt = match self.receipts.get_mut(user) {
            Some(receipt) => receipt,
            None => self.receipts.entry(user.clone()).or_default(),
        };
        *receipt = (receipt.0.max(self.last_seq), receipt.1.max(self.last_seq));
        // Storage derives it from the message until it is written.
        if !self.unstored_receipts.contains(user) {
            self.unstored_receipts.push(user.clone());
        }
        self.oldest_unstored.get_or_insert(self.last_seq);
        self.last_ts = self.last_ts.max(now_ms);
        let message = Message {
            room: self.id.clone(),
            seq: self.last_seq,
            ts: self.last_ts,
            sender: user.clone(),
            cid: cid.clone(),
            kind,
            text,
            client_ts,
            reactions: Vec::new(),
            reply_to,
            reply: None,
            mentions,
            file,
            edited_at: None,
            deleted: false,
            system: None,
            blocked: false,
            encryption,
            mention_all,
            forward,
            thread,
            also_to_room,
            thread_summary: None,
        };
        self.add_pending(user.clone(), cid);
        Ok(SendOutcome::Append(Appended { message }))
    }

    /// Validates a message body for its kind: text needs text and no file; image and file
    /// need a file (images an `image/*` type) and take an optional caption; system
    /// messages are the server's alone.
    /// Checks a message's body; a forward's comment may be empty.
    fn check_body(
        &self,
        kind: MessageKind,
        text: String,
        file: Option<&FileRef>,
        forward: bool,
    ) -> Result<String, CoreError> {
        let validate = |text: String| {
            MessageText::new(text, self.limits.max_text_chars).map(MessageText::into_string).map_err(
                |error| match error {
                    // A message too long is `too_large`; a name too long is `invalid`.
                    TextError::TooLong { limit, .. } => {
                        CoreError::TooLong { field: "text", max: limit, unit: "characters" }
                    }
                    error => CoreError::Text { field: "text", error },
                },
            )
        };
        match (kind, file) {
            (MessageKind::System, _) => {
                Err(CoreError::Mismatched("system messages are written by the server"))
            }
            (MessageKind::Encrypted, Some(_)) => Err(CoreError::Mismatched(
                "an encrypted message carries no file (encrypt the file's key instead)",
            )),
            // Ciphertext is opaque: only its size is checked, in bytes.
            (MessageKind::Encrypted, None) if text.is_empty() => {
                Err(CoreError::Mismatched("an encrypted message needs its ciphertext in `text`"))
            }
            (MessageKind::Encrypted, None) if text.len() > limits::MAX_CIPHERTEXT_BYTES => {
                Err(CoreError::TooLong {
                    field: "ciphertext",
                    max: limits::MAX_CIPHERTEXT_BYTES,
                    unit: "bytes",
                })
            }
            (MessageKind::Encrypted, None) => Ok(text),
            (MessageKind::Text, Some(_)) => Err(CoreError::Mismatched("a text message carries no file")),
            (MessageKind::Text, None) if forward && text.is_empty() => Ok(text),
            (MessageKind::Text, None) => validate(text),
            (MessageKind::Image | MessageKind::File, None) => {
                Err(CoreError::Mismatched("image and file messages need `file`"))
            }
            (MessageKind::Image | MessageKind::File, Some(file)) => {
                check_file(file)?;
                if kind == MessageKind::Image && !file.content_type.starts_with("image/") {
                    return Err(CoreError::Mismatched("an image needs an image/* content type"));
                }
                if text.is_empty() { Ok(text) } else { validate(text) }
            }
        }
    }

    /// Whether `user`'s `@everyone` and `@here` mention the room: the room's
    /// `mention_all_role` and above (in a direct room, either user).
    pub fn may_mention_all(&self, user: &UserId) -> bool {
        self.role_of(user)
            .is_some_and(|role| self.kind == RoomKind::Direct || role >= self.settings.mention_all_role)
    }

    /// Checks an edit of message `original` by `user` at `now_ms`; returns the new text.
    /// Only the sender edits, within the edit window, and never a deleted message.
    pub fn check_edit(
        &self,
        now_ms: u64,
        user: &UserId,
        original: &Message,
        text: String,
    ) -> Result<String, CoreError> {
        if self.role_of(user).is_none() {
            return Err(CoreError::NotMember(self.id.clone()));
        }
        // Muted means no new content in the room, and an edit is new content.
        if let Some(until) = self.muted_until(user, now_ms) {
            return Err(CoreError::Muted { until });
        }
        if original.deleted {
            return Err(CoreError::NoSuchMessage(original.seq));
        }
        if &original.sender != user {
            return Err(CoreError::NotYourMessage(original.seq));
        }
        if now_ms.saturating_sub(original.ts) > self.limits.edit_window_ms {
            return Err(CoreError::EditWindowPassed(original.seq));
        }
        self.check_body(original.kind, text, original.file.as_deref(), original.forward.is_some())
    }

    /// Checks that `user` may read the earlier texts of message `seq`: a member (the
    /// versions an author replaced are the room's, not the public's), of a durable message.
    pub fn check_edit_list(&self, user: &UserId, seq: u64) -> Result<(), CoreError> {
        if self.role_of(user).is_none() {
            return Err(CoreError::NotMember(self.id.clone()));
        }
        if seq == 0 || seq > self.durable_seq {
            return Err(CoreError::NoSuchMessage(seq));
        }
        Ok(())
    }

    /// Checks that `user` may delete message `original`: its sender, or a moderator (or
    /// above). Returns false when it is already a tombstone (nothing to do).
    pub fn check_delete(&self, user: &UserId, original: &Message) -> Result<bool, CoreError> {
        let role = self.role_of(user).ok_or_else(|| CoreError::NotMember(self.id.clone()))?;
        // System messages are the room's record of its moderation: nobody erases them.
        if original.kind == MessageKind::System {
            return Err(CoreError::SystemMessageStays);
        }
        if &original.sender != user && role < Role::Moderator {
            return Err(CoreError::NotModerator);
        }
        Ok(!original.deleted)
    }

    /// Checks that `user` may react with `emoji` to message `seq`: a member, an existing
    /// (durable) message, a valid emoji. One reaction per user per emoji per message is
    /// the storage key's job (adding twice is idempotent).
    pub fn check_reaction(
        &self,
        now_ms: u64,
        user: &UserId,
        seq: u64,
        emoji: String,
    ) -> Result<Emoji, CoreError> {
        if self.role_of(user).is_none() {
            return Err(CoreError::NotMember(self.id.clone()));
        }
        if let Some(until) = self.muted_until(user, now_ms) {
            return Err(CoreError::Muted { until });
        }
        if seq == 0 || seq > self.durable_seq {
            return Err(CoreError::NoSuchMessage(seq));
        }
        Emoji::new(emoji).map_err(|error| CoreError::Text { field: "emoji", error })
    }

    /// Installs the watermarks read from storage when the room is loaded.
    pub fn load_receipts(&mut self, receipts: impl IntoIterator<Item = (UserId, u64, u64)>) {
        self.receipts.extend(receipts.into_iter().map(|(user, delivered, read)| (user, (delivered, read))));
    }

    /// Members whose watermarks storage derives from their messages among its newest
    /// (read at load): written before any message this room had then leaves that tail.
    pub fn load_unstored_receipts(&mut self, users: impl IntoIterator<Item = UserId>) {
        self.unstored_receipts.extend(users);
        if !self.unstored_receipts.is_empty() {
            // Any of the stored messages may be the only record: as if the oldest of
            // the tail were.
            let tail_start = (self.last_seq + 1).saturating_sub(SENDER_RECEIPT_TAIL as u64).max(1);
            self.oldest_unstored = Some(self.oldest_unstored.map_or(tail_start, |o| o.min(tail_start)));
        }
    }

    /// The senders' watermarks to write with the message just appended (`last_seq`):
    /// all that storage derives, once the oldest message they are derived from would
    /// leave the newest [`SENDER_RECEIPT_TAIL`] with it; none before.
    pub fn due_sender_receipts(&mut self) -> Vec<(UserId, u64, u64)> {
        match self.oldest_unstored {
            Some(oldest) if self.last_seq >= oldest + SENDER_RECEIPT_TAIL as u64 => {
                self.oldest_unstored = None;
                std::mem::take(&mut self.unstored_receipts)
                    .into_iter()
                    .map(|user| {
                        let (delivered, read) = self.receipt_of(&user);
                        (user, delivered, read)
                    })
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    /// Whether `user`'s watermarks are only derived by storage from their messages, not
    /// written yet.
    pub fn has_unstored_receipt(&self, user: &UserId) -> bool {
        self.unstored_receipts.contains(user)
    }

    /// The senders' watermarks to write before history below `floor` is trimmed: all
    /// that storage derives, if a message they may be derived from is below it.
    pub fn sender_receipts_due_before_trim(&mut self, floor: u64) -> Vec<(UserId, u64, u64)> {
        match self.oldest_unstored {
            Some(oldest) if floor > oldest => {
                self.oldest_unstored = None;
                std::mem::take(&mut self.unstored_receipts)
                    .into_iter()
                    .map(|user| {
                        let (delivered, read) = self.receipt_of(&user);
                        (user, delivered, read)
                    })
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    /// A member's `(delivered, read)` watermarks (`(0, 0)` if none).
    pub fn receipt_of(&self, user: &UserId) -> (u64, u64) {
        self.receipts.get(user).copied().unwrap_or_default()
    }

    /// Moves a member's watermarks forward: never back, never past the newest durable seq,
    /// and `read` implies `delivered`.
    pub fn receipt(
        &mut self,
        user: &UserId,
        delivered: Option<u64>,
        read: Option<u64>,
    ) -> Result<ReceiptChange, CoreError> {
        if self.role_of(user).is_none() {
            return Err(CoreError::NotMember(self.id.clone()));
        }
        if delivered.is_none() && read.is_none() {
            return Err(CoreError::Mismatched("give `delivered`, `read` or both"));
        }
        let cap = self.durable_seq;
        let (d0, r0) = self.receipt_of(user);
        let read = r0.max(read.unwrap_or(0).min(cap));
        let delivered = d0.max(delivered.unwrap_or(0).min(cap)).max(read);
        let changed = (delivered, read) != (d0, r0);
        if changed {
            self.receipts.insert(user.clone(), (delivered, read));
            if !self.receipts_to_announce.contains(user) {
                self.receipts_to_announce.push(user.clone());
            }
        }
        Ok(ReceiptChange { delivered, read, changed })
    }

    /// The watermarks that moved since the last call, one entry per member however often
    /// it moved: what to announce to the room.
    pub fn take_receipt_announcements(&mut self) -> Vec<(UserId, u64, u64)> {
        let users = std::mem::take(&mut self.receipts_to_announce);
        users
            .into_iter()
            .map(|user| {
                let (delivered, read) = self.receipt_of(&user);
                (user, delivered, read)
            })
            .collect()
    }

    /// Whether watermarks moved since the last announcement.
    pub fn has_receipt_announcements(&self) -> bool {
        !self.receipts_to_announce.is_empty()
    }

    /// A member starts (`active`) or stops typing. Renewals are coalesced: one announcement
    /// per half lifetime, so a client renewing every second costs its room little.
    pub fn typing(&mut self, now_ms: u64, user: &UserId, active: bool) -> Result<TypingChange, CoreError> {
        if self.role_of(user).is_none() {
            return Err(CoreError::NotMember(self.id.clone()));
        }
        let ttl = self.limits.typing_ttl_ms;
        if active && let Some(until) = self.muted_until(user, now_ms) {
            return Err(CoreError::Muted { until });
        }
        if !active {
            return Ok(match self.typing.remove(user) {
                Some(_) => TypingChange::Stopped,
                None => TypingChange::Unchanged,
            });
        }
        let expires_ms = now_ms.saturating_add(ttl);
        match self.typing.get_mut(user) {
            Some(typer) if now_ms.saturating_sub(typer.announced_ms) < ttl / 2 => {
                typer.expires_ms = expires_ms;
                Ok(TypingChange::Unchanged)
            }
            _ => {
                self.typing.insert(user.clone(), Typer { expires_ms, announced_ms: now_ms });
                Ok(TypingChange::Started { expires_in_ms: ttl })
            }
        }
    }

    /// Ends the indicators that lapsed by `now_ms`; returns whose, to announce as stopped.
    pub fn expire_typing(&mut self, now_ms: u64) -> Vec<UserId> {
        let mut lapsed = Vec::new();
        self.typing.retain(|user, typer| {
            let keep = typer.expires_ms > now_ms;
            if !keep {
                lapsed.push(user.clone());
            }
            keep
        });
        lapsed
    }

    /// Whether anyone is typing (the owner only sweeps rooms where someone is).
    pub fn has_typers(&self) -> bool {
        !self.typing.is_empty()
    }

    /// Whether the room holds nothing that storage lacks — no message still becoming
    /// durable, nobody typing, no receipt waiting to be announced, no slow-mode wait
    /// still running — so that it may leave memory at `now_ms` and be loaded again later
    /// with no difference anyone could see.
    pub fn is_forgettable(&self, now_ms: u64) -> bool {
        let slow_ms = u64::from(self.settings.slow_mode_secs) * 1000;
        self.pending.is_empty()
            && self.typing.is_empty()
            && self.receipts_to_announce.is_empty()
            && self.last_sent.values().all(|&sent| now_ms.saturating_sub(sent) >= slow_ms)
    }

    /// Records that every seq up to `seq` is durable.
    pub fn committed(&mut self, seq: u64) {
        self.durable_seq = self.durable_seq.max(seq.min(self.last_seq));
        while self.pending.front().is_some_and(|p| p.seq <= self.durable_seq) {
            if let Some(PendingSend { sender, cid, .. }) = self.pending.pop_front() {
                let fingerprint = self.pending_fingerprint(&sender, &cid);
                if let Some(count) = self.pending_cids.get_mut(&fingerprint) {
                    *count -= 1;
                    if *count == 0 {
                        self.pending_cids.remove(&fingerprint);
                    }
                }
            }
        }
    }
}

/// `encryption` goes with kind `encrypted` and only with it, and names an algorithm and a
/// device in a sane form (the rest is opaque).
fn check_encryption(kind: MessageKind, encryption: Option<&Encryption>) -> Result<(), CoreError> {
    let invalid = |field, rule| Err(CoreError::Malformed { field, rule });
    match (kind, encryption) {
        (MessageKind::Encrypted, None) => {
            Err(CoreError::Mismatched("an encrypted message needs `encryption`"))
        }
        (MessageKind::Encrypted, Some(e)) => {
            let token = |s: &str, max: usize| {
                !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_graphic())
            };
            if !token(&e.algorithm, 128) {
                return invalid("encryption.algorithm", "must be 1 to 128 printable characters");
            }
            if !crate::keys::valid_device_id(&e.sender_device) {
                return invalid("encryption.sender_device", "must be 1 to 64 of [A-Za-z0-9_-]");
            }
            if e.session_id.as_deref().is_some_and(|s| !token(s, limits::MAX_KEY_BYTES)) {
                return invalid("encryption.session_id", "must be 1 to 512 printable characters");
            }
            Ok(())
        }
        (_, Some(_)) => Err(CoreError::Mismatched("only encrypted messages carry `encryption`")),
        (_, None) => Ok(()),
    }
}

/// Checks a shared file's description (the upload itself is checked where it is stored).
fn check_file(file: &FileRef) -> Result<(), CoreError> {
    let invalid = |field, rule| Err(CoreError::Malformed { field, rule });
    if file.file_id.is_empty()
        || file.file_id.len() > 64
        || !file.file_id.bytes().all(|b| b.is_ascii_graphic())
    {
        return invalid("file.file_id", "must be 1 to 64 printable characters");
    }
    if file.name.trim().is_empty()
        || file.name.chars().count() > 255
        || file.name.chars().any(char::is_control)
    {
        return invalid("file.name", "must be 1 to 255 characters without control characters");
    }
    let valid_type = file.content_type.len() <= 127
        && file.content_type.split_once('/').is_some_and(|(t, s)| {
            let token = |p: &str| {
                !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
            };
            token(t) && token(s)
        });
    if !valid_type {
        return invalid("file.content_type", "must be type/subtype");
    }
    Ok(())
}

/// Whether a text mentions the whole room: `@everyone` (over `@here` when it has both) or
/// `@here`, found like usernames (`mentioned_usernames`); case-insensitive.
pub fn mentioned_all(text: &str) -> Option<MentionAll> {
    let mut found = None;
    let mut previous: Option<char> = None;
    for (at, c) in text.char_indices() {
        let boundary = previous.is_none_or(|p| !(p.is_alphanumeric() || matches!(p, '_' | '.' | '-')));
        if c == '@' && boundary {
            let rest = &text[at + 1..];
            let end = rest
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '-')))
                .unwrap_or(rest.len());
            match rest[..end].trim_end_matches(['.', '-']).to_ascii_lowercase().as_str() {
                "everyone" => return Some(MentionAll::Everyone),
                "here" => found = Some(MentionAll::Here),
                _ => {}
            }
        }
        previous = Some(c);
    }
    found
}

/// The usernames a text mentions: `@name` where `name` is a valid username, at the start
/// or after a character that cannot be part of a username (so `mail@example.com` is not
/// a mention). Case-insensitive, as usernames are.
pub fn mentioned_usernames(text: &str) -> Vec<Username> {
    let mut names = Vec::new();
    let mut previous: Option<char> = None;
    for (at, c) in text.char_indices() {
        let boundary = previous.is_none_or(|p| !(p.is_alphanumeric() || matches!(p, '_' | '.' | '-')));
        if c == '@' && boundary {
            let rest = &text[at + 1..];
            let end = rest
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '-')))
                .unwrap_or(rest.len());
            let candidate = rest[..end].trim_end_matches(['.', '-']);
            if let Ok(name) = Username::parse(candidate)
                && !names.contains(&name)
            {
                names.push(name);
            }
        }
        previous = Some(c);
    }
    names.truncate(limits::MAX_MENTIONS);
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn user(name: &str) -> UserId {
        UserId::parse(&format!("u_{name}")).unwrap()
    }
    fn cid(s: &str) -> ClientMsgId {
        ClientMsgId::parse(s).unwrap()
    }
    fn draft(c: &str, text: &str) -> Draft {
        Draft {
            cid: cid(c),
            kind: MessageKind::Text,
            text: text.into(),
            client_ts: None,
            reply_to: None,
            file: None,
            mentions: Vec::new(),
            encryption: None,
            mention_all: None,
            forward: None,
            also_to_room: false,
            thread: None,
        }
    }
    fn public_room() -> Room {
        Room::create(
            RoomId::parse("r_pub").unwrap(),
            "general".into(),
            RoomKind::Public,
            user("owner"),
            RoomLimits::default(),
        )
        .unwrap()
    }
    fn send(room: &mut Room, who: &UserId, c: &str, now: u64) -> Result<SendOutcome, CoreError> {
        room.send(now, who, draft(c, "hi"), |_| None)
    }

    #[test]
    fn seqs_start_at_one_and_grow_by_one() {
        let mut room = public_room();
        let owner = user("owner");
        for expected in 1..=5 {
            match send(&mut room, &owner, &format!("c{expected}"), 10).unwrap() {
                SendOutcome::Append(a) => assert_eq!(a.message.seq, expected),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_repeated_cid_returns_the_first_seq_before_and_after_commit() {
        let mut room = public_room();
        let owner = user("owner");
        assert!(matches!(send(&mut room, &owner, "a", 5).unwrap(), SendOutcome::Append(_)));
        assert_eq!(send(&mut room, &owner, "a", 6).unwrap(), SendOutcome::Duplicate { seq: 1, ts: 5 });
        room.committed(1);
        // After commit the room forgets it; storage answers.
        let outcome = room.send(7, &owner, draft("a", "hi"), |_| Some((1, 5))).unwrap();
        assert_eq!(outcome, SendOutcome::Duplicate { seq: 1, ts: 5 });
        assert_eq!(room.last_seq(), 1);
    }

    #[test]
    fn outsiders_cannot_send_and_private_rooms_refuse_them() {
        let mut room = public_room();
        let bob = user("bob");
        assert_eq!(send(&mut room, &bob, "x", 1), Err(CoreError::NotMember(room.id().clone())));
        assert!(room.join(&bob).unwrap().newly_member);
        assert!(!room.join(&bob).unwrap().newly_member);
        assert!(send(&mut room, &bob, "x", 1).is_ok());

        let mut private = Room::create(
            RoomId::parse("r_priv").unwrap(),
            "secret".into(),
            RoomKind::Private,
            user("owner"),
            RoomLimits::default(),
        )
        .unwrap();
        assert!(matches!(private.join(&bob), Err(CoreError::PrivateRoom(_))));
        assert!(matches!(
            private.history_page(&bob, HistoryRequest::default()),
            Err(CoreError::PrivateRoom(_))
        ));
        assert!(private.history_page(&user("owner"), HistoryRequest::default()).is_ok());
    }

    #[test]
    fn text_limits_map_to_the_right_codes() {
        let mut room = Room::create(
            RoomId::parse("r_x").unwrap(),
            "x".into(),
            RoomKind::Public,
            user("o"),
            RoomLimits { max_text_chars: 3, ..RoomLimits::default() },
        )
        .unwrap();
        let o = user("o");
        let long = room.send(1, &o, draft("1", "abcd"), |_| None);
        assert!(matches!(long, Err(CoreError::TooLong { field: "text", .. })));
        let ctrl = room.send(1, &o, draft("2", "a\u{0}"), |_| None);
        assert!(matches!(ctrl, Err(CoreError::Text { error: TextError::ControlCharacter(0), .. })));
        assert_eq!(room.last_seq(), 0, "refused sends consume no seq");
    }

    #[test]
    fn history_never_shows_undurable_messages_and_checks_limit() {
        let mut room = public_room();
        let owner = user("owner");
        send(&mut room, &owner, "a", 1).unwrap();
        send(&mut room, &owner, "b", 1).unwrap();
        let page = |before, after, limit| HistoryRequest {
            before,
            after,
            limit,
            cursor: None,
            threads: Default::default(),
        };
        let backward = |before, limit| HistoryWindow::Backward { before, limit };
        assert_eq!(room.history_page(&owner, page(None, None, None)).unwrap(), backward(1, 50));
        room.committed(2);
        assert_eq!(room.history_page(&owner, page(None, None, Some(10))).unwrap(), backward(3, 10));
        assert_eq!(room.history_page(&owner, page(Some(2), None, Some(10))).unwrap(), backward(2, 10));
        assert_eq!(
            room.history_page(&owner, page(None, Some(0), Some(10))).unwrap(),
            HistoryWindow::Forward { after: 0, through: 2, limit: 10 }
        );
        assert!(room.history_page(&owner, page(None, None, Some(0))).is_err());
        assert!(room.history_page(&owner, page(None, None, Some(101))).is_err());
        assert!(room.history_page(&owner, page(Some(2), Some(1), None)).is_err(), "one direction");
        // A cursor continues where its page stopped, in its direction.
        let cursor = palaver_protocol::paging::encode_cursor("history", "a1");
        let resumed = HistoryRequest { cursor: Some(cursor.clone()), ..HistoryRequest::default() };
        assert_eq!(
            room.history_page(&owner, resumed).unwrap(),
            HistoryWindow::Forward { after: 1, through: 2, limit: 50 }
        );
        let mixed = HistoryRequest { before: Some(2), cursor: Some(cursor), ..HistoryRequest::default() };
        assert!(room.history_page(&owner, mixed).is_err());
        let foreign = palaver_protocol::paging::encode_cursor("sync", "a1");
        assert!(
            room.history_page(&owner, HistoryRequest { cursor: Some(foreign), ..Default::default() })
                .is_err()
        );
    }

    #[test]
    fn join_reports_only_durable_seqs() {
        let mut room = public_room();
        let owner = user("owner");
        send(&mut room, &owner, "a", 1).unwrap();
        assert_eq!(room.join(&user("bob")).unwrap().last_seq, 0);
        room.committed(1);
        assert_eq!(room.join(&user("carol")).unwrap().last_seq, 1);
    }

    #[test]
    fn timestamps_never_go_backwards() {
        let mut room = public_room();
        let owner = user("owner");
        let SendOutcome::Append(a) = send(&mut room, &owner, "a", 100).unwrap() else { panic!() };
        let SendOutcome::Append(b) = send(&mut room, &owner, "b", 50).unwrap() else { panic!() };
        assert_eq!((a.message.ts, b.message.ts), (100, 100));
    }

    #[test]
    fn typing_is_announced_coalesced_and_lapses_by_itself() {
        let mut room = public_room();
        let owner = user("owner");
        let ttl = RoomLimits::default().typing_ttl_ms;
        assert_eq!(room.typing(0, &owner, true), Ok(TypingChange::Started { expires_in_ms: ttl }));
        // Renewals inside half the lifetime are not announced again, but do extend it.
        assert_eq!(room.typing(1_000, &owner, true), Ok(TypingChange::Unchanged));
        assert_eq!(room.typing(ttl / 2, &owner, true), Ok(TypingChange::Started { expires_in_ms: ttl }));
        assert!(room.expire_typing(ttl).is_empty(), "renewed at ttl/2, lapses at 1.5 ttl");
        assert_eq!(room.expire_typing(ttl / 2 + ttl), vec![owner.clone()]);
        assert_eq!(room.typing(0, &owner, false), Ok(TypingChange::Unchanged));
        assert_eq!(room.typing(0, &user("stranger"), true), Err(CoreError::NotMember(room.id().clone())));
    }

    #[test]
    fn receipts_only_move_forward_are_capped_and_coalesced() {
        let mut room = public_room();
        let owner = user("owner");
        let bob = user("bob");
        room.join(&bob).unwrap();
        for i in 1..=5 {
            send(&mut room, &owner, &format!("c{i}"), i).unwrap();
        }
        room.committed(5);
        assert_eq!(room.receipt_of(&owner), (5, 5), "a sender has read their own messages");
        let r = room.receipt(&bob, Some(4), None).unwrap();
        assert_eq!((r.delivered, r.read, r.changed), (4, 0, true));
        let r = room.receipt(&bob, None, Some(3)).unwrap();
        assert_eq!((r.delivered, r.read), (4, 3));
        let r = room.receipt(&bob, Some(1), Some(1)).unwrap();
        assert_eq!((r.delivered, r.read, r.changed), (4, 3, false), "never backwards");
        let r = room.receipt(&bob, None, Some(99)).unwrap();
        assert_eq!((r.delivered, r.read), (5, 5), "capped at the durable seq; read implies delivered");
        assert_eq!(room.take_receipt_announcements(), vec![(bob.clone(), 5, 5)], "one per member");
        assert!(!room.has_receipt_announcements());
        assert!(matches!(room.receipt(&bob, None, None), Err(CoreError::Mismatched(_))));
        assert!(matches!(room.receipt(&user("x"), Some(1), None), Err(CoreError::NotMember(_))));
    }

    #[test]
    fn senders_watermarks_are_written_before_their_message_leaves_storages_tail() {
        let mut room = public_room();
        let owner = user("owner");
        let bob = user("bob");
        room.join(&bob).unwrap();
        send(&mut room, &bob, "b1", 1).unwrap();
        assert_eq!(room.due_sender_receipts(), vec![], "derived from message 1 while it is in the tail");
        let tail = SENDER_RECEIPT_TAIL as u64;
        for i in 2..=tail {
            send(&mut room, &owner, &format!("c{i}"), i).unwrap();
            assert_eq!(room.due_sender_receipts(), vec![], "message {i}");
        }
        // Message 1 leaves the newest `tail` with this one: both senders' marks go with it.
        send(&mut room, &owner, "last", tail + 1).unwrap();
        let mut due = room.due_sender_receipts();
        due.sort();
        assert_eq!(due, vec![(bob.clone(), 1, 1), (owner.clone(), tail + 1, tail + 1)]);
        assert_eq!(room.due_sender_receipts(), vec![], "written once");

        // Loaded with derived marks: written with the first message appended after.
        let mut loaded = public_room();
        loaded.join(&bob).unwrap();
        for i in 1..=3 {
            send(&mut loaded, &owner, &format!("c{i}"), i).unwrap();
        }
        loaded.committed(3);
        let _ = loaded.due_sender_receipts();
        loaded.unstored_receipts.clear();
        loaded.oldest_unstored = None;
        loaded.load_unstored_receipts([owner.clone()]);
        assert_eq!(loaded.due_sender_receipts(), vec![], "nothing appended yet");
        loaded.last_seq = tail + 10;
        send(&mut loaded, &bob, "b", 100).unwrap();
        let mut due = loaded.due_sender_receipts();
        due.sort();
        assert_eq!(due, vec![(bob.clone(), tail + 11, tail + 11), (owner.clone(), 3, 3)]);
    }

    #[test]
    fn room_wide_mentions_are_found_like_names_and_everyone_wins() {
        assert_eq!(mentioned_all("@here can someone look"), Some(MentionAll::Here));
        assert_eq!(mentioned_all("ping @Everyone."), Some(MentionAll::Everyone));
        assert_eq!(mentioned_all("@here and @everyone"), Some(MentionAll::Everyone));
        assert_eq!(mentioned_all("mail@here.com @hereby @everyones"), None);
        assert_eq!(mentioned_all("no mention"), None);
        // Only the room's role mentions the room.
        let mut room = public_room();
        let (owner, bob) = (user("owner"), user("bob"));
        room.join(&bob).unwrap();
        assert!(room.may_mention_all(&owner));
        assert!(!room.may_mention_all(&bob));
        assert!(!room.may_mention_all(&user("stranger")));
        let patch = RoomSettingsPatch { mention_all_role: Some(Role::Member), ..Default::default() };
        room.settings = room.patched_settings(&patch).unwrap();
        assert!(room.may_mention_all(&bob));
    }

    #[test]
    fn mentions_are_parsed_at_word_boundaries() {
        let names: Vec<String> = mentioned_usernames("hi @Bob, @carol. mail@example.com @x @bob (@dave_1)")
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(names, vec!["bob", "carol", "dave_1"]);
    }

    #[test]
    fn edits_need_the_sender_and_the_window_deletes_the_sender_or_a_moderator() {
        let mut room = public_room();
        let (owner, bob) = (user("owner"), user("bob"));
        room.join(&bob).unwrap();
        let SendOutcome::Append(a) = send(&mut room, &bob, "b1", 1_000).unwrap() else { panic!() };
        room.committed(1);
        let m = a.message;
        assert_eq!(room.check_edit(2_000, &bob, &m, "fixed".into()), Ok("fixed".into()));
        assert_eq!(room.check_edit(2_000, &owner, &m, "x".into()), Err(CoreError::NotYourMessage(1)));
        let late = 1_000 + RoomLimits::default().edit_window_ms + 1;
        assert_eq!(room.check_edit(late, &bob, &m, "x".into()), Err(CoreError::EditWindowPassed(1)));
        assert_eq!(room.check_delete(&owner, &m), Ok(true), "the owner moderates");
        let SendOutcome::Append(o) = send(&mut room, &owner, "o1", 1_000).unwrap() else { panic!() };
        assert_eq!(room.check_delete(&bob, &o.message), Err(CoreError::NotModerator));
        let tombstone = Message { deleted: true, ..m };
        assert_eq!(room.check_delete(&bob, &tombstone), Ok(false));
        assert_eq!(room.check_edit(2_000, &bob, &tombstone, "x".into()), Err(CoreError::NoSuchMessage(1)));
        let notice = Message { kind: MessageKind::System, ..o.message };
        assert!(
            matches!(room.check_delete(&owner, &notice), Err(CoreError::SystemMessageStays)),
            "the record stays"
        );
    }

    #[test]
    fn a_direct_room_takes_back_the_one_of_its_pair_who_left() {
        let (a, b) = (user("a"), user("b"));
        let mut room =
            Room::direct(RoomId::parse("r_dm").unwrap(), a.clone(), b.clone(), RoomLimits::default());
        assert_eq!(room.readmit_direct(&a), Ok(false), "still a member");
        assert_eq!(room.leave(&b), Ok(true));
        assert!(room.join(&b).is_err(), "joining by id does not re-admit");
        assert_eq!(room.readmit_direct(&b), Ok(true));
        assert!(room.readmit_direct(&user("c")).is_err(), "two members at most");
    }

    #[test]
    fn mute_means_no_new_content_and_slow_mode_survives_leaving() {
        let mut room = public_room();
        let (owner, bob) = (user("owner"), user("bob"));
        room.join(&bob).unwrap();
        let SendOutcome::Append(first) = send(&mut room, &bob, "b1", 1_000).unwrap() else { panic!() };
        room.committed(1);
        let slow = RoomSettingsPatch { slow_mode_secs: Some(60), ..Default::default() };
        room.update(&owner, None, None, Some(slow)).unwrap();
        send(&mut room, &bob, "b2", 2_000).unwrap();
        room.committed(2);
        room.leave(&bob).unwrap();
        room.join(&bob).unwrap();
        assert!(matches!(send(&mut room, &bob, "b3", 2_004), Err(CoreError::SlowMode { .. })));
        room.moderate(3_000, &owner, &bob, Moderation::Mute { duration_secs: 60, reason: None }).unwrap();
        let original = first.message;
        assert!(matches!(
            room.check_edit(3_001, &bob, &original, "edited".into()),
            Err(CoreError::Muted { .. })
        ));
        assert!(matches!(room.check_reaction(3_001, &bob, 1, "👍".into()), Err(CoreError::Muted { .. })));
        assert!(matches!(room.typing(3_001, &bob, true), Err(CoreError::Muted { .. })));
        assert!(room.typing(3_001, &bob, false).is_ok(), "stopping is not new content");
        assert!(room.check_delete(&bob, &original).is_ok(), "removing one's own message is allowed");
    }

    #[test]
    fn a_room_is_forgettable_only_when_storage_holds_all_of_it() {
        let mut room = public_room();
        let owner = user("owner");
        assert!(room.is_forgettable(0));
        send(&mut room, &owner, "a", 10).unwrap();
        assert!(!room.is_forgettable(10), "a message is still becoming durable");
        room.committed(1);
        assert!(room.is_forgettable(10));
        room.typing(10, &owner, true).unwrap();
        assert!(!room.is_forgettable(10), "someone is typing");
        room.typing(10, &owner, false).unwrap();
        let slow = RoomSettingsPatch { slow_mode_secs: Some(30), ..Default::default() };
        room.update(&owner, None, None, Some(slow)).unwrap();
        let bob = user("bob");
        room.join(&bob).unwrap();
        send(&mut room, &bob, "b", 20).unwrap();
        room.committed(2);
        assert!(!room.is_forgettable(20 + 29_999), "a slow-mode wait is running");
        assert!(room.is_forgettable(20 + 30_000));
    }

    #[test]
    fn kinds_replies_and_files_are_validated() {
        let mut room = public_room();
        let owner = user("owner");
        let file = FileRef {
            file_id: "f_1".into(),
            name: "cat.png".into(),
            size: 10,
            content_type: "image/png".into(),
            width: Some(1),
            height: Some(1),
        };
        let mut d = draft("i1", "");
        d.kind = MessageKind::Image;
        d.file = Some(Box::new(file.clone()));
        assert!(room.send(1, &owner, d.clone(), |_| None).is_ok());
        d.cid = cid("i2");
        d.file = Some(Box::new(FileRef { content_type: "text/plain".into(), ..file.clone() }));
        let not_an_image = Err(CoreError::Mismatched("an image needs an image/* content type"));
        assert_eq!(room.send(1, &owner, d.clone(), |_| None).map(|_| ()), not_an_image);
        d.kind = MessageKind::System;
        let by_the_server = Err(CoreError::Mismatched("system messages are written by the server"));
        assert_eq!(room.send(1, &owner, d.clone(), |_| None).map(|_| ()), by_the_server);
        let mut t = draft("t1", "text");
        t.file = Some(Box::new(file));
        let no_file = Err(CoreError::Mismatched("a text message carries no file"));
        assert_eq!(room.send(1, &owner, t, |_| None).map(|_| ()), no_file);
        let mut r = draft("r1", "reply");
        r.reply_to = Some(9);
        assert_eq!(room.send(1, &owner, r.clone(), |_| None), Err(CoreError::NoSuchMessage(9)));
        r.reply_to = Some(1);
        assert!(room.send(1, &owner, r, |_| None).is_ok());
    }

    #[test]
    fn a_message_or_leaving_ends_typing_silently() {
        let mut room = public_room();
        let owner = user("owner");
        room.typing(0, &owner, true).unwrap();
        send(&mut room, &owner, "m", 1).unwrap();
        assert!(!room.has_typers());
        let bob = user("bob");
        room.join(&bob).unwrap();
        room.typing(0, &bob, true).unwrap();
        assert_eq!(room.typing(0, &bob, false), Ok(TypingChange::Stopped));
        room.typing(0, &bob, true).unwrap();
        room.leave(&bob).unwrap();
        assert!(!room.has_typers());
    }

    proptest! {
        /// Against a reference model: any mix of sends (with repeated cids) and commits
        /// yields gapless seqs, one seq per distinct cid, and the first seq for repeats.
        #[test]
        fn matches_a_reference_model(ops in prop::collection::vec((0u8..20, any::<bool>()), 1..200)) {
            let mut room = public_room();
            let owner = user("owner");
            let mut model: HashMap<String, u64> = HashMap::new();
            let mut stored: HashMap<String, (u64, u64)> = HashMap::new();
            for (c, commit) in ops {
                let c = format!("c{c}");
                let lookup = stored.get(&c).copied();
                let outcome = room
                    .send(1, &owner, draft(&c, "x"), |_| lookup)
                    .unwrap();
                let next = model.len() as u64 + 1;
                let expected = *model.entry(c.clone()).or_insert(next);
                match outcome {
                    SendOutcome::Append(a) => {
                        prop_assert_eq!(a.message.seq, expected);
                        prop_assert_eq!(expected, next);
                        stored.insert(c, (a.message.seq, a.message.ts));
                    }
                    SendOutcome::Duplicate { seq, .. } => prop_assert_eq!(seq, expected),
                }
                if commit {
                    room.committed(room.last_seq());
                }
            }
            prop_assert_eq!(room.last_seq(), model.len() as u64);
        }
    }
}
