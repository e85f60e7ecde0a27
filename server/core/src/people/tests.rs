//! The people home's rules, against an in-memory world. Each test settles commits (or
//! refuses them) by hand, so decisions in flight are visible to the next request.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use palaver_protocol::{ErrorCode, PresenceStatus};

use super::*;
use crate::memory::{MemoryStore, acts};

fn user(name: &str) -> UserId {
    UserId::parse(&format!("u_{name}")).unwrap()
}

type World = MemoryStore;

fn world_with(names: &[&str]) -> World {
    let mut world = MemoryStore::new();
    for name in names {
        world.add_user(&user(name), name);
    }
    world
}

type Asker = u32;

struct Harness {
    world: World,
    home: PeopleHome,
    fx: HomeEffects<Asker>,
    next: Asker,
}

impl Harness {
    fn new(names: &[&str]) -> Self {
        let config = HomeConfig { presence_interval_ms: 1_000, local_sites: 2 };
        Harness {
            world: world_with(names),
            home: PeopleHome::new(config),
            fx: HomeEffects::default(),
            next: 1,
        }
    }

    /// Asks; returns the asker, its answer (if any yet) is in `fx`.
    fn ask(&mut self, who: &str, op: PeopleOp) -> Asker {
        let asker = self.next;
        self.next += 1;
        self.home.handle(1_000, asker, &user(who), op, &self.world, &mut self.fx);
        asker
    }

    fn answer(&self, asker: Asker) -> Option<&ReplyBody> {
        self.fx.answers.iter().find(|a| a.to == asker).map(|a| &a.body)
    }

    fn code(&self, asker: Asker) -> Option<ErrorCode> {
        match self.answer(asker) {
            Some(ReplyBody::Err(e)) => Some(e.code),
            _ => None,
        }
    }

    /// Settles every commit, durable.
    fn settle(&mut self) {
        for commit in std::mem::take(&mut self.fx.commits) {
            self.world.apply(&commit.writes);
            self.home.on_committed(commit.settle, Ok(()), &mut self.fx);
        }
    }
}

fn befriend(other: &str, op: FriendOp) -> PeopleOp {
    PeopleOp::Friend { other: user(other), op }
}

#[test]
fn a_friendship_is_asked_then_accepted_and_each_side_follows_the_other() {
    let mut h = Harness::new(&["ann", "ben"]);
    let asked = h.ask("ann", befriend("ben", FriendOp::Request));
    // Not answered before it is durable, but decided: asking again is a conflict now.
    assert!(h.answer(asked).is_none());
    let again = h.ask("ann", befriend("ben", FriendOp::Request));
    assert_eq!(h.code(again), Some(ErrorCode::Conflict));
    h.settle();
    assert!(
        matches!(h.answer(asked), Some(ReplyBody::Ok(OkBody::Friend(f))) if f.friend.state == FriendState::Outgoing)
    );
    let accepted = h.ask("ben", befriend("ann", FriendOp::Accept));
    h.settle();
    assert!(
        matches!(h.answer(accepted), Some(ReplyBody::Ok(OkBody::Friend(f))) if f.friend.state == FriendState::Friends)
    );
    let follows: Vec<_> = h.fx.notices.iter().filter_map(|n| n.effect.clone()).collect();
    assert!(follows.contains(&LocalEffect::Follow(user("ben"))));
    assert!(follows.contains(&LocalEffect::Follow(user("ann"))));
    assert_eq!(
        PeopleLookups::friendship(&h.world, &user("ann"), &user("ben")).unwrap().map(|f| f.0),
        Some(FriendState::Friends)
    );
}

#[test]
fn friendship_refusals_name_what_is_wrong() {
    let mut h = Harness::new(&["ann", "ben"]);
    let me = h.ask("ann", befriend("ann", FriendOp::Request));
    assert_eq!(h.code(me), Some(ErrorCode::Invalid));
    let nobody = h.ask("ann", befriend("zed", FriendOp::Request));
    assert_eq!(h.code(nobody), Some(ErrorCode::NotFound));
    for op in [FriendOp::Accept, FriendOp::Decline, FriendOp::Cancel, FriendOp::Remove] {
        let asker = h.ask("ann", befriend("ben", op));
        assert_eq!(h.code(asker), Some(ErrorCode::Conflict), "{op:?} with nothing between them");
    }
}

#[test]
fn a_block_ends_the_friendship_stops_presence_and_refuses_requests_both_ways() {
    let mut h = Harness::new(&["ann", "ben"]);
    h.ask("ann", befriend("ben", FriendOp::Request));
    h.settle();
    h.ask("ben", befriend("ann", FriendOp::Accept));
    h.settle();
    h.fx.notices.clear();
    let blocked = h.ask("ann", PeopleOp::Block { other: user("ben"), on: true });
    // In flight: the next request already sees the block.
    let refused = h.ask("ben", befriend("ann", FriendOp::Request));
    assert_eq!(h.code(refused), Some(ErrorCode::Forbidden));
    h.settle();
    assert!(matches!(h.answer(blocked), Some(ReplyBody::Ok(OkBody::Empty(_)))));
    let effects: Vec<_> = h.fx.notices.iter().map(|n| (n.user.clone(), n.effect.clone())).collect();
    assert!(effects.contains(&(user("ann"), Some(LocalEffect::Block(user("ben"))))));
    assert!(effects.contains(&(user("ben"), Some(LocalEffect::Unfollow(user("ann"))))));
    assert_eq!(PeopleLookups::friendship(&h.world, &user("ann"), &user("ben")).unwrap(), None);
    let mine = h.ask("ann", befriend("ben", FriendOp::Request));
    assert_eq!(h.code(mine), Some(ErrorCode::Forbidden));
    // Blocking again changes nothing and writes nothing.
    let again = h.ask("ann", PeopleOp::Block { other: user("ben"), on: true });
    assert!(matches!(h.answer(again), Some(ReplyBody::Ok(OkBody::Empty(_)))));
    assert!(h.fx.commits.is_empty());
}

#[test]
fn a_refused_write_answers_its_error_and_releases_what_it_held() {
    let mut h = Harness::new(&["ann", "ben"]);
    let asked = h.ask("ann", befriend("ben", FriendOp::Request));
    let commit = h.fx.commits.pop().unwrap();
    h.home.on_committed(commit.settle, Err(LookupError::Unavailable), &mut h.fx);
    assert_eq!(h.code(asked), Some(ErrorCode::Unavailable));
    assert!(h.home.is_settled());
    // Nothing was stored, and nothing is held: asking again is asking anew.
    let again = h.ask("ann", befriend("ben", FriendOp::Request));
    h.settle();
    assert!(matches!(h.answer(again), Some(ReplyBody::Ok(OkBody::Friend(_)))));
}

#[test]
fn one_time_keys_are_handed_out_once_even_while_their_removal_is_in_flight() {
    let mut h = Harness::new(&["ann", "ben", "cat"]);
    let keys = (1..=3).map(|i| OneTimeKey { key_id: format!("k{i}"), key: format!("key{i}") }).collect();
    let upload = PeopleOp::KeysUpload {
        device_id: "phone".into(),
        identity_key: "identity".into(),
        signing_key: None,
        one_time_keys: keys,
    };
    h.ask("ann", upload);
    h.settle();
    let claim = || PeopleOp::KeysClaim { user: user("ann"), device_id: None };
    let first = h.ask("ben", claim());
    let second = h.ask("cat", claim());
    let claimed = |h: &Harness, asker| match h.answer(asker) {
        Some(ReplyBody::Ok(OkBody::Claimed(ok))) => ok.claimed[0].clone(),
        other => panic!("no claim: {other:?}"),
    };
    h.settle();
    let (a, b) = (claimed(&h, first), claimed(&h, second));
    assert_ne!(a.one_time_key, b.one_time_key);
    assert_eq!((a.one_time_key_count, b.one_time_key_count), (2, 1));
    assert_eq!(h.world.one_time_key_count(&user("ann"), "phone").unwrap(), 1);
    // The identity of a device never changes.
    let changed = h.ask(
        "ann",
        PeopleOp::KeysUpload {
            device_id: "phone".into(),
            identity_key: "another".into(),
            signing_key: None,
            one_time_keys: Vec::new(),
        },
    );
    assert_eq!(h.code(changed), Some(ErrorCode::Conflict));
    h.world.allow(acts::KEY_CLAIM, 0);
    let throttled = h.ask("ben", claim());
    assert_eq!(h.code(throttled), Some(ErrorCode::RateLimited));
}

#[test]
fn a_profile_is_stored_as_sent_or_refused_and_the_next_update_sees_the_pending_one() {
    let mut h = Harness::new(&["ann"]);
    let update = |name: Option<&str>, status: Option<&str>| PeopleOp::UpdateProfile {
        display_name: name.map(str::to_owned),
        avatar: None,
        status_text: status.map(str::to_owned),
        share_read_receipts: None,
    };
    h.ask("ann", update(Some("Ann"), None));
    // Read receipts are shared until turned off; the owner's own profile says so.
    let private = PeopleOp::UpdateProfile {
        display_name: None,
        avatar: None,
        status_text: None,
        share_read_receipts: Some(false),
    };
    let asked = h.ask("ann", private);
    // Before the first is durable, the second keeps its name.
    let second = h.ask("ann", update(None, Some("busy")));
    h.settle();
    match h.answer(second) {
        Some(ReplyBody::Ok(OkBody::Profile(p))) => {
            assert_eq!(p.profile.display_name.as_deref(), Some("Ann"));
            assert_eq!(p.profile.status_text.as_deref(), Some("busy"));
            assert_eq!(p.profile.share_read_receipts, Some(false), "the pending setting is kept");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(h.answer(asked), Some(ReplyBody::Ok(_))));
    assert!(crate::owner::Lookups::hides_read_receipts(&h.world, &user("ann")).unwrap());
    let bidi = h.ask("ann", update(Some("Ann\u{202e}"), None));
    assert_eq!(h.code(bidi), Some(ErrorCode::Invalid));
    let long = h.ask("ann", update(Some(&"x".repeat(limits::MAX_DISPLAY_NAME_CHARS + 1)), None));
    assert_eq!(h.code(long), Some(ErrorCode::TooLarge));
}

#[test]
fn notification_settings_are_stored_told_to_every_device_and_refused_when_bad() {
    use palaver_protocol::{NotifyLevel, RoomId, RoomNotifications};
    let mut h = Harness::new(&["ann"]);
    let keywords = PeopleOp::SetNotifications { level: None, keywords: Some(vec!["deploy".into()]) };
    let first = h.ask("ann", keywords);
    let room = RoomId::parse("r_a").unwrap();
    let muted = RoomNotifications { room: room.clone(), level: None, muted: true, muted_until: Some(5_000) };
    // Before the first is durable, the second builds on it.
    let second = h.ask("ann", PeopleOp::SetRoomNotifications(muted.clone()));
    h.settle();
    assert!(matches!(h.answer(first), Some(ReplyBody::Ok(OkBody::Notifications(_)))));
    let now = match h.answer(second) {
        Some(ReplyBody::Ok(OkBody::Notifications(now))) => now.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(now.notifications.keywords, vec!["deploy".to_string()]);
    assert_eq!(now.notifications.rooms, vec![muted]);
    let told: Vec<_> = h.fx.notices.iter().filter(|n| n.user == user("ann")).collect();
    assert_eq!(told.len(), 2, "each change goes to every socket of the user");
    assert_eq!(told[1].event, Some(Event::Notifications(now.clone())));
    let read = h.ask("ann", PeopleOp::GetNotifications);
    assert!(matches!(h.answer(read), Some(ReplyBody::Ok(OkBody::Notifications(n))) if *n == now));
    assert_eq!(PeopleLookups::notifications(&h.world, &user("ann")).unwrap(), now.notifications);
    let level = h.ask("ann", PeopleOp::SetNotifications { level: Some(NotifyLevel::All), keywords: None });
    h.settle();
    let Some(ReplyBody::Ok(OkBody::Notifications(all))) = h.answer(level) else { panic!() };
    assert_eq!((all.notifications.level, all.notifications.keywords.len()), (NotifyLevel::All, 1));

    let bad_keywords = PeopleOp::SetNotifications { level: None, keywords: Some(vec![String::new()]) };
    let refused = h.ask("ann", bad_keywords);
    assert_eq!(h.code(refused), Some(ErrorCode::Invalid));
    let past = RoomNotifications { room, level: None, muted: true, muted_until: Some(10) };
    let refused = h.ask("ann", PeopleOp::SetRoomNotifications(past));
    assert_eq!(h.code(refused), Some(ErrorCode::Invalid));
    assert!(h.fx.commits.is_empty(), "a refusal writes nothing");
}

#[test]
fn push_subscriptions_are_kept_per_endpoint_up_to_the_limit() {
    let mut h = Harness::new(&["ann"]);
    let subscribe = |n: usize, key: &str| PeopleOp::PushSubscribe {
        endpoint: format!("https://push.example.net/{n}"),
        p256dh: key.into(),
        auth: "a".into(),
    };
    // Before any is durable, each sees the ones in flight.
    for n in 0..crate::push::MAX_SUBSCRIPTIONS {
        h.ask("ann", subscribe(n, "B1"));
    }
    let over = h.ask("ann", subscribe(99, "B1"));
    assert_eq!(h.code(over), Some(ErrorCode::Invalid));
    // The same endpoint again replaces its keys.
    let again = h.ask("ann", subscribe(0, "B2"));
    h.settle();
    assert!(matches!(h.answer(again), Some(ReplyBody::Ok(OkBody::Empty(_)))));
    let stored = PeopleLookups::push_subscriptions(&h.world, &user("ann")).unwrap();
    assert_eq!(stored.len(), crate::push::MAX_SUBSCRIPTIONS);
    assert!(stored.iter().any(|s| s.endpoint.ends_with("/0") && s.p256dh == "B2"));
    let gone = h.ask("ann", PeopleOp::PushUnsubscribe { endpoint: "https://push.example.net/0".into() });
    h.settle();
    assert!(matches!(h.answer(gone), Some(ReplyBody::Ok(OkBody::Empty(_)))));
    assert_eq!(PeopleLookups::push_subscriptions(&h.world, &user("ann")).unwrap().len(), 19);
    let unknown = h.ask("ann", PeopleOp::PushUnsubscribe { endpoint: "https://elsewhere/1".into() });
    assert!(matches!(h.answer(unknown), Some(ReplyBody::Ok(OkBody::Empty(_)))), "nothing to forget is fine");
    assert!(h.fx.commits.is_empty());
}

#[test]
fn presence_is_published_announced_to_followers_and_last_seen_stored() {
    let mut h = Harness::new(&["ann"]);
    let ann = user("ann");
    h.home.watch(&ann, 1, true);
    h.home.session_up(1_000, &ann, 0, &h.world, &mut h.fx);
    assert_eq!(h.fx.published.last().unwrap().status, PresenceStatus::Online);
    assert_eq!(h.fx.announcements.len(), 1);
    assert_eq!(h.fx.announcements[0].sites, vec![1]);
    assert_eq!(h.fx.node_sessions, vec![NodeSession { user: ann.clone(), site: 0, up: true }]);
    // A second device changes nothing others see.
    h.home.session_up(1_100, &ann, 1, &h.world, &mut h.fx);
    assert_eq!(h.fx.announcements.len(), 1);
    h.home.session_down(1_200, &ann, 1, &h.world, &mut h.fx);
    h.home.session_down(1_300, &ann, 0, &h.world, &mut h.fx);
    // Offline inside the coalescing window: announced when it ends.
    assert_eq!(h.fx.announcements.len(), 1);
    h.home.tick(2_500, &mut h.fx);
    assert_eq!(h.fx.announcements.len(), 2);
    assert_eq!(h.fx.announcements[1].info.status, PresenceStatus::Offline);
    assert_eq!(h.fx.announcements[1].info.last_seen, Some(1_300));
    h.settle();
    assert_eq!(h.world.last_seen(&ann).unwrap(), Some(1_300));
    assert_eq!(h.fx.node_sessions.last().unwrap(), &NodeSession { user: ann, site: 0, up: false });
}

#[test]
fn a_request_is_declined_or_cancelled_and_a_friendship_removed() {
    let mut h = Harness::new(&["ann", "ben"]);
    let state = |h: &Harness| PeopleLookups::friendship(&h.world, &user("ann"), &user("ben")).unwrap();
    h.ask("ann", befriend("ben", FriendOp::Request));
    h.settle();
    let declined = h.ask("ben", befriend("ann", FriendOp::Decline));
    h.settle();
    assert!(
        matches!(h.answer(declined), Some(ReplyBody::Ok(OkBody::Friend(f))) if f.friend.state == FriendState::None)
    );
    assert_eq!(state(&h), None);
    h.ask("ann", befriend("ben", FriendOp::Request));
    h.settle();
    let cancelled = h.ask("ann", befriend("ben", FriendOp::Cancel));
    h.settle();
    assert!(matches!(h.answer(cancelled), Some(ReplyBody::Ok(OkBody::Friend(_)))));
    assert_eq!(state(&h), None);
    // Only the one asked may decline, only the one who asked may cancel.
    h.ask("ann", befriend("ben", FriendOp::Request));
    h.settle();
    let wrong_side = h.ask("ann", befriend("ben", FriendOp::Decline));
    assert_eq!(h.code(wrong_side), Some(ErrorCode::Conflict));
    h.ask("ben", befriend("ann", FriendOp::Accept));
    h.settle();
    let removed = h.ask("ben", befriend("ann", FriendOp::Remove));
    h.settle();
    assert!(matches!(h.answer(removed), Some(ReplyBody::Ok(OkBody::Friend(_)))));
    assert_eq!(state(&h), None);
    let again = h.ask("ann", befriend("ben", FriendOp::Remove));
    assert_eq!(h.code(again), Some(ErrorCode::Conflict));
}

#[test]
fn unblocking_lifts_a_block_and_nobody_blocks_themselves() {
    let mut h = Harness::new(&["ann", "ben"]);
    let block = |on| PeopleOp::Block { other: user("ben"), on };
    h.ask("ann", block(true));
    h.settle();
    let unblocked = h.ask("ann", block(false));
    h.settle();
    assert!(matches!(h.answer(unblocked), Some(ReplyBody::Ok(OkBody::Empty(_)))));
    assert!(!PeopleLookups::is_blocked(&h.world, &user("ann"), &user("ben")).unwrap());
    assert!(h.fx.notices.iter().any(|n| n.effect == Some(LocalEffect::Unblock(user("ben")))));
    let me = h.ask("ann", PeopleOp::Block { other: user("ann"), on: true });
    assert_eq!(h.code(me), Some(ErrorCode::Invalid));
    let myself = h.ask("ann", PeopleOp::Block { other: user("ann"), on: false });
    assert_eq!(h.code(myself), Some(ErrorCode::Invalid));
    let nobody = h.ask("ann", PeopleOp::Block { other: user("zed"), on: false });
    assert_eq!(h.code(nobody), Some(ErrorCode::NotFound));
}

#[test]
fn a_chosen_presence_is_published_at_once_without_a_write() {
    let mut h = Harness::new(&["ann"]);
    let ann = user("ann");
    h.home.session_up(1_000, &ann, 0, &h.world, &mut h.fx);
    let asker = h.ask("ann", PeopleOp::SetPresence(PresenceChoice::Away));
    assert!(matches!(h.answer(asker), Some(ReplyBody::Ok(OkBody::Empty(_)))));
    assert_eq!(h.fx.published.last().unwrap().status, PresenceStatus::Away);
    let invisible = h.ask("ann", PeopleOp::SetPresence(PresenceChoice::Invisible));
    assert!(h.answer(invisible).is_some());
    assert_eq!(h.fx.published.last().unwrap().status, PresenceStatus::Offline);
}
