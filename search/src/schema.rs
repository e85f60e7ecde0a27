//! The index schema, what of a message is indexed, and the document of one message.

use palaver_protocol::{Message, MessageKind, RoomId};
use tantivy::TantivyDocument;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    FAST, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::{Term, schema::Field};

use crate::analyzer::ANALYZER_NAME;

/// The fields of the schema, resolved once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields {
    pub room: Field,
    pub seq: Field,
    pub ts: Field,
    pub sender: Field,
    pub text: Field,
}

impl Fields {
    pub(crate) fn schema() -> (Schema, Fields) {
        let mut builder = Schema::builder();
        let text_options = TextOptions::default().set_stored().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(ANALYZER_NAME)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        );
        let fields = Fields {
            room: builder.add_text_field("room", STRING | STORED),
            seq: builder.add_u64_field("seq", INDEXED | STORED | FAST),
            ts: builder.add_u64_field("ts", INDEXED | STORED | FAST),
            sender: builder.add_text_field("sender", STRING | STORED),
            text: builder.add_text_field("text", text_options),
        };
        (builder.build(), fields)
    }

    /// The document of a message, or `None` when the message must not be searchable.
    pub(crate) fn document(&self, message: &Message) -> Option<TantivyDocument> {
        let text = indexable(message)?;
        let mut doc = TantivyDocument::default();
        doc.add_text(self.room, message.room.as_str());
        doc.add_u64(self.seq, message.seq);
        doc.add_u64(self.ts, message.ts);
        doc.add_text(self.sender, message.sender.as_str());
        doc.add_text(self.text, text);
        Some(doc)
    }

    /// The documents of one message (at most one), to delete before it is replaced:
    /// by room and seq terms rather than a unique key term, which would cost every
    /// insert a dictionary term of its own while only edits and deletes need it. (Both
    /// are posting lists: tantivy 0.27's fast-field range can overflow seeking backwards
    /// inside a boolean query, see `query::TsWindow`.)
    pub(crate) fn message_query(&self, room: &RoomId, seq: u64) -> Box<dyn Query> {
        let term =
            |term: Term| -> Box<dyn Query> { Box::new(TermQuery::new(term, IndexRecordOption::Basic)) };
        Box::new(BooleanQuery::new(vec![
            (Occur::Must, term(Term::from_field_text(self.room, room.as_str()))),
            (Occur::Must, term(Term::from_field_u64(self.seq, seq))),
        ]))
    }
}

/// The unique key of a message: `room:seq`, the seq zero-padded to 20 digits so keys of
/// one room sort by seq (the tie-break of the newest-first order; computed from the
/// stored fields, not indexed). (Room ids never contain `:`.)
pub(crate) fn key(room: &RoomId, seq: u64) -> String {
    format!("{}:{seq:020}", room.as_str())
}

/// The searchable text of a message, or `None` when it must never be indexed: system
/// notices, tombstones (deleted messages), and any kind this build does not know to be
/// plain text a member wrote (`encrypted` messages hold ciphertext only their members
/// can read: excluded deliberately, as the exhaustive match forces for any new kind).
///
/// Text messages index their text; images and files their caption and the file's name.
pub fn indexable(message: &Message) -> Option<String> {
    if message.deleted {
        return None;
    }
    let text = match message.kind {
        MessageKind::Text => message.text.clone(),
        MessageKind::Image | MessageKind::File => match &message.file {
            Some(file) if message.text.is_empty() => file.name.clone(),
            Some(file) => format!("{}\n{}", message.text, file.name),
            None => message.text.clone(),
        },
        // Ciphertext is never indexed (nor could it be searched).
        MessageKind::System | MessageKind::Encrypted => return None,
    };
    (!text.trim().is_empty()).then_some(text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use palaver_protocol::FileRef;

    use super::*;

    fn message(kind: MessageKind, text: &str, file: Option<&str>) -> Message {
        let json = format!(
            r#"{{"room":"r_a","seq":1,"ts":1,"sender":"u_ann","cid":"c1","kind":"text","text":{text:?}}}"#
        );
        let mut message: Message = serde_json::from_str(&json).unwrap();
        message.kind = kind;
        message.file = file.map(|name| {
            Box::new(FileRef {
                file_id: "f1".into(),
                name: name.into(),
                size: 1,
                content_type: "image/png".into(),
                width: None,
                height: None,
            })
        });
        message
    }

    #[test]
    fn what_is_indexable() {
        assert_eq!(indexable(&message(MessageKind::Text, "hi", None)).as_deref(), Some("hi"));
        assert_eq!(indexable(&message(MessageKind::Text, "  ", None)), None);
        assert_eq!(indexable(&message(MessageKind::System, "ann joined", None)), None);
        let image = message(MessageKind::Image, "sunset", Some("beach.png"));
        assert_eq!(indexable(&image).as_deref(), Some("sunset\nbeach.png"));
        assert_eq!(indexable(&message(MessageKind::File, "", Some("a.pdf"))).as_deref(), Some("a.pdf"));
        let mut deleted = message(MessageKind::Text, "gone", None);
        deleted.deleted = true;
        assert_eq!(indexable(&deleted), None);
    }
}
