//! The environment of one run: which server (spawned or given), its process id, the
//! accounts registered for the run, and the sampling of the server's process.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures_util::StreamExt as _;

use crate::cli::{CommonArgs, Transport};
use crate::http;
use crate::process_stats::{self, ProcSample};
use crate::spawned_nats::SpawnedNats;
use crate::spawned_server::{self, ClusterMember, SpawnedServer};

/// Password of every account a run registers.
const PASSWORD: &str = "palaver-load-password";

/// Registrations in flight at once (each costs the server an argon2 hash).
const REGISTER_CONCURRENCY: usize = 4;

/// The gauge every cluster node exposes on `/metrics`: nodes it sees alive.
const LIVE_NODES_GAUGE: &str = "palaver_cluster_live_nodes";

/// How long a spawned cluster gets until every node sees every other.
const CLUSTER_FORM_TIMEOUT: Duration = Duration::from_secs(30);

/// Accounts (and rooms) are created on the first node and reach the others asynchronously:
/// the pause before sockets use them elsewhere.
pub const REPLICATION_WAIT: Duration = Duration::from_secs(1);

pub struct Env {
    pub common: CommonArgs,
    /// The first node: HTTP registration, room creation, `/metrics`.
    pub addr: SocketAddr,
    /// Every node client sockets are spread over (`addrs[0] == addr`; one for a single server).
    pub addrs: Vec<SocketAddr>,
    /// Where client sockets connect, node by node: `addrs`, or the nodes' QUIC addresses
    /// for the QUIC targets.
    pub client_addrs: Vec<SocketAddr>,
    /// Whether the HTTP listeners speak TLS.
    pub https: bool,
    /// The processes whose CPU time and memory are summed as "the server" (every node
    /// and, for a spawned cluster, the NATS server); empty when unknown.
    pub server_pids: Vec<u32>,
    /// Spawned palaver nodes (one without `--spawn-cluster`). Dropped (stopped) before `nats`.
    pub spawned: Vec<SpawnedServer>,
    /// The NATS server of a spawned cluster.
    pub nats: Option<SpawnedNats>,
    /// Short, unique per run: keeps usernames and cids apart across runs on one server.
    pub run_id: String,
    pub sources: Vec<Ipv4Addr>,
}

impl Env {
    /// Starts or locates the server (or cluster).
    pub async fn prepare(common: &CommonArgs) -> anyhow::Result<Env> {
        common.validate()?;
        let mut nats = None;
        let mut spawned = Vec::new();
        let mut server_args = common.server_args.clone();
        if common.https() && !server_args.iter().any(|a| a == "--http-tls") {
            server_args.push("--http-tls".into());
        }
        let addrs: Vec<SocketAddr> = match (&common.addr, &common.spawn_palaver) {
            (Some(_), Some(_)) => bail!("give --addr or --spawn-palaver, not both"),
            (None, None) => bail!("give --addr HOST:PORT (a running server) or --spawn-palaver PATH"),
            (Some(addr), None) => std::iter::once(*addr).chain(common.peer_addrs.iter().copied()).collect(),
            (None, Some(binary)) => {
                if !common.target.is_palaver() {
                    bail!("--spawn-palaver needs a palaver target, not {}", common.target.name());
                }
                match common.spawn_cluster {
                    None => {
                        let server = SpawnedServer::start(
                            binary,
                            common.server_shards,
                            common.server_core,
                            None,
                            &server_args,
                        )?;
                        eprintln!("spawned: {} (pid {})", server.command_line.join(" "), server.pid);
                        spawned.push(server);
                    }
                    Some(n) => {
                        let server = SpawnedNats::start(Some(common.server_core))?;
                        eprintln!("spawned: {} (pid {})", server.command_line.join(" "), server.pid);
                        let url = server.url();
                        nats = Some(server);
                        let secret = spawned_server::random_secret();
                        for i in 1..=n {
                            let member = ClusterMember {
                                nats_url: url.clone(),
                                node_id: format!("n{i}"),
                                jwt_secret: secret.clone(),
                            };
                            let node = SpawnedServer::start(
                                binary,
                                common.server_shards,
                                common.server_core,
                                Some(&member),
                                &server_args,
                            )?;
                            eprintln!(
                                "spawned node n{i}: {} (pid {})",
                                node.command_line.join(" "),
                                node.pid
                            );
                            spawned.push(node);
                        }
                    }
                }
                spawned.iter().map(|s| s.addr).collect()
            }
        };
        for addr in &addrs {
            if !addr.ip().is_loopback() {
                bail!("{addr} is not a loopback address: palaver-load only sends traffic to 127.0.0.0/8");
            }
        }
        let https = common.https();
        for addr in &addrs {
            http::wait_healthy(http::Listener { addr: *addr, tls: https }, Duration::from_secs(15)).await?;
        }
        let client_addrs: Vec<SocketAddr> = if common.target.transport() == Transport::Quic {
            match (&common.quic_addr, spawned.is_empty()) {
                (Some(quic), _) => vec![*quic],
                (None, false) => spawned
                    .iter()
                    .map(|s| {
                        s.quic_addr.ok_or_else(|| anyhow::anyhow!("the server printed no quic= address"))
                    })
                    .collect::<anyhow::Result<_>>()?,
                (None, true) => bail!("a QUIC target with --addr needs --quic-addr"),
            }
        } else {
            addrs.clone()
        };
        if let Some(n) = common.spawn_cluster {
            let logs: Vec<String> = spawned.iter().map(|s| s.log_path.display().to_string()).collect();
            wait_cluster_formed(&addrs, https, n, &logs, CLUSTER_FORM_TIMEOUT).await?;
        }
        let server_pids = if !common.server_pids.is_empty() {
            common.server_pids.clone()
        } else if !spawned.is_empty() {
            spawned.iter().map(|s| s.pid).chain(nats.as_ref().map(|n| n.pid)).collect()
        } else {
            let mut found = Vec::new();
            for addr in &addrs {
                match pid_listening_on(addr.port()) {
                    Some(pid) => {
                        eprintln!("server pid {pid} found by the listening port of {addr}");
                        if !found.contains(&pid) {
                            found.push(pid);
                        }
                    }
                    None => {
                        eprintln!(
                            "pid of {addr} unknown (give --server-pid): no server CPU or memory figures"
                        );
                        found.clear();
                        break;
                    }
                }
            }
            found
        };
        let run_id = base36(crate::stats::epoch_us() / 1000);
        Ok(Env {
            common: common.clone(),
            addr: addrs[0],
            addrs,
            client_addrs,
            https,
            server_pids,
            spawned,
            nats,
            run_id,
            sources: common.source_addrs(),
        })
    }

    /// Registers `n` accounts (on the first node) and returns their access tokens. With
    /// more than one node, waits [`REPLICATION_WAIT`] so the others know the accounts.
    pub async fn register_users(&self, n: usize) -> anyhow::Result<Vec<String>> {
        let started = std::time::Instant::now();
        let addr = self.listener();
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
        self.wait_replication().await;
        Ok(tokens)
    }

    /// Waits [`REPLICATION_WAIT`] when there is more than one node (after creating accounts
    /// or rooms on the first node, before sockets use them on the others).
    pub async fn wait_replication(&self) {
        if self.addrs.len() > 1 {
            tokio::time::sleep(REPLICATION_WAIT).await;
        }
    }

    /// Samples the server processes (summed), when known and all alive.
    pub fn server_sample(&self) -> Option<ProcSample> {
        process_stats::sample_all(&self.server_pids)
    }

    /// Palaver's `/metrics` counters of the first node (empty for other targets or on failure).
    pub async fn server_metrics(&self) -> Vec<(String, f64)> {
        if !self.common.target.is_palaver() {
            return Vec::new();
        }
        http::metrics(self.listener()).await.unwrap_or_default()
    }

    /// Palaver's `/metrics` answer of the first node as text (`None` for other targets or
    /// on failure).
    pub async fn server_exposition(&self) -> Option<String> {
        if !self.common.target.is_palaver() {
            return None;
        }
        http::metrics_text(self.listener()).await.ok()
    }

    /// Where the fsync probe syncs: `--fsync-probe-dir`, else the first spawned node's
    /// directory; `Err` says why there is no probe.
    pub fn fsync_probe_dir(&self) -> Result<std::path::PathBuf, &'static str> {
        if !self.common.target.is_palaver() {
            return Err("none: the reference server stores nothing");
        }
        if self.common.fsync_probe_interval_ms == 0 {
            return Err("not measured (--fsync-probe-interval-ms 0)");
        }
        match (&self.common.fsync_probe_dir, self.spawned.first()) {
            (Some(dir), _) => Ok(dir.clone()),
            (None, Some(server)) => Ok(server.temp_dir().to_path_buf()),
            (None, None) => {
                Err("not measured: give --fsync-probe-dir (a directory on the server's data disk)")
            }
        }
    }

    /// The first node's HTTP listener.
    pub fn listener(&self) -> http::Listener {
        http::Listener { addr: self.addr, tls: self.https }
    }

    /// Where the first node's client sockets connect (set-up sockets).
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addrs[0]
    }

    /// JSON about the server under test. `addr`, `pid`, `spawned` and `command_line` keep
    /// their single-server meaning (the first node); `nodes`, `addrs`, `server_pids`,
    /// `command_lines` and `nats` describe a cluster.
    pub fn server_json(&self) -> serde_json::Value {
        serde_json::json!({
            "addr": self.addr.to_string(),
            "pid": self.server_pids.first(),
            "spawned": !self.spawned.is_empty(),
            "command_line": self.spawned.first().map(|s| s.command_line.clone()),
            "load_flags": if self.common.target.is_palaver() {
                serde_json::json!(spawned_server::LOAD_FLAGS)
            } else {
                serde_json::Value::Null
            },
            "nodes": self.addrs.len(),
            "cluster": self.common.spawn_cluster.is_some() || self.addrs.len() > 1,
            "addrs": self.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "server_pids": self.server_pids,
            "command_lines": self.spawned.iter().map(|s| s.command_line.clone()).collect::<Vec<_>>(),
            "nats": self.nats.as_ref().map(|n| serde_json::json!({
                "addr": n.addr.to_string(),
                "pid": n.pid,
                "command_line": n.command_line,
            })),
        })
    }

    /// Stops the spawned nodes, then the NATS server.
    pub fn finish(&mut self) {
        for server in &mut self.spawned {
            if !server.is_running() {
                eprintln!(
                    "warning: a spawned server exited during the run; log: {}",
                    server.log_path.display()
                );
            }
            server.stop();
        }
        if let Some(nats) = &mut self.nats {
            if !nats.is_running() {
                eprintln!("warning: nats-server exited during the run; log: {}", nats.log_path.display());
            }
            nats.stop();
        }
    }
}

/// `addrs[i % addrs.len()]`: socket `i` of a workload goes to node `i % N`.
pub fn round_robin(addrs: &[SocketAddr], i: usize) -> SocketAddr {
    addrs[i % addrs.len()]
}

/// The last `n` lines of a log file, each on its own indented line (empty if unreadable).
fn log_tail(path: &str, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].iter().map(|l| format!("\n      | {l}")).collect()
}

/// The value of `palaver_cluster_live_nodes` in a `/metrics` answer.
fn live_nodes(metrics: &[(String, f64)]) -> Option<f64> {
    metrics.iter().find(|(name, _)| name == LIVE_NODES_GAUGE).map(|(_, v)| *v)
}

/// Polls every node's `/metrics` every 200 ms until each reports `n` live nodes.
/// `logs` are the nodes' log files, named in the error.
async fn wait_cluster_formed(
    addrs: &[SocketAddr],
    https: bool,
    n: usize,
    logs: &[String],
    within: Duration,
) -> anyhow::Result<()> {
    let started = tokio::time::Instant::now();
    let deadline = started + within;
    loop {
        let mut seen = Vec::with_capacity(addrs.len());
        for addr in addrs {
            let listener = http::Listener { addr: *addr, tls: https };
            seen.push(http::metrics(listener).await.ok().and_then(|m| live_nodes(&m)));
        }
        if seen.iter().all(|v| *v == Some(n as f64)) {
            eprintln!("cluster of {n} formed in {:.1} s", started.elapsed().as_secs_f64());
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            let report: Vec<String> = addrs
                .iter()
                .zip(&seen)
                .enumerate()
                .map(|(i, (addr, v))| {
                    let value = v.map_or_else(|| "missing".to_string(), |v| v.to_string());
                    let log = logs.get(i).map(|l| format!(" (log {l})")).unwrap_or_default();
                    // The logs go with the temp dirs: their ends are kept in the error.
                    let tail = logs.get(i).map(|l| log_tail(l, 10)).unwrap_or_default();
                    format!("  node n{} {addr}: {LIVE_NODES_GAUGE} {value}{log}{tail}", i + 1)
                })
                .collect();
            bail!(
                "the cluster did not form within {within:?}: every node must report \
                 `{LIVE_NODES_GAUGE} {n}` on /metrics\n{}",
                report.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_round_robin() {
        let addrs: Vec<SocketAddr> =
            ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"].iter().map(|a| a.parse().unwrap()).collect();
        let picked: Vec<u16> = (0..7).map(|i| round_robin(&addrs, i).port()).collect();
        assert_eq!(picked, [1, 2, 3, 1, 2, 3, 1]);
        let one = &addrs[..1];
        assert!((0..5).all(|i| round_robin(one, i) == addrs[0]));
        // 1,000 sockets over 3 nodes: 334, 333, 333.
        let mut per_node = [0usize; 3];
        for i in 0..1000 {
            per_node[(round_robin(&addrs, i).port() - 1) as usize] += 1;
        }
        assert_eq!(per_node, [334, 333, 333]);
    }

    /// A one-answer-per-connection HTTP server whose `/metrics` says `live` live nodes.
    async fn fake_node(live: Option<u32>) -> SocketAddr {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
                let mut body = "# TYPE palaver_sockets gauge\npalaver_sockets 0\n".to_string();
                if let Some(n) = live {
                    body.push_str(&format!("# TYPE {LIVE_NODES_GAUGE} gauge\n{LIVE_NODES_GAUGE} {n}\n"));
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        addr
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f)
    }

    #[test]
    fn waits_for_every_node_to_see_the_cluster() {
        block_on(async {
            let nodes = vec![fake_node(Some(2)).await, fake_node(Some(2)).await];
            wait_cluster_formed(&nodes, false, 2, &[], Duration::from_secs(5)).await.expect("formed");

            let nodes = vec![fake_node(Some(2)).await, fake_node(Some(1)).await, fake_node(None).await];
            let logs = vec!["a.log".to_string(), "b.log".to_string(), "c.log".to_string()];
            let e = wait_cluster_formed(&nodes, false, 2, &logs, Duration::from_millis(300))
                .await
                .expect_err("node 2 sees 1 node, node 3 has no gauge");
            let text = e.to_string();
            assert!(text.contains("did not form"), "{text}");
            assert!(
                text.contains(&format!("node n2 {}: {LIVE_NODES_GAUGE} 1 (log b.log)", nodes[1])),
                "{text}"
            );
            assert!(text.contains(&format!("node n3 {}: {LIVE_NODES_GAUGE} missing", nodes[2])), "{text}");
        });
    }

    #[test]
    fn reads_the_live_nodes_gauge() {
        let m = |v: &[(&str, f64)]| v.iter().map(|(n, x)| (n.to_string(), *x)).collect::<Vec<_>>();
        assert_eq!(live_nodes(&m(&[("palaver_sockets", 4.0), (LIVE_NODES_GAUGE, 3.0)])), Some(3.0));
        assert_eq!(live_nodes(&m(&[("palaver_cluster_live_nodes_total", 3.0)])), None);
        assert_eq!(live_nodes(&[]), None);
    }
}
