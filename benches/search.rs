//! Search latency over a large index: an index of N messages (default 1 000 000, set
//! `PALAVER_BENCH_SEARCH_MESSAGES` for another size) spread over 1 000 rooms with a
//! realistic vocabulary, queried the way `search` does — restricted to the 50 rooms a
//! user is in — for a common word, a rare word, a phrase, a prefix, and newest-first.
//! Building the index is set-up, not measured (it is printed).

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use palaver_protocol::{ClientMsgId, Message, MessageKind, RoomId, UserId};
use palaver_search::{IndexOp, IndexerConfig, Order, SearchIndex, SearchQuery};

const ROOMS: u64 = 1_000;
const WORDS: &[&str] = &[
    "design",
    "review",
    "meeting",
    "lunch",
    "deploy",
    "release",
    "bug",
    "fix",
    "coffee",
    "tomorrow",
    "today",
    "weekend",
    "please",
    "thanks",
    "great",
    "idea",
    "budget",
    "report",
    "draft",
    "client",
    "server",
    "database",
    "latency",
    "outage",
    "holiday",
    "train",
    "ticket",
    "photo",
    "birthday",
    "party",
    "music",
    "movie",
    "book",
    "recipe",
    "garden",
    "weather",
    "rain",
    "sunny",
    "football",
    "match",
    "score",
    "東京",
    "タワー",
    "café",
];

fn room(i: u64) -> RoomId {
    RoomId::from_body(&format!("bench{i:04}")).unwrap_or_else(|_| unreachable!())
}

/// Message `seq` (global numbering): a few words drawn deterministically, and one rare
/// word in one message of ten thousand.
fn message(seq: u64) -> Message {
    let mut x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut words = Vec::new();
    for _ in 0..(6 + seq % 10) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        words.push(WORDS[(x % WORDS.len() as u64) as usize]);
    }
    if seq.is_multiple_of(10_000) {
        words.push("zanzibar");
    }
    Message {
        room: room(seq % ROOMS),
        seq: seq / ROOMS + 1,
        ts: 1_795_000_000_000 + seq,
        sender: UserId::from_body(&format!("bench{}", seq % 5_000)).unwrap_or_else(|_| unreachable!()),
        cid: ClientMsgId::parse(&format!("c{seq}")).unwrap_or_else(|_| unreachable!()),
        kind: MessageKind::Text,
        text: words.join(" "),
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

fn search(c: &mut Criterion) {
    let count: u64 =
        std::env::var("PALAVER_BENCH_SEARCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap_or_else(|_| unreachable!());
    let (index, _) = SearchIndex::open(dir.path()).unwrap_or_else(|e| panic!("open: {e}"));
    let started = Instant::now();
    {
        let indexer =
            index.start_indexer(IndexerConfig::default()).unwrap_or_else(|e| panic!("indexer: {e}"));
        // In batches, as group commits hand them over.
        for first in (0..count).step_by(100) {
            let _ = indexer.send(IndexOp::Insert((first..count.min(first + 100)).map(message).collect()));
        }
        indexer.flush().unwrap_or_else(|e| panic!("flush: {e}"));
        indexer.shutdown();
    }
    eprintln!("indexed {count} messages in {:?} ({} docs)", started.elapsed(), index.num_docs());
    // The user is in 50 of the 1 000 rooms.
    let rooms: Vec<RoomId> = (0..50).map(|i| room(i * 20)).collect();
    let mut group = c.benchmark_group("search");
    group.sample_size(30);
    for (name, text, order) in [
        ("common_word", "deploy", Order::Relevance),
        ("two_words", "design review", Order::Relevance),
        ("rare_word", "zanzibar", Order::Relevance),
        ("phrase", "\"coffee tomorrow\"", Order::Relevance),
        ("prefix", "birth*", Order::Relevance),
        ("cjk", "東京", Order::Relevance),
        ("newest_first", "deploy", Order::Newest),
    ] {
        let mut query = SearchQuery::new(text, rooms.clone());
        query.order = order;
        group.bench_function(name, |b| b.iter(|| black_box(index.search(&query).map(|p| p.hits.len()))));
    }
    group.finish();
}

criterion_group!(benches, search);
criterion_main!(benches);
