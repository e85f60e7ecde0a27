//! The index on disk: opening it (with its format version), and searching it.

use std::path::{Path, PathBuf};

use palaver_protocol::{RoomId, UserId};
use tantivy::collector::{FilterCollector, TopDocs};
use tantivy::query::BooleanQuery;
use tantivy::schema::Value;
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{DocAddress, Index, IndexReader, ReloadPolicy, Searcher, TantivyDocument};

use crate::analyzer::{ANALYZER_NAME, analyzer};
use crate::error::SearchError;
use crate::query::{
    Cursor, MAX_LIMIT, MAX_RELEVANCE_DEPTH, Order, ParsedText, SearchHit, SearchPage, SearchQuery, TsWindow,
    at_ts, build,
};
use crate::schema::Fields;
use crate::snippet::snippet;

/// The index format this build reads and writes: the schema, the analyzer and what is
/// indexed. Bump it on any change to those; an index of another version is wiped at open
/// and must be rebuilt from the message log.
pub const INDEX_FORMAT_VERSION: u32 = 2;
/// The file (in the index directory) holding the format version of a complete index.
pub const VERSION_FILE: &str = "palaver-search.version";
/// The file (in the index directory) present while an indexer runs; removed after its
/// final commit. Found at open, it means changes may have been lost in a crash.
pub const RUNNING_FILE: &str = "palaver-search.running";
/// The most messages sharing one timestamp that newest-first paging orders exactly.
const MAX_TIES: usize = 10_000;

/// What [`SearchIndex::open`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "an index that needs a rebuild is empty until it gets one"]
pub enum IndexState {
    /// A complete index of this format: ready to search, kept current by the indexer.
    Ready,
    /// There was no index: an empty one was created. Rebuild it from the log.
    Fresh,
    /// There was an index of another format version (`found`), or an incomplete one (a
    /// rebuild that never finished, `found: None`): it was wiped. Rebuild it.
    Wiped {
        /// The version found, if any.
        found: Option<u32>,
    },
    /// The last indexer did not stop cleanly (a crash): changes sent just before may never
    /// have been committed, so the index was wiped. Rebuild it.
    Unclean,
}

impl IndexState {
    /// Whether the caller must rebuild the index from the message log
    /// ([`crate::IndexerHandle::rebuild`]).
    pub fn needs_rebuild(self) -> bool {
        self != IndexState::Ready
    }
}

/// A search index of chat messages in one directory. Searching is thread-safe (`&self`,
/// `Send + Sync`); writing goes through the one [`crate::IndexerHandle`] of the index.
#[derive(Clone)]
pub struct SearchIndex {
    pub(crate) index: Index,
    pub(crate) reader: IndexReader,
    pub(crate) fields: Fields,
    pub(crate) analyzer: TextAnalyzer,
    pub(crate) dir: PathBuf,
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl SearchIndex {
    /// Opens the index in `dir` (created if missing). An index of another format version,
    /// one whose rebuild never finished, or one whose indexer did not stop cleanly is
    /// wiped; the state says whether the caller must rebuild. At most one `SearchIndex`
    /// per directory per process. A non-empty directory that is not an index is refused, not wiped.
    pub fn open(dir: &Path) -> Result<(SearchIndex, IndexState), SearchError> {
        std::fs::create_dir_all(dir)?;
        let (schema, fields) = Fields::schema();
        let version = read_version(dir);
        let has_index = dir.join("meta.json").exists();
        let running = dir.join(RUNNING_FILE).exists();
        let ours = has_index || running || dir.join(VERSION_FILE).exists();
        let complete = version == Some(INDEX_FORMAT_VERSION) && has_index;
        let state = if complete && !running {
            IndexState::Ready
        } else if complete {
            IndexState::Unclean
        } else if ours {
            IndexState::Wiped { found: version }
        } else if is_empty(dir)? {
            IndexState::Fresh
        } else {
            return Err(SearchError::ForeignDirectory(dir.to_owned()));
        };
        let index = match state {
            IndexState::Ready => match Index::open_in_dir(dir) {
                Ok(index) if index.schema() == schema => Some(index),
                Ok(_) | Err(_) => None,
            },
            IndexState::Fresh | IndexState::Wiped { .. } | IndexState::Unclean => None,
        };
        let (index, state) = match index {
            Some(index) => (index, state),
            None => {
                wipe(dir)?;
                let state = match state {
                    IndexState::Ready => IndexState::Wiped { found: version },
                    other => other,
                };
                (Index::create_in_dir(dir, schema)?, state)
            }
        };
        index.tokenizers().register(ANALYZER_NAME, analyzer());
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        let search = SearchIndex { index, reader, fields, analyzer: analyzer(), dir: dir.to_owned() };
        Ok((search, state))
    }

    /// The directory of the index.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many messages are searchable now.
    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Runs a search. Sees what the indexer has committed (within about its commit
    /// interval of a write). Errors a user can cause say so with
    /// [`SearchError::is_invalid_request`].
    pub fn search(&self, query: &SearchQuery) -> Result<SearchPage, SearchError> {
        if !(1..=MAX_LIMIT).contains(&query.limit) {
            return Err(SearchError::LimitOutOfRange { limit: query.limit, max: MAX_LIMIT });
        }
        let mut analyzer = self.analyzer.clone();
        let parsed = ParsedText::parse(&query.text, &mut analyzer)?;
        let cursor = query.cursor.as_deref().map(|c| Cursor::decode(c, query.order)).transpose()?;
        let rooms: Vec<&RoomId> = match &query.room {
            Some(room) => query.rooms.iter().filter(|r| *r == room).take(1).collect(),
            None => query.rooms.iter().collect(),
        };
        let empty = SearchPage { hits: Vec::new(), next: None };
        if rooms.is_empty() {
            return Ok(empty);
        }
        let searcher = self.reader.searcher();
        let (exact, prefixes) = parsed.highlights();
        let base = build(&parsed, &self.fields, &rooms, query);
        let window = TsWindow::of(query);
        let (candidates, next) = match (query.order, cursor) {
            (Order::Relevance, cursor) => {
                let offset = match cursor {
                    Some(Cursor::Offset(offset)) => offset,
                    None => 0,
                    Some(Cursor::After { .. }) => return Err(SearchError::BadCursor),
                };
                let limit = query.limit.min(MAX_RELEVANCE_DEPTH.saturating_sub(offset));
                if limit == 0 {
                    return Ok(empty);
                }
                let top = searcher.search(
                    &base,
                    &FilterCollector::new(
                        "ts".to_owned(),
                        window.predicate(),
                        TopDocs::with_limit(limit + 1).and_offset(offset).order_by_score(),
                    ),
                )?;
                let more = top.len() > limit;
                let mut candidates = Vec::with_capacity(limit);
                for (score, address) in top.into_iter().take(limit) {
                    candidates.push(self.candidate(&searcher, address, score)?);
                }
                let next_offset = offset + limit;
                (
                    candidates,
                    (more && next_offset < MAX_RELEVANCE_DEPTH).then_some(Cursor::Offset(next_offset)),
                )
            }
            (Order::Newest, cursor) => {
                let after = match &cursor {
                    Some(Cursor::After { ts, key }) => Some((*ts, key.as_str())),
                    None => None,
                    Some(Cursor::Offset(_)) => return Err(SearchError::BadCursor),
                };
                self.newest(&searcher, &base, window, after, query.limit)?
            }
        };
        let hits = candidates
            .into_iter()
            .map(|c| SearchHit {
                snippet: snippet(&mut analyzer, &c.text, &exact, &prefixes),
                room: c.room,
                seq: c.seq,
                ts: c.ts,
                sender: c.sender,
                score: c.score,
            })
            .collect();
        Ok(SearchPage { hits, next: next.map(|c| c.encode()) })
    }

    /// The first `limit` matches after `after` in (ts descending, key ascending) order,
    /// and the cursor after them when there are more. Which of several messages sharing a
    /// timestamp comes first is decided by key, not by tantivy's arbitrary tie order.
    fn newest(
        &self,
        searcher: &Searcher,
        base: &BooleanQuery,
        window: TsWindow,
        after: Option<(u64, &str)>,
        limit: usize,
    ) -> Result<(Vec<Candidate>, Option<Cursor>), SearchError> {
        let mut page = Vec::with_capacity(limit);
        let mut window = window;
        if let Some((after_ts, after_key)) = after {
            // The rest of the previous page's last timestamp first, then strictly older.
            let mut ties = self.all_at(searcher, base, after_ts)?;
            ties.retain(|c| c.key.as_str() > after_key);
            page = ties;
            window = window.below(after_ts);
        }
        let need = limit.saturating_sub(page.len());
        let top = searcher.search(
            base,
            &FilterCollector::new(
                "ts".to_owned(),
                window.predicate(),
                TopDocs::with_limit(need + 1).order_by_fast_field::<u64>("ts", tantivy::Order::Desc),
            ),
        )?;
        let mut older = Vec::with_capacity(top.len());
        for (_, address) in &top {
            older.push(self.candidate(searcher, *address, 0.0)?);
        }
        let more = page.len() + older.len() > limit;
        let cut_ts = need.checked_sub(1).and_then(|i| older.get(i)).map(|c| c.ts);
        let tie_at_cut = older.len() > need && older.get(need).map(|c| c.ts) == cut_ts;
        let by_newest = |a: &Candidate, b: &Candidate| b.ts.cmp(&a.ts).then_with(|| a.key.cmp(&b.key));
        match cut_ts {
            Some(cut_ts) if tie_at_cut => {
                // Every match newer than the cut is in `older`; of those at the cut, take
                // the lowest keys.
                older.retain(|c| c.ts > cut_ts);
                older.sort_by(by_newest);
                page.extend(older);
                let ties = self.all_at(searcher, base, cut_ts)?;
                let room_left = limit.saturating_sub(page.len());
                page.extend(ties.into_iter().take(room_left));
            }
            _ => {
                older.truncate(need);
                older.sort_by(by_newest);
                page.extend(older);
            }
        }
        page.truncate(limit);
        let next = match page.last() {
            Some(last) if more => Some(Cursor::After { ts: last.ts, key: last.key.clone() }),
            _ => None,
        };
        Ok((page, next))
    }

    /// Every match of `base` with exactly this `ts` (up to [`MAX_TIES`]), by key.
    fn all_at(
        &self,
        searcher: &Searcher,
        base: &BooleanQuery,
        ts: u64,
    ) -> Result<Vec<Candidate>, SearchError> {
        let mut ties = Vec::new();
        for (_, address) in searcher
            .search(&at_ts(base, &self.fields, ts), &TopDocs::with_limit(MAX_TIES).order_by_score())?
        {
            ties.push(self.candidate(searcher, address, 0.0)?);
        }
        ties.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(ties)
    }

    fn candidate(
        &self,
        searcher: &Searcher,
        address: DocAddress,
        score: f32,
    ) -> Result<Candidate, SearchError> {
        let doc: TantivyDocument = searcher.doc(address)?;
        let f = &self.fields;
        let text_of = |field, what| {
            doc.get_first(field).and_then(|v| v.as_str().map(str::to_owned)).ok_or(SearchError::Corrupt(what))
        };
        let u64_of =
            |field, what| doc.get_first(field).and_then(|v| v.as_u64()).ok_or(SearchError::Corrupt(what));
        let room = RoomId::parse(&text_of(f.room, "room")?).map_err(|_| SearchError::Corrupt("room"))?;
        let sender =
            UserId::parse(&text_of(f.sender, "sender")?).map_err(|_| SearchError::Corrupt("sender"))?;
        let seq = u64_of(f.seq, "seq")?;
        Ok(Candidate {
            key: crate::schema::key(&room, seq),
            room,
            seq,
            ts: u64_of(f.ts, "ts")?,
            sender,
            text: text_of(f.text, "text")?,
            score,
        })
    }
}

/// A matching document, loaded.
struct Candidate {
    key: String,
    room: RoomId,
    seq: u64,
    ts: u64,
    sender: UserId,
    text: String,
    score: f32,
}

fn read_version(dir: &Path) -> Option<u32> {
    std::fs::read_to_string(dir.join(VERSION_FILE)).ok()?.trim().parse().ok()
}

/// Marks the index in `dir` complete at this build's format version (after a rebuild).
pub(crate) fn write_version(dir: &Path) -> Result<(), SearchError> {
    let tmp = dir.join(format!("{VERSION_FILE}.tmp"));
    std::fs::write(&tmp, format!("{INDEX_FORMAT_VERSION}\n"))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join(VERSION_FILE))?;
    Ok(())
}

/// Marks an indexer running in `dir` (see [`RUNNING_FILE`]).
pub(crate) fn mark_running(dir: &Path, running: bool) -> Result<(), SearchError> {
    let path = dir.join(RUNNING_FILE);
    if running {
        std::fs::write(&path, b"")?;
        std::fs::File::open(dir)?.sync_all()?;
        return Ok(());
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes the version file first (so a crash mid-rebuild leaves an index marked
/// incomplete).
pub(crate) fn clear_version(dir: &Path) -> Result<(), SearchError> {
    match std::fs::remove_file(dir.join(VERSION_FILE)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn is_empty(dir: &Path) -> Result<bool, SearchError> {
    Ok(std::fs::read_dir(dir)?.next().is_none())
}

fn wipe(dir: &Path) -> Result<(), SearchError> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}
