//! Web Push subscriptions over the socket: an `https://` push service is accepted, an
//! internal or `http://` endpoint only inside the operator's `--push-allow-networks`,
//! malformed keys are refused with a clear error, and subscriptions outlive a restart
//! until unsubscribed.

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests: failing loudly is the point")]

use palaver_e2e::{Client, Server, register};
use palaver_protocol::{Codec, ErrorCode, Op};

const P256DH: &str =
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

fn subscribe(endpoint: &str) -> Op {
    Op::PushSubscribe { endpoint: endpoint.into(), p256dh: P256DH.into(), auth: AUTH.into() }
}

#[test]
fn subscriptions_are_checked_like_webhook_targets() {
    let server = Server::start(&[]);
    let alice = register(server.addr, "alice");
    let mut a = Client::login(server.addr, Codec::Rkyv, &alice);
    a.ok(subscribe("https://push.example.net/wpush/v2/abc"));
    a.ok(subscribe("https://push.example.net/wpush/v2/abc"));
    for refused in ["http://push.example.net/x", "https://127.0.0.1:9/x", "https://10.1.2.3/x", "nonsense"] {
        let message = a.err(subscribe(refused), ErrorCode::Invalid);
        assert!(message.contains("endpoint"), "{refused}: {message}");
    }
    let bad_key = Op::PushSubscribe {
        endpoint: "https://push.example.net/1".into(),
        p256dh: "x".into(),
        auth: AUTH.into(),
    };
    assert!(a.err(bad_key, ErrorCode::Invalid).contains("p256dh"));
    let bad_auth = Op::PushSubscribe {
        endpoint: "https://push.example.net/1".into(),
        p256dh: P256DH.into(),
        auth: "?".into(),
    };
    assert!(a.err(bad_auth, ErrorCode::Invalid).contains("auth"));
    a.ok(Op::PushUnsubscribe { endpoint: "https://push.example.net/wpush/v2/abc".into() });
    a.ok(Op::PushUnsubscribe { endpoint: "https://never.example/1".into() });
}

#[test]
fn the_operators_networks_admit_an_internal_push_service() {
    let mut server = Server::start(&["--push-allow-networks", "127.0.0.0/8"]);
    let alice = register(server.addr, "alice");
    let mut a = Client::login(server.addr, Codec::Json, &alice);
    a.ok(subscribe("http://127.0.0.1:9000/push/1"));
    a.err(subscribe("http://10.0.0.1/push/1"), ErrorCode::Invalid);
    let user = palaver_protocol::UserId::parse(&alice.user_id).unwrap();
    drop(a);
    server.terminate();
    let store =
        palaver_storage::Store::open(&server.data_dir().join("db"), palaver_storage::Durability::Fsync)
            .unwrap();
    let kept = store.push_subscriptions(&user).unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(
        (kept[0].endpoint.as_str(), kept[0].p256dh.as_str()),
        ("http://127.0.0.1:9000/push/1", P256DH)
    );
}
