//! The server API with the real binary, as a product's backend uses it: an operator makes
//! an API key with `palaver api-key`; the backend creates users (with or without a
//! password) and mints their access tokens, which sign in like any; keys are checked for
//! their scopes, refused once revoked, managed by admins and by `admin`-scoped keys, and
//! every key made or revoked is in the audit log. No secret is stored. A backend acts in
//! rooms as its users (a bot posts exactly once per `cid`, its message fanned out to a
//! socket), under the same rules as a socket and its key's scopes, and posts
//! announcements as the system the same way.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use palaver_e2e::{Client, Server, http, palaver_bin, post_json, register};
use palaver_protocol::{Codec, Op, ReplyBody};
use serde_json::{Value, json};

/// Runs `palaver api-key ARGS --data-dir DIR`: (success, stdout + stderr).
fn api_key_cli(data_dir: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new(palaver_bin())
        .arg("api-key")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// A request with a bearer credential: (status, JSON body).
fn call(addr: SocketAddr, method: &str, path: &str, bearer: &str, body: Option<Value>) -> (u16, Value) {
    let auth = format!("Bearer {bearer}");
    let body = body.map(|b| b.to_string());
    let (status, text) = http(
        addr,
        method,
        path,
        body.as_deref(),
        &[("authorization", &auth), ("content-type", "application/json")],
    );
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn code(answer: &(u16, Value)) -> (u16, &str) {
    (answer.0, answer.1["error"]["code"].as_str().unwrap_or(""))
}

/// `key` with its last hex digit replaced by another: the same key id, a wrong secret.
fn with_last_digit_changed(key: &str) -> String {
    let (head, last) = key.split_at(key.len() - 1);
    format!("{head}{}", if last == "0" { "1" } else { "0" })
}

/// Whether any file under `dir` holds `needle`.
fn on_disk(dir: &Path, needle: &str) -> bool {
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if std::fs::read(&path)
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
            {
                return true;
            }
        }
    }
    false
}

#[test]
fn a_backend_creates_users_and_mints_their_tokens_with_an_api_key() {
    let mut server = Server::start(&[]);
    let admin = register(server.addr, "root");
    server.terminate();

    // The operator's CLI, offline.
    let (ok, text) = api_key_cli(server.data_dir(), &["create", "billing backend", "--scope", "users"]);
    assert!(ok, "{text}");
    let users_key = text.lines().last().unwrap().trim().to_owned();
    assert!(users_key.starts_with("pvk_"), "{text}");
    let (ok, text) = api_key_cli(server.data_dir(), &["create", "x", "--scope", "root"]);
    assert!(!ok && text.contains("scopes"), "{text}");
    let (ok, text) = api_key_cli(server.data_dir(), &["list"]);
    assert!(ok && text.contains("billing backend [users]") && !text.contains(&users_key[21..]), "{text}");
    let (ok, text) = Command::new(palaver_bin())
        .args(["admin", "grant", "root", "--data-dir"])
        .arg(server.data_dir())
        .output()
        .map(|o| (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned()))
        .unwrap();
    assert!(ok, "{text}");
    server.restart();
    let addr = server.addr;

    // Who may call: a valid key only.
    assert_eq!(http(addr, "POST", "/v1/server/users", Some("{}"), &[]).0, 401);
    for wrong in [
        admin.access_token.as_str(),
        "pvk_nothing",
        &with_last_digit_changed(&users_key),
        "pvk_0000000000000000_0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        assert_eq!(
            code(&call(addr, "POST", "/v1/server/users", wrong, Some(json!({})))),
            (401, "unauthorized")
        );
    }
    assert_eq!(http(addr, "DELETE", "/v1/server/users", None, &[]).0, 405);

    // Users: made, refused when they cannot be, read back.
    let created = call(addr, "POST", "/v1/server/users", &users_key, Some(json!({"username": "carol"})));
    assert_eq!(created.0, 201, "{:?}", created.1);
    let carol = created.1["user_id"].as_str().unwrap().to_owned();
    let refusals = [
        (json!({"username": "carol"}), (409, "conflict")),
        (json!({"username": "x"}), (400, "invalid")),
        (json!({"username": "everyone"}), (400, "invalid")),
        (json!({"username": "dave", "password": "short"}), (400, "invalid")),
        (json!({"username": "dave", "admin": true}), (400, "invalid")),
    ];
    for (body, expected) in refusals {
        assert_eq!(
            code(&call(addr, "POST", "/v1/server/users", &users_key, Some(body.clone()))),
            expected,
            "{body}"
        );
    }
    let with_password = json!({"username": "dave", "password": "password-123"});
    assert_eq!(call(addr, "POST", "/v1/server/users", &users_key, Some(with_password)).0, 201);
    assert_eq!(
        post_json(addr, "/v1/auth/login", &json!({"username": "dave", "password": "password-123"})).0,
        200
    );
    let read = call(addr, "GET", &format!("/v1/server/users/{carol}"), &users_key, None);
    assert_eq!((read.0, &read.1["username"], &read.1["has_password"]), (200, &json!("carol"), &json!(false)));
    assert_eq!(code(&call(addr, "GET", "/v1/server/users/u_nobody", &users_key, None)).0, 404);
    assert_eq!(code(&call(addr, "GET", "/v1/server/users/nope!", &users_key, None)).0, 400);

    // Carol has no password: she signs in with the token her backend mints.
    let any_password = json!({"username": "carol", "password": "password-123"});
    assert_eq!(post_json(addr, "/v1/auth/login", &any_password).0, 401);
    let minted = call(addr, "POST", &format!("/v1/server/users/{carol}/tokens"), &users_key, None);
    assert_eq!(minted.0, 200, "{:?}", minted.1);
    let token = minted.1["access_token"].as_str().unwrap().to_owned();
    let mut socket = Client::connect(addr, Codec::Json);
    assert!(matches!(socket.request(Op::Auth { token: token.clone() }), ReplyBody::Ok(_)));
    assert_eq!(code(&call(addr, "POST", "/v1/server/users/u_nobody/tokens", &users_key, None)).0, 404);
    // A minted token is a login like any: logging out everywhere ends it.
    assert_eq!(call(addr, "POST", "/v1/auth/logout-all", &token, None).0, 200);
    let mut again = Client::connect(addr, Codec::Json);
    assert!(matches!(again.request(Op::Auth { token }), ReplyBody::Err(_)));

    // Keys: the users key cannot manage keys; an admin makes an admin-scoped one.
    assert_eq!(code(&call(addr, "GET", "/v1/server/api-keys", &users_key, None)), (403, "forbidden"));
    let made = call(
        addr,
        "POST",
        "/v1/admin/api-keys",
        &admin.access_token,
        Some(json!({"name": "ops", "scopes": ["admin"]})),
    );
    assert_eq!(made.0, 201, "{:?}", made.1);
    let admin_key = made.1["key"].as_str().unwrap().to_owned();
    let bad = call(
        addr,
        "POST",
        "/v1/admin/api-keys",
        &admin.access_token,
        Some(json!({"name": "", "scopes": ["admin"]})),
    );
    assert_eq!(code(&bad), (400, "invalid"));
    let listed = call(addr, "GET", "/v1/server/api-keys", &admin_key, None);
    assert_eq!(listed.1["api_keys"].as_array().unwrap().len(), 2, "{:?}", listed.1);
    assert!(!listed.1.to_string().contains("sha256"), "no hash is listed");
    let users_key_id = &users_key[4..20];
    let revoked = call(addr, "POST", &format!("/v1/server/api-keys/{users_key_id}/revoke"), &admin_key, None);
    assert_eq!(revoked.0, 200, "{:?}", revoked.1);
    assert_eq!(
        code(&call(addr, "POST", &format!("/v1/server/api-keys/{users_key_id}/revoke"), &admin_key, None)),
        (409, "conflict")
    );
    let after = call(addr, "POST", "/v1/server/users", &users_key, Some(json!({"username": "erin"})));
    assert_eq!((after.0, after.1["error"]["message"].as_str()), (401, Some("this API key was revoked")));

    // All of it audited, naming who acted: the operator, the admin, the key.
    let audit = call(addr, "GET", "/v1/admin/audit", &admin.access_token, None).1;
    let keyed: Vec<(String, Value, Value)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"].as_str().unwrap().ends_with("api_key"))
        .map(|e| (e["action"].as_str().unwrap().to_owned(), e["admin"].clone(), e["api_key"].clone()))
        .collect();
    let admin_key_id = &admin_key[4..20];
    assert_eq!(
        keyed,
        [
            ("create_api_key".to_owned(), Value::Null, Value::Null),
            ("create_api_key".to_owned(), json!(admin.user_id), Value::Null),
            ("revoke_api_key".to_owned(), Value::Null, json!(admin_key_id)),
        ]
    );

    // No secret is kept: only its SHA-256.
    server.terminate();
    for key in [&users_key, &admin_key] {
        assert!(!on_disk(server.data_dir(), &key[21..]), "a key's secret is on disk");
    }
}

#[test]
fn a_backend_acts_in_rooms_as_its_users_with_the_same_rules_as_a_socket() {
    let mut server = Server::start(&[]);
    server.terminate();
    let key_with = |scopes: &str| {
        let (ok, text) = api_key_cli(server.data_dir(), &["create", scopes, "--scope", scopes]);
        assert!(ok, "{text}");
        text.lines().last().unwrap().trim().to_owned()
    };
    let (all, publish_only) = (key_with("users,rooms,publish"), key_with("publish"));
    server.restart();
    let addr = server.addr;
    let user = |name: &str| {
        let made = call(addr, "POST", "/v1/server/users", &all, Some(json!({"username": name})));
        assert_eq!(made.0, 201, "{:?}", made.1);
        made.1["user_id"].as_str().unwrap().to_owned()
    };
    let (alice, bot) = (user("alice"), user("helperbot"));
    let act = |key: &str, who: &str, op: Value| {
        call(addr, "POST", &format!("/v1/server/users/{who}/ops"), key, Some(op))
    };

    // Alice's room, made by her backend; the bot joins it.
    let created = act(&all, &alice, json!({"op": "room.create", "name": "support", "kind": "public"}));
    assert_eq!(created.0, 200, "{:?}", created.1);
    let room = created.1["ok"]["room"]["room_id"].as_str().unwrap().to_owned();
    assert_eq!(act(&all, &bot, json!({"op": "join", "room": room})).0, 200);

    // Alice is online in a socket; the bot posts through the server API, exactly once.
    let minted = call(addr, "POST", &format!("/v1/server/users/{alice}/tokens"), &all, None);
    let mut socket = Client::connect(addr, Codec::Json);
    assert!(matches!(
        socket.request(Op::Auth { token: minted.1["access_token"].as_str().unwrap().to_owned() }),
        ReplyBody::Ok(_)
    ));
    socket.join(&palaver_protocol::RoomId::parse(&room).unwrap(), None);
    let post = json!({"op": "send", "room": room, "cid": "order-4411", "text": "your order shipped"});
    let sent = act(&publish_only, &bot, post.clone());
    assert_eq!(sent.0, 200, "{:?}", sent.1);
    let seq = sent.1["ok"]["seq"].as_u64().unwrap();
    let again = act(&publish_only, &bot, post);
    assert_eq!(
        (again.1["ok"]["seq"].as_u64(), again.1["ok"]["duplicate"].as_bool()),
        (Some(seq), Some(true))
    );
    let seen = socket.next_message();
    assert_eq!(
        (seen.seq, seen.sender.as_str(), seen.text.as_str()),
        (seq, bot.as_str(), "your order shipped")
    );
    let history = act(&publish_only, &bot, json!({"op": "history", "room": room}));
    assert_eq!(history.1["ok"]["messages"][0]["text"], "your order shipped", "{:?}", history.1);

    // The same rules as a socket, and the key's scopes.
    let not_member = act(&all, &alice, json!({"op": "send", "room": "r_nowhere", "cid": "x1", "text": "hi"}));
    assert_eq!(code(&not_member).0, 404, "{:?}", not_member.1);
    assert_eq!(
        code(&act(&publish_only, &alice, json!({"op": "room.create", "name": "x", "kind": "public"}))),
        (403, "forbidden")
    );
    assert_eq!(code(&act(&all, &alice, json!({"op": "typing.start", "room": room}))), (400, "invalid"));
    assert_eq!(code(&act(&all, &alice, json!({"op": "send", "room": room}))), (400, "invalid"));
    assert_eq!(code(&act(&all, &alice, json!({"id": 7, "op": "history", "room": room}))), (400, "invalid"));
    assert_eq!(code(&act(&all, "u_nobody", json!({"op": "history", "room": room}))), (404, "not_found"));
    let long = "x".repeat(20_000);
    assert_eq!(
        code(&act(&all, &bot, json!({"op": "send", "room": room, "cid": "x2", "text": long}))),
        (413, "too_large")
    );
}

#[test]
fn a_backend_posts_announcements_as_the_system_exactly_once_per_cid() {
    let mut server = Server::start(&[]);
    server.terminate();
    let key_with = |scopes: &str| {
        let (ok, text) = api_key_cli(server.data_dir(), &["create", scopes, "--scope", scopes]);
        assert!(ok, "{text}");
        text.lines().last().unwrap().trim().to_owned()
    };
    let (all, no_publish) = (key_with("users,rooms,publish"), key_with("users,rooms"));
    server.restart();
    let addr = server.addr;

    // Alice's room, with Alice online in it.
    let made = call(addr, "POST", "/v1/server/users", &all, Some(json!({"username": "alice"})));
    let alice = made.1["user_id"].as_str().unwrap().to_owned();
    let act = |op: Value| call(addr, "POST", &format!("/v1/server/users/{alice}/ops"), &all, Some(op));
    let created = act(json!({"op": "room.create", "name": "support", "kind": "public"}));
    let room = created.1["ok"]["room"]["room_id"].as_str().unwrap().to_owned();
    let minted = call(addr, "POST", &format!("/v1/server/users/{alice}/tokens"), &all, None);
    let mut socket = Client::connect(addr, Codec::Json);
    assert!(matches!(
        socket.request(Op::Auth { token: minted.1["access_token"].as_str().unwrap().to_owned() }),
        ReplyBody::Ok(_)
    ));
    let room_id = palaver_protocol::RoomId::parse(&room).unwrap();
    socket.join(&room_id, None);
    let (first, _) = socket.say(&room_id, "a-1", "hello");

    // The system announces, once per cid, after Alice's message.
    let path = format!("/v1/server/rooms/{room}/messages");
    let post = json!({"cid": "maint-7", "text": "maintenance at 22:00 UTC"});
    let posted = call(addr, "POST", &path, &all, Some(post.clone()));
    assert_eq!(posted.0, 200, "{:?}", posted.1);
    let seq = posted.1["ok"]["seq"].as_u64().unwrap();
    assert_eq!((seq, posted.1["ok"].get("duplicate")), (first + 1, None), "{:?}", posted.1);
    let again = call(addr, "POST", &path, &all, Some(post));
    assert_eq!(
        (again.0, again.1["ok"]["seq"].as_u64(), again.1["ok"]["duplicate"].as_bool()),
        (200, Some(seq), Some(true))
    );
    let seen = socket.next_notice();
    let system = seen.system.as_deref().unwrap();
    assert_eq!(
        (seen.seq, seen.sender.as_str(), seen.kind, seen.text.as_str(), seen.cid.as_str()),
        (seq, "u_system", palaver_protocol::MessageKind::System, "maintenance at 22:00 UTC", "maint-7")
    );
    assert_eq!(
        (system.action, system.actor.as_str()),
        (palaver_protocol::SystemAction::Announcement, "u_system")
    );
    // A member's same cid is the member's own message.
    assert_eq!(socket.say(&room_id, "maint-7", "mine").0, seq + 1);

    // Stored: history has it, once.
    let history = act(json!({"op": "history", "room": room}));
    let messages = history.1["ok"]["messages"].as_array().unwrap();
    let announced: Vec<&Value> = messages.iter().filter(|m| m["sender"] == "u_system").collect();
    assert_eq!(announced.len(), 1, "{messages:?}");
    assert_eq!(
        (&announced[0]["seq"], &announced[0]["system"]["action"], &announced[0]["text"]),
        (&json!(seq), &json!("announcement"), &json!("maintenance at 22:00 UTC"))
    );
    // After a restart too: a retry still finds the first post.
    drop(socket);
    server.terminate();
    server.restart();
    let addr = server.addr;
    let retried = call(addr, "POST", &path, &all, Some(json!({"cid": "maint-7", "text": "again"})));
    assert_eq!(
        (retried.1["ok"]["seq"].as_u64(), retried.1["ok"]["duplicate"].as_bool()),
        (Some(seq), Some(true))
    );

    // Refused: the key's scope, the room, the body.
    let refusals = [
        (no_publish.as_str(), path.clone(), json!({"cid": "m-1", "text": "hi"}), (403, "forbidden")),
        ("pvk_nothing", path.clone(), json!({"cid": "m-1", "text": "hi"}), (401, "unauthorized")),
        (
            &all,
            "/v1/server/rooms/r_nowhere/messages".into(),
            json!({"cid": "m-1", "text": "hi"}),
            (404, "not_found"),
        ),
        (&all, "/v1/server/rooms/R!/messages".into(), json!({"cid": "m-1", "text": "hi"}), (400, "invalid")),
        (&all, path.clone(), json!({"text": "hi"}), (400, "invalid")),
        (&all, path.clone(), json!({"cid": "m 1", "text": "hi"}), (400, "invalid")),
        (&all, path.clone(), json!({"cid": "m-1", "text": ""}), (400, "invalid")),
        (&all, path.clone(), json!({"cid": "m-1", "text": "hi", "sender": alice}), (400, "invalid")),
        (&all, path.clone(), json!({"cid": "m-1", "text": "hi", "reply_to": 999}), (404, "not_found")),
        (&all, path.clone(), json!({"cid": "m-1", "text": "x".repeat(20_000)}), (413, "too_large")),
    ];
    for (key, path, body, expected) in refusals {
        assert_eq!(code(&call(addr, "POST", &path, key, Some(body.clone()))), expected, "{path} {body}");
    }
    let (status, text) = http(
        addr,
        "POST",
        &path,
        Some("{not json"),
        &[("authorization", &format!("Bearer {all}")), ("content-type", "application/json")],
    );
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!((status, &answer["error"]["code"]), (400, &json!("invalid")), "{text}");
    assert_eq!(http(addr, "GET", &path, None, &[]).0, 405);
}

#[test]
fn a_bot_signs_in_with_its_key_like_any_client_until_the_key_is_revoked() {
    let mut server = Server::start(&[]);
    server.terminate();
    let (ok, text) = api_key_cli(server.data_dir(), &["create", "ops", "--scope", "users,rooms,admin"]);
    assert!(ok, "{text}");
    let ops_key = text.lines().last().unwrap().trim().to_owned();
    server.restart();
    let addr = server.addr;

    // A bot account, shown as one.
    let made =
        call(addr, "POST", "/v1/server/users", &ops_key, Some(json!({"username": "helperbot", "bot": true})));
    assert_eq!((made.0, &made.1["bot"]), (201, &json!(true)), "{:?}", made.1);
    let bot = made.1["user_id"].as_str().unwrap().to_owned();
    let human = call(addr, "POST", "/v1/server/users", &ops_key, Some(json!({"username": "carol"})));
    let carol = human.1["user_id"].as_str().unwrap().to_owned();

    // Its key: only for a bot account.
    let refused =
        call(addr, "POST", "/v1/server/api-keys", &ops_key, Some(json!({"name": "c", "bot": carol})));
    assert_eq!(code(&refused), (400, "invalid"), "{:?}", refused.1);
    let made =
        call(addr, "POST", "/v1/server/api-keys", &ops_key, Some(json!({"name": "helperbot", "bot": bot})));
    assert_eq!(made.0, 201, "{:?}", made.1);
    let bot_key = made.1["key"].as_str().unwrap().to_owned();

    // It signs the bot in, by the `auth` op or the upgrade's header; no other key does.
    let mut socket = Client::connect(addr, Codec::Json);
    match socket.request(Op::Auth { token: bot_key.clone() }) {
        ReplyBody::Ok(palaver_protocol::OkBody::Authed(ok)) => assert_eq!(ok.user_id.as_str(), bot),
        other => panic!("{other:?}"),
    }
    let mut by_header = Client::connect_with(addr, Codec::Json, Some(&bot_key));
    assert!(matches!(by_header.request(Op::Ping {}), ReplyBody::Ok(_)));
    let mut not_a_bot = Client::connect(addr, Codec::Json);
    assert!(matches!(not_a_bot.request(Op::Auth { token: ops_key.clone() }), ReplyBody::Err(_)));
    let room = socket.create_room("bots", palaver_protocol::RoomKind::Public);
    let (seq, _) = socket.say(&room, "b-1", "beep");
    assert_eq!(seq, 1);
    match socket.request(Op::UserGet { user: palaver_protocol::UserId::parse(&bot).unwrap() }) {
        ReplyBody::Ok(palaver_protocol::OkBody::Profile(profile)) => assert!(profile.profile.bot),
        other => panic!("{other:?}"),
    }

    // Revoked: its sockets close, and it signs in no more.
    let key_id = &bot_key[4..20];
    assert_eq!(call(addr, "POST", &format!("/v1/server/api-keys/{key_id}/revoke"), &ops_key, None).0, 200);
    assert_eq!(socket.expect_close_with_reason(), Some((4001, "session ended: API key revoked".to_owned())));
    assert_eq!(by_header.expect_close_with_reason().map(|(code, _)| code), Some(4001));
    let mut again = Client::connect(addr, Codec::Json);
    assert!(matches!(again.request(Op::Auth { token: bot_key }), ReplyBody::Err(_)));

    // The operator's CLI makes bot keys too, for bot accounts only.
    server.terminate();
    let (ok, text) = api_key_cli(server.data_dir(), &["create", "cli bot", "--bot", "helperbot"]);
    assert!(ok && text.lines().last().unwrap().starts_with("pvk_"), "{text}");
    let (ok, text) = api_key_cli(server.data_dir(), &["create", "cli human", "--bot", "carol"]);
    assert!(!ok && text.contains("bot account"), "{text}");
}
