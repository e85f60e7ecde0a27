//! `@everyone` and `@here`: they mention the room for senders with its
//! `mention_all_role` (moderators by default), `@here` only the members online, and they
//! count in `sync`'s mention counts like a personal mention; the names are reserved.

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests: failing loudly is the point")]

use palaver_e2e::{Client, Server, post_json, register};
use palaver_protocol::{
    Codec, MentionAll, OkBody, Op, PresenceStatus, RoomId, RoomKind, RoomRole, RoomSettingsPatch, UserId,
};

/// The caller's unread mentions in `room`, from `sync`.
fn mentions(client: &mut Client, room: &RoomId) -> u64 {
    match client.ok(Op::Sync { limit: None, cursor: None }) {
        OkBody::Sync(sync) => sync.rooms.into_iter().find(|r| &r.room.room_id == room).unwrap().mentions,
        other => panic!("{other:?}"),
    }
}

#[test]
fn room_wide_mentions_count_for_the_members_they_reach() {
    let server = Server::start(&["--shards", "2"]);
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(|n| register(server.addr, n));
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let mut b = Client::login(server.addr, Codec::Rkyv, &bob);
    let room = a.create_room("team", RoomKind::Public);
    a.join(&room, None);
    b.join(&room, None);
    {
        // Carol joins, then goes offline.
        let mut c = Client::login(server.addr, Codec::Json, &carol);
        c.join(&room, None);
    }
    // Until the server sees her offline (her socket closed above).
    let carol_id = UserId::parse(&carol.user_id).unwrap();
    let offline = (0..200).any(|_| {
        let status = match a.ok(Op::UserGet { user: carol_id.clone() }) {
            OkBody::Profile(p) => p.presence.map(|p| p.status),
            other => panic!("{other:?}"),
        };
        let gone = status == Some(PresenceStatus::Offline);
        if !gone {
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        gone
    });
    assert!(offline, "carol never went offline");

    // The owner's @here reaches bob (online), not carol (offline).
    a.say(&room, "h", "@here standup in 5");
    let live = b.wait_event(|e| match e {
        palaver_protocol::Event::Message(m) if m.text.starts_with("@here") => Some(m.clone()),
        _ => None,
    });
    assert_eq!(live.mention_all, Some(MentionAll::Here));
    assert_eq!(mentions(&mut b, &room), 1);
    let mut c = Client::login(server.addr, Codec::Json, &carol);
    assert_eq!(mentions(&mut c, &room), 0);
    // @everyone reaches every member.
    a.say(&room, "e", "@everyone release at noon");
    assert_eq!(mentions(&mut b, &room), 2);
    assert_eq!(mentions(&mut c, &room), 1);
    // A member's @everyone is plain text by default.
    b.say(&room, "b", "@everyone hello?");
    assert_eq!(mentions(&mut a, &room), 0);
    assert_eq!(mentions(&mut c, &room), 1);
    // Reading clears the count; the room may open room-wide mentions to members.
    c.ok(Op::Receipt { room: room.clone(), delivered: None, read: Some(3) });
    assert_eq!(mentions(&mut c, &room), 0);
    let settings = RoomSettingsPatch { mention_all_role: Some(RoomRole::Member), ..Default::default() };
    a.ok(Op::RoomUpdate { room: room.clone(), name: None, topic: None, settings: Some(settings) });
    b.say(&room, "b2", "@everyone now it counts");
    assert_eq!(mentions(&mut a, &room), 1);
    assert_eq!(mentions(&mut c, &room), 1);

    // Nobody may be called `everyone` or `here`.
    for name in ["everyone", "HERE"] {
        let (status, body) = post_json(
            server.addr,
            "/v1/auth/register",
            &serde_json::json!({"username": name, "password": "correct horse battery"}),
        );
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "invalid");
    }
}
