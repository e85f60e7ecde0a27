//! The people home, as a state machine. Each user has a home (a shard), and each pair of
//! users the home of its lower id; a home is the single writer of:
//!
//! - its users' presence (a [`PresenceBook`]: live sessions per site, away/invisible,
//!   last seen), and which sites follow it, so announcements go only there;
//! - its pairs' friendships and blocks, so two devices (or both users) acting at once
//!   cannot interleave a read-check-write;
//! - its users' profiles and published device keys, and the one-time keys others claim
//!   from them (each handed out once).
//!
//! Like the room owner ([`crate::owner`]), it decides and never does: time is an
//! argument, storage is read through [`PeopleLookups`], and what it decided comes out as
//! [`HomeEffects`]. Decisions not yet durable are held (`pending`) and read before
//! storage, until their write settles.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

use palaver_protocol::{
    ClaimedKey, ClaimedOk, Empty, Event, FriendInfo, FriendOk, FriendState, KeysUploadOk,
    NotificationSettings, NotificationsOk, OkBody, OneTimeKey, PresenceChoice, PresenceInfo, Profile,
    ProfileOk, ReplyBody, UserId, limits,
};

use crate::error::{CoreError, Throttled};
use crate::keys::{PublishedDevice, check_upload, valid_device_id};
use crate::owner::{Answer, Found, LookupError, lookup_failed};
use crate::presence::{PresenceBook, SessionChange};
use crate::records::{DeviceRecord, ProfileRecord, PushSubscriptionRecord, UserRecord, Write};
use crate::route::{FriendOp, PeopleOp};

/// What a home asks of storage and of the shared throttles.
pub trait PeopleLookups {
    /// A user's account, if it exists.
    fn account(&self, user: &UserId) -> Found<Option<UserRecord>>;
    /// `user`'s stored side of their friendship with `other` (`None`: nothing).
    fn friendship(&self, user: &UserId, other: &UserId) -> Found<Option<(FriendState, u64)>>;
    /// How many friends and requests `user` has.
    fn friend_count(&self, user: &UserId) -> Found<usize>;
    /// Whether `user` blocked `other`, as stored.
    fn is_blocked(&self, user: &UserId, other: &UserId) -> Found<bool>;
    /// How many users `user` blocked.
    fn block_count(&self, user: &UserId) -> Found<usize>;
    /// A user's stored profile.
    fn profile(&self, user: &UserId) -> Found<ProfileRecord>;
    /// A user's stored notification settings.
    fn notifications(&self, user: &UserId) -> Found<NotificationSettings>;
    /// A user's push subscriptions.
    fn push_subscriptions(&self, user: &UserId) -> Found<Vec<PushSubscriptionRecord>>;
    /// When a user was last seen, as stored.
    fn last_seen(&self, user: &UserId) -> Found<Option<u64>>;
    /// A device's published keys.
    fn device(&self, user: &UserId, device_id: &str) -> Found<Option<DeviceRecord>>;
    /// A user's devices with their keys.
    fn devices(&self, user: &UserId) -> Found<Vec<(String, DeviceRecord)>>;
    /// How many unclaimed one-time keys a device has in storage.
    fn one_time_key_count(&self, user: &UserId, device_id: &str) -> Found<usize>;
    /// Up to `limit` of a device's unclaimed one-time keys `(key id, key)`, in key order.
    fn one_time_keys(&self, user: &UserId, device_id: &str, limit: usize) -> Found<Vec<(String, String)>>;
    /// Takes a claim by `claimer` of `user`'s one-time keys from the shared throttle, or
    /// says how many ms to wait.
    fn take_key_claim(&self, claimer: &UserId, user: &UserId, now_ms: u64) -> Result<(), u64>;
}

/// The settings a home needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HomeConfig {
    /// The least time between two presence announcements of one user.
    pub presence_interval_ms: u64,
    /// How many sites are this node's own shards: a site at or above it stands for the
    /// other nodes of a cluster.
    pub local_sites: usize,
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
    /// A user's notification settings.
    Notifications(UserId),
    /// A user's push subscriptions.
    PushSubscriptions(UserId),
    /// A device's published keys (user, device).
    Device(UserId, String),
    /// A one-time prekey handed out and not yet durably removed (user, device, key id).
    ClaimedKey(UserId, String, String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PendingValue {
    /// The lower id's side of the friendship.
    Friend(Option<(FriendState, u64)>),
    Block(bool),
    Profile(ProfileRecord),
    Notifications(NotificationSettings),
    PushSubscriptions(Vec<PushSubscriptionRecord>),
    Device(String, Option<String>),
    Claimed,
}

/// A change a user's sockets apply to themselves.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalEffect {
    /// Start following this user's presence (a new friend).
    Follow(UserId),
    /// Stop following this user's presence (no longer a friend, or they blocked).
    Unfollow(UserId),
    /// Flag this user's messages `blocked`.
    Block(UserId),
    /// Stop flagging this user's messages.
    Unblock(UserId),
}

/// Something for every live socket of one user, wherever it is.
#[derive(Debug, Clone, PartialEq)]
pub struct PeopleNotice {
    /// The user.
    pub user: UserId,
    /// An event to deliver.
    pub event: Option<Event>,
    /// A change the sockets apply.
    pub effect: Option<LocalEffect>,
}

/// A presence change for the sites that follow the user.
#[derive(Debug, Clone, PartialEq)]
pub struct PresenceAnnouncement {
    /// The presence now.
    pub info: PresenceInfo,
    /// The following sites.
    pub sites: Vec<usize>,
}

/// A session of a user appeared on this node or left it: the other nodes of a cluster
/// count this node's sessions as one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSession {
    /// The user.
    pub user: UserId,
    /// The local site.
    pub site: usize,
    /// Up (the first here) or down (the last here).
    pub up: bool,
}

/// What to do when a home's writes settle.
#[derive(Debug, Clone, PartialEq)]
pub struct HomeSettle<A> {
    /// The answer (replaced by the storage error if the writes fail); none for a
    /// background write.
    pub answer: Option<Answer<A>>,
    /// Users to tell once durable.
    pub notices: Vec<PeopleNotice>,
    /// Pending decisions to release.
    pub release: Vec<PendingKey>,
}

/// Writes for group commit, and what to tell the home when they settle.
#[derive(Debug, Clone, PartialEq)]
pub struct HomeCommit<A> {
    /// The writes, applied atomically.
    pub writes: Vec<Write>,
    /// Handed back to [`PeopleHome::on_committed`].
    pub settle: HomeSettle<A>,
}

/// What a home decided, as plain data for the driver (a reused buffer).
#[derive(Debug)]
pub struct HomeEffects<A> {
    /// Writes to submit to group commit.
    pub commits: Vec<HomeCommit<A>>,
    /// Answers to send now.
    pub answers: Vec<Answer<A>>,
    /// Notices for users.
    pub notices: Vec<PeopleNotice>,
    /// Presence changes for the sites following them.
    pub announcements: Vec<PresenceAnnouncement>,
    /// The presence now of users whose presence may have changed (for readers anywhere).
    pub published: Vec<PresenceInfo>,
    /// Sessions the other nodes of a cluster are to hear of.
    pub node_sessions: Vec<NodeSession>,
}

impl<A> Default for HomeEffects<A> {
    fn default() -> Self {
        Self {
            commits: Vec::new(),
            answers: Vec::new(),
            notices: Vec::new(),
            announcements: Vec::new(),
            published: Vec::new(),
            node_sessions: Vec::new(),
        }
    }
}

impl<A> HomeEffects<A> {
    /// Whether nothing was decided.
    pub fn is_empty(&self) -> bool {
        self.commits.is_empty()
            && self.answers.is_empty()
            && self.notices.is_empty()
            && self.announcements.is_empty()
            && self.published.is_empty()
            && self.node_sessions.is_empty()
    }
}

/// One shard's people home. See the module docs.
#[derive(Debug)]
pub struct PeopleHome {
    config: HomeConfig,
    book: PresenceBook,
    /// For each user homed here: the sites that follow them, with how many followers
    /// each has.
    watchers: HashMap<UserId, BTreeMap<usize, u32>>,
    /// Decisions not yet durable, with how many writes hold each.
    pending: HashMap<PendingKey, (PendingValue, u32)>,
}

/// Runs a step that answers with a refusal: `Err(body)` is the answer.
type Step<T> = Result<T, ReplyBody>;

fn found<T>(result: Found<T>) -> Step<T> {
    result.map_err(|e| lookup_failed(&e))
}

fn no(e: CoreError) -> ReplyBody {
    ReplyBody::Err(e.to_body())
}

fn empty() -> ReplyBody {
    ReplyBody::Ok(OkBody::Empty(Empty {}))
}

fn notifications_body(settings: NotificationSettings) -> ReplyBody {
    ReplyBody::Ok(OkBody::Notifications(NotificationsOk { notifications: settings }))
}

fn friend_key(a: &UserId, b: &UserId) -> PendingKey {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    PendingKey::Friend(lo.clone(), hi.clone())
}

/// A profile as others see it.
pub fn public_profile(account: UserRecord, record: ProfileRecord) -> Profile {
    Profile {
        user_id: account.user_id,
        username: account.username,
        display_name: record.display_name,
        avatar: record.avatar,
        status_text: record.status_text,
        share_read_receipts: None,
        bot: account.bot,
    }
}

/// A user's profile as they see it themselves: the public one with their private
/// settings.
pub fn own_profile(account: UserRecord, record: ProfileRecord) -> Profile {
    let share_read_receipts = Some(!record.hide_read_receipts);
    Profile { share_read_receipts, ..public_profile(account, record) }
}

/// What `user.update` asks to change: `None` keeps a field.
struct ProfileFields {
    display_name: Option<String>,
    avatar: Option<String>,
    status_text: Option<String>,
    share_read_receipts: Option<bool>,
}

/// Checks a profile field: `None` keeps it, an empty string clears it, anything else is
/// stored exactly as sent or refused (never altered).
fn profile_field(
    value: Option<String>,
    current: Option<String>,
    field: &'static str,
    max_chars: usize,
) -> Step<Option<String>> {
    let Some(value) = value else { return Ok(current) };
    if value.is_empty() {
        return Ok(None);
    }
    if value.chars().count() > max_chars {
        return Err(no(CoreError::TooLong { field, max: max_chars, unit: "characters" }));
    }
    if let Err(error) = palaver_protocol::check_name(&value) {
        return Err(no(CoreError::Text { field, error }));
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

/// The writes and notices that set `me`'s side of the friendship with `other` to `to`
/// (from `from`), at `now`.
fn friendship_change(
    me: (&UserId, &str),
    other: (&UserId, &str),
    from: FriendState,
    to: FriendState,
    now: u64,
) -> (Vec<Write>, Vec<PeopleNotice>) {
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
    let notice = |to_user: (&UserId, &str), about: (&UserId, &str), state: FriendState| PeopleNotice {
        user: to_user.0.clone(),
        event: Some(Event::Friend(FriendInfo {
            user: about.0.clone(),
            username: about.1.to_owned(),
            state,
            since: now,
            presence: None,
        })),
        effect: effect(about.0),
    };
    (writes, vec![notice(me, other, to), notice(other, me, to.mirrored())])
}

impl PeopleHome {
    /// An empty home.
    pub fn new(config: HomeConfig) -> Self {
        Self {
            config,
            book: PresenceBook::new(config.presence_interval_ms),
            watchers: HashMap::new(),
            pending: HashMap::new(),
        }
    }

    // ----- presence -----

    fn ensure_known(&mut self, user: &UserId, lookups: &impl PeopleLookups) {
        if !self.book.knows(user) {
            // A last-seen that cannot be read now shows as unknown.
            let last_seen = lookups.last_seen(user).ok().flatten();
            self.book.load(user.clone(), last_seen);
        }
    }

    /// Whether `user` has a session on this node's own sites (not counting other nodes').
    fn here(&self, user: &UserId) -> bool {
        self.book.session_shards(user).iter().any(|s| *s < self.config.local_sites)
    }

    /// The sites where `user` has live sessions.
    pub fn sites_of(&self, user: &UserId) -> Vec<usize> {
        self.book.session_shards(user)
    }

    /// A session of `user` started on `site`.
    pub fn session_up<A>(
        &mut self,
        now_ms: u64,
        user: &UserId,
        site: usize,
        lookups: &impl PeopleLookups,
        fx: &mut HomeEffects<A>,
    ) {
        self.ensure_known(user, lookups);
        let was_here = self.here(user);
        self.book.session_up(user, site);
        if !was_here && site < self.config.local_sites {
            fx.node_sessions.push(NodeSession { user: user.clone(), site, up: true });
        }
        fx.published.push(self.book.current(user));
        self.announce_due(now_ms, fx);
    }

    /// A session of `user` on `site` ended.
    pub fn session_down<A>(
        &mut self,
        now_ms: u64,
        user: &UserId,
        site: usize,
        lookups: &impl PeopleLookups,
        fx: &mut HomeEffects<A>,
    ) {
        self.ensure_known(user, lookups);
        let was_here = self.here(user);
        let change = self.book.session_down(now_ms, user, site);
        if was_here && !self.here(user) {
            fx.node_sessions.push(NodeSession { user: user.clone(), site, up: false });
        }
        fx.published.push(self.book.current(user));
        if let SessionChange::WentOffline { last_seen } = change {
            let settle = HomeSettle { answer: None, notices: Vec::new(), release: Vec::new() };
            fx.commits.push(HomeCommit {
                writes: vec![Write::PutLastSeen { user: user.clone(), at: last_seen }],
                settle,
            });
        }
        self.announce_due(now_ms, fx);
    }

    /// `site` starts (`on`) or stops following `user`.
    pub fn watch(&mut self, user: &UserId, site: usize, on: bool) {
        let sites = self.watchers.entry(user.clone()).or_default();
        if on {
            *sites.entry(site).or_default() += 1;
        } else if let Some(count) = sites.get_mut(&site) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                sites.remove(&site);
            }
        }
        if sites.is_empty() {
            self.watchers.remove(user);
        }
    }

    fn announce_due<A>(&mut self, now_ms: u64, fx: &mut HomeEffects<A>) {
        for info in self.book.due(now_ms) {
            let Some(sites) = self.watchers.get(&info.user) else { continue };
            fx.announcements.push(PresenceAnnouncement { sites: sites.keys().copied().collect(), info });
        }
    }

    /// The home's periodic work: announce what the coalescing window held back.
    pub fn tick<A>(&mut self, now_ms: u64, fx: &mut HomeEffects<A>) {
        if self.book.has_pending() {
            self.announce_due(now_ms, fx);
        }
    }

    // ----- requests -----

    /// Handles one request by `me`.
    pub fn handle<A>(
        &mut self,
        now_ms: u64,
        asker: A,
        me: &UserId,
        op: PeopleOp,
        lookups: &impl PeopleLookups,
        fx: &mut HomeEffects<A>,
    ) {
        let decided = match op {
            PeopleOp::SetPresence(choice) => Ok(self.set_presence(now_ms, me, choice, lookups, fx)),
            PeopleOp::UpdateProfile { display_name, avatar, status_text, share_read_receipts } => {
                let fields = ProfileFields { display_name, avatar, status_text, share_read_receipts };
                self.update_profile(me, fields, lookups)
            }
            PeopleOp::GetNotifications => {
                self.notifications(me, lookups).map(|settings| Decision::Answer(notifications_body(settings)))
            }
            PeopleOp::SetNotifications { level, keywords } => {
                self.set_notifications(me, lookups, |settings| {
                    crate::notifications::apply_account(settings, level, keywords)
                })
            }
            PeopleOp::SetRoomNotifications(setting) => self.set_notifications(me, lookups, |settings| {
                crate::notifications::apply_room(settings, setting, now_ms)
            }),
            PeopleOp::PushSubscribe { endpoint, p256dh, auth } => {
                let subscription = PushSubscriptionRecord { endpoint, p256dh, auth, created_ms: now_ms };
                self.push_subscribe(me, subscription, lookups)
            }
            PeopleOp::PushUnsubscribe { endpoint } => self.push_unsubscribe(me, endpoint, lookups),
            PeopleOp::Friend { other, op } => self.friend(now_ms, me, other, op, lookups),
            PeopleOp::Block { other, on } => self.block(now_ms, me, other, on, lookups),
            PeopleOp::KeysUpload { device_id, identity_key, signing_key, one_time_keys } => {
                self.keys_upload(me, device_id, identity_key, signing_key, one_time_keys, lookups)
            }
            PeopleOp::KeysClaim { user, device_id } => self.keys_claim(now_ms, me, &user, device_id, lookups),
        };
        match decided {
            Err(body) => fx.answers.push(Answer::plain(asker, body)),
            Ok(Decision::Answer(body)) => fx.answers.push(Answer::plain(asker, body)),
            Ok(Decision::Commit { writes, body, notices, hold }) => {
                let mut release = Vec::with_capacity(hold.len());
                for (key, value) in hold {
                    self.hold(&key, value);
                    release.push(key);
                }
                let settle = HomeSettle { answer: Some(Answer::plain(asker, body)), notices, release };
                fx.commits.push(HomeCommit { writes, settle });
            }
        }
    }

    /// Storage's verdict on a commit this home decided: `Ok` when it is durable.
    pub fn on_committed<A>(
        &mut self,
        settle: HomeSettle<A>,
        result: Result<(), LookupError>,
        fx: &mut HomeEffects<A>,
    ) {
        let HomeSettle { answer, notices, release } = settle;
        self.release(&release);
        match (answer, result) {
            (Some(answer), Ok(())) => {
                fx.answers.push(answer);
                fx.notices.extend(notices);
            }
            (Some(mut answer), Err(e)) => {
                answer.body = lookup_failed(&e);
                fx.answers.push(answer);
            }
            // A background write (last seen): nothing to tell.
            (None, Ok(())) => fx.notices.extend(notices),
            (None, Err(_)) => {}
        }
    }

    fn hold(&mut self, key: &PendingKey, value: PendingValue) {
        let entry = self.pending.entry(key.clone()).or_insert((value.clone(), 0));
        entry.0 = value;
        entry.1 += 1;
    }

    fn release(&mut self, keys: &[PendingKey]) {
        for key in keys {
            if let Some(entry) = self.pending.get_mut(key) {
                entry.1 = entry.1.saturating_sub(1);
                if entry.1 == 0 {
                    self.pending.remove(key);
                }
            }
        }
    }

    fn pending(&self, key: &PendingKey) -> Option<&PendingValue> {
        self.pending.get(key).map(|(v, _)| v)
    }

    /// Whether no decision is in flight.
    pub fn is_settled(&self) -> bool {
        self.pending.is_empty()
    }

    /// `me`'s side of the friendship with `other` (pending decisions first).
    fn friendship(
        &self,
        me: &UserId,
        other: &UserId,
        lookups: &impl PeopleLookups,
    ) -> Found<Option<(FriendState, u64)>> {
        if let Some(PendingValue::Friend(state)) = self.pending(&friend_key(me, other)) {
            let state = *state;
            return Ok(if me <= other { state } else { state.map(|(s, since)| (s.mirrored(), since)) });
        }
        Ok(lookups.friendship(me, other)?.filter(|(state, _)| *state != FriendState::None))
    }

    /// Whether `user` blocks `other` (pending decisions first).
    fn blocks(&self, user: &UserId, other: &UserId, lookups: &impl PeopleLookups) -> Found<bool> {
        if let Some(PendingValue::Block(on)) = self.pending(&PendingKey::Block(user.clone(), other.clone())) {
            return Ok(*on);
        }
        lookups.is_blocked(user, other)
    }

    fn set_presence<A>(
        &mut self,
        now_ms: u64,
        me: &UserId,
        choice: PresenceChoice,
        lookups: &impl PeopleLookups,
        fx: &mut HomeEffects<A>,
    ) -> Decision {
        self.ensure_known(me, lookups);
        self.book.choose(me, choice);
        fx.published.push(self.book.current(me));
        self.announce_due(now_ms, fx);
        Decision::Answer(empty())
    }

    fn friend(
        &self,
        now_ms: u64,
        me: &UserId,
        other: UserId,
        op: FriendOp,
        lookups: &impl PeopleLookups,
    ) -> Step<Decision> {
        if *me == other {
            return Err(no(CoreError::Oneself("that is you")));
        }
        let Some(other_name) = found(lookups.account(&other))?.map(|a| a.username) else {
            return Err(no(CoreError::NoSuchUser(other)));
        };
        let current = found(self.friendship(me, &other, lookups))?.map_or(FriendState::None, |(s, _)| s);
        use FriendState::{Friends, Incoming, None as Nothing, Outgoing};
        let refuse = |e| Err(no(e));
        let to = match (op, current) {
            (FriendOp::Request, Nothing) => {
                if found(self.blocks(&other, me, lookups))? {
                    return refuse(CoreError::RefusesFriendRequests(other_name));
                }
                if found(self.blocks(me, &other, lookups))? {
                    return refuse(CoreError::YouBlocked(other_name));
                }
                if found(lookups.friend_count(me))? >= limits::MAX_FRIENDS {
                    return refuse(CoreError::FriendsCap { max: limits::MAX_FRIENDS });
                }
                Outgoing
            }
            // They asked first: asking back is accepting.
            (FriendOp::Request | FriendOp::Accept, Incoming) => Friends,
            (FriendOp::Request, Outgoing) => return refuse(CoreError::AlreadyAsked(other_name)),
            (FriendOp::Request, Friends) => return refuse(CoreError::AlreadyFriends(other_name)),
            (FriendOp::Decline, Incoming) | (FriendOp::Cancel, Outgoing) | (FriendOp::Remove, Friends) => {
                Nothing
            }
            (FriendOp::Accept | FriendOp::Decline, _) => {
                return refuse(CoreError::NoRequestFrom(other_name));
            }
            (FriendOp::Cancel, _) => return refuse(CoreError::NoRequestTo(other_name)),
            (FriendOp::Remove, _) => return refuse(CoreError::NotFriends(other_name)),
        };
        let Some(my_name) = found(lookups.account(me))?.map(|a| a.username) else {
            return Err(no(CoreError::NoSuchUser(me.clone())));
        };
        let (writes, notices) = friendship_change((me, &my_name), (&other, &other_name), current, to, now_ms);
        let lower_side = if *me <= other { to } else { to.mirrored() };
        let held = (lower_side != FriendState::None).then_some((lower_side, now_ms));
        let hold = vec![(friend_key(me, &other), PendingValue::Friend(held))];
        let info = FriendInfo { user: other, username: other_name, state: to, since: now_ms, presence: None };
        let body = ReplyBody::Ok(OkBody::Friend(FriendOk { friend: info }));
        Ok(Decision::Commit { writes, body, notices, hold })
    }

    fn block(
        &self,
        now_ms: u64,
        me: &UserId,
        other: UserId,
        on: bool,
        lookups: &impl PeopleLookups,
    ) -> Step<Decision> {
        if *me == other {
            return Err(no(CoreError::Oneself("that is you")));
        }
        let Some(other_name) = found(lookups.account(&other))?.map(|a| a.username) else {
            return Err(no(CoreError::NoSuchUser(other)));
        };
        let already = found(self.blocks(me, &other, lookups))?;
        if already == on {
            return Ok(Decision::Answer(empty()));
        }
        if on && found(lookups.block_count(me))? >= limits::MAX_BLOCKS {
            return Err(no(CoreError::BlocksCap { max: limits::MAX_BLOCKS }));
        }
        let friendship_now = found(self.friendship(me, &other, lookups))?.map(|(s, _)| s);
        let mut writes = vec![if on {
            Write::PutBlock { user: me.clone(), blocked: other.clone(), since: now_ms }
        } else {
            Write::RemoveBlock { user: me.clone(), blocked: other.clone() }
        }];
        let effect = if on { LocalEffect::Block(other.clone()) } else { LocalEffect::Unblock(other.clone()) };
        let mut notices = vec![PeopleNotice { user: me.clone(), event: None, effect: Some(effect) }];
        // Whoever is blocked stops seeing the blocker's presence on every socket that
        // followed it (and may not follow it again).
        if on {
            notices.push(PeopleNotice {
                user: other.clone(),
                event: None,
                effect: Some(LocalEffect::Unfollow(me.clone())),
            });
        }
        let mut hold = vec![(PendingKey::Block(me.clone(), other.clone()), PendingValue::Block(on))];
        // Blocking ends any friendship or request between the two.
        if on && let Some(from) = friendship_now {
            let Some(my_name) = found(lookups.account(me))?.map(|a| a.username) else {
                return Err(no(CoreError::NoSuchUser(me.clone())));
            };
            let (w, n) =
                friendship_change((me, &my_name), (&other, &other_name), from, FriendState::None, now_ms);
            writes.extend(w);
            notices.extend(n);
            hold.push((friend_key(me, &other), PendingValue::Friend(None)));
        }
        Ok(Decision::Commit { writes, body: empty(), notices, hold })
    }

    fn update_profile(
        &self,
        me: &UserId,
        fields: ProfileFields,
        lookups: &impl PeopleLookups,
    ) -> Step<Decision> {
        let ProfileFields { display_name, avatar, status_text, share_read_receipts } = fields;
        let key = PendingKey::Profile(me.clone());
        let current = match self.pending(&key) {
            Some(PendingValue::Profile(profile)) => profile.clone(),
            _ => found(lookups.profile(me))?,
        };
        let display_name = profile_field(
            display_name,
            current.display_name,
            "display_name",
            limits::MAX_DISPLAY_NAME_CHARS,
        )?;
        let status_text =
            profile_field(status_text, current.status_text, "status_text", limits::MAX_STATUS_TEXT_CHARS)?;
        let avatar = profile_field(avatar, current.avatar, "avatar", limits::MAX_AVATAR_BYTES)?;
        if avatar.as_deref().is_some_and(|a| !check_avatar(a)) {
            return Err(no(CoreError::Malformed {
                field: "avatar",
                rule: "is a file id or an https:// URL",
            }));
        }
        let hide_read_receipts = share_read_receipts.map_or(current.hide_read_receipts, |share| !share);
        let profile = ProfileRecord { display_name, avatar, status_text, hide_read_receipts };
        let Some(account) = found(lookups.account(me))? else {
            return Err(no(CoreError::NoSuchUser(me.clone())));
        };
        let shown = own_profile(account, profile.clone());
        let body = ReplyBody::Ok(OkBody::Profile(Box::new(ProfileOk { profile: shown, presence: None })));
        let writes = vec![Write::PutProfile { user: me.clone(), profile: profile.clone() }];
        Ok(Decision::Commit {
            writes,
            body,
            notices: Vec::new(),
            hold: vec![(key, PendingValue::Profile(profile))],
        })
    }

    /// `me`'s notification settings, the pending ones first.
    fn notifications(&self, me: &UserId, lookups: &impl PeopleLookups) -> Step<NotificationSettings> {
        match self.pending(&PendingKey::Notifications(me.clone())) {
            Some(PendingValue::Notifications(settings)) => Ok(settings.clone()),
            _ => found(lookups.notifications(me)),
        }
    }

    /// Changes `me`'s notification settings; every socket of theirs hears the result.
    fn set_notifications(
        &self,
        me: &UserId,
        lookups: &impl PeopleLookups,
        change: impl FnOnce(NotificationSettings) -> Result<NotificationSettings, CoreError>,
    ) -> Step<Decision> {
        let current = self.notifications(me, lookups)?;
        let settings = change(current).map_err(no)?;
        let event = Event::Notifications(NotificationsOk { notifications: settings.clone() });
        Ok(Decision::Commit {
            writes: vec![Write::PutNotifications { user: me.clone(), settings: settings.clone() }],
            body: notifications_body(settings.clone()),
            notices: vec![PeopleNotice { user: me.clone(), event: Some(event), effect: None }],
            hold: vec![(PendingKey::Notifications(me.clone()), PendingValue::Notifications(settings))],
        })
    }

    /// `me`'s push subscriptions, the pending ones first.
    fn subscriptions(&self, me: &UserId, lookups: &impl PeopleLookups) -> Step<Vec<PushSubscriptionRecord>> {
        match self.pending(&PendingKey::PushSubscriptions(me.clone())) {
            Some(PendingValue::PushSubscriptions(list)) => Ok(list.clone()),
            _ => found(lookups.push_subscriptions(me)),
        }
    }

    /// Registers a push subscription (already checked by the caller's shard): one per
    /// endpoint, at most [`crate::push::MAX_SUBSCRIPTIONS`] per user.
    fn push_subscribe(
        &self,
        me: &UserId,
        subscription: PushSubscriptionRecord,
        lookups: &impl PeopleLookups,
    ) -> Step<Decision> {
        let mut list = self.subscriptions(me, lookups)?;
        list.retain(|s| s.endpoint != subscription.endpoint);
        if list.len() >= crate::push::MAX_SUBSCRIPTIONS {
            return Err(no(CoreError::Malformed {
                field: "endpoint",
                rule: "is one of at most 20 push subscriptions per user: unsubscribe one first",
            }));
        }
        list.push(subscription.clone());
        Ok(Decision::Commit {
            writes: vec![Write::PutPushSubscription { user: me.clone(), subscription }],
            body: empty(),
            notices: Vec::new(),
            hold: vec![(PendingKey::PushSubscriptions(me.clone()), PendingValue::PushSubscriptions(list))],
        })
    }

    /// Forgets a push subscription; forgetting one that is not there is not an error.
    fn push_unsubscribe(
        &self,
        me: &UserId,
        endpoint: String,
        lookups: &impl PeopleLookups,
    ) -> Step<Decision> {
        let mut list = self.subscriptions(me, lookups)?;
        if !list.iter().any(|s| s.endpoint == endpoint) {
            return Ok(Decision::Answer(empty()));
        }
        list.retain(|s| s.endpoint != endpoint);
        Ok(Decision::Commit {
            writes: vec![Write::RemovePushSubscription { user: me.clone(), endpoint }],
            body: empty(),
            notices: Vec::new(),
            hold: vec![(PendingKey::PushSubscriptions(me.clone()), PendingValue::PushSubscriptions(list))],
        })
    }

    fn keys_upload(
        &self,
        me: &UserId,
        device_id: String,
        identity_key: String,
        signing_key: Option<String>,
        one_time_keys: Vec<OneTimeKey>,
        lookups: &impl PeopleLookups,
    ) -> Step<Decision> {
        let device_key = PendingKey::Device(me.clone(), device_id.clone());
        let published = match self.pending(&device_key) {
            Some(PendingValue::Device(identity, signing)) => Some((identity.clone(), signing.clone())),
            _ => found(lookups.device(me, &device_id))?.map(|d| (d.identity_key, d.signing_key)),
        };
        let unclaimed =
            if valid_device_id(&device_id) { found(lookups.one_time_key_count(me, &device_id))? } else { 0 };
        let devices = found(lookups.devices(me))?.len();
        check_upload(
            &device_id,
            &identity_key,
            signing_key.as_deref(),
            &one_time_keys,
            published.as_ref().map(|(i, s)| PublishedDevice { identity_key: i, signing_key: s.as_deref() }),
            unclaimed,
            devices,
        )
        .map_err(no)?;
        let count = u32::try_from(unclaimed + one_time_keys.len()).unwrap_or(u32::MAX);
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
            writes.push(Write::PutOneTimeKeys { user: me.clone(), device_id, keys });
        }
        let body = ReplyBody::Ok(OkBody::KeysUploaded(KeysUploadOk { one_time_key_count: count }));
        if writes.is_empty() {
            return Ok(Decision::Answer(body));
        }
        let hold = vec![(device_key, PendingValue::Device(identity_key, signing_key))];
        Ok(Decision::Commit { writes, body, notices: Vec::new(), hold })
    }

    /// Hands out one unclaimed one-time prekey per device of `user` (or of `device_id`):
    /// never the same key twice, since this home is the single writer of `user`'s keys
    /// and holds each handed-out key until its removal is durable.
    fn keys_claim(
        &self,
        now_ms: u64,
        me: &UserId,
        user: &UserId,
        device_id: Option<String>,
        lookups: &impl PeopleLookups,
    ) -> Step<Decision> {
        if found(lookups.account(user))?.is_none() {
            return Err(no(CoreError::NoSuchUser(user.clone())));
        }
        if found(lookups.is_blocked(user, me))? {
            return Err(no(CoreError::RefusesMessages(user.clone())));
        }
        // One-time keys are a finite supply: a claimer takes few of one user's, and all
        // claimers together a bounded number, so none can drain them.
        lookups
            .take_key_claim(me, user, now_ms)
            .map_err(|wait| no(CoreError::Throttled { what: Throttled::KeyClaims, retry_after_ms: wait }))?;
        let mut devices = found(lookups.devices(user))?;
        if let Some(only) = &device_id {
            devices.retain(|(d, _)| d == only);
            if devices.is_empty() {
                return Err(no(CoreError::NoSuchDevice { user: user.clone(), device: only.clone() }));
            }
        }
        let mut claimed = Vec::new();
        let mut writes = Vec::new();
        let mut hold = Vec::new();
        for (device, record) in devices {
            let is_held = |key_id: &str| {
                self.pending.contains_key(&PendingKey::ClaimedKey(
                    user.clone(),
                    device.clone(),
                    key_id.to_owned(),
                ))
            };
            let in_flight = self
                .pending
                .keys()
                .filter(|k| matches!(k, PendingKey::ClaimedKey(u, d, _) if u == user && *d == device))
                .count();
            let candidates = found(lookups.one_time_keys(user, &device, in_flight + 1))?;
            let key = candidates.into_iter().find(|(key_id, _)| !is_held(key_id));
            if let Some((key_id, _)) = &key {
                hold.push((
                    PendingKey::ClaimedKey(user.clone(), device.clone(), key_id.clone()),
                    PendingValue::Claimed,
                ));
                writes.push(Write::RemoveOneTimeKey {
                    user: user.clone(),
                    device_id: device.clone(),
                    key_id: key_id.clone(),
                });
            }
            let left = found(lookups.one_time_key_count(user, &device))?
                .saturating_sub(in_flight + usize::from(key.is_some()));
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
            return Ok(Decision::Answer(body));
        }
        Ok(Decision::Commit { writes, body, notices: Vec::new(), hold })
    }
}

/// What a request came to.
enum Decision {
    /// An answer now, nothing to write.
    Answer(ReplyBody),
    /// Writes to commit, then this answer and these notices; `hold` the decisions until
    /// they settle.
    Commit {
        writes: Vec<Write>,
        body: ReplyBody,
        notices: Vec<PeopleNotice>,
        hold: Vec<(PendingKey, PendingValue)>,
    },
}
