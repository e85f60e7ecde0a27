//! WebTransport over HTTP/3 (draft-ietf-webtrans-http3, RFC 9220 extended CONNECT,
//! RFC 9297 HTTP datagrams), sans-IO: the subset of HTTP/3 a browser's WebTransport
//! session needs, for QUIC connections whose ALPN is `h3`.
//!
//! - [`wire`]: varints, HTTP/3 frames, SETTINGS, stream headers, capsules, datagrams;
//! - [`qpack`]: field sections with the static table and literals only (the server
//!   advertises a dynamic table capacity of 0), Huffman-coded strings included;
//! - [`connect`]: the extended CONNECT request checked (method, protocol, path, codec,
//!   origin) and answered;
//! - [`streams`]: incremental readers of the client's control stream and of the CONNECT
//!   stream (its request, then capsules).
//!
//! Not here: sockets, QUIC, TLS, or what the session carries (Palaver frames, exactly as
//! on a raw QUIC connection: the client's first WebTransport bidirectional stream is the
//! control stream). The QUIC driver feeds stream bytes in and writes what comes out.

pub mod connect;
pub mod qpack;
pub mod streams;
pub mod wire;

use std::fmt;

/// The ALPN protocol id of HTTP/3.
pub const ALPN_H3: &[u8] = b"h3";
/// The path of the CONNECT request that opens a Palaver session (`?codec=json` for JSON
/// frames; rkyv otherwise).
pub const SESSION_PATH: &str = "/v1/webtransport";
/// The largest header section accepted (and advertised as MAX_FIELD_SECTION_SIZE).
pub const MAX_FIELD_SECTION_BYTES: usize = 16 * 1024;
/// The largest frame on the control stream, and the largest capsule on the CONNECT
/// stream, read; a longer one is an error, not buffered.
pub const MAX_CONTROL_FRAME_BYTES: usize = 16 * 1024;

/// HTTP/3, QPACK and WebTransport error codes this module reports (the QUIC application
/// error code a connection or stream is closed with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum H3Code {
    /// H3_NO_ERROR.
    NoError,
    /// H3_GENERAL_PROTOCOL_ERROR.
    GeneralProtocol,
    /// H3_STREAM_CREATION_ERROR: a stream the peer may not open.
    StreamCreation,
    /// H3_CLOSED_CRITICAL_STREAM: the control stream ended.
    ClosedCriticalStream,
    /// H3_FRAME_UNEXPECTED: a frame where it is not allowed.
    FrameUnexpected,
    /// H3_FRAME_ERROR: a frame that does not parse.
    Frame,
    /// H3_EXCESSIVE_LOAD: more than this server reads.
    ExcessiveLoad,
    /// H3_ID_ERROR: a stream or session id that is wrong.
    Id,
    /// H3_SETTINGS_ERROR: a malformed SETTINGS frame.
    Settings,
    /// H3_MISSING_SETTINGS: the control stream did not start with SETTINGS.
    MissingSettings,
    /// H3_MESSAGE_ERROR: a malformed request.
    Message,
    /// QPACK_DECOMPRESSION_FAILED.
    QpackDecompressionFailed,
}

impl H3Code {
    /// The code on the wire.
    pub fn code(self) -> u64 {
        match self {
            H3Code::NoError => 0x100,
            H3Code::GeneralProtocol => 0x101,
            H3Code::StreamCreation => 0x103,
            H3Code::ClosedCriticalStream => 0x104,
            H3Code::FrameUnexpected => 0x105,
            H3Code::Frame => 0x106,
            H3Code::ExcessiveLoad => 0x107,
            H3Code::Id => 0x108,
            H3Code::Settings => 0x109,
            H3Code::MissingSettings => 0x10a,
            H3Code::Message => 0x10e,
            H3Code::QpackDecompressionFailed => 0x200,
        }
    }
}

/// A violation of HTTP/3 by the peer: close the connection with `code` and `reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} ({code:?})")]
pub struct H3Error {
    /// What kind of violation.
    pub code: H3Code,
    /// What was wrong, for the close frame's reason and the log.
    pub reason: String,
}

impl H3Error {
    fn new(code: H3Code, reason: impl fmt::Display) -> Self {
        H3Error { code, reason: reason.to_string() }
    }
    pub(crate) fn settings(reason: impl fmt::Display) -> Self {
        Self::new(H3Code::Settings, reason)
    }
    pub(crate) fn excessive_load(reason: impl fmt::Display) -> Self {
        Self::new(H3Code::ExcessiveLoad, reason)
    }
    pub(crate) fn decompression(reason: impl fmt::Display) -> Self {
        Self::new(H3Code::QpackDecompressionFailed, reason)
    }
    pub(crate) fn message(reason: impl fmt::Display) -> Self {
        Self::new(H3Code::Message, reason)
    }
    pub(crate) fn unexpected(reason: impl fmt::Display) -> Self {
        Self::new(H3Code::FrameUnexpected, reason)
    }
    pub(crate) fn missing_settings(reason: impl fmt::Display) -> Self {
        Self::new(H3Code::MissingSettings, reason)
    }
    pub(crate) fn stream_creation(reason: impl fmt::Display) -> Self {
        Self::new(H3Code::StreamCreation, reason)
    }
    pub(crate) fn closed_critical(reason: impl fmt::Display) -> Self {
        Self::new(H3Code::ClosedCriticalStream, reason)
    }
    pub(crate) fn id(reason: impl fmt::Display) -> Self {
        Self::new(H3Code::Id, reason)
    }
}
