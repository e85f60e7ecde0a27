//! Per-room resume position: the last seq delivered, a reorder buffer for messages that
//! arrive ahead of a gap, and the receipt watermarks this client wants and has sent.

use std::collections::BTreeMap;

use palaver_protocol::Message;

/// Where a joined room's subscription stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JoinState {
    /// Must be (re)joined once the connection is ready.
    NeedsJoin,
    /// A `join` is in flight with this wire id.
    Joining { wire_id: u64 },
    /// Subscribed on the current connection.
    Joined,
}

/// One room this client has joined.
#[derive(Debug)]
pub(crate) struct RoomTrack {
    /// The last seq delivered to the application; `None` until the first join answers
    /// (joining "from now on" learns it from `last_seq`).
    pub last: Option<u64>,
    /// The seq the current join's replay runs up to: until `last` reaches it, a missing
    /// seq is still on its way.
    pub replay_to: u64,
    pub join: JoinState,
    /// Messages ahead of `last + 1`, waiting for the gap before them to fill.
    pub held: BTreeMap<u64, Message>,
    /// A `history` request filling a gap: its wire id, `before` and `limit`.
    pub filling: Option<(u64, u64, u32)>,
    /// The receipt watermarks the application wants the server to have.
    pub want_delivered: u64,
    pub want_read: u64,
    /// What the server confirmed (or what was last sent and given up on).
    pub sent_delivered: u64,
    pub sent_read: u64,
    /// A `receipt` in flight.
    pub receipt_in_flight: Option<u64>,
}

/// What accepting one message produced.
#[derive(Debug, Default)]
pub(crate) struct Accepted {
    /// Messages now deliverable, in seq order.
    pub deliver: Vec<Message>,
    /// Messages dropped as duplicates.
    pub duplicates: usize,
}

impl RoomTrack {
    pub(crate) fn new(since: Option<u64>) -> Self {
        RoomTrack {
            last: since,
            replay_to: 0,
            join: JoinState::NeedsJoin,
            held: BTreeMap::new(),
            filling: None,
            want_delivered: 0,
            want_read: 0,
            sent_delivered: 0,
            sent_read: 0,
            receipt_in_flight: None,
        }
    }

    /// Takes one message (live, replayed or from a gap-filling history page) and
    /// returns what is now deliverable: exactly the next seqs, once each, in order.
    pub(crate) fn accept(&mut self, message: Message) -> Accepted {
        let mut out = Accepted::default();
        match self.last {
            Some(last) if message.seq <= last => out.duplicates += 1,
            _ => {
                if self.held.insert(message.seq, message).is_some() {
                    out.duplicates += 1;
                }
            }
        }
        self.drain(&mut out);
        out
    }

    /// Moves every contiguous held message out for delivery.
    fn drain(&mut self, out: &mut Accepted) {
        let Some(mut last) = self.last else { return };
        while let Some(entry) = self.held.first_entry() {
            if *entry.key() <= last {
                entry.remove();
                out.duplicates += 1;
            } else if *entry.key() == last + 1 {
                last += 1;
                out.deliver.push(entry.remove());
            } else {
                break;
            }
        }
        self.last = Some(last);
    }

    /// The join answered: `since` was the position sent, `last_seq` the room's newest.
    /// Returns the messages that became deliverable and whether the room lost messages
    /// the client held (the server's `last_seq` is below the client's position).
    pub(crate) fn joined(&mut self, since: Option<u64>, last_seq: u64) -> (Accepted, bool) {
        let mut out = Accepted::default();
        self.join = JoinState::Joined;
        let reset = since.is_some_and(|s| last_seq < s);
        match since {
            // The replay may have overtaken the answer (over QUIC a room's events travel
            // on their own stream): what was delivered meanwhile stays delivered.
            Some(s) if !reset => {
                self.last = Some(self.last.map_or(s, |l| l.max(s)));
                self.replay_to = last_seq;
            }
            _ => {
                self.last = Some(last_seq);
                self.replay_to = last_seq;
            }
        }
        self.drain(&mut out);
        (out, reset)
    }

    /// The gap to fill, if one is blocking delivery and no replay is still coming:
    /// `(before, limit)` for a `history` request.
    pub(crate) fn gap(&self) -> Option<(u64, u32)> {
        let last = self.last?;
        if self.join != JoinState::Joined || self.filling.is_some() || last < self.replay_to {
            return None;
        }
        let (&first_held, _) = self.held.first_key_value()?;
        let missing = first_held - last - 1;
        Some((first_held, u32::try_from(missing.min(100)).unwrap_or(100)))
    }

    /// A gap-filling history page below `before` answered (newest first; `last_page`:
    /// it had no `next`, so nothing older exists). Seqs the page spans but did not
    /// contain do not exist (lost in `buffered` mode): once the page covers the whole
    /// gap, they are skipped. A page covers down to its oldest message — not to what was
    /// asked for: the server may end a page early to keep replies bounded.
    pub(crate) fn filled(&mut self, before: u64, page: Vec<Message>, last_page: bool) -> Accepted {
        let mut out = Accepted::default();
        let covered_from = if last_page { 1 } else { page.last().map_or(before, |oldest| oldest.seq) };
        for message in page.into_iter().rev() {
            let more = self.accept(message);
            out.deliver.extend(more.deliver);
            out.duplicates += more.duplicates;
        }
        let Some(mut last) = self.last else { return out };
        if covered_from <= last + 1 {
            while let Some(entry) = self.held.first_entry() {
                if *entry.key() >= before {
                    break;
                }
                last = *entry.key();
                out.deliver.push(entry.remove());
            }
            self.last = Some(last.max(before.saturating_sub(1)));
            self.drain(&mut out);
        }
        out
    }

    /// The connection dropped: the subscription is gone; what was held will be replayed.
    pub(crate) fn disconnected(&mut self) {
        self.join = JoinState::NeedsJoin;
        self.held.clear();
        self.filling = None;
        self.receipt_in_flight = None;
    }

    /// The receipt to send now, if the wanted watermarks are ahead of what was sent.
    pub(crate) fn receipt_due(&self) -> Option<(Option<u64>, Option<u64>)> {
        if self.receipt_in_flight.is_some() || self.join != JoinState::Joined {
            return None;
        }
        let delivered = (self.want_delivered > self.sent_delivered).then_some(self.want_delivered);
        let read = (self.want_read > self.sent_read).then_some(self.want_read);
        (delivered.is_some() || read.is_some()).then_some((delivered, read))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use palaver_protocol::{ClientMsgId, MessageKind, RoomId, UserId};

    use super::*;

    pub(crate) fn msg(seq: u64) -> Message {
        Message {
            room: RoomId::parse("r_1").unwrap(),
            seq,
            ts: seq,
            sender: UserId::parse("u_1").unwrap(),
            cid: ClientMsgId::parse(&format!("c{seq}")).unwrap(),
            kind: MessageKind::Text,
            text: format!("m{seq}"),
            client_ts: None,
            reactions: vec![],
            reply_to: None,
            reply: None,
            mentions: vec![],
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

    fn seqs(a: &Accepted) -> Vec<u64> {
        a.deliver.iter().map(|m| m.seq).collect()
    }

    #[test]
    fn delivers_in_order_once_and_holds_what_runs_ahead() {
        let mut r = RoomTrack::new(Some(2));
        r.join = JoinState::Joined;
        assert_eq!(seqs(&r.accept(msg(2))), Vec::<u64>::new());
        assert_eq!(seqs(&r.accept(msg(3))), vec![3]);
        assert_eq!(seqs(&r.accept(msg(5))), Vec::<u64>::new());
        assert_eq!(r.gap(), Some((5, 1)));
        assert_eq!(seqs(&r.accept(msg(4))), vec![4, 5]);
        assert_eq!(r.accept(msg(4)).duplicates, 1);
        assert_eq!(r.gap(), None);
    }

    #[test]
    fn no_gap_is_reported_while_the_replay_is_still_coming() {
        let mut r = RoomTrack::new(Some(1));
        let (out, reset) = r.joined(Some(1), 10);
        assert!(out.deliver.is_empty() && !reset);
        r.accept(msg(4));
        assert_eq!(r.gap(), None, "seqs 2..=10 are being replayed");
    }

    #[test]
    fn a_replay_that_overtakes_the_join_answer_is_delivered_once() {
        let mut r = RoomTrack::new(Some(270));
        r.join = JoinState::Joining { wire_id: 7 };
        assert_eq!(seqs(&r.accept(msg(271))), vec![271]);
        assert_eq!(seqs(&r.accept(msg(272))), vec![272]);
        let (out, reset) = r.joined(Some(270), 272);
        assert!(out.deliver.is_empty() && !reset);
        assert_eq!(r.last, Some(272));
        assert_eq!(r.accept(msg(271)).duplicates, 1);
        assert_eq!(seqs(&r.accept(msg(273))), vec![273]);
        assert_eq!(r.gap(), None);
    }

    #[test]
    fn a_server_behind_the_client_is_a_reset() {
        let mut r = RoomTrack::new(Some(9));
        let (_, reset) = r.joined(Some(9), 5);
        assert!(reset);
        assert_eq!(r.last, Some(5));
        assert_eq!(seqs(&r.accept(msg(6))), vec![6]);
    }

    #[test]
    fn a_fill_page_missing_seqs_proves_they_are_gone() {
        let mut r = RoomTrack::new(Some(3));
        r.join = JoinState::Joined;
        r.accept(msg(7));
        let (before, limit) = r.gap().unwrap();
        assert_eq!((before, limit), (7, 3));
        r.filling = Some((1, 7, 3));
        let out = r.filled(7, vec![msg(5)], true);
        r.filling = None;
        // 4 and 6 are gone; 5 and 7 are delivered.
        assert_eq!(seqs(&out), vec![5, 7]);
        assert_eq!(r.last, Some(7));
    }
}
