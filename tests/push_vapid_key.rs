//! The VAPID public key browsers subscribe with, at `GET /v1/push/vapid-key`: generated
//! once into the data directory and the same after a restart, or the operator's key
//! from `--vapid-key-file`.

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests: failing loudly is the point")]

use palaver_e2e::{Server, http};

fn served_key(server: &Server) -> (u16, serde_json::Value) {
    let (status, body) = http(server.addr, "GET", "/v1/push/vapid-key", None, &[]);
    (status, serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
}

#[test]
fn a_server_alone_generates_its_key_once_and_serves_the_public_half() {
    let mut server = Server::start(&[]);
    let (status, body) = served_key(&server);
    assert_eq!(status, 200, "{body}");
    let public = body["public_key"].as_str().unwrap().to_owned();
    assert_eq!(public.len(), 87, "an uncompressed P-256 point in base64url");
    assert!(public.starts_with('B'));
    let file = server.data_dir().join("vapid-key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let (status, _) = http(server.addr, "POST", "/v1/push/vapid-key", Some("{}"), &[]);
    assert_eq!(status, 405);

    server.terminate();
    server.restart();
    assert_eq!(served_key(&server).1["public_key"], public.as_str(), "the same key after a restart");
}

#[test]
fn the_operators_key_file_is_used_as_given() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vapid.key");
    // A key as `web-push generate-vapid-keys` prints it (RFC 8291's example sender key).
    std::fs::write(&path, "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw\n").unwrap();
    let server = Server::start(&[
        "--vapid-key-file",
        path.to_str().unwrap(),
        "--push-subject",
        "mailto:ops@example.com",
    ]);
    let (status, body) = served_key(&server);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["public_key"],
        "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8"
    );
    assert!(!server.data_dir().join("vapid-key").exists(), "nothing generated");
}
