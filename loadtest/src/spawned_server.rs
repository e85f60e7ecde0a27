//! A palaver server started by the harness for one run: temp data dir, port 0, one shard,
//! rate limits lifted, pinned to a core with `taskset` when it exists. Stopped with SIGTERM
//! (then SIGKILL) when dropped.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};

/// Server flags that take the per-socket limits out of the way of a load run (the
/// defaults are 100 ops/s, burst 200 and 256 requests in flight per socket).
pub const LOAD_FLAGS: [&str; 10] = [
    "--ops-per-sec",
    "1000000",
    "--ops-burst",
    "1000000",
    "--max-in-flight",
    "100000",
    // Every load socket comes from a few loopback addresses and shares a few accounts.
    "--max-connections-per-ip",
    "0",
    "--max-connections-per-user",
    "0",
];

/// A running palaver child process.
pub struct SpawnedServer {
    child: Child,
    /// The HTTP address it printed.
    pub addr: SocketAddr,
    /// Its process id (the `taskset` wrapper execs into it, so the id is the server's).
    pub pid: u32,
    /// The full command line used.
    pub command_line: Vec<String>,
    /// Where its stderr goes.
    pub log_path: std::path::PathBuf,
    _data_dir: tempfile::TempDir,
}

impl SpawnedServer {
    /// Starts `binary` and waits for its `listening http=ADDR` line.
    pub fn start(binary: &Path, shards: usize, core: usize, extra: &[String]) -> anyhow::Result<Self> {
        let data_dir = tempfile::Builder::new().prefix("palaver-load-").tempdir()?;
        let log_path = data_dir.path().join("server.log");
        let mut args: Vec<String> = vec![
            binary.display().to_string(),
            "--http-addr".into(),
            "127.0.0.1:0".into(),
            // A free UDP port too: runs must not collide on the default QUIC port.
            "--quic-addr".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            data_dir.path().join("data").display().to_string(),
            "--shards".into(),
            shards.to_string(),
        ];
        args.extend(LOAD_FLAGS.iter().map(|s| s.to_string()));
        args.extend(extra.iter().cloned());
        if taskset_available() {
            args.splice(0..0, ["taskset".to_string(), "-c".to_string(), core.to_string()]);
        }
        let log = std::fs::File::create(&log_path)?;
        let mut child = Command::new(&args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("spawn {}", args.join(" ")))?;
        let pid = child.id();
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the address line, then keeps draining stdout so the server never blocks on it.
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let mut sent = false;
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                if !sent && line.contains("listening") {
                    let _ = tx.send(line.clone());
                    sent = true;
                }
                line.clear();
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                bail!("palaver did not print its address within 30 s; its log:\n{log}");
            }
        };
        let addr: SocketAddr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("http="))
            .ok_or_else(|| anyhow!("no http= in {line:?}"))?
            .parse()
            .with_context(|| format!("address in {line:?}"))?;
        Ok(SpawnedServer { child, addr, pid, command_line: args, log_path, _data_dir: data_dir })
    }

    /// Stops the server: SIGTERM, up to 10 s to drain, then SIGKILL.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill").arg("-TERM").arg(self.pid.to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn taskset_available() -> bool {
    Command::new("taskset")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
