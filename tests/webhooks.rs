//! Webhooks with the real binary and a local receiver on 127.0.0.1: an operator's
//! endpoint gets signed deliveries (Standard Webhooks) of what happens in rooms (messages
//! posted and edited, announcements, members joining and leaving, moderation, reports);
//! a failed delivery is retried with the same `webhook-id`; a stalled endpoint holds up
//! neither chat nor other endpoints; deliveries pending when the server is killed (-9)
//! arrive after it restarts, with their ids, and an endpoint that was down gets them once
//! it is back; a rotated secret signs alongside the new one for its grace period; an
//! operator's `notification` sink hears whom a message notifies while they have no
//! socket; a room's owner may register `https://` targets on public addresses only, and a
//! name resolving to loopback is refused when delivering. In a cluster, each event is
//! queued and delivered by the one node that decided it.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac as _};
use palaver_e2e::{Nats, Server, http, metric, palaver_bin};
use serde_json::{Value, json};

/// How long a test waits for a delivery (the first retry comes 5 s after a failure).
const DELIVERY_WAIT: Duration = Duration::from_secs(20);

/// What the receiver does with the next request.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Status(u16),
    /// Reads the request and never answers.
    Stall,
}

/// One request the receiver got.
#[derive(Debug)]
struct Delivery {
    headers: HashMap<String, String>,
    body: String,
}

impl Delivery {
    fn id(&self) -> &str {
        &self.headers["webhook-id"]
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }

    /// Whether `secret` (`whsec_…`) signed it, as a receiver checks.
    fn signed_by(&self, secret: &str) -> bool {
        let key = STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
        let signed = format!("{}.{}.{}", self.id(), self.headers["webhook-timestamp"], self.body);
        mac.update(signed.as_bytes());
        let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        self.headers["webhook-signature"].split(' ').any(|s| s == expected)
    }
}

/// A webhook receiver: answers from a script (then 200), reports each request.
struct Endpoint {
    addr: SocketAddr,
    got: Receiver<Delivery>,
}

impl Endpoint {
    fn start(script: &[Answer]) -> Endpoint {
        Endpoint::on(TcpListener::bind("127.0.0.1:0").unwrap(), script)
    }

    fn on(listener: TcpListener, script: &[Answer]) -> Endpoint {
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let (tx, got) = channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let answer = script.lock().unwrap().pop_front().unwrap_or(Answer::Status(200));
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut headers = HashMap::new();
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    assert!(line.starts_with("POST /hook HTTP/1.1"), "{line}");
                    loop {
                        line.clear();
                        reader.read_line(&mut line).unwrap();
                        let Some((name, value)) = line.trim_end().split_once(':') else { break };
                        headers.insert(name.to_ascii_lowercase(), value.trim().to_owned());
                    }
                    let length: usize = headers["content-length"].parse().unwrap();
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let _ = tx.send(Delivery { headers, body: String::from_utf8(body).unwrap() });
                    match answer {
                        Answer::Status(status) => {
                            let head = format!(
                                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                            );
                            let _ = stream.write_all(head.as_bytes());
                        }
                        Answer::Stall => std::thread::sleep(Duration::from_secs(60)),
                    }
                });
            }
        });
        Endpoint { addr, got }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn next(&self) -> Delivery {
        self.got.recv_timeout(DELIVERY_WAIT).expect("a delivery")
    }

    /// The next delivery of an event of `kind` (others are skipped).
    fn next_of(&self, kind: &str) -> Delivery {
        loop {
            let delivery = self.next();
            if delivery.json()["type"] == kind {
                return delivery;
            }
        }
    }
}

/// Runs `palaver api-key create` offline: the key.
fn api_key(data_dir: &Path, scopes: &str) -> String {
    let output = Command::new(palaver_bin())
        .args(["api-key", "create", "backend", "--scope", scopes, "--data-dir"])
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).lines().last().unwrap().trim().to_owned()
}

/// A request with a bearer credential: (status, JSON body).
fn call(addr: SocketAddr, path: &str, bearer: &str, body: Option<Value>) -> (u16, Value) {
    let auth = format!("Bearer {bearer}");
    let method = if body.is_some() { "POST" } else { "GET" };
    let body = body.map(|b| b.to_string());
    let (status, text) = http(
        addr,
        method,
        path,
        body.as_deref(),
        &[("authorization", &auth), ("content-type", "application/json")],
    );
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// An access token for `user`, minted by the backend.
fn mint(addr: SocketAddr, key: &str, user: &str) -> String {
    let auth = format!("Bearer {key}");
    let (status, text) =
        http(addr, "POST", &format!("/v1/server/users/{user}/tokens"), None, &[("authorization", &auth)]);
    assert_eq!(status, 200, "{text}");
    serde_json::from_str::<Value>(&text).unwrap()["access_token"].as_str().unwrap().to_owned()
}

/// A server with an API key that may do everything, a user and their room.
struct Setup {
    server: Server,
    key: String,
    alice: String,
    room: String,
}

impl Setup {
    fn start() -> Setup {
        Setup::start_with(&[])
    }

    fn start_with(flags: &[&str]) -> Setup {
        let mut server = Server::start(&[&["--webhook-timeout-secs", "2"][..], flags].concat());
        server.terminate();
        let key = api_key(server.data_dir(), "users,rooms,publish,admin");
        server.restart();
        let made = call(server.addr, "/v1/server/users", &key, Some(json!({"username": "alice"})));
        assert_eq!(made.0, 201, "{:?}", made.1);
        let alice = made.1["user_id"].as_str().unwrap().to_owned();
        let mut setup = Setup { server, key, alice, room: String::new() };
        let created = setup.act(json!({"op": "room.create", "name": "support", "kind": "public"}));
        setup.room = created["ok"]["room"]["room_id"].as_str().unwrap().to_owned();
        setup
    }

    fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// An op as Alice, through the server API.
    fn act(&self, op: Value) -> Value {
        let answer = call(self.addr(), &format!("/v1/server/users/{}/ops", self.alice), &self.key, Some(op));
        assert_eq!(answer.0, 200, "{:?}", answer.1);
        answer.1
    }

    fn send(&self, cid: &str, text: &str) -> u64 {
        let sent = self.act(json!({"op": "send", "room": self.room, "cid": cid, "text": text}));
        sent["ok"]["seq"].as_u64().unwrap()
    }

    /// Registers an operator's webhook: (id, secret).
    fn register(&self, url: &str, events: &[&str]) -> (String, String) {
        let answer =
            call(self.addr(), "/v1/server/webhooks", &self.key, Some(json!({"url": url, "events": events})));
        assert_eq!(answer.0, 201, "{:?}", answer.1);
        (
            answer.1["webhook"]["webhook_id"].as_str().unwrap().to_owned(),
            answer.1["secret"].as_str().unwrap().to_owned(),
        )
    }

    fn webhooks(&self) -> Vec<Value> {
        let listed = call(self.addr(), "/v1/server/webhooks", &self.key, None);
        assert_eq!(listed.0, 200, "{:?}", listed.1);
        listed.1["webhooks"].as_array().unwrap().clone()
    }
}

#[test]
fn an_operators_endpoint_gets_signed_events_and_a_failed_delivery_comes_again_with_its_id() {
    let setup = Setup::start();
    let receiver = Endpoint::start(&[Answer::Status(500)]);
    let (hook, secret) = setup.register(
        &receiver.url(),
        &[
            "message.created",
            "message.edited",
            "member.joined",
            "moderation.action",
            "member.left",
            "report.created",
        ],
    );

    let seq = setup.send("c1", "hello hooks");
    let first = receiver.next();
    assert!(first.signed_by(&secret), "{first:?}");
    assert!(first.id().starts_with("msg_"));
    let event = first.json();
    assert_eq!(event["type"], "message.created");
    assert_eq!(event["data"]["room"], setup.room.as_str());
    assert_eq!(
        (event["data"]["message"]["seq"].as_u64(), event["data"]["message"]["text"].as_str()),
        (Some(seq), Some("hello hooks"))
    );
    // The endpoint answered 500: the same delivery comes again, with the same id.
    let again = receiver.next();
    assert_eq!((again.id(), again.body.as_str()), (first.id(), first.body.as_str()));
    assert!(again.signed_by(&secret));

    // The failure and the recovery are what the operator sees (once the sender has
    // read the answer, just after the receiver got the request).
    let recovered = (0..100).find_map(|_| {
        let listed = setup.webhooks();
        let view = listed.iter().find(|h| h["webhook_id"] == hook.as_str()).unwrap().clone();
        if view["delivery"]["last_success_ms"].is_u64() {
            return Some(view);
        }
        std::thread::sleep(Duration::from_millis(100));
        None
    });
    let view = recovered.expect("the delivery's success is recorded");
    assert_eq!(view["delivery"]["consecutive_failures"], 0, "{view}");
    assert!(view["delivery"]["last_error"].as_str().unwrap().contains("500"), "{view}");
    assert!(view.get("secret").is_none() && !view.to_string().contains(&secret));
    assert!(metric(setup.addr(), "palaver_webhook_failed_attempts_total") >= 1);

    // An edit, and a member joining, are events of their own.
    setup.act(json!({"op": "edit", "room": setup.room, "seq": seq, "text": "hello, hooks"}));
    let edited = receiver.next_of("message.edited");
    assert_eq!(edited.json()["data"]["message"]["text"], "hello, hooks");
    assert_ne!(edited.id(), first.id());
    let made = call(setup.addr(), "/v1/server/users", &setup.key, Some(json!({"username": "bob"})));
    let bob = made.1["user_id"].as_str().unwrap().to_owned();
    let joined = call(
        setup.addr(),
        &format!("/v1/server/users/{bob}/ops"),
        &setup.key,
        Some(json!({"op": "join", "room": setup.room})),
    );
    assert_eq!(joined.0, 200, "{:?}", joined.1);
    let joined = receiver.next_of("member.joined");
    assert_eq!(joined.json()["data"]["user"], bob.as_str());

    // Bob reports the message (a report is written by the node that took it, with its
    // deliveries); then the owner kicks him: a moderation action, and a member leaving.
    let bob_token = mint(setup.addr(), &setup.key, &bob);
    let reported =
        call(setup.addr(), "/v1/reports", &bob_token, Some(json!({"room": setup.room, "seq": seq})));
    assert_eq!(reported.0, 201, "{:?}", reported.1);
    let report = receiver.next_of("report.created").json();
    assert_eq!(
        (report["data"]["report"]["seq"].as_u64(), &report["data"]["report"]["reporter"]),
        (Some(seq), &json!(bob))
    );
    setup.act(json!({"op": "kick", "room": setup.room, "user": bob, "reason": "testing"}));
    // Both come from one decision, in no set order.
    let mut events: Vec<Value> = (0..2).map(|_| receiver.next().json()).collect();
    events.sort_by_key(|event| event["type"].as_str().unwrap().to_owned());
    let [left, kicked] = [&events[0], &events[1]];
    assert_eq!((&left["type"], &kicked["type"]), (&json!("member.left"), &json!("moderation.action")));
    assert_eq!(kicked["data"]["message"]["system"]["action"], "kicked", "{kicked}");
    assert_eq!(kicked["data"]["message"]["system"]["target"], bob.as_str());
    assert_eq!(left["data"]["user"], bob.as_str());

    // Rotation: both secrets sign during the grace period.
    let rotated = call(
        setup.addr(),
        &format!("/v1/server/webhooks/{hook}/rotate"),
        &setup.key,
        Some(json!({"grace_secs": 3600})),
    );
    assert_eq!(rotated.0, 200, "{:?}", rotated.1);
    let new_secret = rotated.1["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    setup.send("c2", "after rotation");
    let signed = receiver.next_of("message.created");
    assert_eq!(signed.headers["webhook-signature"].split(' ').count(), 2);
    assert!(signed.signed_by(&secret) && signed.signed_by(&new_secret));

    // An announcement posted as the system is a message like a member's.
    let path = format!("/v1/server/rooms/{}/messages", setup.room);
    let announced = call(setup.addr(), &path, &setup.key, Some(json!({"cid": "n-1", "text": "maintenance"})));
    assert_eq!(announced.0, 200, "{:?}", announced.1);
    let created = receiver.next_of("message.created").json();
    let message = &created["data"]["message"];
    assert_eq!(
        (&message["seq"], &message["text"], &message["sender"], &message["system"]["action"]),
        (&announced.1["ok"]["seq"], &json!("maintenance"), &json!("u_system"), &json!("announcement"))
    );

    // Disabled: nothing is queued; deleted: gone from the list.
    let disabled =
        call(setup.addr(), &format!("/v1/server/webhooks/{hook}/disable"), &setup.key, Some(json!({})));
    assert_eq!((disabled.0, &disabled.1["webhook"]["enabled"]), (200, &json!(false)));
    let queued = metric(setup.addr(), "palaver_webhook_queued_total");
    setup.send("c3", "nobody hears this");
    assert_eq!(metric(setup.addr(), "palaver_webhook_queued_total"), queued);
    let deleted =
        call(setup.addr(), &format!("/v1/server/webhooks/{hook}/delete"), &setup.key, Some(json!({})));
    assert_eq!(deleted.0, 200, "{:?}", deleted.1);
    assert!(setup.webhooks().is_empty());
    let gone = call(setup.addr(), &format!("/v1/server/webhooks/{hook}/enable"), &setup.key, Some(json!({})));
    assert_eq!(gone.0, 404);
}

#[test]
fn a_stalled_endpoint_holds_up_nothing_and_pending_deliveries_survive_kill_9() {
    let mut setup = Setup::start();
    let stalled = Endpoint::start(&[Answer::Stall, Answer::Stall, Answer::Stall]);
    let healthy = Endpoint::start(&[]);
    let failing = Endpoint::start(&[Answer::Status(503)]);
    setup.register(&stalled.url(), &["message.created"]);
    setup.register(&healthy.url(), &["message.created"]);
    let (_, failing_secret) = setup.register(&failing.url(), &["message.created"]);
    // An endpoint that is down (its port closed) until after the server's restart.
    let down_port = TcpListener::bind("127.0.0.1:0").unwrap();
    let down_addr = down_port.local_addr().unwrap();
    drop(down_port);
    let (down, _) = setup.register(&format!("http://{down_addr}/hook"), &["message.created"]);

    // Chat goes on while one endpoint stalls: every send is answered, the healthy
    // endpoint gets every message.
    for i in 0..5 {
        setup.send(&format!("s{i}"), &format!("message {i}"));
    }
    let mut texts: Vec<String> = (0..5)
        .map(|_| healthy.next().json()["data"]["message"]["text"].as_str().unwrap().to_owned())
        .collect();
    texts.sort();
    assert_eq!(texts, (0..5).map(|i| format!("message {i}")).collect::<Vec<_>>());
    assert!(stalled.next().body.contains("message 0"), "the stalled endpoint was tried");

    // The failing endpoint saw its first delivery and refused it; the server dies before
    // the retry. After the restart the delivery comes again, with the same id.
    let first = failing.next();
    let pending = first.id().to_owned();
    let refused = (0..100).find_map(|_| {
        std::thread::sleep(Duration::from_millis(100));
        let hooks = setup.webhooks();
        let view = hooks.iter().find(|h| h["webhook_id"] == down.as_str()).unwrap();
        view["delivery"]["last_error"].as_str().map(str::to_owned)
    });
    assert!(refused.expect("the down endpoint was tried").contains("connect"));
    setup.server.kill9();
    setup.server.restart();
    let back = Endpoint::on(TcpListener::bind(down_addr).unwrap(), &[]);
    let mut ids = Vec::new();
    while ids.len() < 5 {
        let delivery = failing.next();
        assert!(delivery.signed_by(&failing_secret));
        if !ids.contains(&delivery.id().to_owned()) {
            ids.push(delivery.id().to_owned());
        }
    }
    assert!(ids.contains(&pending), "{pending} not delivered after the restart: {ids:?}");
    // The endpoint that was down gets every message once it is back.
    let mut texts: Vec<String> =
        (0..5).map(|_| back.next().json()["data"]["message"]["text"].as_str().unwrap().to_owned()).collect();
    texts.sort();
    texts.dedup();
    assert_eq!(texts.len(), 5, "{texts:?}");
    drop(stalled);
}

#[test]
fn an_operators_notification_sink_hears_whom_a_message_notifies_while_offline() {
    let setup = Setup::start();
    let receiver = Endpoint::start(&[]);
    let (_, secret) = setup.register(&receiver.url(), &["notification"]);
    let made = call(setup.addr(), "/v1/server/users", &setup.key, Some(json!({"username": "bob"})));
    let bob = made.1["user_id"].as_str().unwrap().to_owned();
    let as_bob = |op: Value| {
        let answer = call(setup.addr(), &format!("/v1/server/users/{bob}/ops"), &setup.key, Some(op));
        assert_eq!(answer.0, 200, "{:?}", answer.1);
        answer.1
    };
    as_bob(json!({"op": "join", "room": setup.room}));
    // Alice has no socket: Bob's mention notifies her; the event says so, without text.
    let sent =
        as_bob(json!({"op": "send", "room": setup.room, "cid": "n1", "text": "@alice the build is red"}));
    let seq = sent["ok"]["seq"].as_u64().unwrap();
    let delivery = receiver.next_of("notification");
    assert!(delivery.signed_by(&secret));
    let data = &delivery.json()["data"];
    assert_eq!(data["user"], setup.alice.as_str());
    assert_eq!((data["room"].as_str(), data["seq"].as_u64()), (Some(setup.room.as_str()), Some(seq)));
    assert_eq!((data["sender"].as_str(), data["mention"].as_bool()), (Some(bob.as_str()), Some(true)));
    assert_eq!(data["room_name"], "support");
    assert!(data.get("preview").is_none(), "no text without --push-previews: {data}");

    // Only an operator's webhook may hear notifications.
    let token = mint(setup.addr(), &setup.key, &setup.alice);
    let refused = call(
        setup.addr(),
        &format!("/v1/rooms/{}/webhooks", setup.room),
        &token,
        Some(json!({"url": "https://hooks.example.com/", "events": ["notification"]})),
    );
    assert_eq!(refused.0, 400, "{:?}", refused.1);
    assert!(refused.1["error"]["message"].as_str().unwrap().contains("operator"), "{:?}", refused.1);
}

#[test]
fn a_room_owner_registers_public_https_targets_only() {
    let setup = Setup::start();
    let token = mint(setup.addr(), &setup.key, &setup.alice);
    let base = format!("/v1/rooms/{}/webhooks", setup.room);
    let register = |url: &str| {
        call(setup.addr(), &base, &token, Some(json!({"url": url, "events": ["message.created"]})))
    };
    for refused in [
        "http://hooks.example.com/in",
        "https://127.0.0.1/in",
        "https://[::1]/in",
        "https://10.1.2.3/in",
        "https://192.168.0.10/in",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::ffff:127.0.0.1]/in",
        "ftp://example.com/",
    ] {
        let answer = register(refused);
        assert_eq!(
            (answer.0, answer.1["error"]["code"].as_str()),
            (400, Some("invalid")),
            "{refused}: {:?}",
            answer.1
        );
        assert!(!answer.1["error"]["message"].as_str().unwrap().is_empty());
    }
    let unknown_event = call(
        setup.addr(),
        &base,
        &token,
        Some(json!({"url": "https://hooks.example.com/", "events": ["message.exploded"]})),
    );
    assert_eq!(unknown_event.0, 400);
    let other_room = call(
        setup.addr(),
        &base,
        &token,
        Some(
            json!({"url": "https://hooks.example.com/", "events": ["message.created"], "rooms": ["r_elsewhere"]}),
        ),
    );
    assert_eq!(other_room.0, 400);

    // A name is judged by what it resolves to when delivering: `localhost` is taken at
    // registration and refused at connect time.
    let accepted = register("https://localhost:9/in");
    assert_eq!(accepted.0, 201, "{:?}", accepted.1);
    assert!(accepted.1["secret"].as_str().unwrap().starts_with("whsec_"));
    setup.send("o1", "to the owner's hook");
    let refused_at_delivery = (0..100).find_map(|_| {
        std::thread::sleep(Duration::from_millis(100));
        let listed = call(setup.addr(), &base, &token, None);
        listed.1["webhooks"][0]["delivery"]["last_error"].as_str().map(str::to_owned)
    });
    let error = refused_at_delivery.expect("the delivery was attempted");
    assert!(error.contains("loopback"), "{error}");

    // Another member is not the owner; the operator's registrations are not the owner's.
    let made = call(setup.addr(), "/v1/server/users", &setup.key, Some(json!({"username": "bob"})));
    let bob = made.1["user_id"].as_str().unwrap().to_owned();
    call(
        setup.addr(),
        &format!("/v1/server/users/{bob}/ops"),
        &setup.key,
        Some(json!({"op": "join", "room": setup.room})),
    );
    let bob_token = mint(setup.addr(), &setup.key, &bob);
    assert_eq!(call(setup.addr(), &base, &bob_token, None).0, 403);
    setup.register("http://127.0.0.1:9/hook", &["message.created"]);
    assert_eq!(call(setup.addr(), &base, &token, None).1["webhooks"].as_array().unwrap().len(), 1);
    assert_eq!(setup.webhooks().len(), 2);
}

#[test]
fn a_full_endpoint_queue_drops_deliveries_and_says_so() {
    let setup = Setup::start_with(&["--webhook-queue", "2"]);
    let stalled = Endpoint::start(&[Answer::Stall; 4]);
    let (hook, _) = setup.register(&stalled.url(), &["message.created"]);
    for i in 0..6 {
        setup.send(&format!("q{i}"), "more than the queue holds");
    }
    let dropped = (0..100).find_map(|_| {
        std::thread::sleep(Duration::from_millis(100));
        let hooks = setup.webhooks();
        let view = hooks.iter().find(|h| h["webhook_id"] == hook.as_str()).unwrap().clone();
        (view["delivery"]["dropped"].as_u64() >= Some(1)).then_some(view)
    });
    let view = dropped.expect("deliveries were dropped");
    assert!(view["delivery"]["pending"].as_u64().unwrap() <= 2, "{view}");
    assert!(metric(setup.addr(), "palaver_webhook_dropped_total") >= 1);
    drop(stalled);
}

/// A request that may meet a room moving between nodes, or a user not replicated yet:
/// retried for a while.
fn call_until_ok(addr: SocketAddr, path: &str, bearer: &str, body: Value) -> Value {
    let deadline = std::time::Instant::now() + DELIVERY_WAIT;
    loop {
        let answer = call(addr, path, bearer, Some(body.clone()));
        if answer.0 == 200 {
            return answer.1;
        }
        assert!(std::time::Instant::now() < deadline, "{path} {body}: {:?}", answer.1);
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn in_a_cluster_each_event_is_delivered_by_the_node_that_decided_it_once() {
    let nats = Nats::start();
    let mut nodes: Vec<Server> =
        ["n1", "n2"].iter().map(|id| Server::start(&["--cluster", &nats.url, "--node-id", id])).collect();
    // An operator's key per node, made offline.
    for node in &mut nodes {
        node.terminate();
    }
    let keys: Vec<String> =
        nodes.iter().map(|n| api_key(n.data_dir(), "users,rooms,publish,admin")).collect();
    for node in &mut nodes {
        node.restart();
    }
    let (n1, n2) = (nodes[0].addr, nodes[1].addr);
    let endpoint = Endpoint::start(&[]);
    let registered = created(
        n1,
        "/v1/server/webhooks",
        &keys[0],
        json!({"url": endpoint.url(), "events": ["message.created"]}),
    );
    let hook = registered["webhook"]["webhook_id"].as_str().unwrap().to_owned();
    // Known on the other node once replicated (and read there within a second).
    let deadline = std::time::Instant::now() + DELIVERY_WAIT;
    while !call(n2, "/v1/server/webhooks", &keys[1], None).1.to_string().contains(&hook) {
        assert!(std::time::Instant::now() < deadline, "the registration never reached n2");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1_100));

    // Rooms until both nodes own one (a room's owner is decided by its id), a message in each.
    let made = created(n1, "/v1/server/users", &keys[0], json!({"username": "alice"}));
    let alice = made["user_id"].as_str().unwrap().to_owned();
    let ops = format!("/v1/server/users/{alice}/ops");
    let mut sent = Vec::new();
    for i in 0..20 {
        let room =
            call_until_ok(n1, &ops, &keys[0], json!({"op": "room.create", "name": "r", "kind": "public"}));
        let room = room["ok"]["room"]["room_id"].as_str().unwrap().to_owned();
        let via = if i % 2 == 0 { n1 } else { n2 };
        let key = if i % 2 == 0 { &keys[0] } else { &keys[1] };
        let answer = call_until_ok(
            via,
            &ops,
            key,
            json!({"op": "send", "room": room, "cid": format!("c{i}"), "text": "hi"}),
        );
        sent.push((room, answer["ok"]["seq"].as_u64().unwrap()));
        let queued = [n1, n2].map(|n| metric(n, "palaver_webhook_queued_total"));
        if i >= 3 && queued.iter().all(|q| *q > 0) {
            break;
        }
    }
    let queued: u64 = [n1, n2].iter().map(|n| metric(*n, "palaver_webhook_queued_total")).sum();
    assert_eq!(queued, sent.len() as u64, "each event queued once, cluster-wide");
    let mut got: Vec<(String, u64)> = (0..sent.len())
        .map(|_| {
            let event = endpoint.next().json();
            let message = &event["data"]["message"];
            (message["room"].as_str().unwrap().to_owned(), message["seq"].as_u64().unwrap())
        })
        .collect();
    got.sort();
    sent.sort();
    assert_eq!(got, sent);
    // Nothing more comes (a second node sending too would have by now).
    std::thread::sleep(Duration::from_secs(2));
    assert!(endpoint.got.try_recv().is_err(), "an event was delivered twice");
}

/// A `POST` that must answer `201`: its body.
fn created(addr: SocketAddr, path: &str, bearer: &str, body: Value) -> Value {
    let answer = call(addr, path, bearer, Some(body));
    assert_eq!(answer.0, 201, "{:?}", answer.1);
    answer.1
}
