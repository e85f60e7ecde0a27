//! Full-text search end to end: a message is found seconds after it is sent (CJK and
//! accents included), only in rooms the searcher may read right now, edits and deletes
//! are reflected, ciphertext is never indexed, and a deleted index is rebuilt from the log.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::time::{Duration, Instant};

use palaver_e2e::{Client, Server, register, send_op};
use palaver_protocol::{
    ClientMsgId, Codec, Encryption, ErrorCode, MessageKind, OkBody, Op, RoomKind, SearchHit, SearchOrder,
};

fn search(client: &mut Client, query: &str) -> Vec<SearchHit> {
    let op = Op::Search {
        query: query.into(),
        room: None,
        from: None,
        before: None,
        after: None,
        order: Some(SearchOrder::Newest),
        limit: None,
        cursor: None,
    };
    match client.ok(op) {
        OkBody::Search(found) => found.hits,
        other => panic!("{other:?}"),
    }
}

/// Searches until `done` holds (the index commits about twice a second), or fails.
fn search_until(client: &mut Client, query: &str, done: impl Fn(&[SearchHit]) -> bool) -> Vec<SearchHit> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let hits = search(client, query);
        if done(&hits) {
            return hits;
        }
        assert!(Instant::now() < deadline, "search for {query:?} never settled: {hits:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn messages_are_searchable_within_seconds_and_only_where_readable() {
    let mut server = Server::start(&["--shards", "2"]);
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(|n| register(server.addr, n));
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let mut b = Client::login(server.addr, Codec::Rkyv, &bob);
    let mut c = Client::login(server.addr, Codec::Json, &carol);
    let room = a.create_room("travel", RoomKind::Public);
    a.join(&room, None);
    b.join(&room, None);
    let secret = a.create_room("secret", RoomKind::Private);
    a.join(&secret, None);

    let (fox, _) = a.say(&room, "m1", "the quick brown fox jumps");
    a.say(&room, "m2", "東京タワーに行きました");
    a.say(&room, "m3", "Café au lait, s'il vous plaît");
    a.say(&secret, "s1", "the fox hides in the secret room");

    // Found within seconds, with a highlighted snippet; CJK and accent-folded queries work.
    let hits = search_until(&mut b, "fox", |h| !h.is_empty());
    assert_eq!((hits.len(), hits[0].room.clone(), hits[0].seq), (1, room.clone(), fox));
    assert!(hits[0].snippet.contains("<b>fox</b>"), "{}", hits[0].snippet);
    assert_eq!(search_until(&mut b, "東京", |h| !h.is_empty()).len(), 1);
    assert_eq!(search_until(&mut b, "cafe", |h| !h.is_empty()).len(), 1);
    assert_eq!(search(&mut b, "\"brown fox\"").len(), 1);
    assert_eq!(search(&mut b, "qui*").len(), 1);

    // The owner of the private room finds both; outsiders neither the private one nor, as
    // non-members, the public room's.
    assert_eq!(search_until(&mut a, "fox", |h| h.len() == 2).len(), 2);
    assert!(search(&mut c, "fox").is_empty());

    // Edits and deletes reach the index; ciphertext never does.
    a.ok(Op::Edit { room: room.clone(), seq: fox, text: "the quick brown dog jumps".into() });
    search_until(&mut b, "dog", |h| h.len() == 1);
    assert!(search(&mut b, "fox").is_empty());
    a.ok(Op::Delete { room: room.clone(), seq: fox });
    search_until(&mut b, "dog", <[SearchHit]>::is_empty);
    a.ok(Op::Send {
        room: room.clone(),
        cid: ClientMsgId::parse("e1").unwrap(),
        kind: MessageKind::Encrypted,
        text: "ciphertextwordzz".into(),
        client_ts: None,
        reply_to: None,
        file: None,
        encryption: Some(Box::new(Encryption {
            algorithm: "x".into(),
            sender_device: "D1".into(),
            session_id: None,
        })),
        also_to_room: false,
        thread: None,
    });
    a.say(&room, "m4", "marker after the ciphertext");
    search_until(&mut b, "marker", |h| h.len() == 1);
    assert!(search(&mut b, "ciphertextwordzz").is_empty());

    // Everything sent is searchable, so the index's backlog drains to nothing.
    let gauge = |body: &str, name: &str| -> Option<f64> {
        body.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = palaver_e2e::http(server.addr, "GET", "/metrics", None, &[]);
        let backlog = gauge(&body, "palaver_search_index_backlog").expect("the backlog gauge");
        let lag = gauge(&body, "palaver_search_index_lag_seconds").expect("the lag gauge");
        if (backlog, lag) == (0.0, 0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the search backlog never drained: {backlog} changes, {lag} s old"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Leaving a room takes its messages out of one's results at once.
    b.ok(Op::Leave { room: room.clone() });
    assert!(search(&mut b, "東京").is_empty());

    // Bad queries are clear errors.
    let bad = |q: &str| Op::Search {
        query: q.into(),
        room: None,
        from: None,
        before: None,
        after: None,
        order: None,
        limit: Some(500),
        cursor: None,
    };
    a.err(bad("fox"), ErrorCode::Invalid);

    // The index is derived data: deleted, it is rebuilt from the log at start.
    drop((a, b, c));
    assert!(server.terminate().success());
    std::fs::remove_dir_all(server.data_dir().join("search")).unwrap();
    server.restart();
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    search_until(&mut a, "東京", |h| h.len() == 1);
    search_until(&mut a, "secret", |h| h.len() == 1);
    a.ok(send_op(&room, "m5", "written after the rebuild"));
    search_until(&mut a, "rebuild", |h| h.len() == 1);
}
