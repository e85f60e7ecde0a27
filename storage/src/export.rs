//! A logical export of a whole store, taken from one consistent snapshot while the store
//! serves, and its import into a new directory.
//!
//! fjall has no checkpoint API, and copying its files under a running server is not
//! consistent, so a backup is a stream of every keyspace's key-value pairs as one
//! snapshot sees them (every keyspace at the same sequence number):
//!
//! ```text
//! "PALAVER-EXPORT\n"  export version (u32 BE)  store format version (u32 BE)
//! per keyspace:  0x01  name length (u16 BE)  name
//!   per pair:    0x02  key length (u32 BE)  key  value length (u32 BE)  value
//! end:           0x00  pairs (u64 BE)  SHA-256 of every byte before it
//! ```
//!
//! Import refuses a stream that is truncated, has a wrong checksum, or comes from
//! another store format, and writes only into an empty directory.

use std::io::{Read, Write};
use std::path::Path;

use fjall::{KeyspaceCreateOptions, PersistMode, Readable as _};
use sha2::{Digest as _, Sha256};

use crate::store::{FORMAT_VERSION, MEMTABLE_BYTES};
use crate::{Durability, StorageError, Store};

const MAGIC: &[u8] = b"PALAVER-EXPORT\n";
/// The version of this stream's layout.
const EXPORT_VERSION: u32 = 1;
const TAG_END: u8 = 0;
const TAG_KEYSPACE: u8 = 1;
const TAG_PAIR: u8 = 2;
/// Pairs per write batch on import.
const IMPORT_BATCH: usize = 4_096;

/// What an export or an import carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// Keyspaces (partitions).
    pub keyspaces: u64,
    /// Key-value pairs.
    pub pairs: u64,
    /// Bytes of the stream.
    pub bytes: u64,
}

/// Writes through to `inner` while hashing and counting.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Hashing<W> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.hash.update(bytes);
        self.bytes += bytes.len() as u64;
        self.inner.write_all(bytes).map_err(|source| StorageError::Io { path: "export".into(), source })
    }

    /// A length (u32 BE) and the bytes.
    fn put_sized(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        let len = u32::try_from(bytes.len()).map_err(|_| bad("a record over 4 GiB"))?;
        self.put(&len.to_be_bytes())?;
        self.put(bytes)
    }
}

impl Store {
    /// Writes every keyspace's pairs, as one snapshot sees them, to `out`. Writers go on
    /// meanwhile; what they write after the snapshot is not in the export.
    pub fn export(&self, out: impl Write) -> Result<ExportSummary, StorageError> {
        let engine = self.engine()?;
        let snapshot = engine.db.snapshot();
        let mut out = Hashing { inner: out, hash: Sha256::new(), bytes: 0 };
        out.put(MAGIC)?;
        out.put(&EXPORT_VERSION.to_be_bytes())?;
        out.put(&FORMAT_VERSION.to_be_bytes())?;
        let mut summary = ExportSummary::default();
        let mut names = engine.db.list_keyspace_names();
        names.sort();
        for name in names {
            let keyspace = engine.db.keyspace(&name, KeyspaceCreateOptions::default)?;
            let name_len = u16::try_from(name.len()).map_err(|_| StorageError::Corrupt {
                partition: "export",
                detail: format!("keyspace name {name}"),
            })?;
            out.put(&[TAG_KEYSPACE])?;
            out.put(&name_len.to_be_bytes())?;
            out.put(name.as_bytes())?;
            summary.keyspaces += 1;
            for guard in snapshot.iter(&keyspace) {
                let (key, value) = guard.into_inner()?;
                out.put(&[TAG_PAIR])?;
                out.put_sized(&key)?;
                out.put_sized(&value)?;
                summary.pairs += 1;
            }
        }
        out.put(&[TAG_END])?;
        out.put(&summary.pairs.to_be_bytes())?;
        let digest = out.hash.clone().finalize();
        out.inner
            .write_all(&digest)
            .and_then(|()| out.inner.flush())
            .map_err(|source| StorageError::Io { path: "export".into(), source })?;
        summary.bytes = out.bytes + digest.len() as u64;
        Ok(summary)
    }

    /// Creates a store in the empty (or missing) directory `dir` from an export, syncs
    /// it, and returns what it held. On any error the directory is left half-written:
    /// delete it.
    pub fn import(dir: &Path, input: impl Read) -> Result<ExportSummary, StorageError> {
        let io = |source| StorageError::Io { path: dir.to_owned(), source };
        if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
            return Err(io(std::io::Error::new(std::io::ErrorKind::AlreadyExists, "not an empty directory")));
        }
        let store = Store::open(dir, Durability::Fsync)?;
        let engine = store.engine()?;
        let mut input = Reading { inner: input, hash: Sha256::new(), bytes: 0 };
        if input.take(MAGIC.len())? != MAGIC {
            return Err(bad("not a Palaver export"));
        }
        let version = u32::from_be_bytes(input.array()?);
        if version != EXPORT_VERSION {
            return Err(bad(&format!("export version {version}; this build reads {EXPORT_VERSION}")));
        }
        let format = u32::from_be_bytes(input.array()?);
        // Format 2 differs only in writing every watermark, which format 3 reads the same.
        if format != FORMAT_VERSION && format != 2 {
            return Err(StorageError::UnsupportedFormat { found: format, supported: FORMAT_VERSION });
        }
        let mut summary = ExportSummary::default();
        let mut keyspace = None;
        let mut batch = engine.db.batch();
        let mut in_batch = 0;
        loop {
            match input.array::<1>()?[0] {
                TAG_KEYSPACE => {
                    let len = u16::from_be_bytes(input.array()?);
                    let name = String::from_utf8(input.take(usize::from(len))?)
                        .map_err(|_| bad("a keyspace name is not UTF-8"))?;
                    let options = || KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES);
                    keyspace = Some(engine.db.keyspace(&name, options)?);
                    summary.keyspaces += 1;
                }
                TAG_PAIR => {
                    let keyspace = keyspace.as_ref().ok_or_else(|| bad("a pair before any keyspace"))?;
                    let key_len = u32::from_be_bytes(input.array()?) as usize;
                    let key = input.take(key_len)?;
                    let value_len = u32::from_be_bytes(input.array()?) as usize;
                    let value = input.take(value_len)?;
                    batch.insert(keyspace, key, value);
                    summary.pairs += 1;
                    in_batch += 1;
                    if in_batch == IMPORT_BATCH {
                        std::mem::replace(&mut batch, engine.db.batch()).commit()?;
                        in_batch = 0;
                    }
                }
                TAG_END => break,
                tag => return Err(bad(&format!("unknown record tag {tag}"))),
            }
        }
        batch.commit()?;
        let pairs = u64::from_be_bytes(input.array()?);
        let expected = input.hash.clone().finalize();
        let mut digest = [0u8; 32];
        input.inner.read_exact(&mut digest).map_err(|_| bad("the export ends before its checksum"))?;
        if pairs != summary.pairs || digest[..] != expected[..] {
            return Err(bad("the export's checksum or pair count does not match: damaged or incomplete"));
        }
        engine.db.persist(PersistMode::SyncAll)?;
        summary.bytes = input.bytes + digest.len() as u64;
        Ok(summary)
    }
}

fn bad(detail: &str) -> StorageError {
    StorageError::Corrupt { partition: "export", detail: detail.to_owned() }
}

/// Reads from `inner` while hashing and counting.
struct Reading<R> {
    inner: R,
    hash: Sha256,
    bytes: u64,
}

impl<R: Read> Reading<R> {
    fn take(&mut self, len: usize) -> Result<Vec<u8>, StorageError> {
        let mut buf = Vec::new();
        let read = (&mut self.inner)
            .take(len as u64)
            .read_to_end(&mut buf)
            .map_err(|source| StorageError::Io { path: "import".into(), source })?;
        if read != len {
            return Err(bad("the export is truncated"));
        }
        self.hash.update(&buf);
        self.bytes += len as u64;
        Ok(buf)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], StorageError> {
        let bytes = self.take(N)?;
        let mut array = [0u8; N];
        array.copy_from_slice(&bytes);
        Ok(array)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn an_export_imports_into_an_equal_store_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a"), Durability::Fsync).unwrap();
        let users = store.engine().unwrap().db.keyspace("users", KeyspaceCreateOptions::default).unwrap();
        for i in 0..10_000u32 {
            users.insert(i.to_be_bytes(), format!("user {i}")).unwrap();
        }
        let mut export = Vec::new();
        let written = store.export(&mut export).unwrap();
        assert_eq!(written.pairs, 10_001, "the users and the format version");

        let copy = dir.path().join("b");
        let read = Store::import(&copy, &export[..]).unwrap();
        assert_eq!(read, written);
        let copy = Store::open(&copy, Durability::Fsync).unwrap();
        let users = copy.engine().unwrap().db.keyspace("users", KeyspaceCreateOptions::default).unwrap();
        assert_eq!(users.get(9_999u32.to_be_bytes()).unwrap().as_deref(), Some(&b"user 9999"[..]));
        drop(copy);

        let mut flipped = export.clone();
        flipped[export.len() / 2] ^= 1;
        assert!(Store::import(&dir.path().join("c"), &flipped[..]).is_err(), "a flipped byte");
        assert!(Store::import(&dir.path().join("d"), &export[..export.len() - 40]).is_err(), "truncated");
        assert!(Store::import(&dir.path().join("b"), &export[..]).is_err(), "not an empty directory");
    }
}
