//! Writes small valid seed inputs for the fuzz targets into `fuzz/corpus/<target>/`
//! (`cargo run -p palaver-fuzzing --example seed_corpus`): the client frames shown in
//! docs/PROTOCOL.md in both codecs, masked WebSocket frames, upgrade requests. libFuzzer
//! mutates from there; `cargo fuzz cmin` keeps what adds coverage.

#![allow(clippy::unwrap_used, reason = "a developer tool")]

use std::path::Path;

use palaver_protocol::Codec;

fn masked(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
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
    out
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let write = |target: &str, name: String, data: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), data).unwrap();
    };
    let protocol =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/PROTOCOL.md")).unwrap();
    let mut n = 0;
    for line in protocol.split(['`', '\n']).map(str::trim) {
        let Ok(frame) = Codec::Json.decode_client(line.as_bytes()) else { continue };
        n += 1;
        write("json_frame", format!("seed-{n}"), line.as_bytes());
        write("rkyv_frame", format!("seed-{n}"), &Codec::Rkyv.encode_client(&frame).unwrap());
        let ws = [&[2u8, 7][..], &masked(true, 1, line.as_bytes())].concat();
        write("ws_frame", format!("seed-{n}"), &ws);
    }
    for (i, line) in protocol
        .split(['`', '\n'])
        .map(str::trim)
        .filter(|l| l.starts_with("{\"re\"") || l.starts_with("{\"ev\""))
        .enumerate()
    {
        if let Ok(frame) = Codec::Json.decode_server(line.as_bytes()) {
            write("json_frame", format!("seed-server-{i}"), line.as_bytes());
            write("rkyv_frame", format!("seed-server-{i}"), &Codec::Rkyv.encode_server(&frame).unwrap());
        }
    }
    let fragments = [
        masked(false, 2, b"ab"),
        masked(true, 9, b"ping"),
        masked(true, 0, b"cd"),
        masked(true, 8, &[0x03, 0xe8, b'o', b'k']),
        masked(true, 10, b""),
        masked(true, 2, &[7; 300]),
    ]
    .concat();
    write("ws_frame", "seed-fragments".into(), &[&[6u8, 3][..], &fragments].concat());
    let requests = [
        "GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: x, palaver.v1.rkyv\r\nAuthorization: Bearer abc\r\n\r\n",
        "POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{\"a\":1}",
        "GET /v1/files/f_1?download=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "POST /v1/files HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    ];
    for (i, request) in requests.iter().enumerate() {
        write("http_request", format!("seed-{i}"), &[&[i as u8 * 37][..], request.as_bytes()].concat());
    }
    for i in 0..4u8 {
        let script: Vec<u8> = (0..200u32).map(|j| (j.wrapping_mul(2_654_435_761) >> (i + 3)) as u8).collect();
        write("room_model", format!("seed-{i}"), &script);
    }
    println!("{n} client frames from PROTOCOL.md");
}
