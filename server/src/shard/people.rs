//! The people role: each user has a home shard (`Mesh::home`), and each pair of users
//! the home of its lower id (`Mesh::pair_home`).
//!
//! - A user's home keeps their presence (a [`PresenceBook`]: live sessions per shard,
//!   away/invisible, last seen), knows which shards hold their sessions (so events for
//!   the user go only there), and which shards follow their presence.
//! - A pair's home is the single writer of the pair's friendship and blocks, so two
//!   devices (or both users) acting at once cannot interleave a read-check-write.
//!   Decisions not yet durable are held in `pending`, which reads consult before storage.
//!
//! The current presence of everyone is published in the [`PresenceTable`], written only
//! by each user's home shard and read by any shard answering `user.get`, `room.members`,
//! `friend.list` or `presence.subscribe`.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{Arc, RwLock};

use palaver_core::keys::{PublishedDevice, check_upload, valid_device_id};
use palaver_core::{PresenceBook, SessionChange};
use palaver_protocol::{
    ClaimedKey, ClaimedOk, Empty, ErrorBody, ErrorCode, Event, FriendInfo, FriendOk, FriendState,
    KeysUploadOk, OkBody, OneTimeKey, PresenceInfo, PresenceStatus, Profile, ProfileOk, ReplyBody,
    ServerFrame, UserId, limits,
};
use palaver_storage::{ProfileRecord, StorageError, Write};
use rustc_hash::FxHashMap;

use super::messages::{
    CommitWork, FriendOp, LazyFrames, LocalEffect, Origin, PeopleOp, PresenceFanout, Reply, ShardMsg, Ticket,
    UserNotice,
};
use super::owner::storage_error;
use super::{Conn, Shard};
use crate::clock::now_ms;

/// Everyone's current presence, partitioned by home shard; each partition is written by
/// its home shard alone (on every change, not coalesced) and read by any shard.
#[derive(Debug)]
pub struct PresenceTable {
    parts: Vec<RwLock<FxHashMap<UserId, PresenceInfo>>>,
}

impl PresenceTable {
    /// An empty table for `shards` shards.
    pub fn new(shards: usize) -> Self {
        Self { parts: (0..shards.max(1)).map(|_| RwLock::new(FxHashMap::default())).collect() }
    }

    fn set(&self, home: usize, info: PresenceInfo) {
        if let Some(Ok(mut part)) = self.parts.get(home).map(RwLock::write) {
            part.insert(info.user.clone(), info);
        }
    }

    fn get(&self, home: usize, user: &UserId) -> Option<PresenceInfo> {
        self.parts.get(home).and_then(|p| p.read().ok()).and_then(|p| p.get(user).cloned())
    }
}

/// What the people role keeps on one shard.
#[derive(Debug)]
pub struct People {
    /// Presence of the users whose home this is.
    book: PresenceBook,
    /// For those users: which shards follow them, with how many local followers each.
    watchers: FxHashMap<UserId, BTreeMap<usize, u32>>,
    /// Local sockets following each user's presence.
    followers: FxHashMap<UserId, Vec<super::messages::ConnId>>,
    /// Decisions of this (pair) home not yet durable, with how many writes hold each.
    pending: FxHashMap<PendingKey, (PendingValue, u32)>,
}

/// A piece of people state with a decision in flight.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PendingKey {
    /// A friendship, keyed `(lower id, higher id)`.
    Friend(UserId, UserId),
    /// Whether `.0` blocks `.1`.
    Block(UserId, UserId),
    /// A user's profile.
    Profile(UserId),
    /// A device's published keys (user, device).
    Device(UserId, String),
    /// A one-time prekey handed out and not yet durably removed (user, device, key id).
    ClaimedKey(UserId, String, String),
}

#[derive(Debug, Clone)]
enum PendingValue {
    /// The lower id's side of the friendship.
    Friend(Option<(FriendState, u64)>),
    Block(bool),
    Profile(ProfileRecord),
    Device(String, Option<String>),
    Claimed,
}

impl People {
    /// Empty, announcing each user at most once per `presence_interval_ms`.
    pub fn new(presence_interval_ms: u64) -> Self {
        Self {
            book: PresenceBook::new(presence_interval_ms),
            watchers: FxHashMap::default(),
            followers: FxHashMap::default(),
            pending: FxHashMap::default(),
        }
    }
}

fn error(code: ErrorCode, message: impl Into<String>) -> ReplyBody {
    ReplyBody::Err(ErrorBody::new(code, message))
}

fn answer(shard: &Shard, origin: &Origin, body: ReplyBody) {
    shard.mesh().send(origin.shard, ShardMsg::Reply(Reply::plain(origin, body)));
}

// ----- sessions and presence (any shard) -----

/// A socket authenticated as `user`: tell the user's home, load whom they blocked (their
/// messages arrive flagged), and follow their friends' presence.
pub fn session_started(shard: &Rc<Shard>, conn: &Rc<Conn>, user: &UserId) {
    shard.mesh().send(shard.mesh().home(user), ShardMsg::SessionUp { user: user.clone(), shard: shard.id });
    let store = &shard.shared.store;
    match store.blocks(user) {
        Ok(blocked) => conn.blocked.borrow_mut().extend(blocked),
        Err(e) => tracing::error!("loading blocks of {user}: {e}"),
    }
    match store.friends(user) {
        Ok(friends) => {
            for (friend, state, _) in friends {
                if state == FriendState::Friends {
                    follow(shard, conn, &friend);
                }
            }
        }
        Err(e) => tracing::error!("loading friends of {user}: {e}"),
    }
}

/// A socket of `user` closed: tell the home and stop following anyone.
pub fn session_ended(shard: &Rc<Shard>, conn: &Conn, user: &UserId) {
    let following: Vec<UserId> = conn.following.borrow_mut().drain().collect();
    for followed in following {
        drop_follower(shard, conn.id, &followed);
    }
    shard.mesh().send(shard.mesh().home(user), ShardMsg::SessionDown { user: user.clone(), shard: shard.id });
}

/// `conn` follows `user`'s presence; returns false when it already did.
pub fn follow(shard: &Rc<Shard>, conn: &Conn, user: &UserId) -> bool {
    if !conn.following.borrow_mut().insert(user.clone()) {
        return false;
    }
    let mut people = shard.people.borrow_mut();
    let local = people.followers.entry(user.clone()).or_default();
    local.push(conn.id);
    if local.len() == 1 {
        shard
            .mesh()
            .send(shard.mesh().home(user), ShardMsg::Watch { user: user.clone(), shard: shard.id, on: true });
    }
    true
}

/// `conn` stops following `user`'s presence.
pub fn unfollow(shard: &Rc<Shard>, conn: &Conn, user: &UserId) {
    if conn.following.borrow_mut().remove(user) {
        drop_follower(shard, conn.id, user);
    }
}

fn drop_follower(shard: &Shard, conn: super::messages::ConnId, user: &UserId) {
    let mut people = shard.people.borrow_mut();
    let Some(local) = people.followers.get_mut(user) else { return };
    local.retain(|c| *c != conn);
    if local.is_empty() {
        people.followers.remove(user);
        shard.mesh().send(
            shard.mesh().home(user),
            ShardMsg::Watch { user: user.clone(), shard: shard.id, on: false },
        );
    }
}

/// What anyone may see of `user`'s presence now.
/// Whether `user` is online, away or offline now (no storage read).
pub fn presence_status(shard: &Shard, user: &UserId) -> PresenceStatus {
    shard
        .shared
        .presence
        .get(shard.mesh().home(user), user)
        .map_or(PresenceStatus::Offline, |info| info.status)
}

/// `user`'s presence now, with when they were last seen.
pub fn presence_of(shard: &Shard, user: &UserId) -> PresenceInfo {
    if let Some(info) = shard.shared.presence.get(shard.mesh().home(user), user) {
        return info;
    }
    let last_seen = shard.shared.store.last_seen(user).ok().flatten();
    PresenceInfo { user: user.clone(), status: PresenceStatus::Offline, last_seen }
}

// ----- the home role -----

fn ensure_known(shard: &Shard, people: &mut People, user: &UserId) {
    if !people.book.knows(user) {
        let last_seen = shard.shared.store.last_seen(user).ok().flatten();
        people.book.load(user.clone(), last_seen);
    }
}

/// A session of `user` started on shard `from`.
pub fn on_session_up(shard: &Rc<Shard>, user: UserId, from: usize) {
    let mut people = shard.people.borrow_mut();
    ensure_known(shard, &mut people, &user);
    let was_here = here(shard, &people, &user);
    people.book.session_up(&user, from);
    // In a cluster, other nodes count this node's sessions as one: tell them of the first.
    if !was_here && from < shard.mesh().len() {
        tell_other_nodes(shard, ShardMsg::SessionUp { user: user.clone(), shard: from });
    }
    shard.shared.presence.set(shard.id, people.book.current(&user));
    drop(people);
    announce_due(shard, now_ms());
}

/// Whether `user` has a session on this node's own shards (not counting other nodes').
fn here(shard: &Shard, people: &People, user: &UserId) -> bool {
    people.book.session_shards(user).iter().any(|s| *s < shard.mesh().len())
}

fn tell_other_nodes(shard: &Shard, msg: ShardMsg) {
    if let Some(gateway) = shard.mesh().gateway() {
        shard.mesh().send(gateway, msg);
    }
}

/// A session of `user` on shard `from` ended.
pub fn on_session_down(shard: &Rc<Shard>, user: UserId, from: usize) {
    let now = now_ms();
    let mut people = shard.people.borrow_mut();
    ensure_known(shard, &mut people, &user);
    let was_here = here(shard, &people, &user);
    let change = people.book.session_down(now, &user, from);
    if was_here && !here(shard, &people, &user) {
        tell_other_nodes(shard, ShardMsg::SessionDown { user: user.clone(), shard: from });
    }
    shard.shared.presence.set(shard.id, people.book.current(&user));
    drop(people);
    if let SessionChange::WentOffline { last_seen } = change {
        let write = Write::PutLastSeen { user, at: last_seen };
        if shard
            .shared
            .committer
            .submit(vec![write], Ticket { shard: shard.id, work: CommitWork::Nothing })
            .is_ok()
        {
            shard.outstanding_commits.set(shard.outstanding_commits.get() + 1);
        }
    }
    announce_due(shard, now);
}

/// Shard `from` starts or stops following `user`.
pub fn on_watch(shard: &Rc<Shard>, user: UserId, from: usize, on: bool) {
    let mut people = shard.people.borrow_mut();
    let shards = people.watchers.entry(user.clone()).or_default();
    if on {
        *shards.entry(from).or_default() += 1;
    } else if let Some(count) = shards.get_mut(&from) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            shards.remove(&from);
        }
    }
    if shards.is_empty() {
        people.watchers.remove(&user);
    }
}

/// Announces the presence changes that are due (coalesced by the book).
fn announce_due(shard: &Shard, now: u64) {
    let due = shard.people.borrow_mut().book.due(now);
    if due.is_empty() {
        return;
    }
    let people = shard.people.borrow();
    for info in due {
        let Some(shards) = people.watchers.get(&info.user) else { continue };
        let user = info.user.clone();
        let fanout = Arc::new(PresenceFanout {
            user,
            frames: LazyFrames::new(ServerFrame::Event(Event::Presence(info))),
        });
        for &s in shards.keys() {
            shard.mesh().send(s, ShardMsg::Presence(fanout.clone()));
        }
    }
}

/// The home's periodic presence work: announce what the coalescing window held back.
pub async fn presence_ticks(shard: Rc<Shard>) {
    let period = (shard.shared.config.presence_interval_ms / 4).clamp(25, 250);
    loop {
        monoio::time::sleep(std::time::Duration::from_millis(period)).await;
        if shard.people.borrow().book.has_pending() {
            announce_due(&shard, now_ms());
        }
    }
}

/// Forwards a notice to the shards where the user has sessions (the home knows them).
pub fn on_notify(shard: &Rc<Shard>, notice: UserNotice) {
    let shards = shard.people.borrow().book.session_shards(&notice.user);
    if shards.is_empty() {
        return;
    }
    let notice = Arc::new(notice);
    for s in shards {
        shard.mesh().send(s, ShardMsg::UserEvent(notice.clone()));
    }
}

/// Delivers a notice to the local sessions of its user and applies its effect.
pub fn on_user_event(shard: &Rc<Shard>, notice: &UserNotice) {
    for id in shard.conns.of_user(&notice.user) {
        let Some(conn) = shard.conns.get(id) else { continue };
        if let Some(frame) = notice.frames.as_ref().and_then(|f| f.frame(conn.wire)) {
            conn.outbound.push(frame.clone());
        }
        match &notice.effect {
            None => {}
            Some(LocalEffect::Follow(user)) => {
                follow(shard, &conn, user);
            }
            Some(LocalEffect::Unfollow(user)) => unfollow(shard, &conn, user),
            Some(LocalEffect::Block(user)) => {
                conn.blocked.borrow_mut().insert(user.clone());
            }
            Some(LocalEffect::Unblock(user)) => {
                conn.blocked.borrow_mut().remove(user);
            }
        }
    }
}

/// Delivers a presence event to the local sockets following its user.
pub fn on_presence(shard: &Rc<Shard>, fanout: &PresenceFanout) {
    let followers = shard.people.borrow().followers.get(&fanout.user).cloned().unwrap_or_default();
    for id in followers {
        if let Some(conn) = shard.conns.get(id)
            && let Some(frame) = fanout.frames.frame(conn.wire)
        {
            conn.outbound.push(frame.clone());
        }
    }
}

// ----- people operations (at the user's or the pair's home) -----

/// Carries out a people operation.
pub fn on_people(shard: &Rc<Shard>, origin: Origin, action: PeopleOp) {
    match action {
        PeopleOp::SetPresence(choice) => {
            let mut people = shard.people.borrow_mut();
            ensure_known(shard, &mut people, &origin.user);
            people.book.choose(&origin.user, choice);
            shard.shared.presence.set(shard.id, people.book.current(&origin.user));
            drop(people);
            announce_due(shard, now_ms());
            answer(shard, &origin, ReplyBody::Ok(OkBody::Empty(Empty {})));
        }
        PeopleOp::UpdateProfile { display_name, avatar, status_text } => {
            update_profile(shard, origin, display_name, avatar, status_text);
        }
        PeopleOp::Friend { other, op } => friend(shard, origin, other, op),
        PeopleOp::Block { other, on } => block(shard, origin, other, on),
        PeopleOp::KeysUpload { device_id, identity_key, signing_key, one_time_keys } => {
            keys_upload(shard, origin, device_id, identity_key, signing_key, one_time_keys);
        }
        PeopleOp::KeysClaim { user, device_id } => keys_claim(shard, origin, user, device_id),
    }
}

fn submit(shard: &Shard, writes: Vec<Write>, work: CommitWork) -> Result<(), StorageError> {
    shard
        .shared
        .committer
        .submit(writes, Ticket { shard: shard.id, work })
        .map_err(|_| StorageError::Closed)?;
    shard.outstanding_commits.set(shard.outstanding_commits.get() + 1);
    Ok(())
}

/// Holds `value` for `key` until the write carrying it is durable.
fn hold(shard: &Shard, key: &PendingKey, value: PendingValue) {
    let mut people = shard.people.borrow_mut();
    let entry = people.pending.entry(key.clone()).or_insert((value.clone(), 0));
    entry.0 = value;
    entry.1 += 1;
}

/// A write holding `keys` is durable (or failed): release them.
pub fn release(shard: &Shard, keys: &[PendingKey]) {
    let mut people = shard.people.borrow_mut();
    for key in keys {
        if let Some(entry) = people.pending.get_mut(key) {
            entry.1 = entry.1.saturating_sub(1);
            if entry.1 == 0 {
                people.pending.remove(key);
            }
        }
    }
}

fn pending(shard: &Shard, key: &PendingKey) -> Option<PendingValue> {
    shard.people.borrow().pending.get(key).map(|(v, _)| v.clone())
}

fn friend_key(a: &UserId, b: &UserId) -> PendingKey {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    PendingKey::Friend(lo.clone(), hi.clone())
}

/// `me`'s side of the friendship with `other` (pending decisions first).
fn friendship(
    shard: &Shard,
    me: &UserId,
    other: &UserId,
) -> Result<Option<(FriendState, u64)>, StorageError> {
    let lower_side = |state: Option<(FriendState, u64)>| {
        if me <= other { state } else { state.map(|(s, since)| (s.mirrored(), since)) }
    };
    if let Some(PendingValue::Friend(state)) = pending(shard, &friend_key(me, other)) {
        return Ok(lower_side(state));
    }
    Ok(shard.shared.store.friend(me, other)?.filter(|(state, _)| *state != FriendState::None))
}

/// Whether `user` blocks `other` (pending decisions first).
fn blocks(shard: &Shard, user: &UserId, other: &UserId) -> Result<bool, StorageError> {
    if let Some(PendingValue::Block(on)) = pending(shard, &PendingKey::Block(user.clone(), other.clone())) {
        return Ok(on);
    }
    shard.shared.store.is_blocked(user, other)
}

fn username(shard: &Shard, user: &UserId) -> Result<Option<String>, StorageError> {
    Ok(shard.shared.store.user(user)?.map(|u| u.username))
}

/// The writes and notices that set `me`'s side of the friendship with `other` to `to`
/// (from `from`), at `now`.
fn friendship_change(
    me: (&UserId, &str),
    other: (&UserId, &str),
    from: FriendState,
    to: FriendState,
    now: u64,
) -> (Vec<Write>, Vec<UserNotice>) {
    let writes = if to == FriendState::None {
        vec![
            Write::RemoveFriend { user: me.0.clone(), other: other.0.clone() },
            Write::RemoveFriend { user: other.0.clone(), other: me.0.clone() },
        ]
    } else {
        vec![
            Write::PutFriend { user: me.0.clone(), other: other.0.clone(), state: to, since: now },
            Write::PutFriend { user: other.0.clone(), other: me.0.clone(), state: to.mirrored(), since: now },
        ]
    };
    let effect = |about: &UserId| match (from == FriendState::Friends, to == FriendState::Friends) {
        (false, true) => Some(LocalEffect::Follow(about.clone())),
        (true, false) => Some(LocalEffect::Unfollow(about.clone())),
        _ => None,
    };
    let notice = |to_user: (&UserId, &str), about: (&UserId, &str), state: FriendState| UserNotice {
        user: to_user.0.clone(),
        frames: Some(LazyFrames::new(ServerFrame::Event(Event::Friend(FriendInfo {
            user: about.0.clone(),
            username: about.1.to_owned(),
            state,
            since: now,
            presence: None,
        })))),
        effect: effect(about.0),
    };
    (writes, vec![notice(me, other, to), notice(other, me, to.mirrored())])
}

fn friend(shard: &Rc<Shard>, origin: Origin, other: UserId, op: FriendOp) {
    let me = origin.user.clone();
    let decided = (|| -> Result<Result<(FriendState, FriendState), ReplyBody>, StorageError> {
        if me == other {
            return Ok(Err(error(ErrorCode::Invalid, "that is you")));
        }
        let Some(other_name) = username(shard, &other)? else {
            return Ok(Err(error(ErrorCode::NotFound, format!("no user {other}"))));
        };
        let current = friendship(shard, &me, &other)?.map_or(FriendState::None, |(s, _)| s);
        use FriendState::{Friends, Incoming, None as Nothing, Outgoing};
        let to = match (op, current) {
            (FriendOp::Request, Nothing) => {
                if blocks(shard, &other, &me)? {
                    return Ok(Err(error(
                        ErrorCode::Forbidden,
                        format!("{other_name} does not accept friend requests from you"),
                    )));
                }
                if blocks(shard, &me, &other)? {
                    return Ok(Err(error(
                        ErrorCode::Forbidden,
                        format!("you blocked {other_name}: unblock first"),
                    )));
                }
                if shard.shared.store.friends(&me)?.len() >= limits::MAX_FRIENDS {
                    return Ok(Err(error(
                        ErrorCode::Forbidden,
                        format!("at most {} friends and requests", limits::MAX_FRIENDS),
                    )));
                }
                Outgoing
            }
            // They asked first: asking back is accepting.
            (FriendOp::Request | FriendOp::Accept, Incoming) => Friends,
            (FriendOp::Request, Outgoing) => {
                return Ok(Err(error(ErrorCode::Conflict, format!("already asked {other_name}"))));
            }
            (FriendOp::Request, Friends) => {
                return Ok(Err(error(ErrorCode::Conflict, format!("already friends with {other_name}"))));
            }
            (FriendOp::Decline, Incoming) | (FriendOp::Cancel, Outgoing) | (FriendOp::Remove, Friends) => {
                Nothing
            }
            (FriendOp::Accept | FriendOp::Decline, _) => {
                return Ok(Err(error(ErrorCode::Conflict, format!("no friend request from {other_name}"))));
            }
            (FriendOp::Cancel, _) => {
                return Ok(Err(error(ErrorCode::Conflict, format!("no request to {other_name} to cancel"))));
            }
            (FriendOp::Remove, _) => {
                return Ok(Err(error(ErrorCode::Conflict, format!("not friends with {other_name}"))));
            }
        };
        Ok(Ok((current, to)))
    })();
    let (from, to) = match decided {
        Ok(Ok(change)) => change,
        Ok(Err(body)) => return answer(shard, &origin, body),
        Err(e) => return answer(shard, &origin, storage_error(&e)),
    };
    let names = (username(shard, &me), username(shard, &other));
    let (Ok(Some(my_name)), Ok(Some(other_name))) = names else {
        return answer(shard, &origin, error(ErrorCode::Internal, "account lookup failed"));
    };
    let now = now_ms();
    let (writes, notices) = friendship_change((&me, &my_name), (&other, &other_name), from, to, now);
    let key = friend_key(&me, &other);
    let lower_side = if me <= other { to } else { to.mirrored() };
    let held = (lower_side != FriendState::None).then_some((lower_side, now));
    hold(shard, &key, PendingValue::Friend(held));
    let info = FriendInfo { user: other, username: other_name, state: to, since: now, presence: None };
    let reply = Reply::plain(&origin, ReplyBody::Ok(OkBody::Friend(FriendOk { friend: info })));
    let work = CommitWork::People { shard: origin.shard, reply, notices, release: vec![key.clone()] };
    if let Err(e) = submit(shard, writes, work) {
        release(shard, &[key]);
        answer(shard, &origin, storage_error(&e));
    }
}

fn block(shard: &Rc<Shard>, origin: Origin, other: UserId, on: bool) {
    let me = origin.user.clone();
    if me == other {
        return answer(shard, &origin, error(ErrorCode::Invalid, "that is you"));
    }
    let decided = (|| -> Result<Result<(bool, Option<FriendState>), ReplyBody>, StorageError> {
        if username(shard, &other)?.is_none() {
            return Ok(Err(error(ErrorCode::NotFound, format!("no user {other}"))));
        }
        let already = blocks(shard, &me, &other)?;
        if on && !already && shard.shared.store.blocks(&me)?.len() >= limits::MAX_BLOCKS {
            return Ok(Err(error(
                ErrorCode::Forbidden,
                format!("at most {} blocked users", limits::MAX_BLOCKS),
            )));
        }
        Ok(Ok((already, friendship(shard, &me, &other)?.map(|(s, _)| s))))
    })();
    let (already, friendship_now) = match decided {
        Ok(Ok(found)) => found,
        Ok(Err(body)) => return answer(shard, &origin, body),
        Err(e) => return answer(shard, &origin, storage_error(&e)),
    };
    let empty = ReplyBody::Ok(OkBody::Empty(Empty {}));
    if already == on {
        return answer(shard, &origin, empty);
    }
    let now = now_ms();
    let mut writes = vec![if on {
        Write::PutBlock { user: me.clone(), blocked: other.clone(), since: now }
    } else {
        Write::RemoveBlock { user: me.clone(), blocked: other.clone() }
    }];
    let effect = if on { LocalEffect::Block(other.clone()) } else { LocalEffect::Unblock(other.clone()) };
    let mut notices = vec![UserNotice { user: me.clone(), frames: None, effect: Some(effect) }];
    // Whoever is blocked stops seeing the blocker's presence on every socket that
    // followed it (and may not follow it again: see `may_see_presence`).
    if on {
        notices.push(UserNotice {
            user: other.clone(),
            frames: None,
            effect: Some(LocalEffect::Unfollow(me.clone())),
        });
    }
    let block_key = PendingKey::Block(me.clone(), other.clone());
    hold(shard, &block_key, PendingValue::Block(on));
    let mut release_keys = vec![block_key];
    // Blocking ends any friendship or request between the two.
    if on && let Some(from) = friendship_now {
        let names = (username(shard, &me).ok().flatten(), username(shard, &other).ok().flatten());
        if let (Some(my_name), Some(other_name)) = names {
            let (w, n) =
                friendship_change((&me, &my_name), (&other, &other_name), from, FriendState::None, now);
            writes.extend(w);
            notices.extend(n);
            let key = friend_key(&me, &other);
            hold(shard, &key, PendingValue::Friend(None));
            release_keys.push(key);
        }
    }
    let work = CommitWork::People {
        shard: origin.shard,
        reply: Reply::plain(&origin, empty),
        notices,
        release: release_keys.clone(),
    };
    if let Err(e) = submit(shard, writes, work) {
        release(shard, &release_keys);
        answer(shard, &origin, storage_error(&e));
    }
}

/// Checks a profile field: `None` keeps it, an empty string clears it.
fn profile_field(
    value: Option<String>,
    current: Option<String>,
    field: &str,
    max_chars: usize,
) -> Result<Option<String>, ReplyBody> {
    let Some(value) = value else { return Ok(current) };
    // Empty clears; anything else is stored exactly as sent, or refused — never altered.
    if value.is_empty() {
        return Ok(None);
    }
    if value.chars().count() > max_chars {
        return Err(error(ErrorCode::TooLarge, format!("{field} is at most {max_chars} characters")));
    }
    if let Err(e) = palaver_protocol::check_name(&value) {
        return Err(error(ErrorCode::Invalid, format!("{field}: {e}")));
    }
    Ok(Some(value))
}

/// An avatar is a file id or an `https://` URL.
fn check_avatar(avatar: &str) -> bool {
    let file_id =
        avatar.len() <= 64 && avatar.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b));
    let url = avatar.starts_with("https://")
        && avatar.len() <= limits::MAX_AVATAR_BYTES
        && avatar.bytes().all(|b| b.is_ascii_graphic());
    file_id || url
}

fn update_profile(
    shard: &Rc<Shard>,
    origin: Origin,
    display_name: Option<String>,
    avatar: Option<String>,
    status_text: Option<String>,
) {
    let me = origin.user.clone();
    let key = PendingKey::Profile(me.clone());
    let current = match pending(shard, &key) {
        Some(PendingValue::Profile(profile)) => Ok(profile),
        _ => shard.shared.store.profile(&me),
    };
    let current = match current {
        Ok(profile) => profile,
        Err(e) => return answer(shard, &origin, storage_error(&e)),
    };
    let checked = (|| {
        let display_name = profile_field(
            display_name,
            current.display_name.clone(),
            "display_name",
            limits::MAX_DISPLAY_NAME_CHARS,
        )?;
        let status_text = profile_field(
            status_text,
            current.status_text.clone(),
            "status_text",
            limits::MAX_STATUS_TEXT_CHARS,
        )?;
        let avatar = profile_field(avatar, current.avatar.clone(), "avatar", limits::MAX_AVATAR_BYTES)?;
        if avatar.as_deref().is_some_and(|a| !check_avatar(a)) {
            return Err(error(ErrorCode::Invalid, "avatar is a file id or an https:// URL"));
        }
        Ok(ProfileRecord { display_name, avatar, status_text })
    })();
    let profile = match checked {
        Ok(profile) => profile,
        Err(body) => return answer(shard, &origin, body),
    };
    let name = match username(shard, &me) {
        Ok(Some(name)) => name,
        Ok(None) => return answer(shard, &origin, error(ErrorCode::NotFound, "no such account")),
        Err(e) => return answer(shard, &origin, storage_error(&e)),
    };
    hold(shard, &key, PendingValue::Profile(profile.clone()));
    let shown = public_profile(me.clone(), name, profile.clone());
    let reply = Reply::plain(
        &origin,
        ReplyBody::Ok(OkBody::Profile(Box::new(ProfileOk { profile: shown, presence: None }))),
    );
    let work =
        CommitWork::People { shard: origin.shard, reply, notices: Vec::new(), release: vec![key.clone()] };
    if let Err(e) = submit(shard, vec![Write::PutProfile { user: me, profile }], work) {
        release(shard, &[key]);
        answer(shard, &origin, storage_error(&e));
    }
}

/// A profile as others see it.
pub fn public_profile(user_id: UserId, username: String, record: ProfileRecord) -> Profile {
    Profile {
        user_id,
        username,
        display_name: record.display_name,
        avatar: record.avatar,
        status_text: record.status_text,
    }
}

// ----- the key directory (at the device owner's home) -----

fn keys_upload(
    shard: &Rc<Shard>,
    origin: Origin,
    device_id: String,
    identity_key: String,
    signing_key: Option<String>,
    one_time_keys: Vec<OneTimeKey>,
) {
    let me = origin.user.clone();
    let store = &shard.shared.store;
    let device_key = PendingKey::Device(me.clone(), device_id.clone());
    let looked_up = (|| -> Result<_, StorageError> {
        let published = match pending(shard, &device_key) {
            Some(PendingValue::Device(identity, signing)) => Some((identity, signing)),
            _ => store.device(&me, &device_id)?.map(|d| (d.identity_key, d.signing_key)),
        };
        let unclaimed =
            if valid_device_id(&device_id) { store.one_time_key_count(&me, &device_id)? } else { 0 };
        Ok((published, unclaimed, store.devices(&me)?.len()))
    })();
    let (published, unclaimed, devices) = match looked_up {
        Ok(found) => found,
        Err(e) => return answer(shard, &origin, storage_error(&e)),
    };
    let checked = check_upload(
        &device_id,
        &identity_key,
        signing_key.as_deref(),
        &one_time_keys,
        published.as_ref().map(|(i, s)| PublishedDevice { identity_key: i, signing_key: s.as_deref() }),
        unclaimed,
        devices,
    );
    if let Err(e) = checked {
        return answer(shard, &origin, ReplyBody::Err(e.to_body()));
    }
    let count = (unclaimed + one_time_keys.len()) as u32;
    let mut writes = Vec::new();
    if published.is_none() {
        writes.push(Write::PutDevice {
            user: me.clone(),
            device_id: device_id.clone(),
            identity_key: identity_key.clone(),
            signing_key: signing_key.clone(),
        });
    }
    if !one_time_keys.is_empty() {
        let keys = one_time_keys.into_iter().map(|k| (k.key_id, k.key)).collect();
        writes.push(Write::PutOneTimeKeys { user: me, device_id, keys });
    }
    let body = ReplyBody::Ok(OkBody::KeysUploaded(KeysUploadOk { one_time_key_count: count }));
    if writes.is_empty() {
        return answer(shard, &origin, body);
    }
    hold(shard, &device_key, PendingValue::Device(identity_key, signing_key));
    let work = CommitWork::People {
        shard: origin.shard,
        reply: Reply::plain(&origin, body),
        notices: Vec::new(),
        release: vec![device_key.clone()],
    };
    if let Err(e) = submit(shard, writes, work) {
        release(shard, &[device_key]);
        answer(shard, &origin, storage_error(&e));
    }
}

/// Hands out one unclaimed one-time prekey per device of `user` (or of `device_id`):
/// never the same key twice, since this home is the single writer of `user`'s keys and
/// holds each handed-out key until its removal is durable.
fn keys_claim(shard: &Rc<Shard>, origin: Origin, user: UserId, device_id: Option<String>) {
    let store = &shard.shared.store;
    let found =
        (|| -> Result<Result<Vec<(String, palaver_storage::DeviceRecord)>, ReplyBody>, StorageError> {
            if store.user(&user)?.is_none() {
                return Ok(Err(error(ErrorCode::NotFound, format!("no user {user}"))));
            }
            if store.is_blocked(&user, &origin.user)? {
                return Ok(Err(error(
                    ErrorCode::Forbidden,
                    format!("{user} does not accept messages from you"),
                )));
            }
            // One-time keys are a finite supply: a claimer takes few of one user's, and
            // all claimers together a bounded number, so none can drain them.
            if let Err(wait) = shard.shared.spam.claim_keys(&origin.user, &user, crate::clock::now_ms()) {
                return Ok(Err(palaver_core::owner::rate_limited(
                    "too many one-time key claims; slow down",
                    wait,
                )));
            }
            let mut devices = store.devices(&user)?;
            if let Some(only) = &device_id {
                devices.retain(|(d, _)| d == only);
                if devices.is_empty() {
                    return Ok(Err(error(ErrorCode::NotFound, format!("{user} has no device {only}"))));
                }
            }
            Ok(Ok(devices))
        })();
    let devices = match found {
        Ok(Ok(devices)) => devices,
        Ok(Err(body)) => return answer(shard, &origin, body),
        Err(e) => return answer(shard, &origin, storage_error(&e)),
    };
    let mut claimed = Vec::new();
    let mut writes = Vec::new();
    let mut held = Vec::new();
    for (device, record) in devices {
        let in_flight = shard
            .people
            .borrow()
            .pending
            .keys()
            .filter(|k| matches!(k, PendingKey::ClaimedKey(u, d, _) if *u == user && *d == device))
            .count();
        let candidates = match store.one_time_keys(&user, &device, in_flight + 1) {
            Ok(keys) => keys,
            Err(e) => {
                release(shard, &held);
                return answer(shard, &origin, storage_error(&e));
            }
        };
        let key = candidates.into_iter().find(|(key_id, _)| {
            pending(shard, &PendingKey::ClaimedKey(user.clone(), device.clone(), key_id.clone())).is_none()
        });
        if let Some((key_id, _)) = &key {
            let pending_key = PendingKey::ClaimedKey(user.clone(), device.clone(), key_id.clone());
            hold(shard, &pending_key, PendingValue::Claimed);
            held.push(pending_key);
            writes.push(Write::RemoveOneTimeKey {
                user: user.clone(),
                device_id: device.clone(),
                key_id: key_id.clone(),
            });
        }
        let left = match store.one_time_key_count(&user, &device) {
            Ok(count) => count.saturating_sub(in_flight + usize::from(key.is_some())),
            Err(e) => {
                release(shard, &held);
                return answer(shard, &origin, storage_error(&e));
            }
        };
        claimed.push(ClaimedKey {
            device_id: device,
            identity_key: record.identity_key,
            signing_key: record.signing_key,
            one_time_key: key.map(|(key_id, key)| OneTimeKey { key_id, key }),
            one_time_key_count: u32::try_from(left).unwrap_or(u32::MAX),
        });
    }
    let body = ReplyBody::Ok(OkBody::Claimed(ClaimedOk { claimed }));
    if writes.is_empty() {
        return answer(shard, &origin, body);
    }
    let work = CommitWork::People {
        shard: origin.shard,
        reply: Reply::plain(&origin, body),
        notices: Vec::new(),
        release: held.clone(),
    };
    if let Err(e) = submit(shard, writes, work) {
        release(shard, &held);
        answer(shard, &origin, storage_error(&e));
    }
}
