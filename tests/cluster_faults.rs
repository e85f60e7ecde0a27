//! Faults of a three-node cluster over a real NATS server, under writers on every node
//! (SDK clients, unique cids, retried with the same cid by the SDK), each checked the
//! same way afterwards: every node is stopped and its store read back offline — nothing
//! acknowledged lost, acknowledged at the seq stored, no cid twice, no hole, and every
//! replica identical.
//!
//! - **A stalled owner**: the node owning the busy rooms is frozen with SIGSTOP long
//!   enough for the others to declare it dead and take its rooms, then resumed with
//!   SIGCONT, still believing it owns them and with writes queued: the log's per-room
//!   fence refuses them. Short run: one 3 s freeze; `PALAVER_LONG_TESTS=1`: 1.5, 3 and
//!   10 s, three times each.
//! - **A broker restart**: `nats-server` is killed with SIGKILL and started again on the
//!   same store after 5 s (five times with `PALAVER_LONG_TESTS=1`): replication resumes
//!   on every node by itself.
//!
//! - **A broker server lost**: with a three-server NATS cluster and the log at three
//!   replicas, the server leading the log stream is killed with SIGKILL, restarted after
//!   5 s, then a follower likewise (three rounds with `PALAVER_LONG_TESTS=1`): nothing
//!   acknowledged is lost, and writes go on (the longest pause between acknowledgements
//!   is reported).
//!
//! - **A node cut off from the broker** (its NATS connection reset and refused for 5 s,
//!   the process running on): it says it is not ready, owns no room and acknowledges no
//!   write while cut off; the others take its rooms; once healed it serves again.
//!
//! They run one after the other (each starts four processes on a small machine).
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use palaver_e2e::{LinkCut, Nats, NatsCluster, Server, WAIT, http, long_tests, metric};
use palaver_protocol::{Codec, RoomId, RoomKind};

const NODES: [&str; 3] = ["n1", "n2", "n3"];
/// The node frozen, whose rooms the writers use.
const VICTIM: usize = 1;

/// One fault test at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One node's stored messages per room: (seq, text, sender/cid).
type Replica = BTreeMap<RoomId, Vec<(u64, String, String)>>;

fn start_cluster(nats: &Nats) -> Vec<Server> {
    start_nodes(&nats.url, "1")
}

/// Three nodes on the NATS server(s) at `urls`, the log at `replicas` copies.
fn start_nodes(urls: &str, replicas: &str) -> Vec<Server> {
    start_nodes_through(&[urls, urls, urls], replicas)
}

/// Three nodes, each on the NATS server(s) at its own `urls`.
fn start_nodes_through(urls: &[&str; 3], replicas: &str) -> Vec<Server> {
    let nodes: Vec<Server> = NODES
        .iter()
        .zip(urls)
        .map(|(id, urls)| {
            Server::start(&[
                "--cluster",
                urls,
                "--node-id",
                id,
                "--shards",
                "1",
                "--cluster-log-replicas",
                replicas,
            ])
        })
        .collect();
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

/// What the writers were told: text → (room, seq) when acknowledged.
#[derive(Default)]
struct Told {
    acked: HashMap<String, (RoomId, u64)>,
    /// When each acknowledgement arrived.
    acked_at: Vec<Instant>,
    failed: Vec<(String, String)>,
}

/// Nine SDK writers, three per node (each failing over to the others), sending about
/// ten messages a second each into two rooms owned by [`VICTIM`], without waiting for
/// answers (up to 64 in flight), so sends keep coming while the owner is frozen.
struct Writers {
    clients: Vec<palaver_sdk::Client>,
    rooms: Vec<RoomId>,
    told: Arc<Mutex<Told>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    async fn start(nodes: &[Server]) -> Writers {
        let urls: Vec<String> = nodes.iter().map(|n| n.url("")).collect();
        let owners: Vec<String> = NODES.iter().map(|s| (*s).to_owned()).collect();
        let mut clients = Vec::new();
        for n in 0..9 {
            let home = n % 3;
            let others: Vec<String> = (1..3).map(|k| urls[(home + k) % 3].clone()).collect();
            let codec = if n % 2 == 0 { Codec::Json } else { Codec::Rkyv };
            let mut options = palaver_sdk::ClientOptions::with_codec(codec).failing_over_to(others);
            options.core.backoff_initial_ms = 50;
            options.core.backoff_max_ms = 400;
            options.core.request_timeout_ms = 60_000;
            let credentials = palaver_sdk::Credentials::register(format!("writer{n}"), "password-123");
            clients.push(palaver_sdk::Client::connect_with(&urls[home], credentials, options).await.unwrap());
        }
        let mut rooms = Vec::new();
        for r in 0..60 {
            if rooms.len() == 2 {
                break;
            }
            let room = clients[0].create_room(&format!("busy{r}"), RoomKind::Public).await.unwrap().room_id;
            if palaver_core::rendezvous_owner(&owners, &room) == Some(NODES[VICTIM]) {
                rooms.push(room);
            }
        }
        assert_eq!(rooms.len(), 2);
        for client in &clients {
            for room in &rooms {
                client.join(room).await.unwrap();
            }
        }
        let told: Arc<Mutex<Told>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for (n, client) in clients.iter().enumerate() {
            let (client, told, stop, rooms) = (client.clone(), told.clone(), stop.clone(), rooms.clone());
            tasks.push(tokio::spawn(async move {
                let mut in_flight = tokio::task::JoinSet::new();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    while in_flight.len() >= 64 {
                        in_flight.join_next().await;
                    }
                    let room = rooms[(i + n) % rooms.len()].clone();
                    let text = format!("w{n}-{i}");
                    i += 1;
                    let (client, told) = (client.clone(), told.clone());
                    in_flight.spawn(async move {
                        match client.send(&room, &text).await {
                            Ok(sent) => {
                                let mut told = told.lock().unwrap();
                                told.acked.insert(text, (room, sent.seq));
                                told.acked_at.push(Instant::now());
                            }
                            Err(e) => told.lock().unwrap().failed.push((text, e.to_string())),
                        }
                    });
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                while in_flight.join_next().await.is_some() {}
            }));
        }
        Writers { clients, rooms, told, stop, tasks }
    }

    /// Stops sending, waits for every send to be answered, closes the clients.
    async fn finish(self) -> (Vec<RoomId>, Told) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            tokio::time::timeout(WAIT * 8, task).await.expect("every send finishes").unwrap();
        }
        for client in &self.clients {
            client.close();
        }
        let told = std::mem::take(&mut *self.told.lock().unwrap());
        (self.rooms, told)
    }
}

/// Stops every node and reads each one's store: every replica identical, gapless, no
/// cid twice, every acknowledged message at its seq. Returns the messages stored.
fn check_replicas(nodes: &mut [Server], rooms: &[RoomId], told: &Told) -> usize {
    // Let every replica read the whole log first.
    std::thread::sleep(Duration::from_secs(2));
    let positions: Vec<u64> = nodes.iter().map(|n| metric(n.addr, "palaver_cluster_log_position")).collect();
    eprintln!("log positions applied: {positions:?}");
    // What an operator compares: every node's digest of each room, the same.
    for room in rooms {
        let digests: Vec<serde_json::Value> = nodes
            .iter()
            .map(|n| {
                let (status, body) =
                    http(n.addr, "GET", &format!("/v1/replica/digest?room={room}"), None, &[]);
                assert_eq!(status, 200, "{body}");
                let digest: serde_json::Value = serde_json::from_str(&body).unwrap();
                serde_json::json!([digest["messages"], digest["last_seq"], digest["sha256"]])
            })
            .collect();
        eprintln!("room {room}: digests {digests:?}");
        assert!(digests.windows(2).all(|w| w[0] == w[1]), "replicas of {room} differ: {digests:?}");
    }
    for node in nodes.iter_mut() {
        assert!(node.terminate().success());
    }
    let mut replicas: Vec<Replica> = Vec::new();
    for node in nodes.iter() {
        let store =
            palaver_storage::Store::open(&node.data_dir().join("db"), palaver_storage::Durability::Fsync)
                .unwrap();
        let mut here = BTreeMap::new();
        for room in rooms {
            let messages = store.messages_between(room, 1, u64::MAX, 1_000_000).unwrap();
            let seqs: Vec<u64> = messages.iter().map(|m| m.seq).collect();
            assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "room {room}: gapless");
            let messages: Vec<(u64, String, String)> = messages
                .into_iter()
                .filter(|m| m.system.is_none())
                .map(|m| (m.seq, m.text, format!("{}/{}", m.sender, m.cid)))
                .collect();
            here.insert(room.clone(), messages);
        }
        replicas.push(here);
    }
    let counts: Vec<Vec<usize>> =
        replicas.iter().map(|r| rooms.iter().map(|room| r[room].len()).collect()).collect();
    eprintln!("messages per replica and room: {counts:?}");
    // Seqs at which some replica holds another message than the first node's.
    let mut divergent = 0;
    for replica in replicas.iter().skip(1) {
        for room in rooms {
            let theirs: BTreeMap<u64, &String> = replica[room].iter().map(|(s, t, _)| (*s, t)).collect();
            let ours: BTreeMap<u64, &String> = replicas[0][room].iter().map(|(s, t, _)| (*s, t)).collect();
            let seqs: BTreeSet<u64> = theirs.keys().chain(ours.keys()).copied().collect();
            divergent += seqs.iter().filter(|s| theirs.get(s) != ours.get(s)).count();
        }
    }
    let mut stored: HashMap<&str, (&RoomId, u64)> = HashMap::new();
    let mut twice = 0;
    for (room, messages) in &replicas[0] {
        let mut cids = BTreeSet::new();
        for (seq, text, cid) in messages {
            let new_cid = cids.insert(cid);
            let new_text = stored.insert(text, (room, *seq)).is_none();
            if !(new_cid && new_text) {
                twice += 1;
            }
        }
    }
    let (mut lost, mut moved) = (0, 0);
    for (text, (room, seq)) in &told.acked {
        match stored.get(text.as_str()) {
            None => lost += 1,
            Some(at) if *at != (room, *seq) => moved += 1,
            Some(_) => {}
        }
    }
    for (text, why) in &told.failed {
        eprintln!("send {text} failed: {why}");
    }
    eprintln!(
        "{} acknowledged, {} failed, {} stored; {lost} lost, {moved} at another seq, {twice} stored twice, \
         {divergent} seqs where replicas differ",
        told.acked.len(),
        told.failed.len(),
        stored.len()
    );
    assert_eq!((lost, moved), (0, 0), "every acknowledged message is stored at its seq");
    assert_eq!(twice, 0, "no message stored twice");
    assert_eq!(divergent, 0, "every replica holds the same messages");
    stored.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_owner_cannot_overwrite_the_rooms_it_lost() {
    let _serial = SERIAL.lock().await;
    let stalls: Vec<Duration> = if long_tests() {
        [1_500, 3_000, 10_000].iter().flat_map(|ms| [Duration::from_millis(*ms); 3]).collect()
    } else {
        vec![Duration::from_secs(3)]
    };
    let nats = Nats::start();
    let mut nodes = start_cluster(&nats);
    let writers = Writers::start(&nodes).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for stall in &stalls {
        nodes[VICTIM].signal(libc::SIGSTOP);
        tokio::time::sleep(*stall).await;
        nodes[VICTIM].signal(libc::SIGCONT);
        eprintln!("owner frozen for {stall:?}, resumed");
        // The rooms move back to it and the traffic goes on.
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    let (rooms, told) = writers.finish().await;
    let fenced: u64 = nodes.iter().map(|n| metric(n.addr, "palaver_cluster_fenced_writes_total")).sum();
    let claims: u64 = nodes.iter().map(|n| metric(n.addr, "palaver_cluster_room_claims_total")).sum();
    eprintln!("stalled owner: {fenced} writes fenced, {claims} claims");
    check_replicas(&mut nodes, &rooms, &told);
    assert!(claims > 0, "the rooms changed hands");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_resumes_by_itself_after_the_broker_restarts() {
    let _serial = SERIAL.lock().await;
    let restarts = if long_tests() { 5 } else { 1 };
    let mut nats = Nats::start();
    let mut nodes = start_cluster(&nats);
    let writers = Writers::start(&nodes).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for _ in 0..restarts {
        let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
        tokio::task::block_in_place(|| nats.kill9_and_restart(Duration::from_secs(5)));
        let back = Instant::now();
        let before: Vec<u64> = addrs.iter().map(|a| metric(*a, "palaver_cluster_log_position")).collect();
        // Every replica applies new records again, without any node restarting.
        loop {
            let now: Vec<u64> = addrs.iter().map(|a| metric(*a, "palaver_cluster_log_position")).collect();
            if now.iter().zip(&before).all(|(n, b)| n > b) {
                break;
            }
            assert!(back.elapsed() < WAIT, "replication did not resume: {before:?} → {now:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("broker back: every replica applying again after {:?}", back.elapsed());
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    let (rooms, told) = writers.finish().await;
    check_replicas(&mut nodes, &rooms, &told);
}

/// The longest pause in acknowledgements between `from` and now (one still going on
/// counts), and when it began (after `from`).
fn longest_pause(told: &Told, from: Instant) -> (Duration, Duration) {
    let mut at: Vec<Instant> = told.acked_at.iter().copied().filter(|t| *t >= from).collect();
    at.sort();
    at.insert(0, from);
    at.push(Instant::now());
    at.windows(2).map(|w| (w[1] - w[0], w[0] - from)).max().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_server_broker_loses_nothing_when_any_server_dies() {
    let _serial = SERIAL.lock().await;
    let rounds = if long_tests() { 3 } else { 1 };
    let mut nats = NatsCluster::start();
    let mut nodes = start_nodes(&nats.url_list(), "3");
    let writers = Writers::start(&nodes).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    for _ in 0..rounds {
        for victim in ["leader", "follower"] {
            let leader = nats.stream_leader("PALAVER_LOG").await.expect("the log stream has a leader");
            let server = if victim == "leader" { leader } else { (leader + 1) % 3 };
            let killed = Instant::now();
            eprintln!("{:?} after the first kill: killing the stream {victim}", killed - started);
            tokio::task::block_in_place(|| nats.kill9_and_restart(server, Duration::from_secs(5)));
            eprintln!("stream {victim} {} killed with SIGKILL, back after 5 s", nats.names[server]);
            // Until writes have gone on for a while after the longest pause.
            let (pause, _) = loop {
                tokio::time::sleep(Duration::from_secs(4)).await;
                let (pause, began) = longest_pause(&writers.told.lock().unwrap(), killed);
                if killed + began + pause + Duration::from_secs(2) < Instant::now() {
                    break (pause, began);
                }
                assert!(killed.elapsed() < WAIT * 2, "writes did not resume after the {victim} died");
            };
            eprintln!("longest pause between acknowledgements after it: {pause:?}");
        }
    }
    let (rooms, told) = writers.finish().await;
    let (pause, at) = longest_pause(&told, started);
    eprintln!("longest pause between acknowledgements: {pause:?}, {at:?} after the first kill");
    check_replicas(&mut nodes, &rooms, &told);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_the_broker_owns_nothing_and_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let nats = Nats::start();
    let link = LinkCut::to(nats.port);
    let mut nodes = start_nodes_through(&[&nats.url, &link.url, &nats.url], "1");
    let writers = Writers::start(&nodes).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let victim = nodes[VICTIM].addr;
    link.cut();
    let cut = Instant::now();
    // Out of touch at once: not ready, owning nothing.
    while metric(victim, "palaver_cluster_serving") != 0 {
        assert!(cut.elapsed() < WAIT, "the cut-off node still says it serves");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = http(victim, "GET", "/readyz", None, &[]);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("out of touch"), "{body}");
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(cut.elapsed())).await;
    // The others took its rooms and acknowledged writes there meanwhile.
    let acked_while_cut =
        writers.told.lock().unwrap().acked_at.iter().filter(|t| **t > cut + Duration::from_secs(3)).count();
    link.heal();
    let healed = Instant::now();
    while metric(victim, "palaver_cluster_serving") != 1 {
        assert!(healed.elapsed() < WAIT, "the node did not serve again after the link healed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "cut off for 5 s: {acked_while_cut} acknowledged elsewhere meanwhile; serving again after {:?}",
        healed.elapsed()
    );
    assert!(acked_while_cut > 0, "the others served the rooms the cut-off node lost");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rooms, told) = writers.finish().await;
    check_replicas(&mut nodes, &rooms, &told);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_differs_from_the_log_rebuilds_the_room_from_it() {
    let _serial = SERIAL.lock().await;
    let nats = Nats::start();
    let mut nodes: Vec<Server> = NODES[..2]
        .iter()
        .map(|id| Server::start(&["--cluster", &nats.url, "--node-id", id, "--shards", "1"]))
        .collect();
    wait_live(&[nodes[0].addr, nodes[1].addr], 2);
    let urls: Vec<String> = nodes.iter().map(|n| n.url("")).collect();
    let credentials = palaver_sdk::Credentials::register("keeper", "password-123");
    let mut options =
        palaver_sdk::ClientOptions::with_codec(Codec::Json).failing_over_to(vec![urls[1].clone()]);
    options.core.request_timeout_ms = 30_000;
    let client = palaver_sdk::Client::connect_with(&urls[0], credentials, options).await.unwrap();
    let room = client.create_room("kept", RoomKind::Public).await.unwrap().room_id;
    client.join(&room).await.unwrap();
    for i in 0..10 {
        client.send(&room, &format!("before {i}")).await.unwrap();
    }
    // The node that does not own the room is the one whose replica is damaged.
    let owners: Vec<String> = NODES[..2].iter().map(|s| (*s).to_owned()).collect();
    let owner = owners
        .iter()
        .position(|n| Some(n.as_str()) == palaver_core::rendezvous_owner(&owners, &room))
        .unwrap();
    let victim = 1 - owner;
    let digest = |node: &Server| {
        let (_, body) = http(node.addr, "GET", &format!("/v1/replica/digest?room={room}"), None, &[]);
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let deadline = Instant::now() + WAIT;
    while digest(&nodes[0])["sha256"] != digest(&nodes[1])["sha256"] {
        assert!(Instant::now() < deadline, "the replicas did not converge");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Offline, the victim's store is damaged: one message rewritten, one invented after
    // the last.
    assert!(nodes[victim].terminate().success());
    {
        let store = palaver_storage::Store::open(
            &nodes[victim].data_dir().join("db"),
            palaver_storage::Durability::Fsync,
        )
        .unwrap();
        let last = store.last_seq(&room).unwrap();
        let mut tampered = store.message(&room, last - 2).unwrap().unwrap();
        tampered.text = "tampered".into();
        let mut invented = tampered.clone();
        invented.seq = last + 1;
        invented.cid = palaver_protocol::ClientMsgId::parse("invented").unwrap();
        invented.text = "never sent".into();
        store
            .apply(&[
                palaver_storage::Write::ReplaceMessage(tampered),
                palaver_storage::Write::AppendMessage(invented),
            ])
            .unwrap();
    }
    nodes[victim].restart();
    wait_live(&[nodes[0].addr, nodes[1].addr], 2);
    // The next message the victim applies from the log lands where it holds another: it
    // rebuilds the room from the log.
    for i in 0..5 {
        client.send(&room, &format!("after {i}")).await.unwrap();
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let (ours, theirs) = (digest(&nodes[victim]), digest(&nodes[owner]));
        if metric(nodes[victim].addr, "palaver_cluster_rebuilt_rooms_total") >= 1
            && ours["sha256"] == theirs["sha256"]
        {
            eprintln!("rebuilt: {ours}");
            break;
        }
        assert!(Instant::now() < deadline, "the damaged replica was not rebuilt: {ours} vs {theirs}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metric(nodes[victim].addr, "palaver_cluster_diverged_rooms"), 0);
    client.close();
}
