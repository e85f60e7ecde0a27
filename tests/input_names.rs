//! Names are shown to other people, so what they can hold is strict: no characters that
//! reorder the text around them (a file named `photo\u{202e}gpj.exe` would show as
//! "photoexe.jpg"), no silent trimming, and usernames that look alike are one name.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use palaver_e2e::{Client, Server, post_json, register, upload};
use palaver_protocol::{Codec, ErrorCode, Op, RoomKind};
use serde_json::json;

#[test]
fn reordering_characters_and_padding_are_refused_in_names() {
    let server = Server::start(&[]);
    let alice = register(server.addr, "alice");
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let room_named = |name: &str| Op::RoomCreate {
        name: name.into(),
        kind: RoomKind::Public,
        topic: None,
        settings: None,
    };
    let why = a.err(room_named("invoice\u{202e}fdp.exe"), ErrorCode::Invalid);
    assert!(why.contains("U+202E"), "{why}");
    a.err(room_named("a\u{2067}b"), ErrorCode::Invalid);
    // Joiners and marks that reorder nothing are names' business (emoji, Persian).
    let room = a.create_room("👩\u{200d}💻 دوستان\u{200c}ما", RoomKind::Public);

    let update = |name: &str| Op::UserUpdate {
        display_name: Some(name.into()),
        avatar: None,
        status_text: None,
        share_read_receipts: None,
    };
    a.err(update("Admin\u{202e}"), ErrorCode::Invalid);
    // Stored as sent or refused, never altered.
    let why = a.err(update("  alice  "), ErrorCode::Invalid);
    assert!(why.contains("white space"), "{why}");
    a.ok(update("Alice 🌸"));
    a.ok(update(""));

    let token = alice.access_token.clone();
    let refused = upload(server.addr, &token, &room, "photo%E2%80%AEgpj.exe", b"hello");
    assert_eq!(refused.status, 400, "{:?}", refused.json());
    assert_eq!(upload(server.addr, &token, &room, "notes.txt", b"hello").status, 201);
}

#[test]
fn usernames_that_look_alike_are_one_name() {
    let server = Server::start(&[]);
    register(server.addr, "paypal");
    register(server.addr, "mario");
    for lookalike in ["paypa1", "PAYPAL", "rnario"] {
        let (status, body) = post_json(
            server.addr,
            "/v1/auth/register",
            &json!({"username": lookalike, "password": "password-123"}),
        );
        assert_eq!(status, 409, "{lookalike}: {body}");
        assert_eq!(body["error"]["code"], "conflict");
    }
    register(server.addr, "paypal2");
}
