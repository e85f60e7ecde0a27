//! Room governance on the wire: roles, settings, members, invitations and the notices a
//! room's log carries about moderation.

use serde::{Deserialize, Serialize};

use crate::frames::RoomInfo;
use crate::ids::UserId;
use crate::people::PresenceStatus;

/// A member's role. Ordered by power: `owner > admin > moderator > member`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
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
pub enum RoomRole {
    /// A plain member.
    #[default]
    Member,
    /// Moderates members: kick, ban, mute, delete others' messages.
    Moderator,
    /// Also manages the room's settings and its moderators.
    Admin,
    /// Created the room (or had it transferred); exactly one per group room.
    Owner,
}

impl RoomRole {
    /// The byte stored for this role.
    pub fn to_byte(self) -> u8 {
        match self {
            RoomRole::Member => 0,
            RoomRole::Moderator => 1,
            RoomRole::Admin => 2,
            RoomRole::Owner => 3,
        }
    }

    /// The role for a stored byte; `None` for a byte no role is stored as.
    pub fn from_byte(byte: u8) -> Option<RoomRole> {
        match byte {
            0 => Some(RoomRole::Member),
            1 => Some(RoomRole::Moderator),
            2 => Some(RoomRole::Admin),
            3 => Some(RoomRole::Owner),
            _ => None,
        }
    }

    /// The role's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            RoomRole::Member => "member",
            RoomRole::Moderator => "moderator",
            RoomRole::Admin => "admin",
            RoomRole::Owner => "owner",
        }
    }
}

/// A room's settings, as stored and reported.
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
pub struct RoomSettings {
    /// Most members the room admits.
    pub max_members: u32,
    /// Whether members may send `image` and `file` messages.
    pub file_sharing: bool,
    /// Seconds a member must wait between two messages (0: off; moderators are exempt).
    pub slow_mode_secs: u32,
    /// The least role that may invite.
    pub invite_role: RoomRole,
    /// The least role that may pin and unpin messages (direct rooms: both users).
    #[serde(default = "default_pin_role")]
    pub pin_role: RoomRole,
    /// The least role whose `@everyone` and `@here` mention the room (direct rooms: both
    /// users).
    #[serde(default = "default_mention_all_role")]
    pub mention_all_role: RoomRole,
    /// How long the room keeps its messages (absent: the server's default applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RoomRetention>,
}

/// How long a room keeps its messages: older ones, or those beyond the newest
/// `max_count`, are removed in the background and history then starts at a later seq.
/// A limit left out is no limit of that kind.
#[derive(
    Debug,
    Clone,
    Copy,
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
#[serde(deny_unknown_fields)]
pub struct RoomRetention {
    /// Messages older than this many seconds are removed
    /// (1..=[`crate::limits::MAX_RETENTION_AGE_SECS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_secs: Option<std::num::NonZeroU32>,
    /// Only the newest this many messages are kept
    /// (1..=[`crate::limits::MAX_RETENTION_COUNT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_count: Option<std::num::NonZeroU32>,
}

impl RoomRetention {
    /// Whether it limits nothing (a room's `{}`: follow the server's default).
    pub fn is_unlimited(&self) -> bool {
        self.max_age_secs.is_none() && self.max_count.is_none()
    }
}

/// Who mentions the whole room in a room that never chose: moderators and above.
fn default_mention_all_role() -> RoomRole {
    RoomRole::Moderator
}

/// Who pins in a room that never chose: moderators and above.
fn default_pin_role() -> RoomRole {
    RoomRole::Moderator
}

impl Default for RoomSettings {
    fn default() -> Self {
        Self {
            max_members: crate::limits::DEFAULT_MAX_MEMBERS,
            file_sharing: true,
            slow_mode_secs: 0,
            invite_role: RoomRole::Member,
            pin_role: default_pin_role(),
            mention_all_role: default_mention_all_role(),
            retention: None,
        }
    }
}

/// A partial change to [`RoomSettings`]: absent fields keep their value.
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
#[serde(deny_unknown_fields)]
pub struct RoomSettingsPatch {
    /// New member limit (not below the current member count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_members: Option<u32>,
    /// Allow or forbid files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_sharing: Option<bool>,
    /// New slow mode, in seconds (0 turns it off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_mode_secs: Option<u32>,
    /// New least role that may invite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite_role: Option<RoomRole>,
    /// New least role that may pin and unpin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_role: Option<RoomRole>,
    /// New least role whose `@everyone` and `@here` mention the room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mention_all_role: Option<RoomRole>,
    /// The room's own retention; `{}` drops it, so the server's default applies again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RoomRetention>,
}

/// Answer to `room.get` and `room.update`.
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
pub struct RoomDetailsOk {
    /// The room.
    pub room: RoomInfo,
    /// Its settings.
    pub settings: RoomSettings,
    /// How many members it has.
    pub member_count: u32,
    /// The caller's role, when a member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<RoomRole>,
    /// The oldest seq the room still keeps, when retention removed older messages
    /// (absent: history starts at seq 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_from: Option<std::num::NonZeroU64>,
}

/// One member in `room.members`.
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
pub struct MemberInfo {
    /// The member.
    pub user: UserId,
    /// Their username.
    pub username: String,
    /// Their role.
    pub role: RoomRole,
    /// While muted: when the mute ends, ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub muted_until: Option<u64>,
    /// Online, away or offline (invisible members show as offline).
    pub presence: PresenceStatus,
    /// The highest seq they read: shown to members, for members who share read receipts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<u64>,
}

/// Answer to `room.members`.
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
pub struct MembersOk {
    /// Members by user id.
    pub members: Vec<MemberInfo>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A pending invitation (the `invite` event, and `invite.list` entries).
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
pub struct InviteInfo {
    /// The room invited to.
    pub room: RoomInfo,
    /// Who invited.
    pub by: UserId,
    /// When, ms since the Unix epoch.
    pub invited_at: u64,
}

/// A message was reported to the receiver, a moderator of its room or an admin (the
/// `report` event). The report routes (`/v1/rooms/{room}/reports`, `/v1/admin/reports`)
/// list it with the reported text.
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
pub struct ReportNotice {
    /// The report's id (`rp_…`).
    pub report_id: String,
    /// The room of the reported message.
    pub room: crate::ids::RoomId,
    /// The reported message's seq.
    pub seq: u64,
    /// Who reported it.
    pub reporter: UserId,
    /// Why, in the reporter's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When, ms since the Unix epoch.
    pub at: u64,
}

/// Answer to `invite.list`.
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
pub struct InvitesOk {
    /// The caller's pending invitations, by room id.
    pub invites: Vec<InviteInfo>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// What changed in a `member` event.
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
pub enum MemberChange {
    /// Joined (or accepted an invitation).
    Joined,
    /// Left by themselves.
    Left,
}

/// The `member` event: someone joined or left. Kicks, bans and role changes arrive as
/// `system` messages in the room's log instead, so they are stored and replayed.
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
pub struct MemberEvent {
    /// The room.
    pub room: crate::ids::RoomId,
    /// Who.
    pub user: UserId,
    /// Joined or left.
    pub change: MemberChange,
    /// Their role (after joining).
    pub role: RoomRole,
}

/// What a `system` message records: a moderation or governance action, a pin, or an
/// announcement.
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
pub enum SystemAction {
    /// `target` was removed from the room (may rejoin a public room, or be re-invited).
    Kicked,
    /// `target` was removed and may not come back until unbanned.
    Banned,
    /// `target`'s ban was lifted.
    Unbanned,
    /// `target` may not send until `until`.
    Muted,
    /// `target`'s mute was lifted early.
    Unmuted,
    /// `target` now has `role`.
    RoleChanged,
    /// `target` is the new owner; `actor` became an admin.
    OwnershipTransferred,
    /// The room's name, topic or settings changed.
    SettingsChanged,
    /// The owner deleted the room: the last message it ever has.
    RoomDeleted,
    /// Message `seq` was pinned.
    Pinned,
    /// Message `seq` was unpinned.
    Unpinned,
    /// An announcement by the operator's backend (the server API): `text` is the
    /// announcement itself, and `actor` is [`UserId::system`], no account.
    Announcement,
}

/// The structured part of a `system` message.
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
pub struct SystemNotice {
    /// What happened.
    pub action: SystemAction,
    /// Who did it ([`UserId::system`] for an announcement).
    pub actor: UserId,
    /// To whom, for actions on a member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<UserId>,
    /// With `role_changed`: the new role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<RoomRole>,
    /// With `muted`: when the mute ends, ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
    /// The moderator's reason, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// With `pinned` and `unpinned`: the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}
