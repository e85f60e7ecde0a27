//! `json_frame` and `rkyv_frame`: the client-frame decoders the server runs on every
//! incoming WebSocket message (`Codec::decode_client`), and the server-frame decoders
//! the SDK runs.

use palaver_protocol::{Codec, ReplyBody, ServerFrame};

/// JSON: never panics; a frame (client or server) that decodes re-encodes to bytes that
/// decode to the same frame, in JSON and in rkyv (so the two codecs accept the same
/// frames).
pub fn json_frame(data: &[u8]) {
    round_trip(Codec::Json, data);
}

/// rkyv: validated access (`rkyv::access` with bytecheck) on arbitrary, unaligned bytes
/// never panics; a frame (client or server) that decodes round-trips in both codecs, so
/// an identifier rkyv accepts is one JSON accepts too.
pub fn rkyv_frame(data: &[u8]) {
    round_trip(Codec::Rkyv, data);
    // Also at an odd offset: the archive is read in place from a socket buffer.
    let mut shifted = Vec::with_capacity(data.len() + 1);
    shifted.push(0);
    shifted.extend_from_slice(data);
    round_trip(Codec::Rkyv, &shifted[1..]);
}

fn round_trip(codec: Codec, data: &[u8]) {
    if let Ok(frame) = codec.decode_client(data) {
        for again in Codec::ALL {
            let bytes = again.encode_client(&frame).unwrap();
            let decoded = again.decode_client(&bytes);
            assert_eq!(decoded.as_ref(), Ok(&frame), "client frame via {again:?}: {frame:?}");
        }
    }
    if let Ok(frame) = codec.decode_server(data) {
        // A JSON `ok` body carries no tag: it is read as the answer it is, as the SDK reads
        // it by the request in flight.
        let answer = match &frame {
            ServerFrame::Reply { body: ReplyBody::Ok(ok), .. } => Some(ok.answer()),
            _ => None,
        };
        for again in Codec::ALL {
            let bytes = again.encode_server(&frame).unwrap();
            let decoded = again.decode_server_answering(&bytes, |_| answer);
            assert_eq!(decoded.as_ref(), Ok(&frame), "server frame via {again:?}: {frame:?}");
        }
    }
}
