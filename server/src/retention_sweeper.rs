//! The retention sweeper: every `--retention-interval-secs`, walks the rooms and moves
//! the history floor of each whose oldest messages expired.
//!
//! The reads and the decision run on the `scans` lane (nice 10, never a shard's event
//! loop): a page of rooms, each room's floor and oldest messages, and
//! [`palaver_core::retention::history_floor`]. Each floor that moves is then asked of the
//! room's owner (`RoomOp::TrimHistory`), like an admin's room deletion: the owner stays
//! the room's only writer, records the floor in memory, and commits one
//! `Write::TrimHistory`, which goes to the room's log subject in a cluster, so every
//! replica removes the same messages in log order. Once durable, the files of the
//! removed messages are deleted from the object store.
//!
//! One pass removes at most [`PASS_MESSAGES`] messages, in trims of at most
//! [`ROOM_STEP`] (one write each); what is left waits for the next pass. In a cluster each node sweeps only the
//! rooms it owns. Sends never do retention work: the sweeper reads each message's time
//! from its record.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use palaver_core::owner::RoomOp;
use palaver_core::retention::{RoomLog, Sweep};
use palaver_protocol::{ReplyBody, RoomId, RoomRetention, UserId};
use palaver_storage::{StorageError, Store};

use crate::clock::now_ms;
use crate::config::RetentionConfig;
use crate::shard::Shard;

/// Most messages one pass removes, over all rooms.
pub const PASS_MESSAGES: usize = 10_000;
/// Most messages one trim of one room removes (one write, one atomic batch).
pub const ROOM_STEP: usize = 1_000;
/// Rooms read per page of the walk.
const ROOMS_PER_PAGE: usize = 256;
/// Longest the sweeper waits for a room owner's answer.
const OWNER_ANSWER_WAIT: Duration = Duration::from_secs(10);
/// The id the sweeper asks room owners as (no account has it: generated ids are longer).
const SWEEPER_ID: &str = "u_retention";

/// One floor to move.
#[derive(Debug)]
struct Trim {
    room: RoomId,
    floor: u64,
    /// The room's own retention as stored when the trim was decided.
    seen: Option<RoomRetention>,
    removed: u64,
    files: Vec<String>,
}

/// Runs the sweeper on `shard` (shard 0 of each node) until the server drains.
pub async fn run(shard: Rc<Shard>) {
    let config = shard.shared.config.retention;
    let Ok(asker) = UserId::parse(SWEEPER_ID) else { return };
    loop {
        monoio::time::sleep(Duration::from_millis(config.interval_ms)).await;
        if shard.draining.get() {
            return;
        }
        sweep(&shard, config, &asker).await;
        shard.shared.metrics.retention_sweeps.fetch_add(1, Ordering::Relaxed);
    }
}

/// One pass over every room.
async fn sweep(shard: &Rc<Shard>, config: RetentionConfig, asker: &UserId) {
    let mut after: Option<RoomId> = None;
    let mut budget = PASS_MESSAGES;
    loop {
        let store = shard.shared.store.clone();
        let cluster = shard.shared.cluster.clone();
        let sweep = Sweep { now_ms: now_ms(), grace_ms: config.grace_ms };
        let (default, start) = (config.default, after.clone());
        let planned = shard
            .shared
            .lanes
            .scans
            .run(move || plan_page(&store, cluster.as_deref(), start.as_ref(), default, sweep, budget))
            .await;
        let (trims, next) = match planned {
            Ok(Ok(page)) => page,
            Ok(Err(e)) => {
                tracing::warn!("retention sweep: reading the store failed: {e}");
                return;
            }
            // The lane is busy or stopping: the next pass tries again.
            Err(_) => return,
        };
        let mut refused: Option<RoomId> = None;
        for trim in trims {
            // A room's later steps build on its earlier ones: after a refusal, the next
            // pass decides again.
            if refused.as_ref() == Some(&trim.room) {
                continue;
            }
            budget = budget.saturating_sub(trim.removed as usize);
            let room = trim.room.clone();
            if !apply(shard, asker, trim).await {
                refused = Some(room);
            }
        }
        match next {
            Some(next) if budget > 0 && !shard.draining.get() => after = Some(next),
            _ => return,
        }
    }
}

/// Asks the room's owner to move the floor; once durable, deletes the removed files.
/// Returns whether the floor moved.
async fn apply(shard: &Rc<Shard>, asker: &UserId, trim: Trim) -> bool {
    let Trim { room, floor, seen, removed, files } = trim;
    let (asked_as, answered) =
        shard.ask_room(asker.clone(), room.clone(), RoomOp::TrimHistory { floor, seen });
    let metrics = &shard.shared.metrics;
    match monoio::time::timeout(OWNER_ANSWER_WAIT, answered.recv_async()).await {
        Ok(Ok(ReplyBody::Ok(_))) => {
            metrics.retention_removed.fetch_add(removed, Ordering::Relaxed);
            metrics.retention_files_removed.fetch_add(files.len() as u64, Ordering::Relaxed);
            for file in &files {
                shard.shared.files.delete_later(file);
            }
            tracing::debug!(%room, floor, removed, "retention: history floor moved");
            true
        }
        Ok(Ok(ReplyBody::Err(e))) => {
            // The room changed its retention, or was deleted, since the read: nothing
            // was removed; the next pass decides again.
            tracing::debug!(%room, floor, "retention: the owner refused the trim: {}", e.message);
            false
        }
        Ok(Err(_)) | Err(_) => {
            shard.route_waiters.borrow_mut().remove(&asked_as);
            metrics.retention_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%room, floor, "retention: the room's owner did not answer in time");
            false
        }
    }
}

/// Reads one page of rooms and decides their trims (on the scans lane). Returns the
/// trims and the room to continue after.
fn plan_page(
    store: &Store,
    cluster: Option<&crate::cluster::Cluster>,
    after: Option<&RoomId>,
    default: Option<RoomRetention>,
    sweep: Sweep,
    mut budget: usize,
) -> Result<(Vec<Trim>, Option<RoomId>), StorageError> {
    let (rooms, next) = store.rooms_after(after, ROOMS_PER_PAGE)?;
    let mut trims = Vec::new();
    for record in rooms {
        if budget == 0 {
            // The pass is over; the next one walks from the start again.
            return Ok((trims, None));
        }
        if record.deleted {
            continue;
        }
        let own = record.settings.and_then(|s| s.retention);
        let own_for_room = if record.kind == palaver_protocol::RoomKind::Direct { None } else { own };
        let Some(retention) = palaver_core::retention::effective(own_for_room, default) else { continue };
        if cluster.is_some_and(|c| !matches!(c.route(&record.room_id), crate::cluster::Route::Local)) {
            continue;
        }
        let room = record.room_id;
        let last_seq = store.last_seq(&room)?;
        let mut floor = store.history_floor(&room)?;
        // A backlog is removed a step (one write) at a time, each from where the last
        // one left the floor, while the pass's budget lasts.
        while budget > 0 {
            let step = ROOM_STEP.min(budget);
            let aged = store.aged_messages(&room, floor, step)?;
            let oldest: Vec<(u64, u64)> = aged.iter().map(|m| (m.seq, m.ts)).collect();
            let log = RoomLog { floor, last_seq, oldest: &oldest };
            let Some(new_floor) = palaver_core::retention::history_floor(retention, sweep, &log) else {
                break;
            };
            let files = aged.into_iter().filter(|m| m.seq < new_floor).filter_map(|m| m.file_id).collect();
            let removed = new_floor - floor;
            budget = budget.saturating_sub(removed as usize);
            trims.push(Trim { room: room.clone(), floor: new_floor, seen: own, removed, files });
            if (removed as usize) < step {
                break;
            }
            floor = new_floor;
        }
    }
    Ok((trims, next))
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use palaver_core::records::RoomRecord;
    use palaver_protocol::{Message, RoomKind, RoomSettings};
    use palaver_storage::{Durability, Write};

    use super::*;

    #[test]
    fn the_sweepers_id_is_a_valid_user_id() {
        assert!(UserId::parse(SWEEPER_ID).is_ok());
    }

    fn message(room: &RoomId, seq: u64) -> Message {
        serde_json::from_value(serde_json::json!({
            "room": room, "seq": seq, "ts": seq, "sender": "u_ann", "cid": format!("c{seq}"),
            "kind": "text", "text": "hello",
        }))
        .unwrap()
    }

    #[test]
    fn a_backlog_goes_in_steps_within_the_pass_budget() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Durability::Buffered).unwrap();
        let room = RoomId::parse("r_backlog").unwrap();
        let keep_one = RoomRetention { max_age_secs: None, max_count: NonZeroU32::new(1) };
        let settings = RoomSettings { retention: Some(keep_one), ..RoomSettings::default() };
        store
            .apply(&[Write::PutRoom(RoomRecord {
                room_id: room.clone(),
                name: "backlog".into(),
                kind: RoomKind::Public,
                owner: UserId::parse("u_ann").unwrap(),
                created_ms: 0,
                topic: String::new(),
                settings: Some(settings),
                deleted: false,
            })])
            .unwrap();
        let messages: Vec<Write> = (1..=2_500).map(|seq| Write::AppendMessage(message(&room, seq))).collect();
        store.apply(&messages).unwrap();
        let sweep = Sweep { now_ms: 1_000_000, grace_ms: 0 };

        let (trims, next) = plan_page(&store, None, None, None, sweep, PASS_MESSAGES).unwrap();
        let floors: Vec<u64> = trims.iter().map(|t| t.floor).collect();
        assert_eq!(floors, vec![1_001, 2_001, 2_500], "steps of {ROOM_STEP}, the newest kept");
        assert!(trims.iter().all(|t| t.seen == Some(keep_one)));
        assert_eq!(next, None);

        // A smaller budget stops the pass early.
        let (trims, _) = plan_page(&store, None, None, None, sweep, 1_500).unwrap();
        assert_eq!(trims.iter().map(|t| t.removed).sum::<u64>(), 1_500);
    }
}
