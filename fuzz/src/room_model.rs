//! `room_model`: the room state machine (`palaver_core::Room`) against a plain reference
//! model, driven by an `Arbitrary` script of operations — joins, leaves, sends with
//! repeated cids, commits, edits, deletes, reactions, receipts, invitations, moderation
//! (kick, ban, unban, mute, unmute, role changes, transfer), the clock, and `Restart`.
//!
//! The harness plays the owning shard: it records the writes the shard submits for each
//! accepted operation (the same `Write`s as `server/src/shard/`), applies them to a plain
//! in-memory "store" in order when they commit, and on `Restart` drops what was not
//! committed and rebuilds the room from that store the way the shard's `load` does
//! (`Room::restore` + receipts + governance + `expire_mutes`). The model is independent of
//! all that: its state after a restart is simply its state at the last commit.
//!
//! Simplification: sends stay pending until a `Commit` (or a later write-through), so
//! retries race their own first attempt; every other accepted operation commits at once
//! (the shard answers them after their write is durable), which also commits every send
//! before it (group commit is first in, first out).

use std::collections::{BTreeMap, BTreeSet};

use arbitrary::{Arbitrary, Unstructured};
use palaver_core::{CoreError, Draft, Governance, Moderation, Role, Room, RoomLimits, SendOutcome};
use palaver_protocol::{ClientMsgId, Message, MessageKind, RoomId, RoomKind, UserId, limits};

const USERS: u8 = 5;
const MAX_TEXT_CHARS: usize = 16;
const EDIT_WINDOW_MS: u64 = 60_000;
const START_MS: u64 = 1_000_000;

/// One operation of a script. Users, cids, texts and emoji are small indices so that
/// collisions (the same cid twice, a moderator acting on a moderator) are common.
#[derive(Debug, Clone, Copy, Arbitrary)]
enum Op {
    Join { user: u8 },
    Leave { user: u8 },
    Send { user: u8, cid: u8, text: u8, reply_to: Option<u8> },
    Commit,
    Edit { user: u8, seq: u8, text: u8 },
    Delete { user: u8, seq: u8 },
    React { user: u8, seq: u8, emoji: u8 },
    Receipt { user: u8, delivered: Option<u8>, read: Option<u8> },
    Invite { actor: u8, target: u8 },
    Moderate { actor: u8, target: u8, action: ModAction },
    Advance { secs: u16 },
    Restart,
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum ModAction {
    Kick,
    Ban,
    Unban,
    Mute { secs: u8 },
    Unmute,
    SetRole { role: u8 },
    Transfer,
}

/// Input: a room kind and a script. Checks, after every operation: the outcome (value or
/// error kind) is the model's; `last_seq`, `durable_seq`, every user's role, ban, mute,
/// invitation and receipt are the model's.
pub fn room_model(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(private) = bool::arbitrary(&mut u) else { return };
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < 512 {
        match Op::arbitrary(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    let mut h = Harness::new(private);
    for (i, op) in ops.into_iter().enumerate() {
        let step = Step(i, op);
        h.step(op, &step);
        h.compare(&step);
    }
}

/// Which step of the script failed, formatted only when one does.
struct Step(usize, Op);

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "op {}: {:?}", self.0, self.1)
    }
}

fn user(i: u8) -> UserId {
    UserId::parse(&format!("u_{}", i % USERS)).unwrap()
}
fn room_id() -> RoomId {
    RoomId::parse("r_fuzz").unwrap()
}
fn cid(i: u8) -> ClientMsgId {
    ClientMsgId::parse(&format!("c{}", i % 8)).unwrap()
}
fn limits_() -> RoomLimits {
    RoomLimits { max_text_chars: MAX_TEXT_CHARS, edit_window_ms: EDIT_WINDOW_MS, ..RoomLimits::default() }
}

/// Texts: valid, empty, a control character, one character too long.
fn text(i: u8) -> (String, Result<(), &'static str>) {
    match i % 4 {
        0 => ("hi".into(), Ok(())),
        1 => (String::new(), Err("Text")),
        2 => ("a\u{1}".into(), Err("Text")),
        _ => ("x".repeat(MAX_TEXT_CHARS + 1), Err("TooLong")),
    }
}

/// Emoji: valid, empty, with a space, too long.
fn emoji(i: u8) -> (String, bool) {
    match i % 4 {
        0 => ("👍".into(), true),
        1 => (String::new(), false),
        2 => ("a b".into(), false),
        _ => ("x".repeat(limits::MAX_EMOJI_BYTES + 1), false),
    }
}

/// The variant name of an error, which is what the model predicts.
fn kind(e: &CoreError) -> String {
    let debug = format!("{e:?}");
    debug.split(['(', ' ', '{']).next().unwrap_or_default().to_owned()
}

fn check<T: std::fmt::Debug + PartialEq>(
    description: &Step,
    got: Result<T, CoreError>,
    expected: Result<T, &'static str>,
) -> Option<T> {
    match (got, expected) {
        (Ok(got), Ok(expected)) => {
            assert_eq!(got, expected, "{description}");
            Some(got)
        }
        (Err(e), Err(expected)) => {
            assert_eq!(kind(&e), expected, "{description}: {e:?}");
            None
        }
        (got, expected) => panic!("{description}: room {got:?}, model {expected:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// The harness's stand-in for storage: what the shard writes, applied in commit order.

#[derive(Debug, Clone)]
enum Write {
    PutMember(UserId, Role),
    RemoveMember(UserId),
    PutBan(UserId),
    RemoveBan(UserId),
    PutMute(UserId, u64),
    RemoveMute(UserId),
    PutInvite(UserId),
    RemoveInvite(UserId),
    PutMessage(Box<Message>),
    PutReceipt(UserId, u64, u64),
}

#[derive(Debug, Default)]
struct Store {
    members: BTreeMap<UserId, Role>,
    bans: BTreeSet<UserId>,
    mutes: BTreeMap<UserId, u64>,
    invites: BTreeSet<UserId>,
    messages: BTreeMap<u64, Message>,
    receipts: BTreeMap<UserId, (u64, u64)>,
}

impl Store {
    fn apply(&mut self, write: Write) {
        match write {
            Write::PutMember(u, r) => drop(self.members.insert(u, r)),
            Write::RemoveMember(u) => drop(self.members.remove(&u)),
            Write::PutBan(u) => drop(self.bans.insert(u)),
            Write::RemoveBan(u) => drop(self.bans.remove(&u)),
            Write::PutMute(u, until) => drop(self.mutes.insert(u, until)),
            Write::RemoveMute(u) => drop(self.mutes.remove(&u)),
            Write::PutInvite(u) => drop(self.invites.insert(u)),
            Write::RemoveInvite(u) => drop(self.invites.remove(&u)),
            Write::PutMessage(m) => drop(self.messages.insert(m.seq, *m)),
            Write::PutReceipt(u, d, r) => drop(self.receipts.insert(u, (d, r))),
        }
    }

    fn cid_seq(&self, sender: &UserId, c: &ClientMsgId) -> Option<(u64, u64)> {
        self.messages
            .values()
            .find(|m| m.system.is_none() && &m.sender == sender && &m.cid == c)
            .map(|m| (m.seq, m.ts))
    }
}

// ---------------------------------------------------------------------------------------
// The reference model: plain maps keyed by user index, no pending queue.

#[derive(Debug, Clone)]
struct ModelMessage {
    sender: u8,
    cid: Option<u8>,
    ts: u64,
    deleted: bool,
    system: bool,
}

#[derive(Debug, Clone)]
struct Model {
    private: bool,
    members: BTreeMap<u8, Role>,
    bans: BTreeSet<u8>,
    /// Mutes are durable (PROTOCOL.md §3.5.19): they end by themselves, by `unmute`, by a
    /// ban, or when the muted member is handed the room — not by leaving or a restart.
    mutes: BTreeMap<u8, u64>,
    invites: BTreeSet<u8>,
    messages: BTreeMap<u64, ModelMessage>,
    receipts: BTreeMap<u8, (u64, u64)>,
    durable_seq: u64,
}

impl Model {
    fn last_seq(&self) -> u64 {
        self.messages.keys().next_back().copied().unwrap_or(0)
    }
    fn last_ts(&self) -> u64 {
        self.messages.values().next_back().map_or(0, |m| m.ts)
    }
    fn append(&mut self, now: u64, message: ModelMessage) -> (u64, u64) {
        let seq = self.last_seq() + 1;
        let ts = self.last_ts().max(now);
        self.messages.insert(seq, ModelMessage { ts, ..message });
        (seq, ts)
    }
    fn muted_until(&self, u: u8, now: u64) -> Option<u64> {
        self.mutes.get(&u).copied().filter(|until| *until > now)
    }
    fn role(&self, u: u8) -> Result<Role, &'static str> {
        self.members.get(&u).copied().ok_or("NotMember")
    }
    fn power_over(&self, actor: u8, actor_role: Role, target: u8) -> Result<(), &'static str> {
        if actor_role < Role::Moderator {
            return Err("NeedsRole");
        }
        if actor == target {
            return Err("Oneself");
        }
        if self.members.get(&target).is_some_and(|r| *r >= actor_role) {
            return Err("Outranks");
        }
        Ok(())
    }
    fn member(&self, target: u8) -> Result<(), &'static str> {
        if self.members.contains_key(&target) { Ok(()) } else { Err("TargetNotMember") }
    }

    /// A moderation action: `Ok(until)` (the mute's end, for `Mute`) when it applies.
    fn moderate(
        &mut self,
        now: u64,
        actor: u8,
        target: u8,
        action: ModAction,
    ) -> Result<Option<u64>, &'static str> {
        let actor_role = self.role(actor)?;
        match action {
            ModAction::Kick => {
                self.member(target)?;
                self.power_over(actor, actor_role, target)?;
                self.members.remove(&target);
                Ok(None)
            }
            ModAction::Ban => {
                self.power_over(actor, actor_role, target)?;
                if !self.bans.insert(target) {
                    return Err("AlreadyBanned");
                }
                self.members.remove(&target);
                self.invites.remove(&target);
                self.mutes.remove(&target);
                Ok(None)
            }
            ModAction::Unban => {
                self.power_over(actor, actor_role, target)?;
                if !self.bans.remove(&target) {
                    return Err("NotBanned");
                }
                Ok(None)
            }
            ModAction::Mute { secs } => {
                if secs == 0 {
                    return Err("OutOfRange");
                }
                self.member(target)?;
                self.power_over(actor, actor_role, target)?;
                let until = now + u64::from(secs) * 1000;
                self.mutes.insert(target, until);
                Ok(Some(until))
            }
            ModAction::Unmute => {
                self.member(target)?;
                self.power_over(actor, actor_role, target)?;
                if self.muted_until(target, now).is_none() {
                    return Err("NotMuted");
                }
                self.mutes.remove(&target);
                Ok(None)
            }
            ModAction::SetRole { role } => {
                let role = Role::from_byte(role % 4).unwrap_or_default();
                if role == Role::Owner {
                    return Err("Mismatched");
                }
                if actor_role < Role::Admin {
                    return Err("NeedsRole");
                }
                self.member(target)?;
                self.power_over(actor, actor_role, target)?;
                if role >= actor_role {
                    return Err("RolesBelowYours");
                }
                if self.members.get(&target) == Some(&role) {
                    return Err("AlreadyHasRole");
                }
                self.members.insert(target, role);
                Ok(None)
            }
            ModAction::Transfer => {
                if actor_role != Role::Owner {
                    return Err("OwnerOnly");
                }
                self.member(target)?;
                if actor == target {
                    return Err("Oneself");
                }
                self.members.insert(target, Role::Owner);
                self.members.insert(actor, Role::Admin);
                self.mutes.remove(&target);
                Ok(None)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------

struct Harness {
    now: u64,
    kind: RoomKind,
    room: Room,
    store: Store,
    pending: Vec<Write>,
    model: Model,
    /// The model as of the last commit: what a restart brings back.
    saved: Model,
}

impl Harness {
    fn new(private: bool) -> Harness {
        let kind = if private { RoomKind::Private } else { RoomKind::Public };
        let room = Room::create(room_id(), "fuzz".into(), kind, user(0), limits_()).unwrap();
        let mut store = Store::default();
        store.members.insert(user(0), Role::Owner);
        let model = Model {
            private,
            members: [(0, Role::Owner)].into(),
            bans: BTreeSet::new(),
            mutes: BTreeMap::new(),
            invites: BTreeSet::new(),
            messages: BTreeMap::new(),
            receipts: BTreeMap::new(),
            durable_seq: 0,
        };
        Harness { now: START_MS, kind, room, store, pending: Vec::new(), saved: model.clone(), model }
    }

    /// Group commit: every pending write, in order, then the room hears of it.
    fn commit(&mut self) {
        for write in self.pending.drain(..) {
            self.store.apply(write);
        }
        self.room.committed(self.room.last_seq());
        self.model.durable_seq = self.model.last_seq();
        self.saved = self.model.clone();
    }

    /// Writes that the shard submits and answers after they are durable.
    fn write_through(&mut self, writes: impl IntoIterator<Item = Write>) {
        self.pending.extend(writes);
        self.commit();
    }

    /// The shard's `load`: the room from what is stored, nothing else.
    fn restart(&mut self) {
        self.pending.clear();
        let (last_seq, last_ts) = self.store.messages.values().next_back().map_or((0, 0), |m| (m.seq, m.ts));
        let members = self.store.members.iter().map(|(u, r)| (u.clone(), *r));
        let mut room =
            Room::restore(room_id(), "fuzz".into(), self.kind, members, last_seq, last_ts, limits_());
        room.load_receipts(self.store.receipts.iter().map(|(u, (d, r))| (u.clone(), *d, *r)));
        room.load_governance(Governance {
            topic: String::new(),
            settings: None,
            bans: self.store.bans.iter().cloned().collect(),
            mutes: self.store.mutes.iter().map(|(u, t)| (u.clone(), *t)).collect(),
            invites: self.store.invites.iter().cloned().collect(),
        });
        room.expire_mutes(self.now);
        self.room = room;
        self.model = self.saved.clone();
        let now = self.now;
        self.model.mutes.retain(|_, until| *until > now);
    }

    fn step(&mut self, op: Op, d: &Step) {
        let now = self.now;
        match op {
            Op::Commit => self.commit(),
            Op::Restart => self.restart(),
            Op::Advance { secs } => self.now += u64::from(secs) * 1000,
            Op::Join { user: i } => {
                let i = i % USERS;
                let expected = match self.model.members.get(&i) {
                    Some(role) => Ok((false, *role, false, self.model.durable_seq)),
                    None if self.model.bans.contains(&i) => Err("Banned"),
                    None if self.model.private && !self.model.invites.contains(&i) => Err("PrivateRoom"),
                    None => {
                        let invited = self.model.invites.remove(&i);
                        self.model.members.insert(i, Role::Member);
                        Ok((true, Role::Member, invited, self.model.durable_seq))
                    }
                };
                let got =
                    self.room.join(&user(i)).map(|o| (o.newly_member, o.role, o.used_invite, o.last_seq));
                if let Some((true, role, used_invite, _)) = check(d, got, expected) {
                    let mut writes = vec![Write::PutMember(user(i), role)];
                    if used_invite {
                        writes.push(Write::RemoveInvite(user(i)));
                    }
                    self.write_through(writes);
                }
            }
            Op::Leave { user: i } => {
                let i = i % USERS;
                let expected = match self.model.members.get(&i) {
                    Some(Role::Owner) => Err("OwnerCannotLeave"),
                    Some(_) => Ok(self.model.members.remove(&i).is_some()),
                    None => Ok(false),
                };
                if let Some(true) = check(d, self.room.leave(&user(i)), expected) {
                    self.write_through([Write::RemoveMember(user(i))]);
                }
            }
            Op::Send { user: i, cid: c, text: t, reply_to } => {
                let (i, c) = (i % USERS, c % 8);
                let (body, valid) = text(t);
                let reply_to = reply_to.map(u64::from);
                let expected = (|| {
                    self.model.role(i)?;
                    if self.model.muted_until(i, now).is_some() {
                        return Err("Muted");
                    }
                    valid?;
                    if let Some(p) = reply_to
                        && (p == 0 || p > self.model.last_seq())
                    {
                        return Err("NoSuchMessage");
                    }
                    // A cid is its sender's: another member's same cid is another message.
                    if let Some((seq, m)) =
                        self.model.messages.iter().find(|(_, m)| m.sender == i && m.cid == Some(c))
                    {
                        return Ok((false, *seq, m.ts));
                    }
                    let message =
                        ModelMessage { sender: i, cid: Some(c), ts: 0, deleted: false, system: false };
                    let (seq, ts) = self.model.append(now, message);
                    let receipt = self.model.receipts.entry(i).or_default();
                    *receipt = (receipt.0.max(seq), receipt.1.max(seq));
                    Ok((true, seq, ts))
                })();
                let draft = Draft {
                    cid: cid(c),
                    kind: MessageKind::Text,
                    text: body,
                    client_ts: None,
                    reply_to,
                    file: None,
                    mentions: Vec::new(),
                    encryption: None,
                };
                let store = &self.store;
                let sender = user(i);
                let got = self.room.send(now, &sender, draft, |c| store.cid_seq(&sender, c));
                let (message, got) = match got {
                    Ok(SendOutcome::Append(a)) => {
                        let (seq, ts) = (a.message.seq, a.message.ts);
                        (Some(a.message), Ok((true, seq, ts)))
                    }
                    Ok(SendOutcome::Duplicate { seq, ts }) => (None, Ok((false, seq, ts))),
                    Err(e) => (None, Err(e)),
                };
                check(d, got, expected);
                if let Some(message) = message {
                    // The sender's own receipt goes in the same batch as the message.
                    let (delivered, read) = self.room.receipt_of(&user(i));
                    self.pending.push(Write::PutMessage(Box::new(message)));
                    self.pending.push(Write::PutReceipt(user(i), delivered, read));
                }
            }
            Op::Edit { user: i, seq, text: t } => {
                let (i, seq) = (i % USERS, u64::from(seq));
                // The shard reads the original from storage: only durable messages.
                let Some(original) = self.store.messages.get(&seq).cloned() else { return };
                let m = self.model.messages.get(&seq).cloned().unwrap();
                let (body, valid) = text(t);
                let expected = (|| {
                    self.model.role(i)?;
                    if self.model.muted_until(i, now).is_some() {
                        return Err("Muted");
                    }
                    if m.deleted {
                        return Err("NoSuchMessage");
                    }
                    if m.sender != i {
                        return Err("NotYourMessage");
                    }
                    if now.saturating_sub(m.ts) > EDIT_WINDOW_MS {
                        return Err("EditWindowPassed");
                    }
                    if m.system {
                        return Err("Mismatched");
                    }
                    valid.map(|()| body.clone())
                })();
                if let Some(new_text) =
                    check(d, self.room.check_edit(now, &user(i), &original, body.clone()), expected)
                {
                    let edited = Message { text: new_text, edited_at: Some(now), ..original };
                    self.write_through([Write::PutMessage(Box::new(edited))]);
                }
            }
            Op::Delete { user: i, seq } => {
                let (i, seq) = (i % USERS, u64::from(seq));
                let Some(original) = self.store.messages.get(&seq).cloned() else { return };
                let m = self.model.messages.get(&seq).cloned().unwrap();
                let expected = (|| {
                    let role = self.model.role(i)?;
                    if m.system {
                        return Err("SystemMessageStays");
                    }
                    if m.sender != i && role < Role::Moderator {
                        return Err("NotModerator");
                    }
                    Ok(!m.deleted)
                })();
                if let Some(true) = check(d, self.room.check_delete(&user(i), &original), expected) {
                    if let Some(m) = self.model.messages.get_mut(&seq) {
                        m.deleted = true;
                    }
                    let tombstone = Message { deleted: true, text: String::new(), ..original };
                    self.write_through([Write::PutMessage(Box::new(tombstone))]);
                }
            }
            Op::React { user: i, seq, emoji: e } => {
                let (i, seq) = (i % USERS, u64::from(seq));
                let (emoji, valid) = emoji(e);
                let expected = (|| {
                    self.model.role(i)?;
                    if self.model.muted_until(i, now).is_some() {
                        return Err("Muted");
                    }
                    if seq == 0 || seq > self.model.durable_seq {
                        return Err("NoSuchMessage");
                    }
                    if valid { Ok(emoji.clone()) } else { Err("Text") }
                })();
                let got = self
                    .room
                    .check_reaction(now, &user(i), seq, emoji.clone())
                    .map(|e| e.as_str().to_owned());
                check(d, got, expected);
            }
            Op::Receipt { user: i, delivered, read } => {
                let i = i % USERS;
                let (delivered, read) = (delivered.map(u64::from), read.map(u64::from));
                let expected = (|| {
                    self.model.role(i)?;
                    if delivered.is_none() && read.is_none() {
                        return Err("Mismatched");
                    }
                    let cap = self.model.durable_seq;
                    let (d0, r0) = self.model.receipts.get(&i).copied().unwrap_or_default();
                    let r = r0.max(read.unwrap_or(0).min(cap));
                    let dl = d0.max(delivered.unwrap_or(0).min(cap)).max(r);
                    let changed = (dl, r) != (d0, r0);
                    if changed {
                        self.model.receipts.insert(i, (dl, r));
                    }
                    Ok((dl, r, changed))
                })();
                let got =
                    self.room.receipt(&user(i), delivered, read).map(|c| (c.delivered, c.read, c.changed));
                if let Some((dl, r, true)) = check(d, got, expected) {
                    self.write_through([Write::PutReceipt(user(i), dl, r)]);
                }
            }
            Op::Invite { actor, target } => {
                let (a, t) = (actor % USERS, target % USERS);
                let expected = (|| {
                    self.model.role(a)?;
                    if self.model.members.contains_key(&t) {
                        return Err("AlreadyMember");
                    }
                    if self.model.bans.contains(&t) {
                        return Err("TargetBanned");
                    }
                    Ok(self.model.invites.insert(t))
                })();
                if let Some(true) = check(d, self.room.invite(&user(a), &user(t), false), expected) {
                    self.write_through([Write::PutInvite(user(t))]);
                }
            }
            Op::Moderate { actor, target, action } => self.moderate(d, actor % USERS, target % USERS, action),
        }
    }

    fn moderate(&mut self, d: &Step, a: u8, t: u8, action: ModAction) {
        let now = self.now;
        let expected = self.model.moderate(now, a, t, action);
        if expected.is_ok() {
            let notice = ModelMessage { sender: a, cid: None, ts: 0, deleted: false, system: true };
            self.model.append(now, notice);
        }
        let moderation = match action {
            ModAction::Kick => Moderation::Kick { reason: None },
            ModAction::Ban => Moderation::Ban { reason: None },
            ModAction::Unban => Moderation::Unban,
            ModAction::Mute { secs } => Moderation::Mute { duration_secs: u64::from(secs), reason: None },
            ModAction::Unmute => Moderation::Unmute,
            ModAction::SetRole { role } => Moderation::SetRole(Role::from_byte(role % 4).unwrap_or_default()),
            ModAction::Transfer => Moderation::Transfer,
        };
        let (actor, target) = (user(a), user(t));
        let got = self.room.moderate(now, &actor, &target, moderation);
        let notice = match (got, expected) {
            (Ok(notice), Ok(until)) => {
                assert_eq!(notice.until, until, "{d}");
                notice
            }
            (Err(e), Err(expected)) => {
                assert_eq!(kind(&e), expected, "{d}: {e:?}");
                return;
            }
            (got, expected) => panic!("{d}: room {got:?}, model {expected:?}"),
        };
        // The writes of `server/src/shard/governance.rs` `moderate`, then the notice.
        let mut writes = match action {
            ModAction::Kick => vec![Write::RemoveMember(target.clone())],
            ModAction::Ban => vec![
                Write::PutBan(target.clone()),
                Write::RemoveMember(target.clone()),
                Write::RemoveInvite(target.clone()),
                Write::RemoveMute(target.clone()),
            ],
            ModAction::Unban => vec![Write::RemoveBan(target.clone())],
            ModAction::Mute { .. } => vec![Write::PutMute(target.clone(), notice.until.unwrap_or(now))],
            ModAction::Unmute => vec![Write::RemoveMute(target.clone())],
            ModAction::SetRole { .. } => {
                vec![Write::PutMember(target.clone(), notice.role.unwrap_or(Role::Member))]
            }
            ModAction::Transfer => vec![
                Write::PutMember(target.clone(), Role::Owner),
                Write::PutMember(actor.clone(), Role::Admin),
                Write::RemoveMute(target.clone()),
            ],
        };
        let message = self.room.system_message(now, notice, "notice".into());
        writes.push(Write::PutMessage(Box::new(message)));
        self.write_through(writes);
    }

    fn compare(&self, d: &Step) {
        let (room, model) = (&self.room, &self.model);
        assert_eq!(room.last_seq(), model.last_seq(), "{d}: last_seq");
        assert_eq!(room.durable_seq(), model.durable_seq, "{d}: durable_seq");
        for i in 0..USERS {
            let u = user(i);
            assert_eq!(room.role_of(&u), model.members.get(&i).copied(), "{d}: role of {u}");
            assert_eq!(room.is_banned(&u), model.bans.contains(&i), "{d}: ban of {u}");
            assert_eq!(room.is_invited(&u), model.invites.contains(&i), "{d}: invite of {u}");
            assert_eq!(room.muted_until(&u, self.now), model.muted_until(i, self.now), "{d}: mute of {u}");
            assert_eq!(
                room.receipt_of(&u),
                model.receipts.get(&i).copied().unwrap_or_default(),
                "{d}: receipt of {u}"
            );
        }
    }
}
