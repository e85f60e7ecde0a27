//! `/metrics` as a scraper reads it: after some traffic, both the OpenMetrics answer
//! (`Accept: application/openmetrics-text`) and the default Prometheus text parse with
//! `prometheus_client`'s own parsers (the OpenMetrics one is strict: a clashing name, a
//! wrong suffix or a missing `# EOF` fails it), every latency histogram has counted, and
//! the help texts say what is counted. Needs Python with `prometheus-client`, which
//! `./x test` installs into a venv under `target/`.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests: failing loudly is the point")]

use std::process::Command;
use std::time::{Duration, Instant};

use palaver_e2e::{Client, PYTHON, Server, http, outside_tool, register, send_op};
use palaver_protocol::{Codec, Op, RoomKind};
use serde_json::Value;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0";

/// Both answers, parsed by prometheus_client (see `python/check_metrics.py`).
fn parsed(server: &Server) -> Value {
    let (status, openmetrics) = http(server.addr, "GET", "/metrics", None, &[("accept", OPENMETRICS)]);
    assert_eq!(status, 200);
    let (status, prometheus) = http(server.addr, "GET", "/metrics", None, &[]);
    assert_eq!(status, 200);
    let dir = tempfile::tempdir().unwrap();
    let (om, prom) = (dir.path().join("openmetrics.txt"), dir.path().join("prometheus.txt"));
    std::fs::write(&om, &openmetrics).unwrap();
    std::fs::write(&prom, &prometheus).unwrap();
    let python = outside_tool(PYTHON);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/check_metrics.py");
    let output = Command::new(&python).arg(script).arg(&om).arg(&prom).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "prometheus_client refused /metrics ({}; install it: {}):\n{stderr}\n--- OpenMetrics ---\n{openmetrics}",
        python.display(),
        PYTHON.install
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The sum of a family's `_count` samples (over every label set).
fn count(families: &Value, family: &str) -> f64 {
    let samples = &families[family]["samples"][format!("{family}_count")];
    samples
        .as_array()
        .unwrap_or_else(|| panic!("no {family}_count in {family}"))
        .iter()
        .map(|s| s[1].as_f64().unwrap())
        .sum()
}

#[test]
fn every_family_parses_and_the_histograms_count() {
    let server = Server::start(&["--shards", "2"]);
    let account = register(server.addr, "alice");
    let mut alice = Client::login(server.addr, Codec::Json, &account);
    let room = alice.create_room("metrics", RoomKind::Public);
    alice.join(&room, None);
    for i in 0..5 {
        alice.ok(send_op(&room, &format!("c{i}"), "hello metrics"));
    }
    alice.ok(Op::History {
        room: room.clone(),
        before: None,
        after: None,
        limit: Some(10),
        cursor: None,
        threads: Default::default(),
    });
    alice.request(Op::Search {
        query: "metrics".into(),
        room: None,
        from: None,
        before: None,
        after: None,
        order: None,
        limit: None,
        cursor: None,
    });

    // Deliveries are recorded when the shard has queued them: allow it a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let families = loop {
        let all = parsed(&server);
        if count(&all["openmetrics"], "palaver_message_delivery_seconds") >= 5.0 || Instant::now() > deadline
        {
            break all;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let om = &families["openmetrics"];
    for (family, kind) in [
        ("palaver_build", "info"),
        ("palaver_durability", "info"),
        ("palaver_search_indexing", "gauge"),
        ("palaver_connections", "gauge"),
        ("palaver_connections_accepted", "counter"),
        ("palaver_messages_stored", "counter"),
        ("palaver_send_durable_seconds", "histogram"),
        ("palaver_commit_duration_seconds", "histogram"),
        ("palaver_commit_group_size", "histogram"),
        ("palaver_message_delivery_seconds", "histogram"),
        ("palaver_history_seconds", "histogram"),
        ("palaver_search_seconds", "histogram"),
        ("palaver_shard_cpu_seconds", "counter"),
        ("process_cpu_seconds", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_max_fds", "gauge"),
        ("process_start_time_seconds", "gauge"),
    ] {
        assert_eq!(om[family]["type"], kind, "{family}: {}", om[family]);
    }
    assert!(count(om, "palaver_send_durable_seconds") >= 5.0, "{}", om["palaver_send_durable_seconds"]);
    assert!(count(om, "palaver_commit_duration_seconds") >= 5.0);
    assert!(count(om, "palaver_commit_group_size") >= 1.0);
    assert!(
        count(om, "palaver_message_delivery_seconds") >= 5.0,
        "{}",
        om["palaver_message_delivery_seconds"]
    );
    assert!(count(om, "palaver_history_seconds") >= 1.0);
    assert!(count(om, "palaver_search_seconds") >= 1.0);
    let shards: Vec<&str> = om["palaver_shard_cpu_seconds"]["samples"]["palaver_shard_cpu_seconds_total"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[0]["shard"].as_str().unwrap())
        .collect();
    assert_eq!(shards, ["0", "1"], "one CPU series per shard");
    let build = &om["palaver_build"]["samples"]["palaver_build_info"][0];
    assert_eq!(build[0]["version"], env!("CARGO_PKG_VERSION"), "{build}");
    // The test server runs with the default durability and search on.
    let durability = &om["palaver_durability"]["samples"]["palaver_durability_info"][0];
    assert_eq!(durability[0]["mode"], "fsync", "{durability}");
    assert_eq!(om["palaver_search_indexing"]["samples"]["palaver_search_indexing"][0][1], 1.0);
    assert!(
        om["palaver_connections"]["help"].as_str().unwrap().contains("QUIC"),
        "{}",
        om["palaver_connections"]
    );
    assert_eq!(om["palaver_connections"]["samples"]["palaver_connections"][0][1], 1.0, "alice's socket");

    // The Prometheus text names counters with `_total` and has the same families.
    let prom = &families["prometheus"];
    assert_eq!(prom["palaver_messages_stored"]["type"], "counter", "{}", prom["palaver_messages_stored"]);
    assert_eq!(prom["palaver_send_durable_seconds"]["type"], "histogram");
}
