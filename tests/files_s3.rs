//! Shared files on S3: the server built with its `s3` feature stores uploads in a real
//! S3-compatible server and serves them back.
//!
//! What this proves, against moto in server mode (`python3 -m moto.server`, installed by
//! `tests/python/requirements.txt`) on loopback:
//!
//! - `--files-url s3://BUCKET/PREFIX` with `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, credentials
//!   and region from the environment (docs/OPERATIONS.md) opens the bucket;
//! - an upload is streamed into the bucket under the prefix (the object is listed by the
//!   S3 API itself, byte for byte), nothing lands in `DATA_DIR/files`, and a member
//!   downloads the same bytes, also after a server restart;
//! - an oversize upload is refused with 413 `too_large` and leaves no object behind.
//!
//! The default build has no S3 client (the feature pulls an HTTP stack), so this test
//! builds `palaver` with `--features s3` itself, into its own target directory
//! (`<target>/s3`: a separate lock, so the nested cargo cannot wait on the `cargo test`
//! that runs it, and the normal `target/debug/palaver` is left alone). A new `<target>/s3`
//! is first seeded with a copy of the workspace's compiled dependencies, so the extra
//! build is object_store's S3 client and the server; later runs are incremental. It
//! fails, never skips, when moto is missing.
//!
//! Cost (2 cores, shared with other builds, 2026-11-26): first run 11 min wall, 6.2 CPU
//! minutes, nearly all of it the nested build (the S3 client turns on `futures-core`'s
//! default features, so everything above it, tokio and tantivy included, is compiled
//! once more); a rerun 4 s.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use palaver_e2e::{Client, Server, http_bytes, png_bytes, register, upload};
use palaver_protocol::{Codec, Op, RoomKind, UserId};

const BUCKET: &str = "palaver-files";

/// Builds the server with `--features s3` into `<target>/s3` and returns the binary.
fn s3_server_binary() -> PathBuf {
    // This test runs as <target>/<profile>/deps/files_s3-<hash>.
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let dir = target.join("s3");
    seed(&target.join("debug"), &dir.join("debug"));
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let started = Instant::now();
    let status = Command::new(cargo)
        .current_dir(workspace)
        // `--workspace` so that dependencies get the features of the workspace build the
        // seed came from (with `-p palaver-server` alone, tokio, futures, tantivy… would
        // resolve to fewer features and be compiled again); only the binary is built.
        .args(["build", "--locked", "--workspace", "--bin", "palaver", "--features", "palaver-server/s3"])
        .env("CARGO_TARGET_DIR", &dir)
        .status()
        .unwrap();
    assert!(status.success(), "cargo build --bin palaver --features palaver-server/s3 failed: {status}");
    eprintln!("palaver with feature s3 built in {:?}", started.elapsed());
    dir.join("debug").join("palaver")
}

/// Starts an empty `<target>/s3/debug` from the workspace's own debug build: the compiled
/// dependencies (same compiler, profile and, for all but object_store's S3 side, features)
/// are copied, so the S3 build compiles only what the feature adds and the server, not
/// the whole tree again. Cargo's fingerprints still decide: anything that does not match
/// is rebuilt. Test executables and the workspace's own crates are not copied.
fn seed(from: &Path, to: &Path) {
    if to.exists() || !from.join(".fingerprint").is_dir() {
        return;
    }
    let started = Instant::now();
    let partial = to.with_extension("seeding");
    let _ = std::fs::remove_dir_all(&partial);
    for sub in [".fingerprint", "build", "deps"] {
        copy_tree(&from.join(sub), &partial.join(sub), sub == "deps");
    }
    std::fs::rename(&partial, to).unwrap();
    eprintln!("seeded {} from {} in {:?}", to.display(), from.display(), started.elapsed());
}

fn copy_tree(from: &Path, to: &Path, libraries_only: bool) {
    std::fs::create_dir_all(to).unwrap();
    let Ok(entries) = std::fs::read_dir(from) else { return };
    for entry in entries {
        let entry = entry.unwrap();
        let (path, name) = (entry.path(), entry.file_name());
        let name = name.to_string_lossy();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            copy_tree(&path, &to.join(&*name), false);
        } else if kind.is_file() {
            let library = ["rlib", "rmeta", "so", "a", "d"].iter().any(|e| name.ends_with(&format!(".{e}")));
            let own = name.starts_with("palaver") || name.starts_with("libpalaver");
            if !libraries_only || (library && !own) {
                std::fs::copy(&path, to.join(&*name)).unwrap();
                let modified = entry.metadata().unwrap().modified().unwrap();
                std::fs::File::options()
                    .write(true)
                    .open(to.join(&*name))
                    .unwrap()
                    .set_modified(modified)
                    .unwrap();
            }
        }
    }
}

/// moto's S3 server on a free loopback port, stopped on drop.
struct Moto {
    child: Child,
    addr: SocketAddr,
}

impl Moto {
    fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 is needed to run moto (pip install -r tests/python/requirements.txt)");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect(addr).is_ok() {
                return Moto { child, addr };
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "moto exited ({status}): install it with pip install -r tests/python/requirements.txt"
                );
            }
            assert!(Instant::now() < deadline, "moto did not listen on {addr} within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The keys of the bucket's objects under `prefix`, by the S3 API (ListObjectsV2).
    fn keys(&self, prefix: &str) -> Vec<String> {
        let listing =
            http_bytes(self.addr, "GET", &format!("/{BUCKET}?list-type=2&prefix={prefix}"), b"", &[]);
        assert_eq!(listing.status, 200);
        let xml = String::from_utf8(listing.body).unwrap();
        xml.split("<Key>").skip(1).filter_map(|k| k.split_once("</Key>")).map(|(k, _)| k.to_owned()).collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deterministic bytes that are not trivially compressible.
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn shared_files_live_in_the_s3_bucket() {
    let bin = s3_server_binary();
    let moto = Moto::start();
    assert_eq!(
        http_bytes(moto.addr, "PUT", &format!("/{BUCKET}"), b"", &[]).status,
        200,
        "create the bucket"
    );

    let endpoint = format!("http://{}", moto.addr);
    let env = [
        ("AWS_ENDPOINT", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "palaver-test"),
        ("AWS_SECRET_ACCESS_KEY", "palaver-test-secret"),
        ("AWS_REGION", "us-east-1"),
    ];
    let files_url = format!("s3://{BUCKET}/uploads");
    let mut server =
        Server::start_with(&bin, &["--files-url", &files_url, "--max-file-bytes", "200000"], &env);
    let [alice, bob] = ["alice", "bob"].map(|n| register(server.addr, n));
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let room = a.create_room("photos", RoomKind::Private);
    a.ok(Op::RoomInvite { room: room.clone(), user: UserId::parse(&bob.user_id).unwrap() });
    Client::login(server.addr, Codec::Json, &bob).ok(Op::InviteAccept { room: room.clone() });

    // Upload: into the bucket, under the prefix, byte for byte.
    let mut image = png_bytes(640, 480);
    image.extend(noise(150_000));
    let answer = upload(server.addr, &alice.access_token, &room, "cat.png", &image);
    assert_eq!(answer.status, 201, "{:?}", answer.json());
    let file_id = answer.json()["file_id"].as_str().unwrap().to_owned();
    assert_eq!(answer.json()["content_type"], "image/png");
    let keys = moto.keys("uploads/");
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].starts_with("uploads/") && keys[0].contains(&file_id), "{keys:?}");
    let object = http_bytes(moto.addr, "GET", &format!("/{BUCKET}/{}", keys[0]), b"", &[]);
    assert_eq!(object.status, 200);
    assert!(object.body == image, "the object in the bucket differs from the upload");
    let local = server.data_dir().join("files");
    let local_files = std::fs::read_dir(&local).map(|d| d.count()).unwrap_or(0);
    assert_eq!(local_files, 0, "nothing is stored in {}", local.display());

    // Download by another member: the same bytes, from the bucket.
    let download = |server: &Server| {
        let auth = format!("Bearer {}", bob.access_token);
        http_bytes(server.addr, "GET", &format!("/v1/files/{file_id}"), b"", &[("authorization", &auth)])
    };
    let got = download(&server);
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), Some("image/png"));
    assert!(got.body == image, "downloaded bytes differ ({} vs {})", got.body.len(), image.len());

    // Too large: refused, and no object is left in the bucket.
    let too_big = upload(server.addr, &alice.access_token, &room, "big.bin", &noise(200_001));
    assert_eq!((too_big.status, too_big.json()["error"]["code"].as_str()), (413, Some("too_large")));
    assert_eq!(moto.keys("").len(), 1, "{:?}", moto.keys(""));

    // After a restart the file is still served from the bucket.
    server.terminate();
    server.restart();
    let got = download(&server);
    assert_eq!(got.status, 200);
    assert!(got.body == image);
}
