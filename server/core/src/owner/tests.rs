//! The owner's rules, op by op, against an in-memory world: commits are applied (or
//! refused) by hand, so every interleaving a driver can produce is a few lines here.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};

use palaver_protocol::{
    ClientMsgId, ErrorCode, Event, FileRef, FriendState, Message, MessageKind, OkBody, PresenceStatus,
    ReactionSummary, ReplyBody, RoomId, RoomKind, UserId, Username,
};

use super::*;
use crate::records::{FileRecord, RoomRecord, Write};
use crate::route::RoomRequest;

/// Storage and the shared throttles, in maps.
#[derive(Default)]
struct World {
    messages: RefCell<BTreeMap<u64, Message>>,
    reactions: RefCell<HashSet<(u64, String, UserId)>>,
    rooms: RefCell<HashMap<RoomId, RoomRecord>>,
    users: HashMap<UserId, String>,
    files: RefCell<HashMap<String, FileRecord>>,
    blocks: HashSet<(UserId, UserId)>,
    friends: HashSet<(UserId, UserId)>,
    invites: RefCell<HashMap<UserId, usize>>,
    owned: HashMap<UserId, usize>,
    online: HashSet<UserId>,
    /// How many more of each throttled act are allowed (unlimited when absent).
    allowance: RefCell<HashMap<&'static str, u32>>,
    unavailable: Cell<bool>,
}

impl World {
    fn with_users(names: &[&str]) -> World {
        let mut world = World::default();
        for name in names {
            world.users.insert(user(name), (*name).to_owned());
        }
        world
    }

    fn check(&self) -> Found<()> {
        if self.unavailable.get() { Err(LookupError::Unavailable) } else { Ok(()) }
    }

    fn take(&self, act: &'static str) -> Result<(), u64> {
        let mut allowance = self.allowance.borrow_mut();
        match allowance.get_mut(act) {
            None => Ok(()),
            Some(0) => Err(60_000),
            Some(left) => {
                *left -= 1;
                Ok(())
            }
        }
    }

    /// Carries out writes as storage would.
    fn apply(&self, writes: &[Write]) {
        for write in writes {
            match write {
                Write::AppendMessage(m) | Write::ReplaceMessage(m) => {
                    self.messages.borrow_mut().insert(m.seq, m.clone());
                }
                Write::PutReaction { seq, emoji, user, .. } => {
                    self.reactions.borrow_mut().insert((*seq, emoji.clone(), user.clone()));
                }
                Write::RemoveReaction { seq, emoji, user, .. } => {
                    self.reactions.borrow_mut().remove(&(*seq, emoji.clone(), user.clone()));
                }
                Write::PutRoom(record) => {
                    drop(self.rooms.borrow_mut().insert(record.room_id.clone(), record.clone()))
                }
                Write::PutFile(file) => {
                    drop(self.files.borrow_mut().insert(file.file_id.clone(), file.clone()))
                }
                Write::RemoveFile { file_id } => drop(self.files.borrow_mut().remove(file_id)),
                Write::PutInvite { user, .. } => {
                    *self.invites.borrow_mut().entry(user.clone()).or_default() += 1
                }
                _ => {}
            }
        }
    }
}

impl Lookups for World {
    fn message(&self, _: &RoomId, seq: u64) -> Found<Option<Message>> {
        self.check()?;
        Ok(self.messages.borrow().get(&seq).cloned())
    }
    fn messages_before(&self, _: &RoomId, before: u64, limit: usize) -> Found<Vec<Message>> {
        self.check()?;
        Ok(self.messages.borrow().range(..before).rev().take(limit).map(|(_, m)| m.clone()).collect())
    }
    fn messages_between(&self, _: &RoomId, from: u64, to: u64, limit: usize) -> Found<Vec<Message>> {
        self.check()?;
        Ok(self.messages.borrow().range(from..=to).take(limit).map(|(_, m)| m.clone()).collect())
    }
    fn cid_seq(&self, _: &RoomId, sender: &UserId, cid: &ClientMsgId) -> Found<Option<(u64, u64)>> {
        self.check()?;
        let messages = self.messages.borrow();
        Ok(messages.values().find(|m| &m.sender == sender && &m.cid == cid).map(|m| (m.seq, m.ts)))
    }
    fn reactions(&self, _: &RoomId, seq: u64) -> Found<Vec<ReactionSummary>> {
        self.check()?;
        let mut by_emoji: BTreeMap<String, Vec<UserId>> = BTreeMap::new();
        for (s, emoji, user) in self.reactions.borrow().iter() {
            if *s == seq {
                by_emoji.entry(emoji.clone()).or_default().push(user.clone());
            }
        }
        Ok(by_emoji
            .into_iter()
            .map(|(emoji, users)| ReactionSummary { emoji, count: users.len() as u32, users })
            .collect())
    }
    fn has_reaction(&self, _: &RoomId, seq: u64, emoji: &str, user: &UserId) -> Found<bool> {
        self.check()?;
        Ok(self.reactions.borrow().contains(&(seq, emoji.to_owned(), user.clone())))
    }
    fn reaction_count(&self, _: &RoomId, seq: u64, emoji: &str) -> Found<u32> {
        self.check()?;
        Ok(self.reactions.borrow().iter().filter(|(s, e, _)| *s == seq && e == emoji).count() as u32)
    }
    fn room_record(&self, room: &RoomId) -> Found<Option<RoomRecord>> {
        self.check()?;
        Ok(self.rooms.borrow().get(room).cloned())
    }
    fn username(&self, user: &UserId) -> Found<Option<String>> {
        self.check()?;
        Ok(self.users.get(user).cloned())
    }
    fn user_by_name(&self, name: &Username) -> Found<Option<UserId>> {
        self.check()?;
        Ok(self.users.iter().find(|(_, n)| n.as_str() == name.as_str()).map(|(id, _)| id.clone()))
    }
    fn file(&self, file_id: &str) -> Found<Option<FileRecord>> {
        self.check()?;
        Ok(self.files.borrow().get(file_id).cloned())
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
        let friends = self.friends.contains(&(user.clone(), other.clone()))
            || self.friends.contains(&(other.clone(), user.clone()));
        Ok(if friends { FriendState::Friends } else { FriendState::None })
    }
    fn pending_invites(&self, user: &UserId, _: usize) -> Found<usize> {
        self.check()?;
        Ok(self.invites.borrow().get(user).copied().unwrap_or(0))
    }
    fn owned_rooms(&self, user: &UserId, _: usize) -> Found<usize> {
        self.check()?;
        Ok(self.owned.get(user).copied().unwrap_or(0))
    }
    fn presence(&self, user: &UserId) -> PresenceStatus {
        if self.online.contains(user) { PresenceStatus::Online } else { PresenceStatus::Offline }
    }
    fn take_stranger_invite(&self, _: &UserId, _: u64) -> Result<(), u64> {
        self.take("stranger invite")
    }
    fn take_stranger_direct_room(&self, _: &UserId, _: &UserId, _: u64) -> Result<(), u64> {
        self.take("stranger direct room")
    }
    fn take_room_creation(&self, _: &UserId, _: u64) -> Result<(), u64> {
        self.take("room creation")
    }
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
        let mut names = vec![owner];
        names.extend_from_slice(members);
        let world = World::with_users(&names);
        let mut fx = Effects::default();
        let created =
            RoomOwner::create(1_000, 0, &user(owner), new_room("test"), config(), &world, &mut fx).unwrap();
        let mut h = Harness { world, owner: created, fx, pending: Vec::new(), now: 1_000, next: 1 };
        h.take_commits();
        h.settle_all();
        for member in members {
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
    }))
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
    let stored = h.world.messages.borrow()[&seq].clone();
    assert!(stored.deleted && stored.text.is_empty());
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
    h.world.users.insert(user("friend"), "friend".into());
    h.world.users.insert(user("stranger"), "stranger".into());
    h.world.users.insert(user("popular"), "popular".into());
    h.world.friends.insert((user("owner"), user("friend")));
    h.world.allowance.borrow_mut().insert("stranger invite", 0);
    let invite = |who: &str| RoomOp::Invite { user: user(who) };
    assert!(matches!(h.ok("owner", invite("friend")), OkBody::Empty(_)));
    assert_eq!(h.fx.notices.len(), 1, "the invitee is told once it is durable");
    assert_eq!(h.err("owner", invite("stranger")), ErrorCode::RateLimited);
    h.world.invites.borrow_mut().insert(user("popular"), limits::MAX_PENDING_INVITES);
    h.world.friends.insert((user("owner"), user("popular")));
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
    h.world.files.borrow_mut().insert(file.file_id.clone(), file);
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
    assert!(h.world.files.borrow().is_empty());
}

#[test]
fn history_pages_forwards_and_flags_blocked_senders() {
    let mut h = Harness::public("owner", &["bob"]);
    for i in 1..=5 {
        h.say("bob", &format!("c{i}"), &format!("m{i}"));
    }
    h.world.blocks.insert((user("owner"), user("bob")));
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
    h.world.online.insert(user("bob"));
    h.world.blocks.insert((user("bob"), user("owner")));
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
    assert!(h.world.rooms.borrow()[&room_id()].deleted);
}

#[test]
fn room_creation_is_throttled_and_owned_rooms_capped() {
    let world = World::with_users(&["maker"]);
    let mut fx = Effects::default();
    let create = |world: &World, fx: &mut Effects<Asker>| {
        RoomOwner::create(0, 1, &user("maker"), new_room("r"), config(), world, fx)
    };
    world.allowance.borrow_mut().insert("room creation", 0);
    assert!(create(&world, &mut fx).is_none());
    assert!(matches!(&fx.answers[0].body, ReplyBody::Err(e) if e.code == ErrorCode::RateLimited));
    let mut world = World::with_users(&["maker"]);
    world.owned.insert(user("maker"), 10);
    let mut fx = Effects::default();
    assert!(create(&world, &mut fx).is_none());
    assert!(matches!(&fx.answers[0].body, ReplyBody::Err(e) if e.code == ErrorCode::Forbidden));
}

#[test]
fn a_direct_room_takes_back_the_one_who_left_and_new_ones_with_strangers_are_throttled() {
    let world = World::with_users(&["ann", "ben", "cat"]);
    world.allowance.borrow_mut().insert("stranger direct room", 1);
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
