//! `POST /v1/account/delete`: a user deletes their account, given their password. Every
//! record about them goes in one write (sessions end, sockets close, on every node);
//! then their rooms are left — or deleted, those they own — through each room's owner,
//! as their own `leave` or `room.delete` would be, and the bytes of their files are
//! deleted. Their messages stay, under their user id.
//!
//! The deletion's write also lists the account as departing; leaving every room ends
//! that. A crash (or an owner that does not answer) in between only delays it: every
//! node resumes the departures it finds listed, at start and then every minute.

use std::net::IpAddr;
use std::rc::Rc;

use palaver_core::owner::RoomOp;
use palaver_protocol::{ErrorCode, ReplyBody, RoomId, RoomKind, RoomRole, UserId, Username};
use palaver_storage::StorageError;
use serde::Deserialize;
use serde_json::json;

use super::http::{Request, Response};
use super::routes::{bearer, close_ended_logins, refused_response, storage_failure};
use crate::clock::now_ms;
use crate::shard::Shard;

/// Longest the route waits for each room's owner to answer.
const ROOM_ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Confirmation {
    password: String,
}

/// Answers `POST /v1/account/delete` (its method checked by the caller).
pub async fn handle(shard: &Rc<Shard>, request: &Request, peer: IpAddr) -> Response {
    let shared = &shard.shared;
    let confirmation: Confirmation = match serde_json::from_slice(&request.body) {
        Ok(body) => body,
        Err(e) => return Response::error(ErrorCode::Invalid, &format!("invalid JSON body: {e}")),
    };
    let user = match bearer(shared, request) {
        Ok(caller) => caller.user,
        Err(response) => return response,
    };
    let account = match shared.store.user(&user) {
        Ok(Some(account)) => account,
        Ok(None) => return Response::error(ErrorCode::Unauthorized, "the token's user does not exist"),
        Err(e) => return storage_failure(&e),
    };
    let Ok(username) = Username::parse(&account.username) else {
        tracing::error!(user = %user, "stored username does not parse");
        return Response::error(ErrorCode::Internal, "storage failure");
    };
    // A stolen access token must not buy unlimited guesses at the password.
    if let Err(wait) = shared.sign_ins.admit(peer, Some(&username), now_ms()) {
        return Response::error_with_retry(ErrorCode::RateLimited, "too many attempts; slow down", wait);
    }
    let worker = shared.clone();
    let deleting = user.clone();
    let outcome = shared
        .lanes
        .passwords
        .run(move || -> Result<Option<Deleted>, StorageError> {
            if !crate::auth::verify_password(&confirmation.password, &account.password_hash) {
                worker.sign_ins.failed(peer, &username, now_ms());
                return Ok(None);
            }
            let (deletion, files) = worker.store.delete_account(&deleting, now_ms())?;
            Ok(Some(Deleted { deletion, files }))
        })
        .await;
    let deleted = match outcome {
        Ok(Ok(Some(deleted))) => deleted,
        Ok(Ok(None)) => return Response::error(ErrorCode::Forbidden, "the password is wrong"),
        Ok(Err(e)) => return storage_failure(&e),
        Err(refused) => return refused_response(refused),
    };
    if shared.config.test_crash_after_account_deletion {
        std::process::abort();
    }
    close_ended_logins(shard, &deleted.deletion);
    for file in &deleted.files {
        shared.files.delete_later(file);
    }
    let departure = match depart(shard, &user).await {
        Ok(departure) => departure,
        Err(e) => return storage_failure(&e),
    };
    Response::json(
        200,
        &json!({
            "rooms_left": departure.left,
            "rooms_deleted": departure.deleted,
            "rooms_failed": departure.failed,
            "files_deleted": deleted.files.len(),
        }),
    )
}

struct Deleted {
    deletion: palaver_storage::Write,
    files: Vec<String>,
}

/// What a departure did.
#[derive(Debug, Default)]
struct Departure {
    left: usize,
    deleted: usize,
    failed: usize,
}

/// Takes the deleted account `user` out of every room it is still in (each room's owner
/// deletes the group rooms it owned, and removes it from the others); once none is left,
/// its departure is recorded as done.
async fn depart(shard: &Rc<Shard>, user: &UserId) -> Result<Departure, StorageError> {
    let store = &shard.shared.store;
    let mut rooms = Vec::new();
    for room in store.user_rooms(user)? {
        let role = store.member_role(&room, user)?;
        let kind = store.room(&room)?.map(|r| r.kind);
        rooms.push((room, role, kind));
    }
    let mut departure = Departure::default();
    for (room, role, kind) in rooms {
        if role.is_none() || kind.is_none() {
            continue; // left already, or the room is gone
        }
        let owns_group = role == Some(RoomRole::Owner) && kind.is_some_and(|k| k != RoomKind::Direct);
        let op = if owns_group { RoomOp::DeleteRoom } else { RoomOp::Leave };
        match ask(shard, user, room.clone(), op).await {
            Ok(()) if owns_group => departure.deleted += 1,
            Ok(()) => departure.left += 1,
            Err(reason) => {
                tracing::warn!(user = %user, room = %room, "a deleted account's room was not left: {reason}");
                departure.failed += 1;
            }
        }
    }
    if departure.failed == 0 {
        let worker = shard.shared.clone();
        let done = user.clone();
        match shard.shared.lanes.accounts.run(move || worker.store.finish_departure(&done)).await {
            Ok(result) => result?,
            Err(_) => departure.failed += 1, // the lane is full: the next pass records it
        }
    }
    Ok(departure)
}

/// How long a listed departure is left to the route that started it before another
/// pass takes it up.
const DEPARTURE_GRACE_MS: u64 = 120_000;
/// How often a node looks for departures to resume.
const DEPARTURE_PASS_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
/// Most departures one pass resumes.
const DEPARTURES_PER_PASS: usize = 100;

/// Resumes the departures of deleted accounts that were interrupted (by a crash, or a
/// room owner that did not answer): once at start, whatever their age, then every
/// minute those older than two minutes. In a cluster every node may resume the same
/// one; leaving is idempotent, so the second finds nothing to do.
pub async fn resume_departures(shard: Rc<Shard>) {
    monoio::time::sleep(std::time::Duration::from_secs(2)).await;
    let mut grace = 0;
    loop {
        match shard.shared.store.pending_departures(DEPARTURES_PER_PASS) {
            Ok(pending) => {
                for (user, deleted_at) in pending {
                    if deleted_at.saturating_add(grace) > now_ms() {
                        continue;
                    }
                    match depart(&shard, &user).await {
                        Ok(departure) => tracing::info!(
                            user = %user,
                            left = departure.left,
                            deleted = departure.deleted,
                            failed = departure.failed,
                            "resumed a deleted account's departure from its rooms"
                        ),
                        Err(e) => tracing::warn!(user = %user, "cannot resume a departure now: {e}"),
                    }
                }
            }
            Err(e) => tracing::warn!("cannot read the pending departures now: {e}"),
        }
        grace = DEPARTURE_GRACE_MS;
        monoio::time::sleep(DEPARTURE_PASS_EVERY).await;
    }
}

/// Asks a room's owner to carry out `op` as `user`, and waits for the answer.
async fn ask(shard: &Rc<Shard>, user: &UserId, room: RoomId, op: RoomOp) -> Result<(), String> {
    let (asked_as, answered) = shard.ask_room(user.clone(), room, op);
    match monoio::time::timeout(ROOM_ANSWER_WAIT, answered.recv_async()).await {
        Ok(Ok(ReplyBody::Ok(_))) => Ok(()),
        Ok(Ok(ReplyBody::Err(e))) => Err(e.message),
        Ok(Err(_)) | Err(_) => {
            shard.route_waiters.borrow_mut().remove(&asked_as);
            Err("the room's owner did not answer in time".into())
        }
    }
}
