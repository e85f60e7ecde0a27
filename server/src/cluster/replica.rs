//! The two ends of the cluster log on this node: [`LogPublisher`] hands the writes this
//! node originates to the log (the store calls it before applying them), and the
//! replica thread applies every other node's records in log order.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use palaver_core::log_fence::{Plan, check_claim};
use palaver_core::replica_check::{AppendCheck, Fit};
use palaver_protocol::{RoomId, UserId};
use palaver_search::{IndexFeed, IndexOp};
use palaver_storage::{LogPart, Replicator, StorageError, Store, Write};

use super::Cluster;
use super::service::{PublishFailure, ServiceCmd};
use super::wire::{self, LogRecord};
use crate::mesh::{Mesh, ShardMsg};

/// Longest a write waits for the log's acknowledgement.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// Most log records applied as one batch.
const MAX_APPLY_BATCH: usize = 512;

/// Longest a claim waits for this node's replica to reach the room's last record.
const CLAIM_CATCH_UP: Duration = Duration::from_millis(500);

/// Longest the replica waits for this node's own write to be applied here before it
/// applies it from the log itself.
const OWN_WRITE_WAIT: Duration = Duration::from_secs(10);

/// Publishes this node's writes to the cluster log (through the cluster thread).
pub struct LogPublisher {
    pub cluster: Arc<Cluster>,
    pub to_service: flume::Sender<ServiceCmd>,
}

#[derive(serde::Serialize)]
struct LogRecordOut<'a, W: serde::Serialize> {
    format: u32,
    node: &'a str,
    incarnation: u64,
    writes: &'a [W],
    /// An ownership epoch: the node claims the room whose subject this is.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    claim: bool,
    serial: u64,
}

/// A record handed to the cluster thread: its serial, and its outcome to come.
struct Pending {
    serial: u64,
    outcome: flume::Receiver<Result<u64, PublishFailure>>,
}

impl Pending {
    /// The record's outcome by `deadline`. One whose outcome stays unknown is abandoned:
    /// if the log has it, the replica applies it from there.
    fn wait(self, cluster: &Cluster, deadline: Instant) -> Result<u64, PublishFailure> {
        let outcome = match self.outcome.recv_deadline(deadline) {
            Ok(outcome) => outcome,
            Err(_) => Err(PublishFailure::Unknown("no acknowledgement from the cluster log".into())),
        };
        if matches!(outcome, Err(PublishFailure::Unknown(_))) {
            cluster
                .own_abandoned
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(self.serial);
        }
        outcome
    }
}

impl LogPublisher {
    /// Hands a record to the cluster thread: appended on `subject` after the subject's
    /// record at `expected` (if given).
    fn send<W: serde::Serialize>(
        &self,
        subject: String,
        writes: &[W],
        claim: bool,
        expected: Option<u64>,
    ) -> Result<Pending, StorageError> {
        let cluster = &self.cluster;
        let serial = cluster.next_serial.fetch_add(1, Ordering::Relaxed);
        let record = LogRecordOut {
            format: wire::LOG_FORMAT,
            node: &cluster.node,
            incarnation: cluster.incarnation,
            writes,
            claim,
            serial,
        };
        let payload = serde_json::to_vec(&record).map_err(|e| StorageError::NotLogged(e.to_string()))?;
        let (done, outcome) = flume::bounded(1);
        self.to_service
            .send(ServiceCmd::Publish { subject, payload, expected, done })
            .map_err(|_| StorageError::NotLogged("the cluster thread has stopped".into()))?;
        Ok(Pending { serial, outcome })
    }

    /// The position of `subject`'s last record, from the broker.
    fn last_on_subject(&self, subject: String) -> Result<u64, StorageError> {
        let (done, last) = flume::bounded(1);
        self.to_service
            .send(ServiceCmd::LastOnSubject { subject, done })
            .map_err(|_| StorageError::NotLogged("the cluster thread has stopped".into()))?;
        match last.recv_timeout(PUBLISH_TIMEOUT) {
            Ok(Ok(last)) => Ok(last),
            Ok(Err(e)) => Err(StorageError::NotLogged(format!("cannot read the room's log: {e}"))),
            Err(_) => Err(StorageError::NotLogged("no answer from the cluster log".into())),
        }
    }

    /// Where a change of a pair of users, decided on what this replica had applied up
    /// to `seen`, may be appended: after the pair's last record, provided no other node
    /// wrote the pair after what the decision saw (the last record is older, or it is
    /// this node's own last change of the pair, which the decision saw in storage or in
    /// flight). Otherwise the change was decided on an old state and is refused: the
    /// client retries on the state that now includes the other node's change.
    fn pair_fence(&self, lower: &UserId, higher: &UserId, seen: u64) -> Result<u64, StorageError> {
        let log_last = self.last_on_subject(wire::log_of_pair(lower, higher))?;
        if log_last <= seen || self.cluster.own_pair_last_is(lower, higher, log_last) {
            Ok(log_last)
        } else {
            self.cluster.fenced_writes.fetch_add(1, Ordering::Relaxed);
            Err(StorageError::NotLogged(format!(
                "{lower} and {higher} changed on another node since this change was decided; try again"
            )))
        }
    }

    /// Claims `room` for this node: once this replica holds every record of the room's
    /// subject (waiting briefly for it) and `first_seq` follows the stored log, a claim
    /// record is appended right after the subject's last. Returns its position.
    fn claim(
        &self,
        room: &RoomId,
        first_seq: Option<u64>,
        last_seq: &dyn Fn(&RoomId) -> Result<u64, StorageError>,
    ) -> Result<u64, StorageError> {
        let cluster = &self.cluster;
        let subject = wire::log_of_room(room);
        let log_last = self.last_on_subject(subject.clone())?;
        let deadline = Instant::now() + CLAIM_CATCH_UP;
        while cluster.log_position.load(Ordering::Acquire) < log_last && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let applied = cluster.log_position.load(Ordering::Acquire);
        check_claim(room, log_last, applied, first_seq, || last_seq(room))?
            .map_err(|refusal| StorageError::NotLogged(refusal.to_string()))?;
        let pending = self.send::<Write>(subject, &[], true, Some(log_last))?;
        match pending.wait(cluster, Instant::now() + PUBLISH_TIMEOUT) {
            Ok(position) => {
                cluster.fence().claimed(room, position);
                cluster.claims.fetch_add(1, Ordering::Relaxed);
                // A claim holds no write: nothing to wait for before the replica passes it.
                self.applied_locally(position);
                tracing::debug!(room = %room, position, "claimed the room in the cluster log");
                Ok(position)
            }
            Err(PublishFailure::WrongLast) => {
                cluster.fence().refused(room, cluster.now_ms());
                cluster.fenced_writes.fetch_add(1, Ordering::Relaxed);
                Err(StorageError::NotLogged(format!(
                    "{room}: another node wrote the room while this node claimed it"
                )))
            }
            // The claim may have landed; the write itself was never sent.
            Err(PublishFailure::Unknown(e)) => {
                cluster.fence().unknown(room);
                Err(StorageError::NotLogged(format!("claiming {room}: {e}")))
            }
        }
    }
}

impl Replicator for LogPublisher {
    fn replicate(&self, writes: &[Write]) -> Result<u64, StorageError> {
        let node = &self.cluster.node;
        let (subject, expected) = match writes {
            [Write::PutUser(user)] => (wire::log_of_username(user.username.as_str()), Some(0)),
            _ => (wire::log_of_node(node), None),
        };
        let pending = self.send(subject, writes, false, expected)?;
        match pending.wait(&self.cluster, Instant::now() + PUBLISH_TIMEOUT) {
            Ok(position) => Ok(position),
            Err(PublishFailure::WrongLast) => Err(StorageError::UsernameTaken),
            Err(PublishFailure::Unknown(e)) => Err(StorageError::Replication(e)),
        }
    }

    fn applied_locally(&self, position: u64) {
        let mut applied = self.cluster.own_applied.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        applied.insert(position);
    }

    fn refused(&self, room: &RoomId) {
        self.cluster.fence().spoil(room);
    }

    fn replicate_parts(
        &self,
        parts: &[LogPart<'_>],
        last_seq: &dyn Fn(&RoomId) -> Result<u64, StorageError>,
    ) -> Vec<Result<u64, StorageError>> {
        let cluster = &self.cluster;
        let now = cluster.now_ms();
        // Each room's plan: append after this node's last record, or claim it first. The
        // claims come before any of this group's records is sent: a claim waits for this
        // replica, which waits for this node's own records to be applied here.
        let expected: Vec<Result<Option<u64>, StorageError>> = parts
            .iter()
            .map(|part| {
                if let (Some((lower, higher)), Some(seen)) = (part.pair, part.seen) {
                    return self.pair_fence(lower, higher, seen).map(Some);
                }
                let Some(room) = part.room else { return Ok(None) };
                let plan = cluster.fence().plan(room, now);
                match plan {
                    Ok(Plan::Append { expected }) => Ok(Some(expected)),
                    Ok(Plan::Claim) => {
                        let first_seq = part.writes.iter().find_map(|w| match w {
                            Write::AppendMessage(m) => Some(m.seq),
                            _ => None,
                        });
                        self.claim(room, first_seq, last_seq).map(Some)
                    }
                    Err(refusal) => Err(StorageError::NotLogged(refusal.to_string())),
                }
            })
            .collect();
        let sent: Vec<Result<Pending, StorageError>> = parts
            .iter()
            .zip(expected)
            .map(|(part, expected)| {
                let expected = expected?;
                let subject = match (part.room, part.pair) {
                    (Some(room), _) => wire::log_of_room(room),
                    (None, Some((lower, higher))) if part.seen.is_some() => wire::log_of_pair(lower, higher),
                    _ => wire::log_of_node(&cluster.node),
                };
                self.send(subject, &part.writes, false, expected)
            })
            .collect();
        // Every record is on its way; their acknowledgements come back in any order.
        let deadline = Instant::now() + PUBLISH_TIMEOUT;
        parts
            .iter()
            .zip(sent)
            .map(|(part, sent)| {
                let outcome = sent?.wait(cluster, deadline);
                if let (None, Some((lower, higher)), Some(_)) = (part.room, part.pair, part.seen) {
                    return match outcome {
                        Ok(position) => {
                            cluster.own_pair_last(lower, higher, Some(position));
                            Ok(position)
                        }
                        Err(PublishFailure::WrongLast) => {
                            cluster.fenced_writes.fetch_add(1, Ordering::Relaxed);
                            Err(StorageError::NotLogged(format!(
                                "another node changed {lower} and {higher} at the same moment; try again"
                            )))
                        }
                        Err(PublishFailure::Unknown(e)) => {
                            cluster.own_pair_last(lower, higher, None);
                            Err(StorageError::Replication(e))
                        }
                    };
                }
                let Some(room) = part.room else {
                    return match outcome {
                        Ok(position) => Ok(position),
                        Err(PublishFailure::WrongLast) => {
                            Err(StorageError::NotLogged("refused by the cluster log".into()))
                        }
                        Err(PublishFailure::Unknown(e)) => Err(StorageError::Replication(e)),
                    };
                };
                match outcome {
                    Ok(position) => {
                        cluster.fence().appended(room, position);
                        Ok(position)
                    }
                    Err(PublishFailure::WrongLast) => {
                        cluster.fence().refused(room, cluster.now_ms());
                        cluster.fenced_writes.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(room = %room, "the cluster log refused this node's write: another node owns the room now");
                        Err(StorageError::NotLogged(format!("{room}: another node owns the room now")))
                    }
                    Err(PublishFailure::Unknown(e)) => {
                        cluster.fence().unknown(room);
                        Err(StorageError::Replication(e))
                    }
                }
            })
            .collect()
    }
}

/// Waits until this node's own record at `position` is applied here (see
/// [`Replicator::applied_locally`]); false if it never was (it is then applied from
/// the log like another node's).
fn own_write_applied(cluster: &Cluster, store: &Store, position: u64, serial: u64) -> bool {
    let deadline = std::time::Instant::now() + OWN_WRITE_WAIT;
    loop {
        {
            let mut applied = cluster.own_applied.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if applied.remove(&position) {
                // Anything below was either applied or will never be (a failed write).
                applied.retain(|p| *p > position);
                return true;
            }
        }
        // Its publisher gave up waiting for the log's answer: it was never applied here.
        if serial != 0
            && cluster.own_abandoned.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&serial)
        {
            return false;
        }
        if store.is_poisoned() || std::time::Instant::now() > deadline {
            tracing::warn!(
                position,
                "this node's own log record was not applied here; applying it from the log"
            );
            return false;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Applies other nodes' log records to this node's store, in log order, in batches;
/// then tells each room's local hub about the messages (so subscribers here get them
/// only once this replica has them) and feeds the search index.
pub fn run_replica(
    records: flume::Receiver<(u64, bytes::Bytes)>,
    store: Arc<Store>,
    mesh: Mesh,
    cluster: Arc<Cluster>,
    index_feed: Option<IndexFeed>,
) {
    let mut stored_position = store.log_position().unwrap_or(0);
    while let Ok(first) = records.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_APPLY_BATCH
            && let Ok(next) = records.try_recv()
        {
            batch.push(next);
        }
        let mut position = batch.first().map_or(0, |(p, _)| p.saturating_sub(1));
        let mut writes = Vec::new();
        let mut applied = 0u64;
        let mut halted = false;
        let mut check = AppendCheck::new();
        let mut diverged: Vec<RoomId> = Vec::new();
        for (at, payload) in &batch {
            match serde_json::from_slice::<LogRecord>(payload) {
                // A record this build cannot read stops replication where it is: skipping
                // it would leave this replica different from the others for good.
                Ok(r) if r.format > wire::LOG_FORMAT => {
                    tracing::error!(
                        position = at,
                        format = r.format,
                        "the cluster log holds a record of a newer format: replication stops here until this node is upgraded"
                    );
                    halted = true;
                }
                Err(e) => {
                    tracing::error!(
                        position = at,
                        "undecodable cluster log record: {e}; replication stops here"
                    );
                    halted = true;
                }
                // This process applies its own records itself, right after the log took
                // them; the position recorded below must not pass one before that.
                Ok(r)
                    if r.node == cluster.node
                        && r.incarnation == cluster.incarnation
                        && own_write_applied(&cluster, &store, *at, r.serial) => {}
                Ok(r) => {
                    applied += 1;
                    // Each message must continue its room as stored here, or repeat it.
                    for write in &r.writes {
                        let Write::AppendMessage(message) = write else { continue };
                        if diverged.contains(&message.room) {
                            continue;
                        }
                        let fit = check.fit(
                            message,
                            || store.last_seq(&message.room),
                            |seq| {
                                let held = store.message(&message.room, seq)?;
                                Ok::<_, StorageError>(held.map(|m| (m.sender, m.cid)))
                            },
                        );
                        if let Ok(Fit::Diverged { seq, expected }) = fit {
                            tracing::error!(
                                room = %message.room,
                                seq,
                                expected,
                                position = at,
                                "this replica differs from the cluster log for the room; rebuilding it from the log"
                            );
                            diverged.push(message.room.clone());
                        }
                    }
                    writes.extend(r.writes);
                }
            }
            if halted {
                break;
            }
            position = *at;
        }
        // A diverged room's writes are not applied over what it holds: it is rebuilt
        // below from the log, these included.
        if !diverged.is_empty() {
            writes.retain(|w| w.room().is_none_or(|room| !diverged.contains(room)));
        }
        // The position is stored even for a batch of this node's own records (applied
        // already): a backup of this store then says where in the log it stands.
        if position > stored_position {
            // A replica that cannot apply stays where it is (and so never takes over a
            // room it has not caught up with); it retries, for a disk that fills and
            // frees again.
            while let Err(e) = store.apply_replicated(&writes, position) {
                tracing::error!("cannot apply the cluster log at {position}: {e}; retrying");
                std::thread::sleep(Duration::from_secs(1));
            }
            stored_position = position;
        }
        cluster.log_position.store(position, Ordering::Release);
        cluster.applied_records.fetch_add(applied, Ordering::Relaxed);
        if let Some(feed) = &index_feed {
            let messages =
                writes.iter().filter(|w| matches!(w, Write::AppendMessage(_) | Write::ReplaceMessage(_)));
            for change in palaver_search::changes_of(messages.cloned()) {
                let _ = feed.send(change);
            }
        }
        // Logins ended on another node: this node's sockets of them close too.
        for end in writes.iter().filter_map(palaver_core::logins::SessionEnd::of_write) {
            let end = Arc::new(end);
            mesh.broadcast(|| ShardMsg::LoginsEnded(end.clone()));
        }
        for write in writes {
            if let Write::AppendMessage(message) = write {
                mesh.send(mesh.owner(&message.room), ShardMsg::Replicated(Box::new(message)));
            }
        }
        for room in diverged {
            rebuild_room(&room, &store, &mesh, &cluster, index_feed.as_ref());
        }
        if halted {
            return;
        }
    }
}

/// Rebuilds `room` here from the log: this node stops serving it, reads every record of
/// the room's subject, forgets what its store held of the room, and applies the records
/// again, in log order. A room whose first records were trimmed from the log cannot be
/// rebuilt this way: it stays out of service here, and the node must be seeded from
/// another node's backup.
fn rebuild_room(
    room: &RoomId,
    store: &Store,
    mesh: &Mesh,
    cluster: &Cluster,
    index_feed: Option<&IndexFeed>,
) {
    cluster.mark_diverged(room);
    mesh.broadcast(|| ShardMsg::ClusterView);
    let records = loop {
        let (done, read) = flume::bounded(1);
        let subject = wire::log_of_room(room);
        if cluster.to_service.send(ServiceCmd::ReadSubject { subject, done }).is_err() {
            return;
        }
        match read.recv() {
            Ok(Ok(records)) => break records,
            Ok(Err(e)) => {
                tracing::warn!(room = %room, "cannot read the room's log to rebuild it: {e}; retrying")
            }
            Err(_) => return,
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let mut writes = Vec::new();
    for (at, payload) in records {
        match serde_json::from_slice::<LogRecord>(&payload) {
            Ok(record) => writes.extend(record.writes),
            Err(e) => {
                tracing::error!(room = %room, position = at, "cannot rebuild the room: undecodable record: {e}");
                return;
            }
        }
    }
    let seqs: Vec<u64> = writes
        .iter()
        .filter_map(|w| match w {
            Write::AppendMessage(m) => Some(m.seq),
            _ => None,
        })
        .collect();
    if seqs.iter().zip(1..).any(|(seq, expected)| *seq != expected) {
        tracing::error!(
            room = %room,
            "cannot rebuild the room from the log: its first records were trimmed; seed this node from another node's backup"
        );
        return;
    }
    let rebuilt = store.forget_room(room).and_then(|old| store.apply_rebuilt(&writes).map(|()| old));
    let old = match rebuilt {
        Ok(old) => old,
        Err(e) => {
            tracing::error!(room = %room, "cannot rebuild the room: {e}");
            return;
        }
    };
    if let Some(feed) = index_feed {
        for seq in old {
            let _ = feed.send(IndexOp::Remove { room: room.clone(), seq });
        }
        let messages =
            writes.into_iter().filter(|w| matches!(w, Write::AppendMessage(_) | Write::ReplaceMessage(_)));
        for change in palaver_search::changes_of(messages) {
            let _ = feed.send(change);
        }
    }
    cluster.clear_diverged(room);
    cluster.rebuilt_rooms.fetch_add(1, Ordering::Relaxed);
    mesh.broadcast(|| ShardMsg::ClusterView);
    tracing::warn!(room = %room, messages = seqs.len(), "rebuilt the room from the cluster log");
}
