//! Pages from other origins: CORS preflights and headers on every HTTP route for the
//! origins of `--cors-origins`, the `Origin` check of WebSocket upgrades (browsers apply
//! no CORS to WebSockets), `*` only with the development secret; and the built-in page,
//! served with the development secret (or `--web-page on`) under a strict
//! Content-Security-Policy.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests: failing loudly is the point")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use palaver_e2e::{HttpResponse, Server, http_bytes, palaver_bin, png_bytes, register, upload};
use palaver_protocol::{Codec, RoomKind};

const APP: &str = "https://app.example.com";
const EVIL: &str = "https://evil.example.net";

fn preflight(addr: SocketAddr, path: &str, origin: &str, method: &str) -> HttpResponse {
    http_bytes(
        addr,
        "OPTIONS",
        path,
        b"",
        &[
            ("origin", origin),
            ("access-control-request-method", method),
            ("access-control-request-headers", "authorization,content-type"),
        ],
    )
}

/// The status line of a WebSocket upgrade with these extra headers.
fn upgrade_status(addr: SocketAddr, headers: &[(&str, String)]) -> String {
    let mut head = format!(
        "GET /v1/ws HTTP/1.1\r\nhost: {addr}\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-protocol: palaver.v1.json\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let mut answer = vec![0u8; 512];
    let n = stream.read(&mut answer).unwrap();
    String::from_utf8_lossy(&answer[..n]).lines().next().unwrap_or_default().to_owned()
}

#[test]
fn every_route_answers_preflights_for_the_allowed_origins_only() {
    let server = Server::start(&["--cors-origins", APP]);
    let routes = [
        ("/v1/auth/register", "POST"),
        ("/v1/auth/login", "POST"),
        ("/v1/auth/refresh", "POST"),
        ("/v1/files", "POST"),
        ("/v1/files/f_abc", "GET"),
        ("/v1/ws", "GET"),
        ("/healthz", "GET"),
        ("/metrics", "GET"),
    ];
    for (path, method) in routes {
        let ok = preflight(server.addr, path, APP, method);
        assert_eq!(ok.status, 204, "{path}");
        assert_eq!(ok.header("access-control-allow-origin"), Some(APP), "{path}");
        assert_eq!(ok.header("access-control-allow-methods"), Some(method), "{path}");
        let headers = ok.header("access-control-allow-headers").unwrap();
        assert!(headers.contains("authorization") && headers.contains("content-type"), "{path}");
        assert!(ok.header("vary").unwrap().contains("origin"));
        assert!(ok.body.is_empty());

        let refused = preflight(server.addr, path, EVIL, method);
        assert_eq!(refused.status, 403, "{path}");
        assert_eq!(refused.header("access-control-allow-origin"), None);
        assert_eq!(refused.json()["error"]["code"], "forbidden");
    }
    assert_eq!(preflight(server.addr, "/v1/auth/login", APP, "DELETE").status, 405);
    assert_eq!(preflight(server.addr, "/nope", APP, "GET").status, 404);
    // Without --web-page (a configured secret), `/` is no route.
    assert_eq!(preflight(server.addr, "/", APP, "GET").status, 404);
    // A preflight keeps the connection: a real request follows on it.
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let two = format!(
        "OPTIONS /healthz HTTP/1.1\r\nhost: x\r\norigin: {APP}\r\naccess-control-request-method: GET\r\n\r\nGET /healthz HTTP/1.1\r\nhost: x\r\norigin: {APP}\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(two.as_bytes()).unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 204 No Content\r\n"), "{text}");
    assert_eq!(text.matches("access-control-allow-origin: https://app.example.com").count(), 2, "{text}");
    assert!(text.contains("HTTP/1.1 200 OK"), "{text}");
}

#[test]
fn answers_let_allowed_pages_read_them_and_no_others() {
    let server = Server::start(&["--cors-origins", &format!("{APP},http://localhost:5173")]);
    let body = br#"{"username":"carol","password":"password-123"}"#;
    let json = [("content-type", "application/json")];
    let from = |origin: &'static str| [json[0], ("origin", origin)];
    let created = http_bytes(server.addr, "POST", "/v1/auth/register", body, &from(APP));
    assert_eq!(created.status, 201);
    assert_eq!(created.header("access-control-allow-origin"), Some(APP));
    assert!(created.header("access-control-expose-headers").unwrap().contains("retry-after"));
    // Errors too, so the page can read why.
    let wrong = br#"{"username":"carol","password":"wrong-password"}"#;
    let refused = http_bytes(server.addr, "POST", "/v1/auth/login", wrong, &from("http://localhost:5173"));
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("access-control-allow-origin"), Some("http://localhost:5173"));
    let evil = http_bytes(server.addr, "POST", "/v1/auth/login", body, &from(EVIL));
    assert_eq!(evil.status, 200, "served (CORS is the browser's to enforce), but not readable:");
    assert_eq!(evil.header("access-control-allow-origin"), None);
    let plain = http_bytes(server.addr, "POST", "/v1/auth/login", body, &json);
    assert_eq!(plain.header("access-control-allow-origin"), None);

    // Files: the upload's answer and the download's streamed answer.
    let dave = register(server.addr, "dave");
    let mut client = palaver_e2e::Client::login(server.addr, Codec::Json, &dave);
    let room = client.create_room("files", RoomKind::Public);
    let bearer = format!("Bearer {}", dave.access_token);
    let png = png_bytes(4, 3);
    let path = format!("/v1/files?room={room}&name=dot.png");
    let headers = [("authorization", bearer.as_str()), ("origin", APP)];
    let uploaded = http_bytes(server.addr, "POST", &path, &png, &headers);
    assert_eq!(uploaded.status, 201);
    assert_eq!(uploaded.header("access-control-allow-origin"), Some(APP));
    let file_id = uploaded.json()["file_id"].as_str().unwrap().to_owned();
    let downloaded = http_bytes(server.addr, "GET", &format!("/v1/files/{file_id}"), b"", &headers);
    assert_eq!(downloaded.status, 200);
    assert_eq!(downloaded.header("access-control-allow-origin"), Some(APP));
    assert_eq!(downloaded.body, png);
    let missing = http_bytes(server.addr, "GET", "/v1/files/f_nosuchfile", b"", &headers);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("access-control-allow-origin"), Some(APP));
    let unauthorized = upload(server.addr, "not-a-token", &room, "x.png", &png);
    assert_eq!(unauthorized.status, 401);
}

#[test]
fn websocket_upgrades_from_other_origins_need_to_be_allowed() {
    let server = Server::start(&["--cors-origins", APP]);
    let own = format!("http://{}", server.addr);
    assert_eq!(upgrade_status(server.addr, &[]), "HTTP/1.1 101 Switching Protocols", "no Origin: not a page");
    assert_eq!(upgrade_status(server.addr, &[("origin", APP.into())]), "HTTP/1.1 101 Switching Protocols");
    assert_eq!(
        upgrade_status(server.addr, &[("origin", own)]),
        "HTTP/1.1 101 Switching Protocols",
        "same origin"
    );
    assert_eq!(upgrade_status(server.addr, &[("origin", EVIL.into())]), "HTTP/1.1 403 Forbidden");
    assert_eq!(upgrade_status(server.addr, &[("origin", "null".into())]), "HTTP/1.1 403 Forbidden");

    // With no --cors-origins, only the server's own pages (and non-browsers) get in.
    let closed = Server::start(&[]);
    assert_eq!(upgrade_status(closed.addr, &[("origin", APP.into())]), "HTTP/1.1 403 Forbidden");
    assert_eq!(preflight(closed.addr, "/v1/auth/login", APP, "POST").status, 403);
}

#[test]
fn any_origin_is_for_the_development_secret_only() {
    let refused = std::process::Command::new(palaver_bin())
        .args(["--jwt-secret", "a-real-secret-a-real-secret-a-real", "--cors-origins", "*"])
        .args(["--http-addr", "127.0.0.1:0", "--quic-addr", "127.0.0.1:0", "--data-dir"])
        .arg(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("development secret"), "{refused:?}");

    let server = Server::start_with_development_secret(&["--cors-origins", "*"]);
    let ok = preflight(server.addr, "/v1/auth/register", EVIL, "POST");
    assert_eq!(ok.status, 204);
    assert_eq!(ok.header("access-control-allow-origin"), Some("*"));
    assert_eq!(upgrade_status(server.addr, &[("origin", EVIL.into())]), "HTTP/1.1 101 Switching Protocols");
}

#[test]
fn the_built_in_page_comes_with_the_development_secret_under_a_strict_policy() {
    let server = Server::start_with_development_secret(&[]);
    let page = http_bytes(server.addr, "GET", "/", b"", &[]);
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    let policy = page.header("content-security-policy").unwrap();
    assert!(policy.contains("default-src 'none'") && policy.contains("script-src 'self'"), "{policy}");
    assert!(!policy.contains("unsafe-inline"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    let html = String::from_utf8(page.body).unwrap();
    assert!(html.contains(r#"<script src="/app.js" defer></script>"#));
    let script = http_bytes(server.addr, "GET", "/app.js", b"", &[]);
    assert_eq!(script.status, 200);
    assert_eq!(script.header("content-type"), Some("text/javascript; charset=utf-8"));
    assert!(String::from_utf8(script.body).unwrap().contains("palaver.v1.json"));
    assert_eq!(http_bytes(server.addr, "GET", "/app.css", b"", &[]).status, 200);
    assert_eq!(http_bytes(server.addr, "POST", "/", b"", &[]).status, 405);

    let off = Server::start_with_development_secret(&["--web-page", "off"]);
    assert_eq!(http_bytes(off.addr, "GET", "/", b"", &[]).status, 404);
    // With a configured secret the page is off unless asked for.
    let production = Server::start(&[]);
    assert_eq!(http_bytes(production.addr, "GET", "/", b"", &[]).status, 404);
    let asked = Server::start(&["--web-page", "on"]);
    assert_eq!(http_bytes(asked.addr, "GET", "/", b"", &[]).status, 200);
}
