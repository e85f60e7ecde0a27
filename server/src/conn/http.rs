//! Just enough HTTP/1.1 for Palaver's routes: request heads parsed with `httparse`,
//! bodies by `Content-Length` (bounded), JSON responses, keep-alive.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use palaver_protocol::ErrorCode;

/// Largest request head.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Largest JSON request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The retry hint given with `unavailable` when a kind of work is at capacity.
pub const BUSY_RETRY_MS: u64 = 1_000;
/// How long an idle keep-alive connection is kept.
pub const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(60);
const MAX_HEADERS: usize = 64;

/// A parsed request.
#[derive(Debug)]
pub struct Request {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string (after `?`), still percent-encoded.
    pub query: String,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
    /// Whether the connection stays open afterwards.
    pub keep_alive: bool,
}

impl Request {
    /// The first header of that (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// A query parameter, percent-decoded (the first of that name).
    pub fn query_param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The credentials of an `Authorization: Bearer …` header, if any (the scheme is
    /// case-insensitive; the token is taken as it stands: see `TokenService::verify`).
    pub fn bearer(&self) -> Option<&str> {
        let value = self.header("authorization")?;
        let (scheme, token) = value.split_at_checked(7)?;
        scheme.eq_ignore_ascii_case("bearer ").then_some(token)
    }

    /// Whether a comma-separated header contains `token` (case-insensitive).
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// A response to write.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Content type.
    pub content_type: &'static str,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON response.
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        Response {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: serde_json::to_vec(value).unwrap_or_default(),
        }
    }

    /// `204 No Content` (a CORS preflight's answer).
    pub fn no_content() -> Response {
        Response { status: 204, content_type: "", headers: Vec::new(), body: Vec::new() }
    }

    /// `{"error":{"code","message"}}` with the code's status.
    pub fn error(code: ErrorCode, message: &str) -> Response {
        Self::error_with_status(code.http_status(), code, message)
    }

    /// An error body with an explicit status (405, 431, …).
    pub fn error_with_status(status: u16, code: ErrorCode, message: &str) -> Response {
        Response::json(status, &serde_json::json!({"error": {"code": code.as_str(), "message": message}}))
    }

    /// An error with a retry hint: `retry_after_ms` in the body and `Retry-After` (whole
    /// seconds, rounded up) in the head.
    pub fn error_with_retry(code: ErrorCode, message: &str, retry_after_ms: u64) -> Response {
        let body = serde_json::json!({
            "error": {"code": code.as_str(), "message": message, "retry_after_ms": retry_after_ms}
        });
        let mut response = Response::json(code.http_status(), &body);
        response.headers.push(("retry-after", retry_after_ms.div_ceil(1_000).max(1).to_string()));
        response
    }

    /// Serializes status line, headers and body.
    pub fn to_bytes(&self, keep_alive: bool) -> Vec<u8> {
        let connection = if keep_alive { "keep-alive" } else { "close" };
        let status = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        // A 204 has no body, so no content headers (RFC 9110 §8.6).
        let mut out = if self.status == 204 {
            format!("{status}connection: {connection}\r\n")
        } else {
            format!(
                "{status}content-type: {}\r\ncontent-length: {}\r\nconnection: {connection}\r\n",
                self.content_type,
                self.body.len(),
            )
        }
        .into_bytes();
        for (name, value) in &self.headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        411 => "Length Required",
        415 => "Unsupported Media Type",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Why no request could be read.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed (or sent nothing) between requests: not an error.
    Closed,
    /// The request is refused; answer with this response and close.
    Refuse(Response),
}

/// Reads more bytes into `buf`, appending. Returns the count (0 at end of stream).
pub async fn read_more(stream: &mut impl AsyncReadRent, buf: &mut BytesMut) -> std::io::Result<usize> {
    // An idle socket pins its read buffer (io_uring owns it while the read is pending),
    // so buffers start small and grow with what actually arrives, doubling as they fill.
    // (A frame larger than the buffer reserves its whole size in the frame parser.)
    if buf.capacity() - buf.len() < 128 {
        buf.reserve(buf.len().max(512));
    }
    let len = buf.len();
    let cap = buf.capacity();
    let owned = std::mem::take(buf);
    let (result, slice) = stream.read(owned.slice_mut(len..cap)).await;
    *buf = slice.into_inner();
    result
}

/// Reads a bounded body of `length` bytes (a JSON route's) into `request`.
pub async fn read_body(
    stream: &mut impl AsyncReadRent,
    buf: &mut BytesMut,
    request: &mut Request,
    length: usize,
) -> Result<(), ReadError> {
    if length > MAX_BODY_BYTES {
        return Err(ReadError::Refuse(Response::error(
            ErrorCode::TooLarge,
            &format!("request body exceeds {} bytes", MAX_BODY_BYTES),
        )));
    }
    while buf.len() < length {
        match read_more(stream, buf).await {
            Ok(0) | Err(_) => return Err(ReadError::Closed),
            Ok(_) => {}
        }
    }
    request.body = buf.split_to(length).freeze();
    Ok(())
}

/// Reads a request head; returns it with the body's `Content-Length` (the body is left
/// unread, for a bounded read or a streamed upload).
pub async fn read_head(
    stream: &mut impl AsyncReadRent,
    buf: &mut BytesMut,
) -> Result<(Request, usize), ReadError> {
    loop {
        if let Some(head) = parse_head(buf)? {
            return Ok(head);
        }
        match read_more(stream, buf).await {
            Ok(0) | Err(_) => return Err(ReadError::Closed),
            Ok(_) => {}
        }
    }
}

/// The sans-IO half of [`read_head`]: takes a complete request head off the front of
/// `buf` (`Ok(None)`: not complete yet, read more and call again). Refuses a head over
/// [`MAX_HEAD_BYTES`] with 431, malformed heads, `Transfer-Encoding` and a bad
/// `Content-Length` with 400. Fuzzed by `fuzz/libfuzzer/fuzz_targets/http_request.rs`.
pub fn parse_head(buf: &mut BytesMut) -> Result<Option<(Request, usize)>, ReadError> {
    let too_large = || {
        ReadError::Refuse(Response::error_with_status(
            431,
            ErrorCode::TooLarge,
            "request head exceeds 16 KiB",
        ))
    };
    let Some(head_len) = find_head_end(buf) else {
        if buf.len() > MAX_HEAD_BYTES {
            return Err(too_large());
        }
        return Ok(None);
    };
    if head_len > MAX_HEAD_BYTES {
        return Err(too_large());
    }
    let head = buf.split_to(head_len);
    check_line_endings(&head)?;
    // Parsed in its own scope: httparse's header array (2 KiB) must not be held across
    // the body read, or it would sit in every connection's future.
    let request = {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => {
                return Err(ReadError::Refuse(Response::error(ErrorCode::Invalid, "malformed HTTP request")));
            }
        }
        let method = parsed.method.unwrap_or_default().to_owned();
        let target = parsed.path.unwrap_or_default();
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let (path, query) = (path.to_owned(), query.to_owned());
        let http10 = parsed.version == Some(0);
        let headers: Vec<(String, String)> = parsed
            .headers
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
            .collect();
        let mut request = Request { method, path, query, headers, body: Bytes::new(), keep_alive: !http10 };
        if request.header_has_token("connection", "close") {
            request.keep_alive = false;
        } else if http10 && request.header_has_token("connection", "keep-alive") {
            request.keep_alive = true;
        }
        request
    };
    let bad = |m: &str| ReadError::Refuse(Response::error(ErrorCode::Invalid, m));
    // Request smuggling (RFC 9112 §6.3): a body whose length two parties could read
    // differently is refused outright, never guessed at.
    if request.header("transfer-encoding").is_some() {
        return Err(bad("Transfer-Encoding is not accepted; send the body with one Content-Length"));
    }
    let mut lengths = request.headers.iter().filter(|(name, _)| name == "content-length");
    let length = match (lengths.next(), lengths.next()) {
        (None, _) => 0,
        (Some(_), Some(_)) => return Err(bad("more than one Content-Length header")),
        // RFC 9110: 1*DIGIT. `usize::from_str` would also take a leading `+`, and a list
        // (`5, 5`) is a second length in disguise; a proxy in front may read either
        // differently.
        (Some((_, v)), None) => {
            let v = v.trim();
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("bad Content-Length"));
            }
            v.parse::<usize>().map_err(|_| bad("bad Content-Length"))?
        }
    };
    Ok(Some((request, length)))
}

/// Refuses a head whose lines do not all end in CRLF (a bare CR or LF), and obsolete
/// line folding (a header line starting with a space or tab): parsers disagree on both,
/// which is how requests are smuggled past a proxy (RFC 9112 §2.2, §5.2).
fn check_line_endings(head: &[u8]) -> Result<(), ReadError> {
    let bad = |m: &str| ReadError::Refuse(Response::error(ErrorCode::Invalid, m));
    for (i, &byte) in head.iter().enumerate() {
        match byte {
            b'\r' if head.get(i + 1) != Some(&b'\n') => return Err(bad("bare CR in the request head")),
            b'\n' if i == 0 || head[i - 1] != b'\r' => return Err(bad("bare LF in the request head")),
            b'\n' if matches!(head.get(i + 1), Some(b' ' | b'\t')) => {
                return Err(bad("folded header lines (obs-fold) are not accepted"));
            }
            _ => {}
        }
    }
    Ok(())
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Writes a response.
pub async fn write_response(
    stream: &mut impl AsyncWriteRent,
    response: &Response,
    keep_alive: bool,
) -> std::io::Result<()> {
    let (result, _) = stream.write_all(response.to_bytes(keep_alive)).await;
    result.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn length_of(header: &str) -> Result<usize, u16> {
        let mut buf =
            BytesMut::from(format!("POST /x HTTP/1.1\r\nContent-Length: {header}\r\n\r\n").as_str());
        match parse_head(&mut buf) {
            Ok(Some((_, length))) => Ok(length),
            Ok(None) => Err(0),
            Err(ReadError::Refuse(response)) => Err(response.status),
            Err(ReadError::Closed) => Err(1),
        }
    }

    fn refusal(head: &str) -> Option<u16> {
        match parse_head(&mut BytesMut::from(head)) {
            Err(ReadError::Refuse(response)) => Some(response.status),
            _ => None,
        }
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        let cases = [
            "POST /x HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST /x HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            "POST /x HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
            "POST /x HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /x HTTP/1.1\r\nX-A: a\r\n b\r\nContent-Length: 5\r\n\r\n",
            "POST /x HTTP/1.1\r\nX-A: a\r\n\tContent-Length: 5\r\n\r\n",
            "POST /x HTTP/1.1\r\nX-A: a\rContent-Length: 5\r\n\r\n",
            "POST /x HTTP/1.1\nContent-Length: 5\r\n\r\n",
            "POST /x HTTP/1.1\r\nContent-Length : 5\r\n\r\n",
        ];
        for head in cases {
            assert_eq!(refusal(head), Some(400), "{head:?}");
        }
        assert_eq!(refusal("POST /x HTTP/1.1\r\nContent-Length: 5\r\nX-A: a b\r\n\r\n"), None);
    }

    #[test]
    fn content_length_is_digits_only() {
        assert_eq!(length_of("5"), Ok(5));
        assert_eq!(length_of(" 12 "), Ok(12));
        for bad in ["+5", "-1", "0x10", "5 5", "", "99999999999999999999999"] {
            assert_eq!(length_of(bad), Err(400), "{bad:?}");
        }
    }
}
