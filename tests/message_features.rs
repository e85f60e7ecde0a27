//! Message features across two shards: kinds and files, replies (to a message later
//! deleted), edits (sender only, within the window), deletes (sender or moderator,
//! tombstones keep the seq), mentions with per-user mention counts, all durable.

#![allow(clippy::unwrap_used, reason = "test helpers: failing loudly is the point")]

use palaver_e2e::{Client, Server, png_bytes, register, upload};
use palaver_protocol::{
    ClientMsgId, Codec, ErrorCode, Event, FileRef, MessageKind, OkBody, Op, RoomId, RoomKind, SendOk,
};

fn send(
    room: &RoomId,
    cid: &str,
    kind: MessageKind,
    text: &str,
    reply_to: Option<u64>,
    file: Option<FileRef>,
) -> Op {
    Op::Send {
        room: room.clone(),
        cid: ClientMsgId::parse(cid).unwrap(),
        kind,
        text: text.into(),
        client_ts: None,
        reply_to,
        file: file.map(Box::new),
        encryption: None,
        also_to_room: false,
        thread: None,
    }
}

fn sent(body: OkBody) -> SendOk {
    match body {
        OkBody::Sent(s) => s,
        other => panic!("{other:?}"),
    }
}

/// Uploads a 640×480 PNG to `room` and returns the reference the server will store.
fn upload_png(server: &Server, token: &str, room: &RoomId) -> FileRef {
    let bytes = png_bytes(640, 480);
    let answer = upload(server.addr, token, room, "cat.png", &bytes);
    assert_eq!(answer.status, 201, "{:?}", answer.json());
    let json = answer.json();
    FileRef {
        file_id: json["file_id"].as_str().unwrap().into(),
        name: "cat.png".into(),
        size: bytes.len() as u64,
        content_type: "image/png".into(),
        width: Some(640),
        height: Some(480),
    }
}

#[test]
fn replies_edits_deletes_kinds_and_mentions() {
    let mut server = Server::start(&["--shards", "2"]);
    let alice = register(server.addr, "alice");
    let bob = register(server.addr, "bob");
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let mut b = Client::login(server.addr, Codec::Rkyv, &bob);
    let room = a.create_room("features", RoomKind::Public);
    a.join(&room, None);
    b.join(&room, None);
    let png = || upload_png(&server, &alice.access_token, &room);
    let cat = png();
    let png = || cat.clone();

    // 1: alice's text; 2: bob's reply to it; 3: alice's image with a caption; 4: a mention.
    a.say(&room, "a1", "the plan is ready");
    let op = send(&room, "b1", MessageKind::Text, "looks good", Some(1), None);
    assert_eq!(sent(b.ok(op)).seq, 2);
    let op = send(&room, "a2", MessageKind::Image, "our cat", None, Some(png()));
    assert_eq!(sent(a.ok(op)).seq, 3);
    let op = send(&room, "a3", MessageKind::Text, "@BOB can you check? cc @nobody", None, None);
    assert_eq!(sent(a.ok(op)).seq, 4);

    // Refusals: kinds and replies are validated.
    let op = send(&room, "x1", MessageKind::Text, "hi", None, Some(png()));
    a.err(op, ErrorCode::Invalid);
    let op = send(&room, "x2", MessageKind::Image, "no file", None, None);
    a.err(op, ErrorCode::Invalid);
    let op = send(&room, "x3", MessageKind::System, "I am the server", None, None);
    a.err(op, ErrorCode::Invalid);
    let op = send(&room, "x4", MessageKind::Text, "reply to nothing", Some(99), None);
    a.err(op, ErrorCode::NotFound);

    // Live events carry reply, file and mentions.
    let live: Vec<_> = (0..4).map(|_| b.next_message()).collect();
    assert_eq!(live[1].reply_to, Some(1));
    assert_eq!((live[2].kind, live[2].file.as_deref()), (MessageKind::Image, Some(&png())));
    assert_eq!(live[3].mentions.iter().map(|u| u.as_str()).collect::<Vec<_>>(), vec![bob.user_id.as_str()]);

    // Edits: only the sender, and the edit reaches the room.
    a.err(Op::Edit { room: room.clone(), seq: 2, text: "hijacked".into() }, ErrorCode::Forbidden);
    match b.ok(Op::Edit { room: room.clone(), seq: 2, text: "looks great".into() }) {
        OkBody::Edited(e) => assert_eq!(e.seq, 2),
        other => panic!("{other:?}"),
    }
    loop {
        if let Event::Edit(e) = a.next_event() {
            assert_eq!((e.seq, e.text.as_str()), (2, "looks great"));
            break;
        }
    }

    // Deletes: bob may not delete alice's message; alice (the owner, a moderator) may
    // delete bob's, and her own.
    b.err(Op::Delete { room: room.clone(), seq: 1 }, ErrorCode::Forbidden);
    a.ok(Op::Delete { room: room.clone(), seq: 1 });
    a.ok(Op::Delete { room: room.clone(), seq: 1 });
    loop {
        if let Event::Delete(d) = b.next_event() {
            assert_eq!((d.seq, d.by.as_str()), (1, alice.user_id.as_str()));
            break;
        }
    }
    b.err(Op::Edit { room: room.clone(), seq: 1, text: "zombie".into() }, ErrorCode::NotFound);

    // Bob's mention count, then read.
    let bob_summary = |b: &mut Client| match b.ok(Op::Sync { limit: None, cursor: None }) {
        OkBody::Sync(s) => s.rooms.into_iter().find(|r| r.room.room_id == room).unwrap(),
        other => panic!("{other:?}"),
    };
    let summary = bob_summary(&mut b);
    assert_eq!((summary.unread, summary.mentions), (2, 1), "messages 3 and 4 unread, 4 mentions bob");
    b.ok(Op::Receipt { room: room.clone(), delivered: None, read: Some(4) });
    assert_eq!(bob_summary(&mut b).mentions, 0);

    // Everything is durable: after a restart, history shows the tombstone (seq kept, no
    // gap), the reply's preview of a deleted parent, the edit, the file and the mention.
    assert!(server.terminate().success());
    server.restart();
    let mut b = Client::login(server.addr, Codec::Json, &bob);
    let history = b.history(&room, None, None);
    let seqs: Vec<u64> = history.iter().map(|m| m.seq).rev().collect();
    assert_eq!(seqs, vec![1, 2, 3, 4], "a tombstone keeps its seq");
    let by_seq = |seq: u64| history.iter().find(|m| m.seq == seq).unwrap();
    assert!(by_seq(1).deleted && by_seq(1).text.is_empty(), "deleted content is gone");
    let reply = by_seq(2).reply.clone().expect("reply preview");
    assert_eq!((reply.seq, reply.deleted, reply.excerpt.as_str()), (1, true, ""));
    assert_eq!((by_seq(2).text.as_str(), by_seq(2).edited_at.is_some()), ("looks great", true));
    assert_eq!(by_seq(3).file.as_deref(), Some(&png()));
    assert_eq!(by_seq(4).mentions.len(), 1);
}

#[test]
fn edits_close_after_the_window() {
    let server = Server::start(&["--edit-window-secs", "1"]);
    let alice = register(server.addr, "alice");
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let room = a.create_room("window", RoomKind::Public);
    a.join(&room, None);
    a.say(&room, "a1", "typo");
    std::thread::sleep(std::time::Duration::from_millis(1_500));
    a.err(Op::Edit { room: room.clone(), seq: 1, text: "fixed".into() }, ErrorCode::Forbidden);
}
