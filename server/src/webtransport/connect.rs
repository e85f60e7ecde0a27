//! The extended CONNECT request that opens a WebTransport session, checked, and the
//! server's answer: `200` with the draft header Chromium expects, or a 4xx (or 405 for a
//! request that is not a WebTransport CONNECT) with a JSON body saying why.

use palaver_protocol::Codec;

use super::SESSION_PATH;
use super::qpack::{Field, encode_response};
use super::wire::{frame_type, write_frame};
use crate::config::AllowedOrigins;

/// A session the server accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The frames' codec, from the path's query (`?codec=json`; rkyv otherwise).
    pub codec: Codec,
    /// The client sent draft-02's `sec-webtransport-http3-draft02: 1`, so the answer
    /// names the draft back.
    pub draft02: bool,
}

/// A request the server refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status.
    pub status: u16,
    /// Why, in the JSON body.
    pub reason: String,
}

impl Refusal {
    fn new(status: u16, reason: impl Into<String>) -> Self {
        Refusal { status, reason: reason.into() }
    }

    /// The answer to write on the request stream (HEADERS, then a DATA frame with
    /// `{"error":{"code":…,"message":…}}`), after which the stream is finished.
    pub fn response(&self) -> Vec<u8> {
        let code = match self.status {
            403 => "forbidden",
            404 => "not_found",
            405 => "method_not_allowed",
            _ => "invalid",
        };
        let body = serde_json::json!({ "error": { "code": code, "message": self.reason } }).to_string();
        let length = body.len().to_string();
        let head = encode_response(
            self.status,
            &[("content-type", "application/json"), ("content-length", length.as_str())],
        );
        let mut out = Vec::new();
        write_frame(&mut out, frame_type::HEADERS, &head);
        write_frame(&mut out, frame_type::DATA, body.as_bytes());
        out
    }
}

/// Who may open a session, as for the WebSocket upgrade: a request without `Origin`
/// (not from a page), a page of the server's own HTTP listener, or an origin of
/// `--cors-origins`.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    /// `--cors-origins`.
    pub allowed: AllowedOrigins,
    /// The HTTP listener's port: a page it served is the server's own.
    pub http_port: u16,
    /// Whether the HTTP listener speaks TLS (`https://` pages) or not.
    pub http_tls: bool,
}

impl OriginPolicy {
    /// Whether a page of `origin` may open a session on `authority` (the CONNECT's
    /// `:authority`, `host:port` of the QUIC listener).
    pub fn allows(&self, origin: &str, authority: &str) -> bool {
        let host = authority_host(authority);
        let scheme = if self.http_tls { "https" } else { "http" };
        let own = format!("{scheme}://{host}:{}", self.http_port);
        origin.eq_ignore_ascii_case(&own) || self.allowed.allows(origin)
    }
}

/// The host of `host[:port]` (IPv6 literals keep their brackets).
fn authority_host(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.find(']').map_or(authority, |end| &authority[..=end]);
    }
    authority.rsplit_once(':').map_or(authority, |(host, _)| host)
}

/// Checks a request's fields: a WebTransport extended CONNECT (`:protocol`
/// `webtransport` or `webtransport-h3`) over `https` to [`SESSION_PATH`], from an
/// allowed origin.
pub fn check(fields: &[Field], origins: &OriginPolicy) -> Result<Accepted, Refusal> {
    let mut method = None;
    let mut protocol = None;
    let mut scheme = None;
    let mut authority = None;
    let mut path = None;
    let mut origin = None;
    let mut draft02 = false;
    let mut regular_seen = false;
    for field in fields {
        let name = field.name.as_str();
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(Refusal::new(400, format!("header name {name:?} is not lowercase")));
        }
        let slot = match name {
            ":method" => &mut method,
            ":protocol" => &mut protocol,
            ":scheme" => &mut scheme,
            ":authority" => &mut authority,
            ":path" => &mut path,
            _ if name.starts_with(':') => {
                return Err(Refusal::new(400, format!("unknown pseudo-header {name}")));
            }
            "origin" => {
                regular_seen = true;
                &mut origin
            }
            "sec-webtransport-http3-draft02" => {
                regular_seen = true;
                draft02 = field.value == "1";
                continue;
            }
            _ => {
                regular_seen = true;
                continue;
            }
        };
        if name.starts_with(':') && regular_seen {
            return Err(Refusal::new(400, format!("pseudo-header {name} after a regular header")));
        }
        if slot.replace(field.value.as_str()).is_some() {
            return Err(Refusal::new(400, format!("{name} appears twice")));
        }
    }
    let webtransport_only = "this port serves WebTransport sessions only: \
                             an extended CONNECT with :protocol webtransport to /v1/webtransport";
    match method {
        Some("CONNECT") => {}
        Some(_) => return Err(Refusal::new(405, webtransport_only)),
        None => return Err(Refusal::new(400, "the request has no :method")),
    }
    match protocol {
        Some("webtransport" | "webtransport-h3") => {}
        Some(other) => {
            return Err(Refusal::new(400, format!("unsupported :protocol {other:?}; {webtransport_only}")));
        }
        None => return Err(Refusal::new(405, webtransport_only)),
    }
    if scheme != Some("https") {
        return Err(Refusal::new(400, "an extended CONNECT needs :scheme https"));
    }
    let Some(authority) = authority.filter(|a| !a.is_empty()) else {
        return Err(Refusal::new(400, "the request has no :authority"));
    };
    let Some(path) = path else { return Err(Refusal::new(400, "the request has no :path")) };
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    if route != SESSION_PATH {
        return Err(Refusal::new(
            404,
            format!("no WebTransport endpoint at {route:?}; sessions open at {SESSION_PATH}"),
        ));
    }
    let mut codec = Codec::Rkyv;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("codec", "json")) => codec = Codec::Json,
            Some(("codec", "rkyv")) => codec = Codec::Rkyv,
            Some(("codec", other)) => {
                return Err(Refusal::new(400, format!("unknown codec {other:?}: json or rkyv")));
            }
            _ => return Err(Refusal::new(400, format!("unknown query parameter {pair:?}: only codec"))),
        }
    }
    if let Some(origin) = origin
        && !origins.allows(origin, authority)
    {
        return Err(Refusal::new(
            403,
            "pages of this origin may not open a session here (the server's --cors-origins)",
        ));
    }
    Ok(Accepted { codec, draft02 })
}

/// The `200` answer that opens the session (a HEADERS frame; the stream stays open).
pub fn accepted_response(accepted: &Accepted) -> Vec<u8> {
    let head = if accepted.draft02 {
        encode_response(200, &[("sec-webtransport-http3-draft", "draft02")])
    } else {
        encode_response(200, &[])
    };
    let mut out = Vec::new();
    write_frame(&mut out, frame_type::HEADERS, &head);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use crate::webtransport::qpack::decode_field_section;
    use crate::webtransport::wire::read_frame;

    fn fields(pairs: &[(&str, &str)]) -> Vec<Field> {
        pairs.iter().map(|(n, v)| Field { name: (*n).to_owned(), value: (*v).to_owned() }).collect()
    }

    fn policy() -> OriginPolicy {
        OriginPolicy {
            allowed: AllowedOrigins::parse(&["https://app.example.com".to_owned()], false).unwrap(),
            http_port: 8080,
            http_tls: false,
        }
    }

    fn request(path: &str, origin: &str) -> Vec<Field> {
        fields(&[
            (":method", "CONNECT"),
            (":protocol", "webtransport"),
            (":scheme", "https"),
            (":authority", "127.0.0.1:4433"),
            (":path", path),
            ("origin", origin),
            ("sec-webtransport-http3-draft02", "1"),
        ])
    }

    #[test]
    fn the_path_chooses_the_codec() {
        let json =
            check(&request("/v1/webtransport?codec=json", "http://127.0.0.1:8080"), &policy()).unwrap();
        assert_eq!(json, Accepted { codec: Codec::Json, draft02: true });
        let rkyv = check(&request("/v1/webtransport", "https://app.example.com"), &policy()).unwrap();
        assert_eq!(rkyv.codec, Codec::Rkyv);
        assert_eq!(
            check(&request("/v1/webtransport?codec=xml", "http://127.0.0.1:8080"), &policy())
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn wrong_paths_origins_and_methods_are_refused_with_a_reason() {
        assert_eq!(check(&request("/v1/ws", "http://127.0.0.1:8080"), &policy()).unwrap_err().status, 404);
        assert_eq!(
            check(&request("/v1/webtransport", "https://evil.example"), &policy()).unwrap_err().status,
            403
        );
        // Not from the HTTP listener's port: another site on the same host.
        assert_eq!(
            check(&request("/v1/webtransport", "http://127.0.0.1:9999"), &policy()).unwrap_err().status,
            403
        );
        let get = fields(&[(":method", "GET"), (":scheme", "https"), (":authority", "h:1"), (":path", "/")]);
        let refusal = check(&get, &policy()).unwrap_err();
        assert_eq!(refusal.status, 405);
        assert!(refusal.reason.contains("WebTransport"));
        let plain_connect = fields(&[(":method", "CONNECT"), (":authority", "h:1")]);
        assert_eq!(check(&plain_connect, &policy()).unwrap_err().status, 405);
        let mut twice = request("/v1/webtransport", "http://127.0.0.1:8080");
        twice.push(Field { name: ":path".into(), value: "/x".into() });
        assert_eq!(check(&twice, &policy()).unwrap_err().status, 400);
        let upper = fields(&[(":method", "CONNECT"), ("Origin", "x")]);
        assert_eq!(check(&upper, &policy()).unwrap_err().status, 400);
        assert_eq!(check(&[], &policy()).unwrap_err().status, 400);
    }

    #[test]
    fn answers_decode_as_http3() {
        let ok = accepted_response(&Accepted { codec: Codec::Json, draft02: true });
        let (frame, used) = read_frame(&ok, 1024).unwrap().unwrap();
        assert_eq!((frame.kind, used), (frame_type::HEADERS, ok.len()));
        let head = decode_field_section(frame.payload, 1024).unwrap();
        assert_eq!(head[0].value, "200");
        assert_eq!(head[1].value, "draft02");

        let refused = Refusal::new(404, "no such path").response();
        let (frame, used) = read_frame(&refused, 1024).unwrap().unwrap();
        assert_eq!(decode_field_section(frame.payload, 1024).unwrap()[0].value, "404");
        let (body, _) = read_frame(&refused[used..], 1024).unwrap().unwrap();
        assert_eq!(body.kind, frame_type::DATA);
        let body: serde_json::Value = serde_json::from_slice(body.payload).unwrap();
        assert_eq!(body["error"]["code"], "not_found");
    }

    #[test]
    fn ipv6_authorities_keep_their_brackets() {
        assert_eq!(authority_host("[::1]:4433"), "[::1]");
        assert_eq!(authority_host("localhost:4433"), "localhost");
        assert_eq!(authority_host("localhost"), "localhost");
        assert!(policy().allows("http://[::1]:8080", "[::1]:4433"));
    }
}
