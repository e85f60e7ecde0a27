//! Threads end to end: replies are messages of the room with its next seq, carrying
//! their root; the root counts them (in `history` and `thread` events); a thread pages
//! on its own; per-thread read marks give unread counts; replies kept in their thread
//! stay out of the room's timeline (on request) and its unread count; all of it in both
//! codecs, across shards and a restart, with the rules' refusals.

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests: failing loudly is the point")]

use std::time::{Duration, Instant};

use palaver_e2e::{Client, Server, register};
use palaver_protocol::{
    ClientMsgId, Codec, ErrorCode, Event, HistoryOk, Message, MessageKind, OkBody, Op, RoomId, RoomKind,
    SearchOrder, ThreadHistoryOk, ThreadReadOk, ThreadReplies, ThreadSummary, ThreadsOk,
};

fn send_with(
    room: &RoomId,
    cid: &str,
    text: &str,
    thread: Option<u64>,
    also_to_room: bool,
    reply_to: Option<u64>,
) -> Op {
    Op::Send {
        room: room.clone(),
        cid: ClientMsgId::parse(cid).unwrap(),
        kind: MessageKind::Text,
        text: text.into(),
        client_ts: None,
        reply_to,
        file: None,
        encryption: None,
        thread,
        also_to_room,
    }
}

fn reply_op(room: &RoomId, cid: &str, text: &str, root: u64, also_to_room: bool) -> Op {
    send_with(room, cid, text, Some(root), also_to_room, None)
}

fn reply(client: &mut Client, room: &RoomId, cid: &str, text: &str, root: u64, also_to_room: bool) -> u64 {
    match client.ok(reply_op(room, cid, text, root, also_to_room)) {
        OkBody::Sent(sent) => sent.seq,
        other => panic!("{other:?}"),
    }
}

fn history(client: &mut Client, room: &RoomId, threads: ThreadReplies) -> Vec<Message> {
    let op = Op::History {
        room: room.clone(),
        before: None,
        after: None,
        limit: Some(100),
        cursor: None,
        threads,
    };
    match client.ok(op) {
        OkBody::History(HistoryOk { messages, .. }) => messages,
        other => panic!("{other:?}"),
    }
}

fn thread_page(
    client: &mut Client,
    room: &RoomId,
    root: u64,
    limit: Option<u32>,
    cursor: Option<String>,
) -> ThreadHistoryOk {
    let op = Op::ThreadHistory { room: room.clone(), root, before: None, after: None, limit, cursor };
    match client.ok(op) {
        OkBody::ThreadHistory(page) => *page,
        other => panic!("{other:?}"),
    }
}

fn threads(client: &mut Client, room: &RoomId) -> ThreadsOk {
    match client.ok(Op::ThreadList { room: room.clone(), limit: None, cursor: None }) {
        OkBody::Threads(list) => list,
        other => panic!("{other:?}"),
    }
}

fn thread_read(client: &mut Client, room: &RoomId, root: u64, seq: u64) -> ThreadReadOk {
    match client.ok(Op::ThreadRead { room: room.clone(), root, seq }) {
        OkBody::ThreadRead(ok) => ok,
        other => panic!("{other:?}"),
    }
}

fn seqs(messages: &[Message]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

fn summary_of(messages: &[Message], root: u64) -> Option<ThreadSummary> {
    messages.iter().find(|m| m.seq == root).and_then(|m| m.thread_summary.as_deref().copied())
}

/// The room's unread count for `client`'s user, from `sync`.
fn unread(client: &mut Client, room: &RoomId) -> u64 {
    match client.ok(Op::Sync { limit: None, cursor: None }) {
        OkBody::Sync(sync) => sync.rooms.iter().find(|r| &r.room.room_id == room).unwrap().unread,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_thread_grows_beside_its_room_counts_on_its_root_and_survives_a_restart() {
    let mut server = Server::start(&["--shards", "2"]);
    let alice = register(server.addr, "alice");
    let bob = register(server.addr, "bob");
    let carol = register(server.addr, "carol");
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let mut b = Client::login(server.addr, Codec::Rkyv, &bob);
    let mut c = Client::login(server.addr, Codec::Json, &carol);
    let room = a.create_room("threads", RoomKind::Public);
    a.join(&room, None);
    b.join(&room, None);
    c.join(&room, None);
    let (root, _) = a.say(&room, "root", "who is up for lunch?");
    a.next_message();

    // A reply is the room's next message, delivered to members with its root; the root's
    // summary follows in a `thread` event.
    let first = reply(&mut b, &room, "r1", "me, at noon", root, false);
    assert_eq!(first, root + 1);
    let seen = a.next_message();
    assert_eq!((seen.seq, seen.thread, seen.also_to_room), (first, Some(root), false));
    let event = a.wait_event(|e| match e {
        Event::Thread(t) => Some(t.clone()),
        _ => None,
    });
    assert_eq!((event.root, event.summary.count, event.summary.last_seq), (root, 1, first));
    let (unrelated, _) = c.say(&room, "c1", "unrelated chatter");
    let shared = reply(&mut c, &room, "r2", "me too (also in the room)", root, true);
    // A reply may reply to a reply of its own thread.
    let answer = match a.ok(send_with(&room, "r3", "noon it is", Some(root), false, Some(first))) {
        OkBody::Sent(sent) => sent.seq,
        other => panic!("{other:?}"),
    };

    // The room's timeline leaves out replies kept in their thread when asked; by default
    // (for clients that know no threads) every message is there, each reply naming its root.
    let all = history(&mut c, &room, ThreadReplies::Include);
    assert!(seqs(&all).starts_with(&[answer, shared, unrelated, first, root]), "{:?}", seqs(&all));
    let timeline = history(&mut c, &room, ThreadReplies::Exclude);
    assert!(seqs(&timeline).starts_with(&[shared, unrelated, root]), "{:?}", seqs(&timeline));
    assert!(!seqs(&timeline).contains(&first) && !seqs(&timeline).contains(&answer));
    let summary = summary_of(&timeline, root).unwrap();
    assert_eq!((summary.count, summary.last_seq), (3, answer));

    // The thread pages on its own, newest first, with its root.
    let page = thread_page(&mut c, &room, root, Some(2), None);
    assert_eq!(page.root.seq, root);
    assert_eq!(page.root.thread_summary.as_deref().map(|s| s.count), Some(3));
    assert_eq!(seqs(&page.messages), vec![answer, shared]);
    assert_eq!(page.messages[0].reply.as_deref().map(|r| r.seq), Some(first));
    let rest = thread_page(&mut c, &room, root, Some(2), page.next.clone());
    assert_eq!(seqs(&rest.messages), vec![first]);
    assert_eq!(rest.next, None);

    // Read marks per thread: carol's own reply read the thread up to it.
    let listed = threads(&mut c, &room);
    assert_eq!(listed.threads.len(), 1);
    let info = &listed.threads[0];
    assert_eq!((info.root.seq, info.read, info.unread), (root, shared, 1));
    assert_eq!(thread_read(&mut c, &room, root, answer), ThreadReadOk { root, read: answer, unread: 0 });
    assert_eq!(thread_read(&mut c, &room, root, first).read, answer, "a read mark never moves back");
    // The room's unread count leaves out replies kept in their thread.
    let last_seq = all[0].seq;
    let kept_in_thread = 2;
    let mut d = Client::login(server.addr, Codec::Json, &register(server.addr, "dave"));
    d.join(&room, None);
    assert_eq!(unread(&mut d, &room), last_seq - kept_in_thread);
    assert_eq!(threads(&mut d, &room).threads[0].unread, 3);

    // Search names the root of a hit in a thread.
    let deadline = Instant::now() + Duration::from_secs(20);
    let hit = loop {
        let op = Op::Search {
            query: "noon".into(),
            room: Some(room.clone()),
            from: None,
            before: None,
            after: None,
            order: Some(SearchOrder::Newest),
            limit: None,
            cursor: None,
        };
        let hits = match c.ok(op) {
            OkBody::Search(found) => found.hits,
            other => panic!("{other:?}"),
        };
        if let Some(hit) = hits.into_iter().find(|h| h.seq == answer) {
            break hit;
        }
        assert!(Instant::now() < deadline, "the reply was never found");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(hit.thread, Some(root));

    // Deleting a reply updates the root's summary (and tells the room).
    a.ok(Op::Delete { room: room.clone(), seq: answer });
    let event = b.wait_event(|e| match e {
        Event::Thread(t) => (t.summary.count == 2).then(|| t.clone()),
        _ => None,
    });
    assert_eq!(event.summary.last_seq, shared);

    let status = server.terminate();
    assert!(status.success(), "exit status {status}");
    server.restart();
    let mut c = Client::login(server.addr, Codec::Rkyv, &carol);
    let after = history(&mut c, &room, ThreadReplies::Exclude);
    let summary = summary_of(&after, root).unwrap();
    assert_eq!((summary.count, summary.last_seq), (2, shared));
    let page = thread_page(&mut c, &room, root, None, None);
    assert_eq!(seqs(&page.messages), vec![shared, first]);
    let listed = threads(&mut c, &room);
    assert_eq!((listed.threads[0].read, listed.threads[0].unread), (answer, 0));
    // Resuming with `since` replays replies in the room's order, each with its root.
    c.join(&room, Some(root));
    let replayed = c.next_message();
    assert_eq!((replayed.seq, replayed.thread), (first, Some(root)));
    // A new reply after the restart continues the count.
    let later = reply(&mut c, &room, "r4", "back again", root, false);
    let page = thread_page(&mut c, &room, root, None, None);
    assert_eq!(page.root.thread_summary.as_deref().map(|s| (s.count, s.last_seq)), Some((3, later)));
}

#[test]
fn thread_replies_keep_to_their_rules() {
    let server = Server::start(&["--shards", "2"]);
    let alice = register(server.addr, "alice");
    let eve = register(server.addr, "eve");
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let mut e = Client::login(server.addr, Codec::Rkyv, &eve);
    let room = a.create_room("private", RoomKind::Private);
    let other = a.create_room("other", RoomKind::Public);
    let (root, _) = a.say(&room, "root", "a root");
    let (beside, _) = a.say(&room, "b", "beside the thread");
    let first = reply(&mut a, &room, "r1", "a reply", root, false);
    let mut elsewhere = 0;
    for n in 0..=first {
        elsewhere = a.say(&other, &format!("o{n}"), "in the other room").0;
    }

    // A root of another room is not one here (this room has no such seq).
    assert!(elsewhere > first);
    a.err(reply_op(&room, "x1", "elsewhere", elsewhere, false), ErrorCode::NotFound);
    a.err(reply_op(&other, "x1", "no root", elsewhere + 1, false), ErrorCode::NotFound);
    // One level: a reply is no root.
    let message = a.err(reply_op(&room, "x2", "nested", first, false), ErrorCode::Invalid);
    assert!(message.contains("one level"), "{message}");
    a.err(
        Op::ThreadHistory {
            room: room.clone(),
            root: first,
            before: None,
            after: None,
            limit: None,
            cursor: None,
        },
        ErrorCode::Invalid,
    );
    // A reply replies within its thread.
    a.err(send_with(&room, "x3", "astray", Some(root), false, Some(beside)), ErrorCode::Invalid);
    // `also_to_room` goes with a thread.
    a.err(send_with(&room, "x4", "no thread", None, true, None), ErrorCode::Invalid);
    // Non-members of a private room neither reply nor read.
    e.err(reply_op(&room, "x5", "intruder", root, false), ErrorCode::Forbidden);
    e.err(
        Op::ThreadHistory { room: room.clone(), root, before: None, after: None, limit: None, cursor: None },
        ErrorCode::Forbidden,
    );
    e.err(Op::ThreadList { room: room.clone(), limit: None, cursor: None }, ErrorCode::Forbidden);
    e.err(Op::ThreadRead { room: room.clone(), root, seq: first }, ErrorCode::Forbidden);
    // A deleted root takes no new replies, but its thread stays readable.
    a.ok(Op::Delete { room: room.clone(), seq: root });
    a.err(reply_op(&room, "x6", "too late", root, false), ErrorCode::NotFound);
    let page = thread_page(&mut a, &room, root, None, None);
    assert!(page.root.deleted);
    assert_eq!(seqs(&page.messages), vec![first]);
    // A retried reply is the same message.
    let again = match a.ok(reply_op(&room, "r1", "a reply", root, false)) {
        OkBody::Sent(sent) => (sent.seq, sent.duplicate),
        other => panic!("{other:?}"),
    };
    assert_eq!(again, (first, true));
}
