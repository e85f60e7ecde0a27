//! The fault harness: many SDK clients (WebSocket JSON, WebSocket rkyv and QUIC) send
//! into many rooms while the server is killed with SIGKILL and restarted again and
//! again. The clients retry their unacknowledged sends themselves (same `cid`) and
//! resume their rooms with `since`. Afterwards the recorded history is checked, the way a
//! Jepsen checker reads its log:
//!
//! - every acknowledged message is stored, at the seq it was acknowledged with;
//! - each room's seqs are gapless (1, 2, 3, …) and every reader sees one order;
//! - no `cid` and no message text is stored twice;
//! - every client saw each message of its rooms at most once while it ran, and, once
//!   resumed, exactly once.
//!
//! Short by default (10 cycles, about half a minute); `./x test --long` (which sets
//! `PALAVER_LONG_TESTS=1`) runs 200 cycles with 30 clients. `PALAVER_FAULT_CYCLES`,
//! `PALAVER_FAULT_CLIENTS` and `PALAVER_FAULT_ROOMS` override either, and
//! `PALAVER_FAULT_SEED` replays a schedule.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use palaver_e2e::{Server, WAIT, long_tests};
use palaver_protocol::{Codec, RoomId, RoomKind};
use palaver_sdk::core::ClientEvent;
use palaver_sdk::{Client, ClientOptions, Credentials, QuicOptions, QuicTrust};

const PASSWORD: &str = "password-123";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A tiny deterministic generator (xorshift64*), so a failing schedule can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn options(n: usize, server: &Server) -> ClientOptions {
    let mut options = match n % 3 {
        0 => ClientOptions::with_codec(Codec::Json),
        1 => ClientOptions::with_codec(Codec::Rkyv),
        _ => {
            let mut o = ClientOptions::with_quic(QuicOptions::new(
                server.quic_addr.to_string(),
                QuicTrust::CertificatePem(server.dev_cert_pem()),
            ));
            // A killed server sends nothing: notice within a second or two.
            o.quic.as_mut().unwrap().idle_timeout_ms = 1_500;
            o
        }
    };
    options.core.backoff_initial_ms = 50;
    options.core.backoff_max_ms = 400;
    // Sends stay pending while the server is down; a restart takes well under this.
    options.core.request_timeout_ms = 30_000;
    options
}

/// What one client recorded.
#[derive(Default)]
struct Log {
    /// Acknowledged sends: text → (room, seq).
    acked: HashMap<String, (RoomId, u64)>,
    /// Sends that ended in an error (indeterminate: stored at most once).
    failed: Vec<(String, String)>,
    /// Messages received, per room, in arrival order: (seq, text).
    received: BTreeMap<RoomId, Vec<(u64, String)>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_kill_9_loses_nothing_acknowledged_and_duplicates_nothing() {
    let long = long_tests();
    let cycles = env_or("PALAVER_FAULT_CYCLES", if long { 200 } else { 10 });
    let n_clients = env_or("PALAVER_FAULT_CLIENTS", if long { 30 } else { 9 }) as usize;
    let n_rooms = env_or("PALAVER_FAULT_ROOMS", 6) as usize;
    let seed = env_or(
        "PALAVER_FAULT_SEED",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1,
    );
    eprintln!(
        "fault harness: {cycles} cycles, {n_clients} clients, {n_rooms} rooms, PALAVER_FAULT_SEED={seed}"
    );
    let mut rng = Rng(seed);

    let mut server = Server::start(&["--shards", "2"]);
    let url = server.url("");
    let mut clients = Vec::new();
    for n in 0..n_clients {
        let client = Client::connect_with(
            &url,
            Credentials::register(format!("client{n}"), PASSWORD),
            options(n, &server),
        )
        .await
        .unwrap();
        clients.push(client);
    }
    let mut rooms = Vec::new();
    for r in 0..n_rooms {
        rooms.push(clients[0].create_room(&format!("fault{r}"), RoomKind::Public).await.unwrap().room_id);
    }
    // Each client is in three rooms; every room has members on several transports.
    let membership: Vec<Vec<RoomId>> = (0..n_clients)
        .map(|n| (0..3.min(n_rooms)).map(|k| rooms[(n + k) % n_rooms].clone()).collect())
        .collect();
    for (client, mine) in clients.iter().zip(&membership) {
        for room in mine {
            client.join(room).await.unwrap();
        }
    }
    // Client 0 reads every room's history at the end.
    for room in &rooms {
        clients[0].join(room).await.unwrap();
    }

    let logs: Vec<Arc<Mutex<Log>>> = (0..n_clients).map(|_| Arc::default()).collect();
    let stop_sending = Arc::new(AtomicBool::new(false));
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
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
        let (client, log, stop, mine) =
            (client.clone(), logs[n].clone(), stop_sending.clone(), membership[n].clone());
        let mut rng = Rng(seed ^ (n as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        senders.push(tokio::spawn(async move {
            // Up to four sends in flight per client, about 40 a second (under the
            // per-socket op limit), each with a unique text.
            let mut in_flight = tokio::task::JoinSet::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                while in_flight.len() >= 4 {
                    in_flight.join_next().await;
                }
                let room = mine[rng.below(mine.len() as u64) as usize].clone();
                let text = format!("c{n}-{i}");
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
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            while in_flight.join_next().await.is_some() {}
        }));
    }

    // The fault schedule: run for a while, kill -9, stay down for a moment, restart.
    let started = Instant::now();
    for cycle in 0..cycles {
        tokio::time::sleep(Duration::from_millis(300 + rng.below(900))).await;
        server.kill9();
        tokio::time::sleep(Duration::from_millis(rng.below(400))).await;
        server.restart();
        eprintln!("cycle {} done at {:?}", cycle + 1, started.elapsed());
    }
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    stop_sending.store(true, Ordering::Relaxed);
    for s in senders {
        tokio::time::timeout(WAIT * 4, s).await.expect("every send finishes").unwrap();
    }

    // The stored truth, read through client 0 (a member of every room).
    let mut stored: BTreeMap<RoomId, Vec<palaver_protocol::Message>> = BTreeMap::new();
    for room in &rooms {
        let mut all = Vec::new();
        let mut pager = clients[0].history_pager(room, 200);
        while let Some(page) = pager.next_page().await.unwrap() {
            all.extend(page);
        }
        all.sort_by_key(|m| m.seq);
        stored.insert(room.clone(), all);
    }

    // Every client catches up to the stored end of each of its rooms.
    let deadline = Instant::now() + WAIT * 2;
    loop {
        let caught_up = membership.iter().zip(&logs).all(|(mine, log)| {
            let log = log.lock().unwrap();
            mine.iter().all(|room| {
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

    // The checks.
    let mut stored_texts: HashMap<&str, (&RoomId, u64)> = HashMap::new();
    let mut total_stored = 0;
    for (room, messages) in &stored {
        let seqs: Vec<u64> = messages.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=messages.len() as u64).collect::<Vec<_>>(), "room {room}: seqs gapless");
        let cids: BTreeSet<_> = messages.iter().map(|m| m.cid.as_str()).collect();
        assert_eq!(cids.len(), messages.len(), "room {room}: no cid stored twice");
        for m in messages {
            let previous = stored_texts.insert(&m.text, (room, m.seq));
            assert!(previous.is_none(), "text {:?} stored twice", m.text);
        }
        total_stored += messages.len();
    }
    let mut total_acked = 0;
    let mut total_failed = 0;
    for (n, log) in logs.iter().enumerate() {
        let log = log.lock().unwrap();
        for (text, (room, seq)) in &log.acked {
            assert_eq!(
                stored_texts.get(text.as_str()),
                Some(&(room, *seq)),
                "acknowledged {text:?} is stored at seq {seq} of {room}"
            );
        }
        total_acked += log.acked.len();
        total_failed += log.failed.len();
        for (text, why) in &log.failed {
            eprintln!("indeterminate send {text}: {why}");
        }
        for room in &membership[n] {
            let got: Vec<u64> =
                log.received.get(room).map_or(Vec::new(), |r| r.iter().map(|(s, _)| *s).collect());
            let want: Vec<u64> = stored[room].iter().map(|m| m.seq).collect();
            assert_eq!(got, want, "client {n} saw every message of {room} exactly once, in order");
            for (seq, text) in &log.received[room] {
                assert_eq!(&stored[room][*seq as usize - 1].text, text, "client {n} saw what is stored");
            }
        }
    }
    eprintln!(
        "fault harness: {cycles} kill -9 cycles in {:?}; {total_acked} acknowledged, {total_stored} stored, \
         0 lost, {total_failed} indeterminate",
        started.elapsed()
    );
    assert!(total_acked > 0);
    // Messages are only stored for sends that were made, and every one was answered.
    assert_eq!(total_failed, 0, "every send was eventually acknowledged (the SDK retries across restarts)");
    assert_eq!(total_stored, total_acked);
}
