//! Search end to end, through the public API: index messages with the indexer thread,
//! search them, rebuild from a real store, reopen across format versions.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use palaver_protocol::{FileRef, Message, MessageKind};
use palaver_search::{
    IndexOp, IndexState, IndexerConfig, IndexerHandle, Order, RUNNING_FILE, SearchError, SearchIndex,
    SearchQuery, VERSION_FILE, changes_of,
};
use palaver_storage::{Durability, Store, Write};
use proptest::prelude::*;

mod support;
use support::{message, room, user};

struct Fixture {
    index: SearchIndex,
    indexer: IndexerHandle,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new(messages: &[Message]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (index, state) = SearchIndex::open(dir.path()).unwrap();
        assert_eq!(state, IndexState::Fresh);
        let indexer = index.start_indexer(IndexerConfig::default()).unwrap();
        indexer.send(IndexOp::Insert(messages.to_vec())).unwrap();
        indexer.flush().unwrap();
        Fixture { index, indexer, _dir: dir }
    }

    fn find(&self, text: &str, rooms: &[&str]) -> Vec<(String, u64)> {
        let query = SearchQuery::new(text, rooms.iter().map(|r| room(r)).collect());
        self.run(&query)
    }

    fn run(&self, query: &SearchQuery) -> Vec<(String, u64)> {
        let page = self.index.search(query).unwrap();
        page.hits.iter().map(|h| (h.room.as_str().to_owned(), h.seq)).collect()
    }
}

fn hits(list: &[(&str, u64)]) -> Vec<(String, u64)> {
    list.iter().map(|(r, s)| ((*r).to_owned(), *s)).collect()
}

fn sorted(mut v: Vec<(String, u64)>) -> Vec<(String, u64)> {
    v.sort();
    v
}

#[test]
fn cjk_text_is_found_by_its_substrings() {
    let f = Fixture::new(&[
        message("r_a", 1, 1, "u_ann", "東京タワーに行きました"),
        message("r_a", 2, 2, "u_ann", "京都は寒い"),
        message("r_a", 3, 3, "u_ann", "서울에서 만나요"),
        message("r_a", 4, 4, "u_ann", "ひらがなとカタカナ"),
    ]);
    assert_eq!(f.find("東京", &["r_a"]), hits(&[("r_a", 1)]));
    assert_eq!(f.find("タワー", &["r_a"]), hits(&[("r_a", 1)]));
    assert_eq!(f.find("京都", &["r_a"]), hits(&[("r_a", 2)]));
    assert_eq!(f.find("서울", &["r_a"]), hits(&[("r_a", 3)]));
    assert_eq!(f.find("カタカナ", &["r_a"]), hits(&[("r_a", 4)]));
    assert_eq!(f.find("ひらがな", &["r_a"]), hits(&[("r_a", 4)]));
    assert!(f.find("東都", &["r_a"]).is_empty());
    let page = f.index.search(&SearchQuery::new("東京", vec![room("r_a")])).unwrap();
    assert_eq!(page.hits[0].snippet, "<b>東京</b>タワーに行きました");
}

#[test]
fn diacritics_and_case_are_folded_both_ways() {
    let f = Fixture::new(&[
        message("r_a", 1, 1, "u_ann", "Meet at the Café"),
        message("r_a", 2, 2, "u_ann", "the CAFE is closed"),
    ]);
    assert_eq!(sorted(f.find("cafe", &["r_a"])), hits(&[("r_a", 1), ("r_a", 2)]));
    assert_eq!(sorted(f.find("CAFÉ", &["r_a"])), hits(&[("r_a", 1), ("r_a", 2)]));
    let page = f.index.search(&SearchQuery::new("cafe", vec![room("r_a")])).unwrap();
    let snippets: HashSet<_> = page.hits.iter().map(|h| h.snippet.as_str()).collect();
    assert!(snippets.contains("Meet at the <b>Café</b>"));
}

#[test]
fn words_are_anded_phrases_need_order_and_prefixes_complete() {
    let f = Fixture::new(&[
        message("r_a", 1, 1, "u_ann", "the quick brown fox"),
        message("r_a", 2, 2, "u_ann", "brown quick dog"),
        message("r_a", 3, 3, "u_ann", "hello helicopter"),
    ]);
    assert_eq!(sorted(f.find("quick brown", &["r_a"])), hits(&[("r_a", 1), ("r_a", 2)]));
    assert_eq!(f.find("\"quick brown\"", &["r_a"]), hits(&[("r_a", 1)]));
    assert_eq!(f.find("quick fox", &["r_a"]), hits(&[("r_a", 1)]));
    assert_eq!(f.find("heli*", &["r_a"]), hits(&[("r_a", 3)]));
    assert_eq!(sorted(f.find("bro*", &["r_a"])), hits(&[("r_a", 1), ("r_a", 2)]));
}

#[test]
fn bad_queries_are_errors_a_client_caused() {
    let f = Fixture::new(&[message("r_a", 1, 1, "u_ann", "hi")]);
    for text in ["\"open quote", "a*b", "*", "", "  ...  "] {
        let error = f.index.search(&SearchQuery::new(text, vec![room("r_a")])).unwrap_err();
        assert!(error.is_invalid_request(), "{text:?}: {error}");
    }
    let mut query = SearchQuery::new("hi", vec![room("r_a")]);
    query.limit = 0;
    assert!(matches!(f.index.search(&query), Err(SearchError::LimitOutOfRange { .. })));
    query.limit = 51;
    assert!(f.index.search(&query).unwrap_err().is_invalid_request());
    query.limit = 10;
    query.cursor = Some("not a cursor".into());
    assert!(matches!(f.index.search(&query), Err(SearchError::BadCursor)));
}

#[test]
fn filters_rooms_sender_and_time() {
    let f = Fixture::new(&[
        message("r_a", 1, 100, "u_ann", "pizza tonight"),
        message("r_b", 1, 200, "u_bob", "pizza tomorrow"),
        message("r_c", 1, 300, "u_ann", "pizza never"),
    ]);
    assert_eq!(sorted(f.find("pizza", &["r_a", "r_b"])), hits(&[("r_a", 1), ("r_b", 1)]));
    assert!(f.find("pizza", &[]).is_empty());
    let mut query = SearchQuery::new("pizza", vec![room("r_a"), room("r_b"), room("r_c")]);
    query.from = Some(user("u_ann"));
    assert_eq!(sorted(f.run(&query)), hits(&[("r_a", 1), ("r_c", 1)]));
    query.from = None;
    query.room = Some(room("r_b"));
    assert_eq!(f.run(&query), hits(&[("r_b", 1)]));
    query.rooms = vec![room("r_a")];
    assert!(f.run(&query).is_empty(), "a room outside the allow-list returns nothing");
    let mut query = SearchQuery::new("pizza", vec![room("r_a"), room("r_b"), room("r_c")]);
    query.after_ts = Some(100);
    assert_eq!(sorted(f.run(&query)), hits(&[("r_b", 1), ("r_c", 1)]));
    query.before_ts = Some(300);
    assert_eq!(f.run(&query), hits(&[("r_b", 1)]));
    query.after_ts = None;
    assert_eq!(sorted(f.run(&query)), hits(&[("r_a", 1), ("r_b", 1)]));
}

#[test]
fn newest_order_and_relevance_order() {
    let f = Fixture::new(&[
        message("r_a", 1, 100, "u_ann", "rust"),
        message("r_a", 2, 300, "u_ann", "rust is a language, not only oxidation"),
        message("r_a", 3, 200, "u_ann", "rust rust rust"),
    ]);
    let mut query = SearchQuery::new("rust", vec![room("r_a")]);
    query.order = Order::Newest;
    assert_eq!(f.run(&query), hits(&[("r_a", 2), ("r_a", 3), ("r_a", 1)]));
    query.order = Order::Relevance;
    let page = f.index.search(&query).unwrap();
    assert_eq!(page.hits.last().map(|h| h.seq), Some(2), "the long message scores lowest");
    assert!(page.hits.windows(2).all(|w| w[0].score >= w[1].score));
}

fn all_pages(f: &Fixture, mut query: SearchQuery) -> Vec<(String, u64)> {
    let mut all = Vec::new();
    loop {
        let page = f.index.search(&query).unwrap();
        assert!(page.hits.len() <= query.limit);
        all.extend(page.hits.iter().map(|h| (h.room.as_str().to_owned(), h.seq)));
        match page.next {
            Some(next) => query.cursor = Some(next),
            None => return all,
        }
    }
}

#[test]
fn paging_has_no_duplicates_and_no_gaps_in_either_order() {
    // Many messages share a timestamp, so newest-first pages cut through ties.
    let mut messages = Vec::new();
    for seq in 1..=37 {
        messages.push(message("r_a", seq, 1_000 + seq / 5, "u_ann", &format!("common word {seq}")));
        messages.push(message("r_b", seq, 1_000 + seq / 3, "u_bob", &format!("common {seq}")));
    }
    let f = Fixture::new(&messages);
    let expected: HashSet<(String, u64)> =
        messages.iter().map(|m| (m.room.as_str().to_owned(), m.seq)).collect();
    for order in [Order::Newest, Order::Relevance] {
        for limit in [1, 4, 7, 50] {
            let mut query = SearchQuery::new("common", vec![room("r_a"), room("r_b")]);
            query.order = order;
            query.limit = limit;
            let all = all_pages(&f, query);
            let unique: HashSet<_> = all.iter().cloned().collect();
            assert_eq!(unique.len(), all.len(), "{order:?} {limit}: duplicates");
            assert_eq!(unique, expected, "{order:?} {limit}: gaps");
            if order == Order::Newest {
                let ts = |(r, s): &(String, u64)| {
                    messages.iter().find(|m| m.room.as_str() == r && m.seq == *s).unwrap().ts
                };
                assert!(all.windows(2).all(|w| ts(&w[0]) >= ts(&w[1])), "newest first");
            }
        }
    }
}

#[test]
fn newest_paging_survives_new_messages_between_pages() {
    let messages: Vec<Message> = (1..=10).map(|s| message("r_a", s, s, "u_ann", "ping")).collect();
    let f = Fixture::new(&messages);
    let mut query = SearchQuery::new("ping", vec![room("r_a")]);
    query.order = Order::Newest;
    query.limit = 4;
    let first = f.index.search(&query).unwrap();
    f.indexer.send(IndexOp::Upsert(message("r_a", 11, 11, "u_ann", "ping"))).unwrap();
    f.indexer.flush().unwrap();
    query.cursor = first.next.clone();
    let rest = all_pages(&f, query);
    let mut seqs: Vec<u64> = first.hits.iter().map(|h| h.seq).collect();
    seqs.extend(rest.iter().map(|(_, s)| *s));
    assert_eq!(seqs, (1..=10).rev().collect::<Vec<_>>());
}

#[test]
fn edits_replace_and_deletes_remove() {
    let f = Fixture::new(&[
        message("r_a", 1, 1, "u_ann", "original words"),
        message("r_a", 2, 2, "u_ann", "keep me"),
    ]);
    let mut edited = message("r_a", 1, 1, "u_ann", "replacement text");
    edited.edited_at = Some(5);
    f.indexer.send(IndexOp::Upsert(edited)).unwrap();
    let mut tombstone = message("r_a", 2, 2, "u_ann", "");
    tombstone.deleted = true;
    f.indexer.send(IndexOp::Upsert(tombstone)).unwrap();
    f.indexer.flush().unwrap();
    assert!(f.find("original", &["r_a"]).is_empty());
    assert_eq!(f.find("replacement", &["r_a"]), hits(&[("r_a", 1)]));
    assert!(f.find("keep", &["r_a"]).is_empty());
    f.indexer.send(IndexOp::Remove { room: room("r_a"), seq: 1 }).unwrap();
    f.indexer.flush().unwrap();
    assert!(f.find("replacement", &["r_a"]).is_empty());
    assert_eq!(f.index.num_docs(), 0);
}

/// A message and its edit committed in one group: the edit must land after the insert,
/// or the index keeps both versions.
#[test]
fn an_edit_committed_with_its_message_replaces_it() {
    let f = Fixture::new(&[]);
    let original = message("r_a", 1, 1, "u_ann", "first draft");
    let mut edited = original.clone();
    edited.text = "final wording".into();
    let group = vec![
        Write::AppendMessage(original),
        Write::AppendMessage(message("r_a", 2, 2, "u_ann", "another draft")),
        Write::ReplaceMessage(edited),
        Write::AppendMessage(message("r_a", 3, 3, "u_ann", "third")),
    ];
    for change in changes_of(group) {
        f.indexer.send(change).unwrap();
    }
    f.indexer.flush().unwrap();
    assert_eq!(f.index.num_docs(), 3);
    assert_eq!(f.find("draft", &["r_a"]), hits(&[("r_a", 2)]));
    assert_eq!(f.find("wording", &["r_a"]), hits(&[("r_a", 1)]));
}

#[test]
fn system_messages_are_never_indexed_and_files_are_by_caption_and_name() {
    let mut system = message("r_a", 1, 1, "u_ann", "ann joined the room");
    system.kind = MessageKind::System;
    let mut file = message("r_a", 2, 2, "u_ann", "the budget");
    file.kind = MessageKind::File;
    file.file = Some(Box::new(FileRef {
        file_id: "f1".into(),
        name: "Quarterly-Report.pdf".into(),
        size: 10,
        content_type: "application/pdf".into(),
        width: None,
        height: None,
    }));
    let f = Fixture::new(&[system, file]);
    assert!(f.find("joined", &["r_a"]).is_empty());
    assert_eq!(f.find("budget", &["r_a"]), hits(&[("r_a", 2)]));
    assert_eq!(f.find("quarterly report", &["r_a"]), hits(&[("r_a", 2)]));
    assert_eq!(f.index.num_docs(), 1);
}

#[test]
fn changes_become_searchable_within_the_commit_interval_without_a_flush() {
    let f = Fixture::new(&[]);
    f.indexer.send(IndexOp::Upsert(message("r_a", 1, 1, "u_ann", "eventually"))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.find("eventually", &["r_a"]).is_empty() {
        assert!(Instant::now() < deadline, "never committed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn store_with(dir: &std::path::Path, messages: &[Message]) -> Arc<Store> {
    let store = Store::open(dir, Durability::Buffered).unwrap();
    let writes: Vec<Write> = messages.iter().cloned().map(Write::AppendMessage).collect();
    store.apply(&writes).unwrap();
    Arc::new(store)
}

#[test]
fn rebuild_from_the_store_gives_the_same_results_and_survives_reopen() {
    let mut messages = Vec::new();
    for seq in 1..=1_500 {
        let text = if seq % 3 == 0 { format!("fizz {seq}") } else { format!("buzz 東京 {seq}") };
        messages.push(message(if seq % 2 == 0 { "r_even" } else { "r_odd" }, seq, seq, "u_ann", &text));
    }
    let mut system = message("r_odd", 1_501, 1_501, "u_ann", "fizz joined");
    system.kind = MessageKind::System;
    messages.push(system);
    let live = Fixture::new(&messages);

    let store_dir = tempfile::tempdir().unwrap();
    let store = store_with(store_dir.path(), &messages);
    let index_dir = tempfile::tempdir().unwrap();
    let (index, state) = SearchIndex::open(index_dir.path()).unwrap();
    assert!(state.needs_rebuild());
    let indexer = index.start_indexer(IndexerConfig::default()).unwrap();
    assert_eq!(indexer.rebuild(store.clone()).unwrap(), 1_500);
    let rebuilt = Fixture { index, indexer, _dir: index_dir };

    let rooms = ["r_even", "r_odd"];
    for text in ["fizz", "東京", "buzz 149*"] {
        let mut query = SearchQuery::new(text, rooms.iter().map(|r| room(r)).collect());
        query.order = Order::Newest;
        query.limit = 50;
        assert_eq!(all_pages(&rebuilt, query.clone()), all_pages(&live, query), "{text}");
    }
    assert_eq!(rebuilt.index.num_docs(), 1_500);

    // Reopen: ready, same contents.
    let Fixture { index, indexer, _dir } = rebuilt;
    indexer.shutdown();
    drop(index);
    let (index, state) = SearchIndex::open(_dir.path()).unwrap();
    assert_eq!(state, IndexState::Ready);
    assert_eq!(index.num_docs(), 1_500);
    drop(index);

    // Another format version: wiped, needs a rebuild, and the rebuild restores it.
    std::fs::write(_dir.path().join(VERSION_FILE), "0\n").unwrap();
    let (index, state) = SearchIndex::open(_dir.path()).unwrap();
    assert_eq!(state, IndexState::Wiped { found: Some(0) });
    assert_eq!(index.num_docs(), 0);
    let indexer = index.start_indexer(IndexerConfig::default()).unwrap();
    assert_eq!(indexer.rebuild(store).unwrap(), 1_500);
    assert_eq!(index.num_docs(), 1_500);
    indexer.shutdown();
    drop(index);
    assert_eq!(SearchIndex::open(_dir.path()).unwrap().1, IndexState::Ready);

    // A crash (the running marker left behind): wiped, needs a rebuild.
    std::fs::write(_dir.path().join(RUNNING_FILE), "").unwrap();
    let (index, state) = SearchIndex::open(_dir.path()).unwrap();
    assert_eq!(state, IndexState::Unclean);
    assert!(state.needs_rebuild());
    assert_eq!(index.num_docs(), 0);
}

/// The server stores a message, then sends it to the indexer; a rebuild running meanwhile
/// may have read it from the store already. Its `Insert` must not index it twice.
#[test]
fn an_insert_racing_a_rebuild_does_not_index_a_message_twice() {
    let messages: Vec<Message> =
        (1..=40).map(|seq| message("r_a", seq, seq, "u_ann", &format!("raced {seq}"))).collect();
    let store_dir = tempfile::tempdir().unwrap();
    let store = store_with(store_dir.path(), &messages);
    let index_dir = tempfile::tempdir().unwrap();
    let (index, _) = SearchIndex::open(index_dir.path()).unwrap();
    let indexer = index.start_indexer(IndexerConfig::default()).unwrap();
    assert_eq!(indexer.rebuild(store).unwrap(), 40);
    // The last ten reach the indexer after the rebuild read them; then a new one.
    indexer.send(IndexOp::Insert(messages[30..35].to_vec())).unwrap();
    indexer.send(IndexOp::Insert(messages[35..].to_vec())).unwrap();
    indexer.send(IndexOp::Insert(vec![message("r_a", 41, 41, "u_ann", "raced 41")])).unwrap();
    indexer.flush().unwrap();
    assert_eq!(index.num_docs(), 41);
    let f = Fixture { index, indexer, _dir: index_dir };
    assert_eq!(f.find("raced", &["r_a"]).len(), 20, "one page of distinct hits");
    let mut query = SearchQuery::new("raced", vec![room("r_a")]);
    query.limit = 50;
    assert_eq!(sorted(f.run(&query)), (1..=41).map(|seq| ("r_a".to_owned(), seq)).collect::<Vec<_>>());
}

#[test]
fn an_unfinished_rebuild_is_wiped_and_a_foreign_directory_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (index, _) = SearchIndex::open(dir.path()).unwrap();
        let indexer = index.start_indexer(IndexerConfig::default()).unwrap();
        indexer.send(IndexOp::Upsert(message("r_a", 1, 1, "u_ann", "partial"))).unwrap();
        indexer.shutdown(); // Committed, but never marked complete by a rebuild.
    }
    let (index, state) = SearchIndex::open(dir.path()).unwrap();
    assert_eq!(state, IndexState::Wiped { found: None });
    assert_eq!(index.num_docs(), 0);

    let foreign = tempfile::tempdir().unwrap();
    std::fs::write(foreign.path().join("precious.txt"), "data").unwrap();
    assert!(matches!(SearchIndex::open(foreign.path()), Err(SearchError::ForeignDirectory(_))));
    assert!(foreign.path().join("precious.txt").exists());
}

#[test]
fn snippets_are_escaped_and_short() {
    let long = format!("{} <needle> & {}", "hay ".repeat(80), "straw ".repeat(80));
    let f = Fixture::new(&[message("r_a", 1, 1, "u_ann", &long)]);
    let page = f.index.search(&SearchQuery::new("needle", vec![room("r_a")])).unwrap();
    let snippet = &page.hits[0].snippet;
    assert!(snippet.contains("&lt;<b>needle</b>&gt; &amp;"), "{snippet}");
    assert!(!snippet.contains("<needle>"));
    let plain = snippet
        .replace("<b>", "")
        .replace("</b>", "")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    assert!(plain.chars().count() <= 152, "{}", plain.chars().count());
}

#[test]
fn searches_run_from_many_threads_while_the_indexer_writes() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SearchIndex>();
    assert_send_sync::<IndexerHandle>();
    let f = Fixture::new(&[]);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..50 {
                    let page = f.index.search(&SearchQuery::new("busy", vec![room("r_a")])).unwrap();
                    assert!(page.hits.iter().all(|h| h.snippet.contains("<b>busy</b>")));
                }
            });
        }
        for seq in 1..=200 {
            f.indexer.send(IndexOp::Upsert(message("r_a", seq, seq, "u_ann", "busy bee"))).unwrap();
        }
    });
    f.indexer.flush().unwrap();
    assert_eq!(f.index.num_docs(), 200);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_query_text_never_panics(text in "(\\PC|[\"*東京 -])*", newest in any::<bool>()) {
        thread_local! {
            static FIXTURE: Fixture = Fixture::new(&[
                message("r_a", 1, 1, "u_ann", "東京 hello \"world\" café *"),
            ]);
        }
        FIXTURE.with(|f| {
            let mut query = SearchQuery::new(text, vec![room("r_a")]);
            query.order = if newest { Order::Newest } else { Order::Relevance };
            match f.index.search(&query) {
                Ok(_) => {}
                Err(error) => prop_assert!(error.is_invalid_request(), "{}", error),
            }
            Ok(())
        })?;
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn newest_pages_are_exactly_the_total_order(
        stamps in proptest::collection::vec((0u64..4, 0usize..3), 1..60),
        limit in 1usize..9,
        before in proptest::option::of(1u64..5),
    ) {
        let rooms = ["r_a", "r_b", "r_c"];
        let messages: Vec<Message> = stamps
            .iter()
            .enumerate()
            .map(|(i, (ts, r))| message(rooms[*r], i as u64 + 1, *ts, "u_ann", "tick"))
            .collect();
        let f = Fixture::new(&messages);
        let mut query = SearchQuery::new("tick", rooms.iter().map(|r| room(r)).collect());
        query.order = Order::Newest;
        query.limit = limit;
        query.before_ts = before;
        let mut expected: Vec<&Message> = messages.iter().filter(|m| before.is_none_or(|b| m.ts < b)).collect();
        expected.sort_by(|a, b| {
            b.ts.cmp(&a.ts).then_with(|| (a.room.as_str(), a.seq).cmp(&(b.room.as_str(), b.seq)))
        });
        let expected: Vec<(String, u64)> = expected.iter().map(|m| (m.room.as_str().to_owned(), m.seq)).collect();
        prop_assert_eq!(all_pages(&f, query), expected);
    }
}
