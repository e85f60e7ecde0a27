//! Small pools of threads for work that must never run on a shard's event loop
//! (argon2 hashing, synchronous account writes; scans that build rooms' cid filters).
//! Shards await the answer as a message.

use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send>;

/// How a pool's threads share the CPU with the shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Like the shards: work a client is waiting for (a login's hashing).
    Normal,
    /// Nice 10: work nobody waits for, which yields the shards' cores.
    Background,
}

/// The pool. Dropping every clone of the sender ends the threads.
#[derive(Clone)]
pub struct BlockingPool {
    tx: flume::Sender<Job>,
}

impl BlockingPool {
    /// Starts `threads` workers named `name-N`.
    pub fn start(name: &str, threads: usize, priority: Priority) -> (BlockingPool, Vec<JoinHandle<()>>) {
        let (tx, rx) = flume::unbounded::<Job>();
        let handles = (0..threads.max(1))
            .filter_map(|i| {
                let rx = rx.clone();
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || {
                        if priority == Priority::Background {
                            palaver_storage::lower_this_threads_priority();
                        }
                        while let Ok(job) = rx.recv() {
                            job();
                        }
                    })
                    .ok()
            })
            .collect();
        (BlockingPool { tx }, handles)
    }

    /// Runs `f` on the pool and awaits its result; `None` if the pool is gone.
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (done_tx, done_rx) = flume::bounded(1);
        let job: Job = Box::new(move || {
            let _ = done_tx.send(f());
        });
        self.tx.send(job).ok()?;
        done_rx.recv_async().await.ok()
    }
}
