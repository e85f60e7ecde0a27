//! The SDK in a real browser: the crate is compiled to WebAssembly, bound with
//! wasm-bindgen, loaded by the example page (`sdk/examples/web/`) in headless Chromium
//! (driven by `tests/browser/drive.mjs` through playwright-core), and chats with a native
//! SDK client through the real server — also after the server is killed and restarted,
//! which the page survives by reconnecting and re-joining on its own.
//!
//! Needs Chromium, Node.js, the wasm-bindgen CLI (the version of the `wasm-bindgen`
//! crate), the wasm32 target and `npm ci` in `tests/browser`: `./x test` installs them
//! and passes their paths in `PALAVER_CHROMIUM`, `PALAVER_NODE` and
//! `PALAVER_WASM_BINDGEN`. Run directly without them, the test fails saying what to install.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests: failing loudly is the point")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use palaver_e2e::{CHROMIUM, NODE, Server, WAIT, WASM_BINDGEN, outside_tool, register};
use palaver_protocol::{Codec, RoomKind};
use palaver_sdk::core::ClientEvent;
use palaver_sdk::{Client, ClientOptions, Credentials};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The `target` directory this test was built in.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_path_buf()
}

/// The tools this test needs; panics, saying how to install them, when one is missing.
fn tools() -> (PathBuf, PathBuf, PathBuf) {
    let chromium = outside_tool(CHROMIUM);
    let node = outside_tool(NODE);
    let bindgen = outside_tool(WASM_BINDGEN);
    assert!(
        workspace_root().join("tests/browser/node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: ./x test, or cd tests/browser && npm ci"
    );
    (chromium, node, bindgen)
}

/// Builds the SDK for wasm32 with the `wasm` feature and binds it for the web; returns
/// the directory holding the page, its script and `pkg/`.
fn build_site(bindgen: &Path) -> tempfile::TempDir {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // Its own target directory: the one running this test is locked by `cargo test`.
    let wasm_target = target_dir().join("sdk-browser-wasm");
    let status = Command::new(cargo)
        .current_dir(workspace_root())
        .args(["build", "-p", "palaver-sdk", "--lib", "--target", "wasm32-unknown-unknown"])
        .args(["--no-default-features", "--features", "wasm"])
        .env("CARGO_TARGET_DIR", &wasm_target)
        .status()
        .unwrap();
    assert!(status.success(), "wasm build failed");
    let site = tempfile::tempdir().unwrap();
    let wasm = wasm_target.join("wasm32-unknown-unknown/debug/palaver_sdk.wasm");
    let status = Command::new(bindgen)
        .args(["--target", "web", "--out-dir"])
        .arg(site.path().join("pkg"))
        .arg(&wasm)
        .status()
        .unwrap();
    assert!(status.success(), "wasm-bindgen failed (is the CLI the same version as the crate?)");
    for file in ["index.html", "app.js"] {
        std::fs::copy(workspace_root().join("sdk/examples/web").join(file), site.path().join(file)).unwrap();
    }
    site
}

/// Serves a directory over HTTP on loopback (GET only, one request per connection).
fn serve(root: PathBuf) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let root = root.clone();
            std::thread::spawn(move || serve_one(stream, &root));
        }
    });
    addr
}

fn serve_one(mut stream: TcpStream, root: &Path) {
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
    let path = head.split_whitespace().nth(1).unwrap_or("/").split('?').next().unwrap_or("/").to_owned();
    let path = if path == "/" { "/index.html".to_owned() } else { path };
    let file = root.join(path.trim_start_matches('/'));
    let (status, body, kind) = match (path.contains(".."), std::fs::read(&file)) {
        (false, Ok(body)) => {
            let kind = match file.extension().and_then(|e| e.to_str()) {
                Some("html") => "text/html; charset=utf-8",
                Some("js") => "text/javascript",
                Some("wasm") => "application/wasm",
                _ => "application/octet-stream",
            };
            ("200 OK", body, kind)
        }
        _ => ("404 Not Found", b"not found".to_vec(), "text/plain"),
    };
    let header = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(header.as_bytes());
    let _ = stream.write_all(&body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_from_a_native_client_appears_in_the_browser_and_back_across_a_restart() {
    let (chromium, node, bindgen) = tools();
    let site = tokio::task::spawn_blocking(move || build_site(&bindgen)).await.unwrap();
    let web = serve(site.path().to_path_buf());

    let mut server = Server::start(&[]);
    let url = server.url("");
    let alice = Client::connect_with(
        &url,
        Credentials::register("alice", "password-123"),
        ClientOptions::with_codec(Codec::Rkyv),
    )
    .await
    .unwrap();
    let mut alice_events = alice.events();
    let room = alice.create_room("browser", RoomKind::Public).await.unwrap().room_id;
    alice.join(&room).await.unwrap();
    // The page gets its token from the test (the server sends no CORS headers, so the
    // page cannot call the auth routes from another origin).
    let bob = register(server.addr, "bob");
    let page = format!("http://{web}/index.html?server={url}&token={}&room={room}", bob.access_token);

    let screenshot = site.path().join("page.png");
    let mut driver = Command::new(node)
        .current_dir(workspace_root().join("tests/browser"))
        .arg("drive.mjs")
        .args([page.as_str(), chromium.to_str().unwrap(), "hello from native 👋", "hello from the browser"])
        .arg("after the restart")
        .arg(&screenshot)
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
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the browser did not report {what}"))
    };

    assert_eq!(next_line("JOINED"), "JOINED");
    alice.send(&room, "hello from native 👋").await.unwrap();
    let from_browser = tokio::time::timeout(WAIT * 2, async {
        loop {
            if let Some(ClientEvent::Message(m)) = alice_events.next().await
                && m.text == "hello from the browser"
            {
                return m;
            }
        }
    })
    .await
    .expect("the browser's message reached the native client");
    assert_eq!(from_browser.sender.as_str(), bob.user_id);
    assert_eq!(from_browser.seq, 2);
    assert_eq!(next_line("DONE"), "DONE");

    server.kill9();
    server.restart();
    // Waits for the native client's own reconnect, then is stored once.
    assert_eq!(alice.send(&room, "after the restart").await.unwrap().seq, 3);
    assert_eq!(next_line("RESUMED"), "RESUMED");
    assert!(driver.wait().unwrap().success());
    assert!(screenshot.is_file());
    if let Some(keep) = std::env::var_os("PALAVER_KEEP_SCREENSHOT") {
        std::fs::copy(&screenshot, keep).unwrap();
    }
}
