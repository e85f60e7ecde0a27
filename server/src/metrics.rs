//! What `/metrics` exports: counters, gauges and latency histograms, in the Prometheus
//! text format or, when the scraper asks for it (`Accept: application/openmetrics-text`),
//! in OpenMetrics 1.0.
//!
//! Recording never allocates and never locks: counters are relaxed atomics that shards
//! bump without coordination, and a histogram is a fixed array of atomic buckets.
//! Process figures (CPU, memory, descriptors, each shard thread's CPU) are read from the
//! process's own `/proc/self` when scraped.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Latency buckets, in seconds: 100 µs to 10 s.
const LATENCY_BOUNDS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Group-size buckets, in submissions per group commit.
const GROUP_BOUNDS: &[f64] =
    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0];

/// A histogram with fixed buckets: `observe` is a short search and three atomic adds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations at or below each bound (not cumulative; summed when rendered).
    buckets: Box<[AtomicU64]>,
    /// Observations above the last bound.
    overflow: AtomicU64,
    /// The sum of observations, in `1 / scale` units (nanoseconds for latencies).
    sum: AtomicU64,
    scale: f64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64], scale: f64) -> Self {
        Self {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            overflow: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            scale,
            count: AtomicU64::new(0),
        }
    }

    /// A latency histogram (seconds, 100 µs to 10 s).
    pub fn latency() -> Self {
        Self::new(LATENCY_BOUNDS, 1e9)
    }

    fn sizes() -> Self {
        Self::new(GROUP_BOUNDS, 1.0)
    }

    /// Records one duration.
    pub fn observe(&self, elapsed: Duration) {
        self.observe_value(elapsed.as_secs_f64());
    }

    /// Records one value in the histogram's unit.
    pub fn observe_value(&self, value: f64) {
        let index = self.bounds.partition_point(|&bound| bound < value);
        match self.buckets.get(index) {
            Some(bucket) => bucket.fetch_add(1, Ordering::Relaxed),
            None => self.overflow.fetch_add(1, Ordering::Relaxed),
        };
        // Saturating float-to-int conversion: a negative or absurd value cannot wrap.
        self.sum.fetch_add((value * self.scale) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// How many observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// Process-wide counters and histograms.
#[derive(Debug)]
pub struct Metrics {
    /// Open client connections (WebSocket and QUIC).
    pub connections: AtomicI64,
    /// Client connections accepted since start (WebSocket and QUIC).
    pub connections_total: AtomicU64,
    /// Connections refused by a per-address or per-user connection limit.
    pub connections_refused: AtomicU64,
    /// Sockets closed at accept because the sockets' share of descriptors was used up.
    pub connections_over_budget: AtomicU64,
    /// Messages stored.
    pub messages_stored: AtomicU64,
    /// Rooms that left memory after going idle.
    pub rooms_unloaded: AtomicU64,
    /// Messages retention removed.
    pub retention_removed: AtomicU64,
    /// Files retention removed with their messages.
    pub retention_files_removed: AtomicU64,
    /// Retention sweeps completed.
    pub retention_sweeps: AtomicU64,
    /// Retention trims that failed (storage refused, the owner did not answer).
    pub retention_failures: AtomicU64,
    /// Frames queued to sockets by fan-out.
    pub deliveries: AtomicU64,
    /// Group-commit batches written.
    pub commit_batches: AtomicU64,
    /// Submissions written by group commit.
    pub commit_messages: AtomicU64,
    /// Frames received from clients (WebSocket messages and QUIC frames).
    pub frames_in: AtomicU64,
    /// HTTP requests served.
    pub http_requests: AtomicU64,
    /// Sockets closed for falling behind.
    pub slow_consumers: AtomicU64,
    /// Socket write calls (a batch of queued frames; a partial write counts again).
    pub socket_writes: AtomicU64,
    /// Of those, the ones held for the shard's pacing tick (adaptive coalescing).
    pub paced_writes: AtomicU64,
    /// TLS handshakes on the HTTP listener that failed or timed out (`--http-tls`).
    pub tls_handshake_failures: AtomicU64,
    /// Per shard: QUIC connections it admitted (handshake done, application started).
    pub quic_connections_accepted: Box<[AtomicU64]>,
    /// QUIC datagrams a shard received for a connection of another shard and passed on.
    pub quic_datagrams_forwarded: AtomicU64,
    /// QUIC connection attempts answered with a Retry (prove your address first).
    pub quic_retries: AtomicU64,
    /// QUIC streams a client opened beyond what its application takes, stopped at once.
    pub quic_streams_refused: AtomicU64,
    /// QUIC unreliable datagrams from clients that no application took (for the Palaver
    /// session: not a `typing` op, undecodable, or before `auth`).
    pub quic_datagrams_dropped: AtomicU64,
    /// Webhook deliveries queued (with the writes of their events).
    pub webhook_queued: AtomicU64,
    /// Webhook deliveries an endpoint accepted (2xx).
    pub webhook_delivered: AtomicU64,
    /// Webhook delivery attempts that failed (each is retried on the schedule).
    pub webhook_failed_attempts: AtomicU64,
    /// Webhook deliveries given up after the last retry.
    pub webhook_given_up: AtomicU64,
    /// Webhook deliveries dropped: their endpoint's queue was full (or the body too big).
    pub webhook_dropped: AtomicU64,
    /// Push fan-outs expanded (one per stored message that may push).
    pub push_fan_outs: AtomicU64,
    /// Pushes queued by fan-outs (one per subscription of each recipient).
    pub push_queued: AtomicU64,
    /// Pushes a push service accepted.
    pub push_delivered: AtomicU64,
    /// Push attempts (and fan-out expansions) that failed and are retried.
    pub push_failed_attempts: AtomicU64,
    /// Push subscriptions removed because their push service said they are gone.
    pub push_expired: AtomicU64,
    /// Pushes dropped: refused for good, out of retries, or their queue was full.
    pub push_dropped: AtomicU64,
    /// From a message's acceptance by its room's owner to its group commit being durable.
    pub send_durable: Histogram,
    /// One group commit's journal write and sync.
    pub commit_duration: Histogram,
    /// Submissions per group commit.
    pub commit_group_size: Histogram,
    /// Serving one `history` page.
    pub history: Histogram,
    /// Answering one `search`.
    pub search: Histogram,
    /// Per shard: from a message being durable to its frame being queued to the shard's
    /// last subscriber socket.
    pub delivery: Box<[Histogram]>,
    /// Per shard: its thread's id, for its CPU time (0 until the shard starts).
    pub shard_threads: Box<[AtomicI32]>,
    /// The search indexer's backlog (unset with search disabled: the gauges read 0).
    pub search_backlog: std::sync::OnceLock<palaver_search::IndexBacklog>,
    /// When the server started, in seconds since the Unix epoch.
    started: f64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(0)
    }
}

impl Metrics {
    /// Metrics for a server of `shards` shards.
    pub fn new(shards: usize) -> Self {
        Self {
            connections: AtomicI64::new(0),
            connections_total: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            connections_over_budget: AtomicU64::new(0),
            messages_stored: AtomicU64::new(0),
            rooms_unloaded: AtomicU64::new(0),
            retention_removed: AtomicU64::new(0),
            retention_files_removed: AtomicU64::new(0),
            retention_sweeps: AtomicU64::new(0),
            retention_failures: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            commit_batches: AtomicU64::new(0),
            commit_messages: AtomicU64::new(0),
            frames_in: AtomicU64::new(0),
            http_requests: AtomicU64::new(0),
            slow_consumers: AtomicU64::new(0),
            socket_writes: AtomicU64::new(0),
            paced_writes: AtomicU64::new(0),
            tls_handshake_failures: AtomicU64::new(0),
            quic_connections_accepted: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            quic_datagrams_forwarded: AtomicU64::new(0),
            quic_retries: AtomicU64::new(0),
            quic_streams_refused: AtomicU64::new(0),
            quic_datagrams_dropped: AtomicU64::new(0),
            webhook_queued: AtomicU64::new(0),
            webhook_delivered: AtomicU64::new(0),
            webhook_failed_attempts: AtomicU64::new(0),
            webhook_given_up: AtomicU64::new(0),
            webhook_dropped: AtomicU64::new(0),
            push_fan_outs: AtomicU64::new(0),
            push_queued: AtomicU64::new(0),
            push_delivered: AtomicU64::new(0),
            push_failed_attempts: AtomicU64::new(0),
            push_expired: AtomicU64::new(0),
            push_dropped: AtomicU64::new(0),
            send_durable: Histogram::latency(),
            commit_duration: Histogram::latency(),
            commit_group_size: Histogram::sizes(),
            history: Histogram::latency(),
            search: Histogram::latency(),
            delivery: (0..shards).map(|_| Histogram::latency()).collect(),
            shard_threads: (0..shards).map(|_| AtomicI32::new(0)).collect(),
            search_backlog: std::sync::OnceLock::new(),
            started: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        }
    }

    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Records shard `shard`'s delivery latency (no-op for an unknown shard).
    pub fn observe_delivery(&self, shard: usize, elapsed: Duration) {
        if let Some(histogram) = self.delivery.get(shard) {
            histogram.observe(elapsed);
        }
    }

    /// Notes the calling thread as shard `shard`'s thread.
    pub fn register_shard_thread(&self, shard: usize) {
        if let Some(slot) = self.shard_threads.get(shard) {
            slot.store(rustix::thread::gettid().as_raw_nonzero().get(), Ordering::Relaxed);
        }
    }

    /// Writes every family of the process (the cluster's are added by its owner).
    pub fn render(&self, out: &mut Exposition) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        out.info(
            "palaver_build",
            "The running build.",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("s3", if cfg!(feature = "s3") { "true" } else { "false" }),
            ],
        );
        out.gauge(
            "palaver_connections",
            "Open client connections, WebSocket and QUIC.",
            self.connections.load(Ordering::Relaxed) as f64,
        );
        out.counter(
            "palaver_connections_accepted",
            "Client connections accepted, WebSocket and QUIC.",
            get(&self.connections_total),
        );
        out.counter(
            "palaver_connections_refused",
            "Connections refused by a per-address or per-user limit.",
            get(&self.connections_refused),
        );
        let accepted: Vec<(String, f64)> = self
            .quic_connections_accepted
            .iter()
            .enumerate()
            .map(|(shard, n)| (shard.to_string(), n.load(Ordering::Relaxed) as f64))
            .collect();
        out.labelled_counter_f64(
            "palaver_quic_connections_accepted",
            "QUIC connections each shard admitted (its handshake done, its application started).",
            "shard",
            &accepted,
        );
        out.counter(
            "palaver_quic_datagrams_forwarded",
            "QUIC datagrams received by one shard for another shard's connection and passed on.",
            get(&self.quic_datagrams_forwarded),
        );
        out.counter(
            "palaver_quic_retries",
            "QUIC connection attempts answered with a Retry (address validation under load).",
            get(&self.quic_retries),
        );
        out.counter(
            "palaver_quic_streams_refused",
            "QUIC streams a client opened beyond what its connection's application takes.",
            get(&self.quic_streams_refused),
        );
        out.counter(
            "palaver_quic_datagrams_dropped",
            "QUIC unreliable datagrams from clients that no application took (not a typing op, undecodable, or before auth).",
            get(&self.quic_datagrams_dropped),
        );
        out.counter(
            "palaver_connections_over_budget",
            "Sockets closed at accept because the sockets' share of the descriptor limit was used up.",
            get(&self.connections_over_budget),
        );
        out.counter("palaver_messages_stored", "Messages durably stored.", get(&self.messages_stored));
        out.counter(
            "palaver_retention_removed",
            "Messages removed by retention (below a room's history floor).",
            get(&self.retention_removed),
        );
        out.counter(
            "palaver_retention_files_removed",
            "Files removed by retention with their messages.",
            get(&self.retention_files_removed),
        );
        out.counter("palaver_retention_sweeps", "Retention sweeps completed.", get(&self.retention_sweeps));
        out.counter(
            "palaver_retention_failures",
            "Retention trims that failed (storage refused, or the room's owner did not answer); the next sweep retries.",
            get(&self.retention_failures),
        );
        out.counter(
            "palaver_rooms_unloaded",
            "Rooms that left memory after going idle (they load again on their next use).",
            get(&self.rooms_unloaded),
        );
        out.counter("palaver_deliveries", "Event frames queued to sockets.", get(&self.deliveries));
        out.counter(
            "palaver_webhook_queued",
            "Webhook deliveries queued in this node's outbound queue, with their events.",
            get(&self.webhook_queued),
        );
        out.counter(
            "palaver_webhook_delivered",
            "Webhook deliveries an endpoint accepted with a 2xx answer.",
            get(&self.webhook_delivered),
        );
        out.counter(
            "palaver_webhook_failed_attempts",
            "Webhook delivery attempts that failed (refused address, no connection, timeout, non-2xx); each is retried on the schedule.",
            get(&self.webhook_failed_attempts),
        );
        out.counter(
            "palaver_webhook_given_up",
            "Webhook deliveries given up after their last retry.",
            get(&self.webhook_given_up),
        );
        out.counter(
            "palaver_webhook_dropped",
            "Webhook deliveries dropped because their endpoint's queue on this node was full.",
            get(&self.webhook_dropped),
        );
        out.counter(
            "palaver_push_fan_outs",
            "Stored messages whose push recipients were chosen (off the shard cores, on the room's deciding node).",
            get(&self.push_fan_outs),
        );
        out.counter(
            "palaver_push_queued",
            "Web Pushes queued: one per subscription of each offline recipient the message notifies.",
            get(&self.push_queued),
        );
        out.counter(
            "palaver_push_delivered",
            "Web Pushes a push service accepted.",
            get(&self.push_delivered),
        );
        out.counter(
            "palaver_push_failed_attempts",
            "Web Push attempts that failed (no connection, timeout, 429, 5xx); each is retried on the schedule.",
            get(&self.push_failed_attempts),
        );
        out.counter(
            "palaver_push_expired",
            "Push subscriptions removed because their push service answered 404 or 410.",
            get(&self.push_expired),
        );
        out.counter(
            "palaver_push_dropped",
            "Web Pushes dropped: refused for good (another 4xx), out of retries, or their endpoint's queue was full.",
            get(&self.push_dropped),
        );
        out.counter("palaver_commit_batches", "Group commits written.", get(&self.commit_batches));
        out.counter(
            "palaver_commit_messages",
            "Submissions written by group commits (a message with its side records is one).",
            get(&self.commit_messages),
        );
        out.counter(
            "palaver_ws_frames_in",
            "Frames received from clients: WebSocket messages and QUIC frames.",
            get(&self.frames_in),
        );
        out.counter("palaver_http_requests", "HTTP requests served.", get(&self.http_requests));
        out.counter(
            "palaver_slow_consumers",
            "Sockets closed for falling behind.",
            get(&self.slow_consumers),
        );
        out.counter(
            "palaver_socket_writes",
            "Socket write calls (deliveries per write is the coalescing; a partial write counts again for the rest).",
            get(&self.socket_writes),
        );
        out.counter(
            "palaver_paced_writes",
            "Socket writes held for the shard's pacing tick to carry more frames (busy shard, hot socket).",
            get(&self.paced_writes),
        );
        out.counter(
            "palaver_tls_handshake_failures",
            "TLS handshakes on the HTTP listener that failed or timed out.",
            get(&self.tls_handshake_failures),
        );
        out.histogram(
            "palaver_send_durable_seconds",
            "From a message's acceptance by its room's owner to its group commit being durable; the sender's acknowledgement follows at once.",
            &[(None, &self.send_durable)],
        );
        out.histogram(
            "palaver_commit_duration_seconds",
            "One group commit: its journal write and fsync.",
            &[(None, &self.commit_duration)],
        );
        out.histogram(
            "palaver_commit_group_size",
            "Submissions sharing one group commit (and its fsync).",
            &[(None, &self.commit_group_size)],
        );
        let shards: Vec<String> = (0..self.delivery.len()).map(|s| s.to_string()).collect();
        let per_shard: Vec<(Option<(&str, &str)>, &Histogram)> =
            self.delivery.iter().zip(&shards).map(|(h, s)| (Some(("shard", s.as_str())), h)).collect();
        out.histogram(
            "palaver_message_delivery_seconds",
            "From a message being durable to its frame being queued to the last subscriber socket of a shard (the socket's writer sends it on its next turn).",
            &per_shard,
        );
        out.histogram("palaver_history_seconds", "Serving one history page.", &[(None, &self.history)]);
        out.histogram("palaver_search_seconds", "Answering one search.", &[(None, &self.search)]);
        let backlog = self.search_backlog.get();
        out.gauge(
            "palaver_search_index_backlog",
            "Search index changes (messages inserted, edited, removed) accepted but not yet searchable.",
            backlog.map_or(0, palaver_search::IndexBacklog::changes) as f64,
        );
        out.gauge(
            "palaver_search_index_lag_seconds",
            "Age of the oldest search index change not yet searchable (0 when caught up).",
            backlog.map_or(0.0, |backlog| backlog.lag().as_secs_f64()),
        );
        self.render_process(out, &shards);
    }

    /// CPU, memory, descriptors and start time of the process, and each shard thread's
    /// CPU, from `/proc` (absent where `/proc` cannot be read).
    fn render_process(&self, out: &mut Exposition, shards: &[String]) {
        if let Some(stat) = proc_stat("/proc/self/stat") {
            out.counter_f64(
                "process_cpu_seconds",
                "CPU time of the process (user and system), in seconds.",
                (stat.utime + stat.stime) as f64 / TICKS_PER_SECOND,
            );
            out.gauge("process_virtual_memory_bytes", "Virtual memory of the process.", stat.vsize as f64);
        }
        if let Some(rss) = proc_status_kib("VmRSS:") {
            out.gauge(
                "process_resident_memory_bytes",
                "Resident memory of the process.",
                rss as f64 * 1024.0,
            );
        }
        out.gauge(
            "process_start_time_seconds",
            "When the server started, in seconds since the Unix epoch.",
            self.started,
        );
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            out.gauge("process_open_fds", "Open file descriptors.", fds.count() as f64);
        }
        if let Some(limit) = rustix::process::getrlimit(rustix::process::Resource::Nofile).current {
            out.gauge("process_max_fds", "The file-descriptor limit.", limit as f64);
        }
        let mut cpu: Vec<(String, f64)> = Vec::new();
        for (shard, tid) in shards.iter().zip(self.shard_threads.iter()) {
            let tid = tid.load(Ordering::Relaxed);
            if tid == 0 {
                continue;
            }
            if let Some(stat) = proc_stat(&format!("/proc/self/task/{tid}/stat")) {
                cpu.push((shard.clone(), (stat.utime + stat.stime) as f64 / TICKS_PER_SECOND));
            }
        }
        if !cpu.is_empty() {
            out.labelled_counter_f64(
                "palaver_shard_cpu_seconds",
                "CPU time of each shard's thread (user and system), in seconds.",
                "shard",
                &cpu,
            );
        }
    }
}

/// The unit of the times in `/proc/.../stat` (USER_HZ, 100 on every architecture Linux
/// runs Palaver on; the kernel converts to it whatever its internal tick rate).
const TICKS_PER_SECOND: f64 = 100.0;

/// The fields of `/proc/.../stat` that are exported.
struct ProcStat {
    utime: u64,
    stime: u64,
    vsize: u64,
}

fn proc_stat(path: &str) -> Option<ProcStat> {
    let text = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); field n is at index n - 3.
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    Some(ProcStat { utime: field(14)?, stime: field(15)?, vsize: field(23)? })
}

/// A `kB` line of `/proc/self/status`, e.g. `VmRSS:`.
fn proc_status_kib(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix(key))?;
    line.split_whitespace().next()?.parse().ok()
}

/// Which text format a scraper asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format 0.0.4 (the default).
    Prometheus,
    /// OpenMetrics 1.0 (`Accept: application/openmetrics-text`).
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for.
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    /// The response's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// A `/metrics` answer being written: each method writes one metric family.
#[derive(Debug)]
pub struct Exposition {
    format: Format,
    text: String,
}

impl Exposition {
    /// An empty exposition in `format`.
    pub fn new(format: Format) -> Self {
        Self { format, text: String::with_capacity(8 * 1024) }
    }

    fn header(&mut self, family: &str, help: &str, kind: &str) {
        let _ = writeln!(self.text, "# HELP {family} {help}\n# TYPE {family} {kind}");
    }

    /// A counter; `family` is its name without `_total`.
    pub fn counter(&mut self, family: &str, help: &str, value: u64) {
        self.counter_f64(family, help, value as f64);
    }

    /// A counter with a fractional value (seconds of CPU).
    pub fn counter_f64(&mut self, family: &str, help: &str, value: f64) {
        self.labelled_counter_f64(family, help, "", &[(String::new(), value)]);
    }

    /// A counter family with one label; no label when `label` is empty.
    pub fn labelled_counter_f64(&mut self, family: &str, help: &str, label: &str, values: &[(String, f64)]) {
        let series: Vec<(String, f64)> = values
            .iter()
            .map(|(v, value)| {
                (if label.is_empty() { String::new() } else { format!("{label}=\"{v}\"") }, *value)
            })
            .collect();
        self.counter_series(family, help, &series);
    }

    /// A counter family of several series, each given its label set already written
    /// (`lane="search",outcome="ran"`; empty for none).
    pub fn counter_series(&mut self, family: &str, help: &str, series: &[(String, f64)]) {
        let family_name = match self.format {
            Format::OpenMetrics => family.to_owned(),
            Format::Prometheus => format!("{family}_total"),
        };
        self.header(&family_name, help, "counter");
        for (labels, value) in series {
            if labels.is_empty() {
                let _ = writeln!(self.text, "{family}_total {value}");
            } else {
                let _ = writeln!(self.text, "{family}_total{{{labels}}} {value}");
            }
        }
    }

    /// A gauge.
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.header(name, help, "gauge");
        let _ = writeln!(self.text, "{name} {value}");
    }

    /// An info metric (`{family}_info{labels} 1`; a gauge in the Prometheus format).
    pub fn info(&mut self, family: &str, help: &str, labels: &[(&str, &str)]) {
        match self.format {
            Format::OpenMetrics => self.header(family, help, "info"),
            Format::Prometheus => self.header(&format!("{family}_info"), help, "gauge"),
        }
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let _ = writeln!(self.text, "{family}_info{{{}}} 1", labels.join(","));
    }

    /// A histogram family: one histogram per label value (or one without a label).
    pub fn histogram(&mut self, name: &str, help: &str, series: &[(Option<(&str, &str)>, &Histogram)]) {
        self.header(name, help, "histogram");
        for (label, histogram) in series {
            let prefix = label.map(|(k, v)| format!("{k}=\"{v}\",")).unwrap_or_default();
            let bare = label.map(|(k, v)| format!("{{{k}=\"{v}\"}}")).unwrap_or_default();
            let mut cumulative = 0u64;
            for (bound, bucket) in histogram.bounds.iter().zip(histogram.buckets.iter()) {
                cumulative += bucket.load(Ordering::Relaxed);
                let _ = writeln!(self.text, "{name}_bucket{{{prefix}le=\"{bound:?}\"}} {cumulative}");
            }
            // Read after the buckets: a concurrent observation can only make +Inf and the
            // count larger than the buckets' sum, never smaller.
            let count = histogram.count.load(Ordering::Relaxed);
            let total = count.max(cumulative + histogram.overflow.load(Ordering::Relaxed));
            let sum = histogram.sum.load(Ordering::Relaxed) as f64 / histogram.scale;
            let _ = writeln!(self.text, "{name}_bucket{{{prefix}le=\"+Inf\"}} {total}");
            let _ = writeln!(self.text, "{name}_sum{bare} {sum}");
            let _ = writeln!(self.text, "{name}_count{bare} {total}");
        }
    }

    /// The finished text (OpenMetrics ends with `# EOF`).
    pub fn finish(mut self) -> String {
        if self.format == Format::OpenMetrics {
            self.text.push_str("# EOF\n");
        }
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_into_cumulative_buckets() {
        let h = Histogram::latency();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_micros(700));
        h.observe(Duration::from_secs(60));
        let mut out = Exposition::new(Format::OpenMetrics);
        out.histogram("x_seconds", "test", &[(Some(("shard", "0")), &h)]);
        let text = out.finish();
        assert!(text.contains("x_seconds_bucket{shard=\"0\",le=\"0.0001\"} 1\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{shard=\"0\",le=\"0.001\"} 2\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{shard=\"0\",le=\"10.0\"} 2\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{shard=\"0\",le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("x_seconds_count{shard=\"0\"} 3\n"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn counters_are_named_for_each_format() {
        let mut out = Exposition::new(Format::Prometheus);
        out.counter("a", "help", 3);
        assert_eq!(out.finish(), "# HELP a_total help\n# TYPE a_total counter\na_total 3\n");
        let mut out = Exposition::new(Format::OpenMetrics);
        out.counter("a", "help", 3);
        assert_eq!(out.finish(), "# HELP a help\n# TYPE a counter\na_total 3\n# EOF\n");
    }

    #[test]
    fn the_search_index_backlog_is_a_pair_of_gauges() {
        let metrics = Metrics::new(1);
        let _ = metrics.search_backlog.set(palaver_search::IndexBacklog::default());
        let mut out = Exposition::new(Format::Prometheus);
        metrics.render(&mut out);
        let text = out.finish();
        assert!(
            text.contains("# TYPE palaver_search_index_backlog gauge\npalaver_search_index_backlog 0\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "# TYPE palaver_search_index_lag_seconds gauge\npalaver_search_index_lag_seconds 0\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn process_figures_are_read() {
        let metrics = Metrics::new(1);
        metrics.register_shard_thread(0);
        let mut out = Exposition::new(Format::Prometheus);
        metrics.render(&mut out);
        let text = out.finish();
        for name in ["process_cpu_seconds_total ", "process_resident_memory_bytes ", "process_open_fds "] {
            assert!(text.contains(name), "{name} missing:\n{text}");
        }
        assert!(text.contains("palaver_shard_cpu_seconds_total{shard=\"0\"}"), "{text}");
    }
}
