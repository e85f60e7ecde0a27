//! The server's address: the HTTP base for the auth routes and the WebSocket URL.

use crate::error::Error;

/// Where a Palaver server is, derived from one base URL such as `http://127.0.0.1:8080`
/// (`https://`, `ws://` and `wss://` are accepted too; a path prefix is kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `http(s)://host[:port][/prefix]`, without a trailing slash.
    pub http_base: String,
    /// `ws(s)://host[:port][/prefix]/v1/ws`.
    pub ws_url: String,
    /// Whether the connection uses TLS.
    pub tls: bool,
    /// `host[:port]` as written (the port defaults to 80 or 443).
    pub authority: String,
    /// The host and port to open a TCP connection to.
    pub host: String,
    /// The port.
    pub port: u16,
    /// The path prefix (empty, or starting with `/`).
    pub prefix: String,
}

impl Endpoint {
    /// Parses a base URL.
    pub fn parse(url: &str) -> Result<Endpoint, Error> {
        let bad = |reason| Error::InvalidUrl { url: url.to_owned(), reason };
        let (tls, rest) =
            if let Some(rest) = url.strip_prefix("http://").or_else(|| url.strip_prefix("ws://")) {
                (false, rest)
            } else if let Some(rest) = url.strip_prefix("https://").or_else(|| url.strip_prefix("wss://")) {
                (true, rest)
            } else {
                return Err(bad("must start with http://, https://, ws:// or wss://"));
            };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(bad("needs a host (and no user info)"));
        }
        let mut prefix = path.trim_end_matches('/').to_owned();
        if prefix.ends_with("/v1/ws") {
            prefix.truncate(prefix.len() - "/v1/ws".len());
        }
        if prefix.contains(['?', '#']) {
            return Err(bad("no query or fragment"));
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
                if host.contains(':') && !host.starts_with('[') {
                    (authority.to_owned(), default_port)
                } else {
                    (host.to_owned(), port.parse().map_err(|_| bad("bad port"))?)
                }
            }
            _ => (authority.to_owned(), default_port),
        };
        let (http, ws) = if tls { ("https", "wss") } else { ("http", "ws") };
        Ok(Endpoint {
            http_base: format!("{http}://{authority}{prefix}"),
            ws_url: format!("{ws}://{authority}{prefix}/v1/ws"),
            tls,
            authority: authority.to_owned(),
            host: host.trim_start_matches('[').trim_end_matches(']').to_owned(),
            port,
            prefix,
        })
    }
}

/// Splits a full URL into the server it names and its path with the query
/// (`http://h:1/v1/files?room=r` → the endpoint of `http://h:1`, `/v1/files?room=r`).
#[cfg(any(test, all(feature = "native", not(target_arch = "wasm32"))))]
pub(crate) fn split_url(url: &str) -> Result<(Endpoint, &str), Error> {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let path_start = url[after_scheme..].find('/').map_or(url.len(), |i| after_scheme + i);
    let endpoint = Endpoint::parse(&url[..path_start])?;
    let path = if path_start == url.len() { "/" } else { &url[path_start..] };
    Ok((endpoint, path))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn derives_http_and_websocket_urls() {
        let e = Endpoint::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(e.http_base, "http://127.0.0.1:8080");
        assert_eq!(e.ws_url, "ws://127.0.0.1:8080/v1/ws");
        assert_eq!((e.host.as_str(), e.port, e.tls), ("127.0.0.1", 8080, false));
        let e = Endpoint::parse("wss://chat.example/palaver/v1/ws").unwrap();
        assert_eq!(e.http_base, "https://chat.example/palaver");
        assert_eq!(e.ws_url, "wss://chat.example/palaver/v1/ws");
        assert_eq!(e.port, 443);
        let e = Endpoint::parse("http://[::1]:9000/").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 9000));
        assert!(Endpoint::parse("ftp://x").is_err());
        assert!(Endpoint::parse("http://").is_err());
        assert!(Endpoint::parse("http://h:notaport").is_err());
    }

    #[test]
    fn full_urls_split_into_server_and_path() {
        let (e, path) = split_url("http://127.0.0.1:8080/v1/files?room=r_1&name=a%20b").unwrap();
        assert_eq!((e.host.as_str(), e.port, path), ("127.0.0.1", 8080, "/v1/files?room=r_1&name=a%20b"));
        let (e, path) = split_url("https://chat.example").unwrap();
        assert_eq!((e.port, path), (443, "/"));
    }
}
