//! A room forgotten for a rebuild leaves no trace (its record, members, messages, cids,
//! reactions, receipts, mentions and memberships), and its neighbours — a room whose id
//! it is a prefix of among them — keep theirs.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use palaver_protocol::{ClientMsgId, Message, MessageKind, RoomId, RoomKind, RoomRole, UserId};
use palaver_storage::{Durability, RoomRecord, Store, Write};

fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

fn message(room: &RoomId, seq: u64) -> Message {
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
        mentions: vec![user("u_bob")],
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
    }
}

fn room_writes(room: &RoomId) -> Vec<Write> {
    let mut writes = vec![Write::PutRoom(RoomRecord {
        room_id: room.clone(),
        name: room.to_string(),
        kind: RoomKind::Public,
        owner: user("u_alice"),
        created_ms: 1,
        topic: String::new(),
        settings: None,
        deleted: false,
    })];
    for who in ["u_alice", "u_bob"] {
        writes.push(Write::PutMember { room: room.clone(), user: user(who), role: RoomRole::Member });
        writes.push(Write::PutReceipt { room: room.clone(), user: user(who), delivered: 3, read: 2 });
    }
    for seq in 1..=3 {
        writes.push(Write::AppendMessage(message(room, seq)));
    }
    writes.push(Write::PutReaction { room: room.clone(), seq: 1, emoji: "👍".into(), user: user("u_bob") });
    writes
}

#[test]
fn a_forgotten_room_leaves_nothing_and_its_neighbour_everything() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Durability::Buffered).unwrap();
    let (gone, kept) = (RoomId::parse("r_a").unwrap(), RoomId::parse("r_ab").unwrap());
    store.apply(&room_writes(&gone)).unwrap();
    store.apply(&room_writes(&kept)).unwrap();
    let before = (store.room_digest(&kept, 1, 100).unwrap(), store.members(&kept).unwrap());

    let seqs = store.forget_room(&gone).unwrap();
    assert_eq!(seqs, vec![1, 2, 3]);
    assert!(store.room(&gone).unwrap().is_none());
    assert!(store.members(&gone).unwrap().is_empty());
    assert_eq!(store.last_seq(&gone).unwrap(), 0);
    assert_eq!(store.room_digest(&gone, 1, 100).unwrap().messages, 0);
    assert_eq!(store.mention_count(&user("u_bob"), &gone, 0).unwrap(), 0);
    assert!(!store.user_rooms(&user("u_alice")).unwrap().contains(&gone));

    assert_eq!((store.room_digest(&kept, 1, 100).unwrap(), store.members(&kept).unwrap()), before);
    assert_eq!(store.mention_count(&user("u_bob"), &kept, 0).unwrap(), 3);
    assert!(store.user_rooms(&user("u_alice")).unwrap().contains(&kept));

    // Rebuilt from its writes, it is what it was.
    store.apply_rebuilt(&room_writes(&gone)).unwrap();
    assert_eq!(store.room_digest(&gone, 1, 100).unwrap().messages, 3);
    assert_eq!(store.members(&gone).unwrap().len(), 2);
    assert_eq!(store.mention_count(&user("u_bob"), &gone, 0).unwrap(), 3);
}
