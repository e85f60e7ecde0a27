//! What a replica checks of the messages it applies from a cluster's shared log, as pure
//! decisions.
//!
//! Every replica applies the same records in the same order, so each message another
//! node appended must land right after the room's last stored one — or, when a record
//! is applied again (after a restart, a suffix is), be the very message already stored
//! at its seq. Anything else means this replica no longer matches the log (a bug, a
//! damaged disk, a store restored from the wrong backup): the room is *diverged*, and
//! the replica stops serving it and rebuilds it from the log.

use std::collections::HashMap;

use palaver_protocol::{ClientMsgId, Message, RoomId, UserId};

/// How one appended message fits the replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    /// The next seq of its room.
    Next,
    /// Already stored at its seq: the same message, applied again.
    Again,
    /// Not what the replica holds: the room must be rebuilt from the log.
    Diverged {
        /// The message's seq.
        seq: u64,
        /// The seq the replica expected next.
        expected: u64,
    },
}

/// The checks of one batch of records (the batch's own appends count as stored).
#[derive(Debug, Default)]
pub struct AppendCheck {
    /// Each room's next seq, once looked up.
    next: HashMap<RoomId, u64>,
    /// Messages appended earlier in this batch: (room, seq) → (sender, cid).
    in_batch: HashMap<(RoomId, u64), (UserId, ClientMsgId)>,
}

impl AppendCheck {
    /// A check for a new batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// How `message` fits: `stored_last` reads the room's last stored seq, `stored_at`
    /// the sender and cid of the message stored at a seq (each read at most once here).
    pub fn fit<E>(
        &mut self,
        message: &Message,
        stored_last: impl FnOnce() -> Result<u64, E>,
        stored_at: impl FnOnce(u64) -> Result<Option<(UserId, ClientMsgId)>, E>,
    ) -> Result<Fit, E> {
        let next = match self.next.get(&message.room) {
            Some(next) => *next,
            None => stored_last()?.saturating_add(1),
        };
        let identity = (message.sender.clone(), message.cid.clone());
        if message.seq == next {
            self.next.insert(message.room.clone(), next + 1);
            self.in_batch.insert((message.room.clone(), message.seq), identity);
            return Ok(Fit::Next);
        }
        self.next.insert(message.room.clone(), next);
        if message.seq < next {
            let held = match self.in_batch.get(&(message.room.clone(), message.seq)) {
                Some(held) => Some(held.clone()),
                None => stored_at(message.seq)?,
            };
            if held.as_ref() == Some(&identity) {
                return Ok(Fit::Again);
            }
        }
        Ok(Fit::Diverged { seq: message.seq, expected: next })
    }
}

#[cfg(test)]
mod tests {
    use palaver_protocol::MessageKind;

    use super::*;

    fn message(seq: u64, cid: &str) -> Message {
        Message {
            room: RoomId::parse("r_one").unwrap(),
            seq,
            ts: seq,
            sender: UserId::parse("u_alice").unwrap(),
            cid: ClientMsgId::parse(cid).unwrap(),
            kind: MessageKind::Text,
            text: String::new(),
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

    type Stored = Result<Option<(UserId, ClientMsgId)>, ()>;

    fn alice(cid: &str) -> Stored {
        Ok(Some((UserId::parse("u_alice").unwrap(), ClientMsgId::parse(cid).unwrap())))
    }

    #[test]
    fn appends_follow_the_stored_log_or_repeat_it() {
        let mut check = AppendCheck::new();
        assert_eq!(check.fit(&message(4, "d"), || Ok::<_, ()>(3), |_| alice("x")), Ok(Fit::Next));
        assert_eq!(
            check.fit(&message(5, "e"), || -> Result<u64, ()> { unreachable!() }, |_| alice("x")),
            Ok(Fit::Next)
        );
        // Applied again: the same message, in the batch or in the store.
        assert_eq!(
            check.fit(
                &message(5, "e"),
                || -> Result<u64, ()> { unreachable!() },
                |_| -> Stored { unreachable!() }
            ),
            Ok(Fit::Again)
        );
        assert_eq!(
            check.fit(&message(2, "b"), || -> Result<u64, ()> { unreachable!() }, |_| alice("b")),
            Ok(Fit::Again)
        );
    }

    #[test]
    fn another_message_at_a_seq_or_a_hole_is_divergence() {
        let mut check = AppendCheck::new();
        assert_eq!(
            check.fit(&message(3, "c"), || Ok::<_, ()>(3), |_| alice("not-c")),
            Ok(Fit::Diverged { seq: 3, expected: 4 })
        );
        assert_eq!(
            check.fit(
                &message(6, "f"),
                || -> Result<u64, ()> { unreachable!() },
                |_| -> Stored { unreachable!() }
            ),
            Ok(Fit::Diverged { seq: 6, expected: 4 })
        );
        assert_eq!(
            check.fit(&message(1, "a"), || -> Result<u64, ()> { unreachable!() }, |_| Ok(None)),
            Ok(Fit::Diverged { seq: 1, expected: 4 })
        );
    }
}
