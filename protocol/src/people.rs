//! People on the wire: profiles, friendships and presence.

use serde::{Deserialize, Serialize};

use crate::ids::UserId;

/// Whether someone is around, as others see it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    /// At least one live session and not set away.
    Online,
    /// Live, but set away by the user.
    Away,
    /// No live session (or invisible).
    #[default]
    Offline,
}

/// What a user asks others to see (`presence.set`).
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
#[serde(rename_all = "snake_case")]
pub enum PresenceChoice {
    /// Online whenever connected (the default).
    Online,
    /// Away while connected.
    Away,
    /// Always shown offline; `last_seen` stops moving.
    Invisible,
}

/// A user's presence (the `presence` event, and entries of answers).
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
pub struct PresenceInfo {
    /// Whose.
    pub user: UserId,
    /// Online, away or offline.
    pub status: PresenceStatus,
    /// When offline: when their last session ended, ms since the Unix epoch (absent if
    /// never seen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<u64>,
}

/// Answer to `presence.subscribe`: the current presence of each user subscribed to.
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
pub struct PresenceListOk {
    /// One entry per user.
    pub presence: Vec<PresenceInfo>,
}

/// A user's public profile.
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
pub struct Profile {
    /// The user.
    pub user_id: UserId,
    /// Their username.
    pub username: String,
    /// Display name, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Avatar: a file id or an `https://` URL, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
    /// Status text, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_text: Option<String>,
    /// Whether the user shares how far they read: only in their own profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_read_receipts: Option<bool>,
    /// A bot: an account a product's backend acts as (clients show it as one).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bot: bool,
}

/// Answer to `user.get` and `user.update`.
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
pub struct ProfileOk {
    /// The profile.
    pub profile: Profile,
    /// Their presence, when the caller may see it (a friend, or someone sharing a room).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence: Option<PresenceInfo>,
}

/// Answer to `user.search`.
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
pub struct UsersOk {
    /// Matching profiles, by username.
    pub users: Vec<Profile>,
}

/// Where a friendship stands, seen from one side.
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
#[serde(rename_all = "snake_case")]
pub enum FriendState {
    /// Nothing (declined, cancelled, removed or never asked).
    None,
    /// This side asked; waiting for the other.
    Outgoing,
    /// The other side asked; this side may accept or decline.
    Incoming,
    /// Friends.
    Friends,
}

impl FriendState {
    /// The byte stored for this state.
    pub fn to_byte(self) -> u8 {
        match self {
            FriendState::None => 0,
            FriendState::Outgoing => 1,
            FriendState::Incoming => 2,
            FriendState::Friends => 3,
        }
    }

    /// The state for a stored byte; `None` for a byte no state is stored as.
    pub fn from_byte(byte: u8) -> Option<FriendState> {
        match byte {
            0 => Some(FriendState::None),
            1 => Some(FriendState::Outgoing),
            2 => Some(FriendState::Incoming),
            3 => Some(FriendState::Friends),
            _ => None,
        }
    }

    /// The same relation seen from the other side.
    pub fn mirrored(self) -> FriendState {
        match self {
            FriendState::Outgoing => FriendState::Incoming,
            FriendState::Incoming => FriendState::Outgoing,
            other => other,
        }
    }
}

/// One friendship (the `friend` event, `friend.*` answers and `friend.list` entries),
/// seen from the receiver's side.
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
pub struct FriendInfo {
    /// The other user.
    pub user: UserId,
    /// Their username.
    pub username: String,
    /// Where it stands now.
    pub state: FriendState,
    /// When it last changed, ms since the Unix epoch.
    pub since: u64,
    /// With `friends` (in `friend.list`): their presence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence: Option<PresenceInfo>,
}

/// Answer to `friend.request`, `friend.accept`, `friend.decline`, `friend.cancel`, `friend.remove`.
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
pub struct FriendOk {
    /// The friendship afterwards.
    pub friend: FriendInfo,
}

/// Answer to `friend.list`.
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
pub struct FriendsOk {
    /// Friends and pending requests both ways, by user id.
    pub friends: Vec<FriendInfo>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Answer to `block.list`.
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
pub struct BlockedOk {
    /// Users the caller blocked (visible to the caller alone).
    pub blocked: Vec<UserId>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}
