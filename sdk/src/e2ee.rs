//! End-to-end encryption: Olm for direct messages, Megolm for rooms, over the server's key
//! directory (PROTOCOL.md §3.5.24; the formats below are §3.5.24.1).
//!
//! Two layers, like the rest of the SDK:
//!
//! - [`Device`] is the sans-IO crypto state of one device: its Olm [`Account`] (identity
//!   keys and one-time keys), its Olm sessions with other devices, its outbound Megolm
//!   session per room and the inbound Megolm sessions others shared with it. It takes
//!   directory answers and messages in and gives ciphertext, plaintext and `keys.upload`
//!   bodies out; it never touches a socket, so it is tested here without a server.
//! - [`E2ee`] drives a [`Device`] with a [`crate::Client`]: it publishes the keys, looks up
//!   room members and their devices, claims one-time keys, shares room keys, sends and
//!   decrypts.
//!
//! What goes where:
//!
//! - In a **direct** room (`dm.open`), each message is Olm-encrypted separately to every
//!   device of the peer and to the sender's own other devices, and sent as one `encrypted`
//!   message whose `text` holds all the per-device ciphertexts ([`OLM_ALGORITHM`]).
//! - In any **other** room, the sender's device keeps one Megolm session per room
//!   ([`MEGOLM_ALGORITHM`]); its key is shared to each member device with an Olm message
//!   of type `room_key`, sent in the room itself before the first message that needs it.
//!   The session is replaced when a device that had it is no longer in the room (a member
//!   left, was removed or dropped a device) and after [`MEGOLM_ROTATION_MESSAGES`]
//!   messages.
//!
//! Trust: the directory is trusted on first use. The server cannot swap a published
//! device's keys (`keys.upload` refuses), one-time keys are signed by the device's Ed25519
//! key and checked before use, and every Olm payload names its sender, sender device,
//! signing key, recipient and room, which the receiver checks against the (server
//! authenticated) message. There is no cross-signing and no device verification: a
//! server that invents a *new* device for a user is not detected.
//!
//! Not kept: an Olm message can be decrypted once (its key is consumed). [`Device`]
//! remembers, in memory, the plaintext of the Olm messages it decrypted (by room and seq)
//! and of the ones it sent (a device cannot decrypt its own Olm messages), so history
//! pages of this session decrypt again; after a restart those DMs are unreadable unless
//! the application stored the plaintext. Megolm messages decrypt again at any time from
//! the pickled inbound sessions.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use palaver_protocol::{DeviceKeys, Encryption, Message, MessageKind, OneTimeKey, RoomId, UserId};
use serde::{Deserialize, Serialize};
use vodozemac::megolm::{
    GroupSession, InboundGroupSession, MegolmMessage, SessionConfig as MegolmConfig, SessionKey,
};
use vodozemac::olm::{Account, OlmMessage, Session, SessionConfig as OlmConfig};
use vodozemac::{Curve25519PublicKey, Ed25519PublicKey, Ed25519Signature};

use crate::error::Error;

/// The `encryption.algorithm` of Olm messages (one ciphertext per recipient device).
pub const OLM_ALGORITHM: &str = "m.olm.v1.curve25519-aes-sha2";
/// The `encryption.algorithm` of Megolm messages (one ciphertext for the room).
pub const MEGOLM_ALGORITHM: &str = "m.megolm.v1.aes-sha2";
/// How many unclaimed one-time keys a device keeps in the directory.
pub const ONE_TIME_KEY_TARGET: u32 = 50;
/// Below this many unclaimed one-time keys, a device uploads new ones (up to the target).
pub const ONE_TIME_KEY_LOW: u32 = 25;
/// An outbound Megolm session is replaced after this many messages.
pub const MEGOLM_ROTATION_MESSAGES: u32 = 100;
/// How many plaintexts of Olm messages (sent and received) a device remembers.
const PLAINTEXT_CACHE: usize = 4_096;
/// The pickle format version.
const PICKLE_VERSION: u32 = 1;

fn crypto(what: impl std::fmt::Display) -> Error {
    Error::Crypto(what.to_string())
}

/// A device of some user, with the public keys the directory lists for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerDevice {
    /// Its user.
    pub user: UserId,
    /// Its device id.
    pub device_id: String,
    /// Its Curve25519 identity key.
    pub identity_key: Curve25519PublicKey,
    /// Its Ed25519 signing key (devices of this SDK always publish one).
    pub signing_key: Ed25519PublicKey,
}

impl PeerDevice {
    /// Reads a directory entry; `Err` when its keys are not Curve25519 / Ed25519 keys in
    /// base64 (a device of another client, or garbage).
    pub fn from_directory(user: &UserId, keys: &DeviceKeys) -> Result<Self, Error> {
        let identity_key = Curve25519PublicKey::from_base64(&keys.identity_key).map_err(crypto)?;
        let signing_key = keys
            .signing_key
            .as_deref()
            .ok_or_else(|| crypto("the device has no signing key"))
            .and_then(|k| Ed25519PublicKey::from_base64(k).map_err(crypto))?;
        Ok(PeerDevice { user: user.clone(), device_id: keys.device_id.clone(), identity_key, signing_key })
    }
}

/// What decrypting an `encrypted` message gave.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decrypted {
    /// A message to show.
    Text {
        /// The sending device (its user is the message's `sender`).
        sender_device: String,
        /// The plaintext.
        text: String,
        /// [`OLM_ALGORITHM`] or [`MEGOLM_ALGORITHM`].
        algorithm: &'static str,
    },
    /// A room key for this device: nothing to show (the SDK keeps the key).
    RoomKey {
        /// The Megolm session it opens.
        session_id: String,
    },
    /// An Olm message with no ciphertext for this device (for example a room key shared
    /// to other devices): nothing to show.
    NotForThisDevice,
}

/// The plaintext inside every Olm ciphertext: what it is, and who it is from and for, so
/// that a ciphertext cannot be replayed to another device, user or room.
#[derive(Debug, Serialize, Deserialize)]
struct OlmPayload {
    #[serde(rename = "type")]
    kind: PayloadKind,
    room: RoomId,
    sender: UserId,
    sender_device: String,
    sender_signing_key: String,
    recipient: UserId,
    recipient_identity_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session_key: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum PayloadKind {
    Text,
    RoomKey,
}

/// The `text` of an Olm message: the sender's identity key and one ciphertext per
/// recipient identity key.
#[derive(Debug, Serialize, Deserialize)]
struct OlmEnvelope {
    sender_key: String,
    ciphertext: BTreeMap<String, OlmCiphertext>,
}

#[derive(Debug, Serialize, Deserialize)]
struct OlmCiphertext {
    #[serde(rename = "type")]
    kind: usize,
    body: String,
}

/// The plaintext inside a Megolm ciphertext (the room binds it: a ciphertext copied into
/// another room does not decrypt there).
#[derive(Debug, Serialize, Deserialize)]
struct MegolmPayload {
    room: RoomId,
    text: String,
}

/// A device that has the current outbound Megolm session of a room.
type Recipient = (UserId, String, String);

fn recipient(device: &PeerDevice) -> Recipient {
    (device.user.clone(), device.device_id.clone(), device.identity_key.to_base64())
}

struct Outbound {
    session: GroupSession,
    shared_with: BTreeSet<Recipient>,
    messages: u32,
}

struct Inbound {
    session: InboundGroupSession,
    sender: UserId,
    sender_device: String,
}

/// What remembered plaintext a device keeps of Olm messages.
#[derive(Debug, Clone)]
enum Remembered {
    Text(String),
    RoomKey(String),
}

/// A bounded memory of plaintexts (oldest forgotten first).
struct PlaintextCache<K: std::hash::Hash + Eq + Clone> {
    entries: HashMap<K, Remembered>,
    order: VecDeque<K>,
}

impl<K: std::hash::Hash + Eq + Clone> Default for PlaintextCache<K> {
    fn default() -> Self {
        PlaintextCache { entries: HashMap::new(), order: VecDeque::new() }
    }
}

impl<K: std::hash::Hash + Eq + Clone> PlaintextCache<K> {
    fn insert(&mut self, key: K, value: Remembered) {
        if self.entries.insert(key.clone(), value).is_none() {
            self.order.push_back(key);
            if self.order.len() > PLAINTEXT_CACHE
                && let Some(old) = self.order.pop_front()
            {
                self.entries.remove(&old);
            }
        }
    }

    fn get(&self, key: &K) -> Option<&Remembered> {
        self.entries.get(key)
    }
}

/// The sans-IO end-to-end encryption state of one device of one user.
pub struct Device {
    user: UserId,
    device_id: String,
    account: Account,
    /// Olm sessions by the peer device's Curve25519 key, newest last.
    olm: HashMap<String, Vec<Session>>,
    outbound: HashMap<RoomId, Outbound>,
    inbound: HashMap<(RoomId, String), Inbound>,
    /// Olm messages this device sent, by (room, envelope text).
    sent: PlaintextCache<(RoomId, String)>,
    /// Olm messages this device decrypted, by (room, seq).
    received: PlaintextCache<(RoomId, u64)>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("user", &self.user)
            .field("device_id", &self.device_id)
            .field("identity_key", &self.account.curve25519_key().to_base64())
            .finish_non_exhaustive()
    }
}

/// A `keys.upload` body: the device's public keys and new signed one-time keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysUpload {
    /// The device id.
    pub device_id: String,
    /// Curve25519 identity key, base64.
    pub identity_key: String,
    /// Ed25519 signing key, base64.
    pub signing_key: String,
    /// One-time keys, each `key` = `<curve25519 base64>:<ed25519 signature base64>`.
    pub one_time_keys: Vec<OneTimeKey>,
}

impl KeysUpload {
    /// The op to send.
    pub fn into_op(self) -> palaver_protocol::Op {
        palaver_protocol::Op::KeysUpload {
            device_id: self.device_id,
            identity_key: self.identity_key,
            signing_key: Some(self.signing_key),
            one_time_keys: self.one_time_keys,
        }
    }
}

/// What a one-time key's signature covers: the key bound to its user, device and id.
fn one_time_key_statement(user: &UserId, device_id: &str, key_id: &str, key: &str) -> String {
    format!("palaver.one_time_key.v1\n{user}\n{device_id}\n{key_id}\n{key}")
}

impl Device {
    /// A new device with fresh identity keys. `device_id`: 1–64 of `[A-Za-z0-9_-]`.
    pub fn new(user: UserId, device_id: &str) -> Result<Self, Error> {
        let valid = !device_id.is_empty()
            && device_id.len() <= 64
            && device_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(Error::Invalid(format!("device id {device_id:?}: 1-64 of [A-Za-z0-9_-]")));
        }
        Ok(Device {
            user,
            device_id: device_id.to_owned(),
            account: Account::new(),
            olm: HashMap::new(),
            outbound: HashMap::new(),
            inbound: HashMap::new(),
            sent: PlaintextCache::default(),
            received: PlaintextCache::default(),
        })
    }

    /// The user.
    pub fn user(&self) -> &UserId {
        &self.user
    }

    /// The device id.
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// The Curve25519 identity key (base64), as published.
    pub fn identity_key(&self) -> String {
        self.account.curve25519_key().to_base64()
    }

    /// The Ed25519 signing key (base64), as published.
    pub fn signing_key(&self) -> String {
        self.account.ed25519_key().to_base64()
    }

    /// This device as others see it in the directory.
    pub fn as_peer(&self) -> PeerDevice {
        PeerDevice {
            user: self.user.clone(),
            device_id: self.device_id.clone(),
            identity_key: self.account.curve25519_key(),
            signing_key: self.account.ed25519_key(),
        }
    }

    /// The `keys.upload` that brings the directory from `published` unclaimed one-time
    /// keys back to [`ONE_TIME_KEY_TARGET`] (none when `published` is at least
    /// [`ONE_TIME_KEY_LOW`], unless `always`). The keys count as published from now on.
    pub fn keys_upload(&mut self, published: u32, always: bool) -> Option<KeysUpload> {
        let missing = if published < ONE_TIME_KEY_LOW { ONE_TIME_KEY_TARGET - published } else { 0 };
        if missing == 0 && !always {
            return None;
        }
        self.account.generate_one_time_keys(missing as usize);
        let mut one_time_keys: Vec<OneTimeKey> = self
            .account
            .one_time_keys()
            .into_iter()
            .map(|(id, key)| {
                let (key_id, key) = (id.to_base64(), key.to_base64());
                let signature =
                    self.account.sign(one_time_key_statement(&self.user, &self.device_id, &key_id, &key));
                OneTimeKey { key_id, key: format!("{key}:{}", signature.to_base64()) }
            })
            .collect();
        one_time_keys.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        self.account.mark_keys_as_published();
        Some(KeysUpload {
            device_id: self.device_id.clone(),
            identity_key: self.identity_key(),
            signing_key: self.signing_key(),
            one_time_keys,
        })
    }

    /// Whether an Olm session with this device exists.
    pub fn has_olm_session(&self, device: &PeerDevice) -> bool {
        self.olm.get(&device.identity_key.to_base64()).is_some_and(|s| !s.is_empty())
    }

    /// Starts an Olm session with `device` from one of its one-time keys (`keys.claim`),
    /// after checking the key's signature by the device's signing key.
    pub fn start_olm_session(&mut self, device: &PeerDevice, one_time_key: &OneTimeKey) -> Result<(), Error> {
        let (key, signature) =
            one_time_key.key.split_once(':').ok_or_else(|| crypto("the one-time key is not signed"))?;
        let signature = Ed25519Signature::from_base64(signature).map_err(crypto)?;
        let statement = one_time_key_statement(&device.user, &device.device_id, &one_time_key.key_id, key);
        device
            .signing_key
            .verify(statement.as_bytes(), &signature)
            .map_err(|_| crypto("the one-time key's signature is not the device's"))?;
        let key = Curve25519PublicKey::from_base64(key).map_err(crypto)?;
        let session = self.account.create_outbound_session(OlmConfig::version_1(), device.identity_key, key);
        self.olm.entry(device.identity_key.to_base64()).or_default().push(session);
        Ok(())
    }

    fn payload(&self, kind: PayloadKind, room: &RoomId, to: &PeerDevice) -> OlmPayload {
        OlmPayload {
            kind,
            room: room.clone(),
            sender: self.user.clone(),
            sender_device: self.device_id.clone(),
            sender_signing_key: self.signing_key(),
            recipient: to.user.clone(),
            recipient_identity_key: to.identity_key.to_base64(),
            text: None,
            session_id: None,
            session_key: None,
        }
    }

    /// Encrypts one payload per device with Olm into an envelope. Every device needs a
    /// session ([`Device::start_olm_session`]); devices without one are an error.
    fn encrypt_olm(
        &mut self,
        room: &RoomId,
        to: &[PeerDevice],
        fill: impl Fn(&mut OlmPayload),
    ) -> Result<(String, Box<Encryption>), Error> {
        let mut ciphertext = BTreeMap::new();
        for device in to {
            let mut payload = self.payload(PayloadKind::Text, room, device);
            fill(&mut payload);
            let plaintext = serde_json::to_vec(&payload).map_err(crypto)?;
            let key = device.identity_key.to_base64();
            let session = self
                .olm
                .get_mut(&key)
                .and_then(|s| s.last_mut())
                .ok_or_else(|| crypto(format!("no Olm session with device {}", device.device_id)))?;
            let (kind, bytes) = session.encrypt(plaintext).to_parts();
            ciphertext.insert(key, OlmCiphertext { kind, body: vodozemac::base64_encode(bytes) });
        }
        let envelope = OlmEnvelope { sender_key: self.identity_key(), ciphertext };
        let text = serde_json::to_string(&envelope).map_err(crypto)?;
        let encryption = Encryption {
            algorithm: OLM_ALGORITHM.to_owned(),
            sender_device: self.device_id.clone(),
            session_id: None,
        };
        Ok((text, Box::new(encryption)))
    }

    /// Encrypts a direct message to each of `to` (the peer's devices and this user's other
    /// devices, each with an Olm session): the `text` and `encryption` of the `encrypted`
    /// message to send.
    pub fn encrypt_direct(
        &mut self,
        room: &RoomId,
        to: &[PeerDevice],
        text: &str,
    ) -> Result<(String, Box<Encryption>), Error> {
        let (envelope, encryption) = self.encrypt_olm(room, to, |p| p.text = Some(text.to_owned()))?;
        self.sent.insert((room.clone(), envelope.clone()), Remembered::Text(text.to_owned()));
        Ok((envelope, encryption))
    }

    /// Which of `members` (the room's member devices now, this one excluded) still need
    /// this device's room key. Replaces the room's outbound session first when a device
    /// that has it is no longer among `members`, or it has encrypted
    /// [`MEGOLM_ROTATION_MESSAGES`] messages.
    pub fn room_key_recipients(&mut self, room: &RoomId, members: &[PeerDevice]) -> Vec<PeerDevice> {
        let now: BTreeSet<Recipient> = members.iter().map(recipient).collect();
        let stale = self
            .outbound
            .get(room)
            .is_none_or(|o| o.messages >= MEGOLM_ROTATION_MESSAGES || !o.shared_with.is_subset(&now));
        if stale {
            let session = GroupSession::new(MegolmConfig::version_1());
            // Keep the inbound half: this device reads its own room messages too.
            let inbound = InboundGroupSession::new(&session.session_key(), MegolmConfig::version_1());
            self.inbound.insert(
                (room.clone(), session.session_id()),
                Inbound {
                    session: inbound,
                    sender: self.user.clone(),
                    sender_device: self.device_id.clone(),
                },
            );
            self.outbound
                .insert(room.clone(), Outbound { session, shared_with: BTreeSet::new(), messages: 0 });
        }
        let shared = self.outbound.get(room).map(|o| &o.shared_with);
        members.iter().filter(|d| shared.is_none_or(|s| !s.contains(&recipient(d)))).cloned().collect()
    }

    /// The Olm message that shares the room's current outbound session (from
    /// [`Device::room_key_recipients`]) with `to`. Call [`Device::room_key_sent`] once it
    /// is stored.
    pub fn encrypt_room_key(
        &mut self,
        room: &RoomId,
        to: &[PeerDevice],
    ) -> Result<(String, Box<Encryption>), Error> {
        let outbound = self.outbound.get(room).ok_or_else(|| crypto("no outbound session for the room"))?;
        let (session_id, session_key) =
            (outbound.session.session_id(), outbound.session.session_key().to_base64());
        let (envelope, encryption) = self.encrypt_olm(room, to, |p| {
            p.kind = PayloadKind::RoomKey;
            p.session_id = Some(session_id.clone());
            p.session_key = Some(session_key.clone());
        })?;
        self.sent.insert((room.clone(), envelope.clone()), Remembered::RoomKey(session_id));
        Ok((envelope, encryption))
    }

    /// Records that `to` received the room's current session.
    pub fn room_key_sent(&mut self, room: &RoomId, to: &[PeerDevice]) {
        if let Some(outbound) = self.outbound.get_mut(room) {
            outbound.shared_with.extend(to.iter().map(recipient));
        }
    }

    /// Encrypts a room message with the room's outbound Megolm session (set up by
    /// [`Device::room_key_recipients`]).
    pub fn encrypt_room(&mut self, room: &RoomId, text: &str) -> Result<(String, Box<Encryption>), Error> {
        let outbound =
            self.outbound.get_mut(room).ok_or_else(|| crypto("no outbound session for the room"))?;
        let payload = MegolmPayload { room: room.clone(), text: text.to_owned() };
        let message = outbound.session.encrypt(serde_json::to_vec(&payload).map_err(crypto)?);
        outbound.messages += 1;
        let encryption = Encryption {
            algorithm: MEGOLM_ALGORITHM.to_owned(),
            sender_device: self.device_id.clone(),
            session_id: Some(outbound.session.session_id()),
        };
        Ok((message.to_base64(), Box::new(encryption)))
    }

    /// Whether decrypting `message` needs the sending device's directory entry (an Olm
    /// message from another device).
    pub fn needs_sender_keys(&self, message: &Message) -> bool {
        message.encryption.as_deref().is_some_and(|e| {
            e.algorithm == OLM_ALGORITHM
                && !(message.sender == self.user && e.sender_device == self.device_id)
        })
    }

    /// Decrypts an `encrypted` message. `sender` is the sending device's directory entry
    /// (needed for Olm, see [`Device::needs_sender_keys`]).
    pub fn decrypt(&mut self, message: &Message, sender: Option<&PeerDevice>) -> Result<Decrypted, Error> {
        let encryption = match (&message.kind, message.encryption.as_deref()) {
            (MessageKind::Encrypted, Some(e)) => e,
            _ => return Err(Error::Invalid("not an encrypted message".into())),
        };
        match encryption.algorithm.as_str() {
            OLM_ALGORITHM => self.decrypt_olm(message, encryption, sender),
            MEGOLM_ALGORITHM => self.decrypt_megolm(message, encryption),
            other => Err(crypto(format!("unknown algorithm {other:?}"))),
        }
    }

    fn decrypt_megolm(&mut self, message: &Message, encryption: &Encryption) -> Result<Decrypted, Error> {
        let session_id =
            encryption.session_id.clone().ok_or_else(|| crypto("a Megolm message needs session_id"))?;
        let inbound = self
            .inbound
            .get_mut(&(message.room.clone(), session_id))
            .ok_or_else(|| crypto("unknown Megolm session (its room key has not arrived)"))?;
        if inbound.sender != message.sender || inbound.sender_device != encryption.sender_device {
            return Err(crypto("the Megolm session belongs to another device"));
        }
        let ciphertext = MegolmMessage::from_base64(&message.text).map_err(crypto)?;
        let plaintext = inbound.session.decrypt(&ciphertext).map_err(crypto)?.plaintext;
        let payload: MegolmPayload = serde_json::from_slice(&plaintext).map_err(crypto)?;
        if payload.room != message.room {
            return Err(crypto("the Megolm message was encrypted for another room"));
        }
        Ok(Decrypted::Text {
            sender_device: encryption.sender_device.clone(),
            text: payload.text,
            algorithm: MEGOLM_ALGORITHM,
        })
    }

    fn remembered(remembered: &Remembered, sender_device: &str) -> Decrypted {
        match remembered {
            Remembered::Text(text) => Decrypted::Text {
                sender_device: sender_device.to_owned(),
                text: text.clone(),
                algorithm: OLM_ALGORITHM,
            },
            Remembered::RoomKey(session_id) => Decrypted::RoomKey { session_id: session_id.clone() },
        }
    }

    fn decrypt_olm(
        &mut self,
        message: &Message,
        encryption: &Encryption,
        sender: Option<&PeerDevice>,
    ) -> Result<Decrypted, Error> {
        if message.sender == self.user && encryption.sender_device == self.device_id {
            return match self.sent.get(&(message.room.clone(), message.text.clone())) {
                Some(r) => Ok(Self::remembered(r, &self.device_id)),
                None => Err(crypto(
                    "an Olm message this device sent before this session: its plaintext is not kept",
                )),
            };
        }
        if let Some(r) = self.received.get(&(message.room.clone(), message.seq)) {
            return Ok(Self::remembered(r, &encryption.sender_device));
        }
        let sender = sender.ok_or_else(|| crypto("the sending device's keys are needed"))?;
        if sender.user != message.sender || sender.device_id != encryption.sender_device {
            return Err(crypto("the directory entry given is not the sending device's"));
        }
        let envelope: OlmEnvelope = serde_json::from_str(&message.text).map_err(crypto)?;
        if envelope.sender_key != sender.identity_key.to_base64() {
            return Err(crypto("the message's sender key is not the sending device's identity key"));
        }
        let Some(mine) = envelope.ciphertext.get(&self.identity_key()) else {
            return Ok(Decrypted::NotForThisDevice);
        };
        let bytes = vodozemac::base64_decode(&mine.body).map_err(crypto)?;
        let olm = OlmMessage::from_parts(mine.kind, &bytes).map_err(crypto)?;
        let plaintext = self.olm_decrypt(sender, &olm)?;
        let payload: OlmPayload = serde_json::from_slice(&plaintext).map_err(crypto)?;
        let bound = payload.room == message.room
            && payload.sender == message.sender
            && payload.sender_device == encryption.sender_device
            && payload.sender_signing_key == sender.signing_key.to_base64()
            && payload.recipient == self.user
            && payload.recipient_identity_key == self.identity_key();
        if !bound {
            return Err(crypto("the Olm payload was not encrypted for this message, room or device"));
        }
        let remembered = match payload.kind {
            PayloadKind::Text => {
                Remembered::Text(payload.text.ok_or_else(|| crypto("a text payload needs text"))?)
            }
            PayloadKind::RoomKey => {
                let (Some(session_id), Some(session_key)) = (payload.session_id, payload.session_key) else {
                    return Err(crypto("a room key payload needs session_id and session_key"));
                };
                let key = SessionKey::from_base64(&session_key).map_err(crypto)?;
                let session = InboundGroupSession::new(&key, MegolmConfig::version_1());
                if session.session_id() != session_id {
                    return Err(crypto("the room key does not match its session id"));
                }
                self.inbound.entry((message.room.clone(), session_id.clone())).or_insert(Inbound {
                    session,
                    sender: message.sender.clone(),
                    sender_device: encryption.sender_device.clone(),
                });
                Remembered::RoomKey(session_id)
            }
        };
        let decrypted = Self::remembered(&remembered, &encryption.sender_device);
        self.received.insert((message.room.clone(), message.seq), remembered);
        Ok(decrypted)
    }

    /// Decrypts with an existing session with `sender`, or creates the inbound session a
    /// pre-key message opens (using up one of this device's one-time keys).
    fn olm_decrypt(&mut self, sender: &PeerDevice, message: &OlmMessage) -> Result<Vec<u8>, Error> {
        let key = sender.identity_key.to_base64();
        let sessions = self.olm.entry(key).or_default();
        // Newest first: the session most likely in use.
        for session in sessions.iter_mut().rev() {
            let candidate = match message {
                OlmMessage::PreKey(m) => m.session_id() == session.session_id(),
                OlmMessage::Normal(_) => true,
            };
            if candidate && let Ok(plaintext) = session.decrypt(message) {
                return Ok(plaintext);
            }
        }
        let OlmMessage::PreKey(prekey) = message else {
            return Err(crypto("no Olm session with the sender decrypts the message"));
        };
        let created = self.account.create_inbound_session(sender.identity_key, prekey).map_err(crypto)?;
        sessions.push(created.session);
        Ok(created.plaintext)
    }

    /// Encrypts this device's whole state with `key` (32 bytes the application keeps
    /// secret). Keys and sessions are encrypted (vodozemac pickles); user, device, room
    /// ids and which devices received which room key are readable metadata. The plaintext
    /// memories of Olm messages are not included.
    pub fn pickle(&self, key: &[u8; 32]) -> Result<String, Error> {
        let pickle = DevicePickle {
            version: PICKLE_VERSION,
            user: self.user.clone(),
            device_id: self.device_id.clone(),
            account: self.account.pickle().encrypt(key),
            olm: self
                .olm
                .iter()
                .map(|(peer, sessions)| {
                    (peer.clone(), sessions.iter().map(|s| s.pickle().encrypt(key)).collect())
                })
                .collect(),
            outbound: self
                .outbound
                .iter()
                .map(|(room, o)| OutboundPickle {
                    room: room.clone(),
                    session: o.session.pickle().encrypt(key),
                    shared_with: o.shared_with.iter().cloned().collect(),
                    messages: o.messages,
                })
                .collect(),
            inbound: self
                .inbound
                .iter()
                .map(|((room, session_id), i)| InboundPickle {
                    room: room.clone(),
                    session_id: session_id.clone(),
                    sender: i.sender.clone(),
                    sender_device: i.sender_device.clone(),
                    session: i.session.pickle().encrypt(key),
                })
                .collect(),
        };
        serde_json::to_string(&pickle).map_err(crypto)
    }

    /// Restores a device from [`Device::pickle`]'s output and the same key.
    pub fn unpickle(pickled: &str, key: &[u8; 32]) -> Result<Self, Error> {
        let p: DevicePickle = serde_json::from_str(pickled).map_err(crypto)?;
        if p.version != PICKLE_VERSION {
            return Err(crypto(format!("pickle version {} (this SDK reads {PICKLE_VERSION})", p.version)));
        }
        let account = Account::from_pickle(
            vodozemac::olm::AccountPickle::from_encrypted(&p.account, key).map_err(crypto)?,
        );
        let mut olm = HashMap::new();
        for (peer, sessions) in p.olm {
            let sessions = sessions
                .iter()
                .map(|s| vodozemac::olm::SessionPickle::from_encrypted(s, key).map(Session::from_pickle))
                .collect::<Result<Vec<_>, _>>()
                .map_err(crypto)?;
            olm.insert(peer, sessions);
        }
        let mut outbound = HashMap::new();
        for o in p.outbound {
            let session =
                vodozemac::megolm::GroupSessionPickle::from_encrypted(&o.session, key).map_err(crypto)?;
            outbound.insert(
                o.room,
                Outbound {
                    session: GroupSession::from_pickle(session),
                    shared_with: o.shared_with.into_iter().collect(),
                    messages: o.messages,
                },
            );
        }
        let mut inbound = HashMap::new();
        for i in p.inbound {
            let session = vodozemac::megolm::InboundGroupSessionPickle::from_encrypted(&i.session, key)
                .map_err(crypto)?;
            inbound.insert(
                (i.room, i.session_id),
                Inbound {
                    session: InboundGroupSession::from_pickle(session),
                    sender: i.sender,
                    sender_device: i.sender_device,
                },
            );
        }
        Ok(Device {
            user: p.user,
            device_id: p.device_id,
            account,
            olm,
            outbound,
            inbound,
            sent: PlaintextCache::default(),
            received: PlaintextCache::default(),
        })
    }
}

#[derive(Serialize, Deserialize)]
struct DevicePickle {
    version: u32,
    user: UserId,
    device_id: String,
    account: String,
    olm: Vec<(String, Vec<String>)>,
    outbound: Vec<OutboundPickle>,
    inbound: Vec<InboundPickle>,
}

#[derive(Serialize, Deserialize)]
struct OutboundPickle {
    room: RoomId,
    session: String,
    shared_with: Vec<Recipient>,
    messages: u32,
}

#[derive(Serialize, Deserialize)]
struct InboundPickle {
    room: RoomId,
    session_id: String,
    sender: UserId,
    sender_device: String,
    session: String,
}

#[cfg(any(
    all(feature = "native", not(target_arch = "wasm32")),
    all(feature = "wasm", target_arch = "wasm32")
))]
pub use driven::E2ee;

#[cfg(any(
    all(feature = "native", not(target_arch = "wasm32")),
    all(feature = "wasm", target_arch = "wasm32")
))]
mod driven {
    use std::collections::HashMap;

    use palaver_protocol::{
        ClaimedOk, DevicesOk, MembersOk, Message, MessageKind, OkBody, Op, RoomDetailsOk, RoomId, RoomKind,
        SendOk, UserId,
    };

    use super::{Decrypted, Device, Encryption, PeerDevice, crypto};
    use crate::client::Client;
    use crate::core::Outgoing;
    use crate::error::Error;

    /// End-to-end encryption for one [`Client`]: a [`Device`] driven over the connection.
    ///
    /// ```no_run
    /// # async fn demo(client: palaver_sdk::Client, room: palaver_sdk::protocol::RoomId) -> Result<(), palaver_sdk::Error> {
    /// use palaver_sdk::e2ee::{Decrypted, E2ee};
    /// let mut e2ee = E2ee::new(&client, "LAPTOP").await?; // publishes this device's keys
    /// e2ee.send_encrypted(&room, "only the members' devices can read this").await?;
    /// let mut events = client.events();
    /// while let Some(message) = events.next_message().await {
    ///     if let Ok(Decrypted::Text { text, .. }) = e2ee.decrypt(&message).await {
    ///         println!("{}: {text}", message.sender);
    ///     }
    /// }
    /// // Keep the state across restarts (key: 32 secret bytes the application keeps).
    /// let saved = e2ee.pickle(&[7; 32])?;
    /// # let _ = saved; Ok(()) }
    /// ```
    #[derive(Debug)]
    pub struct E2ee {
        client: Client,
        device: Device,
        /// Directory entries by user, refreshed when a device is not found.
        directory: HashMap<UserId, Vec<PeerDevice>>,
    }

    impl E2ee {
        /// A new device `device_id` for the client's user: fresh keys, published with a
        /// batch of signed one-time keys. A device id can be published once: use a new one
        /// per installation, and [`E2ee::restore`] afterwards.
        pub async fn new(client: &Client, device_id: &str) -> Result<Self, Error> {
            let user = client.user_id().ok_or(Error::Closed)?;
            let mut e2ee = E2ee {
                client: client.clone(),
                device: Device::new(user, device_id)?,
                directory: HashMap::new(),
            };
            e2ee.publish(0, true).await?;
            Ok(e2ee)
        }

        /// A device restored from [`E2ee::pickle`]: its sessions are kept; its one-time
        /// keys are topped up.
        pub async fn restore(client: &Client, pickled: &str, key: &[u8; 32]) -> Result<Self, Error> {
            let device = Device::unpickle(pickled, key)?;
            if client.user_id().as_ref() != Some(device.user()) {
                return Err(Error::Invalid("the pickled device belongs to another user".into()));
            }
            let mut e2ee = E2ee { client: client.clone(), device, directory: HashMap::new() };
            e2ee.replenish_one_time_keys().await?;
            Ok(e2ee)
        }

        /// The device's state, encrypted with `key` (see [`Device::pickle`]).
        pub fn pickle(&self, key: &[u8; 32]) -> Result<String, Error> {
            self.device.pickle(key)
        }

        /// The device.
        pub fn device(&self) -> &Device {
            &self.device
        }

        /// Sends the `keys.upload` of [`Device::keys_upload`], if any; returns the
        /// server's count of this device's unclaimed one-time keys.
        async fn publish(&mut self, published: u32, always: bool) -> Result<u32, Error> {
            let Some(upload) = self.device.keys_upload(published, always) else {
                return Ok(published);
            };
            match self.client.request(upload.into_op()).await? {
                OkBody::KeysUploaded(ok) => Ok(ok.one_time_key_count),
                _ => Err(Error::UnexpectedReply { op: "keys.upload" }),
            }
        }

        /// Asks the server how many of this device's one-time keys are unclaimed (an
        /// upload of none) and uploads new ones when fewer than
        /// [`super::ONE_TIME_KEY_LOW`] are left. Returns the count after.
        pub async fn replenish_one_time_keys(&mut self) -> Result<u32, Error> {
            let count = self.publish(super::ONE_TIME_KEY_TARGET, true).await?;
            self.publish(count, false).await
        }

        /// A user's devices that this SDK can encrypt to (others are skipped).
        async fn devices(&mut self, user: &UserId) -> Result<Vec<PeerDevice>, Error> {
            let devices = match self.client.request(Op::KeysList { user: user.clone() }).await? {
                OkBody::Devices(DevicesOk { devices }) => devices,
                _ => return Err(Error::UnexpectedReply { op: "keys.list" }),
            };
            let devices: Vec<PeerDevice> =
                devices.iter().filter_map(|d| PeerDevice::from_directory(user, d).ok()).collect();
            self.directory.insert(user.clone(), devices.clone());
            Ok(devices)
        }

        async fn sender_device(&mut self, user: &UserId, device_id: &str) -> Result<PeerDevice, Error> {
            let find = |devices: &[PeerDevice]| devices.iter().find(|d| d.device_id == device_id).cloned();
            if let Some(found) = self.directory.get(user).and_then(|d| find(d)) {
                return Ok(found);
            }
            find(&self.devices(user).await?)
                .ok_or_else(|| crypto(format!("device {device_id} of {user} is not in the directory")))
        }

        async fn members(&self, room: &RoomId) -> Result<Vec<UserId>, Error> {
            let mut users = Vec::new();
            let mut cursor = None;
            loop {
                let op = Op::RoomMembers { room: room.clone(), limit: Some(100), cursor };
                match self.client.request(op).await? {
                    OkBody::Members(MembersOk { members, next }) => {
                        users.extend(members.into_iter().map(|m| m.user));
                        match next {
                            Some(next) => cursor = Some(next),
                            None => return Ok(users),
                        }
                    }
                    _ => return Err(Error::UnexpectedReply { op: "room.members" }),
                }
            }
        }

        /// The devices of the room's members (this one excluded) that can be encrypted
        /// to, starting Olm sessions (claiming one-time keys) with those that have none.
        async fn recipients(&mut self, room: &RoomId) -> Result<(Vec<PeerDevice>, RoomKind), Error> {
            let kind = match self.client.request(Op::RoomGet { room: room.clone() }).await? {
                OkBody::RoomDetails(RoomDetailsOk { room, .. }) => room.kind,
                _ => return Err(Error::UnexpectedReply { op: "room.get" }),
            };
            let mut recipients = Vec::new();
            for user in self.members(room).await? {
                for device in self.devices(&user).await? {
                    if device.user == *self.device.user() && device.device_id == self.device.device_id() {
                        continue;
                    }
                    recipients.push(device);
                }
            }
            Ok((recipients, kind))
        }

        /// Starts Olm sessions with those of `devices` that have none; returns the devices
        /// that have a session now (a device with no one-time key left, or a badly signed
        /// one, is left out).
        async fn with_sessions(&mut self, devices: Vec<PeerDevice>) -> Result<Vec<PeerDevice>, Error> {
            let mut ready = Vec::new();
            for device in devices {
                if !self.device.has_olm_session(&device) {
                    let op = Op::KeysClaim {
                        user: device.user.clone(),
                        device_id: Some(device.device_id.clone()),
                    };
                    let claimed = match self.client.request(op).await? {
                        OkBody::Claimed(ClaimedOk { claimed }) => claimed,
                        _ => return Err(Error::UnexpectedReply { op: "keys.claim" }),
                    };
                    let Some(key) = claimed.iter().find(|c| c.device_id == device.device_id) else {
                        continue;
                    };
                    // The claimed identity must be the listed one (never swapped).
                    if key.identity_key != device.identity_key.to_base64() {
                        continue;
                    }
                    let Some(one_time_key) = &key.one_time_key else { continue };
                    if self.device.start_olm_session(&device, one_time_key).is_err() {
                        continue;
                    }
                }
                ready.push(device);
            }
            Ok(ready)
        }

        async fn send(
            &self,
            room: &RoomId,
            (text, encryption): (String, Box<Encryption>),
        ) -> Result<SendOk, Error> {
            let mut message = Outgoing::text(room.clone(), text);
            message.kind = MessageKind::Encrypted;
            message.encryption = Some(encryption);
            self.client.send_message(message).await
        }

        /// Encrypts `text` for the room's members and sends it: Olm to each device in a
        /// direct room, Megolm (sharing the room key first where needed) in other rooms.
        /// Fails if no device of another member can be encrypted to.
        pub async fn send_encrypted(&mut self, room: &RoomId, text: &str) -> Result<SendOk, Error> {
            let (devices, kind) = self.recipients(room).await?;
            let me = self.device.user().clone();
            let others = |devices: &[PeerDevice]| devices.iter().any(|d| d.user != me);
            if kind == RoomKind::Direct {
                let ready = self.with_sessions(devices).await?;
                if !others(&ready) {
                    return Err(crypto("no device of the other member can be encrypted to"));
                }
                let encrypted = self.device.encrypt_direct(room, &ready, text)?;
                return self.send(room, encrypted).await;
            }
            let needing = self.device.room_key_recipients(room, &devices);
            if !needing.is_empty() {
                let ready = self.with_sessions(needing).await?;
                if !ready.is_empty() {
                    let share = self.device.encrypt_room_key(room, &ready)?;
                    self.send(room, share).await?;
                    self.device.room_key_sent(room, &ready);
                }
            }
            let encrypted = self.device.encrypt_room(room, text)?;
            self.send(room, encrypted).await
        }

        /// Decrypts an `encrypted` message (live or from `history`; decrypt a room's
        /// messages in seq order, so that room keys come before the messages they open).
        /// A room key is kept and reported as [`Decrypted::RoomKey`]. After a pre-key
        /// message used up one of this device's one-time keys, the keys are topped up.
        pub async fn decrypt(&mut self, message: &Message) -> Result<Decrypted, Error> {
            if message.kind != MessageKind::Encrypted {
                return Err(Error::Invalid("not an encrypted message".into()));
            }
            let sender = match message.encryption.as_deref() {
                Some(e) if self.device.needs_sender_keys(message) => {
                    Some(self.sender_device(&message.sender, &e.sender_device).await?)
                }
                _ => None,
            };
            let prekey = is_prekey(message, &self.device.identity_key());
            let decrypted = self.device.decrypt(message, sender.as_ref())?;
            if prekey && !matches!(decrypted, Decrypted::NotForThisDevice) {
                self.replenish_one_time_keys().await?;
            }
            Ok(decrypted)
        }
    }

    /// Whether an Olm envelope holds a pre-key message (type 0) for this device's key.
    fn is_prekey(message: &Message, identity_key: &str) -> bool {
        message.encryption.as_deref().is_some_and(|e| e.algorithm == super::OLM_ALGORITHM)
            && serde_json::from_str::<super::OlmEnvelope>(&message.text)
                .is_ok_and(|e| e.ciphertext.get(identity_key).is_some_and(|c| c.kind == 0))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn user(n: &str) -> UserId {
        UserId::parse(&format!("u_{n}")).unwrap()
    }

    fn room(n: &str) -> RoomId {
        RoomId::parse(&format!("r_{n}")).unwrap()
    }

    /// A stored message as the server would relay it.
    fn message(
        room: &RoomId,
        seq: u64,
        sender: &UserId,
        (text, encryption): (String, Box<Encryption>),
    ) -> Message {
        serde_json::from_value(serde_json::json!({
            "room": room, "seq": seq, "ts": 1, "sender": sender, "cid": format!("c{seq}"),
            "kind": "encrypted", "text": text, "encryption": encryption,
        }))
        .unwrap()
    }

    /// `from` claims one of `to`'s one-time keys (as the directory would hand it out) and
    /// starts a session.
    fn connect(from: &mut Device, to: &mut Device) {
        let upload = to.keys_upload(0, true).unwrap();
        from.start_olm_session(&to.as_peer(), &upload.one_time_keys[0]).unwrap();
    }

    fn text(d: Decrypted) -> String {
        match d {
            Decrypted::Text { text, .. } => text,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn one_time_keys_are_signed_and_topped_up_only_when_low() {
        let mut d = Device::new(user("a"), "A1").unwrap();
        let upload = d.keys_upload(0, true).unwrap();
        assert_eq!(upload.one_time_keys.len(), ONE_TIME_KEY_TARGET as usize);
        assert!(d.keys_upload(ONE_TIME_KEY_LOW, false).is_none());
        assert_eq!(d.keys_upload(ONE_TIME_KEY_LOW - 1, false).unwrap().one_time_keys.len(), 26);
        assert_eq!(d.keys_upload(ONE_TIME_KEY_TARGET, true).unwrap().one_time_keys.len(), 0);
        assert!(Device::new(user("a"), "bad id").is_err());

        // A key the server swapped (or moved from another device) is refused.
        let mut other = Device::new(user("b"), "B1").unwrap();
        let mut forged = upload.one_time_keys[0].clone();
        forged.key_id = upload.one_time_keys[1].key_id.clone();
        assert!(other.start_olm_session(&d.as_peer(), &forged).is_err());
        let unsigned = OneTimeKey {
            key_id: "x".into(),
            key: upload.one_time_keys[0].key.split(':').next().unwrap().into(),
        };
        assert!(other.start_olm_session(&d.as_peer(), &unsigned).is_err());
        assert!(other.start_olm_session(&d.as_peer(), &upload.one_time_keys[0]).is_ok());
    }

    #[test]
    fn a_direct_message_reaches_every_device_and_only_them() {
        let (ua, ub) = (user("alice"), user("bob"));
        let dm = room("dm");
        let mut alice = Device::new(ua.clone(), "LAPTOP").unwrap();
        let mut alice_phone = Device::new(ua.clone(), "PHONE").unwrap();
        let mut bob = Device::new(ub.clone(), "BOB").unwrap();
        let mut eve = Device::new(user("eve"), "EVE").unwrap();
        connect(&mut alice, &mut bob);
        connect(&mut alice, &mut alice_phone);
        let to = [bob.as_peer(), alice_phone.as_peer()];
        let m1 = message(&dm, 1, &ua, alice.encrypt_direct(&dm, &to, "hi bob").unwrap());
        assert!(!m1.text.contains("hi bob"));

        assert_eq!(text(bob.decrypt(&m1, Some(&alice.as_peer())).unwrap()), "hi bob");
        assert_eq!(text(alice_phone.decrypt(&m1, Some(&alice.as_peer())).unwrap()), "hi bob");
        // The sender reads its own message from memory; a second read of the same seq too.
        assert_eq!(text(alice.decrypt(&m1, None).unwrap()), "hi bob");
        assert_eq!(text(bob.decrypt(&m1, Some(&alice.as_peer())).unwrap()), "hi bob");
        assert_eq!(eve.decrypt(&m1, Some(&alice.as_peer())).unwrap(), Decrypted::NotForThisDevice);
        // Claimed to be from another device: refused.
        assert!(eve.decrypt(&m1, Some(&eve.as_peer())).is_err());

        // Bob answers on the session alice's pre-key message opened.
        let m2 = message(&dm, 2, &ub, bob.encrypt_direct(&dm, &[alice.as_peer()], "hi alice").unwrap());
        assert_eq!(text(alice.decrypt(&m2, Some(&bob.as_peer())).unwrap()), "hi alice");
        let m3 = message(&dm, 3, &ua, alice.encrypt_direct(&dm, &[bob.as_peer()], "again").unwrap());
        assert_eq!(text(bob.decrypt(&m3, Some(&alice.as_peer())).unwrap()), "again");

        // A ciphertext relayed into another room: it decrypts, but is bound to its room.
        let m4 = message(&dm, 4, &ua, alice.encrypt_direct(&dm, &[bob.as_peer()], "moved").unwrap());
        let mut copied = m4.clone();
        copied.room = room("other");
        let refused = bob.decrypt(&copied, Some(&alice.as_peer())).unwrap_err();
        assert!(
            refused.to_string().contains("another room") || refused.to_string().contains("not encrypted for")
        );
    }

    #[test]
    fn room_messages_use_megolm_and_the_key_is_replaced_when_a_device_leaves() {
        let (ua, ub, uc) = (user("alice"), user("bob"), user("carol"));
        let r = room("team");
        let mut alice = Device::new(ua.clone(), "A").unwrap();
        let mut bob = Device::new(ub.clone(), "B").unwrap();
        let mut carol = Device::new(uc.clone(), "C").unwrap();
        connect(&mut alice, &mut bob);
        connect(&mut alice, &mut carol);
        let members = [bob.as_peer(), carol.as_peer()];
        let need = alice.room_key_recipients(&r, &members);
        assert_eq!(need.len(), 2);
        let share = message(&r, 1, &ua, alice.encrypt_room_key(&r, &need).unwrap());
        alice.room_key_sent(&r, &need);
        assert!(alice.room_key_recipients(&r, &members).is_empty(), "shared once");
        let m2 = message(&r, 2, &ua, alice.encrypt_room(&r, "standup at ten").unwrap());

        for device in [&mut bob, &mut carol] {
            assert!(device.decrypt(&m2, None).is_err(), "no key yet");
            assert!(matches!(
                device.decrypt(&share, Some(&alice.as_peer())).unwrap(),
                Decrypted::RoomKey { .. }
            ));
            assert_eq!(text(device.decrypt(&m2, None).unwrap()), "standup at ten");
            assert_eq!(text(device.decrypt(&m2, None).unwrap()), "standup at ten", "again, from history");
        }
        assert_eq!(text(alice.decrypt(&m2, None).unwrap()), "standup at ten");

        // Another member cannot pass a session off as someone else's.
        let mut forged = m2.clone();
        forged.sender = uc.clone();
        assert!(bob.decrypt(&forged, None).is_err());

        // Carol leaves: a new session, shared with bob only; carol cannot read it.
        let old = m2.encryption.as_ref().unwrap().session_id.clone();
        let need = alice.room_key_recipients(&r, &[bob.as_peer()]);
        assert_eq!(need, vec![bob.as_peer()]);
        let share = message(&r, 3, &ua, alice.encrypt_room_key(&r, &need).unwrap());
        alice.room_key_sent(&r, &need);
        let m4 = message(&r, 4, &ua, alice.encrypt_room(&r, "carol is gone").unwrap());
        assert_ne!(m4.encryption.as_ref().unwrap().session_id, old);
        assert_eq!(carol.decrypt(&share, Some(&alice.as_peer())).unwrap(), Decrypted::NotForThisDevice);
        assert!(carol.decrypt(&m4, None).is_err());
        bob.decrypt(&share, Some(&alice.as_peer())).unwrap();
        assert_eq!(text(bob.decrypt(&m4, None).unwrap()), "carol is gone");
    }

    #[test]
    fn a_pickled_device_keeps_its_sessions() {
        let (ua, ub) = (user("alice"), user("bob"));
        let (dm, r) = (room("dm"), room("team"));
        let mut alice = Device::new(ua.clone(), "A").unwrap();
        let mut bob = Device::new(ub.clone(), "B").unwrap();
        connect(&mut alice, &mut bob);
        let m1 = message(&dm, 1, &ua, alice.encrypt_direct(&dm, &[bob.as_peer()], "one").unwrap());
        assert_eq!(text(bob.decrypt(&m1, Some(&alice.as_peer())).unwrap()), "one");
        let need = alice.room_key_recipients(&r, &[bob.as_peer()]);
        let share = message(&r, 1, &ua, alice.encrypt_room_key(&r, &need).unwrap());
        alice.room_key_sent(&r, &need);
        bob.decrypt(&share, Some(&alice.as_peer())).unwrap();
        let m2 = message(&r, 2, &ua, alice.encrypt_room(&r, "two").unwrap());

        let key = [42; 32];
        let saved_bob = bob.pickle(&key).unwrap();
        assert!(Device::unpickle(&saved_bob, &[1; 32]).is_err(), "wrong key");
        let mut bob = Device::unpickle(&saved_bob, &key).unwrap();
        let mut alice = Device::unpickle(&alice.pickle(&key).unwrap(), &key).unwrap();
        assert_eq!(text(bob.decrypt(&m2, None).unwrap()), "two");
        let m3 = message(&dm, 2, &ua, alice.encrypt_direct(&dm, &[bob.as_peer()], "three").unwrap());
        assert_eq!(text(bob.decrypt(&m3, Some(&alice.as_peer())).unwrap()), "three");
        assert!(alice.room_key_recipients(&r, &[bob.as_peer()]).is_empty(), "still shared");
        let m4 = message(&r, 3, &ua, alice.encrypt_room(&r, "four").unwrap());
        assert_eq!(text(bob.decrypt(&m4, None).unwrap()), "four");
    }
}
