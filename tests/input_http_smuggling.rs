//! Request smuggling and slow heads against the real listener: every head two parsers
//! could read differently is refused with 400 and the connection closed (nothing after
//! it is read as a second request), and a keep-alive connection's next head has the same
//! deadline as its first.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use palaver_e2e::{Server, WAIT};

/// Sends raw bytes on a fresh connection and reads until the server closes.
fn exchange(server: &Server, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(bytes).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

#[test]
fn ambiguous_request_framing_is_refused_and_nothing_is_smuggled() {
    let server = Server::start(&[]);
    // Each carries a second request where a lenient parser would see only a body.
    let smuggled = "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";
    let heads = [
        "POST /v1/auth/login HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\ncontent-length: 40\r\n\r\n",
        "POST /v1/auth/login HTTP/1.1\r\nhost: x\r\ncontent-length: 2, 2\r\n\r\n",
        "POST /v1/auth/login HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n",
        "POST /v1/auth/login HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n",
        "POST /v1/auth/login HTTP/1.1\r\nhost: x\r\nx-a: 1\r\n content-length: 2\r\n\r\n",
        "POST /v1/auth/login HTTP/1.1\r\nhost: x\r\nx-a: 1\rcontent-length: 2\r\n\r\n",
        "POST /v1/auth/login HTTP/1.1\nhost: x\r\ncontent-length: 2\r\n\r\n",
    ];
    for head in heads {
        let response = exchange(&server, format!("{head}{{}}{smuggled}").as_bytes());
        assert!(response.starts_with("HTTP/1.1 400 "), "{head:?} -> {response}");
        assert!(response.contains(r#""code":"invalid""#), "{response}");
        assert_eq!(response.matches("HTTP/1.1").count(), 1, "a second request was read: {response}");
    }
    // A well-framed request on the same server still works, pipelined requests included.
    let response = exchange(
        &server,
        b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\nGET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(response.matches("HTTP/1.1 200 ").count(), 2, "{response}");
}

#[test]
fn every_keep_alive_head_has_the_head_deadline() {
    let server = Server::start(&["--handshake-timeout-secs", "2"]);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    let mut first = [0u8; 512];
    let n = stream.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200 "));
    // The next head, one byte every 500 ms: cut off at the head deadline (2 s), not at
    // the keep-alive idle time (60 s).
    let started = Instant::now();
    let mut closed = false;
    for byte in b"GET /healthz HTTP/1.1\r\nhost: x\r\n".iter().cycle().take(200) {
        if stream.write_all(&[*byte]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        stream.set_nonblocking(true).unwrap();
        let mut probe = [0u8; 1];
        let gone = matches!(stream.read(&mut probe), Ok(0));
        stream.set_nonblocking(false).unwrap();
        if gone {
            closed = true;
            break;
        }
    }
    assert!(closed, "a trickled keep-alive head was never cut off");
    assert!(started.elapsed() < Duration::from_secs(20), "cut off after {:?}", started.elapsed());
}
