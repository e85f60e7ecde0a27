//! The REST routes: accounts, tokens and logins, health, metrics. Anything slow (argon2,
//! synchronous account writes) runs on a blocking lane, never on the shard; sign-ins and
//! password changes are throttled per address and per account and address before any
//! hashing.

use std::net::IpAddr;
use std::rc::Rc;

use palaver_core::logins::{EndReason, SessionEnd};
use palaver_protocol::{ErrorCode, UserId, Username, limits};
use palaver_storage::{RefreshRecord, Rotation, StorageError, UserRecord, Write};
use serde::Deserialize;
use serde_json::json;

use super::http::{Request, Response};
use crate::auth::{hash_password, hash_refresh_token, verify_password_or_dummy};
use crate::blocking::Refused;
use crate::clock::now_ms;
use crate::shard::Shard;
use crate::shared::Shared;

/// Refresh tokens live 30 days.
pub(super) const REFRESH_TTL_MS: u64 = 30 * 24 * 3600 * 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Credentials {
    username: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshBody {
    refresh_token: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    current_password: String,
    new_password: String,
}

/// Why this server should not be sent new clients now, if it should not: it is draining,
/// its storage refuses writes, or (in a cluster) it hears no live node yet. `/healthz`
/// answers whether the process is alive; this, whether to route traffic to it.
fn not_ready(shard: &Rc<Shard>) -> Option<&'static str> {
    if shard.draining.get() {
        return Some("shutting down");
    }
    if shard.shared.store.is_poisoned() {
        return Some("storage is refusing writes");
    }
    if let Some(cluster) = &shard.shared.cluster {
        if cluster.live_nodes.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            return Some("not yet joined to the cluster");
        }
        if !cluster.serving.load(std::sync::atomic::Ordering::Relaxed) {
            return Some("out of touch with the cluster (no NATS connection)");
        }
    }
    None
}

/// The methods of a route, as an `Allow` header lists them (`None`: no such route).
pub fn methods(path: &str, web_page: bool) -> Option<&'static str> {
    match path {
        "/v1/auth/register"
        | "/v1/auth/login"
        | "/v1/auth/refresh"
        | "/v1/auth/logout"
        | "/v1/auth/logout-all"
        | "/v1/auth/password"
        | "/v1/files" => Some("POST"),
        "/healthz"
        | "/readyz"
        | "/metrics"
        | "/v1/replica/digest"
        | "/v1/ws"
        | "/v1/push/vapid-key"
        | "/v1/webtransport/certificate-hashes" => Some("GET"),
        p if p.starts_with("/v1/files/") => Some("GET"),
        p if p.starts_with("/v1/admin/") => super::admin::methods(p),
        p if p.starts_with("/v1/server/") => super::server_api::methods(p),
        "/v1/account/delete" => Some("POST"),
        p if p.starts_with("/v1/account/") => super::account_export::methods(p),
        p if super::room_export::route(p).is_some() => Some("GET"),
        p if let Some((_, base)) = super::webhook_registrations::room_route(p) => {
            super::webhook_registrations::methods(p, &base)
        }
        p if p.starts_with("/v1/reports") || p.starts_with("/v1/rooms/") => super::reports::methods(p),
        p if web_page && super::web_page::asset(p).is_some() => Some("GET"),
        _ => None,
    }
}

/// Answers a REST request (everything but the WebSocket upgrade).
pub async fn handle(shard: &Rc<Shard>, request: &Request, peer: IpAddr) -> Response {
    crate::metrics::Metrics::inc(&shard.shared.metrics.http_requests);
    let shared = shard.shared.clone();
    if shared.config.admin_console && super::console::is_console_path(&request.path) {
        return super::console::handle(shard, request, peer).await;
    }
    if shared.config.web_page
        && let Some(page) = super::web_page::asset(&request.path)
    {
        return if request.method == "GET" { page } else { method_not_allowed("GET") };
    }
    match (request.method.as_str(), request.path.as_str()) {
        ("POST", "/v1/auth/register") => register(&shard.shared, request, peer).await,
        ("POST", "/v1/auth/login") => login(&shard.shared, request, peer).await,
        ("POST", "/v1/auth/refresh") => refresh(shard, request).await,
        ("POST", "/v1/auth/logout") => logout(shard, request, EndReason::LoggedOut).await,
        ("POST", "/v1/auth/logout-all") => logout(shard, request, EndReason::LoggedOutEverywhere).await,
        ("POST", "/v1/auth/password") => change_password(shard, request, peer).await,
        ("POST", "/v1/account/delete") => super::account_deletion::handle(shard, request, peer).await,
        (_, "/v1/account/delete") => method_not_allowed("POST"),
        (_, path) if path.starts_with("/v1/admin/") => super::admin::handle(shard, request).await,
        (_, path) if path.starts_with("/v1/server/") => super::server_api::handle(shard, request).await,
        (method, path) if let Some(allowed) = super::account_export::methods(path) => {
            if method == allowed {
                super::account_export::handle(shard, request).await
            } else {
                method_not_allowed(allowed)
            }
        }
        ("GET", path) if super::room_export::route(path).is_some() => {
            super::room_export::handle(shard, request).await
        }
        (_, path) if super::room_export::route(path).is_some() => method_not_allowed("GET"),
        (_, path) if let Some((room, base)) = super::webhook_registrations::room_route(path) => {
            if let Some(response) = misrouted(request, super::webhook_registrations::methods(path, &base)) {
                return response;
            }
            match super::webhook_registrations::room_owner(shard, request, room) {
                Ok(owner) => super::webhook_registrations::handle(shard, request, &base, owner).await,
                Err(response) => response,
            }
        }
        (method, path) if let Some(allowed) = super::reports::methods(path) => {
            if method == allowed {
                super::reports::handle(shard, request).await
            } else {
                method_not_allowed(allowed)
            }
        }
        ("GET", "/healthz") => {
            if shared.store.is_poisoned() {
                Response::error(ErrorCode::Unavailable, "storage is refusing writes")
            } else {
                Response::json(200, &json!({"status": "ok"}))
            }
        }
        ("GET", "/v1/push/vapid-key") => match &shared.vapid {
            Some(key) => Response::json(200, &json!({ "public_key": key.public_key_base64url() })),
            None => Response::error(
                ErrorCode::NotFound,
                "Web Push is off on this node: a cluster node pushes only with --vapid-key-file",
            ),
        },
        ("GET", "/v1/webtransport/certificate-hashes") => webtransport_certificate_hashes(&shared),
        (_, "/v1/webtransport/certificate-hashes") => method_not_allowed("GET"),
        ("GET", "/readyz") => match not_ready(shard) {
            Some(reason) => Response::error(ErrorCode::Unavailable, reason),
            None => Response::json(200, &json!({"status": "ready"})),
        },
        ("GET", "/metrics") => {
            let format = crate::metrics::Format::from_accept(request.header("accept"));
            let mut out = crate::metrics::Exposition::new(format);
            shared.metrics.render(&mut out);
            out.gauge(
                "palaver_open_sockets",
                "Client TCP sockets open now (HTTP and WebSocket).",
                shared.sockets.taken() as f64,
            );
            out.gauge(
                "palaver_socket_budget",
                "Client TCP sockets allowed at once: the descriptor limit less storage's and search's reserve.",
                shared.sockets.max() as f64,
            );
            out.info(
                "palaver_durability",
                "When a write is acknowledged (`--durability`): fsync after its journal sync, buffered before it (synced within 1 s).",
                &[(
                    "mode",
                    match shared.store.durability() {
                        palaver_storage::Durability::Fsync => "fsync",
                        palaver_storage::Durability::Buffered => "buffered",
                    },
                )],
            );
            out.gauge(
                "palaver_search_indexing",
                "1 when stored messages are indexed for search, 0 with `--disable-search`.",
                if shared.search.is_some() { 1.0 } else { 0.0 },
            );
            out.counter(
                "palaver_storage_reopens",
                "Times the store reopened its database to recover from a transient failure.",
                shared.store.reopens(),
            );
            shared.lanes.render_metrics(&mut out);
            if let Some(cluster) = &shared.cluster {
                cluster.render_metrics(&mut out);
            }
            Response {
                status: 200,
                content_type: format.content_type(),
                headers: Vec::new(),
                body: out.finish().into_bytes(),
            }
        }
        (
            _,
            "/v1/auth/register"
            | "/v1/auth/login"
            | "/v1/auth/refresh"
            | "/v1/auth/logout"
            | "/v1/auth/logout-all"
            | "/v1/auth/password",
        ) => method_not_allowed("POST"),
        ("GET", "/v1/replica/digest") => replica_digest(&shared, request).await,
        (_, "/healthz" | "/readyz" | "/metrics" | "/v1/replica/digest" | "/v1/push/vapid-key") => {
            method_not_allowed("GET")
        }
        ("GET", "/v1/ws") => {
            Response::error_with_status(426, ErrorCode::Invalid, "this endpoint needs a WebSocket upgrade")
        }
        _ => {
            Response::error(ErrorCode::NotFound, &format!("no route for {} {}", request.method, request.path))
        }
    }
}

/// How a page reaches the WebTransport endpoint: the QUIC port, the session path and,
/// with the development certificate, the SHA-256 hashes to pass as the browser's
/// `serverCertificateHashes` (the presented certificate's first, then the next one).
fn webtransport_certificate_hashes(shared: &crate::shared::Shared) -> Response {
    let port = shared.quic_port.load(std::sync::atomic::Ordering::Relaxed);
    let path = crate::webtransport::SESSION_PATH;
    match &shared.browser_certificates {
        Some(certificates) => {
            let hashes: Vec<_> = certificates
                .published(crate::clock::now_ms() / 1000)
                .iter()
                .map(|h| {
                    let hex: String = h.sha256.iter().map(|b| format!("{b:02x}")).collect();
                    json!({ "algorithm": "sha-256", "value": hex, "not_after_ms": h.not_after * 1000 })
                })
                .collect();
            Response::json(
                200,
                &json!({ "port": port, "path": path, "development": true, "certificate_hashes": hashes }),
            )
        }
        None => Response::json(
            200,
            &json!({
                "port": port,
                "path": path,
                "development": false,
                "certificate_hashes": [],
                "note": "the QUIC port presents the operator's certificate: browsers check it against web PKI",
            }),
        ),
    }
}

/// Most messages one digest request covers (the read runs on a shard).
const DIGEST_MAX_MESSAGES: usize = 10_000;

/// `GET /v1/replica/digest?room=…&from=…&limit=…`: a digest of this node's copy of a
/// room's messages, so an operator can compare the replicas of a cluster range by range.
/// The read (up to 10,000 messages) runs on the background scans lane, not the shard.
async fn replica_digest(shared: &crate::shared::Shared, request: &Request) -> Response {
    let Some(room) = request.query_param("room") else {
        return Response::error(ErrorCode::Invalid, "give the room: /v1/replica/digest?room=r_…");
    };
    let Ok(room) = palaver_protocol::RoomId::parse(&room) else {
        return Response::error(ErrorCode::Invalid, "room: not a room id");
    };
    let number = |name: &str, default: u64| match request.query_param(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| Response::error(ErrorCode::Invalid, &format!("{name}: not a number"))),
    };
    let (from, limit) = match (number("from", 1), number("limit", DIGEST_MAX_MESSAGES as u64)) {
        (Ok(from), Ok(limit)) => (from, (limit as usize).clamp(1, DIGEST_MAX_MESSAGES)),
        (Err(response), _) | (_, Err(response)) => return response,
    };
    let (store, read) = (shared.store.clone(), room.clone());
    let digest = match shared.lanes.scans.run(move || store.room_digest(&read, from, limit)).await {
        Ok(Ok(digest)) => digest,
        Ok(Err(e)) => return Response::error(ErrorCode::Unavailable, &format!("cannot read the room: {e}")),
        Err(Refused::Busy) => {
            return Response::error(ErrorCode::RateLimited, "too many scans are waiting; retry shortly");
        }
        Err(Refused::Closed) => return Response::error(ErrorCode::Unavailable, "server is shutting down"),
    };
    let next = (digest.messages as usize == limit).then(|| digest.last_seq.map(|s| s + 1)).flatten();
    let node = shared.cluster.as_ref().map(|c| c.node.clone());
    let log_position = shared.cluster.as_ref().map(|c| c.seen());
    Response::json(
        200,
        &json!({
            "room": room,
            "node": node,
            "log_position": log_position,
            "from": from,
            "messages": digest.messages,
            "first_seq": digest.first_seq,
            "last_seq": digest.last_seq,
            "sha256": digest.sha256,
            "next": next,
        }),
    )
}

/// The answer for a request to a sub-router's path: `404` when `allowed` (the path's
/// methods, `None` when it has none) is `None`, `405` when the method is not among them.
pub(super) fn misrouted(request: &Request, allowed: Option<&'static str>) -> Option<Response> {
    let Some(allowed) = allowed else {
        let message = format!("no route for {} {}", request.method, request.path);
        return Some(Response::error(ErrorCode::NotFound, &message));
    };
    (!allowed.split(", ").any(|method| method == request.method)).then(|| method_not_allowed(allowed))
}

pub(super) fn method_not_allowed(allow: &'static str) -> Response {
    let mut response =
        Response::error_with_status(405, ErrorCode::Invalid, &format!("method not allowed; use {allow}"));
    response.headers.push(("allow", allow.to_owned()));
    response
}

pub(super) fn parse_json<'a, T: Deserialize<'a>>(request: &'a Request) -> Result<T, Response> {
    serde_json::from_slice(&request.body)
        .map_err(|e| Response::error(ErrorCode::Invalid, &format!("invalid JSON body: {e}")))
}

pub(super) fn check_password(password: &str) -> Result<(), Response> {
    if limits::PASSWORD_BYTES.contains(&password.len()) {
        Ok(())
    } else {
        Err(Response::error(ErrorCode::Invalid, "password must be 8 to 128 bytes"))
    }
}

/// The answer when a blocking lane did not run the work.
pub fn refused_response(refused: Refused) -> Response {
    match refused {
        Refused::Busy => Response::error_with_retry(
            ErrorCode::Unavailable,
            "the server is busy with work of this kind; retry shortly",
            super::http::BUSY_RETRY_MS,
        ),
        Refused::Closed => Response::error(ErrorCode::Unavailable, "server is shutting down"),
    }
}

pub(super) fn throttled(retry_after_ms: u64) -> Response {
    Response::error_with_retry(ErrorCode::RateLimited, "too many sign-in attempts; slow down", retry_after_ms)
}

async fn register(shared: &std::sync::Arc<Shared>, request: &Request, peer: IpAddr) -> Response {
    let credentials: Credentials = match parse_json(request) {
        Ok(c) => c,
        Err(response) => return response,
    };
    let username = match new_username(&credentials.username) {
        Ok(name) => name,
        Err(response) => return response,
    };
    if let Err(response) = check_password(&credentials.password) {
        return response;
    }
    if let Err(wait) = shared.sign_ins.admit(peer, None, now_ms()) {
        return throttled(wait);
    }
    let worker = shared.clone();
    let outcome = shared
        .lanes
        .passwords
        .run(move || -> Result<(UserId, String, String), StorageError> {
            let hash = hash_password(&credentials.password)
                .map_err(|e| StorageError::Corrupt { partition: "password", detail: e.to_string() })?;
            let user_id = create_account(&worker, &username, hash, false)?;
            let (access, refresh) = start_token_family(&worker, &user_id, 0)?;
            Ok((user_id, access, refresh))
        })
        .await;
    match outcome {
        Ok(Ok((user_id, access, refresh))) => tokens_response(shared, 201, Some(&user_id), &access, &refresh),
        Ok(Err(e)) => account_refused(&e),
        Err(refused) => refused_response(refused),
    }
}

/// A username a new account may take (a valid one, not reserved), or the answer why not.
pub(super) fn new_username(name: &str) -> Result<Username, Response> {
    let username = Username::parse(name).map_err(|e| Response::error(ErrorCode::Invalid, &e.to_string()))?;
    if limits::RESERVED_USERNAMES.contains(&username.as_str()) {
        let message = format!("username {username} is reserved: @{username} mentions many members");
        return Err(Response::error(ErrorCode::Invalid, &message));
    }
    Ok(username)
}

/// Stores a new account (in a cluster, through the username's fence in the log).
pub(super) fn create_account(
    shared: &Shared,
    username: &Username,
    password_hash: String,
    bot: bool,
) -> Result<UserId, StorageError> {
    let user_id = crate::ids::user_id();
    let record = UserRecord {
        user_id: user_id.clone(),
        username: username.to_string(),
        password_hash,
        created_ms: now_ms(),
        bot,
    };
    shared.store.create_user(&record)?;
    Ok(user_id)
}

/// The answer to an account that could not be stored.
pub(super) fn account_refused(e: &StorageError) -> Response {
    match e {
        StorageError::UsernameTaken => {
            Response::error(ErrorCode::Conflict, "username is taken, or looks too much like one that is")
        }
        e => storage_failure(e),
    }
}

/// Why a login with well-formed credentials is refused.
enum SignInRefused {
    WrongCredentials,
    Suspended,
    NotAdmin,
}

/// Who may sign in where: anyone at `/v1/auth/login`, admins only at the admin console.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum SignInFor {
    Chat,
    AdminConsole,
}

/// A login started by a sign-in: its user, access token and first refresh token.
pub(super) struct NewLogin {
    pub user: UserId,
    pub access: String,
    pub refresh: String,
}

async fn login(shared: &std::sync::Arc<Shared>, request: &Request, peer: IpAddr) -> Response {
    let credentials: Credentials = match parse_json(request) {
        Ok(c) => c,
        Err(response) => return response,
    };
    match sign_in(shared, credentials, peer, SignInFor::Chat).await {
        Ok(login) => tokens_response(shared, 200, Some(&login.user), &login.access, &login.refresh),
        Err(response) => response,
    }
}

/// Checks a username and password (throttled, hashed on the passwords lane) and starts
/// a login; the error is the answer to give.
pub(super) async fn sign_in(
    shared: &std::sync::Arc<Shared>,
    credentials: Credentials,
    peer: IpAddr,
    purpose: SignInFor,
) -> Result<NewLogin, Response> {
    // A name that cannot exist still costs the attempt (and a dummy hash, below): the
    // answer must not tell names apart.
    let account = Username::parse(&credentials.username).ok();
    if let Err(wait) = shared.sign_ins.admit(peer, account.as_ref(), now_ms()) {
        return Err(throttled(wait));
    }
    let worker = shared.clone();
    let outcome = shared
        .lanes
        .passwords
        .run(move || -> Result<Result<NewLogin, SignInRefused>, StorageError> {
            let user = match &account {
                Some(name) => worker.store.user_by_name(name)?,
                None => None,
            };
            let valid = verify_password_or_dummy(
                &credentials.password,
                user.as_ref().map(|u| u.password_hash.as_str()),
            );
            match user {
                // Told only to whoever knows the password.
                Some(user) if valid && worker.store.suspension(&user.user_id)?.is_some() => {
                    Ok(Err(SignInRefused::Suspended))
                }
                Some(user)
                    if valid
                        && purpose == SignInFor::AdminConsole
                        && !worker.store.is_admin(&user.user_id)? =>
                {
                    Ok(Err(SignInRefused::NotAdmin))
                }
                Some(user) if valid => {
                    let epoch = worker.store.session_epoch(&user.user_id)?.epoch;
                    let (access, refresh) = start_token_family(&worker, &user.user_id, epoch)?;
                    Ok(Ok(NewLogin { user: user.user_id, access, refresh }))
                }
                _ => {
                    if let Some(name) = &account {
                        worker.sign_ins.failed(peer, name, now_ms());
                    }
                    Ok(Err(SignInRefused::WrongCredentials))
                }
            }
        })
        .await;
    match outcome {
        Ok(Ok(Ok(login))) => Ok(login),
        Ok(Ok(Err(SignInRefused::WrongCredentials))) => {
            Err(Response::error(ErrorCode::Unauthorized, "wrong username or password"))
        }
        Ok(Ok(Err(SignInRefused::Suspended))) => {
            Err(Response::error(ErrorCode::Forbidden, "this account is suspended"))
        }
        Ok(Ok(Err(SignInRefused::NotAdmin))) => {
            Err(Response::error(ErrorCode::Forbidden, "this needs the admin role"))
        }
        Ok(Err(e)) => Err(storage_failure(&e)),
        Err(refused) => Err(refused_response(refused)),
    }
}

async fn refresh(shard: &Rc<Shard>, request: &Request) -> Response {
    let body: RefreshBody = match parse_json(request) {
        Ok(b) => b,
        Err(response) => return response,
    };
    match rotate_refresh_token(shard, body.refresh_token).await {
        Ok(login) => tokens_response(&shard.shared, 200, None, &login.access, &login.refresh),
        Err(response) => response,
    }
}

/// Trades a refresh token for the next one and a new access token of the same login; a
/// replayed token ends its whole login (its sockets closed too).
pub(super) async fn rotate_refresh_token(
    shard: &Rc<Shard>,
    refresh_token: String,
) -> Result<NewLogin, Response> {
    let worker = shard.shared.clone();
    let outcome = shard
        .shared
        .lanes
        .accounts
        .run(move || -> Result<Result<NewLogin, Option<Write>>, StorageError> {
            let new_refresh = crate::ids::secret_token();
            let now = now_ms();
            let rotation = worker.store.rotate_refresh(
                &hash_refresh_token(&refresh_token),
                &hash_refresh_token(&new_refresh),
                now,
                now + REFRESH_TTL_MS,
            )?;
            let old = match rotation {
                Rotation::Rotated(old) => old,
                Rotation::Refused => return Ok(Err(None)),
                Rotation::Replayed(end) => return Ok(Err(Some(*end))),
            };
            let access = worker
                .tokens
                .issue(&old.user_id, &old.family, old.epoch, now / 1000)
                .map_err(|e| StorageError::Corrupt { partition: "token", detail: e.to_string() })?;
            Ok(Ok(NewLogin { user: old.user_id, access, refresh: new_refresh }))
        })
        .await;
    match outcome {
        Ok(Ok(Ok(login))) => Ok(login),
        Ok(Ok(Err(replayed))) => {
            if let Some(end) = replayed {
                close_ended_logins(shard, &end);
            }
            Err(Response::error(ErrorCode::Unauthorized, "refresh token is invalid, expired or already used"))
        }
        Ok(Err(e)) => Err(storage_failure(&e)),
        Err(refused) => Err(refused_response(refused)),
    }
}

/// The caller of a route that takes an access token (`Authorization: Bearer`), checked
/// as a socket's `auth` is.
pub(super) fn bearer(shared: &Shared, request: &Request) -> Result<crate::auth::Verified, Response> {
    let token = request
        .bearer()
        .ok_or_else(|| Response::error(ErrorCode::Unauthorized, "Authorization: Bearer required"))?;
    crate::auth::authenticate(&shared.tokens, &shared.store, token).map_err(|e| match e {
        crate::auth::AuthError::Unavailable => Response::error(ErrorCode::Unavailable, &e.to_string()),
        _ => Response::error(ErrorCode::Unauthorized, &e.to_string()),
    })
}

/// Checks that a route taking no fields got none (no body, or `{}`).
fn no_fields(request: &Request) -> Result<(), Response> {
    if request.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let fields: serde_json::Map<String, serde_json::Value> = parse_json(request)?;
    match fields.keys().next() {
        None => Ok(()),
        Some(field) => Err(Response::error(
            ErrorCode::Invalid,
            &format!("unknown field `{field}`: this route takes none"),
        )),
    }
}

/// Tells every shard of this node to close the sockets of logins a write ended (other
/// nodes close theirs when their replica applies it).
pub(super) fn close_ended_logins(shard: &Shard, write: &Write) {
    if let Some(end) = SessionEnd::of_write(write) {
        let end = std::sync::Arc::new(end);
        shard.mesh().broadcast(|| crate::mesh::ShardMsg::LoginsEnded(end.clone()));
    }
}

/// `POST /v1/auth/logout` (the caller's login) and `/v1/auth/logout-all` (every login of
/// the caller's): refresh and access tokens of the ended logins are refused from now on,
/// and their sockets are closed.
async fn logout(shard: &Rc<Shard>, request: &Request, reason: EndReason) -> Response {
    let caller = match no_fields(request).and_then(|()| bearer(&shard.shared, request)) {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    let worker = shard.shared.clone();
    let outcome = shard
        .shared
        .lanes
        .accounts
        .run(move || {
            let store = &worker.store;
            match reason {
                EndReason::LoggedOut => store.end_login(&caller.user, &caller.login.id, reason, now_ms()),
                _ => store.end_all_logins(&caller.user, reason, now_ms()),
            }
        })
        .await;
    match outcome {
        Ok(Ok(end)) => {
            close_ended_logins(shard, &end);
            Response::json(200, &json!({}))
        }
        Ok(Err(e)) => storage_failure(&e),
        Err(refused) => refused_response(refused),
    }
}

/// `POST /v1/auth/password`: a new password, given the current one. Every login of the
/// user ends (the caller's too); the answer is a new login's tokens.
async fn change_password(shard: &Rc<Shard>, request: &Request, peer: IpAddr) -> Response {
    let shared = &shard.shared;
    let change: PasswordChange = match parse_json(request) {
        Ok(change) => change,
        Err(response) => return response,
    };
    let caller = match bearer(shared, request) {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    if let Err(response) = check_password(&change.new_password) {
        return response;
    }
    let account = match shared.store.user(&caller.user) {
        Ok(Some(account)) => account,
        Ok(None) => return Response::error(ErrorCode::Unauthorized, "the token's user does not exist"),
        Err(e) => return storage_failure(&e),
    };
    let Ok(username) = Username::parse(&account.username) else {
        tracing::error!(user = %caller.user, "stored username does not parse");
        return Response::error(ErrorCode::Internal, "storage failure");
    };
    // A stolen access token must not buy unlimited guesses at the password.
    if let Err(wait) = shared.sign_ins.admit(peer, Some(&username), now_ms()) {
        return throttled(wait);
    }
    let worker = shared.clone();
    let outcome = shared
        .lanes
        .passwords
        .run(move || -> Result<Option<(Write, String, String)>, StorageError> {
            if !crate::auth::verify_password(&change.current_password, &account.password_hash) {
                worker.sign_ins.failed(peer, &username, now_ms());
                return Ok(None);
            }
            let hash = hash_password(&change.new_password)
                .map_err(|e| StorageError::Corrupt { partition: "password", detail: e.to_string() })?;
            let end = worker.store.change_password(&caller.user, hash, now_ms())?;
            let epoch = match &end {
                Write::EndAllLogins { standing, .. } => standing.epoch,
                _ => worker.store.session_epoch(&caller.user)?.epoch,
            };
            let (access, refresh) = start_token_family(&worker, &caller.user, epoch)?;
            Ok(Some((end, access, refresh)))
        })
        .await;
    match outcome {
        Ok(Ok(Some((end, access, refresh)))) => {
            close_ended_logins(shard, &end);
            tokens_response(shared, 200, None, &access, &refresh)
        }
        Ok(Ok(None)) => Response::error(ErrorCode::Forbidden, "the current password is wrong"),
        Ok(Err(e)) => storage_failure(&e),
        Err(refused) => refused_response(refused),
    }
}

/// A new login in session `epoch`: a fresh token family with its first refresh token and
/// an access token.
pub(super) fn start_token_family(
    shared: &Shared,
    user: &UserId,
    epoch: u64,
) -> Result<(String, String), StorageError> {
    let family = crate::ids::secret_token();
    let refresh = crate::ids::secret_token();
    let now = now_ms();
    let record = RefreshRecord {
        user_id: user.clone(),
        family: family.clone(),
        expires_ms: now + REFRESH_TTL_MS,
        rotated: false,
        epoch,
    };
    shared.store.put_refresh(&hash_refresh_token(&refresh), &record)?;
    let access = shared
        .tokens
        .issue(user, &family, epoch, now / 1000)
        .map_err(|e| StorageError::Corrupt { partition: "token", detail: e.to_string() })?;
    Ok((access, refresh))
}

fn tokens_response(
    shared: &Shared,
    status: u16,
    user: Option<&UserId>,
    access: &str,
    refresh: &str,
) -> Response {
    let mut body = json!({
        "access_token": access,
        "refresh_token": refresh,
        "expires_in": shared.tokens.access_ttl_secs(),
    });
    if let Some(user) = user {
        body["user_id"] = json!(user.as_str());
    }
    Response::json(status, &body)
}

pub(super) fn storage_failure(e: &StorageError) -> Response {
    match e {
        e if e.is_unavailable() => Response::error(ErrorCode::Unavailable, "storage is refusing writes"),
        _ => {
            tracing::error!("account storage: {e}");
            Response::error(ErrorCode::Internal, "storage failure")
        }
    }
}
