//! Threads for work that must never run on a shard's event loop, in lanes by kind:
//! password hashing, account and file-record writes, search queries, and background
//! scans. Each lane has its own threads and a bounded queue, so a flood of one kind
//! (sign-ins hashing passwords) never makes another (a search, a file's metadata) wait
//! behind it, and a full queue is refused at once rather than growing. Work whose asker
//! has gone (the awaiting future was dropped, a client disconnected) is skipped, not run.
//! Shards await the answer as a message.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send>;

/// How a lane's threads share the CPU with the shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Like the shards: work a client is waiting for (a login's hashing).
    Normal,
    /// Nice 10: work nobody waits for, which yields the shards' cores.
    Background,
}

/// Why a lane did not run a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its queue is full: try again later.
    Busy,
    /// The lane has stopped (shutdown).
    Closed,
}

/// One lane: threads taking jobs from a bounded queue. Dropping every clone ends them.
#[derive(Clone)]
pub struct Lane {
    tx: flume::Sender<Job>,
    stats: Arc<LaneStats>,
}

/// What became of a lane's jobs.
#[derive(Debug, Default)]
struct LaneStats {
    ran: AtomicU64,
    refused: AtomicU64,
    abandoned: AtomicU64,
}

impl Lane {
    /// Starts `threads` workers named `name-N`, taking jobs from a queue of at most
    /// `queue` waiting jobs.
    pub fn start(
        name: &str,
        threads: usize,
        queue: usize,
        priority: Priority,
    ) -> (Lane, Vec<JoinHandle<()>>) {
        let (tx, rx) = flume::bounded::<Job>(queue.max(1));
        let handles = (0..threads.max(1))
            .filter_map(|i| {
                let rx = rx.clone();
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || {
                        if priority == Priority::Background {
                            palaver_storage::lower_this_threads_priority();
                        }
                        while let Ok(job) = rx.recv() {
                            job();
                        }
                    })
                    .ok()
            })
            .collect();
        (Lane { tx, stats: Arc::default() }, handles)
    }

    /// Appends this lane's job counts to a Prometheus family (`palaver_blocking_jobs_total`).
    fn series(&self, out: &mut Vec<(String, f64)>, lane: &str) {
        for (outcome, count) in
            [("ran", &self.stats.ran), ("refused", &self.stats.refused), ("abandoned", &self.stats.abandoned)]
        {
            let count = count.load(Ordering::Relaxed);
            out.push((format!("lane=\"{lane}\",outcome=\"{outcome}\""), count as f64));
        }
    }

    /// Runs `f` on the lane and awaits its result. Refused at once when the queue is
    /// full. If this future is dropped before `f` starts, `f` never runs.
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, Refused> {
        let (done_tx, done_rx) = flume::bounded(1);
        let asked = Asked::default();
        let wanted = asked.0.clone();
        let stats = self.stats.clone();
        let job: Job = Box::new(move || {
            if wanted.load(Ordering::Acquire) {
                stats.ran.fetch_add(1, Ordering::Relaxed);
                let _ = done_tx.send(f());
            } else {
                stats.abandoned.fetch_add(1, Ordering::Relaxed);
            }
        });
        self.tx.try_send(job).map_err(|e| match e {
            flume::TrySendError::Full(_) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                Refused::Busy
            }
            flume::TrySendError::Disconnected(_) => Refused::Closed,
        })?;
        let result = done_rx.recv_async().await.map_err(|_| Refused::Closed);
        drop(asked);
        result
    }
}

/// Marks a job unwanted when the future awaiting it is dropped.
struct Asked(Arc<AtomicBool>);

impl Default for Asked {
    fn default() -> Self {
        Asked(Arc::new(AtomicBool::new(true)))
    }
}

impl Drop for Asked {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The lanes of the process.
#[derive(Clone)]
pub struct Lanes {
    /// argon2 hashing (registration, sign-in): CPU-heavy, queue short.
    pub passwords: Lane,
    /// Synchronous account, token and file-record writes: quick.
    pub accounts: Lane,
    /// Search queries.
    pub search: Lane,
    /// Long reads nobody waits for (rooms' cid filters after a restart), at nice 10.
    pub scans: Lane,
}

impl Lanes {
    /// The `palaver_blocking_jobs_total` family: jobs per lane that ran, were refused
    /// (queue full) or were abandoned (their asker left before they started).
    pub fn render_metrics(&self, out: &mut crate::metrics::Exposition) {
        let mut series = Vec::new();
        for (lane, name) in [
            (&self.passwords, "passwords"),
            (&self.accounts, "accounts"),
            (&self.search, "search"),
            (&self.scans, "scans"),
        ] {
            lane.series(&mut series, name);
        }
        out.counter_series(
            "palaver_blocking_jobs",
            "Jobs of the blocking lanes: ran, refused (queue full), abandoned (asker gone).",
            &series,
        );
    }

    /// Starts every lane's threads, sized for `cores` cores.
    pub fn start(cores: usize) -> (Lanes, Vec<JoinHandle<()>>) {
        let mut threads = Vec::new();
        let mut lane = |name, count, queue, priority| {
            let (lane, handles) = Lane::start(name, count, queue, priority);
            threads.extend(handles);
            lane
        };
        // Hashing gets at most half the cores: a sign-in flood must leave the shards CPU.
        let hashers = (cores / 2).max(1);
        let lanes = Lanes {
            passwords: lane("palaver-passwords", hashers, PASSWORD_QUEUE, Priority::Normal),
            accounts: lane("palaver-accounts", 1, ACCOUNT_QUEUE, Priority::Normal),
            search: lane("palaver-search", (cores / 4).max(1), SEARCH_QUEUE, Priority::Normal),
            scans: lane("palaver-scan", 1, SCAN_QUEUE, Priority::Background),
        };
        (lanes, threads)
    }
}

/// Sign-ins waiting for a hashing thread before more are refused (each ~50 ms of CPU).
const PASSWORD_QUEUE: usize = 64;
/// Account and file-record writes waiting.
const ACCOUNT_QUEUE: usize = 1_024;
/// Searches waiting.
const SEARCH_QUEUE: usize = 256;
/// Rooms waiting for their cid filter to be built (a room refused keeps looking its cids
/// up in storage, which is correct, only slower).
const SCAN_QUEUE: usize = 100_000;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        let mut runtime =
            monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build().expect("runtime");
        runtime.block_on(f)
    }

    #[test]
    fn a_full_queue_refuses_and_an_abandoned_job_does_not_run() {
        let (lane, _threads) = Lane::start("test-lane", 1, 1, Priority::Normal);
        let (release_tx, release_rx) = flume::bounded::<()>(0);
        let (started_tx, started_rx) = flume::bounded::<()>(1);
        let ran = Arc::new(AtomicUsize::new(0));
        block_on(async {
            // One job holds the thread; one waits in the queue; a third is refused.
            let blocker = lane.run(move || {
                let _ = started_tx.send(());
                release_rx.recv().ok()
            });
            let mut blocker = std::pin::pin!(blocker);
            assert!(futures_poll_once(blocker.as_mut()).is_none());
            started_rx.recv().expect("the blocker started");
            let counted = ran.clone();
            let queued = lane.run(move || counted.fetch_add(1, Ordering::SeqCst));
            let mut queued = Box::pin(queued);
            assert!(futures_poll_once(queued.as_mut()).is_none());
            let counted = ran.clone();
            assert_eq!(lane.run(move || counted.fetch_add(1, Ordering::SeqCst)).await, Err(Refused::Busy));
            // The queued job's asker gives up: it is skipped.
            drop(queued);
            release_tx.send(()).expect("release");
            assert!(blocker.await.is_ok());
            let counted = ran.clone();
            lane.run(move || counted.fetch_add(1, Ordering::SeqCst)).await.expect("runs");
        });
        assert_eq!(ran.load(Ordering::SeqCst), 1, "only the last job ran");
    }

    /// Polls a future once with a no-op waker; `Some` if it completed.
    fn futures_poll_once<F: std::future::Future>(f: std::pin::Pin<&mut F>) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        match f.poll(&mut std::task::Context::from_waker(waker)) {
            std::task::Poll::Ready(out) => Some(out),
            std::task::Poll::Pending => None,
        }
    }
}
