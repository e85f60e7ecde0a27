//! Frame parsing (client to server: masked) and encoding (server to client: unmasked).

use bytes::{Buf, Bytes, BytesMut};

use super::deflate::Inflater;

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
    /// 4001: the socket's login was ended (logout, log out everywhere, a new password):
    /// its tokens are refused too, so reconnecting needs a new login.
    SessionEnded,
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
            CloseCode::SessionEnded => 4001,
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

/// Incremental parser of client frames into messages, reassembling fragments and, when
/// permessage-deflate was negotiated, decompressing.
///
/// Text is checked as it arrives: each frame's payload (decompressed, for a compressed
/// message) is validated as UTF-8 up to the bytes received so far, even before the frame
/// is complete, keeping an incomplete trailing sequence for the next bytes, so invalid
/// text fails at its first invalid byte.
#[derive(Debug)]
pub struct FrameParser {
    max_message: usize,
    /// Whether permessage-deflate was negotiated (RSV1 marks a compressed message).
    deflate: bool,
    /// Payload bytes of the frame at the front of the buffer already unmasked (and, for
    /// text, validated) in place.
    unmasked: usize,
    /// The UTF-8 check of the text message in progress.
    utf8: Utf8Stream,
    /// A message spanning frames, or being decompressed (boxed: idle sockets have none).
    partial: Option<Box<Partial>>,
}

/// A message whose first frame has arrived but not its last.
#[derive(Debug)]
struct Partial {
    opcode: OpCode,
    /// The (decompressed) payload so far.
    data: Vec<u8>,
    /// The message's decompressor, if it is compressed.
    inflater: Option<Inflater>,
    /// Payload bytes received so far (compressed ones, for a compressed message).
    received: usize,
}

/// A client frame's header.
#[derive(Debug, Clone, Copy)]
struct Header {
    fin: bool,
    /// RSV1: the first frame of a compressed message.
    rsv1: bool,
    opcode: OpCode,
    /// Header bytes, the mask key included.
    len: usize,
    /// Payload bytes.
    payload: usize,
    mask: [u8; 4],
}

impl FrameParser {
    /// A parser refusing messages above `max_message` bytes (decompressed, for compressed
    /// ones); `deflate` when permessage-deflate was negotiated.
    pub fn new(max_message: usize, deflate: bool) -> Self {
        Self { max_message, deflate, unmasked: 0, utf8: Utf8Stream::default(), partial: None }
    }

    /// Takes the next complete message out of `buf`, consuming its bytes. `Ok(None)`
    /// means more bytes are needed.
    pub fn next_message(&mut self, buf: &mut BytesMut) -> Result<Option<WsMessage>, WsError> {
        loop {
            let Some(header) = self.next_header(buf)? else { return Ok(None) };
            let checks_text = self.checks_text(header);
            let available = (buf.len() - header.len).min(header.payload);
            if available > self.unmasked {
                let fresh = &mut buf[header.len + self.unmasked..header.len + available];
                unmask(fresh, header.mask, self.unmasked);
                if checks_text {
                    self.utf8.push(fresh)?;
                }
                self.unmasked = available;
            }
            if available < header.payload {
                buf.reserve(header.len + header.payload - buf.len());
                return Ok(None);
            }
            buf.advance(header.len);
            let payload = buf.split_to(header.payload).freeze();
            self.unmasked = 0;
            if header.opcode.is_control() {
                return Ok(Some(control_message(header.opcode, payload)?));
            }
            if let Some(message) = self.data_frame(header, payload)? {
                return Ok(Some(message));
            }
        }
    }

    /// Whether the payload of this frame is text to check as it arrives (uncompressed
    /// text; compressed text is checked once decompressed).
    fn checks_text(&self, header: Header) -> bool {
        match (header.opcode, &self.partial) {
            (OpCode::Text, None) => !header.rsv1,
            (OpCode::Continuation, Some(partial)) => {
                partial.opcode == OpCode::Text && partial.inflater.is_none()
            }
            _ => false,
        }
    }

    /// A complete data frame: the message it completes, if any.
    fn data_frame(&mut self, header: Header, payload: Bytes) -> Result<Option<WsMessage>, WsError> {
        let too_big = WsError { code: CloseCode::TooBig, reason: "message too big" };
        let mut partial = match (header.opcode, self.partial.take()) {
            (OpCode::Continuation, Some(partial)) => partial,
            (_, None) if !header.rsv1 && header.fin => {
                // The common case: one uncompressed frame, handed out without a copy.
                return Ok(Some(self.finish(header.opcode, payload)?));
            }
            (opcode, _) => Box::new(Partial {
                opcode,
                data: Vec::new(),
                inflater: header.rsv1.then(Inflater::new),
                received: 0,
            }),
        };
        partial.received += payload.len();
        if partial.received > self.max_message {
            return Err(too_big);
        }
        let checked = partial.data.len();
        match &mut partial.inflater {
            Some(inflater) => inflater.push(&payload, &mut partial.data, self.max_message)?,
            None => partial.data.extend_from_slice(&payload),
        }
        if partial.inflater.is_some() && partial.opcode == OpCode::Text {
            self.utf8.push(&partial.data[checked..])?;
        }
        if !header.fin {
            self.partial = Some(partial);
            return Ok(None);
        }
        let Partial { opcode, mut data, inflater, .. } = *partial;
        if let Some(inflater) = inflater {
            let checked = data.len();
            inflater.finish(&mut data, self.max_message)?;
            if opcode == OpCode::Text {
                self.utf8.push(&data[checked..])?;
            }
        }
        Ok(Some(self.finish(opcode, Bytes::from(data))?))
    }

    /// The message a final frame completes; text must end on a whole character.
    fn finish(&mut self, opcode: OpCode, data: Bytes) -> Result<WsMessage, WsError> {
        if opcode == OpCode::Text {
            std::mem::take(&mut self.utf8).finish()?;
            return Ok(WsMessage::Text(data));
        }
        Ok(WsMessage::Binary(data))
    }

    /// The header of the frame at the front of `buf`, checked against the protocol and
    /// the message in progress; `Ok(None)` until it is all there.
    fn next_header(&self, buf: &BytesMut) -> Result<Option<Header>, WsError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        let fin = b0 & 0x80 != 0;
        let rsv1 = b0 & 0x40 != 0;
        if b0 & 0x30 != 0 || (rsv1 && !self.deflate) {
            return Err(protocol_error("reserved bits set without an extension"));
        }
        let opcode = OpCode::from_bits(b0 & 0x0F).ok_or_else(|| protocol_error("unknown opcode"))?;
        if b1 & 0x80 == 0 {
            return Err(protocol_error("client frames must be masked"));
        }
        let (len, at) = match b1 & 0x7F {
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
        match (opcode, &self.partial) {
            (OpCode::Continuation, None) => return Err(protocol_error("continuation without a start")),
            (OpCode::Text | OpCode::Binary, Some(_)) => {
                return Err(protocol_error("new message inside a fragmented one"));
            }
            _ => {}
        }
        // RSV1 marks the first frame of a compressed message, and nothing else.
        if rsv1 && (opcode.is_control() || opcode == OpCode::Continuation) {
            return Err(protocol_error("RSV1 set on a control or continuation frame"));
        }
        // A fragment may not take an uncompressed message past the limit either.
        let so_far = match &self.partial {
            Some(partial) if !opcode.is_control() => partial.received,
            _ => 0,
        };
        if len > (self.max_message - so_far.min(self.max_message)) as u64 {
            return Err(WsError { code: CloseCode::TooBig, reason: "message too big" });
        }
        if buf.len() < at + 4 {
            return Ok(None);
        }
        let mask = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
        Ok(Some(Header { fin, rsv1, opcode, len: at + 4, payload: len as usize, mask }))
    }
}

/// Incremental UTF-8 validation across chunks: the bytes of a character split between
/// chunks wait here for the rest.
#[derive(Debug, Default, Clone, Copy)]
struct Utf8Stream {
    pending: [u8; 4],
    len: u8,
}

impl Utf8Stream {
    fn invalid() -> WsError {
        WsError { code: CloseCode::InvalidPayload, reason: "invalid UTF-8" }
    }

    /// Checks the next bytes: an error at the first byte that cannot be UTF-8.
    fn push(&mut self, mut bytes: &[u8]) -> Result<(), WsError> {
        if self.len > 0 {
            let have = usize::from(self.len);
            let width = utf8_width(self.pending[0]);
            let take = (width - have).min(bytes.len());
            self.pending[have..have + take].copy_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            let candidate = &self.pending[..have + take];
            match std::str::from_utf8(candidate) {
                Ok(_) => self.len = 0,
                Err(e) if e.error_len().is_none() => {
                    self.len = (have + take) as u8;
                    return Ok(());
                }
                Err(_) => return Err(Self::invalid()),
            }
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let tail = &bytes[e.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(Self::invalid()),
        }
    }

    /// The message ended: no character may be left unfinished.
    fn finish(self) -> Result<(), WsError> {
        if self.len == 0 { Ok(()) } else { Err(Self::invalid()) }
    }
}

/// The length of the UTF-8 sequence a lead byte starts (1 for bytes that cannot lead:
/// the check then fails on them).
fn utf8_width(lead: u8) -> usize {
    match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 1,
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

/// Unmasks bytes that start `offset` bytes into a frame's payload.
fn unmask(payload: &mut [u8], mask: [u8; 4], offset: usize) {
    let mask = std::array::from_fn::<u8, 4, _>(|i| mask[(offset + i) % 4]);
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
    let (header, len) = frame_header(opcode, false, payload.len());
    let mut out = BytesMut::with_capacity(len + payload.len());
    out.extend_from_slice(&header[..len]);
    out.extend_from_slice(payload);
    out.freeze()
}

/// The header of an unmasked, final server frame of `len` payload bytes, and its length
/// (2 to 10 bytes); `compressed` sets RSV1 (a permessage-deflate message).
pub(crate) fn frame_header(opcode: OpCode, compressed: bool, len: usize) -> ([u8; 10], usize) {
    let mut out = [0u8; 10];
    out[0] = 0x80 | if compressed { 0x40 } else { 0 } | opcode.bits();
    match len {
        0..=125 => {
            out[1] = len as u8;
            (out, 2)
        }
        126..=0xFFFF => {
            out[1] = 126;
            out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            (out, 4)
        }
        _ => {
            out[1] = 127;
            out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            (out, 10)
        }
    }
}

/// The payload of a frame [`encode_frame`] made (its header skipped).
pub(crate) fn frame_payload(frame: &[u8]) -> &[u8] {
    let header = match frame.get(1).map(|b| b & 0x7F) {
        Some(126) => 4,
        Some(127) => 10,
        _ => 2,
    };
    frame.get(header..).unwrap_or_default()
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
        // `opcode` may carry RSV1 (0x40).
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
        parse_with(bytes, max, false)
    }

    fn parse_with(bytes: &[u8], max: usize, deflate: bool) -> Result<Vec<WsMessage>, WsError> {
        let mut parser = FrameParser::new(max, deflate);
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

    #[test]
    fn text_split_anywhere_is_valid() {
        let text = "κόσμε → 🎉 ok";
        let bytes = text.as_bytes();
        // Fragments that cut characters in half, parsed one byte at a time.
        let mut stream = masked(false, 1, &bytes[..3]);
        stream.extend(masked(false, 0, &bytes[3..12]));
        stream.extend(masked(true, 0, &bytes[12..]));
        assert_eq!(parse_all(&stream, 100).unwrap(), vec![WsMessage::Text(Bytes::from(text))]);
    }

    /// Feeds `chunks` one after the other; returns after which chunk the parser failed.
    fn fails_after(chunks: &[&[u8]]) -> Option<(usize, CloseCode)> {
        let mut parser = FrameParser::new(1_000, false);
        let mut buf = BytesMut::new();
        for (i, chunk) in chunks.iter().enumerate() {
            buf.extend_from_slice(chunk);
            loop {
                match parser.next_message(&mut buf) {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => return Some((i, e.code)),
                }
            }
        }
        None
    }

    #[test]
    fn invalid_text_fails_at_the_first_bad_fragment() {
        let start = "κόσμε".as_bytes();
        // Autobahn 6.4.1: the second fragment is invalid; the third never matters.
        let first = masked(false, 1, start);
        let second = masked(false, 0, &[0xf4, 0x90, 0x80, 0x80]);
        let third = masked(true, 0, b"edited");
        assert_eq!(fails_after(&[&first, &second, &third]), Some((1, CloseCode::InvalidPayload)));
        // 6.4.2: a valid lead byte ends the first fragment; the next byte proves it wrong.
        let first = masked(false, 1, &[start, &[0xf4]].concat());
        let second = masked(false, 0, &[0x90]);
        assert_eq!(fails_after(&[&first, &second, &third]), Some((1, CloseCode::InvalidPayload)));
    }

    #[test]
    fn invalid_text_fails_before_its_frame_is_complete() {
        // Autobahn 6.4.3/6.4.4: one frame sent in chops; the chop with the bad byte fails
        // it, though the frame's end has not arrived.
        let payload = ["κόσμε".as_bytes(), &[0xf4, 0x90, 0x80, 0x80], b"edited"].concat();
        let frame = masked(true, 1, &payload);
        let (a, rest) = frame.split_at(2 + 4 + 10);
        let (b, c) = rest.split_at(2);
        assert_eq!(fails_after(&[a, b, c]), Some((1, CloseCode::InvalidPayload)));
        // A character cut off by the message's end is invalid too.
        assert_eq!(
            parse_all(&masked(true, 1, &[b'a', 0xe2, 0x82]), 100).unwrap_err().code,
            CloseCode::InvalidPayload
        );
    }

    /// A server-compressed message as a masked client message split into `pieces` frames.
    fn compressed_message(opcode: u8, payload: &[u8], pieces: usize) -> Vec<u8> {
        let frame = super::super::deflate::deflated_frame(
            if opcode == 1 { OpCode::Text } else { OpCode::Binary },
            payload,
            15,
        )
        .expect("compressible");
        let body = frame_payload(&frame);
        let size = body.len().div_ceil(pieces).max(1);
        let chunks: Vec<&[u8]> = body.chunks(size).collect();
        let mut out = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let code = if i == 0 { 0x40 | opcode } else { 0 };
            out.extend(masked(i + 1 == chunks.len(), code, chunk));
        }
        out
    }

    #[test]
    fn compressed_messages_round_trip_whole_and_fragmented() {
        let text =
            r#"{"op":"send","room":"r_1","text":"hello, hello, hello — κόσμε","cid":"c-1"}"#.repeat(20);
        for pieces in [1, 2, 7] {
            let mut stream = compressed_message(1, text.as_bytes(), pieces);
            stream.extend(masked(true, 9, b"p"));
            stream.extend(compressed_message(2, &[3u8; 5_000], pieces));
            stream.extend(masked(true, 1, b"plain"));
            let messages = parse_with(&stream, 100_000, true).unwrap();
            assert_eq!(
                messages,
                vec![
                    WsMessage::Text(Bytes::from(text.clone())),
                    WsMessage::Ping(Bytes::from_static(b"p")),
                    WsMessage::Binary(Bytes::from(vec![3u8; 5_000])),
                    WsMessage::Text(Bytes::from_static(b"plain")),
                ],
                "{pieces} pieces"
            );
        }
    }

    #[test]
    fn rsv1_is_only_for_the_first_frame_of_a_negotiated_compressed_message() {
        let compressed = compressed_message(1, &b"abc".repeat(50), 1);
        assert_eq!(parse_with(&compressed, 1_000, false).unwrap_err().code, CloseCode::ProtocolError);
        let mut continued = masked(false, 1, b"a");
        continued.extend(masked(true, 0x40, b"b"));
        assert_eq!(parse_with(&continued, 1_000, true).unwrap_err().code, CloseCode::ProtocolError);
        assert_eq!(
            parse_with(&masked(true, 0x49, b""), 1_000, true).unwrap_err().code,
            CloseCode::ProtocolError
        );
        assert_eq!(
            parse_with(&masked(true, 0x21, b"a"), 1_000, true).unwrap_err().code,
            CloseCode::ProtocolError
        );
    }

    #[test]
    fn decompression_bombs_close_with_1009() {
        // 1 MiB of zeros in about a kilobyte, against a 64 KiB limit, whole or in fragments.
        for pieces in [1, 3] {
            let bomb = compressed_message(2, &vec![0u8; 1 << 20], pieces);
            assert!(bomb.len() < 2_000);
            assert_eq!(parse_with(&bomb, 65_536, true).unwrap_err().code, CloseCode::TooBig);
        }
        // Compressed text that inflates to invalid UTF-8 fails as text does.
        let bad = compressed_message(1, &[&b"ab".repeat(100)[..], &[0xff]].concat(), 2);
        assert_eq!(parse_with(&bad, 65_536, true).unwrap_err().code, CloseCode::InvalidPayload);
        // Garbage marked compressed.
        assert_eq!(
            parse_with(&masked(true, 0x42, &[0xff, 0xff, 0xff]), 1_000, true).unwrap_err().code,
            CloseCode::InvalidPayload
        );
    }

    proptest::proptest! {
        /// Whatever bytes arrive, in whatever chunks, the parser returns messages or an
        /// error and never panics or loops.
        #[test]
        fn arbitrary_bytes_never_panic(chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), 0..32), deflate: bool) {
            let mut parser = FrameParser::new(1_024, deflate);
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
            let mut parser = FrameParser::new(4_096, false);
            let mut buf = BytesMut::from(&bytes[..split]);
            let mut got = parser.next_message(&mut buf).unwrap();
            if got.is_none() {
                buf.extend_from_slice(&bytes[split..]);
                got = parser.next_message(&mut buf).unwrap();
            }
            proptest::prop_assert_eq!(got, Some(WsMessage::Binary(Bytes::from(payload))));
        }

        /// Any text, compressed and cut into any number of frames, comes out as it went in.
        #[test]
        fn compressed_text_round_trips(text in "\\PC{0,400}", pieces in 1usize..6) {
            let text = text.repeat(3);
            proptest::prop_assume!(super::super::deflate::deflated_frame(OpCode::Text, text.as_bytes(), 15).is_some());
            let stream = compressed_message(1, text.as_bytes(), pieces);
            proptest::prop_assert_eq!(parse_with(&stream, 4_096, true).unwrap(), vec![WsMessage::Text(Bytes::from(text))]);
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
