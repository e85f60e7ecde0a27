//! Administration with the real binary: `palaver admin` grants the role on a stopped
//! server's data directory; an admin reads stats and accounts, suspends an account
//! (sockets closed, logins and tokens refused, on every node of a cluster) and lifts it;
//! every change is in an audit log that the API only lists.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use palaver_e2e::{
    Account, Client, Nats, Server, WAIT, http, metric, mint_access_token, palaver_bin, post_json, register,
};
use palaver_protocol::{Codec, ErrorCode, Op, ReplyBody};
use serde_json::{Value, json};

/// Runs `palaver admin ARGS --data-dir DIR`: (success, stdout + stderr).
fn admin_cli(data_dir: &Path, args: &[&str]) -> (bool, String) {
    let output =
        Command::new(palaver_bin()).arg("admin").args(args).arg("--data-dir").arg(data_dir).output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// A request with an access token: (status, JSON body).
fn call(addr: SocketAddr, method: &str, path: &str, token: &str, body: Option<&str>) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let (status, text) =
        http(addr, method, path, body, &[("authorization", &auth), ("content-type", "application/json")]);
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn code(answer: &(u16, Value)) -> (u16, Option<&str>) {
    (answer.0, answer.1["error"]["code"].as_str())
}

fn login(addr: SocketAddr, username: &str) -> (u16, Value) {
    post_json(addr, "/v1/auth/login", &json!({"username": username, "password": "password-123"}))
}

/// Grants `username` the admin role on `server`'s data directory (stopping and
/// restarting it around the command).
fn grant(server: &mut Server, username: &str) {
    server.terminate();
    let (ok, text) = admin_cli(server.data_dir(), &["grant", username]);
    assert!(ok, "{text}");
    assert!(text.contains("is now an admin"), "{text}");
    server.restart();
}

#[test]
fn the_admin_command_works_offline_and_says_what_it_did() {
    let mut server = Server::start(&[]);
    let alice = register(server.addr, "alice");
    let (ok, text) = admin_cli(server.data_dir(), &["grant", "alice"]);
    assert!(!ok && text.contains("is a server running on it"), "refused while serving: {text}");

    server.terminate();
    let dir = server.data_dir().to_owned();
    assert_eq!(admin_cli(&dir, &["list"]), (true, "no admins\n".to_owned()));
    let (ok, text) = admin_cli(&dir, &["grant", "Alice"]);
    assert!(ok && text.contains(&alice.user_id) && text.contains("is now an admin"), "{text}");
    let (ok, text) = admin_cli(&dir, &["grant", "alice"]);
    assert!(ok && text.contains("nothing changed"), "{text}");
    let (ok, text) = admin_cli(&dir, &["list"]);
    assert!(ok && text.contains(&format!("{} alice", alice.user_id)), "{text}");
    let (ok, text) = admin_cli(&dir, &["grant", "nobody"]);
    assert!(!ok && text.contains("no user is named \"nobody\""), "{text}");
    let (ok, text) = admin_cli(Path::new("/nonexistent/palaver"), &["list"]);
    assert!(!ok && text.contains("not a Palaver data directory"), "{text}");

    server.restart();
    let (status, body) = call(server.addr, "GET", "/v1/admin/stats", &alice.access_token, None);
    assert_eq!(status, 200, "{body}");
    server.terminate();
    let (ok, text) = admin_cli(&dir, &["revoke", "alice"]);
    assert!(ok && text.contains("is no longer an admin"), "{text}");
    server.restart();
    let answer = call(server.addr, "GET", "/v1/admin/stats", &alice.access_token, None);
    assert_eq!(code(&answer), (403, Some("forbidden")));
}

#[test]
fn admins_suspend_and_unsuspend_accounts_and_every_act_is_audited() {
    let mut server = Server::start(&[]);
    let alice = register(server.addr, "alice");
    let bob = register(server.addr, "bob");
    grant(&mut server, "alice");
    let addr = server.addr;
    let admin =
        |method: &str, path: &str, body: Option<&str>| call(addr, method, path, &alice.access_token, body);

    // Only admins, with a token.
    assert_eq!(
        code(&call(addr, "GET", "/v1/admin/stats", &bob.access_token, None)),
        (403, Some("forbidden"))
    );
    let (status, text) = http(addr, "GET", "/v1/admin/stats", None, &[]);
    assert_eq!(status, 401, "{text}");
    let mut bob_socket = Client::login(addr, Codec::Json, &bob);
    let (status, stats) = admin("GET", "/v1/admin/stats", None);
    assert_eq!(status, 200, "{stats}");
    assert!(stats["connections"].as_i64().unwrap() >= 1 && stats["shards"] == json!(2), "{stats}");
    let (status, account) = admin("GET", &format!("/v1/admin/users/{}", bob.user_id), None);
    assert_eq!(status, 200, "{account}");
    assert_eq!(
        (&account["username"], &account["admin"], &account["suspended"]),
        (&json!("bob"), &json!(false), &Value::Null)
    );

    // Refusals, each with its JSON error.
    let suspend_bob = format!("/v1/admin/users/{}/suspend", bob.user_id);
    assert_eq!(code(&admin("GET", &suspend_bob, None)), (405, Some("invalid")));
    assert_eq!(code(&admin("POST", &suspend_bob, Some(r#"{"why":"x"}"#))), (400, Some("invalid")));
    let long = json!({"reason": "x".repeat(201)}).to_string();
    assert_eq!(code(&admin("POST", &suspend_bob, Some(&long))), (400, Some("invalid")));
    let suspend_self = format!("/v1/admin/users/{}/suspend", alice.user_id);
    assert_eq!(
        code(&admin("POST", &suspend_self, None)),
        (403, Some("forbidden")),
        "an admin is not suspended"
    );
    assert_eq!(code(&admin("POST", "/v1/admin/users/u_nobody/suspend", None)), (404, Some("not_found")));
    assert_eq!(code(&admin("POST", "/v1/admin/users/not-an-id/suspend", None)), (400, Some("invalid")));
    assert_eq!(code(&admin("POST", "/v1/admin/users/u_x/delete", None)), (404, Some("not_found")));
    let unsuspend_bob = format!("/v1/admin/users/{}/unsuspend", bob.user_id);
    assert_eq!(code(&admin("POST", &unsuspend_bob, None)), (409, Some("conflict")));

    // A suspension ends every session and refuses every way back in.
    let backend_token = mint_access_token(&bob.user_id, 300);
    let (status, body) = admin("POST", &suspend_bob, Some(r#"{"reason":"spam"}"#));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["suspended"]["reason"], json!("spam"));
    assert_eq!(
        bob_socket.expect_close_with_reason(),
        Some((4001, "session ended: account suspended".to_owned()))
    );
    let (status, body) = login(addr, "bob");
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("suspended"));
    let (status, _) =
        post_json(addr, "/v1/auth/login", &json!({"username": "bob", "password": "wrong-password"}));
    assert_eq!(status, 401, "a wrong password learns nothing of the suspension");
    let (status, _) = post_json(addr, "/v1/auth/refresh", &json!({"refresh_token": bob.refresh_token}));
    assert_eq!(status, 401);
    for token in [&bob.access_token, &backend_token, &mint_access_token(&bob.user_id, 300)] {
        let mut socket = Client::connect(addr, Codec::Json);
        socket.err(Op::Auth { token: token.clone() }, ErrorCode::Unauthorized);
    }
    assert_eq!(code(&admin("POST", &suspend_bob, None)), (409, Some("conflict")));
    let (_, account) = admin("GET", &format!("/v1/admin/users/{}", bob.user_id), None);
    assert_eq!(account["suspended"]["by"], json!(alice.user_id));

    // Lifted: bob logs in again. The state survives a restart.
    server.terminate();
    server.restart();
    let addr = server.addr;
    let admin =
        |method: &str, path: &str, body: Option<&str>| call(addr, method, path, &alice.access_token, body);
    assert_eq!(login(addr, "bob").0, 403, "still suspended after a restart");
    let (status, body) = admin("POST", &unsuspend_bob, Some("{}"));
    assert_eq!(status, 200, "{body}");
    let (status, fresh) = login(addr, "bob");
    assert_eq!(status, 200, "{fresh}");
    Client::connect_with(addr, Codec::Json, Some(fresh["access_token"].as_str().unwrap())).ok(Op::Ping {});

    // The audit log: every act in order, paged, and nothing that edits it.
    let (status, log) = admin("GET", "/v1/admin/audit", None);
    assert_eq!(status, 200, "{log}");
    let entries = log["entries"].as_array().unwrap();
    let actions: Vec<_> = entries.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["grant_admin", "suspend", "unsuspend"], "{log}");
    assert_eq!((&entries[0]["admin"], &entries[0]["user"]), (&Value::Null, &json!(alice.user_id)));
    assert_eq!((&entries[1]["admin"], &entries[1]["reason"]), (&json!(alice.user_id), &json!("spam")));
    let (_, first) = admin("GET", "/v1/admin/audit?limit=1", None);
    assert_eq!(first["entries"].as_array().unwrap().len(), 1);
    let next = first["next"].as_str().unwrap();
    let (_, rest) = admin("GET", &format!("/v1/admin/audit?limit=5&after={next}"), None);
    assert_eq!(rest["entries"].as_array().unwrap().len(), 2);
    assert_eq!(rest["next"], Value::Null);
    assert_eq!(code(&admin("GET", "/v1/admin/audit?limit=0", None)), (400, Some("invalid")));
    for method in ["POST", "PUT", "DELETE"] {
        assert_eq!(admin(method, "/v1/admin/audit", Some("{}")).0, 405, "{method}");
    }
    let bob_token = fresh["access_token"].as_str().unwrap();
    assert_eq!(code(&call(addr, "GET", "/v1/admin/audit", bob_token, None)).0, 403, "bob is no admin");
}

/// Until every node hears `n` live nodes.
fn wait_live(addrs: &[SocketAddr], n: u64) {
    let deadline = Instant::now() + WAIT;
    while !addrs.iter().all(|a| metric(*a, "palaver_cluster_live_nodes") == n) {
        assert!(Instant::now() < deadline, "the nodes did not see {n} live nodes");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A socket on `addr` authenticated as `account`, once the account has replicated there.
fn socket_when_replicated(addr: SocketAddr, account: &Account) -> Client {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut client = Client::connect(addr, Codec::Json);
        match client.request(Op::Auth { token: account.access_token.clone() }) {
            ReplyBody::Ok(_) => return client,
            ReplyBody::Err(e) => {
                assert!(Instant::now() < deadline, "cannot log in on {addr}: {e:?}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

#[test]
fn a_suspension_holds_on_every_node_of_a_cluster() {
    let nats = Nats::start();
    let mut nodes: Vec<Server> =
        ["n1", "n2"].iter().map(|id| Server::start(&["--cluster", &nats.url, "--node-id", id])).collect();
    wait_live(&nodes.iter().map(|n| n.addr).collect::<Vec<_>>(), 2);
    let alice = register(nodes[0].addr, "alice");
    let bob = register(nodes[0].addr, "bob");
    drop(socket_when_replicated(nodes[1].addr, &bob));
    grant(&mut nodes[0], "alice");
    wait_live(&nodes.iter().map(|n| n.addr).collect::<Vec<_>>(), 2);
    let (one, two) = (nodes[0].addr, nodes[1].addr);
    let mut remote = socket_when_replicated(two, &bob);

    let suspend = format!("/v1/admin/users/{}/suspend", bob.user_id);
    let (status, body) = call(one, "POST", &suspend, &alice.access_token, None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        remote.expect_close_with_reason(),
        Some((4001, "session ended: account suspended".to_owned()))
    );
    assert_eq!(login(two, "bob").0, 403, "node two refuses the login");
    let mut socket = Client::connect(two, Codec::Json);
    socket.err(Op::Auth { token: mint_access_token(&bob.user_id, 300) }, ErrorCode::Unauthorized);

    let unsuspend = format!("/v1/admin/users/{}/unsuspend", bob.user_id);
    assert_eq!(call(one, "POST", &unsuspend, &alice.access_token, None).0, 200);
    let deadline = Instant::now() + WAIT;
    while login(two, "bob").0 != 200 {
        assert!(Instant::now() < deadline, "the unsuspension never reached node two");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Rooms deleted through node one, whichever node owns each (some are forwarded).
    let (_, fresh) = login(two, "bob");
    let bob_again =
        Account { access_token: fresh["access_token"].as_str().unwrap().to_owned(), ..bob.clone() };
    let mut bob_socket = socket_when_replicated(two, &bob_again);
    let rooms: Vec<_> = (0..6)
        .map(|i| bob_socket.create_room(&format!("room {i}"), palaver_protocol::RoomKind::Public))
        .collect();
    let forwarded_before = metric(one, "palaver_cluster_forwarded_total");
    for room in &rooms {
        let path = format!("/v1/admin/rooms/{room}/delete");
        let deadline = Instant::now() + WAIT;
        loop {
            let (status, body) = call(one, "POST", &path, &alice.access_token, None);
            match status {
                200 => break,
                // The room has not reached node one's replica yet, or is moving.
                404 | 503 if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                _ => panic!("deleting {room} through node one: {status} {body}"),
            }
        }
        bob_socket.err(Op::RoomGet { room: room.clone() }, ErrorCode::NotFound);
    }
    assert!(metric(one, "palaver_cluster_forwarded_total") > forwarded_before, "no deletion was forwarded");
}

#[test]
fn an_admin_deletes_a_room_they_have_no_role_in() {
    let mut server = Server::start(&[]);
    let [root, owner, bob] = ["root", "owner", "bob"].map(|n| register(server.addr, n));
    grant(&mut server, "root");
    let addr = server.addr;
    let mut owner_socket = Client::login(addr, Codec::Json, &owner);
    let room = owner_socket.create_room("lobby", palaver_protocol::RoomKind::Public);
    let mut bob_socket = Client::login(addr, Codec::Json, &bob);
    bob_socket.join(&room, None);
    let dm =
        match bob_socket.ok(Op::DmOpen { user: palaver_protocol::UserId::parse(&owner.user_id).unwrap() }) {
            palaver_protocol::OkBody::Room(r) => r.room.room_id,
            other => panic!("{other:?}"),
        };

    let delete =
        |token: &str, room: &str| call(addr, "POST", &format!("/v1/admin/rooms/{room}/delete"), token, None);
    assert_eq!(
        code(&delete(&owner.access_token, room.as_str())),
        (403, Some("forbidden")),
        "owners use room.delete"
    );
    assert_eq!(code(&delete(&root.access_token, "not-a-room")), (400, Some("invalid")));
    assert_eq!(code(&delete(&root.access_token, "r_none")), (404, Some("not_found")));
    assert_eq!(code(&delete(&root.access_token, dm.as_str())), (403, Some("forbidden")), "direct rooms stay");
    assert_eq!(http(addr, "GET", &format!("/v1/admin/rooms/{room}/delete"), None, &[]).0, 405);

    let (status, body) = delete(&root.access_token, room.as_str());
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"room_id": room, "deleted": true}));
    let gone = bob_socket.err(Op::RoomGet { room: room.clone() }, ErrorCode::NotFound);
    assert!(!gone.is_empty());
    owner_socket.err(Op::RoomGet { room: room.clone() }, ErrorCode::NotFound);
    assert_eq!(code(&delete(&root.access_token, room.as_str())), (404, Some("not_found")));

    let (_, log) = call(addr, "GET", "/v1/admin/audit", &root.access_token, None);
    let deletions: Vec<_> =
        log["entries"].as_array().unwrap().iter().filter(|e| e["action"] == json!("delete_room")).collect();
    assert_eq!(deletions.len(), 2, "each deletion asked of an existing room is audited: {log}");
    assert_eq!((&deletions[1]["room"], &deletions[1]["admin"]), (&json!(room), &json!(root.user_id)));
}
