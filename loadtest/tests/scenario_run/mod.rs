//! Runs one scenario of the load harness for about two seconds with small numbers
//! against the debug `palaver` binary (spawned by the harness on loopback) and checks it
//! finished with zero errors of any kind. No timing is asserted.

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
pub fn run(scenario: &str, args: &[&str]) -> serde_json::Value {
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
