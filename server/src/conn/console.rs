//! The admin console (`--admin-console`, off by default): a web page at `/admin/` for
//! admins — users, rooms, reports, the audit log, live counts — on the admin routes
//! (`/v1/admin/…`). Plain HTML, CSS and JavaScript compiled into the binary
//! (`server/web/console/`), served under a Content-Security-Policy that allows no inline
//! script or style and no other origin.
//!
//! Signing in is an admin's username and password; the login it starts is an ordinary
//! one (ended by logout, logout-all, a password change or a suspension, cluster-wide),
//! kept in two `HttpOnly`, `SameSite=Strict` cookies the page's script cannot read: the
//! access token (sent to every path) and the refresh token (sent to `/admin/session`
//! only). Because a browser attaches cookies to requests other pages make, a request
//! authenticated by the cookie may change something only when it also carries
//! `X-CSRF-Token` — a MAC of the login the console learns from same-origin answers — and
//! comes from this origin (`Origin`, and `Sec-Fetch-Site` when sent). Requests with an
//! `Authorization` header never look at the cookies.

use std::net::IpAddr;
use std::rc::Rc;

use palaver_core::logins::EndReason;
use palaver_protocol::ErrorCode;
use serde_json::json;

use super::http::{Request, Response};
use super::routes::{
    Credentials, NewLogin, REFRESH_TTL_MS, SignInFor, bearer, close_ended_logins, method_not_allowed,
    parse_json, refused_response, rotate_refresh_token, sign_in, storage_failure,
};
use crate::auth::Verified;
use crate::clock::now_ms;
use crate::shard::Shard;
use crate::shared::Shared;

/// The cookie holding the console's access token.
const ACCESS_COOKIE: &str = "palaver_console";
/// The cookie holding the console's refresh token (sent to `/admin/session…` only).
const REFRESH_COOKIE: &str = "palaver_console_refresh";
/// The header a cookie-authenticated change must carry.
const CSRF_HEADER: &str = "x-csrf-token";

/// What the console's page may load and talk to: its own script and style and the same
/// origin's routes; nothing inline, nothing else, never framed, no form posts.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const INDEX_HTML: &str = include_str!("../../web/console/index.html");
const CONSOLE_JS: &str = include_str!("../../web/console/console.js");
const CONSOLE_CSS: &str = include_str!("../../web/console/console.css");

/// Whether `path` is the console's (answered by [`handle`] while the console is on).
pub fn is_console_path(path: &str) -> bool {
    path == "/admin" || path.starts_with("/admin/")
}

/// Answers a console path: its page, or its session routes.
pub async fn handle(shard: &Rc<Shard>, request: &Request, peer: IpAddr) -> Response {
    let method = request.method.as_str();
    match request.path.as_str() {
        "/admin" => {
            let mut moved = Response::json(308, &json!({ "location": "/admin/" }));
            moved.headers.push(("location", "/admin/".to_owned()));
            moved
        }
        "/admin/session" => match method {
            "GET" => whoami(&shard.shared, request),
            "POST" => start_session(shard, request, peer).await,
            _ => method_not_allowed("GET, POST"),
        },
        "/admin/session/refresh" if method == "POST" => refresh_session(shard, request).await,
        "/admin/session/logout" if method == "POST" => end_session(shard, request).await,
        "/admin/session/refresh" | "/admin/session/logout" => method_not_allowed("POST"),
        path => match asset(path) {
            Some(page) if method == "GET" => page,
            Some(_) => method_not_allowed("GET"),
            None => Response::error(ErrorCode::NotFound, &format!("no route for {method} {path}")),
        },
    }
}

/// The console's file at `path`, as a response; `None` when `path` is not one of them.
fn asset(path: &str) -> Option<Response> {
    let (content_type, body) = match path {
        "/admin/" | "/admin/index.html" => ("text/html; charset=utf-8", INDEX_HTML),
        "/admin/console.js" => ("text/javascript; charset=utf-8", CONSOLE_JS),
        "/admin/console.css" => ("text/css; charset=utf-8", CONSOLE_CSS),
        _ => return None,
    };
    Some(Response { status: 200, content_type, headers: hardening_headers(), body: body.as_bytes().to_vec() })
}

/// Headers every console answer carries: its policy, and nothing cached or sniffed.
fn hardening_headers() -> Vec<(&'static str, String)> {
    vec![
        ("content-security-policy", CONTENT_SECURITY_POLICY.to_owned()),
        ("x-content-type-options", "nosniff".to_owned()),
        ("x-frame-options", "DENY".to_owned()),
        ("referrer-policy", "no-referrer".to_owned()),
        ("cross-origin-opener-policy", "same-origin".to_owned()),
        ("cache-control", "no-store".to_owned()),
    ]
}

/// The caller of an admin route: the bearer token when the request has one, else (with
/// the console on) the console's cookie — and then, for anything but a read, the
/// anti-forgery token and a same-origin request.
pub fn admin_caller(shared: &Shared, request: &Request) -> Result<Verified, Response> {
    if !shared.config.admin_console || request.header("authorization").is_some() {
        return bearer(shared, request);
    }
    let Some(token) = cookie(request, ACCESS_COOKIE) else {
        return bearer(shared, request);
    };
    let caller = authenticate(shared, token)?;
    if !matches!(request.method.as_str(), "GET" | "HEAD") {
        same_origin(request)?;
        let expected = shared.tokens.console_csrf(&caller.login.id);
        if !request.header(CSRF_HEADER).is_some_and(|sent| same_bytes(sent.as_bytes(), expected.as_bytes())) {
            return Err(Response::error(
                ErrorCode::Forbidden,
                "a change made with the console's cookie needs its X-CSRF-Token header",
            ));
        }
    }
    Ok(caller)
}

fn authenticate(shared: &Shared, token: &str) -> Result<Verified, Response> {
    crate::auth::authenticate(&shared.tokens, &shared.store, token).map_err(|e| match e {
        crate::auth::AuthError::Unavailable => Response::error(ErrorCode::Unavailable, &e.to_string()),
        _ => Response::error(ErrorCode::Unauthorized, &e.to_string()),
    })
}

/// Refuses a cookie-authenticated change that a page of another origin may have sent:
/// browsers name the sending page's origin in `Origin` on every such request.
fn same_origin(request: &Request) -> Result<(), Response> {
    let refused = |why: &str| Err(Response::error(ErrorCode::Forbidden, why));
    if request.header("sec-fetch-site").is_some_and(|site| site != "same-origin") {
        return refused("the console's cookie is only honoured from the console's own page");
    }
    let (Some(origin), Some(host)) = (request.header("origin"), request.header("host")) else {
        return refused("a change made with the console's cookie needs the Origin header");
    };
    let host_of_origin = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
    if host_of_origin != Some(host) {
        return refused("the console's cookie is only honoured from the console's own page");
    }
    Ok(())
}

/// Compares two byte strings in time that depends on their length only.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// The value of cookie `name` in the request's `Cookie` header.
fn cookie<'r>(request: &'r Request, name: &str) -> Option<&'r str> {
    request.header("cookie")?.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name && !value.is_empty()).then_some(value)
    })
}

/// `GET /admin/session`: who is signed in to the console, and the anti-forgery token
/// its page sends with every change.
fn whoami(shared: &Shared, request: &Request) -> Response {
    let Some(token) = cookie(request, ACCESS_COOKIE) else {
        return with_hardening(Response::error(ErrorCode::Unauthorized, "not signed in to the console"));
    };
    let caller = match authenticate(shared, token) {
        Ok(caller) => caller,
        Err(response) => return with_hardening(response),
    };
    with_hardening(session_answer(shared, &caller.user, &caller.login.id))
}

/// The answer describing a console session (without its cookies).
fn session_answer(shared: &Shared, user: &palaver_protocol::UserId, login: &str) -> Response {
    let store = &shared.store;
    match store.is_admin(user).and_then(|admin| Ok((admin, store.user(user)?))) {
        Ok((true, Some(record))) => Response::json(
            200,
            &json!({
                "user_id": user,
                "username": record.username,
                "csrf_token": shared.tokens.console_csrf(login),
            }),
        ),
        Ok(_) => Response::error(ErrorCode::Forbidden, "this needs the admin role"),
        Err(e) => storage_failure(&e),
    }
}

/// `POST /admin/session` with `{"username","password"}`: an admin signs in; the login's
/// tokens are set as cookies, never given to the page.
async fn start_session(shard: &Rc<Shard>, request: &Request, peer: IpAddr) -> Response {
    // Signing a victim's browser in to an attacker's account is a forgery too.
    if let Err(response) = same_origin(request) {
        return with_hardening(response);
    }
    let credentials: Credentials = match parse_json(request) {
        Ok(credentials) => credentials,
        Err(response) => return with_hardening(response),
    };
    match sign_in(&shard.shared, credentials, peer, SignInFor::AdminConsole).await {
        Ok(login) => signed_in(&shard.shared, &login),
        Err(response) => with_hardening(response),
    }
}

/// `POST /admin/session/refresh`: the refresh cookie traded for the next one and a new
/// access cookie (a replayed refresh token ends the login, as at `/v1/auth/refresh`).
async fn refresh_session(shard: &Rc<Shard>, request: &Request) -> Response {
    if let Err(response) = same_origin(request) {
        return with_hardening(response);
    }
    let Some(refresh) = cookie(request, REFRESH_COOKIE) else {
        return with_hardening(Response::error(ErrorCode::Unauthorized, "not signed in to the console"));
    };
    match rotate_refresh_token(shard, refresh.to_owned()).await {
        Ok(login) => signed_in(&shard.shared, &login),
        Err(response) => with_hardening(response),
    }
}

/// The answer to a sign-in or refresh: the session, and its tokens as cookies.
fn signed_in(shared: &Shared, login: &NewLogin) -> Response {
    let id = match shared.tokens.verify(&login.access) {
        Ok(verified) => verified.login.id,
        Err(e) => {
            tracing::error!("a token just issued does not verify: {e}");
            return Response::error(ErrorCode::Internal, "token failure");
        }
    };
    let mut response = with_hardening(session_answer(shared, &login.user, &id));
    if response.status == 200 {
        let secure = if shared.config.http_tls { "; Secure" } else { "" };
        let cookie = |name: &str, value: &str, path: &str, max_age: u64| {
            format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}")
        };
        response
            .headers
            .push(("set-cookie", cookie(ACCESS_COOKIE, &login.access, "/", shared.tokens.access_ttl_secs())));
        response.headers.push((
            "set-cookie",
            cookie(REFRESH_COOKIE, &login.refresh, "/admin/session", REFRESH_TTL_MS / 1000),
        ));
    }
    response
}

/// `POST /admin/session/logout`: ends the console's login (its tokens refused from now
/// on, everywhere) and clears its cookies.
async fn end_session(shard: &Rc<Shard>, request: &Request) -> Response {
    let caller = match admin_caller(&shard.shared, request) {
        Ok(caller) => caller,
        Err(response) => return with_hardening(response),
    };
    if request.header("authorization").is_some() {
        return with_hardening(Response::error(
            ErrorCode::Invalid,
            "this ends the console's session; a bearer token's login ends at /v1/auth/logout",
        ));
    }
    let worker = shard.shared.clone();
    let outcome = shard
        .shared
        .lanes
        .accounts
        .run(move || worker.store.end_login(&caller.user, &caller.login.id, EndReason::LoggedOut, now_ms()))
        .await;
    let mut response = match outcome {
        Ok(Ok(end)) => {
            close_ended_logins(shard, &end);
            Response::json(200, &json!({}))
        }
        Ok(Err(e)) => storage_failure(&e),
        Err(refused) => refused_response(refused),
    };
    for (name, path) in [(ACCESS_COOKIE, "/"), (REFRESH_COOKIE, "/admin/session")] {
        response
            .headers
            .push(("set-cookie", format!("{name}=; Path={path}; Max-Age=0; HttpOnly; SameSite=Strict")));
    }
    with_hardening(response)
}

fn with_hardening(mut response: Response) -> Response {
    response.headers.extend(hardening_headers());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            method: method.to_owned(),
            path: "/v1/admin/users/u_x/suspend".to_owned(),
            query: String::new(),
            headers: headers.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect(),
            body: bytes::Bytes::new(),
            keep_alive: true,
        }
    }

    #[test]
    fn the_page_loads_nothing_inline_and_is_served_with_a_strict_policy() {
        let page = asset("/admin/").unwrap();
        let html = String::from_utf8(page.body).unwrap();
        assert!(html.contains(r#"<script src="/admin/console.js" defer></script>"#));
        assert!(!html.contains("<script>") && !html.contains("style="), "nothing inline");
        let handler = html.match_indices(" on").any(|(at, _)| {
            let name: String = html[at + 3..].chars().take_while(char::is_ascii_lowercase).collect();
            html[at + 3 + name.len()..].starts_with('=')
        });
        assert!(!handler, "no inline event handlers");
        let header = |name: &str| page.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone());
        assert_eq!(header("content-security-policy").as_deref(), Some(CONTENT_SECURITY_POLICY));
        assert_eq!(header("x-frame-options").as_deref(), Some("DENY"));
        assert!(asset("/admin/console.js").is_some() && asset("/admin/console.css").is_some());
        assert!(asset("/admin/../Cargo.toml").is_none() && asset("/app.js").is_none());
    }

    #[test]
    fn the_script_builds_the_page_without_html_strings() {
        // Every value shown comes from users (names, reasons, notes): the script must
        // set text, never markup.
        assert!(!CONSOLE_JS.contains("innerHTML") && !CONSOLE_JS.contains("outerHTML"));
        assert!(!CONSOLE_JS.contains("insertAdjacentHTML") && !CONSOLE_JS.contains("eval("));
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let r = request("GET", &[("cookie", "palaver_console_refresh=r1; palaver_console=a1; other=x")]);
        assert_eq!(cookie(&r, ACCESS_COOKIE), Some("a1"));
        assert_eq!(cookie(&r, REFRESH_COOKIE), Some("r1"));
        assert_eq!(cookie(&request("GET", &[("cookie", "palaver_console=")]), ACCESS_COOKIE), None);
        assert_eq!(cookie(&request("GET", &[]), ACCESS_COOKIE), None);
    }

    #[test]
    fn only_the_consoles_own_origin_may_change_anything_with_its_cookie() {
        let host = ("host", "127.0.0.1:8080");
        assert!(same_origin(&request("POST", &[host, ("origin", "http://127.0.0.1:8080")])).is_ok());
        assert!(same_origin(&request("POST", &[host, ("origin", "https://127.0.0.1:8080")])).is_ok());
        let refused = [
            vec![host],
            vec![host, ("origin", "http://127.0.0.1:8081")],
            vec![host, ("origin", "http://evil.example")],
            vec![host, ("origin", "null")],
            vec![host, ("origin", "http://127.0.0.1:8080"), ("sec-fetch-site", "same-site")],
            vec![("origin", "http://127.0.0.1:8080")],
        ];
        for headers in refused {
            assert!(same_origin(&request("POST", &headers)).is_err(), "{headers:?}");
        }
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same_bytes(b"abc", b"abc"));
        assert!(!same_bytes(b"abc", b"abd") && !same_bytes(b"abc", b"ab") && !same_bytes(b"", b"a"));
    }
}
