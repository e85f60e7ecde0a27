//! Pinned messages: who may pin and unpin (the room's `pin_role` and above in a group
//! room, either user in a direct room), how many a room holds, and the order they are
//! listed in (the most recently pinned first). A pin or an unpin is recorded in the
//! room's log as a `system` message, like a moderation action.

use palaver_protocol::{Message, RoomKind, SystemAction, SystemNotice, UserId, limits};

use super::Room;
use crate::error::CoreError;

/// A pin as the room holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// The message.
    pub seq: u64,
    /// Who pinned it.
    pub by: UserId,
    /// When (ms since the Unix epoch).
    pub at: u64,
}

impl Pin {
    /// Where a page that ended at this pin continues: the key of `pin.list`'s cursor.
    pub fn cursor_key(&self) -> String {
        format!("{}:{}", self.at, self.seq)
    }

    /// The `(at, seq)` a cursor key names, if it is one.
    pub fn parse_cursor_key(key: &str) -> Option<(u64, u64)> {
        let (at, seq) = key.split_once(':')?;
        Some((at.parse().ok()?, seq.parse().ok()?))
    }
}

impl Room {
    /// Whether message `seq` is pinned.
    pub fn is_pinned(&self, seq: u64) -> bool {
        self.pins.contains_key(&seq)
    }

    /// How many messages are pinned.
    pub fn pin_count(&self) -> usize {
        self.pins.len()
    }

    /// Checks that `actor` may pin (`on`) or unpin `message` at `now_ms`, and records it;
    /// returns the notice to store. A deleted message cannot be pinned; pinning a pinned
    /// message (or unpinning one that is not) is a conflict, so every accepted request
    /// leaves exactly one notice in the log.
    pub fn pin(
        &mut self,
        now_ms: u64,
        actor: &UserId,
        message: &Message,
        on: bool,
    ) -> Result<SystemNotice, CoreError> {
        let role = self.role_of(actor).ok_or_else(|| CoreError::NotMember(self.id.clone()))?;
        let needed = self.settings.pin_role;
        if self.kind != RoomKind::Direct && role < needed {
            let to = if on { "pinning messages" } else { "unpinning messages" };
            return Err(CoreError::NeedsRole { role: needed, to });
        }
        let seq = message.seq;
        if message.deleted || seq > self.durable_seq {
            return Err(CoreError::NoSuchMessage(seq));
        }
        match (on, self.pins.contains_key(&seq)) {
            (true, true) => return Err(CoreError::AlreadyPinned(seq)),
            (false, false) => return Err(CoreError::NotPinned(seq)),
            (true, false) if self.pins.len() >= limits::MAX_PINS_PER_ROOM => {
                return Err(CoreError::PinsCap { max: limits::MAX_PINS_PER_ROOM });
            }
            (true, false) => {
                self.pins.insert(seq, (actor.clone(), now_ms));
            }
            (false, true) => {
                self.pins.remove(&seq);
            }
        }
        Ok(SystemNotice {
            action: if on { SystemAction::Pinned } else { SystemAction::Unpinned },
            actor: actor.clone(),
            target: None,
            role: None,
            until: None,
            reason: None,
            seq: Some(seq),
        })
    }

    /// A message being deleted leaves the pins (without a notice: the delete is the
    /// room's record). Returns whether it was pinned.
    pub fn unpin_deleted(&mut self, seq: u64) -> bool {
        self.pins.remove(&seq).is_some()
    }

    /// Checks that `user` may read the room's messages: anyone a public room's, members a
    /// private or direct room's.
    pub fn check_read(&self, user: &UserId) -> Result<(), CoreError> {
        if self.kind != RoomKind::Public && self.role_of(user).is_none() {
            return Err(CoreError::PrivateRoom(self.id.clone()));
        }
        Ok(())
    }

    /// The pins after the cursor key `after` (`(at, seq)`), the most recently pinned
    /// first, at most `limit`, and whether more follow.
    pub fn pins_page(&self, after: Option<(u64, u64)>, limit: usize) -> (Vec<Pin>, bool) {
        let mut pins: Vec<Pin> = self
            .pins
            .iter()
            .map(|(seq, (by, at))| Pin { seq: *seq, by: by.clone(), at: *at })
            .filter(|pin| after.is_none_or(|after| (pin.at, pin.seq) < after))
            .collect();
        pins.sort_unstable_by_key(|pin| std::cmp::Reverse((pin.at, pin.seq)));
        let more = pins.len() > limit;
        pins.truncate(limit);
        (pins, more)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

    use palaver_protocol::{ClientMsgId, ErrorCode, MessageKind, RoomId, RoomSettingsPatch};

    use super::super::RoomLimits;
    use super::*;
    use crate::role::Role;

    fn user(name: &str) -> UserId {
        UserId::parse(&format!("u_{name}")).unwrap()
    }

    fn message(seq: u64) -> Message {
        Message {
            room: RoomId::parse("r_g").unwrap(),
            seq,
            ts: 1,
            sender: user("a"),
            cid: ClientMsgId::parse(&format!("c{seq}")).unwrap(),
            kind: MessageKind::Text,
            text: "hi".into(),
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

    fn room(kind: RoomKind) -> Room {
        let id = RoomId::parse("r_g").unwrap();
        let mut room = Room::create(id, "g".into(), kind, user("owner"), RoomLimits::default()).unwrap();
        room.members.insert(user("mod"), Role::Moderator);
        room.members.insert(user("a"), Role::Member);
        room.last_seq = 500;
        room.durable_seq = 500;
        room
    }

    fn code(r: Result<SystemNotice, CoreError>) -> ErrorCode {
        r.unwrap_err().code()
    }

    #[test]
    fn pins_need_the_pin_role_a_live_message_and_change_something() {
        let mut room = room(RoomKind::Public);
        assert_eq!(
            code(room.pin(1, &user("a"), &message(1), true)),
            ErrorCode::Forbidden,
            "members by default"
        );
        assert_eq!(code(room.pin(1, &user("x"), &message(1), true)), ErrorCode::Forbidden, "not a member");
        let notice = room.pin(7, &user("mod"), &message(1), true).unwrap();
        assert_eq!((notice.action, notice.seq), (SystemAction::Pinned, Some(1)));
        assert!(room.is_pinned(1));
        assert_eq!(code(room.pin(8, &user("owner"), &message(1), true)), ErrorCode::Conflict);
        assert_eq!(code(room.pin(8, &user("owner"), &message(2), false)), ErrorCode::Conflict);
        let mut gone = message(3);
        gone.deleted = true;
        assert_eq!(code(room.pin(8, &user("owner"), &gone, true)), ErrorCode::NotFound);
        assert_eq!(
            code(room.pin(8, &user("owner"), &message(501), true)),
            ErrorCode::NotFound,
            "not durable"
        );

        // The setting opens pinning to members.
        let patch = RoomSettingsPatch { pin_role: Some(Role::Member), ..Default::default() };
        room.settings = room.patched_settings(&patch).unwrap();
        let notice = room.pin(9, &user("a"), &message(1), false).unwrap();
        assert_eq!((notice.action, notice.seq), (SystemAction::Unpinned, Some(1)));
        assert_eq!(room.pin_count(), 0);

        // A room holds a bounded number of pins.
        for seq in 1..=limits::MAX_PINS_PER_ROOM as u64 {
            room.pin(10, &user("a"), &message(seq), true).unwrap();
        }
        let over = message(limits::MAX_PINS_PER_ROOM as u64 + 1);
        assert_eq!(code(room.pin(10, &user("a"), &over, true)), ErrorCode::Forbidden);
        assert!(room.unpin_deleted(1));
        assert!(!room.unpin_deleted(1));
        room.pin(10, &user("a"), &over, true).unwrap();
    }

    #[test]
    fn either_user_pins_in_a_direct_room_and_pins_list_newest_first() {
        let id = RoomId::parse("r_d").unwrap();
        let mut room = Room::direct(id, user("a"), user("b"), RoomLimits::default());
        room.last_seq = 9;
        room.durable_seq = 9;
        room.pin(5, &user("b"), &message(2), true).unwrap();
        room.pin(5, &user("a"), &message(1), true).unwrap();
        room.pin(6, &user("a"), &message(3), true).unwrap();
        let (page, more) = room.pins_page(None, 2);
        assert_eq!(page.iter().map(|p| p.seq).collect::<Vec<_>>(), vec![3, 2]);
        assert!(more);
        let after = Pin::parse_cursor_key(&page[1].cursor_key());
        let (rest, more) = room.pins_page(after, 2);
        assert_eq!(rest.iter().map(|p| (p.seq, p.by.clone())).collect::<Vec<_>>(), vec![(1, user("a"))]);
        assert!(!more);
        assert_eq!(Pin::parse_cursor_key("nope"), None);
        assert_eq!(room.check_read(&user("c")).unwrap_err().code(), ErrorCode::Forbidden);
        assert!(room.check_read(&user("a")).is_ok());
    }
}
