//! Rules of the end-to-end encryption key directory. The directory holds only public
//! material (device identity and signing keys, one-time prekeys); these rules keep it
//! well-formed and make a device's identity immutable once published, so a server bug or
//! a compromised session cannot silently swap the key others encrypt to.

use palaver_protocol::{OneTimeKey, limits};

use crate::error::CoreError;

/// A device id: 1–64 of `[A-Za-z0-9_-]`.
pub fn valid_device_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= limits::MAX_KEY_BYTES && key.bytes().all(|b| b.is_ascii_graphic())
}

/// A device's published identity, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedDevice<'a> {
    /// Its identity key.
    pub identity_key: &'a str,
    /// Its signing key.
    pub signing_key: Option<&'a str>,
}

/// Checks a `keys.upload` against what the directory already holds for that device
/// (`published`, its unclaimed one-time key count, and how many devices the user has).
pub fn check_upload(
    device_id: &str,
    identity_key: &str,
    signing_key: Option<&str>,
    one_time_keys: &[OneTimeKey],
    published: Option<PublishedDevice<'_>>,
    unclaimed: usize,
    devices: usize,
) -> Result<(), CoreError> {
    let malformed = |field, rule| Err(CoreError::Malformed { field, rule });
    if !valid_device_id(device_id) {
        return malformed("device_id", "must be 1 to 64 of [A-Za-z0-9_-]");
    }
    if !valid_key(identity_key) || signing_key.is_some_and(|k| !valid_key(k)) {
        return malformed("keys", "are 1 to 512 printable characters");
    }
    if one_time_keys.len() > limits::MAX_ONE_TIME_KEYS_PER_UPLOAD {
        let max = limits::MAX_ONE_TIME_KEYS_PER_UPLOAD as u64;
        return Err(CoreError::OutOfRange { field: "one_time_keys per upload", min: 0, max });
    }
    if one_time_keys.iter().any(|k| k.key_id.len() > 64 || !valid_key(&k.key_id) || !valid_key(&k.key)) {
        return malformed("one_time_keys", "need a printable key_id (at most 64 bytes) and a printable key");
    }
    let mut ids: Vec<&str> = one_time_keys.iter().map(|k| k.key_id.as_str()).collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        return malformed("one_time_keys", "have ids that repeat");
    }
    match published {
        Some(device) if device.identity_key != identity_key || device.signing_key != signing_key => {
            return Err(CoreError::DeviceKeysFixed(device_id.to_owned()));
        }
        Some(_) => {}
        None if devices >= limits::MAX_DEVICES => {
            return Err(CoreError::DevicesCap { max: limits::MAX_DEVICES });
        }
        None => {}
    }
    if unclaimed + one_time_keys.len() > limits::MAX_ONE_TIME_KEYS_PER_DEVICE {
        let max = limits::MAX_ONE_TIME_KEYS_PER_DEVICE as u64;
        return Err(CoreError::OutOfRange { field: "unclaimed one-time keys per device", min: 0, max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn otk(id: &str) -> OneTimeKey {
        OneTimeKey { key_id: id.into(), key: format!("key-{id}") }
    }

    #[test]
    fn uploads_are_checked_and_identities_never_change() {
        assert!(check_upload("PHONE", "idk", Some("sigk"), &[otk("a"), otk("b")], None, 0, 0).is_ok());
        let published = || Some(PublishedDevice { identity_key: "idk", signing_key: Some("sigk") });
        assert!(check_upload("PHONE", "idk", Some("sigk"), &[otk("c")], published(), 2, 1).is_ok());
        let swapped = check_upload("PHONE", "other", Some("sigk"), &[], published(), 2, 1);
        assert_eq!(swapped.unwrap_err().code(), palaver_protocol::ErrorCode::Conflict);
        let bad = |r: Result<(), CoreError>| r.unwrap_err().code();
        use palaver_protocol::ErrorCode::{Forbidden, Invalid};
        assert_eq!(bad(check_upload("bad id!", "idk", None, &[], None, 0, 0)), Invalid);
        assert_eq!(bad(check_upload("D", "", None, &[], None, 0, 0)), Invalid);
        assert_eq!(bad(check_upload("D", "idk", None, &[otk("a"), otk("a")], None, 0, 0)), Invalid);
        assert_eq!(bad(check_upload("D", "idk", None, &[otk("a")], None, 1_000, 0)), Invalid);
        assert_eq!(bad(check_upload("D", "idk", None, &[], None, 0, limits::MAX_DEVICES)), Forbidden);
        let many: Vec<_> = (0..101).map(|i| otk(&i.to_string())).collect();
        assert_eq!(bad(check_upload("D", "idk", None, &many, None, 0, 0)), Invalid);
    }
}
