//! Notification settings end to end: one user's two devices (JSON and rkyv sockets) see
//! each change the other makes, the settings survive a restart, bad settings are refused
//! with a clear error, and a muted room (or one at level `none`) counts no mentions in
//! `sync`.

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests: failing loudly is the point")]

use palaver_e2e::{Client, Server, register};
use palaver_protocol::{
    Codec, ErrorCode, Event, NotificationSettings, NotifyLevel, OkBody, Op, RoomId, RoomKind,
    RoomNotifications,
};

/// The caller's unread mentions in `room`, from `sync`.
fn mentions(client: &mut Client, room: &RoomId) -> u64 {
    match client.ok(Op::Sync { limit: None, cursor: None }) {
        OkBody::Sync(sync) => sync.rooms.into_iter().find(|r| &r.room.room_id == room).unwrap().mentions,
        other => panic!("{other:?}"),
    }
}

fn settings(body: OkBody) -> NotificationSettings {
    match body {
        OkBody::Notifications(ok) => ok.notifications,
        other => panic!("{other:?}"),
    }
}

/// The next `notifications` event on a socket.
fn changed(client: &mut Client) -> NotificationSettings {
    client.wait_event(|e| match e {
        Event::Notifications(ok) => Some(ok.notifications.clone()),
        _ => None,
    })
}

fn room_setting(room: &RoomId, level: Option<NotifyLevel>, muted: bool, until: Option<u64>) -> Op {
    Op::NotificationsRoom { room: room.clone(), level, muted, muted_until: until }
}

#[test]
fn settings_sync_across_a_users_devices_and_silence_mention_counts() {
    let mut server = Server::start(&["--shards", "2"]);
    let [alice, bob] = ["alice", "bob"].map(|n| register(server.addr, n));
    let mut phone = Client::login(server.addr, Codec::Json, &alice);
    let mut laptop = Client::login(server.addr, Codec::Rkyv, &alice);
    let mut b = Client::login(server.addr, Codec::Json, &bob);
    assert_eq!(settings(laptop.ok(Op::NotificationsGet {})), NotificationSettings::default());

    // The phone sets the account's level and keywords; the laptop hears of it.
    let set = Op::NotificationsSet { level: Some(NotifyLevel::All), keywords: Some(vec![" Deploy ".into()]) };
    let now = settings(phone.ok(set));
    assert_eq!((now.level, now.keywords.clone()), (NotifyLevel::All, vec!["Deploy".to_string()]));
    assert_eq!(changed(&mut laptop), now);
    assert_eq!(changed(&mut phone), now, "every socket of the user hears of it, the asker's too");

    // A mention counts until the room is muted, and again once the mute is lifted.
    let room = b.create_room("ops", RoomKind::Public);
    b.join(&room, None);
    phone.join(&room, None);
    b.say(&room, "m1", "@alice the deploy is done");
    assert_eq!(mentions(&mut laptop, &room), 1);
    let muted = settings(laptop.ok(room_setting(&room, None, true, None)));
    assert_eq!(
        muted.rooms,
        vec![RoomNotifications { room: room.clone(), level: None, muted: true, muted_until: None }]
    );
    assert_eq!(changed(&mut phone).rooms, muted.rooms);
    assert_eq!(mentions(&mut phone, &room), 0, "a muted room counts no mentions");
    laptop.ok(room_setting(&room, Some(NotifyLevel::None), false, None));
    assert_eq!(mentions(&mut phone, &room), 0, "nor does a room at level none");
    let back = settings(laptop.ok(room_setting(&room, None, false, None)));
    assert!(back.rooms.is_empty(), "a room set to the defaults has no setting of its own");
    assert_eq!(mentions(&mut phone, &room), 1);

    // A keyword counts as a mention (a whole word, any case), matched when counted: a
    // keyword dropped stops counting at once.
    b.say(&room, "m2", "is the DEPLOY green?");
    b.say(&room, "m3", "redeploying later");
    assert_eq!(mentions(&mut phone, &room), 2, "the name and the keyword");
    phone.ok(Op::NotificationsSet { level: None, keywords: Some(Vec::new()) });
    assert_eq!(mentions(&mut phone, &room), 1, "the name alone");
    phone.ok(Op::NotificationsSet { level: None, keywords: Some(vec!["deploy".into()]) });
    assert_eq!(mentions(&mut laptop, &room), 2);
    phone.ok(Op::NotificationsSet { level: None, keywords: Some(vec!["Deploy".into()]) });

    // Bad settings are refused and change nothing.
    phone.err(Op::NotificationsSet { level: None, keywords: Some(vec![String::new()]) }, ErrorCode::Invalid);
    let too_many = (0..51).map(|i| format!("word{i}")).collect();
    phone.err(Op::NotificationsSet { level: None, keywords: Some(too_many) }, ErrorCode::Invalid);
    phone.err(room_setting(&room, None, false, Some(u64::MAX)), ErrorCode::Invalid);
    phone.err(room_setting(&room, None, true, Some(1)), ErrorCode::Invalid);
    let bad_level = br#"{"id":99,"op":"notifications.set","level":"loud"}"#;
    phone.send_raw(bad_level.to_vec(), true);
    assert!(matches!(phone.reply(99), palaver_protocol::ReplyBody::Err(e) if e.code == ErrorCode::Invalid));
    assert_eq!(settings(phone.ok(Op::NotificationsGet {})), back);

    // Durable: the settings outlive a restart.
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let until = now_ms + 3_600_000;
    let kept = settings(phone.ok(room_setting(&room, Some(NotifyLevel::Mentions), true, Some(until))));
    drop((phone, laptop, b));
    server.terminate();
    server.restart();
    let mut again = Client::login(server.addr, Codec::Rkyv, &alice);
    assert_eq!(settings(again.ok(Op::NotificationsGet {})), kept);
    assert_eq!(mentions(&mut again, &room), 0);
}
