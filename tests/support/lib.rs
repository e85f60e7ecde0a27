//! Test support: run the real `palaver` binary on a free loopback port with its own
//! data directory, and talk to it over real sockets — HTTP for accounts, WebSocket (JSON
//! or rkyv) for chat — exactly as an outside client would.
#![allow(
    clippy::unwrap_used,
    clippy::missing_panics_doc,
    missing_docs,
    reason = "test support: failing loudly is the point"
)]

pub mod push_service;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use palaver_protocol::{
    ClientFrame, Codec, ErrorCode, Event, Message, OkBody, Op, ReplyBody, RoomId, ServerFrame,
};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::stream::MaybeTlsStream;

/// Whether the long soak and fault runs were asked for (`./x test --long` sets
/// `PALAVER_LONG_TESTS=1`); every such test has a short version that always runs.
pub fn long_tests() -> bool {
    std::env::var("PALAVER_LONG_TESTS").is_ok_and(|v| v == "1")
}

/// The `--jwt-secret` every test server runs with (`PALAVER_JWT_SECRET`).
pub const JWT_SECRET: &str = "e2e-test-secret-e2e-test-secret";

/// An access token for `user_id` living `ttl_secs` from now, signed with the test
/// servers' secret the way an application's backend mints one (docs/PROTOCOL.md §2.6):
/// HS256 over `sub`, `sid`, `iat`, `nbf` and `exp`.
pub fn mint_access_token(user_id: &str, ttl_secs: u64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims =
        serde_json::json!({"sub": user_id, "sid": "backend", "iat": now, "nbf": now, "exp": now + ttl_secs});
    sign_hs256(&claims, JWT_SECRET.as_bytes())
}

/// A JWT of `claims`, signed with HS256 and `secret`.
pub fn sign_hs256(claims: &serde_json::Value, secret: &[u8]) -> String {
    use base64::Engine as _;
    use hmac::Mac as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let header = br#"{"alg":"HS256","typ":"JWT"}"#;
    let signing_input = format!("{}.{}", b64(header), b64(claims.to_string().as_bytes()));
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(signing_input.as_bytes());
    format!("{signing_input}.{}", b64(&mac.finalize().into_bytes()))
}

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(15);

/// The `palaver` binary built by this workspace.
pub fn palaver_bin() -> PathBuf {
    if let Ok(path) = std::env::var("PALAVER_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join("palaver");
    assert!(
        bin.exists(),
        "{} not found: run `cargo test --workspace` (or `cargo build -p palaver-server`)",
        bin.display()
    );
    bin
}

/// A running server with its own data directory (kept across restarts).
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// The QUIC listener's bound UDP address (`quic=` of the startup line).
    pub quic_addr: SocketAddr,
    /// Whether the HTTP listener speaks TLS (`--http-tls`: the line says `https=`).
    pub tls: bool,
    data: tempfile::TempDir,
    args: Vec<String>,
    bin: PathBuf,
    env: Vec<(String, String)>,
    /// Runs without `--jwt-secret`: the development secret generated into the data dir.
    development_secret: bool,
}

impl Server {
    /// Starts a server with `--shards 2` and the given extra flags.
    pub fn start(extra: &[&str]) -> Server {
        Server::start_with(&palaver_bin(), extra, &[])
    }

    /// Starts another build of the server (`bin`) with extra flags and environment
    /// variables (kept for restarts).
    pub fn start_with(bin: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        Server::launch(tempfile::tempdir().unwrap(), bin, extra, env)
    }

    /// Starts a server on a data directory the caller prepared (for example a small
    /// tmpfs mounted on it), with `--shards 2` and the given extra flags.
    pub fn start_in(data: tempfile::TempDir, extra: &[&str]) -> Server {
        Server::launch(data, &palaver_bin(), extra, &[])
    }

    /// Starts a server as a newcomer runs it: with no `--jwt-secret` (the development
    /// secret, generated into its data directory), `--shards 2` and the given flags.
    pub fn start_with_development_secret(extra: &[&str]) -> Server {
        let mut server = Server::launch_stopped(tempfile::tempdir().unwrap(), &palaver_bin(), extra, &[]);
        server.development_secret = true;
        server.restart();
        server
    }

    fn launch(data: tempfile::TempDir, bin: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut server = Server::launch_stopped(data, bin, extra, env);
        server.restart();
        server
    }

    /// A server not started yet, on free ports.
    fn launch_stopped(data: tempfile::TempDir, bin: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut args: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        if !extra.contains(&"--shards") {
            args.extend(["--shards".into(), "2".into()]);
        }
        // Every test client comes from 127.0.0.1, one "host" playing many users: the
        // per-address sign-in limit is off unless a test is about it.
        if !extra.contains(&"--sign-ins-per-minute-per-ip") {
            args.extend(["--sign-ins-per-minute-per-ip".into(), "0".into()]);
        }
        let env: Vec<(String, String)> =
            env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let bin = bin.to_path_buf();
        let free = SocketAddr::from(([127, 0, 0, 1], 0));
        Server {
            child: None,
            addr: free,
            quic_addr: free,
            tls: false,
            data,
            args,
            bin,
            env,
            development_secret: false,
        }
    }

    /// Starts the server with its descriptor limit (`ulimit -n`, soft and hard) set to
    /// `nofile`, `--shards 2` and the given extra flags.
    pub fn start_with_descriptor_limit(nofile: u32, extra: &[&str]) -> Server {
        let bin = palaver_bin();
        let script = format!("ulimit -n {nofile} && exec \"$0\" \"$@\"");
        let mut args = vec!["-c", script.as_str(), bin.to_str().unwrap()];
        args.extend_from_slice(extra);
        Server::start_with(Path::new("/bin/sh"), &args, &[])
    }

    /// The server process's id (while it runs).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server is running").id()
    }

    /// How many descriptors the server process has open now (from `/proc`).
    pub fn open_descriptors(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).unwrap().count()
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// The development certificate the server generated for QUIC (PEM file).
    pub fn dev_cert_path(&self) -> PathBuf {
        self.data.path().join("tls").join("cert.pem")
    }

    /// The development certificate for browsers presented now (PEM): the oldest of
    /// `DATA_DIR/tls/browser/`, which is the one presented until it is 12 days old.
    pub fn browser_cert_pem(&self) -> String {
        let dir = self.data.path().join("tls").join("browser");
        let mut certs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(".cert.pem"))
            .collect();
        certs.sort();
        std::fs::read_to_string(certs.first().expect("a browser certificate")).unwrap()
    }

    /// The development certificate's PEM text.
    pub fn dev_cert_pem(&self) -> String {
        std::fs::read_to_string(self.dev_cert_path()).unwrap()
    }

    /// Kills the server with SIGKILL (no drain, no flush) and waits for it to die.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Sends SIGTERM and returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        signal_child(&child, libc::SIGTERM);
        let status = wait_with_timeout(&mut child, WAIT);
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("server did not exit within {WAIT:?} of SIGTERM");
        }
        status.unwrap()
    }

    /// Waits (up to `WAIT`) for the server to exit by itself, and returns how it did.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the server is running");
        wait_with_timeout(&mut child, WAIT).unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server did not exit within {WAIT:?}");
        })
    }

    /// Leaves `flag` out of the flags later restarts use.
    pub fn drop_flag(&mut self, flag: &str) {
        self.args.retain(|arg| arg != flag);
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) to the running server.
    pub fn signal(&self, signal: i32) {
        signal_child(self.child.as_ref().expect("the server is running"), signal);
    }

    /// Starts the server again on the same data directory and port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the server first");
        let (child, addr, quic_addr, tls) = spawn(
            &self.bin,
            &self.env,
            self.data.path(),
            &self.args,
            (&self.addr.to_string(), &self.quic_addr.to_string()),
            self.development_secret,
        );
        self.tls = tls;
        self.child = Some(child);
        self.addr = addr;
        self.quic_addr = quic_addr;
    }

    /// `http://ADDR/path`, or `https://` when the listener speaks TLS.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{}", self.addr, path)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn spawn(
    bin: &Path,
    env: &[(String, String)],
    data: &Path,
    args: &[String],
    (addr, quic_addr): (&str, &str),
    development_secret: bool,
) -> (Child, SocketAddr, SocketAddr, bool) {
    // A restart may race the old socket's release: retry the bind for a while.
    let deadline = Instant::now() + WAIT;
    loop {
        let mut command = Command::new(bin);
        command.envs(env.iter().map(|(k, v)| (k, v)));
        if development_secret {
            command.env_remove("PALAVER_JWT_SECRET");
        } else {
            command.env("PALAVER_JWT_SECRET", JWT_SECRET);
        }
        let mut child = command
            .args(args)
            .args(["--http-addr", addr, "--quic-addr", quic_addr, "--data-dir"])
            .arg(data)
            .env("RUST_LOG", std::env::var("E2E_SERVER_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let line = line.trim();
        let listening = match line.strip_prefix("listening http=") {
            Some(rest) => Some((rest, false)),
            None => line.strip_prefix("listening https=").map(|rest| (rest, true)),
        };
        if let Some((rest, tls)) = listening {
            let mut fields = rest.split_whitespace();
            let http = fields.next().unwrap();
            let quic = fields.next().and_then(|f| f.strip_prefix("quic=")).unwrap();
            return (child, http.parse().unwrap(), quic.parse().unwrap(), tls);
        }
        let status = child.wait().unwrap();
        let retry = addr != "127.0.0.1:0" && Instant::now() < deadline;
        assert!(retry, "palaver did not start ({status}); stdout: {line:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn signal_child(child: &Child, signal: i32) {
    let pid = i32::try_from(child.id()).unwrap();
    let status = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().unwrap();
    assert!(status.success());
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

// ---------------------------------------------------------------- outside tools

/// A program from outside Rust that some suites need. `./x test` installs it (or says
/// why it could not) and names it in an environment variable; run directly, a test looks
/// on `PATH` and in the usual places, and fails with how to install it when it is not
/// there: a test never skips itself.
pub struct OutsideTool {
    /// The environment variable `./x test` sets to the program's path.
    pub var: &'static str,
    /// Names or absolute paths to try, in order, when the variable is unset.
    pub candidates: &'static [&'static str],
    /// How to install it by hand.
    pub install: &'static str,
}

/// Debian's `nats-server` (JetStream included).
pub const NATS_SERVER: OutsideTool = OutsideTool {
    var: "PALAVER_NATS_SERVER",
    candidates: &["nats-server", "/usr/sbin/nats-server"],
    install: "apt-get install nats-server",
};

/// A Python 3 with the packages of `tests/python/requirements.txt` (`websockets`, `moto`).
pub const PYTHON: OutsideTool = OutsideTool {
    var: "PALAVER_PYTHON",
    candidates: &["python3"],
    install: "./x test (a venv in target/venv), or pip install -r tests/python/requirements.txt",
};

/// The `kosoku` WebSocket conformance runner (PyPI, in `tests/python/requirements.txt`).
pub const KOSOKU: OutsideTool = OutsideTool {
    var: "PALAVER_KOSOKU",
    candidates: &["kosoku"],
    install: "./x test (a venv in target/venv), or pip install -r tests/python/requirements.txt",
};

/// Debian's Chromium.
pub const CHROMIUM: OutsideTool = OutsideTool {
    var: "PALAVER_CHROMIUM",
    candidates: &["/usr/bin/chromium", "chromium"],
    install: "apt-get install chromium",
};

/// Node.js, which runs the browser driver (`tests/browser`).
pub const NODE: OutsideTool =
    OutsideTool { var: "PALAVER_NODE", candidates: &["node"], install: "apt-get install nodejs npm" };

/// npm, which installs and packs the JavaScript package (`sdk/js`).
pub const NPM: OutsideTool =
    OutsideTool { var: "PALAVER_NPM", candidates: &["npm"], install: "apt-get install nodejs npm" };

/// The wasm-bindgen CLI, exactly the version of the `wasm-bindgen` crate in Cargo.lock.
pub const WASM_BINDGEN: OutsideTool = OutsideTool {
    var: "PALAVER_WASM_BINDGEN",
    candidates: &["wasm-bindgen", "~/.cargo/bin/wasm-bindgen"],
    install: "./x test (into target/tools), or cargo install wasm-bindgen-cli --version <the one in Cargo.lock>",
};

/// The path of `tool`: from its environment variable, else the first candidate found.
/// Panics, saying how to install it, when there is none.
pub fn outside_tool(tool: OutsideTool) -> PathBuf {
    if let Some(path) = std::env::var_os(tool.var) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{}={} does not exist; install it: {}",
            tool.var,
            path.display(),
            tool.install
        );
        return path;
    }
    let path_dirs: Vec<PathBuf> =
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect();
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let found = tool.candidates.iter().find_map(|candidate| {
        if let Some(rest) = candidate.strip_prefix("~/") {
            Some(home.join(rest)).filter(|p| p.is_file())
        } else if candidate.starts_with('/') {
            Some(PathBuf::from(candidate)).filter(|p| p.is_file())
        } else {
            path_dirs.iter().map(|dir| dir.join(candidate)).find(|p| p.is_file())
        }
    });
    found.unwrap_or_else(|| {
        panic!(
            "this test needs {} (set {} or put it on PATH); install it: {}",
            tool.candidates[0], tool.var, tool.install
        )
    })
}

// ---------------------------------------------------------------- NATS

/// A NATS server with JetStream (Debian's `nats-server`) on a free loopback port, with its store in a temporary directory. Killed when dropped.
pub struct Nats {
    child: Child,
    /// The client port.
    pub port: u16,
    /// `nats://127.0.0.1:PORT`.
    pub url: String,
    store: tempfile::TempDir,
}

impl Nats {
    pub fn start() -> Nats {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let store = tempfile::tempdir().unwrap();
        let child = Nats::spawn(port, store.path());
        Nats { child, port, url: format!("nats://127.0.0.1:{port}"), store }
    }

    fn spawn(port: u16, store: &Path) -> Child {
        let bin = outside_tool(NATS_SERVER);
        let child = Command::new(&bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({e}): {}", bin.display(), NATS_SERVER.install));
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    }

    /// Kills the server with SIGKILL, waits `down`, and starts it again on the same port
    /// and JetStream store.
    pub fn kill9_and_restart(&mut self, down: Duration) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(down);
        let port: u16 = self.url.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap();
        self.child = Nats::spawn(port, self.store.path());
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A NATS cluster of three servers with clustered JetStream, on free loopback ports, each
/// with its own store: the layout in which the cluster log survives losing any one
/// server (the log stream at three replicas). Killed when dropped.
pub struct NatsCluster {
    servers: Vec<Child>,
    /// `nats://127.0.0.1:PORT` of each server.
    pub urls: Vec<String>,
    /// Each server's name (`s1`…), as JetStream reports stream leaders.
    pub names: Vec<String>,
    cluster_ports: Vec<u16>,
    stores: Vec<tempfile::TempDir>,
}

impl NatsCluster {
    pub fn start() -> NatsCluster {
        let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        // Hold every listener until all ports are chosen, so no two are the same.
        let listeners: Vec<_> = (0..6).map(|_| free()).collect();
        let ports: Vec<u16> = listeners.iter().map(|l| l.local_addr().unwrap().port()).collect();
        drop(listeners);
        let (client_ports, cluster_ports) = (ports[..3].to_vec(), ports[3..].to_vec());
        let stores: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut cluster = NatsCluster {
            servers: Vec::new(),
            urls: client_ports.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect(),
            names: (1..=3).map(|n| format!("s{n}")).collect(),
            cluster_ports,
            stores,
        };
        cluster.servers = (0..3).map(|i| cluster.spawn(i)).collect();
        cluster
    }

    fn port(&self, i: usize) -> u16 {
        self.urls[i].rsplit(':').next().and_then(|p| p.parse().ok()).unwrap()
    }

    fn spawn(&self, i: usize) -> Child {
        let bin = outside_tool(NATS_SERVER);
        let routes: Vec<String> =
            self.cluster_ports.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect();
        let port = self.port(i);
        let child = Command::new(&bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "--server_name", &self.names[i]])
            .args(["--cluster_name", "palaver", "--cluster"])
            .arg(format!("nats://127.0.0.1:{}", self.cluster_ports[i]))
            .args(["--routes", &routes.join(","), "-sd"])
            .arg(self.stores[i].path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({e}): {}", bin.display(), NATS_SERVER.install));
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    }

    /// The URLs of every server, comma-separated, as `--cluster` takes them.
    pub fn url_list(&self) -> String {
        self.urls.join(",")
    }

    /// Kills server `i` with SIGKILL, waits `down`, and starts it again on the same ports
    /// and store.
    pub fn kill9_and_restart(&mut self, i: usize, down: Duration) {
        let _ = self.servers[i].kill();
        let _ = self.servers[i].wait();
        std::thread::sleep(down);
        self.servers[i] = self.spawn(i);
    }

    /// The index of the server leading the JetStream stream `stream`, as the cluster
    /// reports it (asked through every server in turn until one answers).
    pub async fn stream_leader(&self, stream: &str) -> Option<usize> {
        for url in &self.urls {
            let Ok(client) = async_nats::connect(url.as_str()).await else { continue };
            let js = async_nats::jetstream::new(client);
            let Ok(mut handle) = js.get_stream(stream).await else { continue };
            let Ok(info) = handle.info().await else { continue };
            let leader = info.cluster.as_ref().and_then(|c| c.leader.clone());
            if let Some(i) = leader.and_then(|name| self.names.iter().position(|n| *n == name)) {
                return Some(i);
            }
        }
        None
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for child in &mut self.servers {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A loopback TCP relay to another port that can be cut (every connection through it
/// reset, new ones refused) and healed: a network partition between one process and a
/// server, for as long as the test wants.
pub struct LinkCut {
    /// `nats://127.0.0.1:PORT` of the relay's own port.
    pub url: String,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>>,
}

impl LinkCut {
    /// A relay to `127.0.0.1:target`.
    pub fn to(target: u16) -> LinkCut {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("nats://{}", listener.local_addr().unwrap());
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>> = std::sync::Arc::default();
        let (cut2, open2) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if cut2.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else { continue };
                let mut open = open2.lock().unwrap();
                open.push(client.try_clone().unwrap());
                open.push(server.try_clone().unwrap());
                let pipe = |mut from: TcpStream, mut to: TcpStream| {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                };
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        LinkCut { url, cut, open }
    }

    /// Resets every connection through the relay and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Lets connections through again.
    pub fn heal(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A value of the server's `/metrics` (0 if absent).
pub fn metric(addr: SocketAddr, name: &str) -> u64 {
    let (_, body) = http(addr, "GET", "/metrics", None, &[]);
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------- HTTP

/// A minimal blocking HTTP/1.1 client: one request per connection.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let body = body.unwrap_or("");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// An HTTP response with its raw body.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One HTTP/1.1 request with a binary body (one per connection).
pub fn http_bytes(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    // The server may answer (and close) before reading a refused body: ignore that.
    let _ = stream.write_all(&bytes);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status =
        lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    HttpResponse { status, headers, body: response[split + 4..].to_vec() }
}

/// Uploads `bytes` to `room` as `name`; returns the answer.
pub fn upload(addr: SocketAddr, token: &str, room: &RoomId, name: &str, bytes: &[u8]) -> HttpResponse {
    let auth = format!("Bearer {token}");
    http_bytes(
        addr,
        "POST",
        &format!("/v1/files?room={room}&name={name}"),
        bytes,
        &[("authorization", &auth), ("content-type", "application/octet-stream")],
    )
}

/// A small valid PNG of `width` × `height` (header only; enough to be recognized and sized).
pub fn png_bytes(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    png.extend_from_slice(&width.to_be_bytes());
    png.extend_from_slice(&height.to_be_bytes());
    png.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
    png.extend_from_slice(&[0u8; 64]);
    png
}

/// POSTs JSON and parses the JSON answer.
pub fn post_json(addr: SocketAddr, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let (status, text) =
        http(addr, "POST", path, Some(&body.to_string()), &[("content-type", "application/json")]);
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

/// A registered user's credentials.
#[derive(Debug, Clone)]
pub struct Account {
    pub username: String,
    pub user_id: String,
    pub access_token: String,
    pub refresh_token: String,
}

/// Registers `username` (password "password-123").
pub fn register(addr: SocketAddr, username: &str) -> Account {
    let (status, body) = post_json(
        addr,
        "/v1/auth/register",
        &serde_json::json!({"username": username, "password": "password-123"}),
    );
    assert_eq!(status, 201, "register {username}: {body}");
    Account {
        username: username.to_owned(),
        user_id: body["user_id"].as_str().unwrap().to_owned(),
        access_token: body["access_token"].as_str().unwrap().to_owned(),
        refresh_token: body["refresh_token"].as_str().unwrap().to_owned(),
    }
}

// ---------------------------------------------------------------- WebSocket

/// A WebSocket chat client speaking one codec.
pub struct Client {
    ws: tungstenite::WebSocket<MaybeTlsStream<TcpStream>>,
    pub codec: Codec,
    next_id: u64,
    /// Events received while waiting for a reply, in arrival order.
    pub events: std::collections::VecDeque<Event>,
}

impl Client {
    /// Connects with the codec's subprotocol, unauthenticated.
    pub fn connect(addr: SocketAddr, codec: Codec) -> Client {
        Self::connect_with(addr, codec, None)
    }

    /// Connects with an optional `Authorization: Bearer` header.
    pub fn connect_with(addr: SocketAddr, codec: Codec, bearer: Option<&str>) -> Client {
        let mut request = format!("ws://{addr}/v1/ws").into_client_request().unwrap();
        request.headers_mut().insert("sec-websocket-protocol", codec.subprotocol().parse().unwrap());
        if let Some(token) = bearer {
            request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let (ws, response) = tungstenite::client(request, MaybeTlsStream::Plain(stream)).unwrap();
        assert_eq!(
            response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()),
            Some(codec.subprotocol())
        );
        Client { ws, codec, next_id: 0, events: Default::default() }
    }

    /// Connects and authenticates as `account`.
    pub fn login(addr: SocketAddr, codec: Codec, account: &Account) -> Client {
        let mut client = Self::connect(addr, codec);
        let ok = client.ok(Op::Auth { token: account.access_token.clone() });
        assert!(matches!(ok, OkBody::Authed(ref a) if a.user_id.as_str() == account.user_id));
        client
    }

    /// Sends raw bytes as a text or binary message.
    pub fn send_raw(&mut self, bytes: Vec<u8>, text: bool) {
        let message = if text {
            tungstenite::Message::Text(String::from_utf8(bytes).unwrap().into())
        } else {
            tungstenite::Message::Binary(bytes.into())
        };
        self.ws.send(message).unwrap();
    }

    /// Writes raw bytes straight to the TCP stream, bypassing WebSocket framing.
    pub fn send_raw_frame(&mut self, bytes: &[u8]) {
        let MaybeTlsStream::Plain(stream) = self.ws.get_mut() else { panic!("plain TCP only") };
        stream.write_all(bytes).unwrap();
        stream.flush().unwrap();
    }

    /// Sends a request without waiting; returns its id.
    pub fn send_op(&mut self, op: Op) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        let bytes = self.codec.encode_client(&ClientFrame { id, op }).unwrap();
        self.send_raw(bytes, self.codec.is_text());
        id
    }

    /// The next frame from the server.
    pub fn recv(&mut self) -> ServerFrame {
        loop {
            let message = match self.ws.read() {
                Ok(message) => message,
                // A signal delivered to the test process (a child's exit) interrupts a
                // blocking read: read again.
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("reading from the server: {e}"),
            };
            match message {
                tungstenite::Message::Text(t) => return self.codec.decode_server(t.as_bytes()).unwrap(),
                tungstenite::Message::Binary(b) => return self.codec.decode_server(&b).unwrap(),
                tungstenite::Message::Close(frame) => panic!("server closed: {frame:?}"),
                _ => {}
            }
        }
    }

    /// Waits for the reply to request `id`, keeping events that arrive meanwhile.
    pub fn reply(&mut self, id: u64) -> ReplyBody {
        loop {
            match self.recv() {
                ServerFrame::Reply { re, body } if re == id => return body,
                ServerFrame::Reply { re, body } => panic!("reply {re} ({body:?}) while waiting for {id}"),
                ServerFrame::Event(event) => self.events.push_back(event),
            }
        }
    }

    /// Sends a request and returns its reply.
    pub fn request(&mut self, op: Op) -> ReplyBody {
        let id = self.send_op(op);
        self.reply(id)
    }

    /// Sends a request that must succeed.
    pub fn ok(&mut self, op: Op) -> OkBody {
        let name = op.name();
        match self.request(op) {
            ReplyBody::Ok(ok) => ok,
            ReplyBody::Err(e) => panic!("{name} failed: {e:?}"),
        }
    }

    /// Sends a request that must fail with `code`.
    pub fn err(&mut self, op: Op, code: ErrorCode) -> String {
        let name = op.name();
        match self.request(op) {
            ReplyBody::Err(e) => {
                assert_eq!(e.code, code, "{name}: {}", e.message);
                e.message
            }
            ReplyBody::Ok(ok) => panic!("{name} unexpectedly succeeded: {ok:?}"),
        }
    }

    /// The next event of any kind (queued or from the socket).
    pub fn next_event(&mut self) -> Event {
        match self.events.pop_front() {
            Some(e) => e,
            None => match self.recv() {
                ServerFrame::Event(e) => e,
                other => panic!("expected an event, got {other:?}"),
            },
        }
    }

    /// The next event that `pick` accepts; the ones it declines are dropped.
    pub fn wait_event<T>(&mut self, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
        loop {
            let event = self.next_event();
            if let Some(found) = pick(&event) {
                return found;
            }
        }
    }

    /// Whether an event that `pick` accepts arrives within `within` (others are dropped).
    pub fn sees_event_within(&mut self, within: Duration, mut pick: impl FnMut(&Event) -> bool) -> bool {
        if let Some(pos) = self.events.iter().position(&mut pick) {
            self.events.remove(pos);
            return true;
        }
        let MaybeTlsStream::Plain(stream) = self.ws.get_mut() else { panic!("plain TCP only") };
        stream.set_read_timeout(Some(within)).unwrap();
        let deadline = Instant::now() + within;
        let found = loop {
            if Instant::now() >= deadline {
                break false;
            }
            match self.ws.read() {
                Ok(tungstenite::Message::Text(t)) => {
                    if let ServerFrame::Event(e) = self.codec.decode_server(t.as_bytes()).unwrap()
                        && pick(&e)
                    {
                        break true;
                    }
                }
                Ok(tungstenite::Message::Binary(b)) => {
                    if let ServerFrame::Event(e) = self.codec.decode_server(&b).unwrap()
                        && pick(&e)
                    {
                        break true;
                    }
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
                {
                    break false;
                }
                Err(e) => panic!("socket error: {e}"),
            }
        };
        let MaybeTlsStream::Plain(stream) = self.ws.get_mut() else { panic!("plain TCP only") };
        stream.set_read_timeout(Some(WAIT)).unwrap();
        found
    }

    /// The next `system` message (a moderation notice), skipping everything else.
    pub fn next_notice(&mut self) -> Message {
        self.wait_event(|e| match e {
            Event::Message(m) if m.system.is_some() => Some(m.clone()),
            _ => None,
        })
    }

    /// The next `message` event, skipping ephemeral ones (typing).
    pub fn next_message(&mut self) -> Message {
        loop {
            if let Event::Message(m) = self.next_event() {
                return m;
            }
        }
    }

    /// The next `message` event, or the close code if the server closes the socket.
    pub fn try_next_message(&mut self) -> Result<Message, Option<u16>> {
        while let Some(event) = self.events.pop_front() {
            if let Event::Message(m) = event {
                return Ok(m);
            }
        }
        loop {
            let frame = match self.ws.read() {
                Ok(tungstenite::Message::Text(t)) => self.codec.decode_server(t.as_bytes()).unwrap(),
                Ok(tungstenite::Message::Binary(b)) => self.codec.decode_server(&b).unwrap(),
                Ok(tungstenite::Message::Close(frame)) => return Err(frame.map(|f| u16::from(f.code))),
                Ok(_) => continue,
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return Err(None);
                }
                Err(e) => panic!("socket error: {e}"),
            };
            match frame {
                ServerFrame::Event(Event::Message(m)) => return Ok(m),
                ServerFrame::Event(_) => continue,
                other => panic!("expected an event, got {other:?}"),
            }
        }
    }

    /// Creates a room and returns its id.
    pub fn create_room(&mut self, name: &str, kind: palaver_protocol::RoomKind) -> RoomId {
        match self.ok(Op::RoomCreate { name: name.into(), kind, topic: None, settings: None }) {
            OkBody::Room(r) => r.room.room_id,
            other => panic!("{other:?}"),
        }
    }

    /// Joins a room; returns `last_seq`.
    pub fn join(&mut self, room: &RoomId, since: Option<u64>) -> u64 {
        match self.ok(Op::Join { room: room.clone(), since }) {
            OkBody::Joined(j) => j.last_seq,
            other => panic!("{other:?}"),
        }
    }

    /// Sends a text message with a cid; returns `(seq, duplicate)`.
    pub fn say(&mut self, room: &RoomId, cid: &str, text: &str) -> (u64, bool) {
        match self.ok(send_op(room, cid, text)) {
            OkBody::Sent(s) => (s.seq, s.duplicate),
            other => panic!("{other:?}"),
        }
    }

    /// A page of history, newest first.
    pub fn history(&mut self, room: &RoomId, before: Option<u64>, limit: Option<u32>) -> Vec<Message> {
        match self.ok(Op::History {
            room: room.clone(),
            before,
            after: None,
            limit,
            cursor: None,
            threads: Default::default(),
        }) {
            OkBody::History(h) => h.messages,
            other => panic!("{other:?}"),
        }
    }

    /// Waits for the server to close the socket; returns the close code.
    pub fn expect_close(&mut self) -> Option<u16> {
        loop {
            match self.ws.read() {
                Ok(tungstenite::Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Ok(_) => {}
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => return None,
                Err(e) => panic!("socket error while waiting for close: {e}"),
            }
        }
    }

    /// Waits for the server to close the socket; returns the close code and reason.
    pub fn expect_close_with_reason(&mut self) -> Option<(u16, String)> {
        loop {
            match self.ws.read() {
                Ok(tungstenite::Message::Close(frame)) => {
                    return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                }
                Ok(_) => {}
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => return None,
                Err(e) => panic!("socket error while waiting for close: {e}"),
            }
        }
    }

    /// Reads the raw TCP stream (no automatic pong replies, unlike `expect_close`) until a
    /// close frame arrives; returns its code.
    pub fn expect_close_without_answering(&mut self) -> Option<u16> {
        let MaybeTlsStream::Plain(stream) = self.ws.get_mut() else { panic!("plain TCP only") };
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            // Walk the complete server frames read so far (unmasked).
            let mut at = 0;
            while bytes.len() >= at + 2 {
                let (opcode, short) = (bytes[at] & 0x0f, usize::from(bytes[at + 1] & 0x7f));
                let (len, header) = match short {
                    126 if bytes.len() >= at + 4 => {
                        (usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]])), 4)
                    }
                    127 if bytes.len() >= at + 10 => {
                        (u64::from_be_bytes(bytes[at + 2..at + 10].try_into().unwrap()) as usize, 10)
                    }
                    126 | 127 => break,
                    n => (n, 2),
                };
                if bytes.len() < at + header + len {
                    break;
                }
                if opcode == 0x8 {
                    let payload = &bytes[at + header..at + header + len];
                    return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                }
                at += header + len;
            }
            match stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("socket error while waiting for close: {e}"),
            }
        }
    }

    /// A second handle on the socket's TCP stream (to write raw bytes from another thread).
    pub fn tcp_clone(&self) -> TcpStream {
        let MaybeTlsStream::Plain(stream) = self.ws.get_ref() else { panic!("plain TCP only") };
        stream.try_clone().unwrap()
    }

    /// Closes politely.
    pub fn close(mut self) {
        let _ = self
            .ws
            .close(Some(tungstenite::protocol::CloseFrame { code: CloseCode::Normal, reason: "".into() }));
    }
}

/// A `send` op with a text body.
pub fn send_op(room: &RoomId, cid: &str, text: &str) -> Op {
    Op::Send {
        room: room.clone(),
        cid: palaver_protocol::ClientMsgId::parse(cid).unwrap(),
        kind: palaver_protocol::MessageKind::Text,
        text: text.into(),
        client_ts: None,
        reply_to: None,
        file: None,
        encryption: None,
        also_to_room: false,
        thread: None,
    }
}

// ---------------------------------------------------------------- TLS (`--http-tls`)

/// A rustls client configuration (ring) trusting exactly the certificates in `pem` (the
/// server's development certificate).
pub fn tls_client_config(pem: &str) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    std::sync::Arc::new(config)
}

/// A blocking TLS connection to the server, verified against `pem` for `127.0.0.1`.
pub fn tls_connect(
    addr: SocketAddr,
    config: std::sync::Arc<rustls::ClientConfig>,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
    let connection = rustls::ClientConnection::new(config, name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    rustls::StreamOwned::new(connection, tcp)
}

/// One HTTPS/1.1 request with a binary body (one per connection), trusting `pem`.
pub fn https_bytes(
    addr: SocketAddr,
    pem: &str,
    method: &str,
    path: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> HttpResponse {
    let mut stream = tls_connect(addr, tls_client_config(pem));
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).unwrap();
    stream.flush().unwrap();
    let mut response = Vec::new();
    // The server ends with close_notify; a plain EOF would be an error here.
    stream.read_to_end(&mut response).unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status =
        lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    HttpResponse { status, headers, body: response[split + 4..].to_vec() }
}

/// A file for a test's little page server: `(status, body, content type)`, 404 for a
/// missing file or a path with `..` in it.
pub fn static_file(file: &Path) -> (&'static str, Vec<u8>, &'static str) {
    match (file.components().any(|c| c == std::path::Component::ParentDir), std::fs::read(file)) {
        (false, Ok(body)) => {
            let kind = match file.extension().and_then(|e| e.to_str()) {
                Some("html") => "text/html; charset=utf-8",
                Some("js") => "text/javascript",
                Some("wasm") => "application/wasm",
                _ => "application/octet-stream",
            };
            ("200 OK", body, kind)
        }
        _ => ("404 Not Found", b"not found".to_vec(), "text/plain"),
    }
}

/// Writes a whole HTTP/1.1 answer that closes the connection (a test's page server).
pub fn write_http_answer(stream: &mut impl Write, status: &str, kind: &str, body: &[u8]) {
    let header = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(header.as_bytes());
    let _ = stream.write_all(body);
}
