//! Storage faults seen from outside, with the real binary: a disk that fills up (a small
//! tmpfs mounted on the data directory), and a journal damaged while the server was down.
//! Sends get `unavailable`, nothing stored is damaged, the server recovers, and a
//! journal that lost acknowledged writes stops the server at start with a clear message.
//!
//! Mounting a tmpfs needs root (CAP_SYS_ADMIN): `./x test` runs these only as root and
//! otherwise names them as not run.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use palaver_e2e::{Client, Server, palaver_bin, post_json, register, send_op};
use palaver_protocol::{Codec, ErrorCode, RoomKind};

/// A small tmpfs mounted on a fresh temporary directory; unmounted on drop.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(size_mb: u64) -> (Tmpfs, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "mounting a tmpfs needs root (CAP_SYS_ADMIN)");
        (Tmpfs { path: dir.path().to_owned() }, dir)
    }

    fn free_bytes(&self) -> u64 {
        let out = Command::new("df").args(["-B1", "--output=avail"]).arg(&self.path).output().unwrap();
        String::from_utf8(out.stdout).unwrap().lines().nth(1).unwrap().trim().parse().unwrap()
    }

    /// Fills the file system until `leave` bytes are free (0: until writes fail).
    fn fill(&self, leave: u64) -> PathBuf {
        let ballast = self.path.join("ballast");
        let mut file = std::fs::File::create(&ballast).unwrap();
        let chunk = vec![0x5au8; 256 << 10];
        loop {
            let free = self.free_bytes();
            if free <= leave {
                break;
            }
            let n = (free - leave).min(chunk.len() as u64) as usize;
            if file.write_all(&chunk[..n]).and_then(|()| file.sync_all()).is_err() {
                break;
            }
        }
        ballast
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        let _ = std::fs::remove_dir(&self.path);
    }
}

fn texts(client: &mut Client, room: &palaver_protocol::RoomId) -> Vec<(u64, String)> {
    let mut page = client.history(room, None, Some(100));
    page.reverse();
    page.into_iter().map(|m| (m.seq, m.text)).collect()
}

#[test]
fn a_full_disk_refuses_sends_with_unavailable_and_writes_resume_when_space_returns() {
    let (tmpfs, data) = Tmpfs::mount(48);
    let mut server = Server::start_in(data, &["--disk-reserve-mb", "8"]);
    let alice = register(server.addr, "alice");
    let mut c = Client::login(server.addr, Codec::Json, &alice);
    let room = c.create_room("full", RoomKind::Public);
    c.join(&room, None);
    for i in 1..=10 {
        assert_eq!(c.say(&room, &format!("c{i}"), &format!("before {i}")).0, i);
    }

    // Leave less than the reserve free: writes are refused, reads still work.
    let ballast = tmpfs.fill(4 << 20);
    std::thread::sleep(Duration::from_millis(300));
    let why = c.err(send_op(&room, "c11", "while full"), ErrorCode::Unavailable);
    assert!(!why.is_empty());
    c.err(send_op(&room, "c12", "still full"), ErrorCode::Unavailable);
    let (status, body) = post_json(
        server.addr,
        "/v1/auth/register",
        &serde_json::json!({"username": "bob", "password": "password-123"}),
    );
    assert_eq!(status, 503, "account writes are refused too: {body}");
    assert_eq!(body["error"]["code"], "unavailable");
    assert_eq!(texts(&mut c, &room).len(), 10, "history is served while the disk is full");

    // Space returns: the same cid is stored once, seqs continue without a gap.
    std::fs::remove_file(ballast).unwrap();
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(c.say(&room, "c11", "while full"), (11, false));
    assert_eq!(c.say(&room, "c11", "while full"), (11, true));
    assert_eq!(c.say(&room, "c12", "after"), (12, false));
    let bob = register(server.addr, "bob");
    let mut b = Client::login(server.addr, Codec::Rkyv, &bob);
    b.join(&room, None);
    assert_eq!(c.say(&room, "c13", "bob is here"), (13, false));
    assert_eq!(b.next_message().seq, 13, "live delivery to other members still works");

    // And everything survives a crash.
    server.kill9();
    server.restart();
    eprintln!("restarted on {}", server.addr);
    let mut c = Client::login(server.addr, Codec::Json, &alice);
    let stored = texts(&mut c, &room);
    assert_eq!(stored.iter().map(|(s, _)| *s).collect::<Vec<_>>(), (1..=13).collect::<Vec<_>>());
    assert_eq!(stored[10].1, "while full");
    drop(server);
    drop(tmpfs);
}

#[test]
fn a_disk_that_fills_past_the_reserve_poisons_writes_but_damages_nothing() {
    // No reserve: the journal write itself fails with ENOSPC. The store must refuse
    // every later write (it cannot vouch for them) and keep what was stored intact.
    let (tmpfs, data) = Tmpfs::mount(48);
    let mut server = Server::start_in(data, &["--disk-reserve-mb", "0", "--disable-search"]);
    let alice = register(server.addr, "alice");
    let mut c = Client::login(server.addr, Codec::Json, &alice);
    let room = c.create_room("full", RoomKind::Public);
    c.join(&room, None);
    for i in 1..=10 {
        c.say(&room, &format!("c{i}"), &format!("before {i}"));
    }
    let ballast = tmpfs.fill(0);
    // A big message fills whatever the journal's page had left.
    let big = "x".repeat(1_900);
    let mut refused = false;
    for i in 11..2_000 {
        let id = c.send_op(send_op(&room, &format!("c{i}"), &big));
        match c.reply(id) {
            palaver_protocol::ReplyBody::Ok(_) => {}
            palaver_protocol::ReplyBody::Err(e) => {
                assert_eq!(e.code, ErrorCode::Unavailable, "{}", e.message);
                refused = true;
                break;
            }
        }
    }
    assert!(refused, "a full disk must refuse a send");
    let (status, _) = palaver_e2e::http(server.addr, "GET", "/healthz", None, &[]);
    assert_eq!(status, 503, "health reports the refusal");
    let acked = texts(&mut c, &room);

    // Free space, restart: everything acknowledged is there, and writing works again.
    std::fs::remove_file(ballast).unwrap();
    server.kill9();
    server.restart();
    let mut c = Client::login(server.addr, Codec::Json, &alice);
    let stored = texts(&mut c, &room);
    assert_eq!(stored, acked, "nothing acknowledged was lost or damaged");
    c.join(&room, None);
    assert_eq!(c.say(&room, "after", "after").0, acked.len() as u64 + 1);
    drop(server);
    drop(tmpfs);
}

fn journal(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir.join("db"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jnl"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap()
}

#[test]
fn a_journal_that_lost_acknowledged_writes_stops_the_server_with_a_clear_message() {
    let mut server = Server::start(&[]);
    let alice = register(server.addr, "alice");
    let mut c = Client::login(server.addr, Codec::Json, &alice);
    let room = c.create_room("damaged", RoomKind::Public);
    c.join(&room, None);
    for i in 1..=50 {
        c.say(&room, &format!("c{i}"), &format!("acknowledged {i}"));
    }
    server.kill9();

    // Cut the journal inside its acknowledged batches (it is preallocated with zeros).
    let journal = journal(server.data_dir());
    let bytes = std::fs::read(&journal).unwrap();
    let used = bytes.iter().rposition(|b| *b != 0).unwrap() + 1;
    std::fs::OpenOptions::new().write(true).open(&journal).unwrap().set_len(used as u64 * 2 / 3).unwrap();

    let out = Command::new(palaver_bin())
        .args(["--http-addr", "127.0.0.1:0", "--quic-addr", "127.0.0.1:0", "--data-dir"])
        .arg(server.data_dir())
        .env("PALAVER_JWT_SECRET", "e2e-test-secret-e2e-test-secret")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the server must not start on a journal missing acknowledged writes");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("acknowledged writes are missing"), "a clear reason: {stderr}");
    assert!(stderr.contains("palaver-commit-watermark"), "and the way out: {stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"));
}
