//! Web Push in a two-node cluster over a real NATS server, both nodes with the operator's
//! VAPID key file: a member whose only socket is on the other node is not pushed (a socket
//! anywhere counts); once it closes, each message is pushed once, by one node (the
//! room's owner), whichever node the sender and the recipient used. A node without the
//! key file refuses subscriptions it could never push to.

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests: failing loudly is the point")]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use palaver_e2e::push_service::{PushService, ReceivedPush};
use palaver_e2e::{Client, Nats, Server, WAIT, http, metric, register};
use palaver_protocol::{
    Codec, ErrorCode, NotifyLevel, OkBody, Op, PresenceStatus, ReplyBody, RoomKind, UserId,
};

/// RFC 8291's example sender key, as `web-push generate-vapid-keys` prints a private key.
const VAPID_KEY: &str = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw";

fn ok_retry(client: &mut Client, op: Op) -> OkBody {
    let deadline = Instant::now() + WAIT;
    loop {
        match client.request(op.clone()) {
            ReplyBody::Ok(ok) => return ok,
            ReplyBody::Err(e) if e.code == ErrorCode::Unavailable && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            ReplyBody::Err(e) => panic!("{} failed: {e:?}", op.name()),
        }
    }
}

fn login_when_replicated(addr: SocketAddr, account: &palaver_e2e::Account) -> Client {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut client = Client::connect(addr, Codec::Json);
        match client.request(Op::Auth { token: account.access_token.clone() }) {
            ReplyBody::Ok(_) => return client,
            ReplyBody::Err(e) => {
                assert!(Instant::now() < deadline, "{} cannot log in on {addr}: {e:?}", account.username);
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Until `watcher` sees `user` as `wanted`.
fn wait_status(watcher: &mut Client, user: &UserId, wanted: PresenceStatus) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let ReplyBody::Ok(OkBody::Profile(profile)) = watcher.request(Op::UserGet { user: user.clone() })
            && profile.presence.is_some_and(|p| p.status == wanted)
        {
            return;
        }
        assert!(Instant::now() < deadline, "{user} never showed {wanted:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pushes_to(service: &PushService, name: &str) -> Vec<ReceivedPush> {
    service.received().into_iter().filter(|p| p.subscription == name).collect()
}

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

fn total(nodes: &[Server], name: &str) -> u64 {
    nodes.iter().map(|n| metric(n.addr, name)).sum()
}

#[test]
fn a_socket_on_another_node_counts_and_one_node_pushes_each_message() {
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("vapid.key");
    std::fs::write(&key, format!("{VAPID_KEY}\n")).unwrap();
    let key = key.to_str().unwrap();
    let start = |id: &str| {
        Server::start(&[
            "--cluster",
            &nats.url,
            "--node-id",
            id,
            "--presence-interval-ms",
            "100",
            "--vapid-key-file",
            key,
            "--push-allow-networks",
            "127.0.0.0/8",
        ])
    };
    let nodes = [start("n1"), start("n2")];
    let deadline = Instant::now() + WAIT;
    while !nodes.iter().all(|n| metric(n.addr, "palaver_cluster_live_nodes") == 2) {
        assert!(Instant::now() < deadline, "the nodes did not see each other");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (n1, n2) = (nodes[0].addr, nodes[1].addr);
    let (_, body) = http(n1, "GET", "/v1/push/vapid-key", None, &[]);
    let public: serde_json::Value = serde_json::from_str(&body).unwrap();
    let service = PushService::start(public["public_key"].as_str().unwrap());

    let alice = register(n1, "alice");
    let bob = register(n2, "bob");
    let carol = register(n1, "carol");
    let bob_id = UserId::parse(&bob.user_id).unwrap();
    let carol_id = UserId::parse(&carol.user_id).unwrap();
    let mut a = login_when_replicated(n1, &alice);
    let room = match ok_retry(
        &mut a,
        Op::RoomCreate { name: "ops".into(), kind: RoomKind::Public, topic: None, settings: None },
    ) {
        OkBody::Room(room) => room.room.room_id,
        other => panic!("{other:?}"),
    };
    // A watcher on each node, to see presence as each node's books have it.
    let mut watch2 = login_when_replicated(n2, &alice);
    // Carol, the witness: subscribed, notified of everything, then gone.
    let mut c = login_when_replicated(n1, &carol);
    ok_retry(&mut c, Op::Join { room: room.clone(), since: None });
    let sub = service.subscription("carol");
    ok_retry(&mut c, Op::PushSubscribe { endpoint: sub.endpoint, p256dh: sub.p256dh, auth: sub.auth });
    ok_retry(&mut c, Op::NotificationsSet { level: Some(NotifyLevel::All), keywords: None });
    c.close();
    wait_status(&mut a, &carol_id, PresenceStatus::Offline);
    wait_status(&mut watch2, &carol_id, PresenceStatus::Offline);

    // Bob's only socket is on n2.
    let mut b = login_when_replicated(n2, &bob);
    ok_retry(&mut b, Op::Join { room: room.clone(), since: None });
    let sub = service.subscription("bob");
    ok_retry(&mut b, Op::PushSubscribe { endpoint: sub.endpoint, p256dh: sub.p256dh, auth: sub.auth });
    wait_status(&mut a, &bob_id, PresenceStatus::Online);
    a.say(&room, "m1", "@bob are you there");
    wait_pushes(&service, "carol", 1);
    assert!(pushes_to(&service, "bob").is_empty(), "bob has a socket on n2");
    assert_eq!(total(&nodes, "palaver_push_fan_outs_total"), 1, "one node chose");
    assert_eq!(total(&nodes, "palaver_push_queued_total"), 1, "carol's only");

    // No socket anywhere: pushed once, by one node.
    b.close();
    wait_status(&mut a, &bob_id, PresenceStatus::Offline);
    wait_status(&mut watch2, &bob_id, PresenceStatus::Offline);
    a.say(&room, "m2", "@bob now?");
    wait_pushes(&service, "carol", 2);
    let pushed = wait_pushes(&service, "bob", 1);
    let body: serde_json::Value = serde_json::from_slice(&pushed[0].payload).unwrap();
    assert_eq!(
        (body["mention"].as_bool(), body["sender"].as_str()),
        (Some(true), Some(alice.user_id.as_str()))
    );
    assert_eq!(total(&nodes, "palaver_push_fan_outs_total"), 2);
    assert_eq!(total(&nodes, "palaver_push_queued_total"), 3);
    let deadline = Instant::now() + WAIT;
    while total(&nodes, "palaver_push_delivered_total") < 3 {
        assert!(Instant::now() < deadline, "the push service's answers were not counted");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(pushes_to(&service, "bob").len(), 1);
    assert!(service.refused().is_empty(), "{:?}", service.refused());
}

#[test]
fn a_cluster_node_without_the_key_file_says_push_is_off() {
    let nats = Nats::start();
    let node = Server::start(&["--cluster", &nats.url, "--node-id", "n1"]);
    let (status, body) = http(node.addr, "GET", "/v1/push/vapid-key", None, &[]);
    assert_eq!(status, 404, "{body}");
    let alice = register(node.addr, "alice");
    let mut a = login_when_replicated(node.addr, &alice);
    let refused = a.request(Op::PushSubscribe {
        endpoint: "https://push.example.com/send/alice".into(),
        p256dh: "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
            .into(),
        auth: "BTBZMqHH6r4Tts7J_aSIgg".into(),
    });
    match refused {
        ReplyBody::Err(e) => {
            assert_eq!(e.code, ErrorCode::NotFound);
            assert!(e.message.contains("--vapid-key-file"), "{}", e.message);
        }
        other => panic!("a subscription push could never use: {other:?}"),
    }
}
