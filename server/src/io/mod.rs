//! A connection's plumbing below the request handling: the byte-bounded outbound queue
//! and its writer, write pacing, the framing and codec of each transport, the permits a
//! connection holds, and the reset that releases a dropped socket's descriptor at once.
//! Nothing here knows an op or a room.

pub mod limits;
pub mod outbound;
pub mod pacing;
pub mod socket_reset;
pub mod wire;
