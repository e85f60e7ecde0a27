//! `palaver-load`: the load-test and capacity-planning harness for Palaver.
//!
//! Scenarios (`fanout`, `rooms`, `connect`, `churn`, `history`, `mixed`) drive a Palaver
//! server (JSON or rkyv frames), the Node `ws` baseline (Palaver's JSON protocol) or the
//! Node Socket.io baseline (Socket.io v4 spoken directly over its WebSocket transport) on
//! loopback, measure end-to-end latency (`client_ts` in µs since the epoch, echoed in every
//! message event) into HDR histograms, and read the server's CPU time and resident memory
//! from `/proc`; against Palaver, a traffic run also states the server's durability mode,
//! the disk's fsync and the group commits' latency over the window, and the search index's
//! lag, waiting after sending until it has caught up. Each run is bounded in time and size,
//! stops by itself, prints a progress line each second and a summary, and can write a JSON
//! result (with a per-second timeline), a Markdown summary and an HTML report with SVG
//! plots; `compare` puts result files side by side.
//!
//! What it is not: a correctness test of the server (tests/ does that; the harness only
//! counts errors, missing deliveries and, in `churn`, seq gaps), or a benchmark of the
//! generator. It only ever connects to 127.0.0.0/8. See `loadtest/README.md`.
//!
//! The library is what the binary runs: [`run`] takes a parsed [`cli::Command`] and returns
//! the result document, so tests can drive scenarios without spawning the binary.

mod arrival;
mod churn;
pub mod cli;
mod client;
mod compare;
mod connect;
mod env;
mod fsync_probe;
mod histogram_delta;
mod history;
mod http;
mod link;
mod loopback_tls;
mod lossy;
mod mixed;
mod plots;
mod process_stats;
mod quic_link;
mod raw_ws;
mod receiver;
mod relay;
mod report;
mod report_files;
mod search_index;
mod sender_thread;
mod socketio;
pub mod spawned_nats;
mod spawned_server;
mod stats;
mod traffic;
mod window;
mod wire;

use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::cli::{Command, CommonArgs};
use crate::env::Env;

/// Runs one subcommand: a scenario (returns its result document, after writing the JSON,
/// Markdown and HTML files it was asked for), or `compare` / `report` (returns `null`).
pub fn run(command: &Command) -> anyhow::Result<Value> {
    match command {
        Command::Compare(args) => {
            compare::run(&args.files)?;
            return Ok(Value::Null);
        }
        Command::Report(args) => {
            let text = std::fs::read_to_string(&args.file)
                .with_context(|| format!("read {}", args.file.display()))?;
            let doc: Value =
                serde_json::from_str(&text).with_context(|| format!("parse {}", args.file.display()))?;
            if doc.get("scenario").is_some() {
                write_reports(&doc, None, args.md.as_deref(), args.html.as_deref())?;
            } else {
                let dir = args.dir.as_deref().context("a summary of several runs needs --dir")?;
                write_summary_reports(&doc, dir)?;
            }
            return Ok(Value::Null);
        }
        Command::Relay(args) => {
            run_relay(args)?;
            return Ok(Value::Null);
        }
        _ => {}
    }
    let common = command.common().context("not a scenario")?;
    let runtime = if common.workers <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(common.workers).enable_all().build()?
    };
    let doc = runtime.block_on(run_scenario(command));
    // Let aborted socket tasks go before the runtime is dropped.
    runtime.shutdown_timeout(Duration::from_secs(1));
    let mut doc = doc?;
    report::finalize(&mut doc);
    write_reports(&doc, common.out.as_deref(), common.md.as_deref(), common.html.as_deref())?;
    Ok(doc)
}

/// Prints the summary table of a result document on stdout.
pub fn print_summary(doc: &Value) {
    report::print_summary(doc);
}

/// Every error a run counted (error replies, failed set-ups and connects, missing
/// deliveries, disconnects, seq gaps and duplicates, history mismatches): 0 for a clean run.
pub fn errors_total(doc: &Value) -> u64 {
    doc["results"]["errors_total"].as_u64().unwrap_or(u64::MAX)
}

/// Raises the open-file soft limit to the hard limit (sockets are files).
pub fn raise_fd_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => eprintln!("open-file limit: {n}"),
        Err(e) => eprintln!("warning: cannot raise the open-file limit: {e}"),
    }
}

/// Pins the generator (and the runtime threads it starts later) to `--client-core`.
pub fn pin_generator(common: &CommonArgs) -> anyhow::Result<()> {
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

fn write_reports(
    doc: &Value,
    out: Option<&std::path::Path>,
    md: Option<&std::path::Path>,
    html: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    if let Some(out) = out {
        report::write(doc, out)?;
    }
    let svgs = match html {
        Some(html) => Some(report_files::write_html(doc, html)?),
        None => None,
    };
    if let Some(md) = md {
        report_files::write_markdown(doc, md, svgs.as_deref())?;
    }
    Ok(())
}

/// Writes `NAME.md` and `NAME.html` (with its plots) into `dir` for every result document
/// of a summary (a JSON object of result documents by name).
fn write_summary_reports(summary: &Value, dir: &std::path::Path) -> anyhow::Result<()> {
    let runs = summary.as_object().context("a summary is a JSON object of result documents by name")?;
    for (name, doc) in runs {
        anyhow::ensure!(doc.get("scenario").is_some(), "{name} is not a result document");
        anyhow::ensure!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{name:?} is not a plain file name"
        );
        let html = dir.join(format!("{name}.html"));
        let md = dir.join(format!("{name}.md"));
        write_reports(doc, None, Some(&md), Some(&html))?;
    }
    Ok(())
}

async fn run_scenario(command: &Command) -> anyhow::Result<Value> {
    let common = command.common().context("not a scenario")?;
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
        Command::Churn(a) => {
            let profile = mixed::Profile {
                rooms: None,
                churn: Some(mixed::ChurnPart {
                    clients: a.clients,
                    connect_rate: a.connect_rate,
                    stay_ms: [a.stay_min_ms, a.stay_max_ms],
                    send_rate: a.rate,
                }),
                history: None,
            };
            let config = json!({ "profile": profile, "common": common_json(common) });
            mixed::run(&env, "churn", &profile, config).await
        }
        Command::History(a) => {
            let profile = mixed::Profile {
                rooms: None,
                churn: None,
                history: Some(mixed::HistoryPart {
                    clients: a.clients,
                    rate: a.rate,
                    fill: a.fill,
                    limit: a.limit,
                }),
            };
            let config = json!({ "profile": profile, "common": common_json(common) });
            mixed::run(&env, "history", &profile, config).await
        }
        Command::Mixed(a) => {
            let profile = mixed::Profile::load(&a.profile)?;
            let config = json!({
                "profile_file": a.profile.display().to_string(), "profile": profile,
                "common": common_json(common),
            });
            mixed::run(&env, "mixed", &profile, config).await
        }
        Command::Lossy(a) => {
            let config = json!({
                "rooms": a.rooms, "rate_per_room": a.rate, "observers": a.observers,
                "relay_rtt_ms": a.rtt_ms, "relay_loss": a.loss, "relay_seed": a.seed,
                "common": common_json(common),
            });
            lossy::run(&env, a, config).await
        }
        Command::Compare(_) | Command::Report(_) | Command::Relay(_) => {
            Err(anyhow::anyhow!("not a scenario"))
        }
    };
    env.finish();
    result
}

/// `relay`: runs the relay alone for `--duration` seconds.
fn run_relay(args: &cli::RelayArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let impairment = relay::Impairment {
            rtt: Duration::from_secs_f64(args.rtt_ms.max(0.0) / 1000.0),
            loss: args.loss.clamp(0.0, 1.0),
            seed: args.seed,
        };
        let relay = relay::Relay::start(args.protocol, args.listen, args.to, impairment).await?;
        println!("relaying {} -> {} for {} s", relay.addr, args.to, args.duration);
        tokio::time::sleep(Duration::from_secs_f64(args.duration.max(0.0))).await;
        eprintln!(
            "forwarded {}, dropped {}",
            relay.counts.forwarded.load(std::sync::atomic::Ordering::Relaxed),
            relay.counts.dropped.load(std::sync::atomic::Ordering::Relaxed)
        );
        anyhow::Ok(())
    })
}

fn common_json(c: &CommonArgs) -> Value {
    json!({
        "duration_secs": c.duration,
        "warmup_secs": c.warmup,
        "payload_bytes": c.payload,
        "source_ips": c.source_ips,
        "workers": c.workers,
        "client_core": c.client_core,
        "server_core": c.server_core,
        "connect_concurrency": c.connect_concurrency,
        "auth": match (c.target, client::AuthMode::for_target(c.target, c.auth_op)) {
            (cli::Target::Socketio, _) => "handshake",
            (_, client::AuthMode::Header) => "header",
            (_, client::AuthMode::Op) => "op",
        },
        "users": c.users,
        "deflate_offered": c.deflate,
        "client_ts_unit": "us",
    })
}
