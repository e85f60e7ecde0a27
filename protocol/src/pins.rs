//! Pinned messages on the wire: what `pin.list` answers.

use serde::{Deserialize, Serialize};

use crate::frames::Message;
use crate::ids::UserId;

/// One pinned message.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct PinInfo {
    /// Who pinned it.
    pub pinned_by: UserId,
    /// When (ms since the Unix epoch).
    pub pinned_at: u64,
    /// The message, as `history` shows it.
    pub message: Message,
}

/// Answer to `pin.list`.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    ts_rs::TS,
)]
pub struct PinsOk {
    /// The pinned messages, the most recently pinned first.
    pub pins: Vec<PinInfo>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}
