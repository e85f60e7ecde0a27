//! The command line: one subcommand per scenario, plus `compare`.
//!
//! Every scenario is bounded (a duration, a count) and stops by itself. Traffic goes only
//! to loopback addresses (127.0.0.0/8): `--addr` is refused otherwise.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Load and capacity tests for Palaver and its Node baselines.
#[derive(Debug, Parser)]
#[command(name = "palaver-load", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// One room, M members, S senders at R msg/s in total: fan-out cost and latency.
    Fanout(FanoutArgs),
    /// K rooms of M members, R msg/s per room: many small rooms.
    Rooms(RoomsArgs),
    /// C idle authenticated connections: connect rate and server memory per connection.
    Connect(ConnectArgs),
    /// Sockets connect, join (resuming with `since`), stay a random short time, leave and
    /// come back, while a sender keeps messages flowing: connect latency, reconnects/s and
    /// (resumable targets) a per-client check that every seq arrived exactly once.
    Churn(ChurnArgs),
    /// N clients page `history` of a pre-filled room at a fixed rate: request latency, pages/s.
    History(HistoryArgs),
    /// A blend of rooms traffic, churn and history reads from a TOML profile (`--profile`).
    Mixed(MixedArgs),
    /// Members of several busy rooms behind a relay that adds delay and loss: what
    /// head-of-line blocking costs them on each transport.
    Lossy(LossyArgs),
    /// Only the relay: forwards a loopback port to another with delay and loss, for a
    /// bounded time (for trying other clients by hand).
    Relay(RelayArgs),
    /// Prints result files side by side as a Markdown table, with ratios to the first.
    Compare(CompareArgs),
    /// Writes the Markdown and/or HTML report of a result file again.
    Report(ReportArgs),
}

impl Command {
    /// The common flags of a scenario (`None` for `compare` and `report`).
    pub fn common(&self) -> Option<&CommonArgs> {
        match self {
            Command::Fanout(a) => Some(&a.common),
            Command::Rooms(a) => Some(&a.common),
            Command::Connect(a) => Some(&a.common),
            Command::Churn(a) => Some(&a.common),
            Command::History(a) => Some(&a.common),
            Command::Mixed(a) => Some(&a.common),
            Command::Lossy(a) => Some(&a.common),
            Command::Compare(_) | Command::Report(_) | Command::Relay(_) => None,
        }
    }
}

/// Which server, speaking which encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// Palaver, `palaver.v1.json` (text frames).
    PalaverJson,
    /// Palaver, `palaver.v1.rkyv` (binary frames).
    PalaverRkyv,
    /// Palaver, JSON over WebSocket over TLS (a spawned server gets `--http-tls`).
    PalaverJsonTls,
    /// Palaver, rkyv over WebSocket over TLS (a spawned server gets `--http-tls`).
    PalaverRkyvTls,
    /// Palaver over QUIC, ALPN `palaver/1+json`.
    PalaverQuicJson,
    /// Palaver over QUIC, ALPN `palaver/1`.
    PalaverQuicRkyv,
    /// The Node `ws` baseline, which speaks Palaver's JSON protocol.
    WsBaseline,
    /// The Node Socket.io v4 baseline, spoken directly over its WebSocket transport.
    Socketio,
}

impl Target {
    /// The name used on the command line and in results.
    pub fn name(self) -> &'static str {
        match self {
            Target::PalaverJson => "palaver-json",
            Target::PalaverRkyv => "palaver-rkyv",
            Target::PalaverJsonTls => "palaver-json-tls",
            Target::PalaverRkyvTls => "palaver-rkyv-tls",
            Target::PalaverQuicJson => "palaver-quic-json",
            Target::PalaverQuicRkyv => "palaver-quic-rkyv",
            Target::WsBaseline => "ws-baseline",
            Target::Socketio => "socketio",
        }
    }

    /// Whether a reconnecting client can resume a room with `join` + `since` (and so be
    /// checked for gaps and duplicates across reconnects): not on Socket.io.
    pub fn can_resume(self) -> bool {
        !matches!(self, Target::Socketio)
    }

    /// Whether the target answers `history` (the Socket.io baseline has no such event).
    pub fn has_history(self) -> bool {
        !matches!(self, Target::Socketio)
    }

    /// Whether this is Palaver itself.
    pub fn is_palaver(self) -> bool {
        !matches!(self, Target::WsBaseline | Target::Socketio)
    }

    /// How the target's client sockets reach the server.
    pub fn transport(self) -> Transport {
        match self {
            Target::PalaverJsonTls | Target::PalaverRkyvTls => Transport::WebSocketTls,
            Target::PalaverQuicJson | Target::PalaverQuicRkyv => Transport::Quic,
            Target::PalaverJson | Target::PalaverRkyv | Target::WsBaseline | Target::Socketio => {
                Transport::WebSocket
            }
        }
    }
}

/// What carries a target's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// WebSocket over plain TCP.
    WebSocket,
    /// WebSocket over TLS over TCP; the REST calls use HTTPS too.
    WebSocketTls,
    /// QUIC (one connection per client, frames behind a `u32` LE length); the REST calls
    /// use HTTPS when the server runs `--http-tls`, else plain HTTP.
    Quic,
}

/// Flags every scenario shares.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// The server and encoding under test.
    #[arg(long, value_enum, default_value = "palaver-json")]
    pub target: Target,

    /// An already running server (loopback only), e.g. 127.0.0.1:8080. With a cluster, the
    /// node accounts are registered on (see `--peer-addr`).
    #[arg(long, conflicts_with = "spawn_palaver")]
    pub addr: Option<SocketAddr>,

    /// Another node of the already running cluster `--addr` belongs to (repeatable, loopback
    /// only): client sockets are spread round-robin over `--addr` and these.
    #[arg(long = "peer-addr", value_name = "ADDR")]
    pub peer_addrs: Vec<SocketAddr>,

    /// The running server's QUIC address (loopback only), for the `palaver-quic-*`
    /// targets with `--addr`; a spawned server's is read from its startup line.
    #[arg(long, value_name = "ADDR", conflicts_with = "spawn_palaver")]
    pub quic_addr: Option<SocketAddr>,

    /// The running server's HTTP listener speaks TLS (`palaver --http-tls`): the REST calls
    /// use HTTPS. Implied by the `*-tls` targets; a spawned server gets `--http-tls` for them.
    #[arg(long)]
    pub http_tls: bool,

    /// Start this palaver binary: temp data dir, port 0, `--shards 1`, rate limits lifted,
    /// pinned to `--server-core` with taskset when available. Stopped at the end.
    #[arg(long, value_name = "PATH")]
    pub spawn_palaver: Option<PathBuf>,

    /// With `--spawn-palaver`: start a cluster of N palaver nodes (N >= 1) sharing a
    /// `nats-server -js` (from PATH) and one per-run JWT secret; client sockets are spread
    /// round-robin over the nodes, and server CPU and memory are the sum of every node and
    /// the NATS server.
    #[arg(long, value_name = "N")]
    pub spawn_cluster: Option<usize>,

    /// Extra argument for the spawned palaver (repeatable), e.g. `--server-arg=--durability=none`.
    #[arg(long = "server-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub server_args: Vec<String>,

    /// Shards for the spawned palaver.
    #[arg(long, default_value_t = 1)]
    pub server_shards: usize,

    /// The server's process id (for CPU and memory) when it was started elsewhere;
    /// repeatable (e.g. every node of a cluster and its NATS server): figures are the sum.
    #[arg(long = "server-pid", value_name = "PID")]
    pub server_pids: Vec<u32>,

    /// A directory on the server's data disk for the fsync probe (the disk's fsync latency
    /// during the window); a spawned server's data directory is used by default.
    #[arg(long, value_name = "DIR")]
    pub fsync_probe_dir: Option<PathBuf>,

    /// How often the fsync probe appends a block and syncs it, in ms (0: no probe).
    #[arg(long, default_value_t = 20)]
    pub fsync_probe_interval_ms: u64,

    /// After sending stops, how long to wait at most for Palaver's search index to catch
    /// up (its backlog gauge to read 0), in seconds.
    #[arg(long, default_value_t = 60.0)]
    pub index_catch_up_secs: f64,

    /// Where to write the JSON result.
    #[arg(long, value_name = "FILE.json")]
    pub out: Option<PathBuf>,

    /// Where to write a Markdown summary.
    #[arg(long, value_name = "FILE.md")]
    pub md: Option<PathBuf>,

    /// Where to write an HTML report; its SVG plots are written next to it
    /// (`STEM-throughput.svg`, `STEM-latency.svg`, `STEM-distribution.svg`).
    #[arg(long, value_name = "FILE.html")]
    pub html: Option<PathBuf>,

    /// Measured duration, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,

    /// Warm-up before the measured window, in seconds (traffic flows, nothing is recorded).
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,

    /// Message text size in bytes (ASCII).
    #[arg(long, default_value_t = 80)]
    pub payload: usize,

    /// Spread client sockets over source addresses 127.0.0.1 ..= 127.0.0.N.
    #[arg(long, default_value_t = 1)]
    pub source_ips: u8,

    /// Worker threads of the generator's runtime (1 = current-thread runtime).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,

    /// Core to pin the generator to (default 1 when the machine has 2+ cores; `none` to not pin).
    #[arg(long, default_value = "auto")]
    pub client_core: String,

    /// Core to pin a spawned server to with taskset.
    #[arg(long, default_value_t = 0)]
    pub server_core: usize,

    /// Sockets being opened at once during set-up.
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,

    /// Authenticate Palaver sockets with the `auth` op instead of the upgrade's
    /// `Authorization` header (the ws baseline always uses the op).
    #[arg(long)]
    pub auth_op: bool,

    /// Palaver sockets offer permessage-deflate as browsers do (`permessage-deflate;
    /// client_max_window_bits`); receiving members inflate what comes compressed. The
    /// server compresses only when started with `--permessage-deflate`
    /// (`--server-arg=--permessage-deflate`).
    #[arg(long)]
    pub deflate: bool,

    /// Accounts registered for receiving sockets; sockets share them round-robin.
    #[arg(long, default_value_t = 50)]
    pub users: usize,

    /// Progress line every second on stderr (disable with --quiet).
    #[arg(long)]
    pub quiet: bool,
}

impl CommonArgs {
    /// The measured window.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration.max(0.0))
    }

    /// The longest wait for the search index to catch up after sending.
    pub fn index_catch_up(&self) -> Duration {
        Duration::from_secs_f64(self.index_catch_up_secs.clamp(0.0, 3600.0))
    }

    /// The warm-up before the measured window.
    pub fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.warmup.max(0.0))
    }

    /// Checks the combinations clap does not: a cluster is spawned from a palaver binary
    /// and has at least one node; peers complete a given `--addr` and are loopback.
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(n) = self.spawn_cluster {
            if self.spawn_palaver.is_none() {
                anyhow::bail!("--spawn-cluster needs --spawn-palaver PATH (the node binary)");
            }
            if n == 0 {
                anyhow::bail!("--spawn-cluster needs at least 1 node");
            }
        }
        if !self.peer_addrs.is_empty() {
            if self.spawn_palaver.is_some() {
                anyhow::bail!("--peer-addr is for a running cluster (with --addr), not --spawn-palaver");
            }
            if self.addr.is_none() {
                anyhow::bail!("--peer-addr needs --addr (the node accounts are registered on)");
            }
        }
        if self.target.transport() == Transport::Quic && self.addr.is_some() && self.quic_addr.is_none() {
            anyhow::bail!("a QUIC target with --addr needs --quic-addr (the server's UDP address)");
        }
        for addr in self.addr.iter().chain(&self.peer_addrs).chain(&self.quic_addr) {
            if !addr.ip().is_loopback() {
                anyhow::bail!(
                    "{addr} is not a loopback address: palaver-load only sends traffic to 127.0.0.0/8"
                );
            }
        }
        Ok(())
    }

    /// Whether the server's REST calls go over HTTPS.
    pub fn https(&self) -> bool {
        self.http_tls || self.target.transport() == Transport::WebSocketTls
    }

    /// The local addresses client sockets bind to.
    pub fn source_addrs(&self) -> Vec<Ipv4Addr> {
        (1..=self.source_ips.max(1)).map(|n| Ipv4Addr::new(127, 0, 0, n)).collect()
    }
}

/// `fanout` flags.
#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    /// Flags every scenario shares.
    #[command(flatten)]
    pub common: CommonArgs,

    /// Sockets joined to the room (senders included).
    #[arg(long, default_value_t = 1000)]
    pub members: usize,

    /// Sending sockets (the first S members).
    #[arg(long, default_value_t = 1)]
    pub senders: usize,

    /// Messages per second, all senders together.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
}

/// `rooms` flags.
#[derive(Debug, Clone, Args)]
pub struct RoomsArgs {
    /// Flags every scenario shares.
    #[command(flatten)]
    pub common: CommonArgs,

    /// Number of rooms.
    #[arg(long, default_value_t = 500)]
    pub rooms: usize,

    /// Sockets joined to each room (its senders included).
    #[arg(long, default_value_t = 10)]
    pub members: usize,

    /// Sending sockets per room.
    #[arg(long, default_value_t = 1)]
    pub senders_per_room: usize,

    /// Messages per second per room.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
}

/// `lossy` flags.
#[derive(Debug, Clone, Args)]
pub struct LossyArgs {
    /// Flags every scenario shares.
    #[command(flatten)]
    pub common: CommonArgs,

    /// Busy rooms, one direct sender each.
    #[arg(long, default_value_t = 8)]
    pub rooms: usize,

    /// Messages per second per room.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,

    /// Members of every room, behind the relay.
    #[arg(long, default_value_t = 10)]
    pub observers: usize,

    /// Round-trip time the relay adds, ms.
    #[arg(long, default_value_t = 40.0)]
    pub rtt_ms: f64,

    /// Loss probability each way (0.01 = 1 %).
    #[arg(long, default_value_t = 0.01)]
    pub loss: f64,

    /// Seed of the relay's loss decisions.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// `relay` flags.
#[derive(Debug, Clone, Args)]
pub struct RelayArgs {
    /// TCP (WebSocket; loss modelled as retransmission delay) or UDP (QUIC; real drops).
    #[arg(long, value_enum)]
    pub protocol: crate::relay::RelayProtocol,

    /// Where clients connect (loopback).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,

    /// The server (loopback).
    #[arg(long)]
    pub to: SocketAddr,

    /// Round-trip time added, ms.
    #[arg(long, default_value_t = 40.0)]
    pub rtt_ms: f64,

    /// Loss probability each way.
    #[arg(long, default_value_t = 0.01)]
    pub loss: f64,

    /// Seed of the loss decisions.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Seconds the relay runs before it stops by itself.
    #[arg(long, default_value_t = 60.0)]
    pub duration: f64,
}

/// `connect` flags.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Flags every scenario shares.
    #[command(flatten)]
    pub common: CommonArgs,

    /// Idle authenticated connections to open.
    #[arg(long, default_value_t = 5000)]
    pub connections: usize,

    /// Seconds to hold the connections open after the last one (memory is sampled then).
    #[arg(long, default_value_t = 2.0)]
    pub hold: f64,
}

/// `churn` flags.
#[derive(Debug, Clone, Args)]
pub struct ChurnArgs {
    /// Flags every scenario shares.
    #[command(flatten)]
    pub common: CommonArgs,

    /// Churning clients (each connects, joins, stays, leaves, again and again).
    #[arg(long, default_value_t = 50)]
    pub clients: usize,

    /// Connects per second, all clients together (each connect ends one earlier stay).
    #[arg(long, default_value_t = 20.0)]
    pub connect_rate: f64,

    /// Shortest stay of a client in the room, ms.
    #[arg(long, default_value_t = 200)]
    pub stay_min_ms: u64,

    /// Longest stay of a client in the room, ms.
    #[arg(long, default_value_t = 2000)]
    pub stay_max_ms: u64,

    /// Messages per second the (always connected) sender puts into the room.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
}

/// `history` flags.
#[derive(Debug, Clone, Args)]
pub struct HistoryArgs {
    /// Flags every scenario shares.
    #[command(flatten)]
    pub common: CommonArgs,

    /// Clients paging the room.
    #[arg(long, default_value_t = 20)]
    pub clients: usize,

    /// History requests per second, all clients together.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,

    /// Messages stored in the room before paging starts.
    #[arg(long, default_value_t = 5000)]
    pub fill: u64,

    /// Page size (`limit`, 1..=100).
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
}

/// `mixed` flags.
#[derive(Debug, Clone, Args)]
pub struct MixedArgs {
    /// Flags every scenario shares.
    #[command(flatten)]
    pub common: CommonArgs,

    /// The TOML profile (see `loadtest/profiles/mixed.toml`).
    #[arg(long, value_name = "FILE.toml")]
    pub profile: PathBuf,
}

/// `report` flags.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// A result file written with `--out`, or a summary of several runs (a JSON object of
    /// result documents by name, such as `docs/perf/current.json`; needs `--dir`).
    pub file: PathBuf,

    /// For a summary: the directory to write every run's `NAME.md` and `NAME.html` (with
    /// its SVG plots) into.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Where to write the Markdown summary.
    #[arg(long, value_name = "FILE.md")]
    pub md: Option<PathBuf>,

    /// Where to write the HTML report (SVG plots next to it).
    #[arg(long, value_name = "FILE.html")]
    pub html: Option<PathBuf>,
}

/// `compare` flags.
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// Result files; the first is the reference for ratios.
    #[arg(required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    fn common(args: &[&str]) -> CommonArgs {
        let mut argv = vec!["palaver-load", "fanout"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).expect("parses").command {
            Command::Fanout(a) => a.common,
            _ => unreachable!(),
        }
    }

    #[test]
    fn spawn_cluster_needs_spawn_palaver() {
        let c = common(&["--spawn-cluster", "2", "--addr", "127.0.0.1:8080"]);
        let e = c.validate().expect_err("no binary");
        assert!(e.to_string().contains("--spawn-palaver"), "{e}");
        let c = common(&["--spawn-cluster", "2"]);
        assert!(c.validate().is_err());
        let c = common(&["--spawn-cluster", "3", "--spawn-palaver", "/bin/palaver"]);
        c.validate().expect("valid");
        assert_eq!(c.spawn_cluster, Some(3));
    }

    #[test]
    fn spawn_cluster_needs_a_node() {
        let c = common(&["--spawn-cluster", "0", "--spawn-palaver", "/bin/palaver"]);
        assert!(c.validate().is_err());
    }

    #[test]
    fn peer_addr_must_be_loopback() {
        let c = common(&["--addr", "127.0.0.1:8080", "--peer-addr", "127.0.0.2:8081"]);
        c.validate().expect("loopback peers are fine");
        let c = common(&[
            "--addr",
            "127.0.0.1:8080",
            "--peer-addr",
            "127.0.0.1:8081",
            "--peer-addr",
            "10.0.0.1:8082",
        ]);
        let e = c.validate().expect_err("not loopback");
        assert!(e.to_string().contains("10.0.0.1:8082"), "{e}");
        let c = common(&["--addr", "192.168.1.2:8080"]);
        assert!(c.validate().is_err());
    }

    #[test]
    fn peer_addr_needs_addr() {
        let c = common(&["--peer-addr", "127.0.0.1:8081"]);
        assert!(c.validate().is_err());
        let c = common(&["--spawn-palaver", "/bin/palaver", "--peer-addr", "127.0.0.1:8081"]);
        assert!(c.validate().is_err());
    }

    #[test]
    fn server_pid_repeats() {
        let c = common(&["--addr", "127.0.0.1:8080", "--server-pid", "10", "--server-pid", "11"]);
        assert_eq!(c.server_pids, vec![10, 11]);
        assert!(common(&["--addr", "127.0.0.1:8080"]).server_pids.is_empty());
    }
}
