//! The admin console with the real binary: off unless asked for; its sign-in takes admins
//! only and keeps the login in cookies; a cookie-authenticated change without the
//! anti-forgery token, or from another origin, is refused; and in headless Chromium
//! (driven by `tests/browser/admin_console.mjs`) an admin watches live counts, finds a
//! user and suspends them, resolves a report, deletes a room, makes and revokes an API
//! key and reads it all back in the audit log, with no Content-Security-Policy violation.
//!
//! The browser half needs Chromium, Node.js and `npm ci` in `tests/browser`: `./x test`
//! installs them and passes their paths in `PALAVER_CHROMIUM` and `PALAVER_NODE`.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests: failing loudly is the point")]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use palaver_e2e::{
    Account, CHROMIUM, Client, HttpResponse, NODE, Server, http, http_bytes, outside_tool, palaver_bin,
    register,
};
use palaver_protocol::{Codec, Op, RoomKind};
use serde_json::{Value, json};

/// Makes `username` an admin with `palaver admin grant` (the server stopped around it).
fn grant(server: &mut Server, username: &str) {
    server.terminate();
    let output = Command::new(palaver_bin())
        .args(["admin", "grant", username, "--data-dir"])
        .arg(server.data_dir())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    server.restart();
}

fn origin(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// `POST /admin/session` from the console's own origin.
fn sign_in(addr: SocketAddr, username: &str, password: &str) -> HttpResponse {
    let body = json!({ "username": username, "password": password }).to_string();
    let origin = origin(addr);
    http_bytes(
        addr,
        "POST",
        "/admin/session",
        body.as_bytes(),
        &[("content-type", "application/json"), ("origin", &origin)],
    )
}

/// The `name=value` pairs an answer sets as cookies, joined as a `Cookie` header.
fn cookies_of(answer: &HttpResponse) -> String {
    answer
        .headers
        .iter()
        .filter(|(name, _)| name == "set-cookie")
        .map(|(_, value)| value.split(';').next().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("; ")
}

fn set_cookie(answer: &HttpResponse, name: &str) -> String {
    answer
        .headers
        .iter()
        .find(|(n, v)| n == "set-cookie" && v.starts_with(&format!("{name}=")))
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no {name} cookie in {:?}", answer.headers))
}

fn error_code(answer: &HttpResponse) -> (u16, Option<String>) {
    (answer.status, answer.json()["error"]["code"].as_str().map(str::to_owned))
}

#[test]
fn the_console_is_off_unless_asked_for() {
    let server = Server::start(&[]);
    let (status, body) = http(server.addr, "GET", "/admin/", None, &[]);
    assert_eq!(status, 404, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(http(server.addr, "POST", "/admin/session", Some("{}"), &[]).0, 404);
}

#[test]
fn the_console_signs_in_admins_only_and_refuses_forged_changes() {
    let mut server = Server::start(&["--admin-console"]);
    let addr = server.addr;
    register(addr, "alice");
    let bob = register(addr, "bob");
    grant(&mut server, "alice");

    let page = http_bytes(addr, "GET", "/admin/", b"", &[]);
    assert_eq!(page.status, 200);
    let policy = page.header("content-security-policy").unwrap();
    assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"), "{policy}");
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(http(addr, "DELETE", "/admin/", None, &[]).0, 405);
    assert_eq!(http(addr, "GET", "/admin/nothing", None, &[]).0, 404);

    // Not signed in.
    assert_eq!(error_code(&http_bytes(addr, "GET", "/admin/session", b"", &[])).0, 401);
    // Only admins, only with the right password, only from the console's own origin.
    assert_eq!(error_code(&sign_in(addr, "bob", "password-123")), (403, Some("forbidden".into())));
    assert_eq!(error_code(&sign_in(addr, "alice", "wrong-password")), (401, Some("unauthorized".into())));
    let body = json!({ "username": "alice", "password": "password-123" }).to_string();
    let forged = http_bytes(
        addr,
        "POST",
        "/admin/session",
        body.as_bytes(),
        &[("content-type", "application/json"), ("origin", "http://evil.example")],
    );
    assert_eq!(error_code(&forged).0, 403);

    let signed_in = sign_in(addr, "alice", "password-123");
    assert_eq!(signed_in.status, 200, "{:?}", String::from_utf8_lossy(&signed_in.body));
    let session = signed_in.json();
    assert_eq!(session["username"], "alice");
    let csrf = session["csrf_token"].as_str().unwrap().to_owned();
    let access_cookie = set_cookie(&signed_in, "palaver_console");
    assert!(
        access_cookie.contains("HttpOnly") && access_cookie.contains("SameSite=Strict"),
        "{access_cookie}"
    );
    assert!(access_cookie.contains("Path=/;"), "{access_cookie}");
    let refresh_cookie = set_cookie(&signed_in, "palaver_console_refresh");
    assert!(refresh_cookie.contains("Path=/admin/session;") && refresh_cookie.contains("HttpOnly"));
    assert!(
        !session.to_string().contains(access_cookie.split(['=', ';']).nth(1).unwrap()),
        "no token in the body"
    );
    let cookies = cookies_of(&signed_in);
    let own_origin = origin(addr);

    // Reads with the cookie alone.
    let whoami = http_bytes(addr, "GET", "/admin/session", b"", &[("cookie", &cookies)]);
    assert_eq!((whoami.status, whoami.json()["csrf_token"].as_str()), (200, Some(csrf.as_str())));
    let stats = http_bytes(addr, "GET", "/v1/admin/stats", b"", &[("cookie", &cookies)]);
    assert_eq!(stats.status, 200);
    let users = http_bytes(addr, "GET", "/v1/admin/users?prefix=b", b"", &[("cookie", &cookies)]);
    assert_eq!(users.json()["users"][0]["username"], "bob", "{:?}", users.json());

    // Changes need the anti-forgery token and the console's origin.
    let suspend = format!("/v1/admin/users/{}/suspend", bob.user_id);
    let attempts: [&[(&str, &str)]; 4] = [
        &[("cookie", &cookies), ("origin", &own_origin)],
        &[("cookie", &cookies), ("origin", &own_origin), ("x-csrf-token", "forged")],
        &[("cookie", &cookies), ("origin", "http://evil.example"), ("x-csrf-token", &csrf)],
        &[("cookie", &cookies), ("x-csrf-token", &csrf)],
    ];
    for headers in attempts {
        let refused = http_bytes(addr, "POST", &suspend, b"", headers);
        assert_eq!(error_code(&refused), (403, Some("forbidden".into())), "{headers:?}");
    }
    let bob_account =
        http_bytes(addr, "GET", &format!("/v1/admin/users/{}", bob.user_id), b"", &[("cookie", &cookies)]);
    assert_eq!(bob_account.json()["suspended"], Value::Null, "no forged request took effect");
    let done = http_bytes(
        addr,
        "POST",
        &suspend,
        br#"{"reason":"spam"}"#,
        &[("cookie", &cookies), ("origin", &own_origin), ("x-csrf-token", &csrf)],
    );
    assert_eq!(done.status, 200, "{:?}", done.json());
    assert_eq!(done.json()["suspended"]["reason"], "spam");

    // A bearer token still works without any of it (backends and scripts).
    let alice = palaver_e2e::post_json(
        addr,
        "/v1/auth/login",
        &json!({"username": "alice", "password": "password-123"}),
    )
    .1;
    let bearer = format!("Bearer {}", alice["access_token"].as_str().unwrap());
    let unsuspend = format!("/v1/admin/users/{}/unsuspend", bob.user_id);
    assert_eq!(http_bytes(addr, "POST", &unsuspend, b"", &[("authorization", &bearer)]).status, 200);

    // Refreshing trades the refresh cookie for new ones; the old refresh token is spent.
    let refresh_only = cookies_of(&signed_in)
        .split("; ")
        .find(|c| c.starts_with("palaver_console_refresh="))
        .unwrap()
        .to_owned();
    let refreshed = http_bytes(
        addr,
        "POST",
        "/admin/session/refresh",
        b"",
        &[("cookie", &refresh_only), ("origin", &own_origin)],
    );
    assert_eq!(refreshed.status, 200, "{:?}", refreshed.json());
    assert_eq!(refreshed.json()["csrf_token"].as_str(), Some(csrf.as_str()), "the same login");
    let cookies = cookies_of(&refreshed);

    // Signing out ends the login: the cookie's token is refused from then on.
    let out = http_bytes(
        addr,
        "POST",
        "/admin/session/logout",
        b"",
        &[("cookie", &cookies), ("origin", &own_origin), ("x-csrf-token", &csrf)],
    );
    assert_eq!(out.status, 200);
    assert!(set_cookie(&out, "palaver_console").contains("Max-Age=0"));
    assert_eq!(http_bytes(addr, "GET", "/v1/admin/stats", b"", &[("cookie", &cookies)]).status, 401);
    assert_eq!(http_bytes(addr, "GET", "/admin/session", b"", &[("cookie", &cookies)]).status, 401);
}

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

#[test]
fn an_admin_uses_the_console_in_a_browser() {
    let (chromium, node) = (outside_tool(CHROMIUM), outside_tool(NODE));
    assert!(
        browser_dir().join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: ./x test, or cd tests/browser && npm ci"
    );
    let mut server = Server::start(&["--admin-console"]);
    let addr = server.addr;
    register(addr, "alice");
    let bob: Account = register(addr, "bob");
    let carol = register(addr, "carol");
    grant(&mut server, "alice");

    // Bob runs a room, carol reports one of its messages.
    let mut bob_client = Client::login(addr, Codec::Json, &bob);
    let room = bob_client.create_room("noisy corner", RoomKind::Public);
    bob_client.say(&room, "c1", "buy cheap watches");
    let mut carol_client = Client::login(addr, Codec::Json, &carol);
    carol_client.join(&room, None);
    let report = json!({ "room": room, "seq": 1, "reason": "spam" }).to_string();
    let bearer = format!("Bearer {}", carol.access_token);
    let reported = http(
        addr,
        "POST",
        "/v1/reports",
        Some(&report),
        &[("authorization", &bearer), ("content-type", "application/json")],
    );
    assert_eq!(reported.0, 201, "{}", reported.1);
    carol_client.ok(Op::Ping {});

    let driver = Command::new(node)
        .current_dir(browser_dir())
        .arg("admin_console.mjs")
        .arg(chromium)
        .arg(server.url("/admin/"))
        .arg(&bob.user_id)
        .arg(room.as_str())
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&driver.stdout);
    assert!(driver.status.success(), "the console did not work (see the driver's output above): {printed}");

    // The key the console showed once was made, then revoked.
    let key = printed.lines().find_map(|line| line.strip_prefix("KEY ")).unwrap();
    let (status, body) = http(
        addr,
        "POST",
        "/v1/server/users",
        Some(r#"{"username":"dave"}"#),
        &[("authorization", &format!("Bearer {key}")), ("content-type", "application/json")],
    );
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("revoked"), "{body}");

    // What the page did, as the server has it.
    let alice = palaver_e2e::post_json(
        addr,
        "/v1/auth/login",
        &json!({"username": "alice", "password": "password-123"}),
    )
    .1;
    let bearer = format!("Bearer {}", alice["access_token"].as_str().unwrap());
    let audit = http_bytes(addr, "GET", "/v1/admin/audit", b"", &[("authorization", &bearer)]).json();
    let actions: Vec<&str> =
        audit["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        ["grant_admin", "suspend", "resolve_report", "delete_room", "create_api_key", "revoke_api_key"],
        "{audit}"
    );
    let bob_account = http_bytes(
        addr,
        "GET",
        &format!("/v1/admin/users/{}", bob.user_id),
        b"",
        &[("authorization", &bearer)],
    );
    assert_eq!(bob_account.json()["suspended"]["reason"], "spam account");
}
