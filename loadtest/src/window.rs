//! The clock of a run that carries traffic: a start instant a little in the future (so
//! every task is spawned before the first send), a warm-up that is not measured, the
//! measured window, then a bounded drain while the last replies and deliveries arrive.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::env::Env;
use crate::report::{Mark, Sampler};
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
}

/// Runs warm-up, the measured window and the drain; returns the marks at its edges.
pub async fn run(env: &Env, stats: &Arc<Stats>, schedule: &Schedule) -> Window {
    let mut sampler = Sampler::new(env, stats.clone(), env.common.quiet);
    tokio::time::sleep_until(schedule.t0).await;
    sampler.run_until(schedule.t0 + schedule.warmup, "warm-up").await;
    stats.open_window(schedule.epoch0 + schedule.warmup.as_micros() as u64);
    let start = sampler.mark(env).await;
    sampler.run_until(schedule.end(), "measure").await;
    stats.close_window(schedule.epoch0 + schedule.send_until.as_micros() as u64);
    let end = sampler.mark(env).await;
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
    Window { start, end, drain_secs: drain_started.elapsed().as_secs_f64(), sampler }
}
