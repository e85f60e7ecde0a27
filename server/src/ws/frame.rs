//! Frame parsing (client to server: masked) and encoding (server to client: unmasked).

use bytes::{Buf, Bytes, BytesMut};

/// Frame opcodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// Continuation of a fragmented message.
    Continuation,
    /// UTF-8 text.
    Text,
    /// Binary.
    Binary,
    /// Close.
    Close,
    /// Ping.
    Ping,
    /// Pong.
    Pong,
}

impl OpCode {
    fn from_bits(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// Close codes Palaver sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// 1000.
    Normal,
    /// 1001: the server is shutting down.
    GoingAway,
    /// 1002: the peer broke the WebSocket protocol.
    ProtocolError,
    /// 1007: invalid UTF-8 in a text message.
    InvalidPayload,
    /// 1008: a policy was violated (auth deadline, garbage).
    Policy,
    /// 1009: a message exceeded the size limit.
    TooBig,
    /// 1011: the server hit an unexpected condition.
    InternalError,
    /// 1013: try again later (slow consumer: reconnect and resume).
    TryAgainLater,
}

impl CloseCode {
    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::ProtocolError => 1002,
            CloseCode::InvalidPayload => 1007,
            CloseCode::Policy => 1008,
            CloseCode::TooBig => 1009,
            CloseCode::InternalError => 1011,
            CloseCode::TryAgainLater => 1013,
        }
    }
}

/// A complete message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsMessage {
    /// A text message (valid UTF-8).
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping: answer with a pong carrying the same payload.
    Ping(Bytes),
    /// A pong.
    Pong,
    /// The client closes, with its code when it gave one.
    Close(Option<u16>),
}

/// The client broke the protocol; close with the given code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct WsError {
    /// The close code to send.
    pub code: CloseCode,
    /// Why, for the close frame's reason.
    pub reason: &'static str,
}

fn protocol_error(reason: &'static str) -> WsError {
    WsError { code: CloseCode::ProtocolError, reason }
}

/// Incremental parser of client frames into messages, reassembling fragments.
#[derive(Debug)]
pub struct FrameParser {
    max_message: usize,
    fragments: Option<(OpCode, BytesMut)>,
}

impl FrameParser {
    /// A parser refusing messages above `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        Self { max_message, fragments: None }
    }

    /// Takes the next complete message out of `buf`, consuming its bytes. `Ok(None)`
    /// means more bytes are needed.
    pub fn next_message(&mut self, buf: &mut BytesMut) -> Result<Option<WsMessage>, WsError> {
        loop {
            let Some((fin, opcode, payload)) = self.next_frame(buf)? else { return Ok(None) };
            if opcode.is_control() {
                return Ok(Some(control_message(opcode, payload)?));
            }
            let message = match (opcode, self.fragments.as_mut()) {
                (OpCode::Continuation, None) => return Err(protocol_error("continuation without a start")),
                (OpCode::Continuation, Some((_, data))) => {
                    if data.len() + payload.len() > self.max_message {
                        return Err(WsError { code: CloseCode::TooBig, reason: "message too big" });
                    }
                    data.extend_from_slice(&payload);
                    if !fin {
                        continue;
                    }
                    match self.fragments.take() {
                        Some((first, data)) => (first, data.freeze()),
                        None => return Err(protocol_error("continuation without a start")),
                    }
                }
                (_, Some(_)) => return Err(protocol_error("new message inside a fragmented one")),
                (first, None) => {
                    if !fin {
                        self.fragments = Some((first, BytesMut::from(&payload[..])));
                        continue;
                    }
                    (first, payload)
                }
            };
            return Ok(Some(match message {
                (OpCode::Text, data) => {
                    if std::str::from_utf8(&data).is_err() {
                        return Err(WsError { code: CloseCode::InvalidPayload, reason: "invalid UTF-8" });
                    }
                    WsMessage::Text(data)
                }
                (_, data) => WsMessage::Binary(data),
            }));
        }
    }

    /// One whole frame, unmasked: `(fin, opcode, payload)`.
    fn next_frame(&mut self, buf: &mut BytesMut) -> Result<Option<(bool, OpCode, Bytes)>, WsError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        let fin = b0 & 0x80 != 0;
        if b0 & 0x70 != 0 {
            return Err(protocol_error("reserved bits set without an extension"));
        }
        let opcode = OpCode::from_bits(b0 & 0x0F).ok_or_else(|| protocol_error("unknown opcode"))?;
        if b1 & 0x80 == 0 {
            return Err(protocol_error("client frames must be masked"));
        }
        let (len, header) = match b1 & 0x7F {
            126 => {
                if buf.len() < 4 {
                    return Ok(None);
                }
                (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
            }
            127 => {
                if buf.len() < 10 {
                    return Ok(None);
                }
                let mut be = [0u8; 8];
                be.copy_from_slice(&buf[2..10]);
                let len = u64::from_be_bytes(be);
                if len >> 63 != 0 {
                    return Err(protocol_error("frame length has its high bit set"));
                }
                (len, 10)
            }
            short => (u64::from(short), 2),
        };
        if opcode.is_control() && (len > 125 || !fin) {
            return Err(protocol_error("control frames are short and unfragmented"));
        }
        if len > self.max_message as u64 {
            return Err(WsError { code: CloseCode::TooBig, reason: "message too big" });
        }
        let len = len as usize;
        let total = header + 4 + len;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        let mask = [buf[header], buf[header + 1], buf[header + 2], buf[header + 3]];
        buf.advance(header + 4);
        let mut payload = buf.split_to(len);
        unmask(&mut payload, mask);
        Ok(Some((fin, opcode, payload.freeze())))
    }
}

fn control_message(opcode: OpCode, payload: Bytes) -> Result<WsMessage, WsError> {
    Ok(match opcode {
        OpCode::Ping => WsMessage::Ping(payload),
        OpCode::Pong => WsMessage::Pong,
        _ => {
            if payload.is_empty() {
                return Ok(WsMessage::Close(None));
            }
            if payload.len() < 2 {
                return Err(protocol_error("close payload of one byte"));
            }
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            let valid = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            if !valid {
                return Err(protocol_error("invalid close code"));
            }
            if std::str::from_utf8(&payload[2..]).is_err() {
                return Err(WsError { code: CloseCode::InvalidPayload, reason: "invalid UTF-8" });
            }
            WsMessage::Close(Some(code))
        }
    })
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = payload.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let mut w = [0u8; 4];
        w.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u32::from_ne_bytes(w) ^ word).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i];
    }
}

/// One unmasked, unfragmented server frame: header and payload in one buffer, ready to
/// be shared by every socket that should receive it.
pub fn encode_frame(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 10);
    out.extend_from_slice(&[0x80 | opcode.bits()]);
    match payload.len() {
        len @ 0..=125 => out.extend_from_slice(&[len as u8]),
        len @ 126..=0xFFFF => {
            out.extend_from_slice(&[126]);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.extend_from_slice(&[127]);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out.freeze()
}

/// A close frame with a code and a short reason (truncated to fit 125 bytes).
pub fn close_frame(code: CloseCode, reason: &str) -> Bytes {
    let mut payload = code.code().to_be_bytes().to_vec();
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode_frame(OpCode::Close, &payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match payload.len() {
            n @ 0..=125 => out.push(0x80 | n as u8),
            n @ 126..=0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn parse_all(bytes: &[u8], max: usize) -> Result<Vec<WsMessage>, WsError> {
        let mut parser = FrameParser::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        // Feed one byte at a time: the parser must cope with any split.
        for b in bytes {
            buf.extend_from_slice(&[*b]);
            while let Some(m) = parser.next_message(&mut buf)? {
                out.push(m);
            }
        }
        Ok(out)
    }

    #[test]
    fn text_binary_and_fragments() {
        let mut bytes = masked(true, 1, b"hello");
        bytes.extend(masked(false, 2, b"ab"));
        bytes.extend(masked(true, 9, b"p")); // a ping between fragments is allowed
        bytes.extend(masked(true, 0, b"cd"));
        bytes.extend(masked(true, 2, &vec![7u8; 70_000]));
        let messages = parse_all(&bytes, 100_000).unwrap();
        assert_eq!(
            messages[..3],
            [
                WsMessage::Text(Bytes::from_static(b"hello")),
                WsMessage::Ping(Bytes::from_static(b"p")),
                WsMessage::Binary(Bytes::from_static(b"abcd")),
            ]
        );
        assert_eq!(messages[3], WsMessage::Binary(Bytes::from(vec![7u8; 70_000])));
    }

    #[test]
    fn protocol_violations() {
        let unmasked = [0x81, 0x01, b'a'];
        assert_eq!(parse_all(&unmasked, 100).unwrap_err().code, CloseCode::ProtocolError);
        assert_eq!(parse_all(&masked(true, 0x3, b""), 100).unwrap_err().code, CloseCode::ProtocolError);
        assert_eq!(parse_all(&masked(true, 0x41, b"a"), 100).unwrap_err().code, CloseCode::ProtocolError);
        assert_eq!(parse_all(&masked(false, 9, b""), 100).unwrap_err().code, CloseCode::ProtocolError);
        assert_eq!(parse_all(&masked(true, 0, b"x"), 100).unwrap_err().code, CloseCode::ProtocolError);
        assert_eq!(parse_all(&masked(true, 1, &[0xff]), 100).unwrap_err().code, CloseCode::InvalidPayload);
        assert_eq!(parse_all(&masked(true, 2, &[0; 101]), 100).unwrap_err().code, CloseCode::TooBig);
        assert_eq!(parse_all(&masked(true, 8, &[3, 0xed]), 100).unwrap_err().code, CloseCode::ProtocolError);
    }

    #[test]
    fn close_codes_are_read() {
        let m = parse_all(&masked(true, 8, &[0x03, 0xe8, b'o', b'k']), 100).unwrap();
        assert_eq!(m, vec![WsMessage::Close(Some(1000))]);
        assert_eq!(parse_all(&masked(true, 8, b""), 100).unwrap(), vec![WsMessage::Close(None)]);
    }

    proptest::proptest! {
        /// Whatever bytes arrive, in whatever chunks, the parser returns messages or an
        /// error and never panics or loops.
        #[test]
        fn arbitrary_bytes_never_panic(chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), 0..32)) {
            let mut parser = FrameParser::new(1_024);
            let mut buf = BytesMut::new();
            for chunk in chunks {
                buf.extend_from_slice(&chunk);
                while let Ok(Some(_)) = parser.next_message(&mut buf) {}
            }
        }

        /// Any message, masked and split anywhere, comes out as it went in.
        #[test]
        fn masked_messages_round_trip(payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3_000), split in 0usize..3_000) {
            let bytes = masked(true, 2, &payload);
            let split = split.min(bytes.len());
            let mut parser = FrameParser::new(4_096);
            let mut buf = BytesMut::from(&bytes[..split]);
            let mut got = parser.next_message(&mut buf).unwrap();
            if got.is_none() {
                buf.extend_from_slice(&bytes[split..]);
                got = parser.next_message(&mut buf).unwrap();
            }
            proptest::prop_assert_eq!(got, Some(WsMessage::Binary(Bytes::from(payload))));
        }
    }

    #[test]
    fn encoded_frames_have_minimal_headers() {
        assert_eq!(&encode_frame(OpCode::Text, b"hi")[..], &[0x81, 2, b'h', b'i']);
        assert_eq!(encode_frame(OpCode::Binary, &[0; 200])[..4], [0x82, 126, 0, 200]);
        assert_eq!(encode_frame(OpCode::Binary, &vec![0; 70_000])[..2], [0x82, 127]);
        assert_eq!(close_frame(CloseCode::TooBig, "big")[..4], [0x88, 5, 0x03, 0xf1]);
    }
}
