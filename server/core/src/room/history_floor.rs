//! Where a room's history starts: retention removes its oldest messages and records the
//! oldest seq kept (see [`crate::retention`]). The room keeps its seq counter; a floor only
//! moves up, and never past what is durable.

use std::num::NonZeroU64;

use palaver_protocol::RoomRetention;

use super::Room;
use crate::CoreError;

impl Room {
    /// The oldest seq the room keeps (1: nothing was removed).
    pub fn history_floor(&self) -> u64 {
        self.history_floor
    }

    /// The floor as clients see it: `Some` once retention removed something.
    pub fn history_from(&self) -> Option<NonZeroU64> {
        NonZeroU64::new(self.history_floor).filter(|floor| floor.get() > 1)
    }

    /// Sets the floor read from storage with the room.
    pub fn load_history_floor(&mut self, floor: u64) {
        self.history_floor = floor.max(1);
    }

    /// Moves the floor to `floor`, as a sweep decided from the room's stored messages and
    /// its stored retention `seen`. Refused when the room's retention changed since
    /// (the sweep decided under a rule that no longer holds), when the floor would not
    /// move up, or would pass what is durable. Unpins what falls below it.
    pub fn trim_history(&mut self, floor: u64, seen: Option<RoomRetention>) -> Result<(), CoreError> {
        if seen != self.settings.retention {
            return Err(CoreError::Mismatched("the room's retention changed since the sweep read it"));
        }
        if floor <= self.history_floor {
            return Err(CoreError::NothingToChange);
        }
        let durable_next = self.durable_seq + 1;
        if floor > durable_next {
            return Err(CoreError::OutOfRange {
                field: "floor",
                min: self.history_floor + 1,
                max: durable_next,
            });
        }
        self.history_floor = floor;
        self.pins.retain(|seq, _| *seq >= floor);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU64;

    use palaver_protocol::{RoomId, RoomKind, RoomRetention, UserId};

    use crate::{CoreError, Role, Room, RoomLimits};

    fn room_with_last_seq(last_seq: u64) -> Room {
        let owner = UserId::parse("u_owner").unwrap();
        Room::restore(
            RoomId::parse("r_floor").unwrap(),
            "floor".into(),
            RoomKind::Public,
            [(owner, Role::Owner)],
            last_seq,
            0,
            RoomLimits::default(),
        )
    }

    #[test]
    fn the_floor_moves_up_to_one_past_the_durable_seq_and_no_further() {
        let mut room = room_with_last_seq(10);
        assert_eq!(room.history_from(), None);
        room.trim_history(5, None).unwrap();
        assert_eq!(room.history_floor(), 5);
        assert_eq!(room.history_from().map(NonZeroU64::get), Some(5));
        assert_eq!(room.trim_history(5, None), Err(CoreError::NothingToChange));
        assert_eq!(room.trim_history(3, None), Err(CoreError::NothingToChange));
        assert!(matches!(room.trim_history(12, None), Err(CoreError::OutOfRange { .. })));
        room.trim_history(11, None).unwrap();
        assert_eq!(room.history_from().map(NonZeroU64::get), Some(11));
    }

    #[test]
    fn a_sweep_under_another_retention_than_the_rooms_is_refused() {
        let mut room = room_with_last_seq(10);
        let seen = Some(RoomRetention { max_age_secs: std::num::NonZeroU32::new(60), max_count: None });
        assert!(matches!(room.trim_history(5, seen), Err(CoreError::Mismatched(_))));
        assert_eq!(room.history_floor(), 1);
    }
}
