//! WebSocket conformance: the Autobahn TestSuite's case files, driven by `kosoku` (PyPI),
//! against the server's own framing through its test-only echo route. Every case must
//! pass (OK or NON-STRICT). Compression cases (12.*, 13.*) are excluded: Palaver does not
//! offer permessage-deflate, so they report UNIMPLEMENTED by design. Needs `kosoku`,
//! which `./x test` installs into a venv under `target/`.

use std::process::Command;

use palaver_e2e::{KOSOKU, Server, outside_tool};

#[test]
fn autobahn_cases_pass_against_the_echo_route() {
    let kosoku = outside_tool(KOSOKU);
    let server = Server::start(&["--test-echo", "--shards", "1"]);
    let reports = tempfile::tempdir().unwrap();
    let output = Command::new(&kosoku)
        .arg(format!("ws://{}/v1/test/echo", server.addr))
        .args(["-x", "12.*", "-x", "13.*", "-p", "4", "-o"])
        .arg(reports.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "conformance failures:\n{stdout}\n{stderr}");
    assert!(stdout.contains("cases passed"), "{stdout}");
}
