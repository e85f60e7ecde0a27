//! The stored form of a message, decoupled from the wire type: the protocol's `Message`
//! may grow fields without changing what is on disk. The core record layout is format 1
//! and frozen (`tests/format_fixture.rs` reads a committed directory written with it);
//! what came later (reply, mentions, file, edit time, tombstone) is a small JSON
//! extension in its own partition, written in the same batch and absent for plain text.

use palaver_protocol::{
    ClientMsgId, Encryption, FileRef, ForwardRef, Message, MessageKind, RoomId, SystemNotice, UserId,
};
// `BoxedError` keeps the reason in release builds too (`rancor::Error` does not).
use rkyv::rancor::BoxedError;
use serde::{Deserialize, Serialize};

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
    rkyv::api::high::to_bytes_in::<_, BoxedError>(&record, Vec::new())
        .map_err(|e| StorageError::Corrupt { partition: "room_seq_message", detail: e.to_string() })
}

/// Decodes a stored message (validated, identifiers included: a corrupt record is an
/// error, never garbage).
pub(crate) fn decode(bytes: &[u8]) -> Result<Message, StorageError> {
    let record = rkyv::from_bytes::<StoredMessageV1, BoxedError>(bytes)
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
    })
}

/// A stored message's sender and kind, read in place (validated) without decoding the
/// rest.
pub(crate) fn sender_and_kind(bytes: &[u8]) -> Result<(UserId, MessageKind), StorageError> {
    let corrupt =
        |e: BoxedError| StorageError::Corrupt { partition: "room_seq_message", detail: e.to_string() };
    let record = rkyv::access::<ArchivedStoredMessageV1, BoxedError>(bytes).map_err(corrupt)?;
    let sender = rkyv::deserialize::<UserId, BoxedError>(&record.sender).map_err(corrupt)?;
    let kind = rkyv::deserialize::<MessageKind, BoxedError>(&record.kind).map_err(corrupt)?;
    Ok((sender, kind))
}

/// The later fields of a message, stored as JSON in `room_seq_ext` (self-describing, so it
/// can grow without a format change).
#[derive(Debug, Default, Serialize, Deserialize)]
struct MessageExt {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reply_to: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    mentions: Vec<UserId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<FileRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    edited_at: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    deleted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    system: Option<SystemNotice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    encryption: Option<Encryption>,
    /// A forward's original (its room and seq: never its content).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    forward: Option<ForwardRef>,
    /// A thread reply's root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    thread: Option<u64>,
    /// A thread reply also in the room's timeline.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    also_to_room: bool,
}

/// The extension record of a message, or `None` when it has nothing beyond format 1.
pub(crate) fn encode_ext(message: &Message) -> Result<Option<Vec<u8>>, StorageError> {
    let ext = MessageExt {
        reply_to: message.reply_to,
        mentions: message.mentions.clone(),
        file: message.file.as_deref().cloned(),
        edited_at: message.edited_at,
        deleted: message.deleted,
        system: message.system.as_deref().cloned(),
        encryption: message.encryption.as_deref().cloned(),
        forward: message.forward.as_deref().map(|forward| ForwardRef {
            room: forward.room.clone(),
            seq: forward.seq,
            source: None,
        }),
        thread: message.thread,
        also_to_room: message.also_to_room,
    };
    if ext.reply_to.is_none()
        && ext.system.is_none()
        && ext.encryption.is_none()
        && ext.mentions.is_empty()
        && ext.file.is_none()
        && ext.edited_at.is_none()
        && !ext.deleted
        && ext.forward.is_none()
        && ext.thread.is_none()
    {
        return Ok(None);
    }
    serde_json::to_vec(&ext)
        .map(Some)
        .map_err(|e| StorageError::Corrupt { partition: "room_seq_ext", detail: e.to_string() })
}

/// Applies a stored extension record to a decoded message.
pub(crate) fn apply_ext(message: &mut Message, bytes: &[u8]) -> Result<(), StorageError> {
    let ext: MessageExt = serde_json::from_slice(bytes)
        .map_err(|e| StorageError::Corrupt { partition: "room_seq_ext", detail: e.to_string() })?;
    message.reply_to = ext.reply_to;
    message.mentions = ext.mentions;
    message.file = ext.file.map(Box::new);
    message.edited_at = ext.edited_at;
    message.deleted = ext.deleted;
    message.system = ext.system.map(Box::new);
    message.encryption = ext.encryption.map(Box::new);
    message.forward = ext.forward.map(Box::new);
    message.thread = ext.thread;
    message.also_to_room = ext.also_to_room;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Message {
        Message {
            room: RoomId::parse("r_abc").unwrap(),
            seq: 7,
            ts: 1_700_000_000_000,
            sender: UserId::parse("u_ann").unwrap(),
            cid: ClientMsgId::parse("c-1").unwrap(),
            kind: MessageKind::Text,
            text: "hello".into(),
            client_ts: Some(5),
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
    fn a_record_decodes_to_the_message_it_was_encoded_from() {
        assert_eq!(decode(&encode(&message()).unwrap()).unwrap(), message());
    }

    #[test]
    fn a_record_with_an_invalid_identifier_is_corrupt() {
        let mut bytes = encode(&message()).unwrap();
        let at = bytes.windows(5).position(|w| w == b"u_ann").unwrap();
        bytes[at + 2] = b'A';
        let err = decode(&bytes).unwrap_err();
        assert!(
            matches!(&err, StorageError::Corrupt { partition: "room_seq_message", detail }
                if detail.contains("user id is malformed")),
            "{err:?}"
        );
    }
}
