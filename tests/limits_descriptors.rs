//! Descriptor exhaustion, from one client address, against a server with a scaled-down
//! descriptor limit (`ulimit -n 600`): waves of WebSocket members of a busy room that never
//! read, then a flood of idle connections past the sockets' share of descriptors, while
//! a writer fills the store enough to flush it. The server must give each abandoned
//! socket's descriptor back while its client still holds the connection open, refuse what
//! exceeds the budget at accept, and never run its store out of descriptors: writes are
//! accepted throughout and afterwards, and `/healthz` stays healthy.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::net::TcpStream;
use std::time::{Duration, Instant};

use palaver_e2e::{Account, Client, Server, http, metric, register};
use palaver_protocol::{Codec, RoomKind};

const NOFILE: u32 = 600;
const WAVES: usize = 5;
const USERS: usize = 3;
const SOCKETS_PER_USER: usize = 80;

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn never_reading_members_and_idle_floods_cannot_exhaust_descriptors() {
    let server = Server::start_with_descriptor_limit(
        NOFILE,
        &[
            "--outbound-queue-bytes",
            "262144",
            "--write-timeout-secs",
            "2",
            "--handshake-timeout-secs",
            "2",
            "--max-connections-per-ip",
            "0",
            "--ops-per-sec",
            "2000",
            "--ops-burst",
            "2000",
            "--max-text-chars",
            "16000",
            // A socket whose kernel buffers took everything sent to it is caught by the
            // next ping it cannot take.
            "--ping-interval-secs",
            "2",
            "--idle-timeout-secs",
            "60",
        ],
    );
    let addr = server.addr;
    let writer_account = register(addr, "writer");
    let attackers: Vec<Account> = (0..USERS).map(|i| register(addr, &format!("attacker{i}"))).collect();
    let mut writer = Client::login(addr, Codec::Json, &writer_account);
    let room = writer.create_room("busy", RoomKind::Public);
    writer.join(&room, None);
    // Large messages, so that a few hundred fill what the kernel buffers for a socket
    // (megabytes on loopback) and the server's queue behind it.
    let text = "x".repeat(16_000);
    let mut sent = 0u64;
    let mut send = |writer: &mut Client, count: usize| {
        for _ in 0..count {
            sent += 1;
            writer.say(&room, &format!("c{sent}"), &text);
            // The writer reads only replies; its own copies of the messages are events
            // it drains as it goes.
            writer.events.clear();
        }
    };
    send(&mut writer, 10);
    let baseline = server.open_descriptors();

    for wave in 0..WAVES {
        // Members of the busy room that authenticate, join and then never read.
        let mut silent = Vec::new();
        for account in &attackers {
            for _ in 0..SOCKETS_PER_USER {
                let mut client = Client::login(addr, Codec::Json, account);
                client.join(&room, None);
                silent.push(client);
            }
        }
        assert!(server.open_descriptors() > baseline + USERS * SOCKETS_PER_USER / 2);
        // Traffic they will not take: their sockets back up, the server closes them as
        // slow consumers...
        send(&mut writer, 320);
        // ... and their descriptors come back while the clients still hold them open.
        wait_until(&format!("wave {wave}'s descriptors to be released"), Duration::from_secs(60), || {
            server.open_descriptors() <= baseline + 20
        });
        assert_eq!(silent.len(), USERS * SOCKETS_PER_USER);
        drop(silent);
    }
    assert!(metric(addr, "palaver_slow_consumers_total") >= (WAVES * USERS * SOCKETS_PER_USER) as u64);

    // A flood of idle connections past the sockets' share: refused at accept, and the
    // process never reaches its limit, so storage keeps its descriptors.
    let budget = metric(addr, "palaver_socket_budget") as usize;
    assert!(budget > 100 && budget < NOFILE as usize - 200, "budget {budget}");
    let flood: Vec<TcpStream> = (0..NOFILE).filter_map(|_| TcpStream::connect(addr).ok()).collect();
    std::thread::sleep(Duration::from_millis(500));
    let during = server.open_descriptors();
    assert!(during < NOFILE as usize - 150, "{during} descriptors open under the flood");
    // Meanwhile the writer, already connected, writes enough to flush memtables.
    send(&mut writer, 600);
    drop(flood);
    wait_until("the idle flood to be closed", Duration::from_secs(30), || {
        server.open_descriptors() <= baseline + 20
    });
    assert!(metric(addr, "palaver_connections_over_budget_total") > 0);

    // The store was never starved: healthy, writable, every message there.
    let (status, body) = http(addr, "GET", "/healthz", None, &[]);
    assert_eq!(status, 200, "{body}");
    send(&mut writer, 5);
    let newest = writer.history(&room, None, Some(1));
    assert_eq!(newest[0].seq, sent, "every acknowledged message is stored");
    // And a new client gets in and chats.
    let mut late = Client::login(addr, Codec::Rkyv, &attackers[0]);
    assert_eq!(late.join(&room, None), sent);
}
