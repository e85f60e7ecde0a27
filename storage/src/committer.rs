//! Group commit: one thread owns durable writes. Shards submit batches of writes with a
//! ticket; the thread folds everything that is pending into one atomic fjall batch and
//! one journal sync, then reports the whole group's tickets at once. While one sync runs,
//! the next group gathers, so the sync cost is shared by every concurrent writer.
//!
//! Every message append passes the log fence ([`SeqFence`]): it must take the seq right
//! after its room's last stored one. An owner whose earlier write was refused may still
//! have later seqs queued; the fence refuses them too, so a room's log never has a hole.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::StorageError;
use crate::store::{Durability, LogPart, Store};
use palaver_core::records::{SeqFence, Write};

/// Most writes folded into one batch; more wait for the next group.
const MAX_GROUP_WRITES: usize = 8_192;
/// The most rooms whose next seq the committer remembers between groups (~64 bytes
/// each); past it, it forgets them all and reads each again when next written.
const MAX_FENCED_ROOMS: usize = 100_000;
/// Under `Durability::Buffered`, the longest a write stays unsynced.
const BUFFERED_SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// After a transient storage failure, the first attempt to reopen the database waits
/// this long; each failed attempt doubles it, up to [`RECOVERY_MAX_BACKOFF`].
const RECOVERY_FIRST_BACKOFF: Duration = Duration::from_millis(100);
const RECOVERY_MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a recovery waits for readers of the old database to let go of it.
const RECOVERY_READER_WAIT: Duration = Duration::from_secs(2);

/// When the commit thread next tries to reopen a store that needs it.
struct Recovery {
    next_attempt: Option<Instant>,
    backoff: Duration,
}

impl Recovery {
    fn new() -> Self {
        Recovery { next_attempt: None, backoff: RECOVERY_FIRST_BACKOFF }
    }

    /// How long the thread may wait for work before it must try again (`None`: no
    /// recovery pending).
    fn wait(&mut self, store: &Store) -> Option<Duration> {
        if !store.needs_recovery() {
            *self = Recovery::new();
            return None;
        }
        let at = *self.next_attempt.get_or_insert_with(|| Instant::now() + self.backoff);
        Some(at.saturating_duration_since(Instant::now()))
    }

    /// Tries to reopen the store if it needs it and the time has come.
    fn attempt(&mut self, store: &Store) {
        if self.wait(store).is_some_and(|wait| wait.is_zero()) {
            if store.recover(RECOVERY_READER_WAIT) {
                *self = Recovery::new();
            } else {
                self.backoff = (self.backoff * 2).min(RECOVERY_MAX_BACKOFF);
                self.next_attempt = Some(Instant::now() + self.backoff);
            }
        }
    }
}

/// The outcome of one group, handed to the completion callback.
#[derive(Debug)]
pub struct CommitDone<T> {
    /// Every ticket of the group, in submission order.
    pub tickets: Vec<T>,
    /// `Ok` when the whole group is durable; the error otherwise (nothing of it is).
    pub result: Result<(), Arc<StorageError>>,
    /// The group's writes, in order (for followers of the log, like a search indexer).
    pub writes: Vec<Write>,
    /// When each ticket was submitted, in the order of `tickets`.
    pub submitted: Vec<Instant>,
    /// How long the group's write and sync took.
    pub duration: Duration,
}

enum Request<T> {
    Write {
        writes: Vec<Write>,
        ticket: T,
        submitted: Instant,
        /// The shared-log position the writes were decided on (see [`LogPart::seen`]).
        seen: Option<u64>,
    },
    /// Commit what is queued before this, sync, and stop.
    Stop,
}

/// The group-commit thread and the handle to submit to it.
pub struct GroupCommitter<T> {
    tx: flume::Sender<Request<T>>,
    thread: Option<JoinHandle<()>>,
}

impl<T> Clone for GroupCommitter<T> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone(), thread: None }
    }
}

impl<T: Send + 'static> GroupCommitter<T> {
    /// Starts the commit thread. `on_done` runs on that thread once per group.
    pub fn start(store: Arc<Store>, mut on_done: impl FnMut(CommitDone<T>) + Send + 'static) -> Self {
        let (tx, rx) = flume::unbounded::<Request<T>>();
        let thread = std::thread::Builder::new()
            .name("palaver-commit".into())
            .spawn(move || run(&store, &rx, &mut on_done))
            .ok();
        Self { tx, thread }
    }

    /// Submits writes; `ticket` comes back through `on_done` when they are durable.
    /// Refused only once the committer has shut down: the ticket comes back then, so its
    /// submitter can settle it ([`StorageError::Closed`]).
    pub fn submit(&self, writes: Vec<Write>, ticket: T) -> Result<(), T> {
        self.submit_seen(writes, None, ticket)
    }

    /// Submits writes decided on what this node's replica had applied of the shared log
    /// up to `seen`: in a cluster, a pair of users' writes are refused if another node
    /// changed the pair after that (see [`LogPart`]).
    pub fn submit_seen(&self, writes: Vec<Write>, seen: Option<u64>, ticket: T) -> Result<(), T> {
        let submitted = Instant::now();
        match self.tx.send(Request::Write { writes, ticket, submitted, seen }) {
            Ok(()) => Ok(()),
            Err(refused) => match refused.into_inner() {
                Request::Write { ticket, .. } => Err(ticket),
                // Not what was sent.
                Request::Stop => Ok(()),
            },
        }
    }

    /// Commits everything submitted before this call, syncs, stops the thread and waits
    /// for it. Later submissions (from clones) fail with `Closed`.
    pub fn shutdown(mut self) {
        let _ = self.tx.send(Request::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The submissions gathered for one group commit.
struct Group<T> {
    submitted: Vec<Vec<Write>>,
    seen: Vec<Option<u64>>,
    tickets: Vec<T>,
    submitted_at: Vec<Instant>,
    count: usize,
}

impl<T> Default for Group<T> {
    fn default() -> Self {
        Self {
            submitted: Vec::new(),
            seen: Vec::new(),
            tickets: Vec::new(),
            submitted_at: Vec::new(),
            count: 0,
        }
    }
}

impl<T> Group<T> {
    /// Adds a submission; `true` for a stop request.
    fn take(&mut self, request: Request<T>) -> bool {
        match request {
            Request::Write { writes, ticket, submitted, seen } => {
                self.count += writes.len();
                self.submitted.push(writes);
                self.seen.push(seen);
                self.tickets.push(ticket);
                self.submitted_at.push(submitted);
                false
            }
            Request::Stop => true,
        }
    }
}

/// One run of submissions with the same outcome, in submission order: admitted ones
/// together, each refused one alone (with why).
struct Run<T> {
    tickets: Vec<T>,
    submitted: Vec<Instant>,
    writes: Vec<Write>,
    refused: Option<Arc<StorageError>>,
}

/// Commits one group: the submissions the log fence admits go into one atomic batch
/// (their writes moved into one vector of the right size: growing it submission by
/// submission reallocated, and zeroed fresh pages for, every large group); the others
/// are refused [`StorageError::OutOfOrder`] without touching storage. In a cluster the
/// admitted writes go to the shared log first, each room's as one record under that
/// room's fence ([`Store::replicate_parts`]); a room whose record the log did not take
/// is refused alone, and the rest applied. Reports every ticket in submission order.
fn commit_group<T>(
    store: &Store,
    group: Group<T>,
    fence: &mut SeqFence,
    on_done: &mut impl FnMut(CommitDone<T>),
) -> bool {
    let Group { submitted, seen, tickets, submitted_at, count } = group;
    let mut verdicts: Vec<Result<(), Arc<StorageError>>> = Vec::with_capacity(submitted.len());
    // Writes that follow a refused one (a hole) come in runs: one line per group.
    let mut holes = 0usize;
    for writes in &submitted {
        match fence.admit(writes, |room| store.last_seq(room)) {
            Ok(Ok(())) => verdicts.push(Ok(())),
            Ok(Err(gap)) => {
                if holes == 0 {
                    tracing::warn!("refused a write that would leave a hole in a room's log: {gap}");
                }
                holes += 1;
                verdicts.push(Err(Arc::new(StorageError::OutOfOrder(gap))));
            }
            // Storage cannot even be read: the whole group fails as its apply would.
            Err(e) => {
                *fence = SeqFence::new();
                let duration = std::time::Duration::ZERO;
                on_done(CommitDone {
                    tickets,
                    result: Err(Arc::new(e)),
                    writes: Vec::new(),
                    submitted: submitted_at,
                    duration,
                });
                return true;
            }
        }
    }
    if holes > 1 {
        tracing::warn!(refused = holes, "refused the writes that followed a refused one in this group");
    }
    let positions =
        if store.replicates() { log_rooms(store, &submitted, &seen, &mut verdicts) } else { Vec::new() };
    let mut batch = Vec::with_capacity(count);
    let mut sizes = Vec::with_capacity(submitted.len());
    for (writes, verdict) in submitted.into_iter().zip(&verdicts) {
        sizes.push(writes.len());
        if verdict.is_ok() {
            batch.extend(writes);
        }
    }
    let applied = !batch.is_empty();
    let started = Instant::now();
    let result = match (applied, store.replicates()) {
        (false, _) => Ok(()),
        (true, false) => store.apply(&batch).map_err(Arc::new),
        (true, true) => store.apply_logged(&batch, &positions).map_err(Arc::new),
    };
    let duration = started.elapsed();
    if result.is_err() || store.replicates() {
        // What the fence admitted may not be stored (or, in a cluster, another node's
        // writes arrive besides ours): the next group reads the rooms' seqs again.
        *fence = SeqFence::new();
    }
    // Split the batch back into runs of consecutive tickets with one outcome.
    let mut runs: Vec<Run<T>> = Vec::new();
    let mut rest = batch.into_iter();
    for (((ticket, at), verdict), size) in tickets.into_iter().zip(submitted_at).zip(verdicts).zip(sizes) {
        match verdict {
            Ok(()) => {
                if runs.last().is_none_or(|run| run.refused.is_some()) {
                    runs.push(Run {
                        tickets: Vec::new(),
                        submitted: Vec::new(),
                        writes: Vec::new(),
                        refused: None,
                    });
                }
                if let Some(run) = runs.last_mut() {
                    run.tickets.push(ticket);
                    run.submitted.push(at);
                    run.writes.extend(rest.by_ref().take(size));
                }
            }
            Err(why) => runs.push(Run {
                tickets: vec![ticket],
                submitted: vec![at],
                writes: Vec::new(),
                refused: Some(why),
            }),
        }
    }
    for Run { tickets, submitted, writes, refused } in runs {
        let result = match refused {
            None => result.clone(),
            Some(why) => Err(why),
        };
        on_done(CommitDone { tickets, result, writes, submitted, duration });
    }
    applied && result.is_ok()
}

/// A cluster node's group: the admitted submissions go to the shared log, one part per
/// room (a submission whose writes belong to one room joins that room's part; the
/// others share one part), before anything is applied. A part the log did not take
/// refuses its submissions. Returns the positions of the parts it took.
fn log_rooms(
    store: &Store,
    submitted: &[Vec<Write>],
    seen: &[Option<u64>],
    verdicts: &mut [Result<(), Arc<StorageError>>],
) -> Vec<u64> {
    if let Err(e) = store.writable() {
        let e = Arc::new(e);
        for verdict in verdicts.iter_mut().filter(|v| v.is_ok()) {
            *verdict = Err(e.clone());
        }
        spoil_refused(store, submitted, verdicts);
        return Vec::new();
    }
    // A room's submissions after a refused one were decided by the memory that made the
    // refused one: they go nowhere either (on one node the hole they follow refuses them;
    // here another node may have filled it).
    let mut refused_rooms = std::collections::HashSet::new();
    for (writes, verdict) in submitted.iter().zip(verdicts.iter_mut()) {
        let Some(room) = Write::single_room(writes) else { continue };
        match verdict {
            Err(_) => {
                refused_rooms.insert(room);
            }
            Ok(()) if refused_rooms.contains(room) => {
                *verdict = Err(Arc::new(StorageError::NotLogged(format!(
                    "{room}: an earlier write of the room was refused"
                ))));
            }
            Ok(()) => {}
        }
    }
    let mut parts: Vec<LogPart<'_>> = Vec::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    let mut part_of = std::collections::HashMap::new();
    for (i, writes) in submitted.iter().enumerate().filter(|(i, _)| verdicts[*i].is_ok()) {
        let room = Write::single_room(writes);
        // A pair's writes are fenced only when their decision said what it had seen.
        let pair = if room.is_none() && seen[i].is_some() { Write::single_pair(writes) } else { None };
        let at = *part_of.entry((room, pair)).or_insert_with(|| {
            parts.push(LogPart { room, pair, seen: None, writes: Vec::new() });
            members.push(Vec::new());
            parts.len() - 1
        });
        let part = &mut parts[at];
        if let (Some(_), Some(decided_on)) = (pair, seen[i]) {
            part.seen = Some(part.seen.map_or(decided_on, |earliest| earliest.min(decided_on)));
        }
        part.writes.extend(writes.iter());
        members[at].push(i);
    }
    let mut positions = Vec::with_capacity(parts.len());
    for (outcome, members) in store.replicate_parts(&parts).into_iter().zip(members) {
        match outcome {
            Ok(position) => positions.push(position),
            Err(e) => {
                let e = Arc::new(e);
                for i in members {
                    verdicts[i] = Err(e.clone());
                }
            }
        }
    }
    spoil_refused(store, submitted, verdicts);
    positions
}

/// Every room with a refused submission in this group is spoiled for the log until its
/// owner reloads: its later writes, already queued, followed the refused one.
fn spoil_refused(store: &Store, submitted: &[Vec<Write>], verdicts: &[Result<(), Arc<StorageError>>]) {
    for (writes, _) in submitted.iter().zip(verdicts).filter(|(_, v)| v.is_err()) {
        if let Some(room) = Write::single_room(writes) {
            store.refused_room(room);
        }
    }
}

/// The seq fence kept from group to group: on one node the committer is the only writer
/// of messages, so a room's next seq is known after its first read from storage (that
/// read, a reverse scan over every table of the room, was a tenth of the server's CPU
/// under durable sends). Forgotten whenever what it admitted may not be what storage
/// holds: the store was reopened (recovery reads the journal back, and under
/// `Durability::Buffered` unsynced groups may be gone), a sync failed, or it grew past
/// `MAX_FENCED_ROOMS`.
struct KeptFence {
    fence: SeqFence,
    /// `Store::reopens` when the fence started.
    reopens: u64,
}

impl KeptFence {
    fn new(reopens: u64) -> Self {
        Self { fence: SeqFence::new(), reopens }
    }

    /// The fence for the next group, given the store's `Store::reopens` now.
    fn for_group(&mut self, reopens: u64) -> &mut SeqFence {
        if reopens != self.reopens || self.fence.rooms() > MAX_FENCED_ROOMS {
            *self = Self::new(reopens);
        }
        &mut self.fence
    }

    fn forget(&mut self) {
        self.fence = SeqFence::new();
    }
}

fn run<T>(store: &Store, rx: &flume::Receiver<Request<T>>, on_done: &mut impl FnMut(CommitDone<T>)) {
    let buffered = store.durability() == Durability::Buffered;
    let mut unsynced_since: Option<Instant> = None;
    let mut recovery = Recovery::new();
    let mut fence = KeptFence::new(store.reopens());
    loop {
        recovery.attempt(store);
        let sync_wait = unsynced_since
            .filter(|_| buffered)
            .map(|since| BUFFERED_SYNC_INTERVAL.saturating_sub(since.elapsed()));
        let wait = match (sync_wait, recovery.wait(store)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let first = if let Some(wait) = wait {
            match rx.recv_timeout(wait) {
                Ok(request) => Some(request),
                Err(flume::RecvTimeoutError::Timeout) => None,
                Err(flume::RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(request) => Some(request),
                Err(_) => break,
            }
        };
        let mut stop = false;
        if let Some(first) = first {
            let mut group = Group::default();
            stop = group.take(first);
            while !stop && group.count < MAX_GROUP_WRITES {
                match rx.try_recv() {
                    Ok(request) => stop = group.take(request),
                    Err(_) => break,
                }
            }
            if group.tickets.is_empty() {
                break;
            }
            let wrote = commit_group(store, group, fence.for_group(store.reopens()), on_done);
            if wrote && buffered && unsynced_since.is_none() {
                unsynced_since = Some(Instant::now());
            }
        }
        if stop {
            break;
        }
        if let Some(since) = unsynced_since
            && since.elapsed() >= BUFFERED_SYNC_INTERVAL
        {
            if let Err(e) = store.sync() {
                tracing::error!("background sync failed: {e}");
                // The unsynced groups may be lost when the store is reopened.
                fence.forget();
            }
            unsynced_since = None;
        }
    }
    if let Err(e) = store.sync() {
        tracing::error!("final sync failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palaver_protocol::{ClientMsgId, Message, MessageKind, RoomId, UserId};

    fn message(room: &RoomId, seq: u64) -> Message {
        Message {
            room: room.clone(),
            seq,
            ts: 1_000 + seq,
            sender: UserId::parse("u_alice").unwrap(),
            cid: ClientMsgId::parse(&format!("c{seq}")).unwrap(),
            kind: MessageKind::Text,
            text: format!("message {seq}"),
            client_ts: None,
            reactions: Vec::new(),
            reply_to: None,
            reply: None,
            mentions: Vec::new(),
            file: None,
            edited_at: None,
            deleted: false,
            system: None,
            blocked: false,
            encryption: None,
            mention_all: None,
            forward: None,
            also_to_room: false,
            thread: None,
            thread_summary: None,
        }
    }

    #[test]
    fn the_kept_fence_is_forgotten_when_the_store_is_reopened_or_a_sync_fails() {
        let room = RoomId::parse("r_fence").unwrap();
        let stored = |_: &RoomId| Ok::<u64, ()>(4);
        let mut kept = KeptFence::new(0);
        let fence = kept.for_group(0);
        assert_eq!(fence.admit(&[Write::AppendMessage(message(&room, 5))], stored), Ok(Ok(())));
        assert_eq!(kept.for_group(0).rooms(), 1, "kept while nothing changed");
        // Recovery reopened the store: under Buffered, seq 5 may be gone, so 5 again is next.
        let fence = kept.for_group(1);
        assert_eq!(fence.rooms(), 0);
        assert_eq!(fence.admit(&[Write::AppendMessage(message(&room, 5))], stored), Ok(Ok(())));
        kept.forget();
        assert_eq!(kept.for_group(1).rooms(), 0, "a failed sync forgets it too");
    }

    #[test]
    fn concurrent_submissions_share_groups_and_all_become_durable() {
        let dir = tempfile::tempdir().unwrap();
        let room = RoomId::parse("r_one").unwrap();
        {
            let store = Arc::new(Store::open(dir.path(), Durability::Fsync).unwrap());
            let (done_tx, done_rx) = flume::unbounded();
            let committer = GroupCommitter::start(store.clone(), move |done: CommitDone<u64>| {
                assert!(done.result.is_ok());
                for t in done.tickets {
                    done_tx.send(t).unwrap();
                }
            });
            for seq in 1..=500 {
                committer.submit(vec![Write::AppendMessage(message(&room, seq))], seq).unwrap();
            }
            let mut acked: Vec<u64> = (0..500).map(|_| done_rx.recv().unwrap()).collect();
            acked.sort_unstable();
            assert_eq!(acked, (1..=500).collect::<Vec<_>>());
            committer.shutdown();
        }
        let store = Store::open(dir.path(), Durability::Fsync).unwrap();
        assert_eq!(store.last_seq(&room).unwrap(), 500);
        let page = store.messages_before(&room, Some(101), 3).unwrap();
        assert_eq!(page.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![100, 99, 98]);
        assert_eq!(page[0], message(&room, 100));
        let replay = store.messages_between(&room, 498, 600, 10).unwrap();
        assert_eq!(replay.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![498, 499, 500]);
        assert_eq!(
            store
                .cid_seq(&room, &UserId::parse("u_alice").unwrap(), &ClientMsgId::parse("c7").unwrap())
                .unwrap(),
            Some((7, 1_007))
        );
    }

    #[test]
    fn an_append_that_would_leave_a_hole_is_refused_alone_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (RoomId::parse("r_a").unwrap(), RoomId::parse("r_b").unwrap());
        let store = Arc::new(Store::open(dir.path(), Durability::Fsync).unwrap());
        let (done_tx, done_rx) = flume::unbounded();
        let committer = GroupCommitter::start(store.clone(), move |done: CommitDone<&'static str>| {
            let ok = done.result.is_ok();
            for t in done.tickets {
                done_tx.send((t, ok)).unwrap();
            }
        });
        let append = |room: &RoomId, seq| vec![Write::AppendMessage(message(room, seq))];
        // Room a's seq 2 was refused (never submitted here): 3 must not land after 1.
        committer.submit(append(&a, 1), "a1").unwrap();
        committer.submit(append(&a, 3), "a3").unwrap();
        committer.submit(append(&b, 1), "b1").unwrap();
        committer.submit(append(&a, 2), "a2").unwrap();
        let outcomes: Vec<_> = (0..4).map(|_| done_rx.recv().unwrap()).collect();
        assert_eq!(outcomes, vec![("a1", true), ("a3", false), ("b1", true), ("a2", true)]);
        committer.shutdown();
        assert_eq!(store.last_seq(&a).unwrap(), 2);
        assert_eq!(store.last_seq(&b).unwrap(), 1);
    }

    /// A shared log that takes every part except those of `refuse`, at positions from 1,
    /// and remembers what it was given.
    struct ScriptedLog {
        refuse: RoomId,
        parts: std::sync::Mutex<Vec<(Option<RoomId>, usize)>>,
        spoiled: std::sync::Mutex<Vec<RoomId>>,
    }

    impl crate::Replicator for ScriptedLog {
        fn replicate(&self, _: &[Write]) -> Result<u64, StorageError> {
            Ok(1)
        }

        fn applied_locally(&self, _: u64) {}

        fn replicate_parts(
            &self,
            parts: &[LogPart<'_>],
            _: &dyn Fn(&RoomId) -> Result<u64, StorageError>,
        ) -> Vec<Result<u64, StorageError>> {
            let mut given = self.parts.lock().unwrap();
            parts
                .iter()
                .map(|part| {
                    given.push((part.room.cloned(), part.writes.len()));
                    if part.room == Some(&self.refuse) {
                        Err(StorageError::NotLogged("another node owns it".into()))
                    } else {
                        Ok(given.len() as u64)
                    }
                })
                .collect()
        }

        fn refused(&self, room: &RoomId) {
            self.spoiled.lock().unwrap().push(room.clone());
        }
    }

    #[test]
    fn in_a_cluster_each_room_is_one_record_and_a_refused_room_is_refused_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) =
            (RoomId::parse("r_a").unwrap(), RoomId::parse("r_b").unwrap(), RoomId::parse("r_c").unwrap());
        let store = Arc::new(Store::open(dir.path(), Durability::Fsync).unwrap());
        let log = Arc::new(ScriptedLog {
            refuse: b.clone(),
            parts: std::sync::Mutex::default(),
            spoiled: std::sync::Mutex::default(),
        });
        assert!(store.set_replicator(log.clone()));
        let append = |room: &RoomId, seq| vec![Write::AppendMessage(message(room, seq))];
        let mut group = Group::default();
        for (writes, ticket) in [
            (append(&a, 1), "a1"),
            (append(&b, 1), "b1"),
            (append(&a, 2), "a2"),
            // c's seq 2 follows a hole: refused, and so is c's next write in the group.
            (append(&c, 2), "c2"),
            (append(&c, 1), "c1"),
        ] {
            group.take(Request::Write { writes, ticket, submitted: Instant::now(), seen: None });
        }
        let mut outcomes = Vec::new();
        commit_group(&store, group, &mut SeqFence::new(), &mut |done: CommitDone<&'static str>| {
            for t in done.tickets {
                outcomes.push((t, done.result.is_ok()));
            }
        });
        assert_eq!(outcomes, vec![("a1", true), ("b1", false), ("a2", true), ("c2", false), ("c1", false)]);
        assert_eq!(
            *log.parts.lock().unwrap(),
            vec![(Some(a.clone()), 2), (Some(b.clone()), 1)],
            "one record per room: a's two writes together; c's never sent"
        );
        assert_eq!((store.last_seq(&a).unwrap(), store.last_seq(&b).unwrap()), (2, 0));
        assert_eq!(store.last_seq(&c).unwrap(), 0);
        let mut spoiled = log.spoiled.lock().unwrap().clone();
        spoiled.sort();
        spoiled.dedup();
        assert_eq!(spoiled, vec![b, c], "refused rooms wait for their owner to reload");
    }

    #[test]
    fn outbound_deliveries_stay_on_the_node_that_queued_them() {
        use palaver_core::outbound::{OutboundDelivery, OutboundKind};
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (RoomId::parse("r_a").unwrap(), RoomId::parse("r_b").unwrap());
        let store = Arc::new(Store::open(dir.path(), Durability::Fsync).unwrap());
        let log = Arc::new(ScriptedLog {
            refuse: b.clone(),
            parts: std::sync::Mutex::default(),
            spoiled: std::sync::Mutex::default(),
        });
        assert!(store.set_replicator(log.clone()));
        let delivery = |room: &RoomId, id: &str| {
            Write::PutOutbound(OutboundDelivery {
                kind: OutboundKind::Webhook,
                destination: "wh_1".into(),
                id: id.into(),
                room: Some(room.clone()),
                body: "{}".into(),
                attempts: 0,
                next_at_ms: 0,
                created_ms: 0,
            })
        };
        let mut group = Group::default();
        for (writes, ticket) in [
            (vec![Write::AppendMessage(message(&a, 1)), delivery(&a, "msg_a")], "a1"),
            (vec![Write::AppendMessage(message(&b, 1)), delivery(&b, "msg_b")], "b1"),
        ] {
            group.take(Request::Write { writes, ticket, submitted: Instant::now(), seen: None });
        }
        commit_group(&store, group, &mut SeqFence::new(), &mut |_: CommitDone<&'static str>| {});
        assert_eq!(
            *log.parts.lock().unwrap(),
            vec![(Some(a.clone()), 1), (Some(b.clone()), 1)],
            "the log gets each room's message, never its deliveries"
        );
        let queued: Vec<String> = store.outbound_pending().unwrap().into_iter().map(|d| d.id).collect();
        assert_eq!(queued, ["msg_a"], "queued with its event; a refused event queues nothing");
        // Another node's records never queue anything here.
        store.apply_replicated(&[delivery(&a, "msg_elsewhere")], 7).unwrap();
        assert_eq!(store.outbound_pending().unwrap().len(), 1);
    }
}
