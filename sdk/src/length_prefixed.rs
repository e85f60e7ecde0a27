//! Frames on a byte stream, each behind a `u32` little-endian length (the QUIC and
//! WebTransport framing): a splitter that takes bytes in any chunking.

/// Collects stream bytes and hands out whole frames.
#[derive(Debug, Default)]
pub(crate) struct FrameSplitter {
    buffered: Vec<u8>,
}

impl FrameSplitter {
    /// Adds `bytes`; returns the frames they completed, or an error for a length above
    /// `max_frame` (checked before the frame arrives).
    pub(crate) fn push(&mut self, bytes: &[u8], max_frame: usize) -> Result<Vec<Vec<u8>>, String> {
        self.buffered.extend_from_slice(bytes);
        let mut frames = Vec::new();
        let mut at = 0;
        while let Some(prefix) = self.buffered.get(at..at + 4) {
            let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
            if len > max_frame {
                return Err(format!("a frame of {len} bytes (at most {max_frame})"));
            }
            let Some(frame) = self.buffered.get(at + 4..at + 4 + len) else { break };
            frames.push(frame.to_vec());
            at += 4 + len;
        }
        self.buffered.drain(..at);
        Ok(frames)
    }
}

/// `payload` behind its length.
pub(crate) fn length_prefixed(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 4);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn frames_come_out_whole_in_any_chunking_and_oversized_lengths_are_refused() {
        let mut stream = length_prefixed(b"{\"op\":\"ping\"}");
        stream.extend(length_prefixed(b""));
        stream.extend(length_prefixed(b"second"));
        for chunk in 1..stream.len() {
            let mut splitter = FrameSplitter::default();
            let mut frames = Vec::new();
            for piece in stream.chunks(chunk) {
                frames.extend(splitter.push(piece, 64).unwrap());
            }
            assert_eq!(frames, [b"{\"op\":\"ping\"}".to_vec(), Vec::new(), b"second".to_vec()]);
        }
        assert!(FrameSplitter::default().push(&[0xff, 0xff, 0xff, 0x7f], 64).is_err());
    }
}
