//! Who may do what to a room and its members: invitations, kicks, bans, mutes, roles,
//! ownership, settings. Each rule is checked here, in one place, before anything is
//! stored; an accepted moderation action becomes a `system` message in the room's log.
//!
//! The permission matrix (actor's role → what it may do):
//!
//! | action | member | moderator | admin | owner |
//! |---|---|---|---|---|
//! | invite | if `invite_role` ≤ member | if ≤ moderator | if ≤ admin | yes |
//! | pin, unpin | if `pin_role` ≤ member | if ≤ moderator | if ≤ admin | yes |
//! | @everyone, @here | if `mention_all_role` ≤ member | if ≤ moderator | if ≤ admin | yes |
//! | kick, ban, unban, mute, unmute | – | members below them | below them | everyone else |
//! | delete others' messages | – | yes | yes | yes |
//! | room.update (name, topic, settings) | – | – | yes | yes |
//! | role.set (to member/moderator/admin) | – | – | members below admin, up to moderator | anyone, up to admin |
//! | room.transfer, room.delete | – | – | – | yes |
//!
//! Direct rooms have no moderation: both users are plain members and none of the above
//! applies to them, but either may pin.

use super::{Room, RoomKind, RoomName, RoomSettings, RoomSettingsPatch, UserId, limits};
use crate::error::CoreError;
use crate::role::Role;
use palaver_protocol::{ClientMsgId, Message, MessageKind, SystemAction, SystemNotice};

/// A room's governance state as stored: topic, settings, bans, mutes, invitations.
#[derive(Debug, Clone, Default)]
pub struct Governance {
    /// Topic.
    pub topic: String,
    /// Settings (`None`: the defaults).
    pub settings: Option<RoomSettings>,
    /// Banned users.
    pub bans: Vec<UserId>,
    /// Muted members with when each mute ends.
    pub mutes: Vec<(UserId, u64)>,
    /// Invited users.
    pub invites: Vec<UserId>,
    /// Pinned messages: `(seq, by, at)`.
    pub pins: Vec<(u64, UserId, u64)>,
}

/// A moderation action to check and apply.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Moderation {
    /// Remove a member.
    Kick {
        /// Shown in the notice.
        reason: Option<String>,
    },
    /// Remove for good.
    Ban {
        /// Shown in the notice.
        reason: Option<String>,
    },
    /// Lift a ban.
    Unban,
    /// No sending for `duration_secs`.
    Mute {
        /// How long.
        duration_secs: u64,
        /// Shown in the notice.
        reason: Option<String>,
    },
    /// Lift a mute.
    Unmute,
    /// Promote or demote.
    SetRole(Role),
    /// Hand over the room.
    Transfer,
}

/// The most a slow mode may space messages: six hours.
const MAX_SLOW_MODE_SECS: u32 = 6 * 3600;

pub(super) fn check_topic(topic: String) -> Result<String, CoreError> {
    if topic.chars().count() > limits::MAX_TOPIC_CHARS {
        return Err(CoreError::TooLong { field: "topic", max: limits::MAX_TOPIC_CHARS, unit: "characters" });
    }
    if topic.chars().any(|c| c.is_control() && c != '\n') {
        return Err(CoreError::ControlCharacters("topic"));
    }
    Ok(topic.trim().to_owned())
}

fn check_reason(reason: Option<String>) -> Result<Option<String>, CoreError> {
    match reason {
        Some(r) if r.chars().count() > limits::MAX_REASON_CHARS => {
            Err(CoreError::TooLong { field: "reason", max: limits::MAX_REASON_CHARS, unit: "characters" })
        }
        Some(r) if r.chars().any(char::is_control) => Err(CoreError::ControlCharacters("reason")),
        Some(r) if r.trim().is_empty() => Ok(None),
        other => Ok(other),
    }
}

impl Room {
    /// Installs the governance state read from storage when the room is loaded.
    pub fn load_governance(&mut self, governance: Governance) {
        self.topic = governance.topic;
        if let Some(settings) = governance.settings {
            self.settings = settings;
        }
        self.bans = governance.bans.into_iter().collect();
        self.mutes = governance.mutes.into_iter().collect();
        self.invites = governance.invites.into_iter().collect();
        self.pins = governance.pins.into_iter().map(|(seq, by, at)| (seq, (by, at))).collect();
    }

    /// The room's settings.
    pub fn settings(&self) -> RoomSettings {
        self.settings
    }

    /// The room's topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The room's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The room's kind.
    pub fn kind(&self) -> RoomKind {
        self.kind
    }

    /// Whether `user` is banned.
    pub fn is_banned(&self, user: &UserId) -> bool {
        self.bans.contains(user)
    }

    /// Whether `user` holds an invitation.
    pub fn is_invited(&self, user: &UserId) -> bool {
        self.invites.contains(user)
    }

    /// When `user`'s mute ends, if they are muted at `now_ms`.
    pub fn muted_until(&self, user: &UserId, now_ms: u64) -> Option<u64> {
        self.mutes.get(user).copied().filter(|until| *until > now_ms)
    }

    /// Members after `after` in user-id order, at most `limit`, and whether more follow.
    pub fn members_page(&self, after: Option<&UserId>, limit: usize) -> (Vec<(UserId, Role)>, bool) {
        let mut members: Vec<(&UserId, &Role)> =
            self.members.iter().filter(|(user, _)| after.is_none_or(|a| *user > a)).collect();
        members.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let more = members.len() > limit;
        (members.into_iter().take(limit).map(|(u, r)| (u.clone(), *r)).collect(), more)
    }

    fn no_moderation_in_dms(&self) -> Result<(), CoreError> {
        if self.kind == RoomKind::Direct {
            return Err(CoreError::DirectRoomsUngoverned);
        }
        Ok(())
    }

    fn actor_role(&self, actor: &UserId) -> Result<Role, CoreError> {
        self.role_of(actor).ok_or_else(|| CoreError::NotMember(self.id.clone()))
    }

    /// Checks that `actor` may invite `target` and records the invitation. Returns
    /// false when `target` was already invited (nothing new to store). `blocked_by_target`
    /// says whether the target has blocked the actor.
    pub fn invite(
        &mut self,
        actor: &UserId,
        target: &UserId,
        blocked_by_target: bool,
    ) -> Result<bool, CoreError> {
        self.no_moderation_in_dms()?;
        let role = self.actor_role(actor)?;
        if role < self.settings.invite_role {
            return Err(CoreError::NeedsRole {
                role: self.settings.invite_role,
                to: "inviting in this room",
            });
        }
        if self.members.contains_key(target) {
            return Err(CoreError::AlreadyMember(target.clone()));
        }
        if self.bans.contains(target) {
            return Err(CoreError::TargetBanned(target.clone()));
        }
        if blocked_by_target {
            return Err(CoreError::RefusesInvitations(target.clone()));
        }
        Ok(self.invites.insert(target.clone()))
    }

    /// `user` declines their invitation; returns whether there was one.
    pub fn decline(&mut self, user: &UserId) -> bool {
        self.invites.remove(user)
    }

    /// Checks that `actor` may act on `target`: a moderator or above, acting on someone
    /// with strictly less power (never themselves).
    fn check_power_over(&self, actor: &UserId, actor_role: Role, target: &UserId) -> Result<(), CoreError> {
        if actor_role < Role::Moderator {
            return Err(CoreError::NeedsRole { role: Role::Moderator, to: "moderating" });
        }
        if actor == target {
            return Err(CoreError::Oneself("moderators act on others, not themselves"));
        }
        if let Some(target_role) = self.role_of(target)
            && target_role >= actor_role
        {
            return Err(CoreError::Outranks { target: target.clone(), role: target_role });
        }
        Ok(())
    }

    /// Checks and applies a moderation action by `actor` on `target` at `now_ms`, and
    /// returns the notice to store as a `system` message. Nothing changes on refusal.
    pub fn moderate(
        &mut self,
        now_ms: u64,
        actor: &UserId,
        target: &UserId,
        action: Moderation,
    ) -> Result<SystemNotice, CoreError> {
        self.no_moderation_in_dms()?;
        let actor_role = self.actor_role(actor)?;
        let notice = |action, role, until, reason| SystemNotice {
            action,
            actor: actor.clone(),
            target: Some(target.clone()),
            role,
            until,
            reason,
            seq: None,
        };
        let member = |room: &Room| {
            if room.members.contains_key(target) {
                Ok(())
            } else {
                Err(CoreError::TargetNotMember(target.clone()))
            }
        };
        match action {
            Moderation::Kick { reason } => {
                let reason = check_reason(reason)?;
                member(self)?;
                self.check_power_over(actor, actor_role, target)?;
                self.forget_member(target);
                Ok(notice(SystemAction::Kicked, None, None, reason))
            }
            Moderation::Ban { reason } => {
                let reason = check_reason(reason)?;
                self.check_power_over(actor, actor_role, target)?;
                if self.bans.contains(target) {
                    return Err(CoreError::AlreadyBanned(target.clone()));
                }
                self.forget_member(target);
                self.invites.remove(target);
                // A ban ends a mute (the shard writes `RemoveMute` with the ban).
                self.mutes.remove(target);
                self.bans.insert(target.clone());
                Ok(notice(SystemAction::Banned, None, None, reason))
            }
            Moderation::Unban => {
                self.check_power_over(actor, actor_role, target)?;
                if !self.bans.remove(target) {
                    return Err(CoreError::NotBanned(target.clone()));
                }
                Ok(notice(SystemAction::Unbanned, None, None, None))
            }
            Moderation::Mute { duration_secs, reason } => {
                let reason = check_reason(reason)?;
                if !(1..=limits::MAX_MUTE_SECS).contains(&duration_secs) {
                    return Err(CoreError::OutOfRange {
                        field: "duration_secs",
                        min: 1,
                        max: limits::MAX_MUTE_SECS,
                    });
                }
                member(self)?;
                self.check_power_over(actor, actor_role, target)?;
                let until = now_ms.saturating_add(duration_secs * 1000);
                self.mutes.insert(target.clone(), until);
                Ok(notice(SystemAction::Muted, None, Some(until), reason))
            }
            Moderation::Unmute => {
                member(self)?;
                self.check_power_over(actor, actor_role, target)?;
                if self.muted_until(target, now_ms).is_none() {
                    return Err(CoreError::NotMuted(target.clone()));
                }
                self.mutes.remove(target);
                Ok(notice(SystemAction::Unmuted, None, None, None))
            }
            Moderation::SetRole(role) => {
                if role == Role::Owner {
                    return Err(CoreError::Mismatched("ownership moves with room.transfer"));
                }
                if actor_role < Role::Admin {
                    return Err(CoreError::NeedsRole { role: Role::Admin, to: "changing roles" });
                }
                member(self)?;
                self.check_power_over(actor, actor_role, target)?;
                if role >= actor_role {
                    return Err(CoreError::RolesBelowYours(actor_role));
                }
                if self.role_of(target) == Some(role) {
                    return Err(CoreError::AlreadyHasRole { target: target.clone(), role });
                }
                self.members.insert(target.clone(), role);
                Ok(notice(SystemAction::RoleChanged, Some(role), None, None))
            }
            Moderation::Transfer => {
                if actor_role != Role::Owner {
                    return Err(CoreError::OwnerOnly("transfer the room"));
                }
                member(self)?;
                if actor == target {
                    return Err(CoreError::Oneself("the room is already yours"));
                }
                self.members.insert(target.clone(), Role::Owner);
                self.members.insert(actor.clone(), Role::Admin);
                self.mutes.remove(target);
                Ok(notice(SystemAction::OwnershipTransferred, Some(Role::Owner), None, None))
            }
        }
    }

    /// The settings after `patch`, checked against the room and the server's cap.
    pub(super) fn patched_settings(&self, patch: &RoomSettingsPatch) -> Result<RoomSettings, CoreError> {
        let mut settings = self.settings;
        if let Some(max) = patch.max_members {
            let floor = (self.members.len() as u32).max(2);
            if max < floor || max > self.limits.max_members_cap {
                return Err(CoreError::OutOfRange {
                    field: "max_members",
                    min: u64::from(floor),
                    max: u64::from(self.limits.max_members_cap),
                });
            }
            settings.max_members = max;
        }
        if let Some(on) = patch.file_sharing {
            settings.file_sharing = on;
        }
        if let Some(secs) = patch.slow_mode_secs {
            if secs > MAX_SLOW_MODE_SECS {
                return Err(CoreError::OutOfRange {
                    field: "slow_mode_secs",
                    min: 0,
                    max: u64::from(MAX_SLOW_MODE_SECS),
                });
            }
            settings.slow_mode_secs = secs;
        }
        if let Some(role) = patch.invite_role {
            settings.invite_role = role;
        }
        if let Some(role) = patch.pin_role {
            settings.pin_role = role;
        }
        if let Some(role) = patch.mention_all_role {
            settings.mention_all_role = role;
        }
        if let Some(retention) = patch.retention {
            crate::retention::check(&retention)?;
            // `{}` drops the room's own: the server's default applies again.
            settings.retention = (!retention.is_unlimited()).then_some(retention);
        }
        Ok(settings)
    }

    /// Checks and applies a change of name, topic or settings by `actor` (an admin or the
    /// owner); returns the notice to store. A change that changes nothing is refused.
    pub fn update(
        &mut self,
        actor: &UserId,
        name: Option<String>,
        topic: Option<String>,
        patch: Option<RoomSettingsPatch>,
    ) -> Result<SystemNotice, CoreError> {
        self.no_moderation_in_dms()?;
        if self.actor_role(actor)? < Role::Admin {
            return Err(CoreError::NeedsRole { role: Role::Admin, to: "changing the room" });
        }
        let name = name
            .map(|n| RoomName::new(n).map(RoomName::into_string))
            .transpose()
            .map_err(|error| CoreError::Text { field: "room name", error })?;
        let topic = topic.map(check_topic).transpose()?;
        let settings = patch.map(|p| self.patched_settings(&p)).transpose()?;
        let unchanged = name.as_ref().is_none_or(|n| *n == self.name)
            && topic.as_ref().is_none_or(|t| *t == self.topic)
            && settings.is_none_or(|s| s == self.settings);
        if unchanged {
            return Err(CoreError::NothingToChange);
        }
        if let Some(name) = name {
            self.name = name;
        }
        if let Some(topic) = topic {
            self.topic = topic;
        }
        if let Some(settings) = settings {
            self.settings = settings;
        }
        Ok(SystemNotice {
            action: SystemAction::SettingsChanged,
            actor: actor.clone(),
            target: None,
            role: None,
            until: None,
            reason: None,
            seq: None,
        })
    }

    /// Checks that `actor` may delete the room (the owner of a group room).
    pub fn check_delete_room(&self, actor: &UserId) -> Result<(), CoreError> {
        self.no_moderation_in_dms()?;
        if self.actor_role(actor)? != Role::Owner {
            return Err(CoreError::OwnerOnly("delete the room"));
        }
        Ok(())
    }

    /// Checks that a server admin may delete the room (any group room).
    pub fn check_delete_room_by_admin(&self) -> Result<(), CoreError> {
        self.no_moderation_in_dms()
    }

    /// Every member (for a room being deleted).
    pub fn member_ids(&self) -> Vec<UserId> {
        self.members.keys().cloned().collect()
    }

    /// Every member, borrowed.
    pub fn members(&self) -> impl Iterator<Item = &UserId> {
        self.members.keys()
    }

    /// Appends a `system` message recording `notice`, described in words by `text`; the
    /// caller persists and broadcasts it like any message.
    pub fn system_message(&mut self, now_ms: u64, notice: SystemNotice, text: String) -> Message {
        self.last_seq += 1;
        self.last_ts = self.last_ts.max(now_ms);
        // Not entered in the cid index (see `ClientMsgId::system`): never a duplicate.
        let cid = ClientMsgId::system(self.last_seq);
        Message {
            room: self.id.clone(),
            seq: self.last_seq,
            ts: self.last_ts,
            sender: notice.actor.clone(),
            cid,
            kind: MessageKind::System,
            text,
            client_ts: None,
            reactions: Vec::new(),
            reply_to: None,
            reply: None,
            mentions: Vec::new(),
            file: None,
            edited_at: None,
            deleted: false,
            system: Some(Box::new(notice)),
            blocked: false,
            encryption: None,
            mention_all: None,
            forward: None,
            also_to_room: false,
            thread: None,
            thread_summary: None,
        }
    }

    /// Mutes that have ended by `now_ms` are forgotten (the stored record is harmless:
    /// an ended mute is ignored when read).
    pub fn expire_mutes(&mut self, now_ms: u64) {
        self.mutes.retain(|_, until| *until > now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::super::RoomLimits;
    use super::*;
    use palaver_protocol::RoomId;

    fn user(name: &str) -> UserId {
        UserId::parse(&format!("u_{name}")).unwrap()
    }

    fn room(kind: RoomKind) -> Room {
        let id = RoomId::parse("r_g").unwrap();
        let mut room = Room::create(id, "g".into(), kind, user("owner"), RoomLimits::default()).unwrap();
        for (name, role) in
            [("admin", Role::Admin), ("mod", Role::Moderator), ("a", Role::Member), ("b", Role::Member)]
        {
            room.members.insert(user(name), role);
        }
        room
    }

    fn refused(r: Result<SystemNotice, CoreError>) -> palaver_protocol::ErrorCode {
        r.unwrap_err().code()
    }

    #[test]
    fn members_cannot_moderate_and_moderators_only_those_below_them() {
        use palaver_protocol::ErrorCode::Forbidden;
        let mut r = room(RoomKind::Public);
        let kick = || Moderation::Kick { reason: None };
        assert_eq!(refused(r.moderate(0, &user("a"), &user("b"), kick())), Forbidden);
        assert_eq!(refused(r.moderate(0, &user("mod"), &user("admin"), kick())), Forbidden);
        assert_eq!(
            refused(r.moderate(0, &user("mod"), &user("owner"), Moderation::Ban { reason: None })),
            Forbidden
        );
        assert_eq!(refused(r.moderate(0, &user("admin"), &user("owner"), kick())), Forbidden);
        let notice = r.moderate(0, &user("mod"), &user("a"), kick()).unwrap();
        assert_eq!(notice.action, SystemAction::Kicked);
        assert!(r.role_of(&user("a")).is_none());
        // A kicked member may come back to a public room; a banned one may not.
        assert!(r.join(&user("a")).is_ok());
        r.moderate(0, &user("admin"), &user("a"), Moderation::Ban { reason: Some("spam".into()) }).unwrap();
        assert_eq!(r.join(&user("a")).unwrap_err().code(), Forbidden);
        assert_eq!(r.invite(&user("owner"), &user("a"), false).unwrap_err().code(), Forbidden);
        r.moderate(0, &user("mod"), &user("a"), Moderation::Unban).unwrap();
        assert!(r.join(&user("a")).is_ok());
    }

    #[test]
    fn a_mute_blocks_sending_until_it_ends() {
        let mut r = room(RoomKind::Public);
        let mute = Moderation::Mute { duration_secs: 2, reason: None };
        assert_eq!(
            refused(r.moderate(1_000, &user("b"), &user("a"), mute.clone())),
            palaver_protocol::ErrorCode::Forbidden
        );
        let notice = r.moderate(1_000, &user("mod"), &user("a"), mute).unwrap();
        assert_eq!(notice.until, Some(3_000));
        assert_eq!(r.muted_until(&user("a"), 2_999), Some(3_000));
        assert_eq!(r.muted_until(&user("a"), 3_000), None);
        let zero = Moderation::Mute { duration_secs: 0, reason: None };
        assert_eq!(
            refused(r.moderate(0, &user("mod"), &user("b"), zero)),
            palaver_protocol::ErrorCode::Invalid
        );
    }

    #[test]
    fn roles_go_only_below_the_giver_and_ownership_moves_by_transfer() {
        use palaver_protocol::ErrorCode::{Conflict, Forbidden, Invalid};
        let mut r = room(RoomKind::Private);
        assert_eq!(
            refused(r.moderate(0, &user("mod"), &user("a"), Moderation::SetRole(Role::Moderator))),
            Forbidden
        );
        assert_eq!(
            refused(r.moderate(0, &user("admin"), &user("a"), Moderation::SetRole(Role::Admin))),
            Forbidden
        );
        r.moderate(0, &user("admin"), &user("a"), Moderation::SetRole(Role::Moderator)).unwrap();
        assert_eq!(
            refused(r.moderate(0, &user("admin"), &user("a"), Moderation::SetRole(Role::Moderator))),
            Conflict
        );
        assert_eq!(
            refused(r.moderate(0, &user("owner"), &user("a"), Moderation::SetRole(Role::Owner))),
            Invalid
        );
        r.moderate(0, &user("owner"), &user("a"), Moderation::SetRole(Role::Admin)).unwrap();
        assert_eq!(refused(r.moderate(0, &user("admin"), &user("b"), Moderation::Transfer)), Forbidden);
        assert_eq!(r.leave(&user("owner")).unwrap_err().code(), Conflict);
        r.moderate(0, &user("owner"), &user("b"), Moderation::Transfer).unwrap();
        assert_eq!(r.role_of(&user("b")), Some(Role::Owner));
        assert_eq!(r.role_of(&user("owner")), Some(Role::Admin));
        assert_eq!(r.leave(&user("owner")), Ok(true));
    }

    #[test]
    fn private_rooms_admit_the_invited_and_invitations_follow_the_setting() {
        use palaver_protocol::ErrorCode::{Conflict, Forbidden};
        let mut r = room(RoomKind::Private);
        let outsider = user("out");
        assert_eq!(r.join(&outsider).unwrap_err().code(), Forbidden);
        r.update(
            &user("admin"),
            None,
            None,
            Some(RoomSettingsPatch { invite_role: Some(Role::Moderator), ..Default::default() }),
        )
        .unwrap();
        assert_eq!(r.invite(&user("a"), &outsider, false).unwrap_err().code(), Forbidden);
        assert_eq!(r.invite(&user("mod"), &outsider, true).unwrap_err().code(), Forbidden);
        assert_eq!(r.invite(&user("mod"), &user("a"), false).unwrap_err().code(), Conflict);
        assert_eq!(r.invite(&user("mod"), &outsider, false), Ok(true));
        assert_eq!(r.invite(&user("mod"), &outsider, false), Ok(false));
        let joined = r.join(&outsider).unwrap();
        assert!(joined.newly_member && joined.used_invite);
        assert!(!r.is_invited(&outsider));
    }

    #[test]
    fn settings_need_an_admin_and_are_checked() {
        use palaver_protocol::ErrorCode::{Forbidden, Invalid};
        let mut r = room(RoomKind::Public);
        let slow = |s| Some(RoomSettingsPatch { slow_mode_secs: Some(s), ..Default::default() });
        assert_eq!(r.update(&user("mod"), None, None, slow(5)).unwrap_err().code(), Forbidden);
        assert_eq!(r.update(&user("admin"), None, None, slow(999_999)).unwrap_err().code(), Invalid);
        let too_few = Some(RoomSettingsPatch { max_members: Some(3), ..Default::default() });
        assert_eq!(r.update(&user("admin"), None, None, too_few).unwrap_err().code(), Invalid);
        r.update(&user("admin"), Some("renamed".into()), Some("about".into()), slow(5)).unwrap();
        assert_eq!((r.info().name.as_str(), r.topic()), ("renamed", "about"));
        assert_eq!(r.update(&user("admin"), Some("renamed".into()), None, None).unwrap_err().code(), Invalid);
    }

    #[test]
    fn rooms_fill_up_and_dms_have_no_moderation() {
        let mut r = room(RoomKind::Public);
        r.update(
            &user("owner"),
            None,
            None,
            Some(RoomSettingsPatch { max_members: Some(6), ..Default::default() }),
        )
        .unwrap();
        assert!(r.join(&user("f")).is_ok());
        assert_eq!(r.join(&user("g")).unwrap_err(), CoreError::RoomFull { limit: 6 });
        let mut dm =
            Room::direct(RoomId::parse("r_dm").unwrap(), user("a"), user("b"), RoomLimits::default());
        assert_eq!(
            refused(dm.moderate(0, &user("a"), &user("b"), Moderation::Kick { reason: None })),
            palaver_protocol::ErrorCode::Forbidden
        );
        assert_eq!(dm.leave(&user("a")), Ok(true));
    }
}
