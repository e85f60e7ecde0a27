//! The JavaScript package `@palaver/client` (`sdk/js`) as a product team gets it: built
//! from the Rust SDK (wasm-bindgen, wasm-opt, tsc) within its size budget, packed with
//! `npm pack`, installed into a fresh project, type-checked there against a consumer's
//! code (and the TypeScript examples of docs/SDK.md and its README), and loaded by a page of that project in headless Chromium (driven by
//! `tests/browser/package_chat.mjs` through playwright-core). The page is served from
//! another origin than the server (`--cors-origins`), with a small "backend" beside it
//! that mints access tokens with the server's secret. Two tabs chat — one renewing its
//! tokens from the backend, one logged in with a password and refreshing — share an
//! image, and live through a `kill -9` + restart after their (4-second) tokens expired
//! (with a third tab given its first token and renewing through `onTokenExpired`); a
//! fourth tab whose backend keeps failing ends `unauthorized` after bounded retries.
//! Then one tab reports a message (the owner's tab hears of it live, lists and resolves
//! it), exports its account and logs out.
//!
//! Needs Chromium, Node.js with npm, the wasm-bindgen CLI (the version of the
//! `wasm-bindgen` crate), the wasm32 target and `npm ci` in `sdk/js` and `tests/browser`:
//! `./x test` installs them and passes their paths in `PALAVER_CHROMIUM`, `PALAVER_NODE`,
//! `PALAVER_NPM` and `PALAVER_WASM_BINDGEN`. Run directly without them, the tests fail
//! saying what to install.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests: failing loudly is the point")]

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::Duration;

use base64::Engine as _;
use palaver_e2e::{
    CHROMIUM, Client, NODE, NPM, Server, WAIT, WASM_BINDGEN, mint_access_token, outside_tool, register,
    static_file, write_http_answer,
};
use palaver_protocol::{Codec, MessageKind, RoomKind};

/// The package's budget for what a page downloads, gzipped (`sdk/js/scripts/build.mjs`).
const BUDGET_BYTES: u64 = 285 * 1024;
/// A real 2 × 2 PNG, which the page decodes and shows.
const PNG_2X2: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAYAAABytg0kAAAAEUlEQVR4nGP4z8AAQv8ZYAwAQ84H+VjtZqAAAAAASUVORK5CYII=";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn package_dir() -> PathBuf {
    workspace_root().join("sdk/js")
}

/// The `target` directory this test was built in.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_path_buf()
}

struct Tools {
    chromium: PathBuf,
    node: PathBuf,
    npm: PathBuf,
    wasm_bindgen: PathBuf,
}

/// The tools these tests need; panics, saying how to install them, when one is missing
/// (`./x test` provides them all).
fn tools() -> Tools {
    let tools = Tools {
        chromium: outside_tool(CHROMIUM),
        node: outside_tool(NODE),
        npm: outside_tool(NPM),
        wasm_bindgen: outside_tool(WASM_BINDGEN),
    };
    for tool in ["wasm-opt", "tsc"] {
        assert!(
            package_dir().join("node_modules/.bin").join(tool).exists(),
            "{tool} is not installed: ./x test, or cd sdk/js && npm ci"
        );
    }
    assert!(
        workspace_root().join("tests/browser/node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: ./x test, or cd tests/browser && npm ci"
    );
    tools
}

/// Builds the package once for all tests of this file (`npm run build`: cargo,
/// wasm-bindgen, wasm-opt, tsc, the size check); returns the gzipped size it printed.
fn build(tools: &Tools) -> u64 {
    static BUILT: OnceLock<Mutex<Option<u64>>> = OnceLock::new();
    let mut built = BUILT.get_or_init(Mutex::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(size) = *built {
        return size;
    }
    let output = Command::new(&tools.node)
        .current_dir(package_dir())
        .arg("scripts/build.mjs")
        // Its own target directory: the one running this test is locked by `cargo test`.
        .env("PALAVER_WASM_TARGET_DIR", target_dir().join("js-wasm"))
        .env("PALAVER_WASM_BINDGEN", &tools.wasm_bindgen)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    assert!(output.status.success(), "npm run build failed");
    let size = stdout
        .lines()
        .find_map(|l| l.strip_prefix("@palaver/client: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("the build reports its size");
    *built = Some(size);
    size
}

/// `npm pack`s the package and installs the tarball into a fresh project (no registry:
/// the package has no dependencies); returns the project.
fn fresh_project(tools: &Tools) -> tempfile::TempDir {
    let packed = tempfile::tempdir().unwrap();
    let output = Command::new(&tools.npm)
        .current_dir(package_dir())
        .args(["pack", "--silent", "--pack-destination"])
        .arg(packed.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "npm pack: {}", String::from_utf8_lossy(&output.stderr));
    let tarball = packed.path().join(String::from_utf8_lossy(&output.stdout).trim());
    let project = tempfile::tempdir().unwrap();
    std::fs::write(project.path().join("package.json"), r#"{"name":"fresh","private":true,"type":"module"}"#)
        .unwrap();
    let status = Command::new(&tools.npm)
        .current_dir(project.path())
        .args(["install", "--offline", "--no-audit", "--no-fund"])
        .arg(&tarball)
        .status()
        .unwrap();
    assert!(status.success(), "npm install of the packed tarball failed");
    project
}

#[test]
fn the_package_builds_within_its_size_budget() {
    let tools = tools();
    let size = build(&tools);
    assert!(size <= BUDGET_BYTES, "{size} bytes gzipped, budget {BUDGET_BYTES}");
    let wasm = package_dir().join("dist/wasm/palaver_bg.wasm");
    assert!(std::fs::metadata(wasm).unwrap().len() > 100_000, "a real module");
}

/// A consumer's TypeScript: the typed ops, answers and events, and a wrong op refused.
const CONSUMER_TS: &str = r#"
import { PalaverClient, PalaverError, type ClientEvent, type Message, type Replies, type Request } from "@palaver/client";

export async function demo(): Promise<number> {
  const client = await PalaverClient.connect({ url: "http://127.0.0.1:8080", getToken: async () => "token" });
  const { room } = await client.createRoom("general");
  await client.join(room.room_id, { since: 0 });
  const sent: Replies["send"] = await client.send(room.room_id, "hello");
  const details = await client.request({ op: "room.get", room: room.room_id });
  const size: number = details.member_count;
  client.on("message", (event) => {
    const message: Message = event.message;
    client.markRead(message.room, message.seq);
  });
  client.on("*", (event: ClientEvent) => {
    if (event.type === "closed" && event.error?.code === "unauthorized") console.log("signed out");
  });
  const history = await client.history(room.room_id, { limit: 20 });
  const react: Request<"react"> = { op: "react", room: room.room_id, seq: sent.seq, emoji: "👍" };
  const reaction: Replies["react"] = await client.request(react);
  const file = await client.sendFile(room.room_id, new Blob(["hi"]), { name: "hi.txt" });
  try {
    await client.request({ op: "user.search", prefix: "a" });
  } catch (error) {
    if (error instanceof PalaverError && error.code === "rate_limited") return -1;
  }
  // @ts-expect-error: a request names one of the protocol's ops
  await client.request({ op: "no.such.op" });
  // @ts-expect-error: and carries its fields
  await client.request({ op: "room.get" });
  return size + reaction.count + (history.messages[0]?.seq ?? 0) + file.file.size;
}
"#;

#[test]
fn npm_pack_installs_into_a_fresh_project_and_type_checks() {
    let tools = tools();
    build(&tools);
    let project = fresh_project(&tools);
    let installed = project.path().join("node_modules/@palaver/client");
    for file in [
        "package.json",
        "dist/index.js",
        "dist/index.d.ts",
        "dist/protocol.d.ts",
        "dist/wasm/palaver_bg.wasm",
    ] {
        assert!(installed.join(file).is_file(), "{file} is in the package");
    }
    std::fs::write(project.path().join("main.ts"), CONSUMER_TS).unwrap();
    // The TypeScript of the docs is a consumer too.
    let mut files = vec!["main.ts".to_owned()];
    for doc in ["docs/SDK.md", "sdk/js/README.md"] {
        let text = std::fs::read_to_string(workspace_root().join(doc)).unwrap();
        for (i, block) in typescript_blocks(&text).into_iter().enumerate() {
            let name = format!("{}_{i}.ts", doc.replace(['/', '.'], "_"));
            std::fs::write(project.path().join(&name), block).unwrap();
            files.push(name);
        }
    }
    assert!(files.len() >= 3, "the docs have TypeScript examples");
    let output = Command::new(package_dir().join("node_modules/.bin/tsc"))
        .current_dir(project.path())
        .args(["--noEmit", "--strict", "--target", "es2022", "--module", "es2022"])
        .args(["--moduleResolution", "bundler", "--lib", "es2022,dom"])
        .args(&files)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the consumer does not type-check:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

/// The fenced ```` ```ts ```` blocks of a Markdown file.
fn typescript_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match &mut current {
            None if line.trim_end() == "```ts" => current = Some(String::new()),
            Some(_) if line.trim_end() == "```" => blocks.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// Serves the fresh project over HTTP on loopback (GET only, one request per connection),
/// and, as its backend, `GET /token?user=ID`: a 4-second access token for that account,
/// minted with the server's secret.
fn serve(listener: TcpListener, root: PathBuf) {
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let root = root.clone();
            std::thread::spawn(move || serve_one(stream, &root));
        }
    });
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
    let target = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let (status, body, kind) = if path == "/token" {
        let user = query.strip_prefix("user=").unwrap_or_default().to_owned();
        ("200 OK", mint_access_token(&user, 4).into_bytes(), "text/plain")
    } else {
        let path = if path == "/" { "/index.html" } else { path };
        let file = root.join(path.trim_start_matches('/'));
        static_file(&file)
    };
    write_http_answer(&mut stream, status, kind, &body);
}

#[test]
fn two_tabs_chat_share_an_image_and_live_through_a_restart_after_their_tokens_expired() {
    let tools = tools();
    build(&tools);
    let project = fresh_project(&tools);
    for file in ["index.html", "page.js"] {
        let from = workspace_root().join("tests/browser/package-page").join(file);
        std::fs::copy(from, project.path().join(file)).unwrap();
    }
    let png = project.path().join("dot.png");
    std::fs::write(&png, base64::engine::general_purpose::STANDARD.decode(PNG_2X2).unwrap()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let web: SocketAddr = listener.local_addr().unwrap();
    serve(listener, project.path().to_path_buf());

    // The page's origin is another than the server's: CORS and the WebSocket Origin check.
    let origin = format!("http://{web}");
    let mut server = Server::start(&["--cors-origins", &origin, "--access-token-ttl-secs", "4"]);
    let alice = register(server.addr, "alice");
    register(server.addr, "bob");
    let mut owner = Client::login(server.addr, Codec::Json, &alice);
    let room = owner.create_room("tabs", RoomKind::Public);
    owner.close();
    let common = format!("http://{web}/index.html?server={}&room={room}", server.url(""));
    let tab_a = format!("{common}&mode=token&user={}", alice.user_id);
    let tab_b = format!("{common}&mode=password&username=bob&password=password-123");
    let failing = format!("{common}&mode=failing&user={}", alice.user_id);
    let renewing = format!("{common}&mode=renewing&user={}", alice.user_id);
    let screenshot = project.path().join("tabs.png");

    let mut driver = Command::new(&tools.node)
        .current_dir(workspace_root().join("tests/browser"))
        .arg("package_chat.mjs")
        .args([tools.chromium.to_str().unwrap(), &tab_a, &tab_b, &failing, &renewing])
        .arg(&png)
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
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("the browser did not report {what}"))
    };

    assert_eq!(next_line("CHATTED"), "CHATTED");
    server.kill9();
    // Past the tokens' 4 s and the server's 5 s leeway: every token the tabs hold is dead.
    std::thread::sleep(Duration::from_secs(10));
    server.restart();
    assert_eq!(next_line("RESUMED"), "RESUMED");
    assert_eq!(next_line("ACCOUNT"), "ACCOUNT");
    assert!(driver.wait().unwrap().success());
    assert!(screenshot.is_file());
    if let Some(keep) = std::env::var_os("PALAVER_KEEP_SCREENSHOT") {
        std::fs::copy(&screenshot, keep).unwrap();
    }

    // Stored once each, in order: nothing lost or repeated across the restart.
    let mut reader = Client::login(server.addr, Codec::Json, &register(server.addr, "carol"));
    reader.join(&room, None);
    let mut history = reader.history(&room, None, Some(50));
    history.reverse();
    let texts: Vec<(&str, MessageKind)> = history.iter().map(|m| (m.text.as_str(), m.kind)).collect();
    assert_eq!(
        texts,
        [
            ("hello from tab A", MessageKind::Text),
            ("hello from tab B", MessageKind::Text),
            ("a picture", MessageKind::Image),
            ("after the restart from A", MessageKind::Text),
            ("after the restart from B", MessageKind::Text),
        ]
    );
    let image = history[2].file.as_ref().unwrap();
    assert_eq!((image.width, image.height), (Some(2), Some(2)));
}
