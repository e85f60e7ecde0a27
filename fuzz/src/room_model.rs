//! `room_model`: the production room owner (`palaver_core::owner::RoomOwner`) against a
//! plain reference model, driven by an `Arbitrary` script of operations — joins, leaves,
//! sends with repeated cids, commits, edits, deletes, reactions, receipts, invitations,
//! moderation (kick, ban, unban, mute, unmute, role changes, transfer), the clock, and
//! `Restart`.
//!
//! The harness plays the shard that drives the owner: each operation becomes the
//! `RoomOp` the route produces and goes through `RoomOwner::handle` with a
//! `MemoryStore` as the lookups; the commits it decides are applied to the store and
//! settled through `on_committed`, and the answers it gives are what the client would
//! read. `Restart` drops every commit in flight (and the answers waiting on them) and
//! loads the room again with `RoomOwner::load` from what the store holds. The model is
//! independent of all that: plain maps keyed by user index, no pending queue; its state
//! after a restart is its state at the last commit.
//!
//! Sends stay in flight until a `Commit`, so retries race their own first attempt and
//! are answered only when it is durable; every other operation that writes commits at
//! once, with everything before it (group commit is first in, first out), as the
//! shard answers those only when durable.
//!
//! After every operation: each answer given is the model's (the value, or a refusal of
//! the variant the model names, recognised by its protocol code and the shape of its
//! message); the room in memory (`last_seq`, `durable_seq`, every user's role, ban,
//! mute, invitation and receipt) is the model's; and the store holds exactly the
//! model's state as of the last commit (members, bans, live mutes, invitations,
//! receipts, reactions and every message's seq, sender, time, kind and tombstone).

use std::collections::{BTreeMap, BTreeSet};

use arbitrary::{Arbitrary, Unstructured};
use palaver_core::memory::MemoryStore;
use palaver_core::owner::{Commit, Effects, Lookups, NewRoom, Outgoing, OwnerConfig, RoomOp, RoomOwner};
use palaver_core::route::RoomRequest;
use palaver_core::{CoreError, Moderation, Role, RoomLimits};
use palaver_protocol::{
    ClientMsgId, ErrorBody, MessageKind, OkBody, ReplyBody, RoomId, RoomKind, TextError, UserId, limits,
};

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

/// Input: a room kind and a script. Checks, after every operation, what the module docs
/// list; at the end, that every request was answered once the last writes are durable.
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
    h.commit();
    h.take_answers();
    assert!(h.waiting.is_empty(), "never answered: {:?}", h.waiting);
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
fn room_limits() -> RoomLimits {
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

// ---------------------------------------------------------------------------------------
// Refusals on the wire, recognised by the variant the model names.

/// Stands for a field's value in a message's shape.
const HOLE: char = '\u{0}';
const NUMBER_HOLE: u64 = 9_876_543_210;
const WORDS_HOLE: &str = "\u{0}";

/// Errors of the variant `name` with every field a hole (one per role for the variants
/// that name a role, whose name is part of the message).
fn shapes_of(name: &str) -> Vec<CoreError> {
    let n = NUMBER_HOLE;
    let user = || UserId::parse("u_hole").unwrap();
    let room = || RoomId::parse("r_hole").unwrap();
    let roles = [Role::Member, Role::Moderator, Role::Admin, Role::Owner];
    let per_role =
        |make: &dyn Fn(Role) -> CoreError| -> Vec<CoreError> { roles.iter().map(|r| make(*r)).collect() };
    let one = |e: CoreError| vec![e];
    match name {
        "NotMember" => one(CoreError::NotMember(room())),
        "PrivateRoom" => one(CoreError::PrivateRoom(room())),
        "Banned" => one(CoreError::Banned(room())),
        "Muted" => one(CoreError::Muted { until: n }),
        "NoSuchMessage" => one(CoreError::NoSuchMessage(n)),
        "NotYourMessage" => one(CoreError::NotYourMessage(n)),
        "EditWindowPassed" => one(CoreError::EditWindowPassed(n)),
        "NotModerator" => one(CoreError::NotModerator),
        "SystemMessageStays" => one(CoreError::SystemMessageStays),
        "OwnerCannotLeave" => one(CoreError::OwnerCannotLeave),
        "AlreadyMember" => one(CoreError::AlreadyMember(user())),
        "TargetBanned" => one(CoreError::TargetBanned(user())),
        "TargetNotMember" => one(CoreError::TargetNotMember(user())),
        "AlreadyBanned" => one(CoreError::AlreadyBanned(user())),
        "NotBanned" => one(CoreError::NotBanned(user())),
        "NotMuted" => one(CoreError::NotMuted(user())),
        "OwnerOnly" => one(CoreError::OwnerOnly(WORDS_HOLE)),
        "Oneself" => one(CoreError::Oneself(WORDS_HOLE)),
        "Mismatched" => one(CoreError::Mismatched(WORDS_HOLE)),
        "Text" => one(CoreError::Text { field: WORDS_HOLE, error: TextError::Empty }),
        "TooLong" => one(CoreError::TooLong { field: WORDS_HOLE, max: 1, unit: WORDS_HOLE }),
        "OutOfRange" => one(CoreError::OutOfRange { field: WORDS_HOLE, min: n, max: n }),
        "NeedsRole" => per_role(&|role| CoreError::NeedsRole { role, to: WORDS_HOLE }),
        "Outranks" => per_role(&|role| CoreError::Outranks { target: user(), role }),
        "RolesBelowYours" => per_role(&|role| CoreError::RolesBelowYours(role)),
        "AlreadyHasRole" => per_role(&|role| CoreError::AlreadyHasRole { target: user(), role }),
        other => panic!("the model names a refusal the harness cannot recognise: {other}"),
    }
}

/// Whether `message` has the shape of `error`'s: its fixed words, in order, with
/// anything where `error` has a hole.
fn fits(message: &str, error: &CoreError) -> bool {
    let mut shape = error.to_string();
    for hole in [NUMBER_HOLE.to_string(), "u_hole".into(), "r_hole".into(), TextError::Empty.to_string()] {
        shape = shape.replace(&hole, &HOLE.to_string());
    }
    // `TooLong`'s limit is the one number not written as a hole (it is a `usize`).
    if matches!(error, CoreError::TooLong { .. }) {
        shape = shape.replace(" 1 ", &format!(" {HOLE} "));
    }
    let parts: Vec<&str> = shape.split(HOLE).collect();
    let Some(mut rest) = message.strip_prefix(parts[0]) else { return false };
    let [_, middles @ .., last] = parts.as_slice() else { return rest.is_empty() };
    for middle in middles {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// Whether `body` is a refusal of the variant `name`.
fn is_refusal(body: &ErrorBody, name: &str) -> bool {
    shapes_of(name).iter().any(|e| e.code() == body.code && fits(&body.message, e))
}

/// An answer the model expects.
#[derive(Debug, Clone, PartialEq)]
enum Want {
    /// Accepted with this answer.
    Ok(Accepted),
    /// Refused with the variant of this name.
    Refused(&'static str),
}

/// What an accepted operation answers.
#[derive(Debug, Clone, PartialEq)]
enum Accepted {
    Empty,
    Joined { last_seq: u64 },
    Sent { seq: u64, ts: u64, duplicate: bool },
    Edited { seq: u64, at: u64 },
    Reaction { seq: u64, count: u32 },
    Receipt { delivered: u64, read: u64 },
}

fn want<T>(expected: Result<T, &'static str>, accepted: impl FnOnce(T) -> Accepted) -> Want {
    match expected {
        Ok(value) => Want::Ok(accepted(value)),
        Err(name) => Want::Refused(name),
    }
}

fn answered(got: &ReplyBody, want: &Want) -> bool {
    match (got, want) {
        (ReplyBody::Err(e), Want::Refused(name)) => is_refusal(e, name),
        (ReplyBody::Ok(ok), Want::Ok(accepted)) => match (ok, accepted) {
            (OkBody::Empty(_), Accepted::Empty) => true,
            (OkBody::Joined(j), Accepted::Joined { last_seq }) => {
                j.last_seq == *last_seq && j.room.room_id == room_id()
            }
            (OkBody::Sent(s), Accepted::Sent { seq, ts, duplicate }) => {
                (s.seq, s.ts, s.duplicate) == (*seq, *ts, *duplicate)
            }
            (OkBody::Edited(e), Accepted::Edited { seq, at }) => (e.seq, e.edited_at) == (*seq, *at),
            (OkBody::Reaction(r), Accepted::Reaction { seq, count }) => (r.seq, r.count) == (*seq, *count),
            (OkBody::Receipt(r), Accepted::Receipt { delivered, read }) => {
                (r.delivered, r.read) == (*delivered, *read)
            }
            _ => false,
        },
        _ => false,
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
    /// When last edited: edit times strictly increase per message.
    edited_at: Option<u64>,
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
    /// Who reacted with the valid emoji to which message.
    reactions: BTreeSet<(u64, u8)>,
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
// The harness: the shard's part around the real owner.

/// Who asked: a request number.
type Asker = u32;

struct Harness {
    now: u64,
    store: MemoryStore,
    owner: RoomOwner<Asker>,
    fx: Effects<Asker>,
    /// Commits decided and not yet settled, in submission order.
    in_flight: Vec<Commit<Asker>>,
    /// Answers not given yet (sends waiting for their seq), with the step that asked.
    waiting: BTreeMap<Asker, (Want, String)>,
    next_asker: Asker,
    model: Model,
    /// The model as of the last commit: what a restart brings back.
    saved: Model,
}

impl Harness {
    fn new(private: bool) -> Harness {
        let kind = if private { RoomKind::Private } else { RoomKind::Public };
        let mut store = MemoryStore::new();
        for i in 0..USERS {
            store.add_user(&user(i), &format!("user{i}"));
        }
        let mut fx = Effects::default();
        let request = RoomRequest { name: "fuzz".into(), kind, topic: None, settings: None };
        let config = OwnerConfig { room: room_limits(), max_rooms_per_user: 1 };
        let new = NewRoom { id: room_id(), request };
        let owner = RoomOwner::create(START_MS, 0, &user(0), new, config, &store, &mut fx)
            .expect("the owner may create the room");
        let model = Model {
            private,
            members: [(0, Role::Owner)].into(),
            bans: BTreeSet::new(),
            mutes: BTreeMap::new(),
            invites: BTreeSet::new(),
            messages: BTreeMap::new(),
            receipts: BTreeMap::new(),
            reactions: BTreeSet::new(),
            durable_seq: 0,
        };
        let mut h = Harness {
            now: START_MS,
            store,
            owner,
            fx,
            in_flight: Vec::new(),
            waiting: BTreeMap::new(),
            next_asker: 1,
            saved: model.clone(),
            model,
        };
        h.waiting.insert(0, (Want::Ok(Accepted::Empty), "room.create".into()));
        h.commit();
        h.waiting.clear();
        h.fx.answers.clear();
        h
    }

    /// Group commit: every write in flight becomes durable, in order, and the owner
    /// hears of each.
    fn commit(&mut self) {
        self.in_flight.append(&mut self.fx.commits);
        for commit in std::mem::take(&mut self.in_flight) {
            self.store.apply(&commit.writes);
            self.owner.on_committed(commit.settle, Ok(()), &self.store, &mut self.fx);
        }
        assert!(self.fx.commits.is_empty(), "settling decided more writes");
        self.model.durable_seq = self.model.last_seq();
        self.saved = self.model.clone();
    }

    /// The process restarts: what is in flight is lost with the answers waiting on it,
    /// and the room is loaded from the store.
    fn restart(&mut self) {
        self.in_flight.clear();
        self.waiting.clear();
        self.fx = Effects::default();
        let stored = self.store.stored_room(&room_id()).expect("the room is stored");
        self.owner = RoomOwner::load(stored, room_limits(), self.now).expect("the room is not deleted");
        self.model = self.saved.clone();
        let now = self.now;
        self.model.mutes.retain(|_, until| *until > now);
        self.saved = self.model.clone();
    }

    /// Asks the owner, as the shard does with a routed request. `write_through`: the
    /// writes it decides are committed at once (with everything before them).
    fn ask(&mut self, d: &Step, who: u8, op: RoomOp, want: Want, write_through: bool) {
        let asker = self.next_asker;
        self.next_asker += 1;
        self.waiting.insert(asker, (want, d.to_string()));
        self.owner.handle(self.now, asker, &user(who), op, &self.store, &mut self.fx);
        let wrote = !self.fx.commits.is_empty();
        self.in_flight.append(&mut self.fx.commits);
        if write_through && wrote {
            self.commit();
        }
        self.take_answers();
    }

    /// Every answer given so far is the one the model expects for its asker.
    fn take_answers(&mut self) {
        for answer in self.fx.answers.drain(..) {
            let (want, asked) = self
                .waiting
                .remove(&answer.to)
                .unwrap_or_else(|| panic!("an answer nobody waits for: {answer:?}"));
            assert!(answered(&answer.body, &want), "{asked}: answered {:?}, model {want:?}", answer.body);
        }
        // What the driver carries out elsewhere (deliveries, events) is not modelled.
        self.fx = Effects::default();
    }

    fn step(&mut self, op: Op, d: &Step) {
        let now = self.now;
        match op {
            Op::Commit => {
                self.commit();
                self.take_answers();
            }
            Op::Restart => self.restart(),
            Op::Advance { secs } => self.now += u64::from(secs) * 1000,
            Op::Join { user: i } => {
                let i = i % USERS;
                let expected = match self.model.members.get(&i) {
                    Some(_) => Ok(()),
                    None if self.model.bans.contains(&i) => Err("Banned"),
                    None if self.model.private && !self.model.invites.contains(&i) => Err("PrivateRoom"),
                    None => {
                        self.model.invites.remove(&i);
                        self.model.members.insert(i, Role::Member);
                        Ok(())
                    }
                };
                let last_seq = self.model.durable_seq;
                let want = want(expected, |()| Accepted::Joined { last_seq });
                self.ask(d, i, RoomOp::Join { since: None }, want, true);
            }
            Op::Leave { user: i } => {
                let i = i % USERS;
                let expected = match self.model.members.get(&i) {
                    Some(Role::Owner) => Err("OwnerCannotLeave"),
                    Some(_) => {
                        self.model.members.remove(&i);
                        Ok(())
                    }
                    None => Ok(()),
                };
                self.ask(d, i, RoomOp::Leave, want(expected, |()| Accepted::Empty), true);
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
                        return Ok((true, *seq, m.ts));
                    }
                    let message = ModelMessage {
                        sender: i,
                        cid: Some(c),
                        ts: 0,
                        deleted: false,
                        system: false,
                        edited_at: None,
                    };
                    let (seq, ts) = self.model.append(now, message);
                    let receipt = self.model.receipts.entry(i).or_default();
                    *receipt = (receipt.0.max(seq), receipt.1.max(seq));
                    Ok((false, seq, ts))
                })();
                let want = want(expected, |(duplicate, seq, ts)| Accepted::Sent { seq, ts, duplicate });
                let outgoing = Outgoing {
                    cid: cid(c),
                    kind: MessageKind::Text,
                    text: body,
                    client_ts: None,
                    reply_to,
                    file: None,
                    encryption: None,
                    forward: None,
                    also_to_room: false,
                    thread: None,
                };
                // Answered once its seq is durable: at the next commit.
                self.ask(d, i, RoomOp::Send(Box::new(outgoing)), want, false);
            }
            Op::Edit { user: i, seq, text: t } => {
                let (i, seq) = (i % USERS, u64::from(seq));
                let (body, valid) = text(t);
                // The owner reads the original from storage: only durable messages.
                let expected = match self.durable_message(seq) {
                    None => Err("NoSuchMessage"),
                    Some(m) => (|| {
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
                        valid
                    })(),
                };
                let mut at = now;
                if expected.is_ok()
                    && let Some(m) = self.model.messages.get_mut(&seq)
                {
                    at = now.max(m.edited_at.map_or(0, |last| last + 1));
                    m.edited_at = Some(at);
                }
                let want = want(expected, |()| Accepted::Edited { seq, at });
                self.ask(d, i, RoomOp::Edit { seq, text: body }, want, true);
            }
            Op::Delete { user: i, seq } => {
                let (i, seq) = (i % USERS, u64::from(seq));
                let expected = match self.durable_message(seq) {
                    None => Err("NoSuchMessage"),
                    Some(m) => (|| {
                        let role = self.model.role(i)?;
                        if m.system {
                            return Err("SystemMessageStays");
                        }
                        if m.sender != i && role < Role::Moderator {
                            return Err("NotModerator");
                        }
                        Ok(())
                    })(),
                };
                if expected.is_ok()
                    && let Some(m) = self.model.messages.get_mut(&seq)
                {
                    m.deleted = true;
                }
                self.ask(d, i, RoomOp::Delete { seq }, want(expected, |()| Accepted::Empty), true);
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
                    if !valid {
                        return Err("Text");
                    }
                    self.model.reactions.insert((seq, i));
                    Ok(self.model.reactions.iter().filter(|(s, _)| *s == seq).count() as u32)
                })();
                let want = want(expected, |count| Accepted::Reaction { seq, count });
                self.ask(d, i, RoomOp::React { seq, emoji, add: true }, want, true);
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
                    if (dl, r) != (d0, r0) {
                        self.model.receipts.insert(i, (dl, r));
                    }
                    Ok((dl, r))
                })();
                let want = want(expected, |(delivered, read)| Accepted::Receipt { delivered, read });
                self.ask(d, i, RoomOp::Receipt { delivered, read }, want, true);
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
                    self.model.invites.insert(t);
                    Ok(())
                })();
                let want = want(expected, |()| Accepted::Empty);
                self.ask(d, a, RoomOp::Invite { user: user(t) }, want, true);
            }
            Op::Moderate { actor, target, action } => self.moderate(d, actor % USERS, target % USERS, action),
        }
    }

    /// A message the store holds, as the model has it.
    fn durable_message(&self, seq: u64) -> Option<ModelMessage> {
        self.model.messages.get(&seq).filter(|_| seq <= self.model.durable_seq).cloned()
    }

    fn moderate(&mut self, d: &Step, a: u8, t: u8, action: ModAction) {
        let now = self.now;
        let expected = self.model.moderate(now, a, t, action).map(|_| {
            // The notice is answered with its seq once durable.
            let notice =
                ModelMessage { sender: a, cid: None, ts: 0, deleted: false, system: true, edited_at: None };
            self.model.append(now, notice)
        });
        let moderation = match action {
            ModAction::Kick => Moderation::Kick { reason: None },
            ModAction::Ban => Moderation::Ban { reason: None },
            ModAction::Unban => Moderation::Unban,
            ModAction::Mute { secs } => Moderation::Mute { duration_secs: u64::from(secs), reason: None },
            ModAction::Unmute => Moderation::Unmute,
            ModAction::SetRole { role } => Moderation::SetRole(Role::from_byte(role % 4).unwrap_or_default()),
            ModAction::Transfer => Moderation::Transfer,
        };
        let want = want(expected, |(seq, ts)| Accepted::Sent { seq, ts, duplicate: false });
        self.ask(d, a, RoomOp::Moderate { user: user(t), action: moderation }, want, true);
    }

    /// After a step: nothing but sends waits for an answer; the room in memory is the
    /// model's, and the store is the model's as of the last commit.
    fn compare(&self, d: &Step) {
        for (asker, (want, asked)) in &self.waiting {
            assert!(
                matches!(want, Want::Ok(Accepted::Sent { .. })) && asked.contains("Send"),
                "{d}: request {asker} ({asked}) is still unanswered"
            );
        }
        let (room, model) = (self.owner.room(), &self.model);
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
        self.compare_store(d);
    }

    fn compare_store(&self, d: &Step) {
        let saved = &self.saved;
        let stored = self.store.stored_room(&room_id()).expect("the room is stored");
        let index = |u: &UserId| (0..USERS).find(|i| user(*i) == *u).expect("a scripted user");
        let members: BTreeMap<u8, Role> = stored.members.iter().map(|(u, r)| (index(u), *r)).collect();
        assert_eq!(members, saved.members, "{d}: stored members");
        let bans: BTreeSet<u8> = stored.bans.iter().map(index).collect();
        assert_eq!(bans, saved.bans, "{d}: stored bans");
        let invites: BTreeSet<u8> = stored.invites.iter().map(index).collect();
        assert_eq!(invites, saved.invites, "{d}: stored invitations");
        let live = |until: &u64| *until > self.now;
        let mutes: BTreeMap<u8, u64> =
            stored.mutes.iter().filter(|(_, t)| live(t)).map(|(u, t)| (index(u), *t)).collect();
        let saved_mutes: BTreeMap<u8, u64> =
            saved.mutes.iter().filter(|(_, t)| live(t)).map(|(u, t)| (*u, *t)).collect();
        assert_eq!(mutes, saved_mutes, "{d}: stored live mutes");
        let receipts: BTreeMap<u8, (u64, u64)> =
            stored.receipts.iter().map(|(u, dl, r)| (index(u), (*dl, *r))).collect();
        assert_eq!(receipts, saved.receipts, "{d}: stored receipts");
        let messages = self.store.messages(&room_id());
        let got: Vec<_> =
            messages.iter().map(|m| (m.seq, index(&m.sender), m.ts, m.system.is_some(), m.deleted)).collect();
        let want: Vec<_> =
            saved.messages.iter().map(|(seq, m)| (*seq, m.sender, m.ts, m.system, m.deleted)).collect();
        assert_eq!(got, want, "{d}: stored messages (seq, sender, ts, system, deleted)");
        for (seq, i) in &saved.reactions {
            let reacted = self.store.has_reaction(&room_id(), *seq, "👍", &user(*i));
            assert_eq!(reacted, Ok(true), "{d}: reaction of {i} to {seq}");
        }
        for seq in saved.messages.keys() {
            let count = self.store.reaction_count(&room_id(), *seq, "👍").unwrap_or_default();
            let modelled = saved.reactions.iter().filter(|(s, _)| s == seq).count() as u32;
            assert_eq!(count, modelled, "{d}: reactions to {seq}");
        }
    }
}
