//! The ops a connection's own shard answers from storage, with no owner involved: reads
//! that need no single writer (`sync`, `room.list`, `invite.list`, `user.get`,
//! `user.search`, `friend.list`, `block.list`) and following presence.

use std::rc::Rc;

use palaver_core::notifications::{KEYWORD_COUNT_WINDOW, keyword_only_mentions, silenced};
use palaver_protocol::paging::{PageBuilder, PageSize, decode_cursor, encode_cursor, sizes};
use palaver_protocol::{
    BlockedOk, DeviceKeys, DevicesOk, Empty, ErrorBody, ErrorCode, FriendInfo, FriendState, FriendsOk,
    InviteInfo, InvitesOk, OkBody, Op, PresenceListOk, ProfileOk, ReplyBody, RoomId, RoomInfo, RoomKind,
    RoomListOk, RoomSummary, SearchHit, SearchOk, SearchOrder, SyncOk, UserId, UsersOk, limits,
};
use palaver_storage::StorageError;

use crate::blocking::Refused;

use crate::shard::people::{follow, own_profile, presence_of, public_profile, unfollow};
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
/// matching at once), queried on the search lane (never on the shard); hits from users
/// the searcher blocked are left out.
pub async fn search(shard: &Rc<Shard>, user: UserId, request: SearchRequest) -> ReplyBody {
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
    // From storage, not the socket's copy: a block answered a moment ago holds for the
    // next request whichever shard serves it (the socket's copy follows asynchronously).
    let blocked = match shard.shared.store.blocks(&user) {
        Ok(blocked) => blocked,
        Err(e) => return failed("search", &e),
    };
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
    let started = std::time::Instant::now();
    let found = shard.shared.lanes.search.run(move || index.search(&query)).await;
    shard.shared.metrics.search.observe(started.elapsed());
    match found {
        Err(Refused::Busy) => busy("too many searches are in progress; retry shortly"),
        Err(Refused::Closed) => refuse(ErrorCode::Unavailable, "server is shutting down"),
        Ok(Err(e)) if e.is_invalid_request() => refuse(ErrorCode::Invalid, e.to_string()),
        Ok(Err(e)) => {
            tracing::error!("search: {e}");
            refuse(ErrorCode::Internal, "search failed")
        }
        Ok(Ok(page)) => {
            let mut hits = Vec::with_capacity(page.hits.len());
            for h in page.hits.into_iter().filter(|h| !blocked.contains(&h.sender)) {
                // A hit in a thread names its root: one read of the message per hit.
                let thread = match shard.shared.store.message(&h.room, h.seq) {
                    Ok(message) => message.and_then(|m| m.thread),
                    Err(e) => return failed("search", &e),
                };
                hits.push(SearchHit {
                    room: h.room,
                    seq: h.seq,
                    ts: h.ts,
                    sender: h.sender,
                    snippet: h.snippet,
                    score: h.score,
                    thread,
                });
            }
            ReplyBody::Ok(OkBody::Search(SearchOk { hits, next: page.next }))
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
        Op::InviteList { limit, cursor } => invite_list(shard, me, limit, cursor),
        Op::UserGet { user } => user_get(shard, me, &user),
        Op::UserSearch { prefix, limit } => user_search(shard, &prefix, limit),
        Op::FriendList { limit, cursor } => friend_list(shard, me, limit, cursor),
        Op::BlockList { limit, cursor } => block_list(shard, me, limit, cursor),
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

/// Where a page of `list` starts and how many items it may hold, or the refusal.
fn page_of<K>(
    list: &'static str,
    size: PageSize,
    limit: Option<u32>,
    cursor: Option<String>,
    parse: impl FnOnce(&str) -> Option<K>,
) -> Result<(usize, Option<K>), ReplyBody> {
    let limit = size.of(limit).map_err(|e| refuse(ErrorCode::Invalid, e.to_string()))?;
    let after = match cursor {
        None => None,
        Some(cursor) => {
            let key = decode_cursor(list, &cursor).map_err(|e| refuse(ErrorCode::Invalid, e.to_string()))?;
            Some(
                parse(&key)
                    .ok_or_else(|| refuse(ErrorCode::Invalid, "cursor is not a `next` of this list"))?,
            )
        }
    };
    Ok((limit, after))
}

fn invite_list(
    shard: &Shard,
    me: &UserId,
    limit: Option<u32>,
    cursor: Option<String>,
) -> Result<ReplyBody, StorageError> {
    let (limit, after) =
        match page_of("invite.list", sizes::INVITES, limit, cursor, |k| RoomId::parse(k).ok()) {
            Ok(page) => page,
            Err(refusal) => return Ok(refusal),
        };
    let store = &shard.shared.store;
    let mut page = PageBuilder::new("invite.list", limit);
    let scanned = store.user_invites_after(me, after.as_ref(), limit + 1)?;
    let more = scanned.len() > limit;
    for (room, record) in scanned {
        // A deleted room's invitations lapse with it.
        let invite = store.room(&room)?.map(|info| InviteInfo {
            room: RoomInfo { room_id: info.room_id, name: info.name, kind: info.kind, topic: info.topic },
            by: record.by,
            invited_at: record.at,
        });
        if !page.offer(room.as_str(), invite) {
            break;
        }
    }
    let (invites, next) = page.finish(more);
    Ok(ReplyBody::Ok(OkBody::Invites(InvitesOk { invites, next })))
}

fn block_list(
    shard: &Shard,
    me: &UserId,
    limit: Option<u32>,
    cursor: Option<String>,
) -> Result<ReplyBody, StorageError> {
    let (limit, after) = match page_of("block.list", sizes::BLOCKS, limit, cursor, |k| UserId::parse(k).ok())
    {
        Ok(page) => page,
        Err(refusal) => return Ok(refusal),
    };
    let mut page = PageBuilder::new("block.list", limit);
    let scanned = shard.shared.store.blocks_after(me, after.as_ref(), limit + 1)?;
    let more = scanned.len() > limit;
    for user in scanned {
        if !page.offer(user.as_str(), Some(user.clone())) {
            break;
        }
    }
    let (blocked, next) = page.finish(more);
    Ok(ReplyBody::Ok(OkBody::Blocked(BlockedOk { blocked, next })))
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
    let friends = store.friend(me, other)?.is_some_and(|(s, _)| s == FriendState::Friends);
    Ok(friends || store.share_a_room(me, other)?)
}

fn user_get(shard: &Shard, me: &UserId, user: &UserId) -> Result<ReplyBody, StorageError> {
    let store = &shard.shared.store;
    let Some(account) = store.user(user)? else {
        return Ok(refuse(ErrorCode::NotFound, format!("no user {user}")));
    };
    let record = store.profile(user)?;
    // Only the user sees their own private settings.
    let profile = if me == user { own_profile(account, record) } else { public_profile(account, record) };
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
        users.push(public_profile(account, profile));
    }
    Ok(ReplyBody::Ok(OkBody::Users(UsersOk { users })))
}

fn friend_list(
    shard: &Shard,
    me: &UserId,
    limit: Option<u32>,
    cursor: Option<String>,
) -> Result<ReplyBody, StorageError> {
    let (limit, after) =
        match page_of("friend.list", sizes::FRIENDS, limit, cursor, |k| UserId::parse(k).ok()) {
            Ok(page) => page,
            Err(refusal) => return Ok(refusal),
        };
    let store = &shard.shared.store;
    let mut page = PageBuilder::new("friend.list", limit);
    let scanned = store.friends_after(me, after.as_ref(), limit + 1)?;
    let more = scanned.len() > limit;
    for (user, state, since) in scanned {
        let friend = if state == FriendState::None {
            None
        } else {
            let username = store.user(&user)?.map(|u| u.username).unwrap_or_default();
            let presence = (state == FriendState::Friends).then(|| presence_of(shard, &user));
            Some(FriendInfo { user: user.clone(), username, state, since, presence })
        };
        if !page.offer(user.as_str(), friend) {
            break;
        }
    }
    let (friends, next) = page.finish(more);
    Ok(ReplyBody::Ok(OkBody::Friends(FriendsOk { friends, next })))
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
/// is `last_seq - read` (counted from the history floor when retention removed older
/// messages) less the thread replies after it that were kept in their thread (an index of
/// those alone is counted), computed from the watermarks, never by scanning messages.
/// Mentions count 0 in rooms the user's notification settings silence; keyword hits are
/// counted among the newest unread messages (`KEYWORD_COUNT_WINDOW`).
pub fn sync(shard: &Shard, user: &UserId, limit: Option<u32>, cursor: Option<String>) -> ReplyBody {
    let (limit, after) = match page_of("sync", sizes::SYNC, limit, cursor, |k| RoomId::parse(k).ok()) {
        Ok(page) => page,
        Err(refusal) => return refusal,
    };
    let store = &shard.shared.store;
    let now_ms = crate::clock::now_ms();
    let summarize = || -> Result<ReplyBody, StorageError> {
        // A muted room, or one at level `none`, counts no mentions.
        let notifications = store.notifications(user)?;
        let mut page = PageBuilder::new("sync", limit);
        let scanned = store.user_rooms_after(user, after.as_ref(), limit + 1)?;
        let more = scanned.len() > limit;
        for room_id in scanned {
            let summary = match store.room(&room_id)? {
                None => None,
                Some(record) => {
                    let last_message = store.messages_before(&room_id, None, 1)?.pop();
                    // Retention may have removed messages (every one, even): they are
                    // neither the last seq's end nor unread.
                    let floor = store.history_floor(&room_id)?;
                    let last_seq = last_message.as_ref().map_or(floor - 1, |m| m.seq);
                    let (delivered, read) = store.receipt(&room_id, user)?;
                    let direct = record.kind == RoomKind::Direct;
                    let mentions = if silenced(&notifications, &room_id, direct, now_ms) {
                        0
                    } else if notifications.keywords.is_empty() || last_seq <= read {
                        store.mention_count(user, &room_id, read)?
                    } else {
                        let newest = store.messages_before(&room_id, None, KEYWORD_COUNT_WINDOW)?;
                        let unread = newest.iter().filter(|m| m.seq > read);
                        store.mention_count(user, &room_id, read)?
                            + keyword_only_mentions(&notifications, user, unread)
                    };
                    let counted_from = read.max(floor - 1);
                    let unread = match last_seq.saturating_sub(counted_from) {
                        0 => 0,
                        unread => unread.saturating_sub(store.thread_only_after(&room_id, counted_from)?),
                    };
                    Some(RoomSummary {
                        room: RoomInfo {
                            room_id: room_id.clone(),
                            name: record.name,
                            kind: record.kind,
                            topic: record.topic,
                        },
                        last_seq,
                        last_message,
                        delivered,
                        read,
                        unread,
                        mentions,
                    })
                }
            };
            if !page.offer(room_id.as_str(), summary) {
                break;
            }
        }
        let (rooms, next) = page.finish(more);
        Ok(ReplyBody::Ok(OkBody::Sync(SyncOk { rooms, next })))
    };
    summarize().unwrap_or_else(|e| failed("sync", &e))
}

/// `room.list`: public rooms from storage, by room id, filtered by name.
pub fn room_list(
    shard: &Shard,
    query: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
) -> ReplyBody {
    let (limit, after) =
        match page_of("room.list", sizes::ROOM_LIST, limit, cursor, |k| RoomId::parse(k).ok()) {
            Ok(page) => page,
            Err(refusal) => return refusal,
        };
    if query.as_ref().is_some_and(|q| q.chars().count() > palaver_protocol::limits::MAX_ROOM_NAME_CHARS) {
        return ReplyBody::Err(ErrorBody::new(ErrorCode::Invalid, "query is longer than a room name can be"));
    }
    match shard.shared.store.public_rooms(query.as_deref(), after.as_ref(), limit) {
        Ok((records, stopped_at)) => {
            // Room infos are bounded (name, topic): a page of `limit` never nears the
            // reply bound, but the builder keeps that true whatever the limits become.
            let mut page = PageBuilder::new("room.list", limit);
            for r in records {
                let key = r.room_id.as_str().to_owned();
                let info = RoomInfo { room_id: r.room_id, name: r.name, kind: r.kind, topic: r.topic };
                if !page.offer(&key, Some(info)) {
                    break;
                }
            }
            // Cut short by bytes, the page says where; otherwise storage does (its scan
            // may have stopped past rooms that did not match).
            let (results, cut) = page.finish(false);
            let next = cut.or_else(|| stopped_at.map(|room| encode_cursor("room.list", room.as_str())));
            ReplyBody::Ok(OkBody::RoomList(RoomListOk { results, next }))
        }
        Err(e) => failed("room.list", &e),
    }
}
