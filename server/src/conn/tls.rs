//! TLS on the HTTP/WebSocket listener (`--http-tls`): `https://` and `wss://` with the
//! same certificate as QUIC.
//!
//! rustls is sans-IO: [`monoio_rustls`] feeds it from the shard's own socket with owned
//! buffers (ciphertext read into a buffer, `read_tls` + `process_new_packets`, plaintext
//! out of `reader()`; plaintext into `writer()`, `write_tls` into a buffer, written by
//! io_uring). The TLS stream is an ordinary monoio stream, so everything above it — the
//! HTTP routes, uploads and downloads, the upgrade, the WebSocket reader and writer — is
//! the same code as for plain TCP, on the same shard, with no second runtime.
//!
//! One rule comes with it: a TLS stream whose read (or write) future was dropped before
//! it completed must not be read (or written) again — monoio-rustls' safe mode lends its
//! buffer to that operation, and a later one would find it gone and panic. Every timeout
//! and `select!` around a read in `conn` ends the connection, so this holds; keep it so.
//!
//! What this is not: no client certificates, no session resumption across restarts, no
//! ALPN beyond `http/1.1` (no HTTP/2).

use std::sync::Arc;

use monoio_rustls::TlsAcceptor;

use crate::quic::tls::CertResolver;

/// The ALPN protocol offered on the HTTP listener.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Builds the acceptor every shard uses: TLS 1.3 and 1.2, ring, the server's identity
/// (through `resolver`, which reloads it on SIGHUP).
pub fn acceptor(resolver: Arc<CertResolver>) -> Result<TlsAcceptor, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn the_development_identity_makes_an_acceptor() {
        let dir = tempfile::tempdir().unwrap();
        let identity = crate::quic::tls::load_or_generate(None, None, dir.path()).unwrap();
        let key = crate::quic::tls::key_path(None, dir.path());
        let resolver = Arc::new(CertResolver::new(&identity, &key).unwrap());
        assert!(acceptor(resolver).is_ok());
    }
}
