//! The disk's fsync latency during the measured window, next to the server: a thread of
//! the generator rewrites one block of a file on the server's data disk and `fdatasync`s
//! it at a fixed interval, timing each sync.
//!
//! The block is allocated and synced once before the first timed sync, so a timed sync
//! carries data only, no file-system metadata: it measures what getting a write to stable
//! storage costs on this disk, the least any journal sync pays. The server's journal syncs
//! happen inside its storage engine's commit (with the journal write and the in-memory
//! insert: `palaver_commit_duration_seconds`), where the sync alone cannot be timed without
//! changing when a write becomes readable; when a group's journal write reaches new blocks
//! of the journal file, its sync also commits their allocation and costs more than the
//! probe's. The time is the probe thread's: on a virtual CPU that halts while the thread
//! waits (an idle generator core), waking it is included, which on a KVM guest can add
//! milliseconds that a busy core does not see; the server's group commits
//! (`results.storage.group_commit_ms`) are the journal's own figures. The probe's cost is
//! one small write and sync per interval, on the generator's core.

use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Bytes rewritten before each sync (a small group commit's journal write).
const BLOCK_BYTES: usize = 4096;

/// What the probe measured, µs per sync.
struct Measured {
    syncs: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
}

/// A running probe; [`FsyncProbe::finish`] stops it and returns its figures.
pub struct FsyncProbe {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Measured>,
    path: PathBuf,
    interval: Duration,
}

impl FsyncProbe {
    /// Starts syncing `dir/palaver-load-fsync-probe` every `interval`.
    pub fn start(dir: &Path, interval: Duration) -> anyhow::Result<FsyncProbe> {
        let path = dir.join("palaver-load-fsync-probe");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .and_then(|mut file| {
                // Allocate the block and its size now: the timed syncs carry data only.
                file.write_all(&[b'p'; BLOCK_BYTES])?;
                file.sync_all()?;
                Ok(file)
            })
            .with_context(|| format!("create the fsync probe file {}", path.display()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("fsync-probe".into())
            .spawn(move || probe(file, interval, &stopped))
            .context("start the fsync probe thread")?;
        Ok(FsyncProbe { stop, thread, path, interval })
    }

    /// Stops the probe, removes its file and returns what it measured (ms) and how.
    pub fn finish(self) -> (Value, String) {
        self.stop.store(true, Ordering::Relaxed);
        let measured = self.thread.join().ok();
        let _ = std::fs::remove_file(&self.path);
        let source = format!(
            "palaver-load's probe: fdatasync of a rewritten, allocated {BLOCK_BYTES}-byte block, every {} ms, in {}",
            self.interval.as_millis(),
            self.path.parent().map(|d| d.display().to_string()).unwrap_or_default()
        );
        let Some(m) = measured else { return (Value::Null, format!("{source}: the probe thread panicked")) };
        let mut out = crate::stats::latency_json(&m.syncs);
        out["errors"] = json!(m.errors);
        out["first_error"] = json!(m.first_error);
        (out, source)
    }
}

fn probe(mut file: std::fs::File, interval: Duration, stop: &AtomicBool) -> Measured {
    let mut measured = Measured { syncs: crate::stats::new_histogram(), errors: 0, first_error: None };
    let block = vec![b'p'; BLOCK_BYTES];
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let outcome = rewrite_and_sync(&mut file, &block);
        match outcome {
            Ok(took) => {
                let _ = measured.syncs.record((took.as_micros() as u64).max(1));
            }
            Err(e) => {
                measured.errors += 1;
                measured.first_error.get_or_insert_with(|| e.to_string());
            }
        }
        next += interval;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
    measured
}

/// Rewrites the block in place and times the `fdatasync` alone.
fn rewrite_and_sync(file: &mut std::fs::File, block: &[u8]) -> std::io::Result<Duration> {
    file.write_all_at(block, 0)?;
    let started = Instant::now();
    file.sync_data()?;
    Ok(started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_syncs_until_stopped_and_removes_its_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let probe = FsyncProbe::start(dir.path(), Duration::from_millis(1)).expect("start");
        let file = dir.path().join("palaver-load-fsync-probe");
        assert!(file.is_file());
        std::thread::sleep(Duration::from_millis(100));
        let (figures, source) = probe.finish();
        assert!(figures["count"].as_u64().unwrap_or(0) > 0, "{figures}");
        assert!(figures["p50"].as_f64().unwrap_or(0.0) > 0.0, "{figures}");
        assert_eq!(figures["errors"], 0, "{figures}");
        assert!(source.contains("every 1 ms"), "{source}");
        assert!(!file.exists(), "the probe file is left behind");
    }

    #[test]
    fn a_directory_that_does_not_exist_is_refused_with_its_name() {
        let Err(e) = FsyncProbe::start(Path::new("/nonexistent/palaver-load"), Duration::from_millis(20))
        else {
            panic!("started in a missing directory")
        };
        assert!(format!("{e:#}").contains("/nonexistent/palaver-load"), "{e:#}");
    }
}
