//! The `connect` scenario: open C idle authenticated sockets as fast as the set-up
//! concurrency allows, report the connect rate and latency, hold them, and report the
//! server's resident memory per connection (VmRSS after − before, over C).

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use futures_util::StreamExt as _;
use hdrhistogram::Histogram;

use crate::client::{AuthMode, Client};
use crate::env::{Env, round_robin};
use crate::report::{self, ConnectNumbers};
use crate::stats::Stats;

/// Runs the scenario and returns its result document.
pub async fn run(
    env: &Env,
    connections: usize,
    hold: Duration,
    config: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let common = &env.common;
    if connections == 0 {
        bail!("--connections must be at least 1");
    }
    let auth = AuthMode::for_target(common.target, common.auth_op);
    let tokens = Arc::new(env.register_users(common.users.min(connections).max(1)).await?);
    // Let registration's allocations settle before the baseline sample.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = env.server_sample();

    let started = std::time::Instant::now();
    let (addrs, target, sources) = (env.client_addrs.clone(), common.target, env.sources.clone());
    let deflate = common.deflate;
    let mut opening = futures_util::stream::iter(0..connections)
        .map(|i| {
            let tokens = tokens.clone();
            let source = sources[i % sources.len()];
            let addr = round_robin(&addrs, i);
            async move {
                let t = std::time::Instant::now();
                let token = &tokens[i % tokens.len()];
                let client = Client::connect_offering(addr, source, target, (token, auth), deflate).await;
                (client, t.elapsed())
            }
        })
        .buffer_unordered(common.connect_concurrency.max(1));
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut second = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut timeline = Vec::new();
    let mut second_started = std::time::Instant::now();
    let mut in_second = 0u64;
    let mut clients = Vec::with_capacity(connections);
    let mut failed = 0u64;
    let mut first_error = None;
    while let Some((client, took)) = opening.next().await {
        match client {
            Ok(c) => {
                latency.saturating_record(took.as_micros() as u64);
                second.saturating_record(took.as_micros() as u64);
                in_second += 1;
                clients.push(c);
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
        if second_started.elapsed() >= Duration::from_secs(1) {
            timeline.push(connect_second(
                started.elapsed().as_secs_f64(),
                &second,
                in_second,
                second_started,
            ));
            second.reset();
            in_second = 0;
            second_started = std::time::Instant::now();
        }
        if (clients.len() + failed as usize).is_multiple_of(1000) && !common.quiet {
            eprintln!("  {}/{connections} connected ({failed} failed)", clients.len());
        }
    }
    drop(opening);
    if in_second > 0 {
        timeline.push(connect_second(started.elapsed().as_secs_f64(), &second, in_second, second_started));
    }
    let connect_secs = started.elapsed().as_secs_f64();
    let after_connect = env.server_sample();
    let opened = clients.len() as u64;
    eprintln!("{opened} connection(s) open in {connect_secs:.2} s ({failed} failed); holding {hold:?}");

    // Hold: read every socket (pings, closes) so a server-side close counts as a disconnect.
    let stats = Arc::new(Stats::default());
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            let stats = stats.clone();
            tokio::spawn(async move {
                while let Some(Ok(m)) = c.ws.next().await {
                    if m.is_close() {
                        break;
                    }
                }
                stats.socket_ended();
            })
        })
        .collect();
    tokio::time::sleep(hold).await;
    let after_hold = env.server_sample();
    stats.stopping.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in &tasks {
        t.abort();
    }

    let numbers = ConnectNumbers {
        opened,
        failed,
        connect_secs,
        latency: &latency,
        before,
        after_connect,
        after_hold,
        disconnects: stats.snapshot().disconnects,
        first_error,
    };
    let mut doc = report::header(env, "connect", config);
    doc["results"] = report::connect_results(&numbers);
    doc["results"]["connect_latency_distribution"] =
        crate::stats::distribution_json(&latency, report::DISTRIBUTION_BINS);
    doc["timeline"] = serde_json::Value::Array(timeline);
    Ok(doc)
}

/// One second of the connect phase for the timeline.
fn connect_second(t: f64, h: &Histogram<u64>, n: u64, since: std::time::Instant) -> serde_json::Value {
    let secs = since.elapsed().as_secs_f64().max(1e-6);
    serde_json::json!({
        "t": crate::stats::round3(t),
        "phase": "connect",
        "connects_per_sec": (n as f64 / secs).round(),
        "connect_p50_ms": (!h.is_empty()).then(|| crate::stats::ms(h.value_at_quantile(0.5))),
        "connect_p99_ms": (!h.is_empty()).then(|| crate::stats::ms(h.value_at_quantile(0.99))),
    })
}
