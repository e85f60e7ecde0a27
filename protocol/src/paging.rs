//! Paging, the same for every list: a request takes `limit` (a page size the server
//! bounds) and `cursor` (the `next` of the page before); a reply carries `next`, absent
//! on the last page. A cursor is opaque to clients — it names the list it came from and
//! where that list stopped — and no reply is larger than [`MAX_REPLY_BYTES`]: a page
//! whose items would pass it ends early, with `next`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The largest reply a list op sends, in encoded bytes, unless a single item is larger on
/// its own (one message of a `history` page at its own limits): then the page is that
/// item alone.
pub const MAX_REPLY_BYTES: usize = 128 * 1024;

/// The longest cursor accepted.
pub const MAX_CURSOR_BYTES: usize = 512;

/// A list's page sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize {
    /// Items per page when the request gives no `limit`.
    pub default: u32,
    /// The largest `limit` accepted.
    pub max: u32,
}

impl PageSize {
    /// The page size of a request's `limit`, or why it is refused.
    pub fn of(self, limit: Option<u32>) -> Result<usize, PagingError> {
        match limit {
            None => Ok(self.default as usize),
            Some(n) if (1..=self.max).contains(&n) => Ok(n as usize),
            Some(_) => Err(PagingError::Limit { max: self.max }),
        }
    }
}

/// Why a page request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PagingError {
    /// `limit` is out of range.
    #[error("limit must be 1 to {max}")]
    Limit {
        /// The list's largest page.
        max: u32,
    },
    /// The cursor is not one this server gave out for this list.
    #[error("cursor is not a `next` of this list")]
    Cursor,
}

/// The cursor of `list` continuing after `key`.
pub fn encode_cursor(list: &str, key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{list}\0{key}"))
}

/// Where a cursor of `list` continues (the key it was made with).
pub fn decode_cursor(list: &str, cursor: &str) -> Result<String, PagingError> {
    if cursor.len() > MAX_CURSOR_BYTES {
        return Err(PagingError::Cursor);
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| PagingError::Cursor)?;
    let text = String::from_utf8(bytes).map_err(|_| PagingError::Cursor)?;
    match text.split_once('\0') {
        Some((from, key)) if from == list => Ok(key.to_owned()),
        _ => Err(PagingError::Cursor),
    }
}

/// Builds one page of a list walked in key order: takes items while the page has room
/// (its `limit`, and [`MAX_REPLY_BYTES`] of encoded items, but always at least one), and
/// gives the cursor to continue from where it stopped.
#[derive(Debug)]
pub struct PageBuilder<T> {
    list: &'static str,
    limit: usize,
    items: Vec<T>,
    bytes: usize,
    /// The key of the last item taken or skipped.
    last_key: Option<String>,
    /// Whether the page stopped with more offered than it took.
    full: bool,
}

impl<T: serde::Serialize> PageBuilder<T> {
    /// A page of `list` holding at most `limit` items.
    pub fn new(list: &'static str, limit: usize) -> Self {
        PageBuilder { list, limit, items: Vec::new(), bytes: 0, last_key: None, full: false }
    }

    /// Offers the item at `key` (`None`: the key holds nothing to show, skip it). Returns
    /// false once the page is full: stop offering.
    pub fn offer(&mut self, key: &str, item: Option<T>) -> bool {
        if self.full {
            return false;
        }
        let Some(item) = item else {
            self.last_key = Some(key.to_owned());
            return true;
        };
        let size = serde_json::to_vec(&item).map_or(0, |bytes| bytes.len());
        if self.items.len() == self.limit || (!self.items.is_empty() && self.bytes + size > MAX_REPLY_BYTES) {
            self.full = true;
            return false;
        }
        self.bytes += size;
        self.items.push(item);
        self.last_key = Some(key.to_owned());
        true
    }

    /// The page's items and `next`: a cursor when it stopped full, or when the walk may
    /// have more than it offered (`more`: it stopped at its own bound).
    pub fn finish(self, more: bool) -> (Vec<T>, Option<String>) {
        let next =
            if self.full || more { self.last_key.map(|key| encode_cursor(self.list, &key)) } else { None };
        (self.items, next)
    }
}

/// Page sizes of the lists.
pub mod sizes {
    use super::PageSize;

    /// `edit.list`: a message's earlier texts.
    pub const EDITS: PageSize = PageSize { default: 20, max: 100 };
    /// `pin.list`: pinned messages.
    pub const PINS: PageSize = PageSize { default: 50, max: 100 };
    /// `thread.list`.
    pub const THREADS: PageSize = PageSize { default: 20, max: 100 };
    /// `receipt.list`: members who read (or had delivered) a message.
    pub const RECEIPTS: PageSize = PageSize { default: 50, max: 100 };
    /// `history`: messages.
    pub const HISTORY: PageSize = PageSize { default: 50, max: 100 };
    /// `sync`: rooms.
    pub const SYNC: PageSize = PageSize { default: 100, max: 500 };
    /// `room.list`: public rooms.
    pub const ROOM_LIST: PageSize = PageSize { default: 50, max: 100 };
    /// `room.members`: members.
    pub const MEMBERS: PageSize = PageSize { default: 50, max: 100 };
    /// `invite.list`: invitations.
    pub const INVITES: PageSize = PageSize { default: 50, max: 200 };
    /// `friend.list`: friends and requests.
    pub const FRIENDS: PageSize = PageSize { default: 100, max: 500 };
    /// `block.list`: blocked users.
    pub const BLOCKS: PageSize = PageSize { default: 100, max: 1_000 };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_continues_only_its_own_list() {
        let cursor = encode_cursor("room.members", "u_alice");
        assert_eq!(decode_cursor("room.members", &cursor), Ok("u_alice".to_owned()));
        assert_eq!(decode_cursor("friend.list", &cursor), Err(PagingError::Cursor));
        assert_eq!(decode_cursor("room.members", "not base64!"), Err(PagingError::Cursor));
        assert_eq!(decode_cursor("room.members", &"A".repeat(600)), Err(PagingError::Cursor));
    }

    #[test]
    fn a_page_stops_at_its_limit_or_its_bytes_and_says_where() {
        let mut page = PageBuilder::new("block.list", 2);
        assert!(page.offer("a", Some("A")));
        assert!(page.offer("b", None), "a skipped key moves the page on");
        assert!(page.offer("c", Some("C")));
        assert!(!page.offer("d", Some("D")), "the limit is reached");
        let (items, next) = page.finish(false);
        assert_eq!(items, vec!["A", "C"]);
        assert_eq!(decode_cursor("block.list", &next.unwrap()), Ok("c".to_owned()));

        let big = "x".repeat(MAX_REPLY_BYTES / 2);
        let mut page = PageBuilder::new("sync", 100);
        assert!(page.offer("1", Some(big.clone())));
        assert!(!page.offer("2", Some(big.clone())), "two would pass the byte bound");
        let (items, next) = page.finish(false);
        assert_eq!(items.len(), 1);
        assert!(next.is_some());

        // One item larger than the bound still makes a page of its own.
        let mut page = PageBuilder::new("sync", 100);
        assert!(page.offer("1", Some("y".repeat(MAX_REPLY_BYTES * 2))));
        assert_eq!(page.finish(false).0.len(), 1);

        // A walk that ended is the last page; one that stopped at its own bound is not.
        let mut page = PageBuilder::new("sync", 100);
        page.offer("1", Some(1));
        assert_eq!(page.finish(false).1, None);
        let mut page = PageBuilder::new("sync", 100);
        page.offer("1", Some(1));
        assert!(page.finish(true).1.is_some());
    }

    #[test]
    fn limits_default_and_are_bounded() {
        assert_eq!(sizes::SYNC.of(None), Ok(100));
        assert_eq!(sizes::SYNC.of(Some(500)), Ok(500));
        assert_eq!(sizes::SYNC.of(Some(501)), Err(PagingError::Limit { max: 500 }));
        assert_eq!(sizes::SYNC.of(Some(0)), Err(PagingError::Limit { max: 500 }));
    }
}
