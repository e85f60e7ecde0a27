//! Who read a message: from the members' watermarks, for members only, in both codecs,
//! across shards and a restart; members who keep their reads private are left out of
//! read lists and of `room.members`' read marks, and deliveries are listed.

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests: failing loudly is the point")]

use palaver_e2e::{Client, Server, register};
use palaver_protocol::{Codec, ErrorCode, MembersOk, OkBody, Op, ReceiptListOk, RoomId, RoomKind, UserId};

fn receipts(client: &mut Client, room: &RoomId, seq: u64, delivered: bool) -> ReceiptListOk {
    match client.ok(Op::ReceiptList { room: room.clone(), seq, delivered, limit: None, cursor: None }) {
        OkBody::ReceiptList(page) => page,
        other => panic!("{other:?}"),
    }
}

fn listed(page: &ReceiptListOk) -> Vec<(String, u64, Option<u64>)> {
    page.receipts.iter().map(|r| (r.user.to_string(), r.delivered, r.read)).collect()
}

/// Lists come in user-id order.
fn by_user(mut entries: Vec<(String, u64, Option<u64>)>) -> Vec<(String, u64, Option<u64>)> {
    entries.sort();
    entries
}

fn members(client: &mut Client, room: &RoomId) -> MembersOk {
    match client.ok(Op::RoomMembers { room: room.clone(), limit: None, cursor: None }) {
        OkBody::Members(page) => page,
        other => panic!("{other:?}"),
    }
}

fn read_mark(page: &MembersOk, user: &str) -> Option<u64> {
    page.members.iter().find(|m| m.user.as_str() == user).unwrap().read
}

fn share(client: &mut Client, share: bool) -> Option<bool> {
    let op = Op::UserUpdate {
        display_name: None,
        avatar: None,
        status_text: None,
        share_read_receipts: Some(share),
    };
    match client.ok(op) {
        OkBody::Profile(p) => p.profile.share_read_receipts,
        other => panic!("{other:?}"),
    }
}

#[test]
fn members_see_who_read_unless_a_reader_keeps_it_private_and_it_survives_a_restart() {
    let mut server = Server::start(&["--shards", "2"]);
    let [alice, bob, carol, dave] = ["alice", "bob", "carol", "dave"].map(|n| register(server.addr, n));
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let mut b = Client::login(server.addr, Codec::Rkyv, &bob);
    let mut c = Client::login(server.addr, Codec::Json, &carol);
    let mut d = Client::login(server.addr, Codec::Json, &dave);
    let room = a.create_room("read", RoomKind::Public);
    for client in [&mut a, &mut b, &mut c] {
        client.join(&room, None);
    }
    let (seq, _) = a.say(&room, "m1", "did everyone read this?");
    b.ok(Op::Receipt { room: room.clone(), delivered: None, read: Some(seq) });
    c.ok(Op::Receipt { room: room.clone(), delivered: Some(seq), read: None });

    // The sender is not listed; bob read it, carol only had it delivered.
    assert_eq!(listed(&receipts(&mut a, &room, seq, false)), vec![(bob.user_id.clone(), seq, Some(seq))]);
    let delivered = listed(&receipts(&mut b, &room, seq, true));
    assert_eq!(
        delivered,
        by_user(vec![(bob.user_id.clone(), seq, Some(seq)), (carol.user_id.clone(), seq, Some(0))])
    );

    // Carol keeps her reads private: she reads, and nobody sees it.
    assert_eq!(share(&mut c, false), Some(false));
    match b.ok(Op::UserGet { user: UserId::parse(&carol.user_id).unwrap() }) {
        OkBody::Profile(p) => assert_eq!(p.profile.share_read_receipts, None, "a private setting"),
        other => panic!("{other:?}"),
    }
    c.ok(Op::Receipt { room: room.clone(), delivered: None, read: Some(seq) });
    assert_eq!(listed(&receipts(&mut a, &room, seq, false)), vec![(bob.user_id.clone(), seq, Some(seq))]);
    let delivered = listed(&receipts(&mut a, &room, seq, true));
    assert_eq!(
        delivered,
        by_user(vec![(bob.user_id.clone(), seq, Some(seq)), (carol.user_id.clone(), seq, None)])
    );
    let page = members(&mut a, &room);
    assert_eq!((read_mark(&page, &bob.user_id), read_mark(&page, &carol.user_id)), (Some(seq), None));
    assert!(members(&mut d, &room).members.iter().all(|m| m.read.is_none()), "not to outsiders");

    // Refusals: outsiders, unknown messages, bad pages.
    let list =
        |seq, limit| Op::ReceiptList { room: room.clone(), seq, delivered: false, limit, cursor: None };
    d.err(list(seq, None), ErrorCode::Forbidden);
    a.err(list(99, None), ErrorCode::NotFound);
    a.err(list(seq, Some(0)), ErrorCode::Invalid);

    // A member who blocked the asker is not listed to them.
    b.ok(Op::Block { user: UserId::parse(&alice.user_id).unwrap() });
    assert!(receipts(&mut a, &room, seq, false).receipts.is_empty());
    b.ok(Op::Unblock { user: UserId::parse(&alice.user_id).unwrap() });

    let status = server.terminate();
    assert!(status.success(), "exit status {status}");
    server.restart();
    let mut a = Client::login(server.addr, Codec::Rkyv, &alice);
    let mut c = Client::login(server.addr, Codec::Json, &carol);
    assert_eq!(listed(&receipts(&mut a, &room, seq, false)), vec![(bob.user_id.clone(), seq, Some(seq))]);
    match c.ok(Op::UserGet { user: UserId::parse(&carol.user_id).unwrap() }) {
        OkBody::Profile(p) => assert_eq!(p.profile.share_read_receipts, Some(false)),
        other => panic!("{other:?}"),
    }
    // Sharing again shows her read mark.
    assert_eq!(share(&mut c, true), Some(true));
    let readers: Vec<String> =
        listed(&receipts(&mut a, &room, seq, false)).into_iter().map(|r| r.0).collect();
    let mut both = vec![bob.user_id.clone(), carol.user_id.clone()];
    both.sort();
    assert_eq!(readers, both);
}
