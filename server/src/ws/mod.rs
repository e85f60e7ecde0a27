//! WebSocket (RFC 6455), server side, sans-IO: the opening handshake, the frame codec and
//! permessage-deflate (RFC 7692) without context takeover.
//!
//! Palaver frames outgoing messages itself instead of going through a WebSocket library
//! so that a fan-out event is framed once (header + payload in one shared buffer) and the
//! very same bytes are written to every subscribed socket.

mod deflate;
mod frame;
mod handshake;

pub use deflate::{Deflate, Inflater, Negotiated, always_deflated_frame, deflated_frame, negotiate};
pub(crate) use frame::frame_payload;
pub use frame::{CloseCode, FrameParser, OpCode, WsError, WsMessage, close_frame, encode_frame};
pub use handshake::{HandshakeError, accept_key, choose_codec};
