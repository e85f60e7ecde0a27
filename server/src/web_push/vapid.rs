//! VAPID (RFC 8292): the application server signs, for each push service, a JWT (ES256)
//! naming the push service's origin (`aud`), an expiry at most 24 hours ahead (`exp`) and
//! a contact (`sub`), and sends it with its public key as
//! `Authorization: vapid t=<jwt>, k=<public key>`. A push service that saw the public key
//! at subscription time accepts pushes only from its holder.
//!
//! The key is one P-256 key pair for the whole service: browsers subscribe with its public
//! key, so every node must sign with the same one. It is kept as the 32-byte private
//! scalar in base64url — the format `web-push generate-vapid-keys` prints.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::SecretKey;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::WebPushError;
use super::encryption::random_private_key;

/// How long a token is valid: half the 24 hours RFC 8292 allows, so a push service's
/// clock a little ahead still accepts it.
pub const TOKEN_LIFETIME_SECS: u64 = 12 * 3600;
/// The longest validity RFC 8292 §2 allows.
pub const MAX_TOKEN_LIFETIME_SECS: u64 = 24 * 3600;

/// The claims of a VAPID token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The push service's origin (`https://push.example.net`).
    pub aud: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// A contact for the push service's operator: `mailto:` or `https:`.
    pub sub: String,
}

/// The service's VAPID key pair.
#[derive(Clone)]
pub struct VapidKey {
    signing: SigningKey,
}

impl std::fmt::Debug for VapidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapidKey").field("public", &self.public_key_base64url()).finish_non_exhaustive()
    }
}

impl VapidKey {
    /// A new random key pair.
    pub fn generate() -> VapidKey {
        VapidKey { signing: SigningKey::from(random_private_key()) }
    }

    /// The key from its private scalar in base64url (surrounding whitespace ignored).
    pub fn from_base64url(text: &str) -> Result<VapidKey, WebPushError> {
        let bytes = URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| WebPushError::BadPrivateKey)?;
        let secret = SecretKey::from_slice(&bytes).map_err(|_| WebPushError::BadPrivateKey)?;
        Ok(VapidKey { signing: SigningKey::from(secret) })
    }

    /// The private scalar in base64url (what [`VapidKey::from_base64url`] reads).
    pub fn private_key_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.signing.to_bytes())
    }

    /// The public key as browsers take it (`applicationServerKey`): the uncompressed
    /// point in base64url.
    pub fn public_key_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.signing.verifying_key().to_encoded_point(false).as_bytes())
    }

    /// The `Authorization` header for a push to `endpoint` at `now_secs`, signed for the
    /// endpoint's origin, valid [`TOKEN_LIFETIME_SECS`], naming `subject` as contact.
    pub fn authorization(
        &self,
        endpoint: &str,
        subject: &str,
        now_secs: u64,
    ) -> Result<String, WebPushError> {
        let claims =
            Claims { aud: origin(endpoint)?, exp: now_secs + TOKEN_LIFETIME_SECS, sub: subject.to_owned() };
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let signed = format!("{header}.{body}");
        let signature: Signature = self.signing.sign(signed.as_bytes());
        let token = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()));
        Ok(format!("vapid t={token}, k={}", self.public_key_base64url()))
    }

    /// Reads the key from `path`, or, when there is no file, makes one and writes it
    /// there (readable by the owner only), atomically: a crash leaves either no key or
    /// the whole key.
    pub fn load_or_create(path: &Path) -> std::io::Result<VapidKey> {
        match std::fs::read_to_string(path) {
            Ok(text) => VapidKey::from_base64url(&text).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = VapidKey::generate();
                let partial = path.with_extension("partial");
                {
                    use std::io::Write;
                    use std::os::unix::fs::OpenOptionsExt;
                    let mut file = std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .mode(0o600)
                        .open(&partial)?;
                    file.write_all(key.private_key_base64url().as_bytes())?;
                    file.write_all(b"\n")?;
                    file.sync_all()?;
                }
                std::fs::rename(&partial, path)?;
                if let Some(dir) = path.parent() {
                    std::fs::File::open(dir)?.sync_all()?;
                }
                Ok(key)
            }
            Err(e) => Err(e),
        }
    }
}

/// The origin of a push endpoint: what a token's `aud` names.
pub fn origin(endpoint: &str) -> Result<String, WebPushError> {
    let url = url::Url::parse(endpoint).map_err(|_| WebPushError::BadEndpoint)?;
    if !matches!(url.scheme(), "https" | "http") || url.host().is_none() {
        return Err(WebPushError::BadEndpoint);
    }
    Ok(url.origin().ascii_serialization())
}

/// Why a VAPID header is refused (what a push service checks).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VapidRefusal {
    /// Not `vapid t=…, k=…`, or a part is not base64url JSON.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// The header's key is not the expected one.
    #[error("signed by another key")]
    WrongKey,
    /// The signature does not verify.
    #[error("the signature does not verify")]
    BadSignature,
    /// `aud` is not the push service's origin.
    #[error("audience {0:?} is not this push service")]
    WrongAudience(String),
    /// Expired, or valid for more than 24 hours.
    #[error("exp {exp} is not within 24 hours after {now}")]
    BadExpiry {
        /// The token's `exp`.
        exp: u64,
        /// The checking time.
        now: u64,
    },
}

/// Checks an `Authorization` header as a push service does: the key is `public_key`
/// (base64url, as served to browsers), the ES256 signature verifies with it, `aud` is
/// `audience`, and `exp` is after `now_secs` and at most 24 hours ahead.
pub fn verify_authorization(
    header: &str,
    public_key: &str,
    audience: &str,
    now_secs: u64,
) -> Result<Claims, VapidRefusal> {
    let rest = header.strip_prefix("vapid ").ok_or(VapidRefusal::Malformed("not the vapid scheme"))?;
    let (mut token, mut key) = (None, None);
    for part in rest.split(',').map(str::trim) {
        if let Some(t) = part.strip_prefix("t=") {
            token = Some(t);
        } else if let Some(k) = part.strip_prefix("k=") {
            key = Some(k);
        }
    }
    let (token, key) = token.zip(key).ok_or(VapidRefusal::Malformed("no t= or no k="))?;
    if key != public_key {
        return Err(VapidRefusal::WrongKey);
    }
    let point = URL_SAFE_NO_PAD.decode(key).map_err(|_| VapidRefusal::Malformed("k"))?;
    let verifying = VerifyingKey::from_sec1_bytes(&point).map_err(|_| VapidRefusal::Malformed("k"))?;
    let (signed, signature) = token.rsplit_once('.').ok_or(VapidRefusal::Malformed("token"))?;
    let (header_part, claims_part) = signed.split_once('.').ok_or(VapidRefusal::Malformed("token"))?;
    let header: serde_json::Value = URL_SAFE_NO_PAD
        .decode(header_part)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(VapidRefusal::Malformed("header"))?;
    if header["alg"] != "ES256" {
        return Err(VapidRefusal::Malformed("alg is not ES256"));
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or(VapidRefusal::Malformed("signature"))?;
    verifying.verify(signed.as_bytes(), &signature).map_err(|_| VapidRefusal::BadSignature)?;
    let claims: Claims = URL_SAFE_NO_PAD
        .decode(claims_part)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(VapidRefusal::Malformed("claims"))?;
    if claims.aud != audience {
        return Err(VapidRefusal::WrongAudience(claims.aud));
    }
    if claims.exp <= now_secs || claims.exp > now_secs + MAX_TOKEN_LIFETIME_SECS {
        return Err(VapidRefusal::BadExpiry { exp: claims.exp, now: now_secs });
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

    use super::*;

    const NOW: u64 = 1_764_000_000;
    const ENDPOINT: &str = "https://push.example.net:8443/wpush/v2/abc?x=1";

    #[test]
    fn a_token_names_the_push_services_origin_and_verifies_with_the_public_key() {
        let key = VapidKey::generate();
        let header = key.authorization(ENDPOINT, "mailto:ops@example.com", NOW).unwrap();
        let public = key.public_key_base64url();
        assert_eq!(URL_SAFE_NO_PAD.decode(&public).unwrap().len(), 65);
        let claims = verify_authorization(&header, &public, "https://push.example.net:8443", NOW).unwrap();
        assert_eq!(claims.exp, NOW + TOKEN_LIFETIME_SECS);
        assert_eq!(claims.sub, "mailto:ops@example.com");
        assert!(claims.exp - NOW <= MAX_TOKEN_LIFETIME_SECS);

        let other = VapidKey::generate().public_key_base64url();
        assert_eq!(
            verify_authorization(&header, &other, "https://push.example.net:8443", NOW),
            Err(VapidRefusal::WrongKey)
        );
        assert!(matches!(
            verify_authorization(&header, &public, "https://push.example.net", NOW),
            Err(VapidRefusal::WrongAudience(_))
        ));
        assert!(matches!(
            verify_authorization(
                &header,
                &public,
                "https://push.example.net:8443",
                NOW + TOKEN_LIFETIME_SECS
            ),
            Err(VapidRefusal::BadExpiry { .. })
        ));
        // A token signed by another key under this key's name.
        let forged = VapidKey::generate().authorization(ENDPOINT, "mailto:x@y", NOW).unwrap();
        let forged = format!("{}, k={public}", forged.split(", k=").next().unwrap());
        assert_eq!(
            verify_authorization(&forged, &public, "https://push.example.net:8443", NOW),
            Err(VapidRefusal::BadSignature)
        );
    }

    #[test]
    fn the_key_round_trips_and_is_made_once_in_its_file() {
        let key = VapidKey::generate();
        let again = VapidKey::from_base64url(&format!("{}\n", key.private_key_base64url())).unwrap();
        assert_eq!(again.public_key_base64url(), key.public_key_base64url());
        assert!(VapidKey::from_base64url("not a key").is_err());
        assert!(VapidKey::from_base64url(&URL_SAFE_NO_PAD.encode([0u8; 32])).is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vapid.key");
        let first = VapidKey::load_or_create(&path).unwrap();
        let second = VapidKey::load_or_create(&path).unwrap();
        assert_eq!(first.public_key_base64url(), second.public_key_base64url());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::write(&path, "garbage").unwrap();
        assert_eq!(VapidKey::load_or_create(&path).unwrap_err().kind(), std::io::ErrorKind::InvalidData);
    }

    #[test]
    fn endpoints_without_an_origin_are_refused() {
        assert_eq!(origin("https://fcm.googleapis.com/fcm/send/x").unwrap(), "https://fcm.googleapis.com");
        assert_eq!(origin("http://127.0.0.1:9000/p").unwrap(), "http://127.0.0.1:9000");
        assert_eq!(origin("mailto:x@y"), Err(WebPushError::BadEndpoint));
        assert_eq!(origin("/relative"), Err(WebPushError::BadEndpoint));
    }
}
