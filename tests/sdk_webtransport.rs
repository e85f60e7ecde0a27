//! The JavaScript package `@palaver/client` over WebTransport in headless Chromium,
//! against the real server: two pages chat over WebTransport (HTTP/3 on the QUIC port,
//! the development certificate accepted by the hash the server publishes), and a third
//! page, whose WebTransport points at a UDP port that never answers (as if UDP were
//! blocked), falls back to WebSocket after its timeout and chats with them. Then the
//! server is killed with SIGKILL and restarted: every page reconnects by itself, on the
//! transport it had, and resumes with nothing lost or repeated. The WebTransport route
//! and the refusals of wrong requests are checked too.
//!
//! Needs what tests/sdk_browser.rs needs (`./x test` installs it all).
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests: failing loudly is the point")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use palaver_e2e::{
    CHROMIUM, Client, NODE, Server, WAIT, WASM_BINDGEN, outside_tool, register, static_file,
    write_http_answer,
};
use palaver_protocol::{Codec, RoomKind};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::current_exe().unwrap().ancestors().nth(3).unwrap().to_path_buf()
}

/// Builds the package (`sdk/js/scripts/build.mjs`) into `sdk/js/dist`.
fn build_package(node: &Path, wasm_bindgen: &Path) {
    let package = workspace_root().join("sdk/js");
    assert!(
        package.join("node_modules/.bin/tsc").exists(),
        "tsc is not installed: ./x test, or cd sdk/js && npm ci"
    );
    let status = Command::new(node)
        .current_dir(&package)
        .arg("scripts/build.mjs")
        .env("PALAVER_WASM_TARGET_DIR", target_dir().join("js-wasm"))
        .env("PALAVER_WASM_BINDGEN", wasm_bindgen)
        .status()
        .unwrap();
    assert!(status.success(), "npm run build failed");
}

/// Serves the test page at `/` and the package at `/package/` (GET only, one request per
/// connection).
fn serve_pages(listener: TcpListener) {
    let page = workspace_root().join("tests/browser/webtransport-page");
    let package = workspace_root().join("sdk/js");
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let (page, package) = (page.clone(), package.clone());
            std::thread::spawn(move || serve_one(&mut stream, &page, &package));
        }
    });
}

fn serve_one(stream: &mut TcpStream, page: &Path, package: &Path) {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head);
    let target = head.split_whitespace().nth(1).unwrap_or("/");
    let path = target.split('?').next().unwrap_or("/");
    let file = match path.strip_prefix("/package/") {
        Some(rest) => package.join(rest),
        None if path == "/" => page.join("index.html"),
        None => page.join(path.trim_start_matches('/')),
    };
    let (status, body, kind) = static_file(&file);
    write_http_answer(stream, status, kind, &body);
}

fn get_json(server: &Server, path: &str) -> serde_json::Value {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\r\n", server.addr).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap()
}

#[test]
fn the_route_publishes_the_browser_certificate_hash_and_the_quic_port() {
    let server = Server::start(&[]);
    let route = get_json(&server, "/v1/webtransport/certificate-hashes");
    assert_eq!(route["port"], server.quic_addr.port());
    assert_eq!(route["path"], "/v1/webtransport");
    assert_eq!(route["development"], true);
    let hashes = route["certificate_hashes"].as_array().unwrap();
    assert_eq!(hashes.len(), 1);
    assert_eq!(hashes[0]["algorithm"], "sha-256");
    assert_eq!(hashes[0]["value"].as_str().unwrap().len(), 64);
    let not_after = hashes[0]["not_after_ms"].as_u64().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    assert!(not_after > now + 12 * 86_400_000 && not_after <= now + 14 * 86_400_000, "valid 13 days");
    // Native clients keep pinning the long-lived development certificate.
    assert!(server.dev_cert_pem().contains("BEGIN CERTIFICATE"));
}

#[test]
fn two_pages_chat_over_webtransport_and_one_falls_back_to_websocket() {
    let chromium = outside_tool(CHROMIUM);
    let node = outside_tool(NODE);
    build_package(&node, &outside_tool(WASM_BINDGEN));
    assert!(
        workspace_root().join("tests/browser/node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: ./x test, or cd tests/browser && npm ci"
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let web: SocketAddr = listener.local_addr().unwrap();
    serve_pages(listener);
    // A UDP port that reads nothing and answers nothing: WebTransport to it never opens.
    let black_hole = UdpSocket::bind("127.0.0.1:0").unwrap();
    let black_hole_port = black_hole.local_addr().unwrap().port();

    let origin = format!("http://{web}");
    let mut server = Server::start(&["--cors-origins", &origin]);
    let alice = register(server.addr, "alice");
    register(server.addr, "bob");
    register(server.addr, "carol");
    let mut owner = Client::login(server.addr, Codec::Json, &alice);
    let room = owner.create_room("webtransport", RoomKind::Public);
    owner.close();
    let page = |user: &str, extra: &str| {
        format!(
            "http://{web}/?server={}&room={room}&username={user}&password=password-123{extra}",
            server.url("")
        )
    };
    let blocked = format!(
        "&webTransportUrl=https://127.0.0.1:{black_hole_port}/v1/webtransport%3Fcodec%3Djson&webTransportTimeoutMs=1500"
    );
    let mut driver = Command::new(&node)
        .current_dir(workspace_root().join("tests/browser"))
        .arg("webtransport_chat.mjs")
        .arg(&chromium)
        .args([page("alice", ""), page("bob", ""), page("carol", &blocked)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (lines_tx, lines_rx) = mpsc::channel();
    let stdout = driver.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let next_line = |what: &str| {
        lines_rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("the browser did not report {what}"))
    };
    assert_eq!(next_line("TRANSPORTS"), "TRANSPORTS webtransport webtransport websocket");
    assert_eq!(next_line("CHATTED"), "CHATTED");

    server.kill9();
    server.restart();
    writeln!(driver.stdin.as_mut().unwrap(), "RESTARTED").unwrap();
    assert_eq!(next_line("RESUMED"), "RESUMED webtransport webtransport websocket");
    assert!(driver.wait().unwrap().success());
    drop(black_hole);

    // Stored once each, in order.
    let mut reader = Client::login(server.addr, Codec::Json, &register(server.addr, "dave"));
    reader.join(&room, None);
    let mut history = reader.history(&room, None, Some(50));
    history.reverse();
    let texts: Vec<&str> = history.iter().map(|m| m.text.as_str()).collect();
    let mut expected: Vec<String> = "ABC".chars().map(|c| format!("hello from {c}")).collect();
    expected.extend("ABC".chars().map(|c| format!("after the restart from {c}")));
    let mut sorted_texts = texts.clone();
    sorted_texts[..3].sort_unstable();
    sorted_texts[3..].sort_unstable();
    assert_eq!(sorted_texts, expected);
}
