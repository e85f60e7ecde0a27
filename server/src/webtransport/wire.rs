//! HTTP/3 wire pieces WebTransport needs (RFC 9000 varints, RFC 9114 frames and stream
//! types, RFC 9297 capsules and datagrams, the WebTransport stream headers): parsers over
//! byte slices that say how much they consumed, or that more bytes are needed, and
//! writers into a `Vec<u8>`. No stream, no socket.

use super::H3Error;

/// The largest value a QUIC variable-length integer holds.
pub const VARINT_MAX: u64 = (1 << 62) - 1;

/// HTTP/3 frame types (RFC 9114 §7.2).
pub mod frame_type {
    /// DATA.
    pub const DATA: u64 = 0x00;
    /// HEADERS.
    pub const HEADERS: u64 = 0x01;
    /// CANCEL_PUSH.
    pub const CANCEL_PUSH: u64 = 0x03;
    /// SETTINGS.
    pub const SETTINGS: u64 = 0x04;
    /// PUSH_PROMISE.
    pub const PUSH_PROMISE: u64 = 0x05;
    /// GOAWAY.
    pub const GOAWAY: u64 = 0x07;
    /// MAX_PUSH_ID.
    pub const MAX_PUSH_ID: u64 = 0x0d;
    /// The first bytes of a WebTransport bidirectional stream (not a real frame: the
    /// session id follows, then the stream's data).
    pub const WEBTRANSPORT_STREAM: u64 = 0x41;

    /// HTTP/2 frame types with no HTTP/3 meaning: receiving one is an error (§7.2.8).
    pub fn is_reserved_http2(kind: u64) -> bool {
        matches!(kind, 0x02 | 0x06 | 0x08 | 0x09)
    }
}

/// Unidirectional stream types (RFC 9114 §6.2, RFC 9204 §4.2, WebTransport).
pub mod stream_type {
    /// The peer's control stream.
    pub const CONTROL: u64 = 0x00;
    /// A push stream (only servers open them).
    pub const PUSH: u64 = 0x01;
    /// The QPACK encoder stream.
    pub const QPACK_ENCODER: u64 = 0x02;
    /// The QPACK decoder stream.
    pub const QPACK_DECODER: u64 = 0x03;
    /// A WebTransport unidirectional stream (the session id follows).
    pub const WEBTRANSPORT: u64 = 0x54;
}

/// SETTINGS identifiers this server reads or sends.
pub mod setting {
    /// QPACK's dynamic table capacity (we send 0: no dynamic table).
    pub const QPACK_MAX_TABLE_CAPACITY: u64 = 0x01;
    /// The largest field section the sender accepts.
    pub const MAX_FIELD_SECTION_SIZE: u64 = 0x06;
    /// QPACK streams that may be blocked (we send 0).
    pub const QPACK_BLOCKED_STREAMS: u64 = 0x07;
    /// Extended CONNECT (RFC 9220).
    pub const ENABLE_CONNECT_PROTOCOL: u64 = 0x08;
    /// HTTP datagrams (RFC 9297).
    pub const H3_DATAGRAM: u64 = 0x33;
    /// HTTP datagrams, the draft code point older Chromium versions still look for.
    pub const H3_DATAGRAM_DRAFT04: u64 = 0xff_d277;
    /// WebTransport, draft-ietf-webtrans-http3-02.
    pub const ENABLE_WEBTRANSPORT_DRAFT02: u64 = 0x2b60_3742;
    /// WebTransport sessions per connection, draft-ietf-webtrans-http3-07 and later.
    pub const WEBTRANSPORT_MAX_SESSIONS_DRAFT07: u64 = 0xc671_706a;
    /// WebTransport sessions per connection, later drafts.
    pub const WT_MAX_SESSIONS: u64 = 0x14e9_cd29;

    /// HTTP/2 settings with no HTTP/3 meaning: receiving one is an error (§7.2.4.1).
    pub fn is_reserved_http2(id: u64) -> bool {
        matches!(id, 0x00 | 0x02 | 0x03 | 0x04 | 0x05)
    }
}

/// Capsule types (RFC 9297, WebTransport).
pub mod capsule_type {
    /// A datagram carried on the stream.
    pub const DATAGRAM: u64 = 0x00;
    /// The session ends: a `u32` code and a UTF-8 message.
    pub const CLOSE_WEBTRANSPORT_SESSION: u64 = 0x2843;
    /// The peer asks to wind the session down.
    pub const DRAIN_WEBTRANSPORT_SESSION: u64 = 0x78ae;
}

/// Reads a variable-length integer: `Ok(None)` when `bytes` ends first.
pub fn read_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let first = *bytes.first()?;
    let len = 1usize << (first >> 6);
    let encoded = bytes.get(..len)?;
    let mut value = u64::from(first & 0x3f);
    for byte in &encoded[1..] {
        value = (value << 8) | u64::from(*byte);
    }
    Some((value, len))
}

/// Appends `value` as a variable-length integer (the shortest encoding). Values above
/// [`VARINT_MAX`] cannot be encoded and are clamped to it (never reached: every value
/// written here is a small constant, a length or a stream id).
pub fn write_varint(out: &mut Vec<u8>, value: u64) {
    let value = value.min(VARINT_MAX);
    if value < 1 << 6 {
        out.push(value as u8);
    } else if value < 1 << 14 {
        out.extend_from_slice(&((value as u16) | 0x4000).to_be_bytes());
    } else if value < 1 << 30 {
        out.extend_from_slice(&((value as u32) | 0x8000_0000).to_be_bytes());
    } else {
        out.extend_from_slice(&(value | 0xc000_0000_0000_0000).to_be_bytes());
    }
}

/// One HTTP/3 frame (or a capsule: both are type, length, payload) read from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The frame type.
    pub kind: u64,
    /// Its payload.
    pub payload: &'a [u8],
}

/// Reads one frame from the start of `bytes`: `Ok(None)` until it is complete; an error
/// for a length above `max_payload` (checked before the payload arrives, so a peer
/// cannot make us buffer it).
pub fn read_frame(bytes: &[u8], max_payload: usize) -> Result<Option<(Frame<'_>, usize)>, H3Error> {
    let Some((kind, kind_len)) = read_varint(bytes) else { return Ok(None) };
    let Some((len, len_len)) = read_varint(&bytes[kind_len..]) else { return Ok(None) };
    if len > max_payload as u64 {
        return Err(H3Error::excessive_load(format!("a frame of type {kind:#x} is {len} bytes long")));
    }
    let start = kind_len + len_len;
    let end = start + len as usize;
    let Some(payload) = bytes.get(start..end) else { return Ok(None) };
    Ok(Some((Frame { kind, payload }, end)))
}

/// Appends a frame (or capsule).
pub fn write_frame(out: &mut Vec<u8>, kind: u64, payload: &[u8]) {
    write_varint(out, kind);
    write_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

/// The settings a peer sent (those this server reads; unknown ones are ignored, as
/// RFC 9114 §7.2.4 requires).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerSettings {
    /// ENABLE_CONNECT_PROTOCOL was 1.
    pub connect_protocol: bool,
    /// H3_DATAGRAM (either code point) was 1.
    pub h3_datagram: bool,
    /// Any WebTransport setting was non-zero.
    pub webtransport: bool,
    /// QPACK_MAX_TABLE_CAPACITY (what we may use when encoding; we never do).
    pub qpack_max_table_capacity: u64,
    /// MAX_FIELD_SECTION_SIZE, when given.
    pub max_field_section_size: Option<u64>,
}

/// Parses a SETTINGS frame's payload: a duplicate identifier, an HTTP/2 one, a boolean
/// setting other than 0 or 1, or a truncated pair is a connection error
/// (`H3_SETTINGS_ERROR`).
pub fn parse_settings(mut payload: &[u8]) -> Result<PeerSettings, H3Error> {
    let mut settings = PeerSettings::default();
    let mut seen = Vec::new();
    while !payload.is_empty() {
        let truncated = || H3Error::settings("a SETTINGS frame ends inside an identifier-value pair");
        let (id, id_len) = read_varint(payload).ok_or_else(truncated)?;
        let (value, value_len) = read_varint(&payload[id_len..]).ok_or_else(truncated)?;
        payload = &payload[id_len + value_len..];
        if setting::is_reserved_http2(id) {
            return Err(H3Error::settings(format!("setting {id:#x} is an HTTP/2 setting")));
        }
        if seen.contains(&id) {
            return Err(H3Error::settings(format!("setting {id:#x} appears twice")));
        }
        if seen.len() >= 256 {
            return Err(H3Error::excessive_load("more than 256 settings"));
        }
        seen.push(id);
        let flag = |what: &str| match value {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(H3Error::settings(format!("{what} must be 0 or 1, not {value}"))),
        };
        match id {
            setting::ENABLE_CONNECT_PROTOCOL => settings.connect_protocol = flag("ENABLE_CONNECT_PROTOCOL")?,
            setting::H3_DATAGRAM | setting::H3_DATAGRAM_DRAFT04 => {
                settings.h3_datagram |= flag("H3_DATAGRAM")?;
            }
            setting::ENABLE_WEBTRANSPORT_DRAFT02 => settings.webtransport |= flag("ENABLE_WEBTRANSPORT")?,
            setting::WEBTRANSPORT_MAX_SESSIONS_DRAFT07 | setting::WT_MAX_SESSIONS => {
                settings.webtransport |= value > 0;
            }
            setting::QPACK_MAX_TABLE_CAPACITY => settings.qpack_max_table_capacity = value,
            setting::MAX_FIELD_SECTION_SIZE => settings.max_field_section_size = Some(value),
            _ => {}
        }
    }
    Ok(settings)
}

/// The preface of the server's control stream: its type, then SETTINGS: no QPACK
/// dynamic table, extended CONNECT, HTTP datagrams (both code points) and WebTransport
/// (every draft's code point Chromium reads), one session per connection.
pub fn server_control_stream_preface(max_field_section_size: u64) -> Vec<u8> {
    let mut payload = Vec::new();
    for (id, value) in [
        (setting::QPACK_MAX_TABLE_CAPACITY, 0),
        (setting::QPACK_BLOCKED_STREAMS, 0),
        (setting::MAX_FIELD_SECTION_SIZE, max_field_section_size),
        (setting::ENABLE_CONNECT_PROTOCOL, 1),
        (setting::H3_DATAGRAM, 1),
        (setting::H3_DATAGRAM_DRAFT04, 1),
        (setting::ENABLE_WEBTRANSPORT_DRAFT02, 1),
        (setting::WEBTRANSPORT_MAX_SESSIONS_DRAFT07, 1),
        (setting::WT_MAX_SESSIONS, 1),
    ] {
        write_varint(&mut payload, id);
        write_varint(&mut payload, value);
    }
    let mut out = Vec::new();
    write_varint(&mut out, stream_type::CONTROL);
    write_frame(&mut out, frame_type::SETTINGS, &payload);
    out
}

/// What a client's unidirectional stream is, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UniStream {
    /// The client's control stream.
    Control,
    /// A QPACK encoder or decoder stream (read and discarded: no dynamic table).
    Qpack,
    /// A WebTransport stream of this session.
    WebTransport {
        /// The session (its CONNECT stream's id).
        session: u64,
    },
    /// A push stream: clients must not open one (`H3_STREAM_CREATION_ERROR`).
    Push,
    /// Another type (reserved, grease, an extension): ignored (RFC 9114 §6.2).
    Unknown(u64),
}

/// Reads a unidirectional stream's header: its kind and the header's length, or
/// `None` until enough bytes arrived.
pub fn read_uni_stream_header(bytes: &[u8]) -> Option<(UniStream, usize)> {
    let (kind, len) = read_varint(bytes)?;
    Some(match kind {
        stream_type::CONTROL => (UniStream::Control, len),
        stream_type::QPACK_ENCODER | stream_type::QPACK_DECODER => (UniStream::Qpack, len),
        stream_type::PUSH => (UniStream::Push, len),
        stream_type::WEBTRANSPORT => {
            let (session, session_len) = read_varint(&bytes[len..])?;
            (UniStream::WebTransport { session }, len + session_len)
        }
        other => (UniStream::Unknown(other), len),
    })
}

/// What a client's bidirectional stream is, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BidiStream {
    /// An HTTP request (its first frame follows, unread).
    Request,
    /// A WebTransport stream of this session; the header is consumed.
    WebTransport {
        /// The session (its CONNECT stream's id).
        session: u64,
    },
}

/// Reads a bidirectional stream's first bytes: a WebTransport stream header (consumed,
/// its length returned) or the start of a request (nothing consumed).
pub fn read_bidi_stream_header(bytes: &[u8]) -> Option<(BidiStream, usize)> {
    let (kind, len) = read_varint(bytes)?;
    if kind == frame_type::WEBTRANSPORT_STREAM {
        let (session, session_len) = read_varint(&bytes[len..])?;
        Some((BidiStream::WebTransport { session }, len + session_len))
    } else {
        Some((BidiStream::Request, 0))
    }
}

/// The header the server writes first on a unidirectional stream of `session`.
pub fn webtransport_uni_stream_header(session: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(10);
    write_varint(&mut out, stream_type::WEBTRANSPORT);
    write_varint(&mut out, session);
    out
}

/// The header the server would write first on a bidirectional stream it opens for
/// `session` (Palaver's server opens none, but a client does: tests use it).
pub fn webtransport_bidi_stream_header(session: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(10);
    write_varint(&mut out, frame_type::WEBTRANSPORT_STREAM);
    write_varint(&mut out, session);
    out
}

/// Splits an HTTP datagram (RFC 9297 §2.1) into its session and payload: the quarter
/// stream id names the CONNECT stream (`id / 4`). `None` for a datagram too short to
/// hold one.
pub fn read_datagram(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (quarter, len) = read_varint(bytes)?;
    Some((quarter.checked_mul(4)?, &bytes[len..]))
}

/// The prefix of a datagram for `session` (its quarter stream id), to put before the
/// payload.
pub fn datagram_prefix(session: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    write_varint(&mut out, session / 4);
    out
}

/// A CLOSE_WEBTRANSPORT_SESSION capsule: the application's code and a message (cut to
/// the 1,024 bytes the draft allows, at a character boundary).
pub fn close_session_capsule(code: u32, message: &str) -> Vec<u8> {
    let mut end = message.len().min(1024);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(&message.as_bytes()[..end]);
    let mut out = Vec::new();
    write_frame(&mut out, capsule_type::CLOSE_WEBTRANSPORT_SESSION, &payload);
    out
}

/// Reads a CLOSE_WEBTRANSPORT_SESSION capsule's payload: the code and the message.
pub fn parse_close_session(payload: &[u8]) -> Result<(u32, String), H3Error> {
    let Some((code, message)) = payload.split_first_chunk::<4>() else {
        return Err(H3Error::message("a CLOSE_WEBTRANSPORT_SESSION capsule shorter than its code"));
    };
    let message = std::str::from_utf8(message)
        .map_err(|_| H3Error::message("a CLOSE_WEBTRANSPORT_SESSION message that is not UTF-8"))?;
    Ok((u32::from_be_bytes(*code), message.to_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn varints_round_trip_at_every_length_boundary() {
        for value in [0, 63, 64, 16_383, 16_384, (1 << 30) - 1, 1 << 30, VARINT_MAX] {
            let mut out = Vec::new();
            write_varint(&mut out, value);
            assert_eq!(read_varint(&out), Some((value, out.len())), "{value}");
            assert_eq!(read_varint(&out[..out.len() - 1]), None.filter(|_: &(u64, usize)| out.len() > 1));
        }
        // RFC 9000 appendix A.1's examples.
        assert_eq!(
            read_varint(&[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c]),
            Some((151_288_809_941_952_652, 8))
        );
        assert_eq!(read_varint(&[0x9d, 0x7f, 0x3e, 0x7d]), Some((494_878_333, 4)));
        assert_eq!(read_varint(&[0x7b, 0xbd]), Some((15_293, 2)));
        assert_eq!(read_varint(&[0x25]), Some((37, 1)));
        assert_eq!(read_varint(&[0x40, 0x25]), Some((37, 2)));
        assert_eq!(read_varint(&[]), None);
    }

    #[test]
    fn frames_wait_for_their_payload_and_refuse_oversized_lengths_before_it_arrives() {
        let mut out = Vec::new();
        write_frame(&mut out, frame_type::HEADERS, b"abc");
        for cut in 0..out.len() {
            assert_eq!(read_frame(&out[..cut], 16).unwrap(), None);
        }
        let (frame, used) = read_frame(&out, 16).unwrap().unwrap();
        assert_eq!((frame.kind, frame.payload, used), (frame_type::HEADERS, &b"abc"[..], out.len()));
        // A 1 GiB length is refused from its first four bytes.
        let huge = [0x01, 0xc0, 0, 0, 0, 0x40, 0, 0, 0];
        assert_eq!(read_frame(&huge, 16).unwrap_err().code, super::super::H3Code::ExcessiveLoad);
    }

    #[test]
    fn our_settings_parse_back_and_announce_webtransport() {
        let preface = server_control_stream_preface(16 * 1024);
        assert_eq!(read_uni_stream_header(&preface), Some((UniStream::Control, 1)));
        let (frame, used) = read_frame(&preface[1..], 1024).unwrap().unwrap();
        assert_eq!(used, preface.len() - 1);
        assert_eq!(frame.kind, frame_type::SETTINGS);
        let settings = parse_settings(frame.payload).unwrap();
        assert!(settings.connect_protocol && settings.h3_datagram && settings.webtransport);
        assert_eq!(settings.qpack_max_table_capacity, 0);
        assert_eq!(settings.max_field_section_size, Some(16 * 1024));
    }

    #[test]
    fn malformed_settings_are_settings_errors() {
        let settings = |pairs: &[(u64, u64)]| {
            let mut out = Vec::new();
            for (id, value) in pairs {
                write_varint(&mut out, *id);
                write_varint(&mut out, *value);
            }
            parse_settings(&out)
        };
        use super::super::H3Code::Settings;
        assert_eq!(
            settings(&[(setting::H3_DATAGRAM, 1), (setting::H3_DATAGRAM, 1)]).unwrap_err().code,
            Settings
        );
        assert_eq!(settings(&[(0x02, 1)]).unwrap_err().code, Settings);
        assert_eq!(settings(&[(setting::ENABLE_CONNECT_PROTOCOL, 2)]).unwrap_err().code, Settings);
        assert_eq!(parse_settings(&[0x08]).unwrap_err().code, Settings);
        // Grease and unknown settings are ignored.
        assert_eq!(settings(&[(0x21 + 0x1f * 7, 12_345), (0x1234, 9)]).unwrap(), PeerSettings::default());
    }

    #[test]
    fn stream_headers_name_their_session() {
        let uni = webtransport_uni_stream_header(4);
        assert_eq!(uni, [0x40, 0x54, 0x04]);
        assert_eq!(read_uni_stream_header(&uni), Some((UniStream::WebTransport { session: 4 }, 3)));
        assert_eq!(read_uni_stream_header(&uni[..2]), None);
        let bidi = webtransport_bidi_stream_header(0);
        assert_eq!(bidi, [0x40, 0x41, 0x00]);
        assert_eq!(
            read_bidi_stream_header(&[0x40, 0x41, 0x00, 9, 9]),
            Some((BidiStream::WebTransport { session: 0 }, 3))
        );
        assert_eq!(read_bidi_stream_header(&[0x01, 0x05]), Some((BidiStream::Request, 0)));
        assert_eq!(read_uni_stream_header(&[0x02]), Some((UniStream::Qpack, 1)));
        assert_eq!(read_uni_stream_header(&[0x01]), Some((UniStream::Push, 1)));
        assert_eq!(read_uni_stream_header(&[0x40, 0x21]), Some((UniStream::Unknown(0x21), 2)));
    }

    #[test]
    fn datagrams_carry_the_quarter_stream_id() {
        let mut datagram = datagram_prefix(8);
        datagram.extend_from_slice(b"typing");
        assert_eq!(datagram[0], 2);
        assert_eq!(read_datagram(&datagram), Some((8, &b"typing"[..])));
        assert_eq!(read_datagram(&[]), None);
    }

    #[test]
    fn close_capsules_round_trip_and_cut_long_messages_at_a_character() {
        let capsule = close_session_capsule(1000, "bye");
        let (frame, _) = read_frame(&capsule, 2048).unwrap().unwrap();
        assert_eq!(frame.kind, capsule_type::CLOSE_WEBTRANSPORT_SESSION);
        assert_eq!(parse_close_session(frame.payload).unwrap(), (1000, "bye".to_owned()));
        let long = "é".repeat(600);
        let capsule = close_session_capsule(1, &long);
        let (frame, _) = read_frame(&capsule, 2048).unwrap().unwrap();
        let (_, message) = parse_close_session(frame.payload).unwrap();
        assert_eq!(message.len(), 1024);
        assert!(parse_close_session(&[0, 1]).is_err());
        assert!(parse_close_session(&[0, 0, 0, 1, 0xff]).is_err());
    }
}
