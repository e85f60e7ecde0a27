//! An outside client, written in Python from docs/PROTOCOL.md alone, against the real
//! server: register, log in, create and join rooms, chat, page history, resume.

use std::process::Command;

use palaver_e2e::Server;

#[test]
fn a_python_websockets_client_can_do_everything_the_contract_promises() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/chat_client.py");
    let probe = Command::new("python3").args(["-c", "import websockets"]).status();
    if !matches!(probe, Ok(s) if s.success()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install Python websockets (pip install websockets)"
        );
        eprintln!("SKIPPED: python3 with `websockets` is not installed (pip install websockets)");
        return;
    }
    let server = Server::start(&["--shards", "2"]);
    let output = Command::new("python3").arg(script).arg(server.addr.to_string()).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "python client failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("ALL CHECKS PASSED"), "{stdout}");
}
