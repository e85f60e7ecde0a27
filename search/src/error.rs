//! The search error type.

/// What went wrong in search.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SearchError {
    /// The query text cannot be parsed (an unclosed quote, a `*` inside a word, …).
    #[error("bad query: {reason}")]
    BadQuery {
        /// What is wrong with it, in words a user can act on.
        reason: &'static str,
    },
    /// The query has nothing to search for (empty, or only punctuation).
    #[error("the query has no words to search for")]
    EmptyQuery,
    /// The query text is longer than [`crate::MAX_QUERY_BYTES`].
    #[error("the query is longer than {max} bytes")]
    QueryTooLong {
        /// The limit.
        max: usize,
    },
    /// The query has more words, phrases and prefixes than [`crate::MAX_QUERY_CLAUSES`].
    #[error("the query has more than {max} words or phrases")]
    TooManyClauses {
        /// The limit.
        max: usize,
    },
    /// `limit` is not within `1..=`[`crate::MAX_LIMIT`].
    #[error("limit {limit} is not within 1..={max}")]
    LimitOutOfRange {
        /// The limit asked for.
        limit: usize,
        /// The largest allowed.
        max: usize,
    },
    /// The paging cursor was not produced by this search (or for another order).
    #[error("bad paging cursor")]
    BadCursor,
    /// The index directory holds files that are not a Palaver search index: refused
    /// rather than wiped.
    #[error("{0} is not empty and is not a search index; refusing to wipe it")]
    ForeignDirectory(std::path::PathBuf),
    /// A stored document lacks a field or holds a value that does not parse.
    #[error("corrupt search document: {0}")]
    Corrupt(&'static str),
    /// The indexer thread has stopped (shut down, or it panicked).
    #[error("the search indexer has stopped")]
    IndexerStopped,
    /// The search engine failed (I/O, a corrupt segment, the writer lock is held).
    #[error("search engine: {0}")]
    Engine(#[from] tantivy::TantivyError),
    /// Reading or writing the index directory failed.
    #[error("search index I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Reading the message log (during a rebuild) failed.
    #[error("storage, while rebuilding: {0}")]
    Storage(#[from] palaver_storage::StorageError),
}

impl SearchError {
    /// Whether the caller's request is at fault (map to the protocol's `invalid`); every
    /// other error is the server's (`internal`).
    pub fn is_invalid_request(&self) -> bool {
        matches!(
            self,
            SearchError::BadQuery { .. }
                | SearchError::EmptyQuery
                | SearchError::QueryTooLong { .. }
                | SearchError::TooManyClauses { .. }
                | SearchError::LimitOutOfRange { .. }
                | SearchError::BadCursor
        )
    }
}
