//! RFC 8291 message encryption for Web Push: an ECDH agreement between a one-off key of
//! the application server and the subscription's `p256dh` key, mixed with the
//! subscription's `auth` secret through HKDF-SHA256, encrypts one AES-128-GCM record in
//! the `aes128gcm` content coding of RFC 8188. The sender's key and the salt are
//! arguments (drawn fresh for each message by [`encrypt`]) so the RFC's example is
//! reproduced byte for byte.

use hkdf::Hkdf;
use p256::{PublicKey, SecretKey, elliptic_curve::sec1::ToEncodedPoint};
use ring::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use sha2::Sha256;

use super::WebPushError;

/// Length of an uncompressed P-256 point.
const PUBLIC_KEY_BYTES: usize = 65;
/// Length of the `auth` secret.
const AUTH_SECRET_BYTES: usize = 16;
/// Length of the salt.
const SALT_BYTES: usize = 16;
/// AES-GCM's tag.
const TAG_BYTES: usize = 16;
/// The record size written in the header: a push message is one record (RFC 8291 §4).
pub const RECORD_SIZE: u32 = 4096;
/// The header: salt, record size, key id length, key id (the sender's public key).
pub const HEADER_BYTES: usize = SALT_BYTES + 4 + 1 + PUBLIC_KEY_BYTES;
/// The largest body push services must accept (RFC 8030 §7.2).
pub const MAX_BODY_BYTES: usize = 4096;
/// The largest plaintext whose encrypted body (header, plaintext, delimiter, tag) fits
/// [`MAX_BODY_BYTES`]; [`encrypt`] refuses more.
pub const MAX_PLAINTEXT_BYTES: usize = MAX_BODY_BYTES - HEADER_BYTES - 1 - TAG_BYTES;

/// A browser's push subscription keys (`PushSubscription.getKey`): where the payload
/// goes is its endpoint, who can read it these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionKeys {
    /// `p256dh`: the user agent's uncompressed P-256 public key.
    pub p256dh: [u8; PUBLIC_KEY_BYTES],
    /// `auth`: the shared authentication secret.
    pub auth: [u8; AUTH_SECRET_BYTES],
}

impl SubscriptionKeys {
    /// Checks raw key bytes (decoded from the subscription's base64url fields).
    pub fn new(p256dh: &[u8], auth: &[u8]) -> Result<SubscriptionKeys, WebPushError> {
        let p256dh: [u8; PUBLIC_KEY_BYTES] = p256dh.try_into().map_err(|_| WebPushError::BadPublicKey)?;
        PublicKey::from_sec1_bytes(&p256dh).map_err(|_| WebPushError::BadPublicKey)?;
        let auth = auth.try_into().map_err(|_| WebPushError::BadAuthSecret)?;
        Ok(SubscriptionKeys { p256dh, auth })
    }
}

/// The content-encryption key and nonce of one message (RFC 8291 §3.3–3.4).
fn derive(
    shared_secret: &[u8],
    auth: &[u8; AUTH_SECRET_BYTES],
    ua_public: &[u8; PUBLIC_KEY_BYTES],
    as_public: &[u8],
    salt: &[u8; SALT_BYTES],
) -> ([u8; 16], [u8; 12]) {
    let mut key_info = Vec::with_capacity(14 + 2 * PUBLIC_KEY_BYTES);
    key_info.extend_from_slice(b"WebPush: info\0");
    key_info.extend_from_slice(ua_public);
    key_info.extend_from_slice(as_public);
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(auth), shared_secret)
        .expand(&key_info, &mut ikm)
        .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF-SHA256 length"));
    let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
    let (mut cek, mut nonce) = ([0u8; 16], [0u8; 12]);
    prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek)
        .unwrap_or_else(|_| unreachable!("16 bytes is a valid HKDF-SHA256 length"));
    prk.expand(b"Content-Encoding: nonce\0", &mut nonce)
        .unwrap_or_else(|_| unreachable!("12 bytes is a valid HKDF-SHA256 length"));
    (cek, nonce)
}

fn aead_key(cek: &[u8; 16]) -> LessSafeKey {
    LessSafeKey::new(
        UnboundKey::new(&AES_128_GCM, cek).unwrap_or_else(|_| unreachable!("AES-128 takes a 16-byte key")),
    )
}

/// Encrypts `plaintext` for a subscription with the sender's key `as_private` and
/// `salt` — both must be fresh for every message (see [`encrypt`]). Returns the request
/// body: the `aes128gcm` header, then the one record.
pub fn encrypt_with(
    plaintext: &[u8],
    to: &SubscriptionKeys,
    as_private: &SecretKey,
    salt: &[u8; SALT_BYTES],
) -> Result<Vec<u8>, WebPushError> {
    if plaintext.len() > MAX_PLAINTEXT_BYTES {
        return Err(WebPushError::TooLarge(plaintext.len()));
    }
    let ua_public = PublicKey::from_sec1_bytes(&to.p256dh).map_err(|_| WebPushError::BadPublicKey)?;
    let as_public = as_private.public_key().to_encoded_point(false);
    let shared = p256::ecdh::diffie_hellman(as_private.to_nonzero_scalar(), ua_public.as_affine());
    let (cek, nonce) = derive(shared.raw_secret_bytes(), &to.auth, &to.p256dh, as_public.as_bytes(), salt);

    let mut body = Vec::with_capacity(HEADER_BYTES + plaintext.len() + 1 + TAG_BYTES);
    body.extend_from_slice(salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(PUBLIC_KEY_BYTES as u8);
    body.extend_from_slice(as_public.as_bytes());
    let mut record = Vec::with_capacity(plaintext.len() + 1 + TAG_BYTES);
    record.extend_from_slice(plaintext);
    // The last (and only) record's delimiter, no padding.
    record.push(2);
    aead_key(&cek)
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut record)
        .map_err(|_| WebPushError::TooLarge(plaintext.len()))?;
    body.extend_from_slice(&record);
    Ok(body)
}

/// A fresh P-256 private key.
pub fn random_private_key() -> SecretKey {
    loop {
        let bytes: [u8; 32] = rand::random();
        // Fails only for zero or a value at or above the group order (about 2^-32).
        if let Ok(key) = SecretKey::from_slice(&bytes) {
            return key;
        }
    }
}

/// Encrypts `plaintext` for a subscription with a fresh sender key and salt.
pub fn encrypt(plaintext: &[u8], to: &SubscriptionKeys) -> Result<Vec<u8>, WebPushError> {
    encrypt_with(plaintext, to, &random_private_key(), &rand::random())
}

/// Decrypts a payload as the user agent does, with its private key and `auth` secret:
/// what a push service stub or a test uses to read what was pushed.
pub fn decrypt(
    body: &[u8],
    ua_private: &SecretKey,
    auth: &[u8; AUTH_SECRET_BYTES],
) -> Result<Vec<u8>, WebPushError> {
    let short = WebPushError::Undecryptable("shorter than its header");
    if body.len() < SALT_BYTES + 5 {
        return Err(short);
    }
    let salt: [u8; SALT_BYTES] = body[..SALT_BYTES].try_into().map_err(|_| short.clone())?;
    let record_size = u32::from_be_bytes(body[16..20].try_into().map_err(|_| short.clone())?) as usize;
    let key_len = usize::from(body[20]);
    let Some(as_public) = body.get(21..21 + key_len) else { return Err(short) };
    let record = &body[21 + key_len..];
    if record.len() > record_size || record.len() < TAG_BYTES + 1 {
        return Err(WebPushError::Undecryptable("not one record"));
    }
    let sender = PublicKey::from_sec1_bytes(as_public).map_err(|_| WebPushError::BadPublicKey)?;
    let ua_public = ua_private.public_key().to_encoded_point(false);
    let ua_public: [u8; PUBLIC_KEY_BYTES] =
        ua_public.as_bytes().try_into().map_err(|_| WebPushError::BadPrivateKey)?;
    let shared = p256::ecdh::diffie_hellman(ua_private.to_nonzero_scalar(), sender.as_affine());
    let (cek, nonce) = derive(shared.raw_secret_bytes(), auth, &ua_public, as_public, &salt);
    let mut record = record.to_vec();
    let plain = aead_key(&cek)
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut record)
        .map_err(|_| WebPushError::Undecryptable("the tag does not verify"))?;
    // Strip the padding: zeros after the delimiter, which must be 2 (the last record).
    let end = plain.iter().rposition(|b| *b != 0).ok_or(WebPushError::Undecryptable("no delimiter"))?;
    if plain[end] != 2 {
        return Err(WebPushError::Undecryptable("not the last record"));
    }
    Ok(plain[..end].to_vec())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn b64(s: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(s).unwrap()
    }

    /// RFC 8291 Appendix A.
    const PLAINTEXT: &[u8] = b"When I grow up, I want to be a watermelon";
    const AS_PRIVATE: &str = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw";
    const AS_PUBLIC: &str =
        "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8";
    const UA_PRIVATE: &str = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94";
    const UA_PUBLIC: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";
    const SALT: &str = "DGv6ra1nlYgDCS1FRnbzlw";
    const BODY: &str = concat!(
        "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27ml",
        "mlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPT",
        "pK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN",
    );

    fn subscription() -> SubscriptionKeys {
        SubscriptionKeys::new(&b64(UA_PUBLIC), &b64(AUTH)).unwrap()
    }

    #[test]
    fn the_rfc_8291_example_is_reproduced_byte_for_byte() {
        let as_private = SecretKey::from_slice(&b64(AS_PRIVATE)).unwrap();
        assert_eq!(as_private.public_key().to_encoded_point(false).as_bytes(), b64(AS_PUBLIC).as_slice());
        let salt: [u8; 16] = b64(SALT).try_into().unwrap();
        let body = encrypt_with(PLAINTEXT, &subscription(), &as_private, &salt).unwrap();
        assert_eq!(URL_SAFE_NO_PAD.encode(&body), BODY);
    }

    #[test]
    fn the_user_agent_reads_the_rfc_example_and_fresh_payloads() {
        let ua_private = SecretKey::from_slice(&b64(UA_PRIVATE)).unwrap();
        let auth: [u8; 16] = b64(AUTH).try_into().unwrap();
        assert_eq!(decrypt(&b64(BODY), &ua_private, &auth).unwrap(), PLAINTEXT);
        let fresh = encrypt(b"{\"room\":\"r_a\"}", &subscription()).unwrap();
        assert_ne!(fresh[..16], b64(SALT)[..], "a fresh salt");
        assert_eq!(decrypt(&fresh, &ua_private, &auth).unwrap(), b"{\"room\":\"r_a\"}");
        let mut tampered = fresh.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(matches!(decrypt(&tampered, &ua_private, &auth), Err(WebPushError::Undecryptable(_))));
        assert!(decrypt(&fresh[..10], &ua_private, &auth).is_err());
    }

    #[test]
    fn payloads_fit_four_kilobytes_and_bad_keys_are_refused() {
        let largest = vec![b'x'; MAX_PLAINTEXT_BYTES];
        assert_eq!(encrypt(&largest, &subscription()).unwrap().len(), MAX_BODY_BYTES);
        assert_eq!(
            encrypt(&vec![0; MAX_PLAINTEXT_BYTES + 1], &subscription()),
            Err(WebPushError::TooLarge(MAX_PLAINTEXT_BYTES + 1))
        );
        assert_eq!(SubscriptionKeys::new(&[4; 65], &[0; 16]), Err(WebPushError::BadPublicKey));
        assert_eq!(SubscriptionKeys::new(&b64(UA_PUBLIC)[..64], &[0; 16]), Err(WebPushError::BadPublicKey));
        assert_eq!(SubscriptionKeys::new(&b64(UA_PUBLIC), &[0; 15]), Err(WebPushError::BadAuthSecret));
    }
}
