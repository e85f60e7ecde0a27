//! Web Push to a browser: the package's service worker
//! (`sdk/js/service-worker/palaver-push-sw.js`) in headless Chromium shows the real
//! server's pushes as notifications. The server pushes to an offline member through the
//! loopback push service, which decrypts each push with the subscription's key; the test
//! hands the decrypted payload to the worker through the DevTools protocol's push
//! delivery (`ServiceWorker.deliverPushMessage`: Chromium's own push service needs the
//! internet), driven by `tests/browser/push_service_worker.mjs`. The worker shows one
//! notification per room (title, body from the payload; tag `palaver:<room>`), a room's
//! newer message replacing its older notification, and tells the open page; a push it
//! cannot read still shows a notification. The package ships the worker.
//!
//! Needs Chromium, Node.js with npm and `npm ci` in `tests/browser`: `./x test` installs
//! them and passes their paths in `PALAVER_CHROMIUM`, `PALAVER_NODE` and `PALAVER_NPM`.
//! Run directly without them, the test fails saying what to install.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests: failing loudly is the point")]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use palaver_e2e::push_service::{PushService, ReceivedPush};
use palaver_e2e::{Account, CHROMIUM, Client, NODE, NPM, Server, http, outside_tool, register};
use palaver_protocol::{
    ClientMsgId, Codec, Encryption, MessageKind, NotifyLevel, OkBody, Op, PresenceStatus, RoomId, RoomKind,
    UserId,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn worker_file() -> PathBuf {
    workspace_root().join("sdk/js/service-worker/palaver-push-sw.js")
}

fn browser_dir() -> PathBuf {
    workspace_root().join("tests/browser")
}

fn uid(account: &Account) -> UserId {
    UserId::parse(&account.user_id).unwrap()
}

fn vapid_public_key(server: &Server) -> String {
    let (status, body) = http(server.addr, "GET", "/v1/push/vapid-key", None, &[]);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["public_key"].as_str().unwrap().to_owned()
}

/// Waits until `watcher` sees `user` with no live socket.
fn wait_offline(watcher: &mut Client, user: &UserId) {
    let deadline = Instant::now() + WAIT;
    loop {
        let status = match watcher.ok(Op::UserGet { user: user.clone() }) {
            OkBody::Profile(profile) => profile.presence.map(|p| p.status),
            other => panic!("{other:?}"),
        };
        if status == Some(PresenceStatus::Offline) {
            return;
        }
        assert!(Instant::now() < deadline, "{user} still shows {status:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for the `count`th push the service accepted.
fn wait_push(service: &PushService, count: usize) -> ReceivedPush {
    let received = service.wait_for(count, WAIT);
    assert!(received.len() >= count, "{count} pushes: {received:?}; refused {:?}", service.refused());
    received[count - 1].clone()
}

/// The browser, with the worker registered on a page and notifications allowed.
struct Browser {
    driver: Child,
    input: ChildStdin,
    lines: Receiver<String>,
}

impl Browser {
    fn start() -> Browser {
        let (chromium, node) = (outside_tool(CHROMIUM), outside_tool(NODE));
        assert!(
            browser_dir().join("node_modules/playwright-core").is_dir(),
            "playwright-core is not installed: ./x test, or cd tests/browser && npm ci"
        );
        let mut driver = Command::new(node)
            .current_dir(browser_dir())
            .arg("push_service_worker.mjs")
            .arg(chromium)
            .arg(worker_file())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let input = driver.stdin.take().unwrap();
        let stdout = driver.stdout.take().unwrap();
        let (lines_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });
        let browser = Browser { driver, input, lines };
        assert_eq!(browser.next_line("READY"), "READY");
        browser
    }

    fn next_line(&self, what: &str) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the browser did not report {what} (see the driver's output above)"))
    }

    /// Delivers `data` as a push to the worker; returns what it posted to the page and
    /// the notifications shown after it.
    fn deliver(&mut self, data: &[u8]) -> (Value, Vec<Value>) {
        let text = String::from_utf8(data.to_vec()).unwrap();
        writeln!(self.input, "{}", Value::String(text)).unwrap();
        self.input.flush().unwrap();
        let answer: Value = serde_json::from_str(&self.next_line("a shown push")).unwrap();
        (answer["posted"].clone(), answer["notifications"].as_array().unwrap().clone())
    }

    fn finish(mut self) {
        drop(self.input);
        assert!(self.driver.wait().unwrap().success(), "the driver failed (see its output above)");
    }
}

/// The notification tagged for `room` among `shown`.
fn for_room<'a>(shown: &'a [Value], room: &RoomId) -> &'a Value {
    let tag = format!("palaver:{room}");
    let mut tagged = shown.iter().filter(|n| n["tag"] == tag.as_str());
    let notification = tagged.next().unwrap_or_else(|| panic!("no notification tagged {tag}: {shown:?}"));
    assert!(tagged.next().is_none(), "one notification per room: {shown:?}");
    notification
}

fn encrypted(room: &RoomId, cid: &str) -> Op {
    Op::Send {
        room: room.clone(),
        cid: ClientMsgId::parse(cid).unwrap(),
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
    }
}

#[test]
fn the_service_worker_shows_the_servers_pushes_one_notification_per_room() {
    let server = Server::start(&["--push-allow-networks", "127.0.0.0/8", "--push-previews"]);
    let service = PushService::start(&vapid_public_key(&server));
    let [alice, bob] = ["alice", "bob"].map(|n| register(server.addr, n));
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let room = a.create_room("ops", RoomKind::Public);
    let direct = match a.ok(Op::DmOpen { user: uid(&bob) }) {
        OkBody::Room(r) => r.room.room_id,
        other => panic!("{other:?}"),
    };
    // Bob's browser subscribed (the stub plays its push service), then he left.
    let mut b = Client::login(server.addr, Codec::Json, &bob);
    b.join(&room, None);
    let subscription = service.subscription("bob");
    b.ok(Op::PushSubscribe {
        endpoint: subscription.endpoint,
        p256dh: subscription.p256dh,
        auth: subscription.auth,
    });
    b.ok(Op::NotificationsSet { level: Some(NotifyLevel::All), keywords: None });
    b.close();
    wait_offline(&mut a, &uid(&bob));
    let mut browser = Browser::start();

    // A mention with a preview: the room's name over the sender and the text.
    let (seq, _) = a.say(&room, "s1", "@bob the deploy is done");
    let push = wait_push(&service, 1);
    let (posted, shown) = browser.deliver(&push.payload);
    let notification = for_room(&shown, &room);
    assert_eq!(notification["title"], "ops");
    assert_eq!(notification["body"], "alice: @bob the deploy is done");
    assert_eq!(notification["renotify"], true);
    assert_eq!(notification["data"]["room"], room.as_str());
    assert_eq!(notification["data"]["seq"], seq);
    assert_eq!(notification["data"]["sender"], alice.user_id.as_str());
    assert_eq!(posted["type"], "palaver.push");
    assert_eq!(posted["push"], notification["data"]);
    assert_eq!(
        posted["notification"],
        json!({"title": "ops", "body": "alice: @bob the deploy is done", "tag": format!("palaver:{room}")})
    );

    // The room's next message replaces the notification; an encrypted one has no text.
    a.ok(encrypted(&room, "s2"));
    let push = wait_push(&service, 2);
    let (_, shown) = browser.deliver(&push.payload);
    assert_eq!(shown.len(), 1, "{shown:?}");
    let notification = for_room(&shown, &room);
    assert_eq!(notification["title"], "ops");
    assert_eq!(notification["body"], "New message from alice");
    assert_eq!(notification["data"]["seq"], seq + 1);

    // A direct room (no room name) has its own notification, titled with the sender.
    let (dm_seq, _) = a.say(&direct, "d1", "lunch?");
    let push = wait_push(&service, 3);
    let (_, shown) = browser.deliver(&push.payload);
    assert_eq!(shown.len(), 2, "{shown:?}");
    let notification = for_room(&shown, &direct);
    assert_eq!(
        (notification["title"].as_str(), notification["body"].as_str()),
        (Some("alice"), Some("lunch?"))
    );
    assert_eq!(notification["data"]["seq"], dm_seq);
    assert_eq!(for_room(&shown, &room)["body"], "New message from alice");

    // A push the worker cannot read still shows that a message waits.
    let (posted, shown) = browser.deliver(b"not a push");
    assert_eq!(posted["push"], Value::Null);
    let unread = shown.iter().find(|n| n["tag"] == "palaver").unwrap_or_else(|| panic!("{shown:?}"));
    assert_eq!(unread["title"], "New message");
    assert_eq!(shown.len(), 3, "{shown:?}");
    browser.finish();
    assert!(service.refused().is_empty(), "{:?}", service.refused());
}

/// The worker is a file of the npm package (outside the bundle whose size is budgeted:
/// a page never imports it).
#[test]
fn the_package_ships_the_service_worker() {
    let npm = outside_tool(NPM);
    let output = Command::new(npm)
        .current_dir(workspace_root().join("sdk/js"))
        .args(["pack", "--dry-run", "--json", "--ignore-scripts"])
        .output()
        .unwrap();
    assert!(output.status.success(), "npm pack: {}", String::from_utf8_lossy(&output.stderr));
    let packed: Value = serde_json::from_slice(&output.stdout).unwrap();
    let files: Vec<&str> =
        packed[0]["files"].as_array().unwrap().iter().filter_map(|f| f["path"].as_str()).collect();
    assert!(files.contains(&"service-worker/palaver-push-sw.js"), "{files:?}");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(workspace_root().join("sdk/js/package.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["exports"]["./service-worker"], "./service-worker/palaver-push-sw.js");
}
