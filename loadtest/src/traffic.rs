//! The message-traffic scenarios: K rooms of M member sockets, the first S members of each
//! room sending at a fixed rate. `fanout` is K = 1 with a large M; `rooms` is many small
//! rooms.
//!
//! Phases: register accounts → create the rooms → open and join every socket → send
//! (warm-up, then the measured window) → drain (wait for the last acks and deliveries, at
//! most [`window::DRAIN`]) → close. The generator is open-loop: message n of a sender is due at
//! `start + offset + n / rate` whether or not earlier ones were answered, so a slow server
//! shows up as latency, not as a lower send rate. Each message carries the instant it is
//! actually written as `client_ts` (µs since the epoch): the timer wheel fires up to 1 ms
//! after the due instant, which would otherwise be counted as server latency. How late
//! the generator ever was is reported as `max_send_lag_ms`; a large value means the
//! generator (or a socket blocked by the server) could not keep the schedule.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use palaver_protocol::{ClientMsgId, MessageKind, Op, RoomId};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::cli::{Target, Transport};
use crate::client::{AuthMode, Client};
use crate::env::{Env, round_robin};
use crate::receiver::Receiver;
use crate::report;
use crate::sender_thread::SenderThread;
use crate::stats::{Stats, epoch_us};
use crate::window::{self, Schedule};
use crate::wire::{self, Incoming};

/// Rooms one account may create at once (the server's room-creation burst).
const ROOMS_PER_CREATOR: usize = 20;

/// Unanswered sends a sender allows itself before it skips (and counts) due messages.
const MAX_IN_FLIGHT_PER_SENDER: u64 = 10_000;

/// The shape of a traffic run.
#[derive(Debug, Clone)]
pub struct Layout {
    pub rooms: usize,
    pub members: usize,
    pub senders_per_room: usize,
    /// Messages per second of each sender.
    pub rate_per_sender: f64,
}

/// Runs a traffic scenario and returns its result document.
pub async fn run(
    env: &Env,
    scenario: &str,
    layout: Layout,
    config: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let common = &env.common;
    let sockets = layout.rooms * layout.members;
    // Accounts: socket i uses account i % n, so the first senders have accounts of their own.
    let tokens = Arc::new(env.register_users(common.users.min(sockets).max(1)).await?);
    let setup = Setup::open(env, layout, tokens).await?;
    let setup_json = setup.json();
    let stats = Arc::new(Stats::default());
    let schedule = Schedule::new(common.warmup(), common.duration());
    // The senders' thread stops (after the tasks are aborted) when this goes out of scope.
    let (tasks, _senders) = setup.spawn(env, &stats, &schedule);
    let window = window::run(env, &stats, &schedule).await;
    stats.stopping.store(true, Ordering::Relaxed);
    for task in &tasks {
        task.abort();
    }
    let end = stats.snapshot();
    let mut doc = report::header(env, scenario, config);
    doc["setup"] = setup_json;
    doc["setup"]["drain_secs"] = serde_json::json!(window.drain_secs);
    doc["results"] = report::traffic_results(&stats, &window, &end);
    doc["timeline"] = window.sampler.timeline();
    Ok(doc)
}

/// One member's socket.
enum Member {
    /// A sender, or any member on Socket.io.
    Client(Client),
    /// A member that only receives, on Palaver's protocol.
    Receiver(Receiver),
}

/// The sockets of a traffic workload, opened and joined, not yet sending.
pub struct Setup {
    layout: Layout,
    rooms: Arc<Vec<RoomId>>,
    clients: Vec<Option<Member>>,
    setup_errors: u64,
    first_error: Option<String>,
    setup_secs: f64,
    users: usize,
    /// Where the sending sockets live.
    senders: SenderThread,
}

impl Setup {
    /// Creates the rooms and opens and joins every socket (accounts from `tokens`).
    pub async fn open(env: &Env, layout: Layout, tokens: Arc<Vec<String>>) -> anyhow::Result<Setup> {
        let common = &env.common;
        if layout.rooms == 0 || layout.members == 0 || layout.senders_per_room == 0 {
            bail!("rooms, members and senders must be at least 1");
        }
        if layout.senders_per_room > layout.members {
            bail!("senders ({}) cannot exceed members ({})", layout.senders_per_room, layout.members);
        }
        if layout.rate_per_sender <= 0.0 {
            bail!("the rate must be positive");
        }
        if tokens.is_empty() {
            bail!("no accounts");
        }
        let sockets = layout.rooms * layout.members;
        let auth = AuthMode::for_target(common.target, common.auth_op);
        let sender_thread = SenderThread::start()?;
        let on_sender_thread = sender_thread.handle().clone();

        // Rooms, created by the accounts in turn: the server lets one user create
        // `ROOMS_PER_CREATOR` rooms at once (then one per 30 s), as it would a spammer.
        let mut rooms = Vec::with_capacity(layout.rooms);
        let creators = layout.rooms.div_ceil(ROOMS_PER_CREATOR);
        if creators > tokens.len() {
            bail!(
                "{} rooms need {creators} accounts to create them ({ROOMS_PER_CREATOR} each); raise --users",
                layout.rooms
            );
        }
        for (creator, token) in tokens.iter().take(creators).enumerate() {
            let count = ROOMS_PER_CREATOR.min(layout.rooms - rooms.len());
            let mut control =
                Client::connect(env.client_addr(), env.sources[0], common.target, token, auth).await?;
            let prefix = format!("load-{}-{creator}", env.run_id);
            rooms.extend(control.create_rooms(count, &prefix).await?);
            control.close().await;
        }
        let rooms = Arc::new(rooms);
        eprintln!("created {} room(s)", rooms.len());
        // Rooms, like accounts, are created on the first node and replicate to the others.
        env.wait_replication().await;

        // Every socket connects and joins its room; socket i (sender or receiver) goes to
        // node i % N of a cluster.
        let started = std::time::Instant::now();
        let (addrs, target, sources) = (env.client_addrs.clone(), common.target, env.sources.clone());
        let (members, senders, deflate) = (layout.members, layout.senders_per_room, common.deflate);
        let mut opened = futures_util::stream::iter(0..sockets)
            .map(|i| {
                let (tokens, rooms, on_sender_thread) =
                    (tokens.clone(), rooms.clone(), on_sender_thread.clone());
                let source = sources[i % sources.len()];
                let addr = round_robin(&addrs, i);
                async move {
                    let (token, room) = (tokens[i % tokens.len()].clone(), rooms[i / members].clone());
                    let sender = i % members < senders;
                    let opened = async {
                        // Hand-framed receivers speak WebSocket over plain TCP only.
                        if !sender && target != Target::Socketio && target.transport() == Transport::WebSocket
                        {
                            let codec = wire::codec(target);
                            let receiver =
                                Receiver::open(addr, source, codec, (&token, auth, deflate), &room).await?;
                            return anyhow::Ok(Member::Receiver(receiver));
                        }
                        let connect = async move {
                            let mut client = Client::connect(addr, source, target, &token, auth).await?;
                            client.join(&room).await?;
                            anyhow::Ok(client)
                        };
                        // A sender's socket is opened on the senders' thread, where it runs.
                        let client = if sender {
                            on_sender_thread.spawn(connect).await.context("sender set-up task")??
                        } else {
                            connect.await?
                        };
                        anyhow::Ok(Member::Client(client))
                    }
                    .await;
                    (i, opened)
                }
            })
            .buffer_unordered(common.connect_concurrency.max(1));
        let mut clients: Vec<Option<Member>> = (0..sockets).map(|_| None).collect();
        let mut setup_errors = 0u64;
        let mut first_error = None;
        let mut done = 0usize;
        while let Some((i, opened)) = opened.next().await {
            match opened {
                Ok(client) => clients[i] = Some(client),
                Err(e) => {
                    setup_errors += 1;
                    first_error.get_or_insert_with(|| format!("{e:#}"));
                }
            }
            done += 1;
            if done.is_multiple_of(1000) && !common.quiet {
                eprintln!("  {done}/{sockets} sockets open");
            }
        }
        drop(opened);
        let setup_secs = started.elapsed().as_secs_f64();
        eprintln!(
            "{} socket(s) joined in {setup_secs:.1} s ({setup_errors} failed{})",
            sockets as u64 - setup_errors,
            first_error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
        );
        if setup_errors as usize == sockets {
            bail!("no socket could join");
        }
        Ok(Setup {
            layout,
            rooms,
            clients,
            setup_errors,
            first_error,
            setup_secs,
            users: tokens.len(),
            senders: sender_thread,
        })
    }

    /// The set-up figures for the result document.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "sockets": self.clients.len(),
            "setup_errors": self.setup_errors,
            "first_setup_error": self.first_error,
            "setup_secs": self.setup_secs,
            "users": self.users,
        })
    }

    /// Starts every socket's task: senders on the schedule (on the senders' thread, which
    /// is returned: keep it until the tasks are aborted), the others only receive.
    pub fn spawn(
        self,
        env: &Env,
        stats: &Arc<Stats>,
        schedule: &Schedule,
    ) -> (Vec<JoinHandle<()>>, SenderThread) {
        let layout = &self.layout;
        let payload: Arc<str> = make_payload(env.common.payload).into();
        let total_senders = (layout.rooms * layout.senders_per_room) as f64;
        let joined_per_room: Vec<u64> = (0..layout.rooms)
            .map(|r| {
                self.clients[r * layout.members..(r + 1) * layout.members]
                    .iter()
                    .filter(|c| c.is_some())
                    .count() as u64
            })
            .collect();
        let mut tasks = Vec::with_capacity(self.clients.len());
        let mut sender_index = 0usize;
        for (i, client) in self.clients.into_iter().enumerate() {
            let Some(client) = client else { continue };
            let room = i / layout.members;
            let stats = stats.clone();
            let client = match client {
                Member::Receiver(receiver) => {
                    tasks.push(tokio::spawn(receiver.run(stats)));
                    continue;
                }
                Member::Client(client) => client,
            };
            if i % layout.members < layout.senders_per_room {
                // Spread the senders' first messages evenly over one sending period.
                let offset =
                    Duration::from_secs_f64(sender_index as f64 / (total_senders * layout.rate_per_sender));
                let sender = Sender {
                    room: self.rooms[room].clone(),
                    members: joined_per_room[room],
                    rate: layout.rate_per_sender,
                    t0: schedule.t0,
                    epoch0: schedule.epoch0,
                    offset,
                    send_until: schedule.send_until,
                    payload: payload.clone(),
                    cid_prefix: format!("{}-{sender_index}", env.run_id),
                    stats,
                    counts_own_deliveries: true,
                };
                sender_index += 1;
                tasks.push(self.senders.handle().spawn(sender.run(client)));
            } else {
                tasks.push(tokio::spawn(receive(client, stats)));
            }
        }
        (tasks, self.senders)
    }
}

/// An ASCII payload of `len` bytes (at least 1), readable in logs: English prose that
/// repeats only every few hundred bytes, so a message compresses (permessage-deflate) about
/// as much as a person's chat line does, no more.
pub fn make_payload(len: usize) -> String {
    const PROSE: &str = "Sounds good to me. I pushed the fix for the login page this morning, \
        could you check whether the staging build picked it up? If it did, let's ship on \
        Thursday after standup; Maria wants the release notes by then, and the new icons \
        still need a final look from design. ";
    let mut text: String = PROSE.chars().cycle().take(len.max(1)).collect();
    text.truncate(text.trim_end().len());
    if text.is_empty() || len > text.len() {
        text.push('.');
    }
    text
}

/// A socket that only receives.
pub async fn receive(mut client: Client, stats: Arc<Stats>) {
    while let Some(message) = client.ws.next().await {
        let Ok(message) = message else { break };
        match handle(&stats, client.classify(&message), client.last_arrival_us(), None) {
            Next::Continue => {}
            Next::Pong => {
                if client.pong().await.is_err() {
                    break;
                }
            }
            Next::Stop => break,
        }
    }
    stats.socket_ended();
}

/// What a socket task does after a frame.
pub enum Next {
    /// Read on.
    Continue,
    /// Answer an engine.io ping, then read on.
    Pong,
    /// The socket is closed.
    Stop,
}

/// Counts one incoming frame, which reached the socket at `arrived` (µs since the epoch).
fn handle(stats: &Stats, incoming: Incoming, arrived: Option<u64>, sender: Option<(&mut u64, u64)>) -> Next {
    match incoming {
        Incoming::Message { client_ts, .. } => stats.delivered(client_ts, arrived),
        Incoming::Ok { .. } => {
            if let Some((in_flight, members)) = sender {
                *in_flight = in_flight.saturating_sub(1);
                stats.acks.fetch_add(1, Ordering::Relaxed);
                stats.expected_deliveries.fetch_add(members, Ordering::Relaxed);
            }
        }
        Incoming::Err { code, .. } => {
            if let Some((in_flight, _)) = sender {
                *in_flight = in_flight.saturating_sub(1);
            }
            stats.error(&code);
        }
        Incoming::Undecodable(e) => {
            if stats.decode_errors.fetch_add(1, Ordering::Relaxed) < 3 {
                eprintln!("undecodable frame: {e}");
            }
        }
        Incoming::Ignored => {}
        Incoming::EnginePing => return Next::Pong,
        Incoming::Closed => return Next::Stop,
    }
    Next::Continue
}

/// A sending member of a room.
pub struct Sender {
    pub room: RoomId,
    /// Sockets joined to the room: how many deliveries each acked message should make.
    pub members: u64,
    pub rate: f64,
    pub t0: Instant,
    pub epoch0: u64,
    pub offset: Duration,
    pub send_until: Duration,
    pub payload: Arc<str>,
    pub cid_prefix: String,
    pub stats: Arc<Stats>,
    /// Whether the sender's own copies of the room's messages count as deliveries.
    pub counts_own_deliveries: bool,
}

impl Sender {
    /// Sends on schedule until `send_until` and reads its socket until aborted.
    pub async fn run(self, mut client: Client) {
        let period = Duration::from_secs_f64(1.0 / self.rate);
        let tick = period.clamp(Duration::from_millis(1), Duration::from_millis(100));
        let mut ticker = tokio::time::interval_at(self.t0 + self.offset, tick);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut sent: u64 = 0;
        let mut in_flight: u64 = 0;
        let mut sending = true;
        let stats = self.stats.clone();
        loop {
            tokio::select! {
                _ = ticker.tick(), if sending => {
                    match self.send_due(&mut client, &mut sent, &mut in_flight).await {
                        Ok(more) => sending = more,
                        Err(_) => {
                            stats.write_errors.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                }
                message = client.ws.next() => {
                    let Some(Ok(message)) = message else { break };
                    let arrived = client.last_arrival_us();
                    let incoming = match client.classify(&message) {
                        Incoming::Message { .. } if !self.counts_own_deliveries => Incoming::Ignored,
                        incoming => incoming,
                    };
                    match handle(&stats, incoming, arrived, Some((&mut in_flight, self.members))) {
                        Next::Continue => {}
                        Next::Pong => {
                            if client.pong().await.is_err() {
                                break;
                            }
                        }
                        Next::Stop => break,
                    }
                }
            }
        }
        stats.socket_ended();
    }

    /// Writes every message due by now; returns false once the sending time is over.
    async fn send_due(
        &self,
        client: &mut Client,
        sent: &mut u64,
        in_flight: &mut u64,
    ) -> anyhow::Result<bool> {
        let since_start = self.t0.elapsed().saturating_sub(self.offset);
        let due = (since_start.as_secs_f64() * self.rate).floor() as u64 + 1;
        let mut wrote = false;
        let mut more = true;
        let now_us = epoch_us();
        while *sent < due {
            let scheduled = self.offset + Duration::from_secs_f64(*sent as f64 / self.rate);
            if scheduled >= self.send_until {
                more = false;
                break;
            }
            let n = *sent;
            *sent += 1;
            let lag = now_us.saturating_sub(self.epoch0 + scheduled.as_micros() as u64);
            self.stats.max_send_lag_us.fetch_max(lag, Ordering::Relaxed);
            if *in_flight >= MAX_IN_FLIGHT_PER_SENDER {
                self.stats.skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let op = Op::Send {
                room: self.room.clone(),
                cid: ClientMsgId::parse(&format!("{}-{n}", self.cid_prefix))?,
                kind: MessageKind::Text,
                text: self.payload.to_string(),
                client_ts: Some(now_us),
                reply_to: None,
                file: None,
                encryption: None,
                also_to_room: false,
                thread: None,
            };
            client.feed(op).await?;
            *in_flight += 1;
            self.stats.sends.fetch_add(1, Ordering::Relaxed);
            wrote = true;
        }
        if wrote {
            client.ws.flush().await?;
        }
        Ok(more)
    }
}
