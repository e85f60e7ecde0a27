//! A socket's outbound queue and its writer.
//!
//! Frames are shared buffers (`Bytes`): a fan-out event queued to a thousand sockets is
//! one allocation and a thousand reference counts. The writer takes everything queued
//! since its last turn and hands it to the kernel in one vectored write, so a busy socket
//! costs one syscall for many messages (a lone frame goes as a plain send). The queue is
//! bounded in bytes: a consumer that falls behind is closed with 1013 and resumes later
//! with `since`.
//!
//! A write the peer never takes (it stopped reading) must not hold the socket open: an
//! aborted queue cancels the write in flight, and the socket is reset rather than left to
//! the kernel with unsent data (docs/ARCHITECTURE.md#back-pressure-and-limits).
//!
//! A QUIC connection's queue also keeps each frame's [`Lane`] (which stream carries it,
//! PROTOCOL.md §7.3); a WebSocket's keeps none, so its frames cost what they always did.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::ops::Deref;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use monoio::buf::IoVecBuf;
use monoio::io::AsyncWriteRent;

use super::lane::Lane;
use super::pacing::WritePacer;
use super::socket_reset::SocketReset;
use crate::ws::{CloseCode, close_frame};

/// Most frames in one vectored write (well under the kernel's IOV_MAX of 1024).
const MAX_FRAMES_PER_WRITE: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// A close frame is queued: nothing more is accepted; the writer flushes and stops.
    Closing,
    /// The writer has stopped.
    Finished,
}

#[derive(Debug)]
struct Queue {
    frames: VecDeque<Bytes>,
    /// Each queued frame's lane, in step with `frames`: QUIC only (`None` on a
    /// WebSocket, which has one lane).
    lanes: Option<VecDeque<Lane>>,
    bytes: usize,
    limit: usize,
    state: State,
    writer: Option<Waker>,
    /// The writer while a write is in flight, to be woken if the queue is aborted: one
    /// slot, replaced in place, because it is polled on every write.
    abort_watcher: Option<Waker>,
    /// Tasks waiting for the socket to close or finish (the reader): woken only when the
    /// state changes, never per write.
    state_watchers: Vec<Waker>,
    /// Tasks waiting for the queue to drain (catch-up replays): woken when the writer
    /// takes frames.
    drain_watchers: Vec<Waker>,
    /// Whether closing queues a WebSocket close frame (false for QUIC, which closes the
    /// connection with the code instead).
    close_frames: bool,
    /// Why the socket is closing, once it is.
    close: Option<(CloseCode, String)>,
    /// A reply (to a request or a ping) is queued: the writer does not pace its write.
    urgent: bool,
    /// The writer holds its batch for the pacing tick: only a reply wakes it (a frame
    /// waits for the tick with the rest).
    holding: bool,
    /// The writer took frames it has not finished writing.
    batch_unwritten: bool,
    /// Writes the writer completed (partial ones included): the stall check's measure of
    /// progress.
    writes_done: u64,
}

/// A handle to one socket's outbound queue (cheap to clone; single-threaded).
#[derive(Debug, Clone)]
pub struct Outbound(Rc<RefCell<Queue>>);

/// Whether a frame was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued.
    Queued,
    /// The socket is closing; the frame was dropped.
    Closed,
    /// The queue overflowed: the socket is now closing as a slow consumer.
    Overflow,
}

impl Outbound {
    /// An empty queue that holds at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self::with_close_frames(limit, true)
    }

    /// Whether this queue keeps lanes (a QUIC connection's).
    #[cfg(test)]
    fn keeps_lanes(&self) -> bool {
        self.0.borrow().lanes.is_some()
    }

    /// An empty queue for a QUIC connection: closing records the code and reason (see
    /// [`Outbound::close_reason`]) instead of queueing a WebSocket close frame, and each
    /// frame's lane is kept for the writer ([`Outbound::take_lane_frames`]).
    pub fn for_quic(limit: usize) -> Self {
        Self::with_close_frames(limit, false)
    }

    fn with_close_frames(limit: usize, close_frames: bool) -> Self {
        Outbound(Rc::new(RefCell::new(Queue {
            frames: VecDeque::new(),
            lanes: (!close_frames).then(VecDeque::new),
            bytes: 0,
            limit,
            state: State::Open,
            writer: None,
            abort_watcher: None,
            state_watchers: Vec::new(),
            drain_watchers: Vec::new(),
            close_frames,
            close: None,
            urgent: false,
            holding: false,
            batch_unwritten: false,
            writes_done: 0,
        })))
    }

    /// The code and reason the socket was closed with, once closing.
    pub fn close_reason(&self) -> Option<(CloseCode, String)> {
        self.0.borrow().close.clone()
    }

    /// Queues a frame of `lane`; a queue over its limit closes the socket (1013).
    pub fn push(&self, frame: Bytes, lane: Lane) -> Pushed {
        self.push_frame(frame, lane, false)
    }

    /// Queues a reply (to a request or a ping): a client waits for it, so its write is
    /// never held for write pacing. Replies travel in the control lane.
    pub fn push_reply(&self, frame: Bytes) -> Pushed {
        self.push_frame(frame, Lane::Control, true)
    }

    fn push_frame(&self, frame: Bytes, lane: Lane, reply: bool) -> Pushed {
        let mut q = self.0.borrow_mut();
        if q.state != State::Open {
            return Pushed::Closed;
        }
        if q.bytes + frame.len() > q.limit {
            drop(q);
            self.close_now(CloseCode::TryAgainLater, "slow consumer: reconnect and resume with since");
            return Pushed::Overflow;
        }
        q.bytes += frame.len();
        q.frames.push_back(frame);
        if let Some(lanes) = &mut q.lanes {
            lanes.push_back(lane);
        }
        q.urgent |= reply;
        // A writer holding its batch for the tick is woken by a reply only.
        if (reply || !q.holding)
            && let Some(w) = q.writer.take()
        {
            w.wake();
        }
        Pushed::Queued
    }

    /// Whether a reply was queued since the last call (and clears it).
    fn take_urgent(&self) -> bool {
        std::mem::take(&mut self.0.borrow_mut().urgent)
    }

    /// Closes after what is already queued has been written.
    pub fn close(&self, code: CloseCode, reason: &str) {
        self.close_with(code, reason, false);
    }

    /// Drops what is queued and closes at once.
    pub fn close_now(&self, code: CloseCode, reason: &str) {
        self.close_with(code, reason, true);
    }

    fn close_with(&self, code: CloseCode, reason: &str, discard: bool) {
        let mut q = self.0.borrow_mut();
        if q.state != State::Open {
            return;
        }
        if discard {
            clear(&mut q);
        }
        q.close = Some((code, reason.to_owned()));
        if q.close_frames {
            let frame = close_frame(code, reason);
            q.bytes += frame.len();
            q.frames.push_back(frame);
        }
        q.state = State::Closing;
        wake_all(&mut q);
    }

    /// Ends the socket without a close frame (the peer is gone, or will not take what is
    /// queued): a write in flight is cancelled and the socket reset.
    pub fn abort(&self) {
        let mut q = self.0.borrow_mut();
        clear(&mut q);
        q.state = State::Finished;
        wake_all(&mut q);
    }

    /// Whether the socket accepts frames.
    pub fn is_open(&self) -> bool {
        self.0.borrow().state == State::Open
    }

    /// Whether the writer has stopped (or was aborted).
    pub fn is_finished(&self) -> bool {
        self.0.borrow().state == State::Finished
    }

    /// Whether bytes wait to be written, and how many writes have completed so far: a
    /// socket with bytes waiting whose count stands still is not being read.
    pub fn write_progress(&self) -> (bool, u64) {
        let q = self.0.borrow();
        (q.batch_unwritten || !q.frames.is_empty(), q.writes_done)
    }

    /// Records a completed write; `batch_done` when it finished the writer's batch.
    fn wrote(&self, batch_done: bool) {
        let mut q = self.0.borrow_mut();
        q.writes_done += 1;
        q.batch_unwritten = !batch_done;
    }

    /// Ready once the queue was aborted ([`Outbound::abort`]): what the writer is doing
    /// then is abandoned.
    fn poll_aborted(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut q = self.0.borrow_mut();
        if q.state == State::Finished {
            Poll::Ready(())
        } else {
            match &mut q.abort_watcher {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            Poll::Pending
        }
    }

    /// Runs `io` (a write, a shutdown) unless the queue is aborted first: then `None`,
    /// and dropping `io` cancels the operation in flight (monoio submits an io_uring
    /// cancel), so a peer that never reads cannot hold the socket.
    async fn unless_aborted<F: Future>(&self, io: F) -> Option<F::Output> {
        let mut io = std::pin::pin!(io);
        poll_fn(|cx| {
            if let Poll::Ready(out) = io.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            self.poll_aborted(cx).map(|()| None)
        })
        .await
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.0.borrow().bytes
    }

    /// Waits until the socket is no longer open (closing or finished).
    pub async fn closed(&self) {
        poll_fn(|cx| {
            let mut q = self.0.borrow_mut();
            if q.state == State::Open {
                watch(&mut q.state_watchers, cx.waker());
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
    }

    /// Waits until the writer has stopped.
    pub async fn finished(&self) {
        poll_fn(|cx| {
            let mut q = self.0.borrow_mut();
            if q.state == State::Finished {
                Poll::Ready(())
            } else {
                watch(&mut q.state_watchers, cx.waker());
                Poll::Pending
            }
        })
        .await;
    }

    /// Waits until at most `bytes` are queued, or the socket closes (returns false).
    pub async fn drained_below(&self, bytes: usize) -> bool {
        poll_fn(|cx| {
            let mut q = self.0.borrow_mut();
            if q.state != State::Open {
                Poll::Ready(false)
            } else if q.bytes <= bytes {
                Poll::Ready(true)
            } else {
                watch(&mut q.drain_watchers, cx.waker());
                Poll::Pending
            }
        })
        .await
    }

    /// Moves everything queued (up to a cap) into `out`; false once closed and flushed.
    /// The socket writer's batches take frames this way.
    pub async fn take_frames(&self, out: &mut Vec<Bytes>) -> bool {
        self.take_each(out, |frame, _| frame).await
    }

    /// Moves everything queued (up to a cap) into `out` with each frame's lane (a QUIC
    /// queue's; a WebSocket's frames all come as [`Lane::Control`]); false once closed
    /// and flushed. The QUIC writer takes frames this way.
    pub async fn take_lane_frames(&self, out: &mut Vec<(Lane, Bytes)>) -> bool {
        self.take_each(out, |frame, lane| (lane, frame)).await
    }

    async fn take_each<T>(&self, out: &mut Vec<T>, item: impl Fn(Bytes, Lane) -> T + Copy) -> bool {
        poll_fn(|cx| {
            let mut q = self.0.borrow_mut();
            if q.frames.is_empty() {
                return match q.state {
                    State::Open => {
                        q.writer = Some(cx.waker().clone());
                        Poll::Pending
                    }
                    State::Closing | State::Finished => Poll::Ready(false),
                };
            }
            move_frames(&mut q, out, MAX_FRAMES_PER_WRITE, item);
            Poll::Ready(true)
        })
        .await
    }

    /// Fills `batch` with everything queued (up to a cap); false once closed and flushed.
    async fn next_batch(&self, batch: &mut FrameBatch) -> bool {
        self.take_frames(&mut batch.frames).await
    }

    /// Adds to `batch` whatever was queued since it was filled (up to the cap), without
    /// waiting, once a held batch's wait is over. A reply among them is written with it,
    /// so nothing queued is urgent any more once the queue is empty.
    fn top_up(&self, batch: &mut FrameBatch) {
        let room = MAX_FRAMES_PER_WRITE.saturating_sub(batch.frames.len());
        let mut q = self.0.borrow_mut();
        q.holding = false;
        move_frames(&mut q, &mut batch.frames, room, |frame, _| frame);
        if q.frames.is_empty() {
            q.urgent = false;
        }
    }

    /// While the writer holds a batch for the pacing tick: ready once a reply is queued
    /// (or the queue closes), and only those wake the writer.
    fn poll_reply(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut q = self.0.borrow_mut();
        if q.urgent || q.state != State::Open {
            return Poll::Ready(());
        }
        q.holding = true;
        if !q.writer.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            q.writer = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Marks the writer stopped.
    pub fn finish(&self) {
        let mut q = self.0.borrow_mut();
        q.state = State::Finished;
        clear(&mut q);
        wake_all(&mut q);
    }
}

/// Empties the queue (frames and their lanes).
fn clear(q: &mut Queue) {
    q.frames.clear();
    if let Some(lanes) = &mut q.lanes {
        lanes.clear();
    }
    q.bytes = 0;
}

/// Moves up to `most` queued frames into `out` (as `item` makes them of each frame and
/// its lane), in order, and wakes whoever waits for the queue to drain (a replay).
fn move_frames<T>(q: &mut Queue, out: &mut Vec<T>, most: usize, item: impl Fn(Bytes, Lane) -> T) {
    let take = q.frames.len().min(most);
    if take == 0 {
        return;
    }
    q.batch_unwritten = true;
    let mut taken = 0;
    match &mut q.lanes {
        Some(lanes) => {
            for (frame, lane) in q.frames.drain(..take).zip(lanes.drain(..take)) {
                taken += frame.len();
                out.push(item(frame, lane));
            }
        }
        None => {
            for frame in q.frames.drain(..take) {
                taken += frame.len();
                out.push(item(frame, Lane::Control));
            }
        }
    }
    q.bytes -= taken;
    for w in q.drain_watchers.drain(..) {
        w.wake();
    }
}

/// Registers a waiting task once: a task that polls again replaces nothing and adds
/// nothing, so the list stays as short as the number of distinct waiting tasks.
fn watch(watchers: &mut Vec<Waker>, waker: &Waker) {
    if !watchers.iter().any(|w| w.will_wake(waker)) {
        watchers.push(waker.clone());
    }
}

fn wake_all(q: &mut Queue) {
    if let Some(w) = q.writer.take() {
        w.wake();
    }
    if let Some(w) = q.abort_watcher.take() {
        w.wake();
    }
    for w in q.state_watchers.drain(..).chain(q.drain_watchers.drain(..)) {
        w.wake();
    }
}

/// Writes queued frames to the socket until the queue closes or the socket fails. A hot
/// socket on a busy shard waits for the pacer's tick first (see `pacing.rs`), unless a
/// reply is among its frames.
///
/// Spawned once per socket, so it takes its handles by value (`Arc`, `Rc`; a reference or
/// an `Rc` in tests): a wrapping `async move` block would hold them twice, and an idle
/// connection's memory is mostly its tasks.
pub async fn run_writer<W: AsyncWriteRent>(
    mut socket: W,
    outbound: Outbound,
    metrics: impl Deref<Target = crate::metrics::Metrics>,
    pacer: impl Deref<Target = WritePacer>,
    reset: SocketReset,
) {
    // One batch for the socket's life: its vectors keep their capacity between writes.
    let mut batch = FrameBatch { frames: Vec::new(), iovecs: Vec::new() };
    // The previous batch, for pacing (recorded only while the shard paces).
    let mut previous_batch = None;
    while outbound.next_batch(&mut batch).await {
        let urgent = outbound.take_urgent();
        if !urgent && pacer.should_wait(previous_batch, batch.frames.len()) {
            // Until the next tick, or a reply comes in: a client waits for that.
            pacer.next_tick_or(|cx| outbound.poll_reply(cx)).await;
            outbound.top_up(&mut batch);
            crate::metrics::Metrics::inc(&metrics.paced_writes);
        }
        previous_batch = pacer.record(batch.frames.len());
        loop {
            // One frame (the common case below saturation) goes out as a plain send: on
            // io_uring that skips the iovec import of a vectored write.
            let result = if let [frame] = batch.frames.as_slice() {
                match outbound.unless_aborted(socket.write(frame.clone())).await {
                    Some((result, _)) => result,
                    None => return reset.reset(socket),
                }
            } else {
                match outbound.unless_aborted(socket.writev(batch.with_iovecs())).await {
                    Some((result, returned)) => {
                        batch = returned;
                        result
                    }
                    None => return reset.reset(socket),
                }
            };
            crate::metrics::Metrics::inc(&metrics.socket_writes);
            match result {
                Ok(0) | Err(_) => {
                    outbound.finish();
                    return;
                }
                Ok(written) => {
                    let done = batch.advance(written);
                    outbound.wrote(done);
                    if done {
                        break;
                    }
                }
            }
        }
    }
    if outbound.is_finished() {
        // Aborted while it waited for frames: the peer is gone or will not read.
        return reset.reset(socket);
    }
    // Over TLS a shutdown writes a close_notify, which a peer that stopped reading would
    // never take.
    if outbound.unless_aborted(socket.shutdown()).await.is_none() {
        return reset.reset(socket);
    }
    outbound.finish();
}

/// Frames handed to one `writev`, with the iovecs that point into them. The batch owns
/// the frames, so the pointers stay valid for as long as the kernel may read them.
struct FrameBatch {
    frames: Vec<Bytes>,
    /// Built right before each vectored write (a lone frame is sent without it).
    iovecs: Vec<libc::iovec>,
}

impl FrameBatch {
    #[cfg(test)]
    fn new(frames: Vec<Bytes>) -> Self {
        FrameBatch { frames, iovecs: Vec::new() }
    }

    /// The batch with its iovecs built, ready for `writev`.
    fn with_iovecs(mut self) -> Self {
        self.rebuild();
        self
    }

    fn rebuild(&mut self) {
        self.iovecs.clear();
        self.iovecs.extend(
            self.frames
                .iter()
                .map(|f| libc::iovec { iov_base: f.as_ptr() as *mut libc::c_void, iov_len: f.len() }),
        );
    }

    /// Drops `written` bytes from the front; returns true when nothing is left.
    fn advance(&mut self, mut written: usize) -> bool {
        let mut done = 0;
        for frame in &mut self.frames {
            if written >= frame.len() {
                written -= frame.len();
                done += 1;
            } else {
                *frame = frame.slice(written..);
                break;
            }
        }
        self.frames.drain(..done);
        // The iovecs may point into frames just dropped: none until the next write builds
        // them again.
        self.iovecs.clear();
        self.frames.is_empty()
    }
}

// SAFETY: a batch reaches `writev` only through `with_iovecs`, so `iovecs` then describes
// exactly `frames`; between writes it is empty or describes frames the batch still owns
// (`advance`, which drops frames, clears it). Each iovec points into the data of a `Bytes`
// that the batch owns and never mutates, not into the `Bytes` handle, so moving the batch
// moves no pointed-to byte; and neither vector is touched while the runtime holds the
// batch for an in-flight write, so the pointer and length returned here stay valid and
// stable for the whole operation.
#[expect(unsafe_code, reason = "io_uring needs iovecs that point into buffers the operation owns")]
unsafe impl IoVecBuf for FrameBatch {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        self.iovecs.as_ptr()
    }

    fn read_iovec_len(&self) -> usize {
        self.iovecs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_closes_with_1013_and_drops_the_backlog() {
        let out = Outbound::new(10);
        assert_eq!(out.push(Bytes::from_static(b"12345"), Lane::Control), Pushed::Queued);
        assert_eq!(out.push(Bytes::from_static(b"123456"), Lane::Control), Pushed::Overflow);
        assert!(!out.is_open());
        let q = out.0.borrow();
        assert_eq!(q.frames.len(), 1);
        assert_eq!(&q.frames[0][2..4], &1013u16.to_be_bytes());
    }

    /// A big frame alone in its batch goes out as a plain send; the peer reads slowly, so
    /// the kernel takes it in several partial writes, and more frames queue meanwhile (the
    /// next batch, a vectored write). Everything must arrive whole and in order, then the
    /// close frame, then the end of the stream.
    #[test]
    fn frames_arrive_whole_and_in_order_through_partial_writes() {
        use std::io::Read as _;
        use std::sync::atomic::Ordering;

        let mut runtime =
            monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build().expect("runtime");
        runtime.block_on(async {
            let listener = monoio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("address");
            let reader = std::thread::spawn(move || {
                let mut peer = std::net::TcpStream::connect(addr).expect("connect");
                std::thread::sleep(std::time::Duration::from_millis(50));
                let mut all = Vec::new();
                peer.read_to_end(&mut all).expect("read");
                all
            });
            let (stream, _) = listener.accept().await.expect("accept");
            let big: Vec<u8> = (0..8 << 20).map(|i| (i % 251) as u8).collect();
            let out = Outbound::new(64 << 20);
            assert_eq!(out.push(Bytes::from(big.clone()), Lane::Control), Pushed::Queued);
            let metrics = crate::metrics::Metrics::default();
            // The rest is queued while the big frame's first batch is still being written.
            let more = async {
                monoio::time::sleep(std::time::Duration::from_millis(20)).await;
                assert_eq!(out.push(Bytes::from_static(b"tail"), Lane::Control), Pushed::Queued);
                out.close(CloseCode::Normal, "bye");
            };
            let pacer = WritePacer::new(std::time::Duration::ZERO);
            monoio::join!(
                run_writer(stream, out.clone(), &metrics, pacer.clone(), SocketReset::none()),
                more
            );

            let got = reader.join().expect("reader thread");
            assert_eq!(got.len(), big.len() + 4 + close_frame(CloseCode::Normal, "bye").len());
            assert!(got[..big.len()] == big[..], "the big frame arrived altered");
            assert_eq!(&got[big.len()..big.len() + 4], b"tail");
            assert_eq!(&got[big.len() + 4..], &close_frame(CloseCode::Normal, "bye")[..]);
            assert!(metrics.socket_writes.load(Ordering::Relaxed) > 2, "no partial write was exercised");
        });
    }

    /// Several large frames in one vectored write that the kernel takes only in part: the
    /// rest goes out from where it stopped, rebuilt for each write.
    #[test]
    fn a_vectored_write_taken_in_part_resumes_where_it_stopped() {
        use std::io::Read as _;

        let mut runtime =
            monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build().expect("runtime");
        runtime.block_on(async {
            let listener = monoio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("address");
            let reader = std::thread::spawn(move || {
                let mut peer = std::net::TcpStream::connect(addr).expect("connect");
                std::thread::sleep(std::time::Duration::from_millis(50));
                let mut all = Vec::new();
                peer.read_to_end(&mut all).expect("read");
                all
            });
            let (stream, _) = listener.accept().await.expect("accept");
            let out = Outbound::new(64 << 20);
            let mut expected = Vec::new();
            // Queued before the writer starts, so its first write is one writev of them all.
            for (i, size) in [3 << 20, 5 << 20, 1, 4 << 20].into_iter().enumerate() {
                let frame: Vec<u8> = (0..size).map(|b| ((b + i * 7) % 253) as u8).collect();
                expected.extend_from_slice(&frame);
                assert_eq!(out.push(Bytes::from(frame), Lane::Control), Pushed::Queued);
            }
            out.close(CloseCode::Normal, "");
            expected.extend_from_slice(&close_frame(CloseCode::Normal, ""));
            let metrics = crate::metrics::Metrics::default();
            run_writer(
                stream,
                out.clone(),
                &metrics,
                WritePacer::new(std::time::Duration::ZERO),
                SocketReset::none(),
            )
            .await;
            let got = reader.join().expect("reader thread");
            assert_eq!(got.len(), expected.len());
            assert!(got == expected, "the frames arrived altered");
            let writes = metrics.socket_writes.load(std::sync::atomic::Ordering::Relaxed);
            assert!(writes > 1, "the kernel took 12 MiB in one write: nothing was resumed");
        });
    }

    /// On a busy shard, a frame for a socket that had one a moment ago waits for the
    /// pacing tick, and goes out together with what was queued meanwhile; a reply, or a
    /// lone frame a tick after a lone one, does not wait, and a reply queued behind a
    /// waiting frame ends the wait.
    #[test]
    fn a_hot_socket_on_a_busy_shard_waits_for_the_tick() {
        use std::io::Read as _;
        use std::sync::atomic::Ordering;
        use std::time::Duration;

        let mut runtime =
            monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build().expect("runtime");
        runtime.block_on(async {
            let listener = monoio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("address");
            let mut peer = std::net::TcpStream::connect(addr).expect("connect");
            let (stream, _) = listener.accept().await.expect("accept");
            // A pacer whose loop looks busy; its ticks are driven by hand below.
            let pacer = WritePacer::new(Duration::from_millis(50));
            while !pacer.is_active() {
                pacer.on_tick(1.0, Duration::from_millis(50));
            }
            let metrics = crate::metrics::Metrics::default();
            let out = Outbound::new(1 << 20);
            let script = async {
                out.push(Bytes::from_static(b"a"), Lane::Control);
                monoio::time::sleep(Duration::from_millis(5)).await;
                // Written at once: the socket's first write.
                assert_eq!(metrics.socket_writes.load(Ordering::Relaxed), 1);
                out.push(Bytes::from_static(b"b"), Lane::Control);
                monoio::time::sleep(Duration::from_millis(5)).await;
                out.push(Bytes::from_static(b"c"), Lane::Control);
                monoio::time::sleep(Duration::from_millis(5)).await;
                assert_eq!(metrics.socket_writes.load(Ordering::Relaxed), 1, "b was not held");
                pacer.on_tick(1.0, Duration::from_millis(50));
                monoio::time::sleep(Duration::from_millis(5)).await;
                assert_eq!(metrics.socket_writes.load(Ordering::Relaxed), 2, "b and c in one write");
                assert_eq!(metrics.paced_writes.load(Ordering::Relaxed), 1);
                // A reply is written at once, busy shard and hot socket or not.
                out.push_reply(Bytes::from_static(b"d"));
                monoio::time::sleep(Duration::from_millis(5)).await;
                assert_eq!(metrics.socket_writes.load(Ordering::Relaxed), 3, "the reply was held");
                assert_eq!(metrics.paced_writes.load(Ordering::Relaxed), 1);
                // A lone frame a tick after the last lone one is not held.
                pacer.on_tick(1.0, Duration::from_millis(50));
                out.push(Bytes::from_static(b"e"), Lane::Control);
                monoio::time::sleep(Duration::from_millis(5)).await;
                assert_eq!(metrics.socket_writes.load(Ordering::Relaxed), 4, "a lukewarm socket was held");
                assert_eq!(metrics.paced_writes.load(Ordering::Relaxed), 1);
                // A reply that comes in while a frame waits for the tick takes it along at
                // once.
                out.push(Bytes::from_static(b"f"), Lane::Control);
                monoio::time::sleep(Duration::from_millis(5)).await;
                assert_eq!(metrics.socket_writes.load(Ordering::Relaxed), 4, "f was not held");
                out.push_reply(Bytes::from_static(b"g"));
                monoio::time::sleep(Duration::from_millis(5)).await;
                assert_eq!(metrics.socket_writes.load(Ordering::Relaxed), 5, "the reply waited for the tick");
                assert_eq!(metrics.paced_writes.load(Ordering::Relaxed), 2);
                // Closing is not held: the close frame goes out without a tick.
                out.close(CloseCode::Normal, "");
            };
            monoio::join!(
                run_writer(stream, out.clone(), &metrics, pacer.clone(), SocketReset::none()),
                script
            );
            let mut got = Vec::new();
            peer.read_to_end(&mut got).expect("read");
            assert!(got.starts_with(b"abcdefg"), "{got:?}");
        });
    }

    #[test]
    fn a_quic_queue_keeps_each_frames_lane_and_a_websocket_queue_keeps_none() {
        use super::super::lane::RoomKey;
        let mut cx = Context::from_waker(Waker::noop());
        let quic = Outbound::for_quic(1 << 10);
        assert!(quic.keeps_lanes());
        quic.push(Bytes::from_static(b"m"), Lane::Room(RoomKey(1)));
        quic.push_reply(Bytes::from_static(b"r"));
        quic.push(Bytes::from_static(b"t"), Lane::Datagram(RoomKey(2)));
        let mut taken = Vec::new();
        {
            let mut take = std::pin::pin!(quic.take_lane_frames(&mut taken));
            assert_eq!(take.as_mut().poll(&mut cx), Poll::Ready(true));
        }
        assert_eq!(
            taken,
            vec![
                (Lane::Room(RoomKey(1)), Bytes::from_static(b"m")),
                (Lane::Control, Bytes::from_static(b"r")),
                (Lane::Datagram(RoomKey(2)), Bytes::from_static(b"t")),
            ]
        );
        // Dropped on close_now with the frames, so the two stay in step.
        quic.push(Bytes::from_static(b"x"), Lane::Room(RoomKey(3)));
        quic.close_now(CloseCode::TryAgainLater, "slow");
        assert!(quic.0.borrow().lanes.as_ref().is_some_and(VecDeque::is_empty));

        let ws = Outbound::new(1 << 10);
        assert!(!ws.keeps_lanes());
        ws.push(Bytes::from_static(b"m"), Lane::Room(RoomKey(1)));
        assert!(ws.0.borrow().lanes.is_none());
    }

    #[test]
    fn batches_advance_through_partial_writes() {
        let mut batch = FrameBatch::new(vec![Bytes::from_static(b"abc"), Bytes::from_static(b"defg")]);
        assert!(!batch.advance(4));
        assert_eq!(batch.frames, vec![Bytes::from_static(b"efg")]);
        batch.rebuild();
        assert_eq!(batch.iovecs.len(), 1);
        assert_eq!(batch.iovecs[0].iov_len, 3);
        assert!(batch.advance(3));
    }
}
