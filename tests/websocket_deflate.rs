//! permessage-deflate against the real server: clients that negotiate it and clients that
//! do not share a room and see the same messages; a decompression bomb closes only the
//! socket that sent it. The Python clients need `websockets`, which `./x test` installs
//! into a venv under `target/`.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use palaver_e2e::{Client, PYTHON, Server, outside_tool, register};
use palaver_protocol::{Codec, RoomKind};

const DEFLATE_FLAGS: [&str; 3] = ["--permessage-deflate", "--permessage-deflate-min-bytes", "64"];

#[test]
fn python_clients_with_and_without_deflate_see_the_same_messages() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/deflate_clients.py");
    let python = outside_tool(PYTHON);
    let probe = Command::new(&python).args(["-c", "import websockets"]).status();
    assert!(
        matches!(probe, Ok(s) if s.success()),
        "{} cannot import websockets; install it: {}",
        python.display(),
        PYTHON.install
    );
    let server = Server::start(&DEFLATE_FLAGS);
    let output = Command::new(&python).arg(script).arg(server.addr.to_string()).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "python clients failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("ALL CHECKS PASSED"), "{stdout}");
}

/// A WebSocket client that offers permessage-deflate, framed by hand so the test sees
/// each frame's RSV1 bit and can send compressed frames of its choosing.
struct DeflateSocket {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The server's `Sec-WebSocket-Extensions` answer.
    extensions: Option<String>,
}

/// A server frame: its first byte (FIN, RSV1, opcode) and payload.
struct RawFrame {
    b0: u8,
    payload: Vec<u8>,
}

impl DeflateSocket {
    fn connect(addr: SocketAddr, token: &str) -> DeflateSocket {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let request = format!(
            "GET /v1/ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: palaver.v1.json\r\nAuthorization: Bearer {token}\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).unwrap();
            assert!(n > 0, "closed during the upgrade");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let extensions = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-extensions").then(|| value.trim().to_owned())
        });
        buf.drain(..head_end);
        DeflateSocket { stream, buf, extensions }
    }

    /// Writes one masked text frame; `rsv1` marks it compressed.
    fn send_frame(&mut self, payload: &[u8], rsv1: bool) {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut frame = vec![0x81 | if rsv1 { 0x40 } else { 0 }];
        match payload.len() {
            n @ 0..=125 => frame.push(0x80 | n as u8),
            n @ 126..=0xFFFF => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        // The server may already have closed on a bomb: a failed write is not the test's end.
        let _ = self.stream.write_all(&frame);
    }

    /// Sends `text` compressed, as a client under `client_no_context_takeover` must.
    fn send_compressed(&mut self, text: &[u8]) {
        self.send_frame(&deflate(text), true);
    }

    /// The next frame, or `None` once the server closed the connection.
    fn next_frame(&mut self) -> Option<RawFrame> {
        loop {
            if self.buf.len() >= 2 {
                let (header, len) = match self.buf[1] & 0x7F {
                    126 if self.buf.len() >= 4 => {
                        (4, usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]])))
                    }
                    127 if self.buf.len() >= 10 => {
                        (10, u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize)
                    }
                    126 | 127 => (usize::MAX, 0),
                    n => (2, usize::from(n)),
                };
                if header != usize::MAX && self.buf.len() >= header + len {
                    let b0 = self.buf[0];
                    let payload = self.buf[header..header + len].to_vec();
                    self.buf.drain(..header + len);
                    return Some(RawFrame { b0, payload });
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next text message's JSON (inflated if compressed), and whether it was.
    fn next_json(&mut self) -> (serde_json::Value, bool) {
        loop {
            let frame = self.next_frame().expect("the server closed the socket");
            let compressed = frame.b0 & 0x40 != 0;
            match frame.b0 & 0x0F {
                0x1 => {
                    assert_eq!(frame.b0 & 0x80, 0x80, "the server sends whole messages");
                    let text = if compressed { inflate(&frame.payload) } else { frame.payload };
                    return (serde_json::from_slice(&text).unwrap(), compressed);
                }
                0x8 => panic!("closed: {:?}", frame.payload),
                _ => {}
            }
        }
    }

    /// Sends a JSON request and returns its `ok`, keeping nothing else.
    fn ok(&mut self, id: u64, request: serde_json::Value) -> serde_json::Value {
        let mut request = request;
        request["id"] = id.into();
        self.send_compressed(request.to_string().as_bytes());
        loop {
            let (frame, _) = self.next_json();
            if frame["re"] == id {
                assert!(frame.get("ok").is_some(), "{frame}");
                return frame["ok"].clone();
            }
        }
    }
}

/// `data` compressed on its own, the sync flush's tail cut (RFC 7692 §7.2.1).
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut compressor = flate2::Compress::new(flate2::Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 128);
    loop {
        let before = compressor.total_in() as usize;
        compressor.compress_vec(&data[before..], &mut out, flate2::FlushCompress::Sync).unwrap();
        if compressor.total_in() as usize == data.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity());
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// A permessage-deflate message decompressed (its stripped tail put back).
fn inflate(data: &[u8]) -> Vec<u8> {
    let mut input = data.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut decompressor = flate2::Decompress::new(false);
    let mut out = Vec::with_capacity(4 * input.len());
    while (decompressor.total_in() as usize) < input.len() || out.len() == out.capacity() {
        out.reserve(out.capacity().max(1024));
        let at = decompressor.total_in() as usize;
        decompressor.decompress_vec(&input[at..], &mut out, flate2::FlushDecompress::Sync).unwrap();
    }
    out
}

#[test]
fn a_compressing_client_and_a_plain_one_see_the_same_messages() {
    let server = Server::start(&DEFLATE_FLAGS);
    let alice = register(server.addr, "alice");
    let bob = register(server.addr, "bob");
    let mut plain = Client::login(server.addr, Codec::Json, &bob);
    let room = plain.create_room("compressed", RoomKind::Public);
    plain.join(&room, None);

    let mut deflating = DeflateSocket::connect(server.addr, &alice.access_token);
    let answer = deflating.extensions.clone().expect("permessage-deflate accepted");
    assert_eq!(answer, "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    deflating.ok(1, serde_json::json!({"op": "join", "room": room.as_str()}));

    // A long message from the plain client reaches the deflating one compressed, with
    // the same content the plain client's own copy has.
    let text = "the same words again and again, ".repeat(20);
    let (seq, _) = plain.say(&room, "plain-1", &text);
    let (event, compressed) = loop {
        let (frame, compressed) = deflating.next_json();
        if frame["ev"] == "message" {
            break (frame, compressed);
        }
    };
    assert!(compressed, "a {}-byte event went uncompressed", event.to_string().len());
    assert_eq!(event["seq"], seq);
    assert_eq!(event["text"], text.as_str());
    let own = plain.next_message();
    assert_eq!((own.seq, own.text.as_str()), (seq, text.as_str()));

    // A compressed message from the deflating client reaches the plain one as text.
    let reply = deflating.ok(
        2,
        serde_json::json!({"op": "send", "room": room.as_str(), "cid": "deflated-1", "text": "κόσμε, compressed"}),
    );
    let seen = plain.next_message();
    assert_eq!((seen.seq, seen.text.as_str()), (reply["seq"].as_u64().unwrap(), "κόσμε, compressed"));
}

#[test]
fn a_decompression_bomb_closes_only_its_socket() {
    let server = Server::start(&DEFLATE_FLAGS);
    let alice = register(server.addr, "alice");
    let bob = register(server.addr, "bob");
    let mut bystander = Client::login(server.addr, Codec::Json, &bob);
    let room = bystander.create_room("still here", RoomKind::Public);
    bystander.join(&room, None);

    // 16 MiB of spaces inside a JSON string compress to about 16 KiB, well within the
    // 64 KiB message limit, and inflate to 256 times it.
    let mut bomb = b"{\"id\":1,\"op\":\"ping\",\"pad\":\"".to_vec();
    bomb.resize(16 << 20, b' ');
    let compressed = deflate(&bomb);
    assert!(compressed.len() < 32 * 1024, "{} bytes", compressed.len());
    let mut attacker = DeflateSocket::connect(server.addr, &alice.access_token);
    assert!(attacker.extensions.is_some());
    attacker.send_frame(&compressed, true);
    let close = loop {
        let frame = attacker.next_frame().expect("a close frame before the end");
        if frame.b0 & 0x0F == 0x8 {
            break frame;
        }
    };
    assert_eq!(u16::from_be_bytes([close.payload[0], close.payload[1]]), 1009, "message too big");
    assert!(attacker.next_frame().is_none(), "the connection ends after the close");

    // Everyone else carries on.
    let (seq, _) = bystander.say(&room, "after-bomb", "still serving");
    let message = bystander.next_message();
    assert_eq!((message.seq, message.text.as_str()), (seq, "still serving"));
    let mut again = DeflateSocket::connect(server.addr, &alice.access_token);
    again.ok(1, serde_json::json!({"op": "ping"}));
}
