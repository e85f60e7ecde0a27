//! fjall's flush and compaction workers, and the thread that frees flushed memtables, are
//! background work: they run at nice 10, and opening the store leaves the opener's own
//! priority alone. (Its own test binary, so
//! no other test's threads are in the process.)
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use palaver_storage::{Durability, Store};

/// The nice value of one thread of this process (field 19 of its `stat`; the name in
/// field 2 may hold spaces, so fields are counted after its closing parenthesis).
fn nice_of(task: &std::path::Path) -> i64 {
    let stat = std::fs::read_to_string(task.join("stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    after_name.split(' ').nth(16).unwrap().parse().unwrap()
}

fn threads_named(name: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|task| std::fs::read_to_string(task.join("comm")).is_ok_and(|comm| comm.trim() == name))
        .collect()
}

#[test]
fn storage_background_threads_run_at_nice_10_and_the_opener_keeps_its_priority() {
    let dir = tempfile::tempdir().unwrap();
    let before = nice_of(std::path::Path::new("/proc/thread-self"));
    let store = Store::open(dir.path(), Durability::Fsync).unwrap();
    let workers = threads_named("fjall:worker");
    assert!(!workers.is_empty(), "no fjall worker threads found");
    for worker in &workers {
        assert_eq!(nice_of(worker), 10, "{}", worker.display());
    }
    assert_eq!(nice_of(std::path::Path::new("/proc/thread-self")), before);

    // The thread that frees flushed memtables lowers its own priority as it starts.
    let keeper_nice = || threads_named("store-memtables").first().map(|t| nice_of(t));
    for _ in 0..200 {
        if keeper_nice() == Some(10) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(keeper_nice(), Some(10));
    // It is joined when the store drops: its keyspace handles are gone, so the
    // directory opens again.
    drop(store);
    assert!(threads_named("store-memtables").is_empty());
    drop(Store::open(dir.path(), Durability::Fsync).unwrap());
}
