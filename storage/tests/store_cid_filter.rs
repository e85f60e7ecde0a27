//! A room's cid filter, built from storage, holds every cid stored for that room: the
//! idempotency check may skip the lookup only for cids it reports absent.

use palaver_protocol::{ClientMsgId, Message, MessageKind, RoomId, SystemAction, SystemNotice, UserId};
use palaver_storage::{CidHash, Durability, Store, Write};

fn message(room: &RoomId, seq: u64, cid: &str) -> Message {
    Message {
        room: room.clone(),
        seq,
        ts: 1_000 + seq,
        sender: UserId::parse("u_alice").expect("valid id"),
        cid: ClientMsgId::parse(cid).expect("valid cid"),
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
    }
}

fn hash(cid: &str) -> CidHash {
    CidHash::of(&UserId::parse("u_alice").expect("valid id"), &ClientMsgId::parse(cid).expect("valid cid"))
}

#[test]
fn a_rooms_filter_holds_its_stored_cids_and_not_its_neighbours() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Durability::Buffered).unwrap();
    // `r_a` is a prefix of `r_ab`: the scan must stop at its own room.
    let (a, ab) = (RoomId::parse("r_a").unwrap(), RoomId::parse("r_ab").unwrap());
    let mut writes = Vec::new();
    for seq in 1..=2_000 {
        writes.push(Write::AppendMessage(message(&a, seq, &format!("a-{seq}"))));
        writes.push(Write::AppendMessage(message(&ab, seq, &format!("ab-{seq}"))));
    }
    store.apply(&writes).unwrap();
    // Reopened, so part of it is read from disk tables rather than the memtable.
    drop(store);
    let store = Store::open(dir.path(), Durability::Buffered).unwrap();

    let filter = store.cid_filter(&a).unwrap().expect("well below the cap");
    assert_eq!(filter.len(), 2_000);
    assert!((1..=2_000).all(|seq| filter.may_contain(hash(&format!("a-{seq}")))));
    let neighbours = (1..=2_000).filter(|seq| filter.may_contain(hash(&format!("ab-{seq}")))).count();
    assert!(neighbours < 100, "{neighbours} of the other room's cids reported present");

    let empty = store.cid_filter(&RoomId::parse("r_none").unwrap()).unwrap().expect("empty");
    assert!(empty.is_empty());
}

/// A `system` message recording `action`, sent as `u_system` with `cid`.
fn system_message(room: &RoomId, seq: u64, cid: &str, action: SystemAction) -> Message {
    let notice = SystemNotice {
        action,
        actor: UserId::system(),
        target: None,
        role: None,
        until: None,
        reason: None,
        seq: None,
    };
    Message {
        sender: UserId::system(),
        kind: MessageKind::System,
        system: Some(Box::new(notice)),
        ..message(room, seq, cid)
    }
}

#[test]
fn an_announcement_is_found_by_its_cid_until_retention_removes_it_and_notices_never_are() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Durability::Buffered).unwrap();
    let room = RoomId::parse("r_a").unwrap();
    store
        .apply(&[
            Write::AppendMessage(system_message(&room, 1, "maint-1", SystemAction::Announcement)),
            Write::AppendMessage(system_message(&room, 2, "system:2", SystemAction::Pinned)),
        ])
        .unwrap();
    let stored =
        |cid: &str| store.cid_seq(&room, &UserId::system(), &ClientMsgId::parse(cid).unwrap()).unwrap();
    assert_eq!(stored("maint-1"), Some((1, 1_001)));
    assert_eq!(stored("system:2"), None, "the server's notices are not indexed by cid");
    let filter = store.cid_filter(&room).unwrap().expect("below the cap");
    assert!(filter.may_contain(CidHash::of(&UserId::system(), &ClientMsgId::parse("maint-1").unwrap())));
    assert_eq!(filter.len(), 1);

    store.apply(&[Write::TrimHistory { room: room.clone(), from: 1, floor: 3 }]).unwrap();
    assert_eq!(stored("maint-1"), None, "retention takes its cid with it");
}
