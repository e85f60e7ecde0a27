//! Frees fjall's flushed memtables on a thread of our own, outside fjall's locks.
//!
//! fjall 3.1 drops a keyspace's superseded versions while holding that keyspace's version
//! lock, which every write and every read takes. When the last reference to a flushed
//! memtable goes with them, its skiplist (one allocation per entry) is freed under that
//! lock, by fjall's worker, which runs at nice 10 (see `open_database`): on a busy core
//! the group-commit thread waited up to ~50 ms for it (docs/PERFORMANCE.md, "The design
//! decisions behind the numbers").
//!
//! This thread keeps a reference to every memtable it sees, so that fjall's drop is only a
//! count decrement; once it holds the last reference to a memtable it frees it here, with
//! no lock held. It reads `Keyspace::tree`, which fjall exposes but hides from its docs,
//! and relies on how fjall 3.1 lets go of flushed memtables; the workspace pins fjall to
//! 3.1.x for that reason, and an upgrade must re-check this file.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use fjall::{AbstractTree, Keyspace};

/// How often the thread looks for new memtables: far shorter than the time to fill one
/// (8 MiB), so it sees every memtable before it is flushed; one it misses is freed by
/// fjall as before. Each look takes the keyspace's version lock briefly, as a reader.
const POLL: Duration = Duration::from_millis(50);

/// The running thread; dropping this stops and joins it (it holds keyspace handles,
/// which must be gone before the data directory can be opened again).
pub(crate) struct MemtableKeeper {
    stop: Option<flume::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl MemtableKeeper {
    pub(crate) fn start(keyspaces: Vec<Keyspace>) -> std::io::Result<Self> {
        let (stop, stopped) = flume::bounded::<()>(0);
        let thread = std::thread::Builder::new().name("store-memtables".into()).spawn(move || {
            crate::store::lower_this_threads_priority();
            let mut held = Vec::new();
            while let Err(flume::RecvTimeoutError::Timeout) = stopped.recv_timeout(POLL) {
                for keyspace in &keyspaces {
                    let active = keyspace.tree.active_memtable();
                    if !held.iter().any(|kept| Arc::ptr_eq(kept, &active)) {
                        held.push(active);
                    }
                }
                // Only ours left: fjall has flushed it and let go. Freed here.
                held.retain(|kept| Arc::strong_count(kept) > 1);
            }
        })?;
        Ok(Self { stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for MemtableKeeper {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
