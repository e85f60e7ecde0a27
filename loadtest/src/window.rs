//! The clock of a run that carries traffic: a start instant a little in the future (so
//! every task is spawned before the first send), a warm-up that is not measured, the
//! measured window, then a bounded drain while the last replies and deliveries arrive,
//! and (Palaver) a bounded wait for the search index to catch up.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use serde_json::{Value, json};

use crate::env::Env;
use crate::fsync_probe::FsyncProbe;
use crate::histogram_delta::{self, Buckets};
use crate::http;
use crate::report::{Mark, Sampler};
use crate::search_index;
use crate::stats::{Stats, epoch_us};

/// Longest wait for the last acks, deliveries and pages after sending stops.
pub const DRAIN: Duration = Duration::from_secs(5);

/// When a run starts, warms up, measures and stops sending.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Traffic starts here.
    pub t0: Instant,
    /// `t0` in µs since the epoch (the unit of `client_ts`).
    pub epoch0: u64,
    /// Warm-up length (from `t0`).
    pub warmup: Duration,
    /// Warm-up + measured window (from `t0`): nothing is sent after it.
    pub send_until: Duration,
}

impl Schedule {
    /// A schedule starting 100 ms from now.
    pub fn new(warmup: Duration, duration: Duration) -> Schedule {
        let lead = Duration::from_millis(100);
        Schedule {
            t0: Instant::now() + lead,
            epoch0: epoch_us() + lead.as_micros() as u64,
            warmup,
            send_until: warmup + duration,
        }
    }

    /// The instant sending stops.
    pub fn end(&self) -> Instant {
        self.t0 + self.send_until
    }
}

/// What the window driver saw.
pub struct Window {
    pub start: Mark,
    pub end: Mark,
    pub drain_secs: f64,
    pub sampler: Sampler,
    /// The server's durability, the disk's fsync latency during the window and its group
    /// commits' (`results.storage`).
    pub storage: Value,
    /// The search index during the window and its catch-up after it (`results.search_index`).
    pub search_index: Value,
}

/// The server's histogram of fsyncs alone, read when a server exposes it (instead of the
/// probe's).
const SERVER_FSYNC_HISTOGRAM: &str = "palaver_storage_fsync_seconds";

/// The server's histogram of group commits (journal write, fsync, in-memory insert).
const GROUP_COMMIT_HISTOGRAM: &str = "palaver_commit_duration_seconds";

/// Runs warm-up, the measured window, the drain and the search index's catch-up; returns
/// the marks at the window's edges and what the server's storage and index did.
pub async fn run(env: &Env, stats: &Arc<Stats>, schedule: &Schedule) -> Window {
    let mut sampler = Sampler::new(env, stats.clone(), env.common.quiet);
    tokio::time::sleep_until(schedule.t0).await;
    sampler.run_until(schedule.t0 + schedule.warmup, "warm-up").await;
    stats.open_window(schedule.epoch0 + schedule.warmup.as_micros() as u64);
    let start = sampler.mark(env).await;
    let server_times_fsyncs = start
        .exposition
        .as_deref()
        .is_some_and(|text| Buckets::parse(text, SERVER_FSYNC_HISTOGRAM).is_some());
    let probe = match env.fsync_probe_dir() {
        Ok(_) if server_times_fsyncs => Err(String::new()),
        Ok(dir) => FsyncProbe::start(&dir, Duration::from_millis(env.common.fsync_probe_interval_ms))
            .map_err(|e| format!("not measured: {e:#}")),
        Err(why) => Err(why.to_string()),
    };
    sampler.run_until(schedule.end(), "measure").await;
    stats.close_window(schedule.epoch0 + schedule.send_until.as_micros() as u64);
    let end = sampler.mark(env).await;
    let fsync = probe.map(FsyncProbe::finish);
    let drain_started = Instant::now();
    while drain_started.elapsed() < DRAIN {
        let s = stats.snapshot();
        if s.acks + s.errors >= s.sends
            && s.deliveries >= s.expected_deliveries
            && s.history_pages + s.history_errors >= s.history_requests
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain_secs = drain_started.elapsed().as_secs_f64();
    let storage = storage_json(env, &start, &end, fsync);
    let search_index = index_json(env, &start, &end, &mut sampler).await;
    Window { start, end, drain_secs, sampler, storage, search_index }
}

/// `results.storage`: the durability mode, the fsync latency (the server's own histogram
/// when it has one, else the probe's) and the group commits' latency from the server's
/// histogram, over the window. Percentiles from server histograms are interpolated within
/// their buckets ([`crate::histogram_delta`]).
fn storage_json(env: &Env, start: &Mark, end: &Mark, probe: Result<(Value, String), String>) -> Value {
    if !env.common.target.is_palaver() {
        return json!({ "durability": "none: the reference server stores nothing" });
    }
    let (before, after) =
        (start.exposition.as_deref().unwrap_or(""), end.exposition.as_deref().unwrap_or(""));
    let (fsync, source) = match (histogram_delta::window_json(before, after, SERVER_FSYNC_HISTOGRAM), probe) {
        (Some(server), _) => (server, format!("the server's {SERVER_FSYNC_HISTOGRAM}")),
        (None, Ok((probe, source))) => (probe, source),
        (None, Err(why)) => (Value::Null, why),
    };
    json!({
        "durability": durability(env, end.exposition.as_deref()),
        "fsync_ms": fsync,
        "fsync_source": source,
        "group_commit_ms": histogram_delta::window_json(before, after, GROUP_COMMIT_HISTOGRAM),
    })
}

/// The server's `--durability`: from `palaver_durability_info`, else (an older build) from
/// a spawned server's command line.
fn durability(env: &Env, exposition: Option<&str>) -> String {
    if let Some(mode) = exposition.and_then(|t| http::label_value(t, "palaver_durability_info", "mode")) {
        return mode;
    }
    let Some(server) = env.spawned.first() else { return "not exposed".into() };
    let line = &server.command_line;
    let given = line.iter().enumerate().find_map(|(i, arg)| match arg.strip_prefix("--durability") {
        Some("") => line.get(i + 1).cloned(),
        Some(rest) => rest.strip_prefix('=').map(str::to_string),
        None => None,
    });
    format!("{} (from the command line)", given.as_deref().unwrap_or("fsync"))
}

/// `results.search_index`: waits (bounded) for the index to catch up after sending, then
/// describes its backlog and lag, and the server's CPU until it caught up.
async fn index_json(env: &Env, start: &Mark, end: &Mark, sampler: &mut Sampler) -> Value {
    if !env.common.target.is_palaver() {
        return json!({ "indexing": "none: the reference server has no search" });
    }
    let indexing = search_index::indexing(&end.metrics);
    sampler.index.observe(&end.metrics);
    let within = env.common.index_catch_up();
    let catch_up = if indexing == "on" {
        if !env.common.quiet {
            eprintln!("waiting for the search index to catch up (at most {} s)", within.as_secs_f64());
        }
        search_index::wait_caught_up(
            end.at,
            within,
            &mut sampler.index,
            || env.server_metrics(),
            || env.server_sample(),
        )
        .await
    } else {
        search_index::CatchUp { secs: None, backlog_left: None, server: None }
    };
    let deliveries = end.snap.deliveries.saturating_sub(start.snap.deliveries);
    search_index::results_json(
        indexing,
        &sampler.index,
        &end.metrics,
        &catch_up,
        start.server,
        deliveries,
        within,
    )
}
