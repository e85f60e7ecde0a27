//! A sender's own watermarks are derived from their messages among the room's newest
//! (`SENDER_RECEIPT_TAIL`) instead of being written with every message: every reader —
//! one member's receipt, a room's receipts, a reopened directory — sees them.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use palaver_core::records::SENDER_RECEIPT_TAIL;
use palaver_protocol::{ClientMsgId, Message, MessageKind, RoomId, UserId};
use palaver_storage::{Durability, Store, Write};

fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

fn message(room: &RoomId, seq: u64, sender: &UserId) -> Write {
    Write::AppendMessage(Message {
        room: room.clone(),
        seq,
        ts: 1_000 + seq,
        sender: sender.clone(),
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
        also_to_room: false,
        thread: None,
        thread_summary: None,
    })
}

#[test]
fn a_senders_watermarks_come_from_their_newest_message_in_the_tail_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let room = RoomId::parse("r_a").unwrap();
    let (alice, bob, carol) = (user("u_alice"), user("u_bob"), user("u_carol"));
    {
        let store = Store::open(dir.path(), Durability::Fsync).unwrap();
        store
            .apply(&[
                Write::PutReceipt { room: room.clone(), user: bob.clone(), delivered: 2, read: 1 },
                message(&room, 1, &alice),
                message(&room, 2, &bob),
                message(&room, 3, &alice),
            ])
            .unwrap();
        assert_eq!(store.receipt(&room, &alice).unwrap(), (3, 3));
        assert_eq!(store.receipt(&room, &bob).unwrap(), (2, 2));
        assert_eq!(store.receipt(&room, &carol).unwrap(), (0, 0), "sent nothing, read nothing");
    }
    let store = Store::open(dir.path(), Durability::Fsync).unwrap();
    let (mut receipts, mut unstored) = store.receipts_and_unstored(&room).unwrap();
    receipts.sort();
    unstored.sort();
    assert_eq!(receipts, vec![(alice.clone(), 3, 3), (bob.clone(), 2, 2)]);
    assert_eq!(unstored, vec![alice.clone(), bob.clone()], "neither is written yet");

    // Past the tail, only what is written counts: the room's owner writes it in time.
    let tail = SENDER_RECEIPT_TAIL as u64;
    let mut writes: Vec<Write> = (4..=3 + tail).map(|seq| message(&room, seq, &carol)).collect();
    writes.push(Write::PutReceipt { room: room.clone(), user: alice.clone(), delivered: 3, read: 3 });
    store.apply(&writes).unwrap();
    assert_eq!(store.receipt(&room, &alice).unwrap(), (3, 3), "written");
    assert_eq!(store.receipt(&room, &bob).unwrap(), (2, 1), "not written: only the stored marks");
    assert_eq!(store.receipt(&room, &carol).unwrap(), (3 + tail, 3 + tail));
}
