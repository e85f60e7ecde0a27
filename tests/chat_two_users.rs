//! Two (and more) users chatting through the real server, over both codecs, with rooms
//! owned by different shards.

use palaver_e2e::{Client, Server, register, send_op};
use palaver_protocol::{Codec, OkBody, RoomKind};

#[test]
fn json_and_rkyv_users_chat_in_rooms_on_every_shard() {
    let server = Server::start(&["--shards", "2"]);
    let alice = register(server.addr, "alice");
    let bob = register(server.addr, "bob");
    // Several connections each: the kernel spreads them over both shards.
    let mut alices: Vec<Client> = (0..3).map(|_| Client::login(server.addr, Codec::Json, &alice)).collect();
    let mut bobs: Vec<Client> = (0..3).map(|_| Client::login(server.addr, Codec::Rkyv, &bob)).collect();

    for round in 0..6 {
        let a = &mut alices[round % 3];
        let room = a.create_room(&format!("room {round}"), RoomKind::Public);
        assert_eq!(a.join(&room, None), 0);
        let b = &mut bobs[round % 3];
        assert_eq!(b.join(&room, None), 0);
        for i in 0..3 {
            let (seq, dup) =
                alices[round % 3].say(&room, &format!("a{round}-{i}"), &format!("hi from alice {i} 👋"));
            assert_eq!((seq, dup), (2 * i + 1, false));
            let (seq, _) = bobs[round % 3].say(&room, &format!("b{round}-{i}"), &format!("hi from bob {i}"));
            assert_eq!(seq, 2 * i + 2);
        }
        for client in [&mut alices[round % 3], &mut bobs[round % 3]] {
            let got: Vec<_> = (0..6).map(|_| client.next_message()).collect();
            assert_eq!(got.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5, 6]);
            assert_eq!(got[0].text, "hi from alice 0 👋");
            assert_eq!(got[0].sender.as_str(), alice.user_id);
            assert_eq!(got[1].sender.as_str(), bob.user_id);
            assert!(got.windows(2).all(|w| w[0].ts <= w[1].ts));
        }
    }
}

#[test]
fn a_retried_cid_is_stored_once_even_while_the_first_is_in_flight() {
    let server = Server::start(&[]);
    let alice = register(server.addr, "alice");
    let mut c = Client::login(server.addr, Codec::Json, &alice);
    let room = c.create_room("general", RoomKind::Public);
    c.join(&room, None);
    // Pipelined: the second arrives before the first is durable.
    let first = c.send_op(send_op(&room, "same-cid", "hello"));
    let second = c.send_op(send_op(&room, "same-cid", "hello"));
    let (r1, r2) = (c.reply(first), c.reply(second));
    let (OkBody::Sent(s1), OkBody::Sent(s2)) = (ok(r1), ok(r2)) else { panic!("not sent") };
    assert_eq!((s1.seq, s1.duplicate), (1, false));
    assert_eq!((s2.seq, s2.ts, s2.duplicate), (1, s1.ts, true));
    // And again later, from another connection.
    let mut other = Client::login(server.addr, Codec::Rkyv, &alice);
    assert_eq!(other.say(&room, "same-cid", "hello"), (1, true));
    assert_eq!(other.say(&room, "next", "world"), (2, false));
    assert_eq!(c.history(&room, None, None).len(), 2);
}

#[test]
fn concurrent_senders_get_gapless_distinct_seqs_and_everyone_sees_one_order() {
    let server = Server::start(&["--shards", "2"]);
    let owner = register(server.addr, "owner");
    let mut watcher = Client::login(server.addr, Codec::Json, &owner);
    let room = watcher.create_room("busy", RoomKind::Public);
    watcher.join(&room, None);

    let per_sender = 50u64;
    let handles: Vec<_> = (0..4)
        .map(|n| {
            let addr = server.addr;
            let room = room.clone();
            std::thread::spawn(move || {
                let account = register(addr, &format!("sender{n}"));
                let codec = if n % 2 == 0 { Codec::Json } else { Codec::Rkyv };
                let mut c = Client::login(addr, codec, &account);
                c.join(&room, None);
                let ids: Vec<u64> =
                    (0..per_sender).map(|i| c.send_op(send_op(&room, &format!("s{n}-{i}"), "x"))).collect();
                ids.into_iter()
                    .map(|id| match ok(c.reply(id)) {
                        OkBody::Sent(s) => s.seq,
                        other => panic!("{other:?}"),
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=4 * per_sender).collect::<Vec<_>>());
    let seen: Vec<u64> = (0..4 * per_sender).map(|_| watcher.next_message().seq).collect();
    assert_eq!(seen, (1..=4 * per_sender).collect::<Vec<_>>());
}

fn ok(body: palaver_protocol::ReplyBody) -> OkBody {
    match body {
        palaver_protocol::ReplyBody::Ok(ok) => ok,
        palaver_protocol::ReplyBody::Err(e) => panic!("{e:?}"),
    }
}
