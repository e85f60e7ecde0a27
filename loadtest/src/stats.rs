//! Counters and latency histograms shared by every socket task of a run.
//!
//! Counters are atomics; the histograms sit behind a mutex that is uncontended on the
//! default one-thread runtime. Latency is recorded for messages whose `client_ts` falls in
//! the measured window, wherever they arrive (late arrivals during the drain count), so
//! warm-up traffic never pollutes the numbers.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

/// Highest latency the histograms hold (60 s, in µs); above is clamped.
const MAX_LATENCY_US: u64 = 60_000_000;

/// Now, in µs since the Unix epoch: the unit of `client_ts` in every message we send.
pub fn epoch_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// An empty µs histogram (1 µs to 60 s, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant histogram bounds are valid")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Everything the socket tasks count.
pub struct Stats {
    /// `send` requests written.
    pub sends: AtomicU64,
    /// `send` requests answered ok.
    pub acks: AtomicU64,
    /// Requests answered with an error.
    pub errors: AtomicU64,
    /// Sends not made because a sender had too many unanswered.
    pub skipped: AtomicU64,
    /// `message` events received, all phases.
    pub deliveries: AtomicU64,
    /// Bytes read by receiving members (hand-framed sockets), all phases.
    pub received_bytes: AtomicU64,
    /// Events the message count of their room says should arrive (acks × members).
    pub expected_deliveries: AtomicU64,
    /// Events without a `client_ts`, or undecodable frames.
    pub decode_errors: AtomicU64,
    /// Sockets the server closed (or that failed) before the end of the run.
    pub disconnects: AtomicU64,
    /// Socket write failures.
    pub write_errors: AtomicU64,
    /// Most a send was written after its due time, µs.
    pub max_send_lag_us: AtomicU64,
    /// Sockets connected, authenticated and joined by churning clients.
    pub connects: AtomicU64,
    /// Of those, the ones that were a client's second or later.
    pub reconnects: AtomicU64,
    /// Churn connects that failed (connect, auth or join).
    pub connect_errors: AtomicU64,
    /// Replayed message events (`join` with `since`): counted, not timed.
    pub replayed: AtomicU64,
    /// `history` requests written.
    pub history_requests: AtomicU64,
    /// `history` pages received.
    pub history_pages: AtomicU64,
    /// `history` requests answered with an error.
    pub history_errors: AtomicU64,
    /// `history` pages whose content was not the expected range of seqs.
    pub history_mismatches: AtomicU64,
    /// Set when the run is over: senders stop, closes are no longer disconnects.
    pub stopping: AtomicBool,
    /// Messages with `client_ts` in `[window_start_us, window_end_us)` are recorded.
    window_start_us: AtomicU64,
    window_end_us: AtomicU64,
    /// End-to-end latency of message deliveries from their `client_ts`, µs.
    pub delivery: DeliveryLatency,
    /// Connect + authenticate + join latency of churning clients, µs.
    pub connect: LatencyPair,
    /// `history` request → reply latency, µs.
    pub history: LatencyPair,
    /// Error replies by code.
    error_codes: Mutex<BTreeMap<String, u64>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            sends: AtomicU64::new(0),
            acks: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            received_bytes: AtomicU64::new(0),
            expected_deliveries: AtomicU64::new(0),
            decode_errors: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            max_send_lag_us: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            connect_errors: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            history_requests: AtomicU64::new(0),
            history_pages: AtomicU64::new(0),
            history_errors: AtomicU64::new(0),
            history_mismatches: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            window_start_us: AtomicU64::new(u64::MAX),
            window_end_us: AtomicU64::new(u64::MAX),
            delivery: DeliveryLatency::default(),
            connect: LatencyPair::default(),
            history: LatencyPair::default(),
            error_codes: Mutex::new(BTreeMap::new()),
        }
    }
}

/// A copy of the counters at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    pub sends: u64,
    pub acks: u64,
    pub errors: u64,
    pub skipped: u64,
    pub deliveries: u64,
    pub received_bytes: u64,
    pub expected_deliveries: u64,
    pub decode_errors: u64,
    pub disconnects: u64,
    pub write_errors: u64,
    pub connects: u64,
    pub reconnects: u64,
    pub connect_errors: u64,
    pub replayed: u64,
    pub history_requests: u64,
    pub history_pages: u64,
    pub history_errors: u64,
    pub history_mismatches: u64,
}

/// A latency histogram over the measured window, and one since the last progress line.
struct Histograms {
    window: Histogram<u64>,
    interval: Histogram<u64>,
}

impl Default for Histograms {
    fn default() -> Self {
        Histograms { window: new_histogram(), interval: new_histogram() }
    }
}

impl Histograms {
    /// Records `latency_us` always in the interval, and in the window when `in_window`.
    fn record(&mut self, latency_us: u64, in_window: bool) {
        let latency = latency_us.max(1);
        self.interval.saturating_record(latency);
        if in_window {
            self.window.saturating_record(latency);
        }
    }

    /// Latency of the last interval (p50, p99, max in ms) and resets it.
    fn take_interval(&mut self) -> Option<(f64, f64, f64)> {
        let h = &mut self.interval;
        if h.is_empty() {
            return None;
        }
        let out = (ms(h.value_at_quantile(0.5)), ms(h.value_at_quantile(0.99)), ms(h.max()));
        h.reset();
        Some(out)
    }
}

/// The latency of one kind of operation: the measured window and the current interval.
#[derive(Default)]
pub struct LatencyPair(Mutex<Histograms>);

impl LatencyPair {
    /// Records `latency_us` always in the interval, and in the window when `in_window`.
    pub fn record(&self, latency_us: u64, in_window: bool) {
        lock(&self.0).record(latency_us, in_window);
    }

    /// Latency of the last interval (p50, p99, max in ms) and resets it.
    pub fn take_interval(&self) -> Option<(f64, f64, f64)> {
        lock(&self.0).take_interval()
    }

    /// The measured distribution.
    pub fn window(&self) -> Histogram<u64> {
        lock(&self.0).window.clone()
    }
}

/// The latency of message deliveries, two ways under one lock (the generator's hottest
/// path): up to the moment the generator read the event, and up to its arrival in the
/// receiving socket (the kernel's receive timestamp; see `arrival.rs`), which leaves out
/// the generator's own queue of sockets to read.
#[derive(Default)]
pub struct DeliveryLatency(Mutex<[Histograms; 2]>);

/// Which of a delivery's two latencies.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// Until the generator read the event.
    Read = 0,
    /// Until the event's bytes reached the receiving socket.
    Arrival = 1,
}

impl DeliveryLatency {
    fn record(&self, read_us: u64, arrival_us: Option<u64>, in_window: bool) {
        let mut h = lock(&self.0);
        h[Until::Read as usize].record(read_us, in_window);
        if let Some(arrival) = arrival_us {
            h[Until::Arrival as usize].record(arrival, in_window);
        }
    }

    /// Latency of the last interval (p50, p99, max in ms) and resets it.
    pub fn take_interval(&self, until: Until) -> Option<(f64, f64, f64)> {
        lock(&self.0)[until as usize].take_interval()
    }

    /// The measured distribution.
    pub fn window(&self, until: Until) -> Histogram<u64> {
        lock(&self.0)[until as usize].window.clone()
    }
}

impl Stats {
    /// Counts one delivered message event and records its latency, both to now and to
    /// `arrived`, the kernel's receive timestamp of its bytes (µs since the epoch).
    pub fn delivered(&self, client_ts: Option<u64>, arrived: Option<u64>) {
        self.deliveries.fetch_add(1, Ordering::Relaxed);
        let Some(sent) = client_ts else {
            self.decode_errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let arrival = arrived.map(|at| at.saturating_sub(sent));
        self.delivery.record(epoch_us().saturating_sub(sent), arrival, self.in_window(sent));
    }

    /// Whether an operation started at `at_us` (µs since the epoch) is inside the window.
    pub fn in_window(&self, at_us: u64) -> bool {
        at_us >= self.window_start_us.load(Ordering::Relaxed)
            && at_us < self.window_end_us.load(Ordering::Relaxed)
    }

    /// Counts an error reply.
    pub fn error(&self, code: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *lock(&self.error_codes).entry(code.to_string()).or_default() += 1;
    }

    /// A socket ended; counted as a disconnect unless the run is stopping.
    pub fn socket_ended(&self) {
        if !self.stopping.load(Ordering::Relaxed) {
            self.disconnects.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn open_window(&self, at_us: u64) {
        self.window_start_us.store(at_us, Ordering::Relaxed);
    }

    pub fn close_window(&self, at_us: u64) {
        self.window_end_us.store(at_us, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Snapshot {
            sends: g(&self.sends),
            acks: g(&self.acks),
            errors: g(&self.errors),
            skipped: g(&self.skipped),
            deliveries: g(&self.deliveries),
            received_bytes: g(&self.received_bytes),
            expected_deliveries: g(&self.expected_deliveries),
            decode_errors: g(&self.decode_errors),
            disconnects: g(&self.disconnects),
            write_errors: g(&self.write_errors),
            connects: g(&self.connects),
            reconnects: g(&self.reconnects),
            connect_errors: g(&self.connect_errors),
            replayed: g(&self.replayed),
            history_requests: g(&self.history_requests),
            history_pages: g(&self.history_pages),
            history_errors: g(&self.history_errors),
            history_mismatches: g(&self.history_mismatches),
        }
    }

    /// Counts an error code without counting a send error (history, connect errors).
    pub fn note_error_code(&self, code: &str) {
        *lock(&self.error_codes).entry(code.to_string()).or_default() += 1;
    }

    pub fn error_codes(&self) -> BTreeMap<String, u64> {
        lock(&self.error_codes).clone()
    }
}

/// µs → ms.
pub fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The usual percentiles of a µs histogram, in ms, as JSON.
pub fn latency_json(h: &Histogram<u64>) -> serde_json::Value {
    if h.is_empty() {
        return serde_json::json!({ "count": 0 });
    }
    serde_json::json!({
        "count": h.len(),
        "mean": round3(h.mean() / 1000.0),
        "p50": ms(h.value_at_quantile(0.50)),
        "p90": ms(h.value_at_quantile(0.90)),
        "p99": ms(h.value_at_quantile(0.99)),
        "p99_9": ms(h.value_at_quantile(0.999)),
        "max": ms(h.max()),
    })
}

/// The distribution of a µs histogram as at most `bins` equal-width bars (ms) from 0 to
/// its 99.9th percentile, the rest in a last bar: `[{from_ms, to_ms, count}]`.
pub fn distribution_json(h: &Histogram<u64>, bins: u64) -> serde_json::Value {
    if h.is_empty() {
        return serde_json::json!([]);
    }
    let top = h.value_at_quantile(0.999).max(1);
    let width = top.div_ceil(bins.max(1)).max(1);
    let mut counts = vec![0u64; bins.max(1) as usize + 1];
    for v in h.iter_recorded() {
        let bin = ((v.value_iterated_to() / width) as usize).min(counts.len() - 1);
        counts[bin] += v.count_at_value();
    }
    let last = counts.len() - 1;
    let out: Vec<serde_json::Value> = counts
        .iter()
        .enumerate()
        .map(|(i, &count)| {
            let from = i as u64 * width;
            let to = if i == last { h.max().max(from + width) } else { from + width };
            serde_json::json!({ "from_ms": ms(from), "to_ms": ms(to), "count": count })
        })
        .collect();
    serde_json::Value::Array(out)
}

/// Rounds to 3 decimals.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
