//! Signing deliveries per Standard Webhooks: `webhook-id`, `webhook-timestamp` (Unix
//! seconds) and `webhook-signature`, a space-separated list of `v1,<base64 HMAC-SHA256 of
//! "{id}.{timestamp}.{body}">`, one per current secret, so a receiver rotating its secret
//! accepts either while both are configured. Secrets read `whsec_<base64 of the key>`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

/// What every secret starts with.
pub const SECRET_PREFIX: &str = "whsec_";
/// The fewest key bytes a secret may have (the spec asks for 24 to 64).
pub const MIN_KEY_BYTES: usize = 24;
/// The most key bytes a secret may have.
pub const MAX_KEY_BYTES: usize = 64;

/// A signing secret's key.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// Why a secret cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// Not `whsec_` and base64.
    #[error("a webhook secret reads whsec_ followed by base64")]
    Malformed,
    /// Too short or too long a key.
    #[error("a webhook secret's key is {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes")]
    Length,
}

impl Secret {
    /// Reads `whsec_<base64>`.
    pub fn parse(text: &str) -> Result<Secret, SecretError> {
        let key = STANDARD.decode(text.strip_prefix(SECRET_PREFIX).ok_or(SecretError::Malformed)?);
        let key = key.map_err(|_| SecretError::Malformed)?;
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&key.len()) {
            return Err(SecretError::Length);
        }
        Ok(Secret(key))
    }

    /// A new random secret (32 bytes) and its text.
    pub fn generate() -> (Secret, String) {
        let key: [u8; 32] = rand::random();
        (Secret(key.to_vec()), format!("{SECRET_PREFIX}{}", STANDARD.encode(key)))
    }

    fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        #[allow(clippy::expect_used, reason = "HMAC takes a key of any length")]
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The three headers of a delivery: `(name, value)`.
pub fn headers(id: &str, timestamp: u64, body: &[u8], secrets: &[Secret]) -> [(&'static str, String); 3] {
    let signatures: Vec<String> = secrets.iter().map(|secret| secret.sign(id, timestamp, body)).collect();
    [
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signatures.join(" ")),
    ]
}

/// Whether a `webhook-signature` value holds a valid signature by `secret` (what a
/// receiver checks; here for tests and for operators' tools).
pub fn verify(secret: &Secret, id: &str, timestamp: u64, body: &[u8], signature_header: &str) -> bool {
    let expected = secret.sign(id, timestamp, body);
    signature_header.split(' ').any(|candidate| {
        candidate.len() == expected.len()
            && candidate.bytes().zip(expected.bytes()).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    /// The test vector of the Standard Webhooks specification.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: u64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn the_specifications_vector_signs_byte_for_byte() {
        let secret = Secret::parse(SECRET).unwrap();
        let [id, timestamp, signature] = headers(ID, TIMESTAMP, BODY, std::slice::from_ref(&secret));
        assert_eq!(id, ("webhook-id", ID.to_owned()));
        assert_eq!(timestamp, ("webhook-timestamp", "1614265330".to_owned()));
        assert_eq!(signature, ("webhook-signature", SIGNATURE.to_owned()));
        assert!(verify(&secret, ID, TIMESTAMP, BODY, SIGNATURE));
        assert!(!verify(&secret, ID, TIMESTAMP + 1, BODY, SIGNATURE));
        assert!(!verify(&secret, ID, TIMESTAMP, b"{}", SIGNATURE));
    }

    #[test]
    fn a_rotation_signs_with_every_current_secret() {
        let old = Secret::parse(SECRET).unwrap();
        let (new, text) = Secret::generate();
        assert_eq!(Secret::parse(&text).unwrap(), new);
        let [_, _, (_, signatures)] = headers(ID, TIMESTAMP, BODY, &[new.clone(), old.clone()]);
        assert_eq!(signatures.split(' ').count(), 2);
        assert!(
            verify(&old, ID, TIMESTAMP, BODY, &signatures) && verify(&new, ID, TIMESTAMP, BODY, &signatures)
        );
        assert!(!format!("{new:?}").contains(&text[6..]), "a secret is never printed");
    }

    #[test]
    fn malformed_secrets_are_refused() {
        assert_eq!(Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), Err(SecretError::Malformed));
        assert_eq!(Secret::parse("whsec_!!!"), Err(SecretError::Malformed));
        assert_eq!(Secret::parse("whsec_c2hvcnQ="), Err(SecretError::Length));
    }
}
