//! The Palaver session on a QUIC connection (ALPN `palaver/1` or `palaver/1+json`), on
//! the shard that owns the connection. The client's bidirectional stream (the control
//! stream) carries its frames, each behind a `u32` little-endian length; a frame is
//! handled exactly like a WebSocket data message ([`socket::on_payload`]), a client
//! datagram as a `typing` op answered on no stream ([`socket::on_datagram`]). The
//! connection's outbound queue is written straight into the connection, each frame
//! where the stream plan puts it by its lane ([`crate::io::stream_plan`]: the control
//! stream, its room's own unidirectional stream, or a datagram), each stream by its own
//! task so a stalled room holds up no other. The queue keeps its byte bound (bytes the
//! stream tasks hold count against it), so a QUIC peer that stops reading any stream is
//! closed as a slow consumer (1013) like a WebSocket one.

use std::cell::Cell;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf as _, Bytes, BytesMut};
use palaver_core::Session;
use palaver_protocol::Codec;
use quinn_proto::StreamId;

use super::socket;
use crate::clock::now_ms;
use crate::io::lane::Lane;
use crate::io::outbound::Outbound;
use crate::io::stream_plan::{Route, StreamPlan};
use crate::io::wire::Wire;
use crate::metrics::Metrics;
use crate::quic::{CLOSE_LINGER, QuicConnection, app_code};
use crate::shard::Shard;
use crate::ws::CloseCode;

/// Most bytes taken from the stream per read.
const READ_CHUNK: usize = 64 * 1024;
/// The application error code of a stream the session refuses (a second bidirectional
/// stream, or a unidirectional one): 1008, as the policy close.
const STREAM_REFUSED: u32 = 1008;

/// Starts the session of a connection whose handshake chose `codec`.
pub fn serve(shard: &Rc<Shard>, connection: QuicConnection, codec: Codec) {
    monoio::spawn(run(shard.clone(), connection, codec));
}

/// What the stream's bytes make.
#[derive(Debug, PartialEq, Eq)]
enum Framed {
    /// One payload, without its length prefix.
    Frame(Bytes),
    /// A length prefix above the limit (the connection ends with 1009).
    TooLarge(u32),
}

/// Splits a stream into length-prefixed frames (pure: bytes in, frames out).
#[derive(Debug)]
struct FrameReader {
    buffer: BytesMut,
    max_frame_bytes: usize,
}

impl FrameReader {
    fn new(max_frame_bytes: usize) -> Self {
        Self { buffer: BytesMut::new(), max_frame_bytes }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole frame, if the bytes so far hold one.
    fn next_frame(&mut self) -> Option<Framed> {
        let prefix: [u8; 4] = self.buffer.get(..4)?.try_into().ok()?;
        let len = u32::from_le_bytes(prefix);
        let Some(size) = usize::try_from(len).ok().filter(|&l| l <= self.max_frame_bytes) else {
            return Some(Framed::TooLarge(len));
        };
        if self.buffer.len() < 4 + size {
            self.buffer.reserve(4 + size - self.buffer.len());
            return None;
        }
        self.buffer.advance(4);
        Some(Framed::Frame(self.buffer.split_to(size).freeze()))
    }
}

/// Runs one session: waits for the client's stream (within the authentication
/// deadline), then reads frames until either side ends it.
async fn run(shard: Rc<Shard>, connection: QuicConnection, codec: Codec) {
    let shared = shard.shared.clone();
    let metrics = &shared.metrics;
    let auth_deadline = Duration::from_millis(shared.config.session.auth_deadline_ms);
    // The stream must come within the authentication deadline (the auth frame on it
    // then has what is left of it, counted by the session).
    let stream = monoio::select! {
        stream = connection.accept_bi() => stream,
        () = monoio::time::sleep(auth_deadline) => {
            connection.close(app_code(CloseCode::Policy), "authentication deadline passed");
            None
        }
    };
    let Some(stream) = stream else { return };
    monoio::spawn(refuse_the_rest(connection.clone(), metrics.clone()));
    run_stream(shard, connection, stream, codec, Carrier::Quic).await;
}

/// What carries the session: a raw QUIC connection, or a WebTransport session (HTTP/3)
/// on one, whose streams and datagrams name the session first.
#[derive(Debug, Clone, Copy)]
pub(super) enum Carrier {
    /// ALPN `palaver/1` or `palaver/1+json`: the connection is the session.
    Quic,
    /// ALPN `h3`: the session of this CONNECT stream.
    WebTransport {
        /// The session's CONNECT stream (its id is the session id).
        connect_stream: StreamId,
    },
}

impl Carrier {
    fn session_id(self) -> Option<u64> {
        match self {
            Carrier::Quic => None,
            Carrier::WebTransport { connect_stream } => Some(u64::from(connect_stream)),
        }
    }

    /// What a server-opened unidirectional stream starts with (WebTransport's stream
    /// header: type `0x54` and the session id).
    fn uni_stream_header(self) -> Option<Bytes> {
        self.session_id().map(|id| Bytes::from(crate::webtransport::wire::webtransport_uni_stream_header(id)))
    }

    /// A datagram carrying `payload` (after the session's quarter stream id over
    /// WebTransport).
    fn datagram(self, payload: Bytes) -> Bytes {
        match self.session_id() {
            None => payload,
            Some(id) => {
                let mut datagram = crate::webtransport::wire::datagram_prefix(id);
                datagram.extend_from_slice(&payload);
                Bytes::from(datagram)
            }
        }
    }

    /// The largest payload a datagram takes, given QUIC's limit.
    fn max_datagram_payload(self, max_datagram: Option<usize>) -> Option<usize> {
        let prefix = self.session_id().map_or(0, |id| crate::webtransport::wire::datagram_prefix(id).len());
        max_datagram.and_then(|max| max.checked_sub(prefix))
    }

    /// The payload of a datagram from the client; `None` for one of another session or
    /// too short to name one (dropped).
    fn datagram_payload(self, datagram: Bytes) -> Option<Bytes> {
        match self.session_id() {
            None => Some(datagram),
            Some(id) => {
                let (session, payload) = crate::webtransport::wire::read_datagram(&datagram)?;
                (session == id).then(|| datagram.slice(datagram.len() - payload.len()..))
            }
        }
    }
}

/// Runs a session on `stream`, the client's stream of requests: until either side ends
/// it.
pub(super) async fn run_stream(
    shard: Rc<Shard>,
    connection: QuicConnection,
    stream: StreamId,
    codec: Codec,
    carrier: Carrier,
) {
    let shared = shard.shared.clone();
    let metrics = &shared.metrics;
    if shard.draining.get() {
        connection.close(app_code(CloseCode::GoingAway), "server is shutting down");
        return;
    }

    let outbound = Outbound::for_quic(shared.config.outbound_queue_bytes);
    let session = Session::new(shared.config.session, now_ms());
    let conn = shard.conns.insert(Wire::Quic(codec), outbound.clone(), session, now_ms());
    metrics.connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Metrics::inc(&metrics.connections_total);
    let unsent_limit = shared.config.outbound_queue_bytes;
    monoio::spawn(write_frames(connection.clone(), stream, outbound.clone(), unsent_limit, carrier));

    let mut frames = FrameReader::new(shared.config.max_frame_bytes);
    'session: loop {
        while let Some(framed) = frames.next_frame() {
            match framed {
                Framed::Frame(bytes) => {
                    Metrics::inc(&metrics.frames_in);
                    conn.last_heard_ms.set(now_ms());
                    if !socket::on_payload(&shard, &conn, &bytes) {
                        break 'session;
                    }
                }
                Framed::TooLarge(len) => {
                    let limit = shared.config.max_frame_bytes;
                    outbound.close(
                        CloseCode::TooBig,
                        &format!("frame of {len} bytes exceeds the limit of {limit}"),
                    );
                    break 'session;
                }
            }
        }
        if !outbound.is_open() {
            break;
        }
        let deadline = if conn.user().is_none() {
            let left = conn.session.borrow().auth_deadline_ms().saturating_sub(now_ms());
            Some(Duration::from_millis(left))
        } else {
            None
        };
        let read = monoio::select! {
            read = connection.read(stream, READ_CHUNK) => read,
            datagram = connection.recv_datagram() => {
                // `None`: the connection is closing (here, perhaps, by another task: a
                // WebTransport session's end), and stays so: end the session rather
                // than wait on a read that may never fail.
                let Some(datagram) = datagram else {
                    outbound.close(CloseCode::Normal, "");
                    break;
                };
                if let Some(datagram) = carrier.datagram_payload(datagram) {
                    Metrics::inc(&metrics.frames_in);
                    conn.last_heard_ms.set(now_ms());
                    socket::on_datagram(&shard, &conn, &datagram);
                }
                continue;
            }
            () = outbound.closed() => break,
            () = sleep_or_forever(deadline) => {
                outbound.close(CloseCode::Policy, "authentication deadline passed");
                break;
            }
        };
        match read {
            Ok(Some(bytes)) => frames.push(&bytes),
            // The client finished its stream, reset it, or the connection ended.
            Ok(None) | Err(_) => {
                outbound.close(CloseCode::Normal, "");
                break;
            }
        }
    }
    socket::end_session(&shard, &conn).await;
}

/// The writer of a session: takes queued frames with their lanes and hands each to the
/// stream the plan chooses (or sends it as a datagram); every stream has its own writer
/// task, waiting for the peer's flow control on that stream only. What the tasks hold
/// counts against `unsent_limit`: past it no more is taken, so frames wait in the
/// byte-bounded queue, which closes a peer that stops reading any stream as a slow
/// consumer. Then the close: every stream is finished once written, the peer has
/// [`CLOSE_LINGER`] to take it all, and the connection is closed with the code.
async fn write_frames(
    connection: QuicConnection,
    control: StreamId,
    outbound: Outbound,
    unsent_limit: usize,
    carrier: Carrier,
) {
    let unsent = Rc::new(Unsent::default());
    let mut streams = Streams {
        plan: StreamPlan::default(),
        control: StreamWriter::spawn(&connection, control, &outbound, &unsent),
        rooms: Vec::new(),
        carrier,
    };
    let mut frames = Vec::new();
    while outbound.take_lane_frames(&mut frames).await {
        let max_datagram = carrier.max_datagram_payload(connection.max_datagram_size());
        for (lane, frame) in frames.drain(..) {
            streams.write(&connection, &outbound, &unsent, lane, frame, max_datagram);
        }
        monoio::select! {
            () = unsent.below(unsent_limit) => {},
            () = outbound.closed() => {},
        }
    }
    let closing = outbound.close_reason();
    // Each task writes what it holds (within the linger once the queue is closing),
    // finishes its stream and waits for the peer to acknowledge it.
    for task in streams.finish() {
        task.await;
    }
    match (closing, carrier) {
        (Some((code, reason)), Carrier::Quic) => connection.close(app_code(code), &reason),
        (Some((code, reason)), Carrier::WebTransport { connect_stream }) => {
            super::webtransport_session::close_session(
                &connection,
                connect_stream,
                code.code().into(),
                &reason,
                CLOSE_LINGER,
            )
            .await;
        }
        // The peer is gone (or stopped a stream): nothing more to say.
        (None, _) => connection.close(app_code(CloseCode::Normal), ""),
    }
    outbound.finish();
}

/// Bytes handed to stream writers and not yet taken by QUIC.
#[derive(Default)]
struct Unsent {
    bytes: Cell<usize>,
    waiter: Cell<Option<Waker>>,
}

impl Unsent {
    fn add(&self, bytes: usize) {
        self.bytes.set(self.bytes.get() + bytes);
    }

    fn taken(&self, bytes: usize) {
        self.bytes.set(self.bytes.get().saturating_sub(bytes));
        if let Some(waker) = self.waiter.take() {
            waker.wake();
        }
    }

    /// Waits until at most `limit` bytes are unsent (one waiter: the session's writer).
    async fn below(&self, limit: usize) {
        poll_fn(|cx| {
            if self.bytes.get() <= limit {
                Poll::Ready(())
            } else {
                self.waiter.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await;
    }
}

/// One connection's streams: the client's bidirectional one and the room streams the
/// session opened, in the order the plan numbers them.
struct Streams {
    plan: StreamPlan,
    control: StreamWriter,
    rooms: Vec<StreamWriter>,
    carrier: Carrier,
}

impl Streams {
    fn write(
        &mut self,
        connection: &QuicConnection,
        outbound: &Outbound,
        unsent: &Rc<Unsent>,
        lane: Lane,
        frame: Bytes,
        max_datagram: Option<usize>,
    ) {
        let payload_len = frame.len().saturating_sub(4);
        let mut route = self.plan.route(lane, payload_len, max_datagram);
        if let Route::Open(room) = route {
            route = match connection.open_uni() {
                Some(stream) => {
                    let writer = StreamWriter::spawn(connection, stream, outbound, unsent);
                    if let Some(header) = self.carrier.uni_stream_header() {
                        writer.write(unsent, header);
                    }
                    self.rooms.push(writer);
                    Route::Stream(self.plan.opened(room))
                }
                // No credit for another stream: the room shares one.
                None => self.plan.refused(room),
            };
        }
        match route {
            Route::Control | Route::Open(_) => self.control.write(unsent, frame),
            Route::Stream(n) => match self.rooms.get(n) {
                Some(stream) => stream.write(unsent, frame),
                None => self.control.write(unsent, frame),
            },
            // Unreliable by design: a datagram QUIC cannot take now is dropped.
            Route::Datagram => {
                let _ = connection.send_datagram(self.carrier.datagram(frame.slice(4..)));
            }
        }
    }

    /// Lets every stream's task write what it holds and finish; their handles.
    fn finish(self) -> Vec<monoio::task::JoinHandle<()>> {
        std::iter::once(self.control).chain(self.rooms).map(StreamWriter::finish).collect()
    }
}

/// A stream's writer task and the frames waiting for it.
struct StreamWriter {
    frames: flume::Sender<Bytes>,
    task: monoio::task::JoinHandle<()>,
}

impl StreamWriter {
    fn spawn(
        connection: &QuicConnection,
        stream: StreamId,
        outbound: &Outbound,
        unsent: &Rc<Unsent>,
    ) -> Self {
        let (frames, queued) = flume::unbounded();
        let task =
            monoio::spawn(write_stream(connection.clone(), stream, queued, outbound.clone(), unsent.clone()));
        StreamWriter { frames, task }
    }

    fn write(&self, unsent: &Unsent, frame: Bytes) {
        unsent.add(frame.len());
        if let Err(refused) = self.frames.send(frame) {
            // The stream failed (the session is ending): nothing will take it.
            unsent.taken(refused.0.len());
        }
    }

    fn finish(self) -> monoio::task::JoinHandle<()> {
        drop(self.frames);
        self.task
    }
}

/// Writes one stream's frames in order; once its sender is dropped (the session is
/// closing), finishes the stream and waits (at most [`CLOSE_LINGER`]) until the peer
/// has acknowledged everything on it. A stream that fails ends the session.
async fn write_stream(
    connection: QuicConnection,
    stream: StreamId,
    frames: flume::Receiver<Bytes>,
    outbound: Outbound,
    unsent: Rc<Unsent>,
) {
    let mut linger_until = None;
    while let Ok(frame) = frames.recv_async().await {
        let written = write_frame(&connection, stream, &frame, &outbound, &mut linger_until).await;
        unsent.taken(frame.len());
        if !written {
            // What is left is never sent.
            for frame in frames.drain() {
                unsent.taken(frame.len());
            }
            return;
        }
    }
    connection.finish(stream);
    let until = linger_until.unwrap_or_else(|| Instant::now() + CLOSE_LINGER);
    monoio::select! {
        _ = connection.acknowledged(stream) => {},
        () = monoio::time::sleep(until.saturating_duration_since(Instant::now())) => {},
    }
}

/// Writes one frame, waiting for credit; false when the stream or connection failed, or
/// the queue closed and the linger after it ran out with the frame still unwritten.
async fn write_frame(
    connection: &QuicConnection,
    stream: StreamId,
    frame: &Bytes,
    outbound: &Outbound,
    linger_until: &mut Option<Instant>,
) -> bool {
    let mut written = 0;
    while written < frame.len() {
        match connection.try_write(stream, &frame[written..]) {
            Ok(0) => {}
            Ok(n) => {
                written += n;
                continue;
            }
            Err(_) => {
                outbound.abort();
                return false;
            }
        }
        // No credit: wait for it; once the queue is closing, for at most the linger.
        if outbound.is_open() {
            monoio::select! {
                ready = connection.writable(stream) => if ready.is_err() {
                    outbound.abort();
                    return false;
                },
                () = outbound.closed() => {},
            }
        } else {
            let until = *linger_until.get_or_insert_with(|| Instant::now() + CLOSE_LINGER);
            monoio::select! {
                ready = connection.writable(stream) => if ready.is_err() {
                    return false;
                },
                () = monoio::time::sleep(until.saturating_duration_since(Instant::now())) => return false,
            }
        }
    }
    true
}

/// What the session does not take: any stream after its one bidirectional stream, and
/// every unidirectional one, is stopped (and a bidirectional one reset) at once, and
/// counted (QUIC's stream limits bound how many can be open at a time). (Datagrams are
/// the session's: `typing` ops.)
async fn refuse_the_rest(connection: QuicConnection, metrics: std::sync::Arc<Metrics>) {
    loop {
        let stream = monoio::select! {
            bi = connection.accept_bi() => bi,
            uni = connection.accept_uni() => uni,
        };
        let Some(stream) = stream else { return };
        Metrics::inc(&metrics.quic_streams_refused);
        connection.stop(stream, STREAM_REFUSED);
        if stream.dir() == quinn_proto::Dir::Bi {
            connection.reset(stream, STREAM_REFUSED);
        }
    }
}

async fn sleep_or_forever(duration: Option<Duration>) {
    match duration {
        Some(d) => monoio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_cut_from_any_split_of_the_stream() {
        let mut stream = Vec::new();
        for payload in [&b"abc"[..], b"", b"hello world"] {
            stream.extend_from_slice(&u32::try_from(payload.len()).expect("small").to_le_bytes());
            stream.extend_from_slice(payload);
        }
        for split in 1..stream.len() {
            let mut reader = FrameReader::new(64);
            let mut got = Vec::new();
            for piece in stream.chunks(split) {
                reader.push(piece);
                while let Some(framed) = reader.next_frame() {
                    got.push(framed);
                }
            }
            let want = [&b"abc"[..], b"", b"hello world"].map(|p| Framed::Frame(Bytes::copy_from_slice(p)));
            assert_eq!(got, want, "split every {split} bytes");
        }
    }

    #[test]
    fn a_length_over_the_limit_is_reported_before_its_bytes_arrive() {
        let mut reader = FrameReader::new(10);
        reader.push(&11u32.to_le_bytes());
        assert_eq!(reader.next_frame(), Some(Framed::TooLarge(11)));
        let mut reader = FrameReader::new(10);
        reader.push(&u32::MAX.to_le_bytes()[..3]);
        assert_eq!(reader.next_frame(), None, "a prefix is four bytes");
        reader.push(&[0xff]);
        assert_eq!(reader.next_frame(), Some(Framed::TooLarge(u32::MAX)));
    }
}
