//! The JavaScript package's types follow the Rust protocol: `sdk/js/src/protocol.ts` is
//! exactly what `palaver_protocol::typescript::declarations` generates from the wire types
//! (so a changed op, answer or event fails here until the file is regenerated), and the
//! package's client builds the request of every op.
//!
//! Regenerate with `PALAVER_BLESS=1 cargo test -p palaver-e2e --test sdk_js_types`.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests: failing loudly is the point")]

use std::path::{Path, PathBuf};

fn package_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("sdk/js")
}

#[test]
fn protocol_ts_is_generated_from_the_rust_types() {
    let path = package_dir().join("src/protocol.ts");
    let generated = palaver_protocol::typescript::declarations();
    if std::env::var_os("PALAVER_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    if checked_in != generated {
        let line = checked_in
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| checked_in.lines().count().min(generated.lines().count()) + 1, |index| index + 1);
        panic!(
            "{} differs from the Rust protocol types from line {line} on; regenerate it with \
             `PALAVER_BLESS=1 cargo test -p palaver-e2e --test sdk_js_types`",
            path.display()
        );
    }
}
#[test]
fn the_client_has_a_method_for_every_op() {
    let source = std::fs::read_to_string(package_dir().join("src/index.ts")).unwrap();
    let missing: Vec<String> = palaver_protocol::typescript::op_names()
        .into_iter()
        // `auth` is the client's own business: it authenticates every connection itself.
        .filter(|op| op != "auth")
        .filter(|op| !source.contains(&format!("op: \"{op}\"")))
        .collect();
    assert!(missing.is_empty(), "sdk/js/src/index.ts builds no request for {missing:?}");
}
