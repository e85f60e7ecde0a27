//! Everyone's current presence, shared by the shards: each user's part written by their
//! home shard, read by any shard answering for them. Next to the published status (which
//! an invisible user's shows as offline), the table keeps who has a live socket anywhere
//! in the cluster: what decides whether a message is pushed.

use std::sync::RwLock;

use palaver_protocol::{PresenceInfo, UserId};
use rustc_hash::{FxHashMap, FxHashSet};

/// Everyone's current presence, partitioned by home shard; each partition is written by
/// its home shard alone (on every change, not coalesced) and read by any shard.
#[derive(Debug)]
pub struct PresenceTable {
    parts: Vec<RwLock<FxHashMap<UserId, PresenceInfo>>>,
    /// Users with at least one live socket, on this node or (as the home's session book
    /// learns from the cluster's presence subject) on another, whatever status they show.
    connected: Vec<RwLock<FxHashSet<UserId>>>,
}

impl PresenceTable {
    /// An empty table for `shards` shards.
    pub fn new(shards: usize) -> Self {
        Self {
            parts: (0..shards.max(1)).map(|_| RwLock::new(FxHashMap::default())).collect(),
            connected: (0..shards.max(1)).map(|_| RwLock::new(FxHashSet::default())).collect(),
        }
    }

    pub(crate) fn set(&self, home: usize, info: PresenceInfo) {
        if let Some(Ok(mut part)) = self.parts.get(home).map(RwLock::write) {
            part.insert(info.user.clone(), info);
        }
    }

    pub(crate) fn get(&self, home: usize, user: &UserId) -> Option<PresenceInfo> {
        self.parts.get(home).and_then(|p| p.read().ok()).and_then(|p| p.get(user).cloned())
    }

    /// Records whether `user` (whose home is `home`) has a live socket anywhere.
    pub(crate) fn set_connected(&self, home: usize, user: &UserId, connected: bool) {
        if let Some(Ok(mut part)) = self.connected.get(home).map(RwLock::write) {
            if connected {
                if !part.contains(user) {
                    part.insert(user.clone());
                }
            } else {
                part.remove(user);
            }
        }
    }

    /// Whether `user` has a live socket anywhere in the cluster (invisible or not); read
    /// by any thread.
    pub fn connected_anywhere(&self, user: &UserId) -> bool {
        let home = palaver_core::jump_hash(
            palaver_core::stable_hash(user.as_str().as_bytes()),
            self.connected.len(),
        );
        self.connected.get(home).and_then(|p| p.read().ok()).is_some_and(|p| p.contains(user))
    }
}
