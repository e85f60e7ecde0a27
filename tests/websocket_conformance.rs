//! WebSocket conformance: the Autobahn TestSuite's case files, driven by `kosoku` (PyPI),
//! against the server's own framing through its test-only echo route. Every case must
//! pass (OK or NON-STRICT). Compression cases (12.*, 13.*) are excluded: Palaver does not
//! offer permessage-deflate, so they report UNIMPLEMENTED by design.

use std::process::Command;

use palaver_e2e::Server;

#[test]
fn autobahn_cases_pass_against_the_echo_route() {
    let probe = Command::new("kosoku").arg("--help").output();
    if !matches!(probe, Ok(ref out) if out.status.success()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install kosoku (pip install -r tests/python/requirements.txt)"
        );
        eprintln!("SKIPPED: kosoku is not installed (pip install -r tests/python/requirements.txt)");
        return;
    }
    let server = Server::start(&["--test-echo", "--shards", "1"]);
    let reports = tempfile::tempdir().unwrap();
    let output = Command::new("kosoku")
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
