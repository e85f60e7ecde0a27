//! Guards around the engine that make storage faults loud instead of silent.
//!
//! - [`CommitWatermark`]: fjall, like RocksDB, treats a damaged journal tail as a torn
//!   write and drops it without error. That is right after a crash (the tail was never
//!   acknowledged), but a journal truncated or damaged further back would silently lose
//!   acknowledged writes. Every group commit therefore stores an increasing counter in
//!   its own batch, and after the batch is durable the counter is written to a small
//!   side file. At open, a recovered counter below the side file's means the journal lost
//!   writes that were acknowledged: the store refuses to open instead of serving the
//!   shortened history as if it were whole.
//! - [`DiskGuard`]: a write is refused (`DiskFull`, nothing written) while the data
//!   directory's file system has less than a reserve free, so a full disk never tears a
//!   journal write or poisons the store, and writes resume by themselves once space
//!   returns.

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::StorageError;

/// The side file, inside the database directory.
const WATERMARK_FILE: &str = "palaver-commit-watermark";
/// The watermark's bytes: the counter and its complement (a torn or foreign file is
/// recognised, never misread as a counter).
const WATERMARK_LEN: usize = 16;

/// The highest group-commit counter known to be durable, kept beside the journal.
#[derive(Debug)]
pub(crate) struct CommitWatermark {
    file: File,
    path: PathBuf,
}

impl CommitWatermark {
    /// Opens (or creates) the side file and returns it with the counter it holds.
    pub(crate) fn open(db_dir: &Path) -> Result<(Self, u64), StorageError> {
        let path = db_dir.join(WATERMARK_FILE);
        let io = |e: std::io::Error| StorageError::Io { path: path.clone(), source: e };
        let file =
            File::options().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        let mut bytes = [0u8; WATERMARK_LEN];
        let len = file.metadata().map_err(io)?.len();
        let counter = if len == 0 {
            0
        } else {
            file.read_exact_at(&mut bytes, 0).map_err(io)?;
            decode(&bytes).ok_or_else(|| StorageError::Corrupt {
                partition: "commit watermark",
                detail: format!("{} does not hold a watermark", path.display()),
            })?
        };
        Ok((Self { file, path }, counter))
    }

    /// Records that every group up to `counter` is durable. Not synced on purpose: the
    /// page cache survives a process crash, and after a power loss an older value only
    /// makes the check weaker, never wrong (the journal it vouches for was synced first).
    pub(crate) fn record(&self, counter: u64) -> Result<(), StorageError> {
        self.file
            .write_all_at(&encode(counter), 0)
            .map_err(|source| StorageError::Io { path: self.path.clone(), source })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }
}

fn encode(counter: u64) -> [u8; WATERMARK_LEN] {
    let mut bytes = [0u8; WATERMARK_LEN];
    bytes[..8].copy_from_slice(&counter.to_be_bytes());
    bytes[8..].copy_from_slice(&(!counter).to_be_bytes());
    bytes
}

fn decode(bytes: &[u8; WATERMARK_LEN]) -> Option<u64> {
    let counter = u64::from_be_bytes(bytes[..8].try_into().ok()?);
    let check = u64::from_be_bytes(bytes[8..].try_into().ok()?);
    (check == !counter).then_some(counter)
}

/// Once the disk was found full, writes stay refused at least this long: a shard learns
/// of a refused write a moment after it submitted the next ones, and those must be
/// refused too, or a room would store seq N+1 without seq N.
const FULL_HOLD: Duration = Duration::from_secs(1);
/// Free space is measured at most this often while it is plentiful.
const CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Refuses writes while free space is below a reserve.
#[derive(Debug)]
pub(crate) struct DiskGuard {
    reserve: u64,
    state: Mutex<GuardState>,
}

#[derive(Debug)]
struct GuardState {
    checked_at: Option<Instant>,
    free: u64,
    full_since: Option<Instant>,
}

impl DiskGuard {
    pub(crate) fn new(reserve: u64) -> Self {
        Self { reserve, state: Mutex::new(GuardState { checked_at: None, free: u64::MAX, full_since: None }) }
    }

    /// `Ok` when a write may go ahead; `DiskFull` when it must be refused. `file` is any
    /// open file on the data directory's file system.
    pub(crate) fn check(&self, file: &File) -> Result<(), StorageError> {
        if self.reserve == 0 {
            return Ok(());
        }
        let mut state = self.state.lock().map_err(|_| StorageError::Poisoned)?;
        let now = Instant::now();
        // Measure each time while short of space, otherwise every `CHECK_INTERVAL`.
        let stale = state.full_since.is_some()
            || state.checked_at.is_none_or(|at| now.duration_since(at) >= CHECK_INTERVAL);
        if stale {
            state.free = free_bytes(file).unwrap_or(u64::MAX);
            state.checked_at = Some(now);
        }
        match state.full_since {
            Some(since) if now.duration_since(since) < FULL_HOLD || state.free < self.reserve => {
                if state.free < self.reserve {
                    state.full_since = Some(now);
                }
                Err(StorageError::DiskFull { free: state.free, reserve: self.reserve })
            }
            Some(_) => {
                tracing::warn!(free = state.free, "disk space is back: accepting writes again");
                state.full_since = None;
                Ok(())
            }
            None if state.free < self.reserve => {
                tracing::error!(
                    free = state.free,
                    reserve = self.reserve,
                    "disk nearly full: refusing writes"
                );
                state.full_since = Some(now);
                Err(StorageError::DiskFull { free: state.free, reserve: self.reserve })
            }
            None => Ok(()),
        }
    }
}

fn free_bytes(file: &File) -> std::io::Result<u64> {
    let stat = rustix::fs::fstatvfs(file)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watermark_round_trips_and_garbage_is_recognised() {
        assert_eq!(decode(&encode(0)), Some(0));
        assert_eq!(decode(&encode(u64::MAX - 3)), Some(u64::MAX - 3));
        let mut torn = encode(77);
        torn[15] ^= 1;
        assert_eq!(decode(&torn), None);
        assert_eq!(decode(&[0u8; WATERMARK_LEN]), None);
    }

    #[test]
    fn a_reserve_larger_than_the_disk_refuses_and_zero_never_does() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("f")).unwrap();
        assert!(DiskGuard::new(0).check(&file).is_ok());
        let guard = DiskGuard::new(u64::MAX);
        assert!(matches!(guard.check(&file), Err(StorageError::DiskFull { .. })));
        assert!(matches!(guard.check(&file), Err(StorageError::DiskFull { .. })));
    }
}
