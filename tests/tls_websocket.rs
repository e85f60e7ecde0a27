//! The HTTP listener over TLS (`--http-tls`, the development certificate) end to end: SDK
//! clients chat over `wss://` and resume across a restart with no gap or duplicate; a raw
//! WebSocket client speaks JSON over `wss://`; the SDK refuses an untrusted certificate
//! and accepts a pinned one; files go up and come back over `https://`;
//! a client that does not speak TLS, and one that never finishes its handshake, are
//! dropped while the server stays healthy.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use palaver_e2e::{Server, WAIT, https_bytes, png_bytes, tls_client_config, tls_connect};
use palaver_protocol::{Codec, RoomKind};
use palaver_sdk::core::ClientEvent;
use palaver_sdk::{Client, ClientOptions, Credentials, TlsTrust};
use tungstenite::Message as WsMessage;
use tungstenite::client::IntoClientRequest as _;

const PASSWORD: &str = "password-123";

fn tls_server() -> Server {
    let server = Server::start(&["--shards", "2", "--http-tls"]);
    assert!(server.tls, "the startup line says https=");
    server
}

fn options(server: &Server, codec: Codec) -> ClientOptions {
    let mut options =
        ClientOptions::with_codec(codec).trusting(TlsTrust::CertificatePem(server.dev_cert_pem()));
    // Keep reconnect delays short so the test does not wait on backoff.
    options.core.backoff_initial_ms = 50;
    options.core.backoff_max_ms = 500;
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_clients_chat_over_wss_and_resume_after_a_restart() {
    let mut server = tls_server();
    let url = server.url("");
    assert!(url.starts_with("https://"));
    let alice =
        Client::connect_with(&url, Credentials::register("alice", PASSWORD), options(&server, Codec::Json))
            .await
            .unwrap();
    let bob =
        Client::connect_with(&url, Credentials::register("bob", PASSWORD), options(&server, Codec::Rkyv))
            .await
            .unwrap();
    let mut bob_events = bob.events();
    let room = alice.create_room("tls", RoomKind::Public).await.unwrap().room_id;
    alice.join(&room).await.unwrap();
    bob.join(&room).await.unwrap();

    const HALF: u64 = 20;
    for i in 0..HALF {
        alice.send(&room, &format!("m{i:02}")).await.unwrap();
    }
    let mut seen = Vec::new();
    while seen.len() < HALF as usize {
        if let ClientEvent::Message(m) = tokio::time::timeout(WAIT, bob_events.next()).await.unwrap().unwrap()
        {
            seen.push((m.seq, m.text));
        }
    }

    // Cut every connection: the server dies and comes back on the same port and
    // certificate; both clients reconnect over wss on their own.
    server.kill9();
    server.restart();
    assert!(server.tls);
    let sender = {
        let (alice, room) = (alice.clone(), room.clone());
        tokio::spawn(async move {
            for i in HALF..2 * HALF {
                alice.send(&room, &format!("m{i:02}")).await.unwrap();
            }
        })
    };
    let mut reconnected = false;
    while seen.len() < 2 * HALF as usize {
        match tokio::time::timeout(WAIT, bob_events.next()).await.expect("the stream stalled").unwrap() {
            ClientEvent::Message(m) => seen.push((m.seq, m.text)),
            ClientEvent::Connected { .. } => reconnected = true,
            _ => {}
        }
    }
    tokio::time::timeout(WAIT, sender).await.unwrap().unwrap();
    assert!(reconnected, "bob reconnected after the restart");
    let expected: Vec<(u64, String)> = (0..2 * HALF).map(|i| (i + 1, format!("m{i:02}"))).collect();
    assert_eq!(seen, expected, "every message once, in order, across the cut");
    alice.close();
    bob.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_checks_the_certificate_and_takes_a_pin() {
    let server = tls_server();
    let url = server.url("");
    // The development certificate is in no system root store: refused.
    let refused =
        Client::connect_with(&url, Credentials::register("eve", PASSWORD), ClientOptions::default()).await;
    assert!(refused.is_err(), "a self-signed certificate is not trusted by default");
    // Pinned by the SHA-256 the server prints on stderr (computed here from the file).
    use rustls_pki_types::pem::PemObject as _;
    use sha2::Digest as _;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(server.dev_cert_pem().as_bytes()).unwrap();
    let pin: String = sha2::Sha256::digest(der.as_ref()).iter().map(|b| format!("{b:02x}")).collect();
    let options = ClientOptions::default().trusting(TlsTrust::Sha256Pin(pin));
    let pinned = Client::connect_with(&url, Credentials::register("frank", PASSWORD), options).await.unwrap();
    pinned.ping().await.unwrap();
    pinned.close();
}

#[test]
fn a_raw_websocket_client_speaks_json_over_wss() {
    let server = tls_server();
    let pem = server.dev_cert_pem();
    let body = serde_json::json!({"username": "dave", "password": PASSWORD}).to_string();
    let registered = https_bytes(server.addr, &pem, "POST", "/v1/auth/register", body.as_bytes(), &[]);
    assert_eq!(registered.status, 201, "{:?}", String::from_utf8_lossy(&registered.body));
    let token = registered.json()["access_token"].as_str().unwrap().to_owned();

    let stream = tls_connect(server.addr, tls_client_config(&pem));
    let mut request = format!("wss://{}/v1/ws", server.addr).into_client_request().unwrap();
    request.headers_mut().insert("sec-websocket-protocol", "palaver.v1.json".parse().unwrap());
    let (mut ws, response) = tungstenite::client::client(request, stream).unwrap();
    assert_eq!(response.status(), 101);
    let mut call = |frame: serde_json::Value| -> serde_json::Value {
        let id = frame["id"].clone();
        ws.send(WsMessage::text(frame.to_string())).unwrap();
        loop {
            let WsMessage::Text(text) = ws.read().unwrap() else { continue };
            let value: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
            if value["re"] == id {
                return value;
            }
        }
    };
    let authed = call(serde_json::json!({"id": 1, "op": "auth", "token": token}));
    assert!(authed["ok"]["user_id"].as_str().unwrap().starts_with("u_"), "{authed}");
    let created = call(serde_json::json!({"id": 2, "op": "room.create", "name": "wss", "kind": "public"}));
    let room = created["ok"]["room"]["room_id"].as_str().unwrap().to_owned();
    let joined = call(serde_json::json!({"id": 3, "op": "join", "room": room}));
    assert_eq!(joined["ok"]["last_seq"], 0, "{joined}");
    let sent =
        call(serde_json::json!({"id": 4, "op": "send", "room": room, "cid": "c-1", "text": "over tls"}));
    assert_eq!(sent["ok"]["seq"], 1, "{sent}");
    let history = call(serde_json::json!({"id": 5, "op": "history", "room": room}));
    assert_eq!(history["ok"]["messages"][0]["text"], "over tls", "{history}");
    let _ = ws.close(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_go_up_and_come_back_over_https() {
    let server = tls_server();
    let pem = server.dev_cert_pem();
    let health = https_bytes(server.addr, &pem, "GET", "/healthz", b"", &[]);
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");

    let url = server.url("");
    let alice =
        Client::connect_with(&url, Credentials::register("alice", PASSWORD), options(&server, Codec::Json))
            .await
            .unwrap();
    let room = alice.create_room("files", RoomKind::Public).await.unwrap().room_id;
    let token = alice.tokens().unwrap().access_token;
    let auth = format!("Bearer {token}");
    // A few hundred KiB: many TLS records each way, streamed like any upload.
    let mut png = png_bytes(640, 480);
    png.extend((0..300_000u32).map(|i| (i % 251) as u8));
    let path = format!("/v1/files?room={room}&name=pic.png");
    let addr = server.addr;
    let (pem2, auth2, png2) = (pem.clone(), auth.clone(), png.clone());
    let uploaded = tokio::task::spawn_blocking(move || {
        https_bytes(addr, &pem2, "POST", &path, &png2, &[("authorization", &auth2)])
    })
    .await
    .unwrap();
    assert_eq!(uploaded.status, 201, "{:?}", String::from_utf8_lossy(&uploaded.body));
    let file = uploaded.json();
    assert_eq!(file["content_type"], "image/png");
    assert_eq!(file["width"], 640);
    let file_id = file["file_id"].as_str().unwrap().to_owned();
    let downloaded = tokio::task::spawn_blocking(move || {
        https_bytes(addr, &pem, "GET", &format!("/v1/files/{file_id}"), b"", &[("authorization", &auth)])
    })
    .await
    .unwrap();
    assert_eq!(downloaded.status, 200);
    assert_eq!(downloaded.body, png, "the same bytes come back");
    alice.close();
}

/// Reads until the server closes the socket; panics if it stays open past `within`.
fn closed_within(stream: &mut TcpStream, within: Duration) {
    stream.set_read_timeout(Some(within)).unwrap();
    let started = Instant::now();
    let mut sink = [0u8; 4096];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return,
            Ok(_) => continue, // an alert, then the close
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("the socket was not closed within {within:?} ({e}, {:?})", started.elapsed()),
        }
    }
}

#[test]
fn clients_that_do_not_speak_tls_or_stall_the_handshake_are_dropped() {
    // A short deadline so the stalled client is cut off quickly.
    let server = Server::start(&["--shards", "2", "--http-tls", "--handshake-timeout-secs", "2"]);
    assert!(server.tls);
    let pem = server.dev_cert_pem();

    // One opens a connection and sends half a TLS record header, then nothing.
    let mut stalled = TcpStream::connect(server.addr).unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01]).unwrap();

    // Another speaks plain HTTP to the TLS port: refused at once.
    let mut plain = TcpStream::connect(server.addr).unwrap();
    plain.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    closed_within(&mut plain, WAIT);
    // And one sends binary garbage.
    let mut garbage = TcpStream::connect(server.addr).unwrap();
    garbage.write_all(&[0xff; 300]).unwrap();
    closed_within(&mut garbage, WAIT);

    // Meanwhile the server serves TLS clients as usual.
    let health = https_bytes(server.addr, &pem, "GET", "/healthz", b"", &[]);
    assert_eq!(health.status, 200);

    // The stalled handshake runs into the request-head deadline (--handshake-timeout-secs).
    closed_within(&mut stalled, WAIT);
    let metrics = https_bytes(server.addr, &pem, "GET", "/metrics", b"", &[]);
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    let failures: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("palaver_tls_handshake_failures_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!(failures >= 3, "{failures} failed handshakes counted");
    let health = https_bytes(server.addr, &pem, "GET", "/healthz", b"", &[]);
    assert_eq!(health.status, 200, "still healthy");
}
