//! WebTransport's HTTP/3 on the QUIC port, spoken by a bare quinn client with ALPN `h3`
//! (no browser): a session opened with an extended CONNECT carries Palaver frames on its
//! first bidirectional stream, JSON or rkyv as the path says; requests that are not a
//! WebTransport CONNECT to `/v1/webtransport` from an allowed origin are answered with a
//! status and a JSON reason on their own stream (the connection stays usable); HTTP/3
//! violations — a malformed SETTINGS, a control stream that does not start with
//! SETTINGS, a field section that needs the dynamic table — close the connection with
//! the HTTP/3 or QPACK error code. A session the server ends (here: an oversize length
//! prefix) is closed with a CLOSE_WEBTRANSPORT_SESSION capsule carrying the WebSocket
//! close code. Nothing panics: the server then serves a good session.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::sync::Arc;

use palaver_e2e::{Server, WAIT, register};
use palaver_protocol::{ClientFrame, Codec, Op, ReplyBody, ServerFrame};
use palaver_server::webtransport::qpack::decode_field_section;
use palaver_server::webtransport::wire::{self, frame_type, setting};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

/// An HTTP/3 connection with its control stream sent.
struct H3 {
    connection: quinn::Connection,
    _control: quinn::SendStream,
    _endpoint: quinn::Endpoint,
}

/// Connects with ALPN `h3`, trusting the browser certificate, and sends `control` on
/// the client's control stream (its type byte included).
async fn connect(server: &Server, control: &[u8]) -> H3 {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(server.browser_cert_pem().as_bytes()).unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let endpoint = quinn::Endpoint::client(([127, 0, 0, 1], 0).into()).unwrap();
    let connection = endpoint
        .connect_with(quinn::ClientConfig::new(Arc::new(crypto)), server.quic_addr, "localhost")
        .unwrap()
        .await
        .unwrap();
    let mut send = connection.open_uni().await.unwrap();
    send.write_all(control).await.unwrap();
    H3 { connection, _control: send, _endpoint: endpoint }
}

/// A well-formed client control stream: type 0, SETTINGS with H3_DATAGRAM and draft-02.
fn good_control() -> Vec<u8> {
    settings_stream(&[(setting::H3_DATAGRAM, 1), (setting::ENABLE_WEBTRANSPORT_DRAFT02, 1)])
}

fn settings_stream(pairs: &[(u64, u64)]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (id, value) in pairs {
        wire::write_varint(&mut payload, *id);
        wire::write_varint(&mut payload, *value);
    }
    let mut out = vec![0x00];
    wire::write_frame(&mut out, frame_type::SETTINGS, &payload);
    out
}

/// A HEADERS frame whose field section holds `fields` as literals with literal names.
fn headers(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut block = vec![0x00, 0x00];
    for (name, value) in fields {
        assert!(name.len() < 7 + 128 && value.len() < 127);
        if name.len() < 7 {
            block.push(0x20 | name.len() as u8);
        } else {
            block.extend([0x27, (name.len() - 7) as u8]);
        }
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    let mut out = Vec::new();
    wire::write_frame(&mut out, frame_type::HEADERS, &block);
    out
}

fn connect_request(path: &str, origin: Option<&str>) -> Vec<u8> {
    let mut fields = vec![
        (":method", "CONNECT"),
        (":protocol", "webtransport"),
        (":scheme", "https"),
        (":authority", "localhost"),
        (":path", path),
    ];
    fields.extend(origin.map(|o| ("origin", o)));
    headers(&fields)
}

/// Sends a request on a new stream; returns the answer's status and body, and the
/// stream (open when the session was accepted).
async fn request(h3: &H3, bytes: &[u8]) -> (u16, String, quinn::SendStream, quinn::RecvStream) {
    let (mut send, mut recv) = h3.connection.open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    let mut buffered = Vec::new();
    let mut status = 0;
    let mut body = String::new();
    loop {
        let mut used = 0;
        while let Some((frame, len)) = wire::read_frame(&buffered[used..], 1 << 16).unwrap() {
            used += len;
            match frame.kind {
                frame_type::HEADERS => {
                    let fields = decode_field_section(frame.payload, 1 << 16).unwrap();
                    status = fields.iter().find(|f| f.name == ":status").unwrap().value.parse().unwrap();
                    if status == 200 {
                        return (status, body, send, recv);
                    }
                }
                frame_type::DATA => body.push_str(&String::from_utf8_lossy(frame.payload)),
                _ => {}
            }
        }
        buffered.drain(..used);
        match tokio::time::timeout(WAIT, recv.read_chunk(4096, true)).await.unwrap().unwrap() {
            Some(chunk) => buffered.extend_from_slice(&chunk.bytes),
            None => return (status, body, send, recv),
        }
    }
}

/// The code the server closed the connection with.
async fn closed_with(h3: &H3) -> u64 {
    match tokio::time::timeout(WAIT, h3.connection.closed()).await.unwrap() {
        quinn::ConnectionError::ApplicationClosed(close) => close.error_code.into_inner(),
        other => panic!("expected an application close, got {other}"),
    }
}

async fn open_session_and_ping(server: &Server, path: &str, codec: Codec, token: &str) {
    let h3 = connect(server, &good_control()).await;
    let (status, _, _connect_send, _connect_recv) = request(&h3, &connect_request(path, None)).await;
    assert_eq!(status, 200);
    let (mut send, mut recv) = h3.connection.open_bi().await.unwrap();
    send.write_all(&wire::webtransport_bidi_stream_header(0)).await.unwrap();
    for (id, op) in [(1, Op::Auth { token: token.to_owned() }), (2, Op::Ping {})] {
        let payload = codec.encode_client(&ClientFrame { id, op }).unwrap();
        send.write_all(&(payload.len() as u32).to_le_bytes()).await.unwrap();
        send.write_all(&payload).await.unwrap();
    }
    let mut replies = Vec::new();
    while replies.len() < 2 {
        let mut prefix = [0u8; 4];
        tokio::time::timeout(WAIT, recv.read_exact(&mut prefix)).await.unwrap().unwrap();
        let mut payload = vec![0u8; u32::from_le_bytes(prefix) as usize];
        recv.read_exact(&mut payload).await.unwrap();
        match codec {
            Codec::Json => {
                let frame: serde_json::Value = serde_json::from_slice(&payload).unwrap();
                if let Some(re) = frame["re"].as_u64() {
                    assert!(frame.get("ok").is_some(), "{frame}");
                    replies.push(re);
                }
            }
            _ => {
                if let ServerFrame::Reply { re, body } = codec.decode_server(&payload).unwrap() {
                    assert!(matches!(body, ReplyBody::Ok(_)), "{body:?}");
                    replies.push(re);
                }
            }
        }
    }
    assert_eq!(replies, [1, 2]);
}

#[tokio::test]
async fn a_session_carries_json_or_rkyv_frames_as_its_path_says() {
    let server = Server::start(&[]);
    let alice = register(server.addr, "alice");
    open_session_and_ping(&server, "/v1/webtransport?codec=json", Codec::Json, &alice.access_token).await;
    open_session_and_ping(&server, "/v1/webtransport", Codec::Rkyv, &alice.access_token).await;
}

#[tokio::test]
async fn wrong_requests_are_answered_with_a_reason_and_the_connection_stays_usable() {
    let server = Server::start(&[]);
    let h3 = connect(&server, &good_control()).await;
    let get =
        headers(&[(":method", "GET"), (":scheme", "https"), (":authority", "localhost"), (":path", "/")]);
    let (status, body, _, _) = request(&h3, &get).await;
    assert_eq!(status, 405);
    assert!(body.contains("WebTransport"), "{body}");
    let (status, body, _, _) = request(&h3, &connect_request("/v1/ws", None)).await;
    assert_eq!(status, 404);
    assert!(body.contains("not_found"), "{body}");
    let (status, _, _, _) =
        request(&h3, &connect_request("/v1/webtransport", Some("https://evil.example"))).await;
    assert_eq!(status, 403);
    let (status, _, _, _) = request(&h3, &connect_request("/v1/webtransport?codec=xml", None)).await;
    assert_eq!(status, 400);
    let (status, _, _, _) = request(&h3, &connect_request("/v1/webtransport", None)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn http3_violations_close_the_connection_with_their_error_code() {
    let server = Server::start(&[]);
    // The same setting twice: H3_SETTINGS_ERROR.
    let twice = settings_stream(&[(setting::H3_DATAGRAM, 1), (setting::H3_DATAGRAM, 1)]);
    assert_eq!(closed_with(&connect(&server, &twice).await).await, 0x109);
    // An HTTP/2 setting: H3_SETTINGS_ERROR.
    assert_eq!(closed_with(&connect(&server, &settings_stream(&[(0x02, 1)])).await).await, 0x109);
    // A control stream starting with GOAWAY: H3_MISSING_SETTINGS.
    let mut goaway = vec![0x00];
    wire::write_frame(&mut goaway, frame_type::GOAWAY, &[0]);
    assert_eq!(closed_with(&connect(&server, &goaway).await).await, 0x10a);
    // A request referring to the dynamic table (capacity 0): QPACK_DECOMPRESSION_FAILED.
    let h3 = connect(&server, &good_control()).await;
    let mut dynamic = Vec::new();
    wire::write_frame(&mut dynamic, frame_type::HEADERS, &[0x02, 0x00, 0x80]);
    let (mut send, _recv) = h3.connection.open_bi().await.unwrap();
    send.write_all(&dynamic).await.unwrap();
    assert_eq!(closed_with(&h3).await, 0x200);
    // A HEADERS frame announcing a megabyte: H3_EXCESSIVE_LOAD, before it arrives.
    let h3 = connect(&server, &good_control()).await;
    let (mut send, _recv) = h3.connection.open_bi().await.unwrap();
    send.write_all(&[0x01, 0x80, 0x10, 0x00, 0x00]).await.unwrap();
    assert_eq!(closed_with(&h3).await, 0x107);
    // A WebTransport stream before any session: H3_STREAM_CREATION_ERROR.
    let h3 = connect(&server, &good_control()).await;
    let (mut send, _recv) = h3.connection.open_bi().await.unwrap();
    send.write_all(&wire::webtransport_bidi_stream_header(0)).await.unwrap();
    assert_eq!(closed_with(&h3).await, 0x103);
    // After all that, the server still opens sessions.
    let alice = register(server.addr, "alice");
    open_session_and_ping(&server, "/v1/webtransport?codec=json", Codec::Json, &alice.access_token).await;
}

#[tokio::test]
async fn the_server_ends_a_session_with_a_close_capsule_carrying_the_close_code() {
    let server = Server::start(&[]);
    let h3 = connect(&server, &good_control()).await;
    let (status, _, _connect_send, mut connect_recv) =
        request(&h3, &connect_request("/v1/webtransport", None)).await;
    assert_eq!(status, 200);
    let (mut send, _recv) = h3.connection.open_bi().await.unwrap();
    send.write_all(&wire::webtransport_bidi_stream_header(0)).await.unwrap();
    // A length prefix far above --max-frame-bytes: the session ends with 1009.
    send.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
    let mut rest = Vec::new();
    while let Some(chunk) =
        tokio::time::timeout(WAIT, connect_recv.read_chunk(4096, true)).await.unwrap().unwrap_or(None)
    {
        rest.extend_from_slice(&chunk.bytes);
    }
    let (capsule, _) = wire::read_frame(&rest, 4096).unwrap().unwrap();
    assert_eq!(capsule.kind, wire::capsule_type::CLOSE_WEBTRANSPORT_SESSION);
    let (code, message) = wire::parse_close_session(capsule.payload).unwrap();
    assert_eq!(code, 1009);
    assert!(message.contains("exceeds the limit"), "{message}");
    assert_eq!(closed_with(&h3).await, 0x100);
}
