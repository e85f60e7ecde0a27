//! Incremental readers of the two HTTP/3 streams a WebTransport session depends on: the
//! client's control stream (SETTINGS first, then nothing this server must act on) and
//! the CONNECT stream (the request's HEADERS, then capsules until the session closes).
//! Bytes go in as they arrive, in any chunking; what they mean comes out.

use super::qpack::{Field, decode_field_section};
use super::wire::{PeerSettings, capsule_type, frame_type, parse_close_session, parse_settings, read_frame};
use super::{H3Error, MAX_CONTROL_FRAME_BYTES, MAX_FIELD_SECTION_BYTES};

/// The client's control stream, after its type byte.
#[derive(Debug, Default)]
pub struct ControlStream {
    buffered: Vec<u8>,
    settings: Option<PeerSettings>,
}

impl ControlStream {
    /// Reads more of the stream; returns the peer's settings when this chunk completed
    /// them. Anything but SETTINGS first, a second SETTINGS, or a request frame is a
    /// connection error; GOAWAY, MAX_PUSH_ID and unknown frames are read and ignored.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<Option<PeerSettings>, H3Error> {
        self.buffered.extend_from_slice(bytes);
        let mut fresh = None;
        let mut used = 0;
        while let Some((frame, len)) = read_frame(&self.buffered[used..], MAX_CONTROL_FRAME_BYTES)? {
            used += len;
            match (frame.kind, &self.settings) {
                (frame_type::SETTINGS, None) => {
                    let settings = parse_settings(frame.payload)?;
                    self.settings = Some(settings.clone());
                    fresh = Some(settings);
                }
                (_, None) => {
                    return Err(H3Error::missing_settings(format!(
                        "the control stream starts with a frame of type {:#x}, not SETTINGS",
                        frame.kind
                    )));
                }
                (frame_type::SETTINGS, Some(_)) => {
                    return Err(H3Error::unexpected("a second SETTINGS frame on the control stream"));
                }
                (frame_type::DATA | frame_type::HEADERS | frame_type::PUSH_PROMISE, Some(_)) => {
                    return Err(H3Error::unexpected(format!(
                        "a frame of type {:#x} on the control stream",
                        frame.kind
                    )));
                }
                (kind, Some(_)) if frame_type::is_reserved_http2(kind) => {
                    return Err(H3Error::unexpected(format!("HTTP/2 frame type {kind:#x}")));
                }
                // GOAWAY (the client is leaving: the session's end shows on its streams),
                // MAX_PUSH_ID (no push here), CANCEL_PUSH, grease, extensions.
                _ => {}
            }
        }
        self.buffered.drain(..used);
        Ok(fresh)
    }

    /// The control stream may not end while the connection lives.
    pub fn finished(&self) -> H3Error {
        H3Error::closed_critical("the client closed its control stream")
    }
}

/// What the CONNECT stream said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectEvent {
    /// The request's header fields (once, first).
    Request(Vec<Field>),
    /// CLOSE_WEBTRANSPORT_SESSION: the client ends the session.
    Close {
        /// The application's code.
        code: u32,
        /// Its message.
        message: String,
    },
    /// DRAIN_WEBTRANSPORT_SESSION: the client asks to wind down.
    Drain,
}

/// The client's CONNECT stream: the request, then capsules (sent directly on the
/// stream; a DATA frame's content is read as capsules too).
#[derive(Debug, Default)]
pub struct ConnectStream {
    buffered: Vec<u8>,
    headers_read: bool,
    closed: bool,
}

impl ConnectStream {
    /// Reads more of the stream.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<Vec<ConnectEvent>, H3Error> {
        if self.closed {
            return Err(H3Error::message("data on the CONNECT stream after CLOSE_WEBTRANSPORT_SESSION"));
        }
        self.buffered.extend_from_slice(bytes);
        let mut events = Vec::new();
        let mut used = 0;
        loop {
            let limit = if self.headers_read { MAX_CONTROL_FRAME_BYTES } else { MAX_FIELD_SECTION_BYTES };
            let Some((frame, len)) = read_frame(&self.buffered[used..], limit)? else { break };
            used += len;
            if !self.headers_read {
                if frame.kind != frame_type::HEADERS {
                    return Err(H3Error::unexpected(format!(
                        "a request stream starts with a frame of type {:#x}, not HEADERS",
                        frame.kind
                    )));
                }
                self.headers_read = true;
                events.push(ConnectEvent::Request(decode_field_section(
                    frame.payload,
                    MAX_FIELD_SECTION_BYTES,
                )?));
                continue;
            }
            match frame.kind {
                frame_type::DATA => {
                    let mut inner = frame.payload;
                    while let Some((capsule, len)) = read_frame(inner, MAX_CONTROL_FRAME_BYTES)? {
                        inner = &inner[len..];
                        events.extend(capsule_event(capsule.kind, capsule.payload)?);
                    }
                    if !inner.is_empty() {
                        return Err(H3Error::message(
                            "a DATA frame on the CONNECT stream ends inside a capsule",
                        ));
                    }
                }
                frame_type::HEADERS => {
                    return Err(H3Error::unexpected("trailers on the CONNECT stream of a live session"));
                }
                kind if frame_type::is_reserved_http2(kind) => {
                    return Err(H3Error::unexpected(format!("HTTP/2 frame type {kind:#x}")));
                }
                kind => events.extend(capsule_event(kind, frame.payload)?),
            }
            if events.iter().any(|e| matches!(e, ConnectEvent::Close { .. })) {
                self.closed = true;
                break;
            }
        }
        self.buffered.drain(..used);
        if self.closed && !self.buffered.is_empty() {
            return Err(H3Error::message("data on the CONNECT stream after CLOSE_WEBTRANSPORT_SESSION"));
        }
        Ok(events)
    }
}

/// What a capsule on the CONNECT stream means.
fn capsule_event(kind: u64, payload: &[u8]) -> Result<Option<ConnectEvent>, H3Error> {
    Ok(match kind {
        capsule_type::CLOSE_WEBTRANSPORT_SESSION => {
            let (code, message) = parse_close_session(payload)?;
            Some(ConnectEvent::Close { code, message })
        }
        capsule_type::DRAIN_WEBTRANSPORT_SESSION => Some(ConnectEvent::Drain),
        // DATAGRAM capsules, flow-control capsules of later drafts, grease: ignored.
        _ => None,
    })
}

/// Checks that a WebTransport stream names the session this connection has (one per
/// connection); a stream for another session is a stream error the driver answers by
/// resetting that stream.
pub fn check_session(stream_session: u64, session: Option<u64>) -> Result<(), H3Error> {
    match session {
        Some(id) if id == stream_session => Ok(()),
        Some(id) => {
            Err(H3Error::id(format!("a stream for session {stream_session}; this connection's is {id}")))
        }
        None => Err(H3Error::stream_creation(format!(
            "a WebTransport stream for session {stream_session} before any session was accepted"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use crate::webtransport::H3Code;
    use crate::webtransport::wire::{close_session_capsule, write_frame, write_varint};

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len() / 2).map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap()).collect()
    }

    /// Chromium 156's control stream after its type byte, as `palaver` received it:
    /// SETTINGS with a QPACK table of 64 KiB (which we never use), 16 KiB field
    /// sections, 100 blocked streams, H3_DATAGRAM (both code points), draft-02's
    /// ENABLE_WEBTRANSPORT and two grease settings.
    const CHROMIUM_CONTROL: &str = "042901800100000680004000074064330180ffd27701ab60374201c000001881a6efbac00000007c28a9cbc000000444ba311900";
    /// Chromium 156's extended CONNECT (`new WebTransport("https://127.0.0.1:39233/v1/
    /// webtransport?codec=json", {serverCertificateHashes})` from a page of
    /// `http://127.0.0.1:44693`): static-table references and Huffman-coded literals.
    const CHROMIUM_CONNECT: &str = "0140660000d7cf508b089d5c0b8170dc65f132cf519463b858f058d360ea4567b13fe10f214907441eaf2f00b95d8749c87a3f89f058d360ea4567b13f2f0e4148b782c69b07522b3d895a74a6b65692c1ca900b01315f4b909d29aee30c044eae05c0b86e34d38fb30034c960baf262e8f81c2bd3536d722566339eaf190d5d1cef7180ac62b431b7468b45b27d1dbe722f31e695929658f0a0462404266f";

    #[test]
    fn chromium_s_captured_control_stream_and_connect_request_are_read() {
        let settings = ControlStream::default().receive(&hex(CHROMIUM_CONTROL)).unwrap().unwrap();
        assert!(settings.h3_datagram && settings.webtransport);
        assert_eq!(settings.max_field_section_size, Some(16 * 1024));
        let events = ConnectStream::default().receive(&hex(CHROMIUM_CONNECT)).unwrap();
        let [ConnectEvent::Request(fields)] = events.as_slice() else { panic!("{events:?}") };
        let field = |name: &str| fields.iter().find(|f| f.name == name).map(|f| f.value.as_str());
        assert_eq!(field(":method"), Some("CONNECT"));
        assert_eq!(field(":protocol"), Some("webtransport"));
        assert_eq!(field(":scheme"), Some("https"));
        assert_eq!(field(":authority"), Some("127.0.0.1:39233"));
        assert_eq!(field(":path"), Some("/v1/webtransport?codec=json"));
        assert_eq!(field("origin"), Some("http://127.0.0.1:44693"));
        assert_eq!(field("sec-webtransport-http3-draft02"), Some("1"));
        let own_pages = crate::webtransport::connect::OriginPolicy {
            allowed: crate::config::AllowedOrigins::Own,
            http_port: 44693,
            http_tls: false,
        };
        let accepted = crate::webtransport::connect::check(fields, &own_pages).unwrap();
        assert_eq!(accepted.codec, palaver_protocol::Codec::Json);
        assert!(accepted.draft02);
        // Another site's page is refused.
        let elsewhere = crate::webtransport::connect::OriginPolicy { http_port: 1, ..own_pages };
        assert_eq!(crate::webtransport::connect::check(fields, &elsewhere).unwrap_err().status, 403);
        // Byte by byte, the same.
        let mut stream = ConnectStream::default();
        let mut requests = 0;
        for byte in hex(CHROMIUM_CONNECT) {
            requests += stream.receive(&[byte]).unwrap().len();
        }
        assert_eq!(requests, 1);
    }

    #[test]
    fn settings_come_first_in_any_chunking() {
        let mut payload = Vec::new();
        for (id, value) in [(0x08u64, 1u64), (0x33, 1), (0x2b60_3742, 1)] {
            write_varint(&mut payload, id);
            write_varint(&mut payload, value);
        }
        let mut bytes = Vec::new();
        write_frame(&mut bytes, frame_type::SETTINGS, &payload);
        write_frame(&mut bytes, frame_type::GOAWAY, &[0]);
        write_frame(&mut bytes, 0x21, b"grease");
        let mut stream = ControlStream::default();
        let mut got = None;
        for byte in &bytes {
            if let Some(settings) = stream.receive(std::slice::from_ref(byte)).unwrap() {
                assert!(got.replace(settings).is_none());
            }
        }
        let settings = got.unwrap();
        assert!(settings.connect_protocol && settings.h3_datagram && settings.webtransport);
    }

    #[test]
    fn a_control_stream_without_settings_first_or_with_request_frames_is_refused() {
        let mut bytes = Vec::new();
        write_frame(&mut bytes, frame_type::GOAWAY, &[0]);
        assert_eq!(ControlStream::default().receive(&bytes).unwrap_err().code, H3Code::MissingSettings);
        let mut bytes = Vec::new();
        write_frame(&mut bytes, frame_type::SETTINGS, &[]);
        write_frame(&mut bytes, frame_type::SETTINGS, &[]);
        assert_eq!(ControlStream::default().receive(&bytes).unwrap_err().code, H3Code::FrameUnexpected);
        let mut bytes = Vec::new();
        write_frame(&mut bytes, frame_type::SETTINGS, &[]);
        write_frame(&mut bytes, frame_type::HEADERS, &[0, 0]);
        assert_eq!(ControlStream::default().receive(&bytes).unwrap_err().code, H3Code::FrameUnexpected);
        let mut bytes = Vec::new();
        write_frame(&mut bytes, frame_type::SETTINGS, &[]);
        write_frame(&mut bytes, 0x06, &[]);
        assert_eq!(ControlStream::default().receive(&bytes).unwrap_err().code, H3Code::FrameUnexpected);
        // A SETTINGS frame claiming 1 MiB is refused from its header.
        assert_eq!(
            ControlStream::default().receive(&[0x04, 0x80, 0x10, 0x00, 0x00]).unwrap_err().code,
            H3Code::ExcessiveLoad
        );
    }

    #[test]
    fn the_connect_stream_yields_the_request_then_its_close() {
        let head = crate::webtransport::qpack::encode_response(200, &[("origin", "x")]);
        let mut bytes = Vec::new();
        write_frame(&mut bytes, frame_type::HEADERS, &head);
        write_frame(&mut bytes, capsule_type::DRAIN_WEBTRANSPORT_SESSION, &[]);
        write_frame(&mut bytes, 0x17, b"grease capsule");
        bytes.extend_from_slice(&close_session_capsule(7, "done"));
        let mut stream = ConnectStream::default();
        let mut events = Vec::new();
        for chunk in bytes.chunks(3) {
            events.extend(stream.receive(chunk).unwrap());
        }
        assert_eq!(events.len(), 3);
        assert!(matches!(&events[0], ConnectEvent::Request(fields) if fields[1].value == "x"));
        assert_eq!(events[1], ConnectEvent::Drain);
        assert_eq!(events[2], ConnectEvent::Close { code: 7, message: "done".into() });
        assert!(stream.receive(&[0]).is_err());
    }

    #[test]
    fn capsules_inside_data_frames_are_read_too() {
        let mut bytes = Vec::new();
        write_frame(&mut bytes, frame_type::HEADERS, &[0, 0, 0xd1]);
        write_frame(&mut bytes, frame_type::DATA, &close_session_capsule(0, ""));
        let events = ConnectStream::default().receive(&bytes).unwrap();
        assert_eq!(events[1], ConnectEvent::Close { code: 0, message: String::new() });
    }

    #[test]
    fn a_request_stream_must_start_with_headers_within_bounds() {
        let mut bytes = Vec::new();
        write_frame(&mut bytes, frame_type::DATA, b"x");
        assert_eq!(ConnectStream::default().receive(&bytes).unwrap_err().code, H3Code::FrameUnexpected);
        assert_eq!(
            ConnectStream::default().receive(&[0x01, 0x80, 0x10, 0x00, 0x00]).unwrap_err().code,
            H3Code::ExcessiveLoad
        );
        assert_eq!(
            ConnectStream::default().receive(&[0x01, 0x02, 0x05, 0x00]).unwrap_err().code,
            H3Code::QpackDecompressionFailed
        );
    }

    #[test]
    fn streams_must_name_the_accepted_session() {
        assert!(check_session(0, Some(0)).is_ok());
        assert_eq!(check_session(4, Some(0)).unwrap_err().code, H3Code::Id);
        assert_eq!(check_session(0, None).unwrap_err().code, H3Code::StreamCreation);
    }
}
