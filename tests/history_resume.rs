//! History paging and resuming with `since`.

use palaver_e2e::{Client, Server, register, send_op};
use palaver_protocol::{Codec, ErrorCode, Op, RoomKind};

#[test]
fn history_pages_newest_first_with_before_and_limit() {
    let server = Server::start(&[]);
    let alice = register(server.addr, "alice");
    let mut a = Client::login(server.addr, Codec::Rkyv, &alice);
    let room = a.create_room("log", RoomKind::Public);
    a.join(&room, None);
    let ids: Vec<u64> =
        (1..=120).map(|i| a.send_op(send_op(&room, &format!("c{i}"), &format!("m{i}")))).collect();
    for id in ids {
        a.reply(id);
    }
    let page = a.history(&room, None, None);
    assert_eq!(page.iter().map(|m| m.seq).collect::<Vec<_>>(), (71..=120).rev().collect::<Vec<_>>());
    let page = a.history(&room, Some(71), None);
    assert_eq!(page.first().map(|m| m.seq), Some(70));
    assert_eq!(page.last().map(|m| m.seq), Some(21));
    let page = a.history(&room, Some(21), Some(100));
    assert_eq!(page.iter().map(|m| m.seq).collect::<Vec<_>>(), (1..=20).rev().collect::<Vec<_>>());
    assert_eq!(page.last().map(|m| m.text.as_str()), Some("m1"));
    assert!(a.history(&room, Some(1), None).is_empty());
    a.err(
        Op::History {
            room: room.clone(),
            before: None,
            after: None,
            limit: Some(0),
            cursor: None,
            threads: Default::default(),
        },
        ErrorCode::Invalid,
    );
    a.err(
        Op::History {
            room,
            before: None,
            after: None,
            limit: Some(101),
            cursor: None,
            threads: Default::default(),
        },
        ErrorCode::Invalid,
    );
}

#[test]
fn rejoining_with_since_replays_the_gap_in_order_then_goes_live() {
    let server = Server::start(&["--shards", "2"]);
    let alice = register(server.addr, "alice");
    let bob = register(server.addr, "bob");
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let room = a.create_room("resume", RoomKind::Public);
    a.join(&room, None);
    let mut b = Client::login(server.addr, Codec::Json, &bob);
    b.join(&room, None);
    for i in 1..=5 {
        a.say(&room, &format!("c{i}"), &format!("m{i}"));
    }
    assert_eq!((0..5).map(|_| b.next_message().seq).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    b.close();

    for i in 6..=15 {
        a.say(&room, &format!("c{i}"), &format!("m{i}"));
    }
    let mut b = Client::login(server.addr, Codec::Rkyv, &bob);
    assert_eq!(b.join(&room, Some(5)), 15);
    let replayed: Vec<u64> = (0..10).map(|_| b.next_message().seq).collect();
    assert_eq!(replayed, (6..=15).collect::<Vec<_>>());
    a.say(&room, "c16", "live");
    let live = b.next_message();
    assert_eq!((live.seq, live.text.as_str()), (16, "live"));
}

#[test]
fn a_long_backlog_is_replayed_completely_while_new_messages_arrive() {
    // Pipelining 700 sends needs more than the default per-socket rate limit.
    let server = Server::start(&["--shards", "2", "--ops-burst", "10000", "--max-in-flight", "10000"]);
    let alice = register(server.addr, "alice");
    let mut a = Client::login(server.addr, Codec::Rkyv, &alice);
    let room = a.create_room("backlog", RoomKind::Public);
    a.join(&room, None);
    let total = 700u64;
    let ids: Vec<u64> =
        (1..=total).map(|i| a.send_op(send_op(&room, &format!("c{i}"), &"z".repeat(200)))).collect();
    for id in ids {
        a.reply(id);
    }
    let mut late = Client::login(server.addr, Codec::Json, &alice);
    assert_eq!(late.join(&room, Some(0)), total);
    // Live sends race the replay; the stream must still be 1..=total+20 exactly once.
    let live: Vec<u64> = (1..=20).map(|i| a.send_op(send_op(&room, &format!("live{i}"), "new"))).collect();
    let seqs: Vec<u64> = (0..total + 20).map(|_| late.next_message().seq).collect();
    assert_eq!(seqs, (1..=total + 20).collect::<Vec<_>>());
    for id in live {
        a.reply(id);
    }
}

#[test]
fn a_slow_consumer_is_cut_off_with_1013_and_resumes_without_loss() {
    let server = Server::start(&[
        "--outbound-queue-bytes",
        "262144",
        "--ops-burst",
        "100000",
        "--ops-per-sec",
        "100000",
        "--max-in-flight",
        "100000",
        // The slow socket reads nothing until every message is sent: its close frame
        // must wait for it however long this machine takes to send them.
        "--write-timeout-secs",
        "600",
    ]);
    let alice = register(server.addr, "alice");
    let bob = register(server.addr, "bob");
    let mut a = Client::login(server.addr, Codec::Rkyv, &alice);
    let room = a.create_room("firehose", RoomKind::Public);
    a.join(&room, None);
    let mut slow = Client::login(server.addr, Codec::Json, &bob);
    slow.join(&room, None);
    let mut fast = Client::login(server.addr, Codec::Rkyv, &bob);
    fast.join(&room, None);
    let total = 12_000u64;
    // The fast member keeps reading and is not slowed down by the slow one. It reports
    // how far it got, and the sender never runs more than ~100 KB ahead of it, so the test
    // does not depend on how fast this machine is: only `slow` can fall behind.
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reported = progress.clone();
    let fast_reader = std::thread::spawn(move || {
        (0..total)
            .map(|_| {
                let seq = fast.next_message().seq;
                reported.store(seq, std::sync::atomic::Ordering::Relaxed);
                seq
            })
            .collect::<Vec<u64>>()
    });

    // Far more than the kernel's socket buffers plus the 256 KiB queue; `slow` reads nothing.
    let body = "x".repeat(1_900);
    let mut pending = std::collections::VecDeque::new();
    for i in 1..=total {
        // 50 messages (~100 KB) is well under the 256 KiB queue limit, so the fast reader
        // can never be cut off, whatever the kernel buffers; stop waiting if it died.
        while i > progress.load(std::sync::atomic::Ordering::Relaxed) + 50 && !fast_reader.is_finished() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        pending.push_back(a.send_op(send_op(&room, &format!("c{i}"), &body)));
        if pending.len() >= 16 {
            a.reply(pending.pop_front().unwrap());
            a.events.clear();
        }
    }
    while let Some(id) = pending.pop_front() {
        a.reply(id);
    }
    let fast_seqs = fast_reader.join().unwrap();
    assert_eq!(fast_seqs, (1..=total).collect::<Vec<_>>());

    // The slow socket got a prefix of the room, then was closed with 1013.
    let mut last = 0;
    let code = loop {
        match slow.try_next_message() {
            Ok(m) => {
                assert_eq!(m.seq, last + 1);
                last = m.seq;
            }
            Err(code) => break code,
        }
    };
    assert_eq!(code, Some(1013));
    assert!(last < total, "the slow consumer should have been cut off");
    let mut resumed = Client::login(server.addr, Codec::Json, &bob);
    assert_eq!(resumed.join(&room, Some(last)), total);
    let rest: Vec<u64> = (last..total).map(|_| resumed.next_message().seq).collect();
    assert_eq!(rest, (last + 1..=total).collect::<Vec<_>>());
}
