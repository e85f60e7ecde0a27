//! Where each client op goes, decided once: a room's owner, a user's (or a pair's)
//! home, or the socket's own shard. A pure function of the op, so the vocabulary the
//! owners and homes speak is derived from the protocol's in one place, and the match is
//! exhaustive: a new op does not compile until it has a destination.

use palaver_protocol::{
    ForwardRef, MessageKind, NotifyLevel, OneTimeKey, Op, PresenceChoice, RoomId, RoomKind,
    RoomNotifications, RoomSettingsPatch, UserId,
};
use serde::{Deserialize, Serialize};

use crate::owner::{Outgoing, RoomOp};
use crate::room::{HistoryRequest, Moderation};

/// Where an op goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// A request on an existing room, for the room's owner.
    Room(RoomId, RoomOp),
    /// `room.create`: the driver draws the new room's id, whose owner creates it.
    CreateRoom(RoomRequest),
    /// `dm.open` with this user: the owner of the pair's derived room id opens it.
    OpenDirect(UserId),
    /// For the single writer of a user's or a pair's people state.
    People(Home, PeopleOp),
    /// Answered by the socket's own shard (auth, ping, reads of the directory, search,
    /// sync).
    Local(Op),
}

/// What `room.create` asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomRequest {
    /// Display name.
    pub name: String,
    /// Public or private.
    pub kind: RoomKind,
    /// Optional topic.
    pub topic: Option<String>,
    /// Settings other than the defaults.
    pub settings: Option<RoomSettingsPatch>,
}

/// Whose home handles a people op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Home {
    /// The caller's: their profile, presence and keys.
    Caller,
    /// The pair of the caller and this user's: their friendship and blocks.
    Pair(UserId),
    /// This user's: the one-time keys others claim from them.
    User(UserId),
}

/// A people operation, for its home.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PeopleOp {
    /// A friendship change with `other`.
    Friend {
        /// The other user.
        other: UserId,
        /// Which.
        op: FriendOp,
    },
    /// Block (`on`) or unblock `other`.
    Block {
        /// The other user.
        other: UserId,
        /// Block or unblock.
        on: bool,
    },
    /// Update the caller's profile.
    UpdateProfile {
        /// New display name (empty clears).
        display_name: Option<String>,
        /// New avatar (empty clears).
        avatar: Option<String>,
        /// New status text (empty clears).
        status_text: Option<String>,
        /// Share read receipts (`true`) or keep them private.
        share_read_receipts: Option<bool>,
    },
    /// Choose online, away or invisible.
    SetPresence(PresenceChoice),
    /// Read the caller's notification settings.
    GetNotifications,
    /// Change the caller's account-wide notification settings.
    SetNotifications {
        /// The level of rooms without their own.
        level: Option<NotifyLevel>,
        /// The new keyword list.
        keywords: Option<Vec<String>>,
    },
    /// Replace one room's notification setting.
    SetRoomNotifications(RoomNotifications),
    /// Register a push subscription (checked by the caller's shard against the
    /// operator's networks before it is sent here).
    PushSubscribe {
        /// The push service's URL.
        endpoint: String,
        /// The browser's public key.
        p256dh: String,
        /// The authentication secret.
        auth: String,
    },
    /// Forget a push subscription.
    PushUnsubscribe {
        /// Its endpoint.
        endpoint: String,
    },
    /// Publish the caller's device keys.
    KeysUpload {
        /// The device.
        device_id: String,
        /// Its identity key.
        identity_key: String,
        /// Its signing key.
        signing_key: Option<String>,
        /// New one-time prekeys.
        one_time_keys: Vec<OneTimeKey>,
    },
    /// Claim one-time prekeys of `user`'s devices.
    KeysClaim {
        /// Whose.
        user: UserId,
        /// Only this device.
        device_id: Option<String>,
    },
}

/// A friendship operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FriendOp {
    /// Ask.
    Request,
    /// Accept an incoming request.
    Accept,
    /// Decline an incoming request.
    Decline,
    /// Withdraw an outgoing request.
    Cancel,
    /// End a friendship.
    Remove,
}

fn on(room: RoomId, op: RoomOp) -> Route {
    Route::Room(room, op)
}

fn moderate(room: RoomId, user: UserId, action: Moderation) -> Route {
    Route::Room(room, RoomOp::Moderate { user, action })
}

fn friend(other: UserId, op: FriendOp) -> Route {
    Route::People(Home::Pair(other.clone()), PeopleOp::Friend { other, op })
}

/// Where `op` goes, and what it asks there.
pub fn route(op: Op) -> Route {
    match op {
        Op::RoomCreate { name, kind, topic, settings } => {
            Route::CreateRoom(RoomRequest { name, kind, topic, settings })
        }
        Op::DmOpen { user } => Route::OpenDirect(user),
        Op::Join { room, since } => on(room, RoomOp::Join { since }),
        Op::InviteAccept { room } => on(room, RoomOp::Join { since: None }),
        Op::Leave { room } => on(room, RoomOp::Leave),
        Op::Send { room, cid, kind, text, client_ts, reply_to, file, encryption, thread, also_to_room } => {
            on(
                room,
                RoomOp::Send(Box::new(Outgoing {
                    cid,
                    kind,
                    text,
                    client_ts,
                    reply_to,
                    file,
                    encryption,
                    forward: None,
                    thread,
                    also_to_room,
                })),
            )
        }
        // A forward is a send whose body is a comment, referring to the original.
        Op::Forward { room, cid, from_room, seq, text } => on(
            room,
            RoomOp::Send(Box::new(Outgoing {
                cid,
                kind: MessageKind::Text,
                text,
                client_ts: None,
                reply_to: None,
                file: None,
                encryption: None,
                forward: Some(Box::new(ForwardRef { room: from_room, seq, source: None })),
                thread: None,
                also_to_room: false,
            })),
        ),
        Op::Edit { room, seq, text } => on(room, RoomOp::Edit { seq, text }),
        Op::EditList { room, seq, limit, cursor } => on(room, RoomOp::EditList { seq, limit, cursor }),
        Op::Delete { room, seq } => on(room, RoomOp::Delete { seq }),
        Op::Pin { room, seq } => on(room, RoomOp::Pin { seq, on: true }),
        Op::Unpin { room, seq } => on(room, RoomOp::Pin { seq, on: false }),
        Op::PinList { room, limit, cursor } => on(room, RoomOp::PinList { limit, cursor }),
        Op::ReceiptList { room, seq, delivered, limit, cursor } => {
            on(room, RoomOp::ReceiptList { seq, delivered, limit, cursor })
        }
        Op::React { room, seq, emoji } => on(room, RoomOp::React { seq, emoji, add: true }),
        Op::Unreact { room, seq, emoji } => on(room, RoomOp::React { seq, emoji, add: false }),
        Op::TypingStart { room } => on(room, RoomOp::Typing { active: true }),
        Op::TypingStop { room } => on(room, RoomOp::Typing { active: false }),
        Op::Receipt { room, delivered, read } => on(room, RoomOp::Receipt { delivered, read }),
        Op::History { room, before, after, limit, cursor, threads } => {
            on(room, RoomOp::History(HistoryRequest { before, after, limit, cursor, threads }))
        }
        Op::ThreadHistory { room, root, before, after, limit, cursor } => on(
            room,
            RoomOp::ThreadHistory {
                root,
                request: HistoryRequest { before, after, limit, cursor, threads: Default::default() },
            },
        ),
        Op::ThreadList { room, limit, cursor } => on(room, RoomOp::ThreadList { limit, cursor }),
        Op::ThreadRead { room, root, seq } => on(room, RoomOp::ThreadRead { root, seq }),
        Op::RoomGet { room } => on(room, RoomOp::Get),
        Op::RoomUpdate { room, name, topic, settings } => on(room, RoomOp::Update { name, topic, settings }),
        Op::RoomDelete { room } => on(room, RoomOp::DeleteRoom),
        Op::RoomMembers { room, limit, cursor } => on(room, RoomOp::Members { limit, cursor }),
        Op::RoomInvite { room, user } => on(room, RoomOp::Invite { user }),
        Op::InviteDecline { room } => on(room, RoomOp::Decline),
        Op::Kick { room, user, reason } => moderate(room, user, Moderation::Kick { reason }),
        Op::Ban { room, user, reason } => moderate(room, user, Moderation::Ban { reason }),
        Op::Unban { room, user } => moderate(room, user, Moderation::Unban),
        Op::Mute { room, user, duration_secs, reason } => {
            moderate(room, user, Moderation::Mute { duration_secs, reason })
        }
        Op::Unmute { room, user } => moderate(room, user, Moderation::Unmute),
        Op::RoleSet { room, user, role } => moderate(room, user, Moderation::SetRole(role)),
        Op::RoomTransfer { room, user } => moderate(room, user, Moderation::Transfer),
        Op::FriendRequest { user } => friend(user, FriendOp::Request),
        Op::FriendAccept { user } => friend(user, FriendOp::Accept),
        Op::FriendDecline { user } => friend(user, FriendOp::Decline),
        Op::FriendCancel { user } => friend(user, FriendOp::Cancel),
        Op::FriendRemove { user } => friend(user, FriendOp::Remove),
        Op::Block { user } => {
            Route::People(Home::Pair(user.clone()), PeopleOp::Block { other: user, on: true })
        }
        Op::Unblock { user } => {
            Route::People(Home::Pair(user.clone()), PeopleOp::Block { other: user, on: false })
        }
        Op::UserUpdate { display_name, avatar, status_text, share_read_receipts } => Route::People(
            Home::Caller,
            PeopleOp::UpdateProfile { display_name, avatar, status_text, share_read_receipts },
        ),
        Op::NotificationsGet {} => Route::People(Home::Caller, PeopleOp::GetNotifications),
        Op::NotificationsSet { level, keywords } => {
            Route::People(Home::Caller, PeopleOp::SetNotifications { level, keywords })
        }
        Op::NotificationsRoom { room, level, muted, muted_until } => Route::People(
            Home::Caller,
            PeopleOp::SetRoomNotifications(RoomNotifications { room, level, muted, muted_until }),
        ),
        Op::PushSubscribe { endpoint, p256dh, auth } => {
            Route::People(Home::Caller, PeopleOp::PushSubscribe { endpoint, p256dh, auth })
        }
        Op::PushUnsubscribe { endpoint } => {
            Route::People(Home::Caller, PeopleOp::PushUnsubscribe { endpoint })
        }
        Op::PresenceSet { status } => Route::People(Home::Caller, PeopleOp::SetPresence(status)),
        Op::KeysUpload { device_id, identity_key, signing_key, one_time_keys } => Route::People(
            Home::Caller,
            PeopleOp::KeysUpload { device_id, identity_key, signing_key, one_time_keys },
        ),
        // The claimed user's home is the single writer of their one-time keys.
        Op::KeysClaim { user, device_id } => {
            Route::People(Home::User(user.clone()), PeopleOp::KeysClaim { user, device_id })
        }
        op @ (Op::Auth { .. }
        | Op::Ping {}
        | Op::Sync { .. }
        | Op::RoomList { .. }
        | Op::InviteList { .. }
        | Op::UserGet { .. }
        | Op::UserSearch { .. }
        | Op::FriendList { .. }
        | Op::BlockList { .. }
        | Op::PresenceSubscribe { .. }
        | Op::PresenceUnsubscribe { .. }
        | Op::KeysList { .. }
        | Op::Search { .. }) => Route::Local(op),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

    use super::*;

    fn decode(json: &str) -> Op {
        palaver_protocol::Codec::Json.decode_client(json.as_bytes()).unwrap().op
    }

    #[test]
    fn reads_of_the_directory_search_sync_and_auth_stay_on_the_sockets_shard() {
        for json in [
            r#"{"id":1,"op":"auth","token":"t"}"#,
            r#"{"id":1,"op":"ping"}"#,
            r#"{"id":1,"op":"sync"}"#,
            r#"{"id":1,"op":"room.list"}"#,
            r#"{"id":1,"op":"invite.list"}"#,
            r#"{"id":1,"op":"user.get","user":"u_ann"}"#,
            r#"{"id":1,"op":"user.search","prefix":"an"}"#,
            r#"{"id":1,"op":"friend.list"}"#,
            r#"{"id":1,"op":"block.list"}"#,
            r#"{"id":1,"op":"presence.subscribe","users":["u_ann"]}"#,
            r#"{"id":1,"op":"presence.unsubscribe","users":["u_ann"]}"#,
            r#"{"id":1,"op":"keys.list","user":"u_ann"}"#,
            r#"{"id":1,"op":"search","query":"hello"}"#,
        ] {
            let op = decode(json);
            assert_eq!(route(op.clone()), Route::Local(op), "{json}");
        }
    }

    #[test]
    fn room_ops_go_to_the_rooms_owner_and_people_ops_to_their_home() {
        let room = RoomId::parse("r_a").unwrap();
        let ann = UserId::parse("u_ann").unwrap();
        let unreact = decode(r#"{"id":1,"op":"unreact","room":"r_a","seq":3,"emoji":"x"}"#);
        let removed = RoomOp::React { seq: 3, emoji: "x".into(), add: false };
        assert_eq!(route(unreact), Route::Room(room.clone(), removed));
        let accept = decode(r#"{"id":1,"op":"invite.accept","room":"r_a"}"#);
        assert_eq!(route(accept), Route::Room(room, RoomOp::Join { since: None }));
        let claim = decode(r#"{"id":1,"op":"keys.claim","user":"u_ann"}"#);
        let claimed = PeopleOp::KeysClaim { user: ann.clone(), device_id: None };
        assert_eq!(route(claim), Route::People(Home::User(ann.clone()), claimed));
        let block = decode(r#"{"id":1,"op":"block","user":"u_ann"}"#);
        let blocking = PeopleOp::Block { other: ann.clone(), on: true };
        assert_eq!(route(block), Route::People(Home::Pair(ann.clone()), blocking));
        assert_eq!(route(decode(r#"{"id":1,"op":"dm.open","user":"u_ann"}"#)), Route::OpenDirect(ann));
    }
}
