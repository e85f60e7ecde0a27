//! The QUIC listener (§7.3 of PROTOCOL.md): TLS 1.3, one bidirectional stream per
//! connection opened by the client, carrying frames each behind a `u32` little-endian
//! length: `palaver.v1.rkyv` frames with ALPN `palaver/1`, JSON frames with
//! `palaver/1+json` (for clients in any language).
//!
//! Design (interim, see ARCHITECTURE.md): quinn runs on **one dedicated tokio thread**
//! that terminates QUIC and TLS. Each connection's stream is split into frames there and
//! the connection is handed, round robin, to a shard as a [`QuicSession`]: two bounded
//! channels, frames in and framed bytes out. On the shard the session is an ordinary
//! `Conn` with `Wire::Quic` and the same byte-bounded outbound
//! queue as a WebSocket, so auth, rate and in-flight limits, subscriptions, fan-out and
//! slow-consumer closes are the WebSocket code paths (`conn::quic_session`).
//!
//! This thread does not decode frames or know any op; shards do not know quinn.
//!
//! Admission, before a connection costs a shard anything: past
//! `--quic-retry-after-handshakes` handshakes in progress, a client must prove it receives
//! at its address (a stateless Retry, one packet and no state), so forged source addresses
//! cannot fill the handshake table or take another address's slots; a connection counts
//! against `--max-connections-per-ip` (one count for both listeners) from its handshake's
//! end, when its address is proven, and one over the limit is closed with 1013.

pub mod tls;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use quinn::VarInt;

use crate::config::Config;
use crate::io::limits::{ConnectionPermit, IpCounter};
use crate::metrics::Metrics;
use crate::ws::CloseCode;

/// The ALPN protocol id of Palaver v1 over QUIC with rkyv frames.
pub const ALPN: &[u8] = b"palaver/1";
/// The ALPN protocol id of Palaver v1 over QUIC with JSON frames.
pub const ALPN_JSON: &[u8] = b"palaver/1+json";
/// Frames read ahead of the shard per connection (the stream's flow control does the
/// rest of the back-pressure).
const FRAMES_IN_FLIGHT_TO_SHARD: usize = 16;
/// Outbound batches buffered between a shard and this thread per connection; beyond it
/// frames wait in the shard's byte-bounded queue.
const BATCHES_IN_FLIGHT_TO_PEER: usize = 8;
/// Handshakes in progress at once, Retry or not; past it new ones are refused (quinn
/// keeps an `Incoming` per handshake: this bounds that memory).
const MAX_HANDSHAKES: usize = 4_096;
/// How long a close waits for the peer to acknowledge what was written before it.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// What the QUIC thread passes to a shard for one client frame.
#[derive(Debug)]
pub enum FromClient {
    /// One length-prefixed payload, without its prefix.
    Frame(Bytes),
    /// A length prefix above `--max-frame-bytes` (the connection ends with 1009).
    TooLarge(u32),
}

/// What a shard passes back for the peer.
#[derive(Debug)]
pub enum ToClient {
    /// Framed bytes (length prefix included), in order.
    Frames(Vec<Bytes>),
    /// Flush, then close the connection with this code (the WebSocket close codes are
    /// used as QUIC application error codes) and reason.
    Close(CloseCode, String),
}

/// One QUIC connection handed to a shard.
#[derive(Debug)]
pub struct QuicSession {
    /// The frames' codec, as the connection's ALPN chose.
    pub codec: palaver_protocol::Codec,
    /// Frames from the client; disconnected when the peer is gone.
    pub from_client: flume::Receiver<FromClient>,
    /// Bytes and the close, to the client.
    pub to_client: flume::Sender<ToClient>,
}

/// The QUIC listener could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuicError {
    /// The certificate or key could not be read, parsed or generated.
    #[error("TLS certificate {path}: {reason}")]
    Certificate {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A file could not be written.
    #[error("TLS directory {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// rustls refused the configuration (e.g. a key that does not match).
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The UDP socket could not be bound.
    #[error("cannot listen on udp {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The runtime or the thread could not be started.
    #[error("cannot start the QUIC thread: {0}")]
    Thread(std::io::Error),
}

/// The running listener.
#[derive(Debug)]
pub struct QuicListener {
    /// The bound UDP address.
    pub addr: SocketAddr,
    /// The certificate file served.
    pub cert_path: PathBuf,
    /// Its SHA-256 fingerprint (hex).
    pub fingerprint: String,
    /// Whether it is the generated development certificate.
    pub development: bool,
    endpoint: quinn::Endpoint,
    thread: std::thread::JoinHandle<()>,
}

impl QuicListener {
    /// Refuses new connections, lets the sessions the shards closed finish their close
    /// (bounded), closes whatever remains and waits for the thread to end. Call after the
    /// shards have closed their sessions.
    pub fn shutdown(self) {
        self.endpoint.set_server_config(None);
        let deadline = std::time::Instant::now() + CLOSE_LINGER + Duration::from_millis(500);
        while self.endpoint.open_connections() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.endpoint
            .close(VarInt::from_u32(u32::from(CloseCode::GoingAway.code())), b"server shutting down");
        let _ = self.thread.join();
    }
}

/// What the listener admits connections against, shared with the HTTP listener.
#[derive(Debug, Clone)]
pub struct Admission {
    /// Open connections per client address, both transports.
    pub ip_connections: Arc<IpCounter>,
    /// Where refusals are counted.
    pub metrics: Arc<Metrics>,
}

/// Binds the UDP socket and starts the QUIC thread; new sessions go to `shards` round
/// robin.
/// `identity` is the certificate it starts with; handshakes are served by `resolver`,
/// which reloads it on SIGHUP.
pub fn start(
    config: &Config,
    identity: &tls::Identity,
    resolver: Arc<tls::CertResolver>,
    shards: Vec<flume::Sender<QuicSession>>,
    admission: Admission,
) -> Result<QuicListener, QuicError> {
    let fingerprint = identity.fingerprint();
    let endpoint_config = endpoint_config(&identity.key);
    let cert_path = identity.cert_path.clone();
    let development = identity.development;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| QuicError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    tls.alpn_protocols = vec![ALPN.to_vec(), ALPN_JSON.to_vec()];
    let crypto =
        quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| QuicError::Tls(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    // One stream per connection, opened by the client; QUIC's own keep-alive and idle
    // timeout replace the WebSocket pings of the shards' heartbeat.
    transport
        .max_concurrent_bidi_streams(VarInt::from_u32(1))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        // No unreliable datagrams: nothing reads them, so none are buffered.
        .datagram_receive_buffer_size(None)
        .keep_alive_interval(Some(Duration::from_millis(config.ping_interval_ms)))
        .max_idle_timeout(quinn::IdleTimeout::try_from(Duration::from_millis(config.idle_timeout_ms)).ok());
    server.transport_config(Arc::new(transport));
    server.max_incoming(MAX_HANDSHAKES);

    let socket = std::net::UdpSocket::bind(config.quic_addr)
        .map_err(|source| QuicError::Bind { addr: config.quic_addr, source })?;
    let addr = socket.local_addr().map_err(|source| QuicError::Bind { addr: config.quic_addr, source })?;
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(QuicError::Thread)?;
    let endpoint = {
        let _context = runtime.enter();
        quinn::Endpoint::new(endpoint_config, Some(server), socket, Arc::new(quinn::TokioRuntime))
            .map_err(|source| QuicError::Bind { addr, source })?
    };
    let limits = Limits {
        max_frame_bytes: config.max_frame_bytes,
        auth_timeout: Duration::from_millis(config.session.auth_deadline_ms),
        retry_after_handshakes: config.quic_retry_after_handshakes,
    };
    let accepting = endpoint.clone();
    let thread = std::thread::Builder::new()
        .name("palaver-quic".into())
        .spawn(move || runtime.block_on(accept_loop(accepting, Arc::new(shards), limits, admission)))
        .map_err(QuicError::Thread)?;
    Ok(QuicListener { addr, cert_path, fingerprint, development, endpoint, thread })
}

/// Endpoint keys that survive a restart, derived from the TLS private key: the
/// stateless-reset key and the key of the connection ids. A client still talking to a
/// connection the previous process held (after a crash) then gets a stateless reset from
/// the new process at once and reconnects, instead of waiting for its idle timeout (with
/// fresh random keys the new process would not recognise the ids as its own and would
/// drop the packets silently).
fn endpoint_config(key: &rustls_pki_types::PrivateKeyDer<'_>) -> quinn::EndpointConfig {
    use sha2::Digest as _;
    let derive = |label: &[u8]| {
        let mut hasher = sha2::Sha256::new();
        hasher.update(label);
        hasher.update(key.secret_der());
        hasher.finalize()
    };
    let reset = derive(b"palaver/1 quic stateless reset\0");
    let cid = derive(b"palaver/1 quic connection ids\0");
    let mut cid_key = [0u8; 8];
    cid_key.copy_from_slice(&cid[..8]);
    let cid_key = u64::from_le_bytes(cid_key);
    let mut config =
        quinn::EndpointConfig::new(Arc::new(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &reset)));
    config.cid_generator(move || Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key)));
    config
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    max_frame_bytes: usize,
    auth_timeout: Duration,
    retry_after_handshakes: usize,
}

/// What to do with a new connection attempt, from the handshakes in progress and whether
/// its address is proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admit {
    Handshake,
    /// Ask the client to prove its address first (a stateless Retry).
    Retry,
    Refuse,
}

fn admit(handshakes: usize, address_validated: bool, may_retry: bool, limits: &Limits) -> Admit {
    if handshakes >= MAX_HANDSHAKES {
        Admit::Refuse
    } else if handshakes >= limits.retry_after_handshakes && !address_validated && may_retry {
        Admit::Retry
    } else {
        Admit::Handshake
    }
}

/// Counts a handshake in progress from its admission to its end (whichever way it ends).
struct HandshakeSlot(Arc<AtomicUsize>);

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn accept_loop(
    endpoint: quinn::Endpoint,
    shards: Arc<Vec<flume::Sender<QuicSession>>>,
    limits: Limits,
    admission: Admission,
) {
    let next = AtomicUsize::new(0);
    let handshakes = Arc::new(AtomicUsize::new(0));
    while let Some(incoming) = endpoint.accept().await {
        let in_progress = handshakes.load(Ordering::Relaxed);
        match admit(in_progress, incoming.remote_address_validated(), incoming.may_retry(), &limits) {
            Admit::Handshake => {}
            Admit::Retry => {
                // `may_retry` was checked: this cannot fail.
                let _ = incoming.retry();
                continue;
            }
            Admit::Refuse => {
                Metrics::inc(&admission.metrics.connections_refused);
                incoming.refuse();
                continue;
            }
        }
        handshakes.fetch_add(1, Ordering::Relaxed);
        let slot = HandshakeSlot(handshakes.clone());
        let shard = next.fetch_add(1, Ordering::Relaxed) % shards.len().max(1);
        tokio::spawn(serve(incoming, slot, shards.clone(), shard, limits, admission.clone()));
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
}

/// The ALPN protocol the handshake settled on.
fn negotiated_protocol(connection: &quinn::Connection) -> Option<Vec<u8>> {
    let data = connection.handshake_data()?;
    data.downcast::<quinn::crypto::rustls::HandshakeData>().ok()?.protocol
}

fn app_code(code: CloseCode) -> VarInt {
    VarInt::from_u32(u32::from(code.code()))
}

/// One connection: handshake, its stream, then the bridge to a shard until either side
/// ends it.
async fn serve(
    incoming: quinn::Incoming,
    handshake: HandshakeSlot,
    shards: Arc<Vec<flume::Sender<QuicSession>>>,
    shard: usize,
    limits: Limits,
    admission: Admission,
) {
    let ip = incoming.remote_address().ip();
    let connection = match tokio::time::timeout(limits.auth_timeout, incoming).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(e)) => {
            tracing::debug!("QUIC handshake failed: {e}");
            return;
        }
        Err(_) => return,
    };
    drop(handshake);
    // The handshake proved the address: only now may it take one of the address's slots.
    let Some(_ip_slot) = address_slot(&admission, ip) else {
        Metrics::inc(&admission.metrics.connections_refused);
        connection.close(app_code(CloseCode::TryAgainLater), b"too many connections from this address");
        return;
    };
    // The stream must come within the authentication deadline (the auth frame on it
    // then has what is left of it, counted by the shard's session).
    let (send, recv) = match tokio::time::timeout(limits.auth_timeout, connection.accept_bi()).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(_)) => return,
        Err(_) => {
            connection.close(app_code(CloseCode::Policy), b"authentication deadline passed");
            return;
        }
    };
    let (from_client, from_client_rx) = flume::bounded(FRAMES_IN_FLIGHT_TO_SHARD);
    let (to_client_tx, to_client) = flume::bounded(BATCHES_IN_FLIGHT_TO_PEER);
    let Some(inlet) = shards.get(shard) else { return };
    let codec = match negotiated_protocol(&connection).as_deref() {
        Some(ALPN_JSON) => palaver_protocol::Codec::Json,
        _ => palaver_protocol::Codec::Rkyv,
    };
    let session = QuicSession { codec, from_client: from_client_rx, to_client: to_client_tx };
    if inlet.send_async(session).await.is_err() {
        connection.close(app_code(CloseCode::GoingAway), b"server shutting down");
        return;
    }
    let reader = tokio::spawn(read_frames(recv, from_client, limits.max_frame_bytes));
    write_frames(&connection, send, to_client).await;
    reader.abort();
}

fn address_slot(admission: &Admission, ip: IpAddr) -> Option<ConnectionPermit<IpAddr>> {
    admission.ip_connections.try_acquire(&ip)
}

/// Splits the client's stream into frames for the shard; stops at the stream's end, an
/// error, or an oversize length (reported so the shard closes with 1009).
async fn read_frames(
    mut recv: quinn::RecvStream,
    to_shard: flume::Sender<FromClient>,
    max_frame_bytes: usize,
) {
    let mut prefix = [0u8; 4];
    loop {
        if recv.read_exact(&mut prefix).await.is_err() {
            return;
        }
        let len = u32::from_le_bytes(prefix);
        if usize::try_from(len).map_or(true, |l| l > max_frame_bytes) {
            let _ = to_shard.send_async(FromClient::TooLarge(len)).await;
            return;
        }
        let mut payload = vec![0u8; len as usize];
        if recv.read_exact(&mut payload).await.is_err() {
            return;
        }
        if to_shard.send_async(FromClient::Frame(Bytes::from(payload))).await.is_err() {
            return;
        }
    }
}

/// Writes what the shard sends until it closes the session or the connection ends.
async fn write_frames(
    connection: &quinn::Connection,
    mut send: quinn::SendStream,
    from_shard: flume::Receiver<ToClient>,
) {
    loop {
        let next = tokio::select! {
            next = from_shard.recv_async() => next,
            _ = connection.closed() => return,
        };
        match next {
            Ok(ToClient::Frames(mut frames)) => {
                if send.write_all_chunks(&mut frames).await.is_err() {
                    connection.close(VarInt::from_u32(0), b"");
                    return;
                }
            }
            Ok(ToClient::Close(code, reason)) => {
                let _ = send.finish();
                let _ = tokio::time::timeout(CLOSE_LINGER, send.stopped()).await;
                connection.close(app_code(code), reason.as_bytes());
                return;
            }
            // The shard forgot the session without a close (the peer went away first).
            Err(_) => {
                connection.close(app_code(CloseCode::Normal), b"");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unproven_addresses_retry_past_the_threshold_and_everyone_is_refused_at_the_cap() {
        let limits = Limits { max_frame_bytes: 1, auth_timeout: Duration::ZERO, retry_after_handshakes: 64 };
        assert_eq!(admit(0, false, true, &limits), Admit::Handshake);
        assert_eq!(admit(63, false, true, &limits), Admit::Handshake);
        assert_eq!(admit(64, false, true, &limits), Admit::Retry);
        // A client that already answered a Retry is proven; one that cannot retry again
        // (its token was used) is let through rather than looped.
        assert_eq!(admit(64, true, false, &limits), Admit::Handshake);
        assert_eq!(admit(64, false, false, &limits), Admit::Handshake);
        assert_eq!(admit(MAX_HANDSHAKES, true, false, &limits), Admit::Refuse);
        let always = Limits { retry_after_handshakes: 0, ..limits };
        assert_eq!(admit(0, false, true, &always), Admit::Retry);
    }
}
