//! A data directory written by each format version is committed under
//! `tests/fixtures/vN`; every later build must still open each (migrating an older one)
//! and read the same data. When the format version changes, write the new one with
//! `cargo test -p palaver-storage --test format_fixture -- --ignored` and keep the old.
#![allow(clippy::unwrap_used, reason = "test: failing loudly is the point")]

use std::path::{Path, PathBuf};

use palaver_protocol::{ClientMsgId, Message, MessageKind, RoomId, RoomKind, RoomRole, UserId};
use palaver_storage::{Durability, RoomRecord, StorageError, Store, Write};

fn fixture(version: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/v{version}"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn room() -> RoomId {
    RoomId::parse("r_fixture").unwrap()
}

fn message(seq: u64) -> Message {
    Message {
        room: room(),
        seq,
        ts: 1_764_000_000_000 + seq,
        sender: UserId::parse("u_alice").unwrap(),
        cid: ClientMsgId::parse(&format!("cid-{seq}")).unwrap(),
        kind: MessageKind::Text,
        text: format!("fixture message {seq} ✓"),
        client_ts: seq.is_multiple_of(2).then_some(seq),
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

#[test]
fn every_committed_format_opens_and_reads_back() {
    for version in 1..=palaver_storage::FORMAT_VERSION {
        opens_and_reads_back(version);
    }
}

fn opens_and_reads_back(version: u32) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture(version), dir.path());
    let store = Store::open(dir.path(), Durability::Fsync).unwrap();
    let room = room();
    assert_eq!(store.last_seq(&room).unwrap(), 20);
    let all = store.messages_between(&room, 1, 20, 100).unwrap();
    assert_eq!(all, (1..=20).map(message).collect::<Vec<_>>());
    assert_eq!(
        store
            .cid_seq(&room, &UserId::parse("u_alice").unwrap(), &ClientMsgId::parse("cid-7").unwrap())
            .unwrap(),
        Some((7, message(7).ts))
    );
    // A cid is its sender's: the same cid from someone else is not a duplicate.
    assert_eq!(
        store
            .cid_seq(&room, &UserId::parse("u_bob").unwrap(), &ClientMsgId::parse("cid-7").unwrap())
            .unwrap(),
        None
    );
    let record = store.room(&room).unwrap().unwrap();
    assert_eq!((record.name.as_str(), record.kind), ("fixture room", RoomKind::Private));
    assert_eq!(store.members(&room).unwrap(), vec![(UserId::parse("u_alice").unwrap(), RoomRole::Owner)]);
}

#[test]
fn a_directory_of_another_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture(palaver_storage::FORMAT_VERSION), dir.path());
    // Rewrite the version key as a future build would.
    {
        let db = fjall::Database::builder(dir.path()).open().unwrap();
        let meta = db.keyspace("meta", fjall::KeyspaceCreateOptions::default).unwrap();
        meta.insert("format_version", 99u32.to_be_bytes()).unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    match Store::open(dir.path(), Durability::Fsync) {
        Err(StorageError::UnsupportedFormat { found: 99, supported })
            if supported == palaver_storage::FORMAT_VERSION => {}
        other => panic!("expected UnsupportedFormat, got {other:?}"),
    }
}

#[test]
#[ignore = "regenerates the committed fixture; run only when the format version changes"]
fn regenerate_fixture() {
    let path = fixture(palaver_storage::FORMAT_VERSION);
    let _ = std::fs::remove_dir_all(&path);
    let store = Store::open(&path, Durability::Fsync).unwrap();
    let owner = UserId::parse("u_alice").unwrap();
    let mut writes = vec![
        Write::PutRoom(RoomRecord {
            room_id: room(),
            name: "fixture room".into(),
            kind: RoomKind::Private,
            owner: owner.clone(),
            created_ms: 1_764_000_000_000,
            topic: String::new(),
            settings: None,
            deleted: false,
        }),
        Write::PutMember { room: room(), user: owner, role: RoomRole::Owner },
    ];
    writes.extend((1..=20).map(|seq| Write::AppendMessage(message(seq))));
    store.apply(&writes).unwrap();
    store.sync().unwrap();
}
