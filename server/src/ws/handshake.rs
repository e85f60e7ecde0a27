//! The opening handshake: the accept key and the subprotocol (codec) choice.

use base64::Engine;
use palaver_protocol::Codec;
use sha1::{Digest, Sha1};

const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why an upgrade request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// A required header is missing or wrong.
    #[error("not a valid WebSocket upgrade: {0}")]
    BadRequest(&'static str),
    /// The client offered only subprotocols the server does not speak.
    #[error("no supported subprotocol offered (use palaver.v1.json or palaver.v1.rkyv)")]
    NoSubprotocol,
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> Result<String, HandshakeError> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(key.trim())
        .map_err(|_| HandshakeError::BadRequest("Sec-WebSocket-Key is not base64"))?;
    if decoded.len() != 16 {
        return Err(HandshakeError::BadRequest("Sec-WebSocket-Key must be 16 bytes"));
    }
    let mut sha = Sha1::new();
    sha.update(key.trim().as_bytes());
    sha.update(ACCEPT_GUID.as_bytes());
    Ok(base64::engine::general_purpose::STANDARD.encode(sha.finalize()))
}

/// The codec for a `Sec-WebSocket-Protocol` header: the first one offered that Palaver
/// speaks; JSON when none is offered. Returns whether to echo the header back.
pub fn choose_codec(offered: Option<&str>) -> Result<(Codec, bool), HandshakeError> {
    let Some(offered) = offered else { return Ok((Codec::Json, false)) };
    offered
        .split(',')
        .map(str::trim)
        .find_map(Codec::from_subprotocol)
        .map(|codec| (codec, true))
        .ok_or(HandshakeError::NoSubprotocol)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6455_example_key() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ==").unwrap(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert!(accept_key("short").is_err());
    }

    #[test]
    fn codec_choice_follows_the_client_order() {
        assert_eq!(choose_codec(None).unwrap(), (Codec::Json, false));
        assert_eq!(choose_codec(Some("x, palaver.v1.rkyv, palaver.v1.json")).unwrap(), (Codec::Rkyv, true));
        assert_eq!(choose_codec(Some("chat")), Err(HandshakeError::NoSubprotocol));
    }
}
