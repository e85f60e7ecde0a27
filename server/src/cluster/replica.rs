//! The two ends of the cluster log on this node: [`LogPublisher`] hands the writes this
//! node originates to the log (the store calls it before applying them), and the
//! replica thread applies every other node's records in log order.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use palaver_search::IndexOp;
use palaver_storage::{Replicator, StorageError, Store, Write};

use super::Cluster;
use super::service::{PublishFailure, ServiceCmd};
use super::wire::{self, LogRecord};
use crate::mesh::{Mesh, ShardMsg};

/// Longest a write waits for the log's acknowledgement.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// Most log records applied as one batch.
const MAX_APPLY_BATCH: usize = 512;

/// Longest the replica waits for this node's own write to be applied here before it
/// applies it from the log itself.
const OWN_WRITE_WAIT: Duration = Duration::from_secs(10);

/// Publishes this node's writes to the cluster log (through the cluster thread).
pub struct LogPublisher {
    pub cluster: Arc<Cluster>,
    pub to_service: flume::Sender<ServiceCmd>,
}

#[derive(serde::Serialize)]
struct LogRecordOut<'a> {
    format: u32,
    node: &'a str,
    incarnation: u64,
    writes: &'a [Write],
}

impl Replicator for LogPublisher {
    fn replicate(&self, writes: &[Write]) -> Result<u64, StorageError> {
        let node = &self.cluster.node;
        let (subject, fresh_subject) = match writes {
            [Write::PutUser(user)] => (wire::log_of_username(user.username.as_str()), true),
            _ => (wire::log_of_node(node), false),
        };
        let record =
            LogRecordOut { format: wire::LOG_FORMAT, node, incarnation: self.cluster.incarnation, writes };
        let payload = serde_json::to_vec(&record).map_err(|e| StorageError::Replication(e.to_string()))?;
        let (done, outcome) = flume::bounded(1);
        self.to_service
            .send(ServiceCmd::Publish { subject, payload, fresh_subject, done })
            .map_err(|_| StorageError::Replication("the cluster thread has stopped".into()))?;
        match outcome.recv_timeout(PUBLISH_TIMEOUT) {
            Ok(Ok(position)) => Ok(position),
            Ok(Err(PublishFailure::SubjectTaken)) => Err(StorageError::UsernameTaken),
            Ok(Err(PublishFailure::Other(e))) => Err(StorageError::Replication(e)),
            Err(_) => Err(StorageError::Replication("no acknowledgement from the cluster log".into())),
        }
    }

    fn applied_locally(&self, position: u64) {
        let mut applied = self.cluster.own_applied.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        applied.insert(position);
    }
}

/// Waits until this node's own record at `position` is applied here (see
/// [`Replicator::applied_locally`]); false if it never was (it is then applied from
/// the log like another node's).
fn own_write_applied(cluster: &Cluster, store: &Store, position: u64) -> bool {
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
    index_feed: Option<flume::Sender<IndexOp>>,
) {
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
                        && own_write_applied(&cluster, &store, *at) => {}
                Ok(r) => {
                    applied += 1;
                    writes.extend(r.writes);
                }
            }
            if halted {
                break;
            }
            position = *at;
        }
        if !writes.is_empty() {
            // A replica that cannot apply stays where it is (and so never takes over a
            // room it has not caught up with); it retries, for a disk that fills and
            // frees again.
            while let Err(e) = store.apply_replicated(&writes, position) {
                tracing::error!("cannot apply the cluster log at {position}: {e}; retrying");
                std::thread::sleep(Duration::from_secs(1));
            }
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
        for write in writes {
            if let Write::AppendMessage(message) = write {
                mesh.send(mesh.owner(&message.room), ShardMsg::Replicated(Box::new(message)));
            }
        }
        if halted {
            return;
        }
    }
}
