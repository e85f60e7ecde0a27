//! The QUIC transport end to end: SDK clients over QUIC chat with each other and with a
//! WebSocket client in one room, the development certificate is trusted by PEM or by
//! pin, and a `kill -9` and restart mid-stream loses and duplicates nothing.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::collections::BTreeSet;

use palaver_e2e::{Server, WAIT};
use palaver_protocol::{Codec, RoomKind};
use palaver_sdk::core::ClientEvent;
use palaver_sdk::{Client, ClientOptions, Credentials, Events, QuicOptions, QuicTrust};

const PASSWORD: &str = "password-123";

fn quic(server: &Server) -> ClientOptions {
    let mut options = ClientOptions::with_quic(QuicOptions::new(
        server.quic_addr.to_string(),
        QuicTrust::CertificatePem(server.dev_cert_pem()),
    ));
    // Notice a dead server within a second or two (it sends nothing once killed).
    options.quic.as_mut().unwrap().idle_timeout_ms = 1_500;
    // Keep reconnect delays short so the test does not wait on backoff.
    options.core.backoff_initial_ms = 50;
    options.core.backoff_max_ms = 500;
    options
}

async fn next_message(events: &mut Events) -> palaver_protocol::Message {
    tokio::time::timeout(WAIT, events.next_message()).await.expect("a message event").unwrap()
}

/// The server prints `quic certificate PATH sha256=HEX` on stderr; the same fingerprint,
/// computed here from the file, is what a pin takes.
fn dev_cert_sha256(server: &Server) -> String {
    use rustls_pki_types::pem::PemObject as _;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(server.dev_cert_pem().as_bytes()).unwrap();
    use sha2::Digest as _;
    sha2::Sha256::digest(der.as_ref()).iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_and_websocket_clients_chat_in_one_room_in_order() {
    let server = Server::start(&["--shards", "2"]);
    assert!(server.dev_cert_path().exists(), "the development certificate is in DATA_DIR/tls");
    let url = server.url("");
    let alice =
        Client::connect_with(&url, Credentials::register("alice", PASSWORD), quic(&server)).await.unwrap();
    // Bob pins the certificate by its SHA-256 instead of trusting the PEM.
    let pin = QuicTrust::Sha256Pin(dev_cert_sha256(&server));
    let bob = Client::connect_with(
        &url,
        Credentials::register("bob", PASSWORD),
        ClientOptions::with_quic(QuicOptions::new(server.quic_addr.to_string(), pin)),
    )
    .await
    .unwrap();
    let carol = Client::connect_with(
        &url,
        Credentials::register("carol", PASSWORD),
        ClientOptions::with_codec(Codec::Json),
    )
    .await
    .unwrap();
    let mut events = [alice.events(), bob.events(), carol.events()];

    let room = alice.create_room("mixed", RoomKind::Public).await.unwrap().room_id;
    for client in [&alice, &bob, &carol] {
        client.join(&room).await.unwrap();
    }
    let mut expected = Vec::new();
    for round in 0..5 {
        for (name, client) in [("alice", &alice), ("bob", &bob), ("carol", &carol)] {
            let text = format!("{name} {round}");
            let sent = client.send(&room, &text).await.unwrap();
            expected.push((sent.seq, text));
        }
    }
    assert_eq!(expected.iter().map(|(s, _)| *s).collect::<Vec<_>>(), (1..=15).collect::<Vec<_>>());
    for stream in &mut events {
        let mut seen = Vec::new();
        while seen.len() < expected.len() {
            let m = next_message(stream).await;
            seen.push((m.seq, m.text));
        }
        assert_eq!(seen, expected, "every client sees every message once, in order");
    }
    // Ops beyond chat work over QUIC too.
    assert!(alice.ping().await.is_ok());
    let history = bob.history(&room, None, Some(50)).await.unwrap();
    assert_eq!(history.len(), 15);

    // A wrong pin is refused at the handshake.
    let wrong = QuicTrust::Sha256Pin("00".repeat(32));
    let refused = Client::connect_with(
        &url,
        Credentials::password("alice", PASSWORD),
        ClientOptions::with_quic(QuicOptions::new(server.quic_addr.to_string(), wrong)),
    )
    .await;
    assert!(refused.is_err(), "a client pinning another certificate does not connect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_restart_mid_stream_over_quic_loses_and_duplicates_nothing() {
    let mut server = Server::start(&["--shards", "2"]);
    let url = server.url("");
    let alice =
        Client::connect_with(&url, Credentials::register("alice", PASSWORD), quic(&server)).await.unwrap();
    let bob =
        Client::connect_with(&url, Credentials::register("bob", PASSWORD), quic(&server)).await.unwrap();
    let mut bob_events = bob.events();
    let room = alice.create_room("crashy", RoomKind::Public).await.unwrap().room_id;
    alice.join(&room).await.unwrap();
    bob.join(&room).await.unwrap();

    // Alice pipelines 300 sends over QUIC; every one must eventually be acknowledged.
    const TOTAL: usize = 300;
    let sender = {
        let (alice, room) = (alice.clone(), room.clone());
        tokio::spawn(async move {
            let sends: Vec<_> = (0..TOTAL)
                .map(|i| {
                    let (alice, room) = (alice.clone(), room.clone());
                    tokio::spawn(async move { alice.send(&room, &format!("m{i:03}")).await })
                })
                .collect();
            let mut seqs = Vec::new();
            for s in sends {
                seqs.push(s.await.unwrap().unwrap().seq);
            }
            seqs
        })
    };

    let mut seen = Vec::new();
    while seen.len() < 40 {
        if let ClientEvent::Message(m) = tokio::time::timeout(WAIT, bob_events.next()).await.unwrap().unwrap()
        {
            seen.push((m.seq, m.text));
        }
    }
    // The restarted server listens on the same UDP port and serves the same development
    // certificate (kept in the data dir), so the clients' trust still holds.
    let before = server.dev_cert_pem();
    server.kill9();
    server.restart();
    assert_eq!(server.dev_cert_pem(), before, "the development certificate is generated once");

    let mut reconnected = false;
    while seen.len() < TOTAL {
        match tokio::time::timeout(WAIT, bob_events.next()).await.expect("the stream stalled").unwrap() {
            ClientEvent::Message(m) => seen.push((m.seq, m.text)),
            ClientEvent::Connected { .. } => reconnected = true,
            _ => {}
        }
    }
    assert!(reconnected, "bob reconnected over QUIC after the crash");
    let seqs = tokio::time::timeout(WAIT * 2, sender).await.unwrap().unwrap();

    assert_eq!(seen.iter().map(|(s, _)| *s).collect::<Vec<_>>(), (1..=TOTAL as u64).collect::<Vec<_>>());
    assert_eq!(seqs.iter().copied().collect::<BTreeSet<_>>().len(), TOTAL);
    let mut stored = Vec::new();
    let mut pager = alice.history_pager(&room, 100);
    while let Some(page) = pager.next_page().await.unwrap() {
        stored.extend(page.into_iter().map(|m| m.text));
    }
    assert_eq!(stored.len(), TOTAL);
    assert_eq!(stored.iter().collect::<BTreeSet<_>>().len(), TOTAL, "no text stored twice");
    let texts: BTreeSet<String> = seen.into_iter().map(|(_, t)| t).collect();
    assert_eq!(texts, (0..TOTAL).map(|i| format!("m{i:03}")).collect());
    assert_eq!(alice.send(&room, "after").await.unwrap().seq, TOTAL as u64 + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_made_while_the_server_is_down_is_stored_once_after_it_returns() {
    let mut server = Server::start(&[]);
    let url = server.url("");
    let alice =
        Client::connect_with(&url, Credentials::register("alice", PASSWORD), quic(&server)).await.unwrap();
    let mut events = alice.events();
    let room = alice.create_room("offline", RoomKind::Public).await.unwrap().room_id;
    alice.join(&room).await.unwrap();
    alice.send(&room, "before").await.unwrap();
    server.kill9();
    let pending = {
        let (alice, room) = (alice.clone(), room.clone());
        tokio::spawn(async move { alice.send(&room, "during").await })
    };
    let mut texts = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, events.next()).await.unwrap().unwrap() {
            ClientEvent::Disconnected { .. } => break,
            ClientEvent::Message(m) => texts.push(m.text),
            _ => {}
        }
    }
    server.restart();
    assert_eq!(tokio::time::timeout(WAIT, pending).await.unwrap().unwrap().unwrap().seq, 2);
    while texts.len() < 2 {
        if let ClientEvent::Message(m) = tokio::time::timeout(WAIT, events.next()).await.unwrap().unwrap() {
            texts.push(m.text);
        }
    }
    assert_eq!(texts, ["before", "during"]);
    let stored: Vec<String> =
        alice.history(&room, None, Some(10)).await.unwrap().into_iter().map(|m| m.text).collect();
    assert_eq!(stored.len(), 2, "the send in flight during the cut is stored exactly once: {stored:?}");
}
