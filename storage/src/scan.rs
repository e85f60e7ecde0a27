//! A paged scan of every stored message, in key order (room, then seq): what a secondary
//! index (search) reads to rebuild itself from the log.

use std::ops::Bound;

use palaver_protocol::{Message, RoomId};

use crate::error::StorageError;
use crate::keys;
use crate::store::Store;

impl Store {
    /// Up to `limit` stored messages of every room in key order (room id, then seq),
    /// starting just after `after` (from the very first message when `None`). Tombstones
    /// and system messages are included: the caller decides what to skip. Page on by
    /// passing the last message's `(room, seq)`.
    pub fn messages_after(
        &self,
        after: Option<(&RoomId, u64)>,
        limit: usize,
    ) -> Result<Vec<Message>, StorageError> {
        let e = self.engine()?;
        let start = match after {
            Some((room, seq)) => Bound::Excluded(keys::message(room, seq)),
            None => Bound::Unbounded,
        };
        e.room_seq_message
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
            .take(limit)
            .map(|guard| e.read_message(&guard.value()?))
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use palaver_protocol::{ClientMsgId, MessageKind, UserId};

    use super::*;
    use crate::{Durability, Write};

    fn message(room: &RoomId, seq: u64) -> Message {
        Message {
            room: room.clone(),
            seq,
            ts: 1_000 + seq,
            sender: UserId::parse("u_alice").unwrap(),
            cid: ClientMsgId::parse(&format!("c{seq}")).unwrap(),
            kind: MessageKind::Text,
            text: format!("message {seq}"),
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

    #[test]
    fn pages_cover_every_room_in_key_order_without_gaps_or_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Durability::Buffered).unwrap();
        let (a, b) = (RoomId::parse("r_a").unwrap(), RoomId::parse("r_b").unwrap());
        let mut writes = Vec::new();
        for seq in 1..=5 {
            writes.push(Write::AppendMessage(message(&b, seq)));
            writes.push(Write::AppendMessage(message(&a, seq)));
        }
        store.apply(&writes).unwrap();
        let mut seen = Vec::new();
        let mut after: Option<(RoomId, u64)> = None;
        loop {
            let page = store.messages_after(after.as_ref().map(|(r, s)| (r, *s)), 3).unwrap();
            let Some(last) = page.last() else { break };
            after = Some((last.room.clone(), last.seq));
            seen.extend(page.iter().map(|m| (m.room.as_str().to_owned(), m.seq)));
        }
        let expected: Vec<_> =
            ["r_a", "r_b"].iter().flat_map(|r| (1..=5).map(move |s| ((*r).to_owned(), s))).collect();
        assert_eq!(seen, expected);
    }
}
