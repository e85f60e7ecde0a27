//! Sessions a user can end: logout, log out everywhere and a password change refuse the
//! ended logins' refresh and access tokens from then on and close their live sockets,
//! on every node of a cluster.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use palaver_e2e::{Client, Nats, Server, WAIT, http, metric, mint_access_token, post_json, register};
use palaver_protocol::{Codec, ErrorCode, Op, ReplyBody};
use serde_json::{Value, json};

/// POSTs `body` (JSON text) with an access token.
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

fn login(addr: SocketAddr, username: &str, password: &str) -> (u16, Value) {
    post_json(addr, "/v1/auth/login", &json!({"username": username, "password": password}))
}

fn token(body: &Value, field: &str) -> String {
    body[field].as_str().unwrap_or_else(|| panic!("no {field} in {body}")).to_owned()
}

/// The `auth` op's refusal of `token` on a fresh socket (its message), or `None` if it
/// authenticated.
fn auth_refusal(addr: SocketAddr, token: &str) -> Option<String> {
    let mut client = Client::connect(addr, Codec::Json);
    match client.request(Op::Auth { token: token.to_owned() }) {
        ReplyBody::Ok(_) => None,
        ReplyBody::Err(e) => {
            assert_eq!(e.code, ErrorCode::Unauthorized, "{e:?}");
            Some(e.message)
        }
    }
}

fn refresh_status(addr: SocketAddr, refresh_token: &str) -> u16 {
    post_json(addr, "/v1/auth/refresh", &json!({"refresh_token": refresh_token})).0
}

#[test]
fn logout_ends_this_session_and_no_other() {
    let server = Server::start(&[]);
    let first = register(server.addr, "alice");
    let (status, second) = login(server.addr, "alice", "password-123");
    assert_eq!(status, 200, "{second}");
    let mut first_socket = Client::connect_with(server.addr, Codec::Json, Some(&first.access_token));
    let mut second_socket = Client::connect(server.addr, Codec::Rkyv);
    second_socket.ok(Op::Auth { token: token(&second, "access_token") });
    first_socket.ok(Op::Ping {});

    let (status, body) = post_as(server.addr, "/v1/auth/logout", &first.access_token, "");
    assert_eq!((status, &body), (200, &json!({})));
    assert_eq!(
        first_socket.expect_close_with_reason(),
        Some((4001, "session ended: logged out".to_owned())),
        "the live socket of the ended session is closed"
    );
    let refusal =
        auth_refusal(server.addr, &first.access_token).expect("an ended session's token is refused");
    assert!(refusal.contains("session has ended"), "{refusal}");
    assert_eq!(refresh_status(server.addr, &first.refresh_token), 401);
    let auth = format!("Bearer {}", first.access_token);
    let (status, body) = http(server.addr, "GET", "/v1/files/f_none", None, &[("authorization", &auth)]);
    assert_eq!(status, 401, "the HTTP routes refuse it too: {body}");
    let (status, body) = post_as(server.addr, "/v1/auth/logout", &first.access_token, "{}");
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")));

    // The other session goes on.
    second_socket.ok(Op::Ping {});
    assert_eq!(auth_refusal(server.addr, &token(&second, "access_token")), None);
    assert_eq!(refresh_status(server.addr, &token(&second, "refresh_token")), 200);
}

#[test]
fn logout_routes_refuse_bad_requests_with_json_errors() {
    let server = Server::start(&[]);
    let alice = register(server.addr, "alice");
    let code = |(status, body): (u16, Value)| (status, body["error"]["code"].as_str().map(str::to_owned));
    let expect = |status: u16, code: &str| (status, Some(code.to_owned()));
    let change = r#"{"current_password":"password-123","new_password":"another-password"}"#;
    for path in ["/v1/auth/logout", "/v1/auth/logout-all", "/v1/auth/password"] {
        let (status, text) = http(server.addr, "GET", path, None, &[]);
        assert_eq!(status, 405, "{path}: {text}");
    }
    for path in ["/v1/auth/logout", "/v1/auth/logout-all"] {
        assert_eq!(code(post_json(server.addr, path, &json!({}))), expect(401, "unauthorized"), "{path}");
        assert_eq!(code(post_as(server.addr, path, "not.a.token", "")), expect(401, "unauthorized"));
        let fields = post_as(server.addr, path, &alice.access_token, r#"{"everywhere":true}"#);
        assert_eq!(code(fields), expect(400, "invalid"), "{path} takes no fields");
        assert_eq!(code(post_as(server.addr, path, &alice.access_token, "[]")), expect(400, "invalid"));
    }
    let path = "/v1/auth/password";
    assert_eq!(code(post_as(server.addr, path, "not.a.token", change)), expect(401, "unauthorized"));
    assert_eq!(code(post_as(server.addr, path, &alice.access_token, "{}")), expect(400, "invalid"));
    // Nothing was ended by the refused requests.
    assert_eq!(auth_refusal(server.addr, &alice.access_token), None);
    assert_eq!(login(server.addr, "alice", "password-123").0, 200);
}

#[test]
fn logging_out_everywhere_ends_every_session_and_older_backend_tokens() {
    let server = Server::start(&[]);
    let first = register(server.addr, "alice");
    let (_, second) = login(server.addr, "alice", "password-123");
    let backend_token = mint_access_token(&first.user_id, 300);
    let mut sockets = [
        Client::connect_with(server.addr, Codec::Json, Some(&first.access_token)),
        Client::connect_with(server.addr, Codec::Rkyv, Some(&token(&second, "access_token"))),
        Client::connect_with(server.addr, Codec::Json, Some(&backend_token)),
    ];
    let bob = register(server.addr, "bob");
    let mut bob_socket = Client::login(server.addr, Codec::Json, &bob);

    let (status, body) = post_as(server.addr, "/v1/auth/logout-all", &token(&second, "access_token"), "{}");
    assert_eq!((status, &body), (200, &json!({})));
    for socket in &mut sockets {
        assert_eq!(
            socket.expect_close_with_reason(),
            Some((4001, "session ended: logged out everywhere".to_owned()))
        );
    }
    for access in [&first.access_token, &token(&second, "access_token"), &backend_token] {
        assert!(auth_refusal(server.addr, access).is_some(), "an access token of an ended session works");
    }
    assert_eq!(refresh_status(server.addr, &first.refresh_token), 401);
    assert_eq!(refresh_status(server.addr, &token(&second, "refresh_token")), 401);
    bob_socket.ok(Op::Ping {});
    assert_eq!(auth_refusal(server.addr, &bob.access_token), None, "another user is untouched");

    // Signing in again works, and so does a backend token minted after (`iat` is whole
    // seconds: one minted in the same second as the end is refused).
    let (status, again) = login(server.addr, "alice", "password-123");
    assert_eq!(status, 200);
    assert_eq!(auth_refusal(server.addr, &token(&again, "access_token")), None);
    assert_eq!(refresh_status(server.addr, &token(&again, "refresh_token")), 200);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(auth_refusal(server.addr, &mint_access_token(&first.user_id, 300)), None);
}

#[test]
fn a_backend_token_logs_out_the_tokens_of_its_sid_minted_until_then() {
    let server = Server::start(&[]);
    let alice = register(server.addr, "alice");
    let minted = mint_access_token(&alice.user_id, 300);
    let mut socket = Client::connect_with(server.addr, Codec::Json, Some(&minted));
    let (status, _) = post_as(server.addr, "/v1/auth/logout", &minted, "");
    assert_eq!(status, 200);
    assert_eq!(socket.expect_close_with_reason(), Some((4001, "session ended: logged out".to_owned())));
    assert!(auth_refusal(server.addr, &minted).is_some());
    assert_eq!(auth_refusal(server.addr, &alice.access_token), None, "the user's own login goes on");
    // The backend's later tokens reuse the `sid`: they are new sessions (`iat` is whole
    // seconds, so one minted within the logout's second is refused too).
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(auth_refusal(server.addr, &mint_access_token(&alice.user_id, 300)), None);
}

#[test]
fn a_new_password_ends_every_session_and_answers_a_new_one() {
    let server = Server::start(&[]);
    let alice = register(server.addr, "alice");
    let (_, other) = login(server.addr, "alice", "password-123");
    let mut socket = Client::connect_with(server.addr, Codec::Json, Some(&alice.access_token));
    let mut other_socket =
        Client::connect_with(server.addr, Codec::Json, Some(&token(&other, "access_token")));

    let change = |current: &str, new: &str| {
        post_as(
            server.addr,
            "/v1/auth/password",
            &alice.access_token,
            &json!({"current_password": current, "new_password": new}).to_string(),
        )
    };
    let (status, body) = change("wrong-password", "a-new-password");
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "{body}");
    let (status, body) = change("password-123", "short");
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid")), "{body}");
    socket.ok(Op::Ping {});

    let (status, fresh) = change("password-123", "a-new-password");
    assert_eq!(status, 200, "{fresh}");
    for socket in [&mut socket, &mut other_socket] {
        assert_eq!(
            socket.expect_close_with_reason(),
            Some((4001, "session ended: password changed".to_owned()))
        );
    }
    assert!(auth_refusal(server.addr, &alice.access_token).is_some());
    assert!(auth_refusal(server.addr, &token(&other, "access_token")).is_some());
    assert_eq!(refresh_status(server.addr, &alice.refresh_token), 401);
    assert_eq!(auth_refusal(server.addr, &token(&fresh, "access_token")), None, "the answer is a live login");
    assert_eq!(refresh_status(server.addr, &token(&fresh, "refresh_token")), 200);
    assert_eq!(login(server.addr, "alice", "password-123").0, 401);
    assert_eq!(login(server.addr, "alice", "a-new-password").0, 200);

    // The new password survives a restart (it is stored, not cached).
    let mut server = server;
    server.terminate();
    server.restart();
    assert_eq!(login(server.addr, "alice", "a-new-password").0, 200);
    assert!(auth_refusal(server.addr, &alice.access_token).is_some(), "ended sessions stay ended");
}

#[test]
fn a_replayed_refresh_token_ends_its_session_and_closes_its_sockets() {
    let server = Server::start(&[]);
    let alice = register(server.addr, "alice");
    let mut socket = Client::connect_with(server.addr, Codec::Json, Some(&alice.access_token));
    assert_eq!(refresh_status(server.addr, &alice.refresh_token), 200);
    assert_eq!(refresh_status(server.addr, &alice.refresh_token), 401, "a replay");
    assert_eq!(
        socket.expect_close_with_reason(),
        Some((4001, "session ended: refresh token reused".to_owned()))
    );
    assert!(auth_refusal(server.addr, &alice.access_token).is_some());
}

/// Until every node hears `n` live nodes.
fn wait_live(addrs: &[SocketAddr], n: u64) {
    let deadline = Instant::now() + WAIT;
    while !addrs.iter().all(|a| metric(*a, "palaver_cluster_live_nodes") == n) {
        assert!(Instant::now() < deadline, "the nodes did not see {n} live nodes");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A socket on `addr` authenticated with `token`, once the account has replicated there.
fn socket_when_replicated(addr: SocketAddr, token: &str) -> Client {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut client = Client::connect(addr, Codec::Json);
        match client.request(Op::Auth { token: token.to_owned() }) {
            ReplyBody::Ok(_) => return client,
            ReplyBody::Err(e) => {
                assert!(Instant::now() < deadline, "cannot log in on {addr}: {e:?}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

#[test]
fn sessions_end_on_every_node_of_a_cluster() {
    let nats = Nats::start();
    let nodes: Vec<Server> =
        ["n1", "n2"].iter().map(|id| Server::start(&["--cluster", &nats.url, "--node-id", id])).collect();
    wait_live(&nodes.iter().map(|n| n.addr).collect::<Vec<_>>(), 2);
    let (one, two) = (nodes[0].addr, nodes[1].addr);
    let alice = register(one, "alice");
    let (status, second) = login(one, "alice", "password-123");
    assert_eq!(status, 200);
    let mut remote = socket_when_replicated(two, &alice.access_token);
    let mut remote_second = socket_when_replicated(two, &token(&second, "access_token"));

    // A logout on node one closes the session's socket on node two, and node two
    // refuses its token from then on.
    let (status, _) = post_as(one, "/v1/auth/logout", &alice.access_token, "");
    assert_eq!(status, 200);
    assert_eq!(remote.expect_close_with_reason(), Some((4001, "session ended: logged out".to_owned())));
    assert!(auth_refusal(two, &alice.access_token).is_some());
    remote_second.ok(Op::Ping {});

    // A new password set on node two ends the remaining session on both nodes, and the
    // new password signs in on node one.
    let mut local_second = socket_when_replicated(one, &token(&second, "access_token"));
    let (status, fresh) = post_as(
        two,
        "/v1/auth/password",
        &token(&second, "access_token"),
        &json!({"current_password": "password-123", "new_password": "a-new-password"}).to_string(),
    );
    assert_eq!(status, 200, "{fresh}");
    for socket in [&mut remote_second, &mut local_second] {
        assert_eq!(
            socket.expect_close_with_reason(),
            Some((4001, "session ended: password changed".to_owned()))
        );
    }
    assert!(auth_refusal(one, &token(&second, "access_token")).is_some());
    let deadline = Instant::now() + WAIT;
    while login(one, "alice", "a-new-password").0 != 200 {
        assert!(Instant::now() < deadline, "the new password never reached node one");
        std::thread::sleep(Duration::from_millis(50));
    }
    socket_when_replicated(one, &token(&fresh, "access_token")).ok(Op::Ping {});
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_logs_out_changes_passwords_and_hears_sessions_end() {
    use palaver_sdk::{Client as SdkClient, Credentials};
    let server = Server::start(&[]);
    let url = server.url("");
    let phone = SdkClient::connect(&url, Credentials::register("alice", "password-123")).await.unwrap();
    let laptop_session = SdkClient::login(&url, "alice", "password-123").await.unwrap();
    let laptop = SdkClient::connect(&url, Credentials::tokens(laptop_session.tokens.clone())).await.unwrap();
    laptop.ping().await.unwrap();

    // A new password from the phone: its client closes and hands back the new session;
    // the laptop, holding only tokens, is refused and closes with the error.
    let fresh = phone.change_password("password-123", "a-new-password").await.unwrap();
    assert!(phone.ping().await.is_err(), "the client is closed");
    let refused = tokio::time::timeout(WAIT, async {
        loop {
            match laptop.ping().await {
                Err(e) if !e.is_transient() => return e,
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the laptop is refused in time");
    assert!(matches!(refused, palaver_sdk::Error::Closed | palaver_sdk::Error::Server { .. }), "{refused:?}");
    assert!(auth_refusal(server.addr, &laptop_session.tokens.access_token).is_some());

    // The new session works; logging it out ends it.
    let phone = SdkClient::connect(&url, Credentials::tokens(fresh.tokens.clone())).await.unwrap();
    phone.ping().await.unwrap();
    phone.logout().await.unwrap();
    assert!(auth_refusal(server.addr, &fresh.tokens.access_token).is_some());
    assert_eq!(refresh_status(server.addr, fresh.tokens.refresh_token.as_deref().unwrap()), 401);

    // Everywhere: a second login's client ends the other too.
    let one = SdkClient::connect(&url, Credentials::password("alice", "a-new-password")).await.unwrap();
    let two_session = SdkClient::login(&url, "alice", "a-new-password").await.unwrap();
    let two = SdkClient::connect(&url, Credentials::tokens(two_session.tokens.clone())).await.unwrap();
    let one_tokens = one.tokens().unwrap();
    two.logout_everywhere().await.unwrap();
    assert!(auth_refusal(server.addr, &one_tokens.access_token).is_some());
    assert!(auth_refusal(server.addr, &two_session.tokens.access_token).is_some());
    assert!(two.logout().await.is_err(), "a closed client's session is over already");
    // A client holding the password signs in again by itself: a new session.
    tokio::time::timeout(WAIT, one.ping()).await.expect("the password client reconnects").unwrap();
    assert_ne!(one.tokens().unwrap().access_token, one_tokens.access_token);
}
