//! What the search crate's test binaries share: messages to index.

#![allow(clippy::unwrap_used, reason = "tests")]

use palaver_protocol::{ClientMsgId, Message, MessageKind, RoomId, UserId};

pub fn room(id: &str) -> RoomId {
    RoomId::parse(id).unwrap()
}

pub fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

pub fn message(room_id: &str, seq: u64, ts: u64, sender: &str, text: &str) -> Message {
    Message {
        room: room(room_id),
        seq,
        ts,
        sender: user(sender),
        cid: ClientMsgId::parse(&format!("c{seq}")).unwrap(),
        kind: MessageKind::Text,
        text: text.to_owned(),
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
