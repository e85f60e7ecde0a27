//! [`SearchQuery`]: a `search` (PROTOCOL.md §3.5.25) with its filters and page cursor.

use palaver_protocol::{Op, RoomId, SearchOrder, UserId};

/// A full-text search of the messages in the caller's rooms: the words, optional filters
/// (room, sender, time), the order, the page size, and the cursor of the page to fetch.
///
/// ```
/// use palaver_sdk::SearchQuery;
/// # let room = palaver_sdk::protocol::RoomId::parse("r_1").unwrap();
/// let query = SearchQuery::new("deploy friday").in_room(&room).newest_first().limit(10);
/// # let _ = query;
/// ```
///
/// A `&str` converts into a query with no filter, in the server's default order
/// (relevance).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SearchQuery {
    /// Words (all must match), `"exact phrases"`, `prefix*`.
    pub text: String,
    /// Only this room.
    pub room: Option<RoomId>,
    /// Only this sender.
    pub sender: Option<UserId>,
    /// Only messages stored before this time (ms since the Unix epoch).
    pub before_ms: Option<u64>,
    /// Only messages stored after this time (ms since the Unix epoch).
    pub after_ms: Option<u64>,
    /// Best match first or newest first; `None`: the server's default (relevance).
    pub order: Option<SearchOrder>,
    /// Hits per page (1–50); `None`: the server's default (20).
    pub limit: Option<u32>,
    /// The previous page's `next`, to fetch the page after it.
    pub cursor: Option<String>,
}

impl SearchQuery {
    /// A search for `text` with no filter.
    pub fn new(text: impl Into<String>) -> Self {
        SearchQuery {
            text: text.into(),
            room: None,
            sender: None,
            before_ms: None,
            after_ms: None,
            order: None,
            limit: None,
            cursor: None,
        }
    }

    /// Only in `room`.
    pub fn in_room(self, room: &RoomId) -> Self {
        SearchQuery { room: Some(room.clone()), ..self }
    }

    /// Only messages sent by `user`.
    pub fn from_sender(self, user: &UserId) -> Self {
        SearchQuery { sender: Some(user.clone()), ..self }
    }

    /// Only messages stored before `ms` (ms since the Unix epoch).
    pub fn before(self, ms: u64) -> Self {
        SearchQuery { before_ms: Some(ms), ..self }
    }

    /// Only messages stored after `ms` (ms since the Unix epoch).
    pub fn after(self, ms: u64) -> Self {
        SearchQuery { after_ms: Some(ms), ..self }
    }

    /// Newest first.
    pub fn newest_first(self) -> Self {
        SearchQuery { order: Some(SearchOrder::Newest), ..self }
    }

    /// Best match first (the server's default).
    pub fn by_relevance(self) -> Self {
        SearchQuery { order: Some(SearchOrder::Relevance), ..self }
    }

    /// `limit` hits per page (1–50).
    pub fn limit(self, limit: u32) -> Self {
        SearchQuery { limit: Some(limit), ..self }
    }

    /// The page after the one that answered with this `next`.
    pub fn cursor(self, cursor: impl Into<String>) -> Self {
        SearchQuery { cursor: Some(cursor.into()), ..self }
    }

    /// The `search` op.
    pub fn to_op(&self) -> Op {
        Op::Search {
            query: self.text.clone(),
            room: self.room.clone(),
            from: self.sender.clone(),
            before: self.before_ms,
            after: self.after_ms,
            order: self.order,
            limit: self.limit,
            cursor: self.cursor.clone(),
        }
    }
}

impl From<&str> for SearchQuery {
    fn from(text: &str) -> Self {
        SearchQuery::new(text)
    }
}

impl From<String> for SearchQuery {
    fn from(text: String) -> Self {
        SearchQuery::new(text)
    }
}
