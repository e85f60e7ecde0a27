//! The report routes: a member reports a message (`POST /v1/reports`), the room's
//! moderators (and the admins) list the room's reports and resolve them. Reports are
//! account writes: off the shard, and in a cluster through the shared log. A stored
//! report reaches the live sockets of the room's moderators and of the admins, on every
//! node, as a `report` event.

use std::rc::Rc;

use palaver_core::admin::{AdminAction, AuditEntry};
use palaver_core::records::Write;
use palaver_core::reports::{self, ReportRecord, ReportRefusal};
use palaver_protocol::{ErrorCode, Event, ReportNotice, RoomId, ServerFrame, UserId};
use palaver_storage::StorageError;
use serde::Deserialize;
use serde_json::json;

use super::http::{Request, Response};
use super::routes::{bearer, refused_response, storage_failure};
use crate::clock::now_ms;
use crate::mesh::{LazyFrames, ShardMsg, UserNotice};
use crate::shard::Shard;

/// Most reports one page returns (and the default).
pub const MAX_REPORTS_PAGE: usize = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewReport {
    room: String,
    seq: u64,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    #[serde(default)]
    note: Option<String>,
}

/// The methods of a report route (`None`: not one).
pub fn methods(path: &str) -> Option<&'static str> {
    if path == "/v1/reports" || resolve_route(path).is_some() {
        Some("POST")
    } else if room_route(path).is_some() {
        Some("GET")
    } else {
        None
    }
}

/// `/v1/reports/{id}/resolve` → the id.
fn resolve_route(path: &str) -> Option<&str> {
    path.strip_prefix("/v1/reports/")?.strip_suffix("/resolve").filter(|id| !id.contains('/'))
}

/// `/v1/rooms/{room}/reports` → the room.
fn room_route(path: &str) -> Option<&str> {
    path.strip_prefix("/v1/rooms/")?.strip_suffix("/reports").filter(|room| !room.contains('/'))
}

/// Answers a report route (its method checked by the caller).
pub async fn handle(shard: &Rc<Shard>, request: &Request) -> Response {
    // Resolving is what the admin console does: it may come with the console's cookie.
    let caller = if resolve_route(&request.path).is_some() {
        super::console::admin_caller(&shard.shared, request)
    } else {
        bearer(&shard.shared, request)
    };
    let caller = match caller {
        Ok(caller) => caller.user,
        Err(response) => return response,
    };
    if request.path == "/v1/reports" {
        return create(shard, request, caller).await;
    }
    if let Some(id) = resolve_route(&request.path) {
        return resolve(shard, request, caller, id.to_owned()).await;
    }
    let Some(room) = room_route(&request.path).and_then(|r| RoomId::parse(r).ok()) else {
        return Response::error(ErrorCode::Invalid, "not a room id");
    };
    let store = &shard.shared.store;
    let allowed =
        (|| Ok::<_, StorageError>((store.member_role(&room, &caller)?, store.is_admin(&caller)?)))();
    match allowed {
        Ok((role, admin)) => {
            if let Err(refused) = reports::may_moderate(role, admin) {
                return refusal(&refused);
            }
        }
        Err(e) => return storage_failure(&e),
    }
    list(shard, request, Some(&room))
}

/// The answer to a refused report request.
pub fn refusal(refused: &ReportRefusal) -> Response {
    let code = match refused {
        ReportRefusal::NotMember | ReportRefusal::NotModerator => ErrorCode::Forbidden,
        ReportRefusal::NoMessage => ErrorCode::NotFound,
        ReportRefusal::Resolved => ErrorCode::Conflict,
        _ => ErrorCode::Invalid,
    };
    Response::error(code, &refused.to_string())
}

/// A page of reports (of one room, or of every room for an admin):
/// `?open=true&after=ID&limit=N`.
pub fn list(shard: &Shard, request: &Request, room: Option<&RoomId>) -> Response {
    let limit = match request.query_param("limit").map(|l| l.parse::<usize>()) {
        None => MAX_REPORTS_PAGE,
        Some(Ok(limit)) if (1..=MAX_REPORTS_PAGE).contains(&limit) => limit,
        Some(_) => {
            return Response::error(ErrorCode::Invalid, &format!("limit must be 1 to {MAX_REPORTS_PAGE}"));
        }
    };
    let open_only = match request.query_param("open").as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Response::error(ErrorCode::Invalid, "open must be true or false"),
    };
    let after = request.query_param("after");
    match shard.shared.store.reports(room, open_only, after.as_deref(), limit) {
        Ok((reports, next)) => Response::json(200, &json!({ "reports": reports, "next": next })),
        Err(e) => storage_failure(&e),
    }
}

async fn create(shard: &Rc<Shard>, request: &Request, reporter: palaver_protocol::UserId) -> Response {
    let body: NewReport = match serde_json::from_slice(&request.body) {
        Ok(body) => body,
        Err(e) => return Response::error(ErrorCode::Invalid, &format!("invalid JSON body: {e}")),
    };
    let Ok(room) = RoomId::parse(&body.room) else {
        return Response::error(ErrorCode::Invalid, "not a room id");
    };
    let store = &shard.shared.store;
    let looked_up =
        (|| Ok::<_, StorageError>((store.member_role(&room, &reporter)?, store.message(&room, body.seq)?)))();
    let (role, message) = match looked_up {
        Ok(found) => found,
        Err(e) => return storage_failure(&e),
    };
    let decided = reports::report(
        crate::ids::report_id(),
        &reporter,
        role,
        message.as_ref(),
        body.reason.as_deref(),
        now_ms(),
    );
    let report = match decided {
        Ok(report) => report,
        Err(refused) => return refusal(&refused),
    };
    if let Err(wait) = shard.shared.spam.report(&reporter, now_ms()) {
        return Response::error_with_retry(ErrorCode::RateLimited, "too many reports; slow down", wait);
    }
    let notice = ReportNotice {
        report_id: report.report_id.clone(),
        room: report.room.clone(),
        seq: report.seq,
        reporter: report.reporter.clone(),
        reason: report.reason.clone(),
        at: report.at,
    };
    let response = save(shard, report, None, 201).await;
    if response.status == 201 {
        tell_moderators(shard, notice).await;
    }
    response
}

/// Most people one report is told to live (moderators of the room, then admins).
const MOST_TOLD: usize = 1_000;

/// Sends a stored report, as a `report` event, to the live sockets of its room's
/// moderators and of the admins (the reporter excepted). Who they are is read on the
/// scans lane: a big room's member list is not read on the shard.
async fn tell_moderators(shard: &Rc<Shard>, notice: ReportNotice) {
    let worker = shard.shared.clone();
    let (room, reporter) = (notice.room.clone(), notice.reporter.clone());
    let found = shard
        .shared
        .lanes
        .scans
        .run(move || -> Result<Vec<UserId>, StorageError> {
            let store = &worker.store;
            // The room's moderators first, then the admins; each once, the reporter never.
            let moderators = store
                .members(&room)?
                .into_iter()
                .filter(|(_, role)| reports::may_moderate(Some(*role), false).is_ok())
                .map(|(user, _)| user);
            let mut seen = std::collections::HashSet::new();
            let told = moderators
                .chain(store.admins()?)
                .filter(|user| *user != reporter && seen.insert(user.clone()))
                .take(MOST_TOLD)
                .collect();
            Ok(told)
        })
        .await;
    let told = match found {
        Ok(Ok(told)) => told,
        Ok(Err(e)) => return tracing::warn!("a report's moderators could not be read: {e}"),
        Err(_) => return tracing::warn!("a report's moderators were not told: the scans lane is full"),
    };
    let mesh = shard.mesh();
    for user in told {
        let event = ServerFrame::Event(Event::Report(notice.clone()));
        let notice = UserNotice { user, frames: Some(LazyFrames::new(event)), effect: None };
        mesh.send(mesh.home(&notice.user), ShardMsg::Notify(Box::new(notice)));
    }
}

async fn resolve(
    shard: &Rc<Shard>,
    request: &Request,
    caller: palaver_protocol::UserId,
    id: String,
) -> Response {
    let body: ResolveBody = if request.body.iter().all(u8::is_ascii_whitespace) {
        ResolveBody::default()
    } else {
        match serde_json::from_slice(&request.body) {
            Ok(body) => body,
            Err(e) => return Response::error(ErrorCode::Invalid, &format!("invalid JSON body: {e}")),
        }
    };
    let store = &shard.shared.store;
    let looked_up = (|| {
        let Some(report) = store.report(&id)? else { return Ok(None) };
        let role = store.member_role(&report.room, &caller)?;
        Ok::<_, StorageError>(Some((report, role, store.is_admin(&caller)?)))
    })();
    let (report, role, admin) = match looked_up {
        Ok(Some(found)) => found,
        Ok(None) => return Response::error(ErrorCode::NotFound, "no such report"),
        Err(e) => return storage_failure(&e),
    };
    if let Err(refused) = reports::may_moderate(role, admin) {
        return refusal(&refused);
    }
    let resolved = match reports::resolve(report, &caller, body.note.as_deref(), now_ms()) {
        Ok(resolved) => resolved,
        Err(refused) => return refusal(&refused),
    };
    // Not a moderator of the room: the admin role was used, and the audit log says so.
    let audit = reports::may_moderate(role, false).is_err().then(|| {
        let resolution = resolved.resolved.as_ref();
        let entry = AuditEntry {
            at: resolution.map_or_else(now_ms, |r| r.at),
            admin: Some(caller.clone()),
            api_key: None,
            action: AdminAction::ResolveReport {
                report_id: resolved.report_id.clone(),
                note: resolution.and_then(|r| r.note.clone()),
            },
        };
        (crate::ids::audit_id(), entry)
    });
    save(shard, resolved, audit, 200).await
}

async fn save(
    shard: &Rc<Shard>,
    report: ReportRecord,
    audit: Option<(String, AuditEntry)>,
    status: u16,
) -> Response {
    let answer = json!({ "report": report });
    let worker = shard.shared.clone();
    let outbound = shard.shared.webhooks.deliveries_for(&[Write::PutReport(report.clone())], now_ms());
    let queued = !outbound.is_empty();
    let outcome =
        shard.shared.lanes.accounts.run(move || worker.store.put_report(report, audit, outbound)).await;
    match outcome {
        Ok(Ok(())) => {
            if queued {
                shard.shared.webhooks.wake();
            }
            Response::json(status, &answer)
        }
        Ok(Err(e)) => storage_failure(&e),
        Err(refused) => refused_response(refused),
    }
}
