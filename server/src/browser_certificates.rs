//! Development certificates for browsers on the QUIC port. Without an operator
//! certificate the server has only a self-signed one, which a browser accepts for
//! WebTransport through `serverCertificateHashes` if it is ECDSA P-256 and valid for at
//! most 14 days. So the server keeps short-lived ones of its own, presented to handshakes
//! that offer ALPN `h3`, and publishes their SHA-256 hashes (`GET
//! /v1/webtransport/certificate-hashes`); native clients (ALPN `palaver/1`) keep the
//! long-lived development certificate they pin.
//!
//! Rotation (pure: [`plan`]): each certificate is valid for 13 days from an hour before
//! it was made. The newest one is made when the previous newest is [`ROTATE_AFTER`] old,
//! so the next certificate is published at least six days before it is presented; the
//! oldest still-fresh one is presented, until it is [`PRESENT_UNTIL`] old (a day before it
//! expires). Pages that fetched the hashes within the last six days therefore hold the
//! one presented. The files live in `DATA_DIR/tls/browser/` (named by the second they
//! were made), so a restart presents the same ones.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest as _, Sha256};

const DAY_SECS: u64 = 24 * 60 * 60;
/// A certificate's validity: Chromium accepts at most 14 days for hash-pinned ones.
pub const VALIDITY: Duration = Duration::from_secs(13 * DAY_SECS);
/// How long before the moment it is made a certificate is already valid (clock skew
/// between the server and browsers).
pub const BACKDATE: Duration = Duration::from_secs(60 * 60);
/// When a new certificate is made: once the newest is this old.
pub const ROTATE_AFTER: Duration = Duration::from_secs(6 * DAY_SECS);
/// A certificate is presented (and published) until it is this old.
pub const PRESENT_UNTIL: Duration = Duration::from_secs(12 * DAY_SECS);

/// What to do at `now` with the certificates made at `made` (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Make a new certificate now (then plan again).
    pub make: bool,
    /// The certificate to present to handshakes.
    pub present: Option<u64>,
    /// The certificates to publish, presented first.
    pub publish: Vec<u64>,
    /// Certificates no longer needed (delete their files).
    pub retire: Vec<u64>,
}

/// Whether a certificate made at `made` may be presented at `now`.
fn fresh(made: u64, now: u64) -> bool {
    made.saturating_sub(BACKDATE.as_secs()) <= now && now < made + PRESENT_UNTIL.as_secs()
}

/// The rotation rule (see the module's documentation).
pub fn plan(now: u64, made: &[u64]) -> Plan {
    let mut publish: Vec<u64> = made.iter().copied().filter(|m| fresh(*m, now)).collect();
    publish.sort_unstable();
    let retire = made.iter().copied().filter(|m| !fresh(*m, now)).collect();
    let make = publish.last().is_none_or(|newest| now >= newest + ROTATE_AFTER.as_secs());
    Plan { make, present: publish.first().copied(), publish, retire }
}

/// A certificate could not be made, written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrowserCertificateError {
    /// A file or the directory.
    #[error("browser certificate {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// rcgen or rustls refused.
    #[error("browser certificate: {0}")]
    Certificate(String),
}

/// A certificate published to browsers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedHash {
    /// SHA-256 of the DER certificate.
    pub sha256: [u8; 32],
    /// When it expires (Unix seconds).
    pub not_after: u64,
}

struct Made {
    made: u64,
    key: Arc<CertifiedKey>,
    sha256: [u8; 32],
}

/// The development certificates for browsers, rotated as [`plan`] says whenever one is
/// asked for.
pub struct BrowserCertificates {
    dir: PathBuf,
    made: Mutex<Vec<Made>>,
}

impl std::fmt::Debug for BrowserCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserCertificates").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl BrowserCertificates {
    /// Loads the certificates in `dir` (made earlier) and makes one if none is fresh.
    pub fn open(dir: &Path, now: u64) -> Result<Self, BrowserCertificateError> {
        let io = |source| BrowserCertificateError::Io { path: dir.display().to_string(), source };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut made = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let name = entry.map_err(io)?.file_name();
            let Some(at) =
                name.to_str().and_then(|n| n.strip_suffix(".cert.pem")).and_then(|n| n.parse().ok())
            else {
                continue;
            };
            match load(dir, at) {
                Ok(loaded) => made.push(loaded),
                Err(e) => tracing::warn!("ignoring browser certificate {at}: {e}"),
            }
        }
        let certificates = BrowserCertificates { dir: dir.to_owned(), made: Mutex::new(made) };
        certificates.rotate(now)?;
        Ok(certificates)
    }

    /// Carries out [`plan`]: makes, retires; returns what to present and publish.
    fn rotate(&self, now: u64) -> Result<(Arc<CertifiedKey>, Vec<PublishedHash>), BrowserCertificateError> {
        let mut made = self.made.lock().unwrap_or_else(PoisonError::into_inner);
        let mut plan = plan(now, &made.iter().map(|m| m.made).collect::<Vec<_>>());
        if plan.make {
            made.push(make(&self.dir, now)?);
            plan = self::plan(now, &made.iter().map(|m| m.made).collect::<Vec<_>>());
        }
        for retired in &plan.retire {
            for suffix in ["cert.pem", "key.pem"] {
                let _ = std::fs::remove_file(self.dir.join(format!("{retired}.{suffix}")));
            }
        }
        made.retain(|m| !plan.retire.contains(&m.made));
        let by_time = |at: u64| made.iter().find(|m| m.made == at);
        let present = plan
            .present
            .and_then(by_time)
            .map(|m| m.key.clone())
            .ok_or_else(|| BrowserCertificateError::Certificate("no certificate to present".into()))?;
        let publish = plan
            .publish
            .iter()
            .filter_map(|at| by_time(*at))
            .map(|m| PublishedHash { sha256: m.sha256, not_after: not_after(m.made) })
            .collect();
        Ok((present, publish))
    }

    /// The certificate to present to a browser's handshake now. On a failure to make a
    /// new one, the last one made is presented and the failure is logged.
    pub fn present(&self, now: u64) -> Option<Arc<CertifiedKey>> {
        match self.rotate(now) {
            Ok((key, _)) => Some(key),
            Err(e) => {
                tracing::error!("{e}");
                let made = self.made.lock().unwrap_or_else(PoisonError::into_inner);
                made.last().map(|m| m.key.clone())
            }
        }
    }

    /// The hashes browsers should accept now: the presented certificate's first.
    pub fn published(&self, now: u64) -> Vec<PublishedHash> {
        match self.rotate(now) {
            Ok((_, published)) => published,
            Err(e) => {
                tracing::error!("{e}");
                Vec::new()
            }
        }
    }
}

fn not_after(made: u64) -> u64 {
    made.saturating_sub(BACKDATE.as_secs()) + VALIDITY.as_secs()
}

fn paths(dir: &Path, made: u64) -> (PathBuf, PathBuf) {
    (dir.join(format!("{made}.cert.pem")), dir.join(format!("{made}.key.pem")))
}

/// Makes an ECDSA P-256 certificate for `localhost` and the loopback addresses, valid
/// from [`BACKDATE`] before `now` for [`VALIDITY`], and writes it (the key readable by
/// its owner only).
fn make(dir: &Path, now: u64) -> Result<Made, BrowserCertificateError> {
    let refused = |e: rcgen::Error| BrowserCertificateError::Certificate(e.to_string());
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    let mut params = rcgen::CertificateParams::new(names).map_err(refused)?;
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + Duration::from_secs(now.saturating_sub(BACKDATE.as_secs()));
    params.not_after = epoch + Duration::from_secs(not_after(now));
    params.distinguished_name.push(rcgen::DnType::CommonName, "palaver development (browsers)");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(refused)?;
    let cert = params.self_signed(&key).map_err(refused)?;
    let (cert_path, key_path) = paths(dir, now);
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| BrowserCertificateError::Io { path, source }
    };
    write_private(&key_path, key.serialize_pem().as_bytes()).map_err(io(&key_path))?;
    std::fs::write(&cert_path, cert.pem()).map_err(io(&cert_path))?;
    load(dir, now)
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

fn load(dir: &Path, made: u64) -> Result<Made, BrowserCertificateError> {
    let (cert_path, key_path) = paths(dir, made);
    let pem = |path: &Path, e: rustls_pki_types::pem::Error| {
        BrowserCertificateError::Certificate(format!("{}: {e}", path.display()))
    };
    let cert = CertificateDer::from_pem_file(&cert_path).map_err(|e| pem(&cert_path, e))?;
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| pem(&key_path, e))?;
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| BrowserCertificateError::Certificate(e.to_string()))?;
    let sha256 = Sha256::digest(cert.as_ref()).into();
    let certified = CertifiedKey::new(vec![cert], signing);
    certified.keys_match().map_err(|e| BrowserCertificateError::Certificate(e.to_string()))?;
    Ok(Made { made, key: Arc::new(certified), sha256 })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    const DAY: u64 = DAY_SECS;

    #[test]
    fn a_new_certificate_is_published_six_days_before_it_is_presented() {
        let t0 = 1_000 * DAY;
        let first = plan(t0, &[]);
        assert!(first.make);
        let state = [t0];
        let day1 = plan(t0 + DAY, &state);
        assert_eq!(day1, Plan { make: false, present: Some(t0), publish: vec![t0], retire: vec![] });
        let day6 = plan(t0 + 6 * DAY, &state);
        assert!(day6.make);
        let state = [t0, t0 + 6 * DAY];
        let day7 = plan(t0 + 7 * DAY, &state);
        assert_eq!(day7.present, Some(t0));
        assert_eq!(day7.publish, [t0, t0 + 6 * DAY]);
        let day12 = plan(t0 + 12 * DAY, &state);
        assert_eq!(day12.present, Some(t0 + 6 * DAY));
        assert_eq!(day12.retire, [t0]);
        assert!(day12.make, "the next one is made as the previous one retires");
        // A presented certificate still has a day of validity left.
        assert!(not_after(t0) >= t0 + 12 * DAY + DAY - BACKDATE.as_secs());
    }

    #[test]
    fn certificates_from_the_future_or_long_expired_are_retired() {
        let now = 1_000 * DAY;
        let p = plan(now, &[now + 2 * DAY, now - 20 * DAY]);
        assert!(p.make);
        assert_eq!(p.present, None);
        assert_eq!(p.retire.len(), 2);
        // Made within the backdating hour ahead (a clock step back): still fresh.
        assert_eq!(plan(now, &[now + 60]).present, Some(now + 60));
    }

    #[test]
    fn made_certificates_suit_chromium_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let now = crate::clock::now_ms() / 1000;
        let certificates = BrowserCertificates::open(dir.path(), now).unwrap();
        let published = certificates.published(now);
        assert_eq!(published.len(), 1);
        let presented = certificates.present(now).unwrap();
        let der = presented.cert[0].as_ref();
        assert_eq!(<[u8; 32]>::from(Sha256::digest(der)), published[0].sha256);
        // The P-256 curve's OID (1.2.840.10045.3.1.7) names the key.
        let p256 = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        assert!(der.windows(p256.len()).any(|w| w == p256), "an ECDSA P-256 key");
        assert!(published[0].not_after - (now - BACKDATE.as_secs()) <= 14 * DAY, "valid for at most 14 days");
        assert!(published[0].not_after > now + 12 * DAY);
        let again = BrowserCertificates::open(dir.path(), now + 60).unwrap();
        assert_eq!(again.published(now + 60), published);
        // Six days on, the next one is published too, after the presented one.
        let later = again.published(now + 6 * DAY);
        assert_eq!(later.len(), 2);
        assert_eq!(later[0], published[0]);
    }
}
