//! Who has read (or had delivered) a message, from the members' watermarks: the room
//! holds every member's `(delivered, read)`, so the answer is a walk of its members in
//! user-id order, bounded per page. Deliveries are listed only in rooms of a bounded size;
//! members who keep their reads private are left out of read lists and never announced.

use palaver_protocol::{UserId, limits};

use super::Room;
use crate::error::CoreError;

/// Members whose watermark reached a message, as one page's walk found them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptWalk {
    /// `(member, delivered, read)`, by user id.
    pub found: Vec<(UserId, u64, u64)>,
    /// Whether members remain past the last one examined.
    pub more: bool,
    /// The last member examined: where the next page continues when nothing was found.
    pub last_examined: Option<UserId>,
}

impl Room {
    /// Checks that `user` may list who read (or, `delivered`, had delivered) message
    /// `seq`: a member, of a durable message; deliveries only in rooms of at most
    /// [`limits::MAX_DELIVERED_LIST_MEMBERS`] members.
    pub fn check_receipt_list(&self, user: &UserId, seq: u64, delivered: bool) -> Result<(), CoreError> {
        if self.role_of(user).is_none() {
            return Err(CoreError::NotMember(self.id.clone()));
        }
        if seq == 0 || seq > self.durable_seq {
            return Err(CoreError::NoSuchMessage(seq));
        }
        if delivered && self.members.len() > limits::MAX_DELIVERED_LIST_MEMBERS {
            return Err(CoreError::TooManyMembersFor {
                what: "listing deliveries",
                max: limits::MAX_DELIVERED_LIST_MEMBERS,
            });
        }
        Ok(())
    }

    /// Walks at most `examine` members after `after` in user-id order, keeping those whose
    /// read (or, `delivered`, delivered) watermark is at least `seq`.
    pub fn receipts_reaching(
        &self,
        after: Option<&UserId>,
        seq: u64,
        delivered: bool,
        examine: usize,
    ) -> ReceiptWalk {
        let mut members: Vec<&UserId> =
            self.members.keys().filter(|user| after.is_none_or(|a| *user > a)).collect();
        members.sort_unstable();
        let more = members.len() > examine;
        members.truncate(examine);
        let last_examined = members.last().map(|user| (*user).clone());
        let found = members
            .into_iter()
            .filter_map(|user| {
                let (d, r) = self.receipt_of(user);
                let mark = if delivered { d } else { r };
                (mark >= seq).then(|| (user.clone(), d, r))
            })
            .collect();
        ReceiptWalk { found, more, last_examined }
    }

    /// A member who keeps their reads private: their moved watermarks are not announced.
    pub fn keep_receipt_private(&mut self, user: &UserId) {
        self.receipts_to_announce.retain(|u| u != user);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

    use palaver_protocol::{ErrorCode, RoomId, RoomKind};

    use super::super::RoomLimits;
    use super::*;
    use crate::role::Role;

    fn user(name: &str) -> UserId {
        UserId::parse(&format!("u_{name}")).unwrap()
    }

    #[test]
    fn readers_are_members_whose_watermark_reached_the_message_walked_in_bounded_pages() {
        let id = RoomId::parse("r_g").unwrap();
        let mut room =
            Room::create(id, "g".into(), RoomKind::Public, user("owner"), RoomLimits::default()).unwrap();
        for name in ["a", "b", "c", "d"] {
            room.members.insert(user(name), Role::Member);
        }
        room.last_seq = 10;
        room.durable_seq = 10;
        room.receipt(&user("a"), None, Some(5)).unwrap();
        room.receipt(&user("b"), Some(7), Some(2)).unwrap();
        room.receipt(&user("d"), None, Some(9)).unwrap();
        let walk = room.receipts_reaching(None, 5, false, 10);
        let readers: Vec<UserId> = walk.found.iter().map(|(u, ..)| u.clone()).collect();
        assert_eq!(readers, vec![user("a"), user("d")]);
        assert!(!walk.more);
        let delivered = room.receipts_reaching(None, 5, true, 10);
        assert_eq!(delivered.found.len(), 3, "b has it delivered, not read");
        // A bounded walk says where it stopped.
        let first = room.receipts_reaching(None, 5, false, 2);
        assert_eq!((first.found.len(), first.more, first.last_examined.clone()), (1, true, Some(user("b"))));
        let rest = room.receipts_reaching(first.last_examined.as_ref(), 5, false, 10);
        assert_eq!(rest.found.iter().map(|(u, ..)| u.clone()).collect::<Vec<_>>(), vec![user("d")]);

        assert_eq!(room.check_receipt_list(&user("x"), 5, false).unwrap_err().code(), ErrorCode::Forbidden);
        assert_eq!(room.check_receipt_list(&user("a"), 11, false).unwrap_err().code(), ErrorCode::NotFound);
        assert_eq!(room.check_receipt_list(&user("a"), 0, false).unwrap_err().code(), ErrorCode::NotFound);
        assert!(room.check_receipt_list(&user("a"), 10, true).is_ok());
        for n in 0..limits::MAX_DELIVERED_LIST_MEMBERS {
            room.members.insert(user(&format!("m{n}")), Role::Member);
        }
        assert_eq!(room.check_receipt_list(&user("a"), 10, true).unwrap_err().code(), ErrorCode::Forbidden);
        assert!(room.check_receipt_list(&user("a"), 10, false).is_ok(), "reads are listed in any room");

        // A private reader's moves are not announced.
        room.take_receipt_announcements();
        room.receipt(&user("a"), None, Some(10)).unwrap();
        room.receipt(&user("b"), None, Some(10)).unwrap();
        room.keep_receipt_private(&user("a"));
        let announced: Vec<UserId> = room.take_receipt_announcements().into_iter().map(|(u, ..)| u).collect();
        assert_eq!(announced, vec![user("b")]);
    }
}
