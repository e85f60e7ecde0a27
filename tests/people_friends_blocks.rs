//! Profiles, friends and blocks end to end, both ways: requests and answers reach both
//! sides live; a block stops DMs, friend requests and invitations from the blocked user,
//! flags their messages for the blocker alone, and stays private to the blocker.
#![allow(clippy::unwrap_used, reason = "tests")]

use palaver_e2e::{Client, Server, register};
use palaver_protocol::{
    Codec, ErrorCode, Event, FriendInfo, FriendState, OkBody, Op, PresenceStatus, RoomKind, UserId,
};

fn uid(account: &palaver_e2e::Account) -> UserId {
    UserId::parse(&account.user_id).unwrap()
}

fn friend_event(client: &mut Client) -> FriendInfo {
    client.wait_event(|e| match e {
        Event::Friend(f) => Some(f.clone()),
        _ => None,
    })
}

fn friends(client: &mut Client) -> Vec<FriendInfo> {
    match client.ok(Op::FriendList { limit: None, cursor: None }) {
        OkBody::Friends(list) => list.friends,
        other => panic!("{other:?}"),
    }
}

#[test]
fn profiles_can_be_set_read_and_searched() {
    let server = Server::start(&[]);
    let [alice, albert, bob] = ["alice", "albert", "bob"].map(|n| register(server.addr, n));
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let update = |name: &str, avatar: &str| Op::UserUpdate {
        display_name: Some(name.into()),
        avatar: Some(avatar.into()),
        status_text: Some("on holiday 🌴".into()),
        share_read_receipts: None,
    };
    a.err(update("Alice", "javascript:alert(1)"), ErrorCode::Invalid);
    a.err(update(&"x".repeat(65), ""), ErrorCode::TooLarge);
    a.err(update("bell\u{7}", ""), ErrorCode::Invalid);
    match a.ok(update("Alice Liddell", "https://example.com/a.png")) {
        OkBody::Profile(p) => assert_eq!(p.profile.display_name.as_deref(), Some("Alice Liddell")),
        other => panic!("{other:?}"),
    }
    // Absent fields are kept, empty ones cleared.
    a.ok(Op::UserUpdate {
        display_name: None,
        avatar: Some(String::new()),
        status_text: None,
        share_read_receipts: None,
    });
    let mut b = Client::login(server.addr, Codec::Rkyv, &bob);
    match b.ok(Op::UserGet { user: uid(&alice) }) {
        OkBody::Profile(p) => {
            let p = *p;
            assert_eq!(p.profile.username, "alice");
            assert_eq!(p.profile.display_name.as_deref(), Some("Alice Liddell"));
            assert_eq!(p.profile.avatar, None);
            assert_eq!(p.profile.status_text.as_deref(), Some("on holiday 🌴"));
            // Strangers do not see each other's presence.
            assert!(p.presence.is_none());
        }
        other => panic!("{other:?}"),
    }
    match b.ok(Op::UserSearch { prefix: "AL".into(), limit: None }) {
        OkBody::Users(found) => {
            let names: Vec<_> = found.users.iter().map(|u| u.username.as_str()).collect();
            assert_eq!(names, ["albert", "alice"]);
        }
        other => panic!("{other:?}"),
    }
    b.err(Op::UserSearch { prefix: String::new(), limit: None }, ErrorCode::Invalid);
    b.err(Op::UserSearch { prefix: "a b".into(), limit: None }, ErrorCode::Invalid);
    b.err(Op::UserGet { user: UserId::parse("u_nobody").unwrap() }, ErrorCode::NotFound);
    let _ = albert;
}

#[test]
fn friendships_reach_both_sides_and_move_through_every_state() {
    let server = Server::start(&["--shards", "2"]);
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(|n| register(server.addr, n));
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let mut b = Client::login(server.addr, Codec::Rkyv, &bob);
    let mut c = Client::login(server.addr, Codec::Json, &carol);

    a.err(Op::FriendRequest { user: uid(&alice) }, ErrorCode::Invalid);
    a.err(Op::FriendAccept { user: uid(&bob) }, ErrorCode::Conflict);
    match a.ok(Op::FriendRequest { user: uid(&bob) }) {
        OkBody::Friend(f) => assert_eq!(f.friend.state, FriendState::Outgoing),
        other => panic!("{other:?}"),
    }
    a.err(Op::FriendRequest { user: uid(&bob) }, ErrorCode::Conflict);
    let seen = friend_event(&mut b);
    assert_eq!(
        (seen.user.clone(), seen.username.as_str(), seen.state),
        (uid(&alice), "alice", FriendState::Incoming)
    );
    assert_eq!(friend_event(&mut a).state, FriendState::Outgoing);

    // Declined: gone on both sides.
    b.ok(Op::FriendDecline { user: uid(&alice) });
    assert_eq!(friend_event(&mut a).state, FriendState::None);
    assert!(friends(&mut a).is_empty() && friends(&mut b).is_empty());

    // Cancelled by the asker.
    a.ok(Op::FriendRequest { user: uid(&bob) });
    a.ok(Op::FriendCancel { user: uid(&bob) });
    b.err(Op::FriendAccept { user: uid(&alice) }, ErrorCode::Conflict);

    // Accepted: friends both ways, listed with presence (both are online).
    a.ok(Op::FriendRequest { user: uid(&bob) });
    b.ok(Op::FriendAccept { user: uid(&alice) });
    // (Events arrive in order: the earlier request and cancellation come first.)
    let states: Vec<FriendState> = (0..4).map(|_| friend_event(&mut a).state).collect();
    assert_eq!(
        states,
        [FriendState::Outgoing, FriendState::None, FriendState::Outgoing, FriendState::Friends]
    );
    let listed = friends(&mut a);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, FriendState::Friends);
    assert_eq!(listed[0].presence.as_ref().map(|p| p.status), Some(PresenceStatus::Online));

    // Asking someone who already asked you is accepting.
    c.ok(Op::FriendRequest { user: uid(&alice) });
    match a.ok(Op::FriendRequest { user: uid(&carol) }) {
        OkBody::Friend(f) => assert_eq!(f.friend.state, FriendState::Friends),
        other => panic!("{other:?}"),
    }
    assert_eq!(friends(&mut a).len(), 2);

    // Removed by either side.
    b.ok(Op::FriendRemove { user: uid(&alice) });
    a.err(Op::FriendRemove { user: uid(&bob) }, ErrorCode::Conflict);
    let listed = friends(&mut a);
    assert_eq!(listed.iter().map(|f| f.user.clone()).collect::<Vec<_>>(), [uid(&carol)]);
}

#[test]
fn a_block_stops_dms_requests_and_invitations_and_flags_messages_for_the_blocker_only() {
    let server = Server::start(&["--shards", "2"]);
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(|n| register(server.addr, n));
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let mut b = Client::login(server.addr, Codec::Rkyv, &bob);
    let mut c = Client::login(server.addr, Codec::Json, &carol);
    // Friends before: a block ends that too.
    b.ok(Op::FriendRequest { user: uid(&alice) });
    a.ok(Op::FriendAccept { user: uid(&bob) });
    let room = c.create_room("shared", RoomKind::Public);
    for client in [&mut a, &mut b, &mut c] {
        client.join(&room, None);
    }
    b.say(&room, "before", "said before the block");

    a.ok(Op::Block { user: uid(&bob) });
    a.ok(Op::Block { user: uid(&bob) }); // idempotent
    assert_eq!(
        b.wait_event(|e| match e {
            Event::Friend(f) if f.state == FriendState::None => Some(f.user.clone()),
            _ => None,
        }),
        uid(&alice)
    );
    match a.ok(Op::BlockList { limit: None, cursor: None }) {
        OkBody::Blocked(list) => assert_eq!(list.blocked, [uid(&bob)]),
        other => panic!("{other:?}"),
    }
    // The block list is the blocker's alone.
    match b.ok(Op::BlockList { limit: None, cursor: None }) {
        OkBody::Blocked(list) => assert!(list.blocked.is_empty()),
        other => panic!("{other:?}"),
    }

    // Bob cannot open a DM, ask for friendship, or invite alice; alice's own paths stay open
    // only after she unblocks.
    let dm = b.err(Op::DmOpen { user: uid(&alice) }, ErrorCode::Forbidden);
    assert!(dm.contains("does not accept"), "{dm}");
    b.err(Op::FriendRequest { user: uid(&alice) }, ErrorCode::Forbidden);
    a.err(Op::FriendRequest { user: uid(&bob) }, ErrorCode::Forbidden);
    let private = b.create_room("bob's den", RoomKind::Private);
    b.err(Op::RoomInvite { room: private.clone(), user: uid(&alice) }, ErrorCode::Forbidden);
    b.ok(Op::RoomInvite { room: private, user: uid(&carol) });

    // Bob's messages reach alice flagged, live and in history; carol sees them plainly.
    b.say(&room, "after", "said after the block");
    let live = a.wait_event(|e| match e {
        Event::Message(m) if m.text == "said after the block" => Some(m.clone()),
        _ => None,
    });
    assert!(live.blocked);
    let plain = c.wait_event(|e| match e {
        Event::Message(m) if m.text == "said after the block" => Some(m.clone()),
        _ => None,
    });
    assert!(!plain.blocked);
    let history = a.history(&room, None, None);
    assert!(history.iter().filter(|m| m.sender == uid(&bob)).all(|m| m.blocked));
    assert!(c.history(&room, None, None).iter().all(|m| !m.blocked));
    // A second device of alice's gets them flagged too (from the moment it connects).
    let mut a2 = Client::login(server.addr, Codec::Rkyv, &alice);
    a2.join(&room, Some(0));
    let replayed: Vec<bool> = (0..2).map(|_| a2.next_message().blocked).collect();
    assert_eq!(replayed, [true, true]);

    // Unblocked: everything works again.
    a.ok(Op::Unblock { user: uid(&bob) });
    b.ok(Op::DmOpen { user: uid(&alice) });
    b.ok(Op::FriendRequest { user: uid(&alice) });
    b.say(&room, "later", "friends again?");
    let live = a.wait_event(|e| match e {
        Event::Message(m) if m.text == "friends again?" => Some(m.clone()),
        _ => None,
    });
    assert!(!live.blocked);
}
