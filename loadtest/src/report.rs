//! Reporting: the live progress line (stderr, once a second), the marks taken at the
//! edges of the measured window, the result document (JSON) and the summary table (stdout).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::env::Env;
use crate::http;
use crate::process_stats::{self, ProcSample};
use crate::search_index;
use crate::stats::{Snapshot, Stats, Until, distribution_json, latency_json, round3};
use crate::window::Window;

/// Bars of the latency distributions in results (and in the HTML plot).
pub const DISTRIBUTION_BINS: u64 = 40;

/// Everything known at one instant: counters, server and generator CPU, server metrics.
pub struct Mark {
    pub at: Instant,
    pub snap: Snapshot,
    pub server: Option<ProcSample>,
    client: Option<ProcSample>,
    /// Palaver's unlabelled `/metrics` series.
    pub metrics: Vec<(String, f64)>,
    /// Palaver's whole `/metrics` answer (histograms, info labels).
    pub exposition: Option<String>,
}

/// Prints a progress line every second and keeps the per-second timeline.
pub struct Sampler {
    stats: Arc<Stats>,
    quiet: bool,
    server_pids: Vec<u32>,
    started: Instant,
    last_at: Instant,
    last: Snapshot,
    last_server: Option<ProcSample>,
    timeline: Vec<Value>,
    /// Palaver's HTTP listener, read each second of the window for the search index.
    metrics_from: Option<http::Listener>,
    /// The search index's largest backlog and lag so far.
    pub index: search_index::Watch,
}

impl Sampler {
    pub fn new(env: &Env, stats: Arc<Stats>, quiet: bool) -> Sampler {
        let now = Instant::now();
        Sampler {
            last: stats.snapshot(),
            stats,
            quiet,
            server_pids: env.server_pids.clone(),
            started: now,
            last_at: now,
            last_server: env.server_sample(),
            timeline: Vec::new(),
            metrics_from: env.common.target.is_palaver().then(|| env.listener()),
            index: search_index::Watch::default(),
        }
    }

    /// Prints a line each second until `deadline`.
    pub async fn run_until(&mut self, deadline: Instant, phase: &str) {
        loop {
            let next = self.last_at + Duration::from_secs(1);
            if next > deadline {
                tokio::time::sleep_until(deadline).await;
                return;
            }
            tokio::time::sleep_until(next).await;
            self.line(phase);
            if phase == "measure" {
                self.watch_index().await;
            }
        }
    }

    /// Reads the search index's gauges into the watch and this second's timeline entry.
    async fn watch_index(&mut self) {
        let Some(listener) = self.metrics_from else { return };
        let Ok(metrics) = http::metrics(listener).await else { return };
        self.index.observe(&metrics);
        if let Some(entry) = self.timeline.last_mut() {
            entry["index_backlog"] = json!(search_index::gauge(&metrics, search_index::BACKLOG_GAUGE));
            entry["index_lag_secs"] = json!(search_index::gauge(&metrics, search_index::LAG_GAUGE));
        }
    }

    fn line(&mut self, phase: &str) {
        let now = Instant::now();
        let secs = (now - self.last_at).as_secs_f64().max(1e-6);
        let snap = self.stats.snapshot();
        let server = process_stats::sample_all(&self.server_pids);
        let cpu = match (self.last_server, server) {
            (Some(a), Some(b)) => {
                Some(b.total_us().saturating_sub(a.total_us()) as f64 / (secs * 1e6) * 100.0)
            }
            _ => None,
        };
        let rate = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / secs;
        let (sends, acks, deliveries) = (
            rate(self.last.sends, snap.sends),
            rate(self.last.acks, snap.acks),
            rate(self.last.deliveries, snap.deliveries),
        );
        let (connects, pages) =
            (rate(self.last.connects, snap.connects), rate(self.last.history_pages, snap.history_pages));
        let latency = self.stats.delivery.take_interval(Until::Read);
        let arrival = self.stats.delivery.take_interval(Until::Arrival);
        let connect_latency = self.stats.connect.take_interval();
        let history_latency = self.stats.history.take_interval();
        let elapsed = (now - self.started).as_secs_f64();
        if !self.quiet {
            let lat = latency
                .map(|(p50, p99, max)| format!("p50 {p50:.2} p99 {p99:.2} max {max:.1} ms"))
                .unwrap_or_else(|| "no deliveries".into());
            let cpu_text = cpu.map(|c| format!(" server cpu {c:.0}%")).unwrap_or_default();
            let mut extra = String::new();
            if let Some((p50, p99, _)) = connect_latency {
                extra.push_str(&format!(" | connects {connects:.0}/s p50 {p50:.2} p99 {p99:.2} ms"));
            }
            if let Some((p50, p99, _)) = history_latency {
                extra.push_str(&format!(" | pages {pages:.0}/s p50 {p50:.2} p99 {p99:.2} ms"));
            }
            eprintln!(
                "[{elapsed:5.1}s {phase:>8}] sends {sends:.0}/s acks {acks:.0}/s deliveries {deliveries:.0}/s {lat} \
                 errors {} disconnects {}{cpu_text}{extra}",
                snap.errors + snap.history_errors + snap.connect_errors,
                snap.disconnects
            );
        }
        self.timeline.push(json!({
            "t": round3(elapsed),
            "phase": phase,
            "sends_per_sec": sends.round(),
            "acks_per_sec": acks.round(),
            "deliveries_per_sec": deliveries.round(),
            "p50_ms": latency.map(|l| l.0),
            "p99_ms": latency.map(|l| l.1),
            "max_ms": latency.map(|l| l.2),
            "arrival_p99_ms": arrival.map(|l| l.1),
            "server_cpu_pct": cpu.map(|c| c.round()),
            "connects_per_sec": connects.round(),
            "connect_p50_ms": connect_latency.map(|l| l.0),
            "connect_p99_ms": connect_latency.map(|l| l.1),
            "pages_per_sec": pages.round(),
            "history_p50_ms": history_latency.map(|l| l.0),
            "history_p99_ms": history_latency.map(|l| l.1),
            "errors": snap.errors + snap.history_errors + snap.connect_errors,
            "disconnects": snap.disconnects,
        }));
        self.last = snap;
        self.last_at = now;
        self.last_server = server;
    }

    /// Takes a mark now.
    pub async fn mark(&self, env: &Env) -> Mark {
        let at = Instant::now();
        let snap = self.stats.snapshot();
        let server = env.server_sample();
        let client = process_stats::sample(None).ok();
        let exposition = env.server_exposition().await;
        let metrics = exposition.as_deref().map(http::unlabelled).unwrap_or_default();
        Mark { at, snap, server, client, metrics, exposition }
    }

    pub fn timeline(&self) -> Value {
        Value::Array(self.timeline.clone())
    }
}

/// The window between two marks: its length (s, at least 1 µs) and the counters at both ends.
pub fn window_delta(start: &Mark, end: &Mark) -> (f64, Snapshot, Snapshot) {
    ((end.at - start.at).as_secs_f64().max(1e-6), start.snap, end.snap)
}

/// Adds `results/errors_total`: every error the run counted, of any kind.
pub fn finalize(doc: &mut Value) {
    let n = |path: &str| get(doc, path).and_then(Value::as_u64).unwrap_or(0);
    let total = if doc["scenario"] == "connect" {
        n("results/connections_failed") + n("results/disconnects")
    } else {
        [
            "results/totals/errors",
            "results/totals/decode_errors",
            "results/totals/disconnects",
            "results/totals/write_errors",
            "results/totals/missing_deliveries",
            "results/totals/unanswered_sends",
            "setup/setup_errors",
            "results/churn/connect_errors",
            "results/churn/seq_check/gaps",
            "results/churn/seq_check/duplicates",
            "results/churn/seq_check/clients_lost",
            "results/churn/seq_check/clients_not_caught_up",
            "results/history/errors",
            "results/history/mismatches",
            "results/history/unanswered",
        ]
        .iter()
        .map(|p| n(p))
        .sum()
    };
    if let Some(results) = doc.get_mut("results").and_then(Value::as_object_mut) {
        results.insert("errors_total".into(), json!(total));
    }
}

/// Server CPU over a window, per delivery (or per connection).
fn cpu_json(a: Option<ProcSample>, b: Option<ProcSample>, secs: f64, per: u64, per_name: &str) -> Value {
    let (Some(a), Some(b)) = (a, b) else { return Value::Null };
    let user = b.user_us.saturating_sub(a.user_us);
    let system = b.system_us.saturating_sub(a.system_us);
    let total = user + system;
    let per_f = per.max(1) as f64;
    json!({
        "user_us": user,
        "system_us": system,
        "total_us": total,
        "util_pct": round3(total as f64 / (secs * 1e6) * 100.0),
        format!("us_per_{per_name}_user"): round3(user as f64 / per_f),
        format!("us_per_{per_name}_total"): round3(total as f64 / per_f),
        "rss_kib_before": a.rss_kib,
        "rss_kib_after": b.rss_kib,
    })
}

/// Differences of `/metrics` counters (`*_total`) and final gauges.
fn metrics_json(a: &[(String, f64)], b: &[(String, f64)]) -> Value {
    let mut out = serde_json::Map::new();
    for (name, after) in b {
        if name.ends_with("_total") {
            let before = a.iter().find(|(n, _)| n == name).map(|(_, v)| *v).unwrap_or(0.0);
            out.insert(format!("{name}_delta"), json!(after - before));
        } else {
            out.insert(name.clone(), json!(after));
        }
    }
    Value::Object(out)
}

/// The opening of every result document.
pub fn header(env: &Env, scenario: &str, config: Value) -> Value {
    json!({
        "tool": "palaver-load",
        "version": env!("CARGO_PKG_VERSION"),
        "scenario": scenario,
        "target": env.common.target.name(),
        "date": process_stats::utc_now_iso(),
        "command_line": std::env::args().collect::<Vec<_>>(),
        "machine": process_stats::machine(),
        "server": env.server_json(),
        "config": config,
    })
}

/// The numbers of a traffic run: those of the window between its marks, and what the
/// server's storage and search index did during it.
pub fn traffic_results(stats: &Stats, window: &Window, last: &Snapshot) -> Value {
    let (start, end) = (&window.start, &window.end);
    let secs = (end.at - start.at).as_secs_f64().max(1e-6);
    let deliveries = end.snap.deliveries.saturating_sub(start.snap.deliveries);
    let sends = end.snap.sends.saturating_sub(start.snap.sends);
    let acks = end.snap.acks.saturating_sub(start.snap.acks);
    let received = end.snap.received_bytes.saturating_sub(start.snap.received_bytes);
    let latency = stats.delivery.window(Until::Read);
    let arrival = stats.delivery.window(Until::Arrival);
    json!({
        "window_secs": round3(secs),
        "deliveries_per_sec": (deliveries as f64 / secs).round(),
        "sends_per_sec": round3(sends as f64 / secs),
        "acks_per_sec": round3(acks as f64 / secs),
        "deliveries_in_window": deliveries,
        // Bytes the receiving members read (frames, pings and all) per delivery.
        "received_bytes_per_delivery": (deliveries > 0).then(|| round3(received as f64 / deliveries as f64)),
        "latency_ms": latency_json(&latency),
        "latency_distribution": distribution_json(&latency, DISTRIBUTION_BINS),
        "arrival_latency_ms": latency_json(&arrival),
        "server_cpu": cpu_json(start.server, end.server, secs, deliveries, "delivery"),
        "client_cpu": cpu_json(start.client, end.client, secs, deliveries, "delivery"),
        "server_metrics": metrics_json(&start.metrics, &end.metrics),
        "totals": {
            "sends": last.sends,
            "acks": last.acks,
            "errors": last.errors,
            "error_codes": stats.error_codes(),
            "skipped_sends": last.skipped,
            "deliveries": last.deliveries,
            "expected_deliveries": last.expected_deliveries,
            "missing_deliveries": last.expected_deliveries.saturating_sub(last.deliveries),
            "extra_deliveries": last.deliveries.saturating_sub(last.expected_deliveries),
            "unanswered_sends": last.sends.saturating_sub(last.acks + last.errors),
            "decode_errors": last.decode_errors,
            "disconnects": last.disconnects,
            "write_errors": last.write_errors,
        },
        "max_send_lag_ms": stats.max_send_lag_us.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1000.0,
        "storage": window.storage.clone(),
        "search_index": window.search_index.clone(),
    })
}

/// The results of a connect run.
pub struct ConnectNumbers<'a> {
    pub opened: u64,
    pub failed: u64,
    pub connect_secs: f64,
    pub latency: &'a hdrhistogram::Histogram<u64>,
    pub before: Option<ProcSample>,
    pub after_connect: Option<ProcSample>,
    pub after_hold: Option<ProcSample>,
    pub disconnects: u64,
    pub first_error: Option<String>,
}

pub fn connect_results(n: &ConnectNumbers<'_>) -> Value {
    let rss_per_conn = match (n.before, n.after_hold) {
        (Some(a), Some(b)) if n.opened > 0 => {
            Some(round3((b.rss_kib as f64 - a.rss_kib as f64) * 1024.0 / n.opened as f64))
        }
        _ => None,
    };
    json!({
        "connections_opened": n.opened,
        "connections_failed": n.failed,
        "first_error": n.first_error,
        "connect_secs": round3(n.connect_secs),
        "connections_per_sec": (n.opened as f64 / n.connect_secs.max(1e-6)).round(),
        "connect_latency_ms": latency_json(n.latency),
        "rss_bytes_per_connection": rss_per_conn,
        "server_rss_kib": {
            "before": n.before.map(|s| s.rss_kib),
            "after_connect": n.after_connect.map(|s| s.rss_kib),
            "after_hold": n.after_hold.map(|s| s.rss_kib),
        },
        "server_cpu": cpu_json(n.before, n.after_connect, n.connect_secs, n.opened, "connection"),
        "disconnects": n.disconnects,
    })
}

/// Looks up a path like `results/latency_ms/p99` in a document.
pub fn get<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('/').try_fold(doc, |v, key| v.get(key))
}

/// The rows of the summary table and of `compare`: label, path, unit.
pub const TRAFFIC_ROWS: &[(&str, &str)] = &[
    ("deliveries/s", "results/deliveries_per_sec"),
    ("sends/s", "results/sends_per_sec"),
    ("latency p50 (ms)", "results/latency_ms/p50"),
    ("latency p90 (ms)", "results/latency_ms/p90"),
    ("latency p99 (ms)", "results/latency_ms/p99"),
    ("latency p99.9 (ms)", "results/latency_ms/p99_9"),
    ("latency max (ms)", "results/latency_ms/max"),
    ("arrival p50 (ms)", "results/arrival_latency_ms/p50"),
    ("arrival p99 (ms)", "results/arrival_latency_ms/p99"),
    ("arrival p99.9 (ms)", "results/arrival_latency_ms/p99_9"),
    ("arrival max (ms)", "results/arrival_latency_ms/max"),
    ("server CPU (%)", "results/server_cpu/util_pct"),
    ("server µs user / delivery", "results/server_cpu/us_per_delivery_user"),
    ("server µs total / delivery", "results/server_cpu/us_per_delivery_total"),
    ("server RSS after (KiB)", "results/server_cpu/rss_kib_after"),
    ("received bytes / delivery", "results/received_bytes_per_delivery"),
    ("generator CPU (%)", "results/client_cpu/util_pct"),
    ("generator max send lag (ms)", "results/max_send_lag_ms"),
    ("sends (total)", "results/totals/sends"),
    ("acks (total)", "results/totals/acks"),
    ("errors", "results/totals/errors"),
    ("missing deliveries", "results/totals/missing_deliveries"),
    ("disconnects", "results/totals/disconnects"),
    ("setup errors", "setup/setup_errors"),
];

/// The conditions of a traffic run: the server's durability, whether it indexed for
/// search, and the disk's and the group commits' latency during the window.
pub const CONDITION_ROWS: &[(&str, &str)] = &[
    ("durability", "results/storage/durability"),
    ("search indexing", "results/search_index/indexing"),
    ("fsync p50 (ms)", "results/storage/fsync_ms/p50"),
    ("fsync p99 (ms)", "results/storage/fsync_ms/p99"),
    ("fsync measured by", "results/storage/fsync_source"),
    ("group commit p50 (ms)", "results/storage/group_commit_ms/p50"),
    ("group commit p99 (ms)", "results/storage/group_commit_ms/p99"),
];

/// The search index's lag and catch-up, and the server's CPU until it caught up.
pub const INDEX_ROWS: &[(&str, &str)] = &[
    ("index max backlog (ops)", "results/search_index/max_backlog"),
    ("index max lag (s)", "results/search_index/max_lag_secs"),
    ("index caught up after sending (s)", "results/search_index/catch_up_secs"),
    ("index backlog left", "results/search_index/backlog_left"),
    (
        "server µs user / delivery + index",
        "results/search_index/server_cpu_until_caught_up/us_per_delivery_user",
    ),
    (
        "server µs total / delivery + index",
        "results/search_index/server_cpu_until_caught_up/us_per_delivery_total",
    ),
];

pub const CHURN_ROWS: &[(&str, &str)] = &[
    ("churn connects/s", "results/churn/connects_per_sec"),
    ("churn reconnects/s", "results/churn/reconnects_per_sec"),
    ("churn connect p50 (ms)", "results/churn/connect_latency_ms/p50"),
    ("churn connect p99 (ms)", "results/churn/connect_latency_ms/p99"),
    ("churn connect errors", "results/churn/connect_errors"),
    ("churn replayed events", "results/churn/replayed"),
    ("churn seq gaps", "results/churn/seq_check/gaps"),
    ("churn seq duplicates", "results/churn/seq_check/duplicates"),
];

pub const HISTORY_ROWS: &[(&str, &str)] = &[
    ("history pages/s", "results/history/pages_per_sec"),
    ("history p50 (ms)", "results/history/latency_ms/p50"),
    ("history p90 (ms)", "results/history/latency_ms/p90"),
    ("history p99 (ms)", "results/history/latency_ms/p99"),
    ("history max (ms)", "results/history/latency_ms/max"),
    ("history errors", "results/history/errors"),
    ("history page mismatches", "results/history/mismatches"),
];

pub const CONNECT_ROWS: &[(&str, &str)] = &[
    ("connections opened", "results/connections_opened"),
    ("connections failed", "results/connections_failed"),
    ("connections/s", "results/connections_per_sec"),
    ("connect p50 (ms)", "results/connect_latency_ms/p50"),
    ("connect p99 (ms)", "results/connect_latency_ms/p99"),
    ("server RSS bytes / connection", "results/rss_bytes_per_connection"),
    ("server RSS before (KiB)", "results/server_rss_kib/before"),
    ("server RSS after (KiB)", "results/server_rss_kib/after_hold"),
    ("server µs total / connection", "results/server_cpu/us_per_connection_total"),
    ("disconnects", "results/disconnects"),
];

/// The rows that apply to a document.
pub fn rows_for(doc: &Value) -> Vec<(&'static str, &'static str)> {
    let mut rows = Vec::new();
    // Cluster runs (and every result written since) say how many nodes served the run.
    if doc["server"].get("nodes").is_some() {
        rows.push(("server nodes", "server/nodes"));
    }
    let results = &doc["results"];
    // Results written before the storage and index figures have neither.
    if results.get("storage").is_some() {
        rows.extend_from_slice(CONDITION_ROWS);
    }
    if doc.get("scenario").and_then(Value::as_str) == Some("connect") {
        rows.extend_from_slice(CONNECT_ROWS);
    } else if results.get("history").is_some()
        && results.get("churn").is_none()
        && doc["scenario"] == "history"
    {
        rows.extend_from_slice(HISTORY_ROWS);
    } else {
        rows.extend_from_slice(TRAFFIC_ROWS);
        if results.get("search_index").is_some() {
            let after_cpu = rows
                .iter()
                .position(|(_, path)| *path == "results/server_cpu/us_per_delivery_total")
                .map_or(rows.len(), |i| i + 1);
            rows.splice(after_cpu..after_cpu, INDEX_ROWS.iter().copied());
        }
        if results.get("churn").is_some() {
            rows.extend_from_slice(CHURN_ROWS);
        }
        if results.get("history").is_some() {
            rows.extend_from_slice(HISTORY_ROWS);
        }
    }
    rows.push(("errors (all kinds)", "results/errors_total"));
    rows
}

/// A number for a table cell.
pub fn cell(v: Option<&Value>) -> String {
    match v {
        Some(Value::Number(n)) => {
            let x = n.as_f64().unwrap_or(0.0);
            if x.fract() == 0.0 && x.abs() < 1e15 { format!("{}", x as i64) } else { format!("{x:.3}") }
        }
        Some(Value::Null) | None => "–".into(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

/// Prints the summary table of one run on stdout.
pub fn print_summary(doc: &Value) {
    let title = format!(
        "palaver-load {} against {} ({})",
        doc["scenario"].as_str().unwrap_or("?"),
        doc["target"].as_str().unwrap_or("?"),
        doc["server"]["addr"].as_str().unwrap_or("?"),
    );
    println!("\n{title}");
    println!("{}", "-".repeat(title.len()));
    for (label, path) in rows_for(doc) {
        println!("{label:<32} {:>14}", cell(get(doc, path)));
    }
    if let Some(codes) = get(doc, "results/totals/error_codes").and_then(Value::as_object)
        && !codes.is_empty()
    {
        println!("{:<32} {}", "error codes", Value::Object(codes.clone()));
    }
}

/// Writes the document as pretty JSON.
pub fn write(doc: &Value, path: &std::path::Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(doc)? + "\n")?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_and_index_rows_appear_only_in_results_that_have_them() {
        let old = json!({ "scenario": "rooms", "server": {}, "results": { "latency_ms": { "p99": 1.5 } } });
        let labels = |doc: &Value| rows_for(doc).into_iter().map(|(l, _)| l).collect::<Vec<_>>();
        assert!(!labels(&old).contains(&"durability"));
        assert!(!labels(&old).contains(&"index max lag (s)"));

        let new = json!({ "scenario": "rooms", "server": {}, "results": {
            "storage": { "durability": "fsync", "fsync_ms": { "p50": 0.4, "p99": 2.0 } },
            "search_index": { "indexing": "on", "max_lag_secs": 0.25 },
        }});
        let rows = labels(&new);
        assert_eq!(rows[0], "durability", "{rows:?}");
        let cpu = rows.iter().position(|l| *l == "server µs total / delivery").expect("cpu row");
        assert_eq!(rows[cpu + 1], "index max backlog (ops)", "{rows:?}");
        assert_eq!(cell(get(&new, "results/storage/durability")), "fsync");
        assert_eq!(cell(get(&new, "results/storage/fsync_ms/p99")), "2");
        assert_eq!(cell(get(&new, "results/search_index/max_lag_secs")), "0.250");
        assert_eq!(cell(get(&new, "results/storage/group_commit_ms/p50")), "–");
    }
}
