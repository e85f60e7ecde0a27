//! Full-text search of Palaver's chat messages, with tantivy: the schema, a CJK-aware
//! analyzer, queries restricted to the rooms a user may read, and an indexer thread that
//! keeps the index current and can rebuild it from the message log.
//!
//! It is a blocking library: searches run on the caller's thread (`&self`, thread-safe:
//! the server calls it from a blocking pool), writes go through one [`IndexerHandle`]
//! whose thread owns the index writer and commits in batches.
//!
//! Not here: sockets, any async runtime, and access control beyond the `rooms` list the
//! caller passes in [`SearchQuery::rooms`] (the caller decides which rooms a user may read
//! *now*; hits outside that list are never returned, filtered inside the query). No
//! encryption: the index holds message text in clear, like the message log; messages a
//! server cannot read (a future end-to-end encrypted kind) must never be indexed, which
//! [`indexable`] enforces with an exhaustive match on the kind.
//!
//! # What is indexed
//!
//! One document per message, keyed `room:seq`: text messages' text; images' and files'
//! caption plus the file name. Never system notices, never tombstones (a delete removes
//! the document). An edit replaces the document (delete by key, then add).
//!
//! # Analysis
//!
//! The `palaver` analyzer (used for documents and queries alike) splits text into words
//! at anything that is not a letter or digit (Unicode-aware; combining marks stay in
//! their word), lower-cases, and folds to ASCII where a folding exists (`Café` → `cafe`,
//! `Straße` → `strasse`). No stemming and no stop words: chat is short, multilingual and
//! searched for exact words.
//!
//! Chinese, Japanese and Korean are written without spaces between words (Korean has
//! spaces, but between phrase-like units), so a run of Han, Hiragana, Katakana or Hangul
//! characters is indexed as overlapping character bigrams (`東京タワー` → `東京 京タ タワ
//! ワー`), and a lone character as itself. A query word is analyzed the same way and its
//! bigrams must appear in a row (a phrase), so `東京` finds `東京タワーに行きました`.
//! This needs no dictionary and finds every substring of two or more characters; the
//! costs are a larger index and some false positives where the bigrams of a query occur
//! across a word boundary. A single-character query matches a lone character, or with `*`
//! (`東*`) every bigram starting with it.
//!
//! # Queries
//!
//! Words must all match (AND); `"quoted words"` must appear in a row; a word ending in
//! `*` matches as a prefix (its last term, up to [`MAX_PREFIX_EXPANSIONS`] completions).
//! Anything else — an unclosed quote, a `*` inside a word, nothing to search for, a query
//! too long or with too many words — is a [`SearchError`] for which
//! [`SearchError::is_invalid_request`] holds, never a panic. The room allow-list
//! and the sender are filters inside the tantivy query (a term set, a term); time bounds
//! are checked on the `ts` fast column of each match by the collector, so their cost
//! follows the matches, not the index. None of them changes scores.
//!
//! Pages: [`Order::Relevance`] pages by offset, up to [`MAX_RELEVANCE_DEPTH`] hits deep
//! (messages indexed between two pages may shift it by a few); [`Order::Newest`] pages by
//! keyset (timestamp, then `room:seq`), so it never repeats or skips a hit, even while new
//! messages arrive. Cursors are opaque and only valid with the query that produced them.
//!
//! # On disk
//!
//! The directory holds tantivy's files and `palaver-search.version`, written only once
//! a rebuild has completed. An index of another [`INDEX_FORMAT_VERSION`], or whose rebuild
//! never finished, is wiped at [`SearchIndex::open`], which then says the caller must
//! rebuild ([`IndexState::needs_rebuild`]). So is one whose indexer did not stop cleanly
//! (`palaver-search.running` left behind): changes sent in the last commit interval before
//! a crash may never have been committed, and there is no cheaper way to know which. The
//! index is derived data: losing it costs a rebuild, never a message.
//!
//! # Example
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use palaver_search::{IndexOp, IndexerConfig, SearchIndex, SearchQuery};
//! # let dir = tempfile::tempdir()?;
//! let (index, state) = SearchIndex::open(dir.path())?;
//! let indexer = index.start_indexer(IndexerConfig::default())?;
//! // if state.needs_rebuild() { indexer.rebuild(store.clone())?; }
//! # let _ = state;
//! # let message: palaver_protocol::Message = serde_json::from_str(
//! #     r#"{"room":"r_lobby","seq":1,"ts":1,"sender":"u_ann","cid":"c1","kind":"text","text":"Hello world"}"#)?;
//! indexer.send(IndexOp::Insert(vec![message]))?; // newly stored messages (`Upsert` on an edit or delete)
//! indexer.flush()?; // tests only: otherwise searchable within the commit interval
//! let rooms = vec![palaver_protocol::RoomId::parse("r_lobby")?];
//! let page = index.search(&SearchQuery::new("hello", rooms))?;
//! assert_eq!(page.hits[0].snippet, "<b>Hello</b> world");
//! # Ok(())
//! # }
//! ```

mod analyzer;
mod backlog;
mod error;
mod index;
mod indexer;
mod query;
mod schema;
mod share;
mod snippet;

pub use analyzer::{ANALYZER_NAME, MAX_TOKEN_BYTES, ScriptTokenStream, ScriptTokenizer, analyzer};
pub use backlog::{BacklogBound, IndexBacklog, IndexingShare, commit_every, next_share};
pub use error::SearchError;
pub use index::{INDEX_FORMAT_VERSION, IndexState, RUNNING_FILE, SearchIndex, VERSION_FILE};
pub use indexer::{IndexFeed, IndexOp, IndexerConfig, IndexerHandle, REBUILD_PAGE, changes_of};
pub use query::{
    MAX_LIMIT, MAX_PREFIX_EXPANSIONS, MAX_QUERY_BYTES, MAX_QUERY_CLAUSES, MAX_RELEVANCE_DEPTH, Order,
    SearchHit, SearchPage, SearchQuery,
};
pub use schema::indexable;
pub use share::{ThreadScheduling, indexing_threads, starting_share};
pub use snippet::SNIPPET_CHARS;
