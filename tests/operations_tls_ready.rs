//! What an operator relies on while the server runs: `/readyz` beside `/healthz`, a
//! digest of a room's stored messages to compare replicas, and a renewed TLS certificate
//! taken up on SIGHUP, by both listeners, without a restart.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests: failing loudly is the point")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use palaver_e2e::{Server, http, https_bytes, tls_client_config, tls_connect};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

/// Whether a TLS handshake with the HTTP listener succeeds trusting only `pem`.
fn https_trusts(addr: SocketAddr, pem: &str) -> bool {
    let mut stream = tls_connect(addr, tls_client_config(pem));
    stream.conn.complete_io(&mut stream.sock).is_ok()
}

/// Whether a QUIC handshake succeeds trusting only `pem`.
fn quic_trusts(addr: SocketAddr, pem: &str) -> bool {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"palaver/1".to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
        let endpoint = quinn::Endpoint::client(([127, 0, 0, 1], 0).into()).unwrap();
        let connecting =
            endpoint.connect_with(quinn::ClientConfig::new(Arc::new(crypto)), addr, "localhost").unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(5), connecting).await;
        matches!(outcome, Ok(Ok(_)))
    })
}

#[test]
fn readyz_and_healthz_answer_separately() {
    let server = Server::start(&[]);
    let (status, body) = http(server.addr, "GET", "/readyz", None, &[]);
    assert_eq!((status, body.contains("ready")), (200, true), "{body}");
    let (status, _) = http(server.addr, "GET", "/healthz", None, &[]);
    assert_eq!(status, 200);
    let (status, _) = http(server.addr, "POST", "/readyz", Some(""), &[]);
    assert_eq!(status, 405);
}

#[test]
fn a_rooms_digest_changes_with_its_messages_and_refuses_bad_input() {
    let server = Server::start(&[]);
    let account = palaver_e2e::register(server.addr, "digester");
    let mut client = palaver_e2e::Client::connect(server.addr, palaver_protocol::Codec::Json);
    client.ok(palaver_protocol::Op::Auth { token: account.access_token.clone() });
    let room = client.create_room("digested", palaver_protocol::RoomKind::Public);
    let digest = |query: &str| {
        let (status, body) = http(server.addr, "GET", &format!("/v1/replica/digest?{query}"), None, &[]);
        (status, serde_json::from_str::<serde_json::Value>(&body).unwrap())
    };
    let (status, empty) = digest(&format!("room={room}"));
    assert_eq!(status, 200, "{empty}");
    for (i, text) in ["one", "two", "three"].iter().enumerate() {
        client.say(&room, &format!("cid-{i}"), text);
    }
    let (_, full) = digest(&format!("room={room}"));
    assert_ne!(full["sha256"], empty["sha256"]);
    assert_eq!(full["messages"].as_u64().unwrap(), empty["messages"].as_u64().unwrap() + 3, "{full}");
    // Paged: the same range gives the same digest; `next` says where to go on.
    let (_, first) = digest(&format!("room={room}&limit=2"));
    assert_eq!(first["messages"], 2);
    assert_eq!(first["next"].as_u64(), first["last_seq"].as_u64().map(|s| s + 1));
    assert_eq!(digest(&format!("room={room}&limit=2")).1["sha256"], first["sha256"]);
    for bad in ["", "room=nonsense", &format!("room={room}&from=x"), &format!("room={room}&limit=-1")] {
        let (status, body) = digest(bad);
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid", "{bad}: {body}");
    }
}

#[test]
fn sighup_reloads_the_certificate_for_new_connections() {
    let mut server = Server::start(&["--http-tls"]);
    let old = server.dev_cert_pem();
    // Another server's development certificate stands in for the renewed one.
    let mut other = Server::start(&["--http-tls"]);
    let new = other.dev_cert_pem();
    let new_key = std::fs::read(other.data_dir().join("tls/key.pem")).unwrap();
    other.kill9();
    assert_ne!(old, new);
    assert!(https_trusts(server.addr, &old) && !https_trusts(server.addr, &new));
    assert!(quic_trusts(server.quic_addr, &old));

    // A broken file is refused and the current certificate stays.
    let tls = server.data_dir().join("tls");
    std::fs::write(tls.join("cert.pem"), "not a certificate").unwrap();
    server.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    assert!(https_trusts(server.addr, &old), "a bad file replaced the certificate");

    std::fs::write(tls.join("key.pem"), &new_key).unwrap();
    std::fs::write(tls.join("cert.pem"), &new).unwrap();
    server.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !https_trusts(server.addr, &new) {
        assert!(Instant::now() < deadline, "the HTTP listener still serves the old certificate");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!https_trusts(server.addr, &old));
    assert!(quic_trusts(server.quic_addr, &new), "QUIC still serves the old certificate");
    assert!(!quic_trusts(server.quic_addr, &old));
    // The same process, still serving: requests over the new certificate work.
    assert_eq!(https_bytes(server.addr, &new, "GET", "/readyz", b"", &[]).status, 200);
    assert!(server.terminate().success());
}
