//! Storage: group-committed appends (fsync and buffered; one room, and a thousand rooms),
//! a 50-message history page, and the idempotency lookup.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use palaver_benches::{message, room};
use palaver_protocol::{Message, RoomId};
use palaver_storage::{CommitDone, Durability, GroupCommitter, Store, Write};

/// Appends `batch` messages as `batch` concurrent submissions and waits for all of them.
fn append_group(c: &mut Criterion, durability: Durability, name: &str) {
    let dir = tempfile::tempdir().unwrap_or_else(|_| unreachable!());
    let store = Arc::new(Store::open(dir.path(), durability).unwrap_or_else(|_| unreachable!()));
    let (done_tx, done_rx) = flume::unbounded::<usize>();
    let committer = GroupCommitter::start(store, move |done: CommitDone<u64>| {
        let _ = done_tx.send(done.tickets.len());
    });
    let batch = 1_000u64;
    let mut seq = 0u64;
    let mut group = c.benchmark_group("storage");
    group.throughput(Throughput::Elements(batch));
    group.sample_size(20);
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                for _ in 0..batch {
                    seq += 1;
                    let _ = committer.submit(vec![Write::AppendMessage(message(seq))], seq);
                }
                let mut acked = 0;
                while acked < batch as usize {
                    acked += done_rx.recv_timeout(Duration::from_secs(30)).unwrap_or(batch as usize);
                }
            }
            start.elapsed()
        })
    });
    group.finish();
    committer.shutdown();
}

/// Appends one message to each of `rooms` rooms as concurrent submissions, round after
/// round, and waits for all of them: the commit thread's work per message when every
/// submission is another room's (its seq fenced, its record written and synced).
fn append_rooms(c: &mut Criterion, rooms: u64) {
    let dir = tempfile::tempdir().unwrap_or_else(|_| unreachable!());
    let store = Arc::new(Store::open(dir.path(), Durability::Fsync).unwrap_or_else(|_| unreachable!()));
    let (done_tx, done_rx) = flume::unbounded::<usize>();
    let committer = GroupCommitter::start(store, move |done: CommitDone<u64>| {
        let _ = done_tx.send(done.tickets.len());
    });
    let ids: Vec<RoomId> =
        (0..rooms).map(|r| RoomId::parse(&format!("r_{r:08}")).unwrap_or_else(|_| unreachable!())).collect();
    let mut round = 0u64;
    let mut group = c.benchmark_group("storage");
    group.throughput(Throughput::Elements(rooms));
    group.sample_size(20);
    group.bench_function(
        format!("append {rooms} concurrent sends to {rooms} rooms (fsync, group commit)"),
        |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    round += 1;
                    for (r, id) in ids.iter().enumerate() {
                        let message = Message { room: id.clone(), seq: round, ..message(round) };
                        let _ = committer.submit(vec![Write::AppendMessage(message)], r as u64);
                    }
                    let mut acked = 0;
                    while acked < rooms as usize {
                        acked += done_rx.recv_timeout(Duration::from_secs(30)).unwrap_or(rooms as usize);
                    }
                }
                start.elapsed()
            })
        },
    );
    group.finish();
    committer.shutdown();
}

fn appends(c: &mut Criterion) {
    append_group(c, Durability::Fsync, "append 1000 concurrent sends (fsync, group commit)");
    append_group(c, Durability::Buffered, "append 1000 concurrent sends (buffered)");
    append_rooms(c, 1_000);
}

fn reads(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap_or_else(|_| unreachable!());
    let store = Store::open(dir.path(), Durability::Buffered).unwrap_or_else(|_| unreachable!());
    let writes: Vec<Write> = (1..=10_000).map(|seq| Write::AppendMessage(message(seq))).collect();
    store.apply(&writes).unwrap_or_else(|_| unreachable!());
    let room = room();
    let mut before = 10_001u64;
    c.bench_function("storage/history page of 50", |b| {
        b.iter(|| {
            before = if before <= 51 { 10_001 } else { before - 50 };
            black_box(store.messages_before(&room, Some(before), 50))
        })
    });
    let stored = message(5_000);
    c.bench_function("storage/idempotency lookup (room, sender, cid)", |b| {
        b.iter(|| black_box(store.cid_seq(&room, &stored.sender, black_box(&stored.cid))))
    });
}

criterion_group!(benches, appends, reads);
criterion_main!(benches);
