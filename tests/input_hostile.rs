//! Bad input gets a clear error and never hurts the server or stored data.

use palaver_e2e::{Client, Server, http, post_json, register, send_op};
use palaver_protocol::{ClientFrame, Codec, ErrorCode, Op, ReplyBody, RoomId, RoomKind, ServerFrame};
use serde_json::json;

fn error_code(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    v["error"]["code"].as_str().unwrap_or_else(|| panic!("no error code: {body}")).to_owned()
}

#[test]
fn undecodable_frames_get_invalid_and_the_socket_stays_open() {
    let server = Server::start(&[]);
    let alice = register(server.addr, "alice");
    let mut c = Client::login(server.addr, Codec::Json, &alice);
    for garbage in [&b"not json"[..], b"{}", br#"{"id":7}"#, br#"{"op":"ping"}"#, b"[1,2,3]"] {
        c.send_raw(garbage.to_vec(), true);
        match c.recv() {
            ServerFrame::Reply { body: ReplyBody::Err(e), .. } => assert_eq!(e.code, ErrorCode::Invalid),
            other => panic!("{other:?}"),
        }
    }
    // An id that can be read comes back as `re`.
    c.send_raw(br#"{"id":42,"op":"join","room":"not-a-room"}"#.to_vec(), true);
    assert!(
        matches!(c.recv(), ServerFrame::Reply { re: 42, body: ReplyBody::Err(e) } if e.code == ErrorCode::Invalid)
    );
    c.send_raw(br#"{"id":43,"op":"ping","surprise":true}"#.to_vec(), true);
    assert!(matches!(c.recv(), ServerFrame::Reply { re: 43, body: ReplyBody::Err(_) }));
    c.ok(Op::Ping {});

    let mut r = Client::login(server.addr, Codec::Rkyv, &alice);
    r.send_raw(vec![0xde, 0xad, 0xbe, 0xef, 1, 2, 3], false);
    match r.recv() {
        ServerFrame::Reply { re: 0, body: ReplyBody::Err(e) } => {
            assert_eq!(e.code, ErrorCode::Invalid);
            // What is wrong, with positions as offsets into the frame, not the server's addresses.
            assert!(e.message.starts_with("malformed frame: "), "{e:?}");
            assert!(!e.message.contains("0x") && !e.message.contains("without error information"), "{e:?}");
        }
        other => panic!("{other:?}"),
    }
    // A well-formed archive whose room id is not one: refused as JSON would be, with its id.
    let leave = ClientFrame { id: 44, op: Op::Leave { room: RoomId::parse("r_abc").unwrap() } };
    let mut bytes = Codec::Rkyv.encode_client(&leave).unwrap();
    let at = bytes.windows(5).position(|w| w == b"r_abc").unwrap();
    bytes[at + 3] = b'B';
    r.send_raw(bytes, false);
    match r.recv() {
        ServerFrame::Reply { re: 44, body: ReplyBody::Err(e) } => {
            assert_eq!(e.code, ErrorCode::Invalid);
            assert!(e.message.contains("room id is malformed"), "{e:?}");
        }
        other => panic!("{other:?}"),
    }
    r.ok(Op::Ping {});
}

#[test]
fn a_stream_of_garbage_closes_the_socket_with_1008() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr, Codec::Json);
    for _ in 0..16 {
        c.send_raw(b"garbage".to_vec(), true);
    }
    assert_eq!(c.expect_close(), Some(1008));
    assert_eq!(http(server.addr, "GET", "/healthz", None, &[]).0, 200);
}

#[test]
fn ops_before_auth_and_bad_tokens_are_unauthorized() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr, Codec::Json);
    c.err(Op::Ping {}, ErrorCode::Unauthorized);
    c.err(Op::Auth { token: "not.a.jwt".into() }, ErrorCode::Unauthorized);
    c.err(Op::Auth { token: "x".repeat(10_000) }, ErrorCode::Unauthorized);
    let alice = register(server.addr, "alice");
    c.ok(Op::Auth { token: alice.access_token.clone() });
    c.err(Op::Auth { token: alice.access_token }, ErrorCode::Invalid);
}

#[test]
fn a_socket_that_never_authenticates_is_closed_at_the_deadline() {
    let server = Server::start(&["--auth-timeout-secs", "1"]);
    let mut c = Client::connect(server.addr, Codec::Json);
    assert_eq!(c.expect_close(), Some(1008));
}

#[test]
fn message_texts_are_validated() {
    let server = Server::start(&["--max-text-chars", "10"]);
    let alice = register(server.addr, "alice");
    let mut c = Client::login(server.addr, Codec::Json, &alice);
    let room = c.create_room("r", RoomKind::Public);
    c.join(&room, None);
    c.err(send_op(&room, "a", "eleven char"), ErrorCode::TooLarge);
    c.err(send_op(&room, "b", "nul\u{0}"), ErrorCode::Invalid);
    c.err(send_op(&room, "c", " \n\t "), ErrorCode::Invalid);
    assert_eq!(c.say(&room, "d", "🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉"), (1, false), "ten emoji are ten characters");
    assert_eq!(c.say(&room, "e", "a\nb\tc <b>"), (2, false));
    let stored = c.history(&room, None, None);
    assert_eq!(stored[0].text, "a\nb\tc <b>", "stored exactly as sent");
}

#[test]
fn an_oversized_frame_closes_with_1009() {
    let server = Server::start(&["--max-frame-bytes", "4096"]);
    let alice = register(server.addr, "alice");
    let mut c = Client::login(server.addr, Codec::Json, &alice);
    let big = format!(r#"{{"id":1,"op":"ping","pad":"{}"}}"#, "x".repeat(5_000));
    c.send_raw(big.into_bytes(), true);
    assert_eq!(c.expect_close(), Some(1009));
}

#[test]
fn http_errors_are_json_with_fitting_statuses() {
    let server = Server::start(&[]);
    let addr = server.addr;
    let (status, body) = http(addr, "POST", "/v1/auth/register", Some("{not json"), &[]);
    assert_eq!((status, error_code(&body).as_str()), (400, "invalid"));
    let (status, body) =
        post_json(addr, "/v1/auth/register", &json!({"username": "a b", "password": "password-123"}));
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid")));
    let (status, _) =
        post_json(addr, "/v1/auth/register", &json!({"username": "carol", "password": "short"}));
    assert_eq!(status, 400);
    let (status, _) = post_json(
        addr,
        "/v1/auth/register",
        &json!({"username": "carol", "password": "password-123", "admin": true}),
    );
    assert_eq!(status, 400, "unknown fields are refused");
    register(addr, "carol");
    let (status, body) =
        post_json(addr, "/v1/auth/register", &json!({"username": "CAROL", "password": "password-123"}));
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")));
    let (status, body) =
        post_json(addr, "/v1/auth/login", &json!({"username": "carol", "password": "wrong-password"}));
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")));
    let (status, _) =
        post_json(addr, "/v1/auth/login", &json!({"username": "nobody", "password": "wrong-password"}));
    assert_eq!(status, 401);
    let (status, body) = http(addr, "GET", "/nope", None, &[]);
    assert_eq!((status, error_code(&body).as_str()), (404, "not_found"));
    let (status, body) = http(addr, "GET", "/v1/auth/login", None, &[]);
    assert_eq!((status, error_code(&body).as_str()), (405, "invalid"));
    let huge = "x".repeat(100_000);
    let (status, body) = http(addr, "POST", "/v1/auth/login", Some(&huge), &[]);
    assert_eq!((status, error_code(&body).as_str()), (413, "too_large"));
    let (status, body) = http(
        addr,
        "GET",
        "/v1/ws",
        None,
        &[
            ("upgrade", "websocket"),
            ("connection", "upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-protocol", "chat"),
        ],
    );
    assert_eq!((status, error_code(&body).as_str()), (400, "invalid"));
    let (status, body) = http(addr, "GET", "/metrics", None, &[]);
    assert_eq!(status, 200);
    assert!(body.contains("palaver_http_requests_total"));
}

#[test]
fn raw_garbage_on_the_port_and_on_an_upgraded_socket_leaves_the_server_healthy() {
    use std::io::{Read, Write};
    let server = Server::start(&[]);
    // Not HTTP at all.
    for garbage in [
        &b"\x00\x01\x02\xff\xfe garbage\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"POST /v1/auth/login HTTP/1.1\r\ncontent-length: nope\r\n\r\n",
    ] {
        let mut s = std::net::TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        s.write_all(garbage).unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    }
    // A WebSocket that sends an unmasked frame breaks the protocol: closed with 1002.
    let mut c = Client::connect(server.addr, Codec::Json);
    let alice = register(server.addr, "alice");
    c.ok(Op::Auth { token: alice.access_token });
    c.send_raw_frame(&[0x81, 0x02, b'h', b'i']);
    assert_eq!(c.expect_close(), Some(1002));
    assert_eq!(http(server.addr, "GET", "/healthz", None, &[]).0, 200);
}
