//! The harness's cluster mode against a real NATS server (Debian's `nats-server`, which
//! `./x test` installs and names in `PALAVER_NATS_SERVER`; without it these tests fail
//! saying so).

mod scenario_run;

use std::net::TcpStream;
use std::time::Duration;

use palaver_load::spawned_nats::SpawnedNats;
use scenario_run::run;

#[test]
fn nats_starts_and_stops() {
    let mut nats = SpawnedNats::start(None).expect("nats-server starts (apt-get install nats-server)");
    assert!(nats.url().starts_with("nats://127.0.0.1:"));
    // A NATS server greets every client with an INFO line mentioning JetStream.
    let mut stream = TcpStream::connect(nats.addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let mut buf = [0u8; 4096];
    let n = std::io::Read::read(&mut stream, &mut buf).expect("read INFO");
    let info = String::from_utf8_lossy(&buf[..n]);
    assert!(info.starts_with("INFO "), "{info}");
    assert!(info.contains("\"jetstream\":true"), "{info}");
    drop(stream);
    let (addr, pid) = (nats.addr, nats.pid);
    assert!(nats.is_running());
    nats.stop();
    assert!(!nats.is_running());
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "process {pid} still exists");
    assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err());
    let dir = nats.dir().to_path_buf();
    drop(nats);
    assert!(!dir.exists(), "temp dir {} left behind", dir.display());
}

/// The harness's cluster mode: a `nats-server -js` and two nodes, sockets spread over
/// both.
#[test]
fn fanout_on_a_two_node_cluster_runs_clean() {
    run("fanout", &["--spawn-cluster", "2", "--members", "10", "--senders", "2", "--rate", "50"]);
}
