//! File sharing end to end: uploads streamed to the object store (the local filesystem
//! here), types decided by magic bytes, limits enforced with clear HTTP errors, downloads
//! for members of the file's room only, and messages that reference uploaded files.
#![allow(clippy::unwrap_used, reason = "tests")]

use palaver_e2e::{Client, Server, http_bytes, png_bytes, register, upload};
use palaver_protocol::{
    ClientMsgId, Codec, ErrorCode, FileRef, MessageKind, OkBody, Op, RoomKind, RoomSettingsPatch,
};

fn download(server: &Server, token: &str, file_id: &str) -> palaver_e2e::HttpResponse {
    let auth = format!("Bearer {token}");
    http_bytes(server.addr, "GET", &format!("/v1/files/{file_id}"), b"", &[("authorization", &auth)])
}

/// Deterministic bytes that are not trivially compressible.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
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
fn members_upload_and_download_and_nobody_else_does() {
    let mut server = Server::start(&["--shards", "2"]);
    let [alice, bob, eve] = ["alice", "bob", "eve"].map(|n| register(server.addr, n));
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let room = a.create_room("photos", RoomKind::Private);
    a.ok(Op::RoomInvite { room: room.clone(), user: palaver_protocol::UserId::parse(&bob.user_id).unwrap() });
    Client::login(server.addr, Codec::Json, &bob).ok(Op::InviteAccept { room: room.clone() });

    // A 5 MiB image: streamed through, sized from its header, stored byte for byte.
    let mut big = png_bytes(1920, 1080);
    big.extend(noise(5 << 20, 7));
    let answer = upload(server.addr, &alice.access_token, &room, "holiday%20photo.png", &big);
    assert_eq!(answer.status, 201, "{:?}", answer.json());
    let json = answer.json();
    let file_id = json["file_id"].as_str().unwrap().to_owned();
    assert_eq!(json["size"], big.len());
    assert_eq!(json["content_type"], "image/png");
    assert_eq!((json["width"].as_u64(), json["height"].as_u64()), (Some(1920), Some(1080)));
    assert_eq!(json["name"], "holiday photo.png");

    let got = download(&server, &bob.access_token, &file_id);
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), Some("image/png"));
    assert_eq!(got.header("x-content-type-options"), Some("nosniff"));
    assert!(got.body == big, "downloaded bytes differ ({} vs {})", got.body.len(), big.len());

    // Outsiders and strangers get clear refusals.
    let refused = download(&server, &eve.access_token, &file_id);
    assert_eq!((refused.status, refused.json()["error"]["code"].as_str()), (403, Some("forbidden")));
    let anonymous = http_bytes(server.addr, "GET", &format!("/v1/files/{file_id}"), b"", &[]);
    assert_eq!(anonymous.status, 401);
    assert_eq!(download(&server, &bob.access_token, "f_doesnotexist").status, 404);
    assert_eq!(download(&server, &bob.access_token, "..%2F..%2Fetc%2Fpasswd").status, 404);
    let outsider_upload = upload(server.addr, &eve.access_token, &room, "x.png", &png_bytes(1, 1));
    assert_eq!(outsider_upload.status, 403);

    // A message shares it: the server fills in what it knows about the file; a file of
    // another room (or none at all) is refused.
    let send = |cid: &str, file_id: &str| Op::Send {
        room: room.clone(),
        cid: ClientMsgId::parse(cid).unwrap(),
        kind: MessageKind::Image,
        text: "look".into(),
        client_ts: None,
        reply_to: None,
        file: Some(Box::new(FileRef {
            file_id: file_id.into(),
            name: "holiday.png".into(),
            size: 1,
            content_type: "image/gif".into(),
            width: None,
            height: None,
        })),
        encryption: None,
        also_to_room: false,
        thread: None,
    };
    a.ok(send("img-1", &file_id));
    a.err(send("img-2", "f_doesnotexist"), ErrorCode::NotFound);
    let other = a.create_room("elsewhere", RoomKind::Public);
    let elsewhere = upload(server.addr, &alice.access_token, &other, "e.png", &png_bytes(2, 2)).json();
    a.err(send("img-3", elsewhere["file_id"].as_str().unwrap()), ErrorCode::NotFound);
    let shared = a.history(&room, None, None).remove(0).file.unwrap();
    assert_eq!(
        (shared.size, shared.content_type.as_str(), shared.width, shared.name.as_str()),
        (big.len() as u64, "image/png", Some(1920), "holiday.png")
    );

    // Durable: bytes and metadata are there after a crash.
    server.kill9();
    server.restart();
    let again = download(&server, &bob.access_token, &file_id);
    assert_eq!(again.status, 200);
    assert!(again.body == big);
}

#[test]
fn types_sizes_and_room_settings_are_enforced() {
    let server = Server::start(&["--max-file-bytes", "100000"]);
    let alice = register(server.addr, "alice");
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let room = a.create_room("docs", RoomKind::Public);
    let token = alice.access_token.clone();

    // Types come from the bytes: an executable named .png is refused, text named .exe is text.
    let elf = [b"\x7fELF\x02\x01\x01\0".as_slice(), &[0u8; 100]].concat();
    let refused = upload(server.addr, &token, &room, "cute.png", &elf);
    assert_eq!(refused.status, 415, "{:?}", refused.json());
    assert_eq!(refused.json()["error"]["code"], "invalid");
    let text = upload(server.addr, &token, &room, "..%2F..%2Fnotes.exe", "héllo, wörld\n".as_bytes());
    assert_eq!(text.status, 201);
    assert_eq!(
        (text.json()["content_type"].as_str(), text.json()["name"].as_str()),
        (Some("text/plain"), Some("notes.exe"))
    );
    let got = download(&server, &token, text.json()["file_id"].as_str().unwrap());
    assert_eq!(got.header("content-type"), Some("text/plain; charset=utf-8"));
    assert!(got.header("content-disposition").unwrap().starts_with("attachment"));

    // Text is text to its last byte, not only in the head that chose the type.
    let mut late_binary = "plain text\n".repeat(8_000).into_bytes();
    late_binary.extend_from_slice(b"\xff\xfe then binary");
    let refused = upload(server.addr, &token, &room, "notes.txt", &late_binary);
    assert_eq!(refused.status, 415, "{:?}", refused.json());
    let mut cut_character = "plain text\n".repeat(8_000).into_bytes();
    cut_character.extend_from_slice("é".as_bytes().split_at(1).0);
    assert_eq!(upload(server.addr, &token, &room, "notes.txt", &cut_character).status, 415);
    // Image headers are decoded strictly: absurd dimensions are refused, not stored.
    let huge = upload(server.addr, &token, &room, "huge.png", &palaver_e2e::png_bytes(1 << 30, 1 << 30));
    assert_eq!(huge.status, 415, "{:?}", huge.json());
    assert_eq!(upload(server.addr, &token, &room, "zero.png", &palaver_e2e::png_bytes(0, 10)).status, 415);
    let sane = upload(server.addr, &token, &room, "ok.png", &palaver_e2e::png_bytes(800, 600));
    assert_eq!((sane.status, sane.json()["width"].as_u64()), (201, Some(800)));

    // Sizes: empty and too large are refused before anything is stored.
    assert_eq!(upload(server.addr, &token, &room, "empty.txt", b"").status, 400);
    let too_big = upload(server.addr, &token, &room, "big.txt", &vec![b'a'; 100_001]);
    assert_eq!((too_big.status, too_big.json()["error"]["code"].as_str()), (413, Some("too_large")));
    // No room, no such room, no token.
    let auth = format!("Bearer {token}");
    let no_room = http_bytes(server.addr, "POST", "/v1/files", b"hi", &[("authorization", &auth)]);
    assert_eq!(no_room.status, 400);
    let ghost = palaver_protocol::RoomId::parse("r_nosuchroom").unwrap();
    assert_eq!(upload(server.addr, &token, &ghost, "a.txt", b"hi").status, 404);
    let anonymous = http_bytes(server.addr, "POST", &format!("/v1/files?room={room}"), b"hi", &[]);
    assert_eq!(anonymous.status, 401);

    // The room's file-sharing setting is honoured.
    a.ok(Op::RoomUpdate {
        room: room.clone(),
        name: None,
        topic: None,
        settings: Some(RoomSettingsPatch { file_sharing: Some(false), ..Default::default() }),
    });
    assert_eq!(upload(server.addr, &token, &room, "a.txt", b"hi").status, 403);
    match a.ok(Op::RoomGet { room }) {
        OkBody::RoomDetails(d) => assert!(!d.settings.file_sharing),
        other => panic!("{other:?}"),
    }
}
