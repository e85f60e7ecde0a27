//! Roles in a room: the wire type is the room's own type, so a role read from storage, a
//! rule's decision and a frame all agree. Ordered by power: `Owner > Admin > Moderator > Member`.

pub use palaver_protocol::RoomRole as Role;
