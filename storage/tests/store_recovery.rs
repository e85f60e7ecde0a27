//! A transient shortage of descriptors while the engine flushes poisons fjall for good;
//! the store reopens the database once descriptors are back, loses nothing that was
//! acknowledged, and takes writes again. Alone in its own test binary: it lowers the
//! process's descriptor limit.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::fs::File;
use std::time::Duration;

use palaver_protocol::{ClientMsgId, Message, MessageKind, RoomId, UserId};
use palaver_storage::{Durability, StorageError, Store, Write};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

fn message(room: &RoomId, seq: u64) -> Message {
    Message {
        room: room.clone(),
        seq,
        ts: 1_000 + seq,
        sender: UserId::parse("u_alice").unwrap(),
        cid: ClientMsgId::parse(&format!("c{seq}")).unwrap(),
        kind: MessageKind::Text,
        text: format!("message {seq} {}", "x".repeat(2_000)),
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

/// Opens files until the process has no descriptor left; returns them (dropping them
/// gives the descriptors back).
fn take_every_descriptor() -> Vec<File> {
    let mut hog = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(file) => hog.push(file),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(rustix::io::Errno::MFILE.raw_os_error()), "{e}");
                return hog;
            }
        }
    }
}

#[test]
fn running_out_of_descriptors_mid_flush_is_recovered_without_losing_writes() {
    let original = getrlimit(Resource::Nofile);
    // Keep the hog small: a limit just above what the process uses now.
    setrlimit(Resource::Nofile, Rlimit { current: Some(512), maximum: original.maximum }).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let room = RoomId::parse("r_recovery").unwrap();
    let store = Store::open(dir.path(), Durability::Fsync).unwrap();
    for seq in 1..=200 {
        store.apply(&[Write::AppendMessage(message(&room, seq))]).unwrap();
    }

    // No descriptor left: once the memtables fill, the engine cannot open the files a
    // rotation and a flush need, and it poisons itself.
    let hog = take_every_descriptor();
    let mut acknowledged = 200;
    let mut refused = false;
    for _ in 0..60 {
        let batch: Vec<Write> = (acknowledged + 1..=acknowledged + 500)
            .map(|seq| Write::AppendMessage(message(&room, seq)))
            .collect();
        match store.apply(&batch) {
            Ok(()) => acknowledged += 500,
            Err(StorageError::Poisoned) => {
                refused = true;
                break;
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert!(refused, "30 MB of writes and no file ever needed opening");
    assert!(store.is_poisoned() && store.needs_recovery(), "a descriptor shortage is transient");
    drop(hog);
    assert!(store.recover(Duration::from_secs(2)), "descriptors are back: the store reopens");
    assert!(!store.is_poisoned());
    assert_eq!(store.reopens(), 1);
    let last = store.last_seq(&room).unwrap();
    assert!(last >= acknowledged, "acknowledged writes survive the reopen ({last} < {acknowledged})");
    // Everything acknowledged is there, in order, and writing goes on from it.
    let stored = store.messages_between(&room, 1, last, 100_000).unwrap();
    assert_eq!(stored.iter().map(|m| m.seq).collect::<Vec<_>>(), (1..=last).collect::<Vec<_>>());
    store.apply(&[Write::AppendMessage(message(&room, last + 1))]).unwrap();
    assert_eq!(store.last_seq(&room).unwrap(), last + 1);
    drop(store);

    // And the directory opens cleanly afterwards.
    let reopened = Store::open(dir.path(), Durability::Fsync).unwrap();
    assert_eq!(reopened.last_seq(&room).unwrap(), last + 1);
    setrlimit(Resource::Nofile, original).unwrap();
}
