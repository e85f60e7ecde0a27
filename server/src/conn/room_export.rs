//! `GET /v1/rooms/{id}/export?after=SEQ&limit=N`: a room's history as JSON Lines, one
//! stored message per line, oldest first, for the room's owner and the server's admins.
//! A page at a time (at most [`MAX_EXPORT_PAGE`] messages), so a big room is never held
//! whole: the `palaver-next` header names the `after` of the next page while there is
//! one, and `palaver-history-from` the oldest seq the room keeps. Read on the scans lane
//! from this node's store, and throttled per user like the account export's pages.

use std::rc::Rc;

use palaver_core::room_export::{MAX_EXPORT_PAGE, may_export};
use palaver_protocol::{ErrorCode, RoomId};

use super::http::{Request, Response};
use super::routes::{bearer, refused_response, storage_failure};
use crate::clock::now_ms;
use crate::shard::Shard;

/// `/v1/rooms/{room}/export` → the room as written.
pub fn route(path: &str) -> Option<&str> {
    path.strip_prefix("/v1/rooms/")?.strip_suffix("/export").filter(|room| !room.contains('/'))
}

/// One page read from the store.
struct Page {
    lines: Vec<u8>,
    next: Option<u64>,
    history_from: u64,
}

/// Answers the export route (its method checked by the caller).
pub async fn handle(shard: &Rc<Shard>, request: &Request) -> Response {
    let caller = match bearer(&shard.shared, request) {
        Ok(caller) => caller.user,
        Err(response) => return response,
    };
    let Some(room) = route(&request.path).and_then(|r| RoomId::parse(r).ok()) else {
        return Response::error(ErrorCode::Invalid, "not a room id");
    };
    let limit = match request.query_param("limit").map(|l| l.parse::<usize>()) {
        None => MAX_EXPORT_PAGE,
        Some(Ok(limit)) if (1..=MAX_EXPORT_PAGE).contains(&limit) => limit,
        Some(_) => {
            return Response::error(ErrorCode::Invalid, &format!("limit must be 1 to {MAX_EXPORT_PAGE}"));
        }
    };
    let after = match request.query_param("after").map(|a| a.parse::<u64>()) {
        None => 0,
        Some(Ok(after)) => after,
        Some(Err(_)) => {
            return Response::error(ErrorCode::Invalid, "after must be a seq (a page's palaver-next)");
        }
    };
    let store = &shard.shared.store;
    match store.room(&room) {
        Ok(Some(_)) => {}
        Ok(None) => return Response::error(ErrorCode::NotFound, &format!("no room {room}")),
        Err(e) => return storage_failure(&e),
    }
    let allowed = store.member_role(&room, &caller).and_then(|role| Ok((role, store.is_admin(&caller)?)));
    match allowed {
        Ok((role, admin)) => {
            if let Err(refused) = may_export(role, admin) {
                return Response::error(ErrorCode::Forbidden, &refused.to_string());
            }
        }
        Err(e) => return storage_failure(&e),
    }
    if let Err(wait) = shard.shared.spam.export(&caller, true, now_ms()) {
        return Response::error_with_retry(ErrorCode::RateLimited, "too many exports; slow down", wait);
    }
    let worker = shard.shared.store.clone();
    let outcome = shard.shared.lanes.scans.run(move || read_page(&worker, &room, after, limit)).await;
    match outcome {
        Ok(Ok(page)) => {
            let mut response = Response {
                status: 200,
                content_type: "application/x-ndjson",
                headers: vec![("palaver-history-from", page.history_from.to_string())],
                body: page.lines,
            };
            if let Some(next) = page.next {
                response.headers.push(("palaver-next", next.to_string()));
            }
            response
        }
        Ok(Err(e)) => storage_failure(&e),
        Err(refused) => refused_response(refused),
    }
}

/// Messages after seq `after`, at most `limit`, one JSON object per line.
fn read_page(
    store: &palaver_storage::Store,
    room: &RoomId,
    after: u64,
    limit: usize,
) -> Result<Page, palaver_storage::StorageError> {
    let history_from = store.history_floor(room)?;
    let mut messages = store.messages_between(room, after.saturating_add(1), u64::MAX, limit + 1)?;
    let more = messages.len() > limit;
    messages.truncate(limit);
    let next = if more { messages.last().map(|m| m.seq) } else { None };
    let mut lines = Vec::new();
    for message in &messages {
        // A stored message always serializes (plain fields, no maps with non-string keys).
        if serde_json::to_writer(&mut lines, message).is_ok() {
            lines.push(b'\n');
        }
    }
    Ok(Page { lines, next, history_from })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_names_one_room() {
        assert_eq!(route("/v1/rooms/r_abc/export"), Some("r_abc"));
        assert_eq!(route("/v1/rooms/r_abc/reports"), None);
        assert_eq!(route("/v1/rooms/r_a/b/export"), None);
    }
}
