//! Account deletion with the real binary: given the password, every record about the
//! user goes (profile, friendships, blocks, keys, sessions, rooms they own, memberships,
//! files) while their messages stay under their id; and after `palaver compact` the
//! removed bytes are nowhere in the data directory.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use palaver_e2e::{Client, Server, http, palaver_bin, png_bytes, post_json, register, upload};
use palaver_protocol::{Codec, ErrorCode, OkBody, OneTimeKey, Op, RoomKind, UserId};
use serde_json::{Value, json};

/// Strings only the deleted account's records hold.
const DISPLAY_NAME: &str = "Zelda Quartzwhistle";
const STATUS: &str = "tending the lighthouse lamps";
const IDENTITY_KEY: &str = "identity-key-of-zelda-XYZZY";

fn post_as(addr: SocketAddr, path: &str, token: &str, body: &str) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let (status, text) = http(
        addr,
        "POST",
        path,
        Some(body),
        &[("authorization", &auth), ("content-type", "application/json")],
    );
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Whether any file under `dir` holds `needle`.
fn on_disk(dir: &Path, needle: &str) -> bool {
    file_holding(dir, needle).is_some()
}

/// A file under `dir` that holds `needle`, if one does.
fn file_holding(dir: &Path, needle: &str) -> Option<std::path::PathBuf> {
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            {
                return Some(path);
            }
        }
    }
    None
}

#[test]
fn a_deleted_account_leaves_its_messages_and_nothing_else() {
    let mut server = Server::start(&[]);
    let addr = server.addr;
    let zelda = register(addr, "zelda");
    let bob = register(addr, "bob");
    let zelda_id = UserId::parse(&zelda.user_id).unwrap();
    let bob_id = UserId::parse(&bob.user_id).unwrap();

    let mut z = Client::login(addr, Codec::Json, &zelda);
    let mut b = Client::login(addr, Codec::Json, &bob);
    z.ok(Op::UserUpdate {
        display_name: Some(DISPLAY_NAME.into()),
        avatar: None,
        status_text: Some(STATUS.into()),
        share_read_receipts: None,
    });
    z.ok(Op::KeysUpload {
        device_id: "phone".into(),
        identity_key: IDENTITY_KEY.into(),
        signing_key: None,
        one_time_keys: vec![OneTimeKey { key_id: "k1".into(), key: "one-time-key-of-zelda".into() }],
    });
    z.ok(Op::FriendRequest { user: bob_id.clone() });
    b.ok(Op::FriendAccept { user: zelda_id.clone() });
    let owned = z.create_room("zelda's", RoomKind::Public);
    let bobs = b.create_room("bob's", RoomKind::Public);
    z.join(&bobs, None);
    let (kept_seq, _) = z.say(&bobs, "z1", "a message that stays");
    z.say(&owned, "z2", "in a room that goes");
    let uploaded = upload(addr, &zelda.access_token, &owned, "z.png", &png_bytes(3, 3));
    assert_eq!(uploaded.status, 201);
    let file_id = uploaded.json()["file_id"].as_str().unwrap().to_owned();
    assert!(on_disk(server.data_dir(), DISPLAY_NAME), "the check below would prove nothing");

    // Refusals first: a wrong password, a malformed body, no token.
    let path = "/v1/account/delete";
    let (status, body) = post_as(addr, path, &zelda.access_token, r#"{"password":"wrong-password"}"#);
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "{body}");
    let (status, _) = post_as(addr, path, &zelda.access_token, "{}");
    assert_eq!(status, 400);
    let (status, _) = post_json(addr, path, &json!({"password": "password-123"}));
    assert_eq!(status, 401);
    assert_eq!(http(addr, "GET", path, None, &[]).0, 405);
    z.ok(Op::Ping {});

    let (status, body) = post_as(addr, path, &zelda.access_token, r#"{"password":"password-123"}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"rooms_left": 1, "rooms_deleted": 1, "rooms_failed": 0, "files_deleted": 1}));
    assert_eq!(z.expect_close_with_reason(), Some((4001, "session ended: account deleted".to_owned())));

    // Gone: the account, its sessions, its room, its file, its friendship and keys.
    let mut fresh = Client::connect(addr, Codec::Json);
    fresh.err(Op::Auth { token: zelda.access_token.clone() }, ErrorCode::Unauthorized);
    let (status, _) =
        post_json(addr, "/v1/auth/login", &json!({"username": "zelda", "password": "password-123"}));
    assert_eq!(status, 401);
    let (status, _) = post_json(addr, "/v1/auth/refresh", &json!({"refresh_token": zelda.refresh_token}));
    assert_eq!(status, 401);
    b.err(Op::RoomGet { room: owned.clone() }, ErrorCode::NotFound);
    b.err(Op::UserGet { user: zelda_id.clone() }, ErrorCode::NotFound);
    match b.ok(Op::FriendList { limit: None, cursor: None }) {
        OkBody::Friends(list) => assert!(list.friends.is_empty(), "{list:?}"),
        other => panic!("{other:?}"),
    }
    b.err(Op::KeysList { user: zelda_id.clone() }, ErrorCode::NotFound);
    let auth = format!("Bearer {}", bob.access_token);
    let (status, _) = http(addr, "GET", &format!("/v1/files/{file_id}"), None, &[("authorization", &auth)]);
    assert_eq!(status, 404, "the file's record is gone");
    match b.ok(Op::RoomMembers { room: bobs.clone(), limit: None, cursor: None }) {
        OkBody::Members(page) => assert!(page.members.iter().all(|m| m.user != zelda_id), "she left"),
        other => panic!("{other:?}"),
    }
    // Her message stays, under her id.
    let kept = b.history(&bobs, None, None).into_iter().find(|m| m.seq == kept_seq).unwrap();
    assert_eq!((kept.sender, kept.text.as_str()), (zelda_id, "a message that stays"));

    // The file's bytes go too (deleted in the background).
    let bytes = server.data_dir().join("files").join(&file_id);
    let deadline = std::time::Instant::now() + palaver_e2e::WAIT;
    while bytes.exists() {
        assert!(std::time::Instant::now() < deadline, "the file's bytes stay");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // After compaction, the removed bytes are nowhere on disk.
    server.terminate();
    let output =
        Command::new(palaver_bin()).arg("compact").arg("--data-dir").arg(server.data_dir()).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for removed in [DISPLAY_NAME, STATUS, IDENTITY_KEY, "one-time-key-of-zelda"] {
        let holder = file_holding(server.data_dir(), removed);
        assert!(holder.is_none(), "{removed:?} is still on disk after compaction, in {holder:?}");
    }
    assert!(on_disk(server.data_dir(), "a message that stays"), "kept messages are kept");

    // The name is free again: a new account, with a new id.
    server.restart();
    let again = register(server.addr, "zelda");
    assert_ne!(again.user_id, zelda.user_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_deletes_an_account() {
    use palaver_sdk::{Client as SdkClient, Credentials};
    let server = Server::start(&[]);
    let url = server.url("");
    let client = SdkClient::connect(&url, Credentials::register("yorick", "password-123")).await.unwrap();
    let refused = client.delete_account("wrong-password").await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::Forbidden));
    client.ping().await.unwrap();
    client.delete_account("password-123").await.unwrap();
    assert!(client.ping().await.is_err(), "the client is closed");
    let login = SdkClient::login(&url, "yorick", "password-123").await.unwrap_err();
    assert_eq!(login.code(), Some(ErrorCode::Unauthorized));
}

#[test]
fn a_deletion_cut_short_by_a_crash_still_takes_the_account_out_of_its_rooms() {
    let crash = "--test-crash-after-account-deletion";
    let mut server = Server::start(&[crash]);
    let addr = server.addr;
    let zelda = register(addr, "zelda");
    let bob = register(addr, "bob");
    let mut z = Client::login(addr, Codec::Json, &zelda);
    let mut b = Client::login(addr, Codec::Json, &bob);
    let owned = z.create_room("zelda's", RoomKind::Public);
    let bobs = b.create_room("bob's", RoomKind::Public);
    z.join(&bobs, None);
    b.join(&owned, None);
    let zelda_id = UserId::parse(&zelda.user_id).unwrap();

    // The deletion is stored, then the process dies before any room is left.
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let body = r#"{"password":"password-123"}"#;
    let request = format!(
        "POST /v1/account/delete HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        zelda.access_token,
        body.len()
    );
    std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
    let status = server.wait_exit();
    assert!(!status.success(), "the server was to abort: {status:?}");
    drop((z, b, stream));

    // Restarted, it finds the departure listed and finishes it.
    server.drop_flag(crash);
    server.restart();
    let addr = server.addr;
    let (status, _) =
        post_json(addr, "/v1/auth/login", &json!({"username": "zelda", "password": "password-123"}));
    assert_eq!(status, 401, "the deletion itself was stored");
    let bob = post_json(addr, "/v1/auth/login", &json!({"username": "bob", "password": "password-123"})).1;
    let bob = palaver_e2e::Account {
        username: "bob".into(),
        user_id: bob["user_id"].as_str().unwrap().into(),
        access_token: bob["access_token"].as_str().unwrap().into(),
        refresh_token: bob["refresh_token"].as_str().unwrap().into(),
    };
    let mut b = Client::login(addr, Codec::Json, &bob);
    let deadline = std::time::Instant::now() + palaver_e2e::WAIT;
    loop {
        let still_member = match b.ok(Op::RoomMembers { room: bobs.clone(), limit: None, cursor: None }) {
            OkBody::Members(page) => page.members.iter().any(|m| m.user == zelda_id),
            other => panic!("{other:?}"),
        };
        let her_room_stays = !matches!(b.request(Op::RoomGet { room: owned.clone() }), palaver_protocol::ReplyBody::Err(ref e) if e.code == ErrorCode::NotFound);
        if !still_member && !her_room_stays {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "zelda is still in bob's room or hers still exists");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
