//! The server's TLS identity (QUIC, and the HTTP listener with `--http-tls`): the
//! operator's certificate and key (`--tls-cert`, `--tls-key`), or a self-signed
//! development certificate generated once into `DATA_DIR/tls/` and reused on every later
//! start (so clients can pin it). [`CertResolver`] serves it to every handshake and
//! reloads it from its files on SIGHUP, so a renewed certificate needs no restart.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest as _, Sha256};

use super::QuicError;
use crate::browser_certificates::BrowserCertificates;
use crate::webtransport::ALPN_H3;

/// A certificate chain and its key, and where the certificate came from.
#[derive(Debug)]
pub struct Identity {
    /// The chain, leaf first.
    pub certs: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
    /// The certificate file.
    pub cert_path: PathBuf,
    /// Whether it is the generated development certificate.
    pub development: bool,
}

impl Identity {
    /// The leaf certificate's SHA-256 fingerprint in lowercase hex (what SDK pins take).
    pub fn fingerprint(&self) -> String {
        self.certs.first().map(|c| fingerprint(c)).unwrap_or_default()
    }
}

/// The identity every TLS handshake is given, replaceable while the server runs: both the
/// QUIC and the HTTP listener's configurations resolve through one of these, so a reload
/// changes what new handshakes see; established connections keep their session.
pub struct CertResolver {
    cert_path: PathBuf,
    key_path: PathBuf,
    development: bool,
    current: RwLock<Arc<CertifiedKey>>,
    /// Handshakes offering HTTP/3 (browsers' WebTransport) get one of these instead.
    browser: Option<Arc<BrowserCertificates>>,
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertResolver").field("cert_path", &self.cert_path).finish_non_exhaustive()
    }
}

impl CertResolver {
    /// Serves `identity`, reloading later from `identity.cert_path` and `key_path`.
    pub fn new(identity: &Identity, key_path: &Path) -> Result<Self, QuicError> {
        Ok(Self {
            cert_path: identity.cert_path.clone(),
            key_path: key_path.to_owned(),
            development: identity.development,
            current: RwLock::new(Arc::new(certified(identity)?)),
            browser: None,
        })
    }

    /// Presents `browser`'s current certificate to handshakes offering ALPN `h3`
    /// (`None`: the identity serves them too).
    #[must_use]
    pub fn with_browser_certificates(mut self, browser: Option<Arc<BrowserCertificates>>) -> Self {
        self.browser = browser;
        self
    }

    /// Reads the certificate and key files again and serves them to new handshakes;
    /// returns the new certificate's fingerprint. On any error the old identity stays.
    pub fn reload(&self) -> Result<String, QuicError> {
        let identity = load(&self.cert_path, &self.key_path, self.development)?;
        let key = certified(&identity)?;
        let fingerprint = identity.fingerprint();
        // A poisoned lock only means a reader panicked mid-read; the value is whole.
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(key);
        Ok(fingerprint)
    }

    /// The certificate file.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let offers_h3 = || hello.alpn().is_some_and(|mut offered| offered.any(|p| p == ALPN_H3));
        if let Some(browser) = &self.browser
            && offers_h3()
            && let Some(key) = browser.present(crate::clock::now_ms() / 1000)
        {
            return Some(key);
        }
        Some(self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone())
    }
}

/// The chain and a ring signing key for it, checked to belong together.
fn certified(identity: &Identity) -> Result<CertifiedKey, QuicError> {
    let provider = rustls::crypto::ring::default_provider();
    let invalid =
        |reason: String| QuicError::Certificate { path: identity.cert_path.display().to_string(), reason };
    let key = provider
        .key_provider
        .load_private_key(identity.key.clone_key())
        .map_err(|e| invalid(e.to_string()))?;
    let certified = CertifiedKey::new(identity.certs.clone(), key);
    certified.keys_match().map_err(|e| invalid(format!("the key does not match the certificate: {e}")))?;
    Ok(certified)
}

/// Where the identity's key file is (the configured one, or the development key).
pub fn key_path(key: Option<&Path>, data_dir: &Path) -> PathBuf {
    key.map_or_else(|| data_dir.join("tls").join("key.pem"), Path::to_path_buf)
}

/// SHA-256 of a DER certificate, lowercase hex.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    Sha256::digest(cert.as_ref()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Loads the configured identity, or the development one (generating it the first time).
pub fn load_or_generate(
    cert: Option<&Path>,
    key: Option<&Path>,
    data_dir: &Path,
) -> Result<Identity, QuicError> {
    match (cert, key) {
        (Some(cert), Some(key)) => load(cert, key, false),
        _ => {
            let dir = data_dir.join("tls");
            let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
            if !cert.exists() || !key.exists() {
                generate(&dir, &cert, &key)?;
            }
            load(&cert, &key, true)
        }
    }
}

fn load(cert_path: &Path, key_path: &Path, development: bool) -> Result<Identity, QuicError> {
    let pem_error = |path: &Path, e: rustls_pki_types::pem::Error| QuicError::Certificate {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let certs = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| pem_error(cert_path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert_path, e))?;
    if certs.is_empty() {
        return Err(QuicError::Certificate {
            path: cert_path.display().to_string(),
            reason: "no certificate in the file".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| pem_error(key_path, e))?;
    Ok(Identity { certs, key, cert_path: cert_path.to_owned(), development })
}

fn generate(dir: &Path, cert_path: &Path, key_path: &Path) -> Result<(), QuicError> {
    let io = |source| QuicError::Io { path: dir.display().to_string(), source };
    std::fs::create_dir_all(dir).map_err(io)?;
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    let generated = rcgen::generate_simple_self_signed(names).map_err(|e| QuicError::Certificate {
        path: cert_path.display().to_string(),
        reason: e.to_string(),
    })?;
    write_private(key_path, generated.signing_key.serialize_pem().as_bytes()).map_err(io)?;
    std::fs::write(cert_path, generated.cert.pem()).map_err(io)?;
    Ok(())
}

/// Writes a file only its owner can read (the private key).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn the_development_certificate_is_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_generate(None, None, dir.path()).unwrap();
        let again = load_or_generate(None, None, dir.path()).unwrap();
        assert!(first.development);
        assert_eq!(first.fingerprint(), again.fingerprint());
        assert_eq!(first.fingerprint().len(), 64);
        assert_eq!(first.cert_path, dir.path().join("tls/cert.pem"));
    }
}
