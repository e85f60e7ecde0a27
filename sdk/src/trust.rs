//! Which server certificate a native client trusts, for every TLS it speaks: QUIC, and
//! `https://`/`wss://` over TCP. One type, so the development certificate is trusted the
//! same way on both transports.

/// A certificate (or the CA that issued it) that a native client accepts.
///
/// Without one, `https://` and `wss://` verify the server against the system's root
/// certificates; QUIC always takes one ([`QuicOptions::trust`](crate::QuicOptions)).
/// The browser transport ignores it: the browser does TLS itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsTrust {
    /// Trust anchors in PEM: the server's self-signed certificate itself (for the
    /// development certificate, `DATA_DIR/tls/cert.pem`) or the CA that issued it. The
    /// server name is checked.
    CertificatePem(String),
    /// Accept exactly the certificate whose DER has this SHA-256 (hex, `:` allowed), as
    /// printed by the server at startup. The name is not checked: the pin is the identity.
    Sha256Pin(String),
}
