//! The performance report's numbers (`docs/perf/current.json`, one result document per
//! run) regenerate as Markdown and HTML with SVG plots through `palaver-load report`.

use clap::Parser as _;
use palaver_load::cli::Cli;

#[test]
fn the_committed_summary_regenerates_every_report() {
    let summary = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/perf/current.json");
    let runs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(summary).expect("read the summary")).expect("JSON");
    let names: Vec<&String> = runs.as_object().expect("an object of runs").keys().collect();
    assert!(names.len() >= 10, "only {} runs in {summary}", names.len());

    let out = tempfile::tempdir().expect("temp dir");
    let dir = out.path().to_str().expect("utf-8 path");
    let cli =
        Cli::try_parse_from(["palaver-load", "report", summary, "--dir", dir]).expect("valid command line");
    palaver_load::run(&cli.command).expect("report");
    for name in names {
        for ext in ["md", "html"] {
            let file = out.path().join(format!("{name}.{ext}"));
            let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert!(!text.is_empty(), "{} is empty", file.display());
        }
        let plot = out.path().join(format!("{name}-latency.svg"));
        let has_latency = runs[name.as_str()]["timeline"].as_array().is_some_and(|t| !t.is_empty());
        if has_latency && runs[name.as_str()]["scenario"] != "connect" {
            assert!(plot.is_file(), "{} was not drawn", plot.display());
        }
    }
}

#[test]
fn a_summary_without_dir_is_refused_with_a_reason() {
    let summary = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/perf/current.json");
    let cli = Cli::try_parse_from(["palaver-load", "report", summary]).expect("valid command line");
    let error = palaver_load::run(&cli.command).expect_err("needs --dir");
    assert!(error.to_string().contains("--dir"), "{error}");
}
