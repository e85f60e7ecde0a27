//! The client crates are publishable: `cargo package` packages `palaver-protocol` and
//! `palaver-sdk` (no path dependency without a version, no placeholder metadata) and
//! builds the SDK from its package against the packaged protocol, as crates.io would.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::path::{Path, PathBuf};
use std::process::Command;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// `target/` of this build (the test binary is `target/<profile>/deps/…`).
fn target_dir() -> PathBuf {
    std::env::current_exe().unwrap().ancestors().nth(3).unwrap().to_path_buf()
}

/// cargo verifies the SDK against the packaged protocol through a local registry whose
/// crates it extracts under `CARGO_HOME/registry/src/-<hash>/` and builds like any
/// registry crate: while the version is unchanged it reuses that copy and what it built
/// from it, however the source changed since. Remove the extracted copies of this
/// project's crates (local registries only: their directory names start with `-`); the
/// built ones are cleaned by the test.
fn forget_extracted_local_packages() {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")));
    let Some(sources) = home.map(|home| home.join("registry/src")) else { return };
    let Ok(registries) = std::fs::read_dir(sources) else { return };
    for registry in registries.flatten() {
        if !registry.file_name().to_string_lossy().starts_with('-') {
            continue;
        }
        for extracted in std::fs::read_dir(registry.path()).into_iter().flatten().flatten() {
            if extracted.file_name().to_string_lossy().starts_with("palaver-") {
                std::fs::remove_dir_all(extracted.path()).unwrap();
            }
        }
    }
}

#[test]
fn the_protocol_and_sdk_crates_package_and_build_from_their_packages() {
    forget_extracted_local_packages();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // A target dir of its own: the verification build must not wait on this one's lock.
    let target = target_dir().join("package-check");
    let cleaned = Command::new(&cargo)
        .args(["clean", "-p", "palaver-protocol", "-p", "palaver-sdk", "--target-dir"])
        .arg(&target)
        .current_dir(repository())
        .output()
        .unwrap();
    assert!(cleaned.status.success(), "{}", String::from_utf8_lossy(&cleaned.stderr));
    let output = Command::new(cargo)
        .args(["package", "-p", "palaver-protocol", "-p", "palaver-sdk", "--allow-dirty", "--target-dir"])
        .arg(&target)
        .current_dir(repository())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "cargo package failed:\n{stderr}");
    assert!(stderr.contains("Verifying palaver-sdk"), "{stderr}");

    // What crates.io would get: versioned dependencies, no Python crate inside.
    let packaged = target.join("package/palaver-sdk-0.1.0");
    let manifest = std::fs::read_to_string(packaged.join("Cargo.toml")).unwrap();
    let protocol = manifest.split("[dependencies.palaver-protocol]").nth(1).unwrap();
    assert!(protocol.trim_start().starts_with("version = \"0.1.0\""), "{manifest}");
    assert!(!manifest.contains("example.invalid"), "{manifest}");
    assert!(!packaged.join("python").exists(), "the Python crate is not part of the Rust one");
    assert!(packaged.join("src/core/client_event.rs").exists());
}
