//! Messaging depth in a two-node cluster over a real NATS server: edit history, pins,
//! threads, read-by, forwards and room-wide mentions asked from the node that does not own the
//! room are decided by its owner, and what a node reads from its replica (a forward's
//! original, mention counts) arrives there through the log.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests: failing loudly is the point")]

use std::time::{Duration, Instant};

use palaver_e2e::{Client, Nats, Server, WAIT, metric, register};
use palaver_protocol::{ClientMsgId, Codec, ErrorCode, OkBody, Op, ReplyBody, RoomId, RoomKind};

fn start_node(nats: &Nats, id: &str) -> Server {
    Server::start(&["--cluster", &nats.url, "--node-id", id, "--presence-interval-ms", "100"])
}

/// A request retried while the cluster settles (a room moving, a replica catching up).
fn ok_eventually(client: &mut Client, op: Op, settled: impl Fn(&OkBody) -> bool) -> OkBody {
    let deadline = Instant::now() + WAIT;
    loop {
        match client.request(op.clone()) {
            ReplyBody::Ok(ok) if settled(&ok) => return ok,
            ReplyBody::Ok(ok) => assert!(Instant::now() < deadline, "{} never settled: {ok:?}", op.name()),
            ReplyBody::Err(e) if matches!(e.code, ErrorCode::Unavailable | ErrorCode::NotFound) => {
                assert!(Instant::now() < deadline, "{} failed: {e:?}", op.name());
            }
            ReplyBody::Err(e) => panic!("{} failed: {e:?}", op.name()),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ok(client: &mut Client, op: Op) -> OkBody {
    ok_eventually(client, op, |_| true)
}

fn login_when_replicated(addr: std::net::SocketAddr, account: &palaver_e2e::Account) -> Client {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut client = Client::connect(addr, Codec::Json);
        if let ReplyBody::Ok(_) = client.request(Op::Auth { token: account.access_token.clone() }) {
            return client;
        }
        assert!(Instant::now() < deadline, "{} cannot log in on {addr}", account.username);
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn create(client: &mut Client, name: &str, kind: RoomKind) -> RoomId {
    match ok(client, Op::RoomCreate { name: name.into(), kind, topic: None, settings: None }) {
        OkBody::Room(r) => r.room.room_id,
        other => panic!("{other:?}"),
    }
}

fn say(client: &mut Client, room: &RoomId, cid: &str, text: &str) -> u64 {
    match ok(client, palaver_e2e::send_op(room, cid, text)) {
        OkBody::Sent(sent) => sent.seq,
        other => panic!("{other:?}"),
    }
}

#[test]
fn edits_pins_readers_forwards_and_room_mentions_work_from_either_node() {
    let nats = Nats::start();
    let nodes = [start_node(&nats, "n1"), start_node(&nats, "n2")];
    let deadline = Instant::now() + WAIT;
    while !nodes.iter().all(|n| metric(n.addr, "palaver_cluster_live_nodes") == 2) {
        assert!(Instant::now() < deadline, "the nodes did not see each other");
        std::thread::sleep(Duration::from_millis(50));
    }
    let alice = register(nodes[0].addr, "alice");
    let bob = register(nodes[1].addr, "bob");
    let mut a = login_when_replicated(nodes[0].addr, &alice);
    let mut b = login_when_replicated(nodes[1].addr, &bob);
    // Several rooms, so that some are owned by each node.
    let rooms: Vec<RoomId> = (0..4).map(|i| create(&mut a, &format!("r{i}"), RoomKind::Public)).collect();
    let secret = create(&mut a, "secret", RoomKind::Private);
    for room in &rooms {
        ok(&mut a, Op::Join { room: room.clone(), since: None });
        ok(&mut b, Op::Join { room: room.clone(), since: None });
    }
    let plan = say(&mut a, &secret, "s", "the plan");

    for (i, room) in rooms.iter().enumerate() {
        let seq = say(&mut a, room, &format!("m{i}"), "first draft");
        ok(&mut a, Op::Edit { room: room.clone(), seq, text: "final".into() });
        // Edit history, from the other node.
        match ok(&mut b, Op::EditList { room: room.clone(), seq, limit: None, cursor: None }) {
            OkBody::Edits(edits) => assert_eq!(edits.versions[0].text, "first draft"),
            other => panic!("{other:?}"),
        }
        // A pin by the owner, listed on the other node.
        ok(&mut a, Op::Pin { room: room.clone(), seq });
        match ok(&mut b, Op::PinList { room: room.clone(), limit: None, cursor: None }) {
            OkBody::Pins(pins) => assert_eq!(pins.pins[0].message.seq, seq),
            other => panic!("{other:?}"),
        }
        // A thread reply sent on n2, read with its root's summary on n1.
        let mut reply = palaver_e2e::send_op(room, &format!("t{i}"), "in a thread");
        if let Op::Send { thread, .. } = &mut reply {
            *thread = Some(seq);
        }
        let reply = match ok(&mut b, reply) {
            OkBody::Sent(sent) => sent.seq,
            other => panic!("{other:?}"),
        };
        let thread = Op::ThreadHistory {
            room: room.clone(),
            root: seq,
            before: None,
            after: None,
            limit: None,
            cursor: None,
        };
        match ok(&mut a, thread) {
            OkBody::ThreadHistory(page) => {
                assert_eq!(page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![reply]);
                assert_eq!(
                    page.root.thread_summary.as_deref().map(|s| (s.count, s.last_seq)),
                    Some((1, reply))
                );
            }
            other => panic!("{other:?}"),
        }
        match ok(&mut a, Op::ThreadList { room: room.clone(), limit: None, cursor: None }) {
            OkBody::Threads(list) => assert_eq!((list.threads[0].root.seq, list.threads[0].unread), (seq, 1)),
            other => panic!("{other:?}"),
        }
        // Bob reads on n2; alice sees it on n1.
        ok(&mut b, Op::Receipt { room: room.clone(), delivered: None, read: Some(seq) });
        let readers =
            Op::ReceiptList { room: room.clone(), seq, delivered: false, limit: None, cursor: None };
        match ok(&mut a, readers) {
            OkBody::ReceiptList(list) => assert_eq!(list.receipts[0].user.as_str(), bob.user_id),
            other => panic!("{other:?}"),
        }
        // A forward from the private room, shown to alice only, whichever node owns it.
        let forward = Op::Forward {
            room: room.clone(),
            cid: ClientMsgId::parse(&format!("f{i}")).unwrap(),
            from_room: secret.clone(),
            seq: plan,
            text: String::new(),
        };
        let forwarded = match ok(&mut a, forward) {
            OkBody::Sent(sent) => sent.seq,
            other => panic!("{other:?}"),
        };
        let history = Op::History {
            room: room.clone(),
            before: None,
            after: None,
            limit: None,
            cursor: None,
            threads: Default::default(),
        };
        let source = |page: &OkBody| match page {
            OkBody::History(h) => h
                .messages
                .iter()
                .find(|m| m.seq == forwarded)
                .and_then(|m| m.forward.as_ref()?.source.clone()),
            _ => None,
        };
        let shown = ok_eventually(&mut a, history.clone(), |page| source(page).is_some());
        assert_eq!(source(&shown).unwrap().text, "the plan");
        assert!(source(&ok(&mut b, history)).is_none());
        // The owner's @everyone counts for bob on n2, once his replica has it.
        say(&mut a, room, &format!("e{i}"), "@everyone look");
        ok_eventually(&mut b, Op::Sync { limit: None, cursor: None }, |sync| match sync {
            OkBody::Sync(s) => s.rooms.iter().any(|r| &r.room.room_id == room && r.mentions == 1),
            _ => false,
        });
    }
}
