//! The stored form of a message, decoupled from the wire type: the protocol's `Message`
//! may grow fields (reactions, edits, replies) without changing what is on disk. This
//! layout is format 1 and is frozen; `tests/format_fixture.rs` reads a committed
//! directory written with it.

use palaver_protocol::{ClientMsgId, Message, MessageKind, RoomId, UserId};
use rkyv::rancor;

use crate::error::StorageError;

/// A message as stored in `room_seq_message` (format 1). Field order and types are the
/// archive layout: never change them; add a new record type and a format version instead.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct StoredMessageV1 {
    room: RoomId,
    seq: u64,
    ts: u64,
    sender: UserId,
    cid: ClientMsgId,
    kind: MessageKind,
    text: String,
    client_ts: Option<u64>,
}

/// Encodes a message for storage.
pub(crate) fn encode(message: &Message) -> Result<Vec<u8>, StorageError> {
    let record = StoredMessageV1 {
        room: message.room.clone(),
        seq: message.seq,
        ts: message.ts,
        sender: message.sender.clone(),
        cid: message.cid.clone(),
        kind: message.kind,
        text: message.text.clone(),
        client_ts: message.client_ts,
    };
    rkyv::api::high::to_bytes_in::<_, rancor::Error>(&record, Vec::new())
        .map_err(|e| StorageError::Corrupt { partition: "room_seq_message", detail: e.to_string() })
}

/// Decodes a stored message (validated: a corrupt record is an error, never garbage).
pub(crate) fn decode(bytes: &[u8]) -> Result<Message, StorageError> {
    let record = rkyv::from_bytes::<StoredMessageV1, rancor::Error>(bytes)
        .map_err(|e| StorageError::Corrupt { partition: "room_seq_message", detail: e.to_string() })?;
    Ok(Message {
        room: record.room,
        seq: record.seq,
        ts: record.ts,
        sender: record.sender,
        cid: record.cid,
        kind: record.kind,
        text: record.text,
        client_ts: record.client_ts,
        reactions: Vec::new(),
    })
}
