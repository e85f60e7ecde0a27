//! The owner of one room, as a state machine. It is the room's single writer: every
//! command on the room comes here, is decided by the room's rules ([`Room`]), and comes
//! out as [`Effects`] — writes to commit, answers, events for the room's subscribers,
//! notices for users — plain data the driver carries out. It never touches a socket, a
//! clock or a storage handle: time is an argument, and what it must know about the world
//! it asks through [`Lookups`].
//!
//! Writes are decided before they are durable. The owner keeps what it decided and
//! storage has not confirmed yet — messages being appended (their seqs), messages being
//! rewritten, reactions being changed, files being shared — and reads its own pending
//! state before storage's, so a command never acts on a version the room has already
//! replaced (an edit racing a delete sees the tombstone). When storage refuses a write,
//! the room's memory is ahead of its storage: the owner refuses everything until its
//! writes in flight have settled, then the driver loads it again
//! ([`RoomOwner::needs_reload`]).

mod effects;
mod lookups;
#[cfg(test)]
mod simulation;
#[cfg(test)]
mod tests;
mod words;

use std::collections::{BTreeSet, HashMap, VecDeque};

use palaver_protocol::paging::{self, PageBuilder};
use palaver_protocol::{
    ClientMsgId, Delete, Edit, EditOk, EditVersion, EditsOk, Empty, Encryption, ErrorBody, ErrorCode, Event,
    FileRef, ForwardRef, HistoryOk, InviteInfo, JoinOk, MemberChange, MemberEvent, MemberInfo, MemberReceipt,
    MembersOk, MentionAll, Message, MessageKind, OkBody, PinInfo, PinsOk, PresenceStatus, Reaction,
    ReactionOk, Receipt, ReceiptListOk, ReceiptOk, ReplyBody, ReplyPreview, RoomDetailsOk, RoomId, RoomKind,
    RoomOk, RoomSettingsPatch, SendOk, SystemAction, SystemNotice, ThreadEvent, ThreadHistoryOk, ThreadInfo,
    ThreadReadOk, ThreadReplies, ThreadSummary, ThreadsOk, Typing, UserId, limits,
};

pub use effects::{
    AfterNotice, Announcement, Answer, Commit, Effects, Ending, Settle, Subscribe, Subscription, UserNotice,
};
pub use lookups::{Found, LookupError, Lookups};
pub use words::{duration_words, notice_text};

use serde::{Deserialize, Serialize};

use crate::error::Throttled;
use crate::records::{ActionRecord, FileRecord, RoomRecord, Write};
use crate::role::Role;
use crate::room::{
    Announcing, Draft, HistoryRequest, HistoryWindow, MAX_THREAD_UNREAD_COUNT, Pin, Room, RoomLimits,
    SendOutcome, TypingChange, check_forwardable, check_reply_in_thread, check_thread_root,
    forwarded_content, in_room_timeline, may_read_room, moved_thread_read, summary_with_reply,
    summary_without_reply,
};
use crate::route::RoomRequest;
use crate::{CoreError, Governance, Moderation};

/// How much of a parent message a reply shows.
pub const REPLY_EXCERPT_CHARS: usize = 100;

/// The operator's settings the owner needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerConfig {
    /// Limits every room is built with.
    pub room: RoomLimits,
    /// The most rooms one user may own.
    pub max_rooms_per_user: usize,
}

/// A group room to create: the id the driver drew, and what `room.create` asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewRoom {
    /// The new room's id.
    pub id: RoomId,
    /// Name, kind, topic and settings.
    pub request: RoomRequest,
}

/// A room as storage holds it: what loading it reads.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRoom {
    /// Its record.
    pub record: RoomRecord,
    /// Its members and their roles.
    pub members: Vec<(UserId, Role)>,
    /// The newest stored message's seq and time, if any.
    pub newest: Option<(u64, u64)>,
    /// Members' `(delivered, read)` watermarks, raised by their own newest messages
    /// ([`crate::records::sender_receipts`]).
    pub receipts: Vec<(UserId, u64, u64)>,
    /// The members whose watermarks in `receipts` are derived from their messages, ahead
    /// of what is written.
    pub unstored_receipts: Vec<UserId>,
    /// Banned users.
    pub bans: Vec<UserId>,
    /// Muted members with when each mute ends.
    pub mutes: Vec<(UserId, u64)>,
    /// Invited users.
    pub invites: Vec<UserId>,
    /// Pinned messages: `(seq, by, at)`.
    pub pins: Vec<(u64, UserId, u64)>,
    /// The oldest seq kept (1: retention removed nothing).
    pub history_floor: u64,
}

/// A direct room to create between two users.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDirect {
    /// The room's id (derived from the pair).
    pub id: RoomId,
    /// Who opened it.
    pub caller: UserId,
    /// With whom.
    pub peer: UserId,
}

/// A message to send, as the client gave it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outgoing {
    /// Idempotency key (the sender's).
    pub cid: ClientMsgId,
    /// Kind.
    pub kind: MessageKind,
    /// Body.
    pub text: String,
    /// Client timestamp to echo.
    pub client_ts: Option<u64>,
    /// The message it replies to.
    pub reply_to: Option<u64>,
    /// The shared file (image and file kinds).
    pub file: Option<Box<FileRef>>,
    /// How an encrypted body was encrypted.
    pub encryption: Option<Box<Encryption>>,
    /// A forward's original.
    pub forward: Option<Box<ForwardRef>>,
    /// A thread reply: its root.
    pub thread: Option<u64>,
    /// A thread reply also in the room's timeline.
    pub also_to_room: bool,
}

/// A request on a room that exists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RoomOp {
    /// Join (or re-subscribe), replaying after `since`.
    Join {
        /// The last seq the client holds.
        since: Option<u64>,
    },
    /// Leave.
    Leave,
    /// Send a message.
    Send(Box<Outgoing>),
    /// Edit one of the caller's messages.
    Edit {
        /// The message.
        seq: u64,
        /// The new text.
        text: String,
    },
    /// A page of a message's earlier texts.
    EditList {
        /// The message.
        seq: u64,
        /// Page size.
        limit: Option<u32>,
        /// The previous page's `next`.
        cursor: Option<String>,
    },
    /// Pin (`on`) or unpin a message.
    Pin {
        /// The message.
        seq: u64,
        /// Pin or unpin.
        on: bool,
    },
    /// A page of the pinned messages.
    PinList {
        /// Page size.
        limit: Option<u32>,
        /// The previous page's `next`.
        cursor: Option<String>,
    },
    /// Who read (or had delivered) a message.
    ReceiptList {
        /// The message.
        seq: u64,
        /// Deliveries instead of reads.
        delivered: bool,
        /// Page size.
        limit: Option<u32>,
        /// The previous page's `next`.
        cursor: Option<String>,
    },
    /// Delete a message (tombstone).
    Delete {
        /// The message.
        seq: u64,
    },
    /// Add or remove the caller's reaction.
    React {
        /// The message.
        seq: u64,
        /// The emoji.
        emoji: String,
        /// Add (true) or remove (false).
        add: bool,
    },
    /// Start or stop typing.
    Typing {
        /// Started (true) or stopped (false).
        active: bool,
    },
    /// Move the caller's watermarks.
    Receipt {
        /// New delivered watermark.
        delivered: Option<u64>,
        /// New read watermark.
        read: Option<u64>,
    },
    /// A page of history.
    History(HistoryRequest),
    /// A page of one thread's replies.
    ThreadHistory {
        /// The root.
        root: u64,
        /// Paging.
        request: HistoryRequest,
    },
    /// A page of the room's threads, the most recently replied to first.
    ThreadList {
        /// Page size.
        limit: Option<u32>,
        /// The previous page's `next`.
        cursor: Option<String>,
    },
    /// Move the caller's read mark in a thread.
    ThreadRead {
        /// The root.
        root: u64,
        /// The newest reply read.
        seq: u64,
    },
    /// The room's details.
    Get,
    /// Change name, topic or settings.
    Update {
        /// New name.
        name: Option<String>,
        /// New topic.
        topic: Option<String>,
        /// Settings to change.
        settings: Option<RoomSettingsPatch>,
    },
    /// Delete the room.
    DeleteRoom,
    /// Delete the room on a server admin's authority: no room role needed (the driver
    /// checked the admin role; no client op routes here).
    DeleteRoomByAdmin,
    /// A page of members.
    Members {
        /// Page size.
        limit: Option<u32>,
        /// The previous page's `next`.
        cursor: Option<String>,
    },
    /// Invite a user.
    Invite {
        /// The invitee.
        user: UserId,
    },
    /// Decline the caller's invitation.
    Decline,
    /// A moderation action on a user.
    Moderate {
        /// The target.
        user: UserId,
        /// What.
        action: Moderation,
    },
    /// `dm.open` of this direct room by one of its pair.
    OpenDirect,
    /// An announcement by the operator's backend, posted as the system (the driver
    /// asks as [`UserId::system`] for an API key with `publish`; no client op routes
    /// here).
    Announce(Box<Announcing>),
    /// Retention: the room's history starts at `floor` from now on, as the sweeper
    /// decided from the stored messages under the room's stored retention `seen` (no
    /// client op routes here).
    TrimHistory {
        /// The oldest seq kept.
        floor: u64,
        /// The room's own retention as the sweep read it.
        seen: Option<palaver_protocol::RoomRetention>,
    },
}

/// The owner of one room. `A` is whatever the driver needs to route an answer back.
#[derive(Debug)]
pub struct RoomOwner<A> {
    room: Room,
    /// Where the room's subscribers are (the driver's shards or nodes), so deliveries
    /// reach them all.
    sites: BTreeSet<usize>,
    /// Answers that wait for a seq to become durable, in seq order (reused: a send adds
    /// one at the end, its commit takes it from the front).
    waiting: Waiting<A>,
    /// Commits submitted and not yet settled.
    in_flight: usize,
    /// A write was refused: memory is ahead of storage.
    poisoned: bool,
    /// Being deleted: everything is refused.
    deleting: bool,
    /// Messages rewritten by writes in flight: their newest version, and how many.
    rewrites: HashMap<u64, (Message, u32)>,
    /// Reaction changes in flight: whether the reaction is there after them, and how many.
    reactions: HashMap<(u64, String, UserId), (bool, u32)>,
    /// Files being shared by messages in flight, with their sender and cid.
    sharing: HashMap<String, (UserId, ClientMsgId)>,
    /// Thread summaries changed by writes in flight: the newest, and how many.
    threads: HashMap<u64, (ThreadSummary, u32)>,
    /// Thread read marks moved by writes in flight, by `(member, root)`: the newest, and
    /// how many (so a second `thread.read` never moves a mark back).
    thread_reads: HashMap<(UserId, u64), (u64, u32)>,
    /// When a command last came (ms since the epoch).
    last_used_ms: u64,
}

/// An error answer.
fn refusal(code: ErrorCode, message: impl Into<String>) -> ReplyBody {
    ReplyBody::Err(ErrorBody::new(code, message))
}

/// A rule's refusal as an answer.
pub(crate) fn refused(e: &CoreError) -> ReplyBody {
    ReplyBody::Err(e.to_body())
}

/// A lookup that failed, as an answer: the one mapping of storage trouble to the wire.
pub fn lookup_failed(e: &LookupError) -> ReplyBody {
    match e {
        LookupError::Unavailable => {
            refusal(ErrorCode::Unavailable, "storage is not taking requests now; try again later")
        }
        LookupError::Unknown => refusal(
            ErrorCode::Unknown,
            "the cluster log did not answer: this may or may not be stored; retry it as it was",
        ),
        LookupError::Failed(_) => refusal(ErrorCode::Internal, "storage failure"),
    }
}

/// A throttle's refusal, to retry after `wait_ms`.
pub(crate) fn throttled(what: Throttled, wait_ms: u64) -> ReplyBody {
    refused(&CoreError::Throttled { what, retry_after_ms: wait_ms })
}

fn ok(body: OkBody) -> ReplyBody {
    ReplyBody::Ok(body)
}

fn empty() -> ReplyBody {
    ok(OkBody::Empty(Empty {}))
}

fn sent(seq: u64, ts: u64, duplicate: bool) -> ReplyBody {
    ok(OkBody::Sent(SendOk { seq, ts, duplicate }))
}

fn member_event(room: &RoomId, user: &UserId, change: MemberChange, role: Role) -> Event {
    Event::Member(MemberEvent { room: room.clone(), user: user.clone(), change, role })
}

/// Everyone a message's mention index may name: its mentions, and for a room-wide mention
/// every member (removing an entry that is not there is harmless).
fn mentioned_users(message: &Message, room: &Room) -> Vec<UserId> {
    let mut users = message.mentions.clone();
    if message.mention_all.is_some() {
        users.extend(room.member_ids().into_iter().filter(|u| !message.mentions.contains(u)));
    }
    users
}

/// Runs a step that answers with a refusal: `Err(body)` is the answer.
type Step<T> = Result<T, ReplyBody>;

/// A lookup inside a step.
fn found<T>(result: Found<T>) -> Step<T> {
    result.map_err(|e| lookup_failed(&e))
}

impl<A: Clone> RoomOwner<A> {
    /// The owner of a room loaded from storage (or just created).
    pub fn restore(room: Room, now_ms: u64) -> Self {
        RoomOwner {
            room,
            sites: BTreeSet::new(),
            waiting: Waiting::default(),
            in_flight: 0,
            poisoned: false,
            deleting: false,
            rewrites: HashMap::new(),
            reactions: HashMap::new(),
            sharing: HashMap::new(),
            threads: HashMap::new(),
            thread_reads: HashMap::new(),
            last_used_ms: now_ms,
        }
    }

    /// The owner of a stored room at `now_ms` (mutes that ended meanwhile are gone), or
    /// `None` for a deleted room: the one way a room comes back into memory, after a
    /// restart, an unload or a refused write.
    pub fn load(stored: StoredRoom, limits: RoomLimits, now_ms: u64) -> Option<Self> {
        let StoredRoom {
            record,
            members,
            newest,
            receipts,
            unstored_receipts,
            bans,
            mutes,
            invites,
            pins,
            history_floor,
        } = stored;
        if record.deleted {
            return None;
        }
        let (last_seq, last_ts) = newest.unwrap_or((0, 0));
        let mut room =
            Room::restore(record.room_id, record.name, record.kind, members, last_seq, last_ts, limits);
        room.load_receipts(receipts);
        room.load_unstored_receipts(unstored_receipts);
        room.load_history_floor(history_floor);
        room.load_governance(Governance {
            topic: record.topic,
            settings: record.settings,
            bans,
            mutes,
            invites,
            pins,
        });
        room.expire_mutes(now_ms);
        Some(RoomOwner::restore(room, now_ms))
    }

    /// `room.create` by `creator`: the new room's owner, or `None` with the refusal in
    /// `fx`.
    pub fn create(
        now_ms: u64,
        asker: A,
        creator: &UserId,
        new: NewRoom,
        config: OwnerConfig,
        lookups: &impl Lookups,
        fx: &mut Effects<A>,
    ) -> Option<Self> {
        let decided = (|| -> Step<Room> {
            lookups
                .take_room_creation(creator, now_ms)
                .map_err(|wait| throttled(Throttled::RoomCreation, wait))?;
            let max = config.max_rooms_per_user;
            if found(lookups.owned_rooms(creator, max))? >= max {
                return Err(refused(&CoreError::OwnedRoomsCap { max }));
            }
            let NewRoom { id, request: RoomRequest { name, kind, topic, settings } } = new;
            Room::create_with(id, name, kind, creator.clone(), topic, settings, config.room)
                .map_err(|e| refused(&e))
        })();
        let room = match decided {
            Ok(room) => room,
            Err(body) => {
                fx.answers.push(Answer::plain(asker, body));
                return None;
            }
        };
        let info = room.info();
        let writes = vec![
            Write::PutRoom(RoomRecord {
                room_id: info.room_id.clone(),
                name: info.name.clone(),
                kind: info.kind,
                owner: creator.clone(),
                created_ms: now_ms,
                topic: info.topic.clone(),
                settings: Some(room.settings()),
                deleted: false,
            }),
            Write::PutMember { room: info.room_id.clone(), user: creator.clone(), role: Role::Owner },
        ];
        let mut owner = RoomOwner::restore(room, now_ms);
        let answer = Answer::plain(asker, ok(OkBody::Room(RoomOk { room: info })));
        owner.commit(fx, writes, Settle::answer(answer));
        Some(owner)
    }

    /// `dm.open` of a direct room that does not exist yet: creates it for `caller` and
    /// `peer` (the driver checked neither blocked the other and that the room is new).
    pub fn open_direct(
        now_ms: u64,
        asker: A,
        new: NewDirect,
        config: OwnerConfig,
        lookups: &impl Lookups,
        fx: &mut Effects<A>,
    ) -> Option<Self> {
        let NewDirect { id, caller, peer } = new;
        let (caller, peer) = (&caller, &peer);
        let decided = (|| -> Step<()> {
            if caller == peer {
                return Err(refused(&CoreError::Oneself("a direct room needs another user")));
            }
            if found(lookups.is_blocked(peer, caller))? {
                return Err(refused(&CoreError::RefusesDirectMessages(peer.clone())));
            }
            if found(lookups.username(peer))?.is_none() {
                return Err(refused(&CoreError::NoSuchUser(peer.clone())));
            }
            // A new direct room with someone who is not a friend is unsolicited.
            if found(lookups.friendship(caller, peer))? != palaver_protocol::FriendState::Friends {
                lookups
                    .take_stranger_direct_room(caller, peer, now_ms)
                    .map_err(|wait| throttled(Throttled::StrangerDirectRooms, wait))?;
            }
            Ok(())
        })();
        if let Err(body) = decided {
            fx.answers.push(Answer::plain(asker, body));
            return None;
        }
        let room = Room::direct(id.clone(), caller.clone(), peer.clone(), config.room);
        let info = room.info();
        let mut writes = vec![Write::PutRoom(RoomRecord {
            room_id: id.clone(),
            name: info.name.clone(),
            kind: info.kind,
            owner: caller.clone(),
            created_ms: now_ms,
            topic: String::new(),
            settings: None,
            deleted: false,
        })];
        for user in [caller, peer] {
            writes.push(Write::PutMember { room: id.clone(), user: user.clone(), role: Role::Member });
        }
        let mut owner = RoomOwner::restore(room, now_ms);
        let answer = Answer::plain(asker, ok(OkBody::Room(RoomOk { room: info })));
        owner.commit(fx, writes, Settle::answer(answer));
        Some(owner)
    }

    /// The room's rules and state.
    pub fn room(&self) -> &Room {
        &self.room
    }

    /// Where the room's subscribers are.
    pub fn sites(&self) -> &BTreeSet<usize> {
        &self.sites
    }

    /// A site has subscribers now (the driver tells, e.g. on a join relayed elsewhere).
    pub fn add_site(&mut self, site: usize) {
        self.sites.insert(site);
    }

    /// A site has no subscriber left.
    pub fn remove_site(&mut self, site: usize) {
        self.sites.remove(&site);
    }

    /// Takes over the sites of an earlier owner of the room (reloaded after a refusal,
    /// or handed over in a cluster).
    pub fn adopt_sites(&mut self, sites: impl IntoIterator<Item = usize>) {
        self.sites.extend(sites);
    }

    /// Whether a refused write left memory ahead of storage and nothing is in flight any
    /// more: the driver loads the room again (keeping its sites).
    pub fn needs_reload(&self) -> bool {
        self.poisoned && self.in_flight == 0
    }

    /// The room's memory is known to be stale (another writer stored to it, or it is
    /// moving away): refuse everything, and be loaded again once nothing is in flight.
    pub fn poison(&mut self) {
        self.poisoned = true;
    }

    /// Whether nothing this owner submitted is still in flight.
    pub fn is_settled(&self) -> bool {
        self.in_flight == 0
    }

    /// Whether the room may leave memory at `now_ms` after `idle_ms` without use: nothing
    /// ties it there (no subscriber site, nothing in flight or waiting, nothing the room
    /// holds only in memory).
    pub fn is_idle(&self, now_ms: u64, idle_ms: u64) -> bool {
        now_ms.saturating_sub(self.last_used_ms) >= idle_ms
            && self.sites.is_empty()
            && self.waiting.is_empty()
            && self.in_flight == 0
            && !self.deleting
            && !self.poisoned
            && self.room.is_forgettable(now_ms)
    }

    fn commit(&mut self, fx: &mut Effects<A>, mut writes: Vec<Write>, settle: Settle<A>) {
        // A message appended may push the oldest one that senders' watermarks are derived
        // from out of storage's tail: those watermarks go in the same batch.
        let trim_floor = writes.iter().find_map(|w| match w {
            Write::TrimHistory { floor, .. } => Some(*floor),
            _ => None,
        });
        // Trimming may remove the only messages some watermarks are derived from.
        if let Some(floor) = trim_floor {
            let due = self.room.sender_receipts_due_before_trim(floor);
            let room = self.room.id();
            writes.extend(due.into_iter().map(|(user, delivered, read)| Write::PutReceipt {
                room: room.clone(),
                user,
                delivered,
                read,
            }));
        }
        if writes.iter().any(|w| matches!(w, Write::AppendMessage(_))) {
            let due = self.room.due_sender_receipts();
            let room = self.room.id();
            writes.extend(due.into_iter().map(|(user, delivered, read)| Write::PutReceipt {
                room: room.clone(),
                user,
                delivered,
                read,
            }));
        }
        self.in_flight += 1;
        fx.commits.push(Commit { writes, settle });
    }

    /// Handles one request by `user` on this room.
    pub fn handle(
        &mut self,
        now_ms: u64,
        asker: A,
        user: &UserId,
        op: RoomOp,
        lookups: &impl Lookups,
        fx: &mut Effects<A>,
    ) {
        self.last_used_ms = now_ms;
        let joining = matches!(op, RoomOp::Join { .. });
        if self.deleting || self.poisoned {
            let body = if self.deleting {
                refused(&CoreError::NoSuchRoom(self.room.id().clone()))
            } else {
                refused(&CoreError::Recovering)
            };
            let subscription = if joining { Subscription::Joined(None) } else { Subscription::Unchanged };
            fx.answers.push(Answer { to: asker, body, subscription });
            return;
        }
        let result = match op {
            RoomOp::Join { since } => self.join(asker.clone(), user, since, fx),
            RoomOp::Leave => self.leave(asker.clone(), user, lookups, fx),
            RoomOp::Send(outgoing) => self.send(now_ms, asker.clone(), user, *outgoing, lookups, fx),
            RoomOp::Edit { seq, text } => self.edit(now_ms, asker.clone(), user, seq, text, lookups, fx),
            RoomOp::EditList { seq, limit, cursor } => self.edit_list(user, seq, limit, cursor, lookups),
            RoomOp::Delete { seq } => self.delete(asker.clone(), user, seq, lookups, fx),
            RoomOp::Pin { seq, on } => self.pin(now_ms, asker.clone(), user, seq, on, lookups, fx),
            RoomOp::PinList { limit, cursor } => self.pin_list(user, limit, cursor, lookups),
            RoomOp::ReceiptList { seq, delivered, limit, cursor } => {
                self.receipt_list(user, seq, delivered, limit, cursor, lookups)
            }
            RoomOp::React { seq, emoji, add } => {
                self.react(now_ms, asker.clone(), user, seq, emoji, add, lookups, fx)
            }
            RoomOp::Typing { active } => self.typing(now_ms, user, active, fx),
            RoomOp::Receipt { delivered, read } => {
                self.receipt(asker.clone(), user, delivered, read, lookups, fx)
            }
            RoomOp::History(request) => self.history(user, request, lookups),
            RoomOp::ThreadHistory { root, request } => self.thread_history(user, root, request, lookups),
            RoomOp::ThreadList { limit, cursor } => self.thread_list(user, limit, cursor, lookups),
            RoomOp::ThreadRead { root, seq } => self.thread_read(asker.clone(), user, root, seq, lookups, fx),
            RoomOp::Get => self.details(user),
            RoomOp::Members { limit, cursor } => self.members(now_ms, user, limit, cursor, lookups),
            RoomOp::Invite { user: invitee } => {
                self.invite(now_ms, asker.clone(), user, invitee, lookups, fx)
            }
            RoomOp::Decline => self.decline(asker.clone(), user, fx),
            RoomOp::Moderate { user: target, action } => {
                self.moderate(now_ms, asker.clone(), user, target, action, lookups, fx)
            }
            RoomOp::Update { name, topic, settings } => {
                self.update(now_ms, asker.clone(), user, name, topic, settings, lookups, fx)
            }
            RoomOp::DeleteRoom => self.delete_room(now_ms, asker.clone(), user, false, lookups, fx),
            RoomOp::DeleteRoomByAdmin => self.delete_room(now_ms, asker.clone(), user, true, lookups, fx),
            RoomOp::OpenDirect => self.open_direct_again(asker.clone(), user, lookups, fx),
            RoomOp::TrimHistory { floor, seen } => self.trim_history(asker.clone(), floor, seen, fx),
            RoomOp::Announce(announcing) => {
                self.announce(now_ms, asker.clone(), user, *announcing, lookups, fx)
            }
        };
        // A step answers by itself when it can; `Some(body)` is an answer to give now.
        if let Some(body) = result {
            let subscription = if joining { Subscription::Joined(None) } else { Subscription::Unchanged };
            fx.answers.push(Answer { to: asker, body, subscription });
        }
    }

    fn join(
        &mut self,
        asker: A,
        user: &UserId,
        since: Option<u64>,
        fx: &mut Effects<A>,
    ) -> Option<ReplyBody> {
        let outcome = match self.room.join(user) {
            Ok(outcome) => outcome,
            Err(e) => return Some(refused(&e)),
        };
        let room = self.room.id().clone();
        let last_seq = outcome.last_seq;
        let history_from = self.room.history_from();
        let body = ok(OkBody::Joined(JoinOk { room: self.room.info(), last_seq, history_from }));
        // A `since` below the floor resumes at the floor: what is below it was removed.
        let since = since.map(|s| s.max(self.room.history_floor() - 1));
        let subscribe =
            Subscribe { room: room.clone(), cursor: since.unwrap_or(last_seq).min(last_seq), last_seq };
        let answer = Answer { to: asker, body, subscription: Subscription::Joined(Some(subscribe)) };
        if !outcome.newly_member {
            fx.answers.push(answer);
            return None;
        }
        let mut writes =
            vec![Write::PutMember { room: room.clone(), user: user.clone(), role: outcome.role }];
        if outcome.used_invite {
            writes.push(Write::RemoveInvite { room: room.clone(), user: user.clone() });
        }
        let event = member_event(&room, user, MemberChange::Joined, outcome.role);
        self.commit(fx, writes, Settle::answer(answer).announcing(event));
        None
    }

    fn leave(
        &mut self,
        asker: A,
        user: &UserId,
        lookups: &impl Lookups,
        fx: &mut Effects<A>,
    ) -> Option<ReplyBody> {
        let role = self.room.role_of(user).unwrap_or(Role::Member);
        let answer = Answer { to: asker, body: empty(), subscription: Subscription::Left };
        let pending = self.leavers_receipt(user, lookups);
        match self.room.leave(user) {
            Err(e) => return Some(refused(&e)),
            Ok(false) => {
                fx.answers.push(answer);
                return None;
            }
            Ok(true) => {}
        }
        // Every socket of the user stops receiving the room's events at once.
        fx.endings.push(Ending::Member(user.clone()));
        let room = self.room.id().clone();
        let event = member_event(&room, user, MemberChange::Left, role);
        let mut writes = vec![Write::RemoveMember { room, user: user.clone() }];
        writes.extend(pending);
        self.commit(fx, writes, Settle::answer(answer).announcing(event));
        None
    }

    /// `dm.open` by one of the pair of this existing direct room: takes them back if they
    /// left (the room is theirs by construction: its id is derived from the pair).
    fn open_direct_again(
        &mut self,
        asker: A,
        user: &UserId,
        lookups: &impl Lookups,
        fx: &mut Effects<A>,
    ) -> Option<ReplyBody> {
        let others: Vec<UserId> = self.room.member_ids().into_iter().filter(|u| u != user).collect();
        for other in &others {
            match lookups.is_blocked(other, user) {
                Ok(false) => {}
                Ok(true) => {
                    return Some(refused(&CoreError::RefusesDirectMessages(other.clone())));
                }
                Err(e) => return Some(lookup_failed(&e)),
            }
        }
        let answer = Answer::plain(asker, ok(OkBody::Room(RoomOk { room: self.room.info() })));
        match self.room.readmit_direct(user) {
            Err(e) => Some(refused(&e)),
            Ok(false) => {
                fx.answers.push(answer);
                None
            }
            Ok(true) => {
                let room = self.room.id().clone();
                let event = member_event(&room, user, MemberChange::Joined, Role::Member);
                self.commit(
                    fx,
                    vec![Write::PutMember { room, user: user.clone(), role: Role::Member }],
                    Settle::answer(answer).announcing(event),
                );
                None
            }
        }
    }

    /// A file named by a message, as the room has it, checked: uploaded to this room, and
    /// not shared by another message (a retry of the one sharing it is fine).
    fn shared_file(
        &self,
        user: &UserId,
        outgoing: &Outgoing,
        lookups: &impl Lookups,
    ) -> Step<Option<(Box<FileRef>, FileRecord)>> {
        let Some(claimed) = &outgoing.file else { return Ok(None) };
        // With files off the room refuses the message, whichever file it names.
        if !self.room.settings().file_sharing {
            return Ok(None);
        }
        let room = self.room.id();
        let record = match found(lookups.file(&claimed.file_id))? {
            Some(record) if &record.room == room => record,
            _ => {
                return Err(refused(&CoreError::NoSuchFile(claimed.file_id.clone())));
            }
        };
        // Only kinds that carry a file: the room refuses any other with a file as invalid.
        if matches!(outgoing.kind, MessageKind::Image | MessageKind::File) {
            let shared_by = match self.sharing.get(&record.file_id) {
                Some(by) => Some(by.clone()),
                None => match record.shared_in {
                    Some(seq) => found(lookups.message(room, seq))?.map(|m| (m.sender, m.cid)),
                    None => None,
                },
            };
            if shared_by.is_some_and(|(sender, cid)| &sender != user || cid != outgoing.cid) {
                return Err(refused(&CoreError::FileShared(record.file_id.clone())));
            }
        }
        let file = FileRef {
            name: if claimed.name.trim().is_empty() { record.name.clone() } else { claimed.name.clone() },
            file_id: record.file_id.clone(),
            size: record.size,
            content_type: record.content_type.clone(),
            width: record.width,
            height: record.height,
        };
        Ok(Some((Box::new(file), record)))
    }

    fn send(
        &mut self,
        now_ms: u64,
        asker: A,
        user: &UserId,
        outgoing: Outgoing,
        lookups: &impl Lookups,
        fx: &mut Effects<A>,
    ) -> Option<ReplyBody> {
        let prepared = (|| -> Step<_> {
            if self.room.kind() == RoomKind::Direct {
                for other in self.room.member_ids().iter().filter(|u| *u != user) {
                    if found(lookups.is_blocked(other, user))? {
                        return Err(refused(&CoreError::RefusesDirectMessages(other.clone())));
                    }
                }
            }
            let stored = found(lookups.cid_seq(self.room.id(), user, &outgoing.cid))?;
            // Mentions are resolved here; the room keeps only members. Never in
            // ciphertext: the server does not look into encrypted bodies.
            let mut mentions = Vec::new();
            // `@everyone` and `@here` reach members for senders with the room's role; the
            // recipients are found before the room assigns a seq, so a failed lookup
            // refuses the message instead of half-storing it.
            let mention_all = if outgoing.kind == MessageKind::Encrypted {
                None
            } else {
                crate::mentioned_all(&outgoing.text).filter(|_| self.room.may_mention_all(user))
            };
            let everyone = match mention_all {
                Some(all) => self.mentioned_by_all(user, all, lookups)?,
                None => Vec::new(),
            };
            if outgoing.kind != MessageKind::Encrypted {
                for name in crate::mentioned_usernames(&outgoing.text) {
                    if let Some(id) = found(lookups.user_by_name(&name))? {
                        mentions.push(id);
                    }
                }
            }
            let file = self.shared_file(user, &outgoing, lookups)?;
            if let Some(forward) = &outgoing.forward {
                self.check_forward_source(user, forward, lookups)?;
            }
            // Only a thread reply reads its root (and its summary): other sends read nothing
            // more. Members only, so nobody else learns which messages exist.
            let thread_before = match outgoing.thread {
                Some(_) if self.room.role_of(user).is_none() => {
                    return Err(refused(&CoreError::NotMember(self.room.id().clone())));
                }
                // A retry answers with the first send's seq, whatever became of the root.
                Some(_) if stored.is_some() || self.room.is_pending(user, &outgoing.cid) => None,
                Some(root) => self.check_thread_reply(root, outgoing.reply_to, lookups)?,
                None => None,
            };
            Ok((stored, mentions, file, mention_all, everyone, thread_before))
        })();
        let (stored, mentions, file, mention_all, everyone, thread_before) = match prepared {
            Ok(prepared) => prepared,
            Err(body) => return Some(body),
        };
        let (file_ref, file_record) = match file {
            Some((file_ref, record)) => (Some(file_ref), Some(record)),
            None => (outgoing.file.clone(), None),
        };
        let Outgoing {
            cid, kind, text, client_ts, reply_to, encryption, forward, thread, also_to_room, ..
        } = outgoing;
        let draft = Draft {
            cid,
            kind,
            text,
            client_ts,
            reply_to,
            file: file_ref,
            mentions,
            encryption,
            forward,
            mention_all,
            thread,
            also_to_room,
        };
        match self.room.send(now_ms, user, draft, |_| stored) {
            Err(e) => Some(refused(&e)),
            Ok(SendOutcome::Duplicate { seq, ts }) => {
                self.answer_duplicate(asker, seq, ts, fx);
                None
            }
            Ok(SendOutcome::Append(appended)) => {
                let message = appended.message;
                // The sender's own watermarks move with the message; storage derives them
                // from it (see `SENDER_RECEIPT_TAIL`), and `commit` writes them when due.
                let mut writes = vec![Write::AppendMessage(message.clone())];
                let users: Vec<UserId> =
                    everyone.into_iter().filter(|u| !message.mentions.contains(u)).collect();
                if message.mention_all.is_some() && !users.is_empty() {
                    writes.push(Write::PutMentions { room: message.room.clone(), seq: message.seq, users });
                }
                if let Some(record) = file_record {
                    self.sharing.insert(record.file_id.clone(), (user.clone(), message.cid.clone()));
                    writes.push(Write::PutFile(FileRecord { shared_in: Some(message.seq), ..record }));
                }
                if let Some(root) = message.thread {
                    let after = summary_with_reply(thread_before, message.seq, message.ts);
                    writes.push(Write::PutThread {
                        room: message.room.clone(),
                        root,
                        summary: Some(after),
                        previous_last: thread_before.map(|s| s.last_seq),
                    });
                    // The sender has read the thread up to their own reply.
                    writes.push(Write::PutThreadRead {
                        room: message.room.clone(),
                        user: user.clone(),
                        root,
                        read: message.seq,
                    });
                    self.thread_changing(root, after);
                }
                self.waiting.add(message.seq, Answer::plain(asker, sent(message.seq, message.ts, false)));
                self.commit(fx, writes, Settle::Message(Box::new(message)));
                None
            }
        }
    }

    /// Answers a retry with its first send's seq, once that is durable.
    fn answer_duplicate(&mut self, asker: A, seq: u64, ts: u64, fx: &mut Effects<A>) {
        let answer = Answer::plain(asker, sent(seq, ts, true));
        if seq <= self.room.durable_seq() {
            fx.answers.push(answer);
        } else {
            self.waiting.add(seq, answer);
        }
    }

    /// An announcement (see `room::announcements`): stored, fanned out and answered like
    /// a member's message, under the system's cids.
    fn announce(
        &mut self,
        now_ms: u64,
        asker: A,
        user: &UserId,
        announcing: Announcing,
        lookups: &impl Lookups,
        fx: &mut Effects<A>,
    ) -> Option<ReplyBody> {
        if !user.is_system() {
            return Some(refusal(ErrorCode::Forbidden, "only the system posts announcements"));
        }
        let stored = match found(lookups.cid_seq(self.room.id(), user, &announcing.cid)) {
            Ok(stored) => stored,
            Err(body) => return Some(body),
        };
        match self.room.announce(now_ms, announcing, |_| stored) {
            Err(e) => Some(refused(&e)),
            Ok(SendOutcome::Duplicate { seq, ts }) => {
                self.answer_duplicate(asker, seq, ts, fx);
                None
            }
            Ok(SendOutcome::Append(appended)) => {
                let message = appended.message;
                self.waiting.add(message.seq, Answer::plain(asker, sent(message.seq, message.ts, false)));
                let writes = vec![Write::AppendMessage(message.clone())];
                self.commit(fx, writes, Settle::Message(Box::new(message)));
                None
            }
        }
    }

    /// Whether `reader` may read the messages of `room` (this room, or another as storage
    /// has it); `None` when that room does not exist.
    fn may_read(&self, reader: &UserId, room: &RoomId, lookups: &impl Lookups) -> Found<Option<bool>> {
        if room == self.room.id() {
            return Ok(Some(self.room.check_read(reader).is_ok()));
        }
        match lookups.room_record(room)? {
            Some(record) if !record.deleted => {
                let member = lookups.member_role(room, reader)?.is_some();
                Ok(Some(may_read_room(record.kind, member)))
            }
            _ => Ok(None),
        }
    }

    /// Checks that `user` may forward the original `forward` names: a room they may read,
    /// and a message there that can be forwarded.
    fn check_forward_source(&self, user: &UserId, forward: &ForwardRef, lookups: &impl Lookups) -> Step<()> {
        match found(self.may_read(user, &forward.room, lookups))? {
            None => return Err(refused(&CoreError::NoSuchRoom(forward.room.clone()))),
            Some(false) => return Err(refused(&CoreError::PrivateRoom(forward.room.clone()))),
            Some(true) => {}
        }
        let original = if &forward.room == self.room.id() {
            self.current_message(forward.seq, lookups)?
        } else {
            found(lookups.message(&forward.room, forward.seq))?
                .ok_or_else(|| refused(&CoreError::NoSuchMessage(forward.seq)))?
        };
        check_forwardable(&original).map_err(|e| refused(&e))
    }

    /// The members `@everyone` (or `@here`: those online now) by `sender` mentions: not
    /// the sender, and not members who blocked them.
    fn mentioned_by_all(
        &self,
        sender: &UserId,
        all: MentionAll,
        lookups: &impl Lookups,
    ) -> Step<Vec<UserId>> {
        let mut users = Vec::new();
        for member in self.room.member_ids() {
            if &member == sender || found(lookups.is_blocked(&member, sender))? {
                continue;
            }
            if all == MentionAll::Here && lookups.presence(&member) == PresenceStatus::Offline {
                continue;
            }
            users.push(member);
        }
        Ok(users)
    }

    /// A message as the room has decided it: its newest version still becoming durable
    /// if there is one, else storage's.
    fn current_message(&self, seq: u64, lookups: &impl Lookups) -> Step<Message> {
        if let Some((message, _)) = self.rewrites.get(&seq) {
            return Ok(message.clone());
        }
        found(lookups.message(self.room.id(), seq))?.ok_or_else(|| refused(&CoreError::NoSuchMessage(seq)))
    }

    /// A message as the room has decided it, or `None` when storage has no such message.
    fn current_message_if_any(&self, seq: u64, lookups: &impl Lookups) -> Step<Option<Message>> {
        if let Some((message, _)) = self.rewrites.get(&seq) {
            return Ok(Some(message.clone()));
        }
        found(lookups.message(self.room.id(), seq))
    }

    /// Checks a thread reply to `root` (replying to `reply_to`, if given) and returns
    /// the root's summary before it.
    fn check_thread_reply(
        &self,
        root: u64,
        reply_to: Option<u64>,
        lookups: &impl Lookups,
    ) -> Step<Option<ThreadSummary>> {
        let stored = self.current_message_if_any(root, lookups)?;
        check_thread_root(root, stored.as_ref()).map_err(|e| refused(&e))?;
        if let Some(parent) = reply_to {
            let parent = self.current_message(parent, lookups)?;
            check_reply_in_thread(root, &parent).map_err(|e| refused(&e))?;
        }
        self.thread_summary(root, lookups)
    }

    /// A root's summary as the room has decided it (`None`: no replies).
    fn thread_summary(&self, root: u64, lookups: &impl Lookups) -> Step<Option<ThreadSummary>> {
        match self.threads.get(&root) {
            Some((summary, _)) => Ok((summary.count > 0).then_some(*summary)),
            None => found(lookups.thread_summary(self.room.id(), root)),
        }
    }

    fn thread_changing(&mut self, root: u64, summary: ThreadSummary) {
        let entry = self.threads.entry(root).or_insert((summary, 0));
        *entry = (summary, entry.1 + 1);
    }

    /// A write changing thread `root`'s summary settled: tell the room (when durable).
    fn thread_settled(&mut self, root: u64, durable: bool, fx: &mut Effects<A>) {
        let Some((summary, in_flight)) = self.threads.get_mut(&root) else { return };
        let summary = *summary;
        *in_flight -= 1;
        if *in_flight == 0 {
            self.threads.remove(&root);
        }
        if durable {
            let event = ThreadEvent { room: self.room.id().clone(), root, summary };
            fx.announcements.push(Announcement { event: Event::Thread(event), skip: None });
        }
    }

    fn rewriting(&mut self, message: Message) {
        let entry = self.rewrites.entry(message.seq).or_insert_with(|| (message.clone(), 0));
        *entry = (message, entry.1 + 1);
    }

    fn rewrite_settled(&mut self, seq: u64) {
        if let Some((_, in_flight)) = self.rewrites.get_mut(&seq) {
            *in_flight -= 1;
            if *in_flight == 0 {
                self.rewrites.remove(&seq);
            }
        }
    }

    #[expect(clippy::too_many_arguments, reason = "the request's fields, then the owner's context")]
    fn edit(
        &mut self,
        now_ms: u64,
        asker: A,
        user: &UserId,
        seq: u64,
        text: String,
        lookups: &impl Lookups,
        fx: &mut Effects<A>,
    ) -> Option<ReplyBody> {
        let decided = self.current_message(seq, lookups).and_then(|original| {
            let text = self.room.check_edit(now_ms, user, &original, text).map_err(|e| refused(&e))?;
            Ok((text, original))
        });
        let (text, original) = match decided {
            Ok(decided) => decided,
            Err(body) => return Some(body),
        };
        let room = self.room.id().clone();
        // Edit times strictly increase per message: each earlier text is stored under the
        // time it was replaced, so two edits in one millisecond must not share a key.
        let edited_at = now_ms.max(original.edited_at.map_or(0, |at| at + 1));
        let edited = Message { text: text.clone(), edited_at: Some(edited_at), ..original.clone() };
        let writes = vec![
            Write::PutEditHistory { room: room.clone(), seq, edited_at, previous_text: original.text },
            Write::ReplaceMessage(edited.clone()),
        ];
        let answer = Answer::plain(asker, ok(OkBody::Edited(EditOk { seq, edited_at })));
        let event = Event::Edit(Edit { room, seq, text, edited_at });
        self.rewriting(edited);
        self.commit(fx, writes, Settle::answer(answer).announcing(event).rewriting(seq));
        None
    }

    /// A page of message `seq`'s earlier texts, oldest first, as `reader` may see them.
    fn edit_list(
        &self,
        reader: &UserId,
        seq: u64,
        limit: Option<u32>,
        cursor: Option<String>,
        lookups: &impl Lookups,
    ) -> Option<ReplyBody> {
        const LIST: &str = "edit.list";
        let decided = (|| -> Step<EditsOk> {
            self.room.check_edit_list(reader, seq).map_err(|e| refused(&e))?;
            let limit = paging::sizes::EDITS.of(limit).map_err(|e| refused(&CoreError::Paging(e)))?;
            let after = match cursor {
                None => 0,
                Some(cursor) => paging::decode_cursor(LIST, &cursor)
                    .ok()
                    .and_then(|key| key.parse::<u64>().ok())
                    .ok_or_else(|| refused(&CoreError::Paging(paging::PagingError::Cursor)))?,
            };
            let message = self.current_message(seq, lookups)?;
            // A tombstone's history went with its content.
            if message.deleted {
                return Err(refused(&CoreError::NoSuchMessage(seq)));
            }
            let blocked = found(lookups.is_blocked(reader, &message.sender))?;
            // One more than the page, to know whether another follows.
            let mut edits = found(lookups.edits(self.room.id(), seq, after, limit + 1))?;
            let more = edits.len() > limit;
            edits.truncate(limit);
            let mut page = PageBuilder::new(LIST, limit);
            for (replaced_at, text) in edits {
                if !page.offer(&replaced_at.to_string(), Some(EditVersion { text, replaced_at })) {
                    break;
                }
            }
            let (versions, next) = page.finish(more);
            Ok(EditsOk { seq, versions, blocked, next })
        })();
        Some(match decided {
            Ok(edits) => ok(OkBody::Edits(edits)),
            Err(body) => body,
        })
    }

    #[expect(clippy::too_many_arguments, reason = "the request's fields, then the owner's context")]
    fn pin(
        &mut self,
        now_ms: u64,
        asker: A,
        actor: &UserId,
        seq: u64,
        on: bool,
        lookups: &impl Lookups,
        fx: &mut Effects<A>,
    ) -> Option<ReplyBody> {
        let decided = (|| -> Step<SystemNotice> {
            // A pin is a notice in the room's log: in a direct room, not past a block.
            if self.room.kind() == RoomKind::Direct {
                for other in self.room.member_ids().iter().filter(|u| *u != actor) {
                    if found(lookups.is_blocked(other, actor))? {
                        return Err(refused(&CoreError::RefusesDirectMessages(other.clone())));
                    }
                }
            }
            if self.room.role_of(actor).is_none() {
                return Err(refused(&CoreError::NotMember(self.room.id().clone())));
            }
            let message = self.current_message(seq, lookups)?;
            self.room.pin(now_ms, actor, &message, on).map_err(|e| refused(&e))
        })();
        let notice = match decided {
            Ok(notice) => notice,
            Err(body) => return Some(body),
        };
        let room = self.room.id().clone();
        let write = if on {
            Write::PutPin { room, seq, record: ActionRecord { by: actor.clone(), at: now_ms, reason: None } }
        } else {
            Write::RemovePin { room, seq }
        };
        self.store_notice(now_ms, asker, notice, vec![write], None, AfterNotice::Nothing, lookups, fx);
        None
    }

    /// A page of the pinned messages, the most recently pinned first, as `reader` sees them.
    fn pin_list(
        &self,
        reader: &UserId,
        limit: Option<u32>,
        cursor: Option<String>,
        lookups: &impl Lookups,
    ) -> Option<ReplyBody> {
        const LIST: &str = "pin.list";
        let decided = (|| -> Step<PinsOk> {
            self.room.check_read(reader).map_err(|e| refused(&e))?;
            let limit = paging::sizes::PINS.of(limit).map_err(|e| refused(&CoreError::Paging(e)))?;
            let after = match cursor {
                None => None,
                Some(cursor) => Some(
                    paging::decode_cursor(LIST, &cursor)
                        .ok()
                        .and_then(|key| Pin::parse_cursor_key(&key))
                        .ok_or_else(|| refused(&CoreError::Paging(paging::PagingError::Cursor)))?,
                ),
            };
            let (pins, more) = self.room.pins_page(after, limit);
            let blocked = found(lookups.blocks(reader))?;
            let mut page = PageBuilder::new(LIST, limit);
            for pin in pins {
                let key = pin.cursor_key();
                let stored = match self.rewrites.get(&pin.seq) {
                    Some((message, _)) => Some(message.clone()),
                    None => found(lookups.message(self.room.id(), pin.seq))?,
                };
                // A pin whose message storage does not hold is skipped, not an error.
                let Some(mut message) = stored else {
                    page.offer(&key, None);
                    continue;
                };
                message.blocked = blocked.contains(&message.sender);
                message.reactions = found(lookups.reactions(self.room.id(), pin.seq))?;
                let info = PinInfo { pinned_by: pin.by.clone(), pinned_at: pin.at, message };
                if !page.offer(&key, Some(info)) {
                    break;
                }
            }
            let (pins, next) = page.finish(more);
            Ok(PinsOk { pins, next })
        })();
        Some(match decided {
            Ok(pins) => ok(OkBody::Pins(pins)),
            Err(body) => body,
        })
    }

    /// A page of the members who read (or had delivered) message `seq`, as `reader` may
    /// see them: not its sender, not members who blocked the reader, and in read lists
    /// not those who keep their reads private.
    fn receipt_list(
        &self,
        reader: &UserId,
        seq: u64,
        delivered: bool,
        limit: Option<u32>,
        cursor: Option<String>,
        lookups: &impl Lookups,
    ) -> Option<ReplyBody> {
        const LIST: &str = "receipt.list";
        let decided = (|| -> Step<ReceiptListOk> {
            self.room.check_receipt_list(reader, seq, delivered).map_err(|e| refused(&e))?;
            let limit = paging::sizes::RECEIPTS.of(limit).map_err(|e| refused(&CoreError::Paging(e)))?;
            let after = match cursor {
                None => None,
                Some(cursor) => Some(
                    paging::decode_cursor(LIST, &cursor)
                        .ok()
                        .and_then(|key| UserId::parse(&key).ok())
                        .ok_or_else(|| refused(&CoreError::Paging(paging::PagingError::Cursor)))?,
                ),
            };
            let sender = self.current_message(seq, lookups)?.sender;
            let walk = self.room.receipts_reaching(after.as_ref(), seq, delivered, limits::MAX_RECEIPT_SCAN);
            let mut page = PageBuilder::new(LIST, limit);
            for (member, delivered_to, read) in walk.found {
                let shown = if member == sender || found(lookups.is_blocked(&member, reader))? {
                    None
                } else {
                    let private = found(lookups.hides_read_receipts(&member))?;
                    (delivered || !private).then(|| MemberReceipt {
                        user: member.clone(),
                        delivered: delivered_to,
                        read: (!private).then_some(read),
                    })
                };
                if !page.offer(member.as_str(), shown) {
                    break;
                }
            }
            let (receipts, mut next) = page.finish(walk.more);
            // A walk that stopped at its bound continues after the last member it examined.
            if walk.more && receipts.is_empty() {
                next = walk.last_examined.map(|last| paging::encode_cursor(LIST, last.as_str()));
            }
            Ok(ReceiptListOk { seq, receipts, next })
        })();
        Some(match decided {
            Ok(list) => ok(OkBody::ReceiptList(list)),
            Err(body) => body,
        })
    }

    fn delete(
        &mut self,
        asker: A,
        user: &UserId,
        seq: u64,
        lookups: &impl Lookups,
        fx: &mut Effects<A>,
    ) -> Option<ReplyBody> {
        let decided = self.current_message(seq, lookups).and_then(|original| {
            let todo = self.room.check_delete(user, &original).map_err(|e| refused(&e))?;
            Ok((todo, original))
        });
        let original = match decided {
            Err(body) => return Some(body),
            // Already a tombstone: deleting again is a no-op.
            Ok((false, _)) => return Some(empty()),
            Ok((true, original)) => original,
        };
        let room = self.room.id().clone();
        // The tombstone keeps the seq, sender, time and reply structure; the content
        // (text, file, mentions, edit history) is dropped from storage.
        let tombstone = Message {
            text: String::new(),
            file: None,
            mentions: Vec::new(),
            edited_at: None,
            deleted: true,
            ..original.clone()
        };
        let mut writes = vec![
            Write::ReplaceMessage(tombstone.clone()),
            Write::DropEditHistory { room: room.clone(), seq },
            Write::RemoveMentions { room: room.clone(), seq, users: mentioned_users(&original, &self.room) },
        ];
        // A deleted reply leaves its thread (its tombstone stays in the room).
        if let Some(root) = original.thread {
            let before = match self.thread_summary(root, lookups) {
                Ok(before) => {
                    before.unwrap_or(ThreadSummary { count: 1, last_seq: seq, last_at: original.ts })
                }
                Err(body) => return Some(body),
            };
            let newest_left = if before.last_seq == seq {
                match self.newest_reply_left(root, seq, lookups) {
                    Ok(left) => left,
                    Err(body) => return Some(body),
                }
            } else {
                None
            };
            let after = summary_without_reply(before, seq, newest_left);
            writes.push(Write::PutThread {
                room: room.clone(),
                root,
                summary: (after.count > 0).then_some(after),
                previous_last: Some(before.last_seq),
            });
            self.thread_changing(root, after);
        }
        // A deleted message leaves the pins with its content.
        if self.room.unpin_deleted(seq) {
            writes.push(Write::RemovePin { room: room.clone(), seq });
        }
        // A deleted message's file goes with it: its record now (downloads stop once the
        // delete is durable), its bytes after.
        let file_id = original.file.as_ref().map(|file| file.file_id.clone());
        if let Some(file_id) = &file_id {
            writes.push(Write::RemoveFile { file_id: file_id.clone() });
        }
        let event = Event::Delete(Delete { room, seq, by: user.clone() });
        self.rewriting(tombstone);
        self.commit(
            fx,
            writes,
            Settle::Answer {
                answer: Answer::plain(asker, empty()),
                announce: Some(Box::new(event)),
                notify: Vec::new(),
                rewrote: Some(seq),
                then_delete_file: file_id,
            },
        );
        None
    }

    #[expect(clippy::too_many_arguments, reason = "the request's fields, then the owner's context")]
    fn react(
        &mut self,
        now_ms: u64,
        asker: A,
        user: &UserId,
        seq: u64,
        emoji: String,
        add: bool,
        lookups: &impl Lookups,
        fx: &mut Effects<A>,
    ) -> Option<ReplyBody> {
        let emoji = match self.room.check_reaction(now_ms, user, seq, emoji) {
            Ok(emoji) => emoji.as_str().to_owned(),
            Err(e) => return Some(refused(&e)),
        };
        let room = self.room.id().clone();
        let key = (seq, emoji.clone(), user.clone());
        // A change still in flight counts as made.
        let exists = match self.reactions.get(&key) {
            Some((present, _)) => *present,
            None => match lookups.has_reaction(&room, seq, &emoji, user) {
                Ok(exists) => exists,
                Err(e) => return Some(lookup_failed(&e)),
            },
        };
        // Adding a reaction that exists (or removing one that does not) changes nothing:
        // answer with the count, write and announce nothing.
        if exists == add {
            return Some(match lookups.reaction_count(&room, seq, &emoji) {
                Ok(count) => ok(OkBody::Reaction(ReactionOk { seq, emoji, count })),
                Err(e) => lookup_failed(&e),
            });
        }
        let write = if add {
            Write::PutReaction { room, seq, emoji: emoji.clone(), user: user.clone() }
        } else {
            Write::RemoveReaction { room, seq, emoji: emoji.clone(), user: user.clone() }
        };
        let entry = self.reactions.entry(key).or_insert((add, 0));
        *entry = (add, entry.1 + 1);
        self.commit(
            fx,
            vec![write],
            Settle::Reaction { to: asker, user: user.clone(), seq, emoji, added: add },
        );
        None
    }

    fn typing(&mut self, now_ms: u64, user: &UserId, active: bool, fx: &mut Effects<A>) -> Option<ReplyBody> {
        match self.room.typing(now_ms, user, active) {
            Err(e) => Some(refused(&e)),
            Ok(change) => {
                self.announce_typing(user, change, fx);
                Some(empty())
            }
        }
    }

    fn announce_typing(&self, user: &UserId, change: TypingChange, fx: &mut Effects<A>) {
        let (active, expires_in_ms) = match change {
            TypingChange::Started { expires_in_ms } => (true, Some(expires_in_ms)),
            TypingChange::Stopped => (false, None),
            TypingChange::Unchanged => return,
        };
        let typing = Typing { room: self.room.id().clone(), user: user.clone(), active, expires_in_ms };
        fx.announcements.push(Announcement { event: Event::Typing(typing), skip: Some(user.clone()) });
    }

    fn receipt(
        &mut self,
        asker: A,
        user: &UserId,
        delivered: Option<u64>,
        read: Option<u64>,
        lookups: &impl Lookups,
        fx: &mut Effects<A>,
    ) -> Option<ReplyBody> {
        let change = match self.room.receipt(user, delivered, read) {
            Ok(change) => change,
            Err(e) => return Some(refused(&e)),
        };
        // Someone who keeps their reads private is not announced: the event carries both
        // watermarks. Their own devices read them from `sync`.
        if change.changed {
            match lookups.hides_read_receipts(user) {
                Ok(false) => {}
                Ok(true) => self.room.keep_receipt_private(user),
                Err(e) => return Some(lookup_failed(&e)),
            }
        }
        let body = ok(OkBody::Receipt(ReceiptOk { delivered: change.delivered, read: change.read }));
        if !change.changed {
            return Some(body);
        }
        let write = Write::PutReceipt {
            room: self.room.id().clone(),
            user: user.clone(),
            delivered: change.delivered,
            read: change.read,
        };
        let answer = Answer::plain(asker, body);
        self.commit(fx, vec![write], Settle::answer(answer));
        None
    }

    /// The owner's periodic work at `now_ms`: typing indicators not renewed in time
    /// lapse, and watermarks that moved are announced (at most one event per member per
    /// tick however many receipts they sent).
    pub fn tick(&mut self, now_ms: u64, fx: &mut Effects<A>) {
        for user in self.room.expire_typing(now_ms) {
            self.announce_typing(&user, TypingChange::Stopped, fx);
        }
        for (user, delivered, read) in self.room.take_receipt_announcements() {
            let receipt = Receipt { room: self.room.id().clone(), user, delivered, read };
            fx.announcements.push(Announcement { event: Event::Receipt(receipt), skip: None });
        }
    }

    /// Whether [`RoomOwner::tick`] has anything to do.
    pub fn wants_tick(&self) -> bool {
        self.room.has_typers() || self.room.has_receipt_announcements()
    }

    fn history(&self, user: &UserId, request: HistoryRequest, lookups: &impl Lookups) -> Option<ReplyBody> {
        let threads = request.threads;
        let window = match self.room.history_page(user, request) {
            Ok(window) => window,
            Err(e) => return Some(refused(&e)),
        };
        Some(match self.history_page(window, threads, user, lookups) {
            Ok((messages, next)) => {
                ok(OkBody::History(HistoryOk { messages, next, history_from: self.room.history_from() }))
            }
            Err(e) => lookup_failed(&e),
        })
    }

    /// One page of history in `window`, as `reader` sees it (reactions aggregated,
    /// replies previewed, blocked senders flagged), and the cursor past it. With
    /// `threads` excluded, replies kept in their thread are left out (the page may be
    /// shorter than its limit; its cursor still continues past them).
    fn history_page(
        &self,
        window: HistoryWindow,
        threads: ThreadReplies,
        reader: &UserId,
        lookups: &impl Lookups,
    ) -> Found<(Vec<Message>, Option<String>)> {
        let room = self.room.id();
        // A trim is decided before storage applies it: what it removes is already gone
        // for readers.
        let floor = self.room.history_from().map_or(1, std::num::NonZeroU64::get);
        // One more than the page, to know whether another follows.
        let (mut messages, limit) = match window {
            HistoryWindow::Backward { before, limit } => {
                let mut messages = lookups.messages_before(room, before, limit + 1)?;
                messages.retain(|m| m.seq >= floor);
                (messages, limit)
            }
            HistoryWindow::Forward { after, through, limit } => {
                let from = after.saturating_add(1).max(floor);
                (lookups.messages_between(room, from, through, limit + 1)?, limit)
            }
        };
        let more = messages.len() > limit;
        messages.truncate(limit);
        let shown = |m: &Message| threads == ThreadReplies::Include || in_room_timeline(m);
        // A message left out still moves the cursor past it.
        let mut entries: Vec<(String, Option<Message>)> =
            messages.into_iter().map(|m| (window.cursor_key(m.seq), Some(m).filter(shown))).collect();
        self.decorate(entries.iter_mut().filter_map(|(_, m)| m.as_mut()), reader, lookups)?;
        let mut page = PageBuilder::new("history", limit);
        for (key, message) in entries {
            if !page.offer(&key, message) {
                break;
            }
        }
        Ok(page.finish(more))
    }

    /// Dresses stored messages as `reader` sees them: blocked senders flagged, reactions
    /// aggregated, reply previews, forwarded originals the reader may read, and each
    /// thread root's summary.
    fn decorate<'m>(
        &self,
        messages: impl IntoIterator<Item = &'m mut Message>,
        reader: &UserId,
        lookups: &impl Lookups,
    ) -> Found<()> {
        let room = self.room.id();
        let blocked = lookups.blocks(reader)?;
        // Whether the reader may read each room forwards come from, asked once per page.
        let mut readable: HashMap<RoomId, bool> = HashMap::new();
        for message in messages {
            message.blocked = blocked.contains(&message.sender);
            if let Some(forward) = &mut message.forward {
                let may = match readable.get(&forward.room) {
                    Some(may) => *may,
                    None => {
                        let may = self.may_read(reader, &forward.room, lookups)?.unwrap_or(false);
                        readable.insert(forward.room.clone(), may);
                        may
                    }
                };
                if may {
                    forward.source = lookups
                        .message(&forward.room, forward.seq)?
                        .map(|original| Box::new(forwarded_content(original)));
                }
            }
            message.reactions = lookups.reactions(room, message.seq)?;
            if let Some(parent) = message.reply_to {
                message.reply = lookups.message(room, parent)?.map(|p| {
                    Box::new(ReplyPreview {
                        seq: p.seq,
                        sender: p.sender,
                        excerpt: p.text.chars().take(REPLY_EXCERPT_CHARS).collect(),
                        deleted: p.deleted,
                    })
                });
            }
            if message.thread.is_none() && message.kind != MessageKind::System {
                let summary = match self.threads.get(&message.seq) {
                    Some((summary, _)) => (summary.count > 0).then_some(*summary),
                    None => lookups.thread_summary(room, message.seq)?,
                };
                message.thread_summary = summary.map(Box::new);
            }
        }
        Ok(())
    }

    /// The newest live reply of thread `root` below `seq` (which is being deleted),
    /// passing over replies whose deletion is still in flight.
    fn newest_reply_left(&self, root: u64, seq: u64, lookups: &impl Lookups) -> Step<Option<(u64, u64)>> {
        let deleting = self.rewrites.values().filter(|(m, _)| m.deleted && m.thread == Some(root)).count();
        let replies = found(lookups.thread_replies_before(self.room.id(), root, seq, deleting + 1))?;
        Ok(replies.into_iter().find(|(reply, _)| !self.rewrites.get(reply).is_some_and(|(m, _)| m.deleted)))
    }

    /// The root of thread `root` as `reader` sees it, checked to be a root (a deleted
    /// root still holds its thread).
    fn thread_root(&self, reader: &UserId, root: u64, lookups: &impl Lookups) -> Step<Message> {
        let Some(message) = self.current_message_if_any(root, lookups)? else {
            return Err(refused(&CoreError::NoThreadRoot(root)));
        };
        if message.thread.is_some() {
            return Err(refused(&CoreError::NestedThread(root)));
        }
        let mut message = message;
        found(self.decorate([&mut message], reader, lookups))?;
        Ok(message)
    }

    /// A page of thread `root`'s replies, as `history` pages the room's.
    fn thread_history(
        &self,
        reader: &UserId,
        root: u64,
        request: HistoryRequest,
        lookups: &impl Lookups,
    ) -> Option<ReplyBody> {
        let decided = (|| -> Step<ThreadHistoryOk> {
            let window = self.room.thread_history_page(reader, request).map_err(|e| refused(&e))?;
            let root_message = self.thread_root(reader, root, lookups)?;
            let room = self.room.id();
            let (seqs, limit) = match window {
                HistoryWindow::Backward { before, limit } => {
                    (found(lookups.thread_replies_before(room, root, before, limit + 1))?, limit)
                }
                HistoryWindow::Forward { after, through, limit } => {
                    let mut seqs = found(lookups.thread_replies_after(room, root, after, limit + 1))?;
                    seqs.retain(|(seq, _)| *seq <= through);
                    (seqs, limit)
                }
            };
            let more = seqs.len() > limit;
            let mut messages = Vec::with_capacity(limit);
            for (seq, _) in seqs.into_iter().take(limit) {
                if let Some(message) = self.current_message_if_any(seq, lookups)? {
                    messages.push(message);
                }
            }
            found(self.decorate(&mut messages, reader, lookups))?;
            let mut page = PageBuilder::new("thread.history", limit);
            for message in messages {
                let key = window.cursor_key(message.seq);
                if !page.offer(&key, Some(message)) {
                    break;
                }
            }
            let (messages, next) = page.finish(more);
            Ok(ThreadHistoryOk { root: root_message, messages, next })
        })();
        Some(match decided {
            Ok(page) => ok(OkBody::ThreadHistory(Box::new(page))),
            Err(body) => body,
        })
    }

    /// How many replies of thread `root` follow `read` (up to the counting bound).
    fn thread_unread(&self, root: u64, read: u64, lookups: &impl Lookups) -> Found<u32> {
        let cap = MAX_THREAD_UNREAD_COUNT as usize;
        let after = lookups.thread_replies_after(self.room.id(), root, read, cap)?;
        Ok(u32::try_from(after.len()).unwrap_or(MAX_THREAD_UNREAD_COUNT))
    }

    /// A page of the room's threads, the most recently replied to first, with the
    /// reader's read mark and unread count in each.
    fn thread_list(
        &self,
        reader: &UserId,
        limit: Option<u32>,
        cursor: Option<String>,
        lookups: &impl Lookups,
    ) -> Option<ReplyBody> {
        const LIST: &str = "thread.list";
        let decided = (|| -> Step<ThreadsOk> {
            self.room.check_read(reader).map_err(|e| refused(&e))?;
            let limit = paging::sizes::THREADS.of(limit).map_err(|e| refused(&CoreError::Paging(e)))?;
            let before = match cursor {
                None => u64::MAX,
                Some(cursor) => paging::decode_cursor(LIST, &cursor)
                    .ok()
                    .and_then(|key| key.parse::<u64>().ok())
                    .ok_or_else(|| refused(&CoreError::Paging(paging::PagingError::Cursor)))?,
            };
            let room = self.room.id();
            let mut threads = found(lookups.threads_by_activity(room, before, limit + 1))?;
            let more = threads.len() > limit;
            threads.truncate(limit);
            let mut page = PageBuilder::new(LIST, limit);
            for (root, summary) in threads {
                let key = summary.last_seq.to_string();
                let Some(mut message) = self.current_message_if_any(root, lookups)? else {
                    page.offer(&key, None);
                    continue;
                };
                found(self.decorate([&mut message], reader, lookups))?;
                message.thread_summary.get_or_insert(Box::new(summary));
                let read = found(lookups.thread_read(room, reader, root))?;
                let unread = found(self.thread_unread(root, read, lookups))?;
                if !page.offer(&key, Some(ThreadInfo { root: message, read, unread })) {
                    break;
                }
            }
            let (threads, next) = page.finish(more);
            Ok(ThreadsOk { threads, next })
        })();
        Some(match decided {
            Ok(threads) => ok(OkBody::Threads(threads)),
            Err(body) => body,
        })
    }

    /// Moves `user`'s read mark in thread `root` up to `seq` (never back, never past the
    /// newest reply); answered once durable when it moved.
    fn thread_read(
        &mut self,
        asker: A,
        user: &UserId,
        root: u64,
        seq: u64,
        lookups: &impl Lookups,
        fx: &mut Effects<A>,
    ) -> Option<ReplyBody> {
        let decided = (|| -> Step<(u64, u64, u32)> {
            if self.room.role_of(user).is_none() {
                return Err(refused(&CoreError::NotMember(self.room.id().clone())));
            }
            self.thread_root(user, root, lookups)?;
            let summary = self.thread_summary(root, lookups)?;
            let current = match self.thread_reads.get(&(user.clone(), root)) {
                Some((read, _)) => *read,
                None => found(lookups.thread_read(self.room.id(), user, root))?,
            };
            let read = moved_thread_read(current, seq, summary);
            let unread = found(self.thread_unread(root, read, lookups))?;
            Ok((current, read, unread))
        })();
        let (current, read, unread) = match decided {
            Ok(decided) => decided,
            Err(body) => return Some(body),
        };
        let body = ok(OkBody::ThreadRead(ThreadReadOk { root, read, unread }));
        if read == current {
            return Some(body);
        }
        let write = Write::PutThreadRead { room: self.room.id().clone(), user: user.clone(), root, read };
        let entry = self.thread_reads.entry((user.clone(), root)).or_insert((read, 0));
        *entry = (read, entry.1 + 1);
        let settle = Settle::ThreadRead { answer: Answer::plain(asker, body), user: user.clone(), root };
        self.commit(fx, vec![write], settle);
        None
    }

    /// Who may look at a room's details and members: anyone for a public room; members
    /// and invitees otherwise.
    fn may_look(&self, user: &UserId) -> bool {
        self.room.kind() == RoomKind::Public
            || self.room.role_of(user).is_some()
            || self.room.is_invited(user)
    }

    fn details_body(&self, user: &UserId) -> ReplyBody {
        ok(OkBody::RoomDetails(RoomDetailsOk {
            room: self.room.info(),
            settings: self.room.settings(),
            member_count: self.room.member_count() as u32,
            role: self.room.role_of(user),
            history_from: self.room.history_from(),
        }))
    }

    fn details(&self, user: &UserId) -> Option<ReplyBody> {
        Some(if self.may_look(user) {
            self.details_body(user)
        } else {
            refused(&CoreError::PrivateRoom(self.room.id().clone()))
        })
    }

    fn members(
        &self,
        now_ms: u64,
        user: &UserId,
        limit: Option<u32>,
        cursor: Option<String>,
        lookups: &impl Lookups,
    ) -> Option<ReplyBody> {
        if !self.may_look(user) {
            return Some(refused(&CoreError::PrivateRoom(self.room.id().clone())));
        }
        let limit = match paging::sizes::MEMBERS.of(limit) {
            Ok(limit) => limit,
            Err(e) => return Some(refused(&CoreError::Paging(e))),
        };
        let after = match cursor
            .map(|c| paging::decode_cursor("room.members", &c).map(|k| UserId::parse(k.as_str())))
        {
            None => None,
            Some(Ok(Ok(after))) => Some(after),
            Some(_) => return Some(refused(&CoreError::Paging(paging::PagingError::Cursor))),
        };
        let (listed, more) = self.room.members_page(after.as_ref(), limit);
        let asker_is_member = self.room.role_of(user).is_some();
        let mut page = PageBuilder::new("room.members", limit);
        for (member, role) in listed {
            let entry = (|| -> Found<MemberInfo> {
                let username = lookups.username(&member)?.unwrap_or_default();
                // A member who blocked the asker shows as offline to them, as everywhere.
                let blocked_asker = lookups.is_blocked(&member, user)?;
                let presence =
                    if blocked_asker { PresenceStatus::Offline } else { lookups.presence(&member) };
                // Members see how far other members read, unless they keep it private.
                let read = if asker_is_member && !blocked_asker && !lookups.hides_read_receipts(&member)? {
                    Some(self.room.receipt_of(&member).1)
                } else {
                    None
                };
                Ok(MemberInfo {
                    muted_until: self.room.muted_until(&member, now_ms),
                    presence,
                    read,
                    user: member.clone(),
                    username,
                    role,
                })
            })();
            match entry {
                Ok(info) => {
                    if !page.offer(member.as_str(), Some(info)) {
                        break;
                    }
                }
                Err(e) => return Some(lookup_failed(&e)),
            }
        }
        let (members, next) = page.finish(more);
        Some(ok(OkBody::Members(MembersOk { members, next })))
    }

    fn invite(
        &mut self,
        now_ms: u64,
        asker: A,
        actor: &UserId,
        invitee: UserId,
        lookups: &impl Lookups,
        fx: &mut Effects<A>,
    ) -> Option<ReplyBody> {
        let checked = (|| -> Step<bool> {
            if found(lookups.username(&invitee))?.is_none() {
                return Err(refused(&CoreError::NoSuchUser(invitee.clone())));
            }
            let blocked = found(lookups.is_blocked(&invitee, actor))?;
            self.room.invite(actor, &invitee, blocked).map_err(|e| refused(&e))
        })();
        match checked {
            Err(body) => return Some(body),
            Ok(false) => return Some(empty()),
            Ok(true) => {}
        }
        // Invitations are unsolicited: a stranger's are limited per sender, and a user's
        // pending ones are capped (they decline to make room).
        let limited = (|| -> Step<()> {
            let max = limits::MAX_PENDING_INVITES;
            if found(lookups.pending_invites(&invitee, max))? >= max {
                return Err(refused(&CoreError::PendingInvitesCap { user: invitee.clone(), max }));
            }
            if found(lookups.friendship(actor, &invitee))? != palaver_protocol::FriendState::Friends {
                lookups
                    .take_stranger_invite(actor, now_ms)
                    .map_err(|wait| throttled(Throttled::StrangerInvites, wait))?;
            }
            Ok(())
        })();
        if let Err(body) = limited {
            self.room.decline(&invitee);
            return Some(body);
        }
        let room = self.room.id().clone();
        let record = ActionRecord { by: actor.clone(), at: now_ms, reason: None };
        let event =
            Event::Invite(InviteInfo { room: self.room.info(), by: actor.clone(), invited_at: now_ms });
        self.commit(
            fx,
            vec![Write::PutInvite { room, user: invitee.clone(), record }],
            Settle::Answer {
                answer: Answer::plain(asker, empty()),
                announce: None,
                notify: vec![UserNotice { user: invitee, event }],
                rewrote: None,
                then_delete_file: None,
            },
        );
        None
    }

    fn decline(&mut self, asker: A, user: &UserId, fx: &mut Effects<A>) -> Option<ReplyBody> {
        if !self.room.decline(user) {
            return Some(refused(&CoreError::NoInvitation(self.room.id().clone())));
        }
        let write = Write::RemoveInvite { room: self.room.id().clone(), user: user.clone() };
        let answer = Answer::plain(asker, empty());
        self.commit(fx, vec![write], Settle::answer(answer));
        None
    }

    /// Stores `notice` as a `system` message with `writes` in one batch; answers with
    /// `body` (or the message's seq) once durable, then does `then`.
    #[expect(clippy::too_many_arguments, reason = "the notice, its writes, its answer and what follows")]
    fn store_notice(
        &mut self,
        now_ms: u64,
        asker: A,
        notice: SystemNotice,
        mut writes: Vec<Write>,
        body: Option<ReplyBody>,
        then: AfterNotice,
        lookups: &impl Lookups,
        fx: &mut Effects<A>,
    ) {
        let name = |user: &UserId| lookups.username(user).ok().flatten().unwrap_or_else(|| user.to_string());
        let text = notice_text(&notice, name, now_ms);
        let message = self.room.system_message(now_ms, notice, text);
        let body = body.unwrap_or_else(|| sent(message.seq, message.ts, false));
        writes.insert(0, Write::AppendMessage(message.clone()));
        self.waiting.add(message.seq, Answer::plain(asker, body));
        self.commit(fx, writes, Settle::Notice { message: Box::new(message), then });
    }

    /// The watermark to write as `user` leaves, if storage only derives it from their
    /// messages (it stops deriving for non-members). None for a deleted account (its
    /// rooms are left after its records are gone: nothing of it may come back).
    fn leavers_receipt(&self, user: &UserId, lookups: &impl Lookups) -> Option<Write> {
        if !self.room.has_unstored_receipt(user) || !matches!(lookups.username(user), Ok(Some(_))) {
            return None;
        }
        let (delivered, read) = self.room.receipt_of(user);
        Some(Write::PutReceipt { room: self.room.id().clone(), user: user.clone(), delivered, read })
    }

    #[expect(clippy::too_many_arguments, reason = "the request's fields, then the owner's context")]
    fn moderate(
        &mut self,
        now_ms: u64,
        asker: A,
        actor: &UserId,
        target: UserId,
        action: Moderation,
        lookups: &impl Lookups,
        fx: &mut Effects<A>,
    ) -> Option<ReplyBody> {
        match lookups.username(&target) {
            Ok(Some(_)) => {}
            Ok(None) => return Some(refused(&CoreError::NoSuchUser(target))),
            Err(e) => return Some(lookup_failed(&e)),
        }
        let pending = self.leavers_receipt(&target, lookups);
        let notice = match self.room.moderate(now_ms, actor, &target, action) {
            Ok(notice) => notice,
            Err(e) => return Some(refused(&e)),
        };
        let room = self.room.id().clone();
        let user = target;
        let (writes, then) = match notice.action {
            SystemAction::Kicked => {
                let mut writes = vec![Write::RemoveMember { room, user: user.clone() }];
                writes.extend(pending);
                (writes, AfterNotice::RemoveMember(user))
            }
            SystemAction::Banned => {
                let record = ActionRecord { by: actor.clone(), at: now_ms, reason: notice.reason.clone() };
                let mut writes = vec![
                    Write::PutBan { room: room.clone(), user: user.clone(), record },
                    Write::RemoveMember { room: room.clone(), user: user.clone() },
                    Write::RemoveInvite { room: room.clone(), user: user.clone() },
                    Write::RemoveMute { room, user: user.clone() },
                ];
                writes.extend(pending);
                (writes, AfterNotice::RemoveMember(user))
            }
            SystemAction::Unbanned => (vec![Write::RemoveBan { room, user }], AfterNotice::Nothing),
            SystemAction::Muted => {
                let until = notice.until.unwrap_or(now_ms);
                (vec![Write::PutMute { room, user, until }], AfterNotice::Nothing)
            }
            SystemAction::Unmuted => (vec![Write::RemoveMute { room, user }], AfterNotice::Nothing),
            SystemAction::RoleChanged => {
                let role = notice.role.unwrap_or(Role::Member);
                (vec![Write::PutMember { room, user, role }], AfterNotice::Nothing)
            }
            SystemAction::OwnershipTransferred => {
                // The room lifts the new owner's mute (nobody may moderate an owner);
                // without its `RemoveMute` a restart would bring the mute back.
                let writes = vec![
                    Write::PutMember { room: room.clone(), user: user.clone(), role: Role::Owner },
                    Write::PutMember { room: room.clone(), user: actor.clone(), role: Role::Admin },
                    Write::RemoveMute { room, user },
                ];
                (writes, AfterNotice::Nothing)
            }
            // Not moderation actions: never decided by `Room::moderate`.
            SystemAction::SettingsChanged
            | SystemAction::RoomDeleted
            | SystemAction::Pinned
            | SystemAction::Unpinned
            | SystemAction::Announcement => (Vec::new(), AfterNotice::Nothing),
        };
        self.store_notice(now_ms, asker, notice, writes, None, then, lookups, fx);
        None
    }

    /// The room's stored record with its current name, topic and settings.
    fn current_record(&self, lookups: &impl Lookups, deleted: bool) -> Step<RoomRecord> {
        let mut record = found(lookups.room_record(self.room.id()))?
            .ok_or_else(|| refused(&CoreError::NoSuchRoom(self.room.id().clone())))?;
        record.name = self.room.name().to_owned();
        record.topic = self.room.topic().to_owned();
        record.settings = Some(self.room.settings());
        record.deleted = deleted;
        Ok(record)
    }

    #[expect(clippy::too_many_arguments, reason = "the request's fields, then the owner's context")]
    fn update(
        &mut self,
        now_ms: u64,
        asker: A,
        actor: &UserId,
        name: Option<String>,
        topic: Option<String>,
        settings: Option<RoomSettingsPatch>,
        lookups: &impl Lookups,
        fx: &mut Effects<A>,
    ) -> Option<ReplyBody> {
        // Read before anything changes, so a failed read changes nothing.
        if let Err(body) = self.current_record(lookups, false) {
            return Some(body);
        }
        // The room changes only if every part of the update is valid.
        let notice = match self.room.update(actor, name, topic, settings) {
            Ok(notice) => notice,
            Err(e) => return Some(refused(&e)),
        };
        let record = match self.current_record(lookups, false) {
            Ok(record) => record,
            Err(body) => return Some(body),
        };
        let body = self.details_body(actor);
        self.store_notice(
            now_ms,
            asker,
            notice,
            vec![Write::PutRoom(record)],
            Some(body),
            AfterNotice::Nothing,
            lookups,
            fx,
        );
        None
    }

    fn delete_room(
        &mut self,
        now_ms: u64,
        asker: A,
        actor: &UserId,
        by_admin: bool,
        lookups: &impl Lookups,
        fx: &mut Effects<A>,
    ) -> Option<ReplyBody> {
        let check = if by_admin {
            self.room.check_delete_room_by_admin()
        } else {
            self.room.check_delete_room(actor)
        };
        if let Err(e) = check {
            return Some(refused(&e));
        }
        let record = match self.current_record(lookups, true) {
            Ok(record) => record,
            Err(body) => return Some(body),
        };
        let room = self.room.id().clone();
        let mut writes = vec![Write::PutRoom(record)];
        for user in self.room.member_ids() {
            writes.push(Write::RemoveMember { room: room.clone(), user });
        }
        let notice = SystemNotice {
            action: SystemAction::RoomDeleted,
            actor: actor.clone(),
            target: None,
            role: None,
            until: None,
            reason: None,
            seq: None,
        };
        self.deleting = true;
        self.store_notice(now_ms, asker, notice, writes, Some(empty()), AfterNotice::DeleteRoom, lookups, fx);
        None
    }

    /// Retention's sweep moves the history floor: one write removes everything below it
    /// (read from the store it is applied to, so every replica removes the same).
    fn trim_history(
        &mut self,
        asker: A,
        floor: u64,
        seen: Option<palaver_protocol::RoomRetention>,
        fx: &mut Effects<A>,
    ) -> Option<ReplyBody> {
        let from = self.room.history_floor();
        if let Err(e) = self.room.trim_history(floor, seen) {
            return Some(refused(&e));
        }
        let write = Write::TrimHistory { room: self.room.id().clone(), from, floor };
        self.commit(fx, vec![write], Settle::answer(Answer::plain(asker, empty())));
        None
    }

    /// Storage's verdict on a commit this owner decided: `Ok` when it is durable.
    pub fn on_committed(
        &mut self,
        settle: Settle<A>,
        result: Result<(), LookupError>,
        lookups: &impl Lookups,
        fx: &mut Effects<A>,
    ) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let failure = match result {
            Ok(()) => None,
            Err(e) => {
                // Memory is ahead of storage: refuse everything until what is in flight
                // has settled, then be loaded again.
                self.poisoned = true;
                Some(lookup_failed(&e))
            }
        };
        match settle {
            Settle::Message(message) => self.message_settled(*message, failure, fx),
            Settle::Notice { message, then } => {
                let refused_notice = failure.is_some();
                self.message_settled(*message, failure, fx);
                if !refused_notice {
                    match then {
                        AfterNotice::Nothing => {}
                        AfterNotice::RemoveMember(user) => fx.endings.push(Ending::Member(user)),
                        AfterNotice::DeleteRoom => {
                            fx.endings.push(Ending::Room);
                            fx.forget = true;
                        }
                    }
                }
            }
            Settle::Answer { mut answer, announce, notify, rewrote, then_delete_file } => {
                if let Some(seq) = rewrote {
                    // A deleted reply changed its thread's summary.
                    let left_thread =
                        self.rewrites.get(&seq).and_then(|(m, _)| m.deleted.then_some(m.thread)).flatten();
                    if let Some(root) = left_thread {
                        self.thread_settled(root, failure.is_none(), fx);
                    }
                    self.rewrite_settled(seq);
                }
                match failure {
                    Some(body) => {
                        answer.body = body;
                        if let Subscription::Joined(subscribe) = &mut answer.subscription {
                            *subscribe = None;
                        }
                        fx.answers.push(answer);
                    }
                    None => {
                        fx.answers.push(answer);
                        if let Some(event) = announce {
                            fx.announcements.push(Announcement { event: *event, skip: None });
                        }
                        fx.notices.extend(notify);
                        fx.deleted_files.extend(then_delete_file);
                    }
                }
            }
            Settle::ThreadRead { mut answer, user, root } => {
                let key = (user, root);
                if let Some((_, in_flight)) = self.thread_reads.get_mut(&key) {
                    *in_flight -= 1;
                    if *in_flight == 0 {
                        self.thread_reads.remove(&key);
                    }
                }
                if let Some(body) = failure {
                    answer.body = body;
                }
                fx.answers.push(answer);
            }
            Settle::Reaction { to, user, seq, emoji, added } => {
                let key = (seq, emoji.clone(), user.clone());
                if let Some((_, in_flight)) = self.reactions.get_mut(&key) {
                    *in_flight -= 1;
                    if *in_flight == 0 {
                        self.reactions.remove(&key);
                    }
                }
                if let Some(body) = failure {
                    fx.answers.push(Answer::plain(to, body));
                    return;
                }
                let room = self.room.id().clone();
                match lookups.reaction_count(&room, seq, &emoji) {
                    Ok(count) => {
                        let body = ok(OkBody::Reaction(ReactionOk { seq, emoji: emoji.clone(), count }));
                        fx.answers.push(Answer::plain(to, body));
                        let reaction = Reaction { room, seq, emoji, user, added, count };
                        fx.announcements.push(Announcement { event: Event::Reaction(reaction), skip: None });
                    }
                    Err(e) => fx.answers.push(Answer::plain(to, lookup_failed(&e))),
                }
            }
        }
    }

    fn message_settled(&mut self, message: Message, failure: Option<ReplyBody>, fx: &mut Effects<A>) {
        if let Some(file) = &message.file {
            self.sharing.remove(&file.file_id);
        }
        if let Some(root) = message.thread {
            self.thread_settled(root, failure.is_none(), fx);
        }
        if let Some(body) = failure {
            // The room assigned a seq that storage refused, so no later seq it assigned
            // can become durable in order either: fail every waiter.
            for mut answer in self.waiting.take_all() {
                answer.body = body.clone();
                fx.answers.push(answer);
            }
            return;
        }
        self.room.committed(message.seq);
        let durable = self.room.durable_seq();
        fx.answers.extend(self.waiting.take_through(durable));
        fx.deliveries.push(message);
    }
}

/// Answers waiting for their seq to become durable, in seq order (answers to one seq in
/// the order they came).
#[derive(Debug, Clone)]
struct Waiting<A>(VecDeque<(u64, Answer<A>)>);

impl<A> Default for Waiting<A> {
    fn default() -> Self {
        Self(VecDeque::new())
    }
}

impl<A> Waiting<A> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `answer` waits for `seq`: at the end for a new message, in place for a retry of
    /// an older one.
    fn add(&mut self, seq: u64, answer: Answer<A>) {
        let at = self.0.partition_point(|(waiting, _)| *waiting <= seq);
        self.0.insert(at, (seq, answer));
    }

    /// The answers waiting for seqs up to `durable`, which are now durable.
    fn take_through(&mut self, durable: u64) -> impl Iterator<Item = Answer<A>> + '_ {
        let ready = self.0.partition_point(|(seq, _)| *seq <= durable);
        self.0.drain(..ready).map(|(_, answer)| answer)
    }

    /// Every waiting answer.
    fn take_all(&mut self) -> Vec<Answer<A>> {
        self.0.drain(..).map(|(_, answer)| answer).collect()
    }
}
