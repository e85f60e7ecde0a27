//! A message's earlier texts: members page through them oldest first, in both codecs,
//! across shards and a restart; outsiders, bad pages and deleted messages are refused.

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests: failing loudly is the point")]

use palaver_e2e::{Client, Server, register};
use palaver_protocol::{Codec, EditsOk, ErrorCode, OkBody, Op, RoomId, RoomKind};

fn edits(
    client: &mut Client,
    room: &RoomId,
    seq: u64,
    limit: Option<u32>,
    cursor: Option<String>,
) -> EditsOk {
    match client.ok(Op::EditList { room: room.clone(), seq, limit, cursor }) {
        OkBody::Edits(page) => page,
        other => panic!("{other:?}"),
    }
}

fn texts(page: &EditsOk) -> Vec<&str> {
    page.versions.iter().map(|v| v.text.as_str()).collect()
}

#[test]
fn members_page_through_earlier_texts_which_survive_a_restart_and_go_with_a_delete() {
    let mut server = Server::start(&["--shards", "2"]);
    let alice = register(server.addr, "alice");
    let bob = register(server.addr, "bob");
    let carol = register(server.addr, "carol");
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let mut b = Client::login(server.addr, Codec::Rkyv, &bob);
    let mut c = Client::login(server.addr, Codec::Json, &carol);
    let room = a.create_room("drafts", RoomKind::Public);
    a.join(&room, None);
    b.join(&room, None);

    let (seq, _) = a.say(&room, "m1", "draft one");
    for text in ["draft two", "draft three", "final"] {
        a.ok(Op::Edit { room: room.clone(), seq, text: text.into() });
    }
    let (plain, _) = a.say(&room, "m2", "never edited");

    // Bob (rkyv) pages two at a time; the times the texts were replaced increase.
    let first = edits(&mut b, &room, seq, Some(2), None);
    assert_eq!(first.seq, seq);
    assert_eq!(texts(&first), vec!["draft one", "draft two"]);
    let rest = edits(&mut b, &room, seq, Some(2), first.next.clone());
    assert_eq!(texts(&rest), vec!["draft three"]);
    assert_eq!(rest.next, None);
    let times: Vec<u64> = first.versions.iter().chain(&rest.versions).map(|v| v.replaced_at).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    assert!(edits(&mut a, &room, plain, None, None).versions.is_empty());

    // Refusals: outsiders (even of a public room), bad pages, unknown messages.
    c.err(Op::EditList { room: room.clone(), seq, limit: None, cursor: None }, ErrorCode::Forbidden);
    b.err(Op::EditList { room: room.clone(), seq, limit: Some(0), cursor: None }, ErrorCode::Invalid);
    let cursor = Some("bm90IGEgY3Vyc29y".to_owned());
    b.err(Op::EditList { room: room.clone(), seq, limit: None, cursor }, ErrorCode::Invalid);
    b.err(Op::EditList { room: room.clone(), seq: 99, limit: None, cursor: None }, ErrorCode::NotFound);
    let raw = br#"{"id":77,"op":"edit.list","room":"r_x","seq":-1}"#.to_vec();
    c.send_raw(raw, true);
    assert!(matches!(c.reply(77), palaver_protocol::ReplyBody::Err(e) if e.code == ErrorCode::Invalid));

    // The earlier texts are durable.
    let status = server.terminate();
    assert!(status.success(), "exit status {status}");
    server.restart();
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let all = edits(&mut a, &room, seq, None, None);
    assert_eq!(texts(&all), vec!["draft one", "draft two", "draft three"]);
    assert_eq!(all.versions, [first.versions, rest.versions].concat());

    // A delete takes them with the content.
    a.ok(Op::Delete { room: room.clone(), seq });
    a.err(Op::EditList { room: room.clone(), seq, limit: None, cursor: None }, ErrorCode::NotFound);
}
