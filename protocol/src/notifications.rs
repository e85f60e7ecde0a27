//! Notification settings on the wire: what `notifications.get`, `notifications.set` and
//! `notifications.room` answer, and the `notifications` event the caller's sockets receive
//! when they change.

use serde::{Deserialize, Serialize};

use crate::ids::RoomId;

/// Which messages of a room notify the user.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
#[serde(rename_all = "snake_case")]
pub enum NotifyLevel {
    /// Every message.
    All,
    /// Messages that mention the user (by name, `@everyone`/`@here`, or a keyword).
    #[default]
    Mentions,
    /// Nothing: no push, and the room counts no mentions.
    None,
}

/// One room's setting, overriding the account's defaults.
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
pub struct RoomNotifications {
    /// The room.
    pub room: RoomId,
    /// The room's level; absent: the account's (`level` for rooms, `all` for direct rooms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<NotifyLevel>,
    /// Muted: no push, and the room counts no mentions.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub muted: bool,
    /// When a mute ends (ms since the Unix epoch); absent: when it is lifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub muted_until: Option<u64>,
}

/// A user's notification settings, the same on every device.
#[derive(
    Debug,
    Clone,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct NotificationSettings {
    /// The level of rooms without their own (direct rooms: `all` unless set).
    #[serde(default)]
    pub level: NotifyLevel,
    /// Words that count as a mention of the user: case-insensitive, whole words, never
    /// matched inside end-to-end encrypted messages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
    /// Rooms with their own setting, by room id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rooms: Vec<RoomNotifications>,
}

/// Answer to `notifications.get`, `notifications.set` and `notifications.room`.
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
pub struct NotificationsOk {
    /// The settings now.
    pub notifications: NotificationSettings,
}
