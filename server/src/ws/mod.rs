//! WebSocket (RFC 6455), server side, sans-IO: the opening handshake and the frame codec.
//!
//! Palaver frames outgoing messages itself instead of going through a WebSocket library
//! so that a fan-out event is framed once (header + payload in one shared buffer) and the
//! very same bytes are written to every subscribed socket.

mod frame;
mod handshake;

pub use frame::{CloseCode, FrameParser, OpCode, WsError, WsMessage, close_frame, encode_frame};
pub use handshake::{HandshakeError, accept_key, choose_codec};
