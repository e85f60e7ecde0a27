//! The users whose presence the application follows by subscription, and their renewal
//! after a reconnect (a server forgets a socket's subscriptions when the socket closes).

use std::collections::{BTreeSet, VecDeque};

use palaver_protocol::{Op, UserId};

/// Most users in one renewal request (the server's per-socket ceiling).
pub(crate) const MAX_USERS_PER_RENEWAL: usize = 500;

/// Followed users and the state of their renewal on the current connection.
#[derive(Debug, Default)]
pub(crate) struct PresenceFollow {
    users: BTreeSet<UserId>,
    /// Renewal requests still to send on this connection, in order.
    pending: VecDeque<Vec<UserId>>,
    /// The renewal in flight: its wire id and users.
    in_flight: Option<(u64, Vec<UserId>)>,
    /// Not before this time (after a transient refusal).
    not_before: u64,
}

impl PresenceFollow {
    /// A user request succeeded: keep the followed set in step with it.
    pub(crate) fn on_user_op_ok(&mut self, op: &Op) {
        match op {
            Op::PresenceSubscribe { users } => self.users.extend(users.iter().cloned()),
            Op::PresenceUnsubscribe { users } => {
                for user in users {
                    self.users.remove(user);
                }
            }
            _ => {}
        }
    }

    /// A new connection is authenticated: everything followed must be renewed.
    pub(crate) fn on_connected(&mut self) {
        let users: Vec<UserId> = self.users.iter().cloned().collect();
        self.pending = users.chunks(MAX_USERS_PER_RENEWAL).map(<[UserId]>::to_vec).collect();
        self.in_flight = None;
        self.not_before = 0;
    }

    /// The connection is gone: renewals start over on the next one.
    pub(crate) fn on_disconnected(&mut self) {
        self.pending.clear();
        self.in_flight = None;
    }

    /// The next renewal to send now, if any (one at a time).
    pub(crate) fn due(&mut self, now: u64) -> Option<Vec<UserId>> {
        if self.in_flight.is_some() || now < self.not_before {
            return None;
        }
        self.pending.pop_front()
    }

    /// A renewal was sent with this wire id.
    pub(crate) fn sent(&mut self, wire_id: u64, users: Vec<UserId>) {
        self.in_flight = Some((wire_id, users));
    }

    /// When a renewal waits for time (not for a reply).
    pub(crate) fn wake_at(&self) -> Option<u64> {
        (self.in_flight.is_none() && !self.pending.is_empty()).then_some(self.not_before)
    }

    /// The renewal `wire_id` was answered with the users' presence.
    pub(crate) fn renewed(&mut self, wire_id: u64) {
        if self.in_flight.as_ref().is_some_and(|(id, _)| *id == wire_id) {
            self.in_flight = None;
        }
    }

    /// The renewal `wire_id` failed for now (rate limited, unavailable, no answer): try it
    /// again at `retry_at`.
    pub(crate) fn retry_later(&mut self, wire_id: u64, retry_at: u64) {
        if let Some((id, users)) = self.in_flight.take() {
            if id != wire_id {
                self.in_flight = Some((id, users));
                return;
            }
            self.pending.push_front(users);
            self.not_before = retry_at;
        }
    }

    /// The renewal `wire_id` was refused (a user blocked the caller, or no longer shares a
    /// room with them): renew its users one by one, and stop following a user whose own
    /// renewal is refused.
    pub(crate) fn refused(&mut self, wire_id: u64) {
        let Some((id, users)) = self.in_flight.take() else { return };
        if id != wire_id {
            self.in_flight = Some((id, users));
            return;
        }
        match users.as_slice() {
            [user] => {
                self.users.remove(user);
            }
            _ => {
                for user in users.into_iter().rev() {
                    self.pending.push_front(vec![user]);
                }
            }
        }
    }

    /// The users followed by subscription.
    #[cfg(test)]
    pub(crate) fn users(&self) -> &BTreeSet<UserId> {
        &self.users
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn user(n: usize) -> UserId {
        UserId::parse(&format!("u_{n}")).unwrap()
    }

    #[test]
    fn a_refused_batch_is_split_and_the_refusing_user_dropped() {
        let mut follow = PresenceFollow::default();
        follow.on_user_op_ok(&Op::PresenceSubscribe { users: (1..=3).map(user).collect() });
        follow.on_user_op_ok(&Op::PresenceUnsubscribe { users: vec![user(3)] });
        follow.on_connected();
        let batch = follow.due(0).unwrap();
        assert_eq!(batch, vec![user(1), user(2)]);
        follow.sent(7, batch);
        assert_eq!(follow.due(0), None, "one renewal at a time");
        follow.refused(7);
        for (wire_id, refuse) in [(8, true), (9, false)] {
            let single = follow.due(0).unwrap();
            assert_eq!(single.len(), 1);
            follow.sent(wire_id, single);
            if refuse { follow.refused(wire_id) } else { follow.renewed(wire_id) }
        }
        assert_eq!(follow.users().iter().cloned().collect::<Vec<_>>(), vec![user(2)]);
        assert_eq!(follow.due(0), None);
    }

    #[test]
    fn a_transient_failure_waits_and_a_disconnect_starts_over() {
        let mut follow = PresenceFollow::default();
        follow.on_user_op_ok(&Op::PresenceSubscribe { users: vec![user(1)] });
        follow.on_connected();
        let batch = follow.due(0).unwrap();
        follow.sent(1, batch);
        follow.retry_later(1, 500);
        assert_eq!(follow.wake_at(), Some(500));
        assert_eq!(follow.due(499), None);
        follow.on_disconnected();
        assert_eq!(follow.wake_at(), None);
        follow.on_connected();
        assert_eq!(follow.due(0), Some(vec![user(1)]));
    }
}
