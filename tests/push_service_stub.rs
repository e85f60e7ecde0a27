//! The loopback push service the push tests deliver to: pushes built by the server's
//! request builder pass its checks (VAPID, headers) and decrypt with the subscription's
//! key; a token signed with another key, a wrong audience, or a body for another
//! subscription are refused; a status set for a subscription (410: gone) is answered.

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests: failing loudly is the point")]

use std::io::{Read, Write};
use std::net::TcpStream;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use palaver_e2e::push_service::{PushService, StubSubscription};
use palaver_server::web_push::encryption::SubscriptionKeys;
use palaver_server::web_push::request::{PushParts, PushRequest, push_request};
use palaver_server::web_push::vapid::VapidKey;

fn keys(subscription: &StubSubscription) -> SubscriptionKeys {
    let p256dh = URL_SAFE_NO_PAD.decode(&subscription.p256dh).unwrap();
    SubscriptionKeys::new(&p256dh, &URL_SAFE_NO_PAD.decode(&subscription.auth).unwrap()).unwrap()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Sends a push over HTTP/1.1 as the delivery worker does; returns the status.
fn send(request: &PushRequest) -> u16 {
    let rest = request.endpoint.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut stream = TcpStream::connect(host).unwrap();
    let mut head = format!("POST /{path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n");
    for (name, value) in &request.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&request.body).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.split_whitespace().nth(1).unwrap().parse().unwrap()
}

const PARTS: PushParts<'static> = PushParts {
    payload: br#"{"room":"r_ops","seq":3,"mention":true}"#,
    topic: "0a1b2c3d4e5f6071",
    urgency: "high",
    ttl_secs: 86_400,
};

#[test]
fn pushes_from_the_request_builder_pass_and_forgeries_do_not() {
    let vapid = VapidKey::generate();
    let service = PushService::start(&vapid.public_key_base64url());
    let phone = service.subscription("phone");
    let request =
        push_request(&phone.endpoint, &keys(&phone), PARTS, &vapid, "mailto:ops@example.com", now_secs())
            .unwrap();
    assert_eq!(send(&request), 201, "{:?}", service.refused());
    let received = service.wait_for(1, std::time::Duration::from_secs(5));
    assert_eq!(received.len(), 1);
    let push = &received[0];
    assert_eq!(push.payload, PARTS.payload);
    assert_eq!(
        (push.ttl, push.urgency.as_str(), push.topic.as_deref()),
        (86_400, "high", Some("0a1b2c3d4e5f6071"))
    );
    assert_eq!(push.claims["sub"], "mailto:ops@example.com");

    // Another key, an old token, a body for another browser: refused.
    let other = VapidKey::generate();
    let forged =
        push_request(&phone.endpoint, &keys(&phone), PARTS, &other, "mailto:x@y", now_secs()).unwrap();
    assert_eq!(send(&forged), 400);
    let stale =
        push_request(&phone.endpoint, &keys(&phone), PARTS, &vapid, "mailto:x@y", now_secs() - 13 * 3600)
            .unwrap();
    assert_eq!(send(&stale), 400);
    let laptop = service.subscription("laptop");
    let mut misdirected =
        push_request(&phone.endpoint, &keys(&laptop), PARTS, &vapid, "mailto:x@y", now_secs()).unwrap();
    misdirected.endpoint = phone.endpoint.clone();
    assert_eq!(send(&misdirected), 400);
    let refused = service.refused();
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert!(
        refused[0].contains("another key") && refused[1].contains("exp") && refused[2].contains("decrypt"),
        "{refused:?}"
    );

    // A subscription the push service dropped.
    service.answer("laptop", 410);
    let gone =
        push_request(&laptop.endpoint, &keys(&laptop), PARTS, &vapid, "mailto:x@y", now_secs()).unwrap();
    assert_eq!(send(&gone), 410);
    assert_eq!(service.received().len(), 1);
}
