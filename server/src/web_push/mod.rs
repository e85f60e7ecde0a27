//! Web Push to browsers (RFC 8030): the payload encryption a push service cannot read
//! (RFC 8291, `aes128gcm` of RFC 8188) and the application server's identification to the
//! push service (VAPID, RFC 8292). Pure functions of their inputs — keys, salt and time
//! are arguments — so each is tested against the RFCs' examples; choosing what to push and
//! sending it are elsewhere.

pub mod encryption;
pub mod request;
pub mod vapid;

/// Why a push payload or a VAPID token could not be made (or a payload read).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebPushError {
    /// A subscription's `p256dh` is not an uncompressed P-256 point.
    #[error("the subscription's p256dh key is not a P-256 public key")]
    BadPublicKey,
    /// A subscription's `auth` secret is not 16 bytes.
    #[error("the subscription's auth secret is not 16 bytes")]
    BadAuthSecret,
    /// A private key is not a P-256 scalar.
    #[error("not a P-256 private key")]
    BadPrivateKey,
    /// The plaintext does not fit one record of the payload.
    #[error("the payload is {0} bytes; at most {max} fit", max = encryption::MAX_PLAINTEXT_BYTES)]
    TooLarge(usize),
    /// An encrypted payload is cut short, names another key, or fails its tag.
    #[error("the encrypted payload cannot be read: {0}")]
    Undecryptable(&'static str),
    /// A push endpoint has no origin to name as the audience.
    #[error("the push endpoint is not an absolute https:// or http:// URL")]
    BadEndpoint,
}
