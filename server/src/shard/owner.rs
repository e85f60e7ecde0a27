//! The owner role: the rooms that hash to this shard. The owner is each room's single
//! writer: it applies the room state machine, submits writes to group commit, and once
//! they are durable frames each event once per codec and fans it out to every shard
//! with subscribers, then answers the requests that waited for it.

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap;
use std::rc::Rc;
use std::sync::Arc;

use palaver_core::{Draft, Governance, HistoryRequest, HistoryWindow, Role, Room, SendOutcome, TypingChange};
use palaver_protocol::paging::PageBuilder;
use palaver_protocol::{
    Delete, Edit, EditOk, ErrorBody, ErrorCode, Event, FileRef, HistoryOk, JoinOk, MemberChange, MemberEvent,
    Message, MessageKind, OkBody, Reaction, ReactionOk, Receipt, ReceiptOk, ReplyBody, ReplyPreview, RoomId,
    RoomKind, RoomOk, SendOk, ServerFrame, Typing, UserId,
};
use palaver_storage::{CidHash, RoomRecord, StorageError, Write};

use super::Shard;
use super::known_cids::KnownCids;
use super::messages::{
    AfterNotice, CommitWork, Delivery, Ephemeral, LazyFrames, Origin, Reply, RoomAction, ShardMsg, Subscribe,
    Ticket, sent,
};
use crate::clock::now_ms;

/// A room this shard owns, with the plumbing around its state machine.
#[derive(Debug)]
pub struct OwnedRoom {
    pub(super) room: Room,
    /// Shards that have local subscribers.
    pub(super) subscriber_shards: BTreeSet<usize>,
    /// Requests waiting for a seq to become durable (sends, notices), by seq, with the
    /// answer to give then.
    pub(super) waiting: BTreeMap<u64, Vec<(Origin, ReplyBody)>>,
    /// A write this room's memory already reflects was refused: reload before next use
    /// (once `unsettled` is 0, so no write with a seq from before the reload is still
    /// queued; reloading earlier could hand out such a seq a second time).
    pub(super) poisoned: bool,
    /// Seq-assigning writes (messages, notices) submitted and not yet committed or failed.
    pub(super) unsettled: usize,
    /// Being deleted: refuse everything.
    pub(super) deleting: bool,
    /// Which cids storage may hold for the room: spares new messages the lookup.
    pub(super) cids: KnownCids,
    /// When a command last reached the room (ms since the epoch): idle rooms leave
    /// memory (see [`unload_idle`]).
    pub(super) last_used_ms: u64,
    /// Messages rewritten (edited, deleted) by writes not yet durable: their newest
    /// version, and how many such writes are in flight. A command on a message reads it
    /// here before storage, so it acts on what the room already decided — an edit racing
    /// a delete sees the tombstone, not the text storage still has.
    pub(super) rewrites: FxHashMap<u64, (Message, u32)>,
    /// Reaction changes not yet durable: whether the reaction is there after them, and
    /// how many are in flight.
    pub(super) reactions: FxHashMap<(u64, String, UserId), (bool, u32)>,
    /// Files being shared by messages not yet durable, with the sender and cid of the
    /// message sharing each (a file is shared by one message).
    pub(super) sharing: FxHashMap<String, (UserId, palaver_protocol::ClientMsgId)>,
}

impl OwnedRoom {
    fn new(room: Room, cids: KnownCids) -> Self {
        Self {
            cids,
            room,
            subscriber_shards: BTreeSet::new(),
            waiting: BTreeMap::new(),
            poisoned: false,
            unsettled: 0,
            deleting: false,
            last_used_ms: now_ms(),
            rewrites: FxHashMap::default(),
            reactions: FxHashMap::default(),
            sharing: FxHashMap::default(),
        }
    }
}

/// The rooms owned by one shard, loaded on first use.
#[derive(Debug, Default)]
pub struct OwnedRooms {
    pub(super) rooms: FxHashMap<RoomId, OwnedRoom>,
}

/// Starts holding a room's state: in a cluster it takes over the local subscribers the
/// relay was feeding, and the gateway becomes a subscriber (for other nodes').
fn hold(shard: &Rc<Shard>, room_id: RoomId, mut owned: OwnedRoom) {
    super::relay::adopt_subscribers(shard, &room_id, &mut owned.subscriber_shards);
    shard.owned.borrow_mut().rooms.insert(room_id, owned);
}

pub(super) fn error(code: ErrorCode, message: impl Into<String>) -> ReplyBody {
    ReplyBody::Err(ErrorBody::new(code, message))
}

/// `rate_limited`, to retry after `wait_ms`.
pub(super) fn rate_limited(message: impl Into<String>, wait_ms: u64) -> ReplyBody {
    let mut body = ErrorBody::new(ErrorCode::RateLimited, message);
    body.retry_after_ms = Some(wait_ms);
    ReplyBody::Err(body)
}

/// Whether `a` and `b` are friends (no limits on what friends send each other).
pub(super) fn are_friends(shard: &Shard, a: &UserId, b: &UserId) -> Result<bool, StorageError> {
    let state = shard.shared.store.friend(a, b)?.map(|(state, _)| state);
    Ok(state == Some(palaver_protocol::FriendState::Friends))
}

pub(super) fn storage_error(e: &StorageError) -> ReplyBody {
    match e {
        e if e.is_unavailable() => {
            error(ErrorCode::Unavailable, "storage is refusing writes; try again later")
        }
        _ => {
            tracing::error!("storage: {e}");
            error(ErrorCode::Internal, "storage failure")
        }
    }
}

/// Sends an answer to the origin shard.
pub(super) fn answer(shard: &Shard, origin_shard: usize, reply: Reply) {
    shard.mesh().send(origin_shard, ShardMsg::Reply(reply));
}

pub(super) fn submit(shard: &Shard, writes: Vec<Write>, work: CommitWork) -> Result<(), StorageError> {
    shard.shared.committer.submit(writes, Ticket { shard: shard.id, work })?;
    shard.outstanding_commits.set(shard.outstanding_commits.get() + 1);
    Ok(())
}

/// Loads a room into memory (a few point reads and one short scan, served from fjall's
/// caches), or returns `None` if it does not exist.
fn load(shard: &Shard, id: &RoomId) -> Result<Option<OwnedRoom>, StorageError> {
    let store = &shard.shared.store;
    let Some(record) = store.room(id)? else { return Ok(None) };
    let members = store.members(id)?;
    let last = store.messages_before(id, None, 1)?;
    let (last_seq, last_ts) = last.first().map_or((0, 0), |m| (m.seq, m.ts));
    let mut room = Room::restore(
        record.room_id,
        record.name,
        record.kind,
        members,
        last_seq,
        last_ts,
        shard.shared.config.room_limits(),
    );
    room.load_receipts(store.receipts(id)?);
    room.load_governance(Governance {
        topic: record.topic,
        settings: record.settings,
        bans: store.bans(id)?,
        mutes: store.mutes(id)?,
        invites: store.invites(id)?,
    });
    room.expire_mutes(now_ms());
    Ok(Some(OwnedRoom::new(room, KnownCids::at_start(shard, last_seq > 0))))
}

/// Applies one room operation.
pub fn on_command(shard: &Rc<Shard>, origin: Origin, action: RoomAction) {
    // In a cluster, a room owned by another node is only relayed here.
    let Some((origin, action)) = super::relay::route(shard, origin, action) else { return };
    on_routed_command(shard, origin, action);
}

/// Applies one room operation this shard serves.
pub(super) fn on_routed_command(shard: &Rc<Shard>, origin: Origin, action: RoomAction) {
    let reply_to = origin.shard;
    match action {
        RoomAction::Create { room, name, kind, topic, settings } => {
            return create(shard, origin, room, name, kind, topic, settings);
        }
        RoomAction::DmOpen { room, peer } => return dm_open(shard, origin, room, peer),
        _ => {}
    }
    let room_id = action.room().clone();
    let mut owned_rooms = shard.owned.borrow_mut();
    // A room whose memory ran ahead of a refused write reloads from storage once every
    // write it submitted has settled; its subscribers stay (their sockets are unaffected).
    let mut carried_subscribers = None;
    if owned_rooms
        .rooms
        .get(&room_id)
        .is_some_and(|o| o.poisoned && o.unsettled == 0 && o.rewrites.is_empty() && o.reactions.is_empty())
        && let Some(stale) = owned_rooms.rooms.remove(&room_id)
    {
        carried_subscribers = Some(stale.subscriber_shards);
    }
    if owned_rooms.rooms.get(&room_id).is_some_and(|o| o.deleting || o.poisoned) {
        let body = if owned_rooms.rooms.get(&room_id).is_some_and(|o| o.deleting) {
            error(ErrorCode::NotFound, format!("no room {room_id}"))
        } else {
            error(ErrorCode::Unavailable, "the room is recovering from a storage failure; try again")
        };
        let mut reply = Reply::plain(&origin, body);
        if matches!(action, RoomAction::Join { .. }) {
            reply.was_join = Some(room_id);
        }
        return answer(shard, reply_to, reply);
    }
    if !owned_rooms.rooms.contains_key(&room_id) {
        match load(shard, &room_id) {
            Ok(Some(mut room)) => {
                if let Some(subscribers) = carried_subscribers {
                    room.subscriber_shards = subscribers;
                }
                super::relay::adopt_subscribers(shard, &room_id, &mut room.subscriber_shards);
                owned_rooms.rooms.insert(room_id.clone(), room);
            }
            Ok(None) => {
                let mut reply =
                    Reply::plain(&origin, error(ErrorCode::NotFound, format!("no room {room_id}")));
                if matches!(action, RoomAction::Join { .. }) {
                    reply.was_join = Some(room_id);
                }
                answer(shard, reply_to, reply);
                return;
            }
            Err(e) => {
                let mut reply = Reply::plain(&origin, storage_error(&e));
                if matches!(action, RoomAction::Join { .. }) {
                    reply.was_join = Some(room_id);
                }
                answer(shard, reply_to, reply);
                return;
            }
        }
    }
    let Some(owned) = owned_rooms.rooms.get_mut(&room_id) else { return };
    owned.last_used_ms = now_ms();
    match action {
        RoomAction::Create { .. } | RoomAction::DmOpen { .. } => {}
        action @ (RoomAction::Get { .. }
        | RoomAction::Update { .. }
        | RoomAction::DeleteRoom { .. }
        | RoomAction::Members { .. }
        | RoomAction::Invite { .. }
        | RoomAction::Decline { .. }
        | RoomAction::Moderate { .. }) => super::governance::on_action(shard, owned, origin, action),
        RoomAction::Join { room, since } => join(shard, owned, origin, room, since),
        RoomAction::Leave { room } => leave(shard, owned, origin, room),
        RoomAction::Send { room, cid, kind, text, client_ts, reply_to: parent, file, encryption } => {
            let store = &shard.shared.store;
            if owned.room.kind() == RoomKind::Direct && dm_blocked(shard, &owned.room, &origin.user) {
                let body = error(ErrorCode::Forbidden, "this user does not accept messages from you");
                return answer(shard, reply_to, Reply::plain(&origin, body));
            }
            // Almost every cid is new: the room's filter says so without a storage read.
            let cid_hash = CidHash::of(&origin.user, &cid);
            let known = &owned.cids;
            let sender = &origin.user;
            let lookup = |cid: &palaver_protocol::ClientMsgId| {
                if known.may_be_stored(cid_hash) {
                    store.cid_seq(&room, sender, cid).ok().flatten()
                } else {
                    None
                }
            };
            // Mentions are resolved here (a storage lookup per `@name`); the room keeps
            // only those who are members.
            // (Never in ciphertext: the server does not look into encrypted bodies.)
            let named = if kind == MessageKind::Encrypted {
                Vec::new()
            } else {
                palaver_core::mentioned_usernames(&text)
            };
            let mentions = named
                .iter()
                .filter_map(|name| store.user_by_name(name).ok().flatten().map(|u| u.user_id))
                .collect();
            // A shared file must have been uploaded to this room; its size, type and
            // dimensions are the server's (found from its bytes), not the client's claim.
            let mut file_record = None;
            let file = match file {
                Some(claimed) if owned.room.settings().file_sharing => match store.file(&claimed.file_id) {
                    Ok(Some(record)) if record.room == room => {
                        // One message shares a file (and deleting it deletes the file): a
                        // second is refused, a retry of the first is a retry.
                        let shared_by = match owned.sharing.get(&record.file_id) {
                            Some(by) => Some(by.clone()),
                            None => record
                                .shared_in
                                .and_then(|seq| store.message(&room, seq).ok().flatten())
                                .map(|m| (m.sender, m.cid)),
                        };
                        // (Only for kinds that carry a file: the room refuses any other
                        // with a file as invalid, whichever file it is.)
                        let carries_file = matches!(kind, MessageKind::Image | MessageKind::File);
                        if carries_file
                            && shared_by.is_some_and(|(sender, shared_cid)| {
                                sender != origin.user || shared_cid != cid
                            })
                        {
                            let body = error(
                                ErrorCode::Conflict,
                                format!(
                                    "file {} is shared by another message; upload it again to share it again",
                                    record.file_id
                                ),
                            );
                            return answer(shard, reply_to, Reply::plain(&origin, body));
                        }
                        file_record = Some(record.clone());
                        Some(Box::new(FileRef {
                            name: if claimed.name.trim().is_empty() { record.name } else { claimed.name },
                            file_id: record.file_id,
                            size: record.size,
                            content_type: record.content_type,
                            width: record.width,
                            height: record.height,
                        }))
                    }
                    Ok(_) => {
                        let body =
                            error(ErrorCode::NotFound, format!("no file {} in this room", claimed.file_id));
                        return answer(shard, reply_to, Reply::plain(&origin, body));
                    }
                    Err(e) => return answer(shard, reply_to, Reply::plain(&origin, storage_error(&e))),
                },
                other => other,
            };
            let draft = Draft { cid, kind, text, client_ts, reply_to: parent, file, mentions, encryption };
            match owned.room.send(now_ms(), &origin.user, draft, lookup) {
                Err(e) => answer(shard, reply_to, Reply::plain(&origin, ReplyBody::Err(e.to_body()))),
                Ok(SendOutcome::Append(appended)) => {
                    let message = appended.message;
                    let ok = SendOk { seq: message.seq, ts: message.ts, duplicate: false };
                    // The sender's own watermarks move with the message, in the same batch.
                    let (delivered, read) = owned.room.receipt_of(&origin.user);
                    let mut writes = vec![
                        Write::AppendMessage(message.clone()),
                        Write::PutReceipt { room: room.clone(), user: origin.user.clone(), delivered, read },
                    ];
                    let shares = file_record.map(|record| {
                        let file_id = record.file_id.clone();
                        writes.push(Write::PutFile(palaver_storage::FileRecord {
                            shared_in: Some(message.seq),
                            ..record
                        }));
                        file_id
                    });
                    let sharer = (message.sender.clone(), message.cid.clone());
                    match submit(shard, writes, CommitWork::Message(message)) {
                        Ok(()) => {
                            if let Some(file_id) = shares {
                                owned.sharing.insert(file_id, sharer);
                            }
                            owned.cids.appended(shard, &room, cid_hash);
                            owned.unsettled += 1;
                            owned.waiting.entry(ok.seq).or_default().push((origin, sent(ok)));
                        }
                        Err(e) => {
                            owned.poisoned = true;
                            answer(shard, reply_to, Reply::plain(&origin, storage_error(&e)));
                        }
                    }
                }
                Ok(SendOutcome::Duplicate { seq, ts }) => {
                    let ok = SendOk { seq, ts, duplicate: true };
                    if seq <= owned.room.durable_seq() {
                        answer(shard, reply_to, Reply::plain(&origin, sent(ok)));
                    } else {
                        owned.waiting.entry(seq).or_default().push((origin, sent(ok)));
                    }
                }
            }
        }
        RoomAction::Receipt { room, delivered, read } => {
            match owned.room.receipt(&origin.user, delivered, read) {
                Err(e) => answer(shard, reply_to, Reply::plain(&origin, ReplyBody::Err(e.to_body()))),
                Ok(change) => {
                    let ok = ReplyBody::Ok(OkBody::Receipt(ReceiptOk {
                        delivered: change.delivered,
                        read: change.read,
                    }));
                    if !change.changed {
                        return answer(shard, reply_to, Reply::plain(&origin, ok));
                    }
                    let write = Write::PutReceipt {
                        room,
                        user: origin.user.clone(),
                        delivered: change.delivered,
                        read: change.read,
                    };
                    let work = CommitWork::Reply { shard: reply_to, reply: Reply::plain(&origin, ok) };
                    if let Err(e) = submit(shard, vec![write], work) {
                        answer(shard, reply_to, Reply::plain(&origin, storage_error(&e)));
                    }
                }
            }
        }
        RoomAction::Edit { room, seq, text } => {
            let now = now_ms();
            let result = current_message(shard, owned, &room, seq).and_then(|original| {
                let text = owned
                    .room
                    .check_edit(now, &origin.user, &original, text)
                    .map_err(|e| ReplyBody::Err(e.to_body()))?;
                Ok((text, original))
            });
            match result {
                Err(body) => answer(shard, reply_to, Reply::plain(&origin, body)),
                Ok((text, original)) => {
                    let edited = Message { text: text.clone(), edited_at: Some(now), ..original.clone() };
                    let writes = vec![
                        Write::PutEditHistory {
                            room: room.clone(),
                            seq,
                            edited_at: now,
                            previous_text: original.text,
                        },
                        Write::ReplaceMessage(edited.clone()),
                    ];
                    let ok = ReplyBody::Ok(OkBody::Edited(EditOk { seq, edited_at: now }));
                    let event = ServerFrame::Event(Event::Edit(Edit {
                        room: room.clone(),
                        seq,
                        text,
                        edited_at: now,
                    }));
                    let work = CommitWork::ReplyAndAnnounce {
                        shard: reply_to,
                        reply: Reply::plain(&origin, ok),
                        room,
                        event: Box::new(event),
                        rewrote: Some(seq),
                    };
                    match submit(shard, writes, work) {
                        Ok(()) => rewriting(owned, edited),
                        Err(e) => answer(shard, reply_to, Reply::plain(&origin, storage_error(&e))),
                    }
                }
            }
        }
        RoomAction::Delete { room, seq } => {
            let result = current_message(shard, owned, &room, seq).and_then(|original| {
                let todo = owned
                    .room
                    .check_delete(&origin.user, &original)
                    .map_err(|e| ReplyBody::Err(e.to_body()))?;
                Ok((todo, original))
            });
            let empty = ReplyBody::Ok(OkBody::Empty(Default::default()));
            match result {
                Err(body) => answer(shard, reply_to, Reply::plain(&origin, body)),
                // Already a tombstone: deleting again is a no-op.
                Ok((false, _)) => answer(shard, reply_to, Reply::plain(&origin, empty)),
                Ok((true, original)) => {
                    // The tombstone keeps the seq, sender, time and reply structure; the
                    // content (text, file, mentions, edit history) is dropped from storage.
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
                        Write::RemoveMentions { room: room.clone(), seq, users: original.mentions },
                    ];
                    // A deleted message's file goes with it: its record now, so downloads
                    // stop once the delete is durable (the bytes follow off the shard).
                    if let Some(file) = &original.file {
                        writes.push(Write::RemoveFile { file_id: file.file_id.clone() });
                    }
                    let by = origin.user.clone();
                    let event = ServerFrame::Event(Event::Delete(Delete { room: room.clone(), seq, by }));
                    let work = CommitWork::ReplyAndAnnounce {
                        shard: reply_to,
                        reply: Reply::plain(&origin, empty),
                        room,
                        event: Box::new(event),
                        rewrote: Some(seq),
                    };
                    match submit(shard, writes, work) {
                        Ok(()) => {
                            rewriting(owned, tombstone);
                            if let Some(file) = original.file {
                                shard.shared.files.delete_later(&file.file_id);
                            }
                        }
                        Err(e) => answer(shard, reply_to, Reply::plain(&origin, storage_error(&e))),
                    }
                }
            }
        }
        RoomAction::React { room, seq, emoji, add } => {
            match owned.room.check_reaction(now_ms(), &origin.user, seq, emoji) {
                Err(e) => answer(shard, reply_to, Reply::plain(&origin, ReplyBody::Err(e.to_body()))),
                Ok(emoji) => {
                    let (emoji, user) = (emoji.as_str().to_owned(), origin.user.clone());
                    let store = &shard.shared.store;
                    // Adding a reaction that exists (or removing one that does not) changes
                    // nothing: answer with the count, write and announce nothing. A change
                    // still in flight counts as made.
                    let pending =
                        owned.reactions.get(&(seq, emoji.clone(), user.clone())).map(|(present, _)| *present);
                    let exists = match pending {
                        Some(present) => Ok(present),
                        None => store.has_reaction(&room, seq, &emoji, &user),
                    };
                    match exists {
                        Ok(exists) if exists == add => {
                            let body = match store.reaction_count(&room, seq, &emoji) {
                                Ok(count) => {
                                    ReplyBody::Ok(OkBody::Reaction(ReactionOk { seq, emoji, count }))
                                }
                                Err(e) => storage_error(&e),
                            };
                            return answer(shard, reply_to, Reply::plain(&origin, body));
                        }
                        Ok(_) => {}
                        Err(e) => return answer(shard, reply_to, Reply::plain(&origin, storage_error(&e))),
                    }
                    let write = if add {
                        Write::PutReaction { room: room.clone(), seq, emoji: emoji.clone(), user }
                    } else {
                        Write::RemoveReaction { room: room.clone(), seq, emoji: emoji.clone(), user }
                    };
                    let failed = origin.clone();
                    let key = (seq, emoji.clone(), origin.user.clone());
                    let work = CommitWork::Reaction { origin, room, seq, emoji, added: add };
                    match submit(shard, vec![write], work) {
                        Ok(()) => {
                            let entry = owned.reactions.entry(key).or_insert((add, 0));
                            *entry = (add, entry.1 + 1);
                        }
                        Err(e) => answer(shard, reply_to, Reply::plain(&failed, storage_error(&e))),
                    }
                }
            }
        }
        RoomAction::Typing { room: _, active } => {
            let body = match owned.room.typing(now_ms(), &origin.user, active) {
                Err(e) => ReplyBody::Err(e.to_body()),
                Ok(change) => {
                    announce_typing(shard, owned, &origin.user, change);
                    ReplyBody::Ok(OkBody::Empty(Default::default()))
                }
            };
            answer(shard, reply_to, Reply::plain(&origin, body));
        }
        RoomAction::History { room, before, after, limit, cursor } => {
            let page = HistoryRequest { before, after, limit, cursor };
            let body = match owned.room.history_page(&origin.user, page) {
                Err(e) => ReplyBody::Err(e.to_body()),
                Ok(window) => match history_page(&shard.shared.store, &room, window, &origin.user) {
                    Ok((messages, next)) => ReplyBody::Ok(OkBody::History(HistoryOk { messages, next })),
                    Err(e) => storage_error(&e),
                },
            };
            answer(shard, reply_to, Reply::plain(&origin, body));
        }
    }
}

fn create(
    shard: &Rc<Shard>,
    origin: Origin,
    room_id: RoomId,
    name: String,
    kind: palaver_protocol::RoomKind,
    topic: Option<String>,
    settings: Option<palaver_protocol::RoomSettingsPatch>,
) {
    let reply_to = origin.shard;
    let refuse = |body| answer(shard, reply_to, Reply::plain(&origin, body));
    if let Err(wait) = shard.shared.spam.create_room(&origin.user, now_ms()) {
        return refuse(rate_limited("rooms are being created too fast; slow down", wait));
    }
    let max = shard.shared.config.max_rooms_per_user;
    match shard.shared.store.owned_room_count(&origin.user, max) {
        Ok(owned) if owned >= max => {
            return refuse(error(
                ErrorCode::Forbidden,
                format!("a user owns at most {max} rooms; delete or transfer one first"),
            ));
        }
        Ok(_) => {}
        Err(e) => return refuse(storage_error(&e)),
    }
    let room = match Room::create_with(
        room_id.clone(),
        name,
        kind,
        origin.user.clone(),
        topic,
        settings,
        shard.shared.config.room_limits(),
    ) {
        Ok(room) => room,
        Err(e) => return answer(shard, reply_to, Reply::plain(&origin, ReplyBody::Err(e.to_body()))),
    };
    let info = room.info();
    let writes = vec![
        Write::PutRoom(RoomRecord {
            room_id: room_id.clone(),
            name: info.name.clone(),
            kind: info.kind,
            owner: origin.user.clone(),
            created_ms: now_ms(),
            topic: info.topic.clone(),
            settings: Some(room.settings()),
            deleted: false,
        }),
        Write::PutMember { room: room_id.clone(), user: origin.user.clone(), role: Role::Owner },
    ];
    let reply = Reply::plain(&origin, ReplyBody::Ok(OkBody::Room(RoomOk { room: info })));
    match submit(shard, writes, CommitWork::Reply { shard: reply_to, reply }) {
        Ok(()) => {
            hold(shard, room_id, OwnedRoom::new(room, KnownCids::at_start(shard, false)));
        }
        Err(e) => answer(shard, reply_to, Reply::plain(&origin, storage_error(&e))),
    }
}

/// Opens the pair's direct room: answers with it if it exists, else creates it (this
/// shard owns the derived id, so two concurrent opens cannot create it twice).
fn dm_open(shard: &Rc<Shard>, origin: Origin, room_id: RoomId, peer: UserId) {
    let reply_to = origin.shard;
    match shard.shared.store.is_blocked(&peer, &origin.user) {
        Ok(false) => {}
        Ok(true) => {
            let body =
                error(ErrorCode::Forbidden, format!("{peer} does not accept direct messages from you"));
            return answer(shard, reply_to, Reply::plain(&origin, body));
        }
        Err(e) => return answer(shard, reply_to, Reply::plain(&origin, storage_error(&e))),
    }
    let existing = shard.owned.borrow().rooms.get(&room_id).map(|o| o.room.info());
    let existing = match existing {
        Some(info) => Some(info),
        None => match load(shard, &room_id) {
            Ok(loaded) => loaded.map(|owned| {
                let info = owned.room.info();
                hold(shard, room_id.clone(), owned);
                info
            }),
            Err(e) => return answer(shard, reply_to, Reply::plain(&origin, storage_error(&e))),
        },
    };
    if let Some(info) = existing {
        let ok = Reply::plain(&origin, ReplyBody::Ok(OkBody::Room(RoomOk { room: info })));
        // The one of the pair who left comes back: the room is theirs by construction
        // (its id is derived from the pair), and what was said meanwhile is there.
        let mut owned_rooms = shard.owned.borrow_mut();
        let Some(owned) = owned_rooms.rooms.get_mut(&room_id) else { return answer(shard, reply_to, ok) };
        return match owned.room.readmit_direct(&origin.user) {
            Ok(false) => answer(shard, reply_to, ok),
            Err(e) => answer(shard, reply_to, Reply::plain(&origin, ReplyBody::Err(e.to_body()))),
            Ok(true) => {
                let write =
                    Write::PutMember { room: room_id.clone(), user: origin.user.clone(), role: Role::Member };
                let event = member_event(&room_id, &origin.user, MemberChange::Joined, Role::Member);
                let work = CommitWork::ReplyAndAnnounce {
                    shard: reply_to,
                    reply: ok,
                    room: room_id,
                    event: Box::new(event),
                    rewrote: None,
                };
                if let Err(e) = submit(shard, vec![write], work) {
                    owned.room.forget_member(&origin.user);
                    answer(shard, reply_to, Reply::plain(&origin, storage_error(&e)));
                }
            }
        };
    }
    match shard.shared.store.user(&peer) {
        Ok(Some(_)) => {}
        Ok(None) => {
            let body = error(ErrorCode::NotFound, format!("no user {peer}"));
            return answer(shard, reply_to, Reply::plain(&origin, body));
        }
        Err(e) => return answer(shard, reply_to, Reply::plain(&origin, storage_error(&e))),
    }
    // A new direct room with someone who is not a friend is unsolicited: limited per
    // sender and per recipient.
    match are_friends(shard, &origin.user, &peer) {
        Ok(true) => {}
        Ok(false) => {
            if let Err(wait) = shard.shared.spam.dm_stranger(&origin.user, &peer, now_ms()) {
                let body =
                    rate_limited("too many new direct rooms with people who are not your friends", wait);
                return answer(shard, reply_to, Reply::plain(&origin, body));
            }
        }
        Err(e) => return answer(shard, reply_to, Reply::plain(&origin, storage_error(&e))),
    }
    let room =
        Room::direct(room_id.clone(), origin.user.clone(), peer.clone(), shard.shared.config.room_limits());
    let info = room.info();
    let mut writes = vec![Write::PutRoom(RoomRecord {
        room_id: room_id.clone(),
        name: info.name.clone(),
        kind: info.kind,
        owner: origin.user.clone(),
        created_ms: now_ms(),
        topic: String::new(),
        settings: None,
        deleted: false,
    })];
    for user in [&origin.user, &peer] {
        writes.push(Write::PutMember { room: room_id.clone(), user: user.clone(), role: Role::Member });
    }
    let reply = Reply::plain(&origin, ReplyBody::Ok(OkBody::Room(RoomOk { room: info })));
    match submit(shard, writes, CommitWork::Reply { shard: reply_to, reply }) {
        Ok(()) => {
            hold(shard, room_id, OwnedRoom::new(room, KnownCids::at_start(shard, false)));
        }
        Err(e) => answer(shard, reply_to, Reply::plain(&origin, storage_error(&e))),
    }
}

fn join(shard: &Rc<Shard>, owned: &mut OwnedRoom, origin: Origin, room: RoomId, since: Option<u64>) {
    let reply_to = origin.shard;
    match owned.room.join(&origin.user) {
        Err(e) => {
            let mut reply = Reply::plain(&origin, ReplyBody::Err(e.to_body()));
            reply.was_join = Some(room);
            answer(shard, reply_to, reply);
        }
        Ok(outcome) => {
            owned.subscriber_shards.insert(origin.shard);
            let last_seq = outcome.last_seq;
            let body = ReplyBody::Ok(OkBody::Joined(JoinOk { room: owned.room.info(), last_seq }));
            let reply = Reply {
                conn: origin.conn,
                re: origin.re,
                body,
                subscribe: Some(Subscribe {
                    room: room.clone(),
                    cursor: since.unwrap_or(last_seq).min(last_seq),
                    last_seq,
                }),
                unsubscribe: None,
                was_join: Some(room.clone()),
            };
            if !outcome.newly_member {
                return answer(shard, reply_to, reply);
            }
            let mut writes =
                vec![Write::PutMember { room: room.clone(), user: origin.user.clone(), role: outcome.role }];
            if outcome.used_invite {
                writes.push(Write::RemoveInvite { room: room.clone(), user: origin.user.clone() });
            }
            let event = member_event(&room, &origin.user, MemberChange::Joined, outcome.role);
            let work = CommitWork::ReplyAndAnnounce {
                shard: reply_to,
                reply,
                room: room.clone(),
                event: Box::new(event),
                rewrote: None,
            };
            if let Err(e) = submit(shard, writes, work) {
                owned.room.forget_member(&origin.user);
                let mut reply = Reply::plain(&origin, storage_error(&e));
                reply.was_join = Some(room);
                answer(shard, reply_to, reply);
            }
        }
    }
}

fn member_event(room: &RoomId, user: &UserId, change: MemberChange, role: Role) -> ServerFrame {
    ServerFrame::Event(Event::Member(MemberEvent { room: room.clone(), user: user.clone(), change, role }))
}

fn leave(shard: &Rc<Shard>, owned: &mut OwnedRoom, origin: Origin, room: RoomId) {
    let reply_to = origin.shard;
    let mut reply = Reply::plain(&origin, ReplyBody::Ok(OkBody::Empty(Default::default())));
    reply.unsubscribe = Some(room.clone());
    let role = owned.room.role_of(&origin.user).unwrap_or(Role::Member);
    match owned.room.leave(&origin.user) {
        Err(e) => return answer(shard, reply_to, Reply::plain(&origin, ReplyBody::Err(e.to_body()))),
        Ok(false) => return answer(shard, reply_to, reply),
        Ok(true) => {}
    }
    // Every socket of this user, on every shard, stops receiving the room's events.
    for &s in &owned.subscriber_shards {
        shard.mesh().send(s, ShardMsg::MemberGone { room: room.clone(), user: origin.user.clone() });
    }
    let write = Write::RemoveMember { room: room.clone(), user: origin.user.clone() };
    let event = member_event(&room, &origin.user, MemberChange::Left, role);
    let work =
        CommitWork::ReplyAndAnnounce { shard: reply_to, reply, room, event: Box::new(event), rewrote: None };
    if let Err(e) = submit(shard, vec![write], work) {
        answer(shard, reply_to, Reply::plain(&origin, storage_error(&e)));
    }
}

/// Whether the other user of a direct room has blocked `sender`.
fn dm_blocked(shard: &Shard, room: &Room, sender: &UserId) -> bool {
    room.member_ids()
        .iter()
        .filter(|u| *u != sender)
        .any(|other| shard.shared.store.is_blocked(other, sender).unwrap_or(false))
}

/// A shard no longer has subscribers to `room`.
pub fn on_unsubscribe(shard: &Rc<Shard>, room: &RoomId, from: usize) {
    if let Some(owned) = shard.owned.borrow_mut().rooms.get_mut(room) {
        owned.subscriber_shards.remove(&from);
    }
    super::relay::on_unsubscribe(shard, room, from);
}

/// A group commit finished: fan out what became durable and answer who waited.
pub fn on_committed(shard: &Rc<Shard>, works: Vec<CommitWork>, result: Result<(), Arc<StorageError>>) {
    shard.outstanding_commits.set(shard.outstanding_commits.get().saturating_sub(works.len()));
    let metrics = &shard.shared.metrics;
    for work in works {
        match (work, &result) {
            (CommitWork::Reply { shard: to, reply }, Ok(())) => answer(shard, to, reply),
            (CommitWork::Reply { shard: to, mut reply }, Err(e)) => {
                reply.body = storage_error(e);
                reply.subscribe = None;
                answer(shard, to, reply);
            }
            (CommitWork::ReplyAndAnnounce { shard: to, reply, room, event, rewrote }, Ok(())) => {
                if let Some(seq) = rewrote {
                    rewrite_settled(shard, &room, seq);
                }
                answer(shard, to, reply);
                let owned_rooms = shard.owned.borrow();
                if let Some(owned) = owned_rooms.rooms.get(&room) {
                    let frames = LazyFrames::new(*event);
                    broadcast_ephemeral(shard, owned, Ephemeral { room, skip: None, frames });
                }
            }
            (CommitWork::ReplyAndAnnounce { shard: to, mut reply, room, rewrote, .. }, Err(e)) => {
                if let Some(seq) = rewrote {
                    rewrite_settled(shard, &room, seq);
                }
                reply.body = storage_error(e);
                answer(shard, to, reply);
            }
            (CommitWork::Reaction { origin, room, seq, emoji, added }, Ok(())) => {
                reaction_settled(shard, &room, (seq, emoji.clone(), origin.user.clone()));
                reaction_durable(shard, origin, room, seq, emoji, added);
            }
            (CommitWork::Reaction { origin, room, seq, emoji, .. }, Err(e)) => {
                reaction_settled(shard, &room, (seq, emoji, origin.user.clone()));
                answer(shard, origin.shard, Reply::plain(&origin, storage_error(e)));
            }
            (CommitWork::Message(message), Ok(())) => {
                metrics.messages_stored.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                message_durable(shard, message);
            }
            (CommitWork::Message(message) | CommitWork::Notice { message, .. }, Err(e)) => {
                // The room assigned a seq that storage refused, so every later seq it
                // assigned cannot become durable in order either: fail every waiter and
                // reload the room from storage once its queued writes have settled
                // (they fail too: storage holds a refusal for a while, see
                // `palaver_storage`'s disk guard).
                let mut owned_rooms = shard.owned.borrow_mut();
                if let Some(owned) = owned_rooms.rooms.get_mut(&message.room) {
                    owned.unsettled = owned.unsettled.saturating_sub(1);
                    owned.poisoned = true;
                    if let Some(file) = &message.file {
                        owned.sharing.remove(&file.file_id);
                    }
                    for (origin, _) in std::mem::take(&mut owned.waiting).into_values().flatten() {
                        answer(shard, origin.shard, Reply::plain(&origin, storage_error(e)));
                    }
                }
            }
            (CommitWork::Notice { message, then }, Ok(())) => {
                let room = message.room.clone();
                message_durable(shard, message);
                after_notice(shard, &room, then);
            }
            (CommitWork::People { shard: to, mut reply, notices, release }, result) => {
                super::people::release(shard, &release);
                match result {
                    Ok(()) => {
                        answer(shard, to, reply);
                        for notice in notices {
                            shard
                                .mesh()
                                .send(shard.mesh().home(&notice.user), ShardMsg::Notify(Box::new(notice)));
                        }
                    }
                    Err(e) => {
                        reply.body = storage_error(e);
                        answer(shard, to, reply);
                    }
                }
            }
            (CommitWork::Nothing, Ok(())) => {}
            (CommitWork::Nothing, Err(e)) => tracing::warn!("a background write failed: {e}"),
        }
    }
}

fn message_durable(shard: &Rc<Shard>, message: Message) {
    let mut owned_rooms = shard.owned.borrow_mut();
    let Some(owned) = owned_rooms.rooms.get_mut(&message.room) else { return };
    owned.unsettled = owned.unsettled.saturating_sub(1);
    if let Some(file) = &message.file {
        owned.sharing.remove(&file.file_id);
    }
    owned.room.committed(message.seq);
    let seq = message.seq;
    let room = message.room.clone();
    let sender = message.sender.clone();
    let frames = LazyFrames::new(ServerFrame::Event(Event::Message(message)));
    let delivery = Arc::new(Delivery { room, seq, sender, frames, flagged: std::sync::OnceLock::new() });
    for &s in &owned.subscriber_shards {
        shard.mesh().send(s, ShardMsg::Deliver(delivery.clone()));
    }
    let durable = owned.room.durable_seq();
    let ready: Vec<u64> = owned.waiting.range(..=durable).map(|(s, _)| *s).collect();
    for s in ready {
        for (origin, body) in owned.waiting.remove(&s).unwrap_or_default() {
            answer(shard, origin.shard, Reply::plain(&origin, body));
        }
    }
}

/// What follows a durable `system` message.
fn after_notice(shard: &Rc<Shard>, room: &RoomId, then: AfterNotice) {
    match then {
        AfterNotice::Nothing => {}
        AfterNotice::RemoveMember(user) => {
            let owned_rooms = shard.owned.borrow();
            let Some(owned) = owned_rooms.rooms.get(room) else { return };
            for &s in &owned.subscriber_shards {
                shard.mesh().send(s, ShardMsg::MemberGone { room: room.clone(), user: user.clone() });
            }
        }
        AfterNotice::DeleteRoom => {
            let Some(owned) = shard.owned.borrow_mut().rooms.remove(room) else { return };
            for &s in &owned.subscriber_shards {
                shard.mesh().send(s, ShardMsg::RoomGone { room: room.clone() });
            }
        }
    }
}

/// A page of history with each message's reactions aggregated, and the senders the
/// reader blocked flagged.
/// One page of history in `window`, as `reader` sees it, and the cursor past it.
fn history_page(
    store: &palaver_storage::Store,
    room: &RoomId,
    window: HistoryWindow,
    reader: &UserId,
) -> Result<(Vec<Message>, Option<String>), StorageError> {
    // One more than the page, to know whether another follows.
    let (mut messages, limit) = match window {
        HistoryWindow::Backward { before, limit } => {
            (store.messages_before(room, Some(before), limit + 1)?, limit)
        }
        HistoryWindow::Forward { after, through, limit } => {
            (store.messages_between(room, after.saturating_add(1), through, limit + 1)?, limit)
        }
    };
    let more = messages.len() > limit;
    messages.truncate(limit);
    let blocked = store.blocks(reader)?;
    for message in &mut messages {
        message.blocked = blocked.contains(&message.sender);
        message.reactions = store.reactions(room, message.seq)?;
        if let Some(parent) = message.reply_to {
            message.reply = store.message(room, parent)?.map(|p| {
                Box::new(ReplyPreview {
                    seq: p.seq,
                    sender: p.sender,
                    excerpt: p.text.chars().take(REPLY_EXCERPT_CHARS).collect(),
                    deleted: p.deleted,
                })
            });
        }
    }
    let mut page = PageBuilder::new("history", limit);
    for message in messages {
        let key = window.cursor_key(message.seq);
        if !page.offer(&key, Some(message)) {
            break;
        }
    }
    Ok(page.finish(more))
}

/// How much of a parent message a reply shows.
const REPLY_EXCERPT_CHARS: usize = 100;

/// A message as the room has decided it: its newest version still becoming durable if
/// there is one, else storage's. Commands on a message read this, never storage alone.
fn current_message(shard: &Shard, owned: &OwnedRoom, room: &RoomId, seq: u64) -> Result<Message, ReplyBody> {
    match owned.rewrites.get(&seq) {
        Some((message, _)) => Ok(message.clone()),
        None => stored_message(shard, room, seq),
    }
}

/// Records a rewrite of a message submitted to storage (see [`OwnedRoom::rewrites`]).
fn rewriting(owned: &mut OwnedRoom, message: Message) {
    let entry = owned.rewrites.entry(message.seq).or_insert_with(|| (message.clone(), 0));
    *entry = (message, entry.1 + 1);
}

/// A rewrite of `seq` settled (durable or refused): once none is in flight, storage has
/// the message's newest version again.
fn rewrite_settled(shard: &Shard, room: &RoomId, seq: u64) {
    if let Some(owned) = shard.owned.borrow_mut().rooms.get_mut(room)
        && let Some((_, in_flight)) = owned.rewrites.get_mut(&seq)
    {
        *in_flight -= 1;
        if *in_flight == 0 {
            owned.rewrites.remove(&seq);
        }
    }
}

/// A reaction change settled: likewise for [`OwnedRoom::reactions`].
fn reaction_settled(shard: &Shard, room: &RoomId, key: (u64, String, UserId)) {
    if let Some(owned) = shard.owned.borrow_mut().rooms.get_mut(room)
        && let Some((_, in_flight)) = owned.reactions.get_mut(&key)
    {
        *in_flight -= 1;
        if *in_flight == 0 {
            owned.reactions.remove(&key);
        }
    }
}

/// A durable message by seq, or the reply body to send when there is none.
fn stored_message(shard: &Shard, room: &RoomId, seq: u64) -> Result<Message, ReplyBody> {
    match shard.shared.store.message(room, seq) {
        Ok(Some(message)) => Ok(message),
        Ok(None) => Err(ReplyBody::Err(palaver_core::CoreError::NoSuchMessage(seq).to_body())),
        Err(e) => Err(storage_error(&e)),
    }
}

/// A reaction change is durable: answer with the emoji's count and tell the room.
fn reaction_durable(shard: &Rc<Shard>, origin: Origin, room: RoomId, seq: u64, emoji: String, added: bool) {
    let count = match shard.shared.store.reaction_count(&room, seq, &emoji) {
        Ok(count) => count,
        Err(e) => return answer(shard, origin.shard, Reply::plain(&origin, storage_error(&e))),
    };
    let ok = ReactionOk { seq, emoji: emoji.clone(), count };
    answer(shard, origin.shard, Reply::plain(&origin, ReplyBody::Ok(OkBody::Reaction(ok))));
    let owned_rooms = shard.owned.borrow();
    let Some(owned) = owned_rooms.rooms.get(&room) else { return };
    let reaction = Reaction { room: room.clone(), seq, emoji, user: origin.user, added, count };
    let frames = LazyFrames::new(ServerFrame::Event(Event::Reaction(reaction)));
    broadcast_ephemeral(shard, owned, Ephemeral { room, skip: None, frames });
}

/// Tells the shards with subscribers that `user` started or stopped typing (an ephemeral
/// event: not stored, not sequenced, not sent to the typist's own sockets).
fn announce_typing(shard: &Shard, owned: &OwnedRoom, user: &UserId, change: TypingChange) {
    let (active, expires_in_ms) = match change {
        TypingChange::Started { expires_in_ms } => (true, Some(expires_in_ms)),
        TypingChange::Stopped => (false, None),
        TypingChange::Unchanged => return,
    };
    let room = owned.room.id().clone();
    let typing = Typing { room: room.clone(), user: user.clone(), active, expires_in_ms };
    let event = Ephemeral {
        room,
        skip: Some(user.clone()),
        frames: LazyFrames::new(ServerFrame::Event(Event::Typing(typing))),
    };
    broadcast_ephemeral(shard, owned, event);
}

fn broadcast_ephemeral(shard: &Shard, owned: &OwnedRoom, event: Ephemeral) {
    let event = Arc::new(event);
    for &s in &owned.subscriber_shards {
        shard.mesh().send(s, ShardMsg::Ephemeral(event.clone()));
    }
}

/// Tells the room whose watermarks moved since the last tick: one event per member
/// however many receipts they sent meanwhile (their own sockets included, so a user's
/// other devices learn where they read up to).
fn announce_receipts(shard: &Shard, owned: &mut OwnedRoom) {
    for (user, delivered, read) in owned.room.take_receipt_announcements() {
        let room = owned.room.id().clone();
        let receipt = Receipt { room: room.clone(), user, delivered, read };
        let frames = LazyFrames::new(ServerFrame::Event(Event::Receipt(receipt)));
        broadcast_ephemeral(shard, owned, Ephemeral { room, skip: None, frames });
    }
}

/// Forgets the rooms idle for `--idle-room-secs` that hold nothing storage lacks: no
/// subscribers on any shard, nothing waiting or in flight, nothing the room state
/// machine keeps only in memory ([`Room::is_forgettable`]). The next command loads the
/// room again from storage, as after a restart; a room only read costs nothing, a room
/// created by the thousand and abandoned does not stay.
fn unload_idle(shard: &Shard, now: u64) {
    let idle_ms = shard.shared.config.idle_room_ms;
    let mut owned_rooms = shard.owned.borrow_mut();
    let before = owned_rooms.rooms.len();
    owned_rooms.rooms.retain(|_, owned| {
        let idle = now.saturating_sub(owned.last_used_ms) >= idle_ms
            && owned.subscriber_shards.is_empty()
            && owned.waiting.is_empty()
            && owned.unsettled == 0
            && owned.rewrites.is_empty()
            && owned.reactions.is_empty()
            && owned.sharing.is_empty()
            && !owned.deleting
            && !owned.poisoned
            && !owned.cids.is_building()
            && owned.room.is_forgettable(now);
        !idle
    });
    let unloaded = before - owned_rooms.rooms.len();
    if unloaded > 0 {
        shard.shared.metrics.rooms_unloaded.fetch_add(unloaded as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The owner's periodic work, twice a second: typing indicators not renewed in time
/// lapse, and receipts that moved are announced (coalesced: at most one event per member
/// per tick). Only rooms with something to do are touched.
pub async fn room_ticks(shard: Rc<Shard>) {
    // Sweeps for idle rooms every 30 s, or twice per idle time when that is shorter.
    let sweep_every = (shard.shared.config.idle_room_ms / 1_000).clamp(1, 60);
    let mut ticks = 0u64;
    loop {
        monoio::time::sleep(std::time::Duration::from_millis(500)).await;
        super::relay::expire_parked(&shard);
        let now = now_ms();
        ticks += 1;
        if ticks.is_multiple_of(sweep_every) {
            unload_idle(&shard, now);
        }
        let mut owned_rooms = shard.owned.borrow_mut();
        let busy = owned_rooms
            .rooms
            .values_mut()
            .filter(|o| o.room.has_typers() || o.room.has_receipt_announcements());
        for owned in busy {
            for user in owned.room.expire_typing(now) {
                announce_typing(&shard, owned, &user, TypingChange::Stopped);
            }
            announce_receipts(&shard, owned);
        }
    }
}
