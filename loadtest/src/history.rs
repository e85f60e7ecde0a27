//! The `history` workload: one room pre-filled with M messages (seqs 1..=M), and N clients
//! paging it backwards with `history` (`limit` per page) at a fixed total rate.
//!
//! Paging is open-loop like sending: request k is due at `offset + k / rate` whether or
//! not earlier pages came back, so a slow server shows as latency. Because the room's seqs
//! are contiguous and nothing else is written to it, the `before` of page k is known in
//! advance (newest page first, then `M + 1 − k·limit`, wrapping at the start), which lets
//! pages be pipelined and lets every reply be checked: a page that is not exactly the
//! expected run of seqs counts as a mismatch.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{anyhow, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use palaver_protocol::{ClientMsgId, MessageKind, Op, RoomId};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::client::{AuthMode, Client, Frame, STEP_TIMEOUT};
use crate::env::{Env, round_robin};
use crate::report::{self, DISTRIBUTION_BINS};
use crate::stats::{Stats, distribution_json, epoch_us, latency_json, round3};
use crate::traffic::make_payload;
use crate::window::{Schedule, Window};

/// Sends in flight while filling the room.
const FILL_WINDOW: u64 = 256;

/// Unanswered pages a client allows itself before it skips due requests.
const MAX_PENDING: usize = 1000;

/// The shape of a history workload.
#[derive(Debug, Clone)]
pub struct HistoryConfig {
    /// Paging clients.
    pub clients: usize,
    /// Requests per second, all clients together.
    pub rate: f64,
    /// Messages stored before paging starts.
    pub fill: u64,
    /// Page size.
    pub limit: u32,
}

impl HistoryConfig {
    /// The configuration as JSON.
    pub fn json(&self) -> Value {
        json!({ "clients": self.clients, "rate": self.rate, "fill": self.fill, "limit": self.limit })
    }
}

/// A prepared history workload: the room is full and the clients are connected.
pub struct Prepared {
    config: HistoryConfig,
    room: RoomId,
    clients: Vec<Client>,
    fill_secs: f64,
}

/// Creates and fills the room, then connects (and joins) the paging clients.
pub async fn prepare(env: &Env, config: HistoryConfig, tokens: Arc<Vec<String>>) -> anyhow::Result<Prepared> {
    let target = env.common.target;
    if !target.has_history() {
        bail!(
            "{} has no history request: the history workload needs palaver-* or ws-baseline",
            target.name()
        );
    }
    if config.clients == 0 || config.rate <= 0.0 || config.fill == 0 || !(1..=100).contains(&config.limit) {
        bail!(
            "history needs at least 1 client, a positive rate, a fill of at least 1 and a limit of 1..=100"
        );
    }
    let token = tokens.first().ok_or_else(|| anyhow!("no accounts"))?;
    let auth = AuthMode::for_target(target, env.common.auth_op);
    let mut filler = Client::connect(env.client_addr(), env.sources[0], target, token, auth).await?;
    let room = filler
        .create_rooms(1, &format!("history-{}", env.run_id))
        .await?
        .pop()
        .ok_or_else(|| anyhow!("no history room"))?;
    filler.join(&room).await?;
    let started = std::time::Instant::now();
    let payload = make_payload(env.common.payload);
    let fill = async {
        let (mut sent, mut acked) = (0u64, 0u64);
        while acked < config.fill {
            while sent < config.fill && sent - acked < FILL_WINDOW {
                let op = Op::Send {
                    room: room.clone(),
                    cid: ClientMsgId::parse(&format!("{}-fill-{sent}", env.run_id))?,
                    kind: MessageKind::Text,
                    text: payload.clone(),
                    client_ts: None,
                    reply_to: None,
                    file: None,
                    encryption: None,
                    also_to_room: false,
                    thread: None,
                };
                filler.feed(op).await?;
                sent += 1;
            }
            filler.ws.flush().await?;
            let message = filler.ws.next().await.ok_or_else(|| anyhow!("socket closed while filling"))??;
            match filler.decode(&message)? {
                Frame::Reply { result: Ok(_), .. } => acked += 1,
                Frame::Reply { result: Err(code), .. } => bail!("filling the history room: {code}"),
                Frame::Closed => bail!("socket closed while filling"),
                _ => {}
            }
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(STEP_TIMEOUT * 4, fill)
        .await
        .map_err(|_| anyhow!("filling the room timed out"))??;
    let fill_secs = started.elapsed().as_secs_f64();
    filler.close().await;
    // The room and its messages were written on the first node; the others learn them
    // asynchronously.
    env.wait_replication().await;
    eprintln!("history: filled {room} with {} messages in {fill_secs:.1} s", config.fill);
    let mut clients = Vec::with_capacity(config.clients);
    for i in 0..config.clients {
        let token = &tokens[i % tokens.len()];
        let mut client = Client::connect(
            round_robin(&env.client_addrs, i),
            env.sources[i % env.sources.len()],
            target,
            token,
            auth,
        )
        .await?;
        // The ws baseline serves history to members only; Palaver to anyone for a public room.
        client.join(&room).await?;
        clients.push(client);
    }
    Ok(Prepared { config, room, clients, fill_secs })
}

/// Starts every paging client.
pub fn spawn(prepared: Prepared, stats: &Arc<Stats>, schedule: &Schedule) -> (Vec<JoinHandle<()>>, Value) {
    let Prepared { config, room, clients, fill_secs } = prepared;
    let per_client = config.rate / config.clients as f64;
    let setup = json!({ "room": room.as_str(), "fill_secs": round3(fill_secs), "config": config.json() });
    let tasks = clients
        .into_iter()
        .enumerate()
        .map(|(j, client)| {
            let pager = Pager {
                room: room.clone(),
                fill: config.fill,
                limit: config.limit,
                rate: per_client,
                first_page: j as u64,
                offset: Duration::from_secs_f64(j as f64 / config.rate),
                schedule: *schedule,
                stats: stats.clone(),
            };
            tokio::spawn(pager.run(client))
        })
        .collect();
    (tasks, setup)
}

/// The history results over the window.
pub fn results(stats: &Stats, window: &Window, setup: Value) -> Value {
    let (secs, a, b) = report::window_delta(&window.start, &window.end);
    let latency = stats.history.window();
    let end = stats.snapshot();
    json!({
        "setup": setup,
        "pages_per_sec": round3(b.history_pages.saturating_sub(a.history_pages) as f64 / secs),
        "requests_per_sec": round3(b.history_requests.saturating_sub(a.history_requests) as f64 / secs),
        "latency_ms": latency_json(&latency),
        "latency_distribution": distribution_json(&latency, DISTRIBUTION_BINS),
        "requests": end.history_requests,
        "pages": end.history_pages,
        "errors": end.history_errors,
        "mismatches": end.history_mismatches,
        "unanswered": end.history_requests.saturating_sub(end.history_pages + end.history_errors),
    })
}

/// One paging client.
struct Pager {
    room: RoomId,
    fill: u64,
    limit: u32,
    rate: f64,
    first_page: u64,
    offset: Duration,
    schedule: Schedule,
    stats: Arc<Stats>,
}

/// What a pending page should hold: sent at, newest seq, count.
type Expected = (u64, u64, usize);

impl Pager {
    async fn run(self, mut client: Client) {
        let period = Duration::from_secs_f64(1.0 / self.rate);
        let tick = period.clamp(Duration::from_millis(1), Duration::from_millis(100));
        let mut ticker = tokio::time::interval_at(self.schedule.t0 + self.offset, tick);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut pending: HashMap<u64, Expected> = HashMap::new();
        let mut sent = 0u64;
        let mut sending = true;
        loop {
            tokio::select! {
                _ = ticker.tick(), if sending => {
                    match self.request_due(&mut client, &mut sent, &mut pending).await {
                        Ok(more) => sending = more,
                        Err(_) => {
                            self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                }
                message = client.ws.next() => {
                    let Some(Ok(message)) = message else { break };
                    match client.decode(&message) {
                        Ok(Frame::Reply { re, result }) => self.answered(re, result.map(|d| d.page), &mut pending),
                        Ok(Frame::Closed) => break,
                        Ok(_) => {}
                        Err(_) => {
                            self.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
        self.stats.socket_ended();
    }

    fn answered(
        &self,
        re: u64,
        page: Result<Option<(usize, u64, u64)>, String>,
        pending: &mut HashMap<u64, Expected>,
    ) {
        let Some((sent_us, newest, count)) = pending.remove(&re) else { return };
        let stats = &self.stats;
        stats.history.record(epoch_us().saturating_sub(sent_us), stats.in_window(sent_us));
        match page {
            Ok(page) => {
                stats.history_pages.fetch_add(1, Ordering::Relaxed);
                let oldest = newest + 1 - count as u64;
                if page != Some((count, newest, oldest)) {
                    stats.history_mismatches.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(code) => {
                stats.history_errors.fetch_add(1, Ordering::Relaxed);
                stats.note_error_code(&format!("history:{code}"));
            }
        }
    }

    /// Writes every request due by now; returns false once the paging time is over.
    async fn request_due(
        &self,
        client: &mut Client,
        sent: &mut u64,
        pending: &mut HashMap<u64, Expected>,
    ) -> anyhow::Result<bool> {
        let since_start = self.schedule.t0.elapsed().saturating_sub(self.offset);
        let due = (since_start.as_secs_f64() * self.rate).floor() as u64 + 1;
        let pages = self.fill.div_ceil(u64::from(self.limit));
        let mut wrote = false;
        let mut more = true;
        while *sent < due {
            let scheduled = self.offset + Duration::from_secs_f64(*sent as f64 / self.rate);
            if scheduled >= self.schedule.send_until {
                more = false;
                break;
            }
            let page = (self.first_page + *sent) % pages;
            *sent += 1;
            if pending.len() >= MAX_PENDING {
                self.stats.skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let before = (page > 0).then(|| self.fill + 1 - page * u64::from(self.limit));
            let newest = before.map_or(self.fill, |b| b - 1);
            let count = newest.min(u64::from(self.limit)) as usize;
            let op = Op::History {
                room: self.room.clone(),
                before,
                after: None,
                limit: Some(self.limit),
                cursor: None,
                threads: Default::default(),
            };
            let now_us = epoch_us();
            let id = client.feed(op).await?;
            pending.insert(id, (now_us, newest, count));
            self.stats.history_requests.fetch_add(1, Ordering::Relaxed);
            wrote = true;
        }
        if wrote {
            client.ws.flush().await?;
        }
        Ok(more)
    }
}
