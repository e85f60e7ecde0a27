//! Resource limits against hostile clients: connections per address and per user, a
//! client trickling its request head (slowloris) or a WebSocket frame, and forged or
//! out-of-date tokens. Each limit is a flag; each refusal is a clear error.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use base64::Engine as _;
use palaver_e2e::{Client, Server, WAIT, http, register};
use palaver_protocol::{Codec, ErrorCode, Op};
use tungstenite::client::IntoClientRequest as _;

/// An HTTP request that stays open (its head never finishes) holds a connection slot.
fn half_open(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    stream
}

/// Polls until `f` holds (slots are given back when the server notices a close).
fn eventually(mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "condition not reached in time");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn connections_per_address_are_limited_with_429_and_slots_come_back() {
    let server = Server::start(&["--max-connections-per-ip", "3"]);
    let held: Vec<TcpStream> = (0..3).map(|_| half_open(server.addr)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let (status, body) = http(server.addr, "GET", "/healthz", None, &[]);
    assert_eq!(status, 429, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"]["code"], "rate_limited");
    assert!(json["error"]["message"].as_str().unwrap().contains("address"));
    drop(held);
    // Until the server has seen the three closes, a request may still be refused; the
    // metric counts every refusal, so count them here too.
    let mut refused = 1;
    eventually(|| match http(server.addr, "GET", "/healthz", None, &[]).0 {
        429 => {
            refused += 1;
            false
        }
        status => status == 200,
    });
    let metrics = http(server.addr, "GET", "/metrics", None, &[]).1;
    assert!(metrics.contains(&format!("palaver_connections_refused_total {refused}\n")), "{metrics}");
}

#[test]
fn connections_per_user_are_limited_over_the_auth_op_and_the_bearer_header() {
    let server = Server::start(&["--max-connections-per-user", "2"]);
    let alice = register(server.addr, "alice");
    let bob = register(server.addr, "bob");
    let first = Client::login(server.addr, Codec::Json, &alice);
    let _second = Client::connect_with(server.addr, Codec::Rkyv, Some(&alice.access_token));

    // A third socket: refused by the auth op with rate_limited (and may try again later) …
    let mut third = Client::connect(server.addr, Codec::Json);
    let why = third.err(Op::Auth { token: alice.access_token.clone() }, ErrorCode::RateLimited);
    assert!(why.contains("too many connections for this user"), "{why}");
    // … and by the upgrade with 429 when it brings a bearer token.
    let mut request = format!("ws://{}/v1/ws", server.addr).into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {}", alice.access_token).parse().unwrap());
    match tungstenite::connect(request) {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 429),
        other => panic!("expected 429, got {:?}", other.map(|(_, r)| r.status())),
    }
    // Other users are unaffected.
    let _bob = Client::login(server.addr, Codec::Json, &bob);

    // Closing one of alice's sockets gives its slot back.
    first.close();
    eventually(|| {
        matches!(
            third.request(Op::Auth { token: alice.access_token.clone() }),
            palaver_protocol::ReplyBody::Ok(_)
        )
    });
}

#[test]
fn a_client_trickling_its_request_head_is_cut_off() {
    let server = Server::start(&["--handshake-timeout-secs", "2"]);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let head = b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ";
    let started = Instant::now();
    let mut cut = false;
    // One byte every 250 ms: each write is fine, but the head never completes in time.
    'trickle: for byte in head.iter().chain(std::iter::repeat(&b'a')) {
        if stream.write_all(&[*byte]).is_err() {
            cut = true;
            break;
        }
        let mut buf = [0u8; 64];
        match stream.read(&mut buf) {
            Ok(0) => {
                cut = true;
                break 'trickle;
            }
            Ok(_) => panic!("no answer is due to an unfinished head"),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                cut = true;
                break 'trickle;
            }
            Err(_) => {}
        }
        assert!(started.elapsed() < Duration::from_secs(8), "the trickling client was never cut off");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(cut);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(1_500), "cut at the deadline, not before: {elapsed:?}");
    assert_eq!(http(server.addr, "GET", "/healthz", None, &[]).0, 200);
}

#[test]
fn a_websocket_frame_trickled_byte_by_byte_is_closed_as_idle() {
    let server = Server::start(&["--ping-interval-secs", "1", "--idle-timeout-secs", "2"]);
    let alice = register(server.addr, "alice");
    let mut c = Client::login(server.addr, Codec::Json, &alice);
    // A masked text frame announcing 200 bytes, then one payload byte at a time: the
    // bytes keep coming but no frame ever completes, so the socket counts as silent.
    c.send_raw_frame(&[0x81, 0x80 | 126, 0, 200, 1, 2, 3, 4]);
    let mut raw = c.tcp_clone();
    let trickler = std::thread::spawn(move || {
        for _ in 0..40 {
            if raw.write_all(b"a").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    });
    let started = Instant::now();
    assert_eq!(c.expect_close_without_answering(), Some(1001), "closed as idle");
    assert!(started.elapsed() < Duration::from_secs(8));
    trickler.join().unwrap();
}

/// Signs `claims` with HS256 and the test server's secret, under `header` (the
/// algorithm named in the header is what an attacker controls).
fn forge(header: &str, claims: &serde_json::Value, key: &[u8]) -> String {
    use hmac::Mac as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let signing_input = format!("{}.{}", b64(header.as_bytes()), b64(claims.to_string().as_bytes()));
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(signing_input.as_bytes());
    format!("{signing_input}.{}", b64(&mac.finalize().into_bytes()))
}

#[test]
fn forged_and_out_of_date_tokens_are_unauthorized() {
    let server = Server::start(&[]);
    let alice = register(server.addr, "alice");
    let secret = b"e2e-test-secret-e2e-test-secret";
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = |nbf: u64, exp: u64| serde_json::json!({"sub": alice.user_id, "sid": "forged", "iat": nbf, "nbf": nbf, "exp": exp});
    let hs256 = r#"{"alg":"HS256","typ":"JWT"}"#;
    // The control: a well-formed token signed with the real secret is accepted.
    let good = forge(hs256, &claims(now, now + 600), secret);
    let mut control = Client::connect(server.addr, Codec::Json);
    control.ok(Op::Auth { token: good.clone() });
    // Around a token, white space is not part of it: in the op as in a header (where HTTP
    // already strips it from the value).
    let mut padded = Client::connect(server.addr, Codec::Json);
    padded.ok(Op::Auth { token: format!(" {good} ") });

    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let attacks = [
        // `alg: none`, no signature.
        (
            "alg none",
            format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), b64(&claims(now, now + 600).to_string())),
        ),
        // Signed with another key.
        ("foreign key", forge(hs256, &claims(now, now + 600), b"another-secret-another-secret!!")),
        // Key confusion: the header names RS256 (as if the HMAC key were an RSA public
        // key); only HS256 is accepted, whatever the signature.
        ("RS256 header", forge(r#"{"alg":"RS256","typ":"JWT"}"#, &claims(now, now + 600), secret)),
        ("ES256 header", forge(r#"{"alg":"ES256","typ":"JWT"}"#, &claims(now, now + 600), secret)),
        ("HS512 header", forge(r#"{"alg":"HS512","typ":"JWT"}"#, &claims(now, now + 600), secret)),
        // Expired, and not yet valid (beyond the 5 s leeway).
        ("expired", forge(hs256, &claims(now - 7_200, now - 3_600), secret)),
        ("not yet valid", forge(hs256, &claims(now + 3_600, now + 7_200), secret)),
        // Required claims missing.
        ("no exp", forge(hs256, &serde_json::json!({"sub": alice.user_id, "nbf": now}), secret)),
        // A subject that is not a user id.
        (
            "bad subject",
            forge(hs256, &serde_json::json!({"sub": "../admin", "nbf": now, "exp": now + 600}), secret),
        ),
        // Correctly signed, for a user who does not exist.
        (
            "unknown user",
            forge(
                hs256,
                &serde_json::json!({"sub": "u_nosuchuser", "sid": "x", "iat": now, "nbf": now, "exp": now + 600}),
                secret,
            ),
        ),
        // White space inside a token.
        ("inner space", forge(hs256, &claims(now, now + 600), secret).replacen('.', ". ", 1)),
    ];
    for (name, token) in &attacks {
        let mut c = Client::connect(server.addr, Codec::Json);
        let why = c.err(Op::Auth { token: token.clone() }, ErrorCode::Unauthorized);
        assert!(!why.is_empty(), "{name}");
        // The same token on the upgrade is refused with 401 (sent raw: an HTTP client
        // library would drop a trailing space from the header value itself).
        let head = format!(
            "GET /v1/ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-protocol: palaver.v1.json\r\nauthorization: Bearer {token}\r\n\r\n"
        );
        let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        std::io::Write::write_all(&mut stream, head.as_bytes()).unwrap();
        let mut response = String::new();
        let _ = std::io::Read::read_to_string(&mut stream, &mut response);
        assert!(response.starts_with("HTTP/1.1 401 "), "{name}: {response}");
    }
}
