//! The environment of one run: which server (spawned or given), its process id, the
//! accounts registered for the run, and the sampling of the server's process.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures_util::StreamExt as _;

use crate::cli::CommonArgs;
use crate::http;
use crate::process_stats::{self, ProcSample};
use crate::spawned_server::{self, SpawnedServer};

/// Password of every account a run registers.
const PASSWORD: &str = "palaver-load-password";

/// Registrations in flight at once (each costs the server an argon2 hash).
const REGISTER_CONCURRENCY: usize = 4;

pub struct Env {
    pub common: CommonArgs,
    pub addr: SocketAddr,
    pub server_pid: Option<u32>,
    pub spawned: Option<SpawnedServer>,
    /// Short, unique per run: keeps usernames and cids apart across runs on one server.
    pub run_id: String,
    pub sources: Vec<Ipv4Addr>,
}

impl Env {
    /// Starts or locates the server.
    pub async fn prepare(common: &CommonArgs) -> anyhow::Result<Env> {
        let (addr, spawned) = match (&common.addr, &common.spawn_palaver) {
            (Some(_), Some(_)) => bail!("give --addr or --spawn-palaver, not both"),
            (None, None) => bail!("give --addr HOST:PORT (a running server) or --spawn-palaver PATH"),
            (Some(addr), None) => (*addr, None),
            (None, Some(binary)) => {
                if !common.target.is_palaver() {
                    bail!("--spawn-palaver needs a palaver target, not {}", common.target.name());
                }
                let server = SpawnedServer::start(
                    binary,
                    common.server_shards,
                    common.server_core,
                    &common.server_args,
                )?;
                eprintln!("spawned: {} (pid {})", server.command_line.join(" "), server.pid);
                (server.addr, Some(server))
            }
        };
        if !addr.ip().is_loopback() {
            bail!("{addr} is not a loopback address: palaver-load only sends traffic to 127.0.0.0/8");
        }
        http::wait_healthy(addr, Duration::from_secs(15)).await?;
        let server_pid = match (common.server_pid, &spawned) {
            (Some(pid), _) => Some(pid),
            (None, Some(s)) => Some(s.pid),
            (None, None) => {
                let found = pid_listening_on(addr.port());
                match found {
                    Some(pid) => eprintln!("server pid {pid} found by its listening port"),
                    None => {
                        eprintln!("server pid unknown (give --server-pid): no server CPU or memory figures")
                    }
                }
                found
            }
        };
        let run_id = base36(crate::stats::epoch_us() / 1000);
        Ok(Env { common: common.clone(), addr, server_pid, spawned, run_id, sources: common.source_addrs() })
    }

    /// Registers `n` accounts and returns their access tokens.
    pub async fn register_users(&self, n: usize) -> anyhow::Result<Vec<String>> {
        let started = std::time::Instant::now();
        let addr = self.addr;
        let names: Vec<String> = (0..n.max(1)).map(|i| format!("lt{}u{i}", self.run_id)).collect();
        let results: Vec<anyhow::Result<String>> = futures_util::stream::iter(names)
            .map(|name| async move {
                let r = http::register(addr, &name, PASSWORD).await?;
                anyhow::Ok(r.access_token)
            })
            .buffered(REGISTER_CONCURRENCY)
            .collect()
            .await;
        let tokens = results.into_iter().collect::<anyhow::Result<Vec<_>>>().context("registering users")?;
        eprintln!("registered {} users in {:.1} s", tokens.len(), started.elapsed().as_secs_f64());
        Ok(tokens)
    }

    /// Samples the server process, when known and alive.
    pub fn server_sample(&self) -> Option<ProcSample> {
        self.server_pid.and_then(|pid| process_stats::sample(Some(pid)).ok())
    }

    /// Palaver's `/metrics` counters (empty for other targets or on failure).
    pub async fn server_metrics(&self) -> Vec<(String, f64)> {
        if !self.common.target.is_palaver() {
            return Vec::new();
        }
        http::metrics(self.addr).await.unwrap_or_default()
    }

    /// JSON about the server under test.
    pub fn server_json(&self) -> serde_json::Value {
        serde_json::json!({
            "addr": self.addr.to_string(),
            "pid": self.server_pid,
            "spawned": self.spawned.is_some(),
            "command_line": self.spawned.as_ref().map(|s| s.command_line.clone()),
            "load_flags": if self.common.target.is_palaver() {
                serde_json::json!(spawned_server::LOAD_FLAGS)
            } else {
                serde_json::Value::Null
            },
        })
    }

    /// Stops a spawned server.
    pub fn finish(&mut self) {
        if let Some(server) = &mut self.spawned {
            if !server.is_running() {
                eprintln!(
                    "warning: the spawned server exited during the run; log: {}",
                    server.log_path.display()
                );
            }
            server.stop();
        }
    }
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    while n > 0 {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// The process listening on TCP `port` on loopback, from `/proc/net/tcp` and the fd tables.
fn pid_listening_on(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is "ADDR:PORT" in hex; state 0A is LISTEN; inode is field 9.
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else { continue };
            let local_port = local.rsplit_once(':').and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) && *state == "0A" {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path())
                && inodes.iter().any(|i| link.to_str() == Some(i.as_str()))
            {
                return Some(pid);
            }
        }
    }
    None
}
