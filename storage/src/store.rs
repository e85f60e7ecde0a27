//! The store: fjall partitions and the reads and writes over them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch, PersistMode};
use palaver_protocol::{
    ClientMsgId, Message, MessageKind, ReactionSummary, RoomId, RoomRole, UserId, Username,
};

use crate::cid_filter::{CidFilter, CidHash, MAX_FILTERED_CIDS};
use crate::error::StorageError;
use crate::integrity::{CommitWatermark, DiskGuard};
use crate::keys;
use crate::memtable_keeper::MemtableKeeper;
use crate::message_record;
use palaver_core::records::{
    DerivedReceipts, RefreshRecord, RoomRecord, SENDER_RECEIPT_TAIL, UserRecord, Write,
    raises_sender_receipt, sender_receipts,
};

/// The on-disk format this build reads and writes. Bumped on any incompatible change to
/// keys or values; an older directory is migrated at open (see [`Store::migrate`]), a
/// newer one refused rather than misread.
///
/// - 1: the first.
/// - 2: `room_cid_seq` keys take the sender (`room ++ 0 ++ sender ++ 0 ++ cid`): a cid is
///   its sender's idempotency key.
/// - 3: a sender's `room_user_receipt` may lag their own messages among the room's newest
///   `SENDER_RECEIPT_TAIL`, which raise it when read: a build of format 2 would read such
///   a watermark as is (messages coming back as unread), so it refuses the directory.
///   Keys and values are unchanged: a format 2 directory is upgraded by writing the version.
pub const FORMAT_VERSION: u32 = 3;
const FORMAT_KEY: &[u8] = b"format_version";
/// The group-commit counter, written in every group's batch (see `integrity`).
const COMMIT_COUNTER_KEY: &[u8] = b"commit_counter";
/// In a cluster: the position in the shared log up to which this replica has applied.
const LOG_POSITION_KEY: &[u8] = b"cluster_log_position";

/// A cluster's shared log. With one set ([`Store::set_replicator`]), every write this
/// node originates is handed to it first, and applied here only once the log has it: a
/// node's store never holds a write the rest of the cluster cannot see.
pub trait Replicator: Send + Sync {
    /// Makes `writes` part of the shared log (blocking until the log acknowledges them)
    /// and returns their position in it. An account creation that loses a race for its
    /// username fails with `UsernameTaken`.
    fn replicate(&self, writes: &[Write]) -> Result<u64, StorageError>;

    /// The writes logged at `position` are now applied here (in the store's journal, so
    /// before anything written after this call). A replica must not record a log
    /// position past a write of its own before this, or a crash in between would lose
    /// that write here for good.
    fn applied_locally(&self, position: u64);

    /// Makes a group commit's writes part of the shared log, one record per part (each
    /// room's writes under that room's fence), and returns each part's position or why
    /// the log did not take it (then it must be applied nowhere). `last_seq` reads a
    /// room's last stored seq here.
    fn replicate_parts(
        &self,
        parts: &[LogPart<'_>],
        last_seq: &dyn Fn(&palaver_protocol::RoomId) -> Result<u64, StorageError>,
    ) -> Vec<Result<u64, StorageError>>;

    /// A group commit refused a write of `room` (for any reason): the room's writes
    /// still on their way, decided after it, must be refused too until its owner is
    /// loaded again.
    fn refused(&self, room: &palaver_protocol::RoomId);
}

/// The writes of one group commit that go to the shared log as one record: all of one
/// room's (`room`), all of one pair of users' (`pair`, decided on what this node had
/// applied of the log up to `seen`), or those of neither.
#[derive(Debug)]
pub struct LogPart<'a> {
    /// The room every write belongs to, if one does.
    pub room: Option<&'a palaver_protocol::RoomId>,
    /// The pair of users every write is about, if one is and its decision said what it
    /// had seen of the log.
    pub pair: Option<(&'a palaver_protocol::UserId, &'a palaver_protocol::UserId)>,
    /// The log position this node's replica had applied when the writes were decided
    /// (the earliest of the part's decisions).
    pub seen: Option<u64>,
    /// The writes, in submission order.
    pub writes: Vec<&'a Write>,
}

/// Keyspaces keyed by room first whose entries come from writes that are not the room's
/// own (so not in the room's records of the cluster log): a room's rebuild keeps them.
const KEPT_BY_ROOM_REBUILD: &[&str] = &["room_report"];

/// What [`Store::room_digest`] found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RoomDigest {
    /// Messages in the range.
    pub messages: u64,
    /// The first seq found.
    pub first_seq: Option<u64>,
    /// The last seq found.
    pub last_seq: Option<u64>,
    /// SHA-256 over the messages, hex.
    pub sha256: String,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq)]
pub enum Rotation {
    /// It was current: here is its (now rotated) record.
    Rotated(RefreshRecord),
    /// Unknown, expired, or of a login that is over.
    Refused,
    /// It had been rotated already: its login is ended by this write.
    Replayed(Box<Write>),
}

/// A write handed to the shared log and not yet applied here.
#[must_use]
pub(crate) struct Logged(Option<u64>);

/// How a store is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// When an acknowledged write is safe.
    pub durability: Durability,
    /// Writes are refused (`DiskFull`) while the file system has less than this many
    /// bytes free; 0 turns the check off.
    pub disk_reserve_bytes: u64,
    /// Table files the engine keeps open at most (`None`: its default, 900): part of
    /// the process's descriptor budget.
    pub max_cached_files: Option<usize>,
}

impl StoreOptions {
    /// The given durability, no disk reserve, the engine's default file cache.
    pub fn new(durability: Durability) -> Self {
        Self { durability, disk_reserve_bytes: 0, max_cached_files: None }
    }
}

/// When an acknowledged write is safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The journal is fsynced before a write is acknowledged (group commit shares syncs).
    Fsync,
    /// Written to the OS before acknowledgement (survives a process crash); synced to
    /// disk in the background within [`crate::GroupCommitter`]'s sync interval.
    Buffered,
}

/// Handles to every partition of one open fjall database. The store replaces it whole
/// when it reopens the database after a transient failure ([`Store::recover`]).
pub(crate) struct Engine {
    pub(crate) db: Database,
    pub(crate) meta: Keyspace,
    pub(crate) users: Keyspace,
    pub(crate) username_user: Keyspace,
    /// A username's confusable skeleton (UTS #39) → user id: names that look alike are
    /// one name.
    pub(crate) username_skeleton: Keyspace,
    pub(crate) refresh_token: Keyspace,
    pub(crate) revoked_family: Keyspace,
    /// `user ++ 0 ++ login` → when it was ended (logout).
    pub(crate) user_login_ended: Keyspace,
    /// A user → their `SessionEpoch` (absent: never raised).
    pub(crate) user_session_epoch: Keyspace,
    /// Admins (user id → nothing).
    pub(crate) user_admin: Keyspace,
    /// Suspended accounts (user id → `Suspension`).
    pub(crate) user_suspension: Keyspace,
    /// The audit log (time-ordered entry id → `AuditEntry`).
    pub(crate) audit_log: Keyspace,
    /// Reports (time-ordered report id → `ReportRecord`).
    pub(crate) report: Keyspace,
    /// A room's reports (`room ++ 0 ++ report id`).
    pub(crate) room_report: Keyspace,
    /// Deleted accounts still to leave their rooms (user id → deletion time, ms).
    pub(crate) account_departure: Keyspace,
    /// API keys (key id → `ApiKeyRecord`).
    pub(crate) api_key: Keyspace,
    /// Webhook registrations (webhook id → `WebhookRecord`).
    pub(crate) webhook: Keyspace,
    /// This node's outbound deliveries, never replicated
    /// (`destination ++ 0 ++ delivery id` → `OutboundDelivery`).
    pub(crate) outbound: Keyspace,
    pub(crate) rooms: Keyspace,
    pub(crate) room_member: Keyspace,
    pub(crate) user_room: Keyspace,
    pub(crate) room_seq_message: Keyspace,
    pub(crate) room_cid_seq: Keyspace,
    pub(crate) room_user_receipt: Keyspace,
    pub(crate) room_seq_reaction: Keyspace,
    pub(crate) room_seq_ext: Keyspace,
    pub(crate) room_seq_edit: Keyspace,
    pub(crate) room_seq_pin: Keyspace,
    pub(crate) room_root_seq_reply: Keyspace,
    pub(crate) room_seq_thread_only: Keyspace,
    pub(crate) room_seq_thread: Keyspace,
    pub(crate) room_seq_thread_activity: Keyspace,
    pub(crate) room_user_root_read: Keyspace,
    pub(crate) user_room_mention: Keyspace,
    pub(crate) room_user_ban: Keyspace,
    pub(crate) room_user_mute: Keyspace,
    pub(crate) room_user_invite: Keyspace,
    pub(crate) user_room_invite: Keyspace,
    pub(crate) user_profile: Keyspace,
    /// `user` → the user's notification settings (JSON; absent: the defaults).
    pub(crate) user_notifications: Keyspace,
    /// `user ++ 0 ++ endpoint` → a push subscription (JSON).
    pub(crate) user_push_subscription: Keyspace,
    pub(crate) user_user_friend: Keyspace,
    pub(crate) user_user_block: Keyspace,
    pub(crate) user_last_seen: Keyspace,
    pub(crate) file_record: Keyspace,
    pub(crate) user_device: Keyspace,
    pub(crate) user_device_otk: Keyspace,
    /// `room ++ 0` → the oldest seq the room keeps (absent: 1, retention removed nothing).
    pub(crate) room_history_floor: Keyspace,
    /// Frees flushed memtables outside fjall's locks (see `memtable_keeper`).
    _memtables: MemtableKeeper,
}

impl Engine {
    /// Opens the database in `dir` (recovering its journal) and every partition.
    fn open(dir: &Path, options: &StoreOptions) -> Result<Engine, StorageError> {
        let db = open_database(dir, options.max_cached_files)?;
        let open = |name: &str| {
            db.keyspace(name, || KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES))
        };
        Ok(Engine {
            meta: db.keyspace("meta", KeyspaceCreateOptions::default)?,
            users: open("users")?,
            username_user: open("username_user")?,
            // Added within format 1: filled from `username_user` at open when empty.
            username_skeleton: open("username_skeleton")?,
            refresh_token: open("refresh_token")?,
            revoked_family: open("revoked_family")?,
            // Added within format 2: absent means no login was ended.
            user_login_ended: open("user_login_ended")?,
            user_session_epoch: open("user_session_epoch")?,
            user_admin: open("user_admin")?,
            user_suspension: open("user_suspension")?,
            audit_log: open("audit_log")?,
            report: open("report")?,
            room_report: open("room_report")?,
            account_departure: open("account_departure")?,
            api_key: open("api_key")?,
            // Added within format 2: absent means no webhooks and nothing to send.
            webhook: open("webhook")?,
            outbound: open("outbound")?,
            rooms: open("rooms")?,
            room_member: open("room_member")?,
            user_room: open("user_room")?,
            room_seq_message: open("room_seq_message")?,
            room_cid_seq: open("room_cid_seq")?,
            // Added within format 1: an older directory simply starts without receipts.
            room_user_receipt: open("room_user_receipt")?,
            room_seq_reaction: open("room_seq_reaction")?,
            room_seq_ext: open("room_seq_ext")?,
            room_seq_edit: open("room_seq_edit")?,
            // Added within format 1: an older directory simply starts without pins.
            room_seq_pin: open("room_seq_pin")?,
            // Threads (added within format 2: absent means no threads; see `threads`).
            room_root_seq_reply: open("room_root_seq_reply")?,
            room_seq_thread_only: open("room_seq_thread_only")?,
            room_seq_thread: open("room_seq_thread")?,
            room_seq_thread_activity: open("room_seq_thread_activity")?,
            room_user_root_read: open("room_user_root_read")?,
            user_room_mention: open("user_room_mention")?,
            // Rooms' governance and people (added within format 1: absent means none).
            room_user_ban: open("room_user_ban")?,
            room_user_mute: open("room_user_mute")?,
            room_user_invite: open("room_user_invite")?,
            user_room_invite: open("user_room_invite")?,
            user_profile: open("user_profile")?,
            // Added within format 2: absent means the default settings.
            user_notifications: open("user_notifications")?,
            user_push_subscription: open("user_push_subscription")?,
            user_user_friend: open("user_user_friend")?,
            user_user_block: open("user_user_block")?,
            user_last_seen: open("user_last_seen")?,
            file_record: open("file_record")?,
            user_device: open("user_device")?,
            user_device_otk: open("user_device_otk")?,
            // Added within format 2: absent means retention removed nothing.
            room_history_floor: open("room_history_floor")?,
            _memtables: MemtableKeeper::start(keyspaces_of(&db)?)
                .map_err(|e| StorageError::Engine(fjall::Error::from(e)))?,
            db,
        })
    }

    pub(crate) fn put_ext(
        &self,
        batch: &mut fjall::OwnedWriteBatch,
        message: &Message,
    ) -> Result<(), StorageError> {
        let key = keys::message(&message.room, message.seq);
        match message_record::encode_ext(message)? {
            Some(ext) => batch.insert(&self.room_seq_ext, key, ext),
            None => batch.remove(&self.room_seq_ext, key),
        }
        Ok(())
    }

    /// Decodes a stored message and applies its extension record, if any.
    pub(crate) fn read_message(&self, bytes: &[u8]) -> Result<Message, StorageError> {
        let mut message = message_record::decode(bytes)?;
        if let Some(ext) = self.room_seq_ext.get(keys::message(&message.room, message.seq))? {
            message_record::apply_ext(&mut message, &ext)?;
        }
        Ok(message)
    }

    /// The newest group-commit counter in the journal (0 for a new directory).
    fn commit_counter(&self) -> Result<u64, StorageError> {
        match self.meta.get(COMMIT_COUNTER_KEY)? {
            Some(bytes) => <[u8; 8]>::try_from(&bytes[..])
                .map(u64::from_be_bytes)
                .map_err(|_| StorageError::Corrupt { partition: "meta", detail: "commit counter".into() }),
            None => Ok(0),
        }
    }
}

/// Whether the store takes writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Health {
    Writable = 0,
    /// A failure that reopening the database repairs: the engine's background worker
    /// failed (its table files are derived from the journal, which holds every
    /// acknowledged write), or a file could not be opened for want of descriptors or
    /// memory. Writes are refused until [`Store::recover`] has reopened it.
    Recoverable = 1,
    /// A failed write or sync of the journal itself: whether the kernel kept the data is
    /// unknown, and retrying the sync could report success for data it dropped. Writes
    /// are refused until the operator restarts the server (the journal is then read
    /// back from disk as it is).
    Fatal = 2,
}

/// Handles to every partition of one Palaver data directory.
pub struct Store {
    /// The open database; `None` only while [`Store::recover`] reopens it.
    engine: RwLock<Option<Arc<Engine>>>,
    dir: PathBuf,
    options: StoreOptions,
    pub(crate) durability: Durability,
    health: AtomicU8,
    /// Times the database was reopened after a transient failure.
    reopens: AtomicU64,
    /// Serializes the few read-check-write sequences outside the group committer
    /// (username uniqueness, refresh-token rotation); they are rare and never on a shard.
    pub(crate) account_writes: Mutex<()>,
    /// The last group-commit counter written; the lock also serializes `apply`.
    commits: Mutex<u64>,
    watermark: CommitWatermark,
    disk: DiskGuard,
    /// Set in a cluster: where this node's writes go before they are applied here.
    replicator: std::sync::OnceLock<std::sync::Arc<dyn Replicator>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("durability", &self.durability).finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`, recovering the journal, and checks the
    /// format version. No disk reserve: see [`Store::open_with`].
    pub fn open(dir: &Path, durability: Durability) -> Result<Store, StorageError> {
        Self::open_with(dir, StoreOptions::new(durability))
    }

    /// Opens (or creates) the store in `dir`, recovering the journal; checks the format
    /// version and that the journal still holds every acknowledged group commit.
    pub fn open_with(dir: &Path, options: StoreOptions) -> Result<Store, StorageError> {
        let engine = Engine::open(dir, &options)?;
        let recovered = engine.commit_counter()?;
        let (watermark, acknowledged) = CommitWatermark::open(dir)?;
        if acknowledged > recovered {
            return Err(StorageError::LostAcknowledgedWrites {
                recovered,
                acknowledged,
                watermark: watermark.path().to_owned(),
            });
        }
        let store = Store {
            engine: RwLock::new(Some(Arc::new(engine))),
            dir: dir.to_owned(),
            options,
            durability: options.durability,
            health: AtomicU8::new(Health::Writable as u8),
            reopens: AtomicU64::new(0),
            account_writes: Mutex::new(()),
            commits: Mutex::new(recovered),
            watermark,
            disk: DiskGuard::new(options.disk_reserve_bytes),
            replicator: std::sync::OnceLock::new(),
        };
        store.check_format()?;
        store.fill_username_skeletons()?;
        Ok(store)
    }

    /// A directory from before skeletons were kept: record every existing username's
    /// (the first of any look-alikes already registered keeps the skeleton).
    fn fill_username_skeletons(&self) -> Result<(), StorageError> {
        let e = self.engine()?;
        if e.username_skeleton.iter().next().is_some() || e.username_user.iter().next().is_none() {
            return Ok(());
        }
        let mut batch = e.db.batch().durability(Some(PersistMode::SyncAll));
        let mut seen = std::collections::HashSet::new();
        for guard in e.username_user.iter() {
            let (name, user_id) = guard.into_inner()?;
            let skeleton = username_skeleton(&String::from_utf8_lossy(&name));
            if seen.insert(skeleton.clone()) {
                batch.insert(&e.username_skeleton, skeleton.as_bytes(), user_id);
            }
        }
        batch.commit()?;
        Ok(())
    }

    /// The open database, for one operation (an operation uses one engine throughout:
    /// a batch never mixes partitions of two openings).
    pub(crate) fn engine(&self) -> Result<Arc<Engine>, StorageError> {
        self.engine.read().ok().and_then(|engine| engine.clone()).ok_or(StorageError::Reopening)
    }

    /// Whether writes are refused until [`Store::recover`] reopens the database.
    pub fn needs_recovery(&self) -> bool {
        self.health.load(Ordering::Acquire) == Health::Recoverable as u8
    }

    /// How many times the database was reopened after a transient failure.
    pub fn reopens(&self) -> u64 {
        self.reopens.load(Ordering::Relaxed)
    }

    /// Reopens the database after a transient failure ([`Store::needs_recovery`]): waits
    /// for the operations holding the old one to finish (up to `wait`), closes it,
    /// opens it again from its journal, and takes writes again. Returns whether the store
    /// is writable afterwards. A fatal failure is never recovered from here.
    pub fn recover(&self, wait: std::time::Duration) -> bool {
        let Ok(mut commits) = self.commits.lock() else { return false };
        if !self.needs_recovery() {
            return self.health.load(Ordering::Acquire) == Health::Writable as u8;
        }
        let Some(old) = self.engine.write().ok().and_then(|mut slot| slot.take()) else { return false };
        // Readers clone the handle for one operation; the database must be closed (its
        // lock file released) before it can be opened again.
        let deadline = std::time::Instant::now() + wait;
        while Arc::strong_count(&old) > 1 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        if Arc::strong_count(&old) > 1 {
            tracing::warn!("storage recovery postponed: the database is still in use");
            if let Ok(mut slot) = self.engine.write() {
                *slot = Some(old);
            }
            return false;
        }
        drop(old);
        let reopened = Engine::open(&self.dir, &self.options).and_then(|engine| {
            let counter = engine.commit_counter()?;
            Ok((engine, counter))
        });
        match reopened {
            Ok((engine, counter)) => {
                // A group whose commit reported failure may have reached the journal
                // before the failure: the counter then moved on without us.
                *commits = (*commits).max(counter);
                if let Ok(mut slot) = self.engine.write() {
                    *slot = Some(Arc::new(engine));
                }
                self.health.store(Health::Writable as u8, Ordering::Release);
                self.reopens.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("storage reopened after a transient failure; writes resume");
                true
            }
            Err(e) => {
                tracing::error!("storage recovery failed, will retry: {e}");
                false
            }
        }
    }

    /// Format 1 → 2: every `room_cid_seq` key gains its message's sender. In batches, each
    /// removing the old keys it rewrites, so a migration cut short by a crash carries on
    /// where it stopped (what is left under old keys is what was not done); the version
    /// becomes 2 once none is left.
    fn migrate_from_1(&self, e: &Engine) -> Result<(), StorageError> {
        const BATCH: usize = 10_000;
        let started = std::time::Instant::now();
        let mut migrated = 0u64;
        loop {
            let mut batch = e.db.batch().durability(Some(PersistMode::SyncAll));
            let mut in_batch = 0;
            for guard in e.room_cid_seq.iter() {
                let (key, value) = guard.into_inner()?;
                // A format-1 key is `room ++ 0 ++ cid`: its suffix has no second separator
                // (cids are printable ASCII); a format-2 key, already migrated, has one.
                let Some(room_end) = key.iter().position(|b| *b == 0) else { continue };
                if key[room_end + 1..].contains(&0) {
                    continue;
                }
                let corrupt =
                    || StorageError::Corrupt { partition: "room_cid_seq", detail: "format 1 key".into() };
                let room = std::str::from_utf8(&key[..room_end])
                    .ok()
                    .and_then(|r| RoomId::parse(r).ok())
                    .ok_or_else(corrupt)?;
                let cid = std::str::from_utf8(&key[room_end + 1..])
                    .ok()
                    .and_then(|c| ClientMsgId::parse(c).ok())
                    .ok_or_else(corrupt)?;
                let (seq, _) = decode_pair(&value).ok_or_else(corrupt)?;
                if let Some(stored) = e.room_seq_message.get(keys::message(&room, seq))? {
                    let message = message_record::decode(&stored)?;
                    batch.insert(&e.room_cid_seq, keys::room_sender_cid(&room, &message.sender, &cid), value);
                }
                batch.remove(&e.room_cid_seq, key);
                in_batch += 1;
                if in_batch == BATCH {
                    break;
                }
            }
            if in_batch == 0 {
                break;
            }
            migrated += in_batch as u64;
            batch.commit()?;
        }
        let mut batch = e.db.batch().durability(Some(PersistMode::SyncAll));
        batch.insert(&e.meta, FORMAT_KEY, FORMAT_VERSION.to_be_bytes());
        batch.commit()?;
        tracing::info!(
            migrated,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "storage migrated from format 1 to 2"
        );
        Ok(())
    }

    /// Format 2's watermarks are all written, which format 3 reads the same: only the
    /// version changes.
    fn migrate_from_2(e: &Engine) -> Result<(), StorageError> {
        let mut batch = e.db.batch().durability(Some(PersistMode::SyncAll));
        batch.insert(&e.meta, FORMAT_KEY, FORMAT_VERSION.to_be_bytes());
        batch.commit()?;
        tracing::info!("storage upgraded from format 2 to 3 (no data rewritten)");
        Ok(())
    }

    fn check_format(&self) -> Result<(), StorageError> {
        let e = self.engine()?;
        match e.meta.get(FORMAT_KEY)? {
            Some(bytes) => {
                let found = <[u8; 4]>::try_from(&bytes[..]).map(u32::from_be_bytes).map_err(|_| {
                    StorageError::Corrupt { partition: "meta", detail: "format version".into() }
                })?;
                match found {
                    FORMAT_VERSION => Ok(()),
                    1 => self.migrate_from_1(&e),
                    2 => Self::migrate_from_2(&e),
                    _ => Err(StorageError::UnsupportedFormat { found, supported: FORMAT_VERSION }),
                }
            }
            None => {
                let mut batch = e.db.batch().durability(Some(PersistMode::SyncAll));
                batch.insert(&e.meta, FORMAT_KEY, FORMAT_VERSION.to_be_bytes());
                batch.commit()?;
                Ok(())
            }
        }
    }

    /// The durability policy this store was opened with.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Whether an earlier write failure has made the store refuse writes.
    pub fn is_poisoned(&self) -> bool {
        self.health.load(Ordering::Acquire) != Health::Writable as u8
    }

    fn persist_mode(&self) -> PersistMode {
        match self.durability {
            // fdatasync: the journal's data and the size needed to read it back are on
            // disk when it returns (what PostgreSQL's WAL relies on), without also
            // flushing timestamps.
            Durability::Fsync => PersistMode::SyncData,
            Durability::Buffered => PersistMode::Buffer,
        }
    }

    /// Joins a cluster: from now on every write originated here goes to `replicator`
    /// first. Set once; returns false if one was set already.
    pub fn set_replicator(&self, replicator: std::sync::Arc<dyn Replicator>) -> bool {
        self.replicator.set(replicator).is_ok()
    }

    /// Whether this store is a cluster node's replica (its writes go to the shared log).
    pub fn replicates(&self) -> bool {
        self.replicator.get().is_some()
    }

    /// Whether a write could be applied now (not poisoned, open, disk not full): checked
    /// before a group's writes go to the shared log, so that the log never takes a write
    /// this node then refuses to apply for a reason it knew before.
    pub fn writable(&self) -> Result<(), StorageError> {
        if self.is_poisoned() {
            return Err(StorageError::Poisoned);
        }
        self.engine()?;
        self.disk.check(self.watermark.file())
    }

    /// Hands a group commit's parts to the shared log (see [`Replicator::replicate_parts`]);
    /// without a cluster every part is taken as it is, at no position.
    pub fn replicate_parts(&self, parts: &[LogPart<'_>]) -> Vec<Result<u64, StorageError>> {
        match self.replicator.get() {
            Some(replicator) => {
                // What stays on this node never goes to the log.
                let shared: Vec<LogPart<'_>> = parts
                    .iter()
                    .map(|part| LogPart {
                        room: part.room,
                        pair: part.pair,
                        seen: part.seen,
                        writes: part.writes.iter().copied().filter(|w| !w.node_local()).collect(),
                    })
                    .collect();
                replicator.replicate_parts(&shared, &|room| self.last_seq(room))
            }
            None => parts.iter().map(|_| Ok(0)).collect(),
        }
    }

    /// Tells the shared log that a write of `room` was refused (see [`Replicator::refused`]).
    pub fn refused_room(&self, room: &palaver_protocol::RoomId) {
        if let Some(replicator) = self.replicator.get() {
            replicator.refused(room);
        }
    }

    /// Applies writes the shared log took at `positions` (from [`Store::replicate_parts`])
    /// as one atomic batch, durable per the policy, and tells the replicator they are here.
    pub fn apply_logged(&self, writes: &[Write], positions: &[u64]) -> Result<(), StorageError> {
        self.apply_batch_logged(writes, None, Some(positions))
    }

    pub(crate) fn replicate(&self, writes: &[Write]) -> Result<Logged, StorageError> {
        match self.replicator.get() {
            Some(replicator) if writes.iter().any(Write::node_local) => {
                let shared: Vec<Write> = writes.iter().filter(|w| !w.node_local()).cloned().collect();
                replicator.replicate(&shared).map(|p| Logged(Some(p)))
            }
            Some(replicator) => replicator.replicate(writes).map(|p| Logged(Some(p))),
            None => Ok(Logged(None)),
        }
    }

    /// Commits a batch whose writes `logged` went to the shared log first.
    pub(crate) fn commit_logged(&self, batch: OwnedWriteBatch, logged: Logged) -> Result<(), StorageError> {
        batch.commit().map_err(|e| self.poison_on(e))?;
        if let (Some(replicator), Logged(Some(position))) = (self.replicator.get(), logged) {
            replicator.applied_locally(position);
        }
        Ok(())
    }

    /// The shared-log position this replica has applied up to (0: none).
    pub fn log_position(&self) -> Result<u64, StorageError> {
        let e = self.engine()?;
        Ok(e.meta
            .get(LOG_POSITION_KEY)?
            .and_then(|v| <[u8; 8]>::try_from(&v[..]).ok())
            .map_or(0, u64::from_be_bytes))
    }

    /// Applies many writes as one atomic batch and makes it durable per the policy (in
    /// a cluster, after the shared log took them). On failure the store is poisoned:
    /// every later write fails with `Poisoned`.
    pub fn apply(&self, writes: &[Write]) -> Result<(), StorageError> {
        self.apply_batch(writes, None)
    }

    /// Applies writes another node originated, read from the shared log at `position`
    /// (recorded in the same batch, so a restarted replica resumes after it). Not handed
    /// to the replicator: the log has them.
    pub fn apply_replicated(&self, writes: &[Write], position: u64) -> Result<(), StorageError> {
        self.apply_batch(writes, Some(position))
    }

    fn apply_batch(&self, writes: &[Write], log_position: Option<u64>) -> Result<(), StorageError> {
        self.apply_batch_logged(writes, log_position, None)
    }

    /// `logged_at`: the shared log's positions of these writes, when the caller logged
    /// them already (a group commit's parts); otherwise, outside a replica's apply, they
    /// are logged here first.
    fn apply_batch_logged(
        &self,
        writes: &[Write],
        log_position: Option<u64>,
        logged_at: Option<&[u64]>,
    ) -> Result<(), StorageError> {
        let mut commits = self.commits.lock().map_err(|_| StorageError::Poisoned)?;
        if self.is_poisoned() {
            return Err(StorageError::Poisoned);
        }
        let e = self.engine()?;
        self.disk.check(self.watermark.file())?;
        // The shared log first: a write it refused is written nowhere.
        let logged = if log_position.is_none() && logged_at.is_none() {
            self.replicate(writes)?
        } else {
            Logged(None)
        };
        // A replica's batch is not synced: the log holds it durably, and a crash that
        // loses it loses its recorded position with it (same batch), so it is applied
        // again. The journal is written in order, so any later sync covers it.
        let persist = if log_position.is_some() { PersistMode::Buffer } else { self.persist_mode() };
        // Sized up front (most writes are one or two items, a message its record and its
        // cid): growing the batch item by item reallocated it several times per group.
        let items = writes.len() * 2 + 2;
        let mut batch = fjall::OwnedWriteBatch::with_capacity(e.db.clone(), items).durability(Some(persist));
        if let Some(position) = log_position {
            batch.insert(&e.meta, LOG_POSITION_KEY, position.to_be_bytes());
        }
        let mut raised_epochs = std::collections::HashMap::new();
        for write in writes {
            match write {
                Write::AppendMessage(message) => {
                    // A new seq has no extension record to clear: only write one.
                    if let Some(ext) = message_record::encode_ext(message)? {
                        batch.insert(&e.room_seq_ext, keys::message(&message.room, message.seq), ext);
                    }
                    for user in &message.mentions {
                        batch.insert(
                            &e.user_room_mention,
                            keys::user_room_seq(user, &message.room, message.seq),
                            [],
                        );
                    }
                    e.index_reply(&mut batch, message);
                    let value = message_record::encode(message)?;
                    batch.insert(&e.room_seq_message, keys::message(&message.room, message.seq), value);
                    if !message.has_idempotent_cid() {
                        // The server's notices are not indexed by cid (see `ClientMsgId::system`).
                        continue;
                    }
                    let mut seq_ts = [0u8; 16];
                    seq_ts[..8].copy_from_slice(&message.seq.to_be_bytes());
                    seq_ts[8..].copy_from_slice(&message.ts.to_be_bytes());
                    batch.insert(
                        &e.room_cid_seq,
                        keys::room_sender_cid(&message.room, &message.sender, &message.cid),
                        seq_ts,
                    );
                }
                Write::PutRoom(room) => {
                    batch.insert(&e.rooms, room.room_id.as_str(), encode_json(room)?);
                }
                Write::PutMember { room, user, role } => {
                    batch.insert(&e.room_member, keys::room_member(room, user), [role.to_byte()]);
                    batch.insert(&e.user_room, keys::user_room(user, room), [role.to_byte()]);
                }
                Write::PutReceipt { room, user, delivered, read } => {
                    let mut value = [0u8; 16];
                    value[..8].copy_from_slice(&delivered.to_be_bytes());
                    value[8..].copy_from_slice(&read.to_be_bytes());
                    batch.insert(&e.room_user_receipt, keys::room_member(room, user), value);
                }
                Write::ReplaceMessage(message) => {
                    e.put_ext(&mut batch, message)?;
                    e.unindex_deleted_reply(&mut batch, message);
                    let key = keys::message(&message.room, message.seq);
                    batch.insert(&e.room_seq_message, key, message_record::encode(message)?);
                }
                Write::PutEditHistory { room, seq, edited_at, previous_text } => {
                    let mut key = keys::message(room, *seq);
                    key.extend_from_slice(&edited_at.to_be_bytes());
                    batch.insert(&e.room_seq_edit, key, previous_text.as_bytes());
                }
                Write::PutPin { room, seq, record } => {
                    batch.insert(&e.room_seq_pin, keys::message(room, *seq), encode_json(record)?);
                }
                Write::RemovePin { room, seq } => batch.remove(&e.room_seq_pin, keys::message(room, *seq)),
                thread @ (Write::PutThread { .. } | Write::PutThreadRead { .. }) => {
                    e.apply_thread_write(&mut batch, thread);
                }
                Write::DropEditHistory { room, seq } => {
                    for guard in e.room_seq_edit.prefix(keys::message(room, *seq)) {
                        batch.remove(&e.room_seq_edit, guard.key()?);
                    }
                }
                Write::PutMentions { room, seq, users } => {
                    for user in users {
                        batch.insert(&e.user_room_mention, keys::user_room_seq(user, room, *seq), []);
                    }
                }
                Write::RemoveMentions { room, seq, users } => {
                    for user in users {
                        batch.remove(&e.user_room_mention, keys::user_room_seq(user, room, *seq));
                    }
                }
                Write::PutReaction { room, seq, emoji, user } => {
                    batch.insert(&e.room_seq_reaction, keys::reaction(room, *seq, emoji, user), []);
                }
                Write::RemoveReaction { room, seq, emoji, user } => {
                    batch.remove(&e.room_seq_reaction, keys::reaction(room, *seq, emoji, user));
                }
                Write::RemoveMember { room, user } => {
                    batch.remove(&e.room_member, keys::room_member(room, user));
                    batch.remove(&e.user_room, keys::user_room(user, room));
                }
                Write::PutUser(user) => {
                    batch.insert(&e.users, user.user_id.as_str(), encode_json(user)?);
                    batch.insert(&e.username_user, user.username.as_str(), user.user_id.as_str());
                    batch.insert(
                        &e.username_skeleton,
                        username_skeleton(&user.username),
                        user.user_id.as_str(),
                    );
                }
                Write::PutRefresh { token_hash, record } => {
                    batch.insert(&e.refresh_token, token_hash.as_slice(), encode_json(record)?);
                }
                Write::RevokeFamily { family, at } => {
                    batch.insert(&e.revoked_family, family.as_bytes(), at.to_be_bytes());
                }
                Write::PutFile(file) => {
                    batch.insert(&e.file_record, file.file_id.as_bytes(), encode_json(file)?);
                }
                Write::RemoveFile { file_id } => {
                    batch.remove(&e.file_record, file_id.as_bytes());
                }
                Write::TrimHistory { room, floor, .. } => e.apply_trim_history(&mut batch, room, *floor)?,
                // Another node's log never carries one; a replica applies none.
                Write::PutOutbound(delivery) if log_position.is_none() => {
                    batch.insert(&e.outbound, crate::outbound::key(delivery), encode_json(delivery)?);
                }
                Write::PutOutbound(_) => {}
                account @ (Write::EndLogin { .. }
                | Write::EndAllLogins { .. }
                | Write::SetPassword { .. }
                | Write::SetAdmin { .. }
                | Write::SetSuspension { .. }
                | Write::AppendAudit { .. }
                | Write::PutReport(_)
                | Write::PutApiKey(_)
                | Write::PutWebhook(_)
                | Write::RemoveWebhook { .. }
                | Write::DeleteAccount { .. }
                | Write::AccountDeparted { .. }) => {
                    crate::admin::apply_account_write(&e, &mut batch, account, &mut raised_epochs)?;
                }
                other => e.apply_governance(&mut batch, other)?,
            }
        }
        let counter = *commits + 1;
        batch.insert(&e.meta, COMMIT_COUNTER_KEY, counter.to_be_bytes());
        self.commit_logged(batch, logged)?;
        if let (Some(replicator), Some(positions)) = (self.replicator.get(), logged_at) {
            for position in positions {
                replicator.applied_locally(*position);
            }
        }
        *commits = counter;
        // Only a synced commit vouches for its counter (an unsynced replica batch is
        // covered by the next synced one).
        if self.durability == Durability::Fsync && log_position.is_none() {
            self.record_watermark(counter);
        }
        Ok(())
    }

    /// Removes every trace of `room` in one synced batch, so that a replica found to
    /// differ from the cluster log can apply the room's records again from the first:
    /// every key that starts with the room (members, messages, cids, receipts,
    /// reactions, edits, extensions, bans, mutes, invitations — whatever is keyed by
    /// room first), the room's record, and its entries in the indexes keyed by user
    /// first (memberships, mentions, invitations). Returns the seqs of the messages it
    /// held. A rare repair: those user-first indexes are read whole.
    pub fn forget_room(&self, room: &RoomId) -> Result<Vec<u64>, StorageError> {
        let _commits = self.commits.lock().map_err(|_| StorageError::Poisoned)?;
        let e = self.engine()?;
        let mut batch = self.side_batch(&e)?;
        let prefix = keys::room_prefix(room);
        let mut seqs = Vec::new();
        for name in e.db.list_keyspace_names() {
            if KEPT_BY_ROOM_REBUILD.contains(&&*name) {
                continue;
            }
            let keyspace = e.db.keyspace(&name, KeyspaceCreateOptions::default)?;
            for guard in keyspace.prefix(&prefix) {
                let key = guard.key()?;
                if &*name == "room_seq_message"
                    && let Some(seq) = keys::seq_of_message_key(&key)
                {
                    seqs.push(seq);
                }
                batch.remove(&keyspace, key);
            }
        }
        batch.remove(&e.rooms, room.as_str());
        for keyspace in [&e.user_room, &e.user_room_mention, &e.user_room_invite] {
            for guard in keyspace.iter() {
                let key = guard.key()?;
                if keys::second_is(&key, room.as_str()) {
                    batch.remove(keyspace, key);
                }
            }
        }
        batch.commit().map_err(|err| self.poison_on(err))?;
        Ok(seqs)
    }

    /// Applies writes taken from the shared log to rebuild a room ([`Store::forget_room`]):
    /// they are the log's already, so they are not published again, and the replica's log
    /// position does not move (the replica reads on from where it is).
    pub fn apply_rebuilt(&self, writes: &[Write]) -> Result<(), StorageError> {
        self.apply_batch_logged(writes, None, Some(&[]))
    }

    /// Syncs everything written so far to disk (the buffered policy's periodic sync).
    pub fn sync(&self) -> Result<(), StorageError> {
        let e = self.engine()?;
        let written = *self.commits.lock().map_err(|_| StorageError::Poisoned)?;
        e.db.persist(PersistMode::SyncAll).map_err(|e| self.poison_on(e))?;
        self.record_watermark(written);
        Ok(())
    }

    fn record_watermark(&self, counter: u64) {
        // The write it vouches for is durable either way; a watermark that cannot be
        // written only weakens the check at the next open.
        if let Err(e) = self.watermark.record(counter) {
            tracing::warn!("cannot record the commit watermark: {e}");
        }
    }

    /// A batch for the few synchronous writes outside the group committer (accounts,
    /// tokens, file records), after the same poison and disk checks.
    pub(crate) fn side_batch(&self, e: &Engine) -> Result<OwnedWriteBatch, StorageError> {
        if self.is_poisoned() {
            return Err(StorageError::Poisoned);
        }
        self.disk.check(self.watermark.file())?;
        Ok(e.db.batch().durability(Some(PersistMode::SyncAll)))
    }

    /// Writes every partition's in-memory table out to table files and waits (for
    /// example before copying the directory as a backup: the journal then holds little).
    pub fn flush_memtables(&self) -> Result<(), StorageError> {
        let e = self.engine()?;
        for name in e.db.list_keyspace_names() {
            e.db.keyspace(&name, KeyspaceCreateOptions::default)?.rotate_memtable_and_wait()?;
        }
        Ok(())
    }

    /// Reads every record of every partition once, so that each data block's checksum
    /// is checked: a damaged file is found now rather than when a reader reaches it.
    /// Returns how many records were read.
    pub fn verify(&self) -> Result<u64, StorageError> {
        let e = self.engine()?;
        let mut records = 0u64;
        for name in e.db.list_keyspace_names() {
            let keyspace = e.db.keyspace(&name, KeyspaceCreateOptions::default)?;
            for guard in keyspace.iter() {
                guard.into_inner()?;
                records += 1;
            }
        }
        Ok(records)
    }

    /// A write or sync failed: refuse every later write, and tell the caller so (the
    /// engine's error is logged; to a client this is `unavailable`, not `internal`).
    pub(crate) fn poison_on(&self, e: fjall::Error) -> StorageError {
        let health = health_after(&e);
        // A fatal failure is never downgraded by a transient one that follows it.
        let before = self.health.fetch_max(health as u8, Ordering::AcqRel);
        if before < health as u8 {
            match health {
                Health::Recoverable => {
                    tracing::error!(
                        "storage write failed ({e}): refusing writes until the database is reopened"
                    );
                }
                _ => tracing::error!("storage write failed ({e}): refusing all further writes until restart"),
            }
        }
        StorageError::Poisoned
    }

    // ----- users -----

    /// Creates a user, failing with `UsernameTaken` when the name exists. Durable on return.
    pub fn create_user(&self, user: &UserRecord) -> Result<(), StorageError> {
        let e = self.engine()?;
        let _guard = self.account_writes.lock().map_err(|_| StorageError::Poisoned)?;
        if self.is_poisoned() {
            return Err(StorageError::Poisoned);
        }
        if e.username_user.get(user.username.as_bytes())?.is_some()
            || e.username_skeleton.get(username_skeleton(&user.username).as_bytes())?.is_some()
        {
            return Err(StorageError::UsernameTaken);
        }
        let mut batch = self.side_batch(&e)?;
        let logged = self.replicate(&[Write::PutUser(user.clone())])?;
        batch.insert(&e.users, user.user_id.as_str(), encode_json(user)?);
        batch.insert(&e.username_user, user.username.as_str(), user.user_id.as_str());
        batch.insert(&e.username_skeleton, username_skeleton(&user.username), user.user_id.as_str());
        self.commit_logged(batch, logged)
    }

    /// A user by id.
    pub fn user(&self, id: &UserId) -> Result<Option<UserRecord>, StorageError> {
        let e = self.engine()?;
        e.users.get(id.as_str())?.map(|v| decode_json("users", &v)).transpose()
    }

    /// A user by username.
    pub fn user_by_name(&self, name: &Username) -> Result<Option<UserRecord>, StorageError> {
        let e = self.engine()?;
        let Some(id) = e.username_user.get(name.as_str())? else { return Ok(None) };
        let id = std::str::from_utf8(&id).ok().and_then(|s| UserId::parse(s).ok()).ok_or_else(|| {
            StorageError::Corrupt { partition: "username_user", detail: "bad user id".into() }
        })?;
        self.user(&id)
    }

    // ----- refresh tokens -----

    /// Stores a new refresh token record under the token's hash. Durable on return.
    pub fn put_refresh(&self, token_hash: &[u8], record: &RefreshRecord) -> Result<(), StorageError> {
        let e = self.engine()?;
        let _guard = self.account_writes.lock().map_err(|_| StorageError::Poisoned)?;
        let mut batch = self.side_batch(&e)?;
        let logged =
            self.replicate(&[Write::PutRefresh { token_hash: token_hash.to_vec(), record: record.clone() }])?;
        batch.insert(&e.refresh_token, token_hash, encode_json(record)?);
        self.commit_logged(batch, logged)
    }

    /// Rotates a refresh token: if `old_hash` is a live, unrotated, unexpired token of a
    /// login that is not over, marks it rotated, stores `new` under `new_hash`, and
    /// returns the old record. A replayed (already rotated) token ends its login.
    pub fn rotate_refresh(
        &self,
        old_hash: &[u8],
        new_hash: &[u8],
        now_ms: u64,
        new_expires_ms: u64,
    ) -> Result<Rotation, StorageError> {
        let e = self.engine()?;
        let _guard = self.account_writes.lock().map_err(|_| StorageError::Poisoned)?;
        if self.is_poisoned() {
            return Err(StorageError::Poisoned);
        }
        let Some(bytes) = e.refresh_token.get(old_hash)? else { return Ok(Rotation::Refused) };
        let mut old: RefreshRecord = decode_json("refresh_token", &bytes)?;
        let login =
            palaver_core::logins::Login { id: old.family.clone(), epoch: Some(old.epoch), issued_secs: 0 };
        let revoked_at = e.revoked_family.get(old.family.as_bytes())?.map(|_| now_ms);
        let ended_at = revoked_at.or(e.login_ended(&old.user_id, &old.family)?);
        if palaver_core::logins::is_over(&login, e.session_epoch(&old.user_id)?, ended_at) {
            return Ok(Rotation::Refused);
        }
        let mut batch = self.side_batch(&e)?;
        if old.rotated {
            tracing::warn!(user = %old.user_id, "refresh token replayed: ending its login");
            let end = Write::EndLogin {
                user: old.user_id.clone(),
                login: old.family.clone(),
                reason: palaver_core::logins::EndReason::RefreshReplayed,
                at: now_ms,
            };
            let revoke = Write::RevokeFamily { family: old.family.clone(), at: now_ms };
            let logged = self.replicate(&[revoke, end.clone()])?;
            batch.insert(&e.revoked_family, old.family.as_bytes(), now_ms.to_be_bytes());
            e.apply_login_write(&mut batch, &end, &mut std::collections::HashMap::new())?;
            self.commit_logged(batch, logged)?;
            return Ok(Rotation::Replayed(Box::new(end)));
        }
        if old.expires_ms <= now_ms {
            return Ok(Rotation::Refused);
        }
        old.rotated = true;
        let new = RefreshRecord {
            user_id: old.user_id.clone(),
            family: old.family.clone(),
            expires_ms: new_expires_ms,
            rotated: false,
            epoch: old.epoch,
        };
        let logged = self.replicate(&[
            Write::PutRefresh { token_hash: old_hash.to_vec(), record: old.clone() },
            Write::PutRefresh { token_hash: new_hash.to_vec(), record: new.clone() },
        ])?;
        batch.insert(&e.refresh_token, old_hash, encode_json(&old)?);
        batch.insert(&e.refresh_token, new_hash, encode_json(&new)?);
        self.commit_logged(batch, logged)?;
        Ok(Rotation::Rotated(old))
    }

    // ----- rooms and members -----

    /// A room by id (`None` for a deleted room: it no longer exists for anyone).
    pub fn room(&self, id: &RoomId) -> Result<Option<RoomRecord>, StorageError> {
        let e = self.engine()?;
        let record: Option<RoomRecord> =
            e.rooms.get(id.as_str())?.map(|v| decode_json("rooms", &v)).transpose()?;
        Ok(record.filter(|r| !r.deleted))
    }

    /// Public rooms after `after` (by room id), whose name contains `query`
    /// (case-insensitive), at most `limit`; and the cursor of the next page. A page scans
    /// at most `MAX_LIST_SCAN` rooms, so a rare name cannot make one request expensive:
    /// the cursor then moves past what was scanned.
    pub fn public_rooms(
        &self,
        query: Option<&str>,
        after: Option<&RoomId>,
        limit: usize,
    ) -> Result<(Vec<RoomRecord>, Option<RoomId>), StorageError> {
        self.rooms_page(query, after, limit, |room| room.kind == palaver_protocol::RoomKind::Public)
    }

    /// Every group room (public and private; not direct ones, not deleted ones) as
    /// `public_rooms` pages them: what an admin looks through.
    pub fn group_rooms(
        &self,
        query: Option<&str>,
        after: Option<&RoomId>,
        limit: usize,
    ) -> Result<(Vec<RoomRecord>, Option<RoomId>), StorageError> {
        self.rooms_page(query, after, limit, |room| room.kind != palaver_protocol::RoomKind::Direct)
    }

    fn rooms_page(
        &self,
        query: Option<&str>,
        after: Option<&RoomId>,
        limit: usize,
        listed: impl Fn(&RoomRecord) -> bool,
    ) -> Result<(Vec<RoomRecord>, Option<RoomId>), StorageError> {
        let e = self.engine()?;
        const MAX_LIST_SCAN: usize = 10_000;
        let query = query.map(str::to_lowercase);
        let start = after.map(|r| {
            let mut key = r.as_str().as_bytes().to_vec();
            key.push(0);
            key
        });
        let iter = match &start {
            Some(start) => e.rooms.range(start.clone()..),
            None => e.rooms.iter(),
        };
        let (mut found, mut scanned) = (Vec::new(), 0usize);
        for guard in iter {
            let (_, value) = guard.into_inner()?;
            let room: RoomRecord = decode_json("rooms", &value)?;
            scanned += 1;
            let id = room.room_id.clone();
            let matches = listed(&room)
                && !room.deleted
                && query.as_ref().is_none_or(|q| room.name.to_lowercase().contains(q.as_str()));
            if matches {
                if found.len() == limit {
                    let next = found.last().map(|r: &RoomRecord| r.room_id.clone());
                    return Ok((found, next));
                }
                found.push(room);
            }
            if scanned >= MAX_LIST_SCAN {
                return Ok((found, Some(id)));
            }
        }
        Ok((found, None))
    }

    /// Every member of a room with its role byte.
    pub fn members(&self, room: &RoomId) -> Result<Vec<(UserId, RoomRole)>, StorageError> {
        let e = self.engine()?;
        let prefix = keys::room_prefix(room);
        let mut members = Vec::new();
        for guard in e.room_member.prefix(&prefix) {
            let (key, value) = guard.into_inner()?;
            let user = std::str::from_utf8(&key[prefix.len()..])
                .ok()
                .and_then(|s| UserId::parse(s).ok())
                .ok_or_else(|| StorageError::Corrupt {
                    partition: "room_member",
                    detail: "bad user id".into(),
                })?;
            members.push((user, decode_role("room_member", &value)?));
        }
        Ok(members)
    }

    /// The rooms a user is a member of.
    pub fn user_rooms(&self, user: &UserId) -> Result<Vec<RoomId>, StorageError> {
        self.user_rooms_after(user, None, usize::MAX)
    }

    /// How many rooms `user` owns, counting up to `stop_at` (a count at `stop_at` means
    /// "at least").
    pub fn owned_room_count(&self, user: &UserId, stop_at: usize) -> Result<usize, StorageError> {
        let e = self.engine()?;
        let mut owned = 0;
        for guard in e.user_room.prefix(keys::pair_prefix(user.as_str())) {
            let (_, role) = guard.into_inner()?;
            if role.first() == Some(&palaver_protocol::RoomRole::Owner.to_byte()) {
                owned += 1;
                if owned >= stop_at {
                    break;
                }
            }
        }
        Ok(owned)
    }

    /// At most `most` of the rooms a user is a member of, by room id, after `after`.
    pub fn user_rooms_after(
        &self,
        user: &UserId,
        after: Option<&RoomId>,
        most: usize,
    ) -> Result<Vec<RoomId>, StorageError> {
        let e = self.engine()?;
        crate::governance::scan_pairs_after(
            &e.user_room,
            "user_room",
            user.as_str(),
            after.map(RoomId::as_str),
            most,
        )?
        .into_iter()
        .map(|(room, _)| {
            RoomId::parse(&room)
                .map_err(|_| StorageError::Corrupt { partition: "user_room", detail: "bad room id".into() })
        })
        .collect()
    }

    // ----- messages -----

    /// The highest seq a room assigned: its newest stored message's, or, when retention
    /// removed them all, the one below its history floor (0 for a room with none).
    pub fn last_seq(&self, room: &RoomId) -> Result<u64, StorageError> {
        let e = self.engine()?;
        let prefix = keys::room_prefix(room);
        match e.room_seq_message.prefix(&prefix).next_back() {
            Some(guard) => {
                let key = guard.key()?;
                keys::seq_of_message_key(&key).ok_or_else(|| StorageError::Corrupt {
                    partition: "room_seq_message",
                    detail: "short key".into(),
                })
            }
            // Retention may have removed every message: the seq counter goes on from
            // below the floor.
            None => Ok(e.history_floor(room)? - 1),
        }
    }

    /// Up to `limit` messages with seq below `before` (all when `None`), newest first.
    pub fn messages_before(
        &self,
        room: &RoomId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Message>, StorageError> {
        let e = self.engine()?;
        let start = keys::message(room, 0);
        let end = keys::message(room, before.unwrap_or(u64::MAX));
        e.room_seq_message
            .range(start..end)
            .rev()
            .take(limit)
            .map(|guard| e.read_message(&guard.value()?))
            .collect()
    }

    /// Up to `limit` messages with seq in `from..=to`, oldest first.
    pub fn messages_between(
        &self,
        room: &RoomId,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<Message>, StorageError> {
        let e = self.engine()?;
        if from > to {
            return Ok(Vec::new());
        }
        let start = keys::message(room, from);
        let end = keys::message(room, to);
        e.room_seq_message
            .range(start..=end)
            .take(limit)
            .map(|guard| e.read_message(&guard.value()?))
            .collect()
    }

    /// A digest of up to `limit` of `room`'s stored messages from seq `from` on: how many,
    /// the seqs they span, and a SHA-256 over each one's seq and stored bytes (edits and
    /// deletions included, as they rewrite the message). Two replicas that applied the
    /// same log give the same digest for the same range.
    pub fn room_digest(&self, room: &RoomId, from: u64, limit: usize) -> Result<RoomDigest, StorageError> {
        use sha2::Digest as _;
        let e = self.engine()?;
        let mut hash = sha2::Sha256::new();
        let mut digest = RoomDigest { messages: 0, first_seq: None, last_seq: None, sha256: String::new() };
        let start = keys::message(room, from.max(1));
        let end = keys::message(room, u64::MAX);
        for guard in e.room_seq_message.range(start..=end).take(limit) {
            let (key, value) = guard.into_inner()?;
            let seq = keys::seq_of_message_key(&key).unwrap_or(0);
            hash.update(seq.to_be_bytes());
            hash.update((value.len() as u64).to_be_bytes());
            hash.update(&value);
            digest.messages += 1;
            digest.first_seq.get_or_insert(seq);
            digest.last_seq = Some(seq);
        }
        digest.sha256 = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok(digest)
    }

    /// One message by seq.
    pub fn message(&self, room: &RoomId, seq: u64) -> Result<Option<Message>, StorageError> {
        let e = self.engine()?;
        e.room_seq_message.get(keys::message(room, seq))?.map(|v| e.read_message(&v)).transpose()
    }

    /// The texts a message had before its edits, oldest first, with when each was replaced.
    pub fn edit_history(&self, room: &RoomId, seq: u64) -> Result<Vec<(u64, String)>, StorageError> {
        let e = self.engine()?;
        let prefix = keys::message(room, seq);
        let mut edits = Vec::new();
        for guard in e.room_seq_edit.prefix(&prefix) {
            let (key, value) = guard.into_inner()?;
            let at = keys::seq_of_message_key(&key).unwrap_or(0);
            edits.push((at, String::from_utf8_lossy(&value).into_owned()));
        }
        Ok(edits)
    }

    /// Up to `limit` earlier texts of message `seq` replaced after `after` (ms), oldest
    /// first, with when each was replaced.
    pub fn edits_after(
        &self,
        room: &RoomId,
        seq: u64,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, StorageError> {
        let e = self.engine()?;
        let mut start = keys::message(room, seq);
        let mut end = start.clone();
        start.extend_from_slice(&after.saturating_add(1).to_be_bytes());
        end.extend_from_slice(&u64::MAX.to_be_bytes());
        let mut edits = Vec::new();
        for guard in e.room_seq_edit.range(start..=end).take(limit) {
            let (key, value) = guard.into_inner()?;
            let at = keys::seq_of_message_key(&key).unwrap_or(0);
            edits.push((at, String::from_utf8_lossy(&value).into_owned()));
        }
        Ok(edits)
    }

    /// A room's pinned messages: `(seq, by, at)`, by seq.
    pub fn pins(&self, room: &RoomId) -> Result<Vec<(u64, UserId, u64)>, StorageError> {
        let e = self.engine()?;
        let mut pins = Vec::new();
        for guard in e.room_seq_pin.prefix(keys::room_prefix(room)) {
            let (key, value) = guard.into_inner()?;
            let seq = keys::seq_of_message_key(&key).unwrap_or(0);
            let record: palaver_core::records::ActionRecord = decode_json("room_seq_pin", &value)?;
            pins.push((seq, record.by, record.at));
        }
        Ok(pins)
    }

    /// How many messages after `after_seq` in `room` mention `user`.
    pub fn mention_count(&self, user: &UserId, room: &RoomId, after_seq: u64) -> Result<u64, StorageError> {
        let e = self.engine()?;
        let start = keys::user_room_seq(user, room, after_seq.saturating_add(1));
        let end = keys::user_room_seq(user, room, u64::MAX);
        let mut count = 0;
        for guard in e.user_room_mention.range(start..=end) {
            guard.key()?;
            count += 1;
        }
        Ok(count)
    }

    /// Whether `user` reacted to message `seq` with `emoji`.
    pub fn has_reaction(
        &self,
        room: &RoomId,
        seq: u64,
        emoji: &str,
        user: &UserId,
    ) -> Result<bool, StorageError> {
        let e = self.engine()?;
        Ok(e.room_seq_reaction.get(keys::reaction(room, seq, emoji, user))?.is_some())
    }

    /// How many users reacted to message `seq` with `emoji`.
    pub fn reaction_count(&self, room: &RoomId, seq: u64, emoji: &str) -> Result<u32, StorageError> {
        let e = self.engine()?;
        let mut count = 0u32;
        for guard in e.room_seq_reaction.prefix(keys::reaction_prefix(room, seq, Some(emoji))) {
            guard.key()?;
            count = count.saturating_add(1);
        }
        Ok(count)
    }

    /// The reactions on message `seq`, aggregated per emoji (users listed up to a limit).
    pub fn reactions(&self, room: &RoomId, seq: u64) -> Result<Vec<ReactionSummary>, StorageError> {
        let e = self.engine()?;
        let prefix = keys::reaction_prefix(room, seq, None);
        let mut summaries: Vec<ReactionSummary> = Vec::new();
        for guard in e.room_seq_reaction.prefix(&prefix) {
            let key = guard.key()?;
            let rest = &key[prefix.len()..];
            let corrupt =
                || StorageError::Corrupt { partition: "room_seq_reaction", detail: "bad key".into() };
            let split = rest.iter().position(|b| *b == 0).ok_or_else(corrupt)?;
            let emoji = std::str::from_utf8(&rest[..split]).map_err(|_| corrupt())?;
            let user = std::str::from_utf8(&rest[split + 1..])
                .ok()
                .and_then(|s| UserId::parse(s).ok())
                .ok_or_else(corrupt)?;
            match summaries.last_mut() {
                Some(last) if last.emoji == emoji => {
                    last.count = last.count.saturating_add(1);
                    if last.users.len() < palaver_protocol::limits::MAX_REACTION_USERS_LISTED {
                        last.users.push(user);
                    }
                }
                _ => summaries.push(ReactionSummary { emoji: emoji.to_owned(), count: 1, users: vec![user] }),
            }
        }
        Ok(summaries)
    }

    /// Every member's `(delivered, read)` watermarks in a room, a sender's raised by
    /// their messages among the room's newest (see [`SENDER_RECEIPT_TAIL`]).
    pub fn receipts(&self, room: &RoomId) -> Result<Vec<(UserId, u64, u64)>, StorageError> {
        Ok(self.receipts_and_unstored(room)?.0)
    }

    /// Every member's watermarks as [`Store::receipts`] gives them, and the members whose
    /// watermarks are derived from their messages, ahead of what is written (the room's
    /// owner writes those before the messages leave the tail).
    pub fn receipts_and_unstored(&self, room: &RoomId) -> Result<DerivedReceipts, StorageError> {
        let stored = self.stored_receipts(room)?;
        let members: std::collections::HashSet<UserId> =
            self.members(room)?.into_iter().map(|(user, _)| user).collect();
        let mut tail = Vec::with_capacity(SENDER_RECEIPT_TAIL);
        for sent in self.newest_senders(room, 0)?.take(SENDER_RECEIPT_TAIL) {
            tail.push(sent?);
        }
        Ok(sender_receipts(stored, tail.iter().map(|(seq, sender, kind)| (*seq, sender, *kind)), |user| {
            members.contains(user)
        }))
    }

    /// The `(seq, sender, kind)` of a room's messages after `after`, newest first, read
    /// as the caller goes.
    fn newest_senders(
        &self,
        room: &RoomId,
        after: u64,
    ) -> Result<impl Iterator<Item = Result<(u64, UserId, MessageKind), StorageError>>, StorageError> {
        let e = self.engine()?;
        let start = keys::message(room, after.saturating_add(1));
        let end = keys::message(room, u64::MAX);
        Ok(e.room_seq_message.range(start..=end).rev().map(|guard| {
            let (key, value) = guard.into_inner()?;
            let seq = keys::seq_of_message_key(&key).unwrap_or(0);
            let (sender, kind) = message_record::sender_and_kind(&value)?;
            Ok((seq, sender, kind))
        }))
    }

    /// The watermarks written for a room's members.
    fn stored_receipts(&self, room: &RoomId) -> Result<Vec<(UserId, u64, u64)>, StorageError> {
        let e = self.engine()?;
        let prefix = keys::room_prefix(room);
        let mut receipts = Vec::new();
        for guard in e.room_user_receipt.prefix(&prefix) {
            let (key, value) = guard.into_inner()?;
            let user = std::str::from_utf8(&key[prefix.len()..]).ok().and_then(|s| UserId::parse(s).ok());
            match (user, decode_pair(&value)) {
                (Some(user), Some((delivered, read))) => receipts.push((user, delivered, read)),
                _ => {
                    return Err(StorageError::Corrupt {
                        partition: "room_user_receipt",
                        detail: "bad key or value".into(),
                    });
                }
            }
        }
        Ok(receipts)
    }

    /// One member's `(delivered, read)` watermarks in a room (`(0, 0)` when none), raised
    /// by their messages among the room's newest (see [`SENDER_RECEIPT_TAIL`]).
    pub fn receipt(&self, room: &RoomId, user: &UserId) -> Result<(u64, u64), StorageError> {
        let e = self.engine()?;
        let (delivered, read) = match e.room_user_receipt.get(keys::room_member(room, user))? {
            None => (0, 0),
            Some(value) => decode_pair(&value).ok_or_else(|| StorageError::Corrupt {
                partition: "room_user_receipt",
                detail: "value is not 16 bytes".into(),
            })?,
        };
        // Only messages after what they have read can raise it; their newest message
        // among the tail is the first of theirs met.
        for sent in self.newest_senders(room, read)?.take(SENDER_RECEIPT_TAIL) {
            let (seq, sender, kind) = sent?;
            if sender == *user && raises_sender_receipt(&sender, kind) {
                // A leaver's watermark was written when they left; a deleted account has none.
                if e.room_member.get(keys::room_member(room, user))?.is_none() {
                    break;
                }
                return Ok((delivered.max(seq), seq));
            }
        }
        Ok((delivered, read))
    }

    /// A filter over every cid stored for `room` (see [`CidFilter`]), built by scanning its
    /// keys: slow for a long history, so never on a shard's event loop. `None` when the
    /// room holds more than [`MAX_FILTERED_CIDS`] cids: look each one up instead.
    ///
    /// A cid stored after the scan passed its place may be missing: whoever builds the
    /// filter while the room takes messages adds those cids itself.
    pub fn cid_filter(&self, room: &RoomId) -> Result<Option<CidFilter>, StorageError> {
        let e = self.engine()?;
        let prefix = keys::room_prefix(room);
        let mut hashes = Vec::new();
        for guard in e.room_cid_seq.prefix(&prefix) {
            let key = guard.key()?;
            if hashes.len() == MAX_FILTERED_CIDS {
                return Ok(None);
            }
            hashes.push(CidHash::of_bytes(&key[prefix.len()..]));
        }
        Ok(CidFilter::from_hashes(&hashes))
    }

    /// The `(seq, ts)` a sender's cid was stored under in a room, if it was.
    pub fn cid_seq(
        &self,
        room: &RoomId,
        sender: &UserId,
        cid: &ClientMsgId,
    ) -> Result<Option<(u64, u64)>, StorageError> {
        let e = self.engine()?;
        let Some(value) = e.room_cid_seq.get(keys::room_sender_cid(room, sender, cid))? else {
            return Ok(None);
        };
        decode_pair(&value).map(Some).ok_or_else(|| StorageError::Corrupt {
            partition: "room_cid_seq",
            detail: "value is not 16 bytes".into(),
        })
    }
}

/// The confusable skeleton of a username (UTS #39, then lower case, as usernames are
/// compared): `g00gle`, `goog1e` and `google` have one skeleton, and so do `rn` and `m`.
pub fn username_skeleton(username: &str) -> String {
    unicode_security::confusable_detection::skeleton(username).collect::<String>().to_lowercase()
}

/// A stored role: one byte that must name a role (anything else is damage).
pub(crate) fn decode_role(partition: &'static str, value: &[u8]) -> Result<RoomRole, StorageError> {
    match value {
        [byte] => RoomRole::from_byte(*byte)
            .ok_or_else(|| StorageError::Corrupt { partition, detail: format!("unknown role byte {byte}") }),
        _ => Err(StorageError::Corrupt { partition, detail: "a role is one byte".into() }),
    }
}

/// What a failed write leaves the store as. The engine's own poison flag comes from its
/// background worker (a flush or compaction writing table files, which the journal can
/// always rebuild); running out of descriptors or memory while opening a file passes.
/// Anything else failed on the journal itself and is final.
fn health_after(e: &fjall::Error) -> Health {
    use rustix::io::Errno;
    if matches!(e, fjall::Error::Poisoned) {
        return Health::Recoverable;
    }
    let transient = [Errno::MFILE, Errno::NFILE, Errno::NOMEM].map(|errno| errno.raw_os_error());
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && io.raw_os_error().is_some_and(|code| transient.contains(&code))
        {
            return Health::Recoverable;
        }
        source = error.source();
    }
    Health::Fatal
}

/// Every keyspace of the database (opened above, so their options are already set).
fn keyspaces_of(db: &Database) -> Result<Vec<Keyspace>, StorageError> {
    let mut keyspaces = Vec::new();
    for name in db.list_keyspace_names() {
        keyspaces.push(db.keyspace(&name, KeyspaceCreateOptions::default)?);
    }
    Ok(keyspaces)
}

pub(crate) fn encode_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(value).map_err(|e| StorageError::Corrupt { partition: "json", detail: e.to_string() })
}

pub(crate) fn decode_json<T: serde::de::DeserializeOwned>(
    partition: &'static str,
    bytes: &[u8],
) -> Result<T, StorageError> {
    serde_json::from_slice(bytes).map_err(|e| StorageError::Corrupt { partition, detail: e.to_string() })
}

fn decode_pair(value: &[u8]) -> Option<(u64, u64)> {
    let bytes: [u8; 16] = value.try_into().ok()?;
    let (a, b) = bytes.split_at(8);
    Some((u64::from_be_bytes(a.try_into().ok()?), u64::from_be_bytes(b.try_into().ok()?)))
}

/// Each keyspace's memtable size (fjall's default is 64 MiB). fjall frees a flushed
/// memtable while it holds the keyspace's version lock, which every write and read
/// waits for: dropping a 64 MiB skiplist took ~0.3 s, and at 10k durable msgs/s each
/// flush stalled sends for as long (p99.9 377 ms; with 8 MiB, 74 ms and no more CPU).
pub(crate) const MEMTABLE_BYTES: u64 = 8 << 20;

/// Opens fjall's database from a short-lived thread running at nice 10, so that fjall's
/// flush and compaction workers, which the open starts and which inherit it, are
/// background work: a flush or a compaction is a burst of CPU, and on a core shared
/// with a shard it delayed deliveries (at 10k durable msgs/s on one core, nice 10 took
/// p99 from ~50 to ~35 ms and p99.9 from ~175 to ~95 ms). With spare CPU the workers get
/// all of it; when
/// they cannot keep up, fjall's own write stall slows the group commit (backpressure,
/// not unbounded memory). Nice values are per thread on Linux and an unprivileged
/// thread cannot raise its priority back, hence the helper thread.
fn open_database(dir: &Path, max_cached_files: Option<usize>) -> Result<Database, StorageError> {
    let open = || {
        lower_this_threads_priority();
        // Journal recovery reads lengths from the file; fjall checks some of them with
        // debug assertions, which panic on a damaged journal in debug builds. A damaged
        // journal is an error to report, not a crash.
        std::panic::catch_unwind(|| Database::builder(dir).max_cached_files(max_cached_files).open())
            .map_err(|panic| {
                let why = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("a consistency check failed");
                StorageError::Corrupt { partition: "journal", detail: format!("recovery failed: {why}") }
            })?
            .map_err(StorageError::from)
    };
    std::thread::scope(|scope| {
        let opener = std::thread::Builder::new()
            .name("store-open".into())
            .spawn_scoped(scope, open)
            .map_err(|e| StorageError::Engine(fjall::Error::from(e)))?;
        opener.join().unwrap_or_else(|_| {
            Err(StorageError::Corrupt { partition: "journal", detail: "recovery failed".into() })
        })
    })
}

/// Nice 10 for the calling thread, for background work that must never take the CPU
/// from a shard (storage's workers, the search indexer). Linux nice values are per
/// thread and threads it creates inherit them. Best effort: without the right to, the
/// thread stays as it is.
pub fn lower_this_threads_priority() {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), 10) {
        tracing::debug!("a background thread keeps its priority: {e}");
    }
}
