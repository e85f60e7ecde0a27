//! The people role's driver. Each user has a home shard (`Mesh::home`), and each pair
//! of users the home of its lower id (`Mesh::pair_home`); what a home decides is
//! `palaver_core::people::PeopleHome`'s. This module feeds it sessions, follows and
//! requests, reads storage for it, and carries out its effects: writes to group commit,
//! answers, notices to users' sockets wherever they are, presence to the shards that
//! follow it.
//!
//! The current presence of everyone is published in the [`PresenceTable`](crate::mesh::PresenceTable), written only
//! by each user's home shard and read by any shard answering `user.get`, `room.members`,
//! `friend.list` or `presence.subscribe`. Which local sockets follow whom is kept here,
//! next to the sockets.

use std::rc::Rc;
use std::sync::Arc;

use palaver_core::owner::{Answer, Found, LookupError};
use palaver_core::people::{
    HomeConfig, HomeEffects, HomeSettle, LocalEffect, NodeSession, PeopleHome, PeopleLookups,
    PresenceAnnouncement,
};
pub use palaver_core::people::{own_profile, public_profile};
use palaver_protocol::{
    Event, FriendState, NotificationSettings, PresenceInfo, PresenceStatus, ServerFrame, UserId,
};
use palaver_storage::{DeviceRecord, ProfileRecord, StorageError};
use rustc_hash::FxHashMap;

use super::{Conn, Shard};
use crate::clock::now_ms;
use crate::mesh::{
    CommitWork, LazyFrames, Origin, PeopleOp, PresenceFanout, Reply, ShardMsg, Ticket, UserNotice,
};

/// The people home of this shard, owned by its inbox task: the machine and the effects
/// buffer it fills.
#[derive(Debug)]
pub struct Home {
    home: PeopleHome,
    fx: HomeEffects<Origin>,
}

impl Home {
    /// Empty, announcing each user at most once per `presence_interval_ms`; sites at or
    /// above `local_sites` stand for other nodes.
    pub fn new(presence_interval_ms: u64, local_sites: usize) -> Self {
        let config = HomeConfig { presence_interval_ms, local_sites };
        Self { home: PeopleHome::new(config), fx: HomeEffects::default() }
    }
}

/// The local sockets following each user's presence (socket plumbing, shared by the
/// shard's tasks).
pub type Followers = FxHashMap<UserId, Vec<crate::mesh::ConnId>>;

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
    let mut followers = shard.followers.borrow_mut();
    let local = followers.entry(user.clone()).or_default();
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

fn drop_follower(shard: &Shard, conn: crate::mesh::ConnId, user: &UserId) {
    let mut followers = shard.followers.borrow_mut();
    let Some(local) = followers.get_mut(user) else { return };
    local.retain(|c| *c != conn);
    if local.is_empty() {
        followers.remove(user);
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

/// Forwards a notice to the shards where the user has sessions (the home knows them).
pub fn on_notify(shard: &Rc<Shard>, home: &Home, notice: UserNotice) {
    let shards = home.home.sites_of(&notice.user);
    if shards.is_empty() {
        return;
    }
    let notice = Arc::new(notice);
    let mesh = shard.mesh();
    for s in shards {
        if s < mesh.len() {
            mesh.send(s, ShardMsg::UserEvent(notice.clone()));
        } else if let Some(gateway) = mesh.gateway() {
            // Another node's sessions: the gateway sends it there.
            mesh.send(gateway, ShardMsg::RemoteUserEvent { slot: s, notice: notice.clone() });
        }
    }
}

/// Delivers a notice to the local sessions of its user and applies its effect.
pub fn on_user_event(shard: &Rc<Shard>, notice: &UserNotice) {
    for id in shard.conns.of_user(&notice.user) {
        let Some(conn) = shard.conns.get(id) else { continue };
        if let Some(frames) = &notice.frames
            && let Some(frame) = frames.frame(conn.wire)
        {
            conn.outbound.push(frame.clone(), frames.lane());
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
    let followers = shard.followers.borrow().get(&fanout.user).cloned().unwrap_or_default();
    for id in followers {
        if let Some(conn) = shard.conns.get(id)
            && let Some(frame) = fanout.frames.frame(conn.wire)
        {
            conn.outbound.push(frame.clone(), fanout.frames.lane());
        }
    }
}

// ----- the home role -----

/// A home's view of storage and the shared throttles, from this shard.
struct HomeLookups<'a>(&'a Shard);

fn found<T>(result: Result<T, StorageError>) -> Found<T> {
    result.map_err(|e| {
        let e = LookupError::from(e);
        if let LookupError::Failed(detail) = &e {
            tracing::error!("storage: {detail}");
        }
        e
    })
}

impl PeopleLookups for HomeLookups<'_> {
    fn account(&self, user: &UserId) -> Found<Option<palaver_storage::UserRecord>> {
        found(self.0.shared.store.user(user))
    }
    fn friendship(&self, user: &UserId, other: &UserId) -> Found<Option<(FriendState, u64)>> {
        found(self.0.shared.store.friend(user, other))
    }
    fn friend_count(&self, user: &UserId) -> Found<usize> {
        found(self.0.shared.store.friends(user)).map(|f| f.len())
    }
    fn is_blocked(&self, user: &UserId, other: &UserId) -> Found<bool> {
        found(self.0.shared.store.is_blocked(user, other))
    }
    fn block_count(&self, user: &UserId) -> Found<usize> {
        found(self.0.shared.store.blocks(user)).map(|b| b.len())
    }
    fn profile(&self, user: &UserId) -> Found<ProfileRecord> {
        found(self.0.shared.store.profile(user))
    }
    fn notifications(&self, user: &UserId) -> Found<NotificationSettings> {
        found(self.0.shared.store.notifications(user))
    }
    fn push_subscriptions(&self, user: &UserId) -> Found<Vec<palaver_core::records::PushSubscriptionRecord>> {
        found(self.0.shared.store.push_subscriptions(user))
    }
    fn last_seen(&self, user: &UserId) -> Found<Option<u64>> {
        found(self.0.shared.store.last_seen(user))
    }
    fn device(&self, user: &UserId, device_id: &str) -> Found<Option<DeviceRecord>> {
        found(self.0.shared.store.device(user, device_id))
    }
    fn devices(&self, user: &UserId) -> Found<Vec<(String, DeviceRecord)>> {
        found(self.0.shared.store.devices(user))
    }
    fn one_time_key_count(&self, user: &UserId, device_id: &str) -> Found<usize> {
        found(self.0.shared.store.one_time_key_count(user, device_id))
    }
    fn one_time_keys(&self, user: &UserId, device_id: &str, limit: usize) -> Found<Vec<(String, String)>> {
        found(self.0.shared.store.one_time_keys(user, device_id, limit))
    }
    fn take_key_claim(&self, claimer: &UserId, user: &UserId, now_ms: u64) -> Result<(), u64> {
        self.0.shared.spam.claim_keys(claimer, user, now_ms)
    }
}

/// Runs one call on this shard's home with its lookups and effects, then carries the
/// effects out.
fn with_home(
    shard: &Shard,
    state: &mut Home,
    call: impl FnOnce(&mut PeopleHome, &HomeLookups<'_>, &mut HomeEffects<Origin>),
) {
    let Home { home, fx } = state;
    // Read before the decision reads storage: the decision saw at least this much of
    // other nodes' writes (a pair's change is refused if the pair changed after it).
    let seen = shard.shared.cluster.as_ref().map(|cluster| cluster.seen());
    call(home, &HomeLookups(shard), fx);
    carry_out(shard, home, fx, seen);
}

/// Carries out what the home decided.
fn carry_out(shard: &Shard, home: &mut PeopleHome, fx: &mut HomeEffects<Origin>, seen: Option<u64>) {
    loop {
        for commit in std::mem::take(&mut fx.commits) {
            let work = CommitWork::People(commit.settle);
            match shard.shared.committer.submit_seen(commit.writes, seen, Ticket { shard: shard.id, work }) {
                Ok(()) => shard.outstanding_commits.set(shard.outstanding_commits.get() + 1),
                Err(Ticket { work: CommitWork::People(settle), .. }) => {
                    home.on_committed(settle, Err(LookupError::Unavailable), fx);
                }
                Err(_) => {}
            }
        }
        for Answer { to, body, .. } in fx.answers.drain(..) {
            shard.mesh().send(to.shard, ShardMsg::Reply(Reply::plain(&to, body)));
        }
        for notice in fx.notices.drain(..) {
            let frames = notice.event.map(|event| LazyFrames::new(ServerFrame::Event(event)));
            let notice = UserNotice { user: notice.user, frames, effect: notice.effect };
            shard.mesh().send(shard.mesh().home(&notice.user), ShardMsg::Notify(Box::new(notice)));
        }
        for PresenceAnnouncement { info, sites } in fx.announcements.drain(..) {
            let user = info.user.clone();
            let fanout = Arc::new(PresenceFanout {
                user,
                frames: LazyFrames::new(ServerFrame::Event(Event::Presence(info))),
            });
            for site in sites {
                shard.mesh().send(site, ShardMsg::Presence(fanout.clone()));
            }
        }
        for info in fx.published.drain(..) {
            // Whether the user has a live socket anywhere (this node's shards, or other
            // nodes' stand-in sites), whatever status they show: what push reads. Set
            // before the status, so a reader who sees them offline sees it too.
            let connected = !home.sites_of(&info.user).is_empty();
            shard.shared.presence.set_connected(shard.id, &info.user, connected);
            shard.shared.presence.set(shard.id, info);
        }
        // In a cluster, other nodes count this node's sessions as one.
        for NodeSession { user, site, up } in fx.node_sessions.drain(..) {
            if let Some(gateway) = shard.mesh().gateway() {
                let msg = if up {
                    ShardMsg::SessionUp { user, shard: site }
                } else {
                    ShardMsg::SessionDown { user, shard: site }
                };
                shard.mesh().send(gateway, msg);
            }
        }
        if fx.commits.is_empty() {
            return;
        }
    }
}

/// A session of `user` started on shard `from`.
pub fn on_session_up(shard: &Shard, home: &mut Home, user: UserId, from: usize) {
    with_home(shard, home, |home, lookups, fx| home.session_up(now_ms(), &user, from, lookups, fx));
}

/// A session of `user` on shard `from` ended.
pub fn on_session_down(shard: &Shard, home: &mut Home, user: UserId, from: usize) {
    with_home(shard, home, |home, lookups, fx| home.session_down(now_ms(), &user, from, lookups, fx));
}

/// Shard `from` starts or stops following `user`.
pub fn on_watch(home: &mut Home, user: UserId, from: usize, on: bool) {
    home.home.watch(&user, from, on);
}

/// The home's periodic presence work: announce what the coalescing window held back.
pub fn on_tick(shard: &Shard, home: &mut Home) {
    with_home(shard, home, |home, _, fx| home.tick(now_ms(), fx));
}

/// Carries out a people operation at its home.
pub fn on_people(shard: &Shard, home: &mut Home, origin: Origin, op: PeopleOp) {
    let user = origin.user.clone();
    with_home(shard, home, |home, lookups, fx| home.handle(now_ms(), origin, &user, op, lookups, fx));
}

/// A home's writes settled.
pub fn on_committed(
    shard: &Shard,
    home: &mut Home,
    settle: HomeSettle<Origin>,
    result: Result<(), LookupError>,
) {
    with_home(shard, home, |home, _, fx| home.on_committed(settle, result, fx));
}
