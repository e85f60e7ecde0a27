//! permessage-deflate (RFC 7692) without context takeover in either direction: the offer
//! negotiation, compressing a server message, and decompressing a client message within
//! a size limit.
//!
//! Every message is compressed on its own (`server_no_context_takeover`), so one
//! compressed frame serves every recipient whose decompressor accepts it, and a socket
//! keeps no compressor between messages. Clients are asked for the same
//! (`client_no_context_takeover`; RFC 7692 §7.1.1.2 lets a server add it whatever the
//! offer said), so a client message is decompressed by a decompressor made for it and
//! dropped with it: an idle socket holds no zlib state in either direction.
//!
//! Compressors are per thread (one per window size, reset before each message): their
//! state is ~300 KiB, far too much to make per message or to keep per socket.

use std::cell::RefCell;

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::frame::{CloseCode, OpCode, WsError, frame_header};

/// The extension's name in `Sec-WebSocket-Extensions`.
const EXTENSION: &str = "permessage-deflate";
/// The empty stored block a sync flush ends with: stripped from every compressed message
/// and put back before decompressing one (RFC 7692 §7.2.1, §7.2.2).
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// Window sizes (log2) a peer may ask for.
const WINDOW_BITS: std::ops::RangeInclusive<u8> = 8..=15;
/// The smallest window zlib compresses raw deflate with. Its longest back-reference is
/// the window less 262 bytes (zlib's `MAX_DIST`): 250 bytes, which a peer that asked for
/// a 256-byte window (`server_max_window_bits=8`) can follow.
const MIN_COMPRESSOR_BITS: u8 = 9;
/// Compressors kept per thread: one per window size 9..=15.
const COMPRESSORS: usize = 7;
/// Compression effort: zlib's level 2. On a chat-sized event (263 bytes of JSON) it saves
/// what level 6 does (193 bytes against 194) at the same cost (~16 µs, most of it zlib
/// clearing its hash table for each message); on a 100 KiB page of events it costs 15
/// times less (42 µs against 610 µs) for 1.5 KB against 1.5 KB. Level 1 (static Huffman
/// codes only) saves just 13 % on the event.
const LEVEL: u32 = 2;

/// What a connection negotiated: every server message of at least `min_bytes` is sent
/// compressed (when that makes it smaller), with back-references no longer than the
/// client's window allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deflate {
    /// `server_max_window_bits` of the accepted offer (15 when it had none).
    window_bits: u8,
    /// Messages shorter than this go uncompressed (16 bits: every socket carries this).
    min_bytes: u16,
}

impl Deflate {
    /// The window (log2) to compress a `len`-byte message with for this connection, or
    /// `None` to send it uncompressed. A message no longer than the client's window has
    /// no back-reference beyond it whatever the compressor's window, so every client
    /// shares the full-window form of such a message; only longer messages to clients
    /// that asked for a smaller window need a form of their own.
    pub fn compressor_bits(self, len: usize) -> Option<u8> {
        (len >= usize::from(self.min_bytes)).then(|| self.window_for(len))
    }

    /// The compressor window (log2) for a `len`-byte message, whatever its size.
    fn window_for(self, len: usize) -> u8 {
        if len <= 1 << self.window_bits { 15 } else { self.window_bits.max(MIN_COMPRESSOR_BITS) }
    }

    /// Which compressor window `bits` (from [`Deflate::compressor_bits`]) is: 0 to 6.
    pub fn form_index(bits: u8) -> usize {
        usize::from(bits.clamp(MIN_COMPRESSOR_BITS, 15) - MIN_COMPRESSOR_BITS)
    }

    /// The compressor window (log2) of form `index`: the inverse of [`Deflate::form_index`].
    pub fn form_bits(index: usize) -> u8 {
        MIN_COMPRESSOR_BITS + (index.min(COMPRESSORS - 1) as u8)
    }

    /// The number of distinct compressor windows ([`Deflate::form_index`] is below it).
    pub const FORMS: usize = COMPRESSORS;
}

/// The outcome of negotiating `Sec-WebSocket-Extensions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The connection's parameters.
    pub deflate: Deflate,
    /// The `Sec-WebSocket-Extensions` value to answer with.
    pub response: String,
}

/// Accepts the first valid permessage-deflate offer among the `Sec-WebSocket-Extensions`
/// header values (in order), or none. An offer with an unknown, repeated or malformed
/// parameter is declined (RFC 7692 §5) and the next one considered; a header that cannot
/// be parsed offers nothing. `min_bytes` is the server's compression threshold.
pub fn negotiate<'a>(headers: impl IntoIterator<Item = &'a str>, min_bytes: u16) -> Option<Negotiated> {
    headers.into_iter().flat_map(split_unquoted(',')).find_map(|offer| {
        let mut parts = split_unquoted(';')(offer).into_iter();
        let name = parts.next()?.trim();
        if !name.eq_ignore_ascii_case(EXTENSION) {
            return None;
        }
        let window_bits = accept_offer(parts)?;
        let mut response = format!("{EXTENSION}; server_no_context_takeover; client_no_context_takeover");
        if let Some(bits) = window_bits {
            response.push_str(&format!("; server_max_window_bits={bits}"));
        }
        Some(Negotiated { deflate: Deflate { window_bits: window_bits.unwrap_or(15), min_bytes }, response })
    })
}

/// Checks an offer's parameters: `Some(server_max_window_bits)` when it can be accepted.
fn accept_offer<'a>(params: impl Iterator<Item = &'a str>) -> Option<Option<u8>> {
    let mut seen = [false; 4];
    let mut server_bits = None;
    for param in params {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(unquote(value.trim())?)),
            None => (param.trim(), None),
        };
        let which = match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" if value.is_none() => 0,
            "client_no_context_takeover" if value.is_none() => 1,
            "server_max_window_bits" => {
                server_bits = Some(window_bits(value?)?);
                2
            }
            "client_max_window_bits" => {
                if let Some(value) = value {
                    window_bits(value)?;
                }
                3
            }
            _ => return None,
        };
        if std::mem::replace(&mut seen[which], true) {
            return None;
        }
    }
    Some(server_bits)
}

/// A window size value: a decimal 8 to 15 without leading zeros (RFC 7692 §7.1.2).
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|bits| WINDOW_BITS.contains(bits))
}

/// A parameter value: a token, or a quoted string (backslash escapes undone).
fn unquote(value: &str) -> Option<&str> {
    match value.strip_prefix('"') {
        None => Some(value),
        // Window sizes are digits: a quoted value with escapes is no valid value anyway.
        Some(rest) => rest.strip_suffix('"').filter(|inner| !inner.contains(['"', '\\'])),
    }
}

/// Splits on `separator` outside quoted strings; an unterminated quote yields nothing.
fn split_unquoted(separator: char) -> impl Fn(&str) -> Vec<&str> {
    move |text| {
        let mut parts = Vec::new();
        let (mut start, mut quoted, mut escaped) = (0, false, false);
        for (i, c) in text.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                c if c == separator && !quoted => {
                    parts.push(&text[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        if quoted {
            return Vec::new();
        }
        parts.push(&text[start..]);
        parts.retain(|p| !p.trim().is_empty());
        parts
    }
}

thread_local! {
    static THREAD_COMPRESSORS: RefCell<[Option<Compress>; COMPRESSORS]> =
        const { RefCell::new([const { None }; COMPRESSORS]) };
}

/// The frame of a message compressed with a `bits` window (9 to 15), RSV1 set: `None`
/// when compressing would not make it smaller.
pub fn deflated_frame(opcode: OpCode, payload: &[u8], bits: u8) -> Option<Bytes> {
    compress_frame(opcode, payload, bits, true)
}

/// The frame of a message compressed for `deflate` whatever its size and gain: for a
/// peer that takes only compressed messages once permessage-deflate is negotiated (the
/// test echo's).
pub fn always_deflated_frame(opcode: OpCode, payload: &[u8], deflate: Deflate) -> Bytes {
    compress_frame(opcode, payload, deflate.window_for(payload.len()), false)
        .unwrap_or_else(|| super::encode_frame(opcode, payload))
}

fn compress_frame(opcode: OpCode, payload: &[u8], bits: u8, only_if_smaller: bool) -> Option<Bytes> {
    const MAX_HEADER: usize = 10;
    let bits = bits.clamp(MIN_COMPRESSOR_BITS, 15);
    // The compressed payload is written after room for the largest header; its real
    // header goes right before it once its length is known. Only a smaller result is
    // wanted: no more room than the payload's (plus the tail that is cut).
    let room = if only_if_smaller {
        payload.len() + SYNC_TAIL.len()
    } else {
        payload.len() + payload.len() / 8 + 64
    };
    let mut out = Vec::with_capacity(MAX_HEADER + room);
    out.resize(MAX_HEADER, 0);
    let done = THREAD_COMPRESSORS.with_borrow_mut(|compressors| {
        let compressor = compressors[Deflate::form_index(bits)]
            .get_or_insert_with(|| Compress::new_with_window_bits(Compression::new(LEVEL), false, bits));
        let done = loop {
            let taken = usize::try_from(compressor.total_in()).unwrap_or(usize::MAX).min(payload.len());
            let status = compressor.compress_vec(&payload[taken..], &mut out, FlushCompress::Sync);
            // Complete once all input went in and the flush did not run out of room.
            let complete = compressor.total_in() == payload.len() as u64 && out.len() < out.capacity();
            if complete || status.is_err() || only_if_smaller {
                break complete && matches!(status, Ok(Status::Ok));
            }
            out.reserve(out.capacity());
        };
        // No context carries over to the next message (server_no_context_takeover).
        compressor.reset();
        done
    });
    if !done || !out.ends_with(&SYNC_TAIL) {
        return None;
    }
    out.truncate(out.len() - SYNC_TAIL.len());
    let compressed = out.len() - MAX_HEADER;
    if only_if_smaller && compressed >= payload.len() {
        return None;
    }
    let (header, len) = frame_header(opcode, true, compressed);
    let start = MAX_HEADER - len;
    out[start..MAX_HEADER].copy_from_slice(&header[..len]);
    Some(Bytes::from(out).slice(start..))
}

/// One client message being decompressed: made for the message, dropped with it.
pub struct Inflater {
    inner: Decompress,
    /// Set once the deflate stream's final block has been read.
    ended: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater").field("ended", &self.ended).finish_non_exhaustive()
    }
}

impl Default for Inflater {
    fn default() -> Self {
        Self::new()
    }
}

impl Inflater {
    /// A decompressor for one message (a 32 KiB window: the most a client may use).
    pub fn new() -> Self {
        Inflater { inner: Decompress::new(false), ended: false }
    }

    /// Decompresses one frame's payload onto `out`, which may never grow past `limit`
    /// bytes: the decompressed message is held to the same limit as an uncompressed one,
    /// and nothing is allocated beyond it (close 1009 instead).
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), WsError> {
        self.inflate(input, out, limit)
    }

    /// Ends the message: decompresses what the final flush left (the stripped tail).
    pub fn finish(mut self, out: &mut Vec<u8>, limit: usize) -> Result<(), WsError> {
        if self.ended {
            return Ok(());
        }
        self.inflate(&SYNC_TAIL, out, limit)
    }

    fn inflate(&mut self, mut input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), WsError> {
        const FIRST_CHUNK: usize = 4 * 1024;
        let corrupt = WsError { code: CloseCode::InvalidPayload, reason: "invalid compressed data" };
        let too_big = WsError { code: CloseCode::TooBig, reason: "message too big" };
        // Whether the last call filled `out`: the decompressor may hold more output.
        let mut filled = false;
        loop {
            if self.ended {
                if input.is_empty() {
                    return Ok(());
                }
                return Err(WsError {
                    code: CloseCode::InvalidPayload,
                    reason: "data after the final block",
                });
            }
            if input.is_empty() && !filled {
                return Ok(());
            }
            if out.len() == out.capacity() {
                // One byte past the limit tells "exactly the limit" from "over it".
                if out.len() > limit {
                    return Err(too_big);
                }
                let target = (out.capacity() * 2).max(FIRST_CHUNK).min(limit + 1);
                out.reserve_exact(target - out.len());
            }
            let before = self.inner.total_in();
            let status =
                self.inner.decompress_vec(input, out, FlushDecompress::None).map_err(|_| corrupt.clone())?;
            let used = usize::try_from(self.inner.total_in() - before).unwrap_or(usize::MAX).min(input.len());
            input = &input[used..];
            self.ended = status == Status::StreamEnd;
            if out.len() > limit {
                return Err(too_big);
            }
            filled = out.len() == out.capacity();
            // Input left, room left, nothing taken: the stream cannot go on.
            if used == 0 && !filled && !self.ended && !input.is_empty() {
                return Err(corrupt);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::frame::frame_payload;
    use super::*;

    /// Bytes that do not compress (xorshift).
    fn noise(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    fn offer(header: &str) -> Option<(u8, String)> {
        negotiate([header], 64).map(|n| (n.deflate.window_bits, n.response))
    }

    const BOTH: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    #[test]
    fn every_offer_shape_is_answered_without_context_takeover() {
        assert_eq!(offer("permessage-deflate"), Some((15, BOTH.into())));
        assert_eq!(offer("permessage-deflate; client_max_window_bits"), Some((15, BOTH.into())));
        assert_eq!(offer("permessage-deflate; client_max_window_bits=10"), Some((15, BOTH.into())));
        assert_eq!(offer("Permessage-Deflate; CLIENT_NO_CONTEXT_TAKEOVER"), Some((15, BOTH.into())));
        assert_eq!(offer("permessage-deflate;server_no_context_takeover"), Some((15, BOTH.into())));
        let with_bits = |bits: u8| Some((bits, format!("{BOTH}; server_max_window_bits={bits}")));
        assert_eq!(offer("permessage-deflate; server_max_window_bits=10"), with_bits(10));
        assert_eq!(offer("permessage-deflate; server_max_window_bits=\"9\""), with_bits(9));
        assert_eq!(offer("permessage-deflate; server_max_window_bits=8"), with_bits(8));
        assert_eq!(
            offer(
                "permessage-deflate; client_no_context_takeover; server_max_window_bits = 15; client_max_window_bits"
            ),
            with_bits(15)
        );
    }

    #[test]
    fn invalid_offers_are_declined_and_the_next_one_taken() {
        for declined in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=1a",
            "permessage-deflate; client_max_window_bits=99",
            "permessage-deflate; client_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; mystery",
            "permessage-deflate; server_max_window_bits=\"9",
            "x-webkit-deflate-frame",
            "",
        ] {
            assert_eq!(offer(declined), None, "{declined}");
        }
        // A declined offer does not end the negotiation: later offers, in the same header
        // or another, are considered in order.
        let negotiated = negotiate(
            [
                "foo; bar=\"a,b\", permessage-deflate; server_max_window_bits=20",
                "permessage-deflate; server_max_window_bits=12, permessage-deflate",
            ],
            64,
        );
        assert_eq!(negotiated.map(|n| n.deflate.window_bits), Some(12));
    }

    #[test]
    fn small_messages_share_the_full_window_form() {
        let deflate = Deflate { window_bits: 8, min_bytes: 64 };
        assert_eq!(deflate.compressor_bits(63), None);
        assert_eq!(deflate.compressor_bits(256), Some(15));
        assert_eq!(deflate.compressor_bits(257), Some(9));
        let deflate = Deflate { window_bits: 12, min_bytes: 64 };
        assert_eq!(deflate.compressor_bits(4096), Some(15));
        assert_eq!(deflate.compressor_bits(4097), Some(12));
        assert_eq!(Deflate::form_index(9), 0);
        assert_eq!(Deflate::form_index(15), Deflate::FORMS - 1);
        assert!((0..Deflate::FORMS).all(|i| Deflate::form_index(Deflate::form_bits(i)) == i));
    }

    fn inflate_frame(frame: &[u8]) -> Vec<u8> {
        assert_eq!(frame[0] & 0x40, 0x40, "RSV1 marks a compressed message");
        let mut out = Vec::new();
        let mut inflater = Inflater::new();
        inflater.push(frame_payload(frame), &mut out, 1 << 20).unwrap();
        inflater.finish(&mut out, 1 << 20).unwrap();
        out
    }

    #[test]
    fn compressed_frames_round_trip_at_every_window() {
        let json = br#"{"event":"message","room":"r_01J9ZQ3","seq":42,"sender":"u_01J9ZQ","text":"hello there, hello again"}"#;
        let long: Vec<u8> = json.iter().copied().cycle().take(70_000).collect();
        for bits in 9..=15 {
            for payload in [&json[..], &long[..]] {
                let frame = deflated_frame(OpCode::Text, payload, bits).expect("JSON compresses");
                assert_eq!(frame[0], 0xC1, "FIN, RSV1, text");
                assert!(frame.len() < payload.len());
                assert_eq!(inflate_frame(&frame), payload);
            }
        }
        // Random bytes do not shrink: sent as they are, unless compression is forced.
        let random = noise(70_000, 7);
        assert_eq!(deflated_frame(OpCode::Binary, &random, 15), None);
        let deflate = Deflate { window_bits: 15, min_bytes: 64 };
        let forced = always_deflated_frame(OpCode::Binary, &random, deflate);
        assert!(forced.len() > random.len());
        assert_eq!(inflate_frame(&forced), random);
        assert_eq!(inflate_frame(&always_deflated_frame(OpCode::Text, b"", deflate)), b"");
    }

    #[test]
    fn the_smallest_window_never_reaches_back_past_256_bytes() {
        // A 300-byte block of noise repeated: matches lie 300 bytes back, beyond a 256-byte
        // window. The 9-bit compressor (which serves `server_max_window_bits=8`) must not
        // use them; a 10-bit one does.
        let block = noise(300, 11);
        let repeated = block.repeat(8);
        let narrow = deflated_frame(OpCode::Binary, &repeated, 9);
        assert!(narrow.is_none_or(|f| f.len() > 2_000), "no match beyond 250 bytes");
        let wide = deflated_frame(OpCode::Binary, &repeated, 10).expect("matches 300 bytes back");
        assert!(wide.len() < 600, "{}", wide.len());
        // And 240-byte repeats are within its reach (it finds most of them).
        let near = block[..240].repeat(8);
        assert!(deflated_frame(OpCode::Binary, &near, 9).expect("compresses").len() < 1_200);
    }

    #[test]
    fn decompression_stops_at_the_limit() {
        // 1 MiB of zeros compresses to about a kilobyte: a bomb for a 64 KiB limit.
        let bomb = deflated_frame(OpCode::Binary, &vec![0u8; 1 << 20], 15).unwrap();
        let payload = frame_payload(&bomb);
        assert!(payload.len() < 2_000);
        let mut out = Vec::new();
        let error = Inflater::new().push(payload, &mut out, 65_536).unwrap_err();
        assert_eq!(error.code, CloseCode::TooBig);
        assert!(out.capacity() <= 65_537, "allocated {} bytes", out.capacity());
        // Exactly the limit is fine.
        let exact = deflated_frame(OpCode::Binary, &vec![0u8; 65_536], 15).unwrap();
        let mut out = Vec::new();
        let mut inflater = Inflater::new();
        inflater.push(frame_payload(&exact), &mut out, 65_536).unwrap();
        inflater.finish(&mut out, 65_536).unwrap();
        assert_eq!(out.len(), 65_536);
    }

    #[test]
    fn corrupt_data_is_refused() {
        let mut out = Vec::new();
        // BTYPE 11 is reserved.
        let error = Inflater::new().push(&[0xff, 0xff, 0xff], &mut out, 1_000).unwrap_err();
        assert_eq!(error.code, CloseCode::InvalidPayload);
        // A final block followed by more data.
        let mut out = Vec::new();
        let mut inflater = Inflater::new();
        // "a" in a final fixed-Huffman block, then garbage.
        let error = inflater.push(&[0x4b, 0x04, 0x00, 0x01], &mut out, 1_000).unwrap_err();
        assert_eq!(error.code, CloseCode::InvalidPayload);
        assert_eq!(out, b"a");
    }
}
