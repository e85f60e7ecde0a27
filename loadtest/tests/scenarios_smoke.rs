//! CI smoke test of the load harness: every scenario runs for about two seconds with small
//! numbers against the debug `palaver` binary (spawned by the harness on loopback) and
//! must finish with zero errors of any kind. No timing is asserted.
//!
//! The binary is `target/debug/palaver`, found next to this test's directory
//! (`current_exe()/../../palaver`); build it first with `cargo build -p palaver-server`.

mod scenario_run;

use scenario_run::run;

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
fn fanout_with_permessage_deflate_runs_clean() {
    let compressed = run(
        "fanout",
        &[
            "--members",
            "10",
            "--senders",
            "2",
            "--rate",
            "50",
            "--payload",
            "400",
            "--deflate",
            "--server-arg=--permessage-deflate",
        ],
    );
    let plain = run("fanout", &["--members", "10", "--senders", "2", "--rate", "50", "--payload", "400"]);
    let per_delivery =
        |doc: &serde_json::Value| doc["results"]["received_bytes_per_delivery"].as_f64().unwrap_or(0.0);
    assert!(per_delivery(&plain) > 400.0, "{}", per_delivery(&plain));
    assert!(
        per_delivery(&compressed) < per_delivery(&plain),
        "compressed {} bytes per delivery, plain {}",
        per_delivery(&compressed),
        per_delivery(&plain)
    );
}

#[test]
fn rooms_runs_clean() {
    // More rooms than one account may create at once: the creators take turns.
    run("rooms", &["--rooms", "45", "--members", "2", "--rate", "2"]);
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

#[test]
fn fanout_over_quic_runs_clean_in_both_codecs() {
    for target in ["palaver-quic-rkyv", "palaver-quic-json"] {
        let doc = run("fanout", &["--target", target, "--members", "10", "--senders", "2", "--rate", "50"]);
        assert_eq!(doc["target"], target);
        assert!(
            doc["results"]["deliveries_in_window"].as_u64().unwrap_or(0) > 0,
            "{target} delivered nothing"
        );
    }
}

#[test]
fn rooms_over_websocket_over_tls_runs_clean() {
    let doc =
        run("rooms", &["--target", "palaver-rkyv-tls", "--rooms", "4", "--members", "3", "--rate", "5"]);
    assert!(doc["results"]["deliveries_in_window"].as_u64().unwrap_or(0) > 0);
}

#[test]
fn lossy_runs_clean_through_both_relays() {
    for target in ["palaver-rkyv", "palaver-quic-rkyv"] {
        let doc = run(
            "lossy",
            &[
                "--target",
                target,
                "--rooms",
                "3",
                "--rate",
                "10",
                "--observers",
                "2",
                "--rtt-ms",
                "20",
                "--loss",
                "0.05",
            ],
        );
        let relay = &doc["results"]["relay"];
        assert!(relay["forwarded"].as_u64().unwrap_or(0) > 0, "{target}: nothing went through the relay");
        assert!(
            doc["results"]["deliveries_in_window"].as_u64().unwrap_or(0) > 0,
            "{target} delivered nothing"
        );
    }
}

#[test]
fn traffic_results_state_durability_fsync_latency_and_the_search_index() {
    let doc = run("fanout", &["--members", "5", "--senders", "1", "--rate", "40"]);
    let storage = &doc["results"]["storage"];
    assert_eq!(storage["durability"], "fsync", "{storage}");
    let fsync = &storage["fsync_ms"];
    assert!(fsync["count"].as_u64().unwrap_or(0) > 0, "no fsync timed: {storage}");
    assert!(fsync["p50"].as_f64().unwrap_or(0.0) > 0.0, "{storage}");
    assert!(fsync["p99"].as_f64().unwrap_or(0.0) >= fsync["p50"].as_f64().unwrap_or(f64::MAX), "{storage}");
    assert!(storage["fsync_source"].as_str().is_some_and(|s| s.contains("fdatasync")), "{storage}");
    // Every acknowledged send went through a group commit in the window.
    let commits = &storage["group_commit_ms"];
    assert!(commits["count"].as_u64().unwrap_or(0) > 0, "{storage}");
    assert!(commits["p50"].as_f64().unwrap_or(0.0) > 0.0, "{storage}");

    let index = &doc["results"]["search_index"];
    assert_eq!(index["indexing"], "on", "{index}");
    assert_eq!(index["caught_up"], true, "{index}");
    assert_eq!(index["backlog_left"], 0.0, "{index}");
    assert!(index["catch_up_secs"].as_f64().is_some_and(|s| s >= 0.0), "{index}");
    assert!(index["max_lag_secs"].as_f64().is_some_and(|s| s >= 0.0), "{index}");
    assert!(index["max_backlog"].as_f64().is_some_and(|n| n >= 0.0), "{index}");
    // The CPU until the index caught up is the window's and then some.
    let window = doc["results"]["server_cpu"]["total_us"].as_u64().unwrap_or(u64::MAX);
    let until_caught_up = index["server_cpu_until_caught_up"]["total_us"].as_u64().unwrap_or(0);
    assert!(until_caught_up >= window, "{index}");
    // Every second of the window read the index's backlog.
    let timeline = doc["timeline"].as_array().expect("timeline");
    assert!(
        timeline.iter().filter(|e| e["phase"] == "measure").all(|e| e["index_backlog"].is_number()),
        "{timeline:?}"
    );
}

#[test]
fn traffic_results_state_buffered_durability_and_search_off() {
    let doc = run(
        "rooms",
        &[
            "--rooms",
            "2",
            "--members",
            "2",
            "--rate",
            "10",
            "--server-arg=--durability=buffered",
            "--server-arg=--disable-search",
        ],
    );
    assert_eq!(doc["results"]["storage"]["durability"], "buffered", "{}", doc["results"]["storage"]);
    assert_eq!(doc["results"]["search_index"]["indexing"], "off", "{}", doc["results"]["search_index"]);
}
