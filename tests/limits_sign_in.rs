//! Sign-in floods and password guessing: guesses at one account from one address are
//! throttled (and the owner, elsewhere, still gets in), one address gets a burst and then
//! its rate, a flood of hashing is refused with a retry hint rather than queued without
//! end, and searches never wait behind it. Clients come from several loopback addresses
//! (127.0.0.0/8), as if from several hosts.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use palaver_e2e::{Client, Server, WAIT, metric, register};
use palaver_protocol::{Codec, OkBody, Op, ReplyBody, RoomKind};
use serde_json::{Value, json};

/// One HTTP request from the loopback address `source`; returns status and JSON body.
fn post_from(source: IpAddr, server: SocketAddr, path: &str, body: &Value) -> (u16, Value) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(source, 0).into()).unwrap();
    socket.connect(&server.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let json =
        text.split_once("\r\n\r\n").and_then(|(_, b)| serde_json::from_str(b).ok()).unwrap_or(Value::Null);
    (status, json)
}

fn login(source: IpAddr, server: SocketAddr, username: &str, password: &str) -> (u16, Value) {
    post_from(source, server, "/v1/auth/login", &json!({"username": username, "password": password}))
}

#[test]
fn guessing_a_password_is_throttled_per_account_and_address() {
    let server = Server::start(&["--sign-ins-per-minute-per-ip", "0"]);
    register(server.addr, "victim");
    let attacker: IpAddr = [127, 0, 0, 2].into();
    let owner: IpAddr = [127, 0, 0, 3].into();
    let mut statuses = Vec::new();
    for guess in 0..50 {
        let (status, body) = login(attacker, server.addr, "victim", &format!("guess-{guess}"));
        if status == 429 {
            assert_eq!(body["error"]["code"], "rate_limited");
            let wait = body["error"]["retry_after_ms"].as_u64().unwrap();
            assert!(wait > 0 && wait <= 60_000, "{body}");
        }
        statuses.push(status);
    }
    assert_eq!(statuses[..5], [401; 5], "the first wrong passwords are answered");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    // Even the right password waits, from that address...
    assert_eq!(login(attacker, server.addr, "victim", "password-123").0, 429);
    // ... but the owner, from anywhere else, is not locked out.
    assert_eq!(login(owner, server.addr, "victim", "password-123").0, 200);
}

#[test]
fn one_address_gets_a_burst_then_its_rate_and_others_are_unaffected() {
    let server = Server::start(&["--sign-ins-per-minute-per-ip", "6"]);
    register(server.addr, "someone");
    let busy: IpAddr = [127, 0, 0, 4].into();
    let statuses: Vec<u16> =
        (0..14).map(|i| login(busy, server.addr, &format!("nobody{i}"), "password-123").0).collect();
    assert!(statuses[..10].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[10..].iter().all(|s| *s == 429), "{statuses:?}");
    assert_eq!(login([127, 0, 0, 5].into(), server.addr, "someone", "password-123").0, 200);
}

#[test]
fn a_hashing_flood_is_refused_with_a_hint_and_searches_do_not_wait_behind_it() {
    let server = Server::start(&["--sign-ins-per-minute-per-ip", "0"]);
    let alice = register(server.addr, "alice");
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    let room = a.create_room("general", RoomKind::Public);
    a.join(&room, None);
    a.say(&room, "c1", "needle in the haystack");

    // Two hundred sign-ins at once, from a hundred addresses: more than one hashing
    // thread and its queue take.
    let addr = server.addr;
    let flood: Vec<_> = (0..200u8)
        .map(|i| {
            std::thread::spawn(move || {
                let source: IpAddr = [127, 0, 1, i % 100 + 1].into();
                login(source, addr, "alice", "wrong-password")
            })
        })
        .collect();
    // Meanwhile a search (its own lane) is answered, not refused or queued behind them.
    std::thread::sleep(Duration::from_millis(100));
    let found = a.request(Op::Search {
        query: "needle".into(),
        room: None,
        from: None,
        before: None,
        after: None,
        order: None,
        limit: None,
        cursor: None,
    });
    let results: Vec<(u16, Value)> = flood.into_iter().map(|t| t.join().unwrap()).collect();
    let busy = results.iter().filter(|(status, _)| *status == 503).count();
    let answered = results.iter().filter(|(status, _)| *status == 401).count();
    assert!(busy > 0, "the queue grew without end: {answered} answered");
    assert_eq!(busy + answered, results.len(), "every attempt got an answer");
    for (_, body) in results.iter().filter(|(status, _)| *status == 503) {
        assert_eq!(body["error"]["code"], "unavailable");
        assert!(body["error"]["retry_after_ms"].as_u64().unwrap() > 0);
    }
    assert!(
        matches!(found, ReplyBody::Ok(OkBody::Search(_))),
        "the search waited behind the flood: {found:?}"
    );
    assert!(metric(server.addr, "palaver_blocking_jobs_total{lane=\"passwords\",outcome=\"refused\"}") > 0);
    // And once the flood is over, the owner signs in.
    assert_eq!(login([127, 0, 0, 9].into(), server.addr, "alice", "password-123").0, 200);
}

#[test]
fn a_sign_in_whose_client_left_is_not_hashed() {
    let server = Server::start(&["--sign-ins-per-minute-per-ip", "0"]);
    register(server.addr, "bob");
    let before = metric(server.addr, "palaver_blocking_jobs_total{lane=\"passwords\",outcome=\"ran\"}");
    // Sixty sign-ins sent and abandoned at once: most are still queued when their client
    // closes, and are dropped unrun.
    let body = json!({"username": "bob", "password": "wrong-password"}).to_string();
    let request = format!(
        "POST /v1/auth/login HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let sockets: Vec<TcpStream> = (0..60u8)
        .map(|i| {
            let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            socket.bind(&SocketAddr::new([127, 0, 2, i + 1].into(), 0).into()).unwrap();
            socket.connect(&server.addr.into()).unwrap();
            let mut stream: TcpStream = socket.into();
            stream.write_all(request.as_bytes()).unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    drop(sockets);
    std::thread::sleep(Duration::from_secs(3));
    let abandoned =
        metric(server.addr, "palaver_blocking_jobs_total{lane=\"passwords\",outcome=\"abandoned\"}");
    let ran = metric(server.addr, "palaver_blocking_jobs_total{lane=\"passwords\",outcome=\"ran\"}") - before;
    assert!(abandoned > 0, "every abandoned sign-in was hashed anyway ({ran} ran)");
    assert!(ran + abandoned <= 60, "{ran} ran, {abandoned} abandoned");
}
