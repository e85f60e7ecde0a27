//! The SDK across a server crash: `kill -9` and restart mid-stream. The event stream
//! resumes with every message exactly once and in order, and sends in flight during the
//! cut are stored exactly once.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::collections::BTreeSet;

use palaver_e2e::{Server, WAIT};
use palaver_protocol::{Codec, RoomKind};
use palaver_sdk::core::ClientEvent;
use palaver_sdk::{Client, ClientOptions, Credentials};

fn options(codec: Codec) -> ClientOptions {
    let mut options = ClientOptions::with_codec(codec);
    // Keep reconnect delays short so the test does not wait on backoff.
    options.core.backoff_initial_ms = 50;
    options.core.backoff_max_ms = 500;
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_restart_mid_stream_loses_and_duplicates_nothing() {
    let mut server = Server::start(&["--shards", "2"]);
    let url = server.url("");
    let alice =
        Client::connect_with(&url, Credentials::register("alice", "password-123"), options(Codec::Json))
            .await
            .unwrap();
    let bob = Client::connect_with(&url, Credentials::register("bob", "password-123"), options(Codec::Rkyv))
        .await
        .unwrap();
    let mut bob_events = bob.events();
    let room = alice.create_room("crashy", RoomKind::Public).await.unwrap().room_id;
    alice.join(&room).await.unwrap();
    bob.join(&room).await.unwrap();

    // Alice pipelines 300 sends from a task; every one must eventually be acknowledged.
    const TOTAL: usize = 300;
    let sender = {
        let (alice, room) = (alice.clone(), room.clone());
        tokio::spawn(async move {
            let sends: Vec<_> = (0..TOTAL)
                .map(|i| {
                    let (alice, room) = (alice.clone(), room.clone());
                    tokio::spawn(async move { alice.send(&room, &format!("m{i:03}")).await })
                })
                .collect();
            let mut seqs = Vec::new();
            for s in sends {
                seqs.push(s.await.unwrap().unwrap().seq);
            }
            seqs
        })
    };

    // Crash the server once Bob has seen some of the stream (sends are in flight).
    let mut seen = Vec::new();
    while seen.len() < 40 {
        if let ClientEvent::Message(m) = tokio::time::timeout(WAIT, bob_events.next()).await.unwrap().unwrap()
        {
            seen.push((m.seq, m.text));
        }
    }
    server.kill9();
    server.restart();

    let mut reconnected = false;
    while seen.len() < TOTAL {
        match tokio::time::timeout(WAIT, bob_events.next()).await.expect("the stream stalled").unwrap() {
            ClientEvent::Message(m) => seen.push((m.seq, m.text)),
            ClientEvent::Connected { .. } => reconnected = true,
            _ => {}
        }
    }
    assert!(reconnected, "bob reconnected after the crash");
    let seqs = tokio::time::timeout(WAIT * 2, sender).await.unwrap().unwrap();

    // Bob saw every seq exactly once, in order.
    assert_eq!(seen.iter().map(|(s, _)| *s).collect::<Vec<_>>(), (1..=TOTAL as u64).collect::<Vec<_>>());
    // Every send was acknowledged with a distinct seq.
    assert_eq!(seqs.iter().copied().collect::<BTreeSet<_>>().len(), TOTAL);
    // And the room stores each text exactly once.
    let mut stored = Vec::new();
    let mut pager = alice.history_pager(&room, 100);
    while let Some(page) = pager.next_page().await.unwrap() {
        stored.extend(page.into_iter().map(|m| m.text));
    }
    assert_eq!(stored.len(), TOTAL);
    let distinct: BTreeSet<_> = stored.iter().collect();
    assert_eq!(distinct.len(), TOTAL, "no text stored twice");
    let texts: BTreeSet<String> = seen.into_iter().map(|(_, t)| t).collect();
    assert_eq!(texts, (0..TOTAL).map(|i| format!("m{i:03}")).collect());
    // Nothing left waiting in the outbox: a further send gets the next seq.
    assert_eq!(alice.send(&room, "after").await.unwrap().seq, TOTAL as u64 + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_made_while_the_server_is_down_is_delivered_after_it_returns() {
    let mut server = Server::start(&[]);
    let url = server.url("");
    let alice =
        Client::connect_with(&url, Credentials::register("alice", "password-123"), options(Codec::Rkyv))
            .await
            .unwrap();
    let mut events = alice.events();
    let room = alice.create_room("offline", RoomKind::Public).await.unwrap().room_id;
    alice.join(&room).await.unwrap();
    alice.send(&room, "before").await.unwrap();
    server.kill9();
    let pending = {
        let (alice, room) = (alice.clone(), room.clone());
        tokio::spawn(async move { alice.send(&room, "during").await })
    };
    // Wait until the client noticed the cut, then bring the server back.
    let mut texts = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, events.next()).await.unwrap().unwrap() {
            ClientEvent::Disconnected { .. } => break,
            ClientEvent::Message(m) => texts.push(m.text),
            _ => {}
        }
    }
    server.restart();
    assert_eq!(tokio::time::timeout(WAIT, pending).await.unwrap().unwrap().unwrap().seq, 2);
    while texts.len() < 2 {
        if let ClientEvent::Message(m) = tokio::time::timeout(WAIT, events.next()).await.unwrap().unwrap() {
            texts.push(m.text);
        }
    }
    assert_eq!(texts, ["before", "during"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_tokens_are_refreshed_and_a_revoked_family_falls_back_to_the_password() {
    let mut server = Server::start(&["--access-token-ttl-secs", "3"]);
    let url = server.url("");
    let alice =
        Client::connect_with(&url, Credentials::register("alice", "password-123"), options(Codec::Json))
            .await
            .unwrap();
    let mut events = alice.events();
    let first = alice.tokens().unwrap();

    // Refreshed before it expires, while connected.
    let refreshed = loop {
        if let ClientEvent::Tokens(t) = tokio::time::timeout(WAIT, events.next()).await.unwrap().unwrap() {
            break t;
        }
    };
    assert_ne!(refreshed.refresh_token, first.refresh_token);
    assert_eq!(alice.tokens().as_ref(), Some(&refreshed));

    // Replaying the used-up refresh token revokes the whole family (theft detection),
    // so the client's next refresh is refused and it logs in again with its password.
    let reuse = Client::refresh(&url, first.refresh_token.as_deref().unwrap()).await.unwrap_err();
    assert_eq!(reuse.code(), Some(palaver_protocol::ErrorCode::Unauthorized));
    let after_login = loop {
        if let ClientEvent::Tokens(t) = tokio::time::timeout(WAIT, events.next()).await.unwrap().unwrap() {
            break t;
        }
    };
    // Its refresh was refused (the family is revoked), so these come from a new login.
    assert_ne!(after_login.refresh_token, refreshed.refresh_token);
    server.kill9();
    server.restart();
    let room = loop {
        // Requests wait for the reconnect, which needs a fresh token: the old one expired.
        match alice.create_room("after", RoomKind::Public).await {
            Ok(room) => break room.room_id,
            Err(palaver_sdk::Error::ConnectionLost | palaver_sdk::Error::Timeout) => continue,
            Err(e) => panic!("{e}"),
        }
    };
    alice.join(&room).await.unwrap();
    assert_eq!(alice.send(&room, "still here").await.unwrap().seq, 1);
    assert!(alice.is_connected());
}
