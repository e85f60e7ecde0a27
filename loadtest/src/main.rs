//! `palaver-load`: the load-test and capacity-planning harness for Palaver.
//!
//! Scenarios (`fanout`, `rooms`, `connect`) drive a Palaver server (JSON or rkyv frames) or
//! the Node `ws` baseline over WebSockets on loopback, measure end-to-end latency
//! (`client_ts` in µs since the epoch, echoed in every `message` event) into an HDR
//! histogram, and read the server's CPU time and resident memory from `/proc`. Each run
//! is bounded in time and size, stops by itself, prints a progress line each second and a
//! summary, and can write a JSON result; `compare` puts result files side by side.
//!
//! What it is not: a correctness test (tests/ does that) or a benchmark of the generator.
//! It only ever connects to 127.0.0.0/8. See `loadtest/README.md` for how to run it.

mod cli;
mod client;
mod compare;
mod connect;
mod env;
mod http;
mod process_stats;
mod report;
mod spawned_server;
mod stats;
mod traffic;
mod wire;

use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use serde_json::json;

use crate::cli::{Cli, Command, CommonArgs};
use crate::env::Env;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let common = match &cli.command {
        Command::Compare(args) => return compare::run(&args.files),
        Command::Fanout(a) => &a.common,
        Command::Rooms(a) => &a.common,
        Command::Connect(a) => &a.common,
    };
    raise_fd_limit();
    pin_generator(common)?;
    let runtime = if common.workers <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(common.workers).enable_all().build()?
    };
    let doc = runtime.block_on(run(&cli.command))?;
    // Let aborted socket tasks go before the runtime is dropped.
    runtime.shutdown_timeout(Duration::from_secs(1));
    report::print_summary(&doc);
    if let Some(out) = &common.out {
        report::write(&doc, out)?;
    }
    Ok(())
}

async fn run(command: &Command) -> anyhow::Result<serde_json::Value> {
    let common = match command {
        Command::Fanout(a) => &a.common,
        Command::Rooms(a) => &a.common,
        Command::Connect(a) => &a.common,
        Command::Compare(_) => anyhow::bail!("compare runs no traffic"),
    };
    let mut env = Env::prepare(common).await?;
    let result = match command {
        Command::Fanout(a) => {
            let layout = traffic::Layout {
                rooms: 1,
                members: a.members,
                senders_per_room: a.senders,
                rate_per_sender: a.rate / a.senders.max(1) as f64,
            };
            let config = json!({
                "members": a.members, "senders": a.senders, "rate_total": a.rate,
                "common": common_json(common),
            });
            traffic::run(&env, "fanout", layout, config).await
        }
        Command::Rooms(a) => {
            let layout = traffic::Layout {
                rooms: a.rooms,
                members: a.members,
                senders_per_room: a.senders_per_room,
                rate_per_sender: a.rate / a.senders_per_room.max(1) as f64,
            };
            let config = json!({
                "rooms": a.rooms, "members": a.members, "senders_per_room": a.senders_per_room,
                "rate_per_room": a.rate, "common": common_json(common),
            });
            traffic::run(&env, "rooms", layout, config).await
        }
        Command::Connect(a) => {
            let config = json!({
                "connections": a.connections, "hold_secs": a.hold, "common": common_json(common),
            });
            connect::run(&env, a.connections, Duration::from_secs_f64(a.hold.max(0.0)), config).await
        }
        Command::Compare(_) => unreachable!("handled before the runtime starts"),
    };
    env.finish();
    result
}

fn common_json(c: &CommonArgs) -> serde_json::Value {
    json!({
        "duration_secs": c.duration,
        "warmup_secs": c.warmup,
        "payload_bytes": c.payload,
        "source_ips": c.source_ips,
        "workers": c.workers,
        "client_core": c.client_core,
        "server_core": c.server_core,
        "connect_concurrency": c.connect_concurrency,
        "auth": if c.target.is_palaver() && !c.auth_op { "header" } else { "op" },
        "users": c.users,
        "client_ts_unit": "us",
    })
}

/// Raises the open-file soft limit to the hard limit (sockets are files).
fn raise_fd_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => eprintln!("open-file limit: {n}"),
        Err(e) => eprintln!("warning: cannot raise the open-file limit: {e}"),
    }
}

/// Pins the generator (and the runtime threads it starts later) to one core.
fn pin_generator(common: &CommonArgs) -> anyhow::Result<()> {
    let core = match common.client_core.as_str() {
        "none" => return Ok(()),
        "auto" => {
            if process_stats::cpu_count() < 2 {
                return Ok(());
            }
            1
        }
        n => n.parse::<usize>().context("--client-core: a core number, auto or none")?,
    };
    let ids = core_affinity::get_core_ids().unwrap_or_default();
    match ids.into_iter().find(|c| c.id == core) {
        Some(id) if core_affinity::set_for_current(id) => eprintln!("generator pinned to core {core}"),
        _ => eprintln!("warning: could not pin the generator to core {core}"),
    }
    Ok(())
}
