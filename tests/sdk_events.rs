//! The SDK's event stream and first connection against the real server: every kind of
//! server event arrives typed, presence subscriptions survive a `kill -9`, the first
//! stream starts at the first `Connected`, a slow stream lags without slowing anyone, and
//! a client started before its server waits for it.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::time::Duration;

use palaver_e2e::{Server, WAIT};
use palaver_protocol::{FriendState, MemberChange, PresenceChoice, PresenceStatus, RoomKind};
use palaver_sdk::{Client, ClientEvent, ClientOptions, Credentials, Error, Events};

const PASSWORD: &str = "password-123";

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// The next event that `pick` accepts (others are skipped).
async fn wait_for<T>(what: &str, events: &mut Events, mut pick: impl FnMut(ClientEvent) -> Option<T>) -> T {
    within(what, async {
        loop {
            let event = events.next().await.unwrap_or_else(|| panic!("stream ended waiting for {what}"));
            if let Some(found) = pick(event) {
                return found;
            }
        }
    })
    .await
}

fn quick_reconnects() -> ClientOptions {
    let mut options = ClientOptions::default();
    options.core.backoff_initial_ms = 50;
    options.core.backoff_max_ms = 500;
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_invite_friend_and_presence_events_arrive_and_presence_follows_survive_a_crash() {
    let mut server = Server::start(&["--shards", "2", "--presence-interval-ms", "100"]);
    let url = server.url("");
    let alice = Client::connect_with(&url, Credentials::register("alice", PASSWORD), quick_reconnects())
        .await
        .unwrap();
    let bob =
        Client::connect_with(&url, Credentials::register("bob", PASSWORD), quick_reconnects()).await.unwrap();
    let (mut alice_events, mut bob_events) = (alice.events(), bob.events());
    let (alice_id, bob_id) = (alice.user_id().unwrap(), bob.user_id().unwrap());

    // member: bob joins alice's room.
    let room = alice.create_room("lobby", RoomKind::Public).await.unwrap().room_id;
    alice.join(&room).await.unwrap();
    bob.join(&room).await.unwrap();
    let member = wait_for("member", &mut alice_events, |e| match e {
        ClientEvent::Member(m) if m.user == bob_id => Some(m),
        _ => None,
    })
    .await;
    assert_eq!((member.room.clone(), member.change), (room.clone(), MemberChange::Joined));

    // invite: to a private room.
    let private = alice.create_room("club", RoomKind::Private).await.unwrap().room_id;
    alice.room_invite(&private, &bob_id).await.unwrap();
    let invite = wait_for("invite", &mut bob_events, |e| match e {
        ClientEvent::Invite(i) => Some(i),
        _ => None,
    })
    .await;
    assert_eq!((invite.room.room_id, invite.by), (private, alice_id.clone()));

    // presence: alice follows bob (they share a room, they are not friends), sees the
    // snapshot, then his change.
    let snapshot = alice.presence_subscribe(std::slice::from_ref(&bob_id)).await.unwrap();
    assert_eq!(snapshot[0].status, PresenceStatus::Online);
    bob.presence_set(PresenceChoice::Away).await.unwrap();
    let away = wait_for("presence away", &mut alice_events, |e| match e {
        ClientEvent::Presence(p) if p.user == bob_id => Some(p.status),
        _ => None,
    })
    .await;
    assert_eq!(away, PresenceStatus::Away);

    // The server forgets subscriptions with the socket; the SDK renews them after the
    // crash and reports the current presence, then live changes flow again.
    server.kill9();
    server.restart();
    wait_for("alice reconnected", &mut alice_events, |e| {
        matches!(e, ClientEvent::Connected { .. }).then_some(())
    })
    .await;
    wait_for("bob reconnected", &mut bob_events, |e| {
        matches!(e, ClientEvent::Connected { .. }).then_some(())
    })
    .await;
    bob.presence_set(PresenceChoice::Away).await.unwrap();
    wait_for("presence away after the restart", &mut alice_events, |e| match e {
        ClientEvent::Presence(p) if p.user == bob_id && p.status == PresenceStatus::Away => Some(()),
        _ => None,
    })
    .await;
    // Past the coalescing window (100 ms here), so that going back online is a change the
    // server announces rather than a flap it swallows (PROTOCOL.md §3.5.23).
    tokio::time::sleep(Duration::from_millis(500)).await;
    bob.presence_set(PresenceChoice::Online).await.unwrap();
    wait_for("presence online", &mut alice_events, |e| match e {
        ClientEvent::Presence(p) if p.user == bob_id && p.status == PresenceStatus::Online => Some(()),
        _ => None,
    })
    .await;

    // friend: seen from each side.
    alice.friend_request(&bob_id).await.unwrap();
    let friend = wait_for("friend", &mut bob_events, |e| match e {
        ClientEvent::Friend(f) if f.user == alice_id => Some(f),
        _ => None,
    })
    .await;
    assert_eq!((friend.state, friend.username.as_str()), (FriendState::Incoming, "alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_stream_holds_everything_after_connected_and_later_ones_start_when_made() {
    let server = Server::start(&[]);
    let url = server.url("");
    let bob = Client::connect(&url, Credentials::register("bob", PASSWORD)).await.unwrap();
    let alice = Client::connect(&url, Credentials::register("alice", PASSWORD)).await.unwrap();
    // Something happens to alice before she asks for a stream…
    bob.friend_request(&alice.user_id().unwrap()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    alice.ping().await.unwrap();
    // … and the first stream has it (not the `Connected` that `connect` waited for).
    let mut first = alice.events();
    let mut later = alice.events();
    match within("the first event", first.next()).await.unwrap() {
        ClientEvent::Friend(f) => assert_eq!(f.state, FriendState::Incoming),
        other => panic!("the first stream began with {other:?}"),
    }
    bob.friend_cancel(&alice.user_id().unwrap()).await.unwrap();
    let cancelled = |e: ClientEvent| match e {
        ClientEvent::Friend(f) => Some(f.state),
        _ => None,
    };
    assert_eq!(wait_for("cancel (first)", &mut first, cancelled).await, FriendState::None);
    // The later stream starts at its creation: the request is not in it.
    assert_eq!(wait_for("cancel (later)", &mut later, cancelled).await, FriendState::None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_stream_loses_its_oldest_events_and_says_so_while_the_others_go_on() {
    let server = Server::start(&[]);
    let url = server.url("");
    let options = ClientOptions::default().buffering_events(4);
    let alice = Client::connect_with(&url, Credentials::register("alice", PASSWORD), options).await.unwrap();
    let bob = Client::connect(&url, Credentials::register("bob", PASSWORD)).await.unwrap();
    let mut slow = alice.events(); // 4 events at most (the client's option)
    let mut reader = alice.events_holding(1_000);
    let room = bob.create_room("busy", RoomKind::Public).await.unwrap().room_id;
    bob.join(&room).await.unwrap();
    alice.join(&room).await.unwrap();
    for i in 1..=20 {
        bob.send(&room, &format!("m{i}")).await.unwrap();
    }
    // A stream with room for them sees all twenty, in order.
    let mut seen = Vec::new();
    while seen.len() < 20 {
        match within("messages", reader.next()).await.unwrap() {
            ClientEvent::Message(m) => seen.push(m.seq),
            ClientEvent::Lagged { .. } => panic!("a stream with room must not lag"),
            _ => {}
        }
    }
    assert_eq!(seen, (1..=20).collect::<Vec<_>>());
    // The slow one kept its 4 newest events and says how many it lost.
    let Some(ClientEvent::Lagged { missed }) = slow.try_next() else { panic!("no Lagged first") };
    let rest: Vec<ClientEvent> = std::iter::from_fn(|| slow.try_next()).collect();
    assert_eq!(rest.len(), 4, "{rest:?}");
    assert!(missed >= 16, "missed {missed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_waits_for_a_server_that_is_not_up_yet_unless_told_not_to() {
    let mut server = Server::start(&[]);
    let url = server.url("");
    server.kill9();

    // Failing fast: the error at once.
    let err = Client::connect_with(
        &url,
        Credentials::register("alice", PASSWORD),
        ClientOptions::default().failing_fast(),
    )
    .await
    .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    // A short deadline: the last failure once it has passed.
    let err = Client::connect_with(
        &url,
        Credentials::register("alice", PASSWORD),
        quick_reconnects().retrying_first_connect_for(300),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Transport(_)), "{err:?}");

    // By default: it keeps trying, and connects once the server is up.
    let connecting = tokio::spawn({
        let url = url.clone();
        async move {
            Client::connect_with(&url, Credentials::register("alice", PASSWORD), quick_reconnects()).await
        }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!connecting.is_finished());
    server.restart();
    let alice = within("connect", connecting).await.unwrap().unwrap();
    assert!(alice.is_connected());
    let room = alice.create_room("finally", RoomKind::Public).await.unwrap().room_id;
    alice.join(&room).await.unwrap();
    assert_eq!(alice.send(&room, "up").await.unwrap().seq, 1);
    // Refused credentials are not retried: the username is taken now.
    let err = Client::connect(&url, Credentials::register("alice", PASSWORD)).await.unwrap_err();
    assert_eq!(err.code(), Some(palaver_protocol::ErrorCode::Conflict));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_settings_set_on_one_device_reach_the_other() {
    use palaver_protocol::{NotifyLevel, RoomNotifications};
    let server = Server::start(&["--shards", "2"]);
    let url = server.url("");
    let phone = Client::connect(&url, Credentials::register("alice", PASSWORD)).await.unwrap();
    let laptop = Client::connect(&url, Credentials::password("alice", PASSWORD)).await.unwrap();
    let mut laptop_events = laptop.events();
    let room = phone.create_room("ops", RoomKind::Public).await.unwrap().room_id;

    let set = phone.set_notifications(Some(NotifyLevel::None), Some(vec!["deploy".into()])).await.unwrap();
    assert_eq!(set.level, NotifyLevel::None);
    let seen = wait_for("the settings", &mut laptop_events, |e| match e {
        ClientEvent::Notifications(s) => Some(s),
        _ => None,
    })
    .await;
    assert_eq!(seen, set);
    let muted = RoomNotifications {
        room: room.clone(),
        level: Some(NotifyLevel::All),
        muted: true,
        muted_until: None,
    };
    let now = laptop.set_room_notifications(muted.clone()).await.unwrap();
    assert_eq!(now.rooms, vec![muted]);
    assert_eq!(phone.notifications().await.unwrap(), now);
    let refused = phone.set_notifications(None, Some(vec![String::new()])).await.unwrap_err();
    assert!(
        matches!(refused, Error::Server { code: palaver_protocol::ErrorCode::Invalid, .. }),
        "{refused:?}"
    );
}
