//! QUIC on every shard: with `--shards 2`, many QUIC clients land on both shards (the
//! kernel spreads them over the shards' `SO_REUSEPORT` sockets) and chat with each other
//! across shards; a client that moves to another local port mid-connection (its packets
//! may now reach the other shard's socket) keeps its connection, because the server's
//! connection ids name the owning shard and a datagram that lands on the wrong shard is
//! passed to the owner. Floods of unreliable datagrams and of streams are bounded and
//! counted, and leave the connection serving; a handshake offering only unknown ALPNs
//! is refused, a resuming client is never offered 0-RTT, and a client that stops
//! reading is closed as a slow consumer (1013).
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use palaver_e2e::{Server, WAIT, metric, register};
use palaver_protocol::{ClientFrame, Codec, OkBody, Op, ReplyBody, RoomKind, ServerFrame};
use palaver_sdk::{Client, ClientOptions, Credentials, QuicOptions, QuicTrust};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

const CLIENTS: usize = 16;

fn quic(server: &Server) -> ClientOptions {
    ClientOptions::with_quic(QuicOptions::new(
        server.quic_addr.to_string(),
        QuicTrust::CertificatePem(server.dev_cert_pem()),
    ))
}

fn accepted_by_shard(server: &Server, shard: usize) -> u64 {
    metric(server.addr, &format!("palaver_quic_connections_accepted_total{{shard=\"{shard}\"}}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_quic_clients_land_on_both_shards_and_chat_across_them() {
    let server = Server::start(&["--shards", "2"]);
    let url = server.url("");
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let credentials = Credentials::register(format!("user{i:02}"), "password-123");
        clients.push(Client::connect_with(&url, credentials, quic(&server)).await.unwrap());
    }
    let (first, second) = (accepted_by_shard(&server, 0), accepted_by_shard(&server, 1));
    assert_eq!(first + second, CLIENTS as u64);
    assert!(first > 0 && second > 0, "the kernel spread {CLIENTS} clients as {first} and {second}");

    let mut events: Vec<_> = clients.iter().map(Client::events).collect();
    let room = clients[0].create_room("everyone", RoomKind::Public).await.unwrap().room_id;
    for client in &clients {
        client.join(&room).await.unwrap();
    }
    for (i, client) in clients.iter().enumerate() {
        client.send(&room, &format!("hello from {i}")).await.unwrap();
    }
    for stream in &mut events {
        let mut seen = Vec::new();
        while seen.len() < CLIENTS {
            let message = tokio::time::timeout(WAIT, stream.next_message()).await.unwrap().unwrap();
            seen.push(message.seq);
        }
        assert_eq!(seen, (1..=CLIENTS as u64).collect::<Vec<_>>(), "every message once, in order");
    }
}

/// A client configuration trusting the server's development certificate, offering
/// `alpns`, and asking for 0-RTT when `early_data`.
fn client_config(server: &Server, alpns: &[&[u8]], early_data: bool) -> quinn::ClientConfig {
    client_config_with(server, alpns, early_data, quinn::TransportConfig::default())
}

fn client_config_with(
    server: &Server,
    alpns: &[&[u8]],
    early_data: bool,
    mut transport: quinn::TransportConfig,
) -> quinn::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(server.dev_cert_pem().as_bytes()).unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = alpns.iter().map(|a| a.to_vec()).collect();
    tls.enable_early_data = early_data;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    transport.datagram_receive_buffer_size(Some(64 * 1024));
    config.transport_config(Arc::new(transport));
    config
}

/// A bare quinn client on one bidirectional stream (the SDK does not expose rebinding).
struct Raw {
    endpoint: quinn::Endpoint,
    connection: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
}

impl Raw {
    async fn connect(server: &Server) -> Raw {
        let endpoint = quinn::Endpoint::client(([127, 0, 0, 1], 0).into()).unwrap();
        let config = client_config(server, &[b"palaver/1"], false);
        let connection = endpoint.connect_with(config, server.quic_addr, "localhost").unwrap().await.unwrap();
        let (send, recv) = connection.open_bi().await.unwrap();
        Raw { endpoint, connection, send, recv }
    }

    async fn request(&mut self, id: u64, op: Op) -> ServerFrame {
        let payload = Codec::Rkyv.encode_client(&ClientFrame { id, op }).unwrap();
        let len = u32::try_from(payload.len()).unwrap().to_le_bytes();
        let mut chunks = [Bytes::copy_from_slice(&len), Bytes::from(payload)];
        self.send.write_all_chunks(&mut chunks).await.unwrap();
        let mut prefix = [0u8; 4];
        tokio::time::timeout(WAIT, self.recv.read_exact(&mut prefix)).await.unwrap().unwrap();
        let mut frame = vec![0u8; u32::from_le_bytes(prefix) as usize];
        tokio::time::timeout(WAIT, self.recv.read_exact(&mut frame)).await.unwrap().unwrap();
        Codec::Rkyv.decode_server(&frame).unwrap()
    }

    async fn ping(&mut self, id: u64) {
        let pong = self.request(id, Op::Ping {}).await;
        assert!(matches!(pong, ServerFrame::Reply { re, body: ReplyBody::Ok(_) } if re == id), "{pong:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_changes_its_port_keeps_its_connection_whichever_shard_its_packets_reach() {
    let server = Server::start(&["--shards", "2"]);
    let alice = register(server.addr, "alice");
    let mut raw = Raw::connect(&server).await;
    let authed = raw.request(1, Op::Auth { token: alice.access_token }).await;
    assert!(
        matches!(authed, ServerFrame::Reply { body: ReplyBody::Ok(OkBody::Authed(_)), .. }),
        "{authed:?}"
    );
    // Each new port is spread by the kernel's hash: half of them reach the other shard.
    // Keep moving until one did (a datagram was passed on), proving each move on the way.
    let mut id = 2;
    for _ in 0..40 {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        raw.endpoint.rebind(socket).unwrap();
        raw.ping(id).await;
        id += 1;
        if metric(server.addr, "palaver_quic_datagrams_forwarded_total") > 0 {
            break;
        }
    }
    assert!(
        metric(server.addr, "palaver_quic_datagrams_forwarded_total") > 0,
        "no move reached the other shard"
    );
    // Still the same connection, still serving.
    raw.ping(id).await;
    assert!(raw.connection.close_reason().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datagram_flood_is_dropped_and_counted_and_the_connection_keeps_serving() {
    let server = Server::start(&[]);
    let alice = register(server.addr, "alice");
    let mut raw = Raw::connect(&server).await;
    let authed = raw.request(1, Op::Auth { token: alice.access_token }).await;
    assert!(matches!(authed, ServerFrame::Reply { body: ReplyBody::Ok(_), .. }), "{authed:?}");
    assert!(raw.connection.max_datagram_size().is_some(), "the server negotiates datagrams");
    let mut sent = 0u64;
    for i in 0..5_000u32 {
        if raw.connection.send_datagram(Bytes::from(i.to_le_bytes().repeat(100))).is_ok() {
            sent += 1;
        }
        if i % 500 == 0 {
            tokio::task::yield_now().await;
        }
    }
    assert!(sent > 0);
    raw.ping(2).await;
    // Some arrive (QUIC may drop the rest under congestion); none is kept.
    let mut counted = 0;
    for _ in 0..50 {
        counted = metric(server.addr, "palaver_quic_datagrams_dropped_total");
        if counted > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(counted > 0 && counted <= sent, "{counted} counted of {sent} sent");
    raw.ping(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_flood_is_bounded_refused_and_counted() {
    let server = Server::start(&[]);
    let alice = register(server.addr, "alice");
    let mut raw = Raw::connect(&server).await;
    let authed = raw.request(1, Op::Auth { token: alice.access_token }).await;
    assert!(matches!(authed, ServerFrame::Reply { body: ReplyBody::Ok(_), .. }), "{authed:?}");
    // One bidirectional stream at a time: a second is not granted while the first is open.
    let more = tokio::time::timeout(Duration::from_millis(300), raw.connection.open_bi()).await;
    assert!(more.is_err(), "a second bidirectional stream was granted");
    // Unidirectional streams, a few at a time: each is stopped and counted, and its
    // credit comes back, so a flood of them only costs the flooder round trips.
    const FLOOD: u64 = 30;
    for i in 0..FLOOD {
        let mut stream = tokio::time::timeout(WAIT, raw.connection.open_uni()).await.unwrap().unwrap();
        // Writes may fail once the server has stopped the stream: that is the point.
        let _ = stream.write_all(&[0xab; 2048]).await;
        let _ = stream.finish();
        if i % 10 == 0 {
            raw.ping(100 + i).await;
        }
    }
    let mut refused = 0;
    for _ in 0..100 {
        refused = metric(server.addr, "palaver_quic_streams_refused_total");
        if refused >= FLOOD {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(refused, FLOOD);
    raw.ping(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_offering_only_an_unknown_application_protocol_is_refused() {
    let server = Server::start(&[]);
    let endpoint = quinn::Endpoint::client(([127, 0, 0, 1], 0).into()).unwrap();
    let config = client_config(&server, &[b"palaver/0", b"h2"], false);
    let connecting = endpoint.connect_with(config, server.quic_addr, "localhost").unwrap();
    let refused = tokio::time::timeout(WAIT, connecting).await.unwrap();
    match refused {
        // TLS's no_application_protocol alert (120) as a QUIC crypto error (0x100 + 120).
        Err(quinn::ConnectionError::ConnectionClosed(close)) => {
            assert_eq!(u64::from(close.error_code), 0x178, "{close}");
        }
        other => panic!("expected the handshake to be refused, got {other:?}"),
    }
    // The server still serves others.
    let alice = register(server.addr, "alice");
    let mut raw = Raw::connect(&server).await;
    let authed = raw.request(1, Op::Auth { token: alice.access_token }).await;
    assert!(matches!(authed, ServerFrame::Reply { body: ReplyBody::Ok(_), .. }), "{authed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resuming_client_is_offered_no_0rtt() {
    let server = Server::start(&[]);
    let alice = register(server.addr, "alice");
    let endpoint = quinn::Endpoint::client(([127, 0, 0, 1], 0).into()).unwrap();
    // One client configuration, so the second connection may resume the first's session.
    let config = client_config(&server, &[b"palaver/1"], true);
    let first = endpoint.connect_with(config.clone(), server.quic_addr, "localhost").unwrap().await.unwrap();
    let (send, recv) = first.open_bi().await.unwrap();
    let mut raw = Raw { endpoint: endpoint.clone(), connection: first, send, recv };
    let authed = raw.request(1, Op::Auth { token: alice.access_token.clone() }).await;
    assert!(matches!(authed, ServerFrame::Reply { body: ReplyBody::Ok(_), .. }), "{authed:?}");
    raw.connection.close(0u32.into(), b"");
    let connecting = endpoint.connect_with(config, server.quic_addr, "localhost").unwrap();
    // Early data would let a replayed first flight act twice: the server never offers it.
    let Err(connecting) = connecting.into_0rtt() else { panic!("the server accepted 0-RTT") };
    let second = tokio::time::timeout(WAIT, connecting).await.unwrap().unwrap();
    let (send, recv) = second.open_bi().await.unwrap();
    let mut raw = Raw { endpoint, connection: second, send, recv };
    let authed = raw.request(1, Op::Auth { token: alice.access_token }).await;
    assert!(matches!(authed, ServerFrame::Reply { body: ReplyBody::Ok(_), .. }), "{authed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quic_client_that_stops_reading_is_closed_with_1013() {
    let server = Server::start(&[
        "--outbound-queue-bytes",
        "262144",
        "--ops-burst",
        "100000",
        "--ops-per-sec",
        "100000",
        "--max-in-flight",
        "100000",
    ]);
    let alice = register(server.addr, "alice");
    let bob = register(server.addr, "bob");
    let addr = server.addr;
    let (mut sender, room) = tokio::task::spawn_blocking(move || {
        let mut sender = palaver_e2e::Client::login(addr, Codec::Rkyv, &alice);
        let room = sender.create_room("firehose", RoomKind::Public);
        sender.join(&room, None);
        (sender, room)
    })
    .await
    .unwrap();
    // Bob reads nothing after his join: a small stream window fills first, then the
    // server's 256 KiB queue for him.
    let mut transport = quinn::TransportConfig::default();
    transport.stream_receive_window(quinn::VarInt::from_u32(64 * 1024));
    let endpoint = quinn::Endpoint::client(([127, 0, 0, 1], 0).into()).unwrap();
    let config = client_config_with(&server, &[b"palaver/1"], false, transport);
    let connection = endpoint.connect_with(config, server.quic_addr, "localhost").unwrap().await.unwrap();
    let (send, recv) = connection.open_bi().await.unwrap();
    let mut slow = Raw { endpoint, connection, send, recv };
    let authed = slow.request(1, Op::Auth { token: bob.access_token }).await;
    assert!(matches!(authed, ServerFrame::Reply { body: ReplyBody::Ok(_), .. }), "{authed:?}");
    let joined = slow.request(2, Op::Join { room: room.clone(), since: None }).await;
    assert!(matches!(joined, ServerFrame::Reply { body: ReplyBody::Ok(_), .. }), "{joined:?}");

    let closed = {
        let connection = slow.connection.clone();
        tokio::spawn(async move { connection.closed().await })
    };
    // ~1.9 MB: far beyond the window and the queue together.
    let body = "x".repeat(1_900);
    let sent = tokio::task::spawn_blocking(move || {
        for i in 0..1_000 {
            let id = sender.send_op(palaver_e2e::send_op(&room, &format!("c{i}"), &body));
            sender.reply(id);
        }
    });
    let error = tokio::time::timeout(WAIT * 2, closed).await.unwrap().unwrap();
    match error {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code.into_inner(), 1013, "{close:?}");
        }
        other => panic!("expected an application close, got {other}"),
    }
    tokio::time::timeout(WAIT * 4, sent).await.unwrap().unwrap();
    assert!(metric(server.addr, "palaver_slow_consumers_total") >= 1);
}
