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
}
