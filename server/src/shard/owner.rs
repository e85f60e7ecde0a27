//! The owner role: the rooms that hash to this shard. Each room's rules and state are a
//! [`RoomOwner`] (`palaver-core`), which decides and never does; this module is its
//! driver. It loads rooms from storage, answers the owner's lookups from storage's
//! caches, and carries out what the owner decided: submits writes to group commit,
//! frames each durable event once per codec and fans it out to the shards with
//! subscribers, and sends the answers.

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use palaver_core::owner::{
    Announcement, Answer, Effects, Ending, Found, LookupError, Lookups, NewDirect, OwnerConfig, RoomOp,
    RoomOwner, Settle, StoredRoom, Subscription, UserNotice, lookup_failed,
};
use palaver_protocol::{
    ClientMsgId, ErrorBody, ErrorCode, FriendState, Message, PresenceStatus, ReactionSummary, ReplyBody,
    RoomId, ServerFrame, UserId, Username,
};
use palaver_storage::{CidFilter, CidHash, FileRecord, RoomRecord, StorageError, Write};
use rustc_hash::FxHashMap;

use super::known_cids::KnownCids;
use super::relay::Relay;
use super::{Shard, State};
use crate::clock::now_ms;
use crate::mesh::{CommitWork, Delivery, Ephemeral, LazyFrames, Origin, Reply, RoomAction, ShardMsg, Ticket};
use crate::metrics::Metrics;

/// A room this shard holds: its owner, and what the driver knows of its stored cids.
#[derive(Debug)]
pub(super) struct HeldRoom {
    pub(super) owner: RoomOwner<Origin>,
    /// Which cids storage may hold for the room: spares new messages the lookup.
    pub(super) cids: KnownCids,
}

/// The rooms owned by one shard, loaded on first use, and the effects buffer their
/// owners fill (reused: drained after every call).
#[derive(Debug, Default)]
pub struct OwnedRooms {
    pub(super) rooms: FxHashMap<RoomId, HeldRoom>,
    fx: Effects<Origin>,
    /// Periodic ticks so far.
    ticks: u64,
}

/// The reply body for a storage failure: the one mapping, logged when it is a failure
/// rather than a refusal to try again later.
pub(super) fn storage_error(e: &StorageError) -> ReplyBody {
    let e = LookupError::from(e);
    if let LookupError::Failed(detail) = &e {
        tracing::error!("storage: {detail}");
    }
    lookup_failed(&e)
}

pub(super) fn error(code: ErrorCode, message: impl Into<String>) -> ReplyBody {
    ReplyBody::Err(ErrorBody::new(code, message))
}

/// Sends an answer to the origin shard.
pub(super) fn answer(shard: &Shard, origin_shard: usize, reply: Reply) {
    shard.mesh().send(origin_shard, ShardMsg::Reply(reply));
}

/// The owner's view of the world, from this shard: storage, the presence table and the
/// shared throttles.
struct StoreLookups<'a> {
    shard: &'a Shard,
    /// The room's cid knowledge (none for a room being created).
    cids: Option<&'a KnownCids>,
}

fn found<T>(result: Result<T, StorageError>) -> Found<T> {
    result.map_err(|e| {
        let e = LookupError::from(e);
        if let LookupError::Failed(detail) = &e {
            tracing::error!("storage: {detail}");
        }
        e
    })
}

impl Lookups for StoreLookups<'_> {
    fn message(&self, room: &RoomId, seq: u64) -> Found<Option<Message>> {
        found(self.shard.shared.store.message(room, seq))
    }

    fn edits(&self, room: &RoomId, seq: u64, after: u64, limit: usize) -> Found<Vec<(u64, String)>> {
        found(self.shard.shared.store.edits_after(room, seq, after, limit))
    }

    fn messages_before(&self, room: &RoomId, before: u64, limit: usize) -> Found<Vec<Message>> {
        found(self.shard.shared.store.messages_before(room, Some(before), limit))
    }

    fn messages_between(&self, room: &RoomId, from: u64, to: u64, limit: usize) -> Found<Vec<Message>> {
        found(self.shard.shared.store.messages_between(room, from, to, limit))
    }

    fn thread_summary(&self, room: &RoomId, root: u64) -> Found<Option<palaver_protocol::ThreadSummary>> {
        found(self.shard.shared.store.thread_summary(room, root))
    }

    fn thread_replies_before(
        &self,
        room: &RoomId,
        root: u64,
        before: u64,
        limit: usize,
    ) -> Found<Vec<(u64, u64)>> {
        found(self.shard.shared.store.thread_replies_before(room, root, before, limit))
    }

    fn thread_replies_after(
        &self,
        room: &RoomId,
        root: u64,
        after: u64,
        limit: usize,
    ) -> Found<Vec<(u64, u64)>> {
        found(self.shard.shared.store.thread_replies_after(room, root, after, limit))
    }

    fn threads_by_activity(
        &self,
        room: &RoomId,
        before: u64,
        limit: usize,
    ) -> Found<Vec<(u64, palaver_protocol::ThreadSummary)>> {
        found(self.shard.shared.store.threads_by_activity(room, before, limit))
    }

    fn thread_read(&self, room: &RoomId, user: &UserId, root: u64) -> Found<u64> {
        found(self.shard.shared.store.thread_read(room, user, root))
    }

    fn cid_seq(&self, room: &RoomId, sender: &UserId, cid: &ClientMsgId) -> Found<Option<(u64, u64)>> {
        // Almost every cid is new: the room's filter says so without a storage read.
        if self.cids.is_some_and(|known| !known.may_be_stored(CidHash::of(sender, cid))) {
            return Ok(None);
        }
        found(self.shard.shared.store.cid_seq(room, sender, cid))
    }

    fn reactions(&self, room: &RoomId, seq: u64) -> Found<Vec<ReactionSummary>> {
        found(self.shard.shared.store.reactions(room, seq))
    }

    fn has_reaction(&self, room: &RoomId, seq: u64, emoji: &str, user: &UserId) -> Found<bool> {
        found(self.shard.shared.store.has_reaction(room, seq, emoji, user))
    }

    fn reaction_count(&self, room: &RoomId, seq: u64, emoji: &str) -> Found<u32> {
        found(self.shard.shared.store.reaction_count(room, seq, emoji))
    }

    fn room_record(&self, room: &RoomId) -> Found<Option<RoomRecord>> {
        found(self.shard.shared.store.room(room))
    }

    fn username(&self, user: &UserId) -> Found<Option<String>> {
        found(self.shard.shared.store.user(user)).map(|u| u.map(|u| u.username))
    }

    fn user_by_name(&self, name: &Username) -> Found<Option<UserId>> {
        found(self.shard.shared.store.user_by_name(name)).map(|u| u.map(|u| u.user_id))
    }

    fn file(&self, file_id: &str) -> Found<Option<FileRecord>> {
        found(self.shard.shared.store.file(file_id))
    }

    fn member_role(&self, room: &RoomId, user: &UserId) -> Found<Option<palaver_protocol::RoomRole>> {
        found(self.shard.shared.store.member_role(room, user))
    }

    fn hides_read_receipts(&self, user: &UserId) -> Found<bool> {
        found(self.shard.shared.store.profile(user)).map(|p| p.hide_read_receipts)
    }

    fn is_blocked(&self, user: &UserId, other: &UserId) -> Found<bool> {
        found(self.shard.shared.store.is_blocked(user, other))
    }

    fn blocks(&self, user: &UserId) -> Found<Vec<UserId>> {
        found(self.shard.shared.store.blocks(user)).map(|b| b.into_iter().collect())
    }

    fn friendship(&self, user: &UserId, other: &UserId) -> Found<FriendState> {
        found(self.shard.shared.store.friend(user, other)).map(|f| f.map_or(FriendState::None, |(s, _)| s))
    }

    fn pending_invites(&self, user: &UserId, stop_at: usize) -> Found<usize> {
        found(self.shard.shared.store.user_invites_after(user, None, stop_at)).map(|i| i.len())
    }

    fn owned_rooms(&self, user: &UserId, stop_at: usize) -> Found<usize> {
        found(self.shard.shared.store.owned_room_count(user, stop_at))
    }

    fn presence(&self, user: &UserId) -> PresenceStatus {
        super::people::presence_status(self.shard, user)
    }

    fn take_stranger_invite(&self, sender: &UserId, now_ms: u64) -> Result<(), u64> {
        self.shard.shared.spam.invite_stranger(sender, now_ms)
    }

    fn take_stranger_direct_room(&self, sender: &UserId, recipient: &UserId, now_ms: u64) -> Result<(), u64> {
        self.shard.shared.spam.dm_stranger(sender, recipient, now_ms)
    }

    fn take_room_creation(&self, creator: &UserId, now_ms: u64) -> Result<(), u64> {
        self.shard.shared.spam.create_room(creator, now_ms)
    }
}

fn owner_config(shard: &Shard) -> OwnerConfig {
    OwnerConfig {
        room: shard.shared.config.room_limits(),
        max_rooms_per_user: shard.shared.config.max_rooms_per_user,
    }
}

/// Loads a room into memory (a few point reads and short scans, served from fjall's
/// caches), or returns `None` if it does not exist.
fn load(shard: &Shard, id: &RoomId, now: u64) -> Result<Option<HeldRoom>, StorageError> {
    let store = &shard.shared.store;
    let Some(record) = store.room(id)? else { return Ok(None) };
    let history_floor = store.history_floor(id)?;
    let newest = match store.messages_before(id, None, 1)?.first() {
        Some(m) => Some((m.seq, m.ts)),
        // Retention removed every message: the seqs go on after the removed ones.
        None => (history_floor > 1).then(|| (history_floor - 1, 0)),
    };
    let (receipts, unstored_receipts) = store.receipts_and_unstored(id)?;
    let stored = StoredRoom {
        record,
        members: store.members(id)?,
        newest,
        history_floor,
        receipts,
        unstored_receipts,
        bans: store.bans(id)?,
        mutes: store.mutes(id)?,
        invites: store.invites(id)?,
        pins: store.pins(id)?,
    };
    let has_messages = stored.newest.is_some();
    let Some(owner) = RoomOwner::load(stored, shard.shared.config.room_limits(), now) else {
        return Ok(None);
    };
    if let Some(cluster) = &shard.shared.cluster {
        cluster.room_loaded(id);
    }
    Ok(Some(HeldRoom { owner, cids: KnownCids::at_start(shard, has_messages) }))
}

/// Starts holding a room: in a cluster it takes over the local subscribers the relay
/// was feeding, and the gateway becomes a subscriber (for other nodes').
fn hold<'a>(
    shard: &Shard,
    relay: &mut Relay,
    rooms: &'a mut FxHashMap<RoomId, HeldRoom>,
    id: RoomId,
    mut held: HeldRoom,
) -> &'a mut HeldRoom {
    held.owner.adopt_sites(super::relay::adopted_sites(shard, relay, &id));
    rooms.entry(id).insert_entry(held).into_mut()
}

/// Applies one room command.
pub fn on_command(shard: &Rc<Shard>, state: &mut State, origin: Origin, action: RoomAction) {
    // In a cluster, a room owned by another node is only relayed here.
    let Some((origin, action)) = super::relay::route(shard, state, origin, action) else { return };
    on_routed_command(shard, state, origin, action);
}

/// Applies one room command this shard serves.
pub(super) fn on_routed_command(shard: &Rc<Shard>, state: &mut State, origin: Origin, action: RoomAction) {
    let now = now_ms();
    let State { rooms: OwnedRooms { rooms, fx, .. }, relay, .. } = state;
    let room_id = action.room().clone();
    let joining = action.is_join();
    let refuse = |body| {
        let mut reply = Reply::plain(&origin, body);
        if joining {
            reply.was_join = Some(room_id.clone());
        }
        answer(shard, origin.shard, reply);
    };
    let config = owner_config(shard);
    let held = match action {
        RoomAction::Create(new) => {
            let user = origin.user.clone();
            let lookups = StoreLookups { shard, cids: None };
            let Some(owner) = RoomOwner::create(now, origin, &user, new, config, &lookups, fx) else {
                return carry_out_detached(shard, fx);
            };
            let cids = KnownCids::at_start(shard, false);
            hold(shard, relay, rooms, room_id.clone(), HeldRoom { owner, cids })
        }
        RoomAction::OpenDirect { room, peer } => match loaded(shard, relay, rooms, &room, now) {
            Ok(Some(held)) => {
                let lookups = StoreLookups { shard, cids: Some(&held.cids) };
                let user = origin.user.clone();
                held.owner.handle(now, origin, &user, RoomOp::OpenDirect, &lookups, fx);
                held
            }
            Ok(None) => {
                let new = NewDirect { id: room, caller: origin.user.clone(), peer };
                let lookups = StoreLookups { shard, cids: None };
                let Some(owner) = RoomOwner::open_direct(now, origin, new, config, &lookups, fx) else {
                    return carry_out_detached(shard, fx);
                };
                let cids = KnownCids::at_start(shard, false);
                hold(shard, relay, rooms, room_id.clone(), HeldRoom { owner, cids })
            }
            Err(e) => return refuse(storage_error(&e)),
        },
        RoomAction::On { room, op } => match loaded(shard, relay, rooms, &room, now) {
            Ok(Some(held)) => {
                // A pending join keeps its shard subscribed (the origin lets go when the
                // answer leaves it without subscribers).
                if joining {
                    held.owner.add_site(origin.shard);
                }
                let lookups = StoreLookups { shard, cids: Some(&held.cids) };
                let user = origin.user.clone();
                // A history page is read from storage right here: time it.
                let history = matches!(op, RoomOp::History(_)).then(std::time::Instant::now);
                held.owner.handle(now, origin, &user, op, &lookups, fx);
                if let Some(started) = history {
                    shard.shared.metrics.history.observe(started.elapsed());
                }
                held
            }
            Ok(None) => return refuse(error(ErrorCode::NotFound, format!("no room {room}"))),
            Err(e) => return refuse(storage_error(&e)),
        },
    };
    carry_out(shard, &room_id, held, fx);
    if std::mem::take(&mut fx.forget) {
        rooms.remove(&room_id);
    }
}

/// The room, loaded if it is not in memory; reloaded if a refused write left its memory
/// ahead of storage and nothing it submitted is in flight any more (its subscribers
/// stay: their sockets are unaffected).
fn loaded<'a>(
    shard: &Shard,
    relay: &mut Relay,
    rooms: &'a mut FxHashMap<RoomId, HeldRoom>,
    id: &RoomId,
    now: u64,
) -> Result<Option<&'a mut HeldRoom>, StorageError> {
    if rooms.get(id).is_some_and(|held| held.owner.needs_reload()) {
        reload(shard, rooms, id, now)?;
    }
    if rooms.contains_key(id) {
        return Ok(rooms.get_mut(id));
    }
    Ok(match load(shard, id, now)? {
        Some(held) => Some(hold(shard, relay, rooms, id.clone(), held)),
        None => None,
    })
}

/// Replaces a room's stale memory with what storage holds, keeping its subscribers.
fn reload(
    shard: &Shard,
    rooms: &mut FxHashMap<RoomId, HeldRoom>,
    id: &RoomId,
    now: u64,
) -> Result<(), StorageError> {
    let fresh = load(shard, id, now)?;
    let Some(stale) = rooms.remove(id) else { return Ok(()) };
    if let Some(mut fresh) = fresh {
        fresh.owner.adopt_sites(stale.owner.sites().iter().copied());
        rooms.insert(id.clone(), fresh);
    }
    Ok(())
}

/// Carries out effects decided without a room to hold (a refused creation: answers only).
fn carry_out_detached(shard: &Shard, fx: &mut Effects<Origin>) {
    for answer in fx.answers.drain(..) {
        send_answer(shard, None, answer);
    }
    debug_assert!(fx.is_empty(), "a refused creation only answers");
}

/// Sends an owner's answer about `room` to the asker's shard, with what it does to the
/// asker's subscriptions.
fn send_answer(shard: &Shard, room: Option<&RoomId>, answer: Answer<Origin>) {
    let to = answer.to.shard;
    self::answer(shard, to, reply_of(room, answer));
}

/// The reply that carries an owner's answer about `room` to the asker's shard.
fn reply_of(room: Option<&RoomId>, answer: Answer<Origin>) -> Reply {
    let Answer { to, body, subscription } = answer;
    let mut reply = Reply::plain(&to, body);
    match subscription {
        Subscription::Unchanged => {}
        Subscription::Joined(subscribe) => {
            reply.was_join = room.cloned();
            reply.subscribe = subscribe;
        }
        Subscription::Left => reply.unsubscribe = room.cloned(),
    }
    reply
}

/// Takes the first answer for an asker on local shard `site`, if any (a remote asker's
/// answer goes through the cluster gateway, which carries no deliveries).
fn take_answer_to(
    answers: &mut Vec<Answer<Origin>>,
    site: usize,
    local_shards: usize,
) -> Option<Answer<Origin>> {
    if site >= local_shards {
        return None;
    }
    let at = answers.iter().position(|answer| answer.to.shard == site)?;
    Some(answers.remove(at))
}

/// Carries out what a room's owner decided, in the order it decided it within each
/// kind: writes go to group commit (a write refused at once settles at once); durable
/// messages reach the room's subscribers before the answers that waited for them, and
/// events follow the answers they go with.
fn carry_out(shard: &Rc<Shard>, room: &RoomId, held: &mut HeldRoom, fx: &mut Effects<Origin>) {
    loop {
        let mut commits = std::mem::take(&mut fx.commits);
        for mut commit in commits.drain(..) {
            for write in &commit.writes {
                if let Write::AppendMessage(message) = write {
                    held.cids.appended(shard, room, CidHash::of(&message.sender, &message.cid));
                }
            }
            // The owner decided these events: their webhook deliveries are queued here,
            // in the same commit, and nowhere else.
            let now = crate::clock::now_ms();
            let mut deliveries = shard.shared.webhooks.deliveries_for(&commit.writes, now);
            // And its pushes: one fan-out entry per message that some member missed
            // live (no socket anywhere), expanded by the outbound sender, only when this
            // node pushes at all and someone has a subscription, or an operator's webhook
            // hears notifications. The check here is a lookup per member and stops at
            // the first one offline; the reads a fan-out needs happen off this core.
            let pushes =
                shard.shared.vapid.is_some() && shard.shared.push_subscriptions_exist.load(Ordering::Acquire);
            if pushes || shard.shared.webhooks.hears_notifications(now) {
                let presence = &shard.shared.presence;
                for write in &commit.writes {
                    if let Write::AppendMessage(message) = write
                        && palaver_core::push::pushable(message)
                        && palaver_core::push::anyone_offline(
                            held.owner.room().members(),
                            &message.sender,
                            |user| presence.connected_anywhere(user),
                        )
                    {
                        deliveries.push(Write::PutOutbound(palaver_core::push::fan_out(message, now)));
                    }
                }
            }
            commit.writes.extend(deliveries);
            let work = CommitWork::Room { room: room.clone(), settle: commit.settle };
            match shard.shared.committer.submit(commit.writes, Ticket { shard: shard.id, work }) {
                Ok(()) => shard.outstanding_commits.set(shard.outstanding_commits.get() + 1),
                Err(Ticket { work: CommitWork::Room { settle, .. }, .. }) => {
                    let lookups = StoreLookups { shard, cids: Some(&held.cids) };
                    held.owner.on_committed(settle, Err(LookupError::Unavailable), &lookups, fx);
                }
                Err(_) => {}
            }
        }
        // Keep the buffer's capacity (a settle never commits, so it is still empty).
        if fx.commits.is_empty() {
            fx.commits = commits;
        }
        let sites = held.owner.sites();
        let local_shards = shard.mesh().len();
        let mut messages = fx.deliveries.drain(..).peekable();
        while let Some(message) = messages.next() {
            Metrics::inc(&shard.shared.metrics.messages_stored);
            let delivery = Arc::new(Delivery::of(message));
            let last = messages.peek().is_none();
            for &site in sites {
                // The last message goes to a shard together with the first answer waiting
                // there (a sender's answer, behind its own copy of the message): handled in
                // one go, the two leave in one socket write instead of racing to it in two.
                let answer = if last { take_answer_to(&mut fx.answers, site, local_shards) } else { None };
                let msg = match answer {
                    Some(answer) => ShardMsg::DeliverThenReply {
                        delivery: delivery.clone(),
                        reply: reply_of(Some(room), answer),
                    },
                    None => ShardMsg::Deliver(delivery.clone()),
                };
                shard.mesh().send(site, msg);
            }
        }
        for answer in fx.answers.drain(..) {
            send_answer(shard, Some(room), answer);
        }
        for Announcement { event, skip } in fx.announcements.drain(..) {
            let frames = LazyFrames::new(ServerFrame::Event(event));
            let event = Arc::new(Ephemeral { room: room.clone(), skip, frames });
            for &site in sites {
                shard.mesh().send(site, ShardMsg::Ephemeral(event.clone()));
            }
        }
        for UserNotice { user, event } in fx.notices.drain(..) {
            let frames = Some(LazyFrames::new(ServerFrame::Event(event)));
            let notice = crate::mesh::UserNotice { user, frames, effect: None };
            shard.mesh().send(shard.mesh().home(&notice.user), ShardMsg::Notify(Box::new(notice)));
        }
        for ending in fx.endings.drain(..) {
            for &site in sites {
                let msg = match &ending {
                    Ending::Member(user) => ShardMsg::MemberGone { room: room.clone(), user: user.clone() },
                    Ending::Room => ShardMsg::RoomGone { room: room.clone() },
                };
                shard.mesh().send(site, msg);
            }
        }
        for file_id in fx.deleted_files.drain(..) {
            shard.shared.files.delete_later(&file_id);
        }
        if fx.commits.is_empty() {
            return;
        }
    }
}

/// A shard no longer has subscribers to `room`.
pub fn on_unsubscribe(state: &mut State, room: &RoomId, from: usize) {
    if let Some(held) = state.rooms.rooms.get_mut(room) {
        held.owner.remove_site(from);
    }
    super::relay::on_unsubscribe(&mut state.relay, room, from);
}

/// A room's cid filter finished building (see `known_cids`).
pub fn on_cids_built(state: &mut State, room: &RoomId, build: u64, filter: Option<CidFilter>) {
    if let Some(held) = state.rooms.rooms.get_mut(room) {
        held.cids.built(build, filter);
    }
}

/// A group commit finished: each owner hears how its writes settled.
pub fn on_committed(
    shard: &Rc<Shard>,
    state: &mut State,
    works: Vec<CommitWork>,
    result: Result<(), Arc<StorageError>>,
) {
    shard.outstanding_commits.set(shard.outstanding_commits.get().saturating_sub(works.len()));
    for work in works {
        if let Err(e) = &result
            && !e.is_unavailable()
        {
            tracing::error!("storage: {e}");
        }
        match (work, &result) {
            (CommitWork::Room { room, settle }, result) => {
                let result = result.as_ref().map(|_| ()).map_err(|e| LookupError::from(&**e));
                room_settled(shard, &mut state.rooms, &room, settle, result);
            }
            (CommitWork::People(settle), result) => {
                let result = result.as_ref().map(|_| ()).map_err(|e| LookupError::from(&**e));
                super::people::on_committed(shard, &mut state.home, settle, result);
            }
        }
    }
}

fn room_settled(
    shard: &Rc<Shard>,
    owned: &mut OwnedRooms,
    room: &RoomId,
    settle: Settle<Origin>,
    result: Result<(), LookupError>,
) {
    let OwnedRooms { rooms, fx, .. } = owned;
    let Some(held) = rooms.get_mut(room) else {
        // Rooms leave memory only with nothing in flight: a bug if reached.
        tracing::error!(room = %room, "a commit settled for a room not held");
        return;
    };
    let lookups = StoreLookups { shard, cids: Some(&held.cids) };
    held.owner.on_committed(settle, result, &lookups, fx);
    carry_out(shard, room, held, fx);
    if std::mem::take(&mut fx.forget) {
        rooms.remove(room);
        return;
    }
    // Memory ran ahead of a refused write: reload now that nothing is in flight (or at
    // the next command, if storage cannot answer yet).
    if held.owner.needs_reload() {
        let _ = reload(shard, rooms, room, now_ms());
    }
}

/// Forgets the rooms idle for `--idle-room-secs` that hold nothing storage lacks
/// ([`RoomOwner::is_idle`]), and whose cid filter is not being built. The next command
/// loads the room again from storage, as after a restart; a room only read costs
/// nothing, a room created by the thousand and abandoned does not stay.
fn unload_idle(shard: &Shard, owned: &mut OwnedRooms, now: u64) {
    let idle_ms = shard.shared.config.idle_room_ms;
    let before = owned.rooms.len();
    owned.rooms.retain(|_, held| !held.owner.is_idle(now, idle_ms) || held.cids.is_building());
    let unloaded = before - owned.rooms.len();
    if unloaded > 0 {
        shard.shared.metrics.rooms_unloaded.fetch_add(unloaded as u64, Ordering::Relaxed);
    }
}

/// How often the owners' periodic work runs.
pub const ROOM_TICK: std::time::Duration = std::time::Duration::from_millis(500);

/// The owners' periodic work, twice a second: typing indicators not renewed in time
/// lapse, and receipts that moved are announced (coalesced: at most one event per member
/// per tick); only rooms with something to do are touched. Idle rooms are swept every
/// 30 s, or twice per idle time when that is shorter; parked commands that waited too
/// long are refused.
pub fn on_tick(shard: &Rc<Shard>, state: &mut State) {
    super::relay::expire_parked(shard, &mut state.relay);
    let now = now_ms();
    let owned = &mut state.rooms;
    owned.ticks += 1;
    let sweep_every = (shard.shared.config.idle_room_ms / 1_000).clamp(1, 60);
    if owned.ticks.is_multiple_of(sweep_every) {
        unload_idle(shard, owned, now);
    }
    let OwnedRooms { rooms, fx, .. } = owned;
    for (room, held) in rooms.iter_mut().filter(|(_, held)| held.owner.wants_tick()) {
        held.owner.tick(now, fx);
        carry_out(shard, room, held, fx);
    }
}
