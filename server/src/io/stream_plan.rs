//! Which QUIC stream (or datagram) carries each outbound frame of a connection
//! (PROTOCOL.md §7.3): the rule, with no sockets, so every QUIC writer (raw QUIC, and
//! WebTransport) carries out the same mapping.
//!
//! - Control frames go on the client's bidirectional stream.
//! - A room's frames go on a unidirectional stream the server opens at the room's first
//!   frame and keeps for the connection's life, so each room's order holds and a room
//!   whose stream is stalled (a lost packet, a client not reading it) does not hold up
//!   another's.
//! - At most [`MAX_ROOM_STREAMS`] are opened, and never beyond the peer's credit: past
//!   that a room shares an opened stream chosen by its key. If no stream could be opened
//!   at all, the room's frames go on the control stream. Either way a room never moves.
//! - `typing` goes as a datagram when the peer takes datagrams and the frame fits, else
//!   on its room's stream.

use rustc_hash::FxHashMap;

use super::lane::{Lane, RoomKey};

/// The most unidirectional streams the server opens on one connection.
pub const MAX_ROOM_STREAMS: usize = 64;

/// Where one frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The client's bidirectional stream, with its length prefix.
    Control,
    /// The room stream numbered `n` (in the order they were opened), with its length
    /// prefix.
    Stream(usize),
    /// Open a new unidirectional stream for this room, then report it with
    /// [`StreamPlan::opened`] (or [`StreamPlan::refused`] if the peer's credit is spent)
    /// and write the frame where that says.
    Open(RoomKey),
    /// A datagram: the frame without its length prefix.
    Datagram,
}

/// Where a room's frames go, once decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Control,
    Stream(usize),
}

impl From<Place> for Route {
    fn from(place: Place) -> Route {
        match place {
            Place::Control => Route::Control,
            Place::Stream(n) => Route::Stream(n),
        }
    }
}

/// One connection's mapping of rooms to streams.
#[derive(Debug, Default)]
pub struct StreamPlan {
    rooms: FxHashMap<RoomKey, Place>,
    opened: usize,
    /// The peer refused a stream (its credit is spent): no more are tried.
    credit_spent: bool,
}

impl StreamPlan {
    /// Where a frame of `lane` goes: `payload_len` is its size without the length prefix,
    /// `max_datagram` the largest datagram the peer takes now (`None`: no datagrams).
    pub fn route(&mut self, lane: Lane, payload_len: usize, max_datagram: Option<usize>) -> Route {
        let room = match lane {
            Lane::Control => return Route::Control,
            Lane::Datagram(_) if max_datagram.is_some_and(|max| payload_len <= max) => {
                return Route::Datagram;
            }
            Lane::Room(room) | Lane::Datagram(room) => room,
        };
        if let Some(place) = self.rooms.get(&room) {
            return (*place).into();
        }
        if self.opened < MAX_ROOM_STREAMS && !self.credit_spent {
            return Route::Open(room);
        }
        self.share(room).into()
    }

    /// The stream [`Route::Open`] asked for is open: it is `room`'s, for good. Returns
    /// its number.
    pub fn opened(&mut self, room: RoomKey) -> usize {
        let n = self.opened;
        self.opened += 1;
        self.rooms.insert(room, Place::Stream(n));
        n
    }

    /// The peer has no credit for the stream [`Route::Open`] asked for: `room` shares an
    /// open stream (or the control stream when none is open), and no more are opened.
    pub fn refused(&mut self, room: RoomKey) -> Route {
        self.credit_spent = true;
        self.share(room).into()
    }

    /// How many room streams are open.
    #[cfg(test)]
    fn open_streams(&self) -> usize {
        self.opened
    }

    fn share(&mut self, room: RoomKey) -> Place {
        let place = match u64::try_from(self.opened) {
            Ok(0) | Err(_) => Place::Control,
            // The remainder is below `opened`, a usize.
            Ok(opened) => Place::Stream(usize::try_from(room.0 % opened).unwrap_or(0)),
        };
        self.rooms.insert(room, place);
        place
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Carries out routes the way a writer does, with `credit` streams the peer allows.
    fn place(
        plan: &mut StreamPlan,
        credit: &mut usize,
        lane: Lane,
        len: usize,
        dgram: Option<usize>,
    ) -> Route {
        match plan.route(lane, len, dgram) {
            Route::Open(room) if *credit > 0 => {
                *credit -= 1;
                Route::Stream(plan.opened(room))
            }
            Route::Open(room) => plan.refused(room),
            route => route,
        }
    }

    #[test]
    fn each_room_gets_its_own_stream_at_its_first_frame_and_keeps_it() {
        let mut plan = StreamPlan::default();
        let mut credit = 100;
        let (a, b) = (RoomKey(10), RoomKey(11));
        assert_eq!(place(&mut plan, &mut credit, Lane::Control, 10, None), Route::Control);
        assert_eq!(place(&mut plan, &mut credit, Lane::Room(a), 10, None), Route::Stream(0));
        assert_eq!(place(&mut plan, &mut credit, Lane::Room(b), 10, None), Route::Stream(1));
        assert_eq!(place(&mut plan, &mut credit, Lane::Room(a), 10, None), Route::Stream(0));
        assert_eq!(place(&mut plan, &mut credit, Lane::Control, 10, None), Route::Control);
        assert_eq!(plan.open_streams(), 2);
        assert_eq!(credit, 98);
    }

    #[test]
    fn typing_is_a_datagram_when_it_fits_and_else_goes_on_its_rooms_stream() {
        let mut plan = StreamPlan::default();
        let mut credit = 100;
        let a = RoomKey(7);
        assert_eq!(place(&mut plan, &mut credit, Lane::Datagram(a), 100, Some(1200)), Route::Datagram);
        assert_eq!(plan.open_streams(), 0, "a datagram opens no stream");
        // Too big for a datagram, or datagrams not negotiated: the room's stream.
        assert_eq!(place(&mut plan, &mut credit, Lane::Datagram(a), 1300, Some(1200)), Route::Stream(0));
        assert_eq!(place(&mut plan, &mut credit, Lane::Datagram(a), 100, None), Route::Stream(0));
        assert_eq!(place(&mut plan, &mut credit, Lane::Room(a), 100, Some(1200)), Route::Stream(0));
    }

    #[test]
    fn past_the_cap_rooms_share_a_stream_chosen_by_their_key_and_never_move() {
        let mut plan = StreamPlan::default();
        let mut credit = 1_000;
        for key in 0..MAX_ROOM_STREAMS as u64 {
            assert_eq!(
                place(&mut plan, &mut credit, Lane::Room(RoomKey(key)), 1, None),
                Route::Stream(key as usize)
            );
        }
        let late = RoomKey(64 * 5 + 9);
        assert_eq!(place(&mut plan, &mut credit, Lane::Room(late), 1, None), Route::Stream(9));
        assert_eq!(place(&mut plan, &mut credit, Lane::Room(late), 1, None), Route::Stream(9));
        assert_eq!(plan.open_streams(), MAX_ROOM_STREAMS);
        assert_eq!(credit, 1_000 - MAX_ROOM_STREAMS);
    }

    #[test]
    fn the_peers_credit_bounds_the_streams_and_shared_rooms_never_move() {
        let mut plan = StreamPlan::default();
        let mut credit = 3;
        for key in 0..3 {
            assert_eq!(
                place(&mut plan, &mut credit, Lane::Room(RoomKey(key)), 1, None),
                Route::Stream(key as usize)
            );
        }
        // The fourth room finds the credit spent: it shares stream 10 % 3 = 1.
        assert_eq!(place(&mut plan, &mut credit, Lane::Room(RoomKey(10)), 1, None), Route::Stream(1));
        // More credit later does not move it, and no stream is tried again.
        credit = 10;
        assert_eq!(place(&mut plan, &mut credit, Lane::Room(RoomKey(10)), 1, None), Route::Stream(1));
        assert_eq!(place(&mut plan, &mut credit, Lane::Room(RoomKey(11)), 1, None), Route::Stream(2));
        assert_eq!(credit, 10);
        assert_eq!(plan.open_streams(), 3);
    }

    #[test]
    fn a_peer_without_stream_credit_gets_rooms_on_the_control_stream() {
        let mut plan = StreamPlan::default();
        let mut credit = 0;
        assert_eq!(place(&mut plan, &mut credit, Lane::Room(RoomKey(1)), 1, None), Route::Control);
        assert_eq!(place(&mut plan, &mut credit, Lane::Room(RoomKey(2)), 1, None), Route::Control);
        assert_eq!(place(&mut plan, &mut credit, Lane::Datagram(RoomKey(2)), 1, None), Route::Control);
        assert_eq!(place(&mut plan, &mut credit, Lane::Datagram(RoomKey(2)), 1, Some(50)), Route::Datagram);
    }
}
