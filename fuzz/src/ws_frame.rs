//! `ws_frame`: the server's WebSocket frame parser (`FrameParser`) on an arbitrary byte
//! stream, fed whole and fed in arbitrary chunks.

use bytes::BytesMut;
use palaver_server::ws::{FrameParser, WsError, WsMessage};

/// Input: byte 0 picks the message size limit, byte 1 seeds the chunking (its low bit:
/// whether permessage-deflate was negotiated), the rest is the stream. Checks: no panic; the same messages and the same error (or the same
/// unconsumed tail) whether the stream arrives whole or in chunks; every message obeys
/// the limits (text is UTF-8, at most the limit, pings at most 125 bytes, valid close
/// codes).
pub fn ws_frame(data: &[u8]) {
    let [limit, seed, stream @ ..] = data else { return };
    let max = [0, 1, 2, 125, 126, 127, 1024, 65_536][usize::from(*limit % 8)];

    let deflate = seed & 1 == 1;
    let whole = parse(max, deflate, stream, std::iter::once(stream.len().max(1)));
    let chunked = parse(max, deflate, stream, crate::chunk_lengths(*seed, 1 + usize::from(*limit >> 3)));
    assert_eq!(whole, chunked, "whole vs chunked");

    let (messages, _) = whole;
    for message in &messages {
        match message {
            WsMessage::Text(data) => {
                assert!(std::str::from_utf8(data).is_ok());
                assert!(data.len() <= max);
            }
            WsMessage::Binary(data) => assert!(data.len() <= max),
            WsMessage::Ping(data) => assert!(data.len() <= 125),
            WsMessage::Close(Some(code)) => {
                assert!(matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999), "close code {code}");
            }
            WsMessage::Pong | WsMessage::Close(None) => {}
        }
    }
}

/// Everything the parser yields: the messages, then how it stopped (an error, or the
/// unconsumed bytes it waits on).
type Parsed = (Vec<WsMessage>, Result<Vec<u8>, WsError>);

fn parse(max: usize, deflate: bool, stream: &[u8], chunks: impl Iterator<Item = usize>) -> Parsed {
    let mut parser = FrameParser::new(max, deflate);
    let mut buf = BytesMut::new();
    let mut messages = Vec::new();
    let mut rest = stream;
    for len in chunks {
        let (chunk, tail) = rest.split_at(len.min(rest.len()));
        rest = tail;
        buf.extend_from_slice(chunk);
        loop {
            match parser.next_message(&mut buf) {
                Ok(Some(message)) => messages.push(message),
                Ok(None) => break,
                Err(e) => return (messages, Err(e)),
            }
        }
        if rest.is_empty() {
            break;
        }
    }
    (messages, Ok(buf.to_vec()))
}
