//! `POST /v1/files?room=…` and `GET /v1/files/{id}`: uploads streamed from the socket to
//! the object store chunk by chunk (never whole in memory), type checked from magic bytes,
//! metadata stored once the bytes are; downloads streamed back to members of the file's
//! room only.

use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use palaver_protocol::{ErrorCode, RoomId, UserId};
use palaver_storage::FileRecord;
use serde_json::json;

use super::http::{Request, Response, read_more};
use crate::clock::now_ms;
use crate::files::{SNIFF_BYTES, TextCheck, dimensions, sanitize_name, sniff};
use crate::shard::Shard;

/// The longest a client may stay silent in the middle of an upload (slowloris guard).
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Past a first half minute, an upload must average at least this rate: a client
/// trickling a byte just inside every read timeout would otherwise hold its connection
/// and file for as long as it likes.
const MIN_UPLOAD_BYTES_PER_SEC: u64 = 16 * 1024;
/// The longest a download may wait for the client to take the next chunk.
const DOWNLOAD_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The deadline of a whole upload of `length` bytes.
fn upload_deadline(length: usize) -> std::time::Instant {
    let budget = Duration::from_secs(30 + length as u64 / MIN_UPLOAD_BYTES_PER_SEC);
    std::time::Instant::now() + budget
}

/// A place among the file transfers streaming at once (each holds a file open: part of
/// the descriptor budget), or the answer to give when none is free.
fn transfer_slot(shard: &Shard) -> Result<crate::descriptors::Slot, Response> {
    shard.shared.file_transfers.try_take().ok_or_else(|| {
        Response::error_with_retry(
            ErrorCode::Unavailable,
            "too many file transfers are in progress; retry shortly",
            super::http::BUSY_RETRY_MS,
        )
    })
}

/// What an upload left the connection as.
pub enum Uploaded {
    /// Answer with this; the body was read completely, the connection may be kept.
    Done(Response),
    /// Answer with this and close: the body was not (fully) read.
    Refused(Response),
    /// The client went away mid-upload: nothing to answer.
    Gone,
}

fn authenticate(shard: &Shard, request: &Request) -> Result<UserId, Response> {
    let token = request
        .bearer()
        .ok_or_else(|| Response::error(ErrorCode::Unauthorized, "Authorization: Bearer required"))?;
    crate::auth::authenticate(&shard.shared.tokens, &shard.shared.store, token).map(|v| v.user).map_err(|e| {
        match e {
            crate::auth::AuthError::Unavailable => Response::error(ErrorCode::Unavailable, &e.to_string()),
            _ => Response::error(ErrorCode::Unauthorized, &e.to_string()),
        }
    })
}

fn storage_failure(e: &palaver_storage::StorageError) -> Response {
    tracing::error!("files: {e}");
    Response::error(ErrorCode::Unavailable, "storage failure; try again later")
}

/// Checks an upload before reading its body: who, where, how big.
fn admit(shard: &Shard, request: &Request, length: usize) -> Result<(UserId, RoomId), Response> {
    let user = authenticate(shard, request)?;
    let room = request
        .query_param("room")
        .and_then(|r| RoomId::parse(&r).ok())
        .ok_or_else(|| Response::error(ErrorCode::Invalid, "give the room: POST /v1/files?room=r_…"))?;
    let store = &shard.shared.store;
    let record = store.room(&room).map_err(|e| storage_failure(&e))?;
    let Some(record) = record else {
        return Err(Response::error(ErrorCode::NotFound, &format!("no room {room}")));
    };
    if store.member_role(&room, &user).map_err(|e| storage_failure(&e))?.is_none() {
        return Err(Response::error(ErrorCode::Forbidden, &format!("not a member of {room}")));
    }
    if record.settings.is_some_and(|s| !s.file_sharing) {
        return Err(Response::error(ErrorCode::Forbidden, "file sharing is turned off in this room"));
    }
    // A file name that reorders itself on screen is refused, not cleaned: the uploader
    // sees exactly the name everyone else will.
    if let Some(c) =
        request.query_param("name").and_then(|n| n.chars().find(|c| palaver_protocol::is_bidi_control(*c)))
    {
        let message =
            format!("file names may not contain the bidirectional formatting character U+{:04X}", c as u32);
        return Err(Response::error(ErrorCode::Invalid, &message));
    }
    if request.header("content-length").is_none() {
        return Err(Response::error_with_status(411, ErrorCode::Invalid, "Content-Length required"));
    }
    let max = shard.shared.config.max_file_bytes;
    if length == 0 {
        return Err(Response::error(ErrorCode::Invalid, "the file is empty"));
    }
    if length as u64 > max {
        return Err(Response::error(ErrorCode::TooLarge, &format!("files are at most {max} bytes")));
    }
    Ok((user, room))
}

/// Reads at least `want` bytes into `buf` (or fails: the client is gone, silent for
/// [`BODY_READ_TIMEOUT`], or past the upload's `deadline`).
async fn fill(
    stream: &mut impl AsyncReadRent,
    buf: &mut BytesMut,
    want: usize,
    deadline: std::time::Instant,
) -> bool {
    while buf.len() < want {
        let wait = deadline.saturating_duration_since(std::time::Instant::now()).min(BODY_READ_TIMEOUT);
        match monoio::time::timeout(wait, read_more(stream, buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return false,
        }
    }
    true
}

/// Handles `POST /v1/files?room=…` with a body of `length` bytes.
pub async fn upload(
    shard: &Rc<Shard>,
    stream: &mut impl AsyncReadRent,
    buf: &mut BytesMut,
    request: &Request,
    length: usize,
) -> Uploaded {
    let (user, room) = match admit(shard, request, length) {
        Ok(ok) => ok,
        Err(response) => return Uploaded::Refused(response),
    };
    let _transfer = match transfer_slot(shard) {
        Ok(slot) => slot,
        Err(response) => return Uploaded::Refused(response),
    };
    let deadline = upload_deadline(length);
    // The head tells the type (from magic bytes, never the name or the claimed type).
    if !fill(stream, buf, length.min(SNIFF_BYTES), deadline).await {
        return Uploaded::Gone;
    }
    let head = &buf[..buf.len().min(length)];
    let Some(content_type) = sniff(head, head.len() == length) else {
        return Uploaded::Refused(Response::error_with_status(
            415,
            ErrorCode::Invalid,
            "this type of file is not accepted (images, PDF, text, zip, audio and video are)",
        ));
    };
    let (width, height) = if content_type.starts_with("image/") {
        match dimensions(head) {
            Some((w, h)) => (Some(w), Some(h)),
            None => {
                return Uploaded::Refused(Response::error_with_status(
                    415,
                    ErrorCode::Invalid,
                    "the image's header is damaged or its dimensions are out of range",
                ));
            }
        }
    } else {
        (None, None)
    };
    // Text is text to its last byte: checked as it streams (the head chose the type).
    let mut text = (content_type == "text/plain").then(TextCheck::default);
    let file_id = crate::ids::file_id();
    let files = &shard.shared.files;
    let upload = match files.upload(&file_id) {
        Ok(upload) => upload,
        Err(e) => {
            tracing::error!("files: {e}");
            return Uploaded::Refused(Response::error(ErrorCode::Unavailable, "file storage is unavailable"));
        }
    };
    // Stream the body through: what is buffered, then each read as it arrives.
    let mut remaining = length;
    while remaining > 0 {
        if buf.is_empty() && !fill(stream, buf, 1, deadline).await {
            return Uploaded::Gone; // dropping `upload` aborts it
        }
        let take = buf.len().min(remaining);
        let chunk = buf.split_to(take).freeze();
        remaining -= take;
        let still_text = text.as_mut().is_none_or(|check| check.feed(&chunk));
        if !still_text || (remaining == 0 && text.take().is_some_and(|check| !check.finish())) {
            return Uploaded::Refused(Response::error_with_status(
                415,
                ErrorCode::Invalid,
                "a text file must be UTF-8 throughout, without control characters",
            ));
        }
        if upload.send(chunk).await.is_err() {
            return Uploaded::Refused(Response::error(ErrorCode::Unavailable, "file storage failed"));
        }
    }
    if let Err(e) = upload.finish().await {
        tracing::error!("files: storing {file_id}: {e}");
        return Uploaded::Done(Response::error(ErrorCode::Unavailable, "file storage failed; try again"));
    }
    let name = sanitize_name(&request.query_param("name").unwrap_or_default());
    let record = FileRecord {
        file_id: file_id.clone(),
        room,
        uploader: user,
        size: length as u64,
        content_type: content_type.to_owned(),
        name: name.clone(),
        width,
        height,
        created_ms: now_ms(),
        shared_in: None,
    };
    let store = shard.shared.store.clone();
    match shard.shared.lanes.accounts.run(move || store.put_file(&record)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Uploaded::Done(storage_failure(&e)),
        Err(refused) => return Uploaded::Done(super::routes::refused_response(refused)),
    }
    let mut body = json!({"file_id": file_id, "size": length, "content_type": content_type, "name": name});
    if let (Some(w), Some(h)) = (width, height) {
        body["width"] = json!(w);
        body["height"] = json!(h);
    }
    Uploaded::Done(Response::json(201, &body))
}

/// Whether a write with a deadline completed.
fn written<B, E>(result: Result<(std::io::Result<usize>, B), E>) -> bool {
    matches!(result, Ok((Ok(_), _)))
}

/// `filename*` form (RFC 5987) of a UTF-8 name.
fn encode_rfc5987(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Handles `GET /v1/files/{id}`: writes the response itself (the body is streamed), with
/// `extra_headers` (CORS). Returns whether the connection may be kept open.
pub async fn download(
    shard: &Rc<Shard>,
    stream: &mut impl AsyncWriteRent,
    request: &Request,
    extra_headers: &[(&'static str, String)],
    keep_alive: bool,
) -> bool {
    let answer = |mut response: Response| {
        response.headers.extend(extra_headers.iter().cloned());
        response
    };
    let file_id = request.path.trim_start_matches("/v1/files/");
    let checked = (|| {
        let user = authenticate(shard, request)?;
        let valid = !file_id.is_empty()
            && file_id.len() <= 64
            && file_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        let not_found = || Response::error(ErrorCode::NotFound, &format!("no file {file_id}"));
        if !valid {
            return Err(not_found());
        }
        let store = &shard.shared.store;
        let record = store.file(file_id).map_err(|e| storage_failure(&e))?.ok_or_else(not_found)?;
        if store.member_role(&record.room, &user).map_err(|e| storage_failure(&e))?.is_none() {
            return Err(Response::error(
                ErrorCode::Forbidden,
                "only members of the file's room may download it",
            ));
        }
        Ok(record)
    })();
    let checked = checked.and_then(|record| Ok((record, transfer_slot(shard)?)));
    let (record, _transfer) = match checked {
        Ok(ok) => ok,
        Err(response) => {
            let response = answer(response);
            return super::http::write_response(stream, &response, keep_alive).await.is_ok() && keep_alive;
        }
    };
    let chunks = match shard.shared.files.download(&record.file_id) {
        Ok(chunks) => chunks,
        Err(_) => {
            let response = answer(Response::error(ErrorCode::Unavailable, "file storage is unavailable"));
            return super::http::write_response(stream, &response, keep_alive).await.is_ok() && keep_alive;
        }
    };
    let first = match chunks.recv_async().await {
        Ok(Ok(bytes)) => bytes,
        failed => {
            tracing::error!("files: reading {}: {failed:?}", record.file_id);
            let response = answer(Response::error(ErrorCode::Unavailable, "the file cannot be read now"));
            return super::http::write_response(stream, &response, keep_alive).await.is_ok() && keep_alive;
        }
    };
    let ascii_name: String =
        record.name.chars().map(|c| if c.is_ascii() && c != '"' { c } else { '_' }).collect();
    let disposition = if record.content_type.starts_with("image/") { "inline" } else { "attachment" };
    let mut head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: {}\r\ncontent-disposition: {disposition}; filename=\"{ascii_name}\"; filename*=UTF-8''{}\r\nx-content-type-options: nosniff\r\ncache-control: private, max-age=3600\r\ncontent-security-policy: default-src 'none'\r\n",
        if record.content_type == "text/plain" { "text/plain; charset=utf-8" } else { &record.content_type },
        record.size,
        if keep_alive { "keep-alive" } else { "close" },
        encode_rfc5987(&record.name),
    );
    for (name, value) in extra_headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    // Every write has a deadline: a client that stops reading gives up its connection
    // and its place among the transfers.
    if !written(monoio::time::timeout(DOWNLOAD_WRITE_TIMEOUT, stream.write_all(head.into_bytes())).await) {
        return false;
    }
    let mut sent = first.len() as u64;
    if !written(monoio::time::timeout(DOWNLOAD_WRITE_TIMEOUT, stream.write_all(first)).await) {
        return false;
    }
    while let Ok(next) = chunks.recv_async().await {
        let Ok(bytes) = next else { return false };
        sent += bytes.len() as u64;
        if !written(monoio::time::timeout(DOWNLOAD_WRITE_TIMEOUT, stream.write_all(bytes)).await) {
            return false;
        }
    }
    // A store that returned another size than recorded leaves the framing wrong: close.
    keep_alive && sent == record.size
}
