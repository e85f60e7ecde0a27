//! The binary's command line: help works, bad settings fail fast with a clear message.
//! (Also makes `cargo test --workspace` build the `palaver` binary the end-to-end tests run.)

use std::process::Command;

#[test]
fn help_lists_the_operator_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_palaver")).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in
        ["--http-addr", "--quic-addr", "--data-dir", "--shards", "--jwt-secret", "--durability", "--config"]
    {
        assert!(help.contains(flag), "missing {flag} in help");
    }
}

#[test]
fn invalid_settings_exit_non_zero_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_palaver"))
        .args(["--shards", "0", "--http-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("shards must be 1 to 1024"));

    let out =
        Command::new(env!("CARGO_BIN_EXE_palaver")).args(["--durability", "sometimes"]).output().unwrap();
    assert!(!out.status.success());
}
