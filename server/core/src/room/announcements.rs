//! Announcements: what the operator's backend posts into a room as the system (the server
//! API), not as any account. An announcement is a `system` message (`announcement`) whose
//! text is the poster's and whose sender is [`UserId::system`], which no account has: no
//! user can send one (a client's `system` kind is refused, and nobody signs in as the
//! system). Otherwise it is a message like a member's: the same text rules, the next seq,
//! and the same `cid` idempotency, with every announcement of the room sharing the
//! system's cids (a retry through any key finds the first post).

use palaver_protocol::{ClientMsgId, Message, MessageKind, SystemAction, SystemNotice, UserId};

use super::{Appended, Room, SendOutcome};
use crate::error::CoreError;

/// An announcement to post, as the backend gave it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Announcing {
    /// Idempotency key (the system's, in this room).
    pub cid: ClientMsgId,
    /// The announcement.
    pub text: String,
    /// The message it replies to.
    pub reply_to: Option<u64>,
}

impl Room {
    /// Accepts an announcement, or says it is a duplicate of a stored one (`stored_cid`
    /// looks the cid up among the system's stored messages in this room).
    pub fn announce(
        &mut self,
        now_ms: u64,
        announcing: Announcing,
        stored_cid: impl FnOnce(&ClientMsgId) -> Option<(u64, u64)>,
    ) -> Result<SendOutcome, CoreError> {
        let Announcing { cid, text, reply_to } = announcing;
        let text = self.check_body(MessageKind::Text, text, None, false)?;
        if let Some(parent) = reply_to
            && (parent == 0 || parent > self.last_seq)
        {
            return Err(CoreError::NoSuchMessage(parent));
        }
        let system = UserId::system();
        if let Some((seq, ts)) = self.pending_send(&system, &cid) {
            return Ok(SendOutcome::Duplicate { seq, ts });
        }
        if let Some((seq, ts)) = stored_cid(&cid) {
            return Ok(SendOutcome::Duplicate { seq, ts });
        }
        self.last_seq += 1;
        self.last_ts = self.last_ts.max(now_ms);
        let notice = SystemNotice {
            action: SystemAction::Announcement,
            actor: system.clone(),
            target: None,
            role: None,
            until: None,
            reason: None,
            seq: None,
        };
        let message = Message {
            room: self.id.clone(),
            seq: self.last_seq,
            ts: self.last_ts,
            sender: system.clone(),
            cid: cid.clone(),
            kind: MessageKind::System,
            text,
            client_ts: None,
            reactions: Vec::new(),
            reply_to,
            reply: None,
            mentions: Vec::new(),
            file: None,
            edited_at: None,
            deleted: false,
            system: Some(Box::new(notice)),
            blocked: false,
            encryption: None,
            mention_all: None,
            forward: None,
            also_to_room: false,
            thread: None,
            thread_summary: None,
        };
        self.add_pending(system, cid);
        Ok(SendOutcome::Append(Appended { message }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::RoomLimits;
    use super::*;
    use palaver_protocol::{ErrorCode, RoomId, RoomKind};

    fn room() -> Room {
        let owner = UserId::parse("u_owner").unwrap();
        Room::create(
            RoomId::parse("r_a").unwrap(),
            "a".into(),
            RoomKind::Public,
            owner,
            RoomLimits::default(),
        )
        .unwrap()
    }

    fn announcing(cid: &str, text: &str) -> Announcing {
        Announcing { cid: ClientMsgId::parse(cid).unwrap(), text: text.into(), reply_to: None }
    }

    fn appended(outcome: Result<SendOutcome, CoreError>) -> Message {
        match outcome {
            Ok(SendOutcome::Append(Appended { message })) => message,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_announcement_is_the_systems_message_with_the_posters_text_and_cid() {
        let mut room = room();
        let message = appended(room.announce(5, announcing("maint-1", "down at 22:00"), |_| None));
        assert_eq!(
            (message.seq, message.kind, message.text.as_str()),
            (1, MessageKind::System, "down at 22:00")
        );
        assert_eq!((message.sender.clone(), message.cid.as_str()), (UserId::system(), "maint-1"));
        let notice = message.system.as_deref().unwrap();
        assert_eq!((notice.action, &notice.actor), (SystemAction::Announcement, &UserId::system()));
        assert!(message.has_idempotent_cid(), "a retry must find it by its cid");
    }

    #[test]
    fn a_retry_is_a_duplicate_before_and_after_it_is_durable() {
        let mut room = room();
        appended(room.announce(5, announcing("maint-1", "down at 22:00"), |_| None));
        let racing = room.announce(6, announcing("maint-1", "down at 22:00"), |_| None);
        assert_eq!(racing, Ok(SendOutcome::Duplicate { seq: 1, ts: 5 }));
        room.committed(1);
        let stored = room.announce(7, announcing("maint-1", "changed"), |_| Some((1, 5)));
        assert_eq!(stored, Ok(SendOutcome::Duplicate { seq: 1, ts: 5 }));
        let next = appended(room.announce(8, announcing("maint-2", "back up"), |_| None));
        assert_eq!(next.seq, 2);
    }

    #[test]
    fn its_text_follows_a_members_rules() {
        let mut room = room();
        let code = |outcome: Result<SendOutcome, CoreError>| outcome.map(drop).unwrap_err().code();
        assert_eq!(code(room.announce(1, announcing("a", ""), |_| None)), ErrorCode::Invalid);
        let long = "x".repeat(RoomLimits::default().max_text_chars + 1);
        assert_eq!(code(room.announce(1, announcing("b", &long), |_| None)), ErrorCode::TooLarge);
        let mut replying = announcing("c", "re");
        replying.reply_to = Some(9);
        assert_eq!(code(room.announce(1, replying, |_| None)), ErrorCode::NotFound);
        assert_eq!(room.last_seq(), 0, "nothing refused takes a seq");
    }
}
