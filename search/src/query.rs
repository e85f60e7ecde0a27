//! What a search asks for and returns, the query text's syntax, and the paging cursor.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use palaver_protocol::{RoomId, UserId};
use tantivy::Term;
use tantivy::query::{
    BooleanQuery, ConstScoreQuery, Occur, PhrasePrefixQuery, PhraseQuery, Query, TermQuery, TermSetQuery,
};
use tantivy::schema::IndexRecordOption;
use tantivy::tokenizer::TextAnalyzer;

use crate::analyzer::tokens;
use crate::error::SearchError;
use crate::schema::Fields;

/// The most hits one page may ask for.
pub const MAX_LIMIT: usize = 50;
/// The longest query text accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 512;
/// The most words, phrases and prefixes one query may hold.
pub const MAX_QUERY_CLAUSES: usize = 16;
/// How many terms a prefix (`hel*`) may expand to; rarer completions are not searched.
pub const MAX_PREFIX_EXPANSIONS: u32 = 100;
/// How deep relevance-ordered paging goes (newest-first paging has no such limit).
pub const MAX_RELEVANCE_DEPTH: usize = 1_000;

/// How hits are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Best match first (BM25).
    #[default]
    Relevance,
    /// Most recent first (by server timestamp, then room and seq).
    Newest,
}

/// A search, as the server passes it on behalf of one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// The query text: words (all must match), `"exact phrases"`, and a trailing `*` on a
    /// word for a prefix (`hel*`).
    pub text: String,
    /// The rooms the searcher may read right now. Hits outside are never returned; an
    /// empty list returns nothing.
    pub rooms: Vec<RoomId>,
    /// Only this room (it must also be in `rooms` to return anything).
    pub room: Option<RoomId>,
    /// Only messages from this sender.
    pub from: Option<UserId>,
    /// Only messages with `ts` strictly below this (ms since the Unix epoch).
    pub before_ts: Option<u64>,
    /// Only messages with `ts` strictly above this (ms since the Unix epoch).
    pub after_ts: Option<u64>,
    /// How hits are ordered.
    pub order: Order,
    /// Hits per page, `1..=`[`MAX_LIMIT`].
    pub limit: usize,
    /// The `next` of the previous page, to get the page after it (same query otherwise).
    pub cursor: Option<String>,
}

impl SearchQuery {
    /// A query for `text` in `rooms` with every other option at its default (relevance
    /// order, 20 hits, no filters, first page).
    pub fn new(text: impl Into<String>, rooms: Vec<RoomId>) -> SearchQuery {
        SearchQuery {
            text: text.into(),
            rooms,
            room: None,
            from: None,
            before_ts: None,
            after_ts: None,
            order: Order::Relevance,
            limit: 20,
            cursor: None,
        }
    }
}

/// One page of hits.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPage {
    /// The hits, in the query's order.
    pub hits: Vec<SearchHit>,
    /// The cursor of the next page, when there may be one.
    pub next: Option<String>,
}

/// One matching message.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    /// Its room.
    pub room: RoomId,
    /// Its seq in the room.
    pub seq: u64,
    /// Its server timestamp.
    pub ts: u64,
    /// Who sent it.
    pub sender: UserId,
    /// Up to about [`crate::SNIPPET_CHARS`] characters of its text around the first
    /// match, HTML-escaped, matches wrapped in `<b>`…`</b>`.
    pub snippet: String,
    /// The relevance score (0 in [`Order::Newest`]).
    pub score: f32,
}

/// One part of the query text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Clause {
    /// A word or a quoted phrase: its analyzed terms, in order.
    Terms(Vec<String>),
    /// A word ending in `*`: its analyzed terms, the last one a prefix.
    Prefix(Vec<String>),
}

/// The query text, parsed and analyzed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedText {
    clauses: Vec<Clause>,
}

impl ParsedText {
    /// Parses query text: whitespace-separated words, `"quoted phrases"`, a `*` ending a
    /// word. Every word must match (AND).
    pub(crate) fn parse(text: &str, analyzer: &mut TextAnalyzer) -> Result<ParsedText, SearchError> {
        if text.len() > MAX_QUERY_BYTES {
            return Err(SearchError::QueryTooLong { max: MAX_QUERY_BYTES });
        }
        let mut clauses = Vec::new();
        let mut rest = text;
        loop {
            rest = rest.trim_start();
            let Some(first) = rest.chars().next() else { break };
            if first == '"' {
                let body = &rest[1..];
                let end = body.find('"').ok_or(SearchError::BadQuery { reason: "a quote is not closed" })?;
                let (phrase, after) = (&body[..end], &body[end + 1..]);
                if after.starts_with('*') {
                    return Err(SearchError::BadQuery { reason: "`*` can only end a word" });
                }
                let terms = analyzed(analyzer, phrase);
                if !terms.is_empty() {
                    clauses.push(Clause::Terms(terms));
                }
                rest = after;
                continue;
            }
            let end = rest.find(|c: char| c.is_whitespace() || c == '"').unwrap_or(rest.len());
            let (word, after) = rest.split_at(end);
            rest = after;
            let clause = match word.find('*') {
                None => Clause::Terms(analyzed(analyzer, word)),
                Some(star) if star + 1 == word.len() => {
                    let terms = analyzed(analyzer, &word[..star]);
                    if terms.is_empty() {
                        return Err(SearchError::BadQuery { reason: "`*` must follow a word" });
                    }
                    Clause::Prefix(terms)
                }
                Some(_) => return Err(SearchError::BadQuery { reason: "`*` can only end a word" }),
            };
            if !matches!(&clause, Clause::Terms(terms) | Clause::Prefix(terms) if terms.is_empty()) {
                clauses.push(clause);
            }
        }
        if clauses.is_empty() {
            return Err(SearchError::EmptyQuery);
        }
        if clauses.len() > MAX_QUERY_CLAUSES {
            return Err(SearchError::TooManyClauses { max: MAX_QUERY_CLAUSES });
        }
        Ok(ParsedText { clauses })
    }

    /// The terms to highlight exactly, and the prefixes to highlight.
    pub(crate) fn highlights(&self) -> (Vec<String>, Vec<String>) {
        let (mut exact, mut prefixes) = (Vec::new(), Vec::new());
        for clause in &self.clauses {
            match clause {
                Clause::Terms(terms) => exact.extend(terms.iter().cloned()),
                Clause::Prefix(terms) => {
                    if let Some((last, head)) = terms.split_last() {
                        exact.extend(head.iter().cloned());
                        prefixes.push(last.clone());
                    }
                }
            }
        }
        (exact, prefixes)
    }

    /// The text part of the tantivy query: every clause must match.
    fn clauses(&self, fields: &Fields) -> Vec<(Occur, Box<dyn Query>)> {
        let term = |t: &String| Term::from_field_text(fields.text, t);
        self.clauses
            .iter()
            .map(|clause| {
                let query: Box<dyn Query> = match clause {
                    Clause::Terms(terms) => match terms.as_slice() {
                        [one] => Box::new(TermQuery::new(term(one), IndexRecordOption::WithFreqs)),
                        many => Box::new(PhraseQuery::new(many.iter().map(term).collect())),
                    },
                    Clause::Prefix(terms) => {
                        let mut query = PhrasePrefixQuery::new(terms.iter().map(term).collect());
                        query.set_max_expansions(MAX_PREFIX_EXPANSIONS);
                        Box::new(query)
                    }
                };
                (Occur::Must, query)
            })
            .collect()
    }
}

fn analyzed(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    tokens(analyzer, text).into_iter().map(|t| t.text).collect()
}

/// Where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cursor {
    /// Relevance order: how many hits the previous pages held.
    Offset(usize),
    /// Newest-first order: the `(ts, key)` of the last hit returned.
    After { ts: u64, key: String },
}

impl Cursor {
    pub(crate) fn encode(&self) -> String {
        let plain = match self {
            Cursor::Offset(offset) => format!("r1.{offset}"),
            Cursor::After { ts, key } => format!("n1.{ts}.{key}"),
        };
        URL_SAFE_NO_PAD.encode(plain)
    }

    pub(crate) fn decode(cursor: &str, order: Order) -> Result<Cursor, SearchError> {
        let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| SearchError::BadCursor)?;
        let plain = String::from_utf8(bytes).map_err(|_| SearchError::BadCursor)?;
        let parsed = match (order, plain.split_once('.')) {
            (Order::Relevance, Some(("r1", offset))) => {
                offset.parse().ok().filter(|o| *o <= MAX_RELEVANCE_DEPTH).map(Cursor::Offset)
            }
            (Order::Newest, Some(("n1", rest))) => rest
                .split_once('.')
                .and_then(|(ts, key)| Some(Cursor::After { ts: ts.parse().ok()?, key: key.to_owned() })),
            _ => None,
        };
        parsed.ok_or(SearchError::BadCursor)
    }
}

/// The tantivy query: the text clauses, then the room and sender filters (which do not
/// score). Time bounds are not part of it: see [`TsWindow`].
pub(crate) fn build(
    parsed: &ParsedText,
    fields: &Fields,
    rooms: &[&RoomId],
    query: &SearchQuery,
) -> BooleanQuery {
    let filter = |q: Box<dyn Query>| -> (Occur, Box<dyn Query>) {
        (Occur::Must, Box::new(ConstScoreQuery::new(q, 0.0)))
    };
    let mut clauses = parsed.clauses(fields);
    let room_terms = rooms.iter().map(|r| Term::from_field_text(fields.room, r.as_str()));
    clauses.push(filter(Box::new(TermSetQuery::new(room_terms))));
    if let Some(from) = &query.from {
        let term = Term::from_field_text(fields.sender, from.as_str());
        clauses.push(filter(Box::new(TermQuery::new(term, IndexRecordOption::Basic))));
    }
    BooleanQuery::new(clauses)
}

/// `query` restricted to messages with exactly this `ts` (one posting list: cheap).
pub(crate) fn at_ts(query: &BooleanQuery, fields: &Fields, ts: u64) -> BooleanQuery {
    let term = Term::from_field_u64(fields.ts, ts);
    BooleanQuery::new(vec![
        (Occur::Must, Box::new(query.clone()) as Box<dyn Query>),
        (
            Occur::Must,
            Box::new(ConstScoreQuery::new(Box::new(TermQuery::new(term, IndexRecordOption::Basic)), 0.0)),
        ),
    ])
}

/// Exclusive bounds on `ts`, checked on the `ts` fast column of each match by the
/// collector (a `FilterCollector`): the cost follows the matches, not the index size (a
/// range over the inverted index would visit every timestamp in range, and tantivy
/// 0.27's fast-field range query can overflow seeking backwards inside a boolean query).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TsWindow {
    pub above: Option<u64>,
    pub below: Option<u64>,
}

impl TsWindow {
    pub(crate) fn of(query: &SearchQuery) -> TsWindow {
        TsWindow { above: query.after_ts, below: query.before_ts }
    }

    /// Also below `ts`.
    pub(crate) fn below(self, ts: u64) -> TsWindow {
        TsWindow { below: Some(self.below.map_or(ts, |b| b.min(ts))), ..self }
    }

    pub(crate) fn predicate(self) -> impl Fn(u64) -> bool + Clone + Send + Sync + 'static {
        move |ts: u64| self.above.is_none_or(|a| ts > a) && self.below.is_none_or(|b| ts < b)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use crate::analyzer::analyzer;

    fn parse(text: &str) -> Result<ParsedText, SearchError> {
        ParsedText::parse(text, &mut analyzer())
    }

    #[test]
    fn words_phrases_and_prefixes() {
        let parsed = parse(r#"Hello "big  World" caf*"#).unwrap();
        assert_eq!(
            parsed.clauses,
            [
                Clause::Terms(vec!["hello".into()]),
                Clause::Terms(vec!["big".into(), "world".into()]),
                Clause::Prefix(vec!["caf".into()]),
            ]
        );
        assert_eq!(parse("東京タ*").unwrap().clauses, [Clause::Prefix(vec!["東京".into(), "京タ".into()])]);
    }

    #[test]
    fn bad_syntax_is_an_error() {
        assert!(matches!(parse(r#"say "hi"#), Err(SearchError::BadQuery { .. })));
        assert!(matches!(parse("h*llo"), Err(SearchError::BadQuery { .. })));
        assert!(matches!(parse("*"), Err(SearchError::BadQuery { .. })));
        assert!(matches!(parse(r#""hi"*"#), Err(SearchError::BadQuery { .. })));
        assert!(matches!(parse("  ?! "), Err(SearchError::EmptyQuery)));
        assert!(matches!(parse(&"a ".repeat(17)), Err(SearchError::TooManyClauses { .. })));
        assert!(matches!(parse(&"a".repeat(600)), Err(SearchError::QueryTooLong { .. })));
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        for (cursor, order) in [
            (Cursor::Offset(20), Order::Relevance),
            (Cursor::After { ts: 5, key: "r_a:00000000000000000007".into() }, Order::Newest),
        ] {
            assert_eq!(Cursor::decode(&cursor.encode(), order).unwrap(), cursor);
        }
        assert!(Cursor::decode(&Cursor::Offset(20).encode(), Order::Newest).is_err());
        assert!(Cursor::decode("%%%", Order::Relevance).is_err());
        assert!(Cursor::decode(&Cursor::Offset(1_000_000).encode(), Order::Relevance).is_err());
    }
}
