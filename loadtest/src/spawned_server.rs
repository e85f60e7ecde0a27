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
pub const LOAD_FLAGS: [&str; 12] = [
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
    "--sign-ins-per-minute-per-ip",
    "0",
];

/// What makes a spawned palaver a node of a cluster.
#[derive(Debug, Clone)]
pub struct ClusterMember {
    /// `nats://127.0.0.1:PORT`.
    pub nats_url: String,
    /// `--node-id`, unique in the cluster.
    pub node_id: String,
    /// `--jwt-secret`, the same on every node (a token from one node is valid on all).
    pub jwt_secret: String,
}

/// Stands for the JWT secret in recorded command lines.
pub const REDACTED_SECRET: &str = "<per-run random secret>";

/// A running palaver child process.
pub struct SpawnedServer {
    child: Child,
    /// The HTTP address it printed.
    pub addr: SocketAddr,
    /// The QUIC address it printed.
    pub quic_addr: Option<SocketAddr>,
    /// Its process id (the `taskset` wrapper execs into it, so the id is the server's).
    pub pid: u32,
    /// The full command line used (a JWT secret replaced by [`REDACTED_SECRET`]).
    pub command_line: Vec<String>,
    /// Where its stderr goes.
    pub log_path: std::path::PathBuf,
    /// Holds its data directory (`data`) and its log; removed when the server is dropped.
    temp_dir: tempfile::TempDir,
}

impl SpawnedServer {
    /// Starts `binary` (a cluster node when `cluster` is given) and waits for its
    /// `listening http=ADDR` line.
    pub fn start(
        binary: &Path,
        shards: usize,
        core: usize,
        cluster: Option<&ClusterMember>,
        extra: &[String],
    ) -> anyhow::Result<Self> {
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
        if let Some(c) = cluster {
            args.extend(cluster_args(c));
        }
        args.extend(extra.iter().cloned());
        if taskset_available() {
            args.splice(0..0, ["taskset".to_string(), "-c".to_string(), core.to_string()]);
        }
        let command_line = redact_secret(&args);
        let log = std::fs::File::create(&log_path)?;
        let mut child = Command::new(&args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("spawn {}", command_line.join(" ")))?;
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
            Err(e) => {
                let _ = child.kill();
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                let what = match e {
                    std::sync::mpsc::RecvTimeoutError::Timeout => "did not print its address within 30 s",
                    std::sync::mpsc::RecvTimeoutError::Disconnected => "exited before printing its address",
                };
                bail!("palaver {what} ({status}); its log:\n{log}");
            }
        };
        let addr: SocketAddr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("http=").or_else(|| w.strip_prefix("https=")))
            .ok_or_else(|| anyhow!("no http= in {line:?}"))?
            .parse()
            .with_context(|| format!("address in {line:?}"))?;
        let quic_addr =
            line.split_whitespace().find_map(|w| w.strip_prefix("quic=")).and_then(|a| a.parse().ok());
        Ok(SpawnedServer { child, addr, quic_addr, pid, command_line, log_path, temp_dir: data_dir })
    }

    /// The directory holding its data directory: on the same disk.
    pub fn temp_dir(&self) -> &Path {
        self.temp_dir.path()
    }

    /// Stops the server: SIGTERM, up to 10 s to drain, then SIGKILL.
    pub fn stop(&mut self) {
        terminate(&mut self.child, self.pid);
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

/// Stops a child: SIGTERM, up to 10 s to exit, then SIGKILL.
pub fn terminate(child: &mut Child, pid: u32) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The flags that make a palaver a cluster node.
pub fn cluster_args(c: &ClusterMember) -> Vec<String> {
    vec![
        "--cluster".into(),
        c.nats_url.clone(),
        "--node-id".into(),
        c.node_id.clone(),
        "--jwt-secret".into(),
        c.jwt_secret.clone(),
    ]
}

/// `args` with the value of every `--jwt-secret` (separate or `=`) replaced.
pub fn redact_secret(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut hide_next = false;
    for arg in args {
        if hide_next {
            out.push(REDACTED_SECRET.to_string());
            hide_next = false;
        } else if arg == "--jwt-secret" {
            out.push(arg.clone());
            hide_next = true;
        } else if arg.starts_with("--jwt-secret=") {
            out.push(format!("--jwt-secret={REDACTED_SECRET}"));
        } else {
            out.push(arg.clone());
        }
    }
    out
}

/// A random secret for one run: 48 hex digits from `/dev/urandom` (the clock and pid as a
/// fallback, which is enough for a loopback test cluster).
pub fn random_secret() -> String {
    let mut bytes = [0u8; 24];
    let read = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_ok();
    if !read {
        let seed = crate::stats::epoch_us() ^ (u64::from(std::process::id()) << 32);
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (seed.rotate_left(i as u32 * 7) >> (i % 8)) as u8;
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn taskset_available() -> bool {
    Command::new("taskset")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_flags_and_redaction() {
        let member = ClusterMember {
            nats_url: "nats://127.0.0.1:4222".into(),
            node_id: "n1".into(),
            jwt_secret: "s3cret-s3cret-s3cret-s3cret-s3cret".into(),
        };
        let mut args = vec!["palaver".to_string()];
        args.extend(cluster_args(&member));
        args.push("--jwt-secret=other".into());
        let shown = redact_secret(&args);
        assert_eq!(
            shown,
            [
                "palaver",
                "--cluster",
                "nats://127.0.0.1:4222",
                "--node-id",
                "n1",
                "--jwt-secret",
                REDACTED_SECRET,
                &format!("--jwt-secret={REDACTED_SECRET}"),
            ]
        );
        assert!(!shown.join(" ").contains("s3cret"));
    }

    #[test]
    fn secrets_are_long_and_fresh() {
        let (a, b) = (random_secret(), random_secret());
        assert_eq!(a.len(), 48);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
