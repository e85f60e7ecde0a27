//! A connection's plumbing below the request handling: the byte-bounded outbound queue
//! and its writer, write pacing, the framing and codec of each transport, the permits a
//! connection holds, the reset that releases a dropped socket's descriptor at once, and
//! which QUIC stream carries each frame. Nothing here knows an op; a frame's lane knows
//! at most which room's order it belongs to.

pub mod lane;
pub mod limits;
pub mod outbound;
pub mod pacing;
pub mod socket_reset;
pub mod stream_plan;
pub mod wire;
