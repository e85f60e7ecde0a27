//! The owner's rules, op by op, against an in-memory world: commits are applied (or
//! refused) by hand, so every interleaving a driver can produce is a few lines here.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use palaver_protocol::{
    ClientMsgId, ErrorCode, Event, FileRef, FriendState, MessageKind, OkBody, PresenceStatus, ReplyBody,
    RoomId, RoomKind, UserId,
};

use super::*;
use crate::memory::{MemoryStore, acts};
use crate::records::{FileRecord, RoomRecord, Write};
use crate::route::RoomRequest;

/// Storage and the shared throttles, in maps.
type World = MemoryStore;

fn world_with(names: &[&str]) -> World {
    let mut world = MemoryStore::new();
    for name in names {
        world.add_user(&user(name), name);
    }
    world
}

/// Makes `a` and `b` friends, as the people home would.
fn befriend(world: &mut World, a: &str, b: &str) {
    world.apply(&[
        Write::PutFriend { user: user(a), other: user(b), state: FriendState::Friends, since: 1 },
        Write::PutFriend { user: user(b), other: user(a), state: FriendState::Friends, since: 1 },
    ]);
}

fn block(world: &mut World, who: &str, whom: &str) {
    world.apply(&[Write::PutBlock { user: user(who), blocked: user(whom), since: 1 }]);
}

fn user(name: &str) -> UserId {
    UserId::parse(&format!("u_{name}")).unwrap()
}

fn room_id() -> RoomId {
    RoomId::parse("r_test").unwrap()
}

fn new_room(name: &str) -> NewRoom {
    let request = RoomRequest { name: name.into(), kind: RoomKind::Public, topic: None, settings: None };
    NewRoom { id: room_id(), request }
}

fn direct(caller: &str, peer: &str) -> NewDirect {
    NewDirect { id: room_id(), caller: user(caller), peer: user(peer) }
}

fn config() -> OwnerConfig {
    OwnerConfig { room: RoomLimits::default(), max_rooms_per_user: 10 }
}

/// An asker: a request number.
type Asker = u32;

/// A driver for one owner: runs requests, applies or refuses commits, collects answers.
struct Harness {
    world: World,
    owner: RoomOwner<Asker>,
    fx: Effects<Asker>,
    /// Commits decided and not yet settled, in order.
    pending: Vec<Commit<Asker>>,
    now: u64,
    next: Asker,
}

impl Harness {
    /// A public room owned by `owner`, with `members` joined and everything durable.
    fn public(owner: &str, members: &[&str]) -> Harness {
        Harness::with_kind(RoomKind::Public, owner, members)
    }

    /// A room of `kind` owned by `owner`, with `members` (invited first in a private
    /// room) joined and everything durable.
    fn with_kind(kind: RoomKind, owner: &str, members: &[&str]) -> Harness {
        let mut names = vec![owner];
        names.extend_from_slice(members);
        let world = world_with(&names);
        let mut fx = Effects::default();
        let mut new = new_room("test");
        new.request.kind = kind;
        let created = RoomOwner::create(1_000, 0, &user(owner), new, config(), &world, &mut fx).unwrap();
        let mut h = Harness { world, owner: created, fx, pending: Vec::new(), now: 1_000, next: 1 };
        h.take_commits();
        h.settle_all();
        for member in members {
            if kind == RoomKind::Private {
                h.ok(owner, RoomOp::Invite { user: user(member) });
            }
            h.ok(member, RoomOp::Join { since: None });
        }
        h.fx = Effects::default();
        h
    }

    fn take_commits(&mut self) {
        self.pending.append(&mut self.fx.commits);
    }

    /// Sends a request; returns its asker number.
    fn ask(&mut self, who: &str, op: RoomOp) -> Asker {
        let asker = self.next;
        self.next += 1;
        self.owner.handle(self.now, asker, &user(who), op, &self.world, &mut self.fx);
        self.take_commits();
        asker
    }

    /// The oldest pending commit is durable (or refused).
    fn settle_next(&mut self, durable: bool) {
        let commit = self.pending.remove(0);
        let result = if durable {
            self.world.apply(&commit.writes);
            Ok(())
        } else {
            Err(LookupError::Unavailable)
        };
        self.owner.on_committed(commit.settle, result, &self.world, &mut self.fx);
        self.take_commits();
    }

    fn settle_all(&mut self) {
        while !self.pending.is_empty() {
            self.settle_next(true);
        }
    }

    /// The answer given to `asker`, if any yet.
    fn answer(&mut self, asker: Asker) -> Option<ReplyBody> {
        let at = self.fx.answers.iter().position(|a| a.to == asker)?;
        Some(self.fx.answers.remove(at).body)
    }

    /// Runs a request to its answer, settling what it commits.
    fn run(&mut self, who: &str, op: RoomOp) -> ReplyBody {
        let asker = self.ask(who, op);
        self.settle_all();
        self.answer(asker).expect("an answer")
    }

    fn ok(&mut self, who: &str, op: RoomOp) -> OkBody {
        match self.run(who, op) {
            ReplyBody::Ok(ok) => ok,
            ReplyBody::Err(e) => panic!("refused: {e:?}"),
        }
    }

    fn err(&mut self, who: &str, op: RoomOp) -> ErrorCode {
        match self.run(who, op) {
            ReplyBody::Err(e) => e.code,
            ReplyBody::Ok(ok) => panic!("accepted: {ok:?}"),
        }
    }

    fn say(&mut self, who: &str, cid: &str, text: &str) -> u64 {
        match self.ok(who, send_op(cid, text)) {
            OkBody::Sent(s) => s.seq,
            other => panic!("{other:?}"),
        }
    }
}

fn send_op(cid: &str, text: &str) -> RoomOp {
    RoomOp::Send(Box::new(Outgoing {
        cid: ClientMsgId::parse(cid).unwrap(),
        kind: MessageKind::Text,
        text: text.into(),
        client_ts: None,
        reply_to: None,
        file: None,
        encryption: None,
        forward: None,
        also_to_room: false,
        thread: None,
    }))
}

fn announce_op(cid: &str, text: &str) -> RoomOp {
    let announcing = Announcing { cid: ClientMsgId::parse(cid).unwrap(), text: text.into(), reply_to: None };
    RoomOp::Announce(Box::new(announcing))
}

#[test]
fn an_announcement_is_stored_delivered_and_answered_like_a_send_and_only_the_system_posts_one() {
    let mut h = Harness::public("owner", &["bob"]);
    h.say("bob", "c1", "before");
    let asker = h.ask("system", announce_op("maint-1", "down at 22:00"));
    assert!(h.answer(asker).is_none(), "nothing before durability");
    let retry = h.ask("system", announce_op("maint-1", "down at 22:00"));
    h.settle_all();
    assert!(matches!(h.answer(asker), Some(ReplyBody::Ok(OkBody::Sent(s))) if s.seq == 2 && !s.duplicate));
    assert!(matches!(h.answer(retry), Some(ReplyBody::Ok(OkBody::Sent(s))) if s.seq == 2 && s.duplicate));
    let delivered: Vec<_> = h.fx.deliveries.iter().filter(|m| m.seq == 2).collect();
    assert_eq!(delivered.len(), 1, "delivered once");
    let message = delivered[0];
    assert_eq!((message.kind, message.sender.clone()), (MessageKind::System, UserId::system()));
    assert_eq!(message.system.as_ref().map(|n| n.action), Some(SystemAction::Announcement));
    // Found in storage once durable (no longer pending), and in seq order with members' messages.
    let (world, room) = (&h.world, room_id());
    let stored = world.cid_seq(&room, &UserId::system(), &ClientMsgId::parse("maint-1").unwrap());
    assert_eq!(stored.unwrap().map(|(seq, _)| seq), Some(2));
    assert!(
        matches!(h.ok("system", announce_op("maint-1", "x")), OkBody::Sent(s) if s.seq == 2 && s.duplicate)
    );
    assert_eq!(h.say("bob", "maint-1", "a member's cid is theirs"), 3);
    // Not as a member, whatever the driver is asked; not too long.
    assert_eq!(h.err("owner", announce_op("maint-2", "forged")), ErrorCode::Forbidden);
    let long = "x".repeat(RoomLimits::default().max_text_chars + 1);
    assert_eq!(h.err("system", announce_op("maint-3", &long)), ErrorCode::TooLarge);
    // Members cannot send the system's kind either.
    let mut forged = send_op("c2", "forged");
    if let RoomOp::Send(outgoing) = &mut forged {
        outgoing.kind = MessageKind::System;
    }
    assert_eq!(h.err("bob", forged), ErrorCode::Invalid);
}

#[test]
fn a_send_is_answered_and_delivered_once_durable_and_a_retry_gets_its_seq() {
    let mut h = Harness::public("owner", &["bob"]);
    let asker = h.ask("bob", send_op("c1", "hello"));
    assert!(h.answer(asker).is_none(), "nothing before durability");
    let retry = h.ask("bob", send_op("c1", "hello"));
    assert!(h.answer(retry).is_none(), "a retry racing its first attempt waits for it");
    h.settle_all();
    assert!(matches!(h.answer(asker), Some(ReplyBody::Ok(OkBody::Sent(s))) if s.seq == 1 && !s.duplicate));
    assert!(matches!(h.answer(retry), Some(ReplyBody::Ok(OkBody::Sent(s))) if s.seq == 1 && s.duplicate));
    assert_eq!(h.fx.deliveries.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1]);
    // Later, from storage, and per sender: the owner's same cid is another message.
    assert!(matches!(h.ok("bob", send_op("c1", "again")), OkBody::Sent(s) if s.seq == 1 && s.duplicate));
    assert_eq!(h.say("owner", "c1", "mine"), 2);
}

#[test]
fn a_refused_write_fails_its_waiters_and_the_room_reloads_once_settled() {
    let mut h = Harness::public("owner", &["bob"]);
    let first = h.ask("bob", send_op("a", "one"));
    let second = h.ask("bob", send_op("b", "two"));
    h.settle_next(false);
    assert!(matches!(h.answer(first), Some(ReplyBody::Err(e)) if e.code == ErrorCode::Unavailable));
    assert!(matches!(h.answer(second), Some(ReplyBody::Err(e)) if e.code == ErrorCode::Unavailable));
    assert!(!h.owner.needs_reload(), "a write is still in flight");
    assert_eq!(h.err("bob", send_op("c", "three")), ErrorCode::Unavailable);
    h.settle_all();
    assert!(h.owner.needs_reload());
}

#[test]
fn a_delete_racing_an_edit_stays_a_delete() {
    let mut h = Harness::public("owner", &["bob"]);
    let seq = h.say("bob", "m", "original");
    let delete = h.ask("owner", RoomOp::Delete { seq });
    let edit = h.ask("bob", RoomOp::Edit { seq, text: "edited".into() });
    assert!(matches!(h.answer(edit), Some(ReplyBody::Err(e)) if e.code == ErrorCode::NotFound));
    h.settle_all();
    assert!(matches!(h.answer(delete), Some(ReplyBody::Ok(_))));
    let stored = h.world.message(&room_id(), seq).unwrap().unwrap();
    assert!(stored.deleted && stored.text.is_empty());
}

fn edits_page(h: &mut Harness, who: &str, seq: u64, limit: Option<u32>, cursor: Option<String>) -> EditsOk {
    match h.ok(who, RoomOp::EditList { seq, limit, cursor }) {
        OkBody::Edits(page) => page,
        other => panic!("{other:?}"),
    }
}

#[test]
fn earlier_texts_are_listed_oldest_first_in_pages_to_members() {
    let mut h = Harness::public("owner", &["bob"]);
    h.world.add_user(&user("eve"), "eve");
    let seq = h.say("bob", "m", "first");
    h.ok("bob", RoomOp::Edit { seq, text: "second".into() });
    // Two edits in one millisecond keep both earlier texts.
    h.ok("bob", RoomOp::Edit { seq, text: "third".into() });
    let page = edits_page(&mut h, "owner", seq, Some(1), None);
    assert_eq!(page.versions, vec![EditVersion { text: "first".into(), replaced_at: 1_000 }]);
    assert!(!page.blocked);
    let rest = edits_page(&mut h, "owner", seq, Some(1), page.next);
    assert_eq!(rest.versions, vec![EditVersion { text: "second".into(), replaced_at: 1_001 }]);
    assert_eq!(rest.next, None);
    let all = edits_page(&mut h, "bob", seq, None, None);
    assert_eq!(all.versions.len(), 2);
    assert_eq!(all.next, None);
    let never_edited = h.say("owner", "n", "as sent");
    assert!(edits_page(&mut h, "bob", never_edited, None, None).versions.is_empty());
    // The reader who blocked the sender sees them flagged, as in history.
    block(&mut h.world, "owner", "bob");
    assert!(edits_page(&mut h, "owner", seq, None, None).blocked);

    let list = |limit, cursor| RoomOp::EditList { seq, limit, cursor };
    assert_eq!(h.err("eve", list(None, None)), ErrorCode::Forbidden, "members only, even in a public room");
    assert_eq!(h.err("bob", list(Some(0), None)), ErrorCode::Invalid);
    assert_eq!(h.err("bob", list(Some(101), None)), ErrorCode::Invalid);
    assert_eq!(h.err("bob", list(None, Some("bm90IGEgY3Vyc29y".into()))), ErrorCode::Invalid);
    let unknown = RoomOp::EditList { seq: 99, limit: None, cursor: None };
    assert_eq!(h.err("bob", unknown), ErrorCode::NotFound);
    // A tombstone's earlier texts are gone with it.
    h.ok("bob", RoomOp::Delete { seq });
    assert_eq!(h.err("bob", list(None, None)), ErrorCode::NotFound);
    assert_eq!(h.world.edits(&room_id(), seq, 0, 10).unwrap(), Vec::new());
}

fn pins_page(h: &mut Harness, who: &str, limit: Option<u32>, cursor: Option<String>) -> PinsOk {
    match h.ok(who, RoomOp::PinList { limit, cursor }) {
        OkBody::Pins(page) => page,
        other => panic!("{other:?}"),
    }
}

#[test]
fn pins_are_notices_in_the_log_listed_newest_first_and_survive_a_reload() {
    let mut h = Harness::public("owner", &["bob", "mod"]);
    h.world.add_user(&user("eve"), "eve");
    h.ok("owner", RoomOp::Moderate { user: user("mod"), action: Moderation::SetRole(Role::Moderator) });
    let first = h.say("bob", "a", "read the rules");
    let second = h.say("bob", "b", "meeting at noon");
    let pin = |seq| RoomOp::Pin { seq, on: true };
    assert_eq!(h.err("bob", pin(first)), ErrorCode::Forbidden, "members do not pin by default");
    assert_eq!(h.err("eve", pin(first)), ErrorCode::Forbidden, "nor do outsiders");
    assert_eq!(h.err("mod", pin(99)), ErrorCode::NotFound);
    h.fx = Effects::default();
    let notice = match h.ok("mod", pin(first)) {
        OkBody::Sent(sent) => sent.seq,
        other => panic!("{other:?}"),
    };
    // The pin is a system notice in the room's log, naming the message.
    let delivered = h.fx.deliveries.iter().find(|m| m.seq == notice).unwrap();
    let system = delivered.system.as_deref().unwrap();
    assert_eq!((system.action, system.seq), (SystemAction::Pinned, Some(first)));
    assert_eq!(delivered.text, "mod pinned a message");
    assert_eq!(h.err("owner", pin(first)), ErrorCode::Conflict);
    h.now += 10;
    h.ok("owner", pin(second));

    // Anyone may read a public room's pins, the most recently pinned first, paged.
    let page = pins_page(&mut h, "eve", Some(1), None);
    assert_eq!(page.pins.len(), 1);
    assert_eq!((page.pins[0].message.seq, page.pins[0].pinned_by.clone()), (second, user("owner")));
    assert_eq!(page.pins[0].message.text, "meeting at noon");
    let rest = pins_page(&mut h, "eve", Some(1), page.next);
    assert_eq!(rest.pins.iter().map(|p| p.message.seq).collect::<Vec<_>>(), vec![first]);
    assert_eq!(rest.next, None);
    assert_eq!(h.err("eve", RoomOp::PinList { limit: Some(0), cursor: None }), ErrorCode::Invalid);
    let bad = RoomOp::PinList { limit: None, cursor: Some("bm90IGEgY3Vyc29y".into()) };
    assert_eq!(h.err("eve", bad), ErrorCode::Invalid);
    // A reader who blocked the sender sees the pin flagged.
    block(&mut h.world, "eve", "bob");
    assert!(pins_page(&mut h, "eve", None, None).pins.iter().all(|p| p.message.blocked));

    // Unpin, and a deleted message leaves the pins; both survive a reload.
    let unpin = |seq| RoomOp::Pin { seq, on: false };
    h.ok("mod", unpin(first));
    assert_eq!(h.err("mod", unpin(first)), ErrorCode::Conflict);
    h.ok("owner", pin(first));
    h.ok("bob", RoomOp::Delete { seq: second });
    let stored = h.world.stored_room(&room_id()).unwrap();
    assert_eq!(stored.pins.iter().map(|(seq, ..)| *seq).collect::<Vec<_>>(), vec![first]);
    h.owner = RoomOwner::load(stored, RoomLimits::default(), h.now).unwrap();
    assert_eq!(pins_page(&mut h, "bob", None, None).pins.len(), 1);
    assert_eq!(h.err("owner", pin(second)), ErrorCode::NotFound, "a tombstone is not pinned");
    // Admins may open pinning to members.
    let settings = RoomSettingsPatch { pin_role: Some(Role::Member), ..Default::default() };
    h.ok("owner", RoomOp::Update { name: None, topic: None, settings: Some(settings) });
    h.ok("bob", unpin(first));
}

#[test]
fn pins_in_a_private_room_are_for_members_and_a_blocked_peer_pins_nothing() {
    let mut h = Harness::with_kind(RoomKind::Private, "owner", &["bob"]);
    h.world.add_user(&user("eve"), "eve");
    let seq = h.say("bob", "a", "secret");
    assert_eq!(h.err("eve", RoomOp::PinList { limit: None, cursor: None }), ErrorCode::Forbidden);
    h.ok("owner", RoomOp::Pin { seq, on: true });
    assert_eq!(pins_page(&mut h, "bob", None, None).pins.len(), 1);

    let mut world = world_with(&["ann", "ben"]);
    let mut fx = Effects::default();
    let mut owner =
        RoomOwner::open_direct(1_000, 0, direct("ann", "ben"), config(), &world, &mut fx).unwrap();
    for commit in fx.commits.drain(..).collect::<Vec<_>>() {
        world.apply(&commit.writes);
        owner.on_committed(commit.settle, Ok(()), &world, &mut fx);
    }
    let mut h = Harness { world, owner, fx: Effects::default(), pending: Vec::new(), now: 1_000, next: 1 };
    let seq = h.say("ann", "a", "hi");
    h.ok("ben", RoomOp::Pin { seq, on: true });
    block(&mut h.world, "ann", "ben");
    assert_eq!(h.err("ben", RoomOp::Pin { seq, on: false }), ErrorCode::Forbidden);
    h.ok("ann", RoomOp::Pin { seq, on: false });
}

fn keep_reads_private(world: &mut World, who: &str) {
    let profile = crate::records::ProfileRecord { hide_read_receipts: true, ..Default::default() };
    world.apply(&[Write::PutProfile { user: user(who), profile }]);
}

fn receipts_page(
    h: &mut Harness,
    who: &str,
    seq: u64,
    delivered: bool,
    cursor: Option<String>,
) -> ReceiptListOk {
    match h.ok(who, RoomOp::ReceiptList { seq, delivered, limit: Some(2), cursor }) {
        OkBody::ReceiptList(page) => page,
        other => panic!("{other:?}"),
    }
}

#[test]
fn readers_come_from_watermarks_for_members_without_the_private_or_those_who_blocked() {
    let mut h = Harness::public("owner", &["ann", "bob", "cat", "dan"]);
    h.world.add_user(&user("eve"), "eve");
    let seq = h.say("owner", "m", "did you all read this?");
    for (who, delivered, read) in [("ann", 1, 1), ("bob", 1, 0), ("cat", 1, 1), ("dan", 1, 1)] {
        h.ok(who, RoomOp::Receipt { delivered: Some(delivered), read: Some(read) });
    }
    keep_reads_private(&mut h.world, "cat");
    block(&mut h.world, "dan", "owner");
    // The sender, a private reader and a member who blocked the asker are left out.
    let page = receipts_page(&mut h, "owner", seq, false, None);
    let readers: Vec<(UserId, Option<u64>)> =
        page.receipts.iter().map(|r| (r.user.clone(), r.read)).collect();
    assert_eq!(readers, vec![(user("ann"), Some(1))]);
    assert_eq!(page.next, None, "skipped members do not fill the page");
    // Deliveries list the private reader without their read mark.
    let delivered = receipts_page(&mut h, "ann", seq, true, None);
    let listed: Vec<(UserId, Option<u64>)> =
        delivered.receipts.iter().map(|r| (r.user.clone(), r.read)).collect();
    assert_eq!(listed, vec![(user("ann"), Some(1)), (user("bob"), Some(0))]);
    let more = receipts_page(&mut h, "ann", seq, true, delivered.next);
    let listed: Vec<(UserId, Option<u64>)> = more.receipts.iter().map(|r| (r.user.clone(), r.read)).collect();
    assert_eq!(listed, vec![(user("cat"), None), (user("dan"), Some(1))]);
    assert_eq!(more.next, None);

    // Refusals.
    let list = |seq, cursor| RoomOp::ReceiptList { seq, delivered: false, limit: None, cursor };
    assert_eq!(h.err("eve", list(seq, None)), ErrorCode::Forbidden, "members only");
    assert_eq!(h.err("ann", list(9, None)), ErrorCode::NotFound);
    assert_eq!(h.err("ann", list(seq, Some("bm90IGEgY3Vyc29y".into()))), ErrorCode::Invalid);

    // room.members shows members' read marks to members, not the private ones'.
    let OkBody::Members(page) = h.ok("ann", RoomOp::Members { limit: None, cursor: None }) else { panic!() };
    let read_of = |name: &str| page.members.iter().find(|m| m.user == user(name)).unwrap().read;
    assert_eq!((read_of("ann"), read_of("bob"), read_of("cat")), (Some(1), Some(0), None));
    let OkBody::Members(page) = h.ok("eve", RoomOp::Members { limit: None, cursor: None }) else { panic!() };
    assert!(page.members.iter().all(|m| m.read.is_none()), "not to outsiders");

    // A private reader's moved watermark is not announced; others' are.
    h.say("owner", "n", "and this?");
    h.owner.tick(h.now, &mut h.fx);
    h.fx = Effects::default();
    h.ok("cat", RoomOp::Receipt { delivered: None, read: Some(2) });
    h.ok("ann", RoomOp::Receipt { delivered: None, read: Some(2) });
    h.owner.tick(h.now, &mut h.fx);
    let announced: Vec<UserId> =
        h.fx.announcements
            .iter()
            .filter_map(|a| match &a.event {
                Event::Receipt(r) => Some(r.user.clone()),
                _ => None,
            })
            .collect();
    assert_eq!(announced, vec![user("ann")]);
}

fn forward_op(cid: &str, from_room: &RoomId, seq: u64, text: &str) -> RoomOp {
    let op = palaver_protocol::Op::Forward {
        room: room_id(),
        cid: ClientMsgId::parse(cid).unwrap(),
        from_room: from_room.clone(),
        seq,
        text: text.into(),
    };
    match crate::route::route(op) {
        crate::route::Route::Room(_, op) => op,
        other => panic!("{other:?}"),
    }
}

/// A private room `r_other` of `owner` holding one message of theirs and one notice.
fn other_private_room(world: &mut World) -> RoomId {
    let other = RoomId::parse("r_other").unwrap();
    let mut original = world.message(&room_id(), 1).unwrap().unwrap();
    original.room = other.clone();
    original.seq = 1;
    original.sender = user("owner");
    original.text = "secret plan".into();
    let mut notice = original.clone();
    notice.seq = 2;
    notice.kind = MessageKind::System;
    world.apply(&[
        Write::PutRoom(RoomRecord {
            room_id: other.clone(),
            name: "other".into(),
            kind: RoomKind::Private,
            owner: user("owner"),
            created_ms: 1,
            topic: String::new(),
            settings: None,
            deleted: false,
        }),
        Write::PutMember { room: other.clone(), user: user("owner"), role: Role::Owner },
        Write::AppendMessage(original),
        Write::AppendMessage(notice),
    ]);
    other
}

#[test]
fn a_forward_refers_to_a_readable_original_whose_content_only_its_readers_see() {
    let mut h = Harness::public("owner", &["bob"]);
    let hello = h.say("bob", "h", "hello");
    let other = other_private_room(&mut h.world);
    // Within the room, with an empty comment; from a private room its member reads.
    let same = match h.ok("bob", forward_op("f1", &room_id(), hello, "")) {
        OkBody::Sent(sent) => sent.seq,
        other => panic!("{other:?}"),
    };
    let across = match h.ok("owner", forward_op("f2", &other, 1, "look")) {
        OkBody::Sent(sent) => sent.seq,
        other => panic!("{other:?}"),
    };
    let stored = h.world.message(&room_id(), across).unwrap().unwrap();
    let reference = stored.forward.as_deref().unwrap();
    assert_eq!((&reference.room, reference.seq, reference.source.is_none()), (&other, 1, true));
    assert_eq!(stored.text, "look");
    // The live message carries the reference, never the content.
    assert!(h.fx.deliveries.iter().filter_map(|m| m.forward.as_deref()).all(|f| f.source.is_none()));

    // Refusals: a room the forwarder may not read, unknown rooms and messages, notices.
    assert_eq!(h.err("bob", forward_op("f3", &other, 1, "")), ErrorCode::Forbidden);
    let nowhere = RoomId::parse("r_nowhere").unwrap();
    assert_eq!(h.err("owner", forward_op("f4", &nowhere, 1, "")), ErrorCode::NotFound);
    assert_eq!(h.err("owner", forward_op("f5", &other, 9, "")), ErrorCode::NotFound);
    assert_eq!(h.err("owner", forward_op("f6", &other, 2, "")), ErrorCode::Invalid);
    assert_eq!(h.err("bob", forward_op("f7", &room_id(), 99, "")), ErrorCode::NotFound);

    // History shows the original to readers of its room only.
    let source_of = |h: &mut Harness, who: &str, seq: u64| {
        let request = HistoryRequest { after: Some(0), limit: Some(100), ..HistoryRequest::default() };
        let OkBody::History(page) = h.ok(who, RoomOp::History(request)) else { panic!() };
        let message = page.messages.into_iter().find(|m| m.seq == seq).unwrap();
        message.forward.and_then(|f| f.source)
    };
    assert_eq!(source_of(&mut h, "owner", across).unwrap().text, "secret plan");
    assert_eq!(source_of(&mut h, "bob", across), None);
    assert_eq!(source_of(&mut h, "bob", same).unwrap().text, "hello");
    // A deleted original shows as deleted.
    h.ok("bob", RoomOp::Delete { seq: hello });
    assert!(source_of(&mut h, "owner", same).unwrap().deleted);
    // The comment is edited like any text, and may stay empty.
    h.ok("bob", RoomOp::Edit { seq: same, text: String::new() });
}

/// The users a pending commit indexes as mentioned by the whole room.
fn room_wide_mentions(h: &Harness) -> Option<std::collections::BTreeSet<UserId>> {
    h.pending.iter().flat_map(|c| &c.writes).find_map(|w| match w {
        Write::PutMentions { users, .. } => Some(users.iter().cloned().collect()),
        _ => None,
    })
}

#[test]
fn everyone_and_here_mention_the_room_for_its_role_and_skip_who_blocked_the_sender() {
    let mut h = Harness::public("owner", &["mod", "bob", "cat"]);
    h.ok("owner", RoomOp::Moderate { user: user("mod"), action: Moderation::SetRole(Role::Moderator) });
    for online in ["owner", "bob"] {
        h.world.set_online(&user(online), true);
    }
    block(&mut h.world, "cat", "mod");
    let set = |names: &[&str]| names.iter().map(|n| user(n)).collect::<std::collections::BTreeSet<_>>();

    // A member below the room's role: plain text, nobody indexed.
    h.ask("bob", send_op("b", "@everyone hello?"));
    assert_eq!(room_wide_mentions(&h), None);
    h.settle_all();
    assert_eq!(h.world.message(&room_id(), h.world.last_seq(&room_id())).unwrap().unwrap().mention_all, None);
    // A moderator's @here reaches the members online; @everyone every member, but not
    // one who blocked the sender.
    h.ask("mod", send_op("h", "@here standup"));
    assert_eq!(room_wide_mentions(&h), Some(set(&["owner", "bob"])));
    h.settle_all();
    let everyone = h.ask("mod", send_op("e", "@everyone release at noon"));
    assert_eq!(room_wide_mentions(&h), Some(set(&["owner", "bob"])), "cat blocked mod; mod is the sender");
    h.settle_all();
    let seq = match h.answer(everyone) {
        Some(ReplyBody::Ok(OkBody::Sent(sent))) => sent.seq,
        other => panic!("{other:?}"),
    };
    let stored = h.world.message(&room_id(), seq).unwrap().unwrap();
    assert_eq!(stored.mention_all, Some(palaver_protocol::MentionAll::Everyone));
    // Deleting it drops every member's index entry.
    h.ask("mod", RoomOp::Delete { seq });
    let removed = h.pending.iter().flat_map(|c| &c.writes).find_map(|w| match w {
        Write::RemoveMentions { users, .. } => {
            Some(users.iter().cloned().collect::<std::collections::BTreeSet<_>>())
        }
        _ => None,
    });
    assert_eq!(removed, Some(set(&["owner", "mod", "bob", "cat"])));
    h.settle_all();
    // The room may open it to members.
    let settings = RoomSettingsPatch { mention_all_role: Some(Role::Member), ..Default::default() };
    h.ok("owner", RoomOp::Update { name: None, topic: None, settings: Some(settings) });
    h.ask("cat", send_op("c", "@everyone hi"));
    assert_eq!(room_wide_mentions(&h), Some(set(&["owner", "mod", "bob"])));
    h.settle_all();
}

#[test]
fn a_reaction_in_flight_counts_as_made() {
    let mut h = Harness::public("owner", &["bob"]);
    let seq = h.say("bob", "m", "react to me");
    let react = |add| RoomOp::React { seq, emoji: "👍".into(), add };
    let first = h.ask("owner", react(true));
    let again = h.ask("owner", react(true));
    assert!(
        matches!(h.answer(again), Some(ReplyBody::Ok(OkBody::Reaction(r))) if r.count == 0),
        "no second write"
    );
    assert_eq!(h.pending.len(), 1);
    h.settle_all();
    assert!(matches!(h.answer(first), Some(ReplyBody::Ok(OkBody::Reaction(r))) if r.count == 1));
    assert!(
        h.fx.announcements.iter().any(|a| matches!(&a.event, Event::Reaction(r) if r.added && r.count == 1))
    );
}

#[test]
fn muted_means_no_new_content() {
    let mut h = Harness::public("owner", &["bob"]);
    let seq = h.say("bob", "m", "before");
    h.ok(
        "owner",
        RoomOp::Moderate { user: user("bob"), action: Moderation::Mute { duration_secs: 60, reason: None } },
    );
    assert_eq!(h.err("bob", send_op("n", "hi")), ErrorCode::Forbidden);
    assert_eq!(h.err("bob", RoomOp::Edit { seq, text: "x".into() }), ErrorCode::Forbidden);
    assert_eq!(h.err("bob", RoomOp::React { seq, emoji: "👍".into(), add: true }), ErrorCode::Forbidden);
    assert_eq!(h.err("bob", RoomOp::Typing { active: true }), ErrorCode::Forbidden);
    assert!(matches!(h.run("bob", RoomOp::Typing { active: false }), ReplyBody::Ok(_)));
}

#[test]
fn a_ban_ends_the_members_subscriptions_after_its_notice_is_durable() {
    let mut h = Harness::public("owner", &["bob"]);
    let asker =
        h.ask("owner", RoomOp::Moderate { user: user("bob"), action: Moderation::Ban { reason: None } });
    assert!(h.fx.endings.is_empty(), "not before the notice is durable");
    h.settle_all();
    assert!(matches!(h.answer(asker), Some(ReplyBody::Ok(OkBody::Sent(_)))));
    assert_eq!(h.fx.endings, vec![Ending::Member(user("bob"))]);
    let notice = h.fx.deliveries.last().unwrap().clone();
    assert_eq!((notice.kind, notice.text.as_str()), (MessageKind::System, "owner banned bob"));
    assert_eq!(h.err("bob", RoomOp::Join { since: None }), ErrorCode::Forbidden);
    // The record of it stays.
    assert_eq!(h.err("owner", RoomOp::Delete { seq: notice.seq }), ErrorCode::Forbidden);
}

#[test]
fn invitations_to_strangers_are_throttled_and_capped_per_recipient() {
    let mut h = Harness::public("owner", &[]);
    for name in ["friend", "stranger", "popular"] {
        h.world.add_user(&user(name), name);
    }
    befriend(&mut h.world, "owner", "friend");
    h.world.allow(acts::STRANGER_INVITE, 0);
    let invite = |who: &str| RoomOp::Invite { user: user(who) };
    assert!(matches!(h.ok("owner", invite("friend")), OkBody::Empty(_)));
    assert_eq!(h.fx.notices.len(), 1, "the invitee is told once it is durable");
    assert_eq!(h.err("owner", invite("stranger")), ErrorCode::RateLimited);
    for i in 0..limits::MAX_PENDING_INVITES {
        let room = RoomId::parse(&format!("r_other{i}")).unwrap();
        let record = ActionRecord { by: user("owner"), at: 1, reason: None };
        h.world.apply(&[Write::PutInvite { room, user: user("popular"), record }]);
    }
    befriend(&mut h.world, "owner", "popular");
    assert_eq!(h.err("owner", invite("popular")), ErrorCode::Forbidden);
    assert!(!h.owner.room().is_invited(&user("popular")), "a refused invitation leaves no trace");
}

#[test]
fn a_deleted_messages_file_goes_only_once_the_delete_is_durable() {
    let mut h = Harness::public("owner", &[]);
    let file = FileRecord {
        file_id: "f_cat".into(),
        room: room_id(),
        uploader: user("owner"),
        size: 10,
        content_type: "image/png".into(),
        name: "cat.png".into(),
        width: Some(1),
        height: Some(1),
        created_ms: 1,
        shared_in: None,
    };
    h.world.apply(&[Write::PutFile(file)]);
    let share = |cid: &str| {
        RoomOp::Send(Box::new(Outgoing {
            cid: ClientMsgId::parse(cid).unwrap(),
            kind: MessageKind::Image,
            text: String::new(),
            client_ts: None,
            reply_to: None,
            file: Some(Box::new(FileRef {
                file_id: "f_cat".into(),
                name: String::new(),
                size: 0,
                content_type: String::new(),
                width: None,
                height: None,
            })),
            encryption: None,
            forward: None,
            also_to_room: false,
            thread: None,
        }))
    };
    let first = h.ask("owner", share("i1"));
    assert!(
        matches!(h.run("owner", share("i2")), ReplyBody::Err(e) if e.code == ErrorCode::Conflict),
        "while in flight"
    );
    h.settle_all();
    let Some(ReplyBody::Ok(OkBody::Sent(sent))) = h.answer(first) else { panic!() };
    assert_eq!(h.err("owner", share("i2")), ErrorCode::Conflict, "once durable");
    let delete = h.ask("owner", RoomOp::Delete { seq: sent.seq });
    assert!(h.fx.deleted_files.is_empty());
    h.settle_all();
    assert!(matches!(h.answer(delete), Some(ReplyBody::Ok(_))));
    assert_eq!(h.fx.deleted_files, vec!["f_cat".to_owned()]);
    assert_eq!(h.world.file("f_cat").unwrap(), None);
}

#[test]
fn history_pages_forwards_and_flags_blocked_senders() {
    let mut h = Harness::public("owner", &["bob"]);
    for i in 1..=5 {
        h.say("bob", &format!("c{i}"), &format!("m{i}"));
    }
    block(&mut h.world, "owner", "bob");
    let page = |h: &mut Harness, request| match h.ok("owner", RoomOp::History(request)) {
        OkBody::History(page) => page,
        other => panic!("{other:?}"),
    };
    let first = page(&mut h, HistoryRequest { after: Some(0), limit: Some(2), ..HistoryRequest::default() });
    assert_eq!(first.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2]);
    assert!(first.messages.iter().all(|m| m.blocked));
    let rest =
        page(&mut h, HistoryRequest { cursor: first.next, limit: Some(10), ..HistoryRequest::default() });
    assert_eq!(rest.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![3, 4, 5]);
    assert!(rest.next.is_none());
}

#[test]
fn members_who_blocked_the_asker_show_offline() {
    let mut h = Harness::public("owner", &["bob"]);
    h.world.set_online(&user("bob"), true);
    block(&mut h.world, "bob", "owner");
    let OkBody::Members(page) = h.ok("owner", RoomOp::Members { limit: None, cursor: None }) else {
        panic!()
    };
    let bob = page.members.iter().find(|m| m.user == user("bob")).unwrap();
    assert_eq!(bob.presence, PresenceStatus::Offline);
}

#[test]
fn a_deleted_room_ends_every_subscription_and_is_forgotten() {
    let mut h = Harness::public("owner", &["bob"]);
    let asker = h.ask("owner", RoomOp::DeleteRoom);
    assert_eq!(h.err("bob", send_op("x", "anyone?")), ErrorCode::NotFound);
    h.settle_all();
    assert!(matches!(h.answer(asker), Some(ReplyBody::Ok(_))));
    assert!(h.fx.forget);
    assert!(h.fx.endings.contains(&Ending::Room));
    assert!(h.world.room_record(&room_id()).unwrap().unwrap().deleted);
}

#[test]
fn a_server_admin_deletes_a_room_whatever_their_role_in_it() {
    let mut h = Harness::public("owner", &["bob"]);
    assert_eq!(h.err("bob", RoomOp::DeleteRoom), ErrorCode::Forbidden);
    let asker = h.ask("bob", RoomOp::DeleteRoomByAdmin);
    h.settle_all();
    assert!(matches!(h.answer(asker), Some(ReplyBody::Ok(_))));
    assert!(h.fx.endings.contains(&Ending::Room));
    assert!(h.world.room_record(&room_id()).unwrap().unwrap().deleted);
}

#[test]
fn room_creation_is_throttled_and_owned_rooms_capped() {
    let world = world_with(&["maker"]);
    let mut fx = Effects::default();
    let create = |world: &World, fx: &mut Effects<Asker>| {
        RoomOwner::create(0, 1, &user("maker"), new_room("r"), config(), world, fx)
    };
    world.allow(acts::ROOM_CREATION, 0);
    assert!(create(&world, &mut fx).is_none());
    assert!(matches!(&fx.answers[0].body, ReplyBody::Err(e) if e.code == ErrorCode::RateLimited));
    let mut world = world_with(&["maker"]);
    for i in 0..10 {
        let room = RoomId::parse(&format!("r_owned{i}")).unwrap();
        let record = RoomRecord {
            room_id: room.clone(),
            name: "mine".into(),
            kind: RoomKind::Public,
            owner: user("maker"),
            created_ms: 1,
            topic: String::new(),
            settings: None,
            deleted: false,
        };
        world.apply(&[
            Write::PutRoom(record),
            Write::PutMember { room, user: user("maker"), role: Role::Owner },
        ]);
    }
    let mut fx = Effects::default();
    assert!(create(&world, &mut fx).is_none());
    assert!(matches!(&fx.answers[0].body, ReplyBody::Err(e) if e.code == ErrorCode::Forbidden));
}

#[test]
fn a_direct_room_takes_back_the_one_who_left_and_new_ones_with_strangers_are_throttled() {
    let mut world = world_with(&["ann", "ben", "cat"]);
    world.allow(acts::STRANGER_DIRECT_ROOM, 1);
    let mut fx = Effects::default();
    let mut owner = RoomOwner::open_direct(0, 1, direct("ann", "ben"), config(), &world, &mut fx).unwrap();
    let refused = RoomOwner::<Asker>::open_direct(0, 2, direct("ann", "cat"), config(), &world, &mut fx);
    assert!(refused.is_none());
    assert!(
        matches!(&fx.answers.last().unwrap().body, ReplyBody::Err(e) if e.code == ErrorCode::RateLimited)
    );
    for commit in fx.commits.drain(..).collect::<Vec<_>>() {
        world.apply(&commit.writes);
        owner.on_committed(commit.settle, Ok(()), &world, &mut fx);
    }
    let mut fx = Effects::default();
    owner.handle(1, 3, &user("ben"), RoomOp::Leave, &world, &mut fx);
    for commit in fx.commits.drain(..).collect::<Vec<_>>() {
        owner.on_committed(commit.settle, Ok(()), &world, &mut fx);
    }
    owner.handle(2, 4, &user("ben"), RoomOp::Join { since: None }, &world, &mut fx);
    assert!(matches!(&fx.answers.last().unwrap().body, ReplyBody::Err(e) if e.code == ErrorCode::Forbidden));
    owner.handle(3, 5, &user("ben"), RoomOp::OpenDirect, &world, &mut fx);
    assert_eq!(fx.commits.len(), 1, "ben is a member again once it is durable");
    assert!(owner.room().role_of(&user("ben")).is_some());
}

#[test]
fn an_idle_room_may_leave_memory_only_when_nothing_ties_it() {
    let mut h = Harness::public("owner", &["bob"]);
    assert!(!h.owner.is_idle(h.now + 5, 10), "used moments ago");
    assert!(h.owner.is_idle(h.now + 10, 10));
    h.owner.add_site(0);
    assert!(!h.owner.is_idle(h.now + 10, 10), "a site has subscribers");
    h.owner.remove_site(0);
    let _ = h.ask("bob", send_op("x", "in flight"));
    assert!(!h.owner.is_idle(h.now + 10, 10), "a write is in flight");
    h.settle_all();
    assert!(h.owner.is_idle(h.now + 10, 10));
}

fn moderate(target: &str, action: Moderation) -> RoomOp {
    RoomOp::Moderate { user: user(target), action }
}

#[test]
fn a_created_room_is_answered_once_its_records_are_durable() {
    let mut world = world_with(&["maker"]);
    let mut fx = Effects::default();
    let owner = RoomOwner::create(5, 1, &user("maker"), new_room("mine"), config(), &world, &mut fx).unwrap();
    assert!(fx.answers.is_empty(), "not before it is durable");
    assert_eq!(owner.room().role_of(&user("maker")), Some(Role::Owner));
    let mut owner = owner;
    for commit in std::mem::take(&mut fx.commits) {
        world.apply(&commit.writes);
        owner.on_committed(commit.settle, Ok(()), &world, &mut fx);
    }
    assert!(matches!(&fx.answers[0].body, ReplyBody::Ok(OkBody::Room(r)) if r.room.name == "mine"));
    assert_eq!(world.members(&room_id()).get(&user("maker")), Some(&Role::Owner));
    // A name the rules refuse creates nothing.
    let mut fx = Effects::default();
    assert!(
        RoomOwner::<Asker>::create(5, 2, &user("maker"), new_room(""), config(), &world, &mut fx).is_none()
    );
    assert!(matches!(&fx.answers[0].body, ReplyBody::Err(e) if e.code == ErrorCode::Invalid));
}

#[test]
fn joining_a_public_room_makes_a_member_and_a_private_one_needs_an_invitation() {
    let mut h = Harness::public("owner", &[]);
    h.world.add_user(&user("bob"), "bob");
    let asker = h.ask("bob", RoomOp::Join { since: None });
    h.settle_all();
    let joined = h.fx.answers.iter().find(|a| a.to == asker).unwrap();
    assert!(matches!(&joined.subscription, Subscription::Joined(Some(s)) if s.room == room_id()));
    assert_eq!(h.world.members(&room_id()).get(&user("bob")), Some(&Role::Member));
    let mut private = Harness::with_kind(RoomKind::Private, "owner", &[]);
    private.world.add_user(&user("eve"), "eve");
    assert_eq!(private.err("eve", RoomOp::Join { since: None }), ErrorCode::Forbidden);
    private.ok("owner", RoomOp::Invite { user: user("eve") });
    // `invite.accept` is a join that uses the invitation.
    assert!(matches!(private.ok("eve", RoomOp::Join { since: None }), OkBody::Joined(_)));
    assert!(!private.owner.room().is_invited(&user("eve")));
}

#[test]
fn leaving_ends_the_members_subscriptions_but_the_owner_must_hand_over_first() {
    let mut h = Harness::public("owner", &["bob"]);
    let asker = h.ask("bob", RoomOp::Leave);
    assert_eq!(h.fx.endings, vec![Ending::Member(user("bob"))]);
    h.settle_all();
    let left = h.fx.answers.iter().find(|a| a.to == asker).unwrap();
    assert_eq!(left.subscription, Subscription::Left);
    assert!(!h.world.members(&room_id()).contains_key(&user("bob")));
    assert_eq!(h.err("owner", RoomOp::Leave), ErrorCode::Conflict);
}

#[test]
fn an_edit_replaces_the_text_once_durable_and_only_the_sender_may_edit() {
    let mut h = Harness::public("owner", &["bob"]);
    let seq = h.say("bob", "m", "first");
    assert!(
        matches!(h.ok("bob", RoomOp::Edit { seq, text: "second".into() }), OkBody::Edited(e) if e.seq == seq)
    );
    assert!(h.fx.announcements.iter().any(|a| matches!(&a.event, Event::Edit(e) if e.text == "second")));
    assert_eq!(h.world.message(&room_id(), seq).unwrap().unwrap().text, "second");
    assert_eq!(h.err("owner", RoomOp::Edit { seq, text: "mine now".into() }), ErrorCode::Forbidden);
    assert_eq!(h.err("bob", RoomOp::Edit { seq: 99, text: "x".into() }), ErrorCode::NotFound);
}

#[test]
fn a_member_deletes_their_own_message_and_only_a_moderator_anothers() {
    let mut h = Harness::public("owner", &["bob", "cat"]);
    let seq = h.say("bob", "m", "mine");
    assert_eq!(h.err("cat", RoomOp::Delete { seq }), ErrorCode::Forbidden);
    assert!(matches!(h.ok("bob", RoomOp::Delete { seq }), OkBody::Empty(_)));
    assert!(h.world.message(&room_id(), seq).unwrap().unwrap().deleted);
    // Deleting a tombstone again changes nothing.
    assert!(matches!(h.ok("owner", RoomOp::Delete { seq }), OkBody::Empty(_)));
}

#[test]
fn a_reaction_is_removed_once_and_only_by_a_member() {
    let mut h = Harness::public("owner", &["bob"]);
    h.world.add_user(&user("eve"), "eve");
    let seq = h.say("bob", "m", "react to me");
    let react = |add| RoomOp::React { seq, emoji: "👍".into(), add };
    h.ok("owner", react(true));
    assert!(matches!(h.ok("owner", react(false)), OkBody::Reaction(r) if r.count == 0));
    assert!(
        h.fx.announcements.iter().any(|a| matches!(&a.event, Event::Reaction(r) if !r.added && r.count == 0))
    );
    assert!(!h.world.has_reaction(&room_id(), seq, "👍", &user("owner")).unwrap());
    assert_eq!(h.err("eve", react(false)), ErrorCode::Forbidden);
    assert_eq!(h.err("bob", RoomOp::React { seq, emoji: String::new(), add: true }), ErrorCode::Invalid);
}

#[test]
fn typing_is_announced_to_everyone_but_the_typist_and_only_for_members() {
    let mut h = Harness::public("owner", &["bob"]);
    h.world.add_user(&user("eve"), "eve");
    assert!(matches!(h.ok("bob", RoomOp::Typing { active: true }), OkBody::Empty(_)));
    let typing = h.fx.announcements.last().unwrap();
    assert!(matches!(&typing.event, Event::Typing(t) if t.active && t.user == user("bob")));
    assert_eq!(typing.skip, Some(user("bob")));
    assert_eq!(h.err("eve", RoomOp::Typing { active: true }), ErrorCode::Forbidden);
    assert_eq!(h.err("eve", RoomOp::Typing { active: false }), ErrorCode::Forbidden);
}

#[test]
fn receipts_move_up_to_the_durable_seq_and_need_membership_and_a_watermark() {
    let mut h = Harness::public("owner", &["bob"]);
    h.world.add_user(&user("eve"), "eve");
    h.say("owner", "m", "read me");
    let receipt = |delivered, read| RoomOp::Receipt { delivered, read };
    assert!(
        matches!(h.ok("bob", receipt(None, Some(9))), OkBody::Receipt(r) if (r.delivered, r.read) == (1, 1))
    );
    assert_eq!(
        h.world
            .stored_room(&room_id())
            .unwrap()
            .receipts
            .iter()
            .find(|r| r.0 == user("bob"))
            .map(|r| (r.1, r.2)),
        Some((1, 1))
    );
    assert_eq!(h.err("bob", receipt(None, None)), ErrorCode::Invalid);
    assert_eq!(h.err("eve", receipt(Some(1), None)), ErrorCode::Forbidden);
}

#[test]
fn a_private_rooms_details_members_and_history_are_for_members_and_invitees() {
    let mut h = Harness::with_kind(RoomKind::Private, "owner", &["bob"]);
    h.world.add_user(&user("eve"), "eve");
    h.say("bob", "m", "hello");
    assert!(matches!(h.ok("bob", RoomOp::Get), OkBody::RoomDetails(d) if d.member_count == 2));
    assert!(
        matches!(h.ok("bob", RoomOp::Members { limit: None, cursor: None }), OkBody::Members(m) if m.members.len() == 2)
    );
    assert_eq!(h.err("eve", RoomOp::Get), ErrorCode::Forbidden);
    assert_eq!(h.err("eve", RoomOp::Members { limit: None, cursor: None }), ErrorCode::Forbidden);
    assert_eq!(h.err("eve", RoomOp::History(HistoryRequest::default())), ErrorCode::Forbidden);
    let both = HistoryRequest { before: Some(2), after: Some(0), ..HistoryRequest::default() };
    assert_eq!(h.err("bob", RoomOp::History(both)), ErrorCode::Invalid);
    let bad_cursor = RoomOp::Members { limit: None, cursor: Some("not a cursor".into()) };
    assert_eq!(h.err("bob", bad_cursor), ErrorCode::Invalid);
}

#[test]
fn an_update_is_an_admins_and_stored_with_its_notice() {
    let mut h = Harness::public("owner", &["bob"]);
    let update = |topic: &str| RoomOp::Update { name: None, topic: Some(topic.into()), settings: None };
    assert!(matches!(h.ok("owner", update("news")), OkBody::RoomDetails(d) if d.room.topic == "news"));
    assert_eq!(h.world.room_record(&room_id()).unwrap().unwrap().topic, "news");
    assert!(h.fx.deliveries.last().is_some_and(|m| m.kind == MessageKind::System));
    assert_eq!(h.err("bob", update("mine")), ErrorCode::Forbidden);
    assert_eq!(h.owner.room().topic(), "news", "a refused update changes nothing");
}

#[test]
fn only_the_owner_deletes_the_room() {
    let mut h = Harness::public("owner", &["bob"]);
    assert_eq!(h.err("bob", RoomOp::DeleteRoom), ErrorCode::Forbidden);
    assert!(!h.world.room_record(&room_id()).unwrap().unwrap().deleted);
}

#[test]
fn an_invitation_is_declined_once() {
    let mut h = Harness::with_kind(RoomKind::Private, "owner", &[]);
    h.world.add_user(&user("eve"), "eve");
    h.ok("owner", RoomOp::Invite { user: user("eve") });
    assert!(matches!(h.ok("eve", RoomOp::Decline), OkBody::Empty(_)));
    assert!(h.world.stored_room(&room_id()).unwrap().invites.is_empty());
    assert_eq!(h.err("eve", RoomOp::Decline), ErrorCode::Conflict);
    assert_eq!(h.err("eve", RoomOp::Join { since: None }), ErrorCode::Forbidden);
}

#[test]
fn a_kick_removes_a_member_below_the_kicker() {
    let mut h = Harness::public("owner", &["bob", "cat"]);
    assert_eq!(h.err("bob", moderate("cat", Moderation::Kick { reason: None })), ErrorCode::Forbidden);
    assert!(matches!(h.ok("owner", moderate("bob", Moderation::Kick { reason: None })), OkBody::Sent(_)));
    assert_eq!(h.fx.endings, vec![Ending::Member(user("bob"))]);
    assert!(!h.world.members(&room_id()).contains_key(&user("bob")));
    assert_eq!(h.err("owner", moderate("bob", Moderation::Kick { reason: None })), ErrorCode::NotFound);
    // A kicked member may come back (unlike a banned one).
    assert!(matches!(h.ok("bob", RoomOp::Join { since: None }), OkBody::Joined(_)));
}

#[test]
fn a_ban_is_lifted_by_unban_once() {
    let mut h = Harness::public("owner", &["bob"]);
    h.ok("owner", moderate("bob", Moderation::Ban { reason: None }));
    assert_eq!(h.err("owner", moderate("bob", Moderation::Ban { reason: None })), ErrorCode::Conflict);
    assert!(matches!(h.ok("owner", moderate("bob", Moderation::Unban)), OkBody::Sent(_)));
    assert!(h.world.stored_room(&room_id()).unwrap().bans.is_empty());
    assert_eq!(h.err("owner", moderate("bob", Moderation::Unban)), ErrorCode::Conflict);
    assert!(matches!(h.ok("bob", RoomOp::Join { since: None }), OkBody::Joined(_)));
}

#[test]
fn a_mute_is_stored_until_it_ends_and_unmute_lifts_it_once() {
    let mut h = Harness::public("owner", &["bob"]);
    let mute = |secs| moderate("bob", Moderation::Mute { duration_secs: secs, reason: None });
    assert_eq!(h.err("owner", mute(0)), ErrorCode::Invalid);
    h.ok("owner", mute(60));
    let mutes = h.world.stored_room(&room_id()).unwrap().mutes;
    assert_eq!(mutes, vec![(user("bob"), h.now + 60_000)]);
    assert!(matches!(h.ok("owner", moderate("bob", Moderation::Unmute)), OkBody::Sent(_)));
    assert!(h.world.stored_room(&room_id()).unwrap().mutes.is_empty());
    assert_eq!(h.err("owner", moderate("bob", Moderation::Unmute)), ErrorCode::Conflict);
    assert_eq!(h.say("bob", "m", "free again"), 3);
}

#[test]
fn roles_are_given_below_the_givers_own() {
    let mut h = Harness::public("owner", &["bob", "cat"]);
    let set = |who: &str, role| moderate(who, Moderation::SetRole(role));
    assert!(matches!(h.ok("owner", set("bob", Role::Admin)), OkBody::Sent(_)));
    assert_eq!(h.world.members(&room_id()).get(&user("bob")), Some(&Role::Admin));
    assert_eq!(h.err("bob", set("cat", Role::Admin)), ErrorCode::Forbidden);
    assert_eq!(h.err("cat", set("bob", Role::Member)), ErrorCode::Forbidden);
    assert_eq!(h.err("owner", set("bob", Role::Owner)), ErrorCode::Invalid);
}

#[test]
fn the_owner_hands_the_room_over_and_becomes_an_admin() {
    let mut h = Harness::public("owner", &["bob"]);
    assert_eq!(h.err("bob", moderate("owner", Moderation::Transfer)), ErrorCode::Forbidden);
    assert!(matches!(h.ok("owner", moderate("bob", Moderation::Transfer)), OkBody::Sent(_)));
    let members = h.world.members(&room_id());
    assert_eq!((members[&user("bob")], members[&user("owner")]), (Role::Owner, Role::Admin));
    assert_eq!(h.err("owner", moderate("bob", Moderation::Transfer)), ErrorCode::Forbidden);
}

#[test]
fn retention_moves_the_history_floor_and_keeps_the_seq_counter() {
    let mut h = Harness::public("owner", &["bob"]);
    for i in 1..=4 {
        h.ok("owner", send_op(&format!("m{i}"), "hello"));
    }
    h.ok("owner", RoomOp::Pin { seq: 2, on: true });
    // Only what is durable may go, only upwards, and only under the retention the sweep read.
    let seen = Some(palaver_protocol::RoomRetention {
        max_age_secs: std::num::NonZeroU32::new(60),
        max_count: None,
    });
    assert_eq!(h.err("owner", RoomOp::TrimHistory { floor: 3, seen }), ErrorCode::Invalid);
    assert_eq!(h.err("owner", RoomOp::TrimHistory { floor: 99, seen: None }), ErrorCode::Invalid);
    let asker = h.ask("owner", RoomOp::TrimHistory { floor: 3, seen: None });
    // The owner's watermark is only derived from messages 1-4 (the pin notice is nobody's
    // reading): it is written before any goes.
    assert_eq!(
        h.pending.last().map(|c| c.writes.clone()),
        Some(vec![
            Write::TrimHistory { room: room_id(), from: 1, floor: 3 },
            Write::PutReceipt { room: room_id(), user: user("owner"), delivered: 4, read: 4 },
        ])
    );
    h.settle_all();
    assert!(matches!(h.answer(asker), Some(ReplyBody::Ok(_))));
    assert_eq!(h.err("owner", RoomOp::TrimHistory { floor: 3, seen: None }), ErrorCode::Invalid);

    // Readers see the floor; a join from below it resumes at it; the pin below it is gone.
    match h.ok("bob", RoomOp::Get) {
        OkBody::RoomDetails(details) => assert_eq!(details.history_from.map(|f| f.get()), Some(3)),
        other => panic!("{other:?}"),
    }
    let asker = h.ask("bob", RoomOp::Join { since: Some(0) });
    let answer = h.fx.answers.iter().find(|a| a.to == asker).unwrap();
    match (&answer.body, &answer.subscription) {
        (ReplyBody::Ok(OkBody::Joined(joined)), Subscription::Joined(Some(subscribe))) => {
            assert_eq!((joined.history_from.map(|f| f.get()), subscribe.cursor), (Some(3), 2));
        }
        other => panic!("{other:?}"),
    }
    match h.ok("bob", RoomOp::PinList { limit: None, cursor: None }) {
        OkBody::Pins(pins) => assert!(pins.pins.is_empty(), "{pins:?}"),
        other => panic!("{other:?}"),
    }
    match h.ok("bob", RoomOp::History(HistoryRequest::default())) {
        OkBody::History(page) => {
            assert_eq!(page.history_from.map(|f| f.get()), Some(3));
            assert!(page.messages.iter().all(|m| m.seq >= 3), "{page:?}");
        }
        other => panic!("{other:?}"),
    }
    // The counter goes on, also once the room is loaded again from storage.
    let stored = h.world.stored_room(&room_id()).unwrap();
    assert_eq!(stored.history_floor, 3);
    let mut reloaded = RoomOwner::<Asker>::load(stored, RoomLimits::default(), h.now).unwrap();
    let mut fx = Effects::default();
    reloaded.handle(h.now, 1, &user("owner"), send_op("after", "again"), &h.world, &mut fx);
    match &fx.commits[0].writes[0] {
        Write::AppendMessage(m) => assert_eq!(m.seq, 6, "four messages and a pin notice before it"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn history_hides_what_a_trim_removes_before_storage_has_applied_it() {
    let mut h = Harness::public("owner", &["bob"]);
    for i in 1..=4 {
        h.ok("owner", send_op(&format!("m{i}"), "hello"));
    }
    // The trim is decided; its write is still pending in storage.
    let _asker = h.ask("owner", RoomOp::TrimHistory { floor: 3, seen: None });
    match h.ok("bob", RoomOp::History(HistoryRequest::default())) {
        OkBody::History(page) => {
            let seqs: Vec<u64> = page.messages.iter().map(|m| m.seq).collect();
            assert_eq!((seqs, page.next), (vec![4, 3], None));
        }
        other => panic!("{other:?}"),
    }
    let forward = HistoryRequest { after: Some(0), ..HistoryRequest::default() };
    match h.ok("bob", RoomOp::History(forward)) {
        OkBody::History(page) => {
            assert_eq!(page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![3, 4]);
        }
        other => panic!("{other:?}"),
    }
}

fn reply_op(cid: &str, text: &str, root: u64, also_to_room: bool) -> RoomOp {
    RoomOp::Send(Box::new(Outgoing {
        thread: Some(root),
        also_to_room,
        ..match send_op(cid, text) {
            RoomOp::Send(outgoing) => *outgoing,
            _ => unreachable!(),
        }
    }))
}

fn history_of(h: &mut Harness, who: &str, threads: ThreadReplies) -> Vec<Message> {
    let request = HistoryRequest { threads, ..HistoryRequest::default() };
    match h.ok(who, RoomOp::History(request)) {
        OkBody::History(page) => page.messages,
        other => panic!("{other:?}"),
    }
}

fn thread_page(h: &mut Harness, who: &str, root: u64, request: HistoryRequest) -> ThreadHistoryOk {
    match h.ok(who, RoomOp::ThreadHistory { root, request }) {
        OkBody::ThreadHistory(page) => *page,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_thread_reply_takes_the_next_seq_and_its_root_counts_it() {
    let mut h = Harness::public("owner", &["bob"]);
    let root = h.say("owner", "r", "root");
    let asker = h.ask("bob", reply_op("t1", "in thread", root, false));
    h.settle_all();
    let Some(ReplyBody::Ok(OkBody::Sent(sent))) = h.answer(asker) else { panic!("no answer") };
    assert_eq!(sent.seq, root + 1, "a reply is the room's next message");
    let delivered = h.fx.deliveries.iter().find(|m| m.seq == sent.seq).unwrap();
    assert_eq!((delivered.thread, delivered.also_to_room), (Some(root), false));
    let announced = h.fx.announcements.iter().find_map(|a| match &a.event {
        Event::Thread(t) => Some(t.clone()),
        _ => None,
    });
    assert_eq!(announced.unwrap().summary, ThreadSummary { count: 1, last_seq: sent.seq, last_at: 1_000 });
    let also = match h.ok("owner", reply_op("t2", "also here", root, true)) {
        OkBody::Sent(s) => s.seq,
        other => panic!("{other:?}"),
    };
    // The room's timeline leaves out the reply kept in its thread, unless asked for all.
    let all: Vec<u64> = history_of(&mut h, "bob", ThreadReplies::Include).iter().map(|m| m.seq).collect();
    assert_eq!(all, vec![also, sent.seq, root]);
    let main = history_of(&mut h, "bob", ThreadReplies::Exclude);
    assert_eq!(main.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![also, root]);
    let summary = main[1].thread_summary.as_deref().copied().unwrap();
    assert_eq!(summary, ThreadSummary { count: 2, last_seq: also, last_at: 1_000 });
    // The thread pages newest first; forwards from `after` oldest first.
    let page = thread_page(&mut h, "bob", root, HistoryRequest { limit: Some(1), ..Default::default() });
    assert_eq!(page.root.seq, root);
    assert_eq!(page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![also]);
    let cursor = page.next.unwrap();
    let rest =
        thread_page(&mut h, "bob", root, HistoryRequest { cursor: Some(cursor), ..Default::default() });
    assert_eq!(rest.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![sent.seq]);
    assert!(rest.next.is_none());
    let forwards = thread_page(&mut h, "bob", root, HistoryRequest { after: Some(0), ..Default::default() });
    assert_eq!(forwards.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![sent.seq, also]);
    // Deleting the newest reply falls back to the one before; the root keeps its thread.
    h.ok("owner", RoomOp::Delete { seq: also });
    let summary = h.world.thread_summary(&room_id(), root).unwrap().unwrap();
    assert_eq!(summary, ThreadSummary { count: 1, last_seq: sent.seq, last_at: 1_000 });
    h.ok("owner", RoomOp::Delete { seq: root });
    // A retry of a reply answers with its seq, whatever became of the root.
    let retried = h.ok("bob", reply_op("t1", "in thread", root, false));
    assert!(matches!(retried, OkBody::Sent(s) if s.seq == sent.seq && s.duplicate));
    let page = thread_page(&mut h, "bob", root, HistoryRequest::default());
    assert!(page.root.deleted);
    assert_eq!(page.messages.len(), 1);
    h.ok("bob", RoomOp::Delete { seq: sent.seq });
    assert_eq!(h.world.thread_summary(&room_id(), root).unwrap(), None);
}

#[test]
fn thread_replies_need_a_live_root_of_this_room_one_level_deep() {
    let mut h = Harness::public("owner", &["bob"]);
    h.world.add_user(&user("eve"), "eve");
    let root = h.say("owner", "r", "root");
    let other = h.say("owner", "o", "other");
    let reply = match h.ok("bob", reply_op("t1", "reply", root, false)) {
        OkBody::Sent(s) => s.seq,
        other => panic!("{other:?}"),
    };
    assert_eq!(h.err("bob", reply_op("x1", "nowhere", 99, false)), ErrorCode::NotFound);
    assert_eq!(h.err("bob", reply_op("x2", "nested", reply, false)), ErrorCode::Invalid);
    assert_eq!(h.err("eve", reply_op("x3", "outsider", root, false)), ErrorCode::Forbidden);
    // Replying inside the thread is fine; to a message outside it is not.
    let inner = RoomOp::Send(Box::new(Outgoing {
        reply_to: Some(reply),
        ..match reply_op("t2", "to the reply", root, false) {
            RoomOp::Send(o) => *o,
            _ => unreachable!(),
        }
    }));
    assert!(matches!(h.ok("bob", inner), OkBody::Sent(_)));
    let outside = RoomOp::Send(Box::new(Outgoing {
        reply_to: Some(other),
        ..match reply_op("x4", "to another", root, false) {
            RoomOp::Send(o) => *o,
            _ => unreachable!(),
        }
    }));
    assert_eq!(h.err("bob", outside), ErrorCode::Invalid);
    let stray = RoomOp::Send(Box::new(Outgoing {
        also_to_room: true,
        ..match send_op("x5", "no thread") {
            RoomOp::Send(o) => *o,
            _ => unreachable!(),
        }
    }));
    assert_eq!(h.err("bob", stray), ErrorCode::Invalid);
    h.ok("owner", RoomOp::Delete { seq: other });
    assert_eq!(h.err("bob", reply_op("x6", "on a tombstone", other, false)), ErrorCode::NotFound);
    assert_eq!(
        h.err("bob", RoomOp::ThreadHistory { root: reply, request: HistoryRequest::default() }),
        ErrorCode::Invalid
    );
}

#[test]
fn thread_read_marks_move_forward_and_count_what_is_unread() {
    let mut h = Harness::public("owner", &["bob"]);
    h.world.add_user(&user("eve"), "eve");
    let root = h.say("owner", "r", "root");
    let mut replies = Vec::new();
    for n in 0..3 {
        match h.ok("owner", reply_op(&format!("t{n}"), "reply", root, false)) {
            OkBody::Sent(s) => replies.push(s.seq),
            other => panic!("{other:?}"),
        }
    }
    let list = match h.ok("bob", RoomOp::ThreadList { limit: None, cursor: None }) {
        OkBody::Threads(list) => list,
        other => panic!("{other:?}"),
    };
    assert_eq!(list.threads.len(), 1);
    assert_eq!((list.threads[0].root.seq, list.threads[0].read, list.threads[0].unread), (root, 0, 3));
    let read = |h: &mut Harness, seq| match h.ok("bob", RoomOp::ThreadRead { root, seq }) {
        OkBody::ThreadRead(ok) => (ok.read, ok.unread),
        other => panic!("{other:?}"),
    };
    // Two marks in flight: the second never moves it back below the first.
    let ahead = h.ask("bob", RoomOp::ThreadRead { root, seq: replies[1] });
    let behind = h.ask("bob", RoomOp::ThreadRead { root, seq: replies[0] });
    h.settle_all();
    assert!(matches!(h.answer(ahead), Some(ReplyBody::Ok(OkBody::ThreadRead(ok))) if ok.read == replies[1]));
    assert!(matches!(h.answer(behind), Some(ReplyBody::Ok(OkBody::ThreadRead(ok))) if ok.read == replies[1]));
    assert_eq!(h.world.thread_read(&room_id(), &user("bob"), root).unwrap(), replies[1]);
    assert_eq!(read(&mut h, replies[0]), (replies[1], 1), "never back");
    assert_eq!(read(&mut h, 999), (replies[2], 0), "never past the newest reply");
    // The sender of a reply has read their thread up to it.
    assert_eq!(h.world.thread_read(&room_id(), &user("owner"), root).unwrap(), replies[2]);
    assert_eq!(h.err("eve", RoomOp::ThreadRead { root, seq: 1 }), ErrorCode::Forbidden);
    // A second thread, replied to later, lists first.
    let second = h.say("owner", "s", "second root");
    h.ok("bob", reply_op("u1", "reply", second, false));
    let list = match h.ok("bob", RoomOp::ThreadList { limit: Some(1), cursor: None }) {
        OkBody::Threads(list) => list,
        other => panic!("{other:?}"),
    };
    assert_eq!(list.threads[0].root.seq, second);
    let next = match h.ok("bob", RoomOp::ThreadList { limit: Some(1), cursor: list.next }) {
        OkBody::Threads(list) => list,
        other => panic!("{other:?}"),
    };
    assert_eq!(next.threads[0].root.seq, root);
    assert!(next.next.is_none());
}

fn receipts_written(writes: &[Write]) -> Vec<(UserId, u64, u64)> {
    writes
        .iter()
        .filter_map(|w| match w {
            Write::PutReceipt { user, delivered, read, .. } => Some((user.clone(), *delivered, *read)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_leaver_or_kicked_members_derived_watermark_is_written_as_they_go() {
    let mut h = Harness::public("owner", &["bob", "carol"]);
    h.ok("bob", send_op("b1", "hello"));
    h.ok("carol", send_op("c1", "hello"));
    h.ask("bob", RoomOp::Leave);
    let writes = h.pending.last().map(|c| c.writes.clone()).unwrap();
    assert_eq!(receipts_written(&writes), vec![(user("bob"), 1, 1)], "storage stops deriving for bob");
    h.settle_all();
    h.ask("owner", moderate("carol", Moderation::Kick { reason: None }));
    let writes: Vec<Write> = h.pending.iter().flat_map(|c| c.writes.clone()).collect();
    assert_eq!(receipts_written(&writes), vec![(user("carol"), 2, 2)]);
    h.settle_all();
    let stored = h.world.stored_room(&room_id()).unwrap();
    assert!(
        stored.receipts.contains(&(user("bob"), 1, 1)) && stored.receipts.contains(&(user("carol"), 2, 2))
    );
}

#[test]
fn a_deleted_accounts_watermarks_do_not_come_back() {
    let mut h = Harness::public("owner", &["bob"]);
    h.ok("bob", send_op("b1", "hello"));
    h.world.apply(&[Write::DeleteAccount { user: user("bob"), at: 2_000 }]);
    h.ask("bob", RoomOp::Leave);
    let writes = h.pending.last().map(|c| c.writes.clone()).unwrap();
    assert_eq!(writes, vec![Write::RemoveMember { room: room_id(), user: user("bob") }]);
    h.settle_all();
    // Nor does the owner write it later, when bob's message leaves the tail.
    for i in 0..crate::records::SENDER_RECEIPT_TAIL {
        h.ok("owner", send_op(&format!("o{i}"), "hello"));
    }
    let stored = h.world.stored_room(&room_id()).unwrap();
    assert!(stored.receipts.iter().all(|(u, _, _)| *u != user("bob")), "{:?}", stored.receipts);
}

#[test]
fn a_notice_in_a_members_name_is_not_their_reading_after_a_reload() {
    let mut h = Harness::public("owner", &["bob"]);
    h.ok("bob", send_op("b1", "hello"));
    h.ok("owner", RoomOp::Pin { seq: 1, on: true });
    let stored = h.world.stored_room(&room_id()).unwrap();
    let owners = stored.receipts.iter().find(|(u, _, _)| *u == user("owner")).map(|(_, _, read)| *read);
    assert!(owners.unwrap_or(0) < 1, "the pin notice does not mark bob's message read: {owners:?}");
}
