//! Presence as a pure state machine, kept by each user's home shard: how many live
//! sessions the user has on each shard, what they chose (online, away, invisible), when
//! they were last seen, and what was last announced about them.
//!
//! Announcements are coalesced per user: at most one per [`PresenceBook::min_interval_ms`]
//! (one second by default). A change inside the window is held and announced when the
//! window ends, as the state *then*, so a connection flapping ten times a second, or a
//! mass reconnect, costs each follower at most one event per user per second, and a
//! flap that ends where it started costs nothing at all.

use std::collections::{BTreeMap, HashMap, HashSet};

use palaver_protocol::{PresenceChoice, PresenceInfo, PresenceStatus, UserId};

#[derive(Debug, Clone)]
struct Entry {
    /// Live sessions per shard.
    sessions: BTreeMap<usize, u32>,
    choice: PresenceChoice,
    /// When the last session ended (while not invisible).
    last_seen: Option<u64>,
    /// What followers were last told.
    announced: PresenceStatus,
    /// When they were last told.
    announced_ms: Option<u64>,
}

impl Entry {
    fn live(&self) -> bool {
        !self.sessions.is_empty()
    }

    fn visible(&self) -> PresenceStatus {
        match (self.live(), self.choice) {
            (false, _) | (true, PresenceChoice::Invisible) => PresenceStatus::Offline,
            (true, PresenceChoice::Away) => PresenceStatus::Away,
            (true, PresenceChoice::Online) => PresenceStatus::Online,
        }
    }
}

/// The presence of the users whose home is one shard.
#[derive(Debug, Clone)]
pub struct PresenceBook {
    users: HashMap<UserId, Entry>,
    /// Users whose visible state may differ from what was announced.
    dirty: HashSet<UserId>,
    min_interval_ms: u64,
}

/// What a session change means for storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionChange {
    /// Nothing to store.
    Nothing,
    /// The user's last session ended: store `last_seen`.
    WentOffline {
        /// When.
        last_seen: u64,
    },
}

impl PresenceBook {
    /// An empty book announcing each user at most once per `min_interval_ms`.
    pub fn new(min_interval_ms: u64) -> Self {
        Self { users: HashMap::new(), dirty: HashSet::new(), min_interval_ms }
    }

    /// The announcement interval.
    pub fn min_interval_ms(&self) -> u64 {
        self.min_interval_ms
    }

    /// Whether the book knows `user` (else the caller loads `last_seen` from storage first).
    pub fn knows(&self, user: &UserId) -> bool {
        self.users.contains_key(user)
    }

    /// Adds an entry for `user` with their stored `last_seen`.
    pub fn load(&mut self, user: UserId, last_seen: Option<u64>) {
        self.users.entry(user).or_insert(Entry {
            sessions: BTreeMap::new(),
            choice: PresenceChoice::Online,
            last_seen,
            announced: PresenceStatus::Offline,
            announced_ms: None,
        });
    }

    fn entry(&mut self, user: &UserId) -> &mut Entry {
        if !self.users.contains_key(user) {
            self.load(user.clone(), None);
        }
        // Inserted just above when missing.
        self.users.get_mut(user).unwrap_or_else(|| unreachable!())
    }

    /// A session of `user` started on `shard`.
    pub fn session_up(&mut self, user: &UserId, shard: usize) {
        *self.entry(user).sessions.entry(shard).or_default() += 1;
        self.dirty.insert(user.clone());
    }

    /// A session of `user` on `shard` ended at `now_ms`.
    pub fn session_down(&mut self, now_ms: u64, user: &UserId, shard: usize) -> SessionChange {
        let entry = self.entry(user);
        if let Some(count) = entry.sessions.get_mut(&shard) {
            *count -= 1;
            if *count == 0 {
                entry.sessions.remove(&shard);
            }
        }
        let change = if entry.live() {
            SessionChange::Nothing
        } else {
            if entry.choice != PresenceChoice::Invisible {
                entry.last_seen = Some(now_ms);
            }
            // A fresh connection starts online again; invisibility is per connection spell.
            entry.choice = PresenceChoice::Online;
            match entry.last_seen {
                Some(last_seen) => SessionChange::WentOffline { last_seen },
                None => SessionChange::Nothing,
            }
        };
        self.dirty.insert(user.clone());
        change
    }

    /// `user` chose online, away or invisible (for as long as they stay connected).
    pub fn choose(&mut self, user: &UserId, choice: PresenceChoice) {
        self.entry(user).choice = choice;
        self.dirty.insert(user.clone());
    }

    /// What others see of `user` now.
    pub fn current(&self, user: &UserId) -> PresenceInfo {
        match self.users.get(user) {
            Some(entry) => {
                let status = entry.visible();
                let last_seen = if status == PresenceStatus::Offline { entry.last_seen } else { None };
                PresenceInfo { user: user.clone(), status, last_seen }
            }
            None => PresenceInfo { user: user.clone(), status: PresenceStatus::Offline, last_seen: None },
        }
    }

    /// The shards where `user` has live sessions.
    pub fn session_shards(&self, user: &UserId) -> Vec<usize> {
        self.users.get(user).map(|e| e.sessions.keys().copied().collect()).unwrap_or_default()
    }

    /// The announcements due at `now_ms`: each user whose visible state differs from what
    /// followers were last told, and who was not announced within the interval. Users
    /// still inside their interval stay pending for a later call.
    pub fn due(&mut self, now_ms: u64) -> Vec<PresenceInfo> {
        let mut out = Vec::new();
        let interval = self.min_interval_ms;
        let users = &mut self.users;
        self.dirty.retain(|user| {
            let Some(entry) = users.get_mut(user) else { return false };
            let visible = entry.visible();
            if visible == entry.announced {
                return false;
            }
            if entry.announced_ms.is_some_and(|at| now_ms < at.saturating_add(interval)) {
                return true;
            }
            entry.announced = visible;
            entry.announced_ms = Some(now_ms);
            let last_seen = if visible == PresenceStatus::Offline { entry.last_seen } else { None };
            out.push(PresenceInfo { user: user.clone(), status: visible, last_seen });
            false
        });
        // Forget users with nothing live, nothing pending and a quiet window behind them.
        let dirty = &self.dirty;
        self.users.retain(|user, entry| {
            entry.live()
                || dirty.contains(user)
                || entry.announced_ms.is_some_and(|at| now_ms < at.saturating_add(interval))
        });
        out
    }

    /// Whether some announcement is pending.
    pub fn has_pending(&self) -> bool {
        !self.dirty.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserId {
        UserId::parse(&format!("u_{name}")).unwrap()
    }

    #[test]
    fn online_until_every_device_is_gone_then_offline_with_last_seen() {
        let mut book = PresenceBook::new(1_000);
        let a = user("a");
        book.session_up(&a, 0);
        book.session_up(&a, 1);
        assert_eq!(book.due(0).len(), 1);
        assert_eq!(book.current(&a).status, PresenceStatus::Online);
        assert_eq!(book.session_down(5_000, &a, 0), SessionChange::Nothing);
        assert!(book.due(5_000).is_empty());
        assert_eq!(book.session_down(6_000, &a, 1), SessionChange::WentOffline { last_seen: 6_000 });
        let due = book.due(6_000);
        assert_eq!(
            due,
            vec![PresenceInfo { user: a.clone(), status: PresenceStatus::Offline, last_seen: Some(6_000) }]
        );
        assert_eq!(book.session_shards(&a), Vec::<usize>::new());
    }

    #[test]
    fn away_and_invisible_are_chosen_and_invisible_keeps_last_seen_still() {
        let mut book = PresenceBook::new(0);
        let a = user("a");
        book.load(a.clone(), Some(100));
        book.session_up(&a, 0);
        book.choose(&a, PresenceChoice::Away);
        assert_eq!(book.due(1).first().map(|p| p.status), Some(PresenceStatus::Away));
        book.choose(&a, PresenceChoice::Invisible);
        let seen = book.due(2);
        assert_eq!(seen[0].status, PresenceStatus::Offline);
        assert_eq!(seen[0].last_seen, Some(100));
        assert_eq!(book.session_down(3, &a, 0), SessionChange::WentOffline { last_seen: 100 });
        assert!(book.due(3).is_empty(), "already shown offline");
    }

    #[test]
    fn flapping_is_announced_at_most_once_per_interval() {
        let mut book = PresenceBook::new(1_000);
        let a = user("a");
        let mut events = 0;
        for t in 0..10_000u64 {
            if t % 7 == 0 {
                book.session_up(&a, 0);
            } else if t % 7 == 3 {
                book.session_down(t, &a, 0);
            }
            events += book.due(t).len();
        }
        assert!(events <= 11, "{events} events in 10 s");
        // A flap that ends where it started inside the window announces nothing.
        let mut book = PresenceBook::new(1_000);
        book.session_up(&a, 0);
        assert_eq!(book.due(0).len(), 1);
        book.session_down(10, &a, 0);
        book.session_up(&a, 0);
        assert!(book.due(2_000).is_empty());
    }
}
