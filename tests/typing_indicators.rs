//! Typing indicators: relayed to the other connected members only, never stored,
//! coalesced, and lapsing by themselves without renewal.

use palaver_e2e::{Client, Server, register};
use palaver_protocol::{Codec, ErrorCode, Event, Op, RoomId, RoomKind, Typing};

fn typing(client: &mut Client) -> Typing {
    loop {
        match client.next_event() {
            Event::Typing(t) => return t,
            // Someone joining the room is announced too; not what this test watches.
            Event::Member(_) => continue,
            other => panic!("expected a typing event, got {other:?}"),
        }
    }
}

#[test]
fn typing_reaches_other_members_coalesced_and_lapses_without_renewal() {
    let server = Server::start(&["--shards", "2", "--typing-timeout-secs", "1"]);
    let alice = register(server.addr, "alice");
    let bob = register(server.addr, "bob");
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let mut b = Client::login(server.addr, Codec::Rkyv, &bob);
    let room = a.create_room("chat", RoomKind::Public);
    a.join(&room, None);
    b.join(&room, None);

    // Start: bob sees it with its lifetime; a renewal right away is not re-announced.
    a.ok(Op::TypingStart { room: room.clone() });
    a.ok(Op::TypingStart { room: room.clone() });
    let t = typing(&mut b);
    assert_eq!((t.user.as_str(), t.active, t.expires_in_ms), (alice.user_id.as_str(), true, Some(1_000)));
    // A message ends the indicator without a separate event: no `active: false` comes
    // before the message. (On a very slow machine the renewal above may fall outside the
    // coalescing window and be announced once more; that is allowed.)
    a.say(&room, "m1", "done typing");
    loop {
        match b.next_event() {
            Event::Message(m) => {
                assert_eq!(m.text, "done typing");
                break;
            }
            Event::Typing(t) => assert!(t.active, "no stop event before the message"),
            Event::Member(_) => {}
            other => panic!("{other:?}"),
        }
    }

    // An explicit stop is announced.
    a.ok(Op::TypingStart { room: room.clone() });
    assert!(typing(&mut b).active);
    a.ok(Op::TypingStop { room: room.clone() });
    assert!(!typing(&mut b).active);

    // Without renewal the indicator lapses by itself (after ~1 s here).
    a.ok(Op::TypingStart { room: room.clone() });
    assert!(typing(&mut b).active);
    let lapsed = typing(&mut b);
    assert_eq!((lapsed.user.as_str(), lapsed.active), (alice.user_id.as_str(), false));

    // The typist's own socket never got any of it, and nothing was stored.
    a.ok(Op::Ping {});
    assert!(a.events.iter().all(|e| matches!(e, Event::Message(_) | Event::Member(_))), "{:?}", a.events);
    assert_eq!(a.history(&room, None, None).len(), 1);
}

#[test]
fn only_members_may_type() {
    let server = Server::start(&[]);
    let alice = register(server.addr, "alice");
    let mallory = register(server.addr, "mallory");
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let room = a.create_room("private", RoomKind::Private);
    let mut m = Client::login(server.addr, Codec::Json, &mallory);
    m.err(Op::TypingStart { room: room.clone() }, ErrorCode::Forbidden);
    m.err(Op::TypingStart { room: RoomId::parse("r_nosuchroom").unwrap() }, ErrorCode::NotFound);
}
