//! One push as an HTTP request to a push service (RFC 8030 §5): the encrypted body and
//! the headers that go with it. Pure: the key, the time and the payload are arguments;
//! sending it and reading the answer (`palaver_core::push::outcome`) are the caller's.

use super::WebPushError;
use super::encryption::{SubscriptionKeys, encrypt};
use super::vapid::VapidKey;

/// A push, ready to send: `POST` `endpoint` with `headers` and `body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRequest {
    /// The subscription's endpoint.
    pub endpoint: String,
    /// Header names (lower case) and values.
    pub headers: Vec<(&'static str, String)>,
    /// The `aes128gcm` body.
    pub body: Vec<u8>,
}

/// What a push says and how the push service should treat it.
#[derive(Debug, Clone, Copy)]
pub struct PushParts<'a> {
    /// The payload's plaintext (JSON, at most `palaver_core::push::MAX_PAYLOAD_BYTES`).
    pub payload: &'a [u8],
    /// `Topic`: pushes of one topic replace each other while undelivered.
    pub topic: &'a str,
    /// `Urgency`: `very-low`, `low`, `normal` or `high`.
    pub urgency: &'a str,
    /// `TTL`: how long the push service keeps it, in seconds.
    pub ttl_secs: u32,
}

/// Builds the request for one push to `endpoint` with the subscription's keys, signed
/// with `vapid` for the endpoint's origin at `now_secs`, naming `subject` as contact.
pub fn push_request(
    endpoint: &str,
    keys: &SubscriptionKeys,
    parts: PushParts<'_>,
    vapid: &VapidKey,
    subject: &str,
    now_secs: u64,
) -> Result<PushRequest, WebPushError> {
    let authorization = vapid.authorization(endpoint, subject, now_secs)?;
    let body = encrypt(parts.payload, keys)?;
    Ok(PushRequest {
        endpoint: endpoint.to_owned(),
        headers: vec![
            ("authorization", authorization),
            ("content-encoding", "aes128gcm".to_owned()),
            ("content-type", "application/octet-stream".to_owned()),
            ("content-length", body.len().to_string()),
            ("ttl", parts.ttl_secs.to_string()),
            ("urgency", parts.urgency.to_owned()),
            ("topic", parts.topic.to_owned()),
        ],
        body,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use p256::elliptic_curve::sec1::ToEncodedPoint;

    use super::*;
    use crate::web_push::encryption::{decrypt, random_private_key};
    use crate::web_push::vapid::verify_authorization;

    #[test]
    fn a_push_carries_the_encrypted_payload_and_the_headers_the_push_service_checks() {
        let ua = random_private_key();
        let auth: [u8; 16] = rand::random();
        let keys = SubscriptionKeys::new(ua.public_key().to_encoded_point(false).as_bytes(), &auth).unwrap();
        let vapid = VapidKey::generate();
        let parts =
            PushParts { payload: br#"{"room":"r_a"}"#, topic: "00ff", urgency: "high", ttl_secs: 86_400 };
        let endpoint = "https://push.example.net/send/abc";
        let request = push_request(endpoint, &keys, parts, &vapid, "mailto:ops@example.com", 1_000).unwrap();
        let header = |name: &str| request.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
        assert_eq!(header("content-encoding"), Some("aes128gcm"));
        assert_eq!(header("ttl"), Some("86400"));
        assert_eq!(header("urgency"), Some("high"));
        assert_eq!(header("topic"), Some("00ff"));
        assert_eq!(header("content-length"), Some(request.body.len().to_string().as_str()));
        let claims = verify_authorization(
            header("authorization").unwrap(),
            &vapid.public_key_base64url(),
            "https://push.example.net",
            1_000,
        )
        .unwrap();
        assert_eq!(claims.sub, "mailto:ops@example.com");
        assert_eq!(decrypt(&request.body, &ua, &auth).unwrap(), br#"{"room":"r_a"}"#);
        assert!(
            URL_SAFE_NO_PAD.encode(&request.body[21..86]).starts_with('B'),
            "the sender's key in the header"
        );
    }
}
