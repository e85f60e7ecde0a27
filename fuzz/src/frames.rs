//! `json_frame` and `rkyv_frame`: the client-frame decoders the server runs on every
//! incoming WebSocket message (`Codec::decode_client`), and the server-frame decoders
//! the SDK runs.

use palaver_protocol::Codec;

/// JSON: never panics; a client frame that decodes re-encodes to bytes that decode to
/// the same frame, in JSON and in rkyv (so the two codecs accept the same frames); a
/// server frame does in JSON.
pub fn json_frame(data: &[u8]) {
    round_trip(Codec::Json, data);
}

/// rkyv: validated access (`rkyv::access` with bytecheck) on arbitrary, unaligned bytes
/// never panics; a client frame that decodes round-trips in both codecs, a server frame
/// in rkyv.
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
        // Same codec only: rkyv's `decode_server` does not revalidate identifiers (there
        // is no `ServerFrame::revalidate` yet), so it accepts ids JSON refuses — an open
        // finding of this target, see docs/RELIABILITY.md "Fuzzing".
        let bytes = codec.encode_server(&frame).unwrap();
        let decoded = codec.decode_server(&bytes);
        assert_eq!(decoded.as_ref(), Ok(&frame), "server frame via {codec:?}: {frame:?}");
    }
}
