//! CI smoke test of the load harness: every scenario runs for about two seconds with small
//! numbers against the debug `palaver` binary (spawned by the harness on loopback) and
//! must finish with zero errors of any kind. No timing is asserted.
//!
//! The binary is `target/debug/palaver`, found next to this test's directory
//! (`current_exe()/../../palaver`); build it first with `cargo build -p palaver-server`.

use std::path::PathBuf;
use std::sync::Mutex;

use clap::Parser as _;
use palaver_load::cli::Cli;

/// Scenarios run one at a time: each spawns a server and they share two cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn palaver_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let binary = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("palaver"))
        .expect("test executable has no grandparent directory");
    assert!(
        binary.exists(),
        "the palaver binary is missing at {}: build it first with `cargo build -p palaver-server`",
        binary.display()
    );
    binary
}

/// Runs `palaver-load SCENARIO ARGS…` against a freshly spawned debug palaver and returns
/// its result document.
fn run(scenario: &str, args: &[&str]) -> serde_json::Value {
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let binary = palaver_binary();
    let mut argv: Vec<String> = vec!["palaver-load".into(), scenario.into()];
    argv.extend(
        [
            "--spawn-palaver",
            binary.to_str().expect("utf-8 path"),
            "--duration",
            "1.5",
            "--warmup",
            "0.5",
            "--users",
            "4",
            "--client-core",
            "none",
            "--quiet",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    argv.extend(args.iter().map(|s| s.to_string()));
    let cli = Cli::try_parse_from(&argv).expect("valid command line");
    let doc = palaver_load::run(&cli.command).unwrap_or_else(|e| panic!("{scenario} failed: {e:#}"));
    let errors = palaver_load::errors_total(&doc);
    assert_eq!(
        errors,
        0,
        "{scenario} counted errors; results:\n{}",
        serde_json::to_string_pretty(&doc["results"]).unwrap_or_default()
    );
    doc
}

#[test]
fn fanout_runs_clean() {
    let doc = run("fanout", &["--members", "10", "--senders", "2", "--rate", "50"]);
    // Every measured delivery also has its arrival time in the receiving socket, and a
    // delivery cannot be read before it arrived, so no arrival percentile exceeds the
    // read one.
    let (read, arrival) = (&doc["results"]["latency_ms"], &doc["results"]["arrival_latency_ms"]);
    let count = read["count"].as_u64().unwrap_or(0);
    assert!(count > 0, "no delivery measured: {read}");
    assert_eq!(arrival["count"].as_u64(), Some(count), "deliveries without an arrival time: {arrival}");
    for p in ["p50", "p99", "max"] {
        let (r, a) = (read[p].as_f64().unwrap_or(0.0), arrival[p].as_f64().unwrap_or(f64::MAX));
        assert!(a <= r, "arrival {p} {a} ms exceeds read {p} {r} ms");
    }
}

#[test]
fn rooms_runs_clean() {
    run("rooms", &["--rooms", "4", "--members", "3", "--rate", "10"]);
}

#[test]
fn connect_runs_clean() {
    run("connect", &["--connections", "50", "--hold", "0.5"]);
}

#[test]
fn churn_runs_clean() {
    run(
        "churn",
        &[
            "--clients",
            "6",
            "--connect-rate",
            "20",
            "--stay-min-ms",
            "50",
            "--stay-max-ms",
            "400",
            "--rate",
            "40",
        ],
    );
}

#[test]
fn history_runs_clean() {
    run("history", &["--clients", "3", "--rate", "60", "--fill", "300", "--limit", "50"]);
}

#[test]
fn mixed_runs_clean() {
    let profile = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smoke-mixed.toml");
    run("mixed", &["--profile", profile]);
}

/// The harness's cluster mode: a `nats-server -js` and two nodes, sockets spread over
/// both (`.ci/run` installs `nats-server`).
#[test]
fn fanout_on_a_two_node_cluster_runs_clean() {
    run("fanout", &["--spawn-cluster", "2", "--members", "10", "--senders", "2", "--rate", "50"]);
}
