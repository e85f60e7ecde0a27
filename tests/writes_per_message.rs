//! What a message costs in socket writes, read from the server's own count
//! (`palaver_socket_writes_total`): every socket in the room gets one write per message,
//! and the sender's answer leaves in the same write as its own copy of the message, on
//! one shard or on two (where a room's owner is often another shard than the sender's
//! socket).
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests: failing loudly is the point")]

use palaver_e2e::{Client, Server, metric, register};
use palaver_protocol::{Codec, RoomKind};

const WRITES: &str = "palaver_socket_writes_total";
/// No heartbeat ping lands in a counted window.
const QUIET_HEARTBEAT: [&str; 4] = ["--ping-interval-secs", "600", "--idle-timeout-secs", "1200"];

/// The count once it stands still: a write is counted when its completion is reaped,
/// which can come a moment after the peer has read it.
fn settled_writes(server: &Server) -> u64 {
    let mut last = metric(server.addr, WRITES);
    loop {
        std::thread::sleep(std::time::Duration::from_millis(30));
        let now = metric(server.addr, WRITES);
        if now == last {
            return now;
        }
        last = now;
    }
}

fn server(shards: &str) -> Server {
    let mut args = vec!["--shards", shards];
    args.extend(QUIET_HEARTBEAT);
    Server::start(&args)
}

#[test]
fn a_send_and_the_senders_own_copy_leave_in_one_write() {
    for shards in ["1", "2"] {
        let server = server(shards);
        let shard_count: usize = shards.parse().unwrap();
        // Several users' sockets (the kernel spreads them over the shards), all kept open
        // (a socket closing would write its close frame), each with a room on every shard:
        // whichever shard a socket is on, one of its rooms has its owner on the other.
        let mut clients: Vec<Client> = (0..3)
            .map(|n| Client::login(server.addr, Codec::Json, &register(server.addr, &format!("writer{n}"))))
            .collect();
        for (n, client) in clients.iter_mut().enumerate() {
            for owner in 0..shard_count {
                let room = loop {
                    let room = client.create_room(&format!("notes {n}"), RoomKind::Public);
                    if palaver_core::shard_for(&room, shard_count) == owner {
                        break room;
                    }
                };
                client.join(&room, None);
                let before = settled_writes(&server);
                for i in 0..5 {
                    let (seq, _) = client.say(&room, &format!("{n}-{owner}-{i}"), "a note to self");
                    assert_eq!(client.next_message().seq, seq);
                }
                let writes = settled_writes(&server) - before;
                assert_eq!(
                    writes, 5,
                    "{shards} shard(s), socket {n}, room on shard {owner}: 5 sends took {writes} writes"
                );
            }
        }
    }
}

#[test]
fn each_member_socket_costs_one_write_per_message() {
    for shards in ["1", "2"] {
        let server = server(shards);
        let accounts: Vec<_> =
            ["alice", "bob", "carol"].iter().map(|name| register(server.addr, name)).collect();
        let mut clients: Vec<Client> =
            accounts.iter().map(|account| Client::login(server.addr, Codec::Rkyv, account)).collect();
        let room = clients[0].create_room("three", RoomKind::Public);
        for client in &mut clients {
            client.join(&room, None);
        }
        let before = settled_writes(&server);
        for i in 0..10 {
            let sender = i % 3;
            let (seq, _) = clients[sender].say(&room, &format!("m{i}"), "hello, all");
            for client in &mut clients {
                assert_eq!(client.next_message().seq, seq);
            }
        }
        let writes = settled_writes(&server) - before;
        assert_eq!(writes, 30, "{shards} shard(s): 10 messages to 3 sockets took {writes} writes");
    }
}
