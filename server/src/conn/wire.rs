//! How a connection's frames travel: a WebSocket speaking one of the codecs of §1.2, or
//! a QUIC stream carrying rkyv archives each prefixed with its `u32` little-endian
//! length (§7.3). Everything above this (sessions, op routing, fan-out) is the same for
//! both; only the bytes around a payload differ.

use bytes::{BufMut as _, Bytes, BytesMut};
use palaver_protocol::{Codec, ServerFrame};

use crate::ws::{OpCode, encode_frame};

/// A connection's transport framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// A WebSocket with the negotiated codec.
    WebSocket(Codec),
    /// The QUIC stream: rkyv archives, length-prefixed.
    Quic,
}

impl Wire {
    /// The payload encoding.
    pub fn codec(self) -> Codec {
        match self {
            Wire::WebSocket(codec) => codec,
            Wire::Quic => Codec::Rkyv,
        }
    }

    /// Whether this is a QUIC connection (no WebSocket pings or close frames).
    pub fn is_quic(self) -> bool {
        self == Wire::Quic
    }

    /// Wraps an encoded payload for the wire.
    pub fn frame(self, payload: &[u8]) -> Bytes {
        match self {
            Wire::WebSocket(codec) => {
                let opcode = if codec.is_text() { OpCode::Text } else { OpCode::Binary };
                encode_frame(opcode, payload)
            }
            Wire::Quic => length_prefixed(payload),
        }
    }

    /// Encodes and frames a server frame.
    pub fn encode(self, frame: &ServerFrame) -> Result<Bytes, palaver_protocol::EncodeError> {
        Ok(self.frame(&self.codec().encode_server(frame)?))
    }
}

/// `payload` behind its `u32` little-endian length (the QUIC framing of §7.3).
pub fn length_prefixed(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + payload.len());
    // Payloads are bounded far below 4 GiB (`max_frame_bytes` ≤ 16 MiB for clients, and
    // server frames are built from bounded parts).
    out.put_u32_le(u32::try_from(payload.len()).unwrap_or(u32::MAX));
    out.put_slice(payload);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quic_frames_are_length_prefixed_little_endian() {
        let framed = Wire::Quic.frame(b"abc");
        assert_eq!(&framed[..], &[3, 0, 0, 0, b'a', b'b', b'c']);
        assert_eq!(Wire::Quic.codec(), Codec::Rkyv);
    }
}
