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
    a.err(Op::History { room: room.clone(), before: None, limit: Some(0) }, ErrorCode::Invalid);
    a.err(Op::History { room, before: None, limit: Some(101) }, ErrorCode::Invalid);
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
