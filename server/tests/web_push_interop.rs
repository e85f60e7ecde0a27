//! Web Push against npm's `http_ece` and `web-push` packages (run by Node.js): a payload
//! Palaver encrypts is read by `http_ece` as a browser would, one `web-push` encrypts is
//! read by Palaver, a VAPID token Palaver signs verifies with Node's own ES256, and one
//! `web-push` signs passes Palaver's push-service checks.
//!
//! Needs Node.js (`PALAVER_NODE`, else `node` on PATH) and `npm ci` in `tests/browser`
//! (`./x test` does both).
#![allow(clippy::unwrap_used, clippy::panic, reason = "a test: failing loudly is the point")]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use palaver_server::web_push::encryption::{SubscriptionKeys, decrypt, encrypt, random_private_key};
use palaver_server::web_push::vapid::{VapidKey, verify_authorization};
use serde_json::{Value, json};

fn browser_dir() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser")
}

/// Runs one request through `tests/browser/web_push_interop.mjs`.
fn node(request: Value) -> Value {
    let dir = browser_dir();
    assert!(
        dir.join("node_modules/web-push").is_dir() && dir.join("node_modules/http_ece").is_dir(),
        "web-push and http_ece are not installed: ./x test, or cd tests/browser && npm ci"
    );
    let node = std::env::var("PALAVER_NODE").unwrap_or_else(|_| "node".into());
    let mut child = Command::new(node)
        .arg("web_push_interop.mjs")
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("Node.js runs (set PALAVER_NODE)");
    child.stdin.take().unwrap().write_all(request.to_string().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "node: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// A browser's subscription keys: its private key, and the public key and auth secret
/// it hands to the application server.
fn user_agent() -> (p256::SecretKey, String, [u8; 16]) {
    let private = random_private_key();
    let public = URL_SAFE_NO_PAD.encode(private.public_key().to_encoded_point(false).as_bytes());
    (private, public, rand::random())
}

#[test]
fn payloads_encrypted_here_are_read_by_http_ece_and_the_reverse() {
    let (ua_private, ua_public, auth) = user_agent();
    let keys = SubscriptionKeys::new(&URL_SAFE_NO_PAD.decode(&ua_public).unwrap(), &auth).unwrap();
    let text = r#"{"room":"r_ops","mentions":1,"text":"déploiement fini 🚀"}"#;
    let body = encrypt(text.as_bytes(), &keys).unwrap();
    let read = node(json!({
        "op": "decrypt",
        "body": URL_SAFE_NO_PAD.encode(&body),
        "ua_private": URL_SAFE_NO_PAD.encode(ua_private.to_bytes()),
        "auth": URL_SAFE_NO_PAD.encode(auth),
    }));
    assert_eq!(read["plaintext"], text);

    let made = node(json!({
        "op": "encrypt",
        "p256dh": ua_public,
        "auth": URL_SAFE_NO_PAD.encode(auth),
        "plaintext": text,
    }));
    let body = URL_SAFE_NO_PAD.decode(made["body"].as_str().unwrap()).unwrap();
    assert_eq!(decrypt(&body, &ua_private, &auth).unwrap(), text.as_bytes());
}

#[test]
fn vapid_tokens_verify_both_ways() {
    let key = VapidKey::generate();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let endpoint = "https://push.example.net/wpush/v2/gAAAA";
    let header = key.authorization(endpoint, "mailto:ops@example.com", now).unwrap();
    let token = header.strip_prefix("vapid t=").unwrap().split(", k=").next().unwrap();
    let checked =
        node(json!({ "op": "vapid_verify", "token": token, "public_key": key.public_key_base64url() }));
    assert_eq!(checked["valid"], true, "{checked}");
    assert_eq!(checked["header"]["alg"], "ES256");
    assert_eq!(checked["claims"]["aud"], "https://push.example.net");
    let exp = checked["claims"]["exp"].as_u64().unwrap();
    assert!(exp > now && exp <= now + 24 * 3600);

    let signed = node(json!({
        "op": "vapid_sign",
        "audience": "https://push.example.net",
        "subject": "mailto:ops@example.com",
        "public_key": key.public_key_base64url(),
        "private_key": key.private_key_base64url(),
        "exp": now + 3600,
    }));
    let authorization = signed["authorization"].as_str().unwrap();
    let claims =
        verify_authorization(authorization, &key.public_key_base64url(), "https://push.example.net", now)
            .unwrap_or_else(|e| panic!("{e}: {authorization}"));
    assert_eq!(claims.sub, "mailto:ops@example.com");
}
