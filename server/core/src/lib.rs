//! Palaver's chat logic as pure state machines. Inputs go in (a command, the current
//! time, lookups as arguments); decisions come out (an effect to carry out, or a refusal
//! with a protocol error code). Nothing here touches a socket, a clock, a thread or a
//! storage handle, so every rule is unit- and property-tested without any of them, and
//! is enforced identically whichever shard or transport a request arrives on.
//!
//! - [`Room`]: one room's membership, permissions, seq assignment and idempotency.
//! - [`Session`]: one connection's auth state, rate limit and in-flight accounting.
//! - [`logins`]: which logins are over (logout, log out everywhere, a new password).
//! - [`admin`]: suspensions by admins, and the audit log's entries.
//! - [`retention`]: which of a room's oldest messages expire, and where its history
//!   then starts.
//! - [`room_export`]: who may export a room's history.
//! - [`reports`]: members reporting messages to the room's moderators and the admins.
//! - [`PresenceBook`]: who is online, away or offline, announced coalesced.
//! - [`notifications`]: which messages notify a user and count as their mentions.
//! - [`push`]: whom a message is pushed to while offline, and what the push says.
//! - [`keys`]: the end-to-end encryption key directory's rules.
//! - [`shard_for`]: which shard owns a room.
//! - [`log_fence`]: in a cluster, which node may append a room's records to the shared
//!   log (leases the log itself enforces).
//!
//! The server crate drives these: it feeds them time and commands and carries out their
//! effects (persist, broadcast, reply).

pub mod admin;
pub mod api_keys;
mod error;
pub mod keys;
pub mod log_fence;
pub mod log_trim;
pub mod logins;
mod membership;
pub mod memory;
pub mod notifications;
pub mod outbound;
pub mod owner;
pub mod people;
mod presence;
pub mod push;
mod rate;
pub mod records;
pub mod replica_check;
pub mod reports;
pub mod retention;
mod role;
mod room;
pub mod room_export;
pub mod route;
#[cfg(test)]
mod rules_coverage;
mod session;
mod sharding;
mod throttle;
pub mod webhooks;

pub use error::{CoreError, Throttled};
pub use membership::{
    Heartbeat, Membership, MembershipChange, Standing, rendezvous_owner, rendezvous_weight,
};
pub use presence::{PresenceBook, SessionChange};
pub use rate::TokenBucket;
pub use role::Role;
pub use room::{
    Announcing, Appended, Draft, Governance, HistoryRequest, HistoryWindow, JoinOutcome, Moderation,
    ReceiptChange, Room, RoomLimits, SendOutcome, TypingChange, mentioned_all, mentioned_usernames,
};
pub use session::{Admission, Session, SessionLimits};
pub use sharding::{jump_hash, shard_for, stable_hash};
pub use throttle::Throttle;
