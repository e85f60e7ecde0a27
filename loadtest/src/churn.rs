//! The `churn` workload: clients that connect, authenticate, join one room, stay a random
//! short time, disconnect and come back, at a paced connect rate, while one always
//! connected sender keeps a fixed message rate into the room.
//!
//! Each connect is timed from the TCP connect to the `join` reply (connect + auth + join).
//! On targets that can resume (`join` with `since`: Palaver and the ws baseline) every
//! client rejoins with `since` = the last seq it saw, and checks that it sees every seq
//! exactly once across its reconnects: a seq below the next expected one is a duplicate, a
//! jump is a gap. After sending stops (and the drain), every client connects one last time
//! and catches up to the room's last seq, so messages missed at the very end count too.
//! On Socket.io (no resume) the check is per connection only.
//!
//! Replayed events are counted, not timed (their `client_ts` is from before the client
//! came back); live events are timed like any delivery.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use palaver_protocol::{Op, RoomId};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::cli::Target;
use crate::client::{AuthMode, Client, Frame, STEP_TIMEOUT};
use crate::env::{Env, round_robin};
use crate::report;
use crate::stats::{Stats, distribution_json, epoch_us, latency_json, round3};
use crate::traffic::{Sender, make_payload};
use crate::window::{Schedule, Window};
use crate::wire::Incoming;

/// How long the final catch-up of a client may take.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(10);

/// Visits one client makes at most (the run's duration bounds it long before).
const MAX_VISITS: u64 = 1_000_000;

/// The shape of a churn workload.
#[derive(Debug, Clone)]
pub struct ChurnConfig {
    /// Churning clients.
    pub clients: usize,
    /// Connects per second, all clients together.
    pub connect_rate: f64,
    /// Shortest stay.
    pub stay_min: Duration,
    /// Longest stay.
    pub stay_max: Duration,
    /// Messages per second of the sender.
    pub rate: f64,
}

impl ChurnConfig {
    /// The configuration as JSON.
    pub fn json(&self) -> Value {
        json!({
            "clients": self.clients,
            "connect_rate": self.connect_rate,
            "stay_ms": [self.stay_min.as_millis() as u64, self.stay_max.as_millis() as u64],
            "send_rate": self.rate,
        })
    }
}

/// A prepared churn workload: the room exists, the sender is connected and joined.
pub struct Prepared {
    config: ChurnConfig,
    room: RoomId,
    sender: Client,
    tokens: Arc<Vec<String>>,
}

/// Creates the room and connects the sender.
pub async fn prepare(env: &Env, config: ChurnConfig, tokens: Arc<Vec<String>>) -> anyhow::Result<Prepared> {
    if config.clients == 0 || config.connect_rate <= 0.0 || config.rate <= 0.0 {
        bail!("churn needs at least 1 client, a positive connect rate and a positive message rate");
    }
    if config.stay_min > config.stay_max {
        bail!("churn: the shortest stay is longer than the longest");
    }
    let token = tokens.first().ok_or_else(|| anyhow!("no accounts"))?;
    let auth = AuthMode::for_target(env.common.target, env.common.auth_op);
    let mut sender =
        Client::connect(env.client_addr(), env.sources[0], env.common.target, token, auth).await?;
    let room = sender
        .create_rooms(1, &format!("churn-{}", env.run_id))
        .await?
        .pop()
        .ok_or_else(|| anyhow!("no churn room"))?;
    sender.join(&room).await?;
    env.wait_replication().await;
    eprintln!("churn: room {room}, {} client(s)", config.clients);
    Ok(Prepared { config, room, sender, tokens })
}

/// What the churn workload's tasks share.
struct Ctx {
    /// The nodes: client i connects to node i % N.
    addrs: Vec<std::net::SocketAddr>,
    sources: Vec<std::net::Ipv4Addr>,
    target: Target,
    auth: AuthMode,
    tokens: Arc<Vec<String>>,
    room: RoomId,
    resumable: bool,
    stats: Arc<Stats>,
    end: Instant,
    permits: Semaphore,
    first_error: Mutex<Option<String>>,
}

/// A started churn workload.
pub struct Running {
    config: ChurnConfig,
    ctx: Arc<Ctx>,
    sender: JoinHandle<()>,
    pacer: JoinHandle<()>,
    clients: Vec<JoinHandle<Outcome>>,
    check: watch::Sender<bool>,
}

/// Starts the sender, the connect pacer and every client.
pub fn spawn(prepared: Prepared, env: &Env, stats: &Arc<Stats>, schedule: &Schedule) -> Running {
    let Prepared { config, room, sender: sender_client, tokens } = prepared;
    let ctx = Arc::new(Ctx {
        addrs: env.client_addrs.clone(),
        sources: env.sources.clone(),
        target: env.common.target,
        auth: AuthMode::for_target(env.common.target, env.common.auth_op),
        tokens,
        room: room.clone(),
        resumable: env.common.target.can_resume(),
        stats: stats.clone(),
        end: schedule.end(),
        permits: Semaphore::new(0),
        first_error: Mutex::new(None),
    });
    let sender = Sender {
        room,
        // The sender's own socket is the only member whose deliveries it accounts for;
        // churning clients account for their own.
        members: 1,
        rate: config.rate,
        t0: schedule.t0,
        epoch0: schedule.epoch0,
        offset: Duration::ZERO,
        send_until: schedule.send_until,
        payload: make_payload(env.common.payload).into(),
        cid_prefix: format!("{}-churn", env.run_id),
        stats: stats.clone(),
        counts_own_deliveries: true,
    };
    let sender = tokio::spawn(sender.run(sender_client));
    let (check, check_rx) = watch::channel(false);
    let pacer = tokio::spawn(pace(ctx.clone(), schedule.t0, config.connect_rate, config.clients));
    let clients = (0..config.clients)
        .map(|i| tokio::spawn(churner(i, ctx.clone(), config.clone(), check_rx.clone())))
        .collect();
    Running { config, ctx, sender, pacer, clients, check }
}

/// Hands out connect permits at `rate` per second until the end (at most `cap` banked).
async fn pace(ctx: Arc<Ctx>, t0: Instant, rate: f64, cap: usize) {
    let tick = Duration::from_millis(10);
    let mut ticker = tokio::time::interval_at(t0, tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut issued: u64 = 0;
    while Instant::now() < ctx.end {
        ticker.tick().await;
        let due = (t0.elapsed().as_secs_f64() * rate).floor() as u64 + 1;
        if due > issued {
            let room = cap.saturating_sub(ctx.permits.available_permits()) as u64;
            let add = (due - issued).min(room);
            ctx.permits.add_permits(add as usize);
            // Permits that could not be banked are dropped: the rate is a ceiling.
            issued = due;
        }
    }
}

/// One client's seq bookkeeping.
#[derive(Debug, Default, Clone, Copy)]
struct Tracker {
    last: Option<u64>,
    gaps: u64,
    duplicates: u64,
}

impl Tracker {
    fn see(&mut self, seq: u64) {
        match self.last {
            None => self.last = Some(seq),
            Some(l) if seq == l + 1 => self.last = Some(seq),
            Some(l) if seq <= l => self.duplicates += 1,
            Some(l) => {
                self.gaps += seq - l - 1;
                self.last = Some(seq);
            }
        }
    }
}

/// What one client saw.
#[derive(Debug, Default, Clone, Copy)]
struct Outcome {
    tracker: Tracker,
    visits: u64,
    caught_up: bool,
}

/// How long a visit lasts.
#[derive(Debug, Clone, Copy)]
enum Visit {
    /// Until this instant.
    Until(Instant),
    /// Until the client holds the room's last seq at joining (the final catch-up).
    CatchUp,
}

/// A tiny deterministic generator for stay times (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = (hi - lo).as_micros() as u64;
        lo + Duration::from_micros(if span == 0 { 0 } else { self.next() % (span + 1) })
    }
}

async fn churner(i: usize, ctx: Arc<Ctx>, config: ChurnConfig, mut check: watch::Receiver<bool>) -> Outcome {
    let mut rng = Rng(i as u64 + 1);
    let mut out = Outcome::default();
    while Instant::now() < ctx.end && out.visits < MAX_VISITS {
        tokio::select! {
            permit = ctx.permits.acquire() => match permit {
                Ok(p) => p.forget(),
                Err(_) => break,
            },
            _ = tokio::time::sleep_until(ctx.end) => break,
        }
        let until = (Instant::now() + rng.between(config.stay_min, config.stay_max)).min(ctx.end);
        if let Err(e) = visit(i, &ctx, &mut out, Visit::Until(until)).await {
            ctx.stats.connect_errors.fetch_add(1, Ordering::Relaxed);
            ctx.stats.note_error_code("churn_connect");
            if let Ok(mut first) = ctx.first_error.lock() {
                first.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    if ctx.resumable && out.tracker.last.is_some() {
        // Wait for the go (after the drain), then catch up once.
        let _ = tokio::time::timeout(CATCH_UP_TIMEOUT * 2, check.wait_for(|go| *go)).await;
        match visit(i, &ctx, &mut out, Visit::CatchUp).await {
            Ok(()) => {}
            Err(e) => {
                if let Ok(mut first) = ctx.first_error.lock() {
                    first.get_or_insert_with(|| format!("catch-up: {e:#}"));
                }
            }
        }
    }
    out
}

/// Connects, joins (resuming when possible), reads until the visit ends, closes.
async fn visit(i: usize, ctx: &Ctx, out: &mut Outcome, how: Visit) -> anyhow::Result<()> {
    let start_us = epoch_us();
    let started = Instant::now();
    let source = ctx.sources[i % ctx.sources.len()];
    let token = &ctx.tokens[i % ctx.tokens.len()];
    let mut client = Client::connect(round_robin(&ctx.addrs, i), source, ctx.target, token, ctx.auth).await?;
    let since = if ctx.resumable { out.tracker.last } else { None };
    let id = client.feed(Op::Join { room: ctx.room.clone(), since }).await?;
    client.ws.flush().await?;
    let mut early = Vec::new();
    let joined = async {
        loop {
            let message = client.ws.next().await.ok_or_else(|| anyhow!("socket closed"))??;
            match client.decode(&message)? {
                Frame::Reply { re, result } if re == id => {
                    return result
                        .map_err(|code| anyhow!("join: {code}"))?
                        .last_seq
                        .ok_or_else(|| anyhow!("join: no last_seq"));
                }
                Frame::Message { seq, client_ts } => early.push((seq, client_ts, client.last_arrival_us())),
                Frame::EnginePing => client.pong().await?,
                Frame::Closed => bail!("join: socket closed by the server"),
                _ => {}
            }
        }
    };
    let last_seq =
        tokio::time::timeout(STEP_TIMEOUT, joined).await.map_err(|_| anyhow!("join timed out"))??;
    let stats = &ctx.stats;
    if !matches!(how, Visit::CatchUp) {
        stats.connect.record(started.elapsed().as_micros() as u64, stats.in_window(start_us));
        stats.connects.fetch_add(1, Ordering::Relaxed);
        if out.visits > 0 {
            stats.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        out.visits += 1;
    }
    if !ctx.resumable || out.tracker.last.is_none() {
        // The first visit (or any visit without resume) expects what comes after the join.
        out.tracker.last = Some(last_seq);
    }
    let on_message = |out: &mut Outcome, seq: u64, client_ts: Option<u64>, arrived: Option<u64>| {
        out.tracker.see(seq);
        if seq <= last_seq {
            stats.replayed.fetch_add(1, Ordering::Relaxed);
        } else {
            stats.delivered(client_ts, arrived);
            stats.expected_deliveries.fetch_add(1, Ordering::Relaxed);
        }
    };
    for (seq, client_ts, arrived) in early {
        on_message(out, seq, client_ts, arrived);
    }
    let deadline = match how {
        Visit::Until(t) => t,
        Visit::CatchUp => Instant::now() + CATCH_UP_TIMEOUT,
    };
    loop {
        if matches!(how, Visit::CatchUp) && out.tracker.last.is_some_and(|l| l >= last_seq) {
            out.caught_up = true;
            break;
        }
        let message = tokio::select! {
            m = client.ws.next() => m,
            _ = tokio::time::sleep_until(deadline) => break,
        };
        let Some(Ok(message)) = message else {
            stats.socket_ended();
            break;
        };
        match client.classify(&message) {
            Incoming::Message { client_ts, seq } => on_message(out, seq, client_ts, client.last_arrival_us()),
            Incoming::EnginePing => client.pong().await?,
            Incoming::Closed => {
                stats.socket_ended();
                break;
            }
            Incoming::Err { code, .. } => stats.note_error_code(&code),
            Incoming::Ok { .. } | Incoming::Ignored | Incoming::Undecodable(_) => {}
        }
    }
    if matches!(how, Visit::CatchUp) && !out.caught_up {
        // Whatever never came is a gap.
        let held = out.tracker.last.unwrap_or(0);
        out.tracker.gaps += last_seq.saturating_sub(held);
    }
    client.close().await;
    Ok(())
}

impl Running {
    /// After the window and its drain: lets every client catch up, stops the sender and
    /// returns the churn results.
    pub async fn finish(self, window: &Window) -> Value {
        let _ = self.check.send(true);
        let mut outcomes = Vec::with_capacity(self.clients.len());
        let deadline = Instant::now() + CATCH_UP_TIMEOUT * 3;
        for task in self.clients {
            let abort = task.abort_handle();
            match tokio::time::timeout_at(deadline, task).await {
                Ok(Ok(outcome)) => outcomes.push(Some(outcome)),
                Ok(Err(_)) => outcomes.push(None),
                Err(_) => {
                    abort.abort();
                    outcomes.push(None);
                }
            }
        }
        self.sender.abort();
        self.pacer.abort();
        let stats = &self.ctx.stats;
        let (secs, a, b) = report::window_delta(&window.start, &window.end);
        let connects = b.connects.saturating_sub(a.connects);
        let reconnects = b.reconnects.saturating_sub(a.reconnects);
        let checked: Vec<&Outcome> = outcomes.iter().flatten().collect();
        let gaps: u64 = checked.iter().map(|o| o.tracker.gaps).sum();
        let duplicates: u64 = checked.iter().map(|o| o.tracker.duplicates).sum();
        let lost = outcomes.iter().filter(|o| o.is_none()).count();
        let not_caught_up = if self.ctx.resumable {
            checked.iter().filter(|o| o.visits > 0 && !o.caught_up).count()
        } else {
            0
        };
        let latency = stats.connect.window();
        let end = stats.snapshot();
        json!({
            "config": self.config.json(),
            "room": self.ctx.room.as_str(),
            "connects": end.connects,
            "connects_in_window": connects,
            "connects_per_sec": round3(connects as f64 / secs),
            "reconnects_per_sec": round3(reconnects as f64 / secs),
            "connect_latency_ms": latency_json(&latency),
            "connect_latency_distribution": distribution_json(&latency, report::DISTRIBUTION_BINS),
            "connect_errors": end.connect_errors,
            "first_error": self.ctx.first_error.lock().ok().and_then(|f| f.clone()),
            "replayed": end.replayed,
            "seq_check": {
                "mode": if self.ctx.resumable {
                    "across reconnects (join with since), with a final catch-up"
                } else {
                    "per connection only (the protocol has no resume)"
                },
                "clients_checked": checked.len(),
                "clients_lost": lost,
                "clients_not_caught_up": not_caught_up,
                "gaps": gaps,
                "duplicates": duplicates,
            },
        })
    }
}
