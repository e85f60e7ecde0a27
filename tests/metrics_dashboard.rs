//! The Grafana dashboard in `deploy/grafana/palaver.json` queries only metrics that a
//! server exports: every `palaver_*` and `process_*` name in its queries is a sample
//! name in the `/metrics` answer of a standalone server or of a cluster node (the
//! `palaver_cluster_*` families). The cluster node needs Debian's `nats-server`, which
//! `./x test` installs.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests: failing loudly is the point")]

use std::collections::BTreeSet;

use palaver_e2e::{Nats, Server, http};
use serde_json::Value;

/// Every sample name of a Prometheus-text answer.
fn exported(server: &Server) -> BTreeSet<String> {
    let (status, text) = http(server.addr, "GET", "/metrics", None, &[]);
    assert_eq!(status, 200);
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect()
}

/// Every query string of the dashboard (`expr` and template `query` fields).
fn queries(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "definition", Value::String(q)) => out.push(q.clone()),
                    _ => queries(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| queries(v, out)),
        _ => {}
    }
}

/// The metric names a PromQL expression reads (identifiers starting `palaver_` or `process_`).
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| t.starts_with("palaver_") || t.starts_with("process_"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_dashboard_queries_only_exported_metrics() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/palaver.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    queries(&dashboard, &mut exprs);
    assert!(exprs.len() >= 20, "only {} queries in {path}", exprs.len());

    let standalone = Server::start(&["--shards", "2"]);
    let nats = Nats::start();
    let node = Server::start(&["--cluster", &nats.url, "--node-id", "n1"]);
    let mut available = exported(&standalone);
    available.extend(exported(&node));
    assert!(available.contains("palaver_cluster_live_nodes"), "{available:?}");

    let mut used = BTreeSet::new();
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "a query that reads no Palaver metric: {expr}");
        used.extend(names);
    }
    let missing: Vec<_> = used.difference(&available).collect();
    assert!(missing.is_empty(), "the dashboard queries metrics no server exports: {missing:?}");
}
