//! Reports with the real binary: members report messages, the room's moderators and the
//! server's admins list and resolve them, every refusal is a JSON error, reports are
//! rate-limited, and an admin's resolution is audited. The room's moderators and the
//! admins hear of each report live (a `report` event); the other members do not.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use palaver_e2e::{Client, Server, http, palaver_bin, register};
use palaver_protocol::{Codec, Event, RoomKind};
use serde_json::{Value, json};

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

fn grant_admin(data_dir: &Path, username: &str) {
    let output = Command::new(palaver_bin())
        .args(["admin", "grant", username, "--data-dir"])
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn members_report_and_moderators_and_admins_resolve() {
    let mut server = Server::start(&[]);
    let [owner, bob, carol, dave, root] =
        ["owner", "bob", "carol", "dave", "root"].map(|n| register(server.addr, n));
    server.terminate();
    grant_admin(server.data_dir(), "root");
    server.restart();
    let addr = server.addr;

    let mut owner_socket = Client::login(addr, Codec::Json, &owner);
    let room = owner_socket.create_room("general", RoomKind::Public);
    let mut bob_socket = Client::login(addr, Codec::Json, &bob);
    let mut carol_socket = Client::login(addr, Codec::Json, &carol);
    bob_socket.join(&room, None);
    carol_socket.join(&room, None);
    let (spam, _) = carol_socket.say(&room, "c1", "buy cheap pills");
    let (own, _) = bob_socket.say(&room, "b1", "hello");
    let mut root_socket = Client::login(addr, Codec::Json, &root);

    // A report, and every way one is refused.
    let report = |token: &str, body: Value| call(addr, "POST", "/v1/reports", token, Some(&body.to_string()));
    let (status, made) = report(&bob.access_token, json!({"room": room, "seq": spam, "reason": "spam"}));
    assert_eq!(status, 201, "{made}");
    let first = &made["report"];
    assert_eq!(
        (
            &first["room"],
            &first["seq"],
            &first["sender"],
            &first["reporter"],
            &first["reason"],
            &first["text"]
        ),
        (
            &json!(room),
            &json!(spam),
            &json!(carol.user_id),
            &json!(bob.user_id),
            &json!("spam"),
            &json!("buy cheap pills")
        )
    );
    let first_id = first["report_id"].as_str().unwrap().to_owned();

    // Told live: the owner (a moderator of the room) and the admin, not the members.
    for socket in [&mut owner_socket, &mut root_socket] {
        let told = socket.wait_event(|e| match e {
            Event::Report(notice) => Some(notice.clone()),
            _ => None,
        });
        assert_eq!(
            (told.report_id.as_str(), &told.room, told.seq, told.reporter.as_str(), told.reason.as_deref()),
            (first_id.as_str(), &room, spam, bob.user_id.as_str(), Some("spam"))
        );
    }
    let told_member = |socket: &mut Client| {
        socket.sees_event_within(std::time::Duration::from_millis(300), |e| matches!(e, Event::Report(_)))
    };
    assert!(!told_member(&mut carol_socket) && !told_member(&mut bob_socket), "members are not told");
    assert_eq!(code(&report(&bob.access_token, json!({"room": room, "seq": own}))), (400, Some("invalid")));
    assert_eq!(code(&report(&bob.access_token, json!({"room": room, "seq": 999}))), (404, Some("not_found")));
    assert_eq!(
        code(&report(&dave.access_token, json!({"room": room, "seq": spam}))),
        (403, Some("forbidden"))
    );
    assert_eq!(
        code(&report(&bob.access_token, json!({"room": "nope", "seq": spam}))),
        (400, Some("invalid"))
    );
    assert_eq!(
        code(&report(&bob.access_token, json!({"room": room, "seq": spam, "extra": 1}))),
        (400, Some("invalid"))
    );
    let long = "x".repeat(201);
    assert_eq!(
        code(&report(&bob.access_token, json!({"room": room, "seq": spam, "reason": long}))),
        (400, Some("invalid"))
    );
    assert_eq!(code(&report("not.a.token", json!({"room": room, "seq": spam}))), (401, Some("unauthorized")));
    assert_eq!(http(addr, "GET", "/v1/reports", None, &[]).0, 405);

    // Reading and resolving: moderators of the room and admins, nobody else.
    let reports_path = format!("/v1/rooms/{room}/reports");
    assert_eq!(code(&call(addr, "GET", &reports_path, &bob.access_token, None)), (403, Some("forbidden")));
    let (status, listed) = call(addr, "GET", &format!("{reports_path}?open=true"), &owner.access_token, None);
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["reports"].as_array().unwrap().len(), 1);
    assert_eq!(listed["next"], Value::Null);
    assert_eq!(
        code(&call(addr, "GET", &format!("{reports_path}?open=maybe"), &owner.access_token, None)).0,
        400
    );
    let resolve_first = format!("/v1/reports/{first_id}/resolve");
    assert_eq!(code(&call(addr, "POST", &resolve_first, &bob.access_token, None)), (403, Some("forbidden")));
    assert_eq!(code(&call(addr, "POST", "/v1/reports/rp_none/resolve", &owner.access_token, None)).0, 404);
    let (status, resolved) =
        call(addr, "POST", &resolve_first, &owner.access_token, Some(r#"{"note":"muted"}"#));
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved["report"]["resolved"]["by"], json!(owner.user_id));
    assert_eq!(resolved["report"]["resolved"]["note"], json!("muted"));
    assert_eq!(code(&call(addr, "POST", &resolve_first, &owner.access_token, None)), (409, Some("conflict")));
    let (_, open) = call(addr, "GET", &format!("{reports_path}?open=true"), &owner.access_token, None);
    assert!(open["reports"].as_array().unwrap().is_empty());

    // Rate-limited: a burst of 10, then one a minute.
    for _ in 1..10 {
        assert_eq!(report(&bob.access_token, json!({"room": room, "seq": spam})).0, 201);
    }
    let (status, limited) = report(&bob.access_token, json!({"room": room, "seq": spam}));
    assert_eq!((status, limited["error"]["code"].as_str()), (429, Some("rate_limited")), "{limited}");
    assert!(limited["error"]["retry_after_ms"].as_u64().unwrap() > 0);

    // An admin, no member of the room, sees every room's reports; resolving one is an
    // admin act, and audited.
    let (status, all) = call(addr, "GET", "/v1/admin/reports?open=true&limit=5", &root.access_token, None);
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["reports"].as_array().unwrap().len(), 5);
    let next = all["next"].as_str().unwrap();
    let (_, rest) =
        call(addr, "GET", &format!("/v1/admin/reports?open=true&after={next}"), &root.access_token, None);
    assert_eq!(rest["reports"].as_array().unwrap().len(), 4);
    assert_eq!(
        code(&call(addr, "GET", "/v1/admin/reports", &owner.access_token, None)),
        (403, Some("forbidden"))
    );
    assert_eq!(call(addr, "GET", &reports_path, &root.access_token, None).0, 200);
    let open_id = all["reports"][0]["report_id"].as_str().unwrap();
    let (status, _) = call(addr, "POST", &format!("/v1/reports/{open_id}/resolve"), &root.access_token, None);
    assert_eq!(status, 200);
    let (_, log) = call(addr, "GET", "/v1/admin/audit", &root.access_token, None);
    let last = log["entries"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (&last["action"], &last["report_id"], &last["admin"]),
        (&json!("resolve_report"), &json!(open_id), &json!(root.user_id))
    );
    let resolved_by_owner =
        log["entries"].as_array().unwrap().iter().filter(|e| e["report_id"] == json!(first_id)).count();
    assert_eq!(resolved_by_owner, 0, "a moderator's resolution is not an admin act");

    // Reports are stored: a restart keeps them.
    server.terminate();
    server.restart();
    let (_, after) =
        call(server.addr, "GET", &format!("/v1/rooms/{room}/reports"), &owner.access_token, None);
    assert_eq!(after["reports"].as_array().unwrap().len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_reports_lists_and_resolves() {
    use palaver_sdk::{Client as SdkClient, Credentials};
    let server = Server::start(&[]);
    let url = server.url("");
    let owner = SdkClient::connect(&url, Credentials::register("owner", "password-123")).await.unwrap();
    let bob = SdkClient::connect(&url, Credentials::register("bob", "password-123")).await.unwrap();
    let room = owner.create_room("general", RoomKind::Public).await.unwrap().room_id;
    bob.join(&room).await.unwrap();
    let spam = owner.send(&room, "an owner's rude message").await.unwrap().seq;

    let report = bob.report(&room, spam, Some("rude")).await.unwrap();
    assert_eq!((report.seq, report.reason.as_deref(), report.resolved.as_ref()), (spam, Some("rude"), None));
    let refused = bob.room_reports(&room, true, None).await.unwrap_err();
    assert_eq!(refused.code(), Some(palaver_protocol::ErrorCode::Forbidden));
    let page = owner.room_reports(&room, true, None).await.unwrap();
    assert_eq!((page.reports.len(), page.next.as_deref()), (1, None));
    let resolved = owner.resolve_report(&report.report_id, Some("apologised")).await.unwrap();
    assert_eq!(resolved.resolved.unwrap().note.as_deref(), Some("apologised"));
    assert!(owner.room_reports(&room, true, None).await.unwrap().reports.is_empty());
    assert!(matches!(owner.resolve_report("../x", None).await, Err(palaver_sdk::Error::Invalid(_))));
}
