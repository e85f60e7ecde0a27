//! Web Push end to end, to the loopback push service: a member with no live socket gets a
//! push for a message their settings select — signed with the server's VAPID key, with
//! `TTL`, `Urgency` and `Topic`, decrypting to the payload (no text unless the operator
//! allows previews, never for an encrypted message) —; a member who is connected, even
//! invisibly, or whose settings silence the room, gets none; a subscription the push
//! service calls gone (410) is removed; a push still pending when the server is killed
//! is delivered after the restart.
//!
//! Absence is checked against a witness: carol, offline and notified of everything, is
//! pushed every message, and pushes are chosen message by message in order, so once her
//! push for a message has arrived, every push that message and the ones before it called
//! for has been queued (`palaver_push_queued_total`).

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests: failing loudly is the point")]

use std::time::{Duration, Instant};

use palaver_e2e::push_service::{PushService, ReceivedPush};
use palaver_e2e::{Account, Client, Server, http, metric, register};
use palaver_protocol::{
    ClientMsgId, Codec, Encryption, MessageKind, NotifyLevel, OkBody, Op, PresenceChoice, PresenceStatus,
    RoomId, RoomKind, UserId,
};

const WAIT: Duration = Duration::from_secs(20);

fn vapid_public_key(server: &Server) -> String {
    let (status, body) = http(server.addr, "GET", "/v1/push/vapid-key", None, &[]);
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    body["public_key"].as_str().unwrap().to_owned()
}

fn uid(account: &Account) -> UserId {
    UserId::parse(&account.user_id).unwrap()
}

/// Registers a subscription at the stub named `name` for `client`'s user.
fn subscribe(client: &mut Client, service: &PushService, name: &str) {
    let subscription = service.subscription(name);
    client.ok(Op::PushSubscribe {
        endpoint: subscription.endpoint,
        p256dh: subscription.p256dh,
        auth: subscription.auth,
    });
}

/// Waits until `watcher` sees `user`'s presence as `wanted`.
fn wait_status(watcher: &mut Client, user: &UserId, wanted: PresenceStatus) {
    let deadline = Instant::now() + WAIT;
    loop {
        let status = match watcher.ok(Op::UserGet { user: user.clone() }) {
            OkBody::Profile(profile) => profile.presence.map(|p| p.status),
            other => panic!("{other:?}"),
        };
        if status == Some(wanted) {
            return;
        }
        assert!(Instant::now() < deadline, "{user} still shows {status:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `watcher` sees `user` with no live socket (presence offline, and the
/// user not invisible).
fn wait_offline(watcher: &mut Client, user: &UserId) {
    wait_status(watcher, user, PresenceStatus::Offline);
}

fn pushes_to(service: &PushService, name: &str) -> Vec<ReceivedPush> {
    service.received().into_iter().filter(|p| p.subscription == name).collect()
}

/// Waits for the `count`th push to `name`.
fn wait_pushes(service: &PushService, name: &str, count: usize) -> Vec<ReceivedPush> {
    let deadline = Instant::now() + WAIT;
    loop {
        let pushes = pushes_to(service, name);
        if pushes.len() >= count {
            return pushes;
        }
        assert!(
            Instant::now() < deadline,
            "{count} pushes to {name}: {pushes:?}; refused {:?}",
            service.refused()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn payload(push: &ReceivedPush) -> serde_json::Value {
    serde_json::from_slice(&push.payload).unwrap()
}

/// A user who logs in only to change something, then leaves again.
fn while_online(server: &Server, account: &Account, watcher: &mut Client, change: impl FnOnce(&mut Client)) {
    let mut socket = Client::login(server.addr, Codec::Json, account);
    change(&mut socket);
    socket.close();
    wait_offline(watcher, &uid(account));
}

fn mute(room: &RoomId, muted: bool) -> Op {
    Op::NotificationsRoom { room: room.clone(), level: None, muted, muted_until: None }
}

#[test]
fn offline_members_are_pushed_and_connected_or_silenced_ones_are_not() {
    let mut server = Server::start(&["--shards", "2", "--push-allow-networks", "127.0.0.0/8"]);
    let service = PushService::start(&vapid_public_key(&server));
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(|n| register(server.addr, n));
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let room = a.create_room("ops", RoomKind::Public);
    let mut b = Client::login(server.addr, Codec::Rkyv, &bob);
    b.join(&room, None);
    subscribe(&mut b, &service, "bob");
    while_online(&server, &carol, &mut a, |c| {
        c.join(&room, None);
        subscribe(c, &service, "carol");
        c.ok(Op::NotificationsSet { level: Some(NotifyLevel::All), keywords: None });
    });
    let mut witnessed = 0;
    let mut say = |a: &mut Client, cid: &str, text: &str| {
        a.say(&room, cid, text);
        witnessed += 1;
        wait_pushes(&service, "carol", witnessed);
    };

    // Connected: a live socket shows the message already.
    say(&mut a, "m1", "@bob online");
    // Connected but invisible: still a live socket.
    b.ok(Op::PresenceSet { status: PresenceChoice::Invisible });
    wait_offline(&mut a, &uid(&bob));
    say(&mut a, "m2", "@bob invisible");
    assert!(pushes_to(&service, "bob").is_empty());
    assert_eq!(metric(server.addr, "palaver_push_queued_total"), 2, "only carol's");

    // No socket anywhere: pushed, with the headers a push service reads and no text.
    b.ok(Op::PresenceSet { status: PresenceChoice::Online });
    wait_status(&mut a, &uid(&bob), PresenceStatus::Online);
    b.close();
    wait_offline(&mut a, &uid(&bob));
    say(&mut a, "m3", "@bob the deploy is done");
    let pushed = wait_pushes(&service, "bob", 1);
    let push = &pushed[0];
    assert_eq!((push.ttl, push.urgency.as_str()), (86_400, "high"), "a mention wakes the device");
    assert_eq!(push.topic.as_ref().unwrap().len(), 16);
    assert_eq!(push.claims["aud"], format!("http://{}", service.addr));
    let body = payload(push);
    assert_eq!(body["room"], room.as_str());
    assert_eq!(body["sender"], alice.user_id.as_str());
    assert_eq!(body["sender_name"], "alice");
    assert_eq!(body["room_name"], "ops");
    assert_eq!(body["mention"], true);
    assert!(body.get("preview").is_none(), "no text without --push-previews: {body}");
    let carols = pushes_to(&service, "carol");
    let carols = carols.last().unwrap();
    assert_eq!(carols.urgency, "normal", "not a mention of carol");
    assert_eq!(payload(carols)["mention"], false);
    assert_eq!(carols.topic, push.topic, "one topic per room");

    // Silenced: a muted room, then the account at level none.
    while_online(&server, &bob, &mut a, |b| {
        b.ok(mute(&room, true));
    });
    say(&mut a, "m4", "@bob muted");
    while_online(&server, &bob, &mut a, |b| {
        b.ok(mute(&room, false));
        b.ok(Op::NotificationsSet { level: Some(NotifyLevel::None), keywords: None });
    });
    say(&mut a, "m5", "@bob level none");
    assert_eq!(pushes_to(&service, "bob").len(), 1);
    assert_eq!(metric(server.addr, "palaver_push_queued_total"), 6, "carol's five and bob's one");

    // The push service says the subscription is gone: it is removed, and pushes stop.
    while_online(&server, &bob, &mut a, |b| {
        b.ok(Op::NotificationsSet { level: Some(NotifyLevel::Mentions), keywords: None });
    });
    service.answer("bob", 410);
    say(&mut a, "m6", "@bob gone");
    let deadline = Instant::now() + WAIT;
    while metric(server.addr, "palaver_push_expired_total") < 1 {
        assert!(Instant::now() < deadline, "the subscription never expired");
        std::thread::sleep(Duration::from_millis(20));
    }
    let queued = metric(server.addr, "palaver_push_queued_total");
    say(&mut a, "m7", "@bob after");
    assert_eq!(metric(server.addr, "palaver_push_queued_total"), queued + 1, "carol's only");
    assert_eq!(pushes_to(&service, "bob").len(), 1);
    assert!(service.refused().is_empty(), "{:?}", service.refused());
    // Removed through bob's account, durably.
    drop(a);
    server.terminate();
    let store =
        palaver_storage::Store::open(&server.data_dir().join("db"), palaver_storage::Durability::Fsync)
            .unwrap();
    let left: Vec<String> =
        store.push_subscriptions(&uid(&bob)).unwrap().into_iter().map(|s| s.endpoint).collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(store.push_subscriptions(&uid(&carol)).unwrap().len(), 1);
}

#[test]
fn previews_when_allowed_and_never_for_encrypted_messages() {
    let server = Server::start(&["--push-allow-networks", "127.0.0.0/8", "--push-previews"]);
    let service = PushService::start(&vapid_public_key(&server));
    let [alice, bob] = ["alice", "bob"].map(|n| register(server.addr, n));
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let room = a.create_room("ops", RoomKind::Public);
    while_online(&server, &bob, &mut a, |b| {
        b.join(&room, None);
        subscribe(b, &service, "bob");
        b.ok(Op::NotificationsSet { level: Some(NotifyLevel::All), keywords: None });
    });
    a.say(&room, "p1", "release 4.2 is out");
    let pushed = wait_pushes(&service, "bob", 1);
    assert_eq!(payload(&pushed[0])["preview"], "release 4.2 is out");
    assert_eq!(pushed[0].urgency, "normal");
    a.ok(Op::Send {
        room: room.clone(),
        cid: ClientMsgId::parse("p2").unwrap(),
        kind: MessageKind::Encrypted,
        text: "c2VjcmV0IHBsYW5z".into(),
        client_ts: None,
        reply_to: None,
        file: None,
        encryption: Some(Box::new(Encryption {
            algorithm: "m.megolm.v1".into(),
            sender_device: "D1".into(),
            session_id: None,
        })),
        also_to_room: false,
        thread: None,
    });
    let pushed = wait_pushes(&service, "bob", 2);
    let body = payload(&pushed[1]);
    assert_eq!(body["seq"], payload(&pushed[0])["seq"].as_u64().unwrap() + 1);
    assert!(body.get("preview").is_none(), "an encrypted message has no content to show: {body}");
}

#[test]
fn a_push_pending_at_a_kill_is_delivered_after_the_restart() {
    let mut server = Server::start(&["--push-allow-networks", "127.0.0.0/8"]);
    let service = PushService::start(&vapid_public_key(&server));
    let [alice, bob] = ["alice", "bob"].map(|n| register(server.addr, n));
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let room = a.create_room("ops", RoomKind::Public);
    while_online(&server, &bob, &mut a, |b| {
        b.join(&room, None);
        subscribe(b, &service, "bob");
    });
    // The push service is down for a while: the push waits for its retry.
    service.answer("bob", 503);
    a.say(&room, "k1", "@bob before the crash");
    let deadline = Instant::now() + WAIT;
    while metric(server.addr, "palaver_push_failed_attempts_total") < 1 {
        assert!(Instant::now() < deadline, "no attempt was made");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(a);
    server.kill9();
    service.clear_answer("bob");
    server.restart();
    let pushed = wait_pushes(&service, "bob", 1);
    assert_eq!(payload(&pushed[0])["mention"], true);
}
