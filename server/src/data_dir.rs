//! The data directory's layout and its version.
//!
//! Layout (format 1): `db/` (the message store, which carries its own format version),
//! `search/` (derived: rebuilt from `db/` when missing or stale), `files/` (shared files
//! with the default `--files-url`), `tls/` (the development certificate), `jwt-secret`
//! (the development secret), `control.sock` (while the server runs) and `FORMAT`, which
//! holds this layout's version.
//!
//! A directory without `FORMAT` but with `db/` was written before the file existed, in
//! the same layout: it is format 0, and upgrading it to 1 writes the file. Every later
//! layout change adds a step to [`UPGRADES`], run in order at start; a directory of a
//! newer format than this build's is refused rather than misread.

use std::path::Path;

/// The layout version this build writes.
pub const DATA_FORMAT: u32 = 1;

/// `palaver compact`'s new store while it is built, beside `db`.
pub const COMPACTED_STORE: &str = "db.compacted";
/// The store `palaver compact` replaced, until it is deleted.
pub const REPLACED_STORE: &str = "db.replaced";
/// The file that holds it.
pub const FORMAT_FILE: &str = "FORMAT";

/// Each step upgrades a directory from the version it is listed with to the next.
type Upgrade = fn(&Path) -> std::io::Result<()>;
const UPGRADES: &[(u32, Upgrade)] = &[(0, |_| Ok(()))];

/// The data directory cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataDirError {
    /// It could not be read or written.
    #[error("data directory {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// `palaver compact` was cut short: running it again finishes it.
    #[error(
        "data directory {path}: an interrupted `palaver compact` left {leftover}; run `palaver compact` again to finish it"
    )]
    CompactInterrupted {
        /// The data directory.
        path: String,
        /// What it left.
        leftover: &'static str,
    },
    /// `FORMAT` does not hold a version.
    #[error("{path} does not hold a format version: {found:?}")]
    Unreadable {
        /// The file.
        path: String,
        /// What it holds.
        found: String,
    },
    /// A newer build wrote it.
    #[error(
        "data directory {path} has format {found}; this build reads formats up to {DATA_FORMAT}: run a newer palaver"
    )]
    TooNew {
        /// The directory.
        path: String,
        /// Its format.
        found: u32,
    },
}

/// Creates the directory if needed, brings an older layout up to [`DATA_FORMAT`] and
/// returns the format it found (`None` for a new directory).
pub fn prepare(dir: &Path) -> Result<Option<u32>, DataDirError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| DataDirError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    // Its old store (which may still hold removed records), or its only copy of the store.
    for leftover in [REPLACED_STORE, COMPACTED_STORE] {
        if dir.join(leftover).exists() {
            return Err(DataDirError::CompactInterrupted { path: dir.display().to_string(), leftover });
        }
    }
    let found = read_format(dir)?;
    let mut version = match found {
        Some(version) => version,
        // Nothing written yet: a new directory starts at the current format.
        None if !dir.join("db").exists() => {
            write_format(dir, DATA_FORMAT)?;
            return Ok(None);
        }
        None => 0,
    };
    if version > DATA_FORMAT {
        return Err(DataDirError::TooNew { path: dir.display().to_string(), found: version });
    }
    while version < DATA_FORMAT {
        let step = UPGRADES.iter().find(|(from, _)| *from == version).map(|(_, step)| step);
        let Some(step) = step else { break };
        step(dir).map_err(io(dir))?;
        version += 1;
        write_format(dir, version)?;
        tracing::info!("upgraded data directory {} to format {version}", dir.display());
    }
    Ok(Some(found.unwrap_or(0)))
}

/// The format a directory holds (`None` when it has no `FORMAT` file).
pub fn read_format(dir: &Path) -> Result<Option<u32>, DataDirError> {
    let path = dir.join(FORMAT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map(Some).map_err(|_| DataDirError::Unreadable {
            path: path.display().to_string(),
            found: text.chars().take(40).collect(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(DataDirError::Io { path: path.display().to_string(), source }),
    }
}

/// Writes `FORMAT` (through a temporary file, synced, so a crash leaves the old or the
/// new version, never a torn one).
pub fn write_format(dir: &Path, version: u32) -> Result<(), DataDirError> {
    use std::io::Write as _;
    let path = dir.join(FORMAT_FILE);
    let partial = dir.join(format!("{FORMAT_FILE}.partial"));
    let io = |source| DataDirError::Io { path: path.display().to_string(), source };
    let mut file = std::fs::File::create(&partial).map_err(io)?;
    file.write_all(format!("{version}\n").as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&partial, &path).map_err(io)?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn an_interrupted_compaction_keeps_the_server_from_starting() {
        for leftover in [REPLACED_STORE, COMPACTED_STORE] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join(leftover)).unwrap();
            let refused = prepare(dir.path()).unwrap_err();
            assert!(refused.to_string().contains("run `palaver compact` again"), "{refused}");
        }
    }

    #[test]
    fn a_new_directory_gets_the_current_format() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(prepare(&dir.path().join("data")).unwrap(), None);
        assert_eq!(read_format(&dir.path().join("data")).unwrap(), Some(DATA_FORMAT));
    }

    #[test]
    fn a_directory_from_before_the_format_file_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("db")).unwrap();
        assert_eq!(prepare(dir.path()).unwrap(), Some(0));
        assert_eq!(read_format(dir.path()).unwrap(), Some(DATA_FORMAT));
        assert_eq!(prepare(dir.path()).unwrap(), Some(DATA_FORMAT), "idempotent");
    }

    #[test]
    fn a_newer_or_garbled_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write_format(dir.path(), DATA_FORMAT + 1).unwrap();
        assert!(matches!(prepare(dir.path()), Err(DataDirError::TooNew { .. })));
        std::fs::write(dir.path().join(FORMAT_FILE), "one\n").unwrap();
        assert!(matches!(prepare(dir.path()), Err(DataDirError::Unreadable { .. })));
    }
}
