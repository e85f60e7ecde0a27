//! What the owner decided, as plain data for the driver to carry out: writes to commit
//! (each with what to do when storage has judged them), answers, events for the room's
//! subscribers and notices for users. One buffer, reused: the driver drains it after each
//! call and its vectors keep their capacity.

use palaver_protocol::{Event, Message, ReplyBody, RoomId, UserId};

use crate::records::Write;

/// Where a subscription to the room's events starts, for the socket that joined.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Subscribe {
    /// The room.
    pub room: RoomId,
    /// Events with seq above this go to the socket (older ones are replayed first).
    pub cursor: u64,
    /// The newest durable seq when it joined.
    pub last_seq: u64,
}

/// What an answer does to the asking socket's subscriptions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Subscription {
    /// Nothing.
    #[default]
    Unchanged,
    /// The answer to a `join` (ok or not: the asker's pending-join count drops); on
    /// success, the subscription to start.
    Joined(Option<Subscribe>),
    /// The socket's subscription to the room ends (`leave`).
    Left,
}

/// An answer to one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer<A> {
    /// Who asked.
    pub to: A,
    /// The reply.
    pub body: ReplyBody,
    /// Its effect on the asker's subscriptions.
    pub subscription: Subscription,
}

impl<A> Answer<A> {
    /// An answer that changes no subscription.
    pub fn plain(to: A, body: ReplyBody) -> Self {
        Answer { to, body, subscription: Subscription::Unchanged }
    }
}

/// What follows a durable `system` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterNotice {
    /// Nothing more.
    Nothing,
    /// The target's subscriptions end (kicked, banned).
    RemoveMember(UserId),
    /// The room is gone: every subscription ends and the owner is forgotten.
    DeleteRoom,
}

/// What the owner is to be told, with storage's verdict, when a commit settles.
#[derive(Debug, Clone, PartialEq)]
pub enum Settle<A> {
    /// A new message: when durable it is delivered and its senders answered.
    Message(Box<Message>),
    /// A `system` message, then `then`.
    Notice {
        /// The notice.
        message: Box<Message>,
        /// What follows it.
        then: AfterNotice,
    },
    /// Any other write: answer when durable, then announce `event` to the room if given.
    Answer {
        /// The answer (replaced by the storage error when the write fails).
        answer: Answer<A>,
        /// An event for the room's subscribers once durable.
        announce: Option<Box<Event>>,
        /// Users to tell once durable.
        notify: Vec<UserNotice>,
        /// A rewritten message whose pending version settles with this.
        rewrote: Option<u64>,
        /// A file whose bytes go once this is durable (its message was deleted).
        then_delete_file: Option<String>,
    },
    /// A member's thread read mark moved: answer when durable.
    ThreadRead {
        /// The answer (replaced by the storage error when the write fails).
        answer: Answer<A>,
        /// Whose mark.
        user: UserId,
        /// The thread's root.
        root: u64,
    },
    /// A reaction change: when durable, count, answer and announce it.
    Reaction {
        /// Who asked.
        to: A,
        /// The reacting user.
        user: UserId,
        /// The message.
        seq: u64,
        /// The emoji.
        emoji: String,
        /// Added (true) or removed (false).
        added: bool,
    },
}

impl<A> Settle<A> {
    /// Answer `answer` once the writes are durable.
    pub fn answer(answer: Answer<A>) -> Self {
        Settle::Answer { answer, announce: None, notify: Vec::new(), rewrote: None, then_delete_file: None }
    }

    /// And announce `event` to the room's subscribers.
    #[must_use]
    pub fn announcing(mut self, event: Event) -> Self {
        if let Settle::Answer { announce, .. } = &mut self {
            *announce = Some(Box::new(event));
        }
        self
    }

    /// And settle the pending rewrite of message `seq`.
    #[must_use]
    pub fn rewriting(mut self, seq: u64) -> Self {
        if let Settle::Answer { rewrote, .. } = &mut self {
            *rewrote = Some(seq);
        }
        self
    }
}

/// Writes for group commit, and what to tell the owner when they settle.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit<A> {
    /// The writes, applied atomically.
    pub writes: Vec<Write>,
    /// Handed back to [`super::RoomOwner::on_committed`].
    pub settle: Settle<A>,
}

/// An event for every live subscriber of the room (never stored, never replayed).
#[derive(Debug, Clone, PartialEq)]
pub struct Announcement {
    /// The event.
    pub event: Event,
    /// A user whose own sockets do not get it (the typist).
    pub skip: Option<UserId>,
}

/// Something for one user's sockets wherever they are (an invitation).
#[derive(Debug, Clone, PartialEq)]
pub struct UserNotice {
    /// The user.
    pub user: UserId,
    /// The event.
    pub event: Event,
}

/// Subscriptions that end at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Every socket of this user stops receiving the room's events.
    Member(UserId),
    /// The room is gone: every subscription ends.
    Room,
}

/// What one call decided, in the order it must happen within each kind.
#[derive(Debug)]
pub struct Effects<A> {
    /// Writes to submit to group commit.
    pub commits: Vec<Commit<A>>,
    /// Answers to send now.
    pub answers: Vec<Answer<A>>,
    /// Durable messages to deliver to the room's subscribers, in seq order.
    pub deliveries: Vec<Message>,
    /// Ephemeral events for the room's subscribers.
    pub announcements: Vec<Announcement>,
    /// Notices for users.
    pub notices: Vec<UserNotice>,
    /// Subscriptions to end.
    pub endings: Vec<Ending>,
    /// Files whose bytes are to be deleted (their message was).
    pub deleted_files: Vec<String>,
    /// The owner is done: forget it (the room was deleted).
    pub forget: bool,
}

impl<A> Default for Effects<A> {
    fn default() -> Self {
        Effects {
            commits: Vec::new(),
            answers: Vec::new(),
            deliveries: Vec::new(),
            announcements: Vec::new(),
            notices: Vec::new(),
            endings: Vec::new(),
            deleted_files: Vec::new(),
            forget: false,
        }
    }
}

impl<A> Effects<A> {
    /// Whether nothing was decided.
    pub fn is_empty(&self) -> bool {
        self.commits.is_empty()
            && self.answers.is_empty()
            && self.deliveries.is_empty()
            && self.announcements.is_empty()
            && self.notices.is_empty()
            && self.endings.is_empty()
            && self.deleted_files.is_empty()
            && !self.forget
    }
}
