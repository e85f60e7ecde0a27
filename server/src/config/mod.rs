//! Operator configuration. Each setting is a flag, an environment variable and a key of
//! an optional TOML file (`--config`); flag beats env beats file beats default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use palaver_core::SessionLimits;
use palaver_storage::Durability;
use serde::Deserialize;

mod origins;
pub use origins::AllowedOrigins;

/// Default time allowed to send a whole request head, or a JSON body (slow clients are
/// cut off); `--handshake-timeout-secs`.
pub const HEAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The cluster settings (`--cluster`).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The NATS server, e.g. `nats://127.0.0.1:4222`, or several of one NATS cluster,
    /// comma-separated.
    pub nats_url: String,
    /// This node's id.
    pub node_id: String,
    /// JetStream replicas of the log stream.
    pub log_replicas: usize,
    /// Records of the log kept at its tail (0: all).
    pub log_keep: u64,
}

/// Default `--cluster-log-keep`: a node may be away for about a million writes (hours of
/// a busy service) and still catch up from the log alone.
pub const DEFAULT_CLUSTER_LOG_KEEP: u64 = 1_000_000;

/// Default open connections per client address: generous for NAT'd offices, small
/// enough that one host cannot take every file descriptor.
const DEFAULT_MAX_CONNECTIONS_PER_IP: u32 = 4_096;
/// Default authenticated connections per user (devices, tabs, bots).
const DEFAULT_MAX_CONNECTIONS_PER_USER: u32 = 256;
/// The pacing tick of adaptive write coalescing. In a trial that paused every writer for a
/// fixed time after each write, a 1,000-member room at 1,000 messages/s had a p99 of
/// 150-748 ms with no pause, 66-71 ms at 2 ms and 15-19 ms at 5 ms (docs/PERFORMANCE.md,
/// "The design decisions behind the numbers").
const DEFAULT_WRITE_PACING_MS: u64 = 5;

/// Default time a socket's queued bytes may wait with no write completing: well past a
/// slow mobile link's pauses, well before the idle timeout.
const DEFAULT_WRITE_TIMEOUT_SECS: u64 = 30;

/// Default sign-in attempts per minute from one address: a person mistyping, a few
/// devices behind one NAT; far below what guessing needs.
const DEFAULT_SIGN_INS_PER_MINUTE_PER_IP: u32 = 30;

/// Default rooms one user may own: far past any person's needs, far below what fills a
/// store or the owner's `sync`.
const DEFAULT_MAX_ROOMS_PER_USER: usize = 1_000;

/// Default time an unused room stays in memory.
const DEFAULT_IDLE_ROOM_SECS: u64 = 600;

/// Default seconds one webhook delivery may take.
pub const DEFAULT_WEBHOOK_TIMEOUT_SECS: u64 = 10;
/// Default deliveries one webhook endpoint may have waiting.
pub const DEFAULT_WEBHOOK_QUEUE: usize = 1_000;
/// Default seconds between two retention sweeps.
const DEFAULT_RETENTION_INTERVAL_SECS: u64 = 60;
/// Default age below which no message is removed, whatever a retention says: the window
/// in which a client may still be retrying a send (its `cid` is found until then).
const DEFAULT_RETENTION_GRACE_SECS: u64 = 600;

/// Whether WebSockets negotiate permessage-deflate unless told otherwise.
const DEFAULT_PERMESSAGE_DEFLATE: bool = false;
/// Default smallest server message sent compressed on a permessage-deflate socket:
/// below it, the deflate block's own overhead leaves little to save.
const DEFAULT_PERMESSAGE_DEFLATE_MIN_BYTES: u16 = 128;

/// Command-line flags (each also read from its environment variable by clap).
/// Every setting, as one struct read twice: from the command line and the environment
/// (clap), and from the `--config` file (serde; keys are the flag names with `_` for
/// `-`). Each field is optional; [`Config::resolve`] takes the command line's value,
/// else the file's, else the default.
#[derive(Debug, Default, Parser, Deserialize)]
#[command(name = "palaver", version, about = "Palaver: a real-time chat server.")]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// TOML file with settings (keys are the flag names with `_` for `-`).
    #[arg(long, env = "PALAVER_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// WebSocket + HTTP listener address (port 0 picks a free port).
    #[arg(long, env = "PALAVER_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// QUIC listener address (UDP; port 0 picks a free port).
    #[arg(long, env = "PALAVER_QUIC_ADDR")]
    pub quic_addr: Option<SocketAddr>,
    /// TLS certificate chain (PEM) for QUIC and `--http-tls`; default: a self-signed
    /// development certificate generated once into `DATA_DIR/tls/`.
    #[arg(long, env = "PALAVER_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) matching `--tls-cert`.
    #[arg(long, env = "PALAVER_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve the HTTP/WebSocket listener over TLS (`https://`, `wss://`) with the same
    /// certificate as QUIC (`--tls-cert`/`--tls-key`, or the development certificate).
    #[arg(long, env = "PALAVER_HTTP_TLS")]
    pub http_tls: bool,
    /// Data directory.
    #[arg(long, env = "PALAVER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Number of shards (threads); default: available cores.
    #[arg(long, env = "PALAVER_SHARDS")]
    pub shards: Option<usize>,
    /// HS256 secret for access tokens; default: generated once into the data dir.
    #[arg(long, env = "PALAVER_JWT_SECRET", hide_env_values = true, conflicts_with = "jwt_secret_file")]
    pub jwt_secret: Option<String>,
    /// A file holding the HS256 secret (trailing whitespace ignored), so the secret is on
    /// no command line and in no environment.
    #[arg(long, env = "PALAVER_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// `fsync` (ok after the journal is synced) or `buffered` (synced within 1 s).
    #[arg(long, env = "PALAVER_DURABILITY")]
    pub durability: Option<DurabilitySetting>,
    /// Longest message text, in characters.
    #[arg(long, env = "PALAVER_MAX_TEXT_CHARS")]
    pub max_text_chars: Option<usize>,
    /// Access-token lifetime, in seconds.
    #[arg(long, env = "PALAVER_ACCESS_TOKEN_TTL_SECS")]
    pub access_token_ttl_secs: Option<u64>,
    /// Largest WebSocket message a client may send, in bytes.
    #[arg(long, env = "PALAVER_MAX_FRAME_BYTES")]
    pub max_frame_bytes: Option<usize>,
    /// Bytes queued to one socket before it is closed as a slow consumer.
    #[arg(long, env = "PALAVER_OUTBOUND_QUEUE_BYTES")]
    pub outbound_queue_bytes: Option<usize>,
    /// Sustained ops per second per connection.
    #[arg(long, env = "PALAVER_OPS_PER_SEC")]
    pub ops_per_sec: Option<u32>,
    /// Ops per connection allowed in a burst.
    #[arg(long, env = "PALAVER_OPS_BURST")]
    pub ops_burst: Option<u32>,
    /// Requests awaiting an answer per connection.
    #[arg(long, env = "PALAVER_MAX_IN_FLIGHT")]
    pub max_in_flight: Option<u32>,
    /// Seconds a new socket has to authenticate.
    #[arg(long, env = "PALAVER_AUTH_TIMEOUT_SECS")]
    pub auth_timeout_secs: Option<u64>,
    /// Seconds a socket may stay quiet before the server pings it.
    #[arg(long, env = "PALAVER_PING_INTERVAL_SECS")]
    pub ping_interval_secs: Option<u64>,
    /// Seconds without any frame from the peer (pongs included) before the socket is closed.
    #[arg(long, env = "PALAVER_IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// Seconds after sending during which a message may be edited by its sender.
    #[arg(long, env = "PALAVER_EDIT_WINDOW_SECS")]
    pub edit_window_secs: Option<u64>,
    /// Seconds a typing indicator lasts without renewal.
    #[arg(long, env = "PALAVER_TYPING_TIMEOUT_SECS")]
    pub typing_timeout_secs: Option<u64>,
    /// The most members any room may be set to admit (rooms start at 100).
    #[arg(long, env = "PALAVER_MAX_ROOM_MEMBERS")]
    pub max_room_members: Option<u32>,
    /// Where shared files are stored: `file:///abs/dir` (default: `DATA_DIR/files`), or
    /// `s3://bucket/prefix` (feature `s3`), `gs://…` (`gcs`), `az://…` (`azure`).
    #[arg(long, env = "PALAVER_FILES_URL")]
    pub files_url: Option<String>,
    /// Largest file upload, in bytes.
    #[arg(long, env = "PALAVER_MAX_FILE_BYTES")]
    pub max_file_bytes: Option<u64>,
    /// Do not index messages for search (the `search` op then answers `unavailable`).
    #[arg(long, env = "PALAVER_DISABLE_SEARCH")]
    pub disable_search: bool,
    /// Milliseconds between two presence announcements of one user (coalescing).
    #[arg(long, env = "PALAVER_PRESENCE_INTERVAL_MS")]
    pub presence_interval_ms: Option<u64>,
    /// Adaptive write coalescing: on a busy shard, a socket that gets frames more often
    /// than once per this many milliseconds waits for the shard's next tick (every this
    /// many ms) so its next write carries more frames; 0 turns it off.
    #[arg(long, env = "PALAVER_WRITE_PACING_MS")]
    pub write_pacing_ms: Option<u64>,
    /// Writes are refused (`unavailable`) while the data directory's disk has less than
    /// this many MiB free, so a full disk never tears a write; 0 turns the check off.
    #[arg(long, env = "PALAVER_DISK_RESERVE_MB")]
    pub disk_reserve_mb: Option<u64>,
    /// Seconds a client has to send a whole HTTP request head (and a JSON body): a client
    /// trickling bytes (slowloris) is cut off when it passes.
    #[arg(long, env = "PALAVER_HANDSHAKE_TIMEOUT_SECS")]
    pub handshake_timeout_secs: Option<u64>,
    /// Open connections allowed from one client IP address (0: no limit; set 0 or raise
    /// it behind a reverse proxy, where every client shares the proxy's address).
    #[arg(long, env = "PALAVER_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<u32>,
    /// Authenticated connections allowed per user, over all transports (0: no limit).
    #[arg(long, env = "PALAVER_MAX_CONNECTIONS_PER_USER")]
    pub max_connections_per_user: Option<u32>,
    /// Read every stored record once at start-up (checks every block's checksum) and
    /// refuse to start if any is damaged. Takes about a second per GB.
    #[arg(long, env = "PALAVER_VERIFY_ON_START")]
    pub verify_on_start: bool,
    /// Join a cluster through this NATS server (e.g. `nats://127.0.0.1:4222`), or these
    /// servers of one NATS cluster, comma-separated (the client fails over between them);
    /// without it the server runs alone.
    #[arg(long, env = "PALAVER_CLUSTER", value_name = "NATS_URL")]
    pub cluster: Option<String>,
    /// This node's id in the cluster (letters, digits, `-`, `_`; stable across restarts).
    #[arg(long, env = "PALAVER_NODE_ID")]
    pub node_id: Option<String>,
    /// Copies JetStream keeps of the cluster log (1 with one NATS server; 3 with a
    /// three-server NATS cluster).
    #[arg(long, env = "PALAVER_CLUSTER_LOG_REPLICAS")]
    pub cluster_log_replicas: Option<usize>,
    /// Records of the cluster log kept at its tail (0: keep everything). Older records go
    /// once every live node has applied them; a node that falls further behind, or a new
    /// node, starts from a copy of another node's store.
    #[arg(long, env = "PALAVER_CLUSTER_LOG_KEEP")]
    pub cluster_log_keep: Option<u64>,
    /// Seconds a socket may leave queued bytes unwritten (no write completes, the peer is not reading) before it is closed as a slow consumer; a closing socket that takes no bytes for as long is reset.
    #[arg(long, env = "PALAVER_WRITE_TIMEOUT_SECS")]
    pub write_timeout_secs: Option<u64>,
    /// Sign-in and registration attempts allowed per minute from one client address, after a burst of 10 (0: no limit; set 0 behind a reverse proxy, where every client shares its address). Wrong passwords are also limited per account and address, always.
    #[arg(long, env = "PALAVER_SIGN_INS_PER_MINUTE_PER_IP")]
    pub sign_ins_per_minute_per_ip: Option<u32>,
    /// The most rooms one user may own (create); creation is also throttled per user.
    #[arg(long, env = "PALAVER_MAX_ROOMS_PER_USER")]
    pub max_rooms_per_user: Option<usize>,
    /// Seconds a room may go unused (no subscriber, no command) before it leaves memory; it loads again from storage on its next use.
    #[arg(long, env = "PALAVER_IDLE_ROOM_SECS")]
    pub idle_room_secs: Option<u64>,
    /// Log line format: `text` (for people) or `json` (one object per line, for log
    /// collectors).
    #[arg(long, env = "PALAVER_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// What to log: a level (`error`, `warn`, `info`, `debug`, `trace`) or filter
    /// directives (`info,palaver_server=debug`); `RUST_LOG` is used when this is unset.
    #[arg(long, env = "PALAVER_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Origins whose pages may use the server from another origin, comma-separated
    /// (`https://app.example.com,http://localhost:5173`): CORS on the HTTP routes, and the
    /// `Origin` check of WebSocket upgrades. `*` allows any, only with the development secret.
    #[arg(long, env = "PALAVER_CORS_ORIGINS", value_delimiter = ',', num_args = 1..)]
    pub cors_origins: Option<Vec<String>>,
    /// The built-in chat page at `/`: `auto` (on while running with the development secret,
    /// i.e. without --jwt-secret), `on` or `off`.
    #[arg(long, env = "PALAVER_WEB_PAGE")]
    pub web_page: Option<WebPageSetting>,
    /// The admin console at `/admin/`: a web page for admins (users, rooms, reports, the
    /// audit log, live counts), signed in with an admin's username and password.
    /// `--admin-console` alone turns it on, `=false` off (the default).
    #[arg(long, env = "PALAVER_ADMIN_CONSOLE", num_args = 0..=1, default_missing_value = "true")]
    pub admin_console: Option<bool>,
    /// Accept permessage-deflate (RFC 7692) from WebSocket clients that offer it: each
    /// message is compressed once for all its recipients, no compression state is kept
    /// per socket. `--permessage-deflate` alone turns it on, `=false` off.
    #[arg(long, env = "PALAVER_PERMESSAGE_DEFLATE", num_args = 0..=1, default_missing_value = "true")]
    pub permessage_deflate: Option<bool>,
    /// With permessage-deflate: the smallest server message sent compressed, in bytes
    /// (at most 65535).
    #[arg(long, env = "PALAVER_PERMESSAGE_DEFLATE_MIN_BYTES")]
    pub permessage_deflate_min_bytes: Option<u16>,
    /// QUIC handshakes in progress past which a client must first prove its address with a stateless Retry (0: always), so a flood from forged addresses costs the server one packet each and no state
    #[arg(long, env = "PALAVER_QUIC_RETRY_AFTER_HANDSHAKES")]
    pub quic_retry_after_handshakes: Option<usize>,
    /// QUIC congestion control: `bbr` paces by measured bandwidth and round trip and does
    /// not take random loss for congestion (chat's small messages keep flowing on lossy
    /// mobile paths); `cubic` shrinks its window on every loss, like TCP
    #[arg(long, env = "PALAVER_QUIC_CONGESTION", value_enum)]
    pub quic_congestion: Option<QuicCongestion>,
    /// Default retention: messages older than this many seconds are removed, in rooms that
    /// set no retention of their own (direct rooms always follow the default).
    #[arg(long, env = "PALAVER_RETENTION_MAX_AGE_SECS")]
    pub retention_max_age_secs: Option<std::num::NonZeroU32>,
    /// Default retention: only the newest this many messages of a room are kept, in rooms
    /// that set no retention of their own.
    #[arg(long, env = "PALAVER_RETENTION_MAX_COUNT")]
    pub retention_max_count: Option<std::num::NonZeroU32>,
    /// Seconds between two passes of the retention sweeper.
    #[arg(long, env = "PALAVER_RETENTION_INTERVAL_SECS")]
    pub retention_interval_secs: Option<u64>,
    /// No message younger than this many seconds is removed, whatever a room's retention says (a retried send still finds its `cid` until then).
    #[arg(long, env = "PALAVER_RETENTION_GRACE_SECS")]
    pub retention_grace_secs: Option<u64>,
    /// Networks webhooks registered by room owners may reach although they are not public
    /// (`10.20.0.0/16,fd12::7`), comma-separated; operators' webhooks reach anything.
    #[arg(long, env = "PALAVER_WEBHOOK_ALLOW", value_delimiter = ',', num_args = 1..)]
    pub webhook_allow: Option<Vec<String>>,
    /// Seconds one webhook delivery may take, connecting to reading the answer's status.
    #[arg(long, env = "PALAVER_WEBHOOK_TIMEOUT_SECS")]
    pub webhook_timeout_secs: Option<u64>,
    /// Deliveries one webhook endpoint may have waiting on this node; more are dropped
    /// (counted, and shown in the endpoint's failure state).
    #[arg(long, env = "PALAVER_WEBHOOK_QUEUE")]
    pub webhook_queue: Option<usize>,
    /// Web Push: the VAPID private key (base64url, as `web-push generate-vapid-keys`
    /// prints it). Without it a server alone generates one into DATA_DIR/vapid-key; a
    /// cluster node pushes only with it (the same file on every node).
    #[arg(long, env = "PALAVER_VAPID_KEY_FILE")]
    pub vapid_key_file: Option<PathBuf>,
    /// Web Push: the contact push services see in VAPID tokens (`mailto:` or `https:`).
    #[arg(long, env = "PALAVER_PUSH_SUBJECT")]
    pub push_subject: Option<String>,
    /// Web Push: put the start of a message's text in pushes (encrypted to the browser,
    /// never for end-to-end encrypted rooms). `--push-previews` alone turns it on.
    #[arg(long, env = "PALAVER_PUSH_PREVIEWS", num_args = 0..=1, default_missing_value = "true")]
    pub push_previews: Option<bool>,
    /// Web Push: networks whose push endpoints are accepted although internal, and may be
    /// `http://` (`10.0.0.0/8,127.0.0.1`): a push service inside the operator's network.
    #[arg(long, env = "PALAVER_PUSH_ALLOW_NETWORKS", value_delimiter = ',', num_args = 1..)]
    pub push_allow_networks: Option<Vec<String>>,
    /// Test only: serve a WebSocket echo route at /v1/test/echo (conformance suites).
    #[arg(long, hide = true)]
    #[serde(skip)]
    pub test_echo: bool,
    /// Test only: abort the process right after an account deletion is stored, before
    /// its rooms are left (the crash the departure outbox recovers from).
    #[arg(long, hide = true)]
    #[serde(skip)]
    pub test_crash_after_account_deletion: bool,
    /// What to do instead of serving.
    #[command(subcommand)]
    #[serde(skip)]
    pub command: Option<Command>,
}

/// `palaver`'s other commands (without one, it serves).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Ask the server running on a data directory for an online backup: the store from
    /// one consistent snapshot, the shared files on local disk and the development
    /// secrets. The server writes it, so OUT must be writable by the server's user.
    Backup {
        /// The running server's data directory [default: ./data].
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        /// Where to write the backup (missing or empty).
        #[arg(long)]
        out: PathBuf,
    },
    /// Build a new data directory from a backup (with no server running on it); start
    /// the server on it afterwards.
    Restore {
        /// The backup (a directory `palaver backup` wrote).
        #[arg(long)]
        from: PathBuf,
        /// The data directory to create (missing or empty) [default: ./data].
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
    },
    /// Write every in-memory table out and compact the store, on a data directory with
    /// no server running on it: removed records (deleted accounts, ended sessions) leave
    /// the disk now.
    Compact {
        /// The data directory [default: ./data].
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
    },
    /// Grant, revoke or list the admin role, on a data directory with no server running
    /// on it (each change is kept in the audit log).
    Admin {
        /// What to do.
        #[command(subcommand)]
        action: AdminCommand,
        /// The data directory [default: ./data].
        #[arg(long, default_value = "./data", global = true)]
        data_dir: PathBuf,
    },
    /// Create, list or revoke API keys for the server API, on a data directory with no
    /// server running on it (admins manage them live at /v1/admin/api-keys).
    ApiKey {
        /// What to do.
        #[command(subcommand)]
        action: ApiKeyCommand,
        /// The data directory [default: ./data].
        #[arg(long, default_value = "./data", global = true)]
        data_dir: PathBuf,
    },
}

/// `palaver api-key`'s actions.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ApiKeyCommand {
    /// Make a key; it is printed once, and only its SHA-256 is kept.
    Create {
        /// What to call it (the backend that will use it).
        name: String,
        /// What it may do: `users` (create users, mint their tokens), `rooms` and
        /// `publish` (ops in rooms as a user), `admin` (manage keys); repeat or separate
        /// with commas.
        #[arg(long = "scope", value_delimiter = ',', required_unless_present = "bot")]
        scopes: Vec<String>,
        /// A bot's key: the username of the bot account (made through the server API
        /// with `"bot": true`) it signs sockets in as.
        #[arg(long)]
        bot: Option<String>,
    },
    /// List the keys (never their secrets).
    List,
    /// Revoke a key: refused from then on.
    Revoke {
        /// The key's id (the 16 hex digits after `pvk_`).
        key_id: String,
    },
}

/// `palaver admin`'s actions.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AdminCommand {
    /// Make a user an admin.
    Grant {
        /// The user's username.
        username: String,
    },
    /// Take the admin role from a user.
    Revoke {
        /// The user's username.
        username: String,
    },
    /// List the admins.
    List,
}

/// The `--log-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl Settings {
    /// The command line, with every setting's default at the end of its help line (the
    /// defaults apply only after the config file, so clap cannot hold them itself).
    pub fn command_with_defaults() -> clap::Command {
        let mut command = <Settings as clap::CommandFactory>::command();
        for (id, default) in help_defaults() {
            command = command.mut_arg(id, |arg| {
                let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                let arg = arg.help(format!("{help} [default: {default}]"));
                match arg.get_long_help().map(ToString::to_string) {
                    Some(long) => arg.long_help(format!("{long}\n\n[default: {default}]")),
                    None => arg,
                }
            });
        }
        command
    }

    /// Parses the process's arguments (and environment), exiting with clap's message on
    /// an error, `--help` or `--version`.
    pub fn parse_with_defaults() -> Settings {
        let matches = Self::command_with_defaults().get_matches();
        <Settings as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }
}

/// Each flag's default as `--help` states it, taken from the resolved configuration of
/// an empty command line where there is one value.
fn help_defaults() -> Vec<(&'static str, String)> {
    let Ok(d) = Config::resolve(Settings::default()) else { return Vec::new() };
    let secs = |ms: u64| (ms / 1000).to_string();
    vec![
        ("config", "none".into()),
        ("http_addr", d.http_addr.to_string()),
        ("quic_addr", d.quic_addr.to_string()),
        ("quic_retry_after_handshakes", d.quic_retry_after_handshakes.to_string()),
        ("quic_congestion", "bbr".into()),
        ("tls_cert", "a development certificate generated into DATA_DIR/tls/".into()),
        ("tls_key", "the development certificate's key".into()),
        ("http_tls", "off".into()),
        ("data_dir", d.data_dir.display().to_string()),
        ("shards", "the number of CPU cores".into()),
        ("jwt_secret", "generated once into DATA_DIR/jwt-secret".into()),
        ("jwt_secret_file", "none".into()),
        ("durability", "fsync".into()),
        ("max_text_chars", d.max_text_chars.to_string()),
        ("access_token_ttl_secs", d.access_token_ttl_secs.to_string()),
        ("max_frame_bytes", d.max_frame_bytes.to_string()),
        ("outbound_queue_bytes", d.outbound_queue_bytes.to_string()),
        ("ops_per_sec", d.session.ops_per_sec.to_string()),
        ("ops_burst", d.session.ops_burst.to_string()),
        ("max_in_flight", d.session.max_in_flight.to_string()),
        ("auth_timeout_secs", secs(d.session.auth_deadline_ms)),
        ("ping_interval_secs", secs(d.ping_interval_ms)),
        ("idle_timeout_secs", secs(d.idle_timeout_ms)),
        ("edit_window_secs", secs(d.edit_window_ms)),
        ("typing_timeout_secs", secs(d.typing_timeout_ms)),
        ("max_room_members", d.max_room_members.to_string()),
        ("files_url", "file://DATA_DIR/files".into()),
        ("max_file_bytes", d.max_file_bytes.to_string()),
        ("disable_search", "off: messages are indexed".into()),
        ("presence_interval_ms", d.presence_interval_ms.to_string()),
        ("write_pacing_ms", d.write_pacing_ms.to_string()),
        ("disk_reserve_mb", (d.disk_reserve_bytes >> 20).to_string()),
        ("handshake_timeout_secs", d.handshake_timeout.as_secs().to_string()),
        ("max_connections_per_ip", d.max_connections_per_ip.to_string()),
        ("max_connections_per_user", d.max_connections_per_user.to_string()),
        ("verify_on_start", "off".into()),
        ("cluster", "none: the server runs alone".into()),
        ("node_id", "none".into()),
        ("cluster_log_replicas", "1".into()),
        ("cluster_log_keep", DEFAULT_CLUSTER_LOG_KEEP.to_string()),
        ("write_timeout_secs", secs(d.write_timeout_ms)),
        ("sign_ins_per_minute_per_ip", d.sign_ins_per_minute_per_ip.to_string()),
        ("max_rooms_per_user", d.max_rooms_per_user.to_string()),
        ("idle_room_secs", secs(d.idle_room_ms)),
        ("log_format", "text".into()),
        ("log_level", "RUST_LOG if set, else info".into()),
        ("cors_origins", "none: only the server's own pages".into()),
        ("web_page", "auto".into()),
        ("admin_console", "off".into()),
        (
            "permessage_deflate",
            if DEFAULT_PERMESSAGE_DEFLATE { "on" } else { "off: no WebSocket extension is negotiated" }
                .into(),
        ),
        ("permessage_deflate_min_bytes", DEFAULT_PERMESSAGE_DEFLATE_MIN_BYTES.to_string()),
        ("retention_max_age_secs", "none: messages are kept".into()),
        ("retention_max_count", "none: messages are kept".into()),
        ("retention_interval_secs", DEFAULT_RETENTION_INTERVAL_SECS.to_string()),
        ("retention_grace_secs", DEFAULT_RETENTION_GRACE_SECS.to_string()),
        ("webhook_allow", "none: room owners' webhooks reach public addresses only".into()),
        ("webhook_timeout_secs", DEFAULT_WEBHOOK_TIMEOUT_SECS.to_string()),
        ("webhook_queue", DEFAULT_WEBHOOK_QUEUE.to_string()),
        ("vapid_key_file", "generated once into DATA_DIR/vapid-key (alone; a cluster node needs one)".into()),
        ("push_subject", d.push.subject.clone()),
        ("push_previews", "off: pushes carry no message text".into()),
        ("push_allow_networks", "none: push endpoints are public https:// URLs".into()),
    ]
}

/// The web page flag's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum WebPageSetting {
    /// On with the development secret, off with a configured one.
    Auto,
    /// Always served.
    On,
    /// Never served.
    Off,
}

/// The QUIC congestion controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum QuicCongestion {
    /// BBR (quinn's port of quiche's BBRv1).
    #[default]
    Bbr,
    /// CUBIC (RFC 9438).
    Cubic,
}

/// The durability flag's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum DurabilitySetting {
    /// Sync the journal before acknowledging.
    Fsync,
    /// Acknowledge once written to the OS; sync within 1 s.
    Buffered,
}

/// The same settings, from a TOML file.
/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// WebSocket + HTTP listener.
    pub http_addr: SocketAddr,
    /// QUIC listener (UDP).
    pub quic_addr: SocketAddr,
    /// TLS certificate chain (PEM) for QUIC and HTTP TLS; `None`: the generated
    /// development certificate.
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM), given with `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Whether the HTTP/WebSocket listener speaks TLS (`https://`, `wss://`).
    pub http_tls: bool,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Shard count.
    pub shards: usize,
    /// Explicit JWT secret, if configured.
    pub jwt_secret: Option<String>,
    /// Durability policy.
    pub durability: Durability,
    /// Longest message text, in characters.
    pub max_text_chars: usize,
    /// Access-token lifetime, in seconds.
    pub access_token_ttl_secs: u64,
    /// Largest client WebSocket message.
    pub max_frame_bytes: usize,
    /// Outbound queue limit per socket.
    pub outbound_queue_bytes: usize,
    /// Per-connection limits.
    pub session: SessionLimits,
    /// Quiet time before the server pings a socket, in ms.
    pub ping_interval_ms: u64,
    /// Silent time after which a socket is closed, in ms.
    pub idle_timeout_ms: u64,
    /// How long a typing indicator lasts without renewal, in ms.
    pub typing_timeout_ms: u64,
    /// The most members any room may admit.
    pub max_room_members: u32,
    /// The object store URL for files (`None`: `DATA_DIR/files`).
    pub files_url: Option<String>,
    /// Largest file upload.
    pub max_file_bytes: u64,
    /// Whether messages are indexed for search.
    pub search: bool,
    /// The least time between two presence announcements of one user.
    pub presence_interval_ms: u64,
    /// The pacing tick of adaptive write coalescing, in ms (0: off).
    pub write_pacing_ms: u64,
    /// How long a message stays editable by its sender, in ms.
    pub edit_window_ms: u64,
    /// Free disk space below which writes are refused, in bytes (0: no check).
    pub disk_reserve_bytes: u64,
    /// Whether every stored record is read and checked at start-up.
    pub verify_on_start: bool,
    /// Cluster mode: the NATS server, this node's id and the log's replica count.
    pub cluster: Option<ClusterConfig>,
    /// Time to send a request head or JSON body.
    pub handshake_timeout: std::time::Duration,
    /// Open connections per client address (0: unlimited).
    pub max_connections_per_ip: u32,
    /// Authenticated connections per user (0: unlimited).
    pub max_connections_per_user: u32,
    /// How long a socket's queued bytes may wait with no write completing, in ms.
    pub write_timeout_ms: u64,
    /// Sign-in attempts per minute per client address (0: unlimited).
    pub sign_ins_per_minute_per_ip: u32,
    /// The most rooms one user may own.
    pub max_rooms_per_user: usize,
    /// How long an unused room stays in memory, in ms.
    pub idle_room_ms: u64,
    /// Log line format.
    pub log_format: LogFormat,
    /// Log filter directives (`None`: `RUST_LOG`, else `info`).
    pub log_level: Option<String>,
    /// Which other origins' pages may use the server (CORS, WebSocket `Origin`).
    pub cors_origins: AllowedOrigins,
    /// Whether the built-in chat page is served at `/`.
    pub web_page: bool,
    /// Whether the admin console is served at `/admin/`.
    pub admin_console: bool,
    /// permessage-deflate for WebSockets: `Some(smallest message compressed)` when on.
    pub permessage_deflate: Option<u16>,
    /// QUIC handshakes in progress past which new clients are asked to prove their address (Retry).
    pub quic_retry_after_handshakes: usize,
    /// The QUIC congestion controller.
    pub quic_congestion: QuicCongestion,
    /// Retention: the server's default and the sweeper's pace.
    pub retention: RetentionConfig,
    /// Webhook delivery's settings.
    pub webhooks: WebhookConfig,
    /// Web Push.
    pub push: PushConfig,
    /// Test only: serve the WebSocket echo route.
    pub test_echo: bool,
    /// Test only: abort right after storing an account deletion.
    pub test_crash_after_account_deletion: bool,
}

/// Webhook delivery's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Networks room owners' webhooks may reach although they are not public.
    pub allow: Vec<palaver_core::webhooks::Network>,
    /// The longest one delivery may take.
    pub timeout: std::time::Duration,
    /// Deliveries one endpoint may have waiting on this node.
    pub queue: usize,
}

/// Web Push's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushConfig {
    /// The VAPID key's file, when the operator gave one.
    pub vapid_key_file: Option<PathBuf>,
    /// The contact named in VAPID tokens.
    pub subject: String,
    /// Whether pushes carry a preview of the text.
    pub previews: bool,
    /// Networks whose endpoints are accepted although internal (and may be `http://`).
    pub allow_networks: Vec<palaver_core::webhooks::Network>,
}

/// Retention's server-wide settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionConfig {
    /// The retention of rooms that set none (`None`: keep everything).
    pub default: Option<palaver_protocol::RoomRetention>,
    /// Time between two sweeps, in ms.
    pub interval_ms: u64,
    /// No message younger than this is removed, in ms.
    pub grace_ms: u64,
}

/// The configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The TOML file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML file is malformed or has unknown keys.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: Box<toml::de::Error>,
    },
    /// A value is out of range.
    #[error("invalid setting: {0}")]
    Invalid(String),
}

impl Config {
    /// Resolves flags and env (already merged by clap) over the file over defaults.
    pub fn resolve(cli: Settings) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => Settings::default(),
        };
        let defaults = SessionLimits::default();
        let room_defaults = palaver_core::RoomLimits::default();
        let shards = cli
            .shards
            .or(file.shards)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get));
        let test_echo = cli.test_echo;
        let jwt_secret = match (cli.jwt_secret, cli.jwt_secret_file) {
            (Some(secret), _) => Some(secret),
            (None, Some(path)) => Some(read_secret(&path)?),
            (None, None) => match (file.jwt_secret, file.jwt_secret_file) {
                (Some(secret), _) => Some(secret),
                (None, Some(path)) => Some(read_secret(&path)?),
                (None, None) => None,
            },
        };
        let development_secret = jwt_secret.is_none();
        let cors_origins = AllowedOrigins::parse(
            &cli.cors_origins.or(file.cors_origins).unwrap_or_default(),
            development_secret,
        )
        .map_err(ConfigError::Invalid)?;
        let web_page = match cli.web_page.or(file.web_page).unwrap_or(WebPageSetting::Auto) {
            WebPageSetting::Auto => development_secret,
            WebPageSetting::On => true,
            WebPageSetting::Off => false,
        };
        let default_retention = palaver_protocol::RoomRetention {
            max_age_secs: cli.retention_max_age_secs.or(file.retention_max_age_secs),
            max_count: cli.retention_max_count.or(file.retention_max_count),
        };
        palaver_core::retention::check(&default_retention)
            .map_err(|e| ConfigError::Invalid(format!("default retention: {e}")))?;
        let retention = RetentionConfig {
            default: (!default_retention.is_unlimited()).then_some(default_retention),
            interval_ms: cli
                .retention_interval_secs
                .or(file.retention_interval_secs)
                .unwrap_or(DEFAULT_RETENTION_INTERVAL_SECS)
                .max(1)
                .saturating_mul(1000),
            grace_ms: cli
                .retention_grace_secs
                .or(file.retention_grace_secs)
                .unwrap_or(DEFAULT_RETENTION_GRACE_SECS)
                .saturating_mul(1000),
        };
        let webhook_allow = cli.webhook_allow.or(file.webhook_allow).unwrap_or_default();
        let webhooks = WebhookConfig {
            allow: webhook_allow
                .iter()
                .map(|text| {
                    palaver_core::webhooks::Network::parse(text.trim()).ok_or_else(|| {
                        ConfigError::Invalid(format!(
                            "webhook_allow: {text:?} is not ADDRESS or ADDRESS/PREFIX"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
            timeout: std::time::Duration::from_secs(
                cli.webhook_timeout_secs
                    .or(file.webhook_timeout_secs)
                    .unwrap_or(DEFAULT_WEBHOOK_TIMEOUT_SECS)
                    .max(1),
            ),
            queue: cli.webhook_queue.or(file.webhook_queue).unwrap_or(DEFAULT_WEBHOOK_QUEUE).max(1),
        };
        let mut allow_networks = Vec::new();
        for text in cli.push_allow_networks.or(file.push_allow_networks).unwrap_or_default() {
            let network = palaver_core::webhooks::Network::parse(text.trim()).ok_or_else(|| {
                ConfigError::Invalid(format!("push_allow_networks: {text:?} is not an address or a network"))
            })?;
            allow_networks.push(network);
        }
        let push = PushConfig {
            vapid_key_file: cli.vapid_key_file.or(file.vapid_key_file),
            subject: cli
                .push_subject
                .or(file.push_subject)
                .unwrap_or_else(|| "mailto:postmaster@localhost".into()),
            previews: cli.push_previews.or(file.push_previews).unwrap_or(false),
            allow_networks,
        };
        let config = Config {
            webhooks,
            push,
            retention,
            test_echo,
            test_crash_after_account_deletion: cli.test_crash_after_account_deletion,
            quic_retry_after_handshakes: cli
                .quic_retry_after_handshakes
                .or(file.quic_retry_after_handshakes)
                .unwrap_or(64),
            quic_congestion: cli.quic_congestion.or(file.quic_congestion).unwrap_or_default(),
            cors_origins,
            web_page,
            admin_console: cli.admin_console.or(file.admin_console).unwrap_or(false),
            permessage_deflate: cli
                .permessage_deflate
                .or(file.permessage_deflate)
                .unwrap_or(DEFAULT_PERMESSAGE_DEFLATE)
                .then(|| {
                    cli.permessage_deflate_min_bytes
                        .or(file.permessage_deflate_min_bytes)
                        .unwrap_or(DEFAULT_PERMESSAGE_DEFLATE_MIN_BYTES)
                }),
            idle_room_ms: cli
                .idle_room_secs
                .or(file.idle_room_secs)
                .unwrap_or(DEFAULT_IDLE_ROOM_SECS)
                .saturating_mul(1000),
            max_rooms_per_user: cli
                .max_rooms_per_user
                .or(file.max_rooms_per_user)
                .unwrap_or(DEFAULT_MAX_ROOMS_PER_USER),
            sign_ins_per_minute_per_ip: cli
                .sign_ins_per_minute_per_ip
                .or(file.sign_ins_per_minute_per_ip)
                .unwrap_or(DEFAULT_SIGN_INS_PER_MINUTE_PER_IP),
            write_timeout_ms: cli
                .write_timeout_secs
                .or(file.write_timeout_secs)
                .unwrap_or(DEFAULT_WRITE_TIMEOUT_SECS)
                .saturating_mul(1000),
            log_format: cli.log_format.or(file.log_format).unwrap_or_default(),
            log_level: cli.log_level.or(file.log_level),
            edit_window_ms: cli
                .edit_window_secs
                .or(file.edit_window_secs)
                .map_or(room_defaults.edit_window_ms, |s| s.saturating_mul(1000)),
            max_room_members: cli
                .max_room_members
                .or(file.max_room_members)
                .unwrap_or(room_defaults.max_members_cap),
            files_url: cli.files_url.or(file.files_url),
            search: !(cli.disable_search || file.disable_search),
            max_file_bytes: cli.max_file_bytes.or(file.max_file_bytes).unwrap_or(10 << 20),
            presence_interval_ms: cli.presence_interval_ms.or(file.presence_interval_ms).unwrap_or(1_000),
            write_pacing_ms: cli.write_pacing_ms.or(file.write_pacing_ms).unwrap_or(DEFAULT_WRITE_PACING_MS),
            disk_reserve_bytes: cli
                .disk_reserve_mb
                .or(file.disk_reserve_mb)
                .unwrap_or(64)
                .saturating_mul(1 << 20),
            verify_on_start: cli.verify_on_start || file.verify_on_start,
            cluster: match (cli.cluster.or(file.cluster), cli.node_id.or(file.node_id)) {
                (None, None) => None,
                (None, Some(_)) => return Err(ConfigError::Invalid("node_id needs cluster".into())),
                (Some(_), None) => {
                    return Err(ConfigError::Invalid("cluster needs node_id (stable per node)".into()));
                }
                (Some(nats_url), Some(node_id)) => Some(ClusterConfig {
                    nats_url,
                    node_id,
                    log_replicas: cli.cluster_log_replicas.or(file.cluster_log_replicas).unwrap_or(1),
                    log_keep: cli
                        .cluster_log_keep
                        .or(file.cluster_log_keep)
                        .unwrap_or(DEFAULT_CLUSTER_LOG_KEEP),
                }),
            },
            handshake_timeout: cli
                .handshake_timeout_secs
                .or(file.handshake_timeout_secs)
                .map_or(HEAD_TIMEOUT, |s| std::time::Duration::from_secs(s.clamp(1, 300))),
            max_connections_per_ip: cli
                .max_connections_per_ip
                .or(file.max_connections_per_ip)
                .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_IP),
            max_connections_per_user: cli
                .max_connections_per_user
                .or(file.max_connections_per_user)
                .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_USER),
            typing_timeout_ms: cli
                .typing_timeout_secs
                .or(file.typing_timeout_secs)
                .map_or(room_defaults.typing_ttl_ms, |s| s.saturating_mul(1000)),
            ping_interval_ms: cli
                .ping_interval_secs
                .or(file.ping_interval_secs)
                .unwrap_or(30)
                .saturating_mul(1000),
            idle_timeout_ms: cli
                .idle_timeout_secs
                .or(file.idle_timeout_secs)
                .unwrap_or(75)
                .saturating_mul(1000),
            http_addr: cli.http_addr.or(file.http_addr).unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080))),
            quic_addr: cli.quic_addr.or(file.quic_addr).unwrap_or(SocketAddr::from(([127, 0, 0, 1], 4433))),
            tls_cert: cli.tls_cert.or(file.tls_cert),
            tls_key: cli.tls_key.or(file.tls_key),
            http_tls: cli.http_tls || file.http_tls,
            data_dir: cli.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("./data")),
            shards,
            jwt_secret,
            durability: match cli.durability.or(file.durability).unwrap_or(DurabilitySetting::Fsync) {
                DurabilitySetting::Fsync => Durability::Fsync,
                DurabilitySetting::Buffered => Durability::Buffered,
            },
            max_text_chars: cli
                .max_text_chars
                .or(file.max_text_chars)
                .unwrap_or(palaver_protocol::limits::DEFAULT_MAX_TEXT_CHARS),
            access_token_ttl_secs: cli.access_token_ttl_secs.or(file.access_token_ttl_secs).unwrap_or(900),
            max_frame_bytes: cli
                .max_frame_bytes
                .or(file.max_frame_bytes)
                .unwrap_or(palaver_protocol::limits::MAX_FRAME_BYTES),
            outbound_queue_bytes: cli.outbound_queue_bytes.or(file.outbound_queue_bytes).unwrap_or(4 << 20),
            session: SessionLimits {
                ops_per_sec: cli.ops_per_sec.or(file.ops_per_sec).unwrap_or(defaults.ops_per_sec),
                ops_burst: cli.ops_burst.or(file.ops_burst).unwrap_or(defaults.ops_burst),
                max_in_flight: cli.max_in_flight.or(file.max_in_flight).unwrap_or(defaults.max_in_flight),
                auth_deadline_ms: cli
                    .auth_timeout_secs
                    .or(file.auth_timeout_secs)
                    .map_or(defaults.auth_deadline_ms, |s| s.saturating_mul(1000)),
                ..defaults
            },
        };
        config.check()?;
        Ok(config)
    }

    /// The limits every room state machine is built with.
    pub fn room_limits(&self) -> palaver_core::RoomLimits {
        palaver_core::RoomLimits {
            max_text_chars: self.max_text_chars,
            typing_ttl_ms: self.typing_timeout_ms,
            edit_window_ms: self.edit_window_ms,
            max_members_cap: self.max_room_members,
        }
    }

    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if !(1..=1024).contains(&self.shards) {
            return invalid("shards must be 1 to 1024");
        }
        if let Some(cluster) = &self.cluster {
            let id = &cluster.node_id;
            if id.is_empty()
                || id.len() > 32
                || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return invalid("node_id must be 1 to 32 letters, digits, '-' or '_'");
            }
            if !(1..=5).contains(&cluster.log_replicas) {
                return invalid("cluster_log_replicas must be 1 to 5");
            }
            if self.jwt_secret.is_none() {
                return invalid("a cluster needs jwt_secret: the same secret on every node");
            }
        }
        if !(self.push.subject.starts_with("mailto:") || self.push.subject.starts_with("https://"))
            || self.push.subject.len() > 256
        {
            return invalid("push_subject must be a mailto: or https:// URL of at most 256 bytes");
        }
        if self.max_text_chars == 0 {
            return invalid("max_text_chars must be at least 1");
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return invalid("tls_cert and tls_key go together");
        }
        if !(1_024..=16 << 20).contains(&self.max_frame_bytes) {
            return invalid("max_frame_bytes must be 1 KiB to 16 MiB");
        }
        // Room for the largest reply twice over: a reply never closes its own socket.
        if self.outbound_queue_bytes < 2 * palaver_protocol::paging::MAX_REPLY_BYTES {
            return invalid("outbound_queue_bytes must be at least 256 KiB (twice the largest reply)");
        }
        if self.access_token_ttl_secs == 0 {
            return invalid("access_token_ttl_secs must be at least 1");
        }
        if self.ping_interval_ms == 0 || self.idle_timeout_ms <= self.ping_interval_ms {
            return invalid("ping_interval_secs must be at least 1 and below idle_timeout_secs");
        }
        if !(1..=(5u64 << 30)).contains(&self.max_file_bytes) {
            return invalid("max_file_bytes must be 1 to 5 GiB");
        }
        if !(2..=1_000_000).contains(&self.max_room_members) {
            return invalid("max_room_members must be 2 to 1000000");
        }
        if !(100..=60_000).contains(&self.presence_interval_ms) {
            return invalid("presence_interval_ms must be 100 to 60000");
        }
        if self.write_pacing_ms > 50 {
            return invalid("write_pacing_ms must be 0 (off) to 50");
        }
        if self.idle_room_ms < 1_000 {
            return invalid("idle_room_secs must be at least 1");
        }
        if self.write_timeout_ms < 1_000 {
            return invalid("write_timeout_secs must be at least 1");
        }
        if self.typing_timeout_ms == 0 {
            return invalid("typing_timeout_secs must be at least 1");
        }
        if self.session.auth_deadline_ms == 0 {
            return invalid("auth_timeout_secs must be at least 1");
        }
        if self.session.max_in_flight == 0 || self.session.ops_burst == 0 {
            return invalid("max_in_flight and ops_burst must be at least 1");
        }
        Ok(())
    }
}

/// A secret from a file: its text without trailing whitespace (a final newline), never
/// empty.
fn read_secret(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    let secret = text.trim_end();
    if secret.is_empty() {
        return Err(ConfigError::Invalid(format!("the JWT secret file {} is empty", path.display())));
    }
    Ok(secret.to_owned())
}

fn read_file(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    toml::from_str(&text)
        .map_err(|source| ConfigError::Parse { path: path.to_owned(), source: Box::new(source) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_states_every_flags_default() {
        let mut command = Settings::command_with_defaults();
        command.build();
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            if arg.is_hide_set() || matches!(id, "help" | "version") {
                continue;
            }
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            assert!(help.contains("[default: "), "--{id} does not state its default: {help:?}");
        }
    }

    #[test]
    fn the_web_page_and_any_origin_come_with_the_development_secret_only() {
        let config = Config::resolve(Settings::default()).unwrap();
        assert!(config.web_page, "on with the development secret");
        let secret = || Some("s".repeat(32));
        let config = Config::resolve(Settings { jwt_secret: secret(), ..Settings::default() }).unwrap();
        assert!(!config.web_page, "off with a configured secret");
        let any = || Some(vec!["*".to_owned()]);
        assert!(Config::resolve(Settings { cors_origins: any(), ..Settings::default() }).is_ok());
        let refused =
            Config::resolve(Settings { cors_origins: any(), jwt_secret: secret(), ..Settings::default() });
        assert!(matches!(refused, Err(ConfigError::Invalid(_))));
        let off = Settings { web_page: Some(WebPageSetting::Off), ..Settings::default() };
        assert!(!Config::resolve(off).unwrap().web_page);
    }

    #[test]
    fn flag_beats_file_beats_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("palaver.toml");
        std::fs::write(&path, "shards = 3\nmax_text_chars = 10\ndurability = \"buffered\"\n").unwrap();
        let cli = Settings { config: Some(path.clone()), shards: Some(2), ..Settings::default() };
        let config = Config::resolve(cli).unwrap();
        assert_eq!(config.shards, 2);
        assert_eq!(config.max_text_chars, 10);
        assert_eq!(config.durability, Durability::Buffered);
        assert_eq!(config.http_addr.port(), 8080);
        assert!(!config.http_tls, "plain HTTP by default");

        std::fs::write(&path, "http_tls = true\n").unwrap();
        let cli = Settings { config: Some(path.clone()), ..Settings::default() };
        assert!(Config::resolve(cli).unwrap().http_tls);

        std::fs::write(&path, "cors_origins = [\"https://app.example.com\"]\nweb_page = \"on\"\n").unwrap();
        let cli =
            Settings { config: Some(path.clone()), jwt_secret: Some("s".repeat(32)), ..Settings::default() };
        let config = Config::resolve(cli).unwrap();
        assert!(config.cors_origins.allows("https://app.example.com"));
        assert!(config.web_page, "asked for");

        // Unknown keys, and the settings that belong to the command line only (the file's
        // own path, the test route), are refused.
        for key in ["shardz = 3", "test_echo = true", "config = \"other.toml\""] {
            std::fs::write(&path, format!("{key}\n")).unwrap();
            let cli = Settings { config: Some(path.clone()), ..Settings::default() };
            assert!(matches!(Config::resolve(cli), Err(ConfigError::Parse { .. })), "{key}");
        }
    }

    #[test]
    fn defaults_are_the_cores() {
        let config = Config::resolve(Settings::default()).unwrap();
        assert_eq!(config.room_limits(), palaver_core::RoomLimits::default());
        assert_eq!(config.session, SessionLimits::default());
    }

    #[test]
    fn permessage_deflate_is_a_switch_with_a_threshold() {
        let parse = |args: &[&str]| {
            let cli = Settings::try_parse_from([&["palaver"], args].concat()).unwrap();
            Config::resolve(cli).unwrap().permessage_deflate
        };
        assert_eq!(parse(&[]), DEFAULT_PERMESSAGE_DEFLATE.then_some(DEFAULT_PERMESSAGE_DEFLATE_MIN_BYTES));
        assert_eq!(parse(&["--permessage-deflate"]), Some(DEFAULT_PERMESSAGE_DEFLATE_MIN_BYTES));
        assert_eq!(parse(&["--permessage-deflate", "--permessage-deflate-min-bytes", "40"]), Some(40));
        assert_eq!(parse(&["--permessage-deflate=false", "--permessage-deflate-min-bytes", "40"]), None);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("palaver.toml");
        std::fs::write(&path, "permessage_deflate = true\npermessage_deflate_min_bytes = 300\n").unwrap();
        let cli = Settings { config: Some(path), ..Settings::default() };
        assert_eq!(Config::resolve(cli).unwrap().permessage_deflate, Some(300));
    }
}
