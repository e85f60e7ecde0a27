//! Retention in a two-node cluster over a real NATS server: only the room's owner sweeps
//! it, the floor travels through the room's log, and both replicas remove the same
//! messages (their digests agree, and start at the floor); seqs go on afterwards.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU64};
use std::time::{Duration, Instant};

use palaver_e2e::{Client, Nats, Server, WAIT, http, metric, register};
use palaver_protocol::{Codec, ErrorCode, OkBody, Op, ReplyBody, RoomKind, RoomRetention, RoomSettingsPatch};

fn start_node(nats: &Nats, id: &str) -> Server {
    Server::start(&[
        "--cluster",
        &nats.url,
        "--node-id",
        id,
        "--retention-interval-secs",
        "1",
        "--retention-grace-secs",
        "0",
    ])
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

fn digest(addr: SocketAddr, room: &palaver_protocol::RoomId) -> serde_json::Value {
    let (status, body) = http(addr, "GET", &format!("/v1/replica/digest?room={room}"), None, &[]);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn replicas_remove_the_same_messages() {
    let nats = Nats::start();
    let nodes = [start_node(&nats, "n1"), start_node(&nats, "n2")];
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let deadline = Instant::now() + WAIT;
    while !addrs.iter().all(|a| metric(*a, "palaver_cluster_live_nodes") == 2) {
        assert!(Instant::now() < deadline, "the nodes did not see each other");
        std::thread::sleep(Duration::from_millis(50));
    }
    let alice = register(addrs[0], "alice");
    let mut a = Client::login(addrs[0], Codec::Json, &alice);
    let room = match ok_retry(
        &mut a,
        Op::RoomCreate { name: "shared".into(), kind: RoomKind::Public, topic: None, settings: None },
    ) {
        OkBody::Room(r) => r.room.room_id,
        other => panic!("{other:?}"),
    };
    let mut last = 0;
    for i in 0..10 {
        match ok_retry(&mut a, palaver_e2e::send_op(&room, &format!("c{i}"), &format!("message {i}"))) {
            OkBody::Sent(sent) => last = sent.seq,
            other => panic!("{other:?}"),
        }
    }
    let settings = RoomSettingsPatch {
        retention: Some(RoomRetention { max_age_secs: None, max_count: NonZeroU32::new(4) }),
        ..Default::default()
    };
    ok_retry(
        &mut a,
        Op::RoomUpdate { room: room.clone(), name: None, topic: None, settings: Some(settings) },
    );
    // The settings change took seq last + 1: the newest four are last - 2 ..= last + 1.
    let floor = last - 2;

    // Both replicas come to the same messages, starting at the floor.
    let deadline = Instant::now() + WAIT;
    loop {
        let digests: Vec<serde_json::Value> = addrs.iter().map(|a| digest(*a, &room)).collect();
        let settled = digests.iter().all(|d| d["first_seq"] == floor && d["messages"] == 4);
        if settled {
            assert_eq!(digests[0]["sha256"], digests[1]["sha256"], "replicas differ: {digests:?}");
            break;
        }
        assert!(Instant::now() < deadline, "replicas did not reach the floor: {digests:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Only the owner swept: the removals are counted once over both nodes.
    let removed: u64 = addrs.iter().map(|a| metric(*a, "palaver_retention_removed_total")).sum();
    assert_eq!(removed, floor - 1);

    // From either node: the floor is reported and seqs go on.
    let mut b = Client::login(addrs[1], Codec::Json, &alice);
    match ok_retry(&mut b, Op::RoomGet { room: room.clone() }) {
        OkBody::RoomDetails(details) => assert_eq!(details.history_from.map(NonZeroU64::get), Some(floor)),
        other => panic!("{other:?}"),
    }
    match ok_retry(&mut b, palaver_e2e::send_op(&room, "after", "after the trim")) {
        OkBody::Sent(sent) => assert_eq!(sent.seq, last + 2),
        other => panic!("{other:?}"),
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let digests: Vec<serde_json::Value> = addrs.iter().map(|a| digest(*a, &room)).collect();
        if digests.iter().all(|d| d["last_seq"] == last + 2) && digests[0]["sha256"] == digests[1]["sha256"] {
            break;
        }
        assert!(Instant::now() < deadline, "replicas did not converge: {digests:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
