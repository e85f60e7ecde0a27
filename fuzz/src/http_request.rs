//! `http_request`: the server's HTTP request-head parser and WebSocket upgrade checks.

use bytes::BytesMut;
use palaver_protocol::Codec;
use palaver_server::fuzzing::{MAX_HEAD_BYTES, Request, check_upgrade, parse_head};

/// Input: byte 0 seeds the chunking (its high bit also pads the head past the 16 KiB
/// limit), the rest is the start of a connection. Checks: no panic; the same outcome
/// whole and chunked; a head over [`MAX_HEAD_BYTES`] is refused with 431 and no
/// accepted head is longer; accepted heads have lower-case header names, no
/// `Transfer-Encoding`, and the `Content-Length` they declare; an accepted upgrade is a
/// `GET` with `Connection: upgrade`, version 13, a 28-character accept key and the codec
/// the client offered first.
pub fn http_request(data: &[u8]) {
    let [seed, input @ ..] = data else { return };
    let mut stream = input.to_vec();
    if seed & 0x80 != 0 {
        // Grow the header block past the limit (an `x-pad` header repeated).
        let at = stream.windows(2).position(|w| w == b"\r\n").map_or(stream.len(), |p| p + 2);
        let pad = b"x-pad: 0123456789abcdef0123456789abcdef\r\n".repeat(MAX_HEAD_BYTES / 40 + 1);
        stream.splice(at..at, pad);
    }

    let whole = parse(&stream, std::iter::once(stream.len().max(1)));
    let chunked = parse(&stream, crate::chunk_lengths(*seed, 64));
    assert_eq!(whole, chunked, "whole vs chunked");

    match whole {
        Outcome::Refused(431) => assert!(stream.len() > MAX_HEAD_BYTES),
        Outcome::Refused(status) => assert_eq!(status, 400),
        Outcome::Incomplete => assert!(stream.len() <= MAX_HEAD_BYTES),
        Outcome::Head { consumed, .. } => assert!(consumed <= MAX_HEAD_BYTES),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Incomplete,
    Refused(u16),
    Head { consumed: usize, summary: String },
}

fn parse(stream: &[u8], chunks: impl Iterator<Item = usize>) -> Outcome {
    let mut buf = BytesMut::new();
    let mut rest = stream;
    for len in chunks {
        let (chunk, tail) = rest.split_at(len.min(rest.len()));
        rest = tail;
        buf.extend_from_slice(chunk);
        let before = buf.len();
        match parse_head(&mut buf) {
            Ok(Some((request, length))) => {
                check_request(&request, length);
                return Outcome::Head {
                    consumed: before - buf.len(),
                    summary: format!("{request:?} {length}"),
                };
            }
            Ok(None) => {}
            Err(status) => return Outcome::Refused(status),
        }
        if rest.is_empty() {
            break;
        }
    }
    Outcome::Incomplete
}

fn check_request(request: &Request, length: usize) {
    assert!(request.headers.len() <= 64);
    for (name, _) in &request.headers {
        assert_eq!(name, &name.to_ascii_lowercase());
    }
    assert!(request.header("transfer-encoding").is_none());
    match request.header("content-length") {
        None => assert_eq!(length, 0),
        Some(v) => assert_eq!(v.trim().parse::<usize>().ok(), Some(length)),
    }
    if let Ok((accept, codec, echo, _token, extensions)) = check_upgrade(request) {
        if let Some(answer) = extensions {
            assert!(request.header("sec-websocket-extensions").is_some());
            assert!(
                answer.starts_with(
                    "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
                )
            );
        }
        assert_eq!(request.method, "GET");
        assert!(request.header_has_token("connection", "upgrade"));
        assert_eq!(request.header("sec-websocket-version").map(str::trim), Some("13"));
        assert_eq!(accept.len(), 28);
        match request.header("sec-websocket-protocol") {
            None => assert_eq!((codec, echo), (Codec::Json, false)),
            Some(offered) => {
                let first = offered.split(',').map(str::trim).find_map(Codec::from_subprotocol);
                assert_eq!((Some(codec), echo), (first, true));
            }
        }
    }
}
