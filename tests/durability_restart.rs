//! Nothing acknowledged is lost: not across a clean restart, not across `kill -9`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palaver_e2e::{Client, Server, register, send_op};
use palaver_protocol::{Codec, OkBody, ReplyBody, RoomId, RoomKind};

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
    let mut server = Server::start(&["--shards", "2"]);
    let owner = register(server.addr, "owner");
    let mut admin = Client::login(server.addr, Codec::Json, &owner);
    let rooms: Vec<RoomId> =
        (0..3).map(|i| admin.create_room(&format!("room{i}"), RoomKind::Public)).collect();

    // Senders pipeline messages with unique cids and record every acknowledgement.
    let acked: Arc<Mutex<HashMap<String, (RoomId, u64)>>> = Arc::default();
    let senders: Vec<_> = (0..3)
        .map(|n| {
            let addr = server.addr;
            let rooms = rooms.clone();
            let acked = acked.clone();
            let account = register(addr, &format!("sender{n}"));
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
    // A retry of an acknowledged message is recognised as a duplicate after the restart.
    let (cid, (room, seq)) = acked.iter().next().unwrap();
    let mut sender = Client::login(server.addr, Codec::Rkyv, &owner);
    sender.join(room, None);
    assert_eq!(sender.say(room, cid, "retry"), (*seq, true));
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
