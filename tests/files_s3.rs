//! Shared files on S3: the server stores uploads in a real S3-compatible server and
//! serves them back.
//!
//! What this proves, against moto in server mode (`python3 -m moto.server`) on loopback:
//!
//! - `--files-url s3://BUCKET/PREFIX` with `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, credentials
//!   and region from the environment (docs/OPERATIONS.md) opens the bucket;
//! - an upload is streamed into the bucket under the prefix (the object is listed by the
//!   S3 API itself, byte for byte), nothing lands in `DATA_DIR/files`, and a member
//!   downloads the same bytes, also after a server restart;
//! - an oversize upload is refused with 413 `too_large` and leaves no object behind.
//!
//! S3 is in the default build, so this is the same `palaver` binary as every other test.
//! Needs Python with `moto[server]`; `./x test` installs it into a venv under `target/`.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use palaver_e2e::{
    Client, PYTHON, Server, http_bytes, outside_tool, palaver_bin, png_bytes, register, upload,
};
use palaver_protocol::{Codec, Op, RoomKind, UserId};

const BUCKET: &str = "palaver-files";

/// moto's S3 server on a free loopback port, stopped on drop.
struct Moto {
    child: Child,
    addr: SocketAddr,
}

impl Moto {
    fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let python = outside_tool(PYTHON);
        let mut child = Command::new(&python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {}: {e}; install it: {}", python.display(), PYTHON.install)
            });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect(addr).is_ok() {
                return Moto { child, addr };
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("moto exited ({status}); install it: {}", PYTHON.install);
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
        Server::start_with(&palaver_bin(), &["--files-url", &files_url, "--max-file-bytes", "200000"], &env);
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
