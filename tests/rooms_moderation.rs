//! Roles and moderation end to end: every action refused (`forbidden`) for a member who
//! lacks the permission and carried out for one who has it, stored as a `system` message
//! that members receive live and find in history; bans that keep a user out; mutes that
//! end by themselves; slow mode, member limits, file sharing and ownership rules.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::time::{Duration, Instant};

use palaver_e2e::{Client, Server, register, send_op};
use palaver_protocol::{
    ClientMsgId, Codec, ErrorCode, Event, FileRef, MemberChange, MessageKind, OkBody, Op, RoomId, RoomKind,
    RoomRole, RoomSettingsPatch, SystemAction, UserId,
};

fn uid(account: &palaver_e2e::Account) -> UserId {
    UserId::parse(&account.user_id).unwrap()
}

/// The next `system` message recording `action`, skipping everything else.
fn notice_of(client: &mut Client, action: SystemAction) -> palaver_protocol::Message {
    client.wait_event(|e| match e {
        Event::Message(m) if m.system.as_ref().is_some_and(|s| s.action == action) => Some(m.clone()),
        _ => None,
    })
}

fn seq_of(ok: OkBody) -> u64 {
    match ok {
        OkBody::Sent(sent) => sent.seq,
        other => panic!("{other:?}"),
    }
}

#[test]
fn each_moderation_action_needs_its_role_and_is_stored_as_a_notice() {
    let server = Server::start(&["--shards", "2"]);
    let [owner, admin, moder, alice, bob] =
        ["owner", "admin", "moder", "alice", "bob"].map(|n| register(server.addr, n));
    let mut o = Client::login(server.addr, Codec::Json, &owner);
    let mut ad = Client::login(server.addr, Codec::Rkyv, &admin);
    let mut m = Client::login(server.addr, Codec::Json, &moder);
    let mut a = Client::login(server.addr, Codec::Rkyv, &alice);
    let mut b = Client::login(server.addr, Codec::Json, &bob);
    let room = o.create_room("town square", RoomKind::Public);
    for c in [&mut o, &mut ad, &mut m, &mut a, &mut b] {
        c.join(&room, None);
    }
    // Members see others join.
    let joined = o.wait_event(|e| match e {
        Event::Member(ev) if ev.user == uid(&bob) => Some(ev.change),
        _ => None,
    });
    assert_eq!(joined, MemberChange::Joined);

    // Roles: only an admin or the owner gives them, and only below their own.
    let role_set =
        |user: &palaver_e2e::Account, role| Op::RoleSet { room: room.clone(), user: uid(user), role };
    a.err(role_set(&bob, RoomRole::Moderator), ErrorCode::Forbidden);
    o.err(role_set(&admin, RoomRole::Owner), ErrorCode::Invalid);
    let seq = seq_of(o.ok(role_set(&admin, RoomRole::Admin)));
    ad.err(role_set(&moder, RoomRole::Admin), ErrorCode::Forbidden);
    ad.ok(role_set(&moder, RoomRole::Moderator));
    m.err(role_set(&alice, RoomRole::Moderator), ErrorCode::Forbidden);
    let role_notice = notice_of(&mut b, SystemAction::RoleChanged);
    assert_eq!(role_notice.seq, seq);
    assert_eq!(role_notice.kind, MessageKind::System);
    let system = role_notice.system.unwrap();
    assert_eq!(
        (system.action, system.target, system.role),
        (SystemAction::RoleChanged, Some(uid(&admin)), Some(RoomRole::Admin))
    );
    assert!(role_notice.text.contains("owner") && role_notice.text.contains("admin"), "{}", role_notice.text);

    // Delete others' messages: moderators and above.
    let (bobs, _) = b.say(&room, "b1", "spam spam");
    a.err(Op::Delete { room: room.clone(), seq: bobs }, ErrorCode::Forbidden);
    m.ok(Op::Delete { room: room.clone(), seq: bobs });

    // Kick: a member may not; a moderator may kick a member but not an admin.
    let kick = |user: &palaver_e2e::Account| Op::Kick {
        room: room.clone(),
        user: uid(user),
        reason: Some("calm down".into()),
    };
    a.err(kick(&bob), ErrorCode::Forbidden);
    m.err(kick(&admin), ErrorCode::Forbidden);
    m.err(kick(&owner), ErrorCode::Forbidden);
    m.ok(kick(&bob));
    let kicked = notice_of(&mut b, SystemAction::Kicked);
    let system = kicked.system.unwrap();
    assert_eq!((system.action, system.reason.as_deref()), (SystemAction::Kicked, Some("calm down")));
    // A kicked member is out (no more events, cannot send) but may come back to a public room.
    b.err(send_op(&room, "b2", "hello?"), ErrorCode::Forbidden);
    b.join(&room, None);
    b.say(&room, "b3", "back");

    // Mute: moderators mute members; the muted cannot send.
    let mute = |user: &palaver_e2e::Account, secs| Op::Mute {
        room: room.clone(),
        user: uid(user),
        duration_secs: secs,
        reason: None,
    };
    b.err(mute(&alice, 60), ErrorCode::Forbidden);
    m.ok(mute(&alice, 3_600));
    a.err(send_op(&room, "a1", "can I talk?"), ErrorCode::Forbidden);
    a.err(Op::Unmute { room: room.clone(), user: uid(&alice) }, ErrorCode::Forbidden);
    m.ok(Op::Unmute { room: room.clone(), user: uid(&alice) });
    a.say(&room, "a2", "thanks");

    // Settings: admins and the owner only.
    let update = |slow| Op::RoomUpdate {
        room: room.clone(),
        name: None,
        topic: Some("rules: be kind".into()),
        settings: Some(RoomSettingsPatch { slow_mode_secs: Some(slow), ..Default::default() }),
    };
    m.err(update(30), ErrorCode::Forbidden);
    match ad.ok(update(30)) {
        OkBody::RoomDetails(d) => {
            assert_eq!((d.room.topic.as_str(), d.settings.slow_mode_secs), ("rules: be kind", 30));
        }
        other => panic!("{other:?}"),
    }
    // Slow mode: a member waits between messages, a moderator does not.
    a.say(&room, "a3", "first");
    let wait = a.request(send_op(&room, "a4", "second"));
    match wait {
        palaver_protocol::ReplyBody::Err(e) => {
            assert_eq!(e.code, ErrorCode::RateLimited);
            assert!(e.retry_after_ms.is_some_and(|ms| ms > 0 && ms <= 30_000), "{e:?}");
        }
        other => panic!("slow mode let a member send twice: {other:?}"),
    }
    m.say(&room, "m1", "one");
    m.say(&room, "m2", "two");

    // Ban: refused to members, keeps the user out (no join, no invitation) until unbanned.
    let ban = |user: &palaver_e2e::Account| Op::Ban { room: room.clone(), user: uid(user), reason: None };
    a.err(ban(&bob), ErrorCode::Forbidden);
    m.ok(ban(&bob));
    b.err(Op::Join { room: room.clone(), since: None }, ErrorCode::Forbidden);
    o.err(Op::RoomInvite { room: room.clone(), user: uid(&bob) }, ErrorCode::Forbidden);
    m.err(ban(&bob), ErrorCode::Conflict);
    a.err(Op::Unban { room: room.clone(), user: uid(&bob) }, ErrorCode::Forbidden);
    m.ok(Op::Unban { room: room.clone(), user: uid(&bob) });
    b.join(&room, None);

    // Ownership: the owner cannot leave; transfer is the owner's alone and makes them admin.
    o.err(Op::Leave { room: room.clone() }, ErrorCode::Conflict);
    ad.err(Op::RoomTransfer { room: room.clone(), user: uid(&alice) }, ErrorCode::Forbidden);
    o.ok(Op::RoomTransfer { room: room.clone(), user: uid(&alice) });
    match o.ok(Op::RoomGet { room: room.clone() }) {
        OkBody::RoomDetails(d) => assert_eq!(d.role, Some(RoomRole::Admin)),
        other => panic!("{other:?}"),
    }
    o.ok(Op::Leave { room: room.clone() });

    // Every action is in the log, in order, for anyone reading history.
    let actions: Vec<SystemAction> = b
        .history(&room, None, Some(100))
        .into_iter()
        .rev()
        .filter_map(|msg| msg.system.map(|s| s.action))
        .collect();
    assert_eq!(
        actions,
        [
            SystemAction::RoleChanged,
            SystemAction::RoleChanged,
            SystemAction::Kicked,
            SystemAction::Muted,
            SystemAction::Unmuted,
            SystemAction::SettingsChanged,
            SystemAction::Banned,
            SystemAction::Unbanned,
            SystemAction::OwnershipTransferred,
        ]
    );

    // The new owner deletes the room: it is gone for everyone.
    ad.err(Op::RoomDelete { room: room.clone() }, ErrorCode::Forbidden);
    a.ok(Op::RoomDelete { room: room.clone() });
    let last = notice_of(&mut b, SystemAction::RoomDeleted);
    assert!(last.text.contains("deleted"), "{}", last.text);
    b.err(Op::Join { room: room.clone(), since: None }, ErrorCode::NotFound);
    b.err(send_op(&room, "b9", "anyone?"), ErrorCode::NotFound);
}

#[test]
fn a_mute_ends_by_itself() {
    let server = Server::start(&[]);
    let [owner, alice] = ["owner", "alice"].map(|n| register(server.addr, n));
    let mut o = Client::login(server.addr, Codec::Json, &owner);
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let room = o.create_room("quiet", RoomKind::Public);
    a.join(&room, None);
    let muted =
        seq_of(o.ok(Op::Mute { room: room.clone(), user: uid(&alice), duration_secs: 3, reason: None }));
    let muted_notice = notice_of(&mut a, SystemAction::Muted);
    assert_eq!(muted_notice.seq, muted);
    assert!(muted_notice.text.contains("3 seconds"), "{}", muted_notice.text);
    let until = muted_notice.system.unwrap().until.unwrap();
    a.err(send_op(&room, "early", "let me speak"), ErrorCode::Forbidden);
    // Retry until the mute has run out (bounded): then the same member may send again.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match a.request(send_op(&room, &format!("try-{attempt}"), "free again")) {
            palaver_protocol::ReplyBody::Ok(_) => break,
            palaver_protocol::ReplyBody::Err(e) => {
                assert_eq!(e.code, ErrorCode::Forbidden, "{e:?}");
                assert!(Instant::now() < deadline, "mute until {until} never ended");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    // The stored mute survives a restart only while it lasts: after it, sending works.
    let mut server = server;
    server.kill9();
    server.restart();
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    a.say(&room, "after-restart", "still free");
}

#[test]
fn bans_mutes_and_roles_survive_a_restart() {
    let mut server = Server::start(&[]);
    let [owner, alice, bob] = ["owner", "alice", "bob"].map(|n| register(server.addr, n));
    let mut o = Client::login(server.addr, Codec::Json, &owner);
    let room = o.create_room("durable rules", RoomKind::Public);
    for account in [&alice, &bob] {
        Client::login(server.addr, Codec::Json, account).join(&room, None);
    }
    o.ok(Op::RoleSet { room: room.clone(), user: uid(&alice), role: RoomRole::Moderator });
    o.ok(Op::Ban { room: room.clone(), user: uid(&bob), reason: Some("rude".into()) });
    o.ok(Op::Mute { room: room.clone(), user: uid(&alice), duration_secs: 3_600, reason: None });
    drop(o);
    server.kill9();
    server.restart();
    let mut b = Client::login(server.addr, Codec::Json, &bob);
    b.err(Op::Join { room: room.clone(), since: None }, ErrorCode::Forbidden);
    let mut a = Client::login(server.addr, Codec::Rkyv, &alice);
    a.err(send_op(&room, "a1", "muted still"), ErrorCode::Forbidden);
    match a.ok(Op::RoomGet { room: room.clone() }) {
        OkBody::RoomDetails(d) => assert_eq!((d.role, d.member_count), (Some(RoomRole::Moderator), 2)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn member_limits_file_sharing_and_member_pages() {
    let server = Server::start(&["--max-room-members", "500"]);
    let owner = register(server.addr, "owner");
    let mut o = Client::login(server.addr, Codec::Json, &owner);
    // Settings are checked at creation: above the server's cap is refused.
    let create = |max| Op::RoomCreate {
        name: "small".into(),
        kind: RoomKind::Public,
        topic: Some("a small room".into()),
        settings: Some(RoomSettingsPatch {
            max_members: Some(max),
            file_sharing: Some(false),
            ..Default::default()
        }),
    };
    o.err(create(501), ErrorCode::Invalid);
    let room = match o.ok(create(3)) {
        OkBody::Room(r) => {
            assert_eq!(r.room.topic, "a small room");
            r.room.room_id
        }
        other => panic!("{other:?}"),
    };
    let others: Vec<_> = ["amy", "ben", "cat"].iter().map(|n| register(server.addr, n)).collect();
    let mut clients: Vec<Client> =
        others.iter().map(|acc| Client::login(server.addr, Codec::Json, acc)).collect();
    clients[0].join(&room, None);
    clients[1].join(&room, None);
    let full = clients[2].err(Op::Join { room: room.clone(), since: None }, ErrorCode::Forbidden);
    assert!(full.contains("full"), "{full}");

    // Files are refused while file sharing is off.
    let file = Op::Send {
        room: room.clone(),
        cid: ClientMsgId::parse("f1").unwrap(),
        kind: MessageKind::File,
        text: String::new(),
        client_ts: None,
        reply_to: None,
        file: Some(Box::new(FileRef {
            file_id: "f_1".into(),
            name: "notes.txt".into(),
            size: 5,
            content_type: "text/plain".into(),
            width: None,
            height: None,
        })),
        encryption: None,
        also_to_room: false,
        thread: None,
    };
    clients[0].err(file, ErrorCode::Forbidden);

    // Members, paged, with roles.
    let page = |c: &mut Client, cursor: Option<String>| match c.ok(Op::RoomMembers {
        room: room.clone(),
        limit: Some(2),
        cursor,
    }) {
        OkBody::Members(page) => page,
        other => panic!("{other:?}"),
    };
    let first = page(&mut clients[0], None);
    assert_eq!(first.members.len(), 2);
    let second = page(&mut clients[0], first.next.clone());
    assert_eq!(second.members.len(), 1);
    assert!(second.next.is_none());
    let all: Vec<_> = first.members.iter().chain(&second.members).collect();
    assert!(all.windows(2).all(|w| w[0].user < w[1].user));
    let owner_entry = all.iter().find(|m| m.user == uid(&owner)).unwrap();
    assert_eq!((owner_entry.role, owner_entry.username.as_str()), (RoomRole::Owner, "owner"));
    assert!(all.iter().filter(|m| m.user != uid(&owner)).all(|m| m.role == RoomRole::Member));
}

#[test]
fn direct_rooms_have_no_moderation() {
    let server = Server::start(&[]);
    let [alice, bob] = ["alice", "bob"].map(|n| register(server.addr, n));
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let room: RoomId = match a.ok(Op::DmOpen { user: uid(&bob) }) {
        OkBody::Room(r) => r.room.room_id,
        other => panic!("{other:?}"),
    };
    a.err(Op::Kick { room: room.clone(), user: uid(&bob), reason: None }, ErrorCode::Forbidden);
    a.err(Op::RoomInvite { room: room.clone(), user: uid(&bob) }, ErrorCode::Forbidden);
    a.err(Op::RoomDelete { room: room.clone() }, ErrorCode::Forbidden);
}
