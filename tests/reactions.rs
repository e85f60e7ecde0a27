//! Reactions: one per user per emoji per message, aggregated in history, announced live.

use palaver_e2e::{Client, Server, register};
use palaver_protocol::{Codec, ErrorCode, Event, OkBody, Op, RoomId, RoomKind};

fn react(client: &mut Client, room: &RoomId, seq: u64, emoji: &str, add: bool) -> u32 {
    let (room, emoji) = (room.clone(), emoji.to_owned());
    let op = if add { Op::React { room, seq, emoji } } else { Op::Unreact { room, seq, emoji } };
    match client.ok(op) {
        OkBody::Reaction(r) => r.count,
        other => panic!("{other:?}"),
    }
}

#[test]
fn two_users_react_and_history_shows_the_aggregates() {
    let server = Server::start(&["--shards", "2"]);
    let alice = register(server.addr, "alice");
    let bob = register(server.addr, "bob");
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let mut b = Client::login(server.addr, Codec::Rkyv, &bob);
    let room = a.create_room("reactions", RoomKind::Public);
    a.join(&room, None);
    b.join(&room, None);
    a.say(&room, "m1", "ship it?");
    a.say(&room, "m2", "second");

    assert_eq!(react(&mut b, &room, 1, "👍", true), 1);
    assert_eq!(react(&mut a, &room, 1, "👍", true), 2);
    assert_eq!(react(&mut b, &room, 1, "👍", true), 2, "one reaction per user per emoji");
    assert_eq!(react(&mut b, &room, 1, "🎉", true), 1);
    assert_eq!(react(&mut b, &room, 2, "👀", true), 1);

    // Alice sees bob's reactions live.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        if let Event::Reaction(r) = a.next_event()
            && r.user.as_str() == bob.user_id
            && r.seq == 1
        {
            seen.push((r.emoji, r.added));
        }
    }
    assert!(seen.contains(&("👍".into(), true)) && seen.contains(&("🎉".into(), true)), "{seen:?}");

    let history = b.history(&room, None, None);
    let first = history.iter().find(|m| m.seq == 1).unwrap();
    let thumbs = first.reactions.iter().find(|r| r.emoji == "👍").unwrap();
    assert_eq!(thumbs.count, 2);
    let mut users: Vec<&str> = thumbs.users.iter().map(|u| u.as_str()).collect();
    users.sort_unstable();
    let mut expected = vec![alice.user_id.as_str(), bob.user_id.as_str()];
    expected.sort_unstable();
    assert_eq!(users, expected);
    assert_eq!(first.reactions.iter().find(|r| r.emoji == "🎉").map(|r| r.count), Some(1));
    assert_eq!(history.iter().find(|m| m.seq == 2).unwrap().reactions.len(), 1);

    // Removing is idempotent and updates the aggregate.
    assert_eq!(react(&mut b, &room, 1, "👍", false), 1);
    assert_eq!(react(&mut b, &room, 1, "👍", false), 1);
    let history = a.history(&room, Some(2), None);
    assert_eq!(history[0].reactions.iter().find(|r| r.emoji == "👍").map(|r| r.count), Some(1));
}

#[test]
fn reactions_are_refused_for_outsiders_missing_messages_and_bad_emoji() {
    let server = Server::start(&[]);
    let alice = register(server.addr, "alice");
    let mallory = register(server.addr, "mallory");
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let room = a.create_room("private", RoomKind::Private);
    a.join(&room, None);
    a.say(&room, "m1", "hi");
    let react =
        |room: &RoomId, seq: u64, emoji: &str| Op::React { room: room.clone(), seq, emoji: emoji.into() };
    a.err(react(&room, 99, "👍"), ErrorCode::NotFound);
    a.err(react(&room, 0, "👍"), ErrorCode::NotFound);
    a.err(react(&room, 1, ""), ErrorCode::Invalid);
    a.err(react(&room, 1, "a b"), ErrorCode::Invalid);
    a.err(react(&room, 1, &"x".repeat(33)), ErrorCode::Invalid);
    let mut m = Client::login(server.addr, Codec::Json, &mallory);
    m.err(react(&room, 1, "👍"), ErrorCode::Forbidden);
}
