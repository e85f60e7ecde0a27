//! Threads on the wire: a thread is a root message and the replies that name it
//! (`thread` on `send` and on the message). Replies are ordinary messages of the room,
//! with the room's next seq; these are the shapes the thread ops answer with.

use serde::{Deserialize, Serialize};

use crate::frames::Message;
use crate::ids::RoomId;

/// What `history` shows of thread replies that were not also sent to the room.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
#[serde(rename_all = "snake_case")]
pub enum ThreadReplies {
    /// Every message of the room (what clients that know no threads expect).
    #[default]
    Include,
    /// The room's own timeline: roots, messages and replies sent with `also_to_room`.
    Exclude,
}

impl ThreadReplies {
    /// Whether this is the default (left off the wire).
    pub fn is_included(&self) -> bool {
        *self == ThreadReplies::Include
    }
}

/// A root's replies so far (deleted replies do not count).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct ThreadSummary {
    /// How many replies.
    pub count: u32,
    /// The newest reply's seq (0 with none).
    pub last_seq: u64,
    /// The newest reply's time, ms since the Unix epoch (0 with none).
    pub last_at: u64,
}

/// One thread of `thread.list`.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct ThreadInfo {
    /// The root, as `history` shows it (with its `thread_summary`).
    pub root: Message,
    /// The caller's read mark in the thread (0: none).
    pub read: u64,
    /// Replies after the caller's read mark (counted up to 1000; the caller's own reply
    /// moves their mark).
    pub unread: u32,
}

/// Answer to `thread.list`.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct ThreadsOk {
    /// The threads, the most recently replied to first.
    pub threads: Vec<ThreadInfo>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Answer to `thread.history`.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct ThreadHistoryOk {
    /// The thread's root, as `history` shows it.
    pub root: Message,
    /// Replies: newest first (backwards), or oldest first (forwards from `after`).
    pub messages: Vec<Message>,
    /// Pass as `cursor` for the next page in the same direction; absent when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Answer to `thread.read`.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct ThreadReadOk {
    /// The thread's root.
    pub root: u64,
    /// The caller's read mark now.
    pub read: u64,
    /// Replies still unread after it.
    pub unread: u32,
}

/// The `thread` event: a root's summary after a reply was stored or deleted.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct ThreadEvent {
    /// The room.
    pub room: RoomId,
    /// The thread's root.
    pub root: u64,
    /// Its replies now.
    pub summary: ThreadSummary,
}
