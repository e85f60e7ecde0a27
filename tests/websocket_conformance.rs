//! WebSocket conformance: the Autobahn TestSuite's case files, driven by `kosoku` (PyPI),
//! against the server's own framing through its test-only echo route, with
//! permessage-deflate on: every case, the compression ones (12.*, 13.*) included, must
//! pass, and strictly (OK, not NON-STRICT: invalid UTF-8 fails at its first bad byte).
//! Cases 12.2–12.5 (the 12.1 sizes again over other payloads, ~5 minutes of the client's
//! own compression) run with the long tests (`./x test --long`).
//! Needs `kosoku`, which `./x test` installs into a venv under `target/`.

use std::process::Command;

use palaver_e2e::{KOSOKU, Server, long_tests, outside_tool};

#[test]
fn autobahn_cases_pass_against_the_echo_route() {
    let kosoku = outside_tool(KOSOKU);
    let server = Server::start(&["--test-echo", "--shards", "1", "--permessage-deflate"]);
    let reports = tempfile::tempdir().unwrap();
    let long_cases = ["12.2.*", "12.3.*", "12.4.*", "12.5.*"];
    let mut command = Command::new(&kosoku);
    command.arg(format!("ws://{}/v1/test/echo", server.addr));
    if !long_tests() {
        for case in long_cases {
            command.args(["-x", case]);
        }
    }
    let output = command.args(["-p", "4", "-o"]).arg(reports.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "conformance failures:\n{stdout}\n{stderr}");
    assert!(stdout.contains("cases passed"), "{stdout}");
    // The verdicts, case by case, from kosoku's index of its reports.
    let index = std::fs::read_to_string(reports.path().join("index.json")).unwrap();
    let index: serde_json::Value = serde_json::from_str(&index).unwrap();
    let mut verdicts = std::collections::BTreeMap::<String, Vec<String>>::new();
    for cases in index.as_object().unwrap().values() {
        for (case, result) in cases.as_object().unwrap() {
            let behavior = result["behavior"].as_str().unwrap_or("?").to_owned();
            verdicts.entry(behavior).or_default().push(case.clone());
        }
    }
    let not_ok: Vec<_> =
        verdicts.iter().filter(|(b, _)| !matches!(b.as_str(), "OK" | "INFORMATIONAL")).collect();
    assert!(not_ok.is_empty(), "cases not OK: {not_ok:?}");
    let compression = verdicts["OK"].iter().filter(|c| c.starts_with("12.") || c.starts_with("13.")).count();
    let expected = if long_tests() { 216 } else { 216 - 18 * long_cases.len() };
    assert_eq!(compression, expected, "every compression case ran and passed");
}
