//! Access tokens minted by an application's backend (docs/PROTOCOL.md §2.6, "Minting
//! access tokens in your backend"): signed with the server's secret over `sub`, `sid`,
//! `iat`, `nbf` and `exp`, for an account that exists; each claim is required. An SDK
//! client that gets every token from such a backend (`Credentials::source`) renews them
//! before they expire and after a `kill -9` + restart, as many times as it takes, and a
//! backend that keeps minting tokens the server refuses ends the client unauthorized.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests: failing loudly is the point")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use palaver_e2e::{Client as RawClient, JWT_SECRET, Server, WAIT, mint_access_token, register, sign_hs256};
use palaver_protocol::{Codec, ErrorCode, Op, RoomKind};
use palaver_sdk::core::ClientEvent;
use palaver_sdk::{Client, ClientOptions, Credentials, Error, TokenSource};

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn a_backend_minted_token_authenticates_and_every_claim_is_required() {
    let server = Server::start(&[]);
    let alice = register(server.addr, "alice");
    let mut socket = RawClient::connect(server.addr, Codec::Json);
    socket.ok(Op::Auth { token: mint_access_token(&alice.user_id, 60) });

    let now = now_secs();
    let all =
        serde_json::json!({"sub": alice.user_id, "sid": "backend", "iat": now, "nbf": now, "exp": now + 60});
    for claim in ["sub", "sid", "iat", "nbf", "exp"] {
        let mut claims = all.clone();
        claims.as_object_mut().unwrap().remove(claim);
        let mut socket = RawClient::connect(server.addr, Codec::Json);
        socket.err(Op::Auth { token: sign_hs256(&claims, JWT_SECRET.as_bytes()) }, ErrorCode::Unauthorized);
    }
    // A backend mints for accounts that exist on the server.
    let mut socket = RawClient::connect(server.addr, Codec::Json);
    let why =
        socket.err(Op::Auth { token: mint_access_token("u_neverregistered", 60) }, ErrorCode::Unauthorized);
    assert!(why.contains("does not exist"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_renews_backend_tokens_across_expiries_and_a_restart() {
    let mut server = Server::start(&[]);
    let bob = register(server.addr, "bob");
    let minted = Arc::new(AtomicU64::new(0));
    // The "backend": 4-second tokens for bob, one per call.
    let source = {
        let (minted, user) = (minted.clone(), bob.user_id.clone());
        TokenSource::new(move || {
            minted.fetch_add(1, Ordering::SeqCst);
            let token = mint_access_token(&user, 4);
            async move { Ok(Some(token)) }
        })
    };
    let client = Client::connect(&server.url(""), Credentials::source(source)).await.unwrap();
    let mut events = client.events();
    let room = client.create_room("minted", RoomKind::Public).await.unwrap().room_id;
    client.join(&room).await.unwrap();
    assert_eq!(client.send(&room, "one").await.unwrap().seq, 1);
    // Renewed before each expiry while connected.
    tokio::time::sleep(Duration::from_secs(9)).await;
    let before_restart = minted.load(Ordering::SeqCst);
    assert!(before_restart >= 3, "renewed while connected: {before_restart} tokens");

    // Down for longer than a token lives (and the server's 5 s leeway): the client's
    // token is expired when the server is back, so it asks the backend for another.
    server.kill9();
    tokio::time::sleep(Duration::from_secs(10)).await;
    server.restart();
    let sent = tokio::time::timeout(WAIT * 2, client.send(&room, "two")).await.unwrap().unwrap();
    assert_eq!(sent.seq, 2);
    assert!(minted.load(Ordering::SeqCst) > before_restart);
    let mut texts = Vec::new();
    while texts.len() < 2 {
        match tokio::time::timeout(WAIT, events.next()).await.unwrap() {
            Some(ClientEvent::Message(m)) => texts.push(m.text),
            Some(_) => {}
            None => panic!("the client closed"),
        }
    }
    assert_eq!(texts, ["one", "two"]);
    assert!(client.is_connected());
    client.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_the_server_refuses_end_the_client_unauthorized() {
    let server = Server::start(&[]);
    let source = TokenSource::new(|| {
        let token = mint_access_token("u_neverregistered", 60);
        async move { Ok(Some(token)) }
    });
    let mut options = ClientOptions::default();
    options.core.max_token_failures = 3;
    let started = std::time::Instant::now();
    match Client::connect_with(&server.url(""), Credentials::source(source), options).await {
        Err(Error::Auth(why)) => assert!(why.contains("3 attempts"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < WAIT);
}
