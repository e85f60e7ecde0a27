//! The ops a connection's own shard answers from storage, with no owner involved: reads
//! that need no single writer (`sync`, `room.list`, `invite.list`, `user.get`,
//! `user.search`, `friend.list`, `block.list`) and following presence.

use std::rc::Rc;

use palaver_protocol::{
    BlockedOk, DeviceKeys, DevicesOk, Empty, ErrorBody, ErrorCode, FriendInfo, FriendState, FriendsOk,
    InviteInfo, InvitesOk, OkBody, Op, PresenceListOk, ProfileOk, ReplyBody, RoomId, RoomInfo, RoomListOk,
    RoomSummary, SearchHit, SearchOk, SearchOrder, SyncOk, UserId, UsersOk, limits,
};
use palaver_storage::StorageError;

use crate::blocking::Refused;

use crate::shard::people::{follow, presence_of, public_profile, unfollow};
use crate::shard::{Conn, Shard};

/// A `search` op's fields.
#[derive(Debug)]
pub struct SearchRequest {
    pub query: String,
    pub room: Option<RoomId>,
    pub from: Option<UserId>,
    pub before: Option<u64>,
    pub after: Option<u64>,
    pub order: Option<SearchOrder>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// `search`: the searcher's rooms (membership now, so a room left or banned from stops
/// matching at once), queried on the blocking pool (never on the shard); hits from users
/// the searcher blocked are left out.
pub async fn search(shard: &Rc<Shard>, conn: &Rc<Conn>, user: UserId, request: SearchRequest) -> ReplyBody {
    let Some((index, _)) = shard.shared.search.clone() else {
        return refuse(ErrorCode::Unavailable, "search is disabled on this server");
    };
    let limit = request.limit.unwrap_or(20);
    if !(1..=palaver_search::MAX_LIMIT as u32).contains(&limit) {
        return refuse(ErrorCode::Invalid, format!("limit must be 1 to {}", palaver_search::MAX_LIMIT));
    }
    let rooms = match shard.shared.store.user_rooms(&user) {
        Ok(rooms) => rooms,
        Err(e) => return failed("search", &e),
    };
    let blocked: Vec<UserId> = conn.blocked.borrow().iter().cloned().collect();
    let query = palaver_search::SearchQuery {
        text: request.query,
        rooms,
        room: request.room,
        from: request.from,
        before_ts: request.before,
        after_ts: request.after,
        order: match request.order {
            Some(SearchOrder::Newest) => palaver_search::Order::Newest,
            Some(SearchOrder::Relevance) | None => palaver_search::Order::Relevance,
        },
        limit: limit as usize,
        cursor: request.cursor,
    };
    let found = shard.shared.lanes.search.run(move || index.search(&query)).await;
    match found {
        Err(Refused::Busy) => busy("too many searches are in progress; retry shortly"),
        Err(Refused::Closed) => refuse(ErrorCode::Unavailable, "server is shutting down"),
        Ok(Err(e)) if e.is_invalid_request() => refuse(ErrorCode::Invalid, e.to_string()),
        Ok(Err(e)) => {
            tracing::error!("search: {e}");
            refuse(ErrorCode::Internal, "search failed")
        }
        Ok(Ok(page)) => {
            let hits = page
                .hits
                .into_iter()
                .filter(|h| !blocked.contains(&h.sender))
                .map(|h| SearchHit {
                    room: h.room,
                    seq: h.seq,
                    ts: h.ts,
                    sender: h.sender,
                    snippet: h.snippet,
                    score: h.score,
                })
                .collect();
            ReplyBody::Ok(OkBody::Search(SearchOk { hits, next_cursor: page.next }))
        }
    }
}

fn failed(op: &str, e: &StorageError) -> ReplyBody {
    if e.is_unavailable() {
        return refuse(ErrorCode::Unavailable, "storage is not taking requests now; try again later");
    }
    tracing::error!("{op}: {e}");
    ReplyBody::Err(ErrorBody::new(ErrorCode::Internal, "storage failure"))
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> ReplyBody {
    ReplyBody::Err(ErrorBody::new(code, message))
}

/// `unavailable` with a retry hint: the server is busy with work of this kind.
fn busy(message: &str) -> ReplyBody {
    let mut body = ErrorBody::new(ErrorCode::Unavailable, message);
    body.retry_after_ms = Some(crate::conn::http::BUSY_RETRY_MS);
    ReplyBody::Err(body)
}

/// Answers one of the locally answered people ops.
pub fn answer(shard: &Rc<Shard>, conn: &Rc<Conn>, me: &UserId, op: Op) -> ReplyBody {
    let name = op.name();
    let result = match op {
        Op::InviteList {} => invite_list(shard, me),
        Op::UserGet { user } => user_get(shard, me, &user),
        Op::UserSearch { prefix, limit } => user_search(shard, &prefix, limit),
        Op::FriendList {} => friend_list(shard, me),
        Op::BlockList {} => {
            shard.shared.store.blocks(me).map(|blocked| ReplyBody::Ok(OkBody::Blocked(BlockedOk { blocked })))
        }
        Op::PresenceSubscribe { users } => presence_subscribe(shard, conn, me, users),
        Op::KeysList { user } => keys_list(shard, &user),
        Op::PresenceUnsubscribe { users } => {
            for user in &users {
                unfollow(shard, conn, user);
            }
            Ok(ReplyBody::Ok(OkBody::Empty(Empty {})))
        }
        _ => Ok(refuse(ErrorCode::Invalid, "not a directory op")),
    };
    result.unwrap_or_else(|e| failed(name, &e))
}

/// `keys.list`: a user's devices and their public keys (public material: anyone
/// authenticated may read it, as anyone may start an encrypted conversation).
fn keys_list(shard: &Shard, user: &UserId) -> Result<ReplyBody, StorageError> {
    let store = &shard.shared.store;
    if store.user(user)?.is_none() {
        return Ok(refuse(ErrorCode::NotFound, format!("no user {user}")));
    }
    let mut devices = Vec::new();
    for (device_id, record) in store.devices(user)? {
        let one_time_key_count = store.one_time_key_count(user, &device_id)? as u32;
        devices.push(DeviceKeys {
            device_id,
            identity_key: record.identity_key,
            signing_key: record.signing_key,
            one_time_key_count,
        });
    }
    Ok(ReplyBody::Ok(OkBody::Devices(DevicesOk { devices })))
}

fn invite_list(shard: &Shard, me: &UserId) -> Result<ReplyBody, StorageError> {
    let store = &shard.shared.store;
    let mut invites = Vec::new();
    for (room, record) in store.user_invites(me)? {
        // A deleted room's invitations lapse with it.
        let Some(info) = store.room(&room)? else { continue };
        invites.push(InviteInfo {
            room: RoomInfo { room_id: info.room_id, name: info.name, kind: info.kind, topic: info.topic },
            by: record.by,
            invited_at: record.at,
        });
    }
    Ok(ReplyBody::Ok(OkBody::Invites(InvitesOk { invites })))
}

/// Whether `me` may see `other`'s presence: themselves, a friend, or someone sharing a
/// room with them, unless `other` blocked `me`.
fn may_see_presence(shard: &Shard, me: &UserId, other: &UserId) -> Result<bool, StorageError> {
    if me == other {
        return Ok(true);
    }
    let store = &shard.shared.store;
    if store.is_blocked(other, me)? {
        return Ok(false);
    }
    let friends =
        store.friend(me, other)?.is_some_and(|(s, _)| FriendState::from_byte(s) == FriendState::Friends);
    Ok(friends || store.share_a_room(me, other)?)
}

fn user_get(shard: &Shard, me: &UserId, user: &UserId) -> Result<ReplyBody, StorageError> {
    let store = &shard.shared.store;
    let Some(account) = store.user(user)? else {
        return Ok(refuse(ErrorCode::NotFound, format!("no user {user}")));
    };
    let profile = public_profile(account.user_id, account.username, store.profile(user)?);
    let presence = if may_see_presence(shard, me, user)? { Some(presence_of(shard, user)) } else { None };
    Ok(ReplyBody::Ok(OkBody::Profile(Box::new(ProfileOk { profile, presence }))))
}

fn user_search(shard: &Shard, prefix: &str, limit: Option<u32>) -> Result<ReplyBody, StorageError> {
    let limit = limit.unwrap_or(limits::DEFAULT_USER_SEARCH_LIMIT);
    if !(1..=limits::MAX_USER_SEARCH_LIMIT).contains(&limit) {
        return Ok(refuse(
            ErrorCode::Invalid,
            format!("limit must be 1 to {}", limits::MAX_USER_SEARCH_LIMIT),
        ));
    }
    let prefix = prefix.to_ascii_lowercase();
    let valid = !prefix.is_empty()
        && prefix.len() <= *limits::USERNAME_BYTES.end()
        && prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    if !valid {
        return Ok(refuse(ErrorCode::Invalid, "prefix is 1 to 32 characters of a username"));
    }
    let store = &shard.shared.store;
    let mut users = Vec::new();
    for account in store.users_with_prefix(&prefix, limit as usize)? {
        let profile = store.profile(&account.user_id)?;
        users.push(public_profile(account.user_id, account.username, profile));
    }
    Ok(ReplyBody::Ok(OkBody::Users(UsersOk { users })))
}

fn friend_list(shard: &Shard, me: &UserId) -> Result<ReplyBody, StorageError> {
    let store = &shard.shared.store;
    let mut friends = Vec::new();
    for (user, state, since) in store.friends(me)? {
        let state = FriendState::from_byte(state);
        if state == FriendState::None {
            continue;
        }
        let username = store.user(&user)?.map(|u| u.username).unwrap_or_default();
        let presence = (state == FriendState::Friends).then(|| presence_of(shard, &user));
        friends.push(FriendInfo { user, username, state, since, presence });
    }
    Ok(ReplyBody::Ok(OkBody::Friends(FriendsOk { friends })))
}

fn presence_subscribe(
    shard: &Rc<Shard>,
    conn: &Rc<Conn>,
    me: &UserId,
    users: Vec<UserId>,
) -> Result<ReplyBody, StorageError> {
    let following = conn.following.borrow().len();
    let new = users.iter().filter(|u| !conn.following.borrow().contains(*u)).count();
    if users.len() > limits::MAX_PRESENCE_FOLLOWS || following + new > limits::MAX_PRESENCE_FOLLOWS {
        return Ok(refuse(
            ErrorCode::Invalid,
            format!("a socket follows at most {} users", limits::MAX_PRESENCE_FOLLOWS),
        ));
    }
    for user in &users {
        if !may_see_presence(shard, me, user)? {
            return Ok(refuse(
                ErrorCode::Forbidden,
                format!("{user}: presence is shown to friends and people sharing a room only"),
            ));
        }
    }
    let mut presence = Vec::with_capacity(users.len());
    for user in users {
        follow(shard, conn, &user);
        presence.push(presence_of(shard, &user));
    }
    Ok(ReplyBody::Ok(OkBody::PresenceList(PresenceListOk { presence })))
}

/// `sync`: the caller's rooms with last message and unread count, from durable storage
/// (thread-safe reads served from cache; answered on the connection's own shard). Unread
/// is `last_seq - read`, computed from the watermarks, never by scanning messages.
pub fn sync(shard: &Shard, user: &UserId) -> ReplyBody {
    let store = &shard.shared.store;
    let summarize = || -> Result<Vec<RoomSummary>, palaver_storage::StorageError> {
        let mut rooms = Vec::new();
        for room_id in store.user_rooms(user)? {
            let Some(record) = store.room(&room_id)? else { continue };
            let last_message = store.messages_before(&room_id, None, 1)?.pop();
            let last_seq = last_message.as_ref().map_or(0, |m| m.seq);
            let (delivered, read) = store.receipt(&room_id, user)?;
            let mentions = store.mention_count(user, &room_id, read)?;
            rooms.push(RoomSummary {
                room: RoomInfo { room_id, name: record.name, kind: record.kind, topic: record.topic },
                last_seq,
                last_message,
                delivered,
                read,
                unread: last_seq.saturating_sub(read),
                mentions,
            });
        }
        Ok(rooms)
    };
    match summarize() {
        Ok(rooms) => ReplyBody::Ok(OkBody::Sync(SyncOk { rooms })),
        Err(e) => {
            tracing::error!("sync: {e}");
            ReplyBody::Err(ErrorBody::new(ErrorCode::Internal, "storage failure"))
        }
    }
}

/// `room.list`: public rooms from storage, by room id, filtered by name.
pub fn room_list(
    shard: &Shard,
    query: Option<String>,
    after: Option<RoomId>,
    limit: Option<u32>,
) -> ReplyBody {
    let limit = limit.unwrap_or(palaver_protocol::limits::DEFAULT_HISTORY_LIMIT);
    if !(1..=palaver_protocol::limits::MAX_HISTORY_LIMIT).contains(&limit) {
        return ReplyBody::Err(ErrorBody::new(ErrorCode::Invalid, "limit must be 1 to 100"));
    }
    if query.as_ref().is_some_and(|q| q.chars().count() > palaver_protocol::limits::MAX_ROOM_NAME_CHARS) {
        return ReplyBody::Err(ErrorBody::new(ErrorCode::Invalid, "query is longer than a room name can be"));
    }
    match shard.shared.store.public_rooms(query.as_deref(), after.as_ref(), limit as usize) {
        Ok((records, next)) => {
            let rooms = records
                .into_iter()
                .map(|r| RoomInfo { room_id: r.room_id, name: r.name, kind: r.kind, topic: r.topic })
                .collect();
            ReplyBody::Ok(OkBody::RoomList(RoomListOk { results: rooms, next }))
        }
        Err(e) => {
            tracing::error!("room.list: {e}");
            ReplyBody::Err(ErrorBody::new(ErrorCode::Internal, "storage failure"))
        }
    }
}
