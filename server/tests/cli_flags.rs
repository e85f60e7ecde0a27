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

#[test]
fn version_names_the_build() {
    let out = Command::new(env!("CARGO_BIN_EXE_palaver")).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("palaver {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn help_states_defaults() {
    let out = Command::new(env!("CARGO_BIN_EXE_palaver")).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for shown in ["[default: 127.0.0.1:8080]", "[default: fsync]", "[default: text]", "--jwt-secret-file"] {
        assert!(help.contains(shown), "{shown} missing in help:\n{help}");
    }
}

#[test]
fn an_empty_jwt_secret_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_palaver"))
        .arg("--jwt-secret-file")
        .arg(&secret)
        .args(["--http-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is empty"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `--log-format json`: every log line is a JSON object with a level and a message;
/// `--jwt-secret-file` is used instead of generating a development secret.
#[test]
fn json_logs_and_a_secret_from_a_file() {
    use std::io::{BufRead as _, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "a-secret-from-a-file-of-32-bytes-or-more\n").unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_palaver"))
        .arg("--jwt-secret-file")
        .arg(&secret)
        .args(["--http-addr", "127.0.0.1:0", "--quic-addr", "127.0.0.1:0", "--shards", "1"])
        .args(["--log-format", "json", "--log-level", "info", "--data-dir"])
        .arg(&data)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut listening = String::new();
    stdout.read_line(&mut listening).unwrap();
    assert!(listening.starts_with("listening "), "{listening:?}");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut logs: Vec<serde_json::Value> = Vec::new();
    while !logs.iter().any(|l| l["fields"]["message"] == "palaver is serving") {
        let line = lines_rx.recv_timeout(std::time::Duration::from_secs(15)).expect("the serving log line");
        if line.starts_with('{') {
            logs.push(serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")));
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(logs.iter().all(|l| l["level"].is_string()), "{logs:?}");
    assert!(!data.join("jwt-secret").exists(), "a development secret was generated");
}
