//! Everyone's current presence, shared by the shards: each user's part written by their
//! home shard, read by any shard answering for them.

use std::sync::RwLock;

use palaver_protocol::{PresenceInfo, UserId};
use rustc_hash::FxHashMap;

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

    pub(crate) fn set(&self, home: usize, info: PresenceInfo) {
        if let Some(Ok(mut part)) = self.parts.get(home).map(RwLock::write) {
            part.insert(info.user.clone(), info);
        }
    }

    pub(crate) fn get(&self, home: usize, user: &UserId) -> Option<PresenceInfo> {
        self.parts.get(home).and_then(|p| p.read().ok()).and_then(|p| p.get(user).cloned())
    }
}
