//! The storage error type.

/// What went wrong in storage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The underlying fjall database failed (I/O, corruption found by a checksum).
    #[error("storage engine: {0}")]
    Engine(#[from] fjall::Error),
    /// A previous write or sync failed; the store refuses writes until restarted rather
    /// than pretend later writes are durable.
    #[error("storage refuses writes after an earlier failure")]
    Poisoned,
    /// The database is being reopened after a transient failure; retry shortly.
    #[error("storage is reopening after a transient failure")]
    Reopening,
    /// The data directory was written by an incompatible version.
    #[error("data format version {found} is not supported (this build reads version {supported})")]
    UnsupportedFormat {
        /// The version found on disk.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// A stored record could not be decoded.
    #[error("corrupt record in {partition}: {detail}")]
    Corrupt {
        /// Which partition.
        partition: &'static str,
        /// What failed.
        detail: String,
    },
    /// The username is already registered.
    #[error("username is taken")]
    UsernameTaken,
    /// The group committer has stopped (shutdown).
    #[error("storage is shutting down")]
    Closed,
    /// The file system has less free space than the configured reserve; nothing was
    /// written, and writes resume once space returns.
    #[error("disk nearly full: {free} bytes free, {reserve} reserved")]
    DiskFull {
        /// Bytes free when last measured.
        free: u64,
        /// The configured reserve.
        reserve: u64,
    },
    /// The journal ends before a group commit that was acknowledged as durable: it was
    /// truncated or damaged after the fact. The store refuses to open rather than serve
    /// a history with acknowledged messages missing.
    #[error(
        "the journal recovered group commit {recovered}, but commit {acknowledged} was acknowledged as durable \
         ({watermark}): acknowledged writes are missing (truncated or damaged journal). Restore the data \
         directory from a backup; to start anyway with what remains, delete {watermark}"
    )]
    LostAcknowledgedWrites {
        /// The newest group commit the journal still holds.
        recovered: u64,
        /// The newest group commit acknowledged before.
        acknowledged: u64,
        /// The watermark file.
        watermark: std::path::PathBuf,
    },
    /// The cluster's shared log did not acknowledge a write (broker unreachable, timed
    /// out): nothing was written here, but the log may hold it.
    #[error("cluster log: {0}")]
    Replication(String),
    /// The cluster's shared log refused a room's write, or it was never sent: another
    /// node owns the room now (it wrote after this node's last record), or this node has
    /// not caught up with the room. Nothing was written anywhere.
    #[error("cluster log refused the write: {0}")]
    NotLogged(String),
    /// A message append did not follow its room's log (an earlier write of the room was
    /// refused): nothing of its submission was written.
    #[error("{0}")]
    OutOfOrder(palaver_core::records::OutOfOrder),
    /// A file beside the database could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

impl StorageError {
    /// Whether a client should be told `unavailable` (try again later) rather than
    /// `internal`: the store is refusing writes, not broken for this request.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Poisoned
                | Self::Reopening
                | Self::Closed
                | Self::DiskFull { .. }
                | Self::Replication(_)
                | Self::NotLogged(_)
                | Self::OutOfOrder(_)
        )
    }
}

/// What a storage failure means to a room or people owner: try again later, or a
/// failure to log and report as `internal`.
impl From<&StorageError> for palaver_core::owner::LookupError {
    fn from(e: &StorageError) -> Self {
        match e {
            StorageError::Replication(_) => Self::Unknown,
            e if e.is_unavailable() => Self::Unavailable,
            e => Self::Failed(e.to_string()),
        }
    }
}

impl From<StorageError> for palaver_core::owner::LookupError {
    fn from(e: StorageError) -> Self {
        Self::from(&e)
    }
}
