//! Private rooms and invitations end to end: an outsider can neither see nor enter a
//! private room until invited; the invitee hears of it at once, finds it in
//! `invite.list`, and accepts (joining) or declines; who may invite is a room setting.
#![allow(clippy::unwrap_used, reason = "tests")]

use palaver_e2e::{Client, Server, register, send_op};
use palaver_protocol::{Codec, ErrorCode, Event, OkBody, Op, RoomKind, RoomRole, RoomSettingsPatch, UserId};

fn uid(account: &palaver_e2e::Account) -> UserId {
    UserId::parse(&account.user_id).unwrap()
}

#[test]
fn an_outsider_sees_and_enters_a_private_room_only_once_invited() {
    let server = Server::start(&["--shards", "2"]);
    let [owner, olive, mallory] = ["owner", "olive", "mallory"].map(|n| register(server.addr, n));
    let mut o = Client::login(server.addr, Codec::Json, &owner);
    let mut ol = Client::login(server.addr, Codec::Rkyv, &olive);
    let mut ma = Client::login(server.addr, Codec::Json, &mallory);
    let room = o.create_room("secret plans", RoomKind::Private);
    o.join(&room, None);
    o.say(&room, "o1", "the plan");

    // Outsiders: no details, no members, no history, no entry, not listed, cannot send.
    for c in [&mut ol, &mut ma] {
        c.err(Op::RoomGet { room: room.clone() }, ErrorCode::Forbidden);
        c.err(Op::RoomMembers { room: room.clone(), limit: None, cursor: None }, ErrorCode::Forbidden);
        c.err(
            Op::History {
                room: room.clone(),
                before: None,
                after: None,
                limit: None,
                cursor: None,
                threads: Default::default(),
            },
            ErrorCode::Forbidden,
        );
        c.err(Op::Join { room: room.clone(), since: None }, ErrorCode::Forbidden);
        c.err(Op::InviteAccept { room: room.clone() }, ErrorCode::Forbidden);
        c.err(send_op(&room, "x", "let me in"), ErrorCode::Forbidden);
        // An outsider cannot invite anyone (themselves included).
        c.err(Op::RoomInvite { room: room.clone(), user: uid(&mallory) }, ErrorCode::Forbidden);
        match c.ok(Op::RoomList { query: Some("secret".into()), limit: None, cursor: None }) {
            OkBody::RoomList(list) => assert!(list.results.is_empty()),
            other => panic!("{other:?}"),
        }
    }

    // The invitation arrives live and is listed.
    o.ok(Op::RoomInvite { room: room.clone(), user: uid(&olive) });
    let invite = ol.wait_event(|e| match e {
        Event::Invite(i) => Some(i.clone()),
        _ => None,
    });
    assert_eq!((invite.room.room_id.clone(), invite.by.clone()), (room.clone(), uid(&owner)));
    assert_eq!(invite.room.name, "secret plans");
    match ol.ok(Op::InviteList { limit: None, cursor: None }) {
        OkBody::Invites(list) => assert_eq!(list.invites.len(), 1),
        other => panic!("{other:?}"),
    }
    // Invited: may look before deciding, still not a member.
    match ol.ok(Op::RoomGet { room: room.clone() }) {
        OkBody::RoomDetails(d) => assert_eq!((d.member_count, d.role), (1, None)),
        other => panic!("{other:?}"),
    }
    o.err(Op::RoomInvite { room: room.clone(), user: uid(&owner) }, ErrorCode::Conflict);

    // Accepting joins, replays nothing unasked, and the owner sees the member arrive.
    match ol.ok(Op::InviteAccept { room: room.clone() }) {
        OkBody::Joined(j) => assert_eq!(j.last_seq, 1),
        other => panic!("{other:?}"),
    }
    let joined = o.wait_event(|e| match e {
        Event::Member(m) => Some(m.clone()),
        _ => None,
    });
    assert_eq!((joined.user, joined.role), (uid(&olive), RoomRole::Member));
    assert_eq!(ol.history(&room, None, None).len(), 1);
    ol.say(&room, "ol1", "thanks for having me");
    assert_eq!(o.next_message().text, "thanks for having me");
    match ol.ok(Op::InviteList { limit: None, cursor: None }) {
        OkBody::Invites(list) => assert!(list.invites.is_empty()),
        other => panic!("{other:?}"),
    }

    // Mallory is still out; an invitation she declines lets her in no more than before.
    o.ok(Op::RoomInvite { room: room.clone(), user: uid(&mallory) });
    ma.ok(Op::InviteDecline { room: room.clone() });
    ma.err(Op::InviteDecline { room: room.clone() }, ErrorCode::Conflict);
    ma.err(Op::Join { room: room.clone(), since: None }, ErrorCode::Forbidden);
}

#[test]
fn who_may_invite_is_a_room_setting_and_invitations_survive_a_restart() {
    let mut server = Server::start(&[]);
    let [owner, member, guest] = ["owner", "member", "guest"].map(|n| register(server.addr, n));
    let mut o = Client::login(server.addr, Codec::Json, &owner);
    let room = o.create_room("club", RoomKind::Private);
    o.ok(Op::RoomInvite { room: room.clone(), user: uid(&member) });
    let mut m = Client::login(server.addr, Codec::Json, &member);
    m.ok(Op::InviteAccept { room: room.clone() });
    o.ok(Op::RoomUpdate {
        room: room.clone(),
        name: None,
        topic: None,
        settings: Some(RoomSettingsPatch { invite_role: Some(RoomRole::Moderator), ..Default::default() }),
    });
    m.err(Op::RoomInvite { room: room.clone(), user: uid(&guest) }, ErrorCode::Forbidden);
    o.ok(Op::RoleSet { room: room.clone(), user: uid(&member), role: RoomRole::Moderator });
    m.ok(Op::RoomInvite { room: room.clone(), user: uid(&guest) });
    drop((o, m));

    server.kill9();
    server.restart();
    let mut g = Client::login(server.addr, Codec::Rkyv, &guest);
    match g.ok(Op::InviteList { limit: None, cursor: None }) {
        OkBody::Invites(list) => {
            assert_eq!(list.invites.len(), 1);
            assert_eq!(list.invites[0].by, uid(&member));
        }
        other => panic!("{other:?}"),
    }
    g.ok(Op::InviteAccept { room: room.clone() });
    g.say(&room, "g1", "hello club");
}
