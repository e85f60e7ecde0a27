//! A three-node cluster over a real NATS server (JetStream on): clients spread over all
//! three nodes chat in shared rooms, commands for rooms owned elsewhere are forwarded,
//! events (messages, typing, presence) cross nodes, search answers from any node; then
//! the node owning some rooms is killed with SIGKILL mid-traffic and the recorded
//! histories are checked like the single-node fault harness: nothing acknowledged lost,
//! no gap, no duplicate `cid`, and every client saw every message once, in order.
//! The log is trimmed to its tail once every node has it; a new node cannot start from
//! it alone, and starts from another node's backup instead.
//! Two users asking each other for friendship at the same moment on two nodes end up
//! friends (the pair's fence in the log), never with one request lost. A user's sockets
//! on another node hear the notices their home decides (a block flags at once; changed
//! notification settings arrive, and the other node has them). The
//! server API acts as a user on either node with one `cid` contract, and revoking a
//! bot's key on one node closes the bot's socket on the other.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use palaver_e2e::{
    Client, JWT_SECRET, Nats, Server, WAIT, http, metric, palaver_bin, post_json, register, send_op,
};
use palaver_protocol::{
    Codec, ErrorCode, Event, OkBody, Op, PresenceStatus, ReplyBody, RoomId, RoomKind, UserId,
};

const NODES: [&str; 3] = ["n1", "n2", "n3"];

fn start_node(nats: &Nats, id: &str) -> Server {
    Server::start(&["--cluster", &nats.url, "--node-id", id, "--presence-interval-ms", "100"])
}

fn start_cluster(nats: &Nats) -> Vec<Server> {
    let nodes: Vec<Server> = NODES.iter().map(|id| start_node(nats, id)).collect();
    wait_live(&nodes.iter().map(|n| n.addr).collect::<Vec<_>>(), 3);
    nodes
}

/// Until every node hears `n` live nodes.
fn wait_live(addrs: &[SocketAddr], n: u64) {
    let deadline = Instant::now() + WAIT;
    while !addrs.iter().all(|a| metric(*a, "palaver_cluster_live_nodes") == n) {
        assert!(Instant::now() < deadline, "the nodes did not see {n} live nodes");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A request that may meet a room moving between nodes (`unavailable`): retried.
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

/// An account registered on one node, usable on every node once replicated.
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

#[test]
fn three_nodes_chat_forward_and_share_events() {
    let nats = Nats::start();
    let nodes = start_cluster(&nats);
    let accounts: Vec<_> =
        ["alice", "bob", "carol"].iter().zip(&nodes).map(|(name, node)| register(node.addr, name)).collect();
    // One username, one account, whichever node is asked.
    let (status, body) = post_json(
        nodes[2].addr,
        "/v1/auth/register",
        &serde_json::json!({"username": "alice", "password": "password-123"}),
    );
    assert_eq!(status, 409, "{body}");
    // alice on n1, bob on n2, carol on n3.
    let mut clients: Vec<Client> = accounts
        .iter()
        .zip(&nodes)
        .map(|(account, node)| login_when_replicated(node.addr, account))
        .collect();
    let ids: Vec<UserId> = accounts.iter().map(|a| UserId::parse(&a.user_id).unwrap()).collect();

    let room = match ok_retry(
        &mut clients[0],
        Op::RoomCreate { name: "across".into(), kind: RoomKind::Public, topic: None, settings: None },
    ) {
        OkBody::Room(r) => r.room.room_id,
        other => panic!("{other:?}"),
    };
    for client in &mut clients {
        ok_retry(client, Op::Join { room: room.clone(), since: None });
    }

    // Everyone talks in turn; every node's clients see one order, gapless.
    let mut acked = Vec::new();
    for round in 0..5 {
        for (i, client) in clients.iter_mut().enumerate() {
            let text = format!("round {round} from {i} zebra{round}{i}");
            match ok_retry(client, palaver_e2e::send_op(&room, &format!("c{round}-{i}"), &text)) {
                OkBody::Sent(sent) => acked.push((sent.seq, text)),
                other => panic!("{other:?}"),
            }
        }
    }
    let seqs: Vec<u64> = acked.iter().map(|(s, _)| *s).collect();
    let first = seqs[0];
    assert_eq!(seqs, (first..first + 15).collect::<Vec<_>>(), "one owner assigns every seq");
    for (i, client) in clients.iter_mut().enumerate() {
        let mut seen = Vec::new();
        while seen.len() < acked.len() {
            let m = client.next_message();
            if m.seq >= first {
                seen.push((m.seq, m.text));
            }
        }
        assert_eq!(seen, acked, "client {i} sees every message once, in order");
    }
    let forwarded: u64 = nodes.iter().map(|n| metric(n.addr, "palaver_cluster_forwarded_total")).sum();
    assert!(forwarded > 0, "commands for a room owned elsewhere are forwarded");

    // Typing on n2 reaches n1 and n3.
    ok_retry(&mut clients[1], Op::TypingStart { room: room.clone() });
    for i in [0, 2] {
        clients[i].wait_event(|e| match e {
            Event::Typing(t) if t.user == ids[1] && t.active => Some(()),
            _ => None,
        });
    }

    // A read receipt on n1 is announced on n2 and n3.
    let last = first + 14;
    ok_retry(&mut clients[0], Op::Receipt { room: room.clone(), delivered: Some(last), read: Some(last) });
    for i in [1, 2] {
        clients[i].wait_event(|e| match e {
            Event::Receipt(r) if r.user == ids[0] && r.read == last => Some(()),
            _ => None,
        });
    }

    // Presence: alice (n1) follows carol (n3), who goes offline.
    ok_retry(&mut clients[0], Op::PresenceSubscribe { users: vec![ids[2].clone()] });
    match clients[0].ok(Op::UserGet { user: ids[2].clone() }) {
        OkBody::Profile(p) => assert_eq!(p.presence.unwrap().status, PresenceStatus::Online),
        other => panic!("{other:?}"),
    }
    clients.pop().unwrap().close();
    clients[0].wait_event(|e| match e {
        Event::Presence(p) if p.user == ids[2] && p.status == PresenceStatus::Offline => Some(()),
        _ => None,
    });

    // History and search answer on any node (each node keeps a full replica).
    let history = match ok_retry(
        &mut clients[1],
        Op::History {
            room: room.clone(),
            before: None,
            after: None,
            limit: Some(50),
            cursor: None,
            threads: Default::default(),
        },
    ) {
        OkBody::History(h) => h.messages,
        other => panic!("{other:?}"),
    };
    assert_eq!(history.iter().filter(|m| m.seq >= first).count(), 15);
    let deadline = Instant::now() + WAIT;
    loop {
        let op = Op::Search {
            query: "zebra00".into(),
            room: None,
            from: None,
            before: None,
            after: None,
            order: None,
            limit: None,
            cursor: None,
        };
        let hits = match clients[1].ok(op) {
            OkBody::Search(s) => s.hits.len(),
            other => panic!("{other:?}"),
        };
        if hits == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "a message sent on n1 is found from n2");
        std::thread::sleep(Duration::from_millis(200));
    }

    // A graceful stop says goodbye: the others drop it at once (no 1.5 s of silence
    // first), and the room goes on.
    let mut nodes = nodes;
    let stopping = Instant::now();
    assert!(nodes[2].terminate().success(), "a cluster node exits cleanly on SIGTERM");
    wait_live(&[nodes[0].addr, nodes[1].addr], 2);
    eprintln!("departure noticed {:?} after SIGTERM", stopping.elapsed());
    match ok_retry(&mut clients[0], palaver_e2e::send_op(&room, "after-leave", "still here")) {
        OkBody::Sent(sent) => assert_eq!(sent.seq, first + 15),
        other => panic!("{other:?}"),
    }

    // A brand-new node (empty data directory) replays the log before it owns anything:
    // bob logs in there, finds a message sent on n1 before it existed, and talks on.
    let n4 = start_node(&nats, "n4");
    wait_live(&[nodes[0].addr, nodes[1].addr, n4.addr], 3);
    let mut bob_on_n4 = login_when_replicated(n4.addr, &accounts[1]);
    let deadline = Instant::now() + WAIT;
    loop {
        let op = Op::Search {
            query: "zebra40".into(),
            room: Some(room.clone()),
            from: None,
            before: None,
            after: None,
            order: None,
            limit: None,
            cursor: None,
        };
        if matches!(bob_on_n4.ok(op), OkBody::Search(s) if s.hits.len() == 1) {
            break;
        }
        assert!(Instant::now() < deadline, "the new node indexed the replayed log");
        std::thread::sleep(Duration::from_millis(100));
    }
    ok_retry(&mut bob_on_n4, Op::Join { room: room.clone(), since: Some(first + 14) });
    match ok_retry(&mut bob_on_n4, palaver_e2e::send_op(&room, "from-n4", "hello from a new node")) {
        OkBody::Sent(sent) => assert_eq!(sent.seq, first + 16),
        other => panic!("{other:?}"),
    }
    let replayed = bob_on_n4.next_message();
    assert_eq!((replayed.seq, replayed.text.as_str()), (first + 15, "still here"), "resume with since on n4");
    assert!(metric(n4.addr, "palaver_cluster_applied_records_total") > 0);
}

/// What one SDK client recorded.
#[derive(Default)]
struct Log {
    acked: HashMap<String, (RoomId, u64)>,
    failed: Vec<(String, String)>,
    received: BTreeMap<RoomId, Vec<(u64, String)>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_owner_moves_its_rooms_without_losing_acknowledged_messages() {
    use palaver_sdk::core::ClientEvent;
    use palaver_sdk::{ClientOptions, Credentials};

    let nats = Nats::start();
    let mut nodes = start_cluster(&nats);
    let urls: Vec<String> = nodes.iter().map(|n| n.url("")).collect();
    let owners: Vec<String> = NODES.iter().map(|s| (*s).to_owned()).collect();

    // Two clients per node; each fails over to the other nodes.
    let mut clients = Vec::new();
    for n in 0..6 {
        let home = n % 3;
        let others: Vec<String> = (1..3).map(|k| urls[(home + k) % 3].clone()).collect();
        let mut options = ClientOptions::with_codec(if n % 2 == 0 { Codec::Json } else { Codec::Rkyv })
            .failing_over_to(others);
        options.core.backoff_initial_ms = 50;
        options.core.backoff_max_ms = 400;
        options.core.request_timeout_ms = 30_000;
        let credentials = Credentials::register(format!("member{n}"), "password-123");
        clients.push(palaver_sdk::Client::connect_with(&urls[home], credentials, options).await.unwrap());
    }
    // Four rooms, two of them owned by n2 (the node that will die).
    let mut rooms = Vec::new();
    let (mut on_victim, mut elsewhere) = (0, 0);
    for r in 0..60 {
        if on_victim == 2 && elsewhere == 2 {
            break;
        }
        let room = clients[0].create_room(&format!("room{r}"), RoomKind::Public).await.unwrap().room_id;
        let victim = palaver_core::rendezvous_owner(&owners, &room) == Some("n2");
        if victim && on_victim < 2 {
            on_victim += 1;
            rooms.push(room);
        } else if !victim && elsewhere < 2 {
            elsewhere += 1;
            rooms.push(room);
        }
    }
    assert_eq!(rooms.len(), 4);
    for client in &clients {
        for room in &rooms {
            client.join(room).await.unwrap();
        }
    }

    let logs: Vec<Arc<Mutex<Log>>> = (0..clients.len()).map(|_| Arc::default()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let (mut receivers, mut senders) = (Vec::new(), Vec::new());
    for (n, client) in clients.iter().enumerate() {
        let log = logs[n].clone();
        let mut events = client.events();
        receivers.push(tokio::spawn(async move {
            while let Some(event) = events.next().await {
                if let ClientEvent::Message(m) = event {
                    log.lock().unwrap().received.entry(m.room.clone()).or_default().push((m.seq, m.text));
                }
            }
        }));
        let (client, log, stop, rooms) = (client.clone(), logs[n].clone(), stop.clone(), rooms.clone());
        senders.push(tokio::spawn(async move {
            let mut in_flight = tokio::task::JoinSet::new();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                while in_flight.len() >= 4 {
                    in_flight.join_next().await;
                }
                let room = rooms[(i + n) % rooms.len()].clone();
                let text = format!("m{n}-{i}");
                i += 1;
                let (client, log) = (client.clone(), log.clone());
                in_flight.spawn(async move {
                    match client.send(&room, &text).await {
                        Ok(sent) => {
                            log.lock().unwrap().acked.insert(text, (room, sent.seq));
                        }
                        Err(e) => log.lock().unwrap().failed.push((text, e.to_string())),
                    }
                });
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            while in_flight.join_next().await.is_some() {}
        }));
    }

    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let acked_before: usize = logs.iter().map(|l| l.lock().unwrap().acked.len()).sum();
    nodes[1].kill9();
    let killed = Instant::now();
    // Handover: the first message acknowledged in a room n2 owned, after the kill.
    let moved: BTreeSet<RoomId> =
        rooms.iter().filter(|r| palaver_core::rendezvous_owner(&owners, r) == Some("n2")).cloned().collect();
    let counts = |logs: &[Arc<Mutex<Log>>]| -> usize {
        logs.iter().map(|l| l.lock().unwrap().acked.values().filter(|(r, _)| moved.contains(r)).count()).sum()
    };
    let before_kill = counts(&logs);
    let handover = loop {
        if counts(&logs) > before_kill {
            break killed.elapsed();
        }
        assert!(killed.elapsed() < WAIT * 2, "the dead node's rooms are served again");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    eprintln!("handover: first acknowledged send in a moved room {handover:?} after SIGKILL");
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    // The node comes back (same id and data, a new incarnation): it catches up with the
    // log, and its rooms move back to it while the traffic goes on.
    let acked_while_down = counts(&logs);
    nodes[1].restart();
    wait_live(&nodes.iter().map(|n| n.addr).collect::<Vec<_>>(), 3);
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        tokio::time::timeout(WAIT * 4, s).await.expect("every send finishes").unwrap();
    }
    assert!(counts(&logs) > acked_while_down, "the returning owner serves its rooms again");
    let returned = metric(nodes[1].addr, "palaver_cluster_applied_records_total");
    assert!(returned > 0, "the returning node caught up from the log");
    for node in &nodes {
        assert_eq!(metric(node.addr, "palaver_cluster_ownership_conflicts_total"), 0, "one writer per room");
    }

    // The stored truth, read on a surviving node.
    let reader = &clients[0];
    let mut stored: BTreeMap<RoomId, Vec<palaver_protocol::Message>> = BTreeMap::new();
    for room in &rooms {
        let mut all = Vec::new();
        let mut pager = reader.history_pager(room, 200);
        while let Some(page) = pager.next_page().await.unwrap() {
            all.extend(page);
        }
        all.sort_by_key(|m| m.seq);
        all.retain(|m| m.text.starts_with('m'));
        stored.insert(room.clone(), all);
    }
    let deadline = Instant::now() + WAIT * 2;
    loop {
        let caught_up = logs.iter().all(|log| {
            let log = log.lock().unwrap();
            rooms.iter().all(|room| {
                let last = stored[room].last().map_or(0, |m| m.seq);
                log.received.get(room).and_then(|r| r.last()).map_or(0, |(s, _)| *s) >= last
            })
        });
        if caught_up {
            break;
        }
        assert!(Instant::now() < deadline, "clients did not catch up with the stored history");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for client in &clients {
        client.close();
    }
    for r in receivers {
        r.abort();
    }

    let mut stored_texts: HashMap<&str, (&RoomId, u64)> = HashMap::new();
    for (room, messages) in &stored {
        let seqs: Vec<u64> = messages.iter().map(|m| m.seq).collect();
        let first = seqs.first().copied().unwrap_or(1);
        assert_eq!(seqs, (first..first + seqs.len() as u64).collect::<Vec<_>>(), "room {room}: gapless");
        let cids: BTreeSet<_> = messages.iter().map(|m| m.cid.as_str()).collect();
        assert_eq!(cids.len(), messages.len(), "room {room}: no cid stored twice");
        for m in messages {
            assert!(stored_texts.insert(&m.text, (room, m.seq)).is_none(), "{:?} stored twice", m.text);
        }
    }
    let (mut total_acked, mut total_failed) = (0, 0);
    for (n, log) in logs.iter().enumerate() {
        let log = log.lock().unwrap();
        for (text, (room, seq)) in &log.acked {
            assert_eq!(
                stored_texts.get(text.as_str()),
                Some(&(room, *seq)),
                "acknowledged {text:?} is stored"
            );
        }
        total_acked += log.acked.len();
        total_failed += log.failed.len();
        for (text, why) in &log.failed {
            eprintln!("indeterminate send {text}: {why}");
        }
        for room in &rooms {
            let got: Vec<u64> = log.received.get(room).map_or(Vec::new(), |r| {
                r.iter().filter(|(_, t)| t.starts_with('m')).map(|(s, _)| *s).collect()
            });
            let want: Vec<u64> = stored[room].iter().map(|m| m.seq).collect();
            assert_eq!(got, want, "client {n} saw every message of {room} once, in order");
        }
    }
    // Every node's replica holds the same messages, the restarted one included: stop
    // the nodes (cleanly) and read each one's store directly.
    for node in &mut nodes {
        assert!(node.terminate().success());
    }
    for (node, id) in nodes.iter().zip(NODES) {
        let store =
            palaver_storage::Store::open(&node.data_dir().join("db"), palaver_storage::Durability::Fsync)
                .unwrap();
        for (room, messages) in &stored {
            let mut replica = store.messages_between(room, 1, u64::MAX, 100_000).unwrap();
            replica.retain(|m| m.text.starts_with('m'));
            let replica: Vec<(u64, &str)> = replica.iter().map(|m| (m.seq, m.text.as_str())).collect();
            let want: Vec<(u64, &str)> = messages.iter().map(|m| (m.seq, m.text.as_str())).collect();
            assert_eq!(replica, want, "{id}'s replica of {room}");
        }
    }
    eprintln!(
        "cluster fault: {acked_before} acknowledged before the kill, {total_acked} in all, \
         {total_failed} indeterminate, {} stored",
        stored_texts.len()
    );
    assert!(total_acked > acked_before, "traffic went on after the kill");
}

/// A friendship request, retried while the pair is being changed on another node
/// (`unavailable`) or the other user's account has not reached this node yet.
fn request_friendship(client: &mut Client, user: UserId) -> palaver_protocol::FriendState {
    let deadline = Instant::now() + WAIT;
    loop {
        match client.request(Op::FriendRequest { user: user.clone() }) {
            ReplyBody::Ok(OkBody::Friend(ok)) => return ok.friend.state,
            ReplyBody::Ok(other) => panic!("friend.request answered {other:?}"),
            ReplyBody::Err(e)
                if matches!(e.code, ErrorCode::Unavailable | ErrorCode::NotFound)
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            ReplyBody::Err(e) => panic!("friend.request failed: {e:?}"),
        }
    }
}

#[test]
fn two_nodes_deciding_one_friendship_at_once_agree() {
    const PAIRS: usize = 12;
    let nats = Nats::start();
    let nodes: Vec<Server> = NODES[..2].iter().map(|id| start_node(&nats, id)).collect();
    wait_live(&nodes.iter().map(|n| n.addr).collect::<Vec<_>>(), 2);
    let left: Vec<_> = (0..PAIRS).map(|i| register(nodes[0].addr, &format!("left{i}"))).collect();
    let right: Vec<_> = (0..PAIRS).map(|i| register(nodes[1].addr, &format!("right{i}"))).collect();
    let uid = |a: &palaver_e2e::Account| UserId::parse(&a.user_id).unwrap();
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let ask = |node: SocketAddr,
               me: Vec<palaver_e2e::Account>,
               them: Vec<UserId>,
               barrier: Arc<std::sync::Barrier>| {
        std::thread::spawn(move || {
            let mut clients: Vec<Client> = me.iter().map(|a| login_when_replicated(node, a)).collect();
            // Each pair's two requests leave at the same instant.
            let mut answers = Vec::new();
            for (client, other) in clients.iter_mut().zip(them) {
                barrier.wait();
                answers.push(request_friendship(client, other));
            }
            answers
        })
    };
    let a = ask(nodes[0].addr, left.clone(), right.iter().map(uid).collect(), barrier.clone());
    let b = ask(nodes[1].addr, right.clone(), left.iter().map(uid).collect(), barrier);
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    eprintln!("answers on n1: {a:?}\nanswers on n2: {b:?}");
    // Both asked, so each pair is friends, as both nodes' replicas say.
    for node in &nodes {
        for account in left.iter().chain(&right) {
            let mut client = login_when_replicated(node.addr, account);
            let deadline = Instant::now() + WAIT;
            loop {
                let list = match client.request(Op::FriendList { limit: None, cursor: None }) {
                    ReplyBody::Ok(OkBody::Friends(list)) => list.friends,
                    other => panic!("{other:?}"),
                };
                let states: Vec<_> = list.iter().map(|f| f.state).collect();
                if states == [palaver_protocol::FriendState::Friends] {
                    break;
                }
                assert!(Instant::now() < deadline, "{} on {}: {states:?}", account.username, node.addr);
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    let fenced: u64 = nodes.iter().map(|n| metric(n.addr, "palaver_cluster_fenced_writes_total")).sum();
    eprintln!("{fenced} pair changes refused by the log and retried");
}

#[test]
fn a_trimmed_log_keeps_its_tail_and_a_new_node_starts_from_a_backup() {
    let nats = Nats::start();
    let start =
        |id: &str| Server::start(&["--cluster", &nats.url, "--node-id", id, "--cluster-log-keep", "40"]);
    let nodes = [start("n1"), start("n2")];
    wait_live(&[nodes[0].addr, nodes[1].addr], 2);
    let alice = register(nodes[0].addr, "alice");
    let mut client = login_when_replicated(nodes[0].addr, &alice);
    let room = match ok_retry(
        &mut client,
        Op::RoomCreate { name: "long".into(), kind: RoomKind::Public, topic: None, settings: None },
    ) {
        OkBody::Room(r) => r.room.room_id,
        other => panic!("{other:?}"),
    };
    ok_retry(&mut client, Op::Join { room: room.clone(), since: None });
    for i in 0..200 {
        ok_retry(&mut client, send_op(&room, &format!("m{i}"), &format!("message {i}")));
    }
    // The trimmer (n1, the lowest id) trims once both replicas have the records.
    let deadline = Instant::now() + WAIT * 4;
    while metric(nodes[0].addr, "palaver_cluster_log_trimmed_before") < 150 {
        assert!(Instant::now() < deadline, "the log was not trimmed");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Writes go on across the trim (leases it would break were given up first).
    for i in 200..220 {
        ok_retry(&mut client, send_op(&room, &format!("m{i}"), &format!("message {i}")));
    }

    // A node with an empty store cannot catch up from a trimmed log: it says so.
    let empty = tempfile::tempdir().unwrap();
    let refused = std::process::Command::new(palaver_bin())
        .args([
            "--cluster",
            &nats.url,
            "--node-id",
            "n3",
            "--http-addr",
            "127.0.0.1:0",
            "--quic-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(empty.path())
        .env("PALAVER_JWT_SECRET", JWT_SECRET)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("trimmed") && stderr.contains("palaver restore"), "{stderr}");

    // From a backup of n2, it starts and reads the tail from the log.
    let backup = tempfile::tempdir().unwrap();
    let out = backup.path().join("b");
    let run = |args: &[&str]| std::process::Command::new(palaver_bin()).args(args).output().unwrap();
    let backed_up =
        run(&["backup", "--data-dir", nodes[1].data_dir().to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(backed_up.status.success(), "{}", String::from_utf8_lossy(&backed_up.stderr));
    for i in 220..240 {
        ok_retry(&mut client, send_op(&room, &format!("m{i}"), &format!("message {i}")));
    }
    let seeded = tempfile::tempdir().unwrap();
    let target = seeded.path().join("data");
    let restored = run(&["restore", "--from", out.to_str().unwrap(), "--data-dir", target.to_str().unwrap()]);
    assert!(restored.status.success(), "{}", String::from_utf8_lossy(&restored.stderr));
    let seeding = Instant::now();
    let third = {
        // The restored directory becomes the node's data directory.
        let dir = tempfile::tempdir().unwrap();
        std::fs::remove_dir(dir.path()).unwrap();
        std::fs::rename(&target, dir.path()).unwrap();
        Server::start_in(dir, &["--cluster", &nats.url, "--node-id", "n3", "--cluster-log-keep", "40"])
    };
    wait_live(&[nodes[0].addr, nodes[1].addr, third.addr], 3);
    let mut reader = login_when_replicated(third.addr, &alice);
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = http(third.addr, "GET", &format!("/v1/replica/digest?room={room}"), None, &[]);
        let ours: serde_json::Value = serde_json::from_str(&body).unwrap();
        let (_, body) = http(nodes[0].addr, "GET", &format!("/v1/replica/digest?room={room}"), None, &[]);
        let theirs: serde_json::Value = serde_json::from_str(&body).unwrap();
        if status == 200 && ours["sha256"] == theirs["sha256"] && ours["messages"].as_u64() >= Some(240) {
            break;
        }
        assert!(Instant::now() < deadline, "the seeded node did not catch up: {ours} vs {theirs}");
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "a node seeded from a backup serves the room, caught up, {:?} after it started",
        seeding.elapsed()
    );
    ok_retry(&mut reader, Op::Join { room: room.clone(), since: None });
    let page = match ok_retry(
        &mut reader,
        Op::History {
            room: room.clone(),
            before: None,
            after: None,
            limit: Some(50),
            cursor: None,
            threads: Default::default(),
        },
    ) {
        OkBody::History(h) => h.messages,
        other => panic!("{other:?}"),
    };
    assert_eq!(page.first().map(|m| m.text.as_str()), Some("message 239"));
}

/// Until `watcher` (on one node) sees `user` online: that node's book of sessions then
/// counts the user's sessions on the other node.
fn wait_online(watcher: &mut Client, user: &UserId) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let ReplyBody::Ok(OkBody::Profile(profile)) = watcher.request(Op::UserGet { user: user.clone() })
            && profile.presence.is_some_and(|p| p.status == PresenceStatus::Online)
        {
            return;
        }
        assert!(Instant::now() < deadline, "{user} never showed online");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_users_sockets_on_another_node_hear_their_invitations_and_blocks() {
    let nats = Nats::start();
    let nodes: Vec<Server> = NODES[..2].iter().map(|id| start_node(&nats, id)).collect();
    wait_live(&nodes.iter().map(|n| n.addr).collect::<Vec<_>>(), 2);
    let (n1, n2) = (nodes[0].addr, nodes[1].addr);
    let alice = register(n1, "alice");
    let bob = register(n2, "bob");
    let bob_id = UserId::parse(&bob.user_id).unwrap();
    let alice_id = UserId::parse(&alice.user_id).unwrap();

    // Alice on n1 shares a room with bob, whose only socket is on n2.
    let mut a = login_when_replicated(n1, &alice);
    let mut b2 = login_when_replicated(n2, &bob);
    let shared = match ok_retry(
        &mut a,
        Op::RoomCreate { name: "shared".into(), kind: RoomKind::Public, topic: None, settings: None },
    ) {
        OkBody::Room(room) => room.room.room_id,
        other => panic!("{other:?}"),
    };
    ok_retry(&mut a, Op::Join { room: shared.clone(), since: None });
    ok_retry(&mut b2, Op::Join { room: shared.clone(), since: None });
    wait_online(&mut a, &bob_id);

    // An invitation decided on n1 reaches bob's socket on n2 as it happens.
    let private = match ok_retry(
        &mut a,
        Op::RoomCreate { name: "private".into(), kind: RoomKind::Private, topic: None, settings: None },
    ) {
        OkBody::Room(room) => room.room.room_id,
        other => panic!("{other:?}"),
    };
    ok_retry(&mut a, Op::RoomInvite { room: private.clone(), user: bob_id.clone() });
    let invited = b2.wait_event(|e| match e {
        Event::Invite(invite) => Some(invite.clone()),
        _ => None,
    });
    assert_eq!((invited.room.room_id, invited.by), (private, alice_id.clone()));

    // Bob blocks alice from a socket on n1: his socket on n2 flags her messages at once.
    let mut b1 = login_when_replicated(n1, &bob);
    ok_retry(&mut b1, Op::Block { user: alice_id.clone() });
    let (seq, _) = a.say(&shared, "after-block", "can you see this?");
    let seen = b2.wait_event(|e| match e {
        Event::Message(m) if m.seq == seq => Some(m.clone()),
        _ => None,
    });
    assert!(seen.blocked, "bob's socket on n2 did not learn of the block: {seen:?}");

    // Notification settings changed on n1 reach bob's socket on n2, and n2 has them.
    let set = Op::NotificationsSet {
        level: Some(palaver_protocol::NotifyLevel::All),
        keywords: Some(vec!["release".into()]),
    };
    let settings = match ok_retry(&mut b1, set) {
        OkBody::Notifications(ok) => ok.notifications,
        other => panic!("{other:?}"),
    };
    let heard = b2.wait_event(|e| match e {
        Event::Notifications(ok) => Some(ok.notifications.clone()),
        _ => None,
    });
    assert_eq!(heard, settings);
    let deadline = Instant::now() + WAIT;
    loop {
        match ok_retry(&mut b2, Op::NotificationsGet {}) {
            OkBody::Notifications(ok) if ok.notifications == settings => break,
            other => assert!(Instant::now() < deadline, "n2 never had the settings: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_server_api_acts_across_nodes_and_a_revoked_bot_key_closes_sockets_everywhere() {
    let nats = Nats::start();
    let mut nodes: Vec<Server> = NODES[..2].iter().map(|id| start_node(&nats, id)).collect();
    // A key the CLI makes (offline) is known to that node's data directory only, like an
    // admin grant: each node gets an operator's key of its own. Keys made online (below)
    // travel the log to every node.
    for node in &mut nodes {
        node.terminate();
    }
    let mut keys = Vec::new();
    for node in &nodes {
        let output = std::process::Command::new(palaver_bin())
            .args(["api-key", "create", "ops", "--scope", "users,rooms,publish,admin", "--data-dir"])
            .arg(node.data_dir())
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        keys.push(String::from_utf8_lossy(&output.stdout).lines().last().unwrap().trim().to_owned());
    }
    for node in &mut nodes {
        node.restart();
    }
    wait_live(&nodes.iter().map(|n| n.addr).collect::<Vec<_>>(), 2);
    let (n1, n2) = (nodes[0].addr, nodes[1].addr);
    let call = |addr: SocketAddr, key: &str, path: &str, body: serde_json::Value| {
        let auth = format!("Bearer {key}");
        let (status, text) = http(
            addr,
            "POST",
            path,
            Some(&body.to_string()),
            &[("authorization", &auth), ("content-type", "application/json")],
        );
        (status, serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default())
    };

    // A bot made on n1, with its key; the room made on n1 too.
    let made =
        call(n1, &keys[0], "/v1/server/users", serde_json::json!({"username": "relaybot", "bot": true}));
    assert_eq!(made.0, 201, "{:?}", made.1);
    let bot = made.1["user_id"].as_str().unwrap().to_owned();
    let bot_key =
        call(n1, &keys[0], "/v1/server/api-keys", serde_json::json!({"name": "relaybot", "bot": bot}));
    assert_eq!(bot_key.0, 201, "{:?}", bot_key.1);
    let bot_key = bot_key.1["key"].as_str().unwrap().to_owned();

    // On n2, once replicated: the bot signs in with its key, and n2's API acts as it in a
    // room whose owner may be either node.
    let deadline = Instant::now() + WAIT;
    let mut socket = loop {
        let mut client = Client::connect(n2, Codec::Json);
        if let ReplyBody::Ok(_) = client.request(Op::Auth { token: bot_key.clone() }) {
            break client;
        }
        assert!(Instant::now() < deadline, "n2 never accepted the bot's key");
        std::thread::sleep(Duration::from_millis(50));
    };
    let act = |addr: SocketAddr, key: &str, op: serde_json::Value| {
        let deadline = Instant::now() + WAIT;
        loop {
            let answer = call(addr, key, &format!("/v1/server/users/{bot}/ops"), op.clone());
            if answer.0 != 503 || Instant::now() > deadline {
                return answer;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let created =
        act(n2, &keys[1], serde_json::json!({"op": "room.create", "name": "relay", "kind": "public"}));
    assert_eq!(created.0, 200, "{:?}", created.1);
    let room = created.1["ok"]["room"]["room_id"].as_str().unwrap().to_owned();
    ok_retry(&mut socket, Op::Join { room: RoomId::parse(&room).unwrap(), since: None });
    let post = serde_json::json!({"op": "send", "room": room, "cid": "relay-1", "text": "across"});
    let sent = act(n1, &keys[0], post.clone());
    assert_eq!(sent.0, 200, "{:?}", sent.1);
    let again = act(n2, &keys[1], post);
    assert_eq!(again.1["ok"]["seq"], sent.1["ok"]["seq"], "one cid, one message, whichever node is asked");
    assert_eq!(again.1["ok"]["duplicate"], true);
    let seen = socket.next_message();
    assert_eq!(seen.text, "across");

    // The system announces through either node's API: one cid, one message, after the
    // bot's, heard on n2.
    let announce = |addr: SocketAddr, key: &str| {
        let body = serde_json::json!({"cid": "relay-notice", "text": "maintenance at noon"});
        let deadline = Instant::now() + WAIT;
        loop {
            let answer = call(addr, key, &format!("/v1/server/rooms/{room}/messages"), body.clone());
            if answer.0 != 503 || Instant::now() > deadline {
                return answer;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let first = announce(n1, &keys[0]);
    assert_eq!(first.0, 200, "{:?}", first.1);
    let seq = first.1["ok"]["seq"].as_u64().unwrap();
    assert_eq!(seq, sent.1["ok"]["seq"].as_u64().unwrap() + 1);
    let second = announce(n2, &keys[1]);
    assert_eq!(
        (second.1["ok"]["seq"].as_u64(), &second.1["ok"]["duplicate"]),
        (Some(seq), &serde_json::json!(true))
    );
    let notice = socket.next_notice();
    assert_eq!(
        (notice.seq, notice.sender.as_str(), notice.text.as_str()),
        (seq, "u_system", "maintenance at noon")
    );

    // Revoked on n1: the bot's socket on n2 closes.
    let key_id = &bot_key[4..20];
    let revoked = call(n1, &keys[0], &format!("/v1/server/api-keys/{key_id}/revoke"), serde_json::json!({}));
    assert_eq!(revoked.0, 200, "{:?}", revoked.1);
    assert_eq!(socket.expect_close_with_reason(), Some((4001, "session ended: API key revoked".to_owned())));
}
