//! Webhook registration routes. Operators register any target for any rooms, as admins
//! (`/v1/admin/webhooks…`) or with an `admin`-scoped API key (`/v1/server/webhooks…`); a
//! room's owner registers `https://` targets on public addresses for their room
//! (`/v1/rooms/{room}/webhooks…`). Under each base: `GET` lists, `POST` registers (the
//! secret is in that answer only), and `POST {base}/{id}/rotate|enable|disable|delete`
//! changes one. An operator's changes are written with their audit entry.

use std::rc::Rc;

use palaver_core::admin::AdminAction;
use palaver_core::webhooks::{
    self, DEFAULT_ROTATION_GRACE_MS, MAX_PER_ROOM, MAX_ROTATION_GRACE_MS, Registrant, RegistrationRefusal,
    SigningSecret, WebhookRecord,
};
use palaver_protocol::{ErrorCode, RoomId, RoomRole, UserId};
use serde::Deserialize;
use serde_json::json;

use super::http::{Request, Response};
use super::routes::{refused_response, storage_failure};
use super::server_api::KeyManager;
use crate::clock::now_ms;
use crate::shard::Shard;
use crate::webhooks::signing::Secret;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewWebhook {
    url: String,
    events: Vec<String>,
    #[serde(default)]
    rooms: Option<Vec<String>>,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Rotation {
    #[serde(default)]
    grace_secs: Option<u64>,
}

/// Who registers: what they may reach and which registrations they see.
pub enum Registrar {
    /// An operator: an admin, or an API key with the `admin` scope.
    Operator(KeyManager),
    /// A room's owner, for that room.
    RoomOwner {
        /// The owner.
        user: UserId,
        /// The room.
        room: RoomId,
    },
}

impl Registrar {
    fn registrant(&self) -> Registrant {
        match self {
            Registrar::Operator(_) => Registrant::Operator,
            Registrar::RoomOwner { .. } => Registrant::Restricted,
        }
    }

    /// Whether this registrar may see and change `hook`.
    fn governs(&self, hook: &WebhookRecord) -> bool {
        match self {
            Registrar::Operator(_) => true,
            Registrar::RoomOwner { room, .. } => {
                hook.registrant == Registrant::Restricted
                    && hook.rooms.as_deref().is_some_and(|rooms| rooms == std::slice::from_ref(room))
            }
        }
    }
}

/// A path under `base`: `None` when it is not one; `Some(None)` for the base itself,
/// `Some(Some((id, action)))` for an action on one registration.
fn split<'p>(path: &'p str, base: &str) -> Option<Option<(&'p str, &'p str)>> {
    let rest = path.strip_prefix(base)?;
    if rest.is_empty() {
        return Some(None);
    }
    let (id, action) = rest.strip_prefix('/')?.split_once('/')?;
    (!id.is_empty() && !action.contains('/')).then_some(Some((id, action)))
}

/// The methods of a webhook route under `base` (`None`: not one).
pub fn methods(path: &str, base: &str) -> Option<&'static str> {
    match split(path, base)? {
        None => Some("GET, POST"),
        Some((_, "rotate" | "enable" | "disable" | "delete")) => Some("POST"),
        Some(_) => None,
    }
}

/// `/v1/rooms/{room}/webhooks…` → the room and the base.
pub fn room_route(path: &str) -> Option<(&str, String)> {
    let rest = path.strip_prefix("/v1/rooms/")?;
    let (room, after) = rest.split_once('/')?;
    let base = format!("/v1/rooms/{room}/webhooks");
    (after == "webhooks" || after.starts_with("webhooks/")).then_some((room, base))
}

/// The owner of `room` calling, or why not.
pub fn room_owner(shard: &Shard, request: &Request, room: &str) -> Result<Registrar, Response> {
    let caller = super::routes::bearer(&shard.shared, request)?.user;
    let room = RoomId::parse(room).map_err(|_| Response::error(ErrorCode::Invalid, "not a room id"))?;
    match shard.shared.store.member_role(&room, &caller) {
        Ok(Some(RoomRole::Owner)) => Ok(Registrar::RoomOwner { user: caller, room }),
        Ok(_) => Err(Response::error(ErrorCode::Forbidden, "only the room's owner registers its webhooks")),
        Err(e) => Err(storage_failure(&e)),
    }
}

/// Answers a webhook route under `base` (its method checked by the caller).
pub async fn handle(shard: &Rc<Shard>, request: &Request, base: &str, registrar: Registrar) -> Response {
    match (request.method.as_str(), split(&request.path, base)) {
        ("GET", Some(None)) => list(shard, &registrar),
        (_, Some(None)) => register(shard, request, registrar).await,
        (_, Some(Some((id, action)))) => change(shard, request, registrar, id.to_owned(), action).await,
        _ => Response::error(ErrorCode::NotFound, "no such webhook route"),
    }
}

fn list(shard: &Shard, registrar: &Registrar) -> Response {
    match shard.shared.store.webhooks() {
        Ok(hooks) => {
            let views: Vec<_> =
                hooks.iter().filter(|h| registrar.governs(h)).map(|h| public_view(shard, h)).collect();
            Response::json(200, &json!({ "webhooks": views }))
        }
        Err(e) => storage_failure(&e),
    }
}

/// A registration as its registrar sees it: never a secret; with this node's delivery
/// state.
fn public_view(shard: &Shard, hook: &WebhookRecord) -> serde_json::Value {
    let now = now_ms();
    let rotating_until = hook.secrets.iter().filter_map(|s| s.until_ms).filter(|until| *until > now).max();
    json!({
        "webhook_id": hook.webhook_id,
        "url": hook.url,
        "registrant": hook.registrant,
        "events": hook.events,
        "rooms": hook.rooms,
        "enabled": hook.enabled,
        "description": hook.description,
        "created_ms": hook.created_ms,
        "created_by": hook.created_by,
        "old_secret_signs_until_ms": rotating_until,
        "delivery": shard.shared.webhooks.health(&hook.webhook_id),
    })
}

fn refusal(refused: &RegistrationRefusal) -> Response {
    Response::error(ErrorCode::Invalid, &refused.to_string())
}

async fn register(shard: &Rc<Shard>, request: &Request, registrar: Registrar) -> Response {
    let body: NewWebhook = match super::routes::parse_json(request) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let allowed = &shard.shared.config.webhooks.allow;
    let registrant = registrar.registrant();
    if let Err(refused) = webhooks::parse_target(&body.url, registrant, allowed) {
        return refusal(&refused.into());
    }
    let events = match webhooks::parse_events(&body.events) {
        Ok(events) => events,
        Err(refused) => return refusal(&refused),
    };
    if let Err(refused) = webhooks::check_events_for(registrant, &events) {
        return refusal(&refused);
    }
    if let Err(refused) = webhooks::check_description(&body.description) {
        return refusal(&refused);
    }
    let asked_rooms =
        match body.rooms.map(|rooms| rooms.iter().map(|r| RoomId::parse(r)).collect::<Result<Vec<_>, _>>()) {
            None => None,
            Some(Ok(rooms)) => Some(rooms),
            Some(Err(_)) => return Response::error(ErrorCode::Invalid, "rooms: not a room id"),
        };
    let (rooms, created_by) = match &registrar {
        Registrar::Operator(manager) => match webhooks::check_rooms(asked_rooms) {
            Ok(rooms) => (rooms, manager.user()),
            Err(refused) => return refusal(&refused),
        },
        Registrar::RoomOwner { user, room } => {
            if asked_rooms.is_some_and(|rooms| rooms != std::slice::from_ref(room)) {
                return Response::error(
                    ErrorCode::Invalid,
                    "a room's webhooks hear that room only: leave rooms out",
                );
            }
            match shard.shared.store.webhooks() {
                Ok(hooks) if hooks.iter().filter(|h| registrar.governs(h)).count() >= MAX_PER_ROOM => {
                    return Response::error(
                        ErrorCode::Conflict,
                        &format!("a room has at most {MAX_PER_ROOM} webhooks"),
                    );
                }
                Ok(_) => {}
                Err(e) => return storage_failure(&e),
            }
            (Some(vec![room.clone()]), Some(user.clone()))
        }
    };
    let (_, secret) = Secret::generate();
    let id: u64 = rand::random();
    let hook = WebhookRecord {
        webhook_id: format!("wh_{id:016x}"),
        url: body.url,
        registrant,
        events,
        rooms,
        secrets: vec![SigningSecret { secret: secret.clone(), until_ms: None }],
        enabled: true,
        description: body.description,
        created_ms: now_ms(),
        created_by,
    };
    let mut answer = json!({ "webhook": public_view(shard, &hook), "secret": secret });
    if let Some(view) = answer.get_mut("webhook").and_then(|v| v.as_object_mut()) {
        view.remove("delivery");
    }
    match save(shard, &registrar, hook, "registered").await {
        Ok(()) => Response::json(201, &answer),
        Err(response) => response,
    }
}

async fn change(
    shard: &Rc<Shard>,
    request: &Request,
    registrar: Registrar,
    id: String,
    action: &str,
) -> Response {
    let mut hook = match shard.shared.store.webhook(&id) {
        Ok(Some(hook)) if registrar.governs(&hook) => hook,
        Ok(_) => return Response::error(ErrorCode::NotFound, "no such webhook"),
        Err(e) => return storage_failure(&e),
    };
    let mut secret = None;
    let change = match action {
        "enable" | "disable" => {
            hook.enabled = action == "enable";
            if action == "enable" { "enabled" } else { "disabled" }
        }
        "rotate" => {
            let rotation: Rotation = if request.body.is_empty() {
                Rotation::default()
            } else {
                match super::routes::parse_json(request) {
                    Ok(rotation) => rotation,
                    Err(response) => return response,
                }
            };
            let grace_ms = match rotation.grace_secs.map(|s| s.saturating_mul(1_000)) {
                None => DEFAULT_ROTATION_GRACE_MS,
                Some(ms) if ms <= MAX_ROTATION_GRACE_MS => ms,
                Some(_) => {
                    return Response::error(
                        ErrorCode::Invalid,
                        &format!("grace_secs is at most {}", MAX_ROTATION_GRACE_MS / 1_000),
                    );
                }
            };
            let (_, text) = Secret::generate();
            hook.rotate(text.clone(), now_ms(), grace_ms);
            secret = Some(text);
            "rotated"
        }
        _ => {
            return match remove(shard, &registrar, id).await {
                Ok(()) => Response::json(200, &json!({ "deleted": true })),
                Err(response) => response,
            };
        }
    };
    let mut answer = json!({ "webhook": public_view(shard, &hook) });
    if let Some(secret) = secret {
        answer["secret"] = json!(secret);
    }
    match save(shard, &registrar, hook, change).await {
        Ok(()) => Response::json(200, &answer),
        Err(response) => response,
    }
}

fn audit(
    registrar: &Registrar,
    webhook_id: &str,
    change: &str,
) -> Option<(String, palaver_core::admin::AuditEntry)> {
    match registrar {
        Registrar::Operator(manager) => {
            let action =
                AdminAction::Webhook { webhook_id: webhook_id.to_owned(), change: change.to_owned() };
            Some((crate::ids::audit_id(), manager.audit(action)))
        }
        Registrar::RoomOwner { .. } => None,
    }
}

async fn save(
    shard: &Rc<Shard>,
    registrar: &Registrar,
    hook: WebhookRecord,
    change: &str,
) -> Result<(), Response> {
    let audit = audit(registrar, &hook.webhook_id, change);
    let worker = shard.shared.clone();
    match shard.shared.lanes.accounts.run(move || worker.store.put_webhook(hook, audit)).await {
        Ok(Ok(())) => {
            shard.shared.webhooks.changed();
            Ok(())
        }
        Ok(Err(e)) => Err(storage_failure(&e)),
        Err(refused) => Err(refused_response(refused)),
    }
}

async fn remove(shard: &Rc<Shard>, registrar: &Registrar, id: String) -> Result<(), Response> {
    let audit = audit(registrar, &id, "deleted");
    let worker = shard.shared.clone();
    match shard.shared.lanes.accounts.run(move || worker.store.remove_webhook(&id, audit)).await {
        Ok(Ok(())) => {
            shard.shared.webhooks.changed();
            Ok(())
        }
        Ok(Err(e)) => Err(storage_failure(&e)),
        Err(refused) => Err(refused_response(refused)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_recognised_exactly() {
        let base = "/v1/admin/webhooks";
        assert_eq!(methods(base, base), Some("GET, POST"));
        assert_eq!(methods("/v1/admin/webhooks/wh_1/rotate", base), Some("POST"));
        assert_eq!(methods("/v1/admin/webhooks/wh_1/delete", base), Some("POST"));
        assert_eq!(methods("/v1/admin/webhooks/wh_1/other", base), None);
        assert_eq!(methods("/v1/admin/webhooks/wh_1", base), None);
        assert_eq!(methods("/v1/admin/webhooks//rotate", base), None);
        assert_eq!(methods("/v1/admin/webhooksx", base), None);
        let (room, base) = room_route("/v1/rooms/r_abc/webhooks/wh_1/enable").unwrap();
        assert_eq!((room, base.as_str()), ("r_abc", "/v1/rooms/r_abc/webhooks"));
        assert!(room_route("/v1/rooms/r_abc/reports").is_none());
    }
}
