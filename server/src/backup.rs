//! Online backup of a running server, and restore into a new data directory.
//!
//! `palaver backup --data-dir DATA --out DIR` asks the server running on `DATA` through
//! its control socket (`DATA/control.sock`, mode 0600: whoever may use it may read the
//! data directory anyway), and the server writes into `DIR`:
//!
//! - `store.export`: every record of the message store from one consistent snapshot,
//!   taken while it keeps serving (`palaver_storage::Store::export`);
//! - `files/`: the shared files, when they are on local disk (`file://`; a bucket keeps
//!   its own copies and is named in the manifest instead);
//! - `jwt-secret`, `vapid-key` and `tls/`: the development secret, the Web Push key pair
//!   (browsers' push subscriptions are bound to its public half) and the development
//!   certificate, when the server uses them (configured ones live outside the data
//!   directory);
//! - `manifest.json`: what was written, and from which server.
//!
//! The files are copied after the snapshot, and a file's bytes are stored before its
//! record, so every file the export names is in the backup. `palaver restore --from DIR
//! --data-dir NEW` builds a new data directory from it (offline); the search index is
//! rebuilt from the messages when the server first starts there.

use std::io::{BufRead as _, BufReader, BufWriter, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use palaver_storage::{FORMAT_VERSION, Store};
use serde_json::json;

use crate::data_dir::{DATA_FORMAT, write_format};

/// The control socket's file in the data directory.
pub const CONTROL_SOCKET: &str = "control.sock";

/// A backup or restore that failed, with what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// Where.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The store could not be exported or imported.
    #[error("store: {0}")]
    Store(#[from] palaver_storage::StorageError),
    /// No server answers on the data directory's control socket.
    #[error(
        "no server runs on {data_dir} (cannot connect to {socket}: {source}); back up a stopped server's data directory by copying it"
    )]
    NoServer {
        /// The data directory.
        data_dir: String,
        /// The socket.
        socket: String,
        /// Why.
        source: std::io::Error,
    },
    /// The server refused or failed the backup.
    #[error("the server could not back up: {0}")]
    Refused(String),
    /// The backup directory is not usable.
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io { path: path.display().to_string(), source }
}

/// What the server backs up besides the store.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The data directory.
    pub data_dir: PathBuf,
    /// Where shared files live when on local disk; `None` for a bucket.
    pub files_dir: Option<PathBuf>,
    /// The files URL, for the manifest.
    pub files_url: String,
}

/// The server's end of the control socket: one thread answering `backup DIR` requests.
#[derive(Debug)]
pub struct ControlSocket {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ControlSocket {
    /// Listens on `DATA_DIR/control.sock` (replacing a stale one a killed server left).
    pub fn start(store: Arc<Store>, sources: Sources) -> Result<Self, BackupError> {
        let path = sources.data_dir.join(CONTROL_SOCKET);
        if path.exists() && UnixStream::connect(&path).is_err() {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
        let listener = UnixListener::bind(&path).map_err(io(&path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io(&path))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("palaver-control".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        answer(stream, &store, &sources);
                    }
                }
            })
            .map_err(io(&path))?;
        Ok(Self { path, stop, thread: Some(thread) })
    }

    /// Stops answering and removes the socket file.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = UnixStream::connect(&self.path);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Reads one request line and answers `ok <manifest>` or `error <why>`.
fn answer(stream: UnixStream, store: &Store, sources: &Sources) {
    let mut line = String::new();
    let mut reader = BufReader::new(&stream);
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let reply = match line.trim_end().split_once(' ') {
        Some(("backup", dir)) if Path::new(dir).is_absolute() => {
            tracing::info!("backup into {dir} requested");
            match write_backup(store, sources, Path::new(dir)) {
                Ok(manifest) => {
                    tracing::info!("backup into {dir} written: {manifest}");
                    format!("ok {manifest}\n")
                }
                Err(e) => {
                    tracing::error!("backup into {dir} failed: {e}");
                    format!("error {e}\n")
                }
            }
        }
        _ => "error unknown request; expected `backup /absolute/dir`\n".to_owned(),
    };
    let _ = (&stream).write_all(reply.as_bytes());
}

/// Writes a backup into `out` (missing or empty): the store from one snapshot, then the
/// files and secrets. Returns the manifest.
pub fn write_backup(store: &Store, sources: &Sources, out: &Path) -> Result<serde_json::Value, BackupError> {
    prepare_empty(out)?;
    let export_path = out.join("store.export");
    let file = std::fs::File::create(&export_path).map_err(io(&export_path))?;
    let mut writer = BufWriter::new(file);
    let summary = store.export(&mut writer)?;
    let file = writer
        .into_inner()
        .map_err(|e| BackupError::Io { path: export_path.display().to_string(), source: e.into_error() })?;
    file.sync_all().map_err(io(&export_path))?;

    let files = match &sources.files_dir {
        Some(dir) if dir.exists() => copy_tree(dir, &out.join("files"))?,
        _ => 0,
    };
    let mut secrets = Vec::new();
    for name in SECRET_FILES {
        let secret = sources.data_dir.join(name);
        if secret.exists() {
            copy_file(&secret, &out.join(name))?;
            secrets.push(name);
        }
    }
    let tls = sources.data_dir.join("tls");
    if tls.exists() {
        copy_tree(&tls, &out.join("tls"))?;
        secrets.push("tls");
    }
    let manifest = json!({
        "palaver_version": env!("CARGO_PKG_VERSION"),
        "data_format": DATA_FORMAT,
        "store_format": FORMAT_VERSION,
        "created_ms": crate::clock::now_ms(),
        "store": {"keyspaces": summary.keyspaces, "records": summary.pairs, "bytes": summary.bytes},
        "files": if sources.files_dir.is_some() { json!(files) } else { json!(null) },
        "files_url": sources.files_url,
        "secrets": secrets,
    });
    let manifest_path = out.join("manifest.json");
    write_synced(&manifest_path, format!("{manifest:#}\n").as_bytes())?;
    Ok(manifest)
}

/// Asks the server running on `data_dir` to back up into `out`; returns its manifest.
pub fn request(data_dir: &Path, out: &Path) -> Result<serde_json::Value, BackupError> {
    let socket = data_dir.join(CONTROL_SOCKET);
    let out = absolute(out)?;
    let mut stream = UnixStream::connect(&socket).map_err(|source| BackupError::NoServer {
        data_dir: data_dir.display().to_string(),
        socket: socket.display().to_string(),
        source,
    })?;
    let request = format!("backup {}\n", out.display());
    stream.write_all(request.as_bytes()).map_err(io(&socket))?;
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply).map_err(io(&socket))?;
    match reply.trim_end().split_once(' ') {
        Some(("ok", manifest)) => serde_json::from_str(manifest)
            .map_err(|e| BackupError::Refused(format!("unreadable answer ({e}): {manifest}"))),
        Some(("error", why)) => Err(BackupError::Refused(why.to_owned())),
        _ => Err(BackupError::Refused(format!("unexpected answer {reply:?}"))),
    }
}

/// Builds the data directory `data_dir` (missing or empty) from the backup in `from`.
pub fn restore(from: &Path, data_dir: &Path) -> Result<serde_json::Value, BackupError> {
    let manifest_path = from.join("manifest.json");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).map_err(io(&manifest_path))?)
            .map_err(|e| BackupError::Invalid(format!("{}: {e}", manifest_path.display())))?;
    if manifest["data_format"].as_u64() != Some(u64::from(DATA_FORMAT)) {
        return Err(BackupError::Invalid(format!(
            "the backup has data format {}; this build restores format {DATA_FORMAT}",
            manifest["data_format"]
        )));
    }
    prepare_empty(data_dir)?;
    let export_path = from.join("store.export");
    let export = std::fs::File::open(&export_path).map_err(io(&export_path))?;
    let summary = Store::import(&data_dir.join("db"), std::io::BufReader::new(export))?;
    if manifest["store"]["records"].as_u64() != Some(summary.pairs) {
        return Err(BackupError::Invalid(format!(
            "the export holds {} records, the manifest says {}",
            summary.pairs, manifest["store"]["records"]
        )));
    }
    if from.join("files").exists() {
        copy_tree(&from.join("files"), &data_dir.join("files"))?;
    }
    for name in SECRET_FILES {
        if from.join(name).exists() {
            copy_file(&from.join(name), &data_dir.join(name))?;
        }
    }
    if from.join("tls").exists() {
        copy_tree(&from.join("tls"), &data_dir.join("tls"))?;
    }
    write_format(data_dir, DATA_FORMAT).map_err(|e| BackupError::Invalid(e.to_string()))?;
    Ok(manifest)
}

fn absolute(path: &Path) -> Result<PathBuf, BackupError> {
    if path.is_absolute() {
        return Ok(path.to_owned());
    }
    let cwd = std::env::current_dir().map_err(io(path))?;
    Ok(cwd.join(path))
}

/// Creates `dir` (0700) or accepts it when empty.
fn prepare_empty(dir: &Path) -> Result<(), BackupError> {
    if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(BackupError::Invalid(format!("{} is not empty", dir.display())));
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))
}

/// Copies a directory tree (regular files and directories); returns the files copied.
fn copy_tree(from: &Path, to: &Path) -> Result<u64, BackupError> {
    std::fs::create_dir_all(to).map_err(io(to))?;
    let mut copied = 0;
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let kind = entry.file_type().map_err(io(&entry.path()))?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copied += copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            copy_file(&entry.path(), &target)?;
            copied += 1;
        }
    }
    Ok(copied)
}

/// Copies one file and syncs it, keeping its permission bits.
/// The data directory's generated secrets a backup carries (each a file, mode 0600,
/// whose permissions `std::fs::copy` keeps).
const SECRET_FILES: [&str; 2] = ["jwt-secret", "vapid-key"];

fn copy_file(from: &Path, to: &Path) -> Result<(), BackupError> {
    std::fs::copy(from, to).map_err(io(from))?;
    std::fs::File::open(to).and_then(|f| f.sync_all()).map_err(io(to))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    let mut file = std::fs::File::create(path).map_err(io(path))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(io(path))
}
