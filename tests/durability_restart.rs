//! Nothing acknowledged is lost: not across a clean restart, not across `kill -9`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palaver_e2e::{Client, Server, register, send_op};
use palaver_protocol::{Codec, OkBody, ReplyBody, RoomId, RoomKind, ServerFrame};

/// Reads a room's whole history, oldest first.
fn full_history(client: &mut Client, room: &RoomId) -> Vec<palaver_protocol::Message> {
    let mut all = Vec::new();
    let mut before = None;
    loop {
        let page = client.history(room, before, Some(100));
        if page.is_empty() {
            break;
        }
        before = page.last().map(|m| m.seq);
        all.extend(page);
    }
    all.reverse();
    all
}

#[test]
fn kill_9_mid_stream_loses_no_acknowledged_message_and_seq_continues() {
    // Rate limits high enough for the owner to retry every acknowledged send at the end.
    let mut server = Server::start(&["--shards", "2", "--ops-per-sec", "100000", "--ops-burst", "100000"]);
    let owner = register(server.addr, "owner");
    let mut admin = Client::login(server.addr, Codec::Json, &owner);
    let rooms: Vec<RoomId> =
        (0..3).map(|i| admin.create_room(&format!("room{i}"), RoomKind::Public)).collect();

    // Senders pipeline messages with unique cids and record every acknowledgement.
    let acked: Arc<Mutex<HashMap<String, (RoomId, u64)>>> = Arc::default();
    let accounts: Vec<_> = (0..3).map(|n| register(server.addr, &format!("sender{n}"))).collect();
    let senders: Vec<_> = (0..3)
        .map(|n| {
            let addr = server.addr;
            let rooms = rooms.clone();
            let acked = acked.clone();
            let account = accounts[n].clone();
            std::thread::spawn(move || {
                let mut c = Client::login(addr, if n == 1 { Codec::Rkyv } else { Codec::Json }, &account);
                for room in &rooms {
                    c.join(room, None);
                }
                for i in 0..400 {
                    let room = &rooms[i % rooms.len()];
                    let cid = format!("s{n}-{i}");
                    let id = c.send_op(send_op(room, &cid, &format!("message {i} from {n}")));
                    // Read acks as they come; the server dies at some point.
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.reply(id)));
                    match outcome {
                        Ok(ReplyBody::Ok(OkBody::Sent(s))) => {
                            acked.lock().unwrap().insert(cid, (room.clone(), s.seq));
                        }
                        _ => return,
                    }
                }
            })
        })
        .collect();

    // Let a few hundred acknowledgements happen, then pull the plug.
    while acked.lock().unwrap().len() < 300 {
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill9();
    for s in senders {
        let _ = s.join();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 300);

    server.restart();
    let mut reader = Client::login(server.addr, Codec::Json, &owner);
    let mut stored_cids = HashSet::new();
    for room in &rooms {
        let history = full_history(&mut reader, room);
        let seqs: Vec<u64> = history.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "gapless seqs in {room}");
        for m in &history {
            assert!(stored_cids.insert(m.cid.to_string()), "cid {} stored twice", m.cid);
        }
        for (cid, (acked_room, seq)) in &acked {
            if acked_room == room {
                let m = history.iter().find(|m| m.cid.as_str() == cid);
                assert_eq!(m.map(|m| m.seq), Some(*seq), "acknowledged {cid} lost or moved");
            }
        }
        // The room continues after the last stored seq, with no reuse.
        reader.join(room, None);
        let (next, dup) = reader.say(room, &format!("after-restart-{room}"), "still here");
        assert_eq!((next, dup), (seqs.len() as u64 + 1, false));
    }
    // Every retry of an acknowledged message by its sender is recognised as a duplicate
    // after the restart: the first ones while each room's cid filter is being built from
    // storage, the rest through that filter, which must hold every stored cid.
    let mut retriers: Vec<Client> =
        accounts.iter().map(|a| Client::login(server.addr, Codec::Rkyv, a)).collect();
    for retrier in &mut retriers {
        for room in &rooms {
            retrier.join(room, None);
        }
    }
    for (cid, (room, seq)) in &acked {
        // cids are `s{n}-{i}`: sender n sent it.
        let n: usize = cid[1..cid.find('-').unwrap()].parse().unwrap();
        assert_eq!(retriers[n].say(room, cid, "retry"), (*seq, true), "retry of {cid}");
    }
    let mut sender = Client::login(server.addr, Codec::Rkyv, &owner);
    for room in &rooms {
        sender.join(room, None);
    }
    // And new cids are still new, with the next seqs.
    for room in &rooms {
        let last = full_history(&mut reader, room).last().map_or(0, |m| m.seq);
        assert_eq!(sender.say(room, &format!("fresh-{room}"), "new"), (last + 1, false));
    }
}

#[test]
fn sigterm_drains_connections_exits_zero_and_keeps_everything() {
    let mut server = Server::start(&["--shards", "2"]);
    let alice = register(server.addr, "alice");
    let mut c = Client::login(server.addr, Codec::Json, &alice);
    let room = c.create_room("durable", RoomKind::Public);
    c.join(&room, None);
    for i in 1..=25 {
        c.say(&room, &format!("c{i}"), "persist me");
    }
    let status = server.terminate();
    assert!(status.success(), "exit status {status}");
    assert_eq!(c.expect_close(), Some(1001));

    server.restart();
    let mut c = Client::login(server.addr, Codec::Json, &alice);
    assert_eq!(c.join(&room, None), 25);
    assert_eq!(full_history(&mut c, &room).len(), 25);
}

#[test]
fn buffered_durability_survives_a_clean_restart() {
    let mut server = Server::start(&["--durability", "buffered"]);
    let alice = register(server.addr, "alice");
    let mut c = Client::login(server.addr, Codec::Rkyv, &alice);
    let room = c.create_room("fast", RoomKind::Public);
    c.join(&room, None);
    for i in 1..=10 {
        c.say(&room, &format!("c{i}"), "quick");
    }
    assert!(server.terminate().success());
    server.restart();
    let mut c = Client::login(server.addr, Codec::Rkyv, &alice);
    assert_eq!(c.join(&room, None), 10);
}

#[test]
fn sigterm_under_heavy_sending_answers_or_fails_every_request_and_exits_zero() {
    // Per-socket op limits out of the way: this is about load, not rate limiting.
    let mut server = Server::start(&["--shards", "2", "--ops-per-sec", "100000", "--ops-burst", "100000"]);
    let owner = register(server.addr, "owner");
    let mut admin = Client::login(server.addr, Codec::Json, &owner);
    let rooms: Vec<RoomId> =
        (0..4).map(|i| admin.create_room(&format!("busy{i}"), RoomKind::Public)).collect();

    #[derive(Default)]
    struct Outcomes {
        acked: HashMap<String, (RoomId, u64)>,
        refused: HashMap<String, String>,
        unanswered: usize,
    }
    let outcomes: Arc<Mutex<Outcomes>> = Arc::default();
    let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let logged_in = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let senders: Vec<_> = (0..6)
        .map(|n| {
            let (addr, rooms, outcomes) = (server.addr, rooms.clone(), outcomes.clone());
            let (started, logged_in) = (started.clone(), logged_in.clone());
            let account = register(addr, &format!("busy{n}"));
            std::thread::spawn(move || {
                let mut c = Client::login(addr, if n % 2 == 0 { Codec::Json } else { Codec::Rkyv }, &account);
                for room in &rooms {
                    c.join(room, None);
                }
                logged_in.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                // Pipelined bursts of 50 sends; the server goes away somewhere in between.
                for burst in 0.. {
                    let mut ids: Vec<(u64, String, RoomId)> = Vec::new();
                    let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        for i in 0..50 {
                            let room = rooms[(burst + i) % rooms.len()].clone();
                            let cid = format!("b{n}-{burst}-{i}");
                            let id = c.send_op(send_op(&room, &cid, "under load"));
                            ids.push((id, cid, room));
                        }
                    }));
                    if written.is_err() {
                        // The socket is gone mid-burst: what was written has no answer.
                        outcomes.lock().unwrap().unanswered += ids.len();
                        return;
                    }
                    started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    // Replies come in any order (rooms have different owners).
                    let mut pending: HashMap<u64, (String, RoomId)> =
                        ids.into_iter().map(|(id, cid, room)| (id, (cid, room))).collect();
                    while !pending.is_empty() {
                        let frame = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.recv()));
                        let mut o = outcomes.lock().unwrap();
                        match frame {
                            Ok(ServerFrame::Reply { re, body }) => {
                                let Some((cid, room)) = pending.remove(&re) else { continue };
                                match body {
                                    ReplyBody::Ok(OkBody::Sent(s)) => {
                                        o.acked.insert(cid, (room, s.seq));
                                    }
                                    ReplyBody::Err(e) => {
                                        o.refused.insert(cid, format!("{:?}: {}", e.code, e.message));
                                    }
                                    other => panic!("unexpected answer {other:?}"),
                                }
                            }
                            Ok(ServerFrame::Event(_)) => {}
                            Err(_) => {
                                // The socket closed: the rest of the burst had no answer.
                                o.unanswered += pending.len();
                                return;
                            }
                        }
                    }
                }
            })
        })
        .collect();

    let deadline = std::time::Instant::now() + palaver_e2e::WAIT;
    while started.load(std::sync::atomic::Ordering::Relaxed) < 30
        || logged_in.load(std::sync::atomic::Ordering::Relaxed) < 6
    {
        assert!(std::time::Instant::now() < deadline, "the senders did not get going");
        std::thread::sleep(Duration::from_millis(5));
    }
    let stop = std::time::Instant::now();
    let status = server.terminate();
    let took = stop.elapsed();
    assert!(status.success(), "exit status {status}");
    for s in senders {
        let _ = s.join();
    }
    let outcomes = outcomes.lock().unwrap();
    assert!(outcomes.acked.len() >= 300, "load was running: {}", outcomes.acked.len());
    for why in outcomes.refused.values() {
        assert!(why.starts_with("Unavailable"), "a refusal during shutdown is `unavailable`: {why}");
    }
    eprintln!(
        "SIGTERM under load: exit 0 after {took:?}; {} acknowledged, {} refused with unavailable, {} unanswered",
        outcomes.acked.len(),
        outcomes.refused.len(),
        outcomes.unanswered
    );

    server.restart();
    let mut reader = Client::login(server.addr, Codec::Json, &owner);
    let mut stored = HashSet::new();
    for room in &rooms {
        let history = full_history(&mut reader, room);
        let seqs: Vec<u64> = history.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "gapless seqs in {room}");
        for m in &history {
            assert!(stored.insert(m.cid.to_string()), "cid {} stored twice", m.cid);
        }
    }
    for (cid, (_, _)) in outcomes.acked.iter() {
        assert!(stored.contains(cid), "acknowledged {cid} is stored");
    }
    for cid in outcomes.refused.keys() {
        assert!(!stored.contains(cid), "{cid} was refused, so it must not be stored");
    }
}
