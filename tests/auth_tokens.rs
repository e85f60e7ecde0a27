//! Access and refresh tokens as clients use them.

use palaver_e2e::{Client, Server, http, post_json, register};
use palaver_protocol::{Codec, ErrorCode, Op};
use serde_json::json;

#[test]
fn refresh_tokens_rotate_and_a_replayed_one_revokes_its_family() {
    let server = Server::start(&[]);
    let alice = register(server.addr, "alice");
    let (status, first) =
        post_json(server.addr, "/v1/auth/refresh", &json!({"refresh_token": alice.refresh_token}));
    assert_eq!(status, 200, "{first}");
    let new_refresh = first["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(new_refresh, alice.refresh_token);
    let access = first["access_token"].as_str().unwrap().to_owned();
    let mut c = Client::connect(server.addr, Codec::Json);
    c.ok(Op::Auth { token: access });

    // The rotated token is replayed: refused, and the whole family with it.
    let (status, body) =
        post_json(server.addr, "/v1/auth/refresh", &json!({"refresh_token": alice.refresh_token}));
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")));
    let (status, _) = post_json(server.addr, "/v1/auth/refresh", &json!({"refresh_token": new_refresh}));
    assert_eq!(status, 401, "the family is revoked after a replay");

    // A fresh login starts a new family.
    let (status, login) =
        post_json(server.addr, "/v1/auth/login", &json!({"username": "alice", "password": "password-123"}));
    assert_eq!(status, 200);
    let (status, _) =
        post_json(server.addr, "/v1/auth/refresh", &json!({"refresh_token": login["refresh_token"]}));
    assert_eq!(status, 200);
    let (status, _) = post_json(server.addr, "/v1/auth/refresh", &json!({"refresh_token": "made-up"}));
    assert_eq!(status, 401);
}

#[test]
fn a_bearer_header_on_the_upgrade_authenticates_the_socket() {
    let server = Server::start(&[]);
    let alice = register(server.addr, "alice");
    let mut c = Client::connect_with(server.addr, Codec::Rkyv, Some(&alice.access_token));
    c.ok(Op::Ping {});
    c.err(Op::Auth { token: alice.access_token.clone() }, ErrorCode::Invalid);
    let (status, body) = http(
        server.addr,
        "GET",
        "/v1/ws",
        None,
        &[
            ("upgrade", "websocket"),
            ("connection", "upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("authorization", "Bearer forged.token.here"),
        ],
    );
    assert_eq!(status, 401, "{body}");
}

#[test]
fn accounts_and_tokens_survive_a_restart() {
    let mut server = Server::start(&[]);
    let alice = register(server.addr, "alice");
    server.terminate();
    server.restart();
    let mut c = Client::connect(server.addr, Codec::Json);
    c.ok(Op::Auth { token: alice.access_token.clone() });
    let (status, _) =
        post_json(server.addr, "/v1/auth/login", &json!({"username": "alice", "password": "password-123"}));
    assert_eq!(status, 200, "accounts are durable");
}
