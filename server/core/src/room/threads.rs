//! Threads: a reply names a root message of the same room (`thread`) and is otherwise an
//! ordinary message with the room's next seq, so resuming, `sync`, the cluster log and
//! replicas see nothing new. Threads are one level deep. These are the rules; the owner
//! looks messages up and keeps each root's summary.

use palaver_protocol::{Message, MessageKind, ThreadSummary};

use crate::error::CoreError;

/// At most this many replies are counted as unread in one thread (`thread.list`,
/// `thread.read`): a client shows "1000+" past it.
pub const MAX_THREAD_UNREAD_COUNT: u32 = 1000;

/// Checks that message `root_seq` (`root`, as the room has it now; `None` when the room
/// holds no such message) can take a reply: stored, not deleted, not a notice, and not a
/// reply itself.
pub fn check_thread_root(root_seq: u64, root: Option<&Message>) -> Result<(), CoreError> {
    let Some(root) = root else { return Err(CoreError::NoThreadRoot(root_seq)) };
    if root.deleted {
        return Err(CoreError::ThreadRootDeleted(root_seq));
    }
    if root.thread.is_some() {
        return Err(CoreError::NestedThread(root_seq));
    }
    if root.kind == MessageKind::System {
        return Err(CoreError::Mismatched("threads do not start on system messages"));
    }
    Ok(())
}

/// Checks that a thread reply's `reply_to` (`parent`) is in the same thread: its root or
/// one of its replies.
pub fn check_reply_in_thread(root_seq: u64, parent: &Message) -> Result<(), CoreError> {
    if parent.seq == root_seq || parent.thread == Some(root_seq) {
        Ok(())
    } else {
        Err(CoreError::ReplyOutsideThread { parent: parent.seq, root: root_seq })
    }
}

/// A root's summary once reply `seq` (stored at `ts`) is added.
pub fn summary_with_reply(before: Option<ThreadSummary>, seq: u64, ts: u64) -> ThreadSummary {
    let count = before.map_or(0, |s| s.count).saturating_add(1);
    ThreadSummary { count, last_seq: seq, last_at: ts }
}

/// A root's summary once its reply `seq` is deleted; `newest_left` is the newest reply
/// still there (`(seq, ts)`), needed only when the deleted reply was the newest.
pub fn summary_without_reply(
    before: ThreadSummary,
    seq: u64,
    newest_left: Option<(u64, u64)>,
) -> ThreadSummary {
    let count = before.count.saturating_sub(1);
    if count == 0 {
        return ThreadSummary { count: 0, last_seq: 0, last_at: 0 };
    }
    if before.last_seq != seq {
        return ThreadSummary { count, ..before };
    }
    let (last_seq, last_at) = newest_left.unwrap_or((0, 0));
    ThreadSummary { count, last_seq, last_at }
}

/// Whether a message is part of the room's own timeline: anything but a thread reply
/// that was not also sent to the room. Only those count toward the room's unread count.
pub fn in_room_timeline(message: &Message) -> bool {
    message.thread.is_none() || message.also_to_room
}

/// Where a reader's read mark in a thread goes when they say they read up to `asked`:
/// never back, and never past the thread's newest reply.
pub fn moved_thread_read(current: u64, asked: u64, summary: Option<ThreadSummary>) -> u64 {
    let newest = summary.map_or(0, |s| s.last_seq);
    current.max(asked.min(newest))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

    use palaver_protocol::{ClientMsgId, ErrorCode, RoomId, UserId};

    use super::*;

    fn message(seq: u64) -> Message {
        Message {
            room: RoomId::parse("r_t").unwrap(),
            seq,
            ts: seq * 10,
            sender: UserId::parse("u_ann").unwrap(),
            cid: ClientMsgId::parse("c").unwrap(),
            kind: MessageKind::Text,
            text: "hello".into(),
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
            thread: None,
            also_to_room: false,
            thread_summary: None,
        }
    }

    #[test]
    fn a_thread_starts_on_a_live_plain_message_and_is_one_level_deep() {
        assert!(check_thread_root(1, Some(&message(1))).is_ok());
        let code = |seq, m: Option<Message>| check_thread_root(seq, m.as_ref()).unwrap_err().code();
        assert_eq!(code(9, None), ErrorCode::NotFound);
        assert_eq!(code(1, Some(Message { deleted: true, ..message(1) })), ErrorCode::NotFound);
        assert_eq!(code(2, Some(Message { thread: Some(1), ..message(2) })), ErrorCode::Invalid);
        assert_eq!(code(1, Some(Message { kind: MessageKind::System, ..message(1) })), ErrorCode::Invalid);
        let nested = check_thread_root(2, Some(&Message { thread: Some(1), ..message(2) })).unwrap_err();
        assert!(nested.to_string().contains("one level"), "{nested}");
    }

    #[test]
    fn a_reply_in_a_thread_replies_to_its_root_or_one_of_its_replies() {
        assert!(check_reply_in_thread(1, &message(1)).is_ok());
        assert!(check_reply_in_thread(1, &Message { thread: Some(1), ..message(3) }).is_ok());
        let outside = check_reply_in_thread(1, &message(2)).unwrap_err();
        assert_eq!(outside.code(), ErrorCode::Invalid);
        let other = check_reply_in_thread(1, &Message { thread: Some(4), ..message(5) }).unwrap_err();
        assert_eq!(other.code(), ErrorCode::Invalid);
    }

    #[test]
    fn summaries_count_live_replies_and_follow_the_newest() {
        let one = summary_with_reply(None, 2, 20);
        assert_eq!(one, ThreadSummary { count: 1, last_seq: 2, last_at: 20 });
        let two = summary_with_reply(Some(one), 5, 50);
        assert_eq!(two, ThreadSummary { count: 2, last_seq: 5, last_at: 50 });
        // Deleting an older reply keeps the newest.
        assert_eq!(summary_without_reply(two, 2, None), ThreadSummary { count: 1, last_seq: 5, last_at: 50 });
        // Deleting the newest falls back to the newest left.
        assert_eq!(
            summary_without_reply(two, 5, Some((2, 20))),
            ThreadSummary { count: 1, last_seq: 2, last_at: 20 }
        );
        // The last reply gone: an empty summary.
        assert_eq!(summary_without_reply(one, 2, None), ThreadSummary { count: 0, last_seq: 0, last_at: 0 });
    }

    #[test]
    fn only_replies_kept_in_their_thread_stay_out_of_the_room_timeline() {
        assert!(in_room_timeline(&message(1)));
        assert!(!in_room_timeline(&Message { thread: Some(1), ..message(2) }));
        assert!(in_room_timeline(&Message { thread: Some(1), also_to_room: true, ..message(3) }));
    }

    #[test]
    fn a_thread_read_mark_moves_forward_up_to_the_newest_reply() {
        let summary = Some(ThreadSummary { count: 2, last_seq: 7, last_at: 70 });
        assert_eq!(moved_thread_read(0, 5, summary), 5);
        assert_eq!(moved_thread_read(5, 3, summary), 5);
        assert_eq!(moved_thread_read(5, 99, summary), 7);
        assert_eq!(moved_thread_read(0, 3, None), 0);
    }
}
