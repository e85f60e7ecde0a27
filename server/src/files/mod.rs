//! Shared files: their bytes go to an object store (the local filesystem under the data
//! directory by default; S3, GCS or Azure by URL with the matching cargo feature), their
//! metadata to storage.
//!
//! object_store is async on tokio, so it runs on a thread of its own with a small tokio
//! runtime ([`FileStore`]); shards hand it uploads and downloads as streams of chunks
//! over bounded channels, so a shard never blocks on it and never holds a whole file.

mod sniff;

use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use futures_util::StreamExt as _;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, WriteMultipart};

pub use sniff::{SNIFF_BYTES, TextCheck, dimensions, sanitize_name, sniff};

/// Chunks in flight between a shard and the files thread, per transfer: bounded, so a
/// fast client and a slow store (or the reverse) never buffer a whole file.
const CHANNEL_CHUNKS: usize = 8;

/// Why a file operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// No such object.
    #[error("no such file")]
    NotFound,
    /// The upload was abandoned before its end (client gone, or refused mid-way).
    #[error("upload abandoned")]
    Aborted,
    /// The store failed.
    #[error("object store: {0}")]
    Store(String),
    /// The files thread is gone (shutting down).
    #[error("file service stopped")]
    Stopped,
    /// The configured URL is not usable.
    #[error("files URL: {0}")]
    Config(String),
}

impl From<object_store::Error> for FileError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => FileError::NotFound,
            other => FileError::Store(other.to_string()),
        }
    }
}

/// One piece of an upload.
#[derive(Debug)]
pub enum Chunk {
    /// More bytes.
    Data(Bytes),
    /// The last byte was sent: complete the object.
    End,
}

enum Job {
    /// Stop taking jobs (shutdown): transfers still running are abandoned.
    Stop,
    Put {
        key: String,
        chunks: flume::Receiver<Chunk>,
        done: flume::Sender<Result<(), FileError>>,
    },
    Get {
        key: String,
        chunks: flume::Sender<Result<Bytes, FileError>>,
    },
    Delete {
        key: String,
    },
}

/// A handle to the files thread.
#[derive(Clone)]
pub struct FileStore {
    jobs: flume::Sender<Job>,
}

/// An upload in progress: send chunks, then `finish`.
pub struct Upload {
    chunks: flume::Sender<Chunk>,
    done: flume::Receiver<Result<(), FileError>>,
}

impl Upload {
    /// Hands over the next bytes (waits while the store is behind).
    pub async fn send(&self, bytes: Bytes) -> Result<(), FileError> {
        self.chunks.send_async(Chunk::Data(bytes)).await.map_err(|_| FileError::Aborted)
    }

    /// Completes the object and waits until the store has it.
    pub async fn finish(self) -> Result<(), FileError> {
        self.chunks.send_async(Chunk::End).await.map_err(|_| FileError::Aborted)?;
        drop(self.chunks);
        self.done.recv_async().await.map_err(|_| FileError::Stopped)?
    }
}

impl FileStore {
    /// Opens the store named by `url` (`file:///abs/dir`, or `s3://bucket/prefix` and the
    /// like with their features; cloud credentials and endpoints come from the standard
    /// environment variables, e.g. `AWS_ENDPOINT`, `AWS_ACCESS_KEY_ID`) and starts the
    /// files thread.
    pub fn start(url: &str) -> Result<(FileStore, JoinHandle<()>), FileError> {
        let parsed = url::Url::parse(url).map_err(|e| FileError::Config(format!("{url}: {e}")))?;
        if parsed.scheme() == "file" {
            let dir =
                parsed.to_file_path().map_err(|()| FileError::Config(format!("{url}: not a local path")))?;
            std::fs::create_dir_all(&dir)
                .map_err(|e| FileError::Config(format!("{}: {e}", dir.display())))?;
        }
        let options = std::env::vars()
            .filter(|(k, _)| k.starts_with("AWS_") || k.starts_with("GOOGLE_") || k.starts_with("AZURE_"))
            .map(|(k, v)| (k.to_ascii_lowercase(), v));
        let (store, prefix) = object_store::parse_url_opts(&parsed, options)
            .map_err(|e| FileError::Config(format!("{url}: {e} (is the matching cargo feature enabled?)")))?;
        let store: Arc<dyn ObjectStore> = Arc::from(store);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| FileError::Config(format!("files runtime: {e}")))?;
        let (jobs, rx) = flume::unbounded::<Job>();
        let thread = std::thread::Builder::new()
            .name("palaver-files".into())
            .spawn(move || {
                runtime.block_on(async move {
                    while let Ok(job) = rx.recv_async().await {
                        if matches!(job, Job::Stop) {
                            break;
                        }
                        let store = store.clone();
                        let prefix = prefix.clone();
                        tokio::spawn(run_job(store, prefix, job));
                    }
                });
            })
            .map_err(|e| FileError::Config(format!("files thread: {e}")))?;
        Ok((FileStore { jobs }, thread))
    }

    /// Stops the files thread (after the shards are gone).
    pub fn stop(&self) {
        let _ = self.jobs.send(Job::Stop);
    }

    /// Starts storing object `key`.
    pub fn upload(&self, key: &str) -> Result<Upload, FileError> {
        let (chunks_tx, chunks_rx) = flume::bounded(CHANNEL_CHUNKS);
        let (done_tx, done_rx) = flume::bounded(1);
        self.jobs
            .send(Job::Put { key: key.to_owned(), chunks: chunks_rx, done: done_tx })
            .map_err(|_| FileError::Stopped)?;
        Ok(Upload { chunks: chunks_tx, done: done_rx })
    }

    /// Deletes object `key` in the background (its metadata is gone already, so nobody can
    /// ask for it; a failure is logged, and leaves an unreachable object behind).
    pub fn delete_later(&self, key: &str) {
        let _ = self.jobs.send(Job::Delete { key: key.to_owned() });
    }

    /// Streams object `key`, chunk by chunk.
    pub fn download(&self, key: &str) -> Result<flume::Receiver<Result<Bytes, FileError>>, FileError> {
        let (tx, rx) = flume::bounded(CHANNEL_CHUNKS);
        self.jobs.send(Job::Get { key: key.to_owned(), chunks: tx }).map_err(|_| FileError::Stopped)?;
        Ok(rx)
    }
}

fn object_path(prefix: &ObjectPath, key: &str) -> ObjectPath {
    prefix.child("files").child(key)
}

async fn run_job(store: Arc<dyn ObjectStore>, prefix: ObjectPath, job: Job) {
    match job {
        Job::Stop => {}
        Job::Delete { key } => {
            if let Err(e) = store.delete(&object_path(&prefix, &key)).await {
                tracing::warn!("deleting file {key}: {e}");
            }
        }
        Job::Put { key, chunks, done } => {
            let result = put(&*store, object_path(&prefix, &key), chunks).await;
            if let Err(e) = &result
                && !matches!(e, FileError::Aborted)
            {
                tracing::error!("storing file {key}: {e}");
            }
            let _ = done.send(result);
        }
        Job::Get { key, chunks } => {
            match store.get(&object_path(&prefix, &key)).await {
                Err(e) => {
                    let _ = chunks.send_async(Err(e.into())).await;
                }
                Ok(found) => {
                    let mut stream = found.into_stream();
                    while let Some(item) = stream.next().await {
                        // The reader went away: stop reading the object.
                        if chunks.send_async(item.map_err(FileError::from)).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }
    }
}

async fn put(
    store: &dyn ObjectStore,
    path: ObjectPath,
    chunks: flume::Receiver<Chunk>,
) -> Result<(), FileError> {
    let upload = store.put_multipart(&path).await?;
    let mut writer = WriteMultipart::new(upload);
    loop {
        match chunks.recv_async().await {
            Ok(Chunk::Data(bytes)) => {
                writer.wait_for_capacity(2).await?;
                writer.write(&bytes);
            }
            Ok(Chunk::End) => {
                writer.finish().await?;
                return Ok(());
            }
            // The shard dropped the upload without finishing it: leave nothing behind.
            Err(_) => {
                let _ = writer.abort().await;
                return Err(FileError::Aborted);
            }
        }
    }
}
