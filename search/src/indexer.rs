//! The indexer: one thread owning the index writer, fed by a channel, committing in
//! batches.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use palaver_protocol::{Message, RoomId};
use palaver_storage::{Store, Write};
use tantivy::indexer::UserOperation;
use tantivy::{IndexReader, IndexWriter, TantivyDocument};

use crate::backlog::{BacklogBound, IndexBacklog, IndexingShare, changes_in, commit_every, next_share};
use crate::error::SearchError;
use crate::index::{SearchIndex, clear_version, mark_running, write_version};
use crate::schema::Fields;
use crate::share::{PACER_TICK, can_take_back, put_indexing_threads, put_this_thread, starting_share};

/// Messages read from the store per page while rebuilding.
pub const REBUILD_PAGE: usize = 1_000;
/// A rebuild commits (and becomes partly searchable) every this many messages.
const REBUILD_COMMIT_EVERY: u64 = 50_000;
/// After a rebuild, the `Insert`s already queued and this many more are upserted: a
/// message stored while the rebuild read the store may reach the channel just after it
/// finished (each group commit sends one `Insert` right after storing it, so only the
/// groups in flight at that moment, a few per shard, can race).
const INSERTS_UPSERTED_AFTER_REBUILD: usize = 1_024;

/// With changes pending, how often the indexer takes what has arrived (it does not wake
/// for each change then; a flush or a shutdown waits at most this long to be seen).
const DRAIN_TICK: Duration = Duration::from_millis(20);
/// New documents are given to tantivy's indexing thread in batches of up to this many
/// (and at every commit), not one batch per group commit.
const HANDOFF_BATCH: usize = 4_096;

/// How the indexer batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct IndexerConfig {
    /// The longest a change waits before it is committed and searchable.
    pub commit_interval: Duration,
    /// The writer's memory budget, in bytes (tantivy needs at least 15 MB).
    pub writer_memory_bytes: usize,
    /// Past this backlog, indexing stops yielding its CPU until it has caught up.
    pub backlog_bound: BacklogBound,
}

impl Default for IndexerConfig {
    fn default() -> IndexerConfig {
        IndexerConfig {
            commit_interval: Duration::from_secs(1),
            writer_memory_bytes: 32 << 20,
            backlog_bound: BacklogBound::default(),
        }
    }
}

impl IndexerConfig {
    /// With another commit interval.
    pub fn with_commit_interval(self, commit_interval: Duration) -> IndexerConfig {
        IndexerConfig { commit_interval, ..self }
    }

    /// With another backlog bound.
    pub fn with_backlog_bound(self, backlog_bound: BacklogBound) -> IndexerConfig {
        IndexerConfig { backlog_bound, ..self }
    }
}

/// A change for the indexer.
#[derive(Debug)]
#[non_exhaustive]
#[expect(
    clippy::large_enum_variant,
    reason = "`Upsert` carries a whole message: boxing it would add an allocation per edit"
)]
pub enum IndexOp {
    /// Messages stored for the first time (new seqs; typically one group commit's):
    /// index them, as one batch for tantivy's indexing thread. Unlike `Upsert` this
    /// removes nothing first — a removal is a delete that every commit checks against
    /// every segment, and a new message has no earlier version to remove. (Right after a
    /// rebuild, which may already have read them from the store, they are upserted.)
    Insert(Vec<Message>),
    /// A message was stored or replaced (sent, edited, deleted into a tombstone): index its
    /// current state, replacing any earlier one. A message that must not be searchable
    /// (see [`crate::indexable`]) is removed instead.
    Upsert(Message),
    /// Remove a message from the index.
    Remove {
        /// Its room.
        room: RoomId,
        /// Its seq.
        seq: u64,
    },
    /// Remove a run of a room's messages (retention removed them from the store).
    RemoveRange {
        /// Their room.
        room: RoomId,
        /// Their seqs.
        seqs: std::ops::Range<u64>,
    },
    /// Commit everything received so far, make it searchable, then reply.
    Flush(flume::Sender<Result<(), SearchError>>),
    /// Clear the index and reindex every message of the store, then mark the index
    /// complete; replies with how many messages were indexed. Changes sent meanwhile wait
    /// in the channel and apply after it, so the index ends current.
    Rebuild {
        /// The message log.
        store: Arc<Store>,
        /// Where the count (or the failure) goes.
        reply: flume::Sender<Result<u64, SearchError>>,
    },
    /// Commit and stop.
    Shutdown,
}

/// The index changes of committed writes, in their order: each run of new messages as
/// one `Insert` (so the indexer and tantivy's thread wake once for it), each rewritten
/// message as an `Upsert`. Order matters: an edit committed in the same group as its
/// message must be applied after the message's insert, or both versions stay indexed.
pub fn changes_of(writes: impl IntoIterator<Item = Write>) -> Vec<IndexOp> {
    let mut changes = Vec::new();
    let mut inserted = Vec::new();
    for write in writes {
        match write {
            Write::AppendMessage(message) => inserted.push(message),
            Write::ReplaceMessage(message) => {
                if !inserted.is_empty() {
                    changes.push(IndexOp::Insert(std::mem::take(&mut inserted)));
                }
                changes.push(IndexOp::Upsert(message));
            }
            Write::TrimHistory { room, from, floor } => {
                if !inserted.is_empty() {
                    changes.push(IndexOp::Insert(std::mem::take(&mut inserted)));
                }
                changes.push(IndexOp::RemoveRange { room, seqs: from..floor });
            }
            _ => {}
        }
    }
    if !inserted.is_empty() {
        changes.push(IndexOp::Insert(inserted));
    }
    changes
}

/// The running indexer thread. Clone [`IndexerHandle::sender`] for every producer (its
/// sends never block); dropping the handle shuts the thread down with a final commit.
#[derive(Debug)]
pub struct IndexerHandle {
    feed: IndexFeed,
    thread: Option<JoinHandle<()>>,
    /// The thread that changes indexing's share (only where indexing yields), and the
    /// sender whose drop stops it.
    pacer: Option<(flume::Sender<()>, JoinHandle<()>)>,
}

/// Where producers send changes to the indexer (cheap to clone; sends never block). It
/// counts what it queues into the indexer's [`IndexBacklog`].
#[derive(Debug, Clone)]
pub struct IndexFeed {
    sender: flume::Sender<IndexOp>,
    backlog: IndexBacklog,
}

impl IndexFeed {
    /// Queues a change (never blocks).
    pub fn send(&self, op: IndexOp) -> Result<(), SearchError> {
        let changes = changes_in(&op);
        // Queued and counted under the backlog's lock, which the indexer holds while it
        // takes the queue, so the count always matches the channel.
        self.backlog.with(|state| {
            self.sender.send(op).map_err(|_| SearchError::IndexerStopped)?;
            state.queue(changes, Instant::now());
            Ok(())
        })
    }

    /// The indexer's backlog.
    pub fn backlog(&self) -> &IndexBacklog {
        &self.backlog
    }
}

impl SearchIndex {
    /// Takes the index's writer and starts the indexer thread. Only one indexer may run
    /// per index (a second fails with the writer lock held).
    ///
    /// Indexing is background work that must never take the CPU from the shards
    /// delivering messages (on a server squeezed onto one core, even nice-10 indexing adds
    /// tens of milliseconds to delivery). So the thread runs under `SCHED_IDLE` (nice 19
    /// where that is refused), and so do tantivy's indexing, compression and merge
    /// threads, which it creates and which inherit it: they only get CPU nothing else
    /// wants. At saturation that is next to none and the backlog grows; past
    /// [`IndexerConfig::backlog_bound`] a pacer thread puts them all at nice 10 until they
    /// have caught up ([`crate::next_share`]). Where the process may not undo a yield (no
    /// `CAP_SYS_NICE`, `RLIMIT_NICE` below 10), indexing stays at nice 10 throughout, as a
    /// backlog it could not catch up would grow without bound; the log says which.
    pub fn start_indexer(&self, config: IndexerConfig) -> Result<IndexerHandle, SearchError> {
        let (sender, receiver) = flume::unbounded();
        let backlog = IndexBacklog::default();
        let feed = IndexFeed { sender, backlog: backlog.clone() };
        let share = starting_share(match can_take_back() {
            Ok(()) => true,
            Err(why) => {
                tracing::warn!("search indexing does not yield its CPU ({why}); it runs at nice 10");
                false
            }
        });
        backlog.with(|state| state.share = share);
        let indexer_backlog = backlog.clone();
        let (ready, started) = flume::bounded(1);
        let index = self.index.clone();
        let (reader, fields, dir) = (self.reader.clone(), self.fields, self.dir.clone());
        let thread = std::thread::Builder::new().name("search-indexer".into()).spawn(move || {
            palaver_storage::lower_this_threads_priority();
            if share == IndexingShare::Idle {
                match put_this_thread(share) {
                    Ok(how) => tracing::info!(
                        "search indexing yields its CPU ({how}) until its backlog passes its bound"
                    ),
                    Err(e) => {
                        tracing::warn!("search indexing cannot yield its CPU ({e}); it runs at nice 10")
                    }
                }
            }
            let writer: IndexWriter<TantivyDocument> =
                match index.writer_with_num_threads(1, config.writer_memory_bytes) {
                    Ok(writer) => writer,
                    Err(e) => {
                        let _ = ready.send(Err(SearchError::from(e)));
                        return;
                    }
                };
            if let Err(e) = mark_running(&dir, true) {
                let _ = ready.send(Err(e));
                return;
            }
            let _ = ready.send(Ok(()));
            Indexer {
                writer,
                reader,
                fields,
                dir,
                config,
                pending_since: None,
                adds: Vec::new(),
                upserted_inserts: 0,
                backlog: indexer_backlog,
                applied: 0,
                batch_since: None,
            }
            .run(&receiver);
        })?;
        started.recv().map_err(|_| SearchError::IndexerStopped)??;
        let pacer = if share == IndexingShare::Idle {
            let (stop, stopped) = flume::bounded(0);
            let bound = config.backlog_bound;
            let pacer = std::thread::Builder::new().name("search-pacer".into()).spawn(move || {
                palaver_storage::lower_this_threads_priority();
                pace(&backlog, bound, &stopped);
            })?;
            Some((stop, pacer))
        } else {
            None
        };
        Ok(IndexerHandle { feed, thread: Some(thread), pacer })
    }
}

impl IndexerHandle {
    /// A sender of changes, for producers on other threads.
    pub fn sender(&self) -> IndexFeed {
        self.feed.clone()
    }

    /// Sends a change (never blocks).
    pub fn send(&self, op: IndexOp) -> Result<(), SearchError> {
        self.feed.send(op)
    }

    /// The changes accepted but not yet searchable.
    pub fn backlog(&self) -> &IndexBacklog {
        &self.feed.backlog
    }

    /// Commits everything sent so far and waits until it is searchable.
    pub fn flush(&self) -> Result<(), SearchError> {
        let (reply, done) = flume::bounded(1);
        self.send(IndexOp::Flush(reply))?;
        done.recv().map_err(|_| SearchError::IndexerStopped)?
    }

    /// Clears the index and reindexes every message of `store` (waits until done); returns
    /// how many messages were indexed. Blocks for as long as the log takes to read.
    pub fn rebuild(&self, store: Arc<Store>) -> Result<u64, SearchError> {
        let (reply, done) = flume::bounded(1);
        self.send(IndexOp::Rebuild { store, reply })?;
        done.recv().map_err(|_| SearchError::IndexerStopped)?
    }

    /// Commits what is pending and stops the thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some((stop, pacer)) = self.pacer.take() {
            drop(stop);
            if pacer.join().is_err() {
                tracing::error!("search pacer thread panicked");
            }
            // The final commit must not wait for CPU a busy server never leaves idle.
            if let Err(e) = put_indexing_threads(IndexingShare::CatchUp) {
                tracing::debug!("search indexing keeps yielding for its final commit: {e}");
            }
        }
        if let Some(thread) = self.thread.take() {
            let _ = self.feed.send(IndexOp::Shutdown);
            if thread.join().is_err() {
                tracing::error!("search indexer thread panicked");
            }
        }
    }
}

impl Drop for IndexerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The pacer: every [`PACER_TICK`] until `stop` is dropped, puts indexing's threads at the
/// share [`next_share`] gives for the backlog.
fn pace(backlog: &IndexBacklog, bound: BacklogBound, stop: &flume::Receiver<()>) {
    let mut share = IndexingShare::Idle;
    let mut warned = false;
    while let Err(flume::RecvTimeoutError::Timeout) = stop.recv_timeout(PACER_TICK) {
        let (changes, lag) = (backlog.changes(), backlog.lag());
        let next = next_share(share, changes, lag, bound);
        if next == share {
            continue;
        }
        match put_indexing_threads(next) {
            Ok(()) => {
                tracing::debug!(
                    ?next,
                    changes,
                    lag_seconds = lag.as_secs_f64(),
                    "search indexing changed its share"
                );
                share = next;
                backlog.with(|state| {
                    state.share = next;
                    state.catch_ups += u64::from(next == IndexingShare::CatchUp);
                });
            }
            Err(e) if !warned => {
                warned = true;
                tracing::warn!(
                    changes,
                    lag_seconds = lag.as_secs_f64(),
                    "search indexing cannot change its share: {e}"
                );
            }
            Err(_) => {}
        }
    }
}

struct Indexer {
    writer: IndexWriter<TantivyDocument>,
    reader: IndexReader,
    fields: Fields,
    dir: std::path::PathBuf,
    config: IndexerConfig,
    /// When the oldest uncommitted change arrived.
    pending_since: Option<Instant>,
    /// New documents not yet given to tantivy (see [`Indexer::hand_off`]).
    adds: Vec<UserOperation<TantivyDocument>>,
    /// How many more `Insert`s are upserted (set by a rebuild; see
    /// [`INSERTS_UPSERTED_AFTER_REBUILD`]).
    upserted_inserts: usize,
    /// What producers queued and this thread has not yet made searchable.
    backlog: IndexBacklog,
    /// Backlog changes applied to the writer since the last commit.
    applied: u64,
    /// While a taken batch is being applied: when its oldest change was queued.
    batch_since: Option<Instant>,
}

impl Indexer {
    fn run(mut self, receiver: &flume::Receiver<IndexOp>) {
        loop {
            // Idle, it sleeps in `recv` until a change arrives. With changes pending it
            // polls instead, every `DRAIN_TICK`: blocked in `recv`, every group commit's
            // send would wake it (a futex wake and a context switch per group, on the
            // shards' core); polling, a send just queues.
            let first = match self.pending_since {
                None => match receiver.recv() {
                    Ok(op) => Some(op),
                    Err(flume::RecvError::Disconnected) => break,
                },
                Some(since) => {
                    let due = since + commit_every(self.config.commit_interval, self.backlog.lag());
                    std::thread::sleep(due.saturating_duration_since(Instant::now()).min(DRAIN_TICK));
                    if receiver.is_disconnected() && receiver.is_empty() {
                        break;
                    }
                    None
                }
            };
            // The channel is taken whole under the backlog's lock (flume swaps its queue
            // out: constant time, so a group commit queuing a change never waits behind
            // this idle-priority thread), and read after the lock is released.
            let (drained, since) = self.backlog.with(|state| (receiver.drain(), state.take()));
            let ops: Vec<IndexOp> = first.into_iter().chain(drained).collect();
            self.batch_since = since;
            let mut ops = ops.into_iter();
            let mut stop = false;
            while let Some(op) = ops.next() {
                self.applied += changes_in(&op);
                match op {
                    IndexOp::Insert(messages) => self.insert(&messages),
                    IndexOp::Upsert(message) => self.upsert(&message),
                    IndexOp::Remove { room, seq } => {
                        self.delete(&room, seq);
                        self.mark_pending();
                    }
                    IndexOp::RemoveRange { room, seqs } => {
                        // One term query per seq, like an edit's: a pass of the sweeper
                        // removes a bounded run.
                        for seq in seqs {
                            self.delete(&room, seq);
                        }
                        self.mark_pending();
                    }
                    IndexOp::Flush(reply) => {
                        let _ = reply.send(self.commit());
                    }
                    IndexOp::Rebuild { store, reply } => {
                        let rebuilt = self.rebuild(&store);
                        // A rebuild that read no message cannot have read one queued here.
                        if rebuilt.as_ref().is_ok_and(|&indexed| indexed > 0) {
                            self.upserted_inserts =
                                ops.len() + receiver.len() + INSERTS_UPSERTED_AFTER_REBUILD;
                        }
                        let _ = reply.send(rebuilt);
                    }
                    IndexOp::Shutdown => stop = true,
                }
            }
            self.batch_since = None;
            if stop {
                break;
            }
            let every = commit_every(self.config.commit_interval, self.backlog.lag());
            if self.pending_since.is_some_and(|since| since.elapsed() >= every) {
                self.commit_logged();
            }
        }
        self.finish();
    }

    /// The final commit; a clean one marks the index as not running.
    fn finish(mut self) {
        let clean = match self.commit() {
            Ok(()) => mark_running(&self.dir, false),
            Err(error) => Err(error),
        };
        if let Err(error) = clean {
            tracing::error!(%error, "search: the final commit failed; the index will be rebuilt at next open");
        }
    }

    fn mark_pending(&mut self) {
        self.pending_since.get_or_insert_with(Instant::now);
    }

    fn upsert(&mut self, message: &Message) {
        self.delete(&message.room, message.seq);
        if let Some(doc) = self.fields.document(message)
            && let Err(error) = self.writer.add_document(doc)
        {
            tracing::error!(%error, room = %message.room, seq = message.seq, "search: indexing a message failed");
        }
        self.mark_pending();
    }

    fn insert(&mut self, messages: &[Message]) {
        if self.upserted_inserts > 0 {
            self.upserted_inserts -= 1;
            messages.iter().for_each(|message| self.upsert(message));
            return;
        }
        self.adds.extend(messages.iter().filter_map(|m| self.fields.document(m)).map(UserOperation::Add));
        if self.adds.len() >= HANDOFF_BATCH {
            self.hand_off();
        }
        self.mark_pending();
    }

    /// Gives the buffered new documents to tantivy's indexing thread, as one batch (one
    /// wake-up of that thread instead of one per group commit). Done before any delete,
    /// which must come after them (tantivy orders operations as it receives them: an
    /// edit's delete sent before its message's add would miss it), and before a commit.
    fn hand_off(&mut self) {
        if self.adds.is_empty() {
            return;
        }
        let adds = std::mem::take(&mut self.adds);
        let count = adds.len();
        if let Err(error) = self.writer.run(adds) {
            tracing::error!(%error, messages = count, "search: indexing messages failed");
        }
    }

    fn delete(&mut self, room: &RoomId, seq: u64) {
        self.hand_off();
        if let Err(error) = self.writer.delete_query(self.fields.message_query(room, seq)) {
            tracing::error!(%error, %room, seq, "search: removing a message from the index failed");
        }
    }

    fn commit(&mut self) -> Result<(), SearchError> {
        self.hand_off();
        let committed =
            self.writer.commit().map_err(SearchError::from).and_then(|_| Ok(self.reader.reload()?));
        if let Err(error) = committed {
            // Still pending: the loop tries again one commit interval from now, whether
            // or not another change arrives.
            self.pending_since = Some(Instant::now());
            return Err(error);
        }
        self.pending_since = None;
        let (applied, rest_since) = (std::mem::take(&mut self.applied), self.batch_since);
        self.backlog.with(|state| state.searchable(applied, rest_since));
        Ok(())
    }

    fn commit_logged(&mut self) {
        if let Err(error) = self.commit() {
            tracing::error!(%error, "search: commit failed; the changes stay pending until the next commit");
        }
    }

    fn rebuild(&mut self, store: &Store) -> Result<u64, SearchError> {
        clear_version(&self.dir)?;
        self.hand_off();
        self.writer.delete_all_documents()?;
        let (mut indexed, mut since_commit) = (0u64, 0u64);
        let mut after: Option<(RoomId, u64)> = None;
        loop {
            let page = store.messages_after(after.as_ref().map(|(room, seq)| (room, *seq)), REBUILD_PAGE)?;
            let Some(last) = page.last() else { break };
            after = Some((last.room.clone(), last.seq));
            for message in &page {
                if let Some(doc) = self.fields.document(message) {
                    self.writer.add_document(doc)?;
                    indexed += 1;
                    since_commit += 1;
                }
            }
            if since_commit >= REBUILD_COMMIT_EVERY {
                self.commit()?;
                since_commit = 0;
            }
        }
        self.commit()?;
        write_version(&self.dir)?;
        tracing::info!(indexed, "search: index rebuilt from the message log");
        Ok(indexed)
    }
}
