//! The account export with the real binary: everything stored about the caller as JSON
//! (and nothing about anyone else, no password hash, no token), the messages they sent
//! a page at a time, rooms they left included; every refusal a JSON error.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::net::SocketAddr;

use palaver_e2e::{Client, Server, http, png_bytes, post_json, register, upload};
use palaver_protocol::{Codec, Op, RoomKind, UserId};
use serde_json::{Value, json};

fn get(addr: SocketAddr, path: &str, token: &str) -> (u16, Value, String) {
    let auth = format!("Bearer {token}");
    let (status, text) = http(addr, "GET", path, None, &[("authorization", &auth)]);
    (status, serde_json::from_str(&text).unwrap_or(Value::Null), text)
}

#[test]
fn an_export_holds_everything_stored_about_the_caller_and_nothing_else() {
    let server = Server::start(&[]);
    let addr = server.addr;
    let alice = register(addr, "alice");
    let bob = register(addr, "bob");
    let (status, _) =
        post_json(addr, "/v1/auth/login", &json!({"username": "alice", "password": "password-123"}));
    assert_eq!(status, 200);

    let mut a = Client::login(addr, Codec::Json, &alice);
    let mut b = Client::login(addr, Codec::Json, &bob);
    a.ok(Op::UserUpdate {
        display_name: Some("Alice A.".into()),
        avatar: None,
        status_text: Some("here".into()),
        share_read_receipts: None,
    });
    let own = a.create_room("alice's", RoomKind::Public);
    let other = b.create_room("bob's", RoomKind::Public);
    a.join(&other, None);
    for i in 0..3 {
        a.say(&own, &format!("a{i}"), &format!("alice in her room {i}"));
    }
    let (bob_seq, _) = b.say(&other, "b0", "bob speaking");
    a.say(&other, "a-other-0", "alice in bob's room 0");
    a.say(&other, "a-other-1", "alice in bob's room 1");
    a.ok(Op::Leave { room: other.clone() });
    a.ok(Op::Block { user: UserId::parse(&bob.user_id).unwrap() });
    let uploaded = upload(addr, &alice.access_token, &own, "cat.png", &png_bytes(4, 4));
    assert_eq!(uploaded.status, 201);
    a.ok(Op::PushSubscribe {
        endpoint: "https://push.example.com/send/alice".into(),
        p256dh: "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
            .into(),
        auth: "BTBZMqHH6r4Tts7J_aSIgg".into(),
    });

    let (status, export, text) = get(addr, "/v1/account/export", &alice.access_token);
    assert_eq!(status, 200, "{text}");
    assert_eq!(export["format"], json!(1));
    let account = &export["account"];
    assert_eq!((&account["user_id"], &account["username"]), (&json!(alice.user_id), &json!("alice")));
    assert_eq!(account["profile"]["display_name"], json!("Alice A."));
    assert_eq!(account["blocks"], json!([bob.user_id]));
    assert_eq!(account["rooms"].as_array().unwrap().len(), 1, "bob's room was left: {account}");
    assert_eq!(
        (&account["rooms"][0]["room_id"], &account["rooms"][0]["role"]),
        (&json!(own), &json!("owner"))
    );
    assert_eq!(account["refresh_tokens"].as_array().unwrap().len(), 2, "two sessions");
    assert_eq!(account["files"][0]["name"], json!("cat.png"));
    let subscriptions = account["push_subscriptions"].as_array().unwrap();
    assert_eq!(subscriptions.len(), 1, "{account}");
    assert_eq!(subscriptions[0]["endpoint"], json!("https://push.example.com/send/alice"));
    assert!(subscriptions[0].get("auth").is_none(), "the browser's secret stays out");
    assert_eq!((&account["admin"], &account["suspended"]), (&json!(false), &Value::Null));
    for secret in ["argon2", &alice.refresh_token, "password_hash", "bob speaking"] {
        assert!(!text.contains(secret), "the export holds {secret:?}");
    }
    let texts: Vec<_> =
        export["messages"]["messages"].as_array().unwrap().iter().map(|m| m["text"].clone()).collect();
    assert_eq!(texts.len(), 5, "her messages, in rooms she left too: {texts:?}");
    assert!(texts.contains(&json!("alice in bob's room 1")));
    assert_eq!(export["messages"]["next"], Value::Null);
    assert!(bob_seq > 0, "bob's message is not hers");

    // Her messages a page at a time, in order, to the end.
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let path = match &next {
            Some(after) => format!("/v1/account/export/messages?limit=2&after={after}"),
            None => "/v1/account/export/messages?limit=2".to_owned(),
        };
        let (status, page, text) = get(addr, &path, &alice.access_token);
        assert_eq!(status, 200, "{text}");
        seen.extend(page["messages"].as_array().unwrap().iter().map(|m| m["text"].clone()));
        match page["next"].as_str() {
            Some(after) => next = Some(after.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, texts, "the pages hold the same messages in the same order");
}

#[test]
fn export_requests_are_checked_and_throttled() {
    let server = Server::start(&[]);
    let addr = server.addr;
    let alice = register(addr, "alice");
    let (status, text) = http(addr, "GET", "/v1/account/export", None, &[]);
    assert_eq!(status, 401, "{text}");
    assert_eq!(http(addr, "POST", "/v1/account/export", None, &[]).0, 405);
    for bad in [
        "/v1/account/export/messages?limit=0",
        "/v1/account/export/messages?limit=1001",
        "/v1/account/export/messages?after=nonsense",
        "/v1/account/export?after=r_x/1",
    ] {
        let (status, body, _) = get(addr, bad, &alice.access_token);
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid")), "{bad}");
    }
    for _ in 0..3 {
        assert_eq!(get(addr, "/v1/account/export", &alice.access_token).0, 200);
    }
    let (status, body, _) = get(addr, "/v1/account/export", &alice.access_token);
    assert_eq!((status, body["error"]["code"].as_str()), (429, Some("rate_limited")));
    assert!(body["error"]["retry_after_ms"].as_u64().unwrap() > 0);
}
