//! Shared files' metadata (the bytes live in an object store, not here), keyed by file id.

use crate::error::StorageError;
use crate::store::{Store, decode_json, encode_json};
use palaver_core::records::FileRecord;

impl Store {
    /// Stores a file's metadata once its bytes are stored. Durable on return.
    pub fn put_file(&self, file: &FileRecord) -> Result<(), StorageError> {
        let e = self.engine()?;
        let mut batch = self.side_batch(&e)?;
        let logged = self.replicate(&[palaver_core::records::Write::PutFile(file.clone())])?;
        batch.insert(&e.file_record, file.file_id.as_bytes(), encode_json(file)?);
        self.commit_logged(batch, logged)
    }

    /// A file's metadata.
    pub fn file(&self, file_id: &str) -> Result<Option<FileRecord>, StorageError> {
        let e = self.engine()?;
        e.file_record.get(file_id.as_bytes())?.map(|v| decode_json("file_record", &v)).transpose()
    }
}
