//! A userspace relay that adds delay and loss between clients and the server, for the
//! head-of-line measurements (this kernel has no `netem`). Loopback only, bounded by the
//! run that starts it: its tasks end when the [`Relay`] is dropped.
//!
//! - **UDP** (QUIC): every datagram, each way, waits `rtt / 2` and is dropped with
//!   probability `loss`. Each client address gets its own upstream socket, so the server
//!   sees one address per client as it would without the relay. QUIC's own loss recovery
//!   does the rest.
//! - **TCP** (WebSocket): a byte stream cannot lose bytes in user space, so the relay
//!   models what loss does to TCP (Linux's RACK-TLP recovery): bytes are cut into
//!   segments of at most [`MSS`] as they are read, each waits `rtt / 2`, and a segment
//!   "lost" (probability `loss`, each way) is sent again when a later segment's
//!   acknowledgement shows it missing plus a quarter RTT of reordering window (`1.25 ×
//!   rtt` after that later segment), or by the tail loss probe two RTTs after it was sent
//!   when nothing follows, whichever comes first. Every byte behind it waits (TCP delivers
//!   in order). Lost retransmissions and lost acknowledgements are not modelled, so the
//!   model errs in TCP's favour.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The segment size the TCP model cuts streams into (Ethernet's MSS with timestamps).
pub const MSS: usize = 1448;

/// How a relay degrades the path.
#[derive(Debug, Clone, Copy)]
pub struct Impairment {
    /// Round-trip time added (half each way).
    pub rtt: Duration,
    /// Probability that a datagram or segment is lost, each way.
    pub loss: f64,
    /// Seed of the loss decisions (a run is repeatable).
    pub seed: u64,
}

impl Impairment {
    fn one_way(&self) -> Duration {
        self.rtt / 2
    }

    /// How much later a lost TCP segment arrives.
    fn tcp_retransmit(&self) -> Duration {
        self.rtt + self.rtt / 4
    }
}

/// SplitMix64: a small, seeded, good-enough generator for loss decisions.
#[derive(Debug, Clone)]
struct Coin(u64);

impl Coin {
    fn new(seed: u64) -> Coin {
        Coin(seed)
    }

    /// True with probability `p`.
    fn lands(&mut self, p: f64) -> bool {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// What the relay counted.
#[derive(Debug, Default)]
pub struct RelayCounts {
    pub forwarded: std::sync::atomic::AtomicU64,
    pub dropped: std::sync::atomic::AtomicU64,
}

/// A running relay; stops when dropped.
pub struct Relay {
    /// Where clients connect instead of the server.
    pub addr: SocketAddr,
    pub counts: Arc<RelayCounts>,
    task: JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Which protocol a relay carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RelayProtocol {
    Tcp,
    Udp,
}

impl Relay {
    /// Starts a relay on `listen` (port 0: any free port) towards `server`.
    pub async fn start(
        protocol: RelayProtocol,
        listen: SocketAddr,
        server: SocketAddr,
        impairment: Impairment,
    ) -> anyhow::Result<Relay> {
        for addr in [listen, server] {
            if !addr.ip().is_loopback() {
                anyhow::bail!("{addr} is not a loopback address: the relay only carries 127.0.0.0/8");
            }
        }
        let counts = Arc::new(RelayCounts::default());
        let (addr, task) = match protocol {
            RelayProtocol::Tcp => {
                let listener =
                    TcpListener::bind(listen).await.with_context(|| format!("relay bind {listen}"))?;
                let addr = listener.local_addr()?;
                (addr, tokio::spawn(accept_tcp(listener, server, impairment, counts.clone())))
            }
            RelayProtocol::Udp => {
                let socket = UdpSocket::bind(listen).await.with_context(|| format!("relay bind {listen}"))?;
                let addr = socket.local_addr()?;
                (addr, tokio::spawn(relay_udp(Arc::new(socket), server, impairment, counts.clone())))
            }
        };
        Ok(Relay { addr, counts, task })
    }
}

/// Accepts clients and relays each to its own server connection. The per-connection
/// tasks live in a set owned by this task, so aborting it stops them all.
async fn accept_tcp(
    listener: TcpListener,
    server: SocketAddr,
    impairment: Impairment,
    counts: Arc<RelayCounts>,
) {
    let mut connections = tokio::task::JoinSet::new();
    let mut seed = impairment.seed;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                seed = seed.wrapping_add(1);
                let (impairment, counts) = (Impairment { seed, ..impairment }, counts.clone());
                connections.spawn(async move {
                    let Ok(upstream) = TcpStream::connect(server).await else { return };
                    let _ = client.set_nodelay(true);
                    let _ = upstream.set_nodelay(true);
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = upstream.into_split();
                    let up = pump_tcp(client_read, server_write, impairment, counts.clone());
                    let down = pump_tcp(server_read, client_write, Impairment { seed: !impairment.seed, ..impairment }, counts);
                    tokio::join!(up, down);
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// One direction of a TCP connection, through the loss model.
async fn pump_tcp(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    impairment: Impairment,
    counts: Arc<RelayCounts>,
) {
    let (queue, mut due) = mpsc::unbounded_channel::<(Instant, Option<Bytes>)>();
    let writer = async move {
        while let Some((at, segment)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            match segment {
                Some(bytes) => {
                    if to.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                None => {
                    let _ = to.shutdown().await;
                    return;
                }
            }
        }
    };
    let reader = async move {
        let mut coin = Coin::new(impairment.seed);
        let mut last = Instant::now();
        let mut buf = vec![0u8; MSS];
        // A lost segment waiting for what recovers it: when it was sent, and its bytes.
        let mut lost: Option<(Instant, Bytes)> = None;
        let mut enqueue = |at: Instant, segment: Option<Bytes>| {
            // In order: nothing overtakes a segment still waiting for its retransmission.
            last = at.max(last);
            queue.send((last, segment)).is_ok()
        };
        loop {
            let read = match &lost {
                Some((sent, _)) => {
                    let probe = *sent + 2 * impairment.rtt;
                    match tokio::time::timeout_at(probe, from.read(&mut buf)).await {
                        Ok(read) => Some(read.unwrap_or(0)),
                        Err(_) => None,
                    }
                }
                None => Some(from.read(&mut buf).await.unwrap_or(0)),
            };
            let now = Instant::now();
            let Some(n) = read else {
                // Nothing followed: the tail loss probe sends it again.
                if let Some((sent, segment)) = lost.take()
                    && !enqueue(sent + 2 * impairment.rtt + impairment.one_way(), Some(segment))
                {
                    return;
                }
                continue;
            };
            if let Some((sent, segment)) = lost.take() {
                let recovered = (now + impairment.tcp_retransmit()).min(sent + 2 * impairment.rtt);
                if !enqueue(recovered + impairment.one_way(), Some(segment)) {
                    return;
                }
            }
            if n == 0 {
                let _ = enqueue(now + impairment.one_way(), None);
                return;
            }
            counts.forwarded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let segment = Bytes::copy_from_slice(&buf[..n]);
            if coin.lands(impairment.loss) {
                counts.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                lost = Some((now, segment));
            } else if !enqueue(now + impairment.one_way(), Some(segment)) {
                return;
            }
        }
    };
    tokio::join!(reader, writer);
}

/// Relays datagrams between clients and the server, one upstream socket per client.
async fn relay_udp(
    socket: Arc<UdpSocket>,
    server: SocketAddr,
    impairment: Impairment,
    counts: Arc<RelayCounts>,
) {
    let mut flows: HashMap<SocketAddr, mpsc::UnboundedSender<(Instant, Bytes)>> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut coin = Coin::new(impairment.seed);
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, client)) = socket.recv_from(&mut buf).await else { continue };
        if coin.lands(impairment.loss) {
            counts.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            continue;
        }
        counts.forwarded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let at = Instant::now() + impairment.one_way();
        let datagram = Bytes::copy_from_slice(&buf[..n]);
        if let Some(flow) = flows.get(&client)
            && flow.send((at, datagram.clone())).is_ok()
        {
            continue;
        }
        let Ok(upstream) = UdpSocket::bind("127.0.0.1:0").await else { continue };
        if upstream.connect(server).await.is_err() {
            continue;
        }
        let upstream = Arc::new(upstream);
        let (to_server, mut due) = mpsc::unbounded_channel::<(Instant, Bytes)>();
        let _ = to_server.send((at, datagram));
        flows.insert(client, to_server);
        let sender = upstream.clone();
        tasks.spawn(async move {
            while let Some((at, datagram)) = due.recv().await {
                tokio::time::sleep_until(at).await;
                let _ = sender.send(&datagram).await;
            }
        });
        let (listener, counts) = (socket.clone(), counts.clone());
        let mut back_coin = Coin::new(!impairment.seed ^ flows.len() as u64);
        tasks.spawn(async move {
            let (to_client, mut due) = mpsc::unbounded_channel::<(Instant, Bytes)>();
            let deliver = async move {
                while let Some((at, datagram)) = due.recv().await {
                    tokio::time::sleep_until(at).await;
                    let _ = listener.send_to(&datagram, client).await;
                }
            };
            let receive = async move {
                let mut buf = vec![0u8; 65_536];
                while let Ok(n) = upstream.recv(&mut buf).await {
                    if back_coin.lands(impairment.loss) {
                        counts.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        continue;
                    }
                    counts.forwarded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let at = Instant::now() + impairment.one_way();
                    if to_client.send((at, Bytes::copy_from_slice(&buf[..n]))).is_err() {
                        return;
                    }
                }
            };
            tokio::join!(deliver, receive);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coin_lands_at_about_its_probability_and_repeats_with_its_seed() {
        let mut coin = Coin::new(7);
        let hits = (0..100_000).filter(|_| coin.lands(0.05)).count();
        assert!((4_500..5_500).contains(&hits), "{hits}");
        let a: Vec<bool> = (0..100)
            .map({
                let mut c = Coin::new(3);
                move |_| c.lands(0.5)
            })
            .collect();
        let b: Vec<bool> = (0..100)
            .map({
                let mut c = Coin::new(3);
                move |_| c.lands(0.5)
            })
            .collect();
        assert_eq!(a, b);
    }

    #[tokio::test]
    async fn tcp_bytes_arrive_in_order_and_delayed() {
        let server = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let server_addr = server.local_addr().expect("addr");
        let impairment = Impairment { rtt: Duration::from_millis(40), loss: 0.2, seed: 1 };
        let relay =
            Relay::start(RelayProtocol::Tcp, "127.0.0.1:0".parse().expect("addr"), server_addr, impairment)
                .await
                .expect("relay");
        let mut client = TcpStream::connect(relay.addr).await.expect("connect");
        let (mut accepted, _) = server.accept().await.expect("accept");
        let sent: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let started = Instant::now();
        let writer = {
            let sent = sent.clone();
            tokio::spawn(async move {
                client.write_all(&sent).await.expect("write");
                client.shutdown().await.expect("shutdown");
                client
            })
        };
        let mut got = Vec::new();
        accepted.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, sent);
        assert!(started.elapsed() >= Duration::from_millis(20));
        assert!(relay.counts.dropped.load(std::sync::atomic::Ordering::Relaxed) > 0);
        drop(writer.await);
    }

    #[tokio::test]
    async fn udp_datagrams_are_relayed_both_ways_with_loss() {
        let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let server_addr = server.local_addr().expect("addr");
        let impairment = Impairment { rtt: Duration::from_millis(10), loss: 0.0, seed: 1 };
        let relay =
            Relay::start(RelayProtocol::Udp, "127.0.0.1:0".parse().expect("addr"), server_addr, impairment)
                .await
                .expect("relay");
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        client.send_to(b"ping", relay.addr).await.expect("send");
        let mut buf = [0u8; 16];
        let (n, from) = server.recv_from(&mut buf).await.expect("recv");
        assert_eq!(&buf[..n], b"ping");
        server.send_to(b"pong", from).await.expect("send");
        let (n, back_from) = client.recv_from(&mut buf).await.expect("recv");
        assert_eq!((&buf[..n], back_from), (&b"pong"[..], relay.addr));
    }
}
