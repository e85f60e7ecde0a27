//! Indexing yields its CPU (`SCHED_IDLE`, or the nice-19 fallback) on every indexing
//! thread, takes a normal share once its backlog passes its bound, and yields again once
//! caught up; the backlog counts changes until they are searchable. Its own test binary:
//! the pacer changes every indexing thread of the process, so no other indexer may run.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::time::{Duration, Instant};

use palaver_protocol::Message;
use palaver_search::{
    BacklogBound, IndexOp, IndexerConfig, IndexingShare, SearchIndex, SearchQuery, indexing_threads,
};

mod support;

fn message(seq: u64, text: &str) -> Message {
    support::message("r_lobby", seq, 1_000 + seq, "u_ann", text)
}

/// Waits (a generous bound: this is about reaching a state, not speed) until `done`.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every indexing thread is at `share`, and tantivy's indexing thread is among them.
fn all_threads_at(share: IndexingShare) -> bool {
    let threads = indexing_threads();
    threads.iter().any(|(_, name, _)| name.starts_with("thrd-tantivy-in"))
        && threads.iter().all(|(_, _, scheduling)| scheduling.is(share))
}

fn describe() -> String {
    format!("{:?}", indexing_threads())
}

#[test]
fn indexing_yields_counts_its_backlog_and_catches_up_past_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (index, _) = SearchIndex::open(dir.path()).unwrap();
    let config = IndexerConfig::default()
        .with_commit_interval(Duration::from_secs(3_600))
        .with_backlog_bound(BacklogBound::new(10, Duration::from_secs(3_600)));
    let indexer = index.start_indexer(config).unwrap();
    let backlog = indexer.backlog().clone();
    let start = backlog.share();
    // Under the bound: every indexing thread yields (where the process may take the CPU
    // back; otherwise they all run at nice 10 from the start).
    indexer.send(IndexOp::Insert((1..=5).map(|seq| message(seq, "hello yielding world")).collect())).unwrap();
    eventually("the indexing threads start at their share", || all_threads_at(start));
    println!("indexing threads at {start:?}: {}", describe());
    assert_eq!(backlog.changes(), 5);
    assert!(backlog.lag() > Duration::ZERO);
    let rooms = vec![support::room("r_lobby")];
    assert!(index.search(&SearchQuery::new("yielding", rooms.clone())).unwrap().hits.is_empty());

    if start == IndexingShare::Idle {
        // Past the bound (15 changes of at most 10), they all take a normal share...
        indexer
            .send(IndexOp::Insert((6..=15).map(|seq| message(seq, "hello catching up")).collect()))
            .unwrap();
        eventually("indexing catches up past its bound", || backlog.share() == IndexingShare::CatchUp);
        assert!(all_threads_at(IndexingShare::CatchUp), "{}", describe());
        assert_eq!(backlog.catch_ups(), 1);
        println!("past the bound: {}", describe());
    }

    // ...and once searchable, the backlog is empty and they yield again.
    indexer.flush().unwrap();
    assert_eq!((backlog.changes(), backlog.lag()), (0, Duration::ZERO));
    assert_eq!(index.search(&SearchQuery::new("yielding", rooms)).unwrap().hits.len(), 5);
    eventually("indexing yields again once caught up", || backlog.share() == start && all_threads_at(start));
    println!("caught up: {}", describe());
    indexer.shutdown();
}
