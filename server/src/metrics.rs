//! Counters exported at `/metrics` in the Prometheus text format. Plain relaxed atomics:
//! shards bump them without coordination.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Process-wide counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Open WebSocket connections.
    pub connections: AtomicI64,
    /// WebSocket connections accepted since start.
    pub connections_total: AtomicU64,
    /// Connections refused by a per-address or per-user connection limit.
    pub connections_refused: AtomicU64,
    /// Sockets closed at accept because the sockets' share of descriptors was used up.
    pub connections_over_budget: AtomicU64,
    /// Messages stored.
    pub messages_stored: AtomicU64,
    /// Rooms that left memory after going idle.
    pub rooms_unloaded: AtomicU64,
    /// Frames queued to sockets by fan-out.
    pub deliveries: AtomicU64,
    /// Group-commit batches written.
    pub commit_batches: AtomicU64,
    /// Messages written by group commit.
    pub commit_messages: AtomicU64,
    /// WebSocket messages received.
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
}

impl Metrics {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, kind: &str, value: i128| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        };
        let get = |c: &AtomicU64| i128::from(c.load(Ordering::Relaxed));
        counter(
            "palaver_connections",
            "Open WebSocket connections.",
            "gauge",
            i128::from(self.connections.load(Ordering::Relaxed)),
        );
        counter(
            "palaver_connections_total",
            "WebSocket connections accepted.",
            "counter",
            get(&self.connections_total),
        );
        counter(
            "palaver_connections_refused_total",
            "Connections refused by a per-address or per-user limit.",
            "counter",
            get(&self.connections_refused),
        );
        counter(
            "palaver_connections_over_budget_total",
            "Sockets closed at accept because the sockets' share of the descriptor limit was used up.",
            "counter",
            get(&self.connections_over_budget),
        );
        counter(
            "palaver_messages_stored_total",
            "Messages durably stored.",
            "counter",
            get(&self.messages_stored),
        );
        counter(
            "palaver_rooms_unloaded_total",
            "Rooms that left memory after going idle (they load again on their next use).",
            "counter",
            get(&self.rooms_unloaded),
        );
        counter(
            "palaver_deliveries_total",
            "Event frames queued to sockets.",
            "counter",
            get(&self.deliveries),
        );
        counter(
            "palaver_commit_batches_total",
            "Group-commit batches.",
            "counter",
            get(&self.commit_batches),
        );
        counter(
            "palaver_commit_messages_total",
            "Writes in group-commit batches.",
            "counter",
            get(&self.commit_messages),
        );
        counter(
            "palaver_ws_frames_in_total",
            "WebSocket messages received.",
            "counter",
            get(&self.frames_in),
        );
        counter("palaver_http_requests_total", "HTTP requests served.", "counter", get(&self.http_requests));
        counter(
            "palaver_slow_consumers_total",
            "Sockets closed for falling behind.",
            "counter",
            get(&self.slow_consumers),
        );
        counter(
            "palaver_socket_writes_total",
            "Socket write calls (deliveries per write is the coalescing; a partial write counts again for the rest).",
            "counter",
            get(&self.socket_writes),
        );
        counter(
            "palaver_paced_writes_total",
            "Socket writes held for the shard's pacing tick to carry more frames (busy shard, hot socket).",
            "counter",
            get(&self.paced_writes),
        );
        counter(
            "palaver_tls_handshake_failures_total",
            "TLS handshakes on the HTTP listener that failed or timed out.",
            "counter",
            get(&self.tls_handshake_failures),
        );
        out
    }
}

/// Appends one family of a single value read from elsewhere than [`Metrics`]; `kind` is
/// `gauge` or `counter`.
pub fn render_family(out: &mut String, name: &str, help: &str, kind: &str, value: i128) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
}
