//! Presence end to end on two shards: a friend sees a user go online, away and offline
//! with `last_seen` (online until the last device is gone; invisible looks offline), and
//! a reconnect storm of 200 connections produces a bounded number of presence events.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::time::{Duration, Instant};

use palaver_e2e::{Account, Client, Server, register};
use palaver_protocol::{
    Codec, ErrorCode, Event, OkBody, Op, PresenceChoice, PresenceInfo, PresenceStatus, RoomKind, UserId,
};

fn uid(account: &Account) -> UserId {
    UserId::parse(&account.user_id).unwrap()
}

/// The next presence event about `user`.
fn presence_of(client: &mut Client, user: &UserId) -> PresenceInfo {
    client.wait_event(|e| match e {
        Event::Presence(p) if &p.user == user => Some(p.clone()),
        _ => None,
    })
}

fn befriend(server: &Server, a: &Account, b: &Account) {
    let mut ca = Client::login(server.addr, Codec::Json, a);
    let mut cb = Client::login(server.addr, Codec::Json, b);
    ca.ok(Op::FriendRequest { user: uid(b) });
    cb.ok(Op::FriendAccept { user: uid(a) });
}

#[test]
fn a_friend_sees_online_away_and_offline_with_last_seen() {
    let server = Server::start(&["--shards", "2", "--presence-interval-ms", "200"]);
    let [alice, bob] = ["alice", "bob"].map(|n| register(server.addr, n));
    befriend(&server, &alice, &bob);
    let alice_id = uid(&alice);

    // Bob follows his friends automatically from the moment he connects.
    let mut b = Client::login(server.addr, Codec::Rkyv, &bob);
    let mut a1 = Client::login(server.addr, Codec::Json, &alice);
    // What a follower sees when it starts following is in `friend.list` (or `user.get`);
    // changes from then on arrive as events.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let online = match b.ok(Op::UserGet { user: alice_id.clone() }) {
            OkBody::Profile(p) => p.presence.unwrap(),
            other => panic!("{other:?}"),
        };
        if online.status == PresenceStatus::Online {
            assert_eq!(online.last_seen, None);
            break;
        }
        assert!(Instant::now() < deadline, "alice never showed online: {online:?}");
        std::thread::sleep(Duration::from_millis(20));
    }

    a1.ok(Op::PresenceSet { status: PresenceChoice::Away });
    assert_eq!(presence_of(&mut b, &alice_id).status, PresenceStatus::Away);

    // A second device: still there when the first one goes.
    let mut a2 = Client::login(server.addr, Codec::Rkyv, &alice);
    a2.ok(Op::Ping {});
    let before_close = now_ms();
    a1.close();
    match b.ok(Op::UserGet { user: alice_id.clone() }) {
        OkBody::Profile(p) => assert_ne!(p.presence.unwrap().status, PresenceStatus::Offline),
        other => panic!("{other:?}"),
    }
    a2.close();
    let offline = presence_of(&mut b, &alice_id);
    assert_eq!(offline.status, PresenceStatus::Offline);
    let last_seen = offline.last_seen.expect("last_seen when offline");
    assert!(last_seen >= before_close, "{last_seen} < {before_close}");
    match b.ok(Op::UserGet { user: alice_id.clone() }) {
        OkBody::Profile(p) => assert_eq!(p.presence.unwrap().last_seen, Some(last_seen)),
        other => panic!("{other:?}"),
    }

    // Invisible: connected, yet shown offline with the old last_seen.
    let mut a3 = Client::login(server.addr, Codec::Json, &alice);
    assert_eq!(presence_of(&mut b, &alice_id).status, PresenceStatus::Online);
    a3.ok(Op::PresenceSet { status: PresenceChoice::Invisible });
    let hidden = presence_of(&mut b, &alice_id);
    assert_eq!((hidden.status, hidden.last_seen), (PresenceStatus::Offline, Some(last_seen)));

    // friend.list carries presence too; strangers cannot follow.
    match b.ok(Op::FriendList { limit: None, cursor: None }) {
        OkBody::Friends(list) => {
            assert_eq!(list.friends[0].presence.as_ref().map(|p| p.status), Some(PresenceStatus::Offline));
        }
        other => panic!("{other:?}"),
    }
    let stranger = register(server.addr, "stranger");
    let mut s = Client::login(server.addr, Codec::Json, &stranger);
    s.err(Op::PresenceSubscribe { users: vec![alice_id.clone()] }, ErrorCode::Forbidden);
    // Sharing a room is enough to follow.
    let room = a3.create_room("lobby", RoomKind::Public);
    s.join(&room, None);
    match s.ok(Op::PresenceSubscribe { users: vec![alice_id.clone()] }) {
        OkBody::PresenceList(list) => assert_eq!(list.presence[0].status, PresenceStatus::Offline),
        other => panic!("{other:?}"),
    }
    a3.ok(Op::PresenceSet { status: PresenceChoice::Online });
    assert_eq!(presence_of(&mut s, &alice_id).status, PresenceStatus::Online);
}

#[test]
fn last_seen_survives_a_restart() {
    let mut server = Server::start(&["--shards", "2"]);
    let [alice, bob] = ["alice", "bob"].map(|n| register(server.addr, n));
    befriend(&server, &alice, &bob);
    let seen = {
        let mut b = Client::login(server.addr, Codec::Json, &bob);
        let a = Client::login(server.addr, Codec::Json, &alice);
        a.close();
        b.wait_event(|e| match e {
            Event::Presence(p) if p.user == uid(&alice) && p.status == PresenceStatus::Offline => p.last_seen,
            _ => None,
        })
    };
    server.terminate();
    server.restart();
    let mut b = Client::login(server.addr, Codec::Json, &bob);
    match b.ok(Op::UserGet { user: uid(&alice) }) {
        OkBody::Profile(p) => {
            let presence = p.presence.unwrap();
            assert_eq!((presence.status, presence.last_seen), (PresenceStatus::Offline, Some(seen)));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_reconnect_storm_of_200_connections_produces_bounded_presence_traffic() {
    const USERS: usize = 20;
    const DEVICES: usize = 10;
    const ROUNDS: usize = 3;
    let server = Server::start(&["--shards", "2", "--presence-interval-ms", "1000"]);
    let watcher = register(server.addr, "watcher");
    let stormers: Vec<Account> = (0..USERS).map(|i| register(server.addr, &format!("storm{i:02}"))).collect();
    {
        let mut w = Client::login(server.addr, Codec::Json, &watcher);
        for s in &stormers {
            w.ok(Op::FriendRequest { user: uid(s) });
            Client::login(server.addr, Codec::Json, s).ok(Op::FriendAccept { user: uid(&watcher) });
        }
    }
    let mut w = Client::login(server.addr, Codec::Rkyv, &watcher);
    // Let the presence changes of the set-up settle (they fall in earlier windows).
    while w.sees_event_within(Duration::from_millis(1_500), |e| matches!(e, Event::Presence(_))) {}

    // The storm: each of 200 connections (ten devices for each of twenty users) connects,
    // authenticates and drops, user after user, several rounds: every user flaps online
    // and offline thirty times.
    let start = Instant::now();
    for _ in 0..ROUNDS {
        for _ in 0..DEVICES {
            for s in &stormers {
                Client::login(server.addr, Codec::Json, s).close();
            }
        }
    }
    let storm = start.elapsed();

    // Read every presence event until none has come for a while (the coalescing window
    // is 1 s, so 2 s of quiet means nothing is held back any more).
    let mut seen: Vec<PresenceInfo> = Vec::new();
    while w.sees_event_within(Duration::from_secs(2), |e| match e {
        Event::Presence(p) => {
            seen.push(p.clone());
            true
        }
        _ => false,
    }) {}
    eprintln!(
        "storm: {} logins over {storm:?}; the watcher got {} presence events (uncoalesced: {})",
        USERS * DEVICES * ROUNDS,
        seen.len(),
        USERS * DEVICES * ROUNDS * 2
    );
    // Everyone ended offline, and that is the last thing the watcher heard of each.
    for s in &stormers {
        let last = seen.iter().rev().find(|p| p.user == uid(s)).map(|p| p.status);
        assert_eq!(last, Some(PresenceStatus::Offline), "{}", s.username);
    }
    // Coalescing: at most one event per user per second of storm, plus the settling ones;
    // without it each flap would be announced (2 per flap).
    let per_user = storm.as_secs() as usize + 3;
    let uncoalesced = USERS * DEVICES * ROUNDS * 2;
    assert!(
        seen.len() <= USERS * per_user,
        "{} presence events for {USERS} users over {storm:?} (bound {}, uncoalesced {uncoalesced})",
        seen.len(),
        USERS * per_user
    );
    for s in &stormers {
        let count = seen.iter().filter(|p| p.user == uid(s)).count();
        assert!(count <= per_user, "{}: {count} events over {storm:?}", s.username);
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}
