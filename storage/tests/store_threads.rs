//! Threads on disk: a reply's index entries are written with the message, the owner's
//! summaries order the room's threads by activity, a deleted reply leaves its thread,
//! read marks are per member and thread, replies kept in their thread are counted apart
//! for `sync` — and all of it survives a reopen, is rebuilt with a forgotten room and
//! goes with the roots retention removes.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use palaver_protocol::{ClientMsgId, Message, MessageKind, RoomId, ThreadSummary, UserId};
use palaver_storage::{Durability, Store, Write};

fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

fn message(room: &RoomId, seq: u64, thread: Option<u64>, also_to_room: bool) -> Message {
    Message {
        room: room.clone(),
        seq,
        ts: 1_000 + seq,
        sender: user("u_alice"),
        cid: ClientMsgId::parse(&format!("c{seq}")).unwrap(),
        kind: MessageKind::Text,
        text: format!("message {seq}"),
        client_ts: None,
        reactions: Vec::new(),
        reply_to: None,
        reply: None,
        mentions: Vec::new(),
        file: None,
        edited_at: None,
        deleted: false,
        system: None,
        blocked: false,
        encryption: None,
        mention_all: None,
        forward: None,
        thread,
        also_to_room,
        thread_summary: None,
    }
}

fn summary(count: u32, last_seq: u64) -> ThreadSummary {
    ThreadSummary { count, last_seq, last_at: 1_000 + last_seq }
}

/// Roots 1 and 2; replies 3 (to 1), 4 (to 2, also to the room), 5 (to 1), as an owner
/// writes them: each reply with its root's summary and the sender's read mark.
fn thread_writes(room: &RoomId) -> Vec<Vec<Write>> {
    let put = |root, after: ThreadSummary, previous: Option<u64>| Write::PutThread {
        room: room.clone(),
        root,
        summary: Some(after),
        previous_last: previous,
    };
    let read =
        |root, seq| Write::PutThreadRead { room: room.clone(), user: user("u_alice"), root, read: seq };
    vec![
        vec![Write::AppendMessage(message(room, 1, None, false))],
        vec![Write::AppendMessage(message(room, 2, None, false))],
        vec![Write::AppendMessage(message(room, 3, Some(1), false)), put(1, summary(1, 3), None), read(1, 3)],
        vec![Write::AppendMessage(message(room, 4, Some(2), true)), put(2, summary(1, 4), None), read(2, 4)],
        vec![
            Write::AppendMessage(message(room, 5, Some(1), false)),
            put(1, summary(2, 5), Some(3)),
            read(1, 5),
        ],
    ]
}

fn assert_threads_as_written(store: &Store, room: &RoomId) {
    assert_eq!(store.thread_summary(room, 1).unwrap(), Some(summary(2, 5)));
    assert_eq!(store.thread_summary(room, 2).unwrap(), Some(summary(1, 4)));
    assert_eq!(store.thread_summary(room, 3).unwrap(), None);
    let by_activity = store.threads_by_activity(room, u64::MAX, 10).unwrap();
    assert_eq!(by_activity, vec![(1, summary(2, 5)), (2, summary(1, 4))]);
    assert_eq!(store.threads_by_activity(room, 5, 10).unwrap(), vec![(2, summary(1, 4))]);
    assert_eq!(store.thread_replies_before(room, 1, u64::MAX, 10).unwrap(), vec![(5, 1_005), (3, 1_003)]);
    assert_eq!(store.thread_replies_after(room, 1, 3, 10).unwrap(), vec![(5, 1_005)]);
    assert_eq!(store.thread_read(room, &user("u_alice"), 1).unwrap(), 5);
    assert_eq!(store.thread_read(room, &user("u_bob"), 1).unwrap(), 0);
    // Replies 3 and 5 stay in their thread; 4 was also sent to the room.
    assert_eq!(store.thread_only_after(room, 0).unwrap(), 2);
    assert_eq!(store.thread_only_after(room, 3).unwrap(), 1);
    let reply = store.message(room, 4).unwrap().unwrap();
    assert_eq!((reply.thread, reply.also_to_room), (Some(2), true));
}

#[test]
fn threads_are_indexed_with_their_messages_and_survive_a_reopen_and_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let room = RoomId::parse("r_t").unwrap();
    let neighbour = RoomId::parse("r_tt").unwrap();
    {
        let store = Store::open(dir.path(), Durability::Fsync).unwrap();
        for batch in thread_writes(&room).into_iter().chain(thread_writes(&neighbour)) {
            store.apply(&batch).unwrap();
        }
        assert_threads_as_written(&store, &room);
    }
    let store = Store::open(dir.path(), Durability::Fsync).unwrap();
    assert_threads_as_written(&store, &room);

    // Forgotten, the room's threads go; its neighbour keeps its own; rebuilt from its
    // writes, they come back.
    store.forget_room(&room).unwrap();
    assert_eq!(store.thread_summary(&room, 1).unwrap(), None);
    assert!(store.threads_by_activity(&room, u64::MAX, 10).unwrap().is_empty());
    assert!(store.thread_replies_after(&room, 1, 0, 10).unwrap().is_empty());
    assert_eq!(store.thread_read(&room, &user("u_alice"), 1).unwrap(), 0);
    assert_eq!(store.thread_only_after(&room, 0).unwrap(), 0);
    assert_threads_as_written(&store, &neighbour);
    for batch in thread_writes(&room) {
        store.apply_rebuilt(&batch).unwrap();
    }
    assert_threads_as_written(&store, &room);

    // A deleted reply leaves its thread's index (and stays out of the room's count).
    let mut tombstone = message(&room, 5, Some(1), false);
    tombstone.deleted = true;
    tombstone.text.clear();
    store
        .apply(&[
            Write::ReplaceMessage(tombstone),
            Write::PutThread {
                room: room.clone(),
                root: 1,
                summary: Some(summary(1, 3)),
                previous_last: Some(5),
            },
        ])
        .unwrap();
    assert_eq!(store.thread_replies_before(&room, 1, u64::MAX, 10).unwrap(), vec![(3, 1_003)]);
    assert_eq!(
        store.threads_by_activity(&room, u64::MAX, 10).unwrap(),
        vec![(2, summary(1, 4)), (1, summary(1, 3))]
    );
    assert_eq!(store.thread_only_after(&room, 0).unwrap(), 2);
    // The last reply gone: no summary, not listed.
    store
        .apply(&[Write::PutThread { room: room.clone(), root: 2, summary: None, previous_last: Some(4) }])
        .unwrap();
    assert_eq!(store.thread_summary(&room, 2).unwrap(), None);
    assert_eq!(store.threads_by_activity(&room, u64::MAX, 10).unwrap(), vec![(1, summary(1, 3))]);

    // Retention removes the roots below the floor with their threads; the replies above it
    // stay in the room (and out of its unread count when kept in their thread).
    store.apply(&[Write::TrimHistory { room: neighbour.clone(), from: 1, floor: 3 }]).unwrap();
    assert_eq!(store.thread_summary(&neighbour, 1).unwrap(), None);
    assert!(store.threads_by_activity(&neighbour, u64::MAX, 10).unwrap().is_empty());
    assert!(store.thread_replies_after(&neighbour, 1, 0, 10).unwrap().is_empty());
    assert_eq!(store.thread_only_after(&neighbour, 0).unwrap(), 2);
    assert!(store.message(&neighbour, 5).unwrap().is_some());
}
