//! One QUIC connection on its shard: the `quinn_proto::Connection` state machine, the
//! task that drives it (timers, transmits, events), and [`QuicConnection`], the small
//! stream API its application uses: accept the client's streams, open unidirectional
//! ones, write with back-pressure, finish or reset, read, send and receive unreliable
//! datagrams, close.
//!
//! Everything is on the shard's thread: an application call changes the state machine
//! directly and wakes the driver, which transmits what the call made ready. Nothing here
//! knows an application's frames.

use std::cell::{RefCell, RefMut};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use quinn_proto::{ConnectionHandle, Dir, StreamEvent, StreamId, VarInt};
use rustc_hash::FxHashSet;

/// Transmits per driver turn before it lets other tasks run (a connection with much to
/// send must not starve the shard).
const TRANSMITS_PER_TURN: usize = 32;

/// Why a stream (or its connection) can no longer be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The peer asked us to stop sending on it (STOP_SENDING), with this code.
    #[error("the peer stopped the stream with code {0}")]
    Stopped(u64),
    /// The peer abandoned what it was sending on it (RESET_STREAM), with this code.
    #[error("the peer reset the stream with code {0}")]
    Reset(u64),
    /// The stream is finished or unknown, or the connection is closed.
    #[error("the stream or its connection is closed")]
    Closed,
}

/// Why a datagram was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DatagramError {
    /// The peer did not negotiate datagrams (or the connection is closed).
    #[error("datagrams are not available on this connection")]
    Unavailable,
    /// Larger than the path takes ([`QuicConnection::max_datagram_size`]).
    #[error("the datagram is larger than the path takes")]
    TooLarge,
}

pub(super) struct State {
    pub(super) inner: quinn_proto::Connection,
    /// The driver, when it waits.
    driver: Option<Waker>,
    /// Something changed that the driver must act on (a write, a close, a packet).
    dirty: bool,
    /// The application's tasks that wait for something (woken on any change: a
    /// connection has few of them).
    app: Vec<Waker>,
    /// Why the connection ended, once it has.
    pub(super) lost: Option<quinn_proto::ConnectionError>,
    /// Streams whose data the peer has acknowledged in full after a finish.
    acknowledged: FxHashSet<StreamId>,
    /// The driver transmitted since the connection began closing (its close is out).
    pub(super) close_sent: bool,
}

impl State {
    pub(super) fn new(inner: quinn_proto::Connection) -> Self {
        State {
            inner,
            driver: None,
            dirty: true,
            app: Vec::new(),
            lost: None,
            acknowledged: FxHashSet::default(),
            close_sent: false,
        }
    }

    /// Marks work for the driver and wakes it.
    pub(super) fn wake_driver(&mut self) {
        self.dirty = true;
        if let Some(waker) = self.driver.take() {
            waker.wake();
        }
    }

    fn wake_app(&mut self) {
        for waker in self.app.drain(..) {
            waker.wake();
        }
    }

    fn watch(&mut self, cx: &Context<'_>) {
        if !self.app.iter().any(|w| w.will_wake(cx.waker())) {
            self.app.push(cx.waker().clone());
        }
    }
}

/// An application's handle on one connection (cheap to clone; single-threaded).
#[derive(Clone)]
pub struct QuicConnection {
    pub(super) state: Rc<RefCell<State>>,
    pub(super) handle: ConnectionHandle,
}

impl std::fmt::Debug for QuicConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicConnection").field("handle", &self.handle.0).finish_non_exhaustive()
    }
}

impl QuicConnection {
    pub(super) fn state(&self) -> RefMut<'_, State> {
        self.state.borrow_mut()
    }

    /// Runs `change` on the state machine, then wakes the driver to transmit.
    fn change<T>(&self, change: impl FnOnce(&mut quinn_proto::Connection) -> T) -> T {
        let mut state = self.state();
        let out = change(&mut state.inner);
        state.wake_driver();
        out
    }

    /// Polls `ready` (given the state) until it answers, waking on any change.
    async fn until<T>(&self, mut ready: impl FnMut(&mut State) -> Option<T>) -> T {
        poll_fn(|cx| {
            let mut state = self.state();
            match ready(&mut state) {
                Some(out) => Poll::Ready(out),
                None => {
                    state.watch(cx);
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// The ALPN protocol id the handshake settled on.
    pub fn alpn(&self) -> Option<Vec<u8>> {
        let state = self.state.borrow();
        let data = state.inner.crypto_session().handshake_data()?;
        data.downcast::<quinn_proto::crypto::rustls::HandshakeData>().ok()?.protocol
    }

    /// The peer's current address.
    pub fn remote_address(&self) -> SocketAddr {
        self.state.borrow().inner.remote_address()
    }

    /// Whether the connection has ended or is closing.
    pub fn is_closed(&self) -> bool {
        let state = self.state.borrow();
        state.lost.is_some() || state.inner.is_closed()
    }

    /// The next bidirectional stream the peer opened; `None` once the connection ended.
    pub async fn accept_bi(&self) -> Option<StreamId> {
        self.until(|state| {
            if let Some(id) = state.inner.streams().accept(Dir::Bi) {
                state.wake_driver();
                return Some(Some(id));
            }
            (state.lost.is_some() || state.inner.is_closed()).then_some(None)
        })
        .await
    }

    /// The next unidirectional stream the peer opened; `None` once the connection ended.
    pub async fn accept_uni(&self) -> Option<StreamId> {
        self.until(|state| {
            if let Some(id) = state.inner.streams().accept(Dir::Uni) {
                state.wake_driver();
                return Some(Some(id));
            }
            (state.lost.is_some() || state.inner.is_closed()).then_some(None)
        })
        .await
    }

    /// Sets how many streams of `dir` the peer may have open at once (an application
    /// that needs more than the transport parameters grant raises it; the peer learns
    /// it by a MAX_STREAMS frame).
    pub fn set_max_concurrent_streams(&self, dir: Dir, count: u32) {
        self.change(|inner| inner.set_max_concurrent_streams(dir, VarInt::from_u32(count)));
    }

    /// Opens a unidirectional stream to the peer; `None` without credit for one now (the
    /// peer's limit of concurrent streams) or once closed.
    pub fn open_uni(&self) -> Option<StreamId> {
        self.change(|inner| inner.streams().open(Dir::Uni))
    }

    /// Writes what the stream's and the connection's flow control take now from `data`:
    /// the number of bytes taken, 0 when there is no credit ([`Self::writable`] waits
    /// for it).
    pub fn try_write(&self, stream: StreamId, data: &[u8]) -> Result<usize, StreamError> {
        let mut state = self.state();
        if state.lost.is_some() || state.inner.is_closed() {
            return Err(StreamError::Closed);
        }
        let out = match state.inner.send_stream(stream).write(data) {
            Ok(n) => Ok(n),
            Err(quinn_proto::WriteError::Blocked) => Ok(0),
            Err(quinn_proto::WriteError::Stopped(code)) => Err(StreamError::Stopped(code.into_inner())),
            Err(quinn_proto::WriteError::ClosedStream) => Err(StreamError::Closed),
        };
        if matches!(out, Ok(n) if n > 0) {
            state.wake_driver();
        }
        out
    }

    /// Waits until `stream` may take more bytes (or fails as a write would).
    pub async fn writable(&self, stream: StreamId) -> Result<(), StreamError> {
        self.until(|state| {
            if state.lost.is_some() {
                return Some(Err(StreamError::Closed));
            }
            if state.inner.is_closed() {
                return Some(Err(StreamError::Closed));
            }
            // A zero-length write checks for credit without sending anything (and
            // registers for the Writable event when there is none).
            match state.inner.send_stream(stream).write(&[]) {
                Ok(_) => Some(Ok(())),
                Err(quinn_proto::WriteError::Blocked) => None,
                Err(quinn_proto::WriteError::Stopped(code)) => {
                    Some(Err(StreamError::Stopped(code.into_inner())))
                }
                Err(quinn_proto::WriteError::ClosedStream) => Some(Err(StreamError::Closed)),
            }
        })
        .await
    }

    /// Writes all of `data`, waiting for flow-control credit as needed.
    pub async fn write_all(&self, stream: StreamId, data: &[u8]) -> Result<(), StreamError> {
        let mut written = 0;
        while written < data.len() {
            match self.try_write(stream, &data[written..])? {
                0 => self.writable(stream).await?,
                n => written += n,
            }
        }
        Ok(())
    }

    /// Ends the stream after what was written (the peer reads it to its end).
    pub fn finish(&self, stream: StreamId) {
        self.change(|inner| {
            let _ = inner.send_stream(stream).finish();
        });
    }

    /// Abandons what was written on the stream and not yet delivered (RESET_STREAM).
    pub fn reset(&self, stream: StreamId, code: u32) {
        self.change(|inner| {
            let _ = inner.send_stream(stream).reset(VarInt::from_u32(code));
        });
    }

    /// Asks the peer to stop sending on the stream (STOP_SENDING); what it sent is
    /// discarded.
    pub fn stop(&self, stream: StreamId, code: u32) {
        self.change(|inner| {
            let _ = inner.recv_stream(stream).stop(VarInt::from_u32(code));
        });
    }

    /// Waits until the peer acknowledged everything written on a finished stream; false
    /// when it stopped the stream or the connection ended first.
    pub async fn acknowledged(&self, stream: StreamId) -> bool {
        self.until(|state| {
            if state.acknowledged.remove(&stream) {
                return Some(true);
            }
            if state.lost.is_some() || state.inner.is_closed() {
                return Some(false);
            }
            match state.inner.send_stream(stream).stopped() {
                Ok(Some(_)) | Err(_) => Some(false),
                Ok(None) => None,
            }
        })
        .await
    }

    /// The next bytes of `stream`, at most `max`, in order; `Ok(None)` at its end.
    pub async fn read(&self, stream: StreamId, max: usize) -> Result<Option<Bytes>, StreamError> {
        self.until(|state| {
            if state.lost.is_some() {
                return Some(Err(StreamError::Closed));
            }
            let mut recv = state.inner.recv_stream(stream);
            let mut chunks = match recv.read(true) {
                Ok(chunks) => chunks,
                Err(_) => return Some(Err(StreamError::Closed)),
            };
            let out = match chunks.next(max) {
                Ok(Some(chunk)) => Some(Ok(Some(chunk.bytes))),
                Ok(None) => Some(Ok(None)),
                Err(quinn_proto::ReadError::Blocked) => None,
                Err(quinn_proto::ReadError::Reset(code)) => Some(Err(StreamError::Reset(code.into_inner()))),
            };
            // Reading may have opened flow-control credit worth telling the peer about.
            if chunks.finalize().should_transmit() {
                state.wake_driver();
            }
            out
        })
        .await
    }

    /// Queues an unreliable datagram (RFC 9221); the oldest queued ones are dropped when
    /// the send buffer is full.
    pub fn send_datagram(&self, data: Bytes) -> Result<(), DatagramError> {
        self.change(|inner| match inner.datagrams().send(data, true) {
            Ok(()) => Ok(()),
            Err(quinn_proto::SendDatagramError::TooLarge) => Err(DatagramError::TooLarge),
            Err(_) => Err(DatagramError::Unavailable),
        })
    }

    /// The largest datagram the peer and the path take now (`None`: datagrams are not
    /// available on this connection).
    pub fn max_datagram_size(&self) -> Option<usize> {
        self.state().inner.datagrams().max_size()
    }

    /// The next unreliable datagram from the peer; `None` once the connection ended.
    pub async fn recv_datagram(&self) -> Option<Bytes> {
        self.until(|state| {
            if let Some(datagram) = state.inner.datagrams().recv() {
                return Some(Some(datagram));
            }
            (state.lost.is_some() || state.inner.is_closed()).then_some(None)
        })
        .await
    }

    /// Closes the connection with an application error code and a reason (sent at once;
    /// what was written and not yet delivered is abandoned: wait for
    /// [`Self::acknowledged`] first to deliver it).
    pub fn close(&self, code: VarInt, reason: &str) {
        let mut state = self.state();
        if state.lost.is_none() && !state.inner.is_closed() {
            state.inner.close(Instant::now(), code, Bytes::copy_from_slice(reason.as_bytes()));
        }
        state.wake_driver();
        state.wake_app();
    }

    /// Waits until the connection ended or is closing.
    pub async fn closed(&self) {
        self.until(|state| (state.lost.is_some() || state.inner.is_closed()).then_some(())).await;
    }

    /// Hands a packet the endpoint routed to this connection to the state machine.
    pub(super) fn deliver(&self, event: quinn_proto::ConnectionEvent) {
        let mut state = self.state();
        state.inner.handle_event(event);
        state.wake_driver();
    }
}

/// What a driver turn found among the state machine's events, gathered while the state
/// was borrowed and acted on after.
#[derive(Debug, Default)]
pub(super) struct Turn {
    /// The handshake finished in this turn.
    pub(super) connected: bool,
    /// Some event arrived (the application's waiting tasks were woken).
    pub(super) app_events: bool,
}

/// Moves the state machine's application events to the waiting tasks.
pub(super) fn take_events(state: &mut State) -> Turn {
    let mut turn = Turn::default();
    while let Some(event) = state.inner.poll() {
        turn.app_events = true;
        match event {
            quinn_proto::Event::Connected => turn.connected = true,
            quinn_proto::Event::ConnectionLost { reason } => {
                state.lost = Some(reason);
            }
            quinn_proto::Event::Stream(StreamEvent::Finished { id }) => {
                state.acknowledged.insert(id);
            }
            quinn_proto::Event::HandshakeDataReady
            | quinn_proto::Event::Stream(_)
            | quinn_proto::Event::DatagramReceived
            | quinn_proto::Event::DatagramsUnblocked => {}
        }
    }
    if turn.app_events {
        state.wake_app();
    }
    turn
}

/// Waits until the driver has work: a change ([`State::wake_driver`]) or `deadline`.
pub(super) async fn driver_wait(connection: &QuicConnection, deadline: Option<Instant>) {
    let marked = poll_fn(|cx| {
        let mut state = connection.state();
        if std::mem::take(&mut state.dirty) {
            return Poll::Ready(());
        }
        state.driver = Some(cx.waker().clone());
        Poll::Pending
    });
    match deadline {
        None => marked.await,
        Some(at) => {
            let left = at.saturating_duration_since(Instant::now());
            monoio::select! {
                () = marked => {},
                () = monoio::time::sleep(left) => {},
            }
        }
    }
}

/// Whether a driver turn should give the shard a chance to run other tasks.
pub(super) fn turn_is_long(transmits: usize) -> bool {
    transmits >= TRANSMITS_PER_TURN
}
