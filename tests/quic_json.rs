//! QUIC for clients in any language: ALPN `palaver/1+json` carries JSON frames behind the
//! same `u32` little-endian length as rkyv ones. The worked hex examples of
//! docs/PROTOCOL.md §7.3 (two stream frames, a datagram) are checked byte for byte
//! against the codecs and the stream frames sent to the server as written; a JSON frame on the rkyv ALPN is told what is wrong; an outside
//! Python client (`aioquic`, from the document alone) chats over QUIC.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::process::Command;
use std::sync::Arc;

use palaver_e2e::{PYTHON, Server, WAIT, outside_tool, register};
use palaver_protocol::{ClientFrame, Codec, Op, RoomId};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

/// An `auth` frame (`id` 1, token `x`) in JSON, behind its length: §7.3's first example.
const JSON_AUTH_HEX: &str = "20 00 00 00 7b 22 69 64 22 3a 31 2c 22 6f 70 22 3a 22 61 75 74 68 22 2c 22 74 6f 6b 65 6e 22 3a 22 78 22 7d";
/// The same frame in rkyv, behind its length: §7.3's second example.
const RKYV_AUTH_HEX: &str = "48 00 00 00 01 00 00 00 00 00 00 00 00 78 ff ff ff ff ff ff ff 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00";

/// A `typing.start` in room `r_general` as a JSON datagram (no length prefix): §7.3's
/// third example.
const JSON_TYPING_DATAGRAM_HEX: &str = "7b 22 69 64 22 3a 30 2c 22 6f 70 22 3a 22 74 79 70 69 6e 67 2e 73 74 61 72 74 22 2c 22 72 6f 6f 6d 22 3a 22 72 5f 67 65 6e 65 72 61 6c 22 7d";

fn bytes(hex: &str) -> Vec<u8> {
    hex.split_whitespace().map(|b| u8::from_str_radix(b, 16).unwrap()).collect()
}

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(payload.len()).unwrap().to_le_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

struct Raw {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    _connection: quinn::Connection,
    _endpoint: quinn::Endpoint,
}

async fn connect(server: &Server, alpn: &[u8]) -> Raw {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(server.dev_cert_pem().as_bytes()).unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let endpoint = quinn::Endpoint::client(([127, 0, 0, 1], 0).into()).unwrap();
    let connection = endpoint
        .connect_with(quinn::ClientConfig::new(Arc::new(crypto)), server.quic_addr, "localhost")
        .unwrap()
        .await
        .unwrap();
    let (send, recv) = connection.open_bi().await.unwrap();
    Raw { send, recv, _connection: connection, _endpoint: endpoint }
}

impl Raw {
    async fn write(&mut self, wire: &[u8]) {
        self.send.write_all(wire).await.unwrap();
    }

    /// The next frame's payload.
    async fn read(&mut self) -> Vec<u8> {
        let mut prefix = [0u8; 4];
        tokio::time::timeout(WAIT, self.recv.read_exact(&mut prefix)).await.unwrap().unwrap();
        let mut payload = vec![0u8; u32::from_le_bytes(prefix) as usize];
        tokio::time::timeout(WAIT, self.recv.read_exact(&mut payload)).await.unwrap().unwrap();
        payload
    }

    async fn read_json(&mut self) -> serde_json::Value {
        serde_json::from_slice(&self.read().await).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_bytes_are_the_codecs_and_the_server_answers_them() {
    let protocol =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md")).unwrap();
    let frame = ClientFrame { id: 1, op: Op::Auth { token: "x".into() } };
    for (hex, codec) in [(JSON_AUTH_HEX, Codec::Json), (RKYV_AUTH_HEX, Codec::Rkyv)] {
        assert!(protocol.contains(hex), "docs/PROTOCOL.md §7.3 shows {hex}");
        assert_eq!(bytes(hex), framed(&codec.encode_client(&frame).unwrap()), "{codec:?}");
    }
    let typing = ClientFrame { id: 0, op: Op::TypingStart { room: RoomId::parse("r_general").unwrap() } };
    assert!(protocol.contains(JSON_TYPING_DATAGRAM_HEX), "docs/PROTOCOL.md §7.3 shows the datagram");
    assert_eq!(bytes(JSON_TYPING_DATAGRAM_HEX), Codec::Json.encode_client(&typing).unwrap());
    let server = Server::start(&[]);
    // Sent exactly as documented: an `unauthorized` answer to request 1, in JSON.
    let mut json = connect(&server, b"palaver/1+json").await;
    json.write(&bytes(JSON_AUTH_HEX)).await;
    let reply = json.read_json().await;
    assert_eq!(
        (reply["re"].as_u64(), reply["err"]["code"].as_str()),
        (Some(1), Some("unauthorized")),
        "{reply}"
    );
    let mut rkyv = connect(&server, b"palaver/1").await;
    rkyv.write(&bytes(RKYV_AUTH_HEX)).await;
    let reply = Codec::Rkyv.decode_server(&rkyv.read().await).unwrap();
    assert!(format!("{reply:?}").contains("Unauthorized"), "{reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_over_quic_chats_and_json_on_the_rkyv_alpn_is_told_what_is_wrong() {
    let server = Server::start(&[]);
    let alice = register(server.addr, "alice");
    let mut client = connect(&server, b"palaver/1+json").await;
    let auth = serde_json::json!({"id": 1, "op": "auth", "token": alice.access_token});
    client.write(&framed(auth.to_string().as_bytes())).await;
    let authed = client.read_json().await;
    assert_eq!(authed["re"], 1);
    assert!(authed["ok"]["user_id"].as_str().unwrap().starts_with("u_"), "{authed}");
    let garbage = b"{\"id\": 2, \"op\": \"no.such.op\"}";
    client.write(&framed(garbage)).await;
    let refused = client.read_json().await;
    assert_eq!(
        (refused["re"].as_u64(), refused["err"]["code"].as_str()),
        (Some(2), Some("invalid")),
        "{refused}"
    );
    assert!(refused["err"]["message"].as_str().unwrap().contains("no.such.op"), "{refused}");

    // JSON where rkyv is expected: the error says which ALPN takes JSON.
    let mut rkyv = connect(&server, b"palaver/1").await;
    rkyv.write(&framed(auth.to_string().as_bytes())).await;
    let reply = Codec::Rkyv.decode_server(&rkyv.read().await).unwrap();
    let text = format!("{reply:?}");
    assert!(text.contains("Invalid") && text.contains("palaver/1+json"), "{text}");
}

#[test]
fn a_python_aioquic_client_chats_over_quic_in_json() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/quic_json_client.py");
    let python = outside_tool(PYTHON);
    let probe = Command::new(&python).args(["-c", "import aioquic"]).status();
    assert!(
        matches!(probe, Ok(s) if s.success()),
        "{} cannot import aioquic; install tests/python/requirements.txt: {}",
        python.display(),
        PYTHON.install
    );
    let server = Server::start(&[]);
    let output = Command::new(&python)
        .arg(script)
        .arg(server.addr.to_string())
        .arg(server.quic_addr.to_string())
        .arg(server.dev_cert_path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "python client failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("ALL CHECKS PASSED"), "{stdout}");
}
