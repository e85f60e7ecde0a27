//! The native QUIC transport: quinn + rustls (ring), PROTOCOL.md §7.3. The client opens
//! one bidirectional stream (requests, their replies, events not tied to a room); the
//! server opens a unidirectional stream per room for that room's events, and may send
//! `typing` events as datagrams. Stream frames are behind a `u32` little-endian length;
//! a datagram is one frame. Every stream and the datagrams are read at once by tasks
//! that hand whole frames to one queue, so a room whose stream stalls holds up no other
//! (and reading is cancel-safe: the driver's `recv` only takes from the queue). Across
//! streams there is no order: the core matches replies by request id and applies each
//! room's events by seq.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::quic::QuicOptions;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The ALPN protocol id of Palaver v1 over QUIC.
pub(crate) const ALPN: &[u8] = b"palaver/1";
/// Unidirectional streams the server may open: one per room, up to its 64, with room
/// to spare (the server opens no more than this credit, and shares streams beyond it).
const ROOM_STREAM_CREDIT: u32 = 128;
/// Whole frames read ahead of the driver, from all streams together.
const FRAMES_READ_AHEAD: usize = 256;
/// Datagrams from the server buffered until read (beyond it the oldest are dropped).
const DATAGRAM_RECEIVE_BUFFER_BYTES: usize = 64 * 1024;

fn transport(e: impl std::fmt::Display) -> Error {
    Error::Transport(e.to_string())
}

/// What opens QUIC connections for one client: the TLS and transport configuration.
#[derive(Debug, Clone)]
pub(crate) struct QuicConnector {
    config: quinn::ClientConfig,
    addr: String,
    server_name: String,
}

impl QuicConnector {
    pub(crate) fn new(options: &QuicOptions) -> Result<Self, Error> {
        let mut tls = crate::native_trust::client_config(Some(&options.trust), &[&rustls::version::TLS13])?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(transport)?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        let mut transport_config = quinn::TransportConfig::default();
        let idle = Duration::from_millis(options.idle_timeout_ms.max(300));
        transport_config
            .max_idle_timeout(Some(quinn::IdleTimeout::try_from(idle).map_err(transport)?))
            .keep_alive_interval(Some(idle / 3))
            .max_concurrent_uni_streams(quinn::VarInt::from_u32(ROOM_STREAM_CREDIT))
            .datagram_receive_buffer_size(Some(DATAGRAM_RECEIVE_BUFFER_BYTES));
        config.transport_config(Arc::new(transport_config));
        Ok(QuicConnector { config, addr: options.addr.clone(), server_name: options.server_name() })
    }

    /// Connects and opens the stream.
    pub(crate) async fn connect(&self) -> Result<QuicSocket, Error> {
        let addr: SocketAddr = tokio::net::lookup_host(&self.addr)
            .await
            .map_err(transport)?
            .next()
            .ok_or_else(|| Error::Transport(format!("{} resolves to no address", self.addr)))?;
        let local: SocketAddr = if addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
        let endpoint = quinn::Endpoint::client(local).map_err(transport)?;
        let connection = endpoint
            .connect_with(self.config.clone(), addr, &self.server_name)
            .map_err(transport)?
            .await
            .map_err(transport)?;
        let (send, recv) = connection.open_bi().await.map_err(transport)?;
        Ok(QuicSocket::start(endpoint, connection, send, recv))
    }
}

/// What the reading tasks hand the driver.
enum Incoming {
    Frame(Vec<u8>),
    /// The control stream or the connection ended: `None` when the server closed it
    /// (or finished the stream), else why it failed.
    End(Option<Error>),
}

/// An open QUIC connection: its control stream for writing, and the frames its reading
/// tasks collected from every stream and datagram.
pub(crate) struct QuicSocket {
    /// Kept alive as long as the connection: it owns the UDP socket.
    endpoint: quinn::Endpoint,
    connection: quinn::Connection,
    send: quinn::SendStream,
    incoming: mpsc::Receiver<Incoming>,
    readers: Vec<JoinHandle<()>>,
    ended: bool,
}

impl QuicSocket {
    fn start(
        endpoint: quinn::Endpoint,
        connection: quinn::Connection,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
    ) -> Self {
        let (to_driver, incoming) = mpsc::channel(FRAMES_READ_AHEAD);
        let readers = vec![
            tokio::spawn(read_control(connection.clone(), recv, to_driver.clone())),
            tokio::spawn(accept_room_streams(connection.clone(), to_driver.clone())),
            tokio::spawn(read_datagrams(connection.clone(), to_driver)),
        ];
        QuicSocket { endpoint, connection, send, incoming, readers, ended: false }
    }

    pub(crate) async fn send(&mut self, bytes: Vec<u8>) -> Result<(), Error> {
        let len = u32::try_from(bytes.len()).map_err(|_| Error::Invalid("frame too large".into()))?;
        let mut chunks = [Bytes::copy_from_slice(&len.to_le_bytes()), Bytes::from(bytes)];
        self.send.write_all_chunks(&mut chunks).await.map_err(transport)
    }

    /// Sends one frame as a datagram; false when the server takes no datagrams or the
    /// frame does not fit one (then send it on the stream).
    pub(crate) fn send_datagram(&mut self, bytes: &[u8]) -> bool {
        self.connection.max_datagram_size().is_some_and(|max| bytes.len() <= max)
            && self.connection.send_datagram(Bytes::copy_from_slice(bytes)).is_ok()
    }

    /// The next frame from any stream or datagram; `None` once the server finished the
    /// control stream or closed the connection. Frames over `max_bytes` end it with an
    /// error.
    pub(crate) async fn recv(&mut self, max_bytes: usize) -> Option<Result<Vec<u8>, Error>> {
        if self.ended {
            return None;
        }
        let next = self.incoming.recv().await;
        match next {
            Some(Incoming::Frame(frame)) if frame.len() > max_bytes => {
                self.ended = true;
                Some(Err(Error::Transport(format!("server frame of {} bytes is too large", frame.len()))))
            }
            Some(Incoming::Frame(frame)) => Some(Ok(frame)),
            Some(Incoming::End(None)) | None => {
                self.ended = true;
                None
            }
            Some(Incoming::End(Some(e))) => {
                self.ended = true;
                Some(Err(e))
            }
        }
    }

    pub(crate) async fn close(&mut self) {
        let _ = self.send.finish();
        self.connection.close(quinn::VarInt::from_u32(1000), b"");
        let _ = tokio::time::timeout(Duration::from_millis(200), self.endpoint.wait_idle()).await;
    }
}

impl Drop for QuicSocket {
    fn drop(&mut self) {
        for reader in &self.readers {
            reader.abort();
        }
    }
}

/// Largest frame a reader takes from a stream: the driver refuses what is above its own
/// limit, but no length prefix may make a reader allocate more than this.
const MAX_STREAM_FRAME_BYTES: usize = 64 << 20;

/// Reads length-prefixed frames from `recv` until it ends (the error says how: a clean
/// finish at a frame boundary is `FinishedEarly(0)`); `Ok` when the driver is gone.
async fn read_frames(
    recv: &mut quinn::RecvStream,
    to_driver: &mpsc::Sender<Incoming>,
) -> Result<(), ReadEnd> {
    let mut prefix = [0u8; 4];
    loop {
        recv.read_exact(&mut prefix).await.map_err(ReadEnd::Read)?;
        let len = u32::from_le_bytes(prefix) as usize;
        if len > MAX_STREAM_FRAME_BYTES {
            return Err(ReadEnd::TooLarge(len));
        }
        let mut payload = vec![0u8; len];
        recv.read_exact(&mut payload).await.map_err(ReadEnd::Read)?;
        if to_driver.send(Incoming::Frame(payload)).await.is_err() {
            return Ok(());
        }
    }
}

enum ReadEnd {
    Read(quinn::ReadExactError),
    TooLarge(usize),
}

/// The control stream: its frames, then how it ended.
async fn read_control(
    connection: quinn::Connection,
    mut recv: quinn::RecvStream,
    to_driver: mpsc::Sender<Incoming>,
) {
    let end = match read_frames(&mut recv, &to_driver).await {
        Ok(()) => return,
        Err(ReadEnd::TooLarge(len)) => {
            Some(Error::Transport(format!("server frame of {len} bytes is too large")))
        }
        Err(ReadEnd::Read(e)) => match (&e, connection.close_reason()) {
            (quinn::ReadExactError::FinishedEarly(0), _) => None,
            (
                _,
                Some(quinn::ConnectionError::ApplicationClosed(_) | quinn::ConnectionError::LocallyClosed),
            ) => None,
            _ => Some(transport(e)),
        },
    };
    let _ = to_driver.send(Incoming::End(end)).await;
}

/// Takes every room stream the server opens and reads each one in its own task; their
/// ends are not reported (the control stream reports the connection's).
async fn accept_room_streams(connection: quinn::Connection, to_driver: mpsc::Sender<Incoming>) {
    let mut streams = Vec::new();
    while let Ok(mut recv) = connection.accept_uni().await {
        let to_driver = to_driver.clone();
        streams.push(AbortOnDrop(tokio::spawn(async move {
            let _ = read_frames(&mut recv, &to_driver).await;
        })));
    }
}

/// Each datagram is one whole frame (a `typing` event).
async fn read_datagrams(connection: quinn::Connection, to_driver: mpsc::Sender<Incoming>) {
    while let Ok(datagram) = connection.read_datagram().await {
        if to_driver.send(Incoming::Frame(datagram.to_vec())).await.is_err() {
            return;
        }
    }
}

/// A task that stops when its owner is dropped (a room stream's reader, with the task
/// that accepted it).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
