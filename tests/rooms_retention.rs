//! Retention and room history export with the real binary: a room's retention removes its
//! oldest messages in the background (with their files, edits, reactions, pins, cids and
//! search entries, and after `palaver compact` their bytes are nowhere on disk); the
//! room's seqs go on and its history starts at a floor that `room.get`, `history` and
//! `join … since` report; the owner and admins export a room's history as JSON Lines.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU64};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use palaver_e2e::{Client, Server, WAIT, http, http_bytes, metric, palaver_bin, png_bytes, register, upload};
use palaver_protocol::{
    ClientMsgId, Codec, ErrorCode, FileRef, Message, MessageKind, OkBody, Op, RoomId, RoomKind,
    RoomRetention, RoomSettingsPatch,
};

/// Words only the expiring messages hold.
const MARKER: &str = "quillwort-zephyr-marker";
/// Bytes only the expiring file holds.
const FILE_MARKER: &str = "FILE-BYTES-OF-THE-EXPIRING-UPLOAD";

/// A file under `dir` that holds `needle`, if one does.
fn file_holding(dir: &Path, needle: &str) -> Option<std::path::PathBuf> {
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            {
                return Some(path);
            }
        }
    }
    None
}

fn room_get(client: &mut Client, room: &RoomId) -> palaver_protocol::RoomDetailsOk {
    match client.ok(Op::RoomGet { room: room.clone() }) {
        OkBody::RoomDetails(details) => details,
        other => panic!("{other:?}"),
    }
}

fn set_retention(client: &mut Client, room: &RoomId, retention: RoomRetention) -> OkBody {
    let settings = RoomSettingsPatch { retention: Some(retention), ..Default::default() };
    client.ok(Op::RoomUpdate { room: room.clone(), name: None, topic: None, settings: Some(settings) })
}

/// Waits until the room's history starts at `floor`.
fn wait_for_floor(client: &mut Client, room: &RoomId, floor: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let from = room_get(client, room).history_from.map(NonZeroU64::get);
        if from == Some(floor) {
            return;
        }
        assert!(Instant::now() < deadline, "history still starts at {from:?}, not {floor}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn history_page(client: &mut Client, room: &RoomId) -> palaver_protocol::HistoryOk {
    match client.ok(Op::History {
        room: room.clone(),
        before: None,
        after: None,
        limit: None,
        cursor: None,
        threads: Default::default(),
    }) {
        OkBody::History(page) => page,
        other => panic!("{other:?}"),
    }
}

fn search_hits(client: &mut Client, words: &str) -> usize {
    let op = Op::Search {
        query: words.into(),
        room: None,
        from: None,
        before: None,
        after: None,
        order: None,
        limit: None,
        cursor: None,
    };
    match client.ok(op) {
        OkBody::Search(found) => found.hits.len(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn expired_messages_leave_no_bytes_and_history_starts_at_the_floor() {
    let mut server = Server::start(&["--retention-interval-secs", "1", "--retention-grace-secs", "0"]);
    let addr = server.addr;
    let alice = register(addr, "alice");
    let bob = register(addr, "bob");
    let mut a = Client::login(addr, Codec::Json, &alice);
    let mut b = Client::login(addr, Codec::Json, &bob);
    let room = a.create_room("ephemeral", RoomKind::Public);
    b.join(&room, None);

    // Messages that will expire, with everything that hangs off them: an edit's earlier
    // text, a reaction, a pin, a shared file.
    let (first, _) = a.say(&room, "expiring-1", &format!("{MARKER} one"));
    a.ok(Op::Edit { room: room.clone(), seq: first, text: format!("{MARKER} one, edited") });
    let (second, _) = a.say(&room, "expiring-2", &format!("{MARKER} two"));
    b.ok(Op::React { room: room.clone(), seq: second, emoji: "👍".into() });
    a.ok(Op::Pin { room: room.clone(), seq: second });
    let mut bytes = png_bytes(2, 2);
    bytes.extend_from_slice(FILE_MARKER.as_bytes());
    let uploaded = upload(addr, &alice.access_token, &room, "expiring.png", &bytes);
    assert_eq!(uploaded.status, 201, "{:?}", uploaded.json());
    let file_id = uploaded.json()["file_id"].as_str().unwrap().to_owned();
    let shared = a.ok(Op::Send {
        room: room.clone(),
        cid: ClientMsgId::parse("expiring-file").unwrap(),
        kind: MessageKind::Image,
        text: format!("{MARKER} picture"),
        client_ts: None,
        reply_to: None,
        file: Some(Box::new(FileRef {
            file_id: file_id.clone(),
            name: "expiring.png".into(),
            size: 1,
            content_type: "image/png".into(),
            width: None,
            height: None,
        })),
        encryption: None,
        also_to_room: false,
        thread: None,
    });
    assert!(matches!(shared, OkBody::Sent(_)), "{shared:?}");
    let deadline = Instant::now() + WAIT;
    while search_hits(&mut b, MARKER) == 0 {
        assert!(Instant::now() < deadline, "the markers are never searchable");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(file_holding(server.data_dir(), MARKER).is_some(), "the check below would prove nothing");
    assert!(file_holding(server.data_dir(), FILE_MARKER).is_some(), "the check below would prove nothing");

    // Keep the newest three: the settings change and two later messages.
    // Out of range: 0 (refused by the wire type) and past ten years.
    for (id, retention) in [(901, r#"{"max_count":0}"#), (902, r#"{"max_age_secs":315360001}"#)] {
        let frame = format!(
            r#"{{"id":{id},"op":"room.update","room":"{room}","settings":{{"retention":{retention}}}}}"#
        );
        a.send_raw(frame.into_bytes(), true);
        match a.reply(id) {
            palaver_protocol::ReplyBody::Err(e) => {
                assert_eq!(e.code, ErrorCode::Invalid, "{retention}: {e:?}")
            }
            other => panic!("{retention}: {other:?}"),
        }
    }
    b.err(
        Op::RoomUpdate {
            room: room.clone(),
            name: None,
            topic: None,
            settings: Some(RoomSettingsPatch {
                retention: Some(RoomRetention { max_age_secs: None, max_count: NonZeroU32::new(3) }),
                ..Default::default()
            }),
        },
        ErrorCode::Forbidden,
    );
    match set_retention(&mut a, &room, RoomRetention { max_age_secs: None, max_count: NonZeroU32::new(3) }) {
        OkBody::RoomDetails(details) => {
            assert_eq!(
                details.settings.retention,
                Some(RoomRetention { max_age_secs: None, max_count: NonZeroU32::new(3) })
            );
        }
        other => panic!("{other:?}"),
    }
    a.say(&room, "kept-1", "kept one");
    let (last, _) = a.say(&room, "kept-2", "kept two");
    let floor = last - 2;
    wait_for_floor(&mut a, &room, floor);

    // History starts at the floor and says so.
    let page = history_page(&mut b, &room);
    assert_eq!(page.history_from.map(NonZeroU64::get), Some(floor));
    assert_eq!(page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![last, last - 1, floor]);
    assert!(page.next.is_none(), "nothing below the floor: {page:?}");
    assert!(page.messages.iter().all(|m| !m.text.contains(MARKER)));
    // Unread counts only what is kept.
    match b.ok(Op::Sync { limit: None, cursor: None }) {
        OkBody::Sync(sync) => {
            let summary = sync.rooms.iter().find(|r| r.room.room_id == room).unwrap();
            assert_eq!((summary.last_seq, summary.read, summary.unread), (last, 0, 3));
        }
        other => panic!("{other:?}"),
    }
    match b.ok(Op::PinList { room: room.clone(), limit: None, cursor: None }) {
        OkBody::Pins(pins) => assert!(pins.pins.is_empty(), "the pinned message expired: {pins:?}"),
        other => panic!("{other:?}"),
    }
    // A join from before the floor resumes at it, with the indicator.
    let mut late = Client::login(addr, Codec::Json, &bob);
    match late.ok(Op::Join { room: room.clone(), since: Some(1) }) {
        OkBody::Joined(joined) => {
            assert_eq!((joined.last_seq, joined.history_from.map(NonZeroU64::get)), (last, Some(floor)))
        }
        other => panic!("{other:?}"),
    }
    let replayed: Vec<u64> = (0..3).map(|_| late.next_message().seq).collect();
    assert_eq!(replayed, vec![floor, floor + 1, last]);

    // Seqs go on; an expired message's cid is free again: a new message, not a duplicate.
    let (next, duplicate) = a.say(&room, "expiring-1", "a new message with an old cid");
    assert_eq!((next, duplicate), (last + 1, false));
    assert_eq!(late.next_message().seq, last + 1);
    let (_, duplicate) = a.say(&room, "kept-2", "a retry of a kept message");
    assert!(duplicate, "a kept message's cid is still remembered");

    // The file, its record and its bytes are gone; so are the search entries.
    let auth = format!("Bearer {}", bob.access_token);
    let (status, _) = http(addr, "GET", &format!("/v1/files/{file_id}"), None, &[("authorization", &auth)]);
    assert_eq!(status, 404, "the file's record is gone");
    let blob = server.data_dir().join("files").join(&file_id);
    let deadline = Instant::now() + WAIT;
    while blob.exists() {
        assert!(Instant::now() < deadline, "the file's bytes stay");
        std::thread::sleep(Duration::from_millis(50));
    }
    let deadline = Instant::now() + WAIT;
    while search_hits(&mut b, MARKER) > 0 {
        assert!(Instant::now() < deadline, "expired messages stay searchable");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(metric(addr, "palaver_retention_removed_total") >= floor - 1);
    assert_eq!(metric(addr, "palaver_retention_files_removed_total"), 1);

    // After compaction, the expired bytes are nowhere on disk; the rest is intact.
    server.terminate();
    let output =
        Command::new(palaver_bin()).arg("compact").arg("--data-dir").arg(server.data_dir()).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for removed in [MARKER, FILE_MARKER] {
        let holder = file_holding(server.data_dir(), removed);
        assert!(holder.is_none(), "{removed:?} is still on disk after compaction, in {holder:?}");
    }
    assert!(file_holding(server.data_dir(), "kept two").is_some(), "kept messages are kept");

    // After a restart the floor and the seq counter hold.
    server.restart();
    let addr = server.addr;
    let mut a = Client::login(addr, Codec::Json, &alice);
    assert_eq!(room_get(&mut a, &room).history_from.map(NonZeroU64::get), Some(floor));
    let (after_restart, _) = a.say(&room, "after-restart", "still counting");
    assert_eq!(after_restart, last + 2);
}

#[test]
fn a_room_whose_every_message_expired_keeps_counting() {
    let mut server = Server::start(&["--retention-interval-secs", "1", "--retention-grace-secs", "0"]);
    let addr = server.addr;
    let alice = register(addr, "alice");
    let mut a = Client::login(addr, Codec::Json, &alice);
    let room = a.create_room("short-lived", RoomKind::Private);
    a.join(&room, None);
    a.say(&room, "one", "first");
    set_retention(&mut a, &room, RoomRetention { max_age_secs: NonZeroU32::new(1), max_count: None });
    let (last, _) = a.say(&room, "two", "second");
    wait_for_floor(&mut a, &room, last + 1);
    let page = history_page(&mut a, &room);
    assert!(page.messages.is_empty(), "{page:?}");
    assert_eq!(page.history_from.map(NonZeroU64::get), Some(last + 1));
    match a.ok(Op::Sync { limit: None, cursor: None }) {
        OkBody::Sync(sync) => {
            let summary = sync.rooms.iter().find(|r| r.room.room_id == room).unwrap();
            assert_eq!((summary.last_seq, summary.last_message.as_ref(), summary.unread), (last, None, 0));
        }
        other => panic!("{other:?}"),
    }

    // `{}` drops the room's own retention: the server's default (none here) applies.
    match set_retention(&mut a, &room, RoomRetention::default()) {
        OkBody::RoomDetails(details) => assert_eq!(details.settings.retention, None),
        other => panic!("{other:?}"),
    }
    // The settings change itself took the next seq; the counter survives a restart.
    server.terminate();
    server.restart();
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let (seq, _) = a.say(&room, "three", "third");
    assert_eq!(seq, last + 2);
    match a.ok(Op::Join { room: room.clone(), since: Some(0) }) {
        OkBody::Joined(joined) => assert_eq!(joined.history_from.map(NonZeroU64::get), Some(last + 1)),
        other => panic!("{other:?}"),
    }
    let replayed: Vec<Message> = (0..2).map(|_| a.next_message()).collect();
    assert_eq!(replayed.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![last + 1, last + 2]);
}

#[test]
fn the_server_default_applies_to_rooms_without_their_own() {
    let server = Server::start(&[
        "--retention-interval-secs",
        "1",
        "--retention-grace-secs",
        "0",
        "--retention-max-count",
        "2",
    ]);
    let addr = server.addr;
    let alice = register(addr, "alice");
    let bob = register(addr, "bob");
    let mut a = Client::login(addr, Codec::Json, &alice);
    let defaulted = a.create_room("defaulted", RoomKind::Public);
    let own = a.create_room("own", RoomKind::Public);
    set_retention(&mut a, &own, RoomRetention { max_age_secs: None, max_count: NonZeroU32::new(100) });
    let direct = match a.ok(Op::DmOpen { user: palaver_protocol::UserId::parse(&bob.user_id).unwrap() }) {
        OkBody::Room(room) => room.room.room_id,
        other => panic!("{other:?}"),
    };
    let mut last = Vec::new();
    for room in [&defaulted, &own, &direct] {
        for i in 0..4 {
            last.push(a.say(room, &format!("m{i}"), "hello").0);
        }
    }
    wait_for_floor(&mut a, &defaulted, last[3] - 1);
    wait_for_floor(&mut a, &direct, last[11] - 1);
    assert_eq!(room_get(&mut a, &own).history_from.map(NonZeroU64::get), None, "its own retention keeps 100");
}

// ---------------------------------------------------------------- export

fn export(addr: SocketAddr, token: Option<&str>, path: &str) -> palaver_e2e::HttpResponse {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    http_bytes(addr, "GET", path, b"", &headers)
}

fn lines(response: &palaver_e2e::HttpResponse) -> Vec<Message> {
    String::from_utf8(response.body.clone())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn room_export_is_for_the_owner_and_admins() {
    let mut server = Server::start(&[]);
    let addr = server.addr;
    let alice = register(addr, "alice");
    let bob = register(addr, "bob");
    let carol = register(addr, "carol");
    let mut a = Client::login(addr, Codec::Json, &alice);
    let mut b = Client::login(addr, Codec::Json, &bob);
    let room = a.create_room("exported", RoomKind::Public);
    b.join(&room, None);
    for i in 1..=5 {
        a.say(&room, &format!("e{i}"), &format!("line {i}\nwith \"quotes\""));
    }
    let path = format!("/v1/rooms/{room}/export");

    let whole = export(addr, Some(&alice.access_token), &path);
    assert_eq!(whole.status, 200);
    assert_eq!(whole.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(whole.header("palaver-history-from"), Some("1"));
    assert_eq!(whole.header("palaver-next"), None);
    let messages = lines(&whole);
    assert_eq!(messages.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    assert_eq!(messages[0].text, "line 1\nwith \"quotes\"");

    // Paged: `palaver-next` is the next page's `after`.
    let first = export(addr, Some(&alice.access_token), &format!("{path}?limit=2"));
    assert_eq!(lines(&first).iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(first.header("palaver-next"), Some("2"));
    let second = export(addr, Some(&alice.access_token), &format!("{path}?after=2&limit=2"));
    assert_eq!(lines(&second).iter().map(|m| m.seq).collect::<Vec<_>>(), vec![3, 4]);
    let last = export(addr, Some(&alice.access_token), &format!("{path}?after=4&limit=2"));
    assert_eq!(lines(&last).iter().map(|m| m.seq).collect::<Vec<_>>(), vec![5]);
    assert_eq!(last.header("palaver-next"), None);

    // Refusals, each with a JSON error body.
    let code = |r: &palaver_e2e::HttpResponse| r.json()["error"]["code"].as_str().map(str::to_owned);
    let member = export(addr, Some(&bob.access_token), &path);
    assert_eq!((member.status, code(&member).as_deref()), (403, Some("forbidden")));
    let anonymous = export(addr, None, &path);
    assert_eq!(anonymous.status, 401);
    let unknown = export(addr, Some(&alice.access_token), "/v1/rooms/r_nosuchroom/export");
    assert_eq!((unknown.status, code(&unknown).as_deref()), (404, Some("not_found")));
    let malformed = export(addr, Some(&alice.access_token), "/v1/rooms/not-a-room/export");
    assert_eq!(malformed.status, 400);
    for query in ["limit=0", "limit=1001", "after=x"] {
        let bad = export(addr, Some(&alice.access_token), &format!("{path}?{query}"));
        assert_eq!((bad.status, code(&bad).as_deref()), (400, Some("invalid")), "{query}");
    }
    assert_eq!(http(addr, "POST", &path, None, &[]).0, 405);

    // An admin exports any room.
    let carol_before = export(addr, Some(&carol.access_token), &path);
    assert_eq!(carol_before.status, 403);
    server.terminate();
    let output = Command::new(palaver_bin())
        .args(["admin", "grant", "carol", "--data-dir"])
        .arg(server.data_dir())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    server.restart();
    let as_admin = export(server.addr, Some(&carol.access_token), &path);
    assert_eq!(as_admin.status, 200);
    assert_eq!(lines(&as_admin).len(), 5);
}
