//! The native QUIC transport: quinn + rustls (ring). One connection, one bidirectional
//! stream opened by the client, each frame behind a `u32` little-endian length (§7.3).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest as _, Sha256};

use crate::error::Error;
use crate::quic::{QuicOptions, QuicTrust};

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
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(transport)?;
        let mut tls = match &options.trust {
            QuicTrust::CertificatePem(pem) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                    roots
                        .add(cert.map_err(|e| Error::Invalid(format!("certificate PEM: {e}")))?)
                        .map_err(transport)?;
                }
                if roots.is_empty() {
                    return Err(Error::Invalid("no certificate in the PEM".into()));
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            QuicTrust::Sha256Pin(hex) => {
                let pin = parse_pin(hex)?;
                let verifier = PinVerifier { pin, algorithms: provider.signature_verification_algorithms };
                builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth()
            }
        };
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

fn parse_pin(hex: &str) -> Result<[u8; 32], Error> {
    let digits: Vec<u8> = hex.bytes().filter(|b| *b != b':').collect();
    let bad = || Error::Invalid("a SHA-256 pin is 64 hex digits".into());
    if digits.len() != 64 {
        return Err(bad());
    }
    let mut pin = [0u8; 32];
    for (i, pair) in digits.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).map_err(|_| bad())?;
        pin[i] = u8::from_str_radix(text, 16).map_err(|_| bad())?;
    }
    Ok(pin)
}

/// Accepts exactly one certificate, by the SHA-256 of its DER; handshake signatures are
/// still verified against it.
#[derive(Debug)]
struct PinVerifier {
    pin: [u8; 32],
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if Sha256::digest(end_entity.as_ref())[..] == self.pin[..] {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
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
