//! QUIC's stream mapping (PROTOCOL.md §7.3) seen from the wire: replies on the client's
//! bidirectional stream, each room's events on a unidirectional stream of its own in seq
//! order, `typing` as datagrams; a room whose stream the client does not read holds up
//! no other room; resume with `since` replays on the room's stream; a datagram that is
//! not a `typing` op is dropped without closing anything. And the Rust SDK over QUIC
//! follows several rooms at once and sends `typing` as a datagram.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use palaver_e2e::{Account, Server, WAIT, metric, register};
use palaver_sdk::core::ClientEvent;
use palaver_sdk::{Client, ClientOptions, Credentials, QuicOptions, QuicTrust};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

/// Where a frame came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Path {
    Control,
    /// A server-opened unidirectional stream, by its QUIC stream id.
    Uni(u64),
    Datagram,
}

/// Rooms whose stream a [`RawClient`] does not read for now.
type Stalled = Arc<Mutex<HashSet<String>>>;

/// A JSON client over raw quinn: ALPN `palaver/1+json`, every stream and datagram read
/// by its own task. A uni stream that delivers a frame of a room in `stalled` is not
/// read further until the room is taken out and `resume` notified.
struct RawClient {
    send: quinn::SendStream,
    frames: mpsc::UnboundedReceiver<(Path, Value)>,
    /// Frames taken off `frames` while waiting for something else.
    seen: Vec<(Path, Value)>,
    next_id: u64,
    stalled: Stalled,
    resume: Arc<Notify>,
    connection: quinn::Connection,
    _endpoint: quinn::Endpoint,
}

impl RawClient {
    /// Connects with a per-stream receive window of `stream_window` bytes.
    async fn connect(server: &Server, stream_window: u32) -> RawClient {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(server.dev_cert_pem().as_bytes()).unwrap()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"palaver/1+json".to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport
            .stream_receive_window(quinn::VarInt::from_u32(stream_window))
            .max_concurrent_uni_streams(quinn::VarInt::from_u32(100))
            .datagram_receive_buffer_size(Some(64 * 1024));
        config.transport_config(Arc::new(transport));
        let endpoint = quinn::Endpoint::client(([127, 0, 0, 1], 0).into()).unwrap();
        let connection = endpoint.connect_with(config, server.quic_addr, "localhost").unwrap().await.unwrap();
        let (send, recv) = connection.open_bi().await.unwrap();
        let (to_test, frames) = mpsc::unbounded_channel();
        let stalled = Arc::new(Mutex::new(HashSet::new()));
        let resume = Arc::new(Notify::new());
        tokio::spawn(read_stream(recv, Path::Control, to_test.clone(), None));
        let (uni_connection, uni_to_test) = (connection.clone(), to_test.clone());
        let (uni_stalled, uni_resume) = (stalled.clone(), resume.clone());
        tokio::spawn(async move {
            while let Ok(recv) = uni_connection.accept_uni().await {
                let path = Path::Uni(recv.id().index());
                let stall = Some((uni_stalled.clone(), uni_resume.clone()));
                tokio::spawn(read_stream(recv, path, uni_to_test.clone(), stall));
            }
        });
        let datagram_connection = connection.clone();
        tokio::spawn(async move {
            while let Ok(datagram) = datagram_connection.read_datagram().await {
                let _ = to_test.send((Path::Datagram, serde_json::from_slice(&datagram).unwrap()));
            }
        });
        RawClient {
            send,
            frames,
            seen: Vec::new(),
            next_id: 0,
            stalled,
            resume,
            connection,
            _endpoint: endpoint,
        }
    }

    async fn login(server: &Server, account: &Account, stream_window: u32) -> RawClient {
        let mut client = RawClient::connect(server, stream_window).await;
        client.ok(json!({"op": "auth", "token": account.access_token})).await;
        client
    }

    async fn write(&mut self, frame: &Value) {
        let payload = frame.to_string().into_bytes();
        let mut wire = u32::try_from(payload.len()).unwrap().to_le_bytes().to_vec();
        wire.extend_from_slice(&payload);
        self.send.write_all(&wire).await.unwrap();
    }

    /// Sends a request and returns its reply (which must come on the control stream).
    async fn request(&mut self, mut op: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        op["id"] = json!(id);
        self.write(&op).await;
        let (path, reply) = self.wait_for(|frame| frame["re"] == json!(id)).await;
        assert_eq!(path, Path::Control, "replies come on the control stream: {reply}");
        reply
    }

    async fn ok(&mut self, op: Value) -> Value {
        let reply = self.request(op.clone()).await;
        assert!(reply.get("ok").is_some(), "{op} failed: {reply}");
        reply["ok"].clone()
    }

    /// The first frame (seen or next) that `wanted` accepts, and where it came from.
    async fn wait_for(&mut self, wanted: impl Fn(&Value) -> bool) -> (Path, Value) {
        if let Some(at) = self.seen.iter().position(|(_, frame)| wanted(frame)) {
            return self.seen.remove(at);
        }
        loop {
            let next =
                tokio::time::timeout(WAIT, self.frames.recv()).await.expect("a frame in time").unwrap();
            if wanted(&next.1) {
                return next;
            }
            self.seen.push(next);
        }
    }

    /// The next `count` messages of `room`, with where each came from.
    async fn messages(&mut self, room: &str, count: usize) -> Vec<(Path, u64)> {
        let mut out = Vec::new();
        while out.len() < count {
            let (path, m) = self.wait_for(|f| f["ev"] == "message" && f["room"] == room).await;
            out.push((path, m["seq"].as_u64().unwrap()));
        }
        out
    }
}

/// Reads one stream's frames into `to_test`; with `stall`, stops reading after a frame
/// of a stalled room until that room is no longer stalled.
async fn read_stream(
    mut recv: quinn::RecvStream,
    path: Path,
    to_test: mpsc::UnboundedSender<(Path, Value)>,
    stall: Option<(Stalled, Arc<Notify>)>,
) {
    let mut prefix = [0u8; 4];
    while recv.read_exact(&mut prefix).await.is_ok() {
        let mut payload = vec![0u8; u32::from_le_bytes(prefix) as usize];
        if recv.read_exact(&mut payload).await.is_err() {
            return;
        }
        let frame: Value = serde_json::from_slice(&payload).unwrap();
        let room = frame["room"].as_str().map(str::to_owned);
        if to_test.send((path, frame)).is_err() {
            return;
        }
        if let (Some((stalled, resume)), Some(room)) = (&stall, room) {
            loop {
                let notified = resume.notified();
                if !stalled.lock().unwrap().contains(&room) {
                    break;
                }
                notified.await;
            }
        }
    }
}

async fn create_room(client: &mut RawClient, name: &str) -> String {
    let created = client.ok(json!({"op": "room.create", "name": name, "kind": "public"})).await;
    created["room"]["room_id"].as_str().unwrap().to_owned()
}

async fn send(client: &mut RawClient, room: &str, text: &str) -> u64 {
    static SENT: AtomicU64 = AtomicU64::new(0);
    let cid = format!("c{}", SENT.fetch_add(1, Ordering::Relaxed));
    let sent = client.ok(json!({"op": "send", "room": room, "cid": cid, "text": text})).await;
    sent["seq"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_room_has_its_own_stream_in_seq_order_and_typing_comes_as_a_datagram() {
    let server = Server::start(&["--shards", "2"]);
    let (alice, bob) = (register(server.addr, "alice"), register(server.addr, "bob"));
    let mut reader = RawClient::login(&server, &alice, 1 << 20).await;
    let mut writer = RawClient::login(&server, &bob, 1 << 20).await;
    let mut rooms = Vec::new();
    for name in ["one", "two", "three"] {
        let room = create_room(&mut writer, name).await;
        writer.ok(json!({"op": "join", "room": room})).await;
        reader.ok(json!({"op": "join", "room": room})).await;
        rooms.push(room);
    }
    for round in 0..5 {
        for room in &rooms {
            send(&mut writer, room, &format!("m{round}")).await;
        }
    }
    let mut streams = BTreeMap::new();
    for room in &rooms {
        let got = reader.messages(room, 5).await;
        assert_eq!(
            got.iter().map(|(_, seq)| *seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5],
            "{room} in order"
        );
        let paths: HashSet<Path> = got.iter().map(|(path, _)| *path).collect();
        assert_eq!(paths.len(), 1, "one stream per room: {got:?}");
        let path = got[0].0;
        assert!(matches!(path, Path::Uni(_)), "room events come on a server stream: {path:?}");
        streams.insert(path, room.clone());
    }
    assert_eq!(streams.len(), 3, "each room on a stream of its own: {streams:?}");

    // Typing: a datagram (the client negotiated them), and never on a stream.
    writer.ok(json!({"op": "typing.start", "room": rooms[1]})).await;
    let (path, typing) = reader.wait_for(|f| f["ev"] == "typing").await;
    assert_eq!(path, Path::Datagram, "{typing}");
    assert_eq!((typing["room"].as_str(), typing["active"].as_bool()), (Some(rooms[1].as_str()), Some(true)));

    // A typing op sent as a datagram is done without a reply; the other side sees it.
    let start = json!({"id": 0, "op": "typing.start", "room": rooms[1]});
    reader.connection.send_datagram(start.to_string().into_bytes().into()).unwrap();
    let (path, started) =
        writer.wait_for(|f| f["ev"] == "typing" && f["user"] == alice.user_id.as_str()).await;
    assert_eq!(path, Path::Datagram, "{started}");
    // A datagram that is not a typing op, or does not decode, is counted and dropped:
    // the connection carries on and no reply comes for it.
    let dropped_before = metric(server.addr, "palaver_quic_datagrams_dropped_total");
    reader.connection.send_datagram(b"{not json".to_vec().into()).unwrap();
    let send_op = json!({"id": 77, "op": "send", "room": rooms[0], "cid": "dg", "text": "x"});
    reader.connection.send_datagram(send_op.to_string().into_bytes().into()).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while metric(server.addr, "palaver_quic_datagrams_dropped_total") < dropped_before + 2 {
        assert!(std::time::Instant::now() < deadline, "the bad datagrams were not counted");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(reader.ok(json!({"op": "ping"})).await.is_object());
    assert!(
        reader.seen.iter().all(|(_, f)| f["re"] != 0 && f["re"] != 77),
        "no reply to a datagram: {:?}",
        reader.seen
    );
    let history = reader.ok(json!({"op": "history", "room": rooms[0]})).await;
    assert_eq!(history["messages"].as_array().unwrap().len(), 5, "the send datagram was not carried out");
}

/// Deterministic head-of-line independence: the client stops reading room A's stream
/// after its first event and has a 4 KiB window per stream, then 30 KiB of A's events
/// are sent; B's event still arrives. On one shared stream it would wait behind A's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_whose_stream_is_not_read_holds_up_no_other_room() {
    let server = Server::start(&[]);
    let (alice, bob) = (register(server.addr, "alice"), register(server.addr, "bob"));
    let mut reader = RawClient::login(&server, &alice, 4096).await;
    let mut writer = RawClient::login(&server, &bob, 1 << 20).await;
    let (a, b) = (create_room(&mut writer, "a").await, create_room(&mut writer, "b").await);
    for room in [&a, &b] {
        reader.ok(json!({"op": "join", "room": room})).await;
    }
    reader.stalled.lock().unwrap().insert(a.clone());
    send(&mut writer, &a, "first").await;
    assert_eq!(reader.messages(&a, 1).await.len(), 1);
    let long = "x".repeat(1000);
    for i in 0..30 {
        send(&mut writer, &a, &format!("{i} {long}")).await;
    }
    let b_seq = send(&mut writer, &b, "through").await;
    let (path, got) = reader.wait_for(|f| f["ev"] == "message" && f["room"] == b.as_str()).await;
    assert_eq!(got["seq"].as_u64(), Some(b_seq));
    assert!(matches!(path, Path::Uni(_)));
    assert!(
        !reader.seen.iter().any(|(_, f)| f["room"] == a.as_str() && f["seq"] == 31),
        "room A's stream was read after all"
    );
    // Reading A again, every one of its events arrives, in order.
    reader.stalled.lock().unwrap().clear();
    reader.resume.notify_waiters();
    let rest = reader.messages(&a, 30).await;
    assert_eq!(rest.iter().map(|(_, s)| *s).collect::<Vec<_>>(), (2..=31).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_with_since_replays_on_the_rooms_stream_in_order() {
    let server = Server::start(&[]);
    let (alice, bob) = (register(server.addr, "alice"), register(server.addr, "bob"));
    let mut writer = RawClient::login(&server, &bob, 1 << 20).await;
    let (a, b) = (create_room(&mut writer, "a").await, create_room(&mut writer, "b").await);
    let mut reader = RawClient::login(&server, &alice, 1 << 20).await;
    for room in [&a, &b] {
        reader.ok(json!({"op": "join", "room": room})).await;
        send(&mut writer, room, "before").await;
        assert_eq!(reader.messages(room, 1).await[0].1, 1);
    }
    reader.connection.close(quinn::VarInt::from_u32(1000), b"");
    drop(reader);
    for i in 0..4 {
        send(&mut writer, &a, &format!("a{i}")).await;
        send(&mut writer, &b, &format!("b{i}")).await;
    }
    let mut reader = RawClient::login(&server, &alice, 1 << 20).await;
    for room in [&a, &b] {
        reader.ok(json!({"op": "join", "room": room, "since": 1})).await;
    }
    let (got_a, got_b) = (reader.messages(&a, 4).await, reader.messages(&b, 4).await);
    for got in [&got_a, &got_b] {
        assert_eq!(got.iter().map(|(_, s)| *s).collect::<Vec<_>>(), vec![2, 3, 4, 5]);
        assert!(got.iter().all(|(path, _)| *path == got[0].0 && matches!(path, Path::Uni(_))), "{got:?}");
    }
    assert_ne!(got_a[0].0, got_b[0].0, "two rooms, two streams");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_over_quic_follows_several_rooms_and_types_by_datagram() {
    let server = Server::start(&["--shards", "2"]);
    let url = server.url("");
    let options = ClientOptions::with_quic(QuicOptions::new(
        server.quic_addr.to_string(),
        QuicTrust::CertificatePem(server.dev_cert_pem()),
    ));
    let alice =
        Client::connect_with(&url, Credentials::register("alice", "password-123"), options).await.unwrap();
    let mut events = alice.events();
    let bob = register(server.addr, "bob");
    let mut writer = RawClient::login(&server, &bob, 1 << 20).await;
    let mut rooms = Vec::new();
    for name in ["one", "two", "three", "four"] {
        let room = create_room(&mut writer, name).await;
        alice.join(&palaver_protocol::RoomId::parse(&room).unwrap()).await.unwrap();
        writer.ok(json!({"op": "join", "room": room})).await;
        rooms.push(room);
    }
    for round in 0..6 {
        for room in &rooms {
            send(&mut writer, room, &format!("{round}")).await;
        }
    }
    let mut per_room: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    while per_room.values().map(Vec::len).sum::<usize>() < 24 {
        let m = tokio::time::timeout(WAIT, events.next_message()).await.unwrap().unwrap();
        per_room.entry(m.room.as_str().to_owned()).or_default().push(m.seq);
    }
    for room in &rooms {
        assert_eq!(per_room[room], (1..=6).collect::<Vec<_>>(), "{room}: each once, in order");
    }

    // Typing from the SDK goes as a datagram and is done at once.
    let typed_in = palaver_protocol::RoomId::parse(&rooms[2]).unwrap();
    alice.typing_start(&typed_in).await.unwrap();
    let (path, typing) = writer.wait_for(|f| f["ev"] == "typing").await;
    assert_eq!(path, Path::Datagram, "{typing}");
    assert_eq!(typing["room"].as_str(), Some(rooms[2].as_str()));
    // And typing from others reaches the SDK (as a datagram too).
    writer.ok(json!({"op": "typing.start", "room": rooms[3]})).await;
    loop {
        match tokio::time::timeout(WAIT, events.next()).await.unwrap().unwrap() {
            ClientEvent::Typing(t) if t.room.as_str() == rooms[3] => break,
            _ => {}
        }
    }
}

/// The outbound queue stays the one bound: a client that stops reading one room's stream
/// (and reads everything else) is closed as a slow consumer once that room's backlog
/// passes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_a_room_stream_is_closed_as_a_slow_consumer() {
    let server = Server::start(&[
        "--outbound-queue-bytes",
        "262144",
        "--ops-per-sec",
        "10000",
        "--ops-burst",
        "10000",
    ]);
    let (alice, bob) = (register(server.addr, "alice"), register(server.addr, "bob"));
    let mut reader = RawClient::login(&server, &alice, 4096).await;
    let mut writer = RawClient::login(&server, &bob, 1 << 20).await;
    let room = create_room(&mut writer, "busy").await;
    reader.ok(json!({"op": "join", "room": room})).await;
    reader.stalled.lock().unwrap().insert(room.clone());
    let text = "y".repeat(1900);
    let mut sent = 0;
    // The queue (256 KiB) and what the stream's writer may hold (as much again) fill up
    // after some 260 messages of ~2 KB; the close follows once the other streams had
    // their moment to finish (2 s).
    while reader.connection.close_reason().is_none() {
        assert!(sent < 5_000, "the stalled client was never closed");
        send(&mut writer, &room, &text).await;
        sent += 1;
    }
    let reason = tokio::time::timeout(WAIT, reader.connection.closed()).await.unwrap();
    match reason {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, quinn::VarInt::from_u32(1013), "{close:?}");
        }
        other => panic!("closed otherwise: {other:?}"),
    }
    assert!(sent > 100, "closed after {sent} messages: before its queue could have filled");
}
