//! Who may do what in which room.

use palaver_e2e::{Client, Server, register, send_op};
use palaver_protocol::{Codec, ErrorCode, Op, RoomId, RoomKind};

#[test]
fn a_private_room_refuses_outsiders_for_join_send_and_history() {
    let server = Server::start(&[]);
    let owner = register(server.addr, "owner");
    let outsider = register(server.addr, "mallory");
    let mut o = Client::login(server.addr, Codec::Json, &owner);
    let room = o.create_room("secret", RoomKind::Private);
    o.join(&room, None);
    o.say(&room, "c1", "for members only");

    let mut m = Client::login(server.addr, Codec::Rkyv, &outsider);
    m.err(Op::Join { room: room.clone(), since: Some(0) }, ErrorCode::Forbidden);
    m.err(send_op(&room, "x", "let me in"), ErrorCode::Forbidden);
    m.err(
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
    // Nothing leaked and nothing was stored.
    assert!(m.events.is_empty());
    let history = o.history(&room, None, None);
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].text, "for members only");
}

#[test]
fn public_rooms_need_a_join_to_send_and_leave_stops_events() {
    let server = Server::start(&[]);
    let alice = register(server.addr, "alice");
    let bob = register(server.addr, "bob");
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let mut b = Client::login(server.addr, Codec::Json, &bob);
    let room = a.create_room("lobby", RoomKind::Public);
    a.join(&room, None);
    b.err(send_op(&room, "early", "hi"), ErrorCode::Forbidden);
    assert!(b.history(&room, None, None).is_empty(), "public history is readable");
    b.join(&room, None);
    b.say(&room, "b1", "hello");
    assert_eq!(a.next_message().text, "hello");
    assert_eq!(b.next_message().text, "hello");

    b.ok(Op::Leave { room: room.clone() });
    b.err(send_op(&room, "b2", "still here?"), ErrorCode::Forbidden);
    a.say(&room, "a1", "bob left");
    assert_eq!(a.next_message().text, "bob left");
    // Bob's socket gets no more events: the next frame he sees is his own ping's reply.
    b.ok(Op::Ping {});
    assert!(b.events.is_empty());
}

#[test]
fn unknown_rooms_are_not_found_and_bad_room_names_invalid() {
    let server = Server::start(&[]);
    let alice = register(server.addr, "alice");
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let ghost = RoomId::parse("r_doesnotexist").unwrap();
    a.err(Op::Join { room: ghost.clone(), since: None }, ErrorCode::NotFound);
    a.err(send_op(&ghost, "c", "hi"), ErrorCode::NotFound);
    a.err(
        Op::History {
            room: ghost,
            before: None,
            after: None,
            limit: None,
            cursor: None,
            threads: Default::default(),
        },
        ErrorCode::NotFound,
    );
    a.err(
        Op::RoomCreate { name: "  ".into(), kind: RoomKind::Public, topic: None, settings: None },
        ErrorCode::Invalid,
    );
    a.err(
        Op::RoomCreate { name: "x".repeat(101), kind: RoomKind::Public, topic: None, settings: None },
        ErrorCode::Invalid,
    );
    a.err(
        Op::RoomCreate { name: "bell\u{7}".into(), kind: RoomKind::Public, topic: None, settings: None },
        ErrorCode::Invalid,
    );
}
