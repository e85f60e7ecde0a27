//! A `nats-server` with JetStream started by the harness for a cluster run: loopback, a free
//! port, its store in a temp dir, pinned to a core with `taskset` when it exists (the same
//! core as the palaver nodes: the server side of a run stays off the generator's core).
//! Stopped with SIGTERM (then SIGKILL) when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::spawned_server;

/// How long the server gets to accept TCP on its port.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running `nats-server` child process.
pub struct SpawnedNats {
    child: Child,
    /// Its client port, on 127.0.0.1.
    pub addr: SocketAddr,
    /// Its process id (the `taskset` wrapper execs into it).
    pub pid: u32,
    /// The full command line used.
    pub command_line: Vec<String>,
    /// Where its stdout and stderr go.
    pub log_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl SpawnedNats {
    /// Starts `nats-server -js -a 127.0.0.1 -p PORT -sd DIR/nats` and waits until its port
    /// accepts TCP. The binary is `$PALAVER_NATS_SERVER` (which `./x test` sets), else
    /// `nats-server` from PATH, else Debian's `/usr/sbin/nats-server`.
    pub fn start(core: Option<usize>) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("palaver-load-nats-").tempdir()?;
        let log_path = dir.path().join("nats.log");
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut args: Vec<String> = vec![
            nats_server_binary(),
            "-js".into(),
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-sd".into(),
            dir.path().join("nats").display().to_string(),
        ];
        if let Some(core) = core
            && spawned_server::taskset_available()
        {
            args.splice(0..0, ["taskset".to_string(), "-c".to_string(), core.to_string()]);
        }
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new(&args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("spawn {} (install it: apt-get install nats-server)", args.join(" ")))?;
        let pid = child.id();
        let mut nats = SpawnedNats { child, addr, pid, command_line: args, log_path, _dir: dir };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = nats.child.try_wait() {
                bail!("nats-server exited ({status}) before accepting connections; its log:\n{}", nats.log());
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(nats);
            }
            if Instant::now() > deadline {
                let log = nats.log();
                nats.stop();
                bail!(
                    "nats-server did not accept connections on {addr} within {START_TIMEOUT:?}; its log:\n{log}"
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The URL palaver nodes are given with `--cluster`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Stops the server: SIGTERM, up to 10 s, then SIGKILL.
    pub fn stop(&mut self) {
        spawned_server::terminate(&mut self.child, self.pid);
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The temporary directory holding its store and log (removed on drop).
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for SpawnedNats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `nats-server` to run: `$PALAVER_NATS_SERVER`, else the one on PATH, else Debian's
/// path (`/usr/sbin` is not on every user's PATH).
fn nats_server_binary() -> String {
    if let Ok(path) = std::env::var("PALAVER_NATS_SERVER") {
        return path;
    }
    let on_path = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|dir| dir.join("nats-server").is_file());
    let sbin = "/usr/sbin/nats-server";
    if !on_path && std::path::Path::new(sbin).is_file() { sbin.into() } else { "nats-server".into() }
}

/// A TCP port free on 127.0.0.1 right now (bound to port 0, then released).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_bindable() {
        let port = free_port().expect("a port");
        assert_ne!(port, 0);
        TcpListener::bind(("127.0.0.1", port)).expect("still free");
    }
}
