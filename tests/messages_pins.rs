//! Pinned messages: moderators (the room's `pin_role`) pin and unpin, each act a `system`
//! notice in the log; anyone who may read the room lists the pins, newest first, in both
//! codecs, across shards and a restart; a deleted message leaves the pins.

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests: failing loudly is the point")]

use palaver_e2e::{Client, Server, register};
use palaver_protocol::{
    Codec, ErrorCode, OkBody, Op, PinsOk, RoomId, RoomKind, RoomRole, RoomSettingsPatch, SystemAction,
};

fn pins(client: &mut Client, room: &RoomId, limit: Option<u32>, cursor: Option<String>) -> PinsOk {
    match client.ok(Op::PinList { room: room.clone(), limit, cursor }) {
        OkBody::Pins(page) => page,
        other => panic!("{other:?}"),
    }
}

fn pinned_seqs(page: &PinsOk) -> Vec<u64> {
    page.pins.iter().map(|p| p.message.seq).collect()
}

#[test]
fn moderators_pin_everyone_reads_the_pins_and_they_survive_a_restart() {
    let mut server = Server::start(&["--shards", "2"]);
    let alice = register(server.addr, "alice");
    let bob = register(server.addr, "bob");
    let carol = register(server.addr, "carol");
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let mut b = Client::login(server.addr, Codec::Rkyv, &bob);
    let mut c = Client::login(server.addr, Codec::Json, &carol);
    let room = a.create_room("pins", RoomKind::Public);
    a.join(&room, None);
    b.join(&room, None);
    let (rules, _) = a.say(&room, "r", "house rules: be kind");
    let (noon, _) = b.say(&room, "n", "standup at noon");
    let (gone, _) = b.say(&room, "g", "soon deleted");

    // Members do not pin by default; the owner (a moderator and more) does.
    b.err(Op::Pin { room: room.clone(), seq: rules }, ErrorCode::Forbidden);
    let notice = match a.ok(Op::Pin { room: room.clone(), seq: rules }) {
        OkBody::Sent(sent) => sent.seq,
        other => panic!("{other:?}"),
    };
    let seen = b.next_notice();
    let system = seen.system.as_deref().unwrap();
    assert_eq!((seen.seq, system.action, system.seq), (notice, SystemAction::Pinned, Some(rules)));
    assert_eq!(seen.text, "alice pinned a message");
    a.err(Op::Pin { room: room.clone(), seq: rules }, ErrorCode::Conflict);
    a.err(Op::Pin { room: room.clone(), seq: 999 }, ErrorCode::NotFound);

    // The room opens pinning to members.
    let settings = RoomSettingsPatch { pin_role: Some(RoomRole::Member), ..Default::default() };
    match a.ok(Op::RoomUpdate { room: room.clone(), name: None, topic: None, settings: Some(settings) }) {
        OkBody::RoomDetails(details) => assert_eq!(details.settings.pin_role, RoomRole::Member),
        other => panic!("{other:?}"),
    }
    b.ok(Op::Pin { room: room.clone(), seq: noon });
    b.ok(Op::Pin { room: room.clone(), seq: gone });

    // Anyone who may read the public room lists them, the most recently pinned first.
    let first = pins(&mut c, &room, Some(2), None);
    assert_eq!(pinned_seqs(&first), vec![gone, noon]);
    assert_eq!(first.pins[1].pinned_by.as_str(), bob.user_id);
    assert_eq!(first.pins[1].message.text, "standup at noon");
    let rest = pins(&mut c, &room, Some(2), first.next.clone());
    assert_eq!(pinned_seqs(&rest), vec![rules]);
    assert_eq!(rest.next, None);
    c.err(Op::PinList { room: room.clone(), limit: Some(101), cursor: None }, ErrorCode::Invalid);
    c.err(Op::Pin { room: room.clone(), seq: rules }, ErrorCode::Forbidden);

    // A deleted message leaves the pins; an unpin is a notice too.
    b.ok(Op::Delete { room: room.clone(), seq: gone });
    b.ok(Op::Unpin { room: room.clone(), seq: noon });
    b.err(Op::Unpin { room: room.clone(), seq: noon }, ErrorCode::Conflict);
    assert_eq!(pinned_seqs(&pins(&mut b, &room, None, None)), vec![rules]);

    let status = server.terminate();
    assert!(status.success(), "exit status {status}");
    server.restart();
    let mut b = Client::login(server.addr, Codec::Rkyv, &bob);
    let after = pins(&mut b, &room, None, None);
    assert_eq!(pinned_seqs(&after), vec![rules]);
    assert_eq!(after.pins[0].pinned_by.as_str(), alice.user_id);
    // The log holds every pin and unpin, in order.
    let actions: Vec<SystemAction> = b
        .history(&room, None, Some(100))
        .into_iter()
        .rev()
        .filter_map(|m| m.system.map(|s| s.action))
        .filter(|action| matches!(action, SystemAction::Pinned | SystemAction::Unpinned))
        .collect();
    use SystemAction::{Pinned, Unpinned};
    assert_eq!(actions, vec![Pinned, Pinned, Pinned, Unpinned]);
    b.ok(Op::Unpin { room: room.clone(), seq: rules });
    assert!(pins(&mut b, &room, None, None).pins.is_empty());
}

#[test]
fn a_private_rooms_pins_are_for_its_members() {
    let server = Server::start(&["--shards", "2"]);
    let alice = register(server.addr, "alice");
    let eve = register(server.addr, "eve");
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let mut e = Client::login(server.addr, Codec::Json, &eve);
    let room = a.create_room("private", RoomKind::Private);
    let (seq, _) = a.say(&room, "s", "secret");
    a.ok(Op::Pin { room: room.clone(), seq });
    e.err(Op::PinList { room: room.clone(), limit: None, cursor: None }, ErrorCode::Forbidden);
    e.err(Op::Unpin { room: room.clone(), seq }, ErrorCode::Forbidden);
    assert_eq!(pinned_seqs(&pins(&mut a, &room, None, None)), vec![seq]);
}
