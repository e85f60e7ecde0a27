//! The SDK against the real server: two clients chat over both codecs, and everything
//! else the typed API offers works end to end.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::time::Duration;

use palaver_e2e::{Server, WAIT};
use palaver_protocol::{Codec, RoomKind};
use palaver_sdk::core::ClientEvent;
use palaver_sdk::{Client, ClientOptions, Credentials, Error, Events};

const PASSWORD: &str = "password-123";

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

async fn next_message(events: &mut Events) -> palaver_protocol::Message {
    within("a message event", events.next_message()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sdk_clients_chat_over_json_and_rkyv() {
    let server = Server::start(&["--shards", "2"]);
    let url = server.url("");
    let alice = Client::connect_with(
        &url,
        Credentials::register("alice", PASSWORD),
        ClientOptions::with_codec(Codec::Json),
    )
    .await
    .unwrap();
    let bob = Client::connect_with(
        &url,
        Credentials::register("bob", PASSWORD),
        ClientOptions::with_codec(Codec::Rkyv),
    )
    .await
    .unwrap();
    let (mut alice_events, mut bob_events) = (alice.events(), bob.events());

    let room = alice.create_room("general", RoomKind::Public).await.unwrap();
    assert_eq!(alice.join(&room.room_id).await.unwrap().last_seq, 0);
    assert_eq!(bob.join(&room.room_id).await.unwrap().last_seq, 0);

    let sent = alice.send(&room.room_id, "hello bob 👋").await.unwrap();
    assert_eq!((sent.seq, sent.duplicate), (1, false));
    assert_eq!(bob.send(&room.room_id, "hi alice").await.unwrap().seq, 2);
    for events in [&mut alice_events, &mut bob_events] {
        let (first, second) = (next_message(events).await, next_message(events).await);
        assert_eq!((first.seq, first.text.as_str()), (1, "hello bob 👋"));
        assert_eq!((second.seq, second.text.as_str()), (2, "hi alice"));
        assert_eq!(first.sender, alice.user_id().unwrap());
        assert_eq!(second.sender, bob.user_id().unwrap());
    }

    // Typing reaches the other member only.
    bob.typing_start(&room.room_id).await.unwrap();
    let typing = within("typing", async {
        loop {
            if let Some(ClientEvent::Typing(t)) = alice_events.next().await {
                return t;
            }
        }
    })
    .await;
    assert!(typing.active && typing.user == bob.user_id().unwrap());

    // Reactions, edits, deletes arrive as events.
    assert_eq!(bob.react(&room.room_id, 1, "👍").await.unwrap().count, 1);
    alice.edit(&room.room_id, 1, "hello bob (edited)").await.unwrap();
    bob.delete(&room.room_id, 2).await.unwrap();
    let (mut reacted, mut edited, mut deleted) = (false, false, false);
    within("reaction, edit and delete events", async {
        while !(reacted && edited && deleted) {
            match alice_events.next().await.unwrap() {
                ClientEvent::Reaction(r) => reacted = r.seq == 1 && r.emoji == "👍" && r.added,
                ClientEvent::Edit(e) => edited = e.seq == 1 && e.text == "hello bob (edited)",
                ClientEvent::Delete(d) => deleted = d.seq == 2,
                _ => {}
            }
        }
    })
    .await;

    // History, pager, sync with receipts, room list, direct messages.
    let page = alice.history(&room.room_id, None, None).await.unwrap();
    assert_eq!(page.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![2, 1]);
    assert!(page[0].deleted && page[1].edited_at.is_some());
    let mut pager = alice.history_pager(&room.room_id, 1);
    let mut paged = Vec::new();
    while let Some(p) = pager.next_page().await.unwrap() {
        paged.extend(p.into_iter().map(|m| m.seq));
    }
    assert_eq!(paged, vec![2, 1]);
    let receipt = bob.receipt(&room.room_id, None, Some(2)).await.unwrap();
    assert_eq!((receipt.delivered, receipt.read), (2, 2));
    let sync = bob.sync().await.unwrap();
    let summary = sync.iter().find(|s| s.room.room_id == room.room_id).unwrap();
    assert_eq!((summary.last_seq, summary.unread), (2, 0));
    let listed = bob.room_list(Some("gener"), None, Some(10)).await.unwrap();
    assert!(listed.results.iter().any(|r| r.room_id == room.room_id));
    let dm = alice.dm_open(&bob.user_id().unwrap()).await.unwrap();
    assert_eq!(bob.dm_open(&alice.user_id().unwrap()).await.unwrap().room_id, dm.room_id);
    bob.ping().await.unwrap();

    // Errors are typed.
    let err = alice.send(&room.room_id, "   ").await.unwrap_err();
    assert_eq!(err.code(), Some(palaver_protocol::ErrorCode::Invalid));
    let nowhere = palaver_protocol::RoomId::parse("r_nosuchroom").unwrap();
    assert_eq!(alice.join(&nowhere).await.unwrap_err().code(), Some(palaver_protocol::ErrorCode::NotFound));

    // Leaving stops the room's events.
    bob.leave(&room.room_id).await.unwrap();
    alice.send(&room.room_id, "after bob left").await.unwrap();
    assert_eq!(next_message(&mut alice_events).await.text, "after bob left");
    tokio::time::sleep(Duration::from_millis(200)).await;
    bob.ping().await.unwrap();
    assert!(
        !std::iter::from_fn(|| bob_events_try_next(&mut bob_events))
            .any(|e| { matches!(e, ClientEvent::Message(m) if m.text == "after bob left") })
    );

    alice.close();
    assert_eq!(within("close", alice.ping()).await, Err(Error::Closed));
}

fn bob_events_try_next(events: &mut Events) -> Option<ClientEvent> {
    use futures_util::FutureExt as _;
    events.next().now_or_never().flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_and_bad_urls_fail_fast() {
    let server = Server::start(&[]);
    let url = server.url("");
    Client::register(&url, "carol", PASSWORD).await.unwrap();
    let err = Client::connect(&url, Credentials::password("carol", "wrong-password")).await.unwrap_err();
    assert_eq!(err.code(), Some(palaver_protocol::ErrorCode::Unauthorized));
    let err = Client::connect(&url, Credentials::register("carol", PASSWORD)).await.unwrap_err();
    assert_eq!(err.code(), Some(palaver_protocol::ErrorCode::Conflict));
    assert!(matches!(
        Client::connect("ftp://x", Credentials::password("a", "b")).await,
        Err(Error::InvalidUrl { .. })
    ));

    // Sessions: login, refresh (rotation), and connecting with tokens alone.
    let session = Client::login(&url, "Carol", PASSWORD).await.unwrap();
    let refreshed = Client::refresh(&url, session.tokens.refresh_token.as_deref().unwrap()).await.unwrap();
    assert_eq!(refreshed.user_id, session.user_id);
    let reused = Client::refresh(&url, session.tokens.refresh_token.as_deref().unwrap()).await.unwrap_err();
    assert_eq!(reused.code(), Some(palaver_protocol::ErrorCode::Unauthorized));
    // The replay ended that session: its access tokens are refused too.
    let ended = Credentials::tokens(palaver_sdk::Tokens::access_only(refreshed.tokens.access_token));
    assert!(Client::connect(&url, ended).await.is_err());
    let session = Client::login(&url, "carol", PASSWORD).await.unwrap();
    let carol = Client::connect(
        &url,
        Credentials::tokens(palaver_sdk::Tokens::access_only(session.tokens.access_token)),
    )
    .await
    .unwrap();
    assert_eq!(carol.user_id(), Some(session.user_id));
    let bad =
        Client::connect(&url, Credentials::tokens(palaver_sdk::Tokens::access_only("not-a-token"))).await;
    assert!(bad.is_err());
}
