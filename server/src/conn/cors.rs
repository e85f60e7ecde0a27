//! Pages from other origins (`--cors-origins`). The HTTP routes answer CORS preflights
//! and name allowed origins in `Access-Control-Allow-Origin`; the WebSocket upgrade,
//! which browsers do not subject to CORS, checks `Origin` against the same list itself
//! (cross-site WebSocket hijacking). A request without `Origin` is not from a page (or is
//! same-origin), and is served as before. Pure: decisions from the request's headers and
//! the configured list.

use palaver_protocol::ErrorCode;

use super::http::{Request, Response};
pub use crate::config::AllowedOrigins;

/// Headers a page may send cross-origin (besides the CORS-safelisted ones).
const ALLOWED_HEADERS: &str = "authorization, content-type";
/// Response headers a page may read besides the safelisted ones.
const EXPOSED_HEADERS: &str = "retry-after, content-disposition";
/// How long a browser may cache a preflight's answer, in seconds.
const PREFLIGHT_MAX_AGE_SECS: u32 = 600;

/// Whether `origin` is the server's own: the page was served by this listener (the
/// built-in page). `Host` is what the browser connected to.
fn same_origin(request: &Request, origin: &str, tls: bool) -> bool {
    let scheme = if tls { "https" } else { "http" };
    request
        .header("host")
        .is_some_and(|host| origin.eq_ignore_ascii_case(&format!("{scheme}://{}", host.trim())))
}

/// Whether a WebSocket upgrade may proceed: no `Origin` (not a browser), the server's own
/// origin, or an allowed one.
pub fn upgrade_allowed(allowed: &AllowedOrigins, request: &Request, tls: bool) -> bool {
    match request.header("origin") {
        None => true,
        Some(origin) => same_origin(request, origin, tls) || allowed.allows(origin),
    }
}

/// The refusal of an upgrade from an origin that is not allowed.
pub fn upgrade_refused() -> Response {
    Response::error(
        ErrorCode::Forbidden,
        "pages of this origin may not open a WebSocket here (the server's --cors-origins)",
    )
}

/// The CORS headers of an answer to `request`: for an allowed origin, who may read it and
/// which headers they may see. Answers vary by `Origin` when a list decides.
pub fn response_headers(allowed: &AllowedOrigins, request: &Request) -> Vec<(&'static str, String)> {
    let Some(origin) = request.header("origin") else { return Vec::new() };
    match allowed {
        AllowedOrigins::Any => vec![
            ("access-control-allow-origin", "*".to_owned()),
            ("access-control-expose-headers", EXPOSED_HEADERS.to_owned()),
        ],
        _ if allowed.allows(origin) => vec![
            ("access-control-allow-origin", origin.to_owned()),
            ("access-control-expose-headers", EXPOSED_HEADERS.to_owned()),
            ("vary", "origin".to_owned()),
        ],
        _ => vec![("vary", "origin".to_owned())],
    }
}

/// Whether `request` is a CORS preflight (`OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`).
pub fn is_preflight(request: &Request) -> bool {
    request.method == "OPTIONS"
        && request.header("origin").is_some()
        && request.header("access-control-request-method").is_some()
}

/// Answers a preflight. `methods` are the path's methods (`None`: no such route).
pub fn preflight(allowed: &AllowedOrigins, request: &Request, methods: Option<&'static str>) -> Response {
    let origin = request.header("origin").unwrap_or_default();
    if !allowed.allows(origin) {
        return Response::error(
            ErrorCode::Forbidden,
            "this origin is not allowed (the server's --cors-origins)",
        );
    }
    let Some(methods) = methods else {
        return Response::error(ErrorCode::NotFound, &format!("no route {}", request.path));
    };
    let wanted = request.header("access-control-request-method").unwrap_or_default().trim();
    if !methods.split(", ").any(|m| m == wanted) {
        let mut response = Response::error_with_status(
            405,
            ErrorCode::Invalid,
            &format!("{wanted} is not a method of {}; use {methods}", request.path),
        );
        response.headers.push(("allow", methods.to_owned()));
        return response;
    }
    let mut response = Response::no_content();
    let allow_origin = if *allowed == AllowedOrigins::Any { "*".to_owned() } else { origin.to_owned() };
    response.headers.extend([
        ("access-control-allow-origin", allow_origin),
        ("access-control-allow-methods", methods.to_owned()),
        ("access-control-allow-headers", ALLOWED_HEADERS.to_owned()),
        ("access-control-max-age", PREFLIGHT_MAX_AGE_SECS.to_string()),
        ("vary", "origin, access-control-request-method, access-control-request-headers".to_owned()),
    ]);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            query: String::new(),
            headers: headers.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect(),
            body: bytes::Bytes::new(),
            keep_alive: true,
        }
    }

    fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
        response.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    fn listed(origins: &[&str]) -> AllowedOrigins {
        AllowedOrigins::parse(&origins.iter().map(|o| (*o).to_owned()).collect::<Vec<_>>(), false).unwrap()
    }

    #[test]
    fn origins_are_read_as_browsers_write_them_and_star_needs_the_development_secret() {
        let allowed = listed(&["https://App.Example.com", "http://localhost:5173/", "https://x.test:443"]);
        assert_eq!(
            allowed,
            AllowedOrigins::Listed(vec![
                "https://app.example.com".into(),
                "http://localhost:5173".into(),
                "https://x.test".into()
            ])
        );
        for bad in
            ["app.example.com", "ftp://x.test", "https://x.test/app", "https://u@x.test", "https://x.test?a"]
        {
            assert!(AllowedOrigins::parse(&[bad.to_owned()], true).is_err(), "{bad}");
        }
        assert!(AllowedOrigins::parse(&["*".to_owned()], false).is_err());
        assert_eq!(AllowedOrigins::parse(&["*".to_owned()], true), Ok(AllowedOrigins::Any));
        assert_eq!(AllowedOrigins::parse(&[], false), Ok(AllowedOrigins::Own));
    }

    #[test]
    fn preflights_answer_allowed_origins_for_the_route_s_methods_only() {
        let allowed = listed(&["https://app.example.com"]);
        let ask = |origin: &str, method: &str| {
            request(
                "OPTIONS",
                "/v1/files",
                &[
                    ("origin", origin),
                    ("access-control-request-method", method),
                    ("access-control-request-headers", "authorization,content-type"),
                ],
            )
        };
        let ok = preflight(&allowed, &ask("https://app.example.com", "POST"), Some("POST"));
        assert_eq!(ok.status, 204);
        assert_eq!(header(&ok, "access-control-allow-origin"), Some("https://app.example.com"));
        assert_eq!(header(&ok, "access-control-allow-methods"), Some("POST"));
        assert_eq!(header(&ok, "access-control-allow-headers"), Some("authorization, content-type"));
        assert!(is_preflight(&ask("https://app.example.com", "POST")));

        let other = preflight(&allowed, &ask("https://evil.test", "POST"), Some("POST"));
        assert_eq!(other.status, 403);
        assert_eq!(header(&other, "access-control-allow-origin"), None);
        assert_eq!(preflight(&allowed, &ask("https://app.example.com", "DELETE"), Some("POST")).status, 405);
        assert_eq!(preflight(&allowed, &ask("https://app.example.com", "GET"), None).status, 404);
        let any = preflight(&AllowedOrigins::Any, &ask("https://anyone.test", "POST"), Some("POST"));
        assert_eq!(header(&any, "access-control-allow-origin"), Some("*"));
    }

    #[test]
    fn answers_name_allowed_origins_only() {
        let allowed = listed(&["https://app.example.com"]);
        let from = |origin: &str| request("POST", "/v1/auth/login", &[("origin", origin)]);
        let headers = response_headers(&allowed, &from("https://app.example.com"));
        assert!(headers.contains(&("access-control-allow-origin", "https://app.example.com".to_owned())));
        let headers = response_headers(&allowed, &from("https://evil.test"));
        assert!(!headers.iter().any(|(n, _)| *n == "access-control-allow-origin"));
        assert!(response_headers(&allowed, &request("GET", "/healthz", &[])).is_empty());
    }

    #[test]
    fn upgrades_need_no_origin_the_server_s_own_or_an_allowed_one() {
        let allowed = listed(&["https://app.example.com"]);
        let upgrade = |headers: &[(&str, &str)]| request("GET", "/v1/ws", headers);
        assert!(upgrade_allowed(&allowed, &upgrade(&[("host", "chat.test:8080")]), false));
        let own = upgrade(&[("host", "chat.test:8080"), ("origin", "http://chat.test:8080")]);
        assert!(upgrade_allowed(&allowed, &own, false));
        assert!(!upgrade_allowed(&allowed, &own, true), "https page, plain listener: another origin");
        let listed = upgrade(&[("host", "chat.test:8080"), ("origin", "https://app.example.com")]);
        assert!(upgrade_allowed(&allowed, &listed, false));
        let evil = upgrade(&[("host", "chat.test:8080"), ("origin", "https://evil.test")]);
        assert!(!upgrade_allowed(&allowed, &evil, false));
        assert!(!upgrade_allowed(&AllowedOrigins::Own, &evil, false));
        assert!(upgrade_allowed(&AllowedOrigins::Any, &evil, false));
    }
}
