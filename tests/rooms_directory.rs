//! Finding rooms and talking one-to-one: `room.list` lists public rooms with paging and a
//! name filter; `dm.open` gives a pair of users exactly one direct room.

use palaver_e2e::{Client, Server, register};
use palaver_protocol::{Codec, ErrorCode, OkBody, Op, RoomInfo, RoomKind, UserId};

fn list(
    client: &mut Client,
    query: Option<&str>,
    cursor: Option<String>,
    limit: Option<u32>,
) -> (Vec<RoomInfo>, Option<String>) {
    match client.ok(Op::RoomList { query: query.map(str::to_owned), limit, cursor }) {
        OkBody::RoomList(l) => (l.results, l.next),
        other => panic!("{other:?}"),
    }
}

fn dm(client: &mut Client, user: &str) -> RoomInfo {
    match client.ok(Op::DmOpen { user: UserId::parse(user).expect("user id") }) {
        OkBody::Room(r) => r.room,
        other => panic!("{other:?}"),
    }
}

#[test]
fn room_list_shows_public_rooms_filtered_and_paged() {
    let server = Server::start(&["--shards", "2"]);
    let alice = register(server.addr, "alice");
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    for name in ["General", "random", "general-help", "off-topic"] {
        a.create_room(name, RoomKind::Public);
    }
    a.create_room("general secrets", RoomKind::Private);

    let (all, next) = list(&mut a, None, None, None);
    assert_eq!(all.len(), 4, "private rooms are not listed: {all:?}");
    assert!(next.is_none());
    let (general, _) = list(&mut a, Some("GENERAL"), None, None);
    let mut names: Vec<&str> = general.iter().map(|r| r.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, vec!["General", "general-help"]);

    // Paging by cursor visits every room exactly once.
    let (mut seen, mut after) = (Vec::new(), None);
    loop {
        let (page, next) = list(&mut a, None, after, Some(1));
        seen.extend(page.into_iter().map(|r| r.room_id));
        match next {
            Some(cursor) => after = Some(cursor),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (4, 4));
    a.err(Op::RoomList { query: None, limit: Some(0), cursor: None }, ErrorCode::Invalid);
}

#[test]
fn a_pair_of_users_gets_one_direct_room() {
    let server = Server::start(&["--shards", "2"]);
    let alice = register(server.addr, "alice");
    let bob = register(server.addr, "bob");
    let carol = register(server.addr, "carol");
    let mut a1 = Client::login(server.addr, Codec::Json, &alice);
    let mut a2 = Client::login(server.addr, Codec::Rkyv, &alice);
    let mut b = Client::login(server.addr, Codec::Json, &bob);

    let room = dm(&mut a1, &bob.user_id);
    assert_eq!(room.kind, RoomKind::Direct);
    assert_eq!(dm(&mut a2, &bob.user_id).room_id, room.room_id, "same room again");
    assert_eq!(dm(&mut b, &alice.user_id).room_id, room.room_id, "same room from the other side");
    assert_ne!(dm(&mut a1, &carol.user_id).room_id, room.room_id);

    a1.join(&room.room_id, None);
    b.join(&room.room_id, None);
    a1.say(&room.room_id, "dm1", "psst");
    assert_eq!(b.next_message().text, "psst");

    let mut c = Client::login(server.addr, Codec::Json, &carol);
    c.err(Op::Join { room: room.room_id.clone(), since: None }, ErrorCode::Forbidden);
    c.err(
        Op::History {
            room: room.room_id.clone(),
            before: None,
            after: None,
            limit: None,
            cursor: None,
            threads: Default::default(),
        },
        ErrorCode::Forbidden,
    );
    a1.err(Op::DmOpen { user: UserId::parse(&alice.user_id).unwrap() }, ErrorCode::Invalid);
    a1.err(Op::DmOpen { user: UserId::parse("u_nobody").unwrap() }, ErrorCode::NotFound);
    a1.err(
        Op::RoomCreate { name: "sneaky".into(), kind: RoomKind::Direct, topic: None, settings: None },
        ErrorCode::Invalid,
    );
    let (public, _) = list(&mut a1, None, None, None);
    assert!(public.iter().all(|r| r.kind == RoomKind::Public), "direct rooms are not listed");
}
