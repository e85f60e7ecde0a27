//! The senders' own thread. One generator thread reading a thousand sockets is often busy
//! for milliseconds at a time; a sender task queued behind that work sends late and then
//! in a burst (`max_send_lag_ms`), and the server's queue behind each burst is then
//! measured as latency. On a thread of their own, on the same core, the senders are woken
//! by the kernel when they are due (they sleep most of the time, so the scheduler lets
//! them in promptly) and send on schedule.

use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// A thread running a single-threaded runtime for the sending sockets.
pub struct SenderThread {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl SenderThread {
    /// Starts the thread (it inherits the generator's CPU pinning).
    pub fn start() -> anyhow::Result<SenderThread> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("senders".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
                // Aborted sender tasks go with the runtime.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .context("start the senders' thread")?;
        Ok(SenderThread { handle, stop: Some(stop), thread: Some(thread) })
    }

    /// Where sending sockets are opened and their tasks spawned: a socket belongs to the
    /// runtime it was opened on.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for SenderThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
