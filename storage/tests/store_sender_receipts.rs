//! A sender's own watermarks are derived from their messages among the room's newest
//! (`SENDER_RECEIPT_TAIL`) instead of being written with every message: every reader —
//! one member's receipt, a room's receipts, a reopened directory — sees them.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use palaver_core::records::SENDER_RECEIPT_TAIL;
use palaver_protocol::{ClientMsgId, Message, MessageKind, RoomId, RoomRole, UserId};
use palaver_storage::{Durability, Store, Write};

fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

fn member(room: &RoomId, user: &UserId) -> Write {
    Write::PutMember { room: room.clone(), user: user.clone(), role: RoomRole::Member }
}

fn notice(room: &RoomId, seq: u64, actor: &UserId) -> Write {
    let Write::AppendMessage(mut m) = message(room, seq, actor) else { unreachable!() };
    m.kind = MessageKind::System;
    m.cid = ClientMsgId::system(seq);
    Write::AppendMessage(m)
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
                member(&room, &alice),
                member(&room, &bob),
                member(&room, &carol),
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

#[test]
fn a_notice_in_a_members_name_does_not_raise_their_watermarks() {
    let dir = tempfile::tempdir().unwrap();
    let room = RoomId::parse("r_n").unwrap();
    let (alice, bob) = (user("u_alice"), user("u_bob"));
    let store = Store::open(dir.path(), Durability::Fsync).unwrap();
    store
        .apply(&[
            member(&room, &alice),
            member(&room, &bob),
            message(&room, 1, &alice),
            message(&room, 2, &bob),
            notice(&room, 3, &alice), // alice pinned bob's message
        ])
        .unwrap();
    assert_eq!(store.receipt(&room, &alice).unwrap(), (1, 1), "bob's message is still unread");
    let (mut receipts, _) = store.receipts_and_unstored(&room).unwrap();
    receipts.sort();
    assert_eq!(receipts, vec![(alice.clone(), 1, 1), (bob.clone(), 2, 2)]);
    let store_only_notices = Store::open(tempfile::tempdir().unwrap().path(), Durability::Fsync).unwrap();
    store_only_notices.apply(&[member(&room, &alice), notice(&room, 1, &alice)]).unwrap();
    assert_eq!(store_only_notices.receipt(&room, &alice).unwrap(), (0, 0));
    assert_eq!(store_only_notices.receipts(&room).unwrap(), vec![]);
}

#[test]
fn a_former_members_watermarks_are_not_derived() {
    let dir = tempfile::tempdir().unwrap();
    let room = RoomId::parse("r_d").unwrap();
    let (alice, bob) = (user("u_alice"), user("u_bob"));
    let store = Store::open(dir.path(), Durability::Fsync).unwrap();
    store
        .apply(&[
            member(&room, &alice),
            member(&room, &bob),
            message(&room, 1, &alice),
            message(&room, 2, &bob),
        ])
        .unwrap();
    // Bob's account is deleted (his receipt rows go) and his rooms left.
    store.apply(&[Write::RemoveMember { room: room.clone(), user: bob.clone() }]).unwrap();
    assert_eq!(store.receipt(&room, &bob).unwrap(), (0, 0));
    let (receipts, unstored) = store.receipts_and_unstored(&room).unwrap();
    assert_eq!(receipts, vec![(alice.clone(), 1, 1)], "no row comes back for bob");
    assert_eq!(unstored, vec![alice]);
}
