//! Palaver's durable state on one machine: a fjall keyspace holding users, refresh
//! tokens, rooms, memberships (both ways), the message log keyed `(room, seq)`, and
//! idempotency keys `(room, cid)`.
//!
//! The API is blocking and thread-safe. It never runs on a shard's event loop for
//! anything slow: writes that must be durable go through [`GroupCommitter`], a dedicated
//! thread that folds every pending write into one atomic batch and one journal sync, so
//! a thousand concurrent sends cost one fsync. Reads (point lookups and short range scans
//! served from fjall's memtables and block cache) are cheap enough to call inline.
//!
//! Not here: sockets, the chat rules (that is `palaver-core`), search and files.

mod account_deletion;
mod admin;
mod cid_filter;
mod committer;
mod error;
mod export;
mod files;
mod governance;
mod integrity;
mod key_directory;
mod keys;
mod logins;
mod memtable_keeper;
mod message_record;
mod outbound;
mod people;
mod retention;
mod scan;
mod store;
mod threads;
mod user_export;

pub use cid_filter::{CidFilter, CidHash, FilterFull, MAX_FILTERED_CIDS};
pub use committer::{CommitDone, GroupCommitter};
pub use error::StorageError;
pub use export::ExportSummary;
pub use palaver_core::records::{
    ActionRecord, DeviceRecord, FileRecord, ProfileRecord, RefreshRecord, RoomRecord, UserRecord, Write,
};
pub use retention::AgedMessage;
pub use store::{
    Durability, FORMAT_VERSION, LogPart, Replicator, RoomDigest, Rotation, Store, StoreOptions,
    lower_this_threads_priority, username_skeleton,
};
pub use user_export::{
    ExportedDevice, ExportedFriend, ExportedInvitation, ExportedRefreshToken, ExportedRoom, MessagePage,
    UserExport,
};
