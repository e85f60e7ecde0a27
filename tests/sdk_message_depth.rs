//! The SDK's methods for messaging depth against the real server: a message's earlier
//! texts, pins, who read a message (and keeping one's reads private), and a forward.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use palaver_e2e::Server;
use palaver_protocol::{ClientMsgId, RoomKind};
use palaver_sdk::{Client, Credentials};

const PASSWORD: &str = "password-123";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_methods_cover_edit_history_pins_read_by_and_forwards() {
    let server = Server::start(&["--shards", "2"]);
    let url = server.url("");
    let alice = Client::connect(&url, Credentials::register("alice", PASSWORD)).await.unwrap();
    let bob = Client::connect(&url, Credentials::register("bob", PASSWORD)).await.unwrap();
    let room = alice.create_room("depth", RoomKind::Public).await.unwrap().room_id;
    let notes = alice.create_room("notes", RoomKind::Private).await.unwrap().room_id;
    alice.join(&room).await.unwrap();
    bob.join(&room).await.unwrap();

    let seq = alice.send(&room, "first").await.unwrap().seq;
    alice.edit(&room, seq, "second").await.unwrap();
    let edits = bob.edit_list(&room, seq, None, None).await.unwrap();
    assert_eq!(edits.versions.iter().map(|v| v.text.as_str()).collect::<Vec<_>>(), vec!["first"]);

    let notice = alice.pin(&room, seq).await.unwrap();
    assert!(notice.seq > seq);
    let pins = bob.pin_list(&room, None, None).await.unwrap();
    assert_eq!(pins.pins.iter().map(|p| p.message.seq).collect::<Vec<_>>(), vec![seq]);
    alice.unpin(&room, seq).await.unwrap();
    assert!(bob.pin_list(&room, None, None).await.unwrap().pins.is_empty());

    bob.receipt(&room, None, Some(seq)).await.unwrap();
    let readers = alice.receipt_list(&room, seq, false, None, None).await.unwrap();
    assert_eq!(readers.receipts.len(), 1);
    let profile = bob.share_read_receipts(false).await.unwrap();
    assert_eq!(profile.share_read_receipts, Some(false));
    assert!(alice.receipt_list(&room, seq, false, None, None).await.unwrap().receipts.is_empty());
    assert_eq!(alice.receipt_list(&room, seq, true, None, None).await.unwrap().receipts.len(), 1);

    let private = alice.send(&notes, "only mine").await.unwrap().seq;
    let cid = ClientMsgId::parse("fwd-1").unwrap();
    let forwarded = alice.forward(&room, &cid, &notes, private, "see").await.unwrap();
    assert!(alice.forward(&room, &cid, &notes, private, "see").await.unwrap().duplicate);
    let cid = ClientMsgId::parse("fwd-2").unwrap();
    assert!(bob.forward(&room, &cid, &notes, private, "").await.is_err(), "bob cannot read the notes");
    let page = alice.history(&room, None, Some(10)).await.unwrap();
    let shown = page.iter().find(|m| m.seq == forwarded.seq).unwrap().forward.as_ref().unwrap();
    assert_eq!(shown.source.as_ref().unwrap().text, "only mine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_methods_cover_threads() {
    let server = Server::start(&["--shards", "2"]);
    let url = server.url("");
    let alice = Client::connect(&url, Credentials::register("alice", PASSWORD)).await.unwrap();
    let bob = Client::connect(&url, Credentials::register("bob", PASSWORD)).await.unwrap();
    let room = alice.create_room("threads", RoomKind::Public).await.unwrap().room_id;
    alice.join(&room).await.unwrap();
    bob.join(&room).await.unwrap();

    let root = alice.send(&room, "lunch?").await.unwrap().seq;
    let kept = bob.reply_in_thread(&room, root, "noon", false).await.unwrap().seq;
    let shared = bob.reply_in_thread(&room, root, "noon, all welcome", true).await.unwrap().seq;
    let thread = alice.thread_history(&room, root, None, None).await.unwrap();
    assert_eq!(thread.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![shared, kept]);
    assert_eq!(thread.root.thread_summary.as_deref().map(|s| s.count), Some(2));
    let timeline = alice.room_timeline(&room, None, None).await.unwrap();
    let seqs: Vec<u64> = timeline.messages.iter().map(|m| m.seq).collect();
    assert!(seqs.contains(&shared) && seqs.contains(&root) && !seqs.contains(&kept), "{seqs:?}");
    let listed = alice.thread_list(&room, None, None).await.unwrap();
    assert_eq!((listed.threads[0].root.seq, listed.threads[0].unread), (root, 2));
    let read = alice.thread_read(&room, root, kept).await.unwrap();
    assert_eq!((read.read, read.unread), (kept, 1));
}
