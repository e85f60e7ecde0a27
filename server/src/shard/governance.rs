//! The owner's handling of a room's governance: details, members, invitations,
//! moderation, settings and deletion. The rules are `palaver-core`'s (`Room::moderate`,
//! `Room::invite`, `Room::update`); this module looks up what they need, turns an
//! accepted action into writes plus a `system` message, and answers once it is durable.

use std::rc::Rc;

use palaver_core::{Moderation, Role};
use palaver_protocol::{
    Empty, ErrorCode, Event, InviteInfo, MemberInfo, MembersOk, OkBody, ReplyBody, RoomDetailsOk, RoomId,
    RoomKind, RoomSettingsPatch, SendOk, ServerFrame, SystemAction, SystemNotice, UserId, limits, paging,
};
use palaver_storage::{ActionRecord, Write};

use super::Shard;
use super::messages::{AfterNotice, CommitWork, LazyFrames, Origin, Reply, RoomAction, UserNotice};
use super::owner::{OwnedRoom, answer, error, storage_error, submit};
use super::people::presence_of;
use crate::clock::now_ms;

/// Carries out a governance action on a loaded room.
pub fn on_action(shard: &Rc<Shard>, owned: &mut OwnedRoom, origin: Origin, action: RoomAction) {
    match action {
        RoomAction::Get { room: _ } => details(shard, owned, &origin),
        RoomAction::Members { room: _, limit, cursor } => members(shard, owned, &origin, limit, cursor),
        RoomAction::Invite { room, user } => invite(shard, owned, origin, room, user),
        RoomAction::Decline { room } => {
            if !owned.room.decline(&origin.user) {
                let body = error(ErrorCode::Conflict, format!("no invitation to {room}"));
                return answer(shard, origin.shard, Reply::plain(&origin, body));
            }
            let reply = Reply::plain(&origin, ReplyBody::Ok(OkBody::Empty(Empty {})));
            let write = Write::RemoveInvite { room, user: origin.user.clone() };
            if let Err(e) = submit(shard, vec![write], CommitWork::Reply { shard: origin.shard, reply }) {
                answer(shard, origin.shard, Reply::plain(&origin, storage_error(&e)));
            }
        }
        RoomAction::Moderate { room, user, action } => moderate(shard, owned, origin, room, user, action),
        RoomAction::Update { room: _, name, topic, settings } => {
            update(shard, owned, origin, name, topic, settings)
        }
        RoomAction::DeleteRoom { room } => delete_room(shard, owned, origin, room),
        other => tracing::error!("not a governance action: {}", other.room()),
    }
}

/// Who may look at a room's details and members: anyone for a public room; members and
/// invitees otherwise.
fn may_look(owned: &OwnedRoom, user: &UserId) -> bool {
    owned.room.kind() == RoomKind::Public || owned.room.role_of(user).is_some() || owned.room.is_invited(user)
}

fn details_body(owned: &OwnedRoom, user: &UserId) -> ReplyBody {
    ReplyBody::Ok(OkBody::RoomDetails(RoomDetailsOk {
        room: owned.room.info(),
        settings: owned.room.settings(),
        member_count: owned.room.member_count() as u32,
        role: owned.room.role_of(user),
    }))
}

fn details(shard: &Shard, owned: &OwnedRoom, origin: &Origin) {
    let body = if may_look(owned, &origin.user) {
        details_body(owned, &origin.user)
    } else {
        error(ErrorCode::Forbidden, format!("{} is private", owned.room.id()))
    };
    answer(shard, origin.shard, Reply::plain(origin, body));
}

fn members(shard: &Shard, owned: &OwnedRoom, origin: &Origin, limit: Option<u32>, cursor: Option<String>) {
    let reply = |body| answer(shard, origin.shard, Reply::plain(origin, body));
    if !may_look(owned, &origin.user) {
        return reply(error(ErrorCode::Forbidden, format!("{} is private", owned.room.id())));
    }
    let limit = match paging::sizes::MEMBERS.of(limit) {
        Ok(limit) => limit,
        Err(e) => return reply(error(ErrorCode::Invalid, e.to_string())),
    };
    let after =
        match cursor.map(|c| paging::decode_cursor("room.members", &c).map(|k| UserId::parse(k.as_str()))) {
            None => None,
            Some(Ok(Ok(user))) => Some(user),
            Some(_) => return reply(error(ErrorCode::Invalid, "cursor is not a `next` of this list")),
        };
    let (found, more) = owned.room.members_page(after.as_ref(), limit);
    let now = now_ms();
    let mut page = paging::PageBuilder::new("room.members", limit);
    for (user, role) in found {
        let username = match shard.shared.store.user(&user) {
            Ok(found) => found.map(|u| u.username).unwrap_or_default(),
            Err(e) => return reply(storage_error(&e)),
        };
        // A member who blocked the asker shows as offline to them, as everywhere.
        let presence = match shard.shared.store.is_blocked(&user, &origin.user) {
            Ok(true) => palaver_protocol::PresenceStatus::Offline,
            Ok(false) => presence_of(shard, &user).status,
            Err(e) => return reply(storage_error(&e)),
        };
        let key = user.as_str().to_owned();
        let member =
            MemberInfo { muted_until: owned.room.muted_until(&user, now), presence, user, username, role };
        if !page.offer(&key, Some(member)) {
            break;
        }
    }
    let (members, next) = page.finish(more);
    reply(ReplyBody::Ok(OkBody::Members(MembersOk { members, next })));
}

fn invite(shard: &Rc<Shard>, owned: &mut OwnedRoom, origin: Origin, room: RoomId, user: UserId) {
    let store = &shard.shared.store;
    let reply = |body| answer(shard, origin.shard, Reply::plain(&origin, body));
    match store.user(&user) {
        Ok(Some(_)) => {}
        Ok(None) => return reply(error(ErrorCode::NotFound, format!("no user {user}"))),
        Err(e) => return reply(storage_error(&e)),
    }
    let blocked = match store.is_blocked(&user, &origin.user) {
        Ok(blocked) => blocked,
        Err(e) => return reply(storage_error(&e)),
    };
    let empty = ReplyBody::Ok(OkBody::Empty(Empty {}));
    match owned.room.invite(&origin.user, &user, blocked) {
        Err(e) => reply(ReplyBody::Err(e.to_body())),
        Ok(false) => reply(empty),
        Ok(true) => {
            // Invitations are unsolicited: a stranger's are limited per sender, and a
            // user's pending ones are capped (they decline to make room).
            let refusal = match (
                super::owner::are_friends(shard, &origin.user, &user),
                store.user_invites_after(&user, None, limits::MAX_PENDING_INVITES),
            ) {
                (Err(e), _) | (_, Err(e)) => Some(storage_error(&e)),
                (_, Ok(pending)) if pending.len() >= limits::MAX_PENDING_INVITES => Some(error(
                    ErrorCode::Forbidden,
                    format!(
                        "{user} has {} pending invitations, the most there can be",
                        limits::MAX_PENDING_INVITES
                    ),
                )),
                (Ok(false), _) => {
                    shard.shared.spam.invite_stranger(&origin.user, now_ms()).err().map(|wait| {
                        super::owner::rate_limited(
                            "too many invitations to people who are not your friends",
                            wait,
                        )
                    })
                }
                (Ok(true), _) => None,
            };
            if let Some(refusal) = refusal {
                owned.room.decline(&user);
                return reply(refusal);
            }
            let invited_at = now_ms();
            let record = ActionRecord { by: origin.user.clone(), at: invited_at, reason: None };
            let event = InviteInfo { room: owned.room.info(), by: origin.user.clone(), invited_at };
            let notice = UserNotice {
                user: user.clone(),
                frames: Some(LazyFrames::new(ServerFrame::Event(Event::Invite(event)))),
                effect: None,
            };
            let work = CommitWork::People {
                shard: origin.shard,
                reply: Reply::plain(&origin, empty),
                notices: vec![notice],
                release: Vec::new(),
            };
            if let Err(e) = submit(shard, vec![Write::PutInvite { room, user: user.clone(), record }], work) {
                owned.room.decline(&user);
                reply(storage_error(&e));
            }
        }
    }
}

fn username(shard: &Shard, user: &UserId) -> String {
    match shard.shared.store.user(user) {
        Ok(Some(record)) => record.username,
        _ => user.to_string(),
    }
}

/// A human-readable duration, for notices.
fn duration_words(ms: u64) -> String {
    let secs = ms.div_ceil(1000);
    let (n, unit) = match secs {
        s if s < 120 => (s, "second"),
        s if s < 2 * 3600 => (s / 60, "minute"),
        s if s < 2 * 86_400 => (s / 3600, "hour"),
        s => (s / 86_400, "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// The words of a `system` message.
fn notice_text(shard: &Shard, notice: &SystemNotice, now: u64) -> String {
    let actor = username(shard, &notice.actor);
    let target = notice.target.as_ref().map(|t| username(shard, t)).unwrap_or_default();
    let mut text = match notice.action {
        SystemAction::Kicked => format!("{actor} removed {target}"),
        SystemAction::Banned => format!("{actor} banned {target}"),
        SystemAction::Unbanned => format!("{actor} lifted the ban on {target}"),
        SystemAction::Muted => {
            let left = notice.until.unwrap_or(now).saturating_sub(now);
            format!("{actor} muted {target} for {}", duration_words(left))
        }
        SystemAction::Unmuted => format!("{actor} unmuted {target}"),
        SystemAction::RoleChanged => {
            let role = notice.role.unwrap_or(Role::Member);
            let article = if role == Role::Admin { "an" } else { "a" };
            format!("{actor} made {target} {article} {}", role.name())
        }
        SystemAction::OwnershipTransferred => format!("{actor} made {target} the owner"),
        SystemAction::SettingsChanged => format!("{actor} changed the room's name, topic or settings"),
        SystemAction::RoomDeleted => format!("{actor} deleted the room"),
    };
    if let Some(reason) = &notice.reason {
        text.push_str(": ");
        text.push_str(reason);
    }
    text
}

/// Stores `notice` as a `system` message with `writes` in one batch; answers `origin`
/// with the message's seq once durable, then does `then`.
fn store_notice(
    shard: &Rc<Shard>,
    owned: &mut OwnedRoom,
    origin: Origin,
    notice: SystemNotice,
    mut writes: Vec<Write>,
    answer_with: Option<ReplyBody>,
    then: AfterNotice,
) {
    let now = now_ms();
    let text = notice_text(shard, &notice, now);
    let message = owned.room.system_message(now, notice, text);
    let ok = SendOk { seq: message.seq, ts: message.ts, duplicate: false };
    writes.insert(0, Write::AppendMessage(message.clone()));
    let body = answer_with.unwrap_or(ReplyBody::Ok(OkBody::Sent(ok)));
    match submit(shard, writes, CommitWork::Notice { message, then }) {
        Ok(()) => {
            owned.unsettled += 1;
            owned.waiting.entry(ok.seq).or_default().push((origin, body));
        }
        Err(e) => {
            // The room's memory is ahead of storage: forget it (it reloads on next use).
            owned.poisoned = true;
            answer(shard, origin.shard, Reply::plain(&origin, storage_error(&e)));
        }
    }
}

fn moderate(
    shard: &Rc<Shard>,
    owned: &mut OwnedRoom,
    origin: Origin,
    room: RoomId,
    user: UserId,
    action: Moderation,
) {
    match shard.shared.store.user(&user) {
        Ok(Some(_)) => {}
        Ok(None) => {
            let body = error(ErrorCode::NotFound, format!("no user {user}"));
            return answer(shard, origin.shard, Reply::plain(&origin, body));
        }
        Err(e) => return answer(shard, origin.shard, Reply::plain(&origin, storage_error(&e))),
    }
    let now = now_ms();
    let notice = match owned.room.moderate(now, &origin.user, &user, action) {
        Ok(notice) => notice,
        Err(e) => return answer(shard, origin.shard, Reply::plain(&origin, ReplyBody::Err(e.to_body()))),
    };
    let (writes, then) = match notice.action {
        SystemAction::Kicked => {
            (vec![Write::RemoveMember { room, user: user.clone() }], AfterNotice::RemoveMember(user))
        }
        SystemAction::Banned => {
            let record = ActionRecord { by: origin.user.clone(), at: now, reason: notice.reason.clone() };
            let writes = vec![
                Write::PutBan { room: room.clone(), user: user.clone(), record },
                Write::RemoveMember { room: room.clone(), user: user.clone() },
                Write::RemoveInvite { room: room.clone(), user: user.clone() },
                Write::RemoveMute { room, user: user.clone() },
            ];
            (writes, AfterNotice::RemoveMember(user))
        }
        SystemAction::Unbanned => (vec![Write::RemoveBan { room, user }], AfterNotice::Nothing),
        SystemAction::Muted => {
            let until = notice.until.unwrap_or(now);
            (vec![Write::PutMute { room, user, until }], AfterNotice::Nothing)
        }
        SystemAction::Unmuted => (vec![Write::RemoveMute { room, user }], AfterNotice::Nothing),
        SystemAction::RoleChanged => {
            let role = notice.role.unwrap_or(Role::Member);
            (vec![Write::PutMember { room, user, role }], AfterNotice::Nothing)
        }
        SystemAction::OwnershipTransferred => {
            // The room lifts the new owner's mute (nobody may moderate an owner); without
            // its `RemoveMute` a restart would bring the mute back (found by the
            // `room_model` fuzz target, `fuzz/regressions/room_model/mute-lifted-by-…`).
            let writes = vec![
                Write::PutMember { room: room.clone(), user: user.clone(), role: Role::Owner },
                Write::PutMember { room: room.clone(), user: origin.user.clone(), role: Role::Admin },
                Write::RemoveMute { room, user },
            ];
            (writes, AfterNotice::Nothing)
        }
        SystemAction::SettingsChanged | SystemAction::RoomDeleted => (Vec::new(), AfterNotice::Nothing),
    };
    store_notice(shard, owned, origin, notice, writes, None, then);
}

/// The room's stored record (read before anything changes, so a failed read changes
/// nothing).
fn stored_record(shard: &Shard, owned: &OwnedRoom) -> Result<palaver_storage::RoomRecord, ReplyBody> {
    match shard.shared.store.room(owned.room.id()) {
        Ok(Some(record)) => Ok(record),
        Ok(None) => Err(error(ErrorCode::NotFound, format!("no room {}", owned.room.id()))),
        Err(e) => Err(storage_error(&e)),
    }
}

/// `record` with the room's current name, topic and settings.
fn current(
    mut record: palaver_storage::RoomRecord,
    owned: &OwnedRoom,
    deleted: bool,
) -> palaver_storage::RoomRecord {
    record.name = owned.room.name().to_owned();
    record.topic = owned.room.topic().to_owned();
    record.settings = Some(owned.room.settings());
    record.deleted = deleted;
    record
}

fn update(
    shard: &Rc<Shard>,
    owned: &mut OwnedRoom,
    origin: Origin,
    name: Option<String>,
    topic: Option<String>,
    settings: Option<RoomSettingsPatch>,
) {
    let record = match stored_record(shard, owned) {
        Ok(record) => record,
        Err(body) => return answer(shard, origin.shard, Reply::plain(&origin, body)),
    };
    // The room changes only if every part of the update is valid.
    let notice = match owned.room.update(&origin.user, name, topic, settings) {
        Ok(notice) => notice,
        Err(e) => return answer(shard, origin.shard, Reply::plain(&origin, ReplyBody::Err(e.to_body()))),
    };
    let record = current(record, owned, false);
    let body = details_body(owned, &origin.user);
    store_notice(
        shard,
        owned,
        origin,
        notice,
        vec![Write::PutRoom(record)],
        Some(body),
        AfterNotice::Nothing,
    );
}

fn delete_room(shard: &Rc<Shard>, owned: &mut OwnedRoom, origin: Origin, room: RoomId) {
    if let Err(e) = owned.room.check_delete_room(&origin.user) {
        return answer(shard, origin.shard, Reply::plain(&origin, ReplyBody::Err(e.to_body())));
    }
    let record = match stored_record(shard, owned) {
        Ok(record) => current(record, owned, true),
        Err(body) => return answer(shard, origin.shard, Reply::plain(&origin, body)),
    };
    let mut writes = vec![Write::PutRoom(record)];
    for user in owned.room.member_ids() {
        writes.push(Write::RemoveMember { room: room.clone(), user });
    }
    let notice = SystemNotice {
        action: SystemAction::RoomDeleted,
        actor: origin.user.clone(),
        target: None,
        role: None,
        until: None,
        reason: None,
    };
    owned.deleting = true;
    let empty = ReplyBody::Ok(OkBody::Empty(Empty {}));
    store_notice(shard, owned, origin, notice, writes, Some(empty), AfterNotice::DeleteRoom);
}
