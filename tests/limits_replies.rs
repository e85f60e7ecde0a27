//! Lists, caps and memory that one user cannot blow up for another (or for themself):
//! every list reply is paged with a cursor and bounded in bytes, pending invitations are
//! capped per recipient, invitations and direct rooms aimed at strangers and room
//! creation are throttled, owned rooms are capped, and idle rooms leave memory.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::collections::BTreeSet;
use std::time::Duration;

use palaver_e2e::{Account, Client, Server, metric, register};
use palaver_protocol::paging::MAX_REPLY_BYTES;
use palaver_protocol::{
    Codec, ErrorCode, OkBody, Op, ReplyBody, RoomId, RoomKind, ServerFrame, UserId, limits,
};

fn uid(account: &Account) -> UserId {
    UserId::parse(&account.user_id).unwrap()
}

/// Sends `op` and returns the reply and its size as JSON.
fn sized(client: &mut Client, op: Op) -> (ReplyBody, usize) {
    let reply = client.request(op);
    let frame = ServerFrame::Reply { re: 1, body: reply };
    let size = Codec::Json.encode_server(&frame).unwrap().len();
    let ServerFrame::Reply { body, .. } = frame else { unreachable!() };
    (body, size)
}

fn befriend(a: &mut Client, a_id: &UserId, b: &mut Client, b_id: &UserId) {
    a.ok(Op::FriendRequest { user: b_id.clone() });
    b.ok(Op::FriendAccept { user: a_id.clone() });
}

#[test]
fn lists_are_paged_and_bounded_and_invitations_are_capped() {
    let server = Server::start(&[]);
    let victim_account = register(server.addr, "victim");
    let victim_id = uid(&victim_account);
    let mut victim = Client::login(server.addr, Codec::Json, &victim_account);
    // Sixteen friends, each with twenty rooms (the burst of room creation): six public
    // rooms the victim joins, fourteen private ones it is invited to.
    let mut public = Vec::new();
    let mut private = Vec::new();
    let long = "é".repeat(limits::DEFAULT_MAX_TEXT_CHARS);
    for f in 0..16 {
        let account = register(server.addr, &format!("friend{f}"));
        let mut friend = Client::login(server.addr, Codec::Rkyv, &account);
        befriend(&mut friend, &uid(&account), &mut victim, &victim_id);
        for r in 0..20 {
            if r < 6 {
                let room = friend.create_room(&format!("public {f}-{r}"), RoomKind::Public);
                friend.join(&room, None);
                friend.say(&room, &format!("c{f}-{r}"), &long);
                public.push(room);
            } else {
                let room = friend.create_room(&format!("private {f}-{r}"), RoomKind::Private);
                private.push((room, f));
            }
        }
        // Invitations go out only while there is room for them.
        for (room, _) in private.iter().filter(|(_, owner)| *owner == f) {
            let pending = private.iter().position(|(r, _)| r == room).unwrap();
            let invite = Op::RoomInvite { room: room.clone(), user: victim_id.clone() };
            if pending < limits::MAX_PENDING_INVITES {
                friend.ok(invite);
            } else {
                let refused = friend.err(invite, ErrorCode::Forbidden);
                assert!(refused.contains("pending invitations"), "{refused}");
            }
        }
    }
    assert!(private.len() > limits::MAX_PENDING_INVITES);
    for room in &public {
        victim.join(room, None);
    }
    victim.events.clear();

    // `sync`: every room, once, over pages that each stay under the reply bound (each
    // summary carries a 4 KB last message, so the bound ends pages before the limit).
    let mut seen = BTreeSet::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let (reply, size) = sized(&mut victim, Op::Sync { limit: Some(500), cursor: cursor.take() });
        assert!(size <= MAX_REPLY_BYTES + 1_024, "a sync page of {size} bytes");
        let ReplyBody::Ok(OkBody::Sync(page)) = reply else { panic!("{reply:?}") };
        pages += 1;
        for summary in page.rooms {
            assert!(seen.insert(summary.room.room_id), "a room came twice");
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), public.len());
    assert!(pages >= 4, "{pages} pages for {} KB of summaries", public.len() * 4);

    // `invite.list`: the capped count, paged by the limit.
    let mut invited = BTreeSet::new();
    let mut cursor = None;
    loop {
        let (reply, size) = sized(&mut victim, Op::InviteList { limit: Some(60), cursor: cursor.take() });
        assert!(size <= MAX_REPLY_BYTES);
        let ReplyBody::Ok(OkBody::Invites(page)) = reply else { panic!("{reply:?}") };
        assert!(page.invites.len() <= 60);
        invited.extend(page.invites.into_iter().map(|i| i.room.room_id));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(invited.len(), limits::MAX_PENDING_INVITES);
    // Declining one makes room for one more.
    let (first, _) = private.iter().find(|(r, _)| invited.contains(r)).unwrap().clone();
    victim.ok(Op::InviteDecline { room: first });

    // `friend.list` and `room.members`, paged.
    let (reply, _) = sized(&mut victim, Op::FriendList { limit: Some(10), cursor: None });
    let ReplyBody::Ok(OkBody::Friends(page)) = reply else { panic!("{reply:?}") };
    assert_eq!(page.friends.len(), 10);
    let next = page.next.unwrap();
    let (reply, _) = sized(&mut victim, Op::FriendList { limit: Some(10), cursor: Some(next) });
    let ReplyBody::Ok(OkBody::Friends(rest)) = reply else { panic!("{reply:?}") };
    assert_eq!(rest.friends.len(), 6);
    assert!(rest.next.is_none());
    assert!(page.friends.iter().all(|a| rest.friends.iter().all(|b| a.user < b.user)));

    // A cursor is for its own list only, and limits are bounded.
    let foreign = palaver_protocol::paging::encode_cursor("sync", "r_x");
    victim.err(Op::FriendList { limit: None, cursor: Some(foreign) }, ErrorCode::Invalid);
    victim.err(Op::Sync { limit: Some(501), cursor: None }, ErrorCode::Invalid);
    victim.err(Op::InviteList { limit: Some(0), cursor: None }, ErrorCode::Invalid);
}

#[test]
fn history_pages_forwards_and_backwards_with_cursors() {
    let server = Server::start(&[]);
    let alice = register(server.addr, "alice");
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let room = a.create_room("long", RoomKind::Public);
    a.join(&room, None);
    for i in 1..=120 {
        a.say(&room, &format!("c{i}"), &format!("message {i}"));
    }
    a.events.clear();
    let page = |a: &mut Client, before, after, limit, cursor| match a.ok(Op::History {
        room: room.clone(),
        before,
        after,
        limit,
        cursor,
        threads: Default::default(),
    }) {
        OkBody::History(h) => h,
        other => panic!("{other:?}"),
    };
    // Forwards from the start, oldest first, in pages of 50: 1-50, 51-100, 101-120.
    let mut forward = Vec::new();
    let mut next = page(&mut a, None, Some(0), None, None);
    loop {
        forward.extend(next.messages.iter().map(|m| m.seq));
        match next.next.clone() {
            Some(cursor) => next = page(&mut a, None, None, None, Some(cursor)),
            None => break,
        }
    }
    assert_eq!(forward, (1..=120).collect::<Vec<_>>());
    // Backwards from the newest, newest first, with cursors.
    let mut backward = Vec::new();
    let mut next = page(&mut a, None, None, Some(40), None);
    loop {
        backward.extend(next.messages.iter().map(|m| m.seq));
        match next.next.clone() {
            Some(cursor) => next = page(&mut a, None, None, Some(40), Some(cursor)),
            None => break,
        }
    }
    assert_eq!(backward, (1..=120).rev().collect::<Vec<_>>());
    // A window in the middle, and the mistakes.
    let middle = page(&mut a, None, Some(60), Some(5), None);
    assert_eq!(middle.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![61, 62, 63, 64, 65]);
    a.err(
        Op::History {
            room: room.clone(),
            before: Some(10),
            after: Some(5),
            limit: None,
            cursor: None,
            threads: Default::default(),
        },
        ErrorCode::Invalid,
    );
    let cursor = middle.next.unwrap();
    a.err(
        Op::History {
            room: room.clone(),
            before: Some(10),
            after: None,
            limit: None,
            cursor: Some(cursor),
            threads: Default::default(),
        },
        ErrorCode::Invalid,
    );
}

#[test]
fn unsolicited_invitations_direct_rooms_and_room_creation_are_throttled() {
    let server = Server::start(&["--max-rooms-per-user", "25"]);
    let spammer_account = register(server.addr, "spammer");
    let mut spammer = Client::login(server.addr, Codec::Json, &spammer_account);
    let targets: Vec<Account> = (0..60).map(|i| register(server.addr, &format!("target{i}"))).collect();

    // Direct rooms with strangers: twenty, then rate_limited with a hint.
    let mut refused = None;
    for (i, target) in targets.iter().enumerate() {
        match spammer.request(Op::DmOpen { user: uid(target) }) {
            ReplyBody::Ok(_) => assert!(i < 20),
            ReplyBody::Err(e) => {
                assert_eq!(e.code, ErrorCode::RateLimited);
                assert!(e.retry_after_ms.unwrap() > 0);
                refused = Some(i);
                break;
            }
        }
    }
    assert_eq!(refused, Some(20));
    // Re-opening one that exists is not a new unsolicited room.
    spammer.ok(Op::DmOpen { user: uid(&targets[0]) });
    // Many strangers together cannot bury one person either: fifty, then refused.
    let victim = &targets[59];
    let mut opened = 0;
    for target in &targets[..59] {
        let mut sender = Client::login(server.addr, Codec::Rkyv, target);
        match sender.request(Op::DmOpen { user: uid(victim) }) {
            ReplyBody::Ok(_) => opened += 1,
            ReplyBody::Err(e) => assert_eq!(e.code, ErrorCode::RateLimited),
        }
    }
    assert_eq!(opened, 50);

    // Room creation: a burst of twenty, then rate_limited.
    let mut created = Vec::new();
    loop {
        match spammer.request(Op::RoomCreate {
            name: format!("room {}", created.len()),
            kind: RoomKind::Private,
            topic: None,
            settings: None,
        }) {
            ReplyBody::Ok(OkBody::Room(r)) => created.push(r.room.room_id),
            ReplyBody::Err(e) => {
                assert_eq!(e.code, ErrorCode::RateLimited, "{e:?}");
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(created.len(), 20);
    // Invitations to strangers: twenty, then rate_limited.
    let room = created[0].clone();
    let mut invited = 0;
    for target in &targets[20..50] {
        match spammer.request(Op::RoomInvite { room: room.clone(), user: uid(target) }) {
            ReplyBody::Ok(_) => invited += 1,
            ReplyBody::Err(e) => {
                assert_eq!(e.code, ErrorCode::RateLimited);
                break;
            }
        }
    }
    assert_eq!(invited, 20);
}

#[test]
fn owned_rooms_are_capped() {
    let server = Server::start(&["--max-rooms-per-user", "5"]);
    let alice = register(server.addr, "alice");
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let create = |a: &mut Client, i| {
        a.request(Op::RoomCreate {
            name: format!("room {i}"),
            kind: RoomKind::Public,
            topic: None,
            settings: None,
        })
    };
    for i in 0..5 {
        assert!(matches!(create(&mut a, i), ReplyBody::Ok(_)));
    }
    match create(&mut a, 5) {
        ReplyBody::Err(e) => {
            assert_eq!(e.code, ErrorCode::Forbidden);
            assert!(e.message.contains("at most 5"), "{}", e.message);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn idle_rooms_leave_memory_and_come_back_unchanged() {
    let server = Server::start(&["--idle-room-secs", "1"]);
    let alice = register(server.addr, "alice");
    let bob = register(server.addr, "bob");
    // Rooms used once by a socket that then goes away: nothing ties them to memory.
    let mut creator = Client::login(server.addr, Codec::Json, &alice);
    let mut rooms: Vec<RoomId> = Vec::new();
    for i in 0..15 {
        let room = creator.create_room(&format!("room {i}"), RoomKind::Public);
        creator.join(&room, None);
        creator.say(&room, &format!("c{i}"), "hello");
        rooms.push(room);
    }
    creator.close();
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    // Bob stays subscribed to one room: it must stay live through the idle sweeps.
    let mut b = Client::login(server.addr, Codec::Json, &bob);
    let live = a.create_room("live", RoomKind::Public);
    b.join(&live, None);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while metric(server.addr, "palaver_rooms_unloaded_total") < 15 {
        assert!(std::time::Instant::now() < deadline, "idle rooms stayed in memory");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A room back from storage is the same room: members, messages and seqs go on.
    a.join(&rooms[3], None);
    assert_eq!(a.say(&rooms[3], "after", "back again"), (2, false));
    assert_eq!(a.history(&rooms[3], None, None).len(), 2);
    // The subscribed room kept its subscriber.
    a.join(&live, None);
    a.say(&live, "live1", "still here?");
    assert_eq!(b.next_message().text, "still here?");
}
