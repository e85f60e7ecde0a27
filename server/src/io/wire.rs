//! How a connection's frames travel: a WebSocket speaking one of the codecs of §1.2, or
//! a QUIC stream carrying frames of one of those codecs (chosen by ALPN) each prefixed
//! with its `u32` little-endian length (§7.3). Everything above this (sessions, op routing, fan-out) is the same for
//! both; only the bytes around a payload differ (and, on a WebSocket that negotiated
//! permessage-deflate, whether a payload travels compressed).

use std::cell::RefCell;
use std::sync::OnceLock;

use bytes::{BufMut as _, Bytes, BytesMut};
use palaver_protocol::{Codec, ServerFrame};

use crate::ws::{Deflate, OpCode, deflated_frame, encode_frame, frame_payload};

/// A connection's transport framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// A WebSocket with the negotiated codec and, if negotiated, permessage-deflate.
    WebSocket(Codec, Option<Deflate>),
    /// The QUIC stream: frames of the codec its ALPN chose, length-prefixed.
    Quic(Codec),
}

impl Wire {
    /// The payload encoding.
    pub fn codec(self) -> Codec {
        match self {
            Wire::WebSocket(codec, _) => codec,
            Wire::Quic(codec) => codec,
        }
    }

    /// The same framing without compression: the form every connection of this codec
    /// and transport shares.
    pub fn plain(self) -> Wire {
        match self {
            Wire::WebSocket(codec, _) => Wire::WebSocket(codec, None),
            Wire::Quic(codec) => Wire::Quic(codec),
        }
    }

    /// Which of an event's [`DeflatedFrames`] this connection takes for `plain` (a frame
    /// of [`Wire::plain`]), or `None` when it takes `plain` itself.
    pub fn deflated_form(self, plain: &[u8]) -> Option<usize> {
        let Wire::WebSocket(codec, Some(deflate)) = self else { return None };
        let bits = deflate.compressor_bits(frame_payload(plain).len())?;
        let codec_index = usize::from(!codec.is_text());
        Some(codec_index * Deflate::FORMS + Deflate::form_index(bits))
    }

    /// Whether this is a QUIC connection (no WebSocket pings or close frames).
    pub fn is_quic(self) -> bool {
        matches!(self, Wire::Quic(_))
    }

    /// Wraps an encoded payload for the wire (compressed, when negotiated and it pays).
    pub fn frame(self, payload: &[u8]) -> Bytes {
        match self {
            Wire::WebSocket(codec, deflate) => {
                let opcode = if codec.is_text() { OpCode::Text } else { OpCode::Binary };
                deflate
                    .and_then(|d| d.compressor_bits(payload.len()))
                    .and_then(|bits| deflated_frame(opcode, payload, bits))
                    .unwrap_or_else(|| encode_frame(opcode, payload))
            }
            Wire::Quic(_) => length_prefixed(payload),
        }
    }

    /// Encodes and frames a server frame. The payload is encoded into this thread's
    /// reused buffer and copied once into a frame of its exact size: one allocation per
    /// frame, however the encoder grows its output.
    pub fn encode(self, frame: &ServerFrame) -> Result<Bytes, palaver_protocol::EncodeError> {
        ENCODING.with(|buffer| match buffer.try_borrow_mut() {
            Ok(mut buffer) => {
                self.codec().encode_server_in(frame, &mut buffer)?;
                let framed = self.frame(&buffer);
                if buffer.capacity() > KEPT_ENCODING_BYTES {
                    *buffer = Vec::new();
                }
                Ok(framed)
            }
            // Never nested today; a nested encode still works, with its own buffer.
            Err(_) => Ok(self.frame(&self.codec().encode_server(frame)?)),
        })
    }
}

/// The largest encoding buffer a thread keeps between frames: enough for any chat
/// message event, while a rare large frame (a history page) does not pin its size.
const KEPT_ENCODING_BYTES: usize = 64 * 1024;

thread_local! {
    static ENCODING: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// An event's compressed WebSocket frames: one per codec and compressor window, each
/// made the first time a connection needs it, from the event's plain frame, and then
/// shared by every connection that takes that form.
#[derive(Debug, Default)]
pub struct DeflatedFrames {
    forms: [OnceLock<Bytes>; 2 * Deflate::FORMS],
}

impl DeflatedFrames {
    /// The frame of form `form` ([`Wire::deflated_form`]) for `plain`: compressed, or
    /// `plain` itself when compressing does not make it smaller.
    pub fn frame<'a>(&'a self, form: usize, plain: &'a Bytes) -> &'a Bytes {
        let Some(cell) = self.forms.get(form) else { return plain };
        cell.get_or_init(|| {
            let payload = frame_payload(plain);
            let opcode = if form < Deflate::FORMS { OpCode::Text } else { OpCode::Binary };
            let bits = Deflate::form_bits(form % Deflate::FORMS);
            deflated_frame(opcode, payload, bits).unwrap_or_else(|| plain.clone())
        })
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

    fn deflating(offer: &str) -> Wire {
        let negotiated = crate::ws::negotiate([offer], 64).expect("accepted");
        Wire::WebSocket(Codec::Json, Some(negotiated.deflate))
    }

    #[test]
    fn one_compressed_frame_serves_every_connection_of_a_form() {
        let long = format!(r#"{{"ev":"message","text":"{}"}}"#, "many words, many words; ".repeat(40));
        let plain = Wire::WebSocket(Codec::Json, None).frame(long.as_bytes());
        let forms = DeflatedFrames::default();
        let (first, second) =
            (deflating("permessage-deflate"), deflating("permessage-deflate; client_max_window_bits"));
        let form = first.deflated_form(&plain).expect("long enough to compress");
        assert_eq!(second.deflated_form(&plain), Some(form));
        let frame = forms.frame(form, &plain);
        assert_eq!(frame[0], 0xC1, "compressed text");
        assert!(frame.len() < plain.len() / 4);
        // The very same buffer for the next connection of that form.
        assert_eq!(forms.frame(form, &plain).as_ptr(), frame.as_ptr());
        assert_eq!(first.frame(long.as_bytes()), *frame, "a reply is compressed the same way");

        // A client with a 256-byte window needs its own form of a longer message, but
        // shares the common one for a message that fits its window.
        let narrow = deflating("permessage-deflate; server_max_window_bits=8");
        let narrow_form = narrow.deflated_form(&plain).expect("compressed");
        assert_ne!(narrow_form, form);
        assert!(forms.frame(narrow_form, &plain).len() < plain.len());
        let short = Wire::WebSocket(Codec::Json, None).frame(&long.as_bytes()[..200]);
        assert_eq!(narrow.deflated_form(&short), first.deflated_form(&short));
        // Below the threshold, and without deflate, the plain frame goes out.
        let tiny = Wire::WebSocket(Codec::Json, None).frame(b"{}");
        assert_eq!(first.deflated_form(&tiny), None);
        assert_eq!(Wire::WebSocket(Codec::Json, None).deflated_form(&plain), None);
        assert_eq!(Wire::Quic(Codec::Rkyv).deflated_form(&plain), None);
    }

    #[test]
    fn quic_frames_are_length_prefixed_little_endian() {
        let framed = Wire::Quic(Codec::Rkyv).frame(b"abc");
        assert_eq!(&framed[..], &[3, 0, 0, 0, b'a', b'b', b'c']);
        assert_eq!(Wire::Quic(Codec::Rkyv).codec(), Codec::Rkyv);
        assert_eq!(Wire::Quic(Codec::Json).codec(), Codec::Json);
    }
}
