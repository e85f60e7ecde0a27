//! An outside client, written in Python from docs/PROTOCOL.md alone, against the real
//! server: register, log in, create and join rooms, chat, page history, resume.
//!
//! Needs Python with `websockets`; `./x test` installs it into a venv under `target/`.

use std::process::Command;

use palaver_e2e::{PYTHON, Server, outside_tool};

#[test]
fn a_python_websockets_client_can_do_everything_the_contract_promises() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/chat_client.py");
    let python = outside_tool(PYTHON);
    let probe = Command::new(&python).args(["-c", "import websockets"]).status();
    assert!(
        matches!(probe, Ok(s) if s.success()),
        "{} cannot import websockets; install it: {}",
        python.display(),
        PYTHON.install
    );
    let server = Server::start(&["--shards", "2"]);
    let output = Command::new(&python).arg(script).arg(server.addr.to_string()).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "python client failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("ALL CHECKS PASSED"), "{stdout}");
}
