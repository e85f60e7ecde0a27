//! Online backup and restore, and the data directory's format version, with the real
//! binary: `palaver backup` while the server takes messages, `palaver restore` into a
//! new directory, and a server started there serves the same accounts, history and files.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests: failing loudly is the point")]

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use palaver_e2e::{Client, Server, http_bytes, palaver_bin, png_bytes, post_json, register, send_op, upload};
use palaver_protocol::{Codec, RoomKind};

fn palaver(args: &[&str]) -> std::process::Output {
    Command::new(palaver_bin()).args(args).output().unwrap()
}

#[test]
fn a_backup_taken_under_traffic_restores_accounts_history_and_files() {
    let server = Server::start(&["--shards", "2"]);
    let alice = register(server.addr, "alice");
    let mut client = Client::login(server.addr, Codec::Json, &alice);
    let room = client.create_room("backed-up", RoomKind::Public);
    client.join(&room, None);
    for i in 0..50 {
        client.ok(send_op(&room, &format!("before-{i}"), &format!("before the backup {i}")));
    }
    let image = png_bytes(64, 48);
    let uploaded = upload(server.addr, &alice.access_token, &room, "cat.png", &image);
    assert_eq!(uploaded.status, 201, "{:?}", uploaded.json());
    let file_id = uploaded.json()["file_id"].as_str().unwrap().to_owned();

    // Traffic goes on while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, addr, alice, room) = (stop.clone(), server.addr, alice.clone(), room.clone());
        std::thread::spawn(move || {
            let mut client = Client::login(addr, Codec::Json, &alice);
            let mut sent = 0;
            while !stop.load(Ordering::Relaxed) {
                client.ok(send_op(&room, &format!("during-{sent}"), "during the backup"));
                sent += 1;
            }
            sent
        })
    };
    let vapid_key = http_bytes(server.addr, "GET", "/v1/push/vapid-key", b"", &[]);
    assert_eq!(vapid_key.status, 200);
    let backup = tempfile::tempdir().unwrap();
    let out = backup.path().join("backup");
    let data = server.data_dir().to_str().unwrap().to_owned();
    let backed_up = palaver(&["backup", "--data-dir", &data, "--out", out.to_str().unwrap()]);
    stop.store(true, Ordering::Relaxed);
    let during = writer.join().unwrap();
    assert!(backed_up.status.success(), "{}", String::from_utf8_lossy(&backed_up.stderr));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["files"], 1, "{manifest}");
    assert!(manifest["store"]["records"].as_u64().unwrap() > 50, "{manifest}");
    assert!(manifest["secrets"].as_array().unwrap().contains(&"vapid-key".into()), "{manifest}");
    drop(server);

    let restored = tempfile::tempdir().unwrap();
    let restore = palaver(&[
        "restore",
        "--from",
        out.to_str().unwrap(),
        "--data-dir",
        restored.path().to_str().unwrap(),
    ]);
    assert!(restore.status.success(), "{}", String::from_utf8_lossy(&restore.stderr));
    assert_eq!(std::fs::read_to_string(restored.path().join("FORMAT")).unwrap().trim(), "1");

    let server = Server::start_in(restored, &["--shards", "2"]);
    let (status, body) = post_json(
        server.addr,
        "/v1/auth/login",
        &serde_json::json!({"username": "alice", "password": "password-123"}),
    );
    assert_eq!(status, 200, "{body}");
    let mut client = Client::login(server.addr, Codec::Json, &alice);
    client.join(&room, None);
    let mut history = Vec::new();
    let mut before = None;
    loop {
        let page = client.history(&room, before, Some(100));
        let Some(oldest) = page.iter().map(|m| m.seq).min() else { break };
        history.extend(page);
        if oldest == 1 {
            break;
        }
        before = Some(oldest);
    }
    history.sort_by_key(|m| m.seq);
    let seqs: Vec<u64> = history.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "gapless from 1");
    for i in 0..50 {
        let text = format!("before the backup {i}");
        assert!(history.iter().any(|m| m.text == text), "{text} is missing");
    }
    assert!(history.len() <= 50 + during, "more messages than were sent");
    let auth = format!("Bearer {}", alice.access_token);
    let download =
        http_bytes(server.addr, "GET", &format!("/v1/files/{file_id}"), b"", &[("authorization", &auth)]);
    assert_eq!(download.status, 200);
    assert!(download.body == image, "the file's bytes differ after the restore");
    // The same Web Push key: the browsers' subscriptions still accept its pushes.
    let restored_key = http_bytes(server.addr, "GET", "/v1/push/vapid-key", b"", &[]);
    assert_eq!(restored_key.body, vapid_key.body, "the VAPID key changed in the restore");
}

#[test]
fn backup_needs_a_running_server_and_restore_an_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let no_server =
        palaver(&["backup", "--data-dir", dir.path().to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(!no_server.status.success());
    assert!(
        String::from_utf8_lossy(&no_server.stderr).contains("no server runs on"),
        "{}",
        String::from_utf8_lossy(&no_server.stderr)
    );

    let server = Server::start(&[]);
    let data = server.data_dir().to_str().unwrap().to_owned();
    let first = palaver(&["backup", "--data-dir", &data, "--out", out.to_str().unwrap()]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let again = palaver(&["backup", "--data-dir", &data, "--out", out.to_str().unwrap()]);
    assert!(!again.status.success(), "a backup into a non-empty directory");
    let restore = palaver(&["restore", "--from", out.to_str().unwrap(), "--data-dir", &data]);
    assert!(!restore.status.success(), "a restore over a live data directory");
}

#[test]
fn an_older_data_directory_is_upgraded_and_a_newer_one_refused() {
    let mut server = Server::start(&[]);
    let alice = register(server.addr, "alice");
    server.terminate();
    let format = server.data_dir().join("FORMAT");
    assert_eq!(std::fs::read_to_string(&format).unwrap().trim(), "1");

    // Written before the format file existed: the same layout without it.
    std::fs::remove_file(&format).unwrap();
    server.restart();
    assert_eq!(std::fs::read_to_string(&format).unwrap().trim(), "1", "upgraded to format 1");
    Client::login(server.addr, Codec::Json, &alice);
    server.terminate();

    std::fs::write(&format, "2\n").unwrap();
    let data = server.data_dir().to_str().unwrap().to_owned();
    let refused = palaver(&["--data-dir", &data, "--http-addr", "127.0.0.1:0", "--quic-addr", "127.0.0.1:0"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("has format 2") && stderr.contains("newer palaver"), "{stderr}");
}
