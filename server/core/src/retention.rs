//! Retention, as pure decisions: which of a room's oldest messages have expired, and
//! where its history starts afterwards.
//!
//! A room's seqs never change and never restart: retention removes a prefix of the log
//! and records the room's *history floor*, the oldest seq it still keeps (1 until
//! something was removed). Everything below the floor is gone; everything from it on is
//! kept. The sweeper reads a room's oldest messages (seq and time) from storage, asks
//! [`history_floor`] where the floor moves, and has the room's owner record it.
//!
//! Which retention applies ([`effective`]): the room's own when it set one, else the
//! server's default (direct rooms always follow the default). Whatever a retention says,
//! no message is removed before it is `grace` old: that keeps every message a client may
//! still be retrying (its `cid` is then still found, and the retry answers `duplicate`).

use palaver_protocol::RoomRetention;
use palaver_protocol::limits::{MAX_RETENTION_AGE_SECS, MAX_RETENTION_COUNT};

use crate::CoreError;

/// The retention that applies to a room: its own, or else the server's default (`None`:
/// keep everything).
pub fn effective(
    room: Option<RoomRetention>,
    server_default: Option<RoomRetention>,
) -> Option<RoomRetention> {
    room.filter(|r| !r.is_unlimited()).or(server_default).filter(|r| !r.is_unlimited())
}

/// Checks a retention a room asks for: each limit within its bounds (neither is 0: the
/// wire type refuses that already). `{}` (no limit) is valid: it means "follow the
/// server's default".
pub fn check(retention: &RoomRetention) -> Result<(), CoreError> {
    if retention.max_age_secs.is_some_and(|age| age.get() > MAX_RETENTION_AGE_SECS) {
        return Err(CoreError::OutOfRange {
            field: "retention.max_age_secs",
            min: 1,
            max: u64::from(MAX_RETENTION_AGE_SECS),
        });
    }
    if retention.max_count.is_some_and(|count| count.get() > MAX_RETENTION_COUNT) {
        return Err(CoreError::OutOfRange {
            field: "retention.max_count",
            min: 1,
            max: u64::from(MAX_RETENTION_COUNT),
        });
    }
    Ok(())
}

/// What a sweep knows about one room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomLog<'a> {
    /// The oldest seq the room keeps now (1: nothing removed yet).
    pub floor: u64,
    /// The newest seq the room has assigned (0: none).
    pub last_seq: u64,
    /// The room's oldest stored messages from `floor` on, as `(seq, ts)` in seq order:
    /// at most as many as one pass may remove.
    pub oldest: &'a [(u64, u64)],
}

/// When a sweep runs and how much it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sweep {
    /// Now, ms since the Unix epoch.
    pub now_ms: u64,
    /// No message younger than this is removed, whatever the retention says.
    pub grace_ms: u64,
}

/// The room's new history floor under `retention`, or `None` when nothing expires.
///
/// A message expires when it is older than `max_age_secs`, or when it is not among the
/// newest `max_count` (counted by seq: seqs have no holes), and it is older than the
/// sweep's grace. The floor only moves past messages in `log.oldest`, so
/// one pass removes at most that many; the next pass carries on. Message times follow
/// seq order, so the first message young enough to keep stops the floor.
pub fn history_floor(retention: RoomRetention, sweep: Sweep, log: &RoomLog<'_>) -> Option<u64> {
    if retention.is_unlimited() {
        return None;
    }
    let by_count =
        retention.max_count.map(|max| log.last_seq.saturating_add(1).saturating_sub(u64::from(max.get())));
    let age_cutoff =
        retention.max_age_secs.map(|secs| sweep.now_ms.saturating_sub(u64::from(secs.get()) * 1_000));
    let grace_cutoff = sweep.now_ms.saturating_sub(sweep.grace_ms);
    let mut floor = log.floor;
    for &(seq, ts) in log.oldest {
        if seq < floor {
            continue;
        }
        if seq != floor || ts >= grace_cutoff {
            // A hole would mean a message this pass did not see: stop before it.
            break;
        }
        let too_old = age_cutoff.is_some_and(|cutoff| ts < cutoff);
        let too_many = by_count.is_some_and(|keep_from| seq < keep_from);
        if !(too_old || too_many) {
            break;
        }
        floor = seq + 1;
    }
    (floor > log.floor).then_some(floor)
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    const MINUTE: u64 = 60_000;

    fn age(secs: u32) -> RoomRetention {
        RoomRetention { max_age_secs: NonZeroU32::new(secs), max_count: None }
    }

    fn count(max: u32) -> RoomRetention {
        RoomRetention { max_age_secs: None, max_count: NonZeroU32::new(max) }
    }

    /// Messages `first..=last`, one a minute, the first at minute `first`.
    fn minutes(first: u64, last: u64) -> Vec<(u64, u64)> {
        (first..=last).map(|seq| (seq, seq * MINUTE)).collect()
    }

    fn sweep_at_minute(minute: u64) -> Sweep {
        Sweep { now_ms: minute * MINUTE, grace_ms: 0 }
    }

    #[test]
    fn messages_older_than_max_age_expire_and_the_floor_follows_them() {
        let oldest = minutes(1, 10);
        let log = RoomLog { floor: 1, last_seq: 10, oldest: &oldest };
        // At minute 10, a five-minute retention keeps minutes 5.. (seq 5 is exactly 5
        // minutes old: not older).
        assert_eq!(history_floor(age(300), sweep_at_minute(10), &log), Some(5));
        // Nothing is old enough yet.
        assert_eq!(history_floor(age(3_600), sweep_at_minute(10), &log), None);
        // Everything is: the floor passes the newest message (the seq counter stays).
        assert_eq!(history_floor(age(60), sweep_at_minute(100), &log), Some(11));
    }

    #[test]
    fn only_the_newest_max_count_messages_are_kept() {
        let oldest = minutes(1, 10);
        let log = RoomLog { floor: 1, last_seq: 10, oldest: &oldest };
        assert_eq!(history_floor(count(3), sweep_at_minute(10), &log), Some(8));
        assert_eq!(history_floor(count(10), sweep_at_minute(10), &log), None);
        assert_eq!(history_floor(count(1_000), sweep_at_minute(10), &log), None);
    }

    #[test]
    fn either_limit_expires_a_message() {
        let oldest = minutes(1, 10);
        let log = RoomLog { floor: 1, last_seq: 10, oldest: &oldest };
        let both = RoomRetention { max_age_secs: NonZeroU32::new(120), max_count: NonZeroU32::new(5) };
        // Age keeps 8.. at minute 10; count keeps 6..: the stricter wins.
        assert_eq!(history_floor(both, sweep_at_minute(10), &log), Some(8));
        let both = RoomRetention { max_age_secs: NonZeroU32::new(3_600), max_count: NonZeroU32::new(5) };
        assert_eq!(history_floor(both, sweep_at_minute(10), &log), Some(6));
    }

    #[test]
    fn no_message_younger_than_the_grace_goes() {
        let oldest = minutes(1, 10);
        let log = RoomLog { floor: 1, last_seq: 10, oldest: &oldest };
        let sweep = Sweep { now_ms: 10 * MINUTE, grace_ms: 7 * MINUTE };
        // Count alone would keep 10.., but seqs 3.. are younger than 7 minutes.
        assert_eq!(history_floor(count(1), sweep, &log), Some(3));
    }

    #[test]
    fn a_pass_moves_the_floor_only_past_the_messages_it_read() {
        // The pass read seqs 4..=6 (the floor was 4); 7.. exist but were not read.
        let oldest = minutes(4, 6);
        let log = RoomLog { floor: 4, last_seq: 100, oldest: &oldest };
        assert_eq!(history_floor(age(60), sweep_at_minute(1_000), &log), Some(7));
        // A later pass starts from there.
        let oldest = minutes(7, 9);
        let log = RoomLog { floor: 7, last_seq: 100, oldest: &oldest };
        assert_eq!(history_floor(age(60), sweep_at_minute(1_000), &log), Some(10));
    }

    #[test]
    fn a_hole_or_an_empty_read_stops_the_floor() {
        let oldest = vec![(5, MINUTE), (7, MINUTE)];
        let log = RoomLog { floor: 5, last_seq: 10, oldest: &oldest };
        assert_eq!(history_floor(age(1), sweep_at_minute(100), &log), Some(6));
        let log = RoomLog { floor: 5, last_seq: 10, oldest: &[] };
        assert_eq!(history_floor(age(1), sweep_at_minute(100), &log), None);
        // An empty room with no retention limit moves nothing.
        let log = RoomLog { floor: 1, last_seq: 0, oldest: &[] };
        assert_eq!(history_floor(count(1), sweep_at_minute(100), &log), None);
    }

    #[test]
    fn a_room_retention_replaces_the_default_and_empty_means_the_default() {
        let default = Some(age(86_400));
        assert_eq!(effective(None, default), default);
        assert_eq!(effective(Some(count(5)), default), Some(count(5)));
        assert_eq!(effective(Some(RoomRetention::default()), default), default);
        assert_eq!(effective(Some(RoomRetention::default()), None), None);
        assert_eq!(effective(None, None), None);
    }

    #[test]
    fn limits_are_checked() {
        assert!(check(&age(1)).is_ok());
        assert!(check(&RoomRetention::default()).is_ok());
        assert!(check(&age(MAX_RETENTION_AGE_SECS)).is_ok());
        assert!(check(&age(MAX_RETENTION_AGE_SECS + 1)).is_err());
        assert!(check(&count(MAX_RETENTION_COUNT)).is_ok());
        assert!(check(&count(MAX_RETENTION_COUNT + 1)).is_err());
    }
}
