//! QUIC (§7.3 of PROTOCOL.md) on every shard: TLS 1.3, frames each behind a `u32`
//! little-endian length, `palaver.v1.rkyv` frames with ALPN `palaver/1`, JSON frames with
//! `palaver/1+json` (for clients in any language).
//!
//! Each shard binds its own UDP socket on the QUIC address (`SO_REUSEPORT`) and drives a
//! sans-IO `quinn_proto::Endpoint` and its connections from its monoio loop
//! ([`endpoint`]): a connection lives on one shard like a WebSocket does, and its
//! application writes straight into it ([`connection`]). Connection ids name their shard
//! ([`cid`]); a datagram the kernel gives to another shard is passed to the owner by
//! message. After the handshake a connection goes, by its ALPN, to an [`Application`].
//!
//! Admission, before a connection costs a shard anything, with counts shared by all
//! shards: past `--quic-retry-after-handshakes` handshakes in progress, a client must
//! prove it receives at its address (a stateless Retry, one packet and no state; every
//! shard takes every shard's Retry tokens), so forged source addresses cannot fill the
//! handshake table or take another address's slots; a connection counts against
//! `--max-connections-per-ip` (one count for both listeners) from its handshake's end,
//! when its address is proven, and one over the limit is closed with 1013. 0-RTT is
//! refused: a replayed first flight must never act twice.

pub mod cid;
pub mod connection;
pub(crate) mod endpoint;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use quinn_proto::VarInt;

pub use connection::{DatagramError, QuicConnection, StreamError};
pub(crate) use endpoint::ShardEndpoint;

use crate::config::{Config, QuicCongestion};
use crate::io::limits::IpCounter;
use crate::metrics::Metrics;

/// The ALPN protocol id of Palaver v1 over QUIC with rkyv frames.
pub const ALPN: &[u8] = b"palaver/1";
/// The ALPN protocol id of Palaver v1 over QUIC with JSON frames.
pub const ALPN_JSON: &[u8] = b"palaver/1+json";
/// Unidirectional streams a client may have open at once.
const MAX_CLIENT_UNI_STREAMS: u32 = 3;
/// Handshakes in progress at once on all shards, Retry or not; past it new ones are
/// refused (each holds a connection's state: this bounds that memory).
const MAX_HANDSHAKES: usize = 4_096;
/// How long a close waits for the peer to acknowledge what was written before it.
pub const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// Unreliable datagrams from a peer buffered until its application takes them; past it
/// the oldest are dropped (a flood costs this much memory, no more).
const DATAGRAM_RECEIVE_BUFFER: usize = 64 * 1024;
/// Unreliable datagrams buffered for a peer before the oldest are dropped.
const DATAGRAM_SEND_BUFFER: usize = 64 * 1024;
/// The largest UDP payload the server takes (advertised to peers): an Ethernet MTU, so
/// a receive buffer slot holds any datagram a peer may send.
const MAX_UDP_PAYLOAD: u16 = 1_472;
/// The kernel receive buffer asked for each shard's socket (best effort: capped by
/// `net.core.rmem_max`), so bursts of handshakes are not dropped before a shard reads.
const SOCKET_RECEIVE_BUFFER: usize = 4 << 20;

/// What runs on a connection once its handshake is done, chosen by its ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Application {
    /// A Palaver session with frames of this codec.
    Palaver(palaver_protocol::Codec),
    /// HTTP/3 for a browser's WebTransport session (`crate::webtransport`), which then
    /// carries a Palaver session.
    WebTransport,
}

impl Application {
    /// The application of a negotiated ALPN protocol id (none for an unknown one; the
    /// TLS handshake already refuses ids outside the server's list).
    pub fn from_alpn(alpn: &[u8]) -> Option<Self> {
        match alpn {
            ALPN => Some(Application::Palaver(palaver_protocol::Codec::Rkyv)),
            ALPN_JSON => Some(Application::Palaver(palaver_protocol::Codec::Json)),
            crate::webtransport::ALPN_H3 => Some(Application::WebTransport),
            _ => None,
        }
    }
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
}

/// The bound QUIC address and what it serves, for the start-up lines.
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
}

/// What every shard's endpoint shares: the server configuration (so one Retry token key
/// and one TLS resolver), the keys of the endpoint configuration, the handshakes in
/// progress on all shards, and the per-address counters shared with HTTP.
pub(crate) struct QuicShared {
    server_config: Arc<quinn_proto::ServerConfig>,
    reset_key: Vec<u8>,
    cid_key: u64,
    handshakes: AtomicUsize,
    limits: Limits,
    ip_connections: Arc<IpCounter>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for QuicShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicShared")
            .field("handshakes", &self.handshakes.load(Ordering::Relaxed))
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl QuicShared {
    /// The endpoint configuration of shard `shard`: the shared stateless-reset key, and
    /// connection ids that name the shard.
    fn endpoint_config(&self, shard: usize) -> quinn_proto::EndpointConfig {
        let reset = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.reset_key);
        let mut config = quinn_proto::EndpointConfig::new(Arc::new(reset));
        let cids = cid::ShardCids::new(self.cid_key, shard);
        config.cid_generator(move || Box::new(cids));
        // Within the bounds quinn-proto checks: cannot fail.
        let _ = config.max_udp_payload_size(MAX_UDP_PAYLOAD);
        config
    }

    /// The connection-id reader every shard routes by.
    fn cids(&self, shard: usize) -> cid::ShardCids {
        cid::ShardCids::new(self.cid_key, shard)
    }
}

/// Binds one UDP socket per shard on the QUIC address (`SO_REUSEPORT`, so the kernel
/// spreads clients over them) and builds what the shards' endpoints share.
/// `identity` is the certificate it starts with; handshakes are served by `resolver`,
/// which reloads it on SIGHUP.
pub(crate) fn prepare(
    config: &Config,
    identity: &tls::Identity,
    resolver: Arc<tls::CertResolver>,
    ip_connections: Arc<IpCounter>,
    metrics: Arc<Metrics>,
) -> Result<(QuicListener, Arc<QuicShared>, Vec<std::net::UdpSocket>), QuicError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| QuicError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    tls.alpn_protocols = vec![ALPN.to_vec(), ALPN_JSON.to_vec(), crate::webtransport::ALPN_H3.to_vec()];
    // 0-RTT refused: early data can be replayed, and a replayed `send` must never be
    // accepted twice. (Resumption itself stays: it only saves the certificate.)
    tls.max_early_data_size = 0;
    let crypto = quinn_proto::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| QuicError::Tls(e.to_string()))?;
    let mut server = quinn_proto::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(transport_config(config)));
    server.max_incoming(MAX_HANDSHAKES);

    let sockets = bind_sockets(config.quic_addr, config.shards)?;
    let addr = sockets.first().and_then(|s| s.local_addr().ok()).ok_or_else(|| QuicError::Bind {
        addr: config.quic_addr,
        source: std::io::ErrorKind::AddrNotAvailable.into(),
    })?;
    let (reset_key, cid_key) = endpoint_keys(&identity.key);
    let shared = Arc::new(QuicShared {
        server_config: Arc::new(server),
        reset_key,
        cid_key,
        handshakes: AtomicUsize::new(0),
        limits: Limits {
            auth_timeout: Duration::from_millis(config.session.auth_deadline_ms),
            retry_after_handshakes: config.quic_retry_after_handshakes,
        },
        ip_connections,
        metrics,
    });
    let listener = QuicListener {
        addr,
        cert_path: identity.cert_path.clone(),
        fingerprint: identity.fingerprint(),
        development: identity.development,
    };
    Ok((listener, shared, sockets))
}

/// The transport parameters every connection gets.
fn transport_config(config: &Config) -> quinn_proto::TransportConfig {
    let mut transport = quinn_proto::TransportConfig::default();
    // The client opens one bidirectional stream (more wait for credit) and at most three
    // unidirectional ones at a time (HTTP/3 clients need three; an application that
    // takes none stops them); the server opens unidirectional streams of its own.
    // QUIC's keep-alive and idle timeout replace the WebSocket pings of the heartbeat.
    transport
        .max_concurrent_bidi_streams(VarInt::from_u32(1))
        .max_concurrent_uni_streams(VarInt::from_u32(MAX_CLIENT_UNI_STREAMS))
        // Unreliable datagrams (RFC 9221) are offered; a flood costs at most the buffer.
        .datagram_receive_buffer_size(Some(DATAGRAM_RECEIVE_BUFFER))
        .datagram_send_buffer_size(DATAGRAM_SEND_BUFFER)
        .keep_alive_interval(Some(Duration::from_millis(config.ping_interval_ms)))
        .max_idle_timeout(
            quinn_proto::IdleTimeout::try_from(Duration::from_millis(config.idle_timeout_ms)).ok(),
        );
    // Chat traffic is small and app-limited: a window CUBIC has cut on random loss
    // (down to two packets) then holds messages back, where BBR keeps sending at the
    // measured rate (docs/PERFORMANCE.md, "QUIC under loss").
    match config.quic_congestion {
        QuicCongestion::Bbr => {
            transport.congestion_controller_factory(Arc::new(quinn_proto::congestion::BbrConfig::default()))
        }
        QuicCongestion::Cubic => {
            transport.congestion_controller_factory(Arc::new(quinn_proto::congestion::CubicConfig::default()))
        }
    };
    transport
}

/// One UDP socket per shard on `addr`, all with `SO_REUSEPORT` (the first fixes the port
/// when `addr` asks for any).
fn bind_sockets(addr: SocketAddr, shards: usize) -> Result<Vec<std::net::UdpSocket>, QuicError> {
    let mut sockets = Vec::with_capacity(shards);
    let mut bind_to = addr;
    for _ in 0..shards.max(1) {
        let bind_error = move |source| QuicError::Bind { addr: bind_to, source };
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(bind_to),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .map_err(bind_error)?;
        socket.set_reuse_port(true).map_err(bind_error)?;
        if bind_to.is_ipv6() {
            socket.set_only_v6(false).map_err(bind_error)?;
        }
        let _ = socket.set_recv_buffer_size(SOCKET_RECEIVE_BUFFER);
        socket.bind(&bind_to.into()).map_err(bind_error)?;
        socket.set_nonblocking(true).map_err(bind_error)?;
        let socket: std::net::UdpSocket = socket.into();
        bind_to = socket.local_addr().map_err(bind_error)?;
        sockets.push(socket);
    }
    Ok(sockets)
}

/// Endpoint keys that survive a restart, derived from the TLS private key: the
/// stateless-reset key and the key of the connection ids. A client still talking to a
/// connection the previous process held (after a crash) then gets a stateless reset from
/// the new process at once and reconnects, instead of waiting for its idle timeout (with
/// fresh random keys the new process would not recognise the ids as its own and would
/// drop the packets silently).
fn endpoint_keys(key: &rustls_pki_types::PrivateKeyDer<'_>) -> (Vec<u8>, u64) {
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
    (reset.to_vec(), u64::from_le_bytes(cid_key))
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    /// How long a handshake may take (the authentication deadline: a client is not
    /// served before it authenticates anyway).
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

/// Counts a handshake in progress (on any shard) from its admission to its end,
/// whichever way it ends.
struct HandshakeSlot(Arc<QuicShared>);

impl HandshakeSlot {
    fn take(shared: &Arc<QuicShared>) -> Self {
        shared.handshakes.fetch_add(1, Ordering::Relaxed);
        HandshakeSlot(shared.clone())
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.0.handshakes.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A close code as a QUIC application error code.
pub fn app_code(code: crate::ws::CloseCode) -> VarInt {
    VarInt::from_u32(u32::from(code.code()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unproven_addresses_retry_past_the_threshold_and_everyone_is_refused_at_the_cap() {
        let limits = Limits { auth_timeout: Duration::ZERO, retry_after_handshakes: 64 };
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
