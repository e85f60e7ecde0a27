//! The `mixed` scenario: rooms traffic, churn and history reads running together, as a
//! TOML profile describes (see `loadtest/profiles/mixed.toml`). Each part is the same
//! workload as its own scenario, sharing one clock, one set of counters and one report.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::churn::{self, ChurnConfig};
use crate::env::Env;
use crate::history::{self, HistoryConfig};
use crate::report;
use crate::stats::Stats;
use crate::traffic::{self, Layout};
use crate::window::{self, Schedule};

/// A mixed profile.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Many rooms with steady traffic.
    pub rooms: Option<RoomsPart>,
    /// Clients coming and going.
    pub churn: Option<ChurnPart>,
    /// Clients paging history.
    pub history: Option<HistoryPart>,
}

/// `[rooms]`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoomsPart {
    pub count: usize,
    pub members: usize,
    #[serde(default = "one")]
    pub senders_per_room: usize,
    pub rate_per_room: f64,
}

/// `[churn]`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChurnPart {
    pub clients: usize,
    pub connect_rate: f64,
    pub stay_ms: [u64; 2],
    pub send_rate: f64,
}

/// `[history]`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryPart {
    pub clients: usize,
    pub rate: f64,
    #[serde(default = "default_fill")]
    pub fill: u64,
    #[serde(default = "default_limit")]
    pub limit: u32,
}

fn one() -> usize {
    1
}

fn default_fill() -> u64 {
    5000
}

fn default_limit() -> u32 {
    50
}

impl Profile {
    /// Reads a profile file.
    pub fn load(path: &Path) -> anyhow::Result<Profile> {
        let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        let profile: Profile = toml::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
        if profile.rooms.is_none() && profile.churn.is_none() && profile.history.is_none() {
            anyhow::bail!("{}: the profile has no [rooms], [churn] or [history] section", path.display());
        }
        Ok(profile)
    }
}

/// Runs the blend and returns its result document.
pub async fn run(env: &Env, scenario: &str, profile: &Profile, config: Value) -> anyhow::Result<Value> {
    let common = &env.common;
    let tokens = Arc::new(env.register_users(common.users.max(1)).await?);
    let stats = Arc::new(Stats::default());

    let rooms = match &profile.rooms {
        Some(r) => Some(
            traffic::Setup::open(
                env,
                Layout {
                    rooms: r.count,
                    members: r.members,
                    senders_per_room: r.senders_per_room,
                    rate_per_sender: r.rate_per_room / r.senders_per_room.max(1) as f64,
                },
                tokens.clone(),
            )
            .await?,
        ),
        None => None,
    };
    let churn = match &profile.churn {
        Some(c) => Some(
            churn::prepare(
                env,
                ChurnConfig {
                    clients: c.clients,
                    connect_rate: c.connect_rate,
                    stay_min: Duration::from_millis(c.stay_ms[0]),
                    stay_max: Duration::from_millis(c.stay_ms[1]),
                    rate: c.send_rate,
                },
                tokens.clone(),
            )
            .await?,
        ),
        None => None,
    };
    let history = match &profile.history {
        Some(h) => Some(
            history::prepare(
                env,
                HistoryConfig { clients: h.clients, rate: h.rate, fill: h.fill, limit: h.limit },
                tokens.clone(),
            )
            .await?,
        ),
        None => None,
    };

    let schedule = Schedule::new(common.warmup(), common.duration());
    let setup_json = rooms.as_ref().map(traffic::Setup::json);
    let mut tasks = Vec::new();
    // The senders' thread stops (after the tasks are aborted) when this goes out of scope.
    let mut _senders = None;
    if let Some(rooms) = rooms {
        let (room_tasks, senders) = rooms.spawn(env, &stats, &schedule);
        tasks.extend(room_tasks);
        _senders = Some(senders);
    }
    let churn = churn.map(|c| churn::spawn(c, env, &stats, &schedule));
    let history_setup = history.map(|h| {
        let (t, setup) = history::spawn(h, &stats, &schedule);
        tasks.extend(t);
        setup
    });
    let window = window::run(env, &stats, &schedule).await;
    let churn_json = match churn {
        Some(c) => Some(c.finish(&window).await),
        None => None,
    };
    stats.stopping.store(true, Ordering::Relaxed);
    for task in &tasks {
        task.abort();
    }
    let end = stats.snapshot();
    let mut doc = report::header(env, scenario, config);
    doc["setup"] = json!({ "rooms": setup_json, "users": tokens.len(), "drain_secs": window.drain_secs });
    if let Some(s) = setup_json.as_ref().and_then(|s| s.get("setup_errors")) {
        doc["setup"]["setup_errors"] = s.clone();
    }
    doc["results"] = report::traffic_results(&stats, &window, &end);
    if let Some(c) = churn_json {
        doc["results"]["churn"] = c;
    }
    if let Some(setup) = history_setup {
        doc["results"]["history"] = history::results(&stats, &window, setup);
    }
    doc["timeline"] = window.sampler.timeline();
    Ok(doc)
}
