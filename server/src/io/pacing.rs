//! Adaptive write coalescing. A socket write costs the kernel about the same for one frame
//! as for several (on loopback ~4 µs, most of it TCP and waking the reader), so a socket
//! that receives many frames per millisecond is cheapest written once per few
//! milliseconds. But waiting costs latency, and most sockets most of the time receive a
//! frame now and then: those must be written at once.
//!
//! So writes are paced only when all three hold:
//! - the shard is busy: its thread used more than 70 % of its time on a CPU, on average
//!   over the last ~100 ms (measured at each pacing tick with the thread's CPU clock). The
//!   average lags: after a burst ends, hot sockets are still held for up to ~100 ms
//!   (turning pacing off on the first quiet tick was tried: at 1,000 msg/s it switched
//!   off too often, and p99 doubled);
//! - the socket is hot: its frames come faster than it is written. It wrote its previous
//!   batch since the last tick (so less than about one interval ago), or it wrote it in
//!   the last two ticks and that batch or this one has more than one frame. And it has
//!   fewer than a full batch queued. A socket whose last write was longer ago is never
//!   held, however many frames it gets at once.
//!   (Judged by how recently the socket was *written* instead, a fan-out of 100
//!   messages/s on a slow machine, one frame per socket every 10 ms, looked hot, because
//!   each burst of 1,000 writes ended only a few ms before the next message: it was held,
//!   which doubled its latency. Judged by the spacing of batches alone, a saturated loop,
//!   whose turns can be longer than the interval, wrote lone frames at once, which cost
//!   enough to make it fall behind at 1,000 messages/s.)
//! - no reply (to a request or a ping) is queued for it: a client is waiting for that.
//!
//! A paced writer waits for the shard's next tick (about one interval at most; a tick can
//! fire a little late on a busy loop), or until a reply is queued or the socket closes,
//! and then writes everything queued by then. Under a fan-out of 1,000 messages/s into a
//! 1,000-member room that turns ~5 frames per write into ~7-10, which lowers both the
//! server's and the readers' CPU per delivery (docs/PERFORMANCE.md, "The design decisions
//! behind the numbers"). A socket in a quiet room, a reply, an idle shard, or a busy
//! shard's many lukewarm sockets are never held.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// A queued batch this large is written at once, paced or not.
pub const PACED_BATCH_FRAMES: usize = 8;

/// The shard counts as busy once its thread's CPU use averages above the first share of
/// the time, and idle again below the second (hysteresis, so pacing does not flap: pacing
/// itself lowers the CPU use it is triggered by).
const BUSY_ABOVE: f64 = 0.70;
const IDLE_BELOW: f64 = 0.40;
/// The span the average follows: each tick weighs in by its share of this.
const LOAD_WINDOW: Duration = Duration::from_millis(100);
/// An idle shard (average below this) ticks ten times less often.
const IDLE_TICKS_BELOW: f64 = 0.10;

/// A socket's previous batch, as pacing remembers it (small: every socket's writer keeps
/// one, and an idle connection's memory is mostly its tasks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// The tick it was written in (after waiting for it, if it did).
    tick: u64,
    /// Whether it carried more than one frame.
    several: bool,
}

/// One shard's pacing state (single-threaded).
#[derive(Debug)]
pub struct WritePacer {
    /// `None`: pacing is turned off (`--write-pacing-ms 0`).
    interval: Option<Duration>,
    /// Whether the shard is busy, so hot sockets wait for the tick.
    active: Cell<bool>,
    /// The shard thread's average CPU use, as a share of the time.
    load: Cell<f64>,
    /// Bumped at every tick; a paced writer waits until it moves.
    tick: Cell<u64>,
    /// Writers waiting for the next tick.
    waiting: RefCell<Vec<Waker>>,
}

impl WritePacer {
    /// A pacer with ticks every `interval` (`Duration::ZERO` turns pacing off).
    pub fn new(interval: Duration) -> Rc<WritePacer> {
        Rc::new(WritePacer {
            interval: (!interval.is_zero()).then_some(interval),
            active: Cell::new(false),
            load: Cell::new(0.0),
            tick: Cell::new(0),
            waiting: RefCell::new(Vec::new()),
        })
    }

    /// A batch of `frames` about to be written, remembered while pacing is on.
    pub fn record(&self, frames: usize) -> Option<Batch> {
        self.active.get().then(|| Batch { tick: self.tick.get(), several: frames > 1 })
    }

    /// Whether a batch of `queued` frames should wait for the next tick, given the
    /// socket's `previous` batch (see [`Self::record`]). (`active` is never set while
    /// pacing is off, so this is false then.)
    pub fn should_wait(&self, previous: Option<Batch>, queued: usize) -> bool {
        let fast = previous.is_some_and(|previous| {
            let ticks_ago = self.tick.get().wrapping_sub(previous.tick);
            ticks_ago == 0 || (ticks_ago <= 2 && (queued > 1 || previous.several))
        });
        self.active.get() && queued < PACED_BATCH_FRAMES && fast
    }

    /// Waits for the next tick (or for pacing to turn off), or until `cut_short` is ready
    /// (polled whenever the task wakes).
    pub async fn next_tick_or(&self, mut cut_short: impl FnMut(&mut Context<'_>) -> Poll<()>) {
        let start = self.tick.get();
        // Registered once per wait: a scan of the list for a duplicate would cost every
        // held writer the length of the list (a thousand, in a busy room). A wait cut
        // short leaves its waker behind; the next tick wakes that task once for nothing.
        let mut registered = false;
        poll_fn(|cx| {
            if self.tick.get() != start || !self.active.get() || cut_short(cx).is_ready() {
                return Poll::Ready(());
            }
            if !registered {
                self.waiting.borrow_mut().push(cx.waker().clone());
                registered = true;
            }
            Poll::Pending
        })
        .await;
    }

    /// Records one tick: in the `elapsed` since the last one, the shard's thread was on a
    /// CPU for `busy_share` of the time (0 to 1). Then releases the waiting writers.
    pub fn on_tick(&self, busy_share: f64, elapsed: Duration) {
        if self.interval.is_none() {
            return;
        }
        let weight = (elapsed.as_secs_f64() / LOAD_WINDOW.as_secs_f64()).min(1.0);
        let load = self.load.get() * (1.0 - weight) + busy_share.clamp(0.0, 1.0) * weight;
        self.load.set(load);
        if load > BUSY_ABOVE {
            self.active.set(true);
        } else if load < IDLE_BELOW {
            self.active.set(false);
        }
        self.release();
    }

    /// Lets every waiting writer go.
    fn release(&self) {
        self.tick.set(self.tick.get().wrapping_add(1));
        for waker in self.waiting.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    /// Whether hot sockets are being paced now.
    #[cfg(test)]
    pub(crate) fn is_active(&self) -> bool {
        self.active.get()
    }

    /// How long until the next tick: the interval, or ten of them while the shard idles
    /// (nothing can be waiting then: pacing turned off at the last tick at the latest).
    fn pause(&self) -> Option<Duration> {
        let interval = self.interval?;
        Some(if self.active.get() || self.load.get() >= IDLE_TICKS_BELOW { interval } else { interval * 10 })
    }
}

/// A shard's pacing tick: measures the shard thread's CPU use and releases paced writers.
/// Runs on the shard's thread (its CPU clock is this thread's); returns at once when
/// pacing is off.
pub async fn run(pacer: Rc<WritePacer>) {
    let mut last = (Instant::now(), thread_cpu());
    while let Some(pause) = pacer.pause() {
        monoio::time::sleep(pause).await;
        let now = (Instant::now(), thread_cpu());
        let wall = now.0.saturating_duration_since(last.0);
        if !wall.is_zero() {
            pacer.on_tick(now.1.saturating_sub(last.1).as_secs_f64() / wall.as_secs_f64(), wall);
        }
        last = now;
    }
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec.max(0) as u64, t.tv_nsec.clamp(0, 999_999_999) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS5: Duration = Duration::from_millis(5);

    #[test]
    fn a_busy_shard_turns_pacing_on_and_an_idle_one_turns_it_off() {
        let pacer = WritePacer::new(MS5);
        assert!(!pacer.is_active());
        let mut ticks_to_busy = 0;
        while !pacer.is_active() {
            pacer.on_tick(0.9, MS5);
            ticks_to_busy += 1;
            assert!(ticks_to_busy < 100, "never turned on");
        }
        assert!(ticks_to_busy > 3, "one busy tick is not load: turned on after {ticks_to_busy}");
        // Between the two thresholds it stays on.
        for _ in 0..100 {
            pacer.on_tick(0.55, MS5);
        }
        assert!(pacer.is_active(), "55 % busy: still between the thresholds");
        let mut ticks_to_idle = 0;
        while pacer.is_active() {
            pacer.on_tick(0.1, MS5);
            ticks_to_idle += 1;
            assert!(ticks_to_idle < 100, "never turned off");
        }
        // And it stays off below the upper threshold.
        for _ in 0..100 {
            pacer.on_tick(0.6, MS5);
        }
        assert!(!pacer.is_active(), "60 % busy does not turn pacing on");
    }

    #[test]
    fn an_idle_shard_ticks_less_often_and_a_long_tick_weighs_more() {
        let pacer = WritePacer::new(MS5);
        assert_eq!(pacer.pause(), Some(MS5 * 10), "idle from the start");
        // One long tick of full load counts for its whole length (capped at the window).
        pacer.on_tick(1.0, MS5 * 10);
        assert_eq!(pacer.pause(), Some(MS5), "load seen: back to the interval");
        assert!(WritePacer::new(Duration::ZERO).pause().is_none(), "pacing off: no ticks");
    }

    #[test]
    fn the_thread_cpu_clock_counts_this_threads_work_only() {
        let before = thread_cpu();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(thread_cpu() > before, "busy work used no CPU time");
        let before = thread_cpu();
        std::thread::sleep(Duration::from_millis(30));
        assert!(thread_cpu() - before < Duration::from_millis(20), "sleeping counted as CPU time");
    }

    #[test]
    fn only_hot_sockets_wait_and_only_when_busy() {
        let pacer = WritePacer::new(MS5);
        assert_eq!(pacer.record(1), None, "idle shard: nothing to remember");
        while !pacer.is_active() {
            pacer.on_tick(1.0, MS5);
        }
        let (one, several) = (pacer.record(1), pacer.record(3));
        assert!(!pacer.should_wait(None, 1), "a first batch is not held");
        assert!(!pacer.should_wait(None, 3), "nor one of several frames");
        assert!(pacer.should_wait(one, 1), "a lone frame again within the tick");
        assert!(!pacer.should_wait(one, PACED_BATCH_FRAMES), "a full batch goes at once");
        pacer.on_tick(1.0, MS5);
        assert!(!pacer.should_wait(one, 1), "a lone frame a tick after a lone frame");
        assert!(pacer.should_wait(several, 1), "the last batch had several");
        assert!(pacer.should_wait(one, 2), "frames faster than the writes");
        pacer.on_tick(1.0, MS5);
        pacer.on_tick(1.0, MS5);
        assert!(!pacer.should_wait(several, 1), "several frames, but three ticks ago");
        assert!(!pacer.should_wait(one, 3), "a quiet socket getting several at once");
        let off = WritePacer::new(Duration::ZERO);
        for _ in 0..100 {
            off.on_tick(1.0, MS5);
        }
        assert_eq!(off.record(1), None);
        assert!(!off.should_wait(one, 2), "pacing turned off");
    }
}
