//! Entry points for the fuzz targets (`fuzz/`) and their corpus replay
//! (`fuzz/tests/corpus_replay.rs`): thin wrappers over the sans-IO parsers that are
//! otherwise private to the connection code. Not part of the server's API.

use bytes::BytesMut;
use palaver_protocol::Codec;

pub use crate::conn::http::{MAX_BODY_BYTES, MAX_HEAD_BYTES, Request};

/// Takes one request head off the front of `buf`, as the HTTP reader does after each
/// read: `Ok(None)` while incomplete, `Err(status)` when the server would refuse it,
/// else the request and its `Content-Length`.
pub fn parse_head(buf: &mut BytesMut) -> Result<Option<(Request, usize)>, u16> {
    crate::conn::http::parse_head(buf).map_err(|e| match e {
        crate::conn::http::ReadError::Refuse(response) => response.status,
        crate::conn::http::ReadError::Closed => 0,
    })
}

/// What a valid upgrade request asks for: accept key, codec, whether to echo the
/// subprotocol, the bearer token (unverified), the `Sec-WebSocket-Extensions` answer.
pub type Upgrade = (String, Codec, bool, Option<String>, Option<String>);

/// The WebSocket upgrade checks the server makes (all but verifying the token), with
/// permessage-deflate offered: `Err(status)` when it would refuse the upgrade.
pub fn check_upgrade(request: &Request) -> Result<Upgrade, u16> {
    crate::conn::check_upgrade(request, Some(0))
        .map(|u| {
            let extensions = u.deflate.map(|d| d.response);
            (u.accept, u.codec, u.echo_protocol, u.token.map(str::to_owned), extensions)
        })
        .map_err(|response| response.status)
}
