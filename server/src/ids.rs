//! Fresh identifiers: 48 bits of milliseconds then 80 random bits, in lower-case base32,
//! so ids sort by creation time and never collide in practice. Within one process they
//! strictly increase (an id made in the same millisecond as the last is the last plus
//! one), so lists keyed by id, such as the audit log, keep the order things happened.

use std::sync::Mutex;

use palaver_protocol::{RoomId, SessionId, UserId};
use rand::Rng;

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// The last body made in this process, as a number.
static LAST: Mutex<u128> = Mutex::new(0);

fn body() -> String {
    let ms = crate::clock::now_ms() & ((1 << 48) - 1);
    let random: u128 = rand::rng().random::<u128>() >> 48;
    let fresh = (u128::from(ms) << 80) | random;
    let mut value = match LAST.lock() {
        Ok(mut last) => {
            *last = if fresh > *last { fresh } else { last.wrapping_add(1) };
            *last
        }
        Err(_) => fresh,
    };
    let mut out = [0u8; 26];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(value & 31) as usize];
        value >>= 5;
    }
    out.iter().map(|&b| b as char).collect()
}

/// A new user id.
pub fn user_id() -> UserId {
    UserId::from_body(&body()).unwrap_or_else(|_| unreachable!("base32 bodies are valid"))
}

/// A new room id.
pub fn room_id() -> RoomId {
    RoomId::from_body(&body()).unwrap_or_else(|_| unreachable!("base32 bodies are valid"))
}

/// The one direct-message room of two users: derived from the pair (order-free), so
/// every `dm.open` of either user names the same room, and its owning shard creates it
/// at most once.
pub fn dm_room_id(a: &UserId, b: &UserId) -> RoomId {
    use sha2::{Digest, Sha256};
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let digest = Sha256::digest(format!("palaver-dm\0{lo}\0{hi}").as_bytes());
    let body: String = digest.iter().take(20).map(|b| ALPHABET[usize::from(b & 31)] as char).collect();
    RoomId::from_body(&format!("dm{body}")).unwrap_or_else(|_| unreachable!("base32 bodies are valid"))
}

/// A new file id (`f_` + the same time-ordered random body).
pub fn file_id() -> String {
    format!("f_{}", body())
}

/// A new audit-log entry id (`a_` + the time-ordered random body: entries list in the
/// order they were made).
pub fn audit_id() -> String {
    format!("a_{}", body())
}

/// A new report id (`rp_` + the time-ordered random body).
pub fn report_id() -> String {
    format!("rp_{}", body())
}

/// A new session id.
pub fn session_id() -> SessionId {
    SessionId::from_body(&body()).unwrap_or_else(|_| unreachable!("base32 bodies are valid"))
}

/// A random token: 32 bytes, URL-safe base64 without padding.
pub fn secret_token() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::rng().random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_pair_has_one_dm_room_whoever_opens_it() {
        let (a, b, c) = (super::user_id(), super::user_id(), super::user_id());
        assert_eq!(super::dm_room_id(&a, &b), super::dm_room_id(&b, &a));
        assert_ne!(super::dm_room_id(&a, &b), super::dm_room_id(&a, &c));
    }

    #[test]
    fn ids_made_in_one_process_strictly_increase() {
        let ids: Vec<String> = (0..10_000).map(|_| super::audit_id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "out of order within a millisecond");
    }

    #[test]
    fn ids_are_distinct_and_valid() {
        let a = super::room_id();
        let b = super::room_id();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 28);
    }
}
