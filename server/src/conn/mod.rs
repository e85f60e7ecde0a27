//! Connections: accepting on the shared port, HTTP/1.1 requests, and the WebSocket
//! upgrade that hands a socket to [`socket::run`].

pub mod account_deletion;
mod account_export;
mod admin;
mod console;
pub mod cors;
mod directory;
mod files;
pub mod http;
pub mod quic_session;
mod reports;
mod room_export;
mod routes;
pub mod server_api;
pub mod socket;
pub mod tls;
pub mod web_page;
mod webhook_registrations;
pub mod webtransport_session;

use std::rc::Rc;

use bytes::BytesMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Split};
use monoio::net::{TcpListener, TcpStream};
use palaver_protocol::ErrorCode;

use self::http::{KEEP_ALIVE_IDLE, ReadError, Request, Response, read_body, read_head, write_response};
use crate::io::limits;
use crate::io::wire::Wire;
use crate::shard::Shard;
use crate::ws::{accept_key, choose_codec};

/// A connection's byte stream: a plain TCP socket, or TLS over one (`--http-tls`, see
/// [`tls`]). Everything from the request head to the WebSocket writer is written once
/// against this, so both listeners share one code path.
pub trait ByteStream: AsyncReadRent + AsyncWriteRent + Split + 'static {
    /// Resolves once the peer has sent something or closed, without reading it. Over TLS
    /// the socket's readiness says nothing about application data, so it never resolves.
    fn wait_readable(&self) -> impl std::future::Future<Output = ()>;
}

impl ByteStream for TcpStream {
    async fn wait_readable(&self) {
        if self.readable(false).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl ByteStream for monoio_rustls::ServerTlsStream<TcpStream> {
    async fn wait_readable(&self) {
        std::future::pending::<()>().await;
    }
}

/// Accepts connections until the shard drains.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    let mut accept_failures = AcceptFailures::default();
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if shard.draining.get() {
                    continue;
                }
                // The descriptor budget first: past its share of descriptors a socket is
                // closed at once, before it costs a task or a buffer, so storage and
                // search always find descriptors to open (crate::descriptors).
                let Some(socket) = shard.shared.sockets.try_take() else {
                    crate::metrics::Metrics::inc(&shard.shared.metrics.connections_over_budget);
                    crate::io::socket_reset::SocketReset::of(&stream).reset(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let reset = crate::io::socket_reset::SocketReset::of(&stream);
                match shard.shared.ip_connections.try_acquire(&peer.ip()) {
                    Some(permit) => {
                        let permits = limits::Permits { socket: Some(socket), ip: Some(permit), user: None };
                        match &shard.shared.http_tls {
                            None => monoio::spawn(serve(shard.clone(), stream, peer.ip(), permits, reset)),
                            Some(acceptor) => monoio::spawn(serve_tls(
                                shard.clone(),
                                stream,
                                peer.ip(),
                                acceptor.clone(),
                                permits,
                                reset,
                            )),
                        };
                    }
                    None => {
                        crate::metrics::Metrics::inc(&shard.shared.metrics.connections_refused);
                        if shard.shared.http_tls.is_some() {
                            // A plain 429 would be garbage to a TLS client, and a handshake
                            // per refusal is what the limit is there to avoid: just close.
                            drop(stream);
                        } else {
                            monoio::spawn(refuse_over_limit(
                                stream,
                                socket,
                                "too many connections from this address",
                            ));
                        }
                    }
                }
            }
            Err(e) => {
                // Out of file descriptors and similar: back off instead of spinning, and
                // say so at most once per interval (a flood would otherwise write a line
                // per attempt).
                accept_failures.note(&e);
                monoio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Failed accepts, logged at most once per [`AcceptFailures::INTERVAL`] with how many
/// were not logged.
#[derive(Default)]
struct AcceptFailures {
    last_logged: Option<std::time::Instant>,
    unlogged: u64,
}

impl AcceptFailures {
    const INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

    fn note(&mut self, error: &std::io::Error) {
        let now = std::time::Instant::now();
        if self.last_logged.is_some_and(|at| now.duration_since(at) < Self::INTERVAL) {
            self.unlogged += 1;
            return;
        }
        let unlogged = std::mem::take(&mut self.unlogged);
        tracing::warn!("accept failed: {error} ({unlogged} more failures since the last report)");
        self.last_logged = Some(now);
    }
}

/// Answers a connection over a connection limit with 429 and a JSON error, then closes.
/// `_socket` keeps the socket counted until it is closed.
async fn refuse_over_limit(mut stream: TcpStream, _socket: crate::descriptors::Slot, message: &str) {
    let response = Response::error_with_status(429, ErrorCode::RateLimited, message);
    let written = monoio::time::timeout(KEEP_ALIVE_IDLE, write_response(&mut stream, &response, false)).await;
    if matches!(written, Ok(Ok(_))) {
        // Its request is unread: close without a reset, so the client reads the answer.
        linger_close(stream, BytesMut::new()).await;
    }
}

/// Completes the TLS handshake, then serves HTTP over it. The handshake has the request
/// head's deadline (`--handshake-timeout-secs`): a client that stalls it (or never starts
/// it) is cut off like one that stalls its head. A peer that does not speak TLS fails the
/// handshake (rustls answers with an alert) and its socket is closed; nothing else on the
/// shard notices.
async fn serve_tls(
    shard: Rc<Shard>,
    stream: TcpStream,
    peer: std::net::IpAddr,
    acceptor: monoio_rustls::TlsAcceptor,
    permits: limits::Permits,
    reset: crate::io::socket_reset::SocketReset,
) {
    let deadline = shard.shared.config.handshake_timeout;
    match monoio::time::timeout(deadline, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => serve(shard, stream, peer, permits, reset).await,
        Ok(Err(e)) => {
            crate::metrics::Metrics::inc(&shard.shared.metrics.tls_handshake_failures);
            tracing::debug!("TLS handshake failed: {e}");
        }
        Err(_) => {
            crate::metrics::Metrics::inc(&shard.shared.metrics.tls_handshake_failures);
            tracing::debug!("TLS handshake timed out");
        }
    }
}

/// Serves HTTP requests on one connection until it closes or upgrades. `permits` hold the
/// connection's slots (descriptor budget, client address) for as long as it lives.
async fn serve(
    shard: Rc<Shard>,
    mut stream: impl ByteStream,
    peer: std::net::IpAddr,
    permits: limits::Permits,
    reset: crate::io::socket_reset::SocketReset,
) {
    let mut buf = BytesMut::with_capacity(1024);
    let mut first = true;
    loop {
        let head_timeout = shard.shared.config.handshake_timeout;
        // Between keep-alive requests a connection may idle; once the next request's
        // first byte is in, its head has the same deadline as the first request's.
        if !first && buf.is_empty() {
            match monoio::time::timeout(KEEP_ALIVE_IDLE, http::read_more(&mut stream, &mut buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
        }
        first = false;
        let head = monoio::time::timeout(head_timeout, read_head(&mut stream, &mut buf)).await;
        let (mut request, length) = match head {
            Ok(Ok(head)) => head,
            Ok(Err(ReadError::Refuse(response))) => {
                if write_response(&mut stream, &response, false).await.is_ok() {
                    linger_close(stream, buf).await;
                }
                return;
            }
            Ok(Err(ReadError::Closed)) | Err(_) => return,
        };
        // Every answer to a page of an allowed origin says it may read it.
        let cors_headers = cors::response_headers(&shard.shared.config.cors_origins, &request);
        // File uploads stream their (large) bodies; every other route's body is bounded.
        if request.method == "POST" && request.path == "/v1/files" {
            crate::metrics::Metrics::inc(&shard.shared.metrics.http_requests);
            match files::upload(&shard, &mut stream, &mut buf, &request, length).await {
                files::Uploaded::Done(mut response) => {
                    response.headers.extend(cors_headers);
                    let keep_alive = request.keep_alive && !shard.draining.get();
                    if write_response(&mut stream, &response, keep_alive).await.is_err() {
                        return;
                    }
                    if !keep_alive {
                        return close(stream).await;
                    }
                    continue;
                }
                files::Uploaded::Refused(mut response) => {
                    response.headers.extend(cors_headers);
                    if write_response(&mut stream, &response, false).await.is_ok() {
                        linger_close(stream, buf).await;
                    }
                    return;
                }
                files::Uploaded::Gone => return,
            }
        }
        let body =
            monoio::time::timeout(head_timeout, read_body(&mut stream, &mut buf, &mut request, length)).await;
        match body {
            Ok(Ok(())) => {}
            Ok(Err(ReadError::Refuse(response))) => {
                if write_response(&mut stream, &response, false).await.is_ok() {
                    linger_close(stream, buf).await;
                }
                return;
            }
            Ok(Err(ReadError::Closed)) | Err(_) => return,
        }
        if cors::is_preflight(&request) {
            crate::metrics::Metrics::inc(&shard.shared.metrics.http_requests);
            let config = &shard.shared.config;
            let methods = routes::methods(&request.path, config.web_page);
            let response = cors::preflight(&config.cors_origins, &request, methods);
            let keep_alive = request.keep_alive && !shard.draining.get();
            if write_response(&mut stream, &response, keep_alive).await.is_err() {
                return;
            }
            if !keep_alive {
                return close(stream).await;
            }
            continue;
        }
        if request.method == "GET" && request.path.starts_with("/v1/files/") {
            crate::metrics::Metrics::inc(&shard.shared.metrics.http_requests);
            let keep_alive = request.keep_alive && !shard.draining.get();
            if !files::download(&shard, &mut stream, &request, &cors_headers, keep_alive).await {
                return close(stream).await;
            }
            continue;
        }
        let echo = shard.shared.config.test_echo && request.path == "/v1/test/echo";
        if (request.path == "/v1/ws" || echo) && request.header_has_token("upgrade", "websocket") {
            upgrade(shard, stream, buf, request, permits, reset).await;
            return;
        }
        let Some(mut response) =
            unless_peer_leaves(&mut stream, &mut buf, routes::handle(&shard, &request, peer)).await
        else {
            // Whatever the route was waiting for (a password hash) was dropped unrun.
            return;
        };
        response.headers.extend(cors_headers);
        let keep_alive = request.keep_alive && !shard.draining.get();
        if write_response(&mut stream, &response, keep_alive).await.is_err() {
            return;
        }
        if !keep_alive {
            return close(stream).await;
        }
    }
}

/// Runs `handling` (a route's answer) unless the peer closes the connection first: then
/// `None`, and dropping `handling` drops the work it queued (a sign-in's hashing) before
/// it runs. Bytes the peer sends meanwhile (a pipelined request) are kept in `buf`.
async fn unless_peer_leaves<T>(
    stream: &mut impl ByteStream,
    buf: &mut BytesMut,
    handling: impl std::future::Future<Output = T>,
) -> Option<T> {
    let mut handling = std::pin::pin!(handling);
    loop {
        monoio::select! {
            biased;
            answer = &mut handling => return Some(answer),
            () = stream.wait_readable() => {}
        }
        if buf.len() > http::MAX_HEAD_BYTES {
            // Pipelining far ahead: stop reading, just wait for the answer.
            return Some(handling.await);
        }
        // Ready to read: this completes at once, with what was sent or with the end.
        match http::read_more(stream, buf).await {
            Ok(n) if n > 0 => {}
            _ => return None,
        }
    }
}

/// Ends a connection after its last answer: half-closes (over TLS, after a
/// `close_notify`, so the client can tell the end from a truncation), bounded.
async fn close(mut stream: impl ByteStream) {
    let _ = monoio::time::timeout(std::time::Duration::from_secs(1), stream.shutdown()).await;
}

/// Closes after a refusal without resetting the connection: half-close, then read and
/// discard what the client is still sending (bounded), so it can read our answer
/// instead of getting a reset while it is still uploading.
async fn linger_close(mut stream: impl ByteStream, mut buf: BytesMut) {
    let _ = stream.shutdown().await;
    let drain = async {
        let mut discarded = 0usize;
        while discarded < (1 << 20) {
            buf.clear();
            match http::read_more(&mut stream, &mut buf).await {
                Ok(n) if n > 0 => discarded += n,
                _ => break,
            }
        }
    };
    let _ = monoio::time::timeout(std::time::Duration::from_secs(2), drain).await;
}

/// What a valid WebSocket upgrade request asks for.
#[derive(Debug)]
pub(crate) struct UpgradeRequest<'a> {
    /// The `Sec-WebSocket-Accept` value to answer with.
    pub accept: String,
    /// The codec chosen from the offered subprotocols.
    pub codec: palaver_protocol::Codec,
    /// Whether to echo the chosen subprotocol back.
    pub echo_protocol: bool,
    /// The token of an `Authorization` header (`""` when it is not `Bearer …`), still
    /// to be verified.
    pub token: Option<&'a str>,
    /// permessage-deflate, when the server offers it and the client asked for it.
    pub deflate: Option<crate::ws::Negotiated>,
}

/// The sans-IO checks of a WebSocket upgrade request (method, `Connection`, version,
/// key, subprotocol) and the extension negotiation (permessage-deflate when
/// `deflate_min_bytes` is set); the token is verified by the caller. Fuzzed by
/// `fuzz/libfuzzer/fuzz_targets/http_request.rs`.
pub(crate) fn check_upgrade(
    request: &Request,
    deflate_min_bytes: Option<u16>,
) -> Result<UpgradeRequest<'_>, Response> {
    let refuse =
        |code: ErrorCode, status: u16, message: &str| Response::error_with_status(status, code, message);
    if request.method != "GET" {
        return Err(refuse(ErrorCode::Invalid, 405, "WebSocket upgrades use GET"));
    }
    if !request.header_has_token("connection", "upgrade") {
        return Err(refuse(ErrorCode::Invalid, 400, "missing Connection: upgrade"));
    }
    if request.header("sec-websocket-version").map(str::trim) != Some("13") {
        return Err(refuse(ErrorCode::Invalid, 426, "Sec-WebSocket-Version must be 13"));
    }
    let key = request
        .header("sec-websocket-key")
        .ok_or_else(|| refuse(ErrorCode::Invalid, 400, "missing Sec-WebSocket-Key"))?;
    let accept = accept_key(key).map_err(|e| refuse(ErrorCode::Invalid, 400, &e.to_string()))?;
    let (codec, echo_protocol) = choose_codec(request.header("sec-websocket-protocol"))
        .map_err(|e| refuse(ErrorCode::Invalid, 400, &e.to_string()))?;
    // An `Authorization` header that is not a bearer token is a wrong token (`""`).
    let token = request.header("authorization").map(|_| request.bearer().unwrap_or_default());
    let deflate = deflate_min_bytes.and_then(|min_bytes| {
        let offers = request.headers.iter().filter(|(name, _)| name == "sec-websocket-extensions");
        crate::ws::negotiate(offers.map(|(_, value)| value.as_str()), min_bytes)
    });
    Ok(UpgradeRequest { accept, codec, echo_protocol, token, deflate })
}

async fn upgrade(
    shard: Rc<Shard>,
    mut stream: impl ByteStream,
    buf: BytesMut,
    request: Request,
    mut permits: limits::Permits,
    reset: crate::io::socket_reset::SocketReset,
) {
    // Browsers open WebSockets to any site without CORS: a page of another origin must be
    // allowed, or it could act for whoever has a session with this server.
    let tls = shard.shared.http_tls.is_some();
    if !cors::upgrade_allowed(&shard.shared.config.cors_origins, &request, tls) {
        let _ = write_response(&mut stream, &cors::upgrade_refused(), false).await;
        return;
    }
    let checked = check_upgrade(&request, shard.shared.config.permessage_deflate).and_then(|upgrade| {
        let user = match upgrade.token {
            None => None,
            Some(token) => {
                Some(crate::auth::authenticate(&shard.shared.tokens, &shard.shared.store, token).map_err(
                    |e| match e {
                        crate::auth::AuthError::Unavailable => {
                            Response::error(ErrorCode::Unavailable, &e.to_string())
                        }
                        _ => Response::error_with_status(401, ErrorCode::Unauthorized, &e.to_string()),
                    },
                )?)
            }
        };
        Ok((upgrade.accept, upgrade.codec, upgrade.echo_protocol, upgrade.deflate, user))
    });
    let (accept, codec, echo_protocol, deflate, user) = match checked {
        Ok(ok) => ok,
        Err(response) => {
            let _ = write_response(&mut stream, &response, false).await;
            return;
        }
    };
    if let Some(verified) = &user {
        match shard.shared.user_connections.try_acquire(&verified.user) {
            Some(permit) => permits.user = Some(permit),
            None => {
                crate::metrics::Metrics::inc(&shard.shared.metrics.connections_refused);
                let message = format!(
                    "too many connections for this user (limit {})",
                    shard.shared.user_connections.max()
                );
                let response = Response::error_with_status(429, ErrorCode::RateLimited, &message);
                let _ = write_response(&mut stream, &response, false).await;
                return;
            }
        }
    }
    if shard.draining.get() {
        let _ = write_response(
            &mut stream,
            &Response::error(ErrorCode::Unavailable, "server is shutting down"),
            false,
        )
        .await;
        return;
    }
    let mut head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n"
    );
    if echo_protocol {
        head.push_str(&format!("sec-websocket-protocol: {}\r\n", codec.subprotocol()));
    }
    if let Some(negotiated) = &deflate {
        head.push_str(&format!("sec-websocket-extensions: {}\r\n", negotiated.response));
    }
    let deflate = deflate.map(|negotiated| negotiated.deflate);
    head.push_str("\r\n");
    let (result, _) = stream.write_all(head.into_bytes()).await;
    if result.is_err() {
        return;
    }
    // The request (headers and all) must not live as long as the socket does.
    let echo = request.path == "/v1/test/echo";
    drop(request);
    // The socket gets a task of its own, sized for the socket alone: this HTTP task (and
    // its request-parsing state) ends here instead of living as long as the socket.
    if echo {
        monoio::spawn(socket::run_echo(shard, stream, buf, deflate, reset));
    } else {
        let wire = Wire::WebSocket(codec, deflate);
        monoio::spawn(socket::run(shard, stream, buf, wire, user, permits, reset));
    }
}
