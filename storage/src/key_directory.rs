//! The end-to-end encryption key directory on disk: devices' public keys
//! (`user ++ 0 ++ device` → JSON) and their one-time prekeys
//! (`user ++ 0 ++ device ++ 0 ++ key_id` → key). Public material only.

use palaver_core::records::DeviceRecord;
use palaver_protocol::UserId;

use crate::error::StorageError;
use crate::governance::scan_pairs;
use crate::keys;
use crate::store::{Store, decode_json};

impl Store {
    /// A user's devices with their keys, by device id (one-time key entries skipped).
    pub fn devices(&self, user: &UserId) -> Result<Vec<(String, DeviceRecord)>, StorageError> {
        let e = self.engine()?;
        scan_pairs(&e.user_device, "user_device", user.as_str())?
            .into_iter()
            .map(|(device, value)| Ok((device, decode_json("user_device", &value)?)))
            .collect()
    }

    /// One device's keys.
    pub fn device(&self, user: &UserId, device_id: &str) -> Result<Option<DeviceRecord>, StorageError> {
        let e = self.engine()?;
        e.user_device
            .get(keys::pair(user.as_str(), device_id))?
            .map(|v| decode_json("user_device", &v))
            .transpose()
    }

    /// A device's unclaimed one-time prekeys `(key_id, key)`, by key id, at most `limit`.
    pub fn one_time_keys(
        &self,
        user: &UserId,
        device_id: &str,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StorageError> {
        let e = self.engine()?;
        let mut prefix = keys::pair(user.as_str(), device_id);
        prefix.push(0);
        let mut out = Vec::new();
        for guard in e.user_device_otk.prefix(&prefix).take(limit) {
            let (key, value) = guard.into_inner()?;
            let corrupt =
                || StorageError::Corrupt { partition: "user_device_otk", detail: "not UTF-8".into() };
            let key_id = std::str::from_utf8(&key[prefix.len()..]).map_err(|_| corrupt())?.to_owned();
            let public = std::str::from_utf8(&value).map_err(|_| corrupt())?.to_owned();
            out.push((key_id, public));
        }
        Ok(out)
    }

    /// How many one-time prekeys a device has left.
    pub fn one_time_key_count(&self, user: &UserId, device_id: &str) -> Result<usize, StorageError> {
        let e = self.engine()?;
        let mut prefix = keys::pair(user.as_str(), device_id);
        prefix.push(0);
        let mut count = 0;
        for guard in e.user_device_otk.prefix(&prefix) {
            guard.key()?;
            count += 1;
        }
        Ok(count)
    }
}
