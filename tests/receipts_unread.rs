//! Delivered/read watermarks, coalesced receipt events, and unread counts from `sync`,
//! across shards and across a restart.

use palaver_e2e::{Client, Server, register};
use palaver_protocol::{Codec, ErrorCode, Event, OkBody, Op, RoomId, RoomKind, RoomSummary};

fn receipt(client: &mut Client, room: &RoomId, delivered: Option<u64>, read: Option<u64>) -> (u64, u64) {
    match client.ok(Op::Receipt { room: room.clone(), delivered, read }) {
        OkBody::Receipt(r) => (r.delivered, r.read),
        other => panic!("{other:?}"),
    }
}

fn sync(client: &mut Client, room: &RoomId) -> RoomSummary {
    match client.ok(Op::Sync { limit: None, cursor: None }) {
        OkBody::Sync(s) => s.rooms.into_iter().find(|r| &r.room.room_id == room).expect("room in sync"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn watermarks_unread_counts_and_receipt_events_survive_a_restart() {
    let mut server = Server::start(&["--shards", "2"]);
    let alice = register(server.addr, "alice");
    let bob = register(server.addr, "bob");
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let mut b = Client::login(server.addr, Codec::Rkyv, &bob);
    let one = a.create_room("one", RoomKind::Public);
    let two = a.create_room("two", RoomKind::Public);
    for room in [&one, &two] {
        a.join(room, None);
        b.join(room, None);
    }
    for i in 1..=5 {
        a.say(&one, &format!("one-{i}"), &format!("m{i}"));
    }
    for i in 1..=2 {
        a.say(&two, &format!("two-{i}"), &format!("n{i}"));
    }

    // Watermarks move forward only, are capped at the newest seq, read implies delivered.
    assert_eq!(receipt(&mut b, &one, Some(5), None), (5, 0));
    assert_eq!(receipt(&mut b, &one, None, Some(3)), (5, 3));
    assert_eq!(receipt(&mut b, &one, Some(1), Some(1)), (5, 3));
    assert_eq!(receipt(&mut b, &two, Some(99), None), (2, 0));
    b.err(Op::Receipt { room: one.clone(), delivered: None, read: None }, ErrorCode::Invalid);

    // Alice sees bob's receipts, coalesced: a few events at most, the last one current.
    let mut seen = Vec::new();
    while seen.last() != Some(&(one.clone(), 5, 3)) {
        if let Event::Receipt(r) = a.next_event()
            && r.user.as_str() == bob.user_id
        {
            seen.push((r.room, r.delivered, r.read));
        }
    }
    assert!(seen.iter().filter(|(room, _, _)| room == &one).count() <= 3, "not one event per op: {seen:?}");

    // Unread counts come from the watermarks; the sender's own messages count as read.
    let bob_one = sync(&mut b, &one);
    assert_eq!((bob_one.last_seq, bob_one.read, bob_one.unread), (5, 3, 2));
    assert_eq!(bob_one.last_message.as_ref().map(|m| m.text.as_str()), Some("m5"));
    assert_eq!(sync(&mut b, &two).unread, 2);
    assert_eq!(sync(&mut a, &one).unread, 0);
    assert_eq!(sync(&mut a, &two).unread, 0);

    assert!(server.terminate().success());
    server.restart();
    let mut b = Client::login(server.addr, Codec::Json, &bob);
    let bob_one = sync(&mut b, &one);
    assert_eq!((bob_one.delivered, bob_one.read, bob_one.unread), (5, 3, 2), "watermarks are durable");
    // And the room state machine reloaded them: no regression after the restart.
    assert_eq!(receipt(&mut b, &one, Some(4), Some(2)), (5, 3));
}

#[test]
fn outsiders_cannot_set_receipts() {
    let server = Server::start(&[]);
    let alice = register(server.addr, "alice");
    let mallory = register(server.addr, "mallory");
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let room = a.create_room("private", RoomKind::Private);
    let mut m = Client::login(server.addr, Codec::Json, &mallory);
    m.err(Op::Receipt { room: room.clone(), delivered: Some(1), read: None }, ErrorCode::Forbidden);
    match m.ok(Op::Sync { limit: None, cursor: None }) {
        OkBody::Sync(s) => assert!(s.rooms.is_empty(), "mallory is in no room"),
        other => panic!("{other:?}"),
    }
}
