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
use crate::shard::messages::{Mesh, ShardMsg};

/// Longest a write waits for the log's acknowledgement.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// Most log records applied as one batch.
const MAX_APPLY_BATCH: usize = 512;

/// Publishes this node's writes to the cluster log (through the cluster thread).
pub struct LogPublisher {
    pub node: String,
    pub incarnation: u64,
    pub to_service: flume::Sender<ServiceCmd>,
}

#[derive(serde::Serialize)]
struct LogRecordOut<'a> {
    node: &'a str,
    incarnation: u64,
    writes: &'a [Write],
}

impl Replicator for LogPublisher {
    fn replicate(&self, writes: &[Write]) -> Result<(), StorageError> {
        let (subject, fresh_subject) = match writes {
            [Write::PutUser(user)] => (wire::log_of_username(user.username.as_str()), true),
            _ => (wire::log_of_node(&self.node), false),
        };
        let record = LogRecordOut { node: &self.node, incarnation: self.incarnation, writes };
        let payload = serde_json::to_vec(&record).map_err(|e| StorageError::Replication(e.to_string()))?;
        let (done, outcome) = flume::bounded(1);
        self.to_service
            .send(ServiceCmd::Publish { subject, payload, fresh_subject, done })
            .map_err(|_| StorageError::Replication("the cluster thread has stopped".into()))?;
        match outcome.recv_timeout(PUBLISH_TIMEOUT) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(PublishFailure::SubjectTaken)) => Err(StorageError::UsernameTaken),
            Ok(Err(PublishFailure::Other(e))) => Err(StorageError::Replication(e)),
            Err(_) => Err(StorageError::Replication("no acknowledgement from the cluster log".into())),
        }
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
        let position = batch.last().map_or(0, |(p, _)| *p);
        let mut writes = Vec::new();
        let mut applied = 0u64;
        for (at, payload) in &batch {
            match serde_json::from_slice::<LogRecord>(payload) {
                // This process applied its own records before answering.
                Ok(r) if r.node == cluster.node && r.incarnation == cluster.incarnation => {}
                Ok(r) => {
                    applied += 1;
                    writes.extend(r.writes);
                }
                Err(e) => tracing::error!(position = at, "undecodable cluster log record skipped: {e}"),
            }
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
        for write in writes {
            match write {
                Write::AppendMessage(message) => {
                    if let Some(feed) = &index_feed {
                        let _ = feed.send(IndexOp::Upsert(message.clone()));
                    }
                    mesh.send(mesh.owner(&message.room), ShardMsg::Replicated(Box::new(message)));
                }
                Write::ReplaceMessage(message) => {
                    if let Some(feed) = &index_feed {
                        let _ = feed.send(IndexOp::Upsert(message));
                    }
                }
                _ => {}
            }
        }
    }
}
