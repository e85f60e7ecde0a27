//! `GET /v1/account/export`: everything stored about the caller, as JSON, and
//! `GET /v1/account/export/messages`: the messages they sent, a page at a time. Both read
//! whole partitions, so they run on the scans lane (never on the shard) and are
//! throttled per user.

use std::rc::Rc;

use palaver_protocol::{ErrorCode, RoomId, UserId};
use serde_json::json;

use super::http::{Request, Response};
use super::routes::{bearer, refused_response, storage_failure};
use crate::clock::now_ms;
use crate::shard::Shard;

/// The export document's format (bumped on an incompatible change).
const EXPORT_FORMAT: u32 = 1;
/// Most messages one page holds (and the default).
const MAX_MESSAGES_PAGE: usize = 1_000;

/// The methods of an export route (`None`: not one).
pub fn methods(path: &str) -> Option<&'static str> {
    matches!(path, "/v1/account/export" | "/v1/account/export/messages").then_some("GET")
}

/// Answers an export route (its method checked by the caller).
pub async fn handle(shard: &Rc<Shard>, request: &Request) -> Response {
    let user = match bearer(&shard.shared, request) {
        Ok(caller) => caller.user,
        Err(response) => return response,
    };
    let pages = request.path == "/v1/account/export/messages";
    let limit = match request.query_param("limit").map(|l| l.parse::<usize>()) {
        None => MAX_MESSAGES_PAGE,
        Some(Ok(limit)) if (1..=MAX_MESSAGES_PAGE).contains(&limit) => limit,
        Some(_) => {
            return Response::error(ErrorCode::Invalid, &format!("limit must be 1 to {MAX_MESSAGES_PAGE}"));
        }
    };
    let after = match request.query_param("after") {
        None => None,
        Some(_) if !pages => {
            return Response::error(ErrorCode::Invalid, "after is for /v1/account/export/messages");
        }
        Some(cursor) => match parse_cursor(&cursor) {
            Some(after) => Some(after),
            None => return Response::error(ErrorCode::Invalid, "after must be a page's next"),
        },
    };
    if let Err(wait) = shard.shared.spam.export(&user, pages, now_ms()) {
        return Response::error_with_retry(ErrorCode::RateLimited, "too many exports; slow down", wait);
    }
    let worker = shard.shared.clone();
    let outcome = shard
        .shared
        .lanes
        .scans
        .run(move || gather(&worker.store, &user, pages, after.as_ref().map(|(r, s)| (r, *s)), limit))
        .await;
    match outcome {
        Ok(Ok(Some(body))) => Response::json(200, &body),
        Ok(Ok(None)) => Response::error(ErrorCode::Unauthorized, "the token's user does not exist"),
        Ok(Err(e)) => storage_failure(&e),
        Err(refused) => refused_response(refused),
    }
}

/// `room_id/seq`, as a page's `next` reads.
fn parse_cursor(cursor: &str) -> Option<(RoomId, u64)> {
    let (room, seq) = cursor.rsplit_once('/')?;
    Some((RoomId::parse(room).ok()?, seq.parse().ok()?))
}

fn gather(
    store: &palaver_storage::Store,
    user: &UserId,
    pages: bool,
    after: Option<(&RoomId, u64)>,
    limit: usize,
) -> Result<Option<serde_json::Value>, palaver_storage::StorageError> {
    let messages = store.user_messages(user, after, limit)?;
    if pages {
        return Ok(Some(json!(messages)));
    }
    let Some(account) = store.user_export(user)? else { return Ok(None) };
    Ok(Some(json!({
        "format": EXPORT_FORMAT,
        "exported_ms": now_ms(),
        "account": account,
        "messages": messages,
    })))
}
