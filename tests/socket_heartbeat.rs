//! Liveness: the server pings quiet sockets and closes the ones that stay silent, so a
//! peer that vanished without closing TCP does not hold its socket forever.

use std::time::{Duration, Instant};

use palaver_e2e::{Client, Server, register};
use palaver_protocol::{Codec, Op};

#[test]
fn a_silent_socket_is_closed_and_a_responsive_one_is_kept() {
    let server = Server::start(&["--ping-interval-secs", "1", "--idle-timeout-secs", "3"]);
    let alice = register(server.addr, "alice");
    let mut silent = Client::login(server.addr, Codec::Json, &alice);
    let mut alive = Client::login(server.addr, Codec::Rkyv, &alice);

    // `alive` keeps talking (reading answers its pings); `silent` neither reads nor writes.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(4_500) {
        alive.ok(Op::Ping {});
        std::thread::sleep(Duration::from_millis(300));
    }
    alive.ok(Op::Ping {});
    assert_eq!(silent.expect_close_without_answering(), Some(1001), "the silent socket is closed as idle");
}
