//! Forwarding: a forward refers to its original and carries a comment; readers see the
//! original's content only if they may read its room, in both codecs, across shards and
//! a restart; the original's room must be readable by the forwarder.

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests: failing loudly is the point")]

use palaver_e2e::{Client, Server, register};
use palaver_protocol::{ClientMsgId, Codec, ErrorCode, Message, OkBody, Op, RoomId, RoomKind, SendOk};

fn forward(room: &RoomId, cid: &str, from_room: &RoomId, seq: u64, text: &str) -> Op {
    Op::Forward {
        room: room.clone(),
        cid: ClientMsgId::parse(cid).unwrap(),
        from_room: from_room.clone(),
        seq,
        text: text.into(),
    }
}

fn sent(body: OkBody) -> SendOk {
    match body {
        OkBody::Sent(sent) => sent,
        other => panic!("{other:?}"),
    }
}

fn message(client: &mut Client, room: &RoomId, seq: u64) -> Message {
    client.history(room, None, Some(100)).into_iter().find(|m| m.seq == seq).unwrap()
}

#[test]
fn a_forward_shows_its_original_only_to_readers_of_the_originals_room() {
    let mut server = Server::start(&["--shards", "2"]);
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(|n| register(server.addr, n));
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let mut b = Client::login(server.addr, Codec::Rkyv, &bob);
    let mut c = Client::login(server.addr, Codec::Json, &carol);
    let secret = a.create_room("secret", RoomKind::Private);
    let lobby = a.create_room("lobby", RoomKind::Public);
    for client in [&mut a, &mut b, &mut c] {
        client.join(&lobby, None);
    }
    let (plan, _) = a.say(&secret, "s1", "the launch is on friday");
    let (hi, _) = b.say(&lobby, "b1", "hi all");

    // Alice forwards from her private room; the live event carries only the reference.
    let op = forward(&lobby, "f1", &secret, plan, "fyi");
    let forwarded = sent(a.ok(op.clone())).seq;
    assert!(sent(a.ok(op)).duplicate, "a retry with the same cid is the same message");
    let live = b.wait_event(|e| match e {
        palaver_protocol::Event::Message(m) if m.seq == forwarded => Some(m.clone()),
        _ => None,
    });
    let reference = live.forward.as_deref().unwrap();
    assert_eq!((&reference.room, reference.seq, reference.source.is_none()), (&secret, plan, true));
    assert_eq!(live.text, "fyi");

    // In history, the original shows to those who may read its room.
    let shown = message(&mut a, &lobby, forwarded).forward.unwrap().source.unwrap();
    assert_eq!(
        (shown.text.as_str(), shown.sender.as_str()),
        ("the launch is on friday", alice.user_id.as_str())
    );
    assert!(message(&mut b, &lobby, forwarded).forward.unwrap().source.is_none());
    assert!(message(&mut c, &lobby, forwarded).forward.unwrap().source.is_none());

    // Bob may not forward from a room he cannot read; from the lobby he may, without a comment.
    b.err(forward(&lobby, "f2", &secret, plan, ""), ErrorCode::Forbidden);
    b.err(forward(&lobby, "f3", &lobby, 999, ""), ErrorCode::NotFound);
    let other = RoomId::parse("r_nosuchroom").unwrap();
    b.err(forward(&lobby, "f4", &other, 1, ""), ErrorCode::NotFound);
    let again = sent(b.ok(forward(&lobby, "f5", &lobby, hi, ""))).seq;
    assert_eq!(message(&mut c, &lobby, again).forward.unwrap().source.unwrap().text, "hi all");
    // Forwarding into a room the forwarder is not a member of is refused like a send.
    b.err(forward(&secret, "f6", &lobby, hi, ""), ErrorCode::Forbidden);

    // The reference is stored: after a restart, readers still see the original.
    let status = server.terminate();
    assert!(status.success(), "exit status {status}");
    server.restart();
    let mut a = Client::login(server.addr, Codec::Rkyv, &alice);
    let stored = message(&mut a, &lobby, forwarded);
    assert_eq!(stored.forward.unwrap().source.unwrap().text, "the launch is on friday");
    // A deleted original shows as deleted.
    a.ok(Op::Delete { room: secret.clone(), seq: plan });
    assert!(message(&mut a, &lobby, forwarded).forward.unwrap().source.unwrap().deleted);
}
