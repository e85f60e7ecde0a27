//! Key layouts. Identifiers never contain a NUL byte, so `id ++ 0x00 ++ rest` keys sort by
//! id first and a prefix scan over `id ++ 0x00` never runs into a longer id.

use palaver_protocol::{ClientMsgId, RoomId, UserId};

const SEP: u8 = 0;

/// `room ++ 0 ++ seq(u64 big-endian)`: messages of a room sort by seq.
pub(crate) fn message(room: &RoomId, seq: u64) -> Vec<u8> {
    let mut key = room_prefix(room);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// `room ++ 0`: the prefix of every per-room key.
pub(crate) fn room_prefix(room: &RoomId) -> Vec<u8> {
    let mut key = Vec::with_capacity(room.as_str().len() + 9);
    key.extend_from_slice(room.as_str().as_bytes());
    key.push(SEP);
    key
}

/// The seq at the end of a message key.
pub(crate) fn seq_of_message_key(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

/// `room ++ 0 ++ seq(u64 big-endian) ++ emoji ++ 0`: the prefix of one emoji's
/// reactions on one message (emoji never contain NUL).
pub(crate) fn reaction_prefix(room: &RoomId, seq: u64, emoji: Option<&str>) -> Vec<u8> {
    let mut key = message(room, seq);
    if let Some(emoji) = emoji {
        key.extend_from_slice(emoji.as_bytes());
        key.push(SEP);
    }
    key
}

/// `room ++ 0 ++ seq ++ emoji ++ 0 ++ user`: one user's reaction.
pub(crate) fn reaction(room: &RoomId, seq: u64, emoji: &str, user: &UserId) -> Vec<u8> {
    let mut key = reaction_prefix(room, seq, Some(emoji));
    key.extend_from_slice(user.as_str().as_bytes());
    key
}

/// `user ++ 0 ++ room ++ 0 ++ seq(u64 big-endian)`: a mention of `user`.
pub(crate) fn user_room_seq(user: &UserId, room: &RoomId, seq: u64) -> Vec<u8> {
    let mut key = user_room(user, room);
    key.push(SEP);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// `room ++ 0 ++ sender ++ 0 ++ cid`: a cid is its sender's (format 2; format 1 keyed
/// `room ++ 0 ++ cid`, which let one member squat another's cid).
pub(crate) fn room_sender_cid(room: &RoomId, sender: &UserId, cid: &ClientMsgId) -> Vec<u8> {
    let mut key = room_prefix(room);
    key.extend_from_slice(&sender_cid(sender, cid));
    key
}

/// `sender ++ 0 ++ cid`: what follows the room in a `room_cid_seq` key, and what a room's
/// cid filter hashes.
pub(crate) fn sender_cid(sender: &UserId, cid: &ClientMsgId) -> Vec<u8> {
    let mut key = Vec::with_capacity(sender.as_str().len() + 1 + cid.as_str().len());
    key.extend_from_slice(sender.as_str().as_bytes());
    key.push(SEP);
    key.extend_from_slice(cid.as_str().as_bytes());
    key
}

/// `room ++ 0 ++ user`.
pub(crate) fn room_member(room: &RoomId, user: &UserId) -> Vec<u8> {
    let mut key = room_prefix(room);
    key.extend_from_slice(user.as_str().as_bytes());
    key
}

/// `user ++ 0 ++ room`.
pub(crate) fn user_room(user: &UserId, room: &RoomId) -> Vec<u8> {
    let mut key = Vec::with_capacity(user.as_str().len() + room.as_str().len() + 1);
    key.extend_from_slice(user.as_str().as_bytes());
    key.push(SEP);
    key.extend_from_slice(room.as_str().as_bytes());
    key
}

/// Whether `key` is `first ++ 0 ++ second`, or `first ++ 0 ++ second ++ 0 ++ …`, for
/// this `second` (a user-first index entry about one room).
pub(crate) fn second_is(key: &[u8], second: &str) -> bool {
    let Some(at) = key.iter().position(|b| *b == SEP) else { return false };
    let rest = &key[at + 1..];
    rest.starts_with(second.as_bytes()) && rest.get(second.len()).is_none_or(|b| *b == SEP)
}

/// `a ++ 0 ++ b`: a pair of identifiers (user and user, room and user, user and room).
pub(crate) fn pair(a: &str, b: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(a.len() + b.len() + 1);
    key.extend_from_slice(a.as_bytes());
    key.push(SEP);
    key.extend_from_slice(b.as_bytes());
    key
}

/// `a ++ 0`: the prefix of every pair starting with `a`.
pub(crate) fn pair_prefix(a: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(a.len() + 1);
    key.extend_from_slice(a.as_bytes());
    key.push(SEP);
    key
}
