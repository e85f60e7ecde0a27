//! Forwarding: a forward is a message whose body is a comment and which refers to an
//! original in a room the forwarder may read. The original's content is never copied:
//! readers see it (in `history`) only if they may read the original's room themselves.

use palaver_protocol::{ForwardedMessage, Message, MessageKind, RoomKind};

use crate::error::CoreError;

/// Whether a reader may read the messages of a room of `kind`, being (`member`) or not
/// being a member of it: anyone a public room's, members a private or direct room's.
pub fn may_read_room(kind: RoomKind, member: bool) -> bool {
    kind == RoomKind::Public || member
}

/// Checks that `original` can be forwarded: a stored message that is not deleted, not
/// the room's own `system` record, and not ciphertext (which only its room's devices can
/// read: a client forwards it by encrypting it again).
pub fn check_forwardable(original: &Message) -> Result<(), CoreError> {
    if original.deleted {
        return Err(CoreError::NoSuchMessage(original.seq));
    }
    match original.kind {
        MessageKind::System => Err(CoreError::Mismatched("system messages are not forwarded")),
        MessageKind::Encrypted => {
            Err(CoreError::Mismatched("encrypted messages are forwarded by encrypting them again"))
        }
        MessageKind::Text | MessageKind::Image | MessageKind::File => Ok(()),
    }
}

/// What a reader who may read the original's room sees of it.
pub fn forwarded_content(original: Message) -> ForwardedMessage {
    ForwardedMessage {
        sender: original.sender,
        ts: original.ts,
        kind: original.kind,
        text: original.text,
        file: original.file,
        edited_at: original.edited_at,
        deleted: original.deleted,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

    use palaver_protocol::{ClientMsgId, ErrorCode, RoomId, UserId};

    use super::*;

    fn message(kind: MessageKind) -> Message {
        Message {
            room: RoomId::parse("r_src").unwrap(),
            seq: 4,
            ts: 1,
            sender: UserId::parse("u_ann").unwrap(),
            cid: ClientMsgId::parse("c").unwrap(),
            kind,
            text: "original".into(),
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
    fn only_live_plain_messages_of_readable_rooms_are_forwarded() {
        assert!(may_read_room(RoomKind::Public, false));
        assert!(!may_read_room(RoomKind::Private, false));
        assert!(!may_read_room(RoomKind::Direct, false));
        assert!(may_read_room(RoomKind::Direct, true));
        assert!(check_forwardable(&message(MessageKind::Text)).is_ok());
        assert!(check_forwardable(&message(MessageKind::Image)).is_ok());
        let code = |m: Message| check_forwardable(&m).unwrap_err().code();
        assert_eq!(code(message(MessageKind::System)), ErrorCode::Invalid);
        assert_eq!(code(message(MessageKind::Encrypted)), ErrorCode::Invalid);
        assert_eq!(code(Message { deleted: true, ..message(MessageKind::Text) }), ErrorCode::NotFound);
        let shown = forwarded_content(message(MessageKind::Text));
        assert_eq!((shown.text.as_str(), shown.sender.as_str()), ("original", "u_ann"));
    }
}
