//! The HTTP file routes (`POST /v1/files`, `GET /v1/files/{id}`, PROTOCOL.md §2.10):
//! URLs and answers. Pure data: the transports carry the requests.

use palaver_protocol::{FileRef, RoomId};

use crate::auth_route::error_answer;
use crate::error::Error;

/// Largest answer read from an upload (a small JSON object).
pub(crate) const MAX_UPLOAD_ANSWER_BYTES: usize = 64 << 10;
/// Largest file [`Client::download`](crate::Client::download) reads (the server's default
/// ceiling is 10 MiB; `--max-file-bytes` may raise it).
pub const MAX_DOWNLOAD_BYTES: usize = 1 << 30;

/// `http_base/v1/files?room=…&name=…`.
pub(crate) fn upload_url(http_base: &str, room: &RoomId, name: &str) -> String {
    format!("{http_base}/v1/files?room={}&name={}", percent_encode(room.as_str()), percent_encode(name))
}

/// `http_base/v1/files/{file_id}`; `None` for an id that cannot be one (the server issues
/// `f_` followed by letters and digits).
pub(crate) fn download_url(http_base: &str, file_id: &str) -> Option<String> {
    let valid = !file_id.is_empty()
        && file_id.len() <= 64
        && file_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    valid.then(|| format!("{http_base}/v1/files/{file_id}"))
}

/// The shared file an upload answer describes, or the error it carries.
pub(crate) fn parse_upload_answer(status: u16, body: &[u8]) -> Result<FileRef, Error> {
    let text = String::from_utf8_lossy(body);
    if (200..300).contains(&status) {
        return serde_json::from_str(&text)
            .map_err(|_| Error::Http { status, body: text.chars().take(200).collect() });
    }
    Err(error_answer(status, &text))
}

/// A download's bytes, or the error its answer carries.
pub(crate) fn parse_download_answer(status: u16, body: Vec<u8>) -> Result<Vec<u8>, Error> {
    if status == 200 {
        return Ok(body);
    }
    Err(error_answer(status, &String::from_utf8_lossy(&body)))
}

/// Percent-encodes a query component (RFC 3986: unreserved characters stay).
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn urls_encode_the_name_and_refuse_odd_ids() {
        let room = RoomId::parse("r_abc").unwrap();
        assert_eq!(
            upload_url("http://h:1", &room, "ça & co/x.png"),
            "http://h:1/v1/files?room=r_abc&name=%C3%A7a%20%26%20co%2Fx.png"
        );
        assert_eq!(download_url("http://h:1", "f_01x").as_deref(), Some("http://h:1/v1/files/f_01x"));
        assert_eq!(download_url("http://h:1", "../etc"), None);
    }

    #[test]
    fn answers_parse_into_the_file_or_the_error() {
        let ok = br#"{"file_id":"f_1","size":3,"content_type":"text/plain","name":"a.txt"}"#;
        assert_eq!(parse_upload_answer(201, ok).unwrap().file_id, "f_1");
        let refused = br#"{"error":{"code":"forbidden","message":"not a member"}}"#;
        let err = parse_upload_answer(403, refused).unwrap_err();
        assert_eq!(err.code(), Some(palaver_protocol::ErrorCode::Forbidden));
        assert!(matches!(
            parse_download_answer(502, b"<html>".to_vec()),
            Err(Error::Http { status: 502, .. })
        ));
    }
}
