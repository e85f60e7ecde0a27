//! Which lane an outbound frame travels in (PROTOCOL.md §7.3): the control lane
//! (replies, and events not tied to a room), a room's lane (everything that belongs to
//! one room, in that room's order), or the unreliable lane (`typing`). A WebSocket has
//! one lane and ignores this; a QUIC connection maps lanes to streams and datagrams
//! ([`super::stream_plan`]). Decided here, once per frame, from the frame alone.

use palaver_protocol::{Event, RoomId, ServerFrame};

/// A room as a connection's streams know it: a 64-bit FNV-1a hash of its id. Two rooms
/// with the same key share a stream, which keeps each one's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoomKey(pub u64);

impl RoomKey {
    /// The key of `room`.
    pub fn of(room: &RoomId) -> RoomKey {
        const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0100_0000_01b3;
        let hash =
            room.as_str().bytes().fold(OFFSET, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(PRIME));
        RoomKey(hash)
    }
}

/// Where a frame goes on a connection that has more than one way to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Replies, and events not tied to a room (presence, friends, invitations,
    /// notification settings, reports).
    Control,
    /// An event of one room: in that room's order, independent of other rooms.
    Room(RoomKey),
    /// An event that may be lost (`typing`): a datagram where the connection has them
    /// and it fits, else the room's lane.
    Datagram(RoomKey),
}

impl Lane {
    /// The lane of `frame`.
    pub fn of(frame: &ServerFrame) -> Lane {
        let ServerFrame::Event(event) = frame else { return Lane::Control };
        match event {
            Event::Typing(typing) => Lane::Datagram(RoomKey::of(&typing.room)),
            Event::Message(message) => Lane::Room(RoomKey::of(&message.room)),
            Event::Receipt(receipt) => Lane::Room(RoomKey::of(&receipt.room)),
            Event::Reaction(reaction) => Lane::Room(RoomKey::of(&reaction.room)),
            Event::Edit(edit) => Lane::Room(RoomKey::of(&edit.room)),
            Event::Delete(delete) => Lane::Room(RoomKey::of(&delete.room)),
            Event::Thread(thread) => Lane::Room(RoomKey::of(&thread.room)),
            Event::Member(member) => Lane::Room(RoomKey::of(&member.room)),
            // Addressed to the user, not to a room's subscribers (an invitation is to a
            // room the user has not joined; a report reaches its moderators).
            Event::Invite(_)
            | Event::Friend(_)
            | Event::Presence(_)
            | Event::Report(_)
            | Event::Notifications(_) => Lane::Control,
        }
    }

    /// The room whose order this frame belongs to, if any.
    pub fn room(self) -> Option<RoomKey> {
        match self {
            Lane::Control => None,
            Lane::Room(room) | Lane::Datagram(room) => Some(room),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palaver_protocol::{ErrorBody, ErrorCode, UserId};

    fn room(id: &str) -> RoomId {
        RoomId::parse(id).expect("room id")
    }

    #[test]
    fn replies_go_on_control_room_events_on_their_room_and_typing_as_a_datagram() {
        let general = room("r_general");
        assert_eq!(Lane::of(&ServerFrame::err(3, ErrorBody::new(ErrorCode::Invalid, "no"))), Lane::Control);
        let typing = palaver_protocol::Typing {
            room: general.clone(),
            user: UserId::parse("u_alice").expect("user id"),
            active: true,
            expires_in_ms: Some(6_000),
        };
        assert_eq!(
            Lane::of(&ServerFrame::Event(Event::Typing(typing))),
            Lane::Datagram(RoomKey::of(&general))
        );
        let edit = palaver_protocol::Edit { room: general.clone(), seq: 4, text: "x".into(), edited_at: 1 };
        assert_eq!(Lane::of(&ServerFrame::Event(Event::Edit(edit))), Lane::Room(RoomKey::of(&general)));
        assert_eq!(Lane::Datagram(RoomKey::of(&general)).room(), Some(RoomKey::of(&general)));
        assert_eq!(Lane::Control.room(), None);
    }

    #[test]
    fn room_keys_are_fnv1a_of_the_id() {
        // FNV-1a 64 of the empty string is the offset basis; of "a" it is a known value.
        assert_eq!(RoomKey::of(&room("r_a")), RoomKey::of(&room("r_a")));
        assert_ne!(RoomKey::of(&room("r_a")), RoomKey::of(&room("r_b")));
        let manual = "r_a"
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        assert_eq!(RoomKey::of(&room("r_a")).0, manual);
    }
}
