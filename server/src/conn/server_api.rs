//! The server API (`/v1/server/…`): what a product's backend calls with an API key
//! (`Authorization: Bearer pvk_…`) — create users and mint their access tokens, act in
//! rooms as a user (the same ops, rules, idempotency and fan-out as a socket's), post
//! announcements as the system, manage API keys — and the admin role's key management
//! (`/v1/admin/api-keys…`). Each request is checked against the key's scopes and limited
//! per key; every key made or revoked is written with its audit entry in one write.

use std::rc::Rc;

use palaver_core::Announcing;
use palaver_core::admin::{AdminAction, AuditEntry};
use palaver_core::api_keys::{self, ApiKeyRecord, ApiKeyRefusal, Scope};
use palaver_core::owner::{NewRoom, RoomOp};
use palaver_core::route::Route;
use palaver_protocol::{ClientMsgId, Codec, ErrorCode, ReplyBody, RoomId, ServerFrame, UserId};
use rand::Rng as _;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::http::{Request, Response};
use super::routes::{
    account_refused, check_password, close_ended_logins, create_account, new_username, parse_json,
    refused_response, start_token_family, storage_failure,
};
use crate::clock::now_ms;
use crate::mesh::RoomAction;
use crate::shard::Shard;
use crate::shared::Shared;

/// What an account made without a password holds for its password hash: no password
/// matches it, so it signs in only with tokens its backend mints.
const NO_PASSWORD: &str = "!no-password";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    username: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    bot: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewApiKey {
    name: String,
    #[serde(default)]
    scopes: Vec<String>,
    /// The bot account the key signs sockets in as.
    #[serde(default)]
    bot: Option<String>,
}

/// `POST /v1/server/rooms/{room}/messages`: an announcement to post as the system.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAnnouncement {
    cid: String,
    text: String,
    #[serde(default)]
    reply_to: Option<u64>,
}

/// Who manages a key: an admin (with a token or the console) or another API key.
pub enum KeyManager {
    /// An admin.
    Admin(UserId),
    /// An API key with the `admin` scope, by id.
    Key(String),
}

impl KeyManager {
    pub(super) fn audit(&self, action: AdminAction) -> AuditEntry {
        let (admin, api_key) = match self {
            KeyManager::Admin(user) => (Some(user.clone()), None),
            KeyManager::Key(id) => (None, Some(id.clone())),
        };
        AuditEntry { at: now_ms(), admin, api_key, action }
    }

    pub(super) fn user(&self) -> Option<UserId> {
        match self {
            KeyManager::Admin(user) => Some(user.clone()),
            KeyManager::Key(_) => None,
        }
    }
}

/// The API key a request carries, checked for `needed` and against the key's limit.
pub fn key_caller(shared: &Shared, request: &Request, needed: Scope) -> Result<ApiKeyRecord, Response> {
    let Some(key) = request.bearer().map(|k| k.trim_matches([' ', '\t'])) else {
        return Err(Response::error(
            ErrorCode::Unauthorized,
            "Authorization: Bearer pvk_… (an API key) required",
        ));
    };
    let Some((key_id, secret)) = api_keys::split(key) else {
        return Err(refusal(&ApiKeyRefusal::Invalid));
    };
    let record = match shared.store.api_key(key_id) {
        Ok(Some(record)) => record,
        Ok(None) => return Err(refusal(&ApiKeyRefusal::Invalid)),
        Err(e) => return Err(storage_failure(&e)),
    };
    let presented: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    api_keys::admit(&record, &presented, needed).map_err(|e| refusal(&e))?;
    if let Err(wait) = shared.spam.api_request(key_id, now_ms()) {
        return Err(Response::error_with_retry(
            ErrorCode::RateLimited,
            "too many requests with this API key",
            wait,
        ));
    }
    Ok(record)
}

/// The request's API key when it has one of `scopes` (the first scope's refusal if not).
fn key_with_any(shared: &Shared, request: &Request, scopes: &[Scope]) -> Result<ApiKeyRecord, Response> {
    let Some((first, others)) = scopes.split_first() else {
        return Err(refusal(&ApiKeyRefusal::Invalid));
    };
    match key_caller(shared, request, *first) {
        Err(refused) if refused.status == 403 && !others.is_empty() => {
            key_with_any(shared, request, others).map_err(|_| refused)
        }
        answer => answer,
    }
}

fn refusal(refused: &ApiKeyRefusal) -> Response {
    let code = match refused {
        ApiKeyRefusal::Invalid | ApiKeyRefusal::Revoked => ErrorCode::Unauthorized,
        ApiKeyRefusal::MissingScope(_) => ErrorCode::Forbidden,
        ApiKeyRefusal::RevokedAlready => ErrorCode::Conflict,
        ApiKeyRefusal::NotABotKey => ErrorCode::Unauthorized,
        _ => ErrorCode::Invalid,
    };
    Response::error(code, &refused.to_string())
}

/// `/v1/server/users/{id}` and `/v1/server/users/{id}/{action}`, split.
fn user_route(path: &str) -> Option<(&str, Option<&str>)> {
    let rest = path.strip_prefix("/v1/server/users/")?;
    match rest.split_once('/') {
        Some((user, action)) => Some((user, Some(action))),
        None => Some((rest, None)),
    }
}

/// `/v1/server/rooms/{room}/messages` → the room (as given: parsed by its route).
fn room_messages_route(path: &str) -> Option<&str> {
    path.strip_prefix("/v1/server/rooms/")?.strip_suffix("/messages").filter(|room| !room.contains('/'))
}

/// `…/api-keys/{id}/revoke` → the id.
pub fn revoke_route<'p>(path: &'p str, base: &str) -> Option<&'p str> {
    path.strip_prefix(base)?.strip_prefix('/')?.strip_suffix("/revoke").filter(|id| !id.contains('/'))
}

/// Where operators' backends register webhooks.
const SERVER_WEBHOOKS: &str = "/v1/server/webhooks";

/// The method of a server API route (`None`: no such route).
pub fn methods(path: &str) -> Option<&'static str> {
    match path {
        "/v1/server/users" => Some("POST"),
        "/v1/server/api-keys" => Some("GET, POST"),
        p if p.starts_with(SERVER_WEBHOOKS) => super::webhook_registrations::methods(p, SERVER_WEBHOOKS),
        p if revoke_route(p, "/v1/server/api-keys").is_some() => Some("POST"),
        p if room_messages_route(p).is_some() => Some("POST"),
        p => match user_route(p) {
            Some((_, None)) => Some("GET"),
            Some((_, Some("tokens" | "ops"))) => Some("POST"),
            _ => None,
        },
    }
}

/// Answers a server API route.
pub async fn handle(shard: &Rc<Shard>, request: &Request) -> Response {
    if let Some(response) = super::routes::misrouted(request, methods(&request.path)) {
        return response;
    }
    let shared = &shard.shared;
    let path = request.path.as_str();
    if path == "/v1/server/api-keys" || revoke_route(path, "/v1/server/api-keys").is_some() {
        let key = match key_caller(shared, request, Scope::Admin) {
            Ok(key) => key,
            Err(response) => return response,
        };
        let manager = KeyManager::Key(key.key_id);
        return match (request.method.as_str(), revoke_route(path, "/v1/server/api-keys")) {
            ("GET", _) => list_keys(shared),
            (_, Some(id)) => revoke_key(shard, id.to_owned(), manager).await,
            _ => create_key(shard, request, manager).await,
        };
    }
    if path.starts_with(SERVER_WEBHOOKS) {
        let key = match key_caller(shared, request, Scope::Admin) {
            Ok(key) => key,
            Err(response) => return response,
        };
        let registrar = super::webhook_registrations::Registrar::Operator(KeyManager::Key(key.key_id));
        return super::webhook_registrations::handle(shard, request, SERVER_WEBHOOKS, registrar).await;
    }
    if let Some((user, Some("ops"))) = user_route(path) {
        return act_as(shard, request, user).await;
    }
    if let Some(room) = room_messages_route(path) {
        return announce(shard, request, room).await;
    }
    if let Err(response) = key_caller(shared, request, Scope::Users) {
        return response;
    }
    match user_route(path) {
        None => create_user(shard, request).await,
        Some((user, action)) => {
            let Ok(user) = UserId::parse(user) else {
                return Response::error(ErrorCode::Invalid, "not a user id");
            };
            match action {
                None => user_view(shared, &user),
                _ => mint_token(shard, &user).await,
            }
        }
    }
}

/// `POST /v1/server/users` `{"username","password"?}`: a new account. Without a password
/// it signs in only with tokens minted for it.
async fn create_user(shard: &Rc<Shard>, request: &Request) -> Response {
    let body: NewUser = match parse_json(request) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let username = match new_username(&body.username) {
        Ok(name) => name,
        Err(response) => return response,
    };
    if let Some(password) = &body.password
        && let Err(response) = check_password(password)
    {
        return response;
    }
    let worker = shard.shared.clone();
    let (name, bot) = (username.clone(), body.bot);
    let outcome = shard
        .shared
        .lanes
        .passwords
        .run(move || {
            let hash = match &body.password {
                Some(password) => crate::auth::hash_password(password).map_err(|e| {
                    palaver_storage::StorageError::Corrupt { partition: "password", detail: e.to_string() }
                })?,
                None => NO_PASSWORD.to_owned(),
            };
            create_account(&worker, &name, hash, body.bot)
        })
        .await;
    match outcome {
        Ok(Ok(user_id)) => {
            Response::json(201, &json!({ "user_id": user_id, "username": username.as_str(), "bot": bot }))
        }
        Ok(Err(e)) => account_refused(&e),
        Err(refused) => refused_response(refused),
    }
}

/// `GET /v1/server/users/{id}`: the account.
fn user_view(shared: &Shared, user: &UserId) -> Response {
    let store = &shared.store;
    let read = || -> Result<Option<serde_json::Value>, palaver_storage::StorageError> {
        let Some(record) = store.user(user)? else { return Ok(None) };
        Ok(Some(json!({
            "user_id": record.user_id,
            "username": record.username,
            "created_ms": record.created_ms,
            "has_password": record.password_hash != NO_PASSWORD,
            "bot": record.bot,
            "suspended": store.suspension(user)?,
        })))
    };
    match read() {
        Ok(Some(body)) => Response::json(200, &body),
        Ok(None) => Response::error(ErrorCode::NotFound, "no such user"),
        Err(e) => storage_failure(&e),
    }
}

/// `POST /v1/server/users/{id}/tokens`: an access token for the user, in a login of its
/// own (ended like any other: logout, log out everywhere, a suspension).
async fn mint_token(shard: &Rc<Shard>, user: &UserId) -> Response {
    let worker = shard.shared.clone();
    let user = user.clone();
    let outcome = shard
        .shared
        .lanes
        .accounts
        .run(move || -> Result<Result<String, Response>, palaver_storage::StorageError> {
            if worker.store.user(&user)?.is_none() {
                return Ok(Err(Response::error(ErrorCode::NotFound, "no such user")));
            }
            if worker.store.suspension(&user)?.is_some() {
                return Ok(Err(Response::error(ErrorCode::Forbidden, "this account is suspended")));
            }
            let epoch = worker.store.session_epoch(&user)?.epoch;
            let (access, _refresh) = start_token_family(&worker, &user, epoch)?;
            Ok(Ok(access))
        })
        .await;
    match outcome {
        Ok(Ok(Ok(access))) => Response::json(
            200,
            &json!({ "access_token": access, "expires_in": shard.shared.tokens.access_ttl_secs() }),
        ),
        Ok(Ok(Err(refused))) => refused,
        Ok(Err(e)) => storage_failure(&e),
        Err(refused) => refused_response(refused),
    }
}

/// A new key (random id and secret) as `spec` says, made by `by` (`None`: an operator).
pub fn mint_key(spec: api_keys::KeySpec<'_>, by: Option<UserId>) -> Result<api_keys::NewKey, ApiKeyRefusal> {
    let (id, secret): ([u8; 8], [u8; 32]) = (rand::rng().random(), rand::rng().random());
    let sha256 = |bytes: &[u8]| -> [u8; 32] { Sha256::digest(bytes).into() };
    api_keys::mint(id, secret, spec, by, now_ms(), sha256)
}

/// Longest a user's op waits for its room's owner.
const OP_ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// `POST /v1/server/users/{id}/ops` with one op as a socket would send it (`{"op":"send",
/// "room":…,"cid":…,"text":…}`): carried out as that user, through the room's owner like
/// the user's own, and answered `{"ok":…}` or with the op's error.
async fn act_as(shard: &Rc<Shard>, request: &Request, user: &str) -> Response {
    let Ok(user) = UserId::parse(user) else {
        return Response::error(ErrorCode::Invalid, "not a user id");
    };
    // The frame as a socket sends it, so every field is checked as it would be there.
    let mut frame: serde_json::Map<String, serde_json::Value> = match parse_json(request) {
        Ok(frame) => frame,
        Err(response) => return response,
    };
    if frame.contains_key("id") {
        return Response::error(ErrorCode::Invalid, "unknown field `id`: give the op alone");
    }
    frame.insert("id".into(), json!(1));
    let op = match Codec::Json.decode_client(&serde_json::to_vec(&frame).unwrap_or_default()) {
        Ok(decoded) => decoded.op,
        Err(e) => return Response::error(ErrorCode::Invalid, &e.message),
    };
    let needs = api_keys::scopes_for_op(op.name());
    if needs.is_empty() {
        let message = format!("`{}` is not available through the server API (it needs a socket)", op.name());
        return Response::error(ErrorCode::Invalid, &message);
    }
    if let Err(response) = key_with_any(&shard.shared, request, needs) {
        return response;
    }
    match (shard.shared.store.user(&user), shard.shared.store.suspension(&user)) {
        (Ok(None), _) => return Response::error(ErrorCode::NotFound, "no such user"),
        (_, Ok(Some(_))) => return Response::error(ErrorCode::Forbidden, "this account is suspended"),
        (Err(e), _) | (_, Err(e)) => return storage_failure(&e),
        (Ok(Some(_)), Ok(None)) => {}
    }
    let action = match palaver_core::route::route(op) {
        Route::CreateRoom(request) => RoomAction::Create(NewRoom { id: crate::ids::room_id(), request }),
        Route::OpenDirect(peer) if peer == user => {
            return Response::error(ErrorCode::Invalid, "a direct room needs another user");
        }
        Route::OpenDirect(peer) => {
            RoomAction::OpenDirect { room: crate::ids::dm_room_id(&user, &peer), peer }
        }
        Route::Room(room, op) => RoomAction::On { room, op },
        Route::Local(_) | Route::People(..) => {
            return Response::error(ErrorCode::Invalid, "this op is not available through the server API");
        }
    };
    owners_answer(shard, user, action).await
}

/// `POST /v1/server/rooms/{room}/messages` `{"cid","text","reply_to"?}` (`publish`): an
/// announcement posted as the system ([`UserId::system`], no account: the message does
/// not say which key posted it), decided by the room's owner like a member's send: the
/// same text rules, the next seq, fanned out to the room's sockets and stored, and once
/// per `cid` in the room (a retry is answered with the first post's seq).
async fn announce(shard: &Rc<Shard>, request: &Request, room: &str) -> Response {
    if let Err(response) = key_caller(&shard.shared, request, Scope::Publish) {
        return response;
    }
    let Ok(room) = RoomId::parse(room) else {
        return Response::error(ErrorCode::Invalid, "not a room id");
    };
    let body: NewAnnouncement = match parse_json(request) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let cid = match ClientMsgId::parse(&body.cid) {
        Ok(cid) => cid,
        Err(e) => return Response::error(ErrorCode::Invalid, &e.to_string()),
    };
    let announcing = Announcing { cid, text: body.text, reply_to: body.reply_to };
    let action = RoomAction::On { room, op: RoomOp::Announce(Box::new(announcing)) };
    owners_answer(shard, UserId::system(), action).await
}

/// Sends `action` to its room's owner as `user` and answers with what the owner said,
/// as the op's answer (`200 {"ok":…}`) or its error.
async fn owners_answer(shard: &Rc<Shard>, user: UserId, action: RoomAction) -> Response {
    let (asked_as, answered) = shard.ask(user, action);
    match monoio::time::timeout(OP_ANSWER_WAIT, answered.recv_async()).await {
        Ok(Ok(ReplyBody::Ok(ok))) => {
            let frame = ServerFrame::Reply { re: 0, body: ReplyBody::Ok(ok) };
            match Codec::Json
                .encode_server(&frame)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            {
                Some(mut answer) => {
                    if let Some(fields) = answer.as_object_mut() {
                        fields.remove("re");
                    }
                    Response::json(200, &answer)
                }
                None => Response::error(ErrorCode::Internal, "the answer could not be encoded"),
            }
        }
        Ok(Ok(ReplyBody::Err(e))) => match e.retry_after_ms {
            Some(wait) => Response::error_with_retry(e.code, &e.message, wait),
            None => Response::error(e.code, &e.message),
        },
        Ok(Err(_)) | Err(_) => {
            shard.route_waiters.borrow_mut().remove(&asked_as);
            Response::error(
                ErrorCode::Unavailable,
                "the room's owner did not answer in time; the op may still happen",
            )
        }
    }
}

/// Every API key, revoked ones too (never a secret, nor its hash).
pub fn list_keys(shared: &Shared) -> Response {
    match shared.store.api_keys() {
        Ok(keys) => {
            Response::json(200, &json!({ "api_keys": keys.iter().map(public_view).collect::<Vec<_>>() }))
        }
        Err(e) => storage_failure(&e),
    }
}

fn public_view(key: &ApiKeyRecord) -> serde_json::Value {
    json!({
        "key_id": key.key_id,
        "name": key.name,
        "scopes": key.scopes,
        "created_ms": key.created_ms,
        "created_by": key.created_by,
        "revoked_ms": key.revoked_ms,
        "bot": key.bot,
    })
}

/// `POST …/api-keys` `{"name","scopes"}`: a new key, shown once in the answer.
pub async fn create_key(shard: &Rc<Shard>, request: &Request, manager: KeyManager) -> Response {
    let body: NewApiKey = match parse_json(request) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let Some(scopes) = body.scopes.iter().map(|s| Scope::parse(s)).collect::<Option<Vec<_>>>() else {
        return refusal(&ApiKeyRefusal::BadScopes);
    };
    let bot = match &body.bot {
        None => None,
        Some(id) => match UserId::parse(id).map(|id| (shard.shared.store.user(&id), id)) {
            Err(_) => return Response::error(ErrorCode::Invalid, "bot: not a user id"),
            Ok((Ok(Some(account)), id)) => Some((id, account.bot)),
            Ok((Ok(None), _)) => return Response::error(ErrorCode::NotFound, "no such user"),
            Ok((Err(e), _)) => return storage_failure(&e),
        },
    };
    let spec = api_keys::KeySpec { name: &body.name, scopes: &scopes, bot };
    let new = match mint_key(spec, manager.user()) {
        Ok(new) => new,
        Err(refused) => return refusal(&refused),
    };
    let entry = manager.audit(AdminAction::CreateApiKey {
        key_id: new.record.key_id.clone(),
        name: new.record.name.clone(),
        scopes: new.record.scopes.clone(),
    });
    let answer = json!({ "key": new.key, "api_key": public_view(&new.record) });
    let worker = shard.shared.clone();
    let record = new.record;
    let outcome = shard
        .shared
        .lanes
        .accounts
        .run(move || worker.store.put_api_key(record, crate::ids::audit_id(), entry))
        .await;
    match outcome {
        Ok(Ok(())) => Response::json(201, &answer),
        Ok(Err(e)) => storage_failure(&e),
        Err(refused) => refused_response(refused),
    }
}

/// `POST …/api-keys/{id}/revoke`: the key is refused from now on.
pub async fn revoke_key(shard: &Rc<Shard>, key_id: String, manager: KeyManager) -> Response {
    let record = match shard.shared.store.api_key(&key_id) {
        Ok(Some(record)) => record,
        Ok(None) => return Response::error(ErrorCode::NotFound, "no such API key"),
        Err(e) => return storage_failure(&e),
    };
    let revoked = match api_keys::revoke(&record, now_ms()) {
        Ok(revoked) => revoked,
        Err(refused) => return refusal(&refused),
    };
    let entry = manager.audit(AdminAction::RevokeApiKey { key_id });
    let answer = json!({ "api_key": public_view(&revoked) });
    // A bot's sockets signed in with the key close with it.
    let ended = palaver_storage::Write::PutApiKey(revoked.clone());
    let worker = shard.shared.clone();
    let outcome = shard
        .shared
        .lanes
        .accounts
        .run(move || worker.store.put_api_key(revoked, crate::ids::audit_id(), entry))
        .await;
    match outcome {
        Ok(Ok(())) => {
            close_ended_logins(shard, &ended);
            Response::json(200, &answer)
        }
        Ok(Err(e)) => storage_failure(&e),
        Err(refused) => refused_response(refused),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_recognised_exactly() {
        assert_eq!(methods("/v1/server/users"), Some("POST"));
        assert_eq!(methods("/v1/server/users/u_abc"), Some("GET"));
        assert_eq!(methods("/v1/server/users/u_abc/tokens"), Some("POST"));
        assert_eq!(methods("/v1/server/users/u_abc/ops"), Some("POST"));
        assert_eq!(methods("/v1/server/users/u_abc/other"), None);
        assert_eq!(methods("/v1/server/api-keys"), Some("GET, POST"));
        assert_eq!(methods("/v1/server/api-keys/0123/revoke"), Some("POST"));
        assert_eq!(methods("/v1/server/api-keys/a/b/revoke"), None);
        assert_eq!(methods("/v1/server/nothing"), None);
        assert_eq!(methods("/v1/server/rooms/r_abc/messages"), Some("POST"));
        assert_eq!(methods("/v1/server/rooms/r_abc/other"), None);
        assert_eq!(methods("/v1/server/rooms/a/b/messages"), None);
        assert_eq!(revoke_route("/v1/admin/api-keys/k1/revoke", "/v1/admin/api-keys"), Some("k1"));
    }
}
