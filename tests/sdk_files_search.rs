//! The SDK's file and search helpers against the real server: upload, download and
//! share a file with typed answers and typed refusals; search with room, sender and time
//! filters, in both orders, page after page.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::collections::BTreeSet;
use std::time::Duration;

use palaver_e2e::{Server, WAIT, png_bytes};
use palaver_protocol::{ErrorCode, MessageKind, RoomKind, SearchHit};
use palaver_sdk::{Client, Credentials, Error, SearchQuery};

const PASSWORD: &str = "password-123";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_uploaded_shared_and_downloaded_by_members_only() {
    let server = Server::start(&[]);
    let url = server.url("");
    let alice = Client::connect(&url, Credentials::register("alice", PASSWORD)).await.unwrap();
    let bob = Client::connect(&url, Credentials::register("bob", PASSWORD)).await.unwrap();
    let eve = Client::connect(&url, Credentials::register("eve", PASSWORD)).await.unwrap();
    let room = alice.create_room("photos", RoomKind::Public).await.unwrap().room_id;
    alice.join(&room).await.unwrap();
    bob.join(&room).await.unwrap();
    let mut bob_events = bob.events();

    // An image: typed from its bytes, sized from its header; the odd name comes back safe.
    let png = png_bytes(640, 480);
    let (file, sent) = alice.send_file(&room, "holiday photo ✓.png", png.clone(), "the view").await.unwrap();
    assert_eq!((file.content_type.as_str(), file.width, file.height), ("image/png", Some(640), Some(480)));
    assert_eq!(file.size, png.len() as u64);
    assert_eq!(file.name, "holiday photo ✓.png");
    let shared = tokio::time::timeout(WAIT, bob_events.next_message()).await.unwrap().unwrap();
    assert_eq!((shared.seq, shared.kind, shared.text.as_str()), (sent.seq, MessageKind::Image, "the view"));
    let reference = shared.file.unwrap();
    assert_eq!(reference.file_id, file.file_id);
    assert_eq!(bob.download(&reference.file_id).await.unwrap(), png);

    // Text files are files; plain upload then a message of one's own making.
    let notes = alice.upload(&room, "notes.txt", b"line one\nline two\n".to_vec()).await.unwrap();
    assert_eq!(notes.content_type, "text/plain");
    assert_eq!(bob.download(&notes.file_id).await.unwrap(), b"line one\nline two\n");

    // Refusals are typed errors.
    let refused = |e: Error| e.code();
    assert_eq!(eve.download(&file.file_id).await.map_err(refused), Err(Some(ErrorCode::Forbidden)));
    assert_eq!(
        eve.upload(&room, "x.png", png.clone()).await.map_err(refused),
        Err(Some(ErrorCode::Forbidden))
    );
    let executable = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0".repeat(64);
    assert_eq!(
        alice.upload(&room, "a.out", executable).await.map_err(refused),
        Err(Some(ErrorCode::Invalid))
    );
    assert_eq!(
        alice.upload(&room, "empty", Vec::new()).await.map_err(refused),
        Err(Some(ErrorCode::Invalid))
    );
    assert_eq!(bob.download("f_doesnotexist").await.map_err(refused), Err(Some(ErrorCode::NotFound)));
    assert!(matches!(bob.download("../etc/passwd").await, Err(Error::Invalid(_))));
    let nowhere = palaver_protocol::RoomId::parse("r_nosuchroom").unwrap();
    assert_eq!(alice.upload(&nowhere, "x.png", png).await.map_err(refused), Err(Some(ErrorCode::NotFound)));
}

/// Searches until `done` holds (the index commits about twice a second).
async fn search_until(
    client: &Client,
    query: SearchQuery,
    done: impl Fn(&[SearchHit]) -> bool,
) -> Vec<SearchHit> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let hits = client.search(query.clone()).await.unwrap().hits;
        if done(&hits) {
            return hits;
        }
        assert!(tokio::time::Instant::now() < deadline, "search {query:?} never settled: {hits:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_filters_by_room_sender_and_time_and_pages_through_everything() {
    let server = Server::start(&[]);
    let url = server.url("");
    let alice = Client::connect(&url, Credentials::register("alice", PASSWORD)).await.unwrap();
    let bob = Client::connect(&url, Credentials::register("bob", PASSWORD)).await.unwrap();
    let (alice_id, bob_id) = (alice.user_id().unwrap(), bob.user_id().unwrap());
    let ops = alice.create_room("ops", RoomKind::Public).await.unwrap().room_id;
    let random = alice.create_room("random", RoomKind::Public).await.unwrap().room_id;
    for room in [&ops, &random] {
        alice.join(room).await.unwrap();
        bob.join(room).await.unwrap();
    }
    // Twelve messages about deploys: alternating senders, half in each room.
    let mut sent = Vec::new();
    for i in 0..12 {
        let (client, room) = match i % 4 {
            0 => (&alice, &ops),
            1 => (&bob, &ops),
            2 => (&alice, &random),
            _ => (&bob, &random),
        };
        let ok = client.send(room, &format!("deploy number {i} went fine")).await.unwrap();
        sent.push((room.clone(), ok.seq, ok.ts));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all = search_until(&alice, SearchQuery::new("deploy").limit(50), |h| h.len() == 12).await;
    assert_eq!(all.len(), 12);

    let in_ops = alice.search(SearchQuery::new("deploy").in_room(&ops).limit(50)).await.unwrap().hits;
    assert_eq!(in_ops.len(), 6);
    assert!(in_ops.iter().all(|h| h.room == ops));
    let by_bob = alice.search(SearchQuery::new("deploy").from_sender(&bob_id).limit(50)).await.unwrap().hits;
    assert_eq!(by_bob.len(), 6);
    assert!(by_bob.iter().all(|h| h.sender == bob_id));
    let alice_in_random =
        alice.search(SearchQuery::new("deploy").in_room(&random).from_sender(&alice_id)).await.unwrap().hits;
    assert_eq!(alice_in_random.len(), 3);

    // Time filters: strictly before the 7th message's time, strictly after the 5th's.
    let (ts5, ts7) = (sent[5].2, sent[7].2);
    let before = alice.search(SearchQuery::new("deploy").before(ts7).limit(50)).await.unwrap().hits;
    assert!(before.iter().all(|h| h.ts < ts7) && !before.is_empty());
    let after = alice.search(SearchQuery::new("deploy").after(ts5).limit(50)).await.unwrap().hits;
    assert!(after.iter().all(|h| h.ts > ts5) && !after.is_empty());

    // Newest first, five per page, following the cursor: every hit once, in order.
    let mut pager = alice.search_pager(SearchQuery::new("deploy").newest_first().limit(5));
    let mut pages = Vec::new();
    while let Some(page) = pager.next_page().await.unwrap() {
        assert!(page.len() <= 5);
        pages.push(page);
    }
    assert_eq!(pages.len(), 3);
    let paged: Vec<&SearchHit> = pages.iter().flatten().collect();
    assert!(paged.windows(2).all(|w| w[0].ts >= w[1].ts), "newest first");
    let distinct: BTreeSet<(String, u64)> = paged.iter().map(|h| (h.room.to_string(), h.seq)).collect();
    assert_eq!(distinct.len(), 12);

    // The cursor by hand gives the same second page.
    let first = alice.search(SearchQuery::new("deploy").newest_first().limit(5)).await.unwrap();
    let second = alice
        .search(SearchQuery::new("deploy").newest_first().limit(5).cursor(first.next.unwrap()))
        .await
        .unwrap();
    assert_eq!(second.hits, pages[1]);

    // Bad queries are typed refusals.
    let err = alice.search(SearchQuery::new("deploy").limit(500)).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Invalid));
}
