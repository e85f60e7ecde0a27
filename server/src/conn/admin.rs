//! The admin routes (`/v1/admin/…`): an admin's view of an account, suspending and
//! unsuspending, the audit log and the server's live counts. Every route takes an
//! admin's access token; every change is written with its audit entry in one write and,
//! in a cluster, goes through the shared log like any other.

use std::rc::Rc;
use std::sync::atomic::Ordering;

use palaver_core::admin::{self, AdminAction, AdminRefusal, AuditEntry};
use palaver_protocol::{ErrorCode, ReplyBody, RoomId, UserId};
use serde::Deserialize;
use serde_json::json;

use super::console::admin_caller;
use super::http::{Request, Response};
use super::routes::{close_ended_logins, misrouted, refused_response, storage_failure};
use super::server_api::KeyManager;
use crate::clock::now_ms;
use crate::shard::Shard;

/// Longest an admin route waits for a room owner's answer.
const ROOM_ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Most audit entries one page returns (and the default).
const MAX_AUDIT_PAGE: usize = 200;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SuspendBody {
    #[serde(default)]
    reason: Option<String>,
}

/// Where admins register webhooks.
const ADMIN_WEBHOOKS: &str = "/v1/admin/webhooks";

/// The methods of an admin route (`None`: no such route).
pub fn methods(path: &str) -> Option<&'static str> {
    match user_route(path) {
        Some((_, None)) => Some("GET"),
        Some((_, Some("suspend" | "unsuspend"))) => Some("POST"),
        Some(_) => None,
        None if room_delete_route(path).is_some() => Some("POST"),
        None if path.starts_with(ADMIN_WEBHOOKS) => {
            super::webhook_registrations::methods(path, ADMIN_WEBHOOKS)
        }
        None if path == "/v1/admin/api-keys" => Some("GET, POST"),
        None if super::server_api::revoke_route(path, "/v1/admin/api-keys").is_some() => Some("POST"),
        None => matches!(
            path,
            "/v1/admin/stats"
                | "/v1/admin/audit"
                | "/v1/admin/reports"
                | "/v1/admin/users"
                | "/v1/admin/rooms"
        )
        .then_some("GET"),
    }
}

/// `/v1/admin/users/{id}` and `/v1/admin/users/{id}/{action}`, split.
fn user_route(path: &str) -> Option<(&str, Option<&str>)> {
    let rest = path.strip_prefix("/v1/admin/users/")?;
    match rest.split_once('/') {
        Some((user, action)) => Some((user, Some(action))),
        None => Some((rest, None)),
    }
}

/// `/v1/admin/rooms/{room}/delete` → the room.
fn room_delete_route(path: &str) -> Option<&str> {
    path.strip_prefix("/v1/admin/rooms/")?.strip_suffix("/delete").filter(|room| !room.contains('/'))
}

/// Answers an admin route.
pub async fn handle(shard: &Rc<Shard>, request: &Request) -> Response {
    if let Some(response) = misrouted(request, methods(&request.path)) {
        return response;
    }
    let caller = match admin_caller(&shard.shared, request) {
        Ok(caller) => caller.user,
        Err(response) => return response,
    };
    match shard.shared.store.is_admin(&caller) {
        Ok(true) => {}
        Ok(false) => return refusal(&AdminRefusal::NotAdmin),
        Err(e) => return storage_failure(&e),
    }
    match (request.path.as_str(), user_route(&request.path)) {
        ("/v1/admin/stats", _) => stats(shard),
        ("/v1/admin/audit", _) => audit(shard, request),
        ("/v1/admin/reports", _) => super::reports::list(shard, request, None),
        ("/v1/admin/users", _) => accounts(shard, request),
        ("/v1/admin/api-keys", _) if request.method == "GET" => super::server_api::list_keys(&shard.shared),
        ("/v1/admin/api-keys", _) => {
            super::server_api::create_key(shard, request, KeyManager::Admin(caller)).await
        }
        (path, None) if let Some(id) = super::server_api::revoke_route(path, "/v1/admin/api-keys") => {
            super::server_api::revoke_key(shard, id.to_owned(), KeyManager::Admin(caller)).await
        }
        (path, None) if path.starts_with(ADMIN_WEBHOOKS) => {
            let registrar = super::webhook_registrations::Registrar::Operator(KeyManager::Admin(caller));
            super::webhook_registrations::handle(shard, request, ADMIN_WEBHOOKS, registrar).await
        }
        ("/v1/admin/rooms", _) => rooms(shard, request),
        (path, None) if let Some(room) = room_delete_route(path) => match RoomId::parse(room) {
            Ok(room) => delete_room(shard, caller, room).await,
            Err(_) => Response::error(ErrorCode::Invalid, "not a room id"),
        },
        (_, Some((user, action))) => {
            let Ok(user) = UserId::parse(user) else {
                return Response::error(ErrorCode::Invalid, "not a user id");
            };
            match action {
                None => account(shard, &user),
                Some("suspend") => suspend(shard, request, caller, user).await,
                _ => unsuspend(shard, caller, user).await,
            }
        }
        _ => Response::error(ErrorCode::NotFound, "no such admin route"),
    }
}

fn refusal(refusal: &AdminRefusal) -> Response {
    let code = match refusal {
        AdminRefusal::NotAdmin | AdminRefusal::TargetIsAdmin => ErrorCode::Forbidden,
        AdminRefusal::Unchanged(_) => ErrorCode::Conflict,
        _ => ErrorCode::Invalid,
    };
    Response::error(code, &refusal.to_string())
}

/// `GET /v1/admin/users/{id}`: the account as an admin sees it.
fn account(shard: &Shard, user: &UserId) -> Response {
    let store = &shard.shared.store;
    let read = || -> Result<Option<serde_json::Value>, palaver_storage::StorageError> {
        let Some(record) = store.user(user)? else { return Ok(None) };
        Ok(Some(json!({
            "user_id": record.user_id,
            "username": record.username,
            "created_ms": record.created_ms,
            "admin": store.is_admin(user)?,
            "suspended": store.suspension(user)?,
            "connections_on_this_node": shard.shared.user_connections.count(user),
        })))
    };
    match read() {
        Ok(Some(body)) => Response::json(200, &body),
        Ok(None) => Response::error(ErrorCode::NotFound, "no such user"),
        Err(e) => storage_failure(&e),
    }
}

/// Most accounts or rooms one page lists (and the default).
const MAX_LIST_PAGE: usize = 100;

/// A page size from `?limit=` (1 to `most`, default `most`).
fn page_limit(request: &Request, most: usize) -> Result<usize, Response> {
    match request.query_param("limit").map(|l| l.parse::<usize>()) {
        None => Ok(most),
        Some(Ok(limit)) if (1..=most).contains(&limit) => Ok(limit),
        Some(_) => Err(Response::error(ErrorCode::Invalid, &format!("limit must be 1 to {most}"))),
    }
}

/// `GET /v1/admin/users?prefix=P&after=NAME&limit=N`: accounts by username (those
/// starting with `prefix`, lower case), each as `GET /v1/admin/users/{id}` shows it.
fn accounts(shard: &Shard, request: &Request) -> Response {
    let limit = match page_limit(request, MAX_LIST_PAGE) {
        Ok(limit) => limit,
        Err(response) => return response,
    };
    let prefix = request.query_param("prefix").unwrap_or_default().to_lowercase();
    if prefix.len() > *palaver_protocol::limits::USERNAME_BYTES.end() {
        return Response::error(ErrorCode::Invalid, "prefix is longer than any username");
    }
    let after = request.query_param("after");
    let store = &shard.shared.store;
    let read = || -> Result<serde_json::Value, palaver_storage::StorageError> {
        let (users, next) = store.users_page(&prefix, after.as_deref(), limit)?;
        let mut listed = Vec::with_capacity(users.len());
        for record in users {
            listed.push(json!({
                "user_id": record.user_id,
                "username": record.username,
                "created_ms": record.created_ms,
                "admin": store.is_admin(&record.user_id)?,
                "suspended": store.suspension(&record.user_id)?,
                "connections_on_this_node": shard.shared.user_connections.count(&record.user_id),
            }));
        }
        Ok(json!({ "users": listed, "next": next }))
    };
    match read() {
        Ok(body) => Response::json(200, &body),
        Err(e) => storage_failure(&e),
    }
}

/// `GET /v1/admin/rooms?query=Q&after=ROOM&limit=N`: group rooms (public and private)
/// by id, those whose name contains `query`; a page scans at most 10,000 rooms, so a
/// short page with a `next` is not the end.
fn rooms(shard: &Shard, request: &Request) -> Response {
    let limit = match page_limit(request, MAX_LIST_PAGE) {
        Ok(limit) => limit,
        Err(response) => return response,
    };
    let after = match request.query_param("after").map(|r| RoomId::parse(&r)) {
        None => None,
        Some(Ok(room)) => Some(room),
        Some(Err(_)) => return Response::error(ErrorCode::Invalid, "after: not a room id"),
    };
    let query = request.query_param("query").filter(|q| !q.is_empty());
    let store = &shard.shared.store;
    let read = || -> Result<serde_json::Value, palaver_storage::StorageError> {
        let (rooms, next) = store.group_rooms(query.as_deref(), after.as_ref(), limit)?;
        let mut listed = Vec::with_capacity(rooms.len());
        for room in rooms {
            listed.push(json!({
                "room_id": room.room_id,
                "name": room.name,
                "kind": room.kind,
                "owner": room.owner,
                "created_ms": room.created_ms,
                "members": store.members(&room.room_id)?.len(),
                "last_seq": store.last_seq(&room.room_id)?,
            }));
        }
        Ok(json!({ "rooms": listed, "next": next }))
    };
    match read() {
        Ok(body) => Response::json(200, &body),
        Err(e) => storage_failure(&e),
    }
}

/// `POST /v1/admin/users/{id}/suspend`: logins refused, every session ended and its
/// sockets closed, on every node.
async fn suspend(shard: &Rc<Shard>, request: &Request, admin: UserId, user: UserId) -> Response {
    let body: SuspendBody = if request.body.iter().all(u8::is_ascii_whitespace) {
        SuspendBody::default()
    } else {
        match serde_json::from_slice(&request.body) {
            Ok(body) => body,
            Err(e) => return Response::error(ErrorCode::Invalid, &format!("invalid JSON body: {e}")),
        }
    };
    let store = &shard.shared.store;
    let checked = (|| {
        if store.user(&user)?.is_none() {
            return Ok(None);
        }
        let (target_is_admin, current) = (store.is_admin(&user)?, store.suspension(&user)?);
        Ok(Some(admin::suspend(
            &admin,
            true,
            target_is_admin,
            current.as_ref(),
            body.reason.as_deref(),
            now_ms(),
        )))
    })();
    let suspension = match checked {
        Ok(Some(Ok(suspension))) => suspension,
        Ok(Some(Err(refused))) => return refusal(&refused),
        Ok(None) => return Response::error(ErrorCode::NotFound, "no such user"),
        Err(e) => return storage_failure(&e),
    };
    let entry = AuditEntry {
        at: suspension.at,
        admin: Some(admin),
        api_key: None,
        action: AdminAction::Suspend { user: user.clone(), reason: suspension.reason.clone() },
    };
    let worker = shard.shared.clone();
    let answer = json!({ "user_id": user, "suspended": suspension });
    let outcome = shard
        .shared
        .lanes
        .accounts
        .run(move || worker.store.suspend(&user, suspension, crate::ids::audit_id(), entry))
        .await;
    match outcome {
        Ok(Ok(end)) => {
            close_ended_logins(shard, &end);
            Response::json(200, &answer)
        }
        Ok(Err(e)) => storage_failure(&e),
        Err(refused) => refused_response(refused),
    }
}

/// `POST /v1/admin/users/{id}/unsuspend`: the account may log in again.
async fn unsuspend(shard: &Rc<Shard>, admin: UserId, user: UserId) -> Response {
    let current = match shard.shared.store.suspension(&user) {
        Ok(current) => current,
        Err(e) => return storage_failure(&e),
    };
    if let Err(refused) = admin::unsuspend(true, current.as_ref()) {
        return refusal(&refused);
    }
    let entry = AuditEntry {
        at: now_ms(),
        admin: Some(admin),
        api_key: None,
        action: AdminAction::Unsuspend { user: user.clone() },
    };
    let worker = shard.shared.clone();
    let answer = json!({ "user_id": user, "suspended": null });
    let outcome = shard
        .shared
        .lanes
        .accounts
        .run(move || worker.store.unsuspend(&user, crate::ids::audit_id(), entry))
        .await;
    match outcome {
        Ok(Ok(())) => Response::json(200, &answer),
        Ok(Err(e)) => storage_failure(&e),
        Err(refused) => refused_response(refused),
    }
}

/// `POST /v1/admin/rooms/{room}/delete`: the room's owner deletes it as for its owner
/// (every member removed, a `room_deleted` notice, subscriptions ended), on the admin's
/// authority. The audit entry is written first: the log never lacks a deletion.
async fn delete_room(shard: &Rc<Shard>, admin: UserId, room: RoomId) -> Response {
    match shard.shared.store.room(&room) {
        Ok(Some(_)) => {}
        Ok(None) => return Response::error(ErrorCode::NotFound, "no such room"),
        Err(e) => return storage_failure(&e),
    }
    let entry = AuditEntry {
        at: now_ms(),
        admin: Some(admin.clone()),
        api_key: None,
        action: AdminAction::DeleteRoom { room: room.clone() },
    };
    let worker = shard.shared.clone();
    let audited = shard
        .shared
        .lanes
        .accounts
        .run(move || worker.store.append_audit(crate::ids::audit_id(), entry))
        .await;
    match audited {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return storage_failure(&e),
        Err(refused) => return refused_response(refused),
    }
    let (asked_as, answered) =
        shard.ask_room(admin, room.clone(), palaver_core::owner::RoomOp::DeleteRoomByAdmin);
    let answer = monoio::time::timeout(ROOM_ANSWER_WAIT, answered.recv_async()).await;
    match answer {
        Ok(Ok(ReplyBody::Ok(_))) => Response::json(200, &json!({ "room_id": room, "deleted": true })),
        Ok(Ok(ReplyBody::Err(e))) => Response::error(e.code, &e.message),
        Ok(Err(_)) | Err(_) => {
            shard.route_waiters.borrow_mut().remove(&asked_as);
            Response::error(
                ErrorCode::Unavailable,
                "the room's owner did not answer in time; the deletion may still happen",
            )
        }
    }
}

/// `GET /v1/admin/audit?after=ID&limit=N`: the audit log, oldest first.
fn audit(shard: &Shard, request: &Request) -> Response {
    let limit = match request.query_param("limit").map(|l| l.parse::<usize>()) {
        None => MAX_AUDIT_PAGE,
        Some(Ok(limit)) if (1..=MAX_AUDIT_PAGE).contains(&limit) => limit,
        Some(_) => {
            return Response::error(ErrorCode::Invalid, &format!("limit must be 1 to {MAX_AUDIT_PAGE}"));
        }
    };
    let after = request.query_param("after");
    match shard.shared.store.audit_log(after.as_deref(), limit) {
        Ok(entries) => {
            let next = (entries.len() == limit).then(|| entries.last().map(|(id, _)| id.clone())).flatten();
            let entries: Vec<serde_json::Value> = entries
                .into_iter()
                .map(|(id, entry)| {
                    let mut value = serde_json::to_value(entry).unwrap_or_default();
                    value["id"] = json!(id);
                    value
                })
                .collect();
            Response::json(200, &json!({ "entries": entries, "next": next }))
        }
        Err(e) => storage_failure(&e),
    }
}

/// `GET /v1/admin/stats`: this node's live counts.
fn stats(shard: &Shard) -> Response {
    let shared = &shard.shared;
    let metrics = &shared.metrics;
    let mut body = json!({
        "connections": metrics.connections.load(Ordering::Relaxed).max(0),
        "connections_total": metrics.connections_total.load(Ordering::Relaxed),
        "open_sockets": shared.sockets.taken(),
        "messages_stored": metrics.messages_stored.load(Ordering::Relaxed),
        "deliveries": metrics.deliveries.load(Ordering::Relaxed),
        "http_requests": metrics.http_requests.load(Ordering::Relaxed),
        "shards": shared.mesh.len(),
        "storage_writable": !shared.store.is_poisoned(),
    });
    if let Some(cluster) = &shared.cluster {
        body["cluster"] = json!({
            "node": cluster.node,
            "live_nodes": cluster.live_nodes.load(Ordering::Relaxed),
        });
    }
    Response::json(200, &body)
}
