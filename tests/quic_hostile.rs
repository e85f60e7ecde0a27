//! Hostile input over raw QUIC (a bare quinn client, no SDK): undecodable frames get the
//! `invalid` error, an oversize length prefix closes the connection with 1009, a stream of
//! garbage with 1008, and a connection that never authenticates is closed at the
//! deadline — the same answers as over WebSocket; SIGTERM closes with 1001. One address's
//! connections past `--max-connections-per-ip` (counted with its WebSockets) are closed
//! with 1013 while other addresses connect; a client asked to prove its address (Retry)
//! gets in; a flood of requests on one connection is rate limited like a WebSocket's.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use palaver_e2e::{Server, WAIT, register};
use palaver_protocol::{ClientFrame, Codec, ErrorCode, OkBody, Op, ReplyBody, ServerFrame};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

struct Raw {
    connection: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    _endpoint: quinn::Endpoint,
}

async fn connect(server: &Server) -> Raw {
    connect_from(server, [127, 0, 0, 1]).await
}

async fn connect_from(server: &Server, ip: [u8; 4]) -> Raw {
    try_connect_from(server, ip).await.unwrap()
}

/// A connection and its stream, or how the server ended it before the stream opened.
async fn try_connect_from(server: &Server, ip: [u8; 4]) -> Result<Raw, quinn::ConnectionError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(server.dev_cert_pem().as_bytes()).unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"palaver/1".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let endpoint = quinn::Endpoint::client((ip, 0).into()).unwrap();
    let connection = endpoint
        .connect_with(quinn::ClientConfig::new(Arc::new(crypto)), server.quic_addr, "localhost")
        .unwrap()
        .await?;
    let (send, recv) = connection.open_bi().await?;
    Ok(Raw { connection, send, recv, _endpoint: endpoint })
}

fn application_code(error: &quinn::ConnectionError) -> u64 {
    match error {
        quinn::ConnectionError::ApplicationClosed(close) => close.error_code.into_inner(),
        other => panic!("expected an application close, got {other}"),
    }
}

impl Raw {
    async fn send_payload(&mut self, payload: &[u8]) {
        let len = u32::try_from(payload.len()).unwrap().to_le_bytes();
        let mut chunks = [Bytes::copy_from_slice(&len), Bytes::copy_from_slice(payload)];
        self.send.write_all_chunks(&mut chunks).await.unwrap();
    }

    async fn request(&mut self, id: u64, op: Op) -> ServerFrame {
        let payload = Codec::Rkyv.encode_client(&ClientFrame { id, op }).unwrap();
        self.send_payload(&payload).await;
        self.recv_frame().await.unwrap()
    }

    /// The next server frame; `None` when the stream or connection ended.
    async fn recv_frame(&mut self) -> Option<ServerFrame> {
        let mut prefix = [0u8; 4];
        tokio::time::timeout(WAIT, self.recv.read_exact(&mut prefix)).await.unwrap().ok()?;
        let mut payload = vec![0u8; u32::from_le_bytes(prefix) as usize];
        tokio::time::timeout(WAIT, self.recv.read_exact(&mut payload)).await.unwrap().ok()?;
        Some(Codec::Rkyv.decode_server(&payload).unwrap())
    }

    /// Waits for the server to close the connection; its application close code.
    async fn close_code(&mut self) -> u64 {
        while self.recv_frame().await.is_some() {}
        match tokio::time::timeout(WAIT, self.connection.closed()).await.unwrap() {
            quinn::ConnectionError::ApplicationClosed(close) => close.error_code.into_inner(),
            other => panic!("expected an application close, got {other}"),
        }
    }
}

fn error_code(frame: &ServerFrame) -> ErrorCode {
    match frame {
        ServerFrame::Reply { body: ReplyBody::Err(e), .. } => e.code,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_invalid_and_the_connection_still_serves() {
    let server = Server::start(&[]);
    let alice = register(server.addr, "alice");
    let mut raw = connect(&server).await;
    // Not an rkyv archive at all.
    raw.send_payload(b"\xde\xad\xbe\xef not a frame").await;
    let reply = raw.recv_frame().await.unwrap();
    assert_eq!(error_code(&reply), ErrorCode::Invalid);
    // Then a proper auth and ping on the same stream.
    let authed = raw.request(1, Op::Auth { token: alice.access_token.clone() }).await;
    assert!(
        matches!(authed, ServerFrame::Reply { re: 1, body: ReplyBody::Ok(OkBody::Authed(_)) }),
        "{authed:?}"
    );
    let pong = raw.request(2, Op::Ping {}).await;
    assert!(matches!(pong, ServerFrame::Reply { re: 2, body: ReplyBody::Ok(_) }), "{pong:?}");
    // An empty frame is undecodable too.
    raw.send_payload(b"").await;
    assert_eq!(error_code(&raw.recv_frame().await.unwrap()), ErrorCode::Invalid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_length_prefix_closes_with_1009() {
    let server = Server::start(&["--max-frame-bytes", "4096"]);
    let alice = register(server.addr, "alice");
    let mut raw = connect(&server).await;
    let authed = raw.request(1, Op::Auth { token: alice.access_token }).await;
    assert!(matches!(authed, ServerFrame::Reply { body: ReplyBody::Ok(_), .. }));
    // Only the prefix: the server must not wait for (or buffer) the announced bytes.
    raw.send.write_all(&4097u32.to_le_bytes()).await.unwrap();
    assert_eq!(raw.close_code().await, 1009);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_garbage_closes_with_1008() {
    let server = Server::start(&[]);
    let mut raw = connect(&server).await;
    for _ in 0..40 {
        raw.send_payload(b"garbage").await;
    }
    assert_eq!(raw.close_code().await, 1008);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_authenticates_is_closed_at_the_deadline() {
    let server = Server::start(&["--auth-timeout-secs", "1"]);
    let mut raw = connect(&server).await;
    // The stream exists (a ping opens it) but no auth follows.
    let pong = raw.request(1, Op::Ping {}).await;
    assert!(matches!(pong, ServerFrame::Reply { .. }));
    let started = std::time::Instant::now();
    assert_eq!(raw.close_code().await, 1008);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_quic_connections_with_1001_and_exits_cleanly() {
    let mut server = Server::start(&[]);
    let alice = register(server.addr, "alice");
    let mut raw = connect(&server).await;
    let authed = raw.request(1, Op::Auth { token: alice.access_token }).await;
    assert!(matches!(authed, ServerFrame::Reply { body: ReplyBody::Ok(_), .. }));
    let stopping = tokio::task::spawn_blocking(move || {
        let status = server.terminate();
        (server, status)
    });
    assert_eq!(raw.close_code().await, 1001);
    let (_server, status) = stopping.await.unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_past_its_limit_is_closed_with_1013_while_others_connect() {
    let server = Server::start(&["--max-connections-per-ip", "3"]);
    let alice = register(server.addr, "alice");
    let mut held = Vec::new();
    for id in 1..=3 {
        let mut raw = connect(&server).await;
        let authed = raw.request(id, Op::Auth { token: alice.access_token.clone() }).await;
        assert!(matches!(authed, ServerFrame::Reply { body: ReplyBody::Ok(_), .. }), "{authed:?}");
        held.push(raw);
    }
    // Closed right after its handshake: sometimes before the stream opens.
    let code = match try_connect_from(&server, [127, 0, 0, 1]).await {
        Ok(mut fourth) => fourth.close_code().await,
        Err(error) => application_code(&error),
    };
    assert_eq!(code, 1013);
    // One count for both listeners: HTTP from the same address is refused too.
    let (status, body) = palaver_e2e::http(server.addr, "GET", "/healthz", None, &[]);
    assert_eq!(status, 429, "{body}");
    // Another address is served, and the held connections still are.
    let mut other = connect_from(&server, [127, 0, 0, 2]).await;
    let authed = other.request(1, Op::Auth { token: alice.access_token.clone() }).await;
    assert!(matches!(authed, ServerFrame::Reply { body: ReplyBody::Ok(_), .. }), "{authed:?}");
    let pong = held[0].request(9, Op::Ping {}).await;
    assert!(matches!(pong, ServerFrame::Reply { re: 9, body: ReplyBody::Ok(_) }), "{pong:?}");
    // A slot comes back when its connection ends (the close must reach the server: wait
    // until the client's endpoint has sent it).
    let gone = held.pop().unwrap();
    gone.connection.close(0u32.into(), b"");
    gone._endpoint.wait_idle().await;
    let mut again = None;
    for _ in 0..50 {
        let Ok(mut raw) = try_connect_from(&server, [127, 0, 0, 1]).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let auth = Op::Auth { token: alice.access_token.clone() };
        let auth = Codec::Rkyv.encode_client(&ClientFrame { id: 1, op: auth }).unwrap();
        let len = u32::try_from(auth.len()).unwrap().to_le_bytes();
        let sent = raw.send.write_all_chunks(&mut [Bytes::copy_from_slice(&len), Bytes::from(auth)]).await;
        let got = if sent.is_ok() { raw.recv_frame().await } else { None };
        if matches!(got, Some(ServerFrame::Reply { body: ReplyBody::Ok(_), .. })) {
            again = Some(raw);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(again.is_some(), "the released slot is given to a new connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_asked_to_prove_its_address_gets_in() {
    // 0: every handshake is preceded by a stateless Retry.
    let server = Server::start(&["--quic-retry-after-handshakes", "0"]);
    let alice = register(server.addr, "alice");
    let mut raw = connect(&server).await;
    let authed = raw.request(1, Op::Auth { token: alice.access_token }).await;
    assert!(matches!(authed, ServerFrame::Reply { body: ReplyBody::Ok(_), .. }), "{authed:?}");
    let pong = raw.request(2, Op::Ping {}).await;
    assert!(matches!(pong, ServerFrame::Reply { re: 2, body: ReplyBody::Ok(_) }), "{pong:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_flood_is_rate_limited_and_the_connection_keeps_serving() {
    let server = Server::start(&[]);
    let alice = register(server.addr, "alice");
    let mut raw = connect(&server).await;
    let authed = raw.request(1, Op::Auth { token: alice.access_token.clone() }).await;
    assert!(matches!(authed, ServerFrame::Reply { body: ReplyBody::Ok(_), .. }), "{authed:?}");
    // 600 pings written at once: past the burst of 200 they are answered rate_limited.
    let flood = 600u64;
    for id in 0..flood {
        let payload = Codec::Rkyv.encode_client(&ClientFrame { id: 100 + id, op: Op::Ping {} }).unwrap();
        raw.send_payload(&payload).await;
    }
    let mut limited = 0;
    for _ in 0..flood {
        match raw.recv_frame().await.unwrap() {
            ServerFrame::Reply { body: ReplyBody::Err(e), .. } => {
                assert_eq!(e.code, ErrorCode::RateLimited);
                assert!(e.retry_after_ms.is_some(), "{e:?}");
                limited += 1;
            }
            ServerFrame::Reply { body: ReplyBody::Ok(_), .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(limited >= 300, "{limited} of {flood} limited");
    // Another client is unaffected, and this one is served again once tokens return.
    let mut other = connect(&server).await;
    let authed = other.request(1, Op::Auth { token: alice.access_token }).await;
    assert!(matches!(authed, ServerFrame::Reply { body: ReplyBody::Ok(_), .. }), "{authed:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let pong = raw.request(2, Op::Ping {}).await;
    assert!(matches!(pong, ServerFrame::Reply { re: 2, body: ReplyBody::Ok(_) }), "{pong:?}");
}
