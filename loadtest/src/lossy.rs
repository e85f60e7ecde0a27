//! `lossy`: what head-of-line blocking costs a member of several busy rooms.
//!
//! K rooms, each with one sender connected directly at R msg/s; `observers` clients are
//! members of every room and reach the server through a [`Relay`] that adds delay and loss
//! (UDP for the QUIC targets, TCP with its loss model for WebSocket). Only the observers'
//! deliveries are counted: their latency (from the sender's `client_ts` to the observer
//! reading it) shows how one lost packet holds up the rooms behind it. On one TCP
//! connection a loss stalls every room; on QUIC with a stream per room only that room's
//! events wait.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::cli::{LossyArgs, Transport};
use crate::client::{AuthMode, Client};
use crate::env::Env;
use crate::relay::{Impairment, Relay, RelayProtocol};
use crate::report;
use crate::sender_thread::SenderThread;
use crate::stats::Stats;
use crate::traffic::{self, Sender};
use crate::window::{self, Schedule};

/// Runs the scenario and returns its result document.
pub async fn run(env: &Env, args: &LossyArgs, config: Value) -> anyhow::Result<Value> {
    let common = &env.common;
    anyhow::ensure!(args.rooms > 0 && args.observers > 0, "rooms and observers must be at least 1");
    anyhow::ensure!((0.0..1.0).contains(&args.loss), "--loss is a probability below 1");
    anyhow::ensure!(args.rate > 0.0, "the rate must be positive");
    let auth = AuthMode::for_target(common.target, common.auth_op);
    let tokens = env.register_users(args.rooms + args.observers).await?;
    let started = std::time::Instant::now();
    let mut creator =
        Client::connect(env.client_addr(), env.sources[0], common.target, &tokens[0], auth).await?;
    let rooms = creator.create_rooms(args.rooms, &format!("lossy-{}", env.run_id)).await?;
    creator.close().await;

    let protocol =
        if common.target.transport() == Transport::Quic { RelayProtocol::Udp } else { RelayProtocol::Tcp };
    let impairment =
        Impairment { rtt: Duration::from_secs_f64(args.rtt_ms / 1000.0), loss: args.loss, seed: args.seed };
    let relay = Relay::start(protocol, "127.0.0.1:0".parse()?, env.client_addr(), impairment).await?;
    eprintln!(
        "relay ({protocol:?}) on {}: {} ms round trip, {:.1} % loss each way",
        relay.addr,
        args.rtt_ms,
        args.loss * 100.0
    );

    // Observers: members of every room, through the relay.
    let observers = futures_util::future::try_join_all((0..args.observers).map(|o| {
        let (token, rooms, target, source) =
            (tokens[args.rooms + o].clone(), &rooms, common.target, env.sources[o % env.sources.len()]);
        let relay_addr = relay.addr;
        async move {
            let mut client = Client::connect(relay_addr, source, target, &token, auth).await?;
            for room in rooms {
                client.join(room).await?;
            }
            anyhow::Ok(client)
        }
    }))
    .await
    .context("observers")?;

    // Senders: one per room, direct, on the senders' thread.
    let sender_thread = SenderThread::start()?;
    let mut senders = Vec::with_capacity(args.rooms);
    for (r, room) in rooms.iter().enumerate() {
        let (addr, source, target, token, room) =
            (env.client_addr(), env.sources[0], common.target, tokens[r].clone(), room.clone());
        let client = sender_thread
            .handle()
            .spawn(async move {
                let mut client = Client::connect(addr, source, target, &token, auth).await?;
                client.join(&room).await?;
                anyhow::Ok(client)
            })
            .await
            .context("sender set-up task")??;
        senders.push(client);
    }
    let setup_secs = started.elapsed().as_secs_f64();
    eprintln!("{} observer(s) in {} room(s) set up in {setup_secs:.1} s", args.observers, args.rooms);

    let stats = Arc::new(Stats::default());
    let schedule = Schedule::new(common.warmup(), common.duration());
    let payload: Arc<str> = traffic::make_payload(common.payload).into();
    let mut tasks = Vec::new();
    for (r, client) in senders.into_iter().enumerate() {
        let sender = Sender {
            room: rooms[r].clone(),
            members: args.observers as u64,
            rate: args.rate,
            t0: schedule.t0,
            epoch0: schedule.epoch0,
            offset: Duration::from_secs_f64(r as f64 / (args.rooms as f64 * args.rate)),
            send_until: schedule.send_until,
            payload: payload.clone(),
            cid_prefix: format!("{}-lossy-{r}", env.run_id),
            stats: stats.clone(),
            counts_own_deliveries: false,
        };
        tasks.push(sender_thread.handle().spawn(sender.run(client)));
    }
    for client in observers {
        tasks.push(tokio::spawn(traffic::receive(client, stats.clone())));
    }
    let window = window::run(env, &stats, &schedule).await;
    stats.stopping.store(true, Ordering::Relaxed);
    for task in &tasks {
        task.abort();
    }
    let end = stats.snapshot();
    let mut doc = report::header(env, "lossy", config);
    doc["setup"] = json!({
        "rooms": args.rooms,
        "observers": args.observers,
        "setup_secs": setup_secs,
        "drain_secs": window.drain_secs,
        "relay": format!("{protocol:?}").to_lowercase(),
    });
    doc["results"] = report::traffic_results(&stats, &window, &end);
    doc["results"]["relay"] = json!({
        "forwarded": relay.counts.forwarded.load(Ordering::Relaxed),
        "dropped": relay.counts.dropped.load(Ordering::Relaxed),
    });
    doc["timeline"] = window.sampler.timeline();
    drop(relay);
    Ok(doc)
}
