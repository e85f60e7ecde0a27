//! Validated identifiers. Each is parsed once where it enters (a frame decoder, an HTTP
//! body) and is trusted everywhere after: inside the server a `RoomId` is a `RoomId`.
//!
//! Every way in goes through the one check: serde through `TryFrom<String>`, rkyv through
//! a hand-written `Deserialize` on the archived form, so an archive carrying an invalid
//! identifier fails to decode like a JSON frame does (bytecheck only proves the bytes are
//! a well-formed string; what the string says is checked here).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::limits::{MAX_CID_BYTES, MAX_ID_BODY_BYTES, USERNAME_BYTES};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The identifier does not start with the prefix of its kind (`u_`, `r_`, `s_`).
    #[error("{kind} must start with {prefix:?}")]
    WrongPrefix {
        /// Which identifier.
        kind: &'static str,
        /// The required prefix.
        prefix: &'static str,
    },
    /// Empty, too long, or a character outside the allowed set.
    #[error("{kind} is malformed: {reason}")]
    Malformed {
        /// Which identifier.
        kind: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Defines a server-issued, prefixed identifier: `prefix` + 1..=40 of `[0-9a-z]`.
macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize,
            rkyv::Archive, rkyv::Serialize, ts_rs::TS,
        )]
        #[serde(try_from = "String")]
        #[ts(type = "string")]
        pub struct $name(String);

        impl $name {
            /// The prefix every identifier of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// Parses and validates an identifier.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                Self::check(s)?;
                Ok(Self(s.to_owned()))
            }

            fn check(s: &str) -> Result<(), IdError> {
                let body = s.strip_prefix($prefix).ok_or(IdError::WrongPrefix {
                    kind: $kind,
                    prefix: $prefix,
                })?;
                check_id_body($kind, body)
            }

            /// Builds an identifier from a body the caller generated (`[0-9a-z]`).
            pub fn from_body(body: &str) -> Result<Self, IdError> {
                check_id_body($kind, body)?;
                Ok(Self(format!("{}{}", $prefix, body)))
            }

            /// The identifier as a string, prefix included.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::check(&s)?;
                Ok(Self(s))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        checked_rkyv_deserialize!($name);
        serialize_as_str!($name);
    };
}

/// serde's `Serialize` for an identifier: its string, borrowed (`into = "String"` would
/// copy it for every frame it is written into).
macro_rules! serialize_as_str {
    ($name:ident) => {
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }
    };
}

/// rkyv's `Deserialize` for an identifier, through its check: the derived one would build
/// the newtype from any string. (bytecheck's `Verify` would check at access time, but it
/// is an `unsafe` trait.)
macro_rules! checked_rkyv_deserialize {
    ($name:ident) => {
        impl<D> rkyv::Deserialize<$name, D> for rkyv::Archived<$name>
        where
            D: rkyv::rancor::Fallible + ?Sized,
            D::Error: rkyv::rancor::Source,
        {
            fn deserialize(&self, _: &mut D) -> Result<$name, D::Error> {
                let s = self.0.as_str();
                $name::check(s).map_err(<D::Error as rkyv::rancor::Source>::new)?;
                Ok($name(s.to_owned()))
            }
        }
    };
}

fn check_id_body(kind: &'static str, body: &str) -> Result<(), IdError> {
    if body.is_empty() || body.len() > MAX_ID_BODY_BYTES {
        return Err(IdError::Malformed { kind, reason: "length out of range" });
    }
    if !body.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()) {
        return Err(IdError::Malformed { kind, reason: "only 0-9 and a-z are allowed" });
    }
    Ok(())
}

prefixed_id!(
    /// A user account, `u_…`.
    UserId, "u_", "user id"
);
impl UserId {
    /// The body of [`UserId::system`].
    const SYSTEM_BODY: &'static str = "system";

    /// The sender of what the system itself posts (announcements through the server
    /// API): `u_system`. No account has it: account ids are 26 characters of base32, so
    /// this shorter id is never issued, and nobody can sign in as it or post as it.
    pub fn system() -> Self {
        Self(format!("{}{}", Self::PREFIX, Self::SYSTEM_BODY))
    }

    /// Whether this is [`UserId::system`].
    pub fn is_system(&self) -> bool {
        self.0.strip_prefix(Self::PREFIX) == Some(Self::SYSTEM_BODY)
    }
}

prefixed_id!(
    /// A room, `r_…`.
    RoomId, "r_", "room id"
);
prefixed_id!(
    /// One authenticated connection, `s_…`.
    SessionId, "s_", "session id"
);

/// The client's idempotency key for a send: 1..=64 printable ASCII characters, no spaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, rkyv::Archive, rkyv::Serialize, ts_rs::TS)]
#[serde(try_from = "String")]
#[ts(type = "string")]
pub struct ClientMsgId(String);

impl ClientMsgId {
    /// Parses and validates a `cid`.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        Self::check(s)?;
        Ok(Self(s.to_owned()))
    }

    fn check(s: &str) -> Result<(), IdError> {
        let kind = "cid";
        if s.is_empty() || s.len() > MAX_CID_BYTES {
            return Err(IdError::Malformed { kind, reason: "must be 1 to 64 bytes" });
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(IdError::Malformed { kind, reason: "only printable ASCII without spaces" });
        }
        Ok(())
    }

    /// The `cid` as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `cid` the server gives the `system` message with seq `seq` (`system:SEQ`). It is
    /// informational only: system messages are not indexed by cid, so a client's own cid
    /// that happens to look like this never collides with one.
    pub fn system(seq: u64) -> Self {
        Self(format!("system:{seq}"))
    }
}

impl TryFrom<String> for ClientMsgId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::check(&s)?;
        Ok(Self(s))
    }
}

checked_rkyv_deserialize!(ClientMsgId);
serialize_as_str!(ClientMsgId);

impl From<ClientMsgId> for String {
    fn from(id: ClientMsgId) -> String {
        id.0
    }
}

impl fmt::Display for ClientMsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A username: 3..=32 of `[a-z0-9_.-]`, starting with a letter or digit. Usernames are
/// case-insensitive: input is folded to lower case when parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Username(String);

impl Username {
    /// Parses, folds to lower case and validates a username.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let kind = "username";
        let folded = s.to_ascii_lowercase();
        if !USERNAME_BYTES.contains(&folded.len()) {
            return Err(IdError::Malformed { kind, reason: "must be 3 to 32 characters" });
        }
        let valid_char =
            |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-');
        if !folded.bytes().all(valid_char) {
            return Err(IdError::Malformed { kind, reason: "only a-z, 0-9, '_', '.' and '-'" });
        }
        if !folded.as_bytes()[0].is_ascii_alphanumeric() {
            return Err(IdError::Malformed { kind, reason: "must start with a letter or digit" });
        }
        Ok(Self(folded))
    }

    /// The username as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Username {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::parse(&s)
    }
}

serialize_as_str!(Username);

impl From<Username> for String {
    fn from(name: Username) -> String {
        name.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_need_prefix_and_body() {
        assert!(RoomId::parse("r_abc123").is_ok());
        assert!(RoomId::parse("u_abc123").is_err());
        assert!(RoomId::parse("r_").is_err());
        assert!(RoomId::parse("r_ABC").is_err());
        assert!(RoomId::parse(&format!("r_{}", "a".repeat(41))).is_err());
    }

    #[test]
    fn usernames_fold_case_and_reject_odd_characters() {
        assert_eq!(Username::parse("Alice").unwrap().as_str(), "alice");
        assert!(Username::parse("al").is_err());
        assert!(Username::parse("_alice").is_err());
        assert!(Username::parse("ali ce").is_err());
        assert!(Username::parse("алиса").is_err());
    }

    #[test]
    fn cids_are_printable_ascii() {
        assert!(ClientMsgId::parse("c-8f1e:01").is_ok());
        assert!(ClientMsgId::parse("").is_err());
        assert!(ClientMsgId::parse("a b").is_err());
        assert!(ClientMsgId::parse(&"x".repeat(65)).is_err());
    }
}
