//! `POST /v1/account/delete`: a user deletes their account, given their password. Every
//! record about them goes in one write (sessions end, sockets close, on every node);
//! then their rooms are left — or deleted, those they own — through each room's owner,
//! as their own `leave` or `room.delete` would be, and the bytes of their files are
//! deleted. Their messages stay, under their user id.

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
            // Read before the deletion, which removes the memberships' index.
            let mut rooms = Vec::new();
            for room in worker.store.user_rooms(&deleting)? {
                let role = worker.store.member_role(&room, &deleting)?;
                let kind = worker.store.room(&room)?.map(|r| r.kind);
                rooms.push((room, role, kind));
            }
            let (deletion, files) = worker.store.delete_account(&deleting)?;
            Ok(Some(Deleted { deletion, files, rooms }))
        })
        .await;
    let deleted = match outcome {
        Ok(Ok(Some(deleted))) => deleted,
        Ok(Ok(None)) => return Response::error(ErrorCode::Forbidden, "the password is wrong"),
        Ok(Err(e)) => return storage_failure(&e),
        Err(refused) => return refused_response(refused),
    };
    close_ended_logins(shard, &deleted.deletion);
    for file in &deleted.files {
        shared.files.delete_later(file);
    }
    let (mut left, mut removed, mut failed) = (0, 0, 0);
    for (room, role, kind) in deleted.rooms {
        let owns_group = role == Some(RoomRole::Owner) && kind.is_some_and(|k| k != RoomKind::Direct);
        let op = if owns_group { RoomOp::DeleteRoom } else { RoomOp::Leave };
        match ask(shard, &user, room.clone(), op).await {
            Ok(()) if owns_group => removed += 1,
            Ok(()) => left += 1,
            Err(reason) => {
                tracing::warn!(user = %user, room = %room, "a deleted account's room was not left: {reason}");
                failed += 1;
            }
        }
    }
    Response::json(
        200,
        &json!({ "rooms_left": left, "rooms_deleted": removed, "rooms_failed": failed, "files_deleted": deleted.files.len() }),
    )
}

struct Deleted {
    deletion: palaver_storage::Write,
    files: Vec<String>,
    rooms: Vec<(RoomId, Option<RoomRole>, Option<RoomKind>)>,
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
