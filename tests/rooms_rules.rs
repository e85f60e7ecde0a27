//! Rules among members that races and loopholes must not break: a command on a message
//! sees the room's own pending writes (a delete racing an edit stays a delete), mute
//! means no new content, slow mode survives leaving, a block holds for the blocker's next
//! request and hides presence, a direct room takes back the one who left, a cid is its
//! sender's, the room's record of moderation cannot be erased, and a deleted message's
//! file goes with it.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::time::{Duration, Instant};

use palaver_e2e::{Account, Client, Server, http_bytes, register, send_op, upload};
use palaver_protocol::{
    ClientMsgId, Codec, ErrorCode, Event, FileRef, MessageKind, OkBody, Op, PresenceChoice, PresenceStatus,
    ReplyBody, RoomId, RoomKind, RoomSettingsPatch, UserId,
};

fn uid(account: &Account) -> UserId {
    UserId::parse(&account.user_id).unwrap()
}

fn history(client: &mut Client, room: &RoomId) -> Vec<palaver_protocol::Message> {
    client.history(room, None, Some(100))
}

#[test]
fn a_delete_racing_an_edit_stays_a_delete_also_after_a_restart() {
    let mut server = Server::start(&[]);
    let [alice, moderator] = ["alice", "moderator"].map(|n| register(server.addr, n));
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let mut m = Client::login(server.addr, Codec::Rkyv, &moderator);
    let room = a.create_room("race", RoomKind::Public);
    a.join(&room, None);
    m.join(&room, None);
    a.ok(Op::RoleSet {
        room: room.clone(),
        user: uid(&moderator),
        role: palaver_protocol::RoomRole::Moderator,
    });
    for round in 0..5 {
        // The author pipelines delete then edit of one message.
        let (seq, _) = a.say(&room, &format!("own-{round}"), "original");
        let delete = a.send_op(Op::Delete { room: room.clone(), seq });
        let edit = a.send_op(Op::Edit { room: room.clone(), seq, text: "edited".into() });
        assert!(matches!(a.reply(delete), ReplyBody::Ok(_)));
        assert!(matches!(a.reply(edit), ReplyBody::Err(e) if e.code == ErrorCode::NotFound));
        // A moderator's delete races the author's edit from another socket.
        let (seq, _) = a.say(&room, &format!("mod-{round}"), "original");
        let delete = m.send_op(Op::Delete { room: room.clone(), seq });
        let edit = a.send_op(Op::Edit { room: room.clone(), seq, text: "edited".into() });
        assert!(matches!(m.reply(delete), ReplyBody::Ok(_)));
        let _ = a.reply(edit); // whichever the room took first, the delete wins
    }
    let check = |client: &mut Client| {
        for message in history(client, &room).iter().filter(|m| m.kind == MessageKind::Text) {
            assert!(message.deleted && message.text.is_empty(), "{message:?} came back");
        }
    };
    check(&mut a);
    server.kill9();
    server.restart();
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    check(&mut a);
}

#[test]
fn muted_means_no_new_content_and_slow_mode_survives_leaving() {
    let server = Server::start(&[]);
    let [owner, bob] = ["owner", "bob"].map(|n| register(server.addr, n));
    let mut o = Client::login(server.addr, Codec::Json, &owner);
    let mut b = Client::login(server.addr, Codec::Json, &bob);
    let room = o.create_room("quiet", RoomKind::Public);
    o.join(&room, None);
    b.join(&room, None);
    let (seq, _) = b.say(&room, "b1", "before the mute");
    o.ok(Op::Mute { room: room.clone(), user: uid(&bob), duration_secs: 60, reason: None });
    b.err(Op::Edit { room: room.clone(), seq, text: "sneaky".into() }, ErrorCode::Forbidden);
    b.err(Op::React { room: room.clone(), seq, emoji: "👍".into() }, ErrorCode::Forbidden);
    b.err(Op::TypingStart { room: room.clone() }, ErrorCode::Forbidden);
    b.err(send_op(&room, "b2", "hello?"), ErrorCode::Forbidden);
    o.ok(Op::Unmute { room: room.clone(), user: uid(&bob) });

    o.ok(Op::RoomUpdate {
        room: room.clone(),
        name: None,
        topic: None,
        settings: Some(RoomSettingsPatch { slow_mode_secs: Some(30), ..Default::default() }),
    });
    b.say(&room, "b3", "one");
    b.ok(Op::Leave { room: room.clone() });
    b.join(&room, None);
    b.err(send_op(&room, "b4", "two, right away"), ErrorCode::RateLimited);
}

#[test]
fn a_block_hides_presence_and_holds_for_the_blockers_next_search() {
    let server = Server::start(&["--presence-interval-ms", "100"]);
    let [xa, ya] = ["xavier", "yolanda"].map(|n| register(server.addr, n));
    let (x, y) = (uid(&xa), uid(&ya));
    let mut xs = Client::login(server.addr, Codec::Json, &xa);
    let mut xs2 = Client::login(server.addr, Codec::Json, &xa);
    let mut ys = Client::login(server.addr, Codec::Json, &ya);
    let room = xs.create_room("shared", RoomKind::Public);
    xs.join(&room, None);
    ys.join(&room, None);
    ys.ok(Op::PresenceSubscribe { users: vec![x.clone()] });
    for i in 0..5 {
        ys.say(&room, &format!("y{i}"), &format!("zanzibar {i}"));
    }
    let search = |c: &mut Client| match c.ok(Op::Search {
        query: "zanzibar".into(),
        room: None,
        from: None,
        before: None,
        after: None,
        order: None,
        limit: None,
        cursor: None,
    }) {
        OkBody::Search(page) => page.hits.len(),
        other => panic!("{other:?}"),
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while search(&mut xs2) < 5 {
        assert!(Instant::now() < deadline, "never indexed");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The block is answered on one socket; the very next search, on another, holds it.
    xs.ok(Op::Block { user: y.clone() });
    assert_eq!(search(&mut xs2), 0, "the blocked user's messages in the next search");

    // Presence: y stops hearing of x, and the member list shows x offline to y.
    ys.events.clear();
    xs.ok(Op::PresenceSet { status: PresenceChoice::Away });
    assert!(
        !ys.sees_event_within(Duration::from_secs(1), |e| matches!(e, Event::Presence(p) if p.user == x)),
        "presence leaked to the blocked user"
    );
    match ys.ok(Op::RoomMembers { room, limit: None, cursor: None }) {
        OkBody::Members(page) => {
            let seen = page.members.iter().find(|m| m.user == x).unwrap();
            assert_eq!(seen.presence, PresenceStatus::Offline);
        }
        other => panic!("{other:?}"),
    }
    ys.err(Op::PresenceSubscribe { users: vec![x] }, ErrorCode::Forbidden);
}

#[test]
fn a_direct_room_takes_back_the_one_who_left() {
    let server = Server::start(&[]);
    let [aa, ba] = ["anna", "bruno"].map(|n| register(server.addr, n));
    let mut a = Client::login(server.addr, Codec::Json, &aa);
    let mut b = Client::login(server.addr, Codec::Json, &ba);
    let dm = |c: &mut Client, other: &Account| match c.ok(Op::DmOpen { user: uid(other) }) {
        OkBody::Room(r) => r.room.room_id,
        other => panic!("{other:?}"),
    };
    let room = dm(&mut a, &ba);
    b.join(&room, None);
    b.ok(Op::Leave { room: room.clone() });
    a.join(&room, None);
    a.say(&room, "while-away", "are you there?");
    b.err(Op::Join { room: room.clone(), since: None }, ErrorCode::Forbidden);
    assert_eq!(dm(&mut b, &aa), room, "the same room");
    b.join(&room, None);
    assert!(history(&mut b, &room).iter().any(|m| m.text == "are you there?"));
}

#[test]
fn a_cid_is_its_senders_and_cannot_be_squatted() {
    let server = Server::start(&[]);
    let [aa, ma] = ["author", "mallory"].map(|n| register(server.addr, n));
    let mut a = Client::login(server.addr, Codec::Json, &aa);
    let mut m = Client::login(server.addr, Codec::Json, &ma);
    let room = a.create_room("ids", RoomKind::Public);
    a.join(&room, None);
    m.join(&room, None);
    let (squatted, duplicate) = m.say(&room, "msg-1", "mallory saw this cid coming");
    assert!(!duplicate);
    let (mine, duplicate) = a.say(&room, "msg-1", "the author's real message");
    assert!(!duplicate, "another member's cid made the author's message vanish");
    assert_ne!(mine, squatted);
    assert_eq!(a.say(&room, "msg-1", "the author's real message"), (mine, true), "a retry is still a retry");
}

#[test]
fn the_record_stays_and_a_deleted_files_bytes_go() {
    let server = Server::start(&[]);
    let [oa, ba] = ["owner", "bob"].map(|n| register(server.addr, n));
    let mut o = Client::login(server.addr, Codec::Json, &oa);
    let mut b = Client::login(server.addr, Codec::Json, &ba);
    let room = o.create_room("records", RoomKind::Public);
    o.join(&room, None);
    b.join(&room, None);
    o.ok(Op::Mute { room: room.clone(), user: uid(&ba), duration_secs: 5, reason: Some("calm down".into()) });
    let notice = history(&mut o, &room).into_iter().find(|m| m.kind == MessageKind::System).unwrap();
    o.err(Op::Delete { room: room.clone(), seq: notice.seq }, ErrorCode::Forbidden);

    let uploaded = upload(server.addr, &oa.access_token, &room, "cat.png", &palaver_e2e::png_bytes(40, 30));
    assert_eq!(uploaded.status, 201);
    let file_id = uploaded.json()["file_id"].as_str().unwrap().to_owned();
    let share = |cid: &str| Op::Send {
        room: room.clone(),
        cid: ClientMsgId::parse(cid).unwrap(),
        kind: MessageKind::Image,
        text: String::new(),
        client_ts: None,
        reply_to: None,
        file: Some(Box::new(FileRef {
            file_id: file_id.clone(),
            name: "cat.png".into(),
            size: 0,
            content_type: String::new(),
            width: None,
            height: None,
        })),
        encryption: None,
        also_to_room: false,
        thread: None,
    };
    let seq = match o.ok(share("img-1")) {
        OkBody::Sent(s) => s.seq,
        other => panic!("{other:?}"),
    };
    // One message shares a file; a retry of it is a retry.
    o.err(share("img-2"), ErrorCode::Conflict);
    assert!(matches!(o.ok(share("img-1")), OkBody::Sent(s) if s.duplicate && s.seq == seq));
    let auth = format!("Bearer {}", ba.access_token);
    let path = format!("/v1/files/{file_id}");
    assert_eq!(http_bytes(server.addr, "GET", &path, b"", &[("authorization", &auth)]).status, 200);
    o.ok(Op::Delete { room: room.clone(), seq });
    assert_eq!(http_bytes(server.addr, "GET", &path, b"", &[("authorization", &auth)]).status, 404);
}
