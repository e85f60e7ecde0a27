//! The native QUIC transport: quinn + rustls (ring). One connection, one bidirectional
//! stream opened by the client, each frame behind a `u32` little-endian length (§7.3).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::quic::QuicOptions;
use bytes::Bytes;

/// The ALPN protocol id of Palaver v1 over QUIC.
pub(crate) const ALPN: &[u8] = b"palaver/1";

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
            .keep_alive_interval(Some(idle / 3));
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
        Ok(QuicSocket { endpoint, connection, send, recv })
    }
}

/// An open QUIC connection and its one stream.
pub(crate) struct QuicSocket {
    /// Kept alive as long as the connection: it owns the UDP socket.
    endpoint: quinn::Endpoint,
    connection: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
}

impl QuicSocket {
    pub(crate) async fn send(&mut self, bytes: Vec<u8>) -> Result<(), Error> {
        let len = u32::try_from(bytes.len()).map_err(|_| Error::Invalid("frame too large".into()))?;
        let mut chunks = [Bytes::copy_from_slice(&len.to_le_bytes()), Bytes::from(bytes)];
        self.send.write_all_chunks(&mut chunks).await.map_err(transport)
    }

    /// The next frame; `None` once the server finished the stream or closed the
    /// connection.
    pub(crate) async fn recv(&mut self, max_bytes: usize) -> Option<Result<Vec<u8>, Error>> {
        let mut prefix = [0u8; 4];
        if let Err(e) = self.recv.read_exact(&mut prefix).await {
            return self.ended(e);
        }
        let len = u32::from_le_bytes(prefix) as usize;
        if len > max_bytes {
            return Some(Err(Error::Transport(format!("server frame of {len} bytes is too large"))));
        }
        let mut payload = vec![0u8; len];
        if let Err(e) = self.recv.read_exact(&mut payload).await {
            return self.ended(e);
        }
        Some(Ok(payload))
    }

    fn ended(&self, e: quinn::ReadExactError) -> Option<Result<Vec<u8>, Error>> {
        match (&e, self.connection.close_reason()) {
            (quinn::ReadExactError::FinishedEarly(0), _) => None,
            (
                _,
                Some(quinn::ConnectionError::ApplicationClosed(_) | quinn::ConnectionError::LocallyClosed),
            ) => None,
            _ => Some(Err(transport(e))),
        }
    }

    pub(crate) async fn close(&mut self) {
        let _ = self.send.finish();
        self.connection.close(quinn::VarInt::from_u32(1000), b"");
        let _ = tokio::time::timeout(Duration::from_millis(200), self.endpoint.wait_idle()).await;
    }
}
