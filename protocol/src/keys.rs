//! End-to-end encryption support on the wire: the key directory (devices' public keys
//! and one-time prekeys) and the metadata of `encrypted` messages. The server stores and
//! relays these; it never sees a private key or a plaintext.

use serde::{Deserialize, Serialize};

/// How an `encrypted` message was encrypted: enough for the receiving device to pick the
/// session that decrypts it. Opaque to the server.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct Encryption {
    /// The algorithm, e.g. `m.olm.v1.curve25519-aes-sha2` or `m.megolm.v1.aes-sha2`.
    pub algorithm: String,
    /// The sending device.
    pub sender_device: String,
    /// The sender's session (Megolm), when the algorithm has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

/// A one-time prekey (public half).
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct OneTimeKey {
    /// The key's id, unique per device.
    pub key_id: String,
    /// The public key (base64).
    pub key: String,
}

/// A device's public keys as the directory lists them.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct DeviceKeys {
    /// The device's id (chosen by the client, unique per user).
    pub device_id: String,
    /// The device's public identity key (base64, e.g. Curve25519).
    pub identity_key: String,
    /// The device's public signing key (base64, e.g. Ed25519), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
    /// One-time prekeys still unclaimed.
    pub one_time_key_count: u32,
}

/// Answer to `keys.upload`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct KeysUploadOk {
    /// The device's unclaimed one-time prekeys after the upload.
    pub one_time_key_count: u32,
}

/// Answer to `keys.list`.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct DevicesOk {
    /// The user's devices, by device id.
    pub devices: Vec<DeviceKeys>,
}

/// One device's keys handed out by `keys.claim`.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct ClaimedKey {
    /// The device.
    pub device_id: String,
    /// Its identity key.
    pub identity_key: String,
    /// Its signing key, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
    /// A one-time prekey, now removed from the directory (absent when the device has none
    /// left: the client then falls back to what its algorithm allows, or asks later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_time_key: Option<OneTimeKey>,
    /// The device's unclaimed one-time prekeys after this claim: 0 means exhausted.
    #[serde(default)]
    pub one_time_key_count: u32,
}

/// Answer to `keys.claim`.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct ClaimedOk {
    /// One entry per device of the user (or the one device asked for).
    pub claimed: Vec<ClaimedKey>,
}
