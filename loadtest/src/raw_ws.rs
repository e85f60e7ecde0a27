//! A WebSocket client framed by hand over one reused buffer, for the sockets that make up
//! most of a traffic run: the members that only receive.
//!
//! Why not tungstenite, which the rest of the harness uses: per delivery it zero-fills
//! its read buffer before every read, splits each frame off into a buffer of its own and
//! wraps it in a message, about a fifth of the generator's CPU at high fan-out rates
//! (`perf record` of the generator under a 1,000-member fan-out). Here frames are parsed
//! in place and handed out as borrowed slices; the buffer is compacted only when a frame
//! would not fit. The generator's budget is what lets one core read a server's output.
//!
//! Scope: the client side of RFC 6455 that a receiving member needs. The upgrade (with the
//! `Sec-WebSocket-Accept` check), masked text and binary frames out, frames in (fragmented
//! messages reassembled, pings answered by the caller, close), and optionally
//! permessage-deflate (RFC 7692) as a browser offers it: compressed messages in (each
//! decompressed on its own: the server answers with `server_no_context_takeover`),
//! uncompressed ones out.

use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Range;

use anyhow::{Context as _, anyhow, bail, ensure};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::arrival::ArrivalStream;

/// The buffer a socket starts with: many small frames per read.
const INITIAL_BUFFER: usize = 8 * 1024;
/// The largest frame (or reassembled message) accepted: well above any server frame.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// The largest upgrade response accepted.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// One frame (or reassembled message) from the server, borrowed from the socket's buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum RawFrame<'a> {
    Text(&'a [u8]),
    Binary(&'a [u8]),
    /// A ping: answer with [`RawSocket::pong`] and this payload.
    Ping(&'a [u8]),
    Pong,
    /// The server closed the WebSocket.
    Close,
}

/// A client WebSocket over TCP that records its reads' arrival times.
pub struct RawSocket {
    stream: ArrivalStream,
    /// Bytes read and not yet consumed are `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// A fragmented message being reassembled.
    partial: Option<Partial>,
    /// The message last reassembled (borrowed by the frame returned for it).
    assembled: Vec<u8>,
    /// The masking key generator (xorshift; the server only checks that frames are masked).
    mask_state: u32,
    /// Frames to write are built here.
    out: Vec<u8>,
    /// Whether the server accepted permessage-deflate.
    deflate: bool,
    /// Bytes read from the socket since [`RawSocket::take_bytes_read`] last asked.
    bytes_read: u64,
}

/// Where a socket connects and how it authenticates.
pub struct Upgrade<'a> {
    pub addr: SocketAddr,
    pub source: Ipv4Addr,
    /// The request path, e.g. `/v1/ws`.
    pub path: &'a str,
    /// `Sec-WebSocket-Protocol`, if any.
    pub subprotocol: Option<&'a str>,
    /// A bearer token sent as `Authorization` on the upgrade, if any.
    pub bearer: Option<&'a str>,
    /// Offer permessage-deflate.
    pub deflate: bool,
}

impl RawSocket {
    /// Connects from `source` to `addr` and upgrades to WebSocket.
    pub async fn connect(upgrade: &Upgrade<'_>) -> anyhow::Result<RawSocket> {
        let stream = ArrivalStream::connect(upgrade.addr, upgrade.source).await?;
        let seed = u32::from(upgrade.source).wrapping_mul(2_654_435_761) ^ std::process::id();
        let mut socket = RawSocket {
            stream,
            buf: vec![0; INITIAL_BUFFER],
            start: 0,
            end: 0,
            partial: None,
            assembled: Vec::new(),
            mask_state: seed | 1,
            out: Vec::with_capacity(256),
            deflate: false,
            bytes_read: 0,
        };
        socket.upgrade(upgrade).await.context("WebSocket upgrade")?;
        Ok(socket)
    }

    async fn upgrade(&mut self, upgrade: &Upgrade<'_>) -> anyhow::Result<()> {
        let key = generate_key();
        let mut request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n",
            upgrade.path, upgrade.addr
        );
        if let Some(protocol) = upgrade.subprotocol {
            request.push_str(&format!("Sec-WebSocket-Protocol: {protocol}\r\n"));
        }
        if let Some(token) = upgrade.bearer {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        if upgrade.deflate {
            request.push_str("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n");
        }
        request.push_str("\r\n");
        self.stream.write_all(request.as_bytes()).await?;

        let head_end = loop {
            if let Some(i) = self.buf[..self.end].windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            ensure!(self.end < MAX_RESPONSE_HEAD, "upgrade response head over {MAX_RESPONSE_HEAD} bytes");
            if self.end == self.buf.len() {
                self.buf.resize(MAX_RESPONSE_HEAD, 0);
            }
            self.fill().await?.then_some(()).ok_or_else(|| anyhow!("closed during the upgrade"))?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).context("upgrade response is not UTF-8")?;
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap_or_default();
        ensure!(status.starts_with("HTTP/1.1 101"), "upgrade refused: {status}");
        let header = |wanted: &str| {
            head.split("\r\n")
                .skip(1)
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case(wanted))
                .map(|(_, value)| value.trim().to_string())
        };
        let accept = header("sec-websocket-accept");
        ensure!(
            accept.as_deref() == Some(derive_accept_key(key.as_bytes()).as_str()),
            "wrong Sec-WebSocket-Accept: {accept:?}"
        );
        if let Some(extensions) = header("sec-websocket-extensions") {
            ensure!(upgrade.deflate, "an extension was not offered: {extensions}");
            ensure!(
                extensions.starts_with("permessage-deflate")
                    && extensions.contains("server_no_context_takeover"),
                "unexpected extension answer: {extensions}"
            );
            self.deflate = true;
        }
        // Frames may follow the head in the same read.
        self.start = head_end;
        Ok(())
    }

    /// When the bytes of the last read reached this socket (kernel receive timestamp), µs
    /// since the Unix epoch. Every frame [`RawSocket::next_frame`] returns was completed
    /// by that read or an earlier one.
    pub fn last_arrival_us(&self) -> Option<u64> {
        self.stream.last_arrival_us()
    }

    /// Whether the server accepted permessage-deflate.
    pub fn deflate(&self) -> bool {
        self.deflate
    }

    /// Bytes read from the socket since the last call.
    pub fn take_bytes_read(&mut self) -> u64 {
        std::mem::take(&mut self.bytes_read)
    }

    /// Writes a text (JSON) or binary (rkyv) message.
    pub async fn send(&mut self, text: bool, payload: &[u8]) -> anyhow::Result<()> {
        self.write_frame(if text { OP_TEXT } else { OP_BINARY }, payload).await
    }

    /// Answers a ping.
    pub async fn pong(&mut self, payload: &[u8]) -> anyhow::Result<()> {
        self.write_frame(OP_PONG, payload).await
    }

    async fn write_frame(&mut self, opcode: u8, payload: &[u8]) -> anyhow::Result<()> {
        let mask = self.next_mask();
        encode_frame(&mut self.out, opcode, payload, mask);
        self.stream.write_all(&self.out).await?;
        Ok(())
    }

    fn next_mask(&mut self) -> [u8; 4] {
        let mut x = self.mask_state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.mask_state = x;
        x.to_le_bytes()
    }

    /// The next frame; `None` once the server has closed the TCP connection.
    pub async fn next_frame(&mut self) -> anyhow::Result<Option<RawFrame<'_>>> {
        loop {
            match parse_header(&self.buf[self.start..self.end], self.deflate)? {
                Some(header) if self.end - self.start >= header.len + header.payload => {
                    let from = self.start + header.len;
                    let to = from + header.payload;
                    self.start = to;
                    if self.start == self.end {
                        // Everything read is consumed: the next read starts at the front
                        // (the payload stays in place until then).
                        (self.start, self.end) = (0, 0);
                    }
                    if let Some(ready) = self.absorb(header, from..to)? {
                        return Ok(Some(self.frame(ready)));
                    }
                    continue;
                }
                Some(header) => self.make_room(header.len + header.payload)?,
                None => self.make_room(MAX_HEADER)?,
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// Takes in a whole frame whose payload is `buf[payload]`: what to hand out, or
    /// `None` for a fragment of a message still incomplete.
    fn absorb(&mut self, header: Header, payload: Range<usize>) -> anyhow::Result<Option<Ready>> {
        Ok(match (header.opcode, header.fin, self.partial.take()) {
            (OP_TEXT | OP_BINARY, true, None) if header.compressed => {
                self.inflate(&[], payload)?;
                Some(Ready::Assembled(header.opcode))
            }
            (OP_TEXT | OP_BINARY, true, None) | (OP_PING | OP_PONG | OP_CLOSE, true, None) => {
                Some(Ready::InBuffer(header.opcode, payload))
            }
            (OP_PING | OP_PONG | OP_CLOSE, true, Some(partial)) => {
                // Control frames may come between a message's fragments.
                self.partial = Some(partial);
                Some(Ready::InBuffer(header.opcode, payload))
            }
            (OP_TEXT | OP_BINARY, false, None) => {
                self.partial = Some(Partial {
                    opcode: header.opcode,
                    compressed: header.compressed,
                    data: self.buf[payload].to_vec(),
                });
                None
            }
            (OP_CONTINUATION, fin, Some(mut partial)) => {
                ensure!(
                    partial.data.len() + payload.len() <= MAX_MESSAGE,
                    "message over {MAX_MESSAGE} bytes"
                );
                if !fin {
                    partial.data.extend_from_slice(&self.buf[payload]);
                    self.partial = Some(partial);
                    None
                } else if partial.compressed {
                    self.inflate(&partial.data, payload)?;
                    Some(Ready::Assembled(partial.opcode))
                } else {
                    partial.data.extend_from_slice(&self.buf[payload]);
                    self.assembled = partial.data;
                    Some(Ready::Assembled(partial.opcode))
                }
            }
            (opcode, fin, partial) => bail!(
                "unexpected frame: opcode {opcode:#x}, fin {fin}, inside a fragmented message: {}",
                partial.is_some()
            ),
        })
    }

    /// Decompresses a message whose compressed payload is `head` followed by
    /// `buf[tail]` into `assembled`. The server compresses every message on its own
    /// (`server_no_context_takeover`), so one decompressor per generator thread serves
    /// every socket: a thousand sockets' decompressors would measure the generator's
    /// cache misses, not the server.
    fn inflate(&mut self, head: &[u8], tail: Range<usize>) -> anyhow::Result<()> {
        ensure!(self.deflate, "RSV1 without permessage-deflate");
        let (assembled, buf) = (&mut self.assembled, &self.buf);
        INFLATER.with_borrow_mut(|inflater| {
            inflater.reset(false);
            assembled.clear();
            for input in [head, &buf[tail], &[0x00, 0x00, 0xff, 0xff][..]] {
                let mut input = input;
                loop {
                    if assembled.len() == assembled.capacity() {
                        ensure!(
                            assembled.len() < MAX_MESSAGE,
                            "decompressed message over {MAX_MESSAGE} bytes"
                        );
                        assembled.reserve(assembled.len().max(1024));
                    }
                    let before = inflater.total_in();
                    let status = inflater
                        .decompress_vec(input, assembled, flate2::FlushDecompress::None)
                        .context("invalid compressed message")?;
                    input = &input[(inflater.total_in() - before) as usize..];
                    let full = assembled.len() == assembled.capacity();
                    if status == flate2::Status::StreamEnd || (input.is_empty() && !full) {
                        break;
                    }
                }
            }
            Ok(())
        })
    }

    fn frame(&self, ready: Ready) -> RawFrame<'_> {
        match ready {
            Ready::InBuffer(opcode, range) => {
                let payload = &self.buf[range];
                match opcode {
                    OP_TEXT => RawFrame::Text(payload),
                    OP_BINARY => RawFrame::Binary(payload),
                    OP_PING => RawFrame::Ping(payload),
                    OP_PONG => RawFrame::Pong,
                    _ => RawFrame::Close,
                }
            }
            Ready::Assembled(OP_TEXT) => RawFrame::Text(&self.assembled),
            Ready::Assembled(_) => RawFrame::Binary(&self.assembled),
        }
    }

    /// Ensures `buf[start..]` can hold `needed` bytes, moving unread bytes to the front or
    /// growing the buffer.
    fn make_room(&mut self, needed: usize) -> anyhow::Result<()> {
        ensure!(needed <= MAX_MESSAGE + MAX_HEADER, "frame of {needed} bytes over the limit");
        if self.buf.len() - self.start >= needed && self.end < self.buf.len() {
            return Ok(());
        }
        self.buf.copy_within(self.start..self.end, 0);
        (self.start, self.end) = (0, self.end - self.start);
        if self.buf.len() < needed {
            self.buf.resize(needed, 0);
        }
        Ok(())
    }

    /// Reads what has arrived into `buf[end..]`; false at end of stream.
    async fn fill(&mut self) -> anyhow::Result<bool> {
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        self.bytes_read += n as u64;
        Ok(n > 0)
    }
}

thread_local! {
    /// The permessage-deflate decompressor every socket of this thread shares.
    static INFLATER: std::cell::RefCell<flate2::Decompress> = std::cell::RefCell::new(flate2::Decompress::new(false));
}

/// A fragmented message's opcode and payload so far (compressed, if it is).
struct Partial {
    opcode: u8,
    compressed: bool,
    data: Vec<u8>,
}

/// A frame ready to hand out: its opcode and where its payload is.
enum Ready {
    InBuffer(u8, Range<usize>),
    Assembled(u8),
}

/// The longest frame header: 2 bytes, an 8-byte length, a 4-byte mask.
const MAX_HEADER: usize = 14;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    fin: bool,
    /// RSV1: the first frame of a compressed message.
    compressed: bool,
    opcode: u8,
    /// Header bytes.
    len: usize,
    /// Payload bytes.
    payload: usize,
}

/// Parses a server frame header; `None` until enough bytes are there. `deflate`: RSV1
/// may mark a compressed message.
fn parse_header(bytes: &[u8], deflate: bool) -> anyhow::Result<Option<Header>> {
    let [b0, b1, rest @ ..] = bytes else { return Ok(None) };
    let compressed = b0 & 0x40 != 0;
    ensure!(b0 & 0x30 == 0 && (deflate || !compressed), "reserved bits set (no extension was negotiated)");
    ensure!(b1 & 0x80 == 0, "a masked frame from the server");
    let (len, payload) = match b1 & 0x7f {
        126 => match rest {
            [a, b, ..] => (4, usize::from(u16::from_be_bytes([*a, *b]))),
            _ => return Ok(None),
        },
        127 => match rest.get(..8) {
            Some(eight) => {
                let n = u64::from_be_bytes(eight.try_into().expect("eight bytes"));
                ensure!(n <= MAX_MESSAGE as u64, "frame of {n} bytes over the limit");
                (10, n as usize)
            }
            None => return Ok(None),
        },
        n => (2, usize::from(n)),
    };
    let opcode = b0 & 0x0f;
    let fin = b0 & 0x80 != 0;
    ensure!(opcode < OP_CLOSE || (fin && payload <= 125), "a fragmented or oversized control frame");
    ensure!(!compressed || matches!(opcode, OP_TEXT | OP_BINARY), "RSV1 on a continuation or control frame");
    Ok(Some(Header { fin, compressed, opcode, len, payload }))
}

/// Writes a masked client frame into `out` (cleared first).
fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.clear();
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// A server frame (unmasked).
    fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, opcode, payload, [0; 4]);
        // Drop the mask bit and key: servers send unmasked frames.
        out[0] = if fin { 0x80 | opcode } else { opcode };
        out[1] &= 0x7f;
        let key_at = match payload.len() {
            n if n < 126 => 2,
            n if n <= usize::from(u16::MAX) => 4,
            _ => 10,
        };
        out.drain(key_at..key_at + 4);
        out
    }

    /// Accepts one upgrade and answers it; returns the server's socket and the request head.
    async fn accept_upgrade(listener: &TcpListener) -> (TcpStream, String) {
        let (mut server, _) = listener.accept().await.expect("accept");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            server.read_exact(&mut byte).await.expect("request head");
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).expect("UTF-8 head");
        let key = head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .expect("a key")
            .trim()
            .to_string();
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            derive_accept_key(key.as_bytes())
        );
        server.write_all(response.as_bytes()).await.expect("response");
        (server, head)
    }

    async fn pair(bearer: Option<&str>) -> (RawSocket, TcpStream, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let upgrade = Upgrade {
            addr,
            source: Ipv4Addr::LOCALHOST,
            path: "/v1/ws",
            subprotocol: Some("palaver.rkyv"),
            bearer,
            deflate: false,
        };
        let (client, (server, head)) = tokio::join!(RawSocket::connect(&upgrade), accept_upgrade(&listener));
        (client.expect("upgrade"), server, head)
    }

    #[tokio::test]
    async fn upgrades_with_the_subprotocol_and_token() {
        let (_client, _server, head) = pair(Some("tok")).await;
        assert!(head.starts_with("GET /v1/ws HTTP/1.1\r\n"), "{head}");
        assert!(head.contains("Sec-WebSocket-Protocol: palaver.rkyv\r\n"), "{head}");
        assert!(head.contains("Authorization: Bearer tok\r\n"), "{head}");
    }

    #[tokio::test]
    async fn a_wrong_accept_key_is_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let upgrade = Upgrade {
            addr,
            source: Ipv4Addr::LOCALHOST,
            path: "/",
            subprotocol: None,
            bearer: None,
            deflate: false,
        };
        let server = async {
            let (mut server, _) = listener.accept().await.expect("accept");
            let mut buf = [0u8; 1024];
            let _ = server.read(&mut buf).await;
            let bad = "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: nope\r\n\r\n";
            server.write_all(bad.as_bytes()).await.expect("response");
            server
        };
        let (client, _server) = tokio::join!(RawSocket::connect(&upgrade), server);
        let error = client.err().expect("refused");
        assert!(format!("{error:#}").contains("Sec-WebSocket-Accept"), "{error:#}");
    }

    #[tokio::test]
    async fn frames_split_across_reads_coalesced_or_fragmented_come_out_whole() {
        let (mut client, mut server, _) = pair(None).await;
        let big = vec![7u8; 70_000]; // a 64-bit length, larger than the initial buffer
        let mut bytes = server_frame(true, OP_BINARY, b"one");
        bytes.extend(server_frame(true, OP_TEXT, b"two"));
        bytes.extend(server_frame(true, OP_BINARY, &big));
        bytes.extend(server_frame(false, OP_TEXT, b"fra"));
        bytes.extend(server_frame(true, OP_PING, b"p"));
        bytes.extend(server_frame(false, OP_CONTINUATION, b"gmen"));
        bytes.extend(server_frame(true, OP_CONTINUATION, b"ted"));
        bytes.extend(server_frame(true, OP_CLOSE, &1000u16.to_be_bytes()));
        // Dribble it out in uneven pieces so headers and payloads straddle reads.
        let writer = async move {
            for piece in bytes.chunks(997) {
                server.write_all(piece).await.expect("write");
                tokio::task::yield_now().await;
            }
            server
        };
        let reader = async {
            let mut seen = Vec::new();
            while let Some(frame) = client.next_frame().await.expect("a valid stream") {
                let done = frame == RawFrame::Close;
                seen.push(match frame {
                    RawFrame::Text(p) => format!("text {}", String::from_utf8_lossy(p)),
                    RawFrame::Binary(p) if p.len() > 100 => format!("binary {} bytes", p.len()),
                    RawFrame::Binary(p) => format!("binary {}", String::from_utf8_lossy(p)),
                    RawFrame::Ping(p) => format!("ping {}", String::from_utf8_lossy(p)),
                    RawFrame::Pong => "pong".into(),
                    RawFrame::Close => "close".into(),
                });
                if done {
                    break;
                }
            }
            seen
        };
        let (seen, _server) = tokio::join!(reader, writer);
        assert_eq!(
            seen,
            ["binary one", "text two", "binary 70000 bytes", "ping p", "text fragmented", "close"]
        );
    }

    #[tokio::test]
    async fn client_frames_are_masked_and_server_masks_are_refused() {
        let (mut client, mut server, _) = pair(None).await;
        client.send(false, b"hello").await.expect("send");
        let mut frame = [0u8; 11];
        server.read_exact(&mut frame).await.expect("frame");
        assert_eq!(frame[0], 0x80 | OP_BINARY);
        assert_eq!(frame[1], 0x80 | 5, "masked, 5 bytes");
        let mask = [frame[2], frame[3], frame[4], frame[5]];
        let payload: Vec<u8> = frame[6..].iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
        assert_eq!(payload, b"hello");

        let mut masked = Vec::new();
        encode_frame(&mut masked, OP_TEXT, b"x", [1, 2, 3, 4]);
        server.write_all(&masked).await.expect("write");
        let error = client.next_frame().await.expect_err("refused");
        assert!(error.to_string().contains("masked"), "{error}");
    }

    /// `payload` compressed as a permessage-deflate message (the sync flush's tail cut).
    fn deflated(payload: &[u8]) -> Vec<u8> {
        let mut compressor = flate2::Compress::new(flate2::Compression::default(), false);
        let mut out = Vec::with_capacity(payload.len() + 64);
        compressor.compress_vec(payload, &mut out, flate2::FlushCompress::Sync).expect("compress");
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
        out.truncate(out.len() - 4);
        out
    }

    #[tokio::test]
    async fn compressed_messages_are_inflated_when_deflate_was_accepted() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let upgrade = Upgrade {
            addr,
            source: Ipv4Addr::LOCALHOST,
            path: "/",
            subprotocol: None,
            bearer: None,
            deflate: true,
        };
        let text = b"{\"event\":\"message\",\"text\":\"hello hello hello hello\"}".repeat(3);
        let compressed = deflated(&text);
        let mut frames = server_frame(true, OP_TEXT, &compressed);
        frames[0] |= 0x40;
        let (first, rest) = compressed.split_at(compressed.len() / 2);
        let mut fragment = server_frame(false, OP_BINARY, first);
        fragment[0] |= 0x40;
        frames.extend(fragment);
        frames.extend(server_frame(true, OP_CONTINUATION, rest));
        frames.extend(server_frame(true, OP_TEXT, b"plain"));
        let server = async {
            let (mut server, _) = listener.accept().await.expect("accept");
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                server.read_exact(&mut byte).await.expect("request head");
                head.push(byte[0]);
            }
            let head = String::from_utf8(head).expect("UTF-8 head");
            assert!(head.contains("Sec-WebSocket-Extensions: permessage-deflate"), "{head}");
            let key = head.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).expect("a key");
            let response = format!(
                "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: {}\r\n\
                 Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n\r\n",
                derive_accept_key(key.trim().as_bytes())
            );
            server.write_all(response.as_bytes()).await.expect("response");
            server.write_all(&frames).await.expect("frames");
            server
        };
        let (client, _server) = tokio::join!(RawSocket::connect(&upgrade), server);
        let mut client = client.expect("upgrade");
        assert!(client.deflate());
        assert_eq!(client.next_frame().await.unwrap(), Some(RawFrame::Text(&text)));
        assert_eq!(client.next_frame().await.unwrap(), Some(RawFrame::Binary(&text)));
        assert_eq!(client.next_frame().await.unwrap(), Some(RawFrame::Text(b"plain")));
        assert!(client.take_bytes_read() > 0);
    }

    #[test]
    fn headers_wait_for_their_bytes() {
        assert_eq!(parse_header(&[0x82], false).unwrap(), None);
        assert_eq!(parse_header(&[0x82, 126, 1], false).unwrap(), None);
        assert_eq!(
            parse_header(&[0x82, 126, 1, 0], false).unwrap(),
            Some(Header { fin: true, compressed: false, opcode: OP_BINARY, len: 4, payload: 256 })
        );
        assert_eq!(parse_header(&[0x82, 127, 0, 0, 0, 0], false).unwrap(), None);
        assert!(parse_header(&[0x82, 127, 0, 0, 0, 1, 0, 0, 0, 0], false).is_err(), "over the limit");
        assert!(parse_header(&[0xC2, 1], false).is_err(), "a reserved bit");
        assert!(parse_header(&[0x09, 0], false).is_err(), "a fragmented ping");
        assert_eq!(
            parse_header(&[0xC2, 1], true).unwrap(),
            Some(Header { fin: true, compressed: true, opcode: OP_BINARY, len: 2, payload: 1 })
        );
        assert!(parse_header(&[0xC0, 1], true).is_err(), "RSV1 on a continuation");
        assert!(parse_header(&[0xA2, 1], true).is_err(), "RSV2");
    }
}
