//! The built-in chat page (`--web-page`, on by default with the development secret): a
//! first look at Palaver in a browser, nothing to build. Plain HTML, CSS and JavaScript on
//! the JSON protocol, compiled into the binary (`server/web/`), each its own route so the
//! Content-Security-Policy allows no inline script or style.

use super::http::Response;

/// What the page may load and talk to: its own script and style, the same origin's
/// routes and WebSocket, images it made from downloads; nothing else, and no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const INDEX_HTML: &str = include_str!("../../web/index.html");
const APP_JS: &str = include_str!("../../web/app.js");
const APP_CSS: &str = include_str!("../../web/app.css");

/// The page's file at `path`, as a response; `None` when `path` is not one of them.
pub fn asset(path: &str) -> Option<Response> {
    let (content_type, body) = match path {
        "/" | "/index.html" => ("text/html; charset=utf-8", INDEX_HTML),
        "/app.js" => ("text/javascript; charset=utf-8", APP_JS),
        "/app.css" => ("text/css; charset=utf-8", APP_CSS),
        _ => return None,
    };
    Some(Response {
        status: 200,
        content_type,
        headers: vec![
            ("content-security-policy", CONTENT_SECURITY_POLICY.to_owned()),
            ("x-content-type-options", "nosniff".to_owned()),
            ("referrer-policy", "no-referrer".to_owned()),
            ("cache-control", "no-cache".to_owned()),
        ],
        body: body.as_bytes().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_no_inline_script_and_is_served_with_a_strict_policy() {
        let page = asset("/").unwrap();
        let html = String::from_utf8(page.body).unwrap();
        assert!(html.contains(r#"<script src="/app.js" defer></script>"#));
        assert!(!html.contains("<script>") && !html.contains("style="), "nothing inline");
        assert!(
            page.headers
                .iter()
                .any(|(n, v)| *n == "content-security-policy" && v.contains("script-src 'self'"))
        );
        assert!(asset("/app.js").is_some() && asset("/app.css").is_some());
        assert!(asset("/../Cargo.toml").is_none());
    }
}
