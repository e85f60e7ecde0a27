//! A shard's QUIC endpoint: its `SO_REUSEPORT` UDP socket, the sans-IO
//! `quinn_proto::Endpoint`, and a driver task per connection, all on the shard's monoio
//! loop.
//!
//! Packet I/O goes through quinn-udp's `recvmsg`/`sendmsg` paths (GRO and GSO where the
//! kernel offers them, ECN bits, the destination address of each datagram), on a
//! non-blocking socket, with monoio's readiness waits (`readable`/`writable`: an
//! io_uring poll, or epoll on the legacy driver) when the socket has nothing to give or
//! no room: many datagrams per system call, no thread hop.
//!
//! A received datagram whose destination connection id names another shard
//! ([`super::cid::route`]) is passed to that shard as a message and handled there; the
//! rest (this shard's connections, and new connections, whose Initial the client
//! addressed to an id of its own choosing) are handled here.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io::IoSliceMut;
use std::net::{IpAddr, SocketAddr};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use quinn_proto::{ConnectionHandle, DatagramEvent, VarInt};
use rustc_hash::FxHashMap;

use super::connection::{QuicConnection, State, driver_wait, take_events, turn_is_long};
use super::{Admit, Application, CLOSE_LINGER, HandshakeSlot, MAX_UDP_PAYLOAD, QuicShared, admit, app_code};
use crate::io::limits::ConnectionPermit;
use crate::mesh::{ForwardedDatagram, ShardMsg};
use crate::metrics::Metrics;
use crate::shard::Shard;
use crate::ws::CloseCode;

/// Receive buffers per `recvmsg` batch (each holds a GRO batch of datagrams).
const RECEIVE_SLOTS: usize = 8;
/// Datagrams in one GSO send at most (as quinn does: a longer burst would delay the
/// shard's other work and other connections' packets).
const MAX_SEGMENTS_PER_SEND: usize = 10;
/// Receive batches handled before the loop lets other tasks run.
const BATCHES_PER_TURN: usize = 16;

/// What runs a connection's application once its handshake is done and it is admitted.
pub type Dispatch = Box<dyn Fn(QuicConnection, Application)>;

/// The socket and quinn-udp's state for it.
struct UdpIo {
    /// The socket quinn-udp reads and writes (non-blocking).
    socket: socket2::Socket,
    /// The same socket (a duplicate descriptor) registered with monoio, for its
    /// readiness waits only.
    readiness: monoio::net::udp::UdpSocket,
    state: quinn_udp::UdpSocketState,
}

impl UdpIo {
    /// Sends a transmit, waiting while the socket has no room. Errors other than a full
    /// socket drop the datagram (QUIC recovers from loss; quinn-udp logs them).
    async fn send(&self, transmit: &quinn_proto::Transmit, contents: &[u8]) {
        let transmit = udp_transmit(transmit, contents);
        loop {
            match self.state.send((&self.socket).into(), &transmit) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if self.readiness.writable(false).await.is_err() {
                        return;
                    }
                }
                _ => return,
            }
        }
    }

    /// Sends a stateless answer (a Retry, a refusal, a version negotiation, a reset) if
    /// the socket has room now; dropped otherwise, as the network could.
    fn try_send(&self, transmit: &quinn_proto::Transmit, contents: &[u8]) {
        let _ = self.state.send((&self.socket).into(), &udp_transmit(transmit, contents));
    }
}

fn udp_transmit<'a>(transmit: &quinn_proto::Transmit, contents: &'a [u8]) -> quinn_udp::Transmit<'a> {
    quinn_udp::Transmit {
        destination: transmit.destination,
        ecn: transmit.ecn.and_then(|ecn| quinn_udp::EcnCodepoint::from_bits(ecn as u8)),
        contents: &contents[..transmit.size.min(contents.len())],
        segment_size: transmit.segment_size,
        src_ip: transmit.src_ip,
    }
}

/// One shard's QUIC endpoint.
pub struct ShardEndpoint {
    shard: Rc<Shard>,
    inner: RefCell<quinn_proto::Endpoint>,
    io: UdpIo,
    cids: super::cid::ShardCids,
    shared: Arc<QuicShared>,
    connections: RefCell<FxHashMap<ConnectionHandle, QuicConnection>>,
    accepting: Cell<bool>,
    dispatch: Dispatch,
}

impl std::fmt::Debug for ShardEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardEndpoint")
            .field("shard", &self.shard.id)
            .field("connections", &self.connections.borrow().len())
            .finish_non_exhaustive()
    }
}

impl ShardEndpoint {
    /// Starts the endpoint of `shard` on `socket` (one of [`super::prepare`]'s): its
    /// receive loop runs on the shard's runtime from now on; admitted connections go to
    /// `dispatch`. Datagrams other shards pass on arrive through
    /// [`ShardEndpoint::receive_forwarded`].
    pub fn start(
        shard: Rc<Shard>,
        socket: std::net::UdpSocket,
        shared: Arc<QuicShared>,
        dispatch: Dispatch,
    ) -> std::io::Result<Rc<Self>> {
        let socket = socket2::Socket::from(socket);
        let state = quinn_udp::UdpSocketState::new((&socket).into())?;
        let readiness = monoio::net::udp::UdpSocket::from_std(socket.try_clone()?.into())?;
        let config = Arc::new(shared.endpoint_config(shard.id));
        let inner = quinn_proto::Endpoint::new(config, Some(shared.server_config.clone()), true, None);
        let endpoint = Rc::new(ShardEndpoint {
            cids: shared.cids(shard.id),
            shard,
            inner: RefCell::new(inner),
            io: UdpIo { socket, readiness, state },
            shared,
            connections: RefCell::default(),
            accepting: Cell::new(true),
            dispatch,
        });
        monoio::spawn(receive_loop(endpoint.clone()));
        Ok(endpoint)
    }

    /// Handles a datagram another shard received for one of this shard's connections.
    pub fn receive_forwarded(self: &Rc<Self>, datagram: ForwardedDatagram) {
        let ecn = datagram.ecn.and_then(quinn_proto::EcnCodepoint::from_bits);
        self.handle(Instant::now(), datagram.remote, datagram.local_ip, ecn, datagram.data);
    }

    /// A datagram this shard's socket received: handled here, or passed to its owner.
    fn on_datagram(
        self: &Rc<Self>,
        now: Instant,
        remote: SocketAddr,
        local_ip: Option<IpAddr>,
        ecn: Option<quinn_udp::EcnCodepoint>,
        data: BytesMut,
    ) {
        let here = self.shard.id;
        let owner = super::cid::route(&data, &self.cids, here, self.shard.mesh().len());
        if owner != here {
            Metrics::inc(&self.shared.metrics.quic_datagrams_forwarded);
            let datagram = ForwardedDatagram { remote, local_ip, ecn: ecn.map(|e| e as u8), data };
            self.shard.mesh().send(owner, ShardMsg::QuicDatagram(Box::new(datagram)));
            return;
        }
        let ecn = ecn.and_then(|e| quinn_proto::EcnCodepoint::from_bits(e as u8));
        self.handle(now, remote, local_ip, ecn, data);
    }

    fn handle(
        self: &Rc<Self>,
        now: Instant,
        remote: SocketAddr,
        local_ip: Option<IpAddr>,
        ecn: Option<quinn_proto::EcnCodepoint>,
        data: BytesMut,
    ) {
        let mut response = Vec::new();
        let event = self.inner.borrow_mut().handle(now, remote, local_ip, ecn, data, &mut response);
        match event {
            Some(DatagramEvent::ConnectionEvent(handle, event)) => {
                let connection = self.connections.borrow().get(&handle).cloned();
                if let Some(connection) = connection {
                    connection.deliver(event);
                }
            }
            Some(DatagramEvent::NewConnection(incoming)) => self.on_incoming(now, incoming),
            Some(DatagramEvent::Response(transmit)) => self.io.try_send(&transmit, &response),
            None => {}
        }
    }

    /// Admits, asks to retry, or refuses a new connection attempt.
    fn on_incoming(self: &Rc<Self>, now: Instant, incoming: quinn_proto::Incoming) {
        let mut buf = Vec::new();
        let metrics = &self.shared.metrics;
        let decision = if self.accepting.get() && !self.shard.draining.get() {
            admit(
                self.shared.handshakes.load(std::sync::atomic::Ordering::Relaxed),
                incoming.remote_address_validated(),
                incoming.may_retry(),
                &self.shared.limits,
            )
        } else {
            Admit::Refuse
        };
        match decision {
            Admit::Retry => {
                let retried = self.inner.borrow_mut().retry(incoming, &mut buf);
                match retried {
                    Ok(transmit) => {
                        Metrics::inc(&metrics.quic_retries);
                        self.io.try_send(&transmit, &buf);
                    }
                    // `may_retry` was checked: not reached.
                    Err(e) => self.inner.borrow_mut().ignore(e.into_incoming()),
                }
            }
            Admit::Refuse => {
                Metrics::inc(&metrics.connections_refused);
                let transmit = self.inner.borrow_mut().refuse(incoming, &mut buf);
                self.io.try_send(&transmit, &buf);
            }
            Admit::Handshake => {
                let slot = HandshakeSlot::take(&self.shared);
                let accepted = self.inner.borrow_mut().accept(incoming, now, &mut buf, None);
                match accepted {
                    Ok((handle, inner)) => {
                        let connection =
                            QuicConnection { state: Rc::new(RefCell::new(State::new(inner))), handle };
                        self.connections.borrow_mut().insert(handle, connection.clone());
                        monoio::spawn(drive(self.clone(), connection, slot));
                    }
                    Err(e) => {
                        tracing::debug!("QUIC connection not accepted: {}", e.cause);
                        if let Some(transmit) = e.response {
                            self.io.try_send(&transmit, &buf);
                        }
                    }
                }
            }
        }
    }

    /// The handshake finished: the connection takes one of its address's slots (its
    /// address is proven now) and goes to its application; the permit is held for the
    /// connection's life. Closes it instead when over the limit or shutting down.
    fn on_connected(&self, connection: &QuicConnection) -> Option<ConnectionPermit<IpAddr>> {
        let Some(application) = connection.alpn().as_deref().and_then(Application::from_alpn) else {
            connection.close(app_code(CloseCode::Policy), "unknown application protocol");
            return None;
        };
        if !self.accepting.get() || self.shard.draining.get() {
            connection.close(app_code(CloseCode::GoingAway), "server shutting down");
            return None;
        }
        let ip = connection.remote_address().ip().to_canonical();
        let Some(permit) = self.shared.ip_connections.try_acquire(&ip) else {
            Metrics::inc(&self.shared.metrics.connections_refused);
            connection.close(app_code(CloseCode::TryAgainLater), "too many connections from this address");
            return None;
        };
        if let Some(accepted) = self.shared.metrics.quic_connections_accepted.get(self.shard.id) {
            Metrics::inc(accepted);
        }
        (self.dispatch)(connection.clone(), application);
        Some(permit)
    }

    /// Stops taking connections, lets those whose applications are closing them finish
    /// (bounded by [`CLOSE_LINGER`]), closes the rest with 1001, and waits (briefly) for
    /// every close to be sent.
    pub async fn shutdown(&self) {
        self.accepting.set(false);
        let deadline = Instant::now() + CLOSE_LINGER;
        while Instant::now() < deadline && !self.all_closes_sent() {
            monoio::time::sleep(Duration::from_millis(10)).await;
        }
        let open: Vec<QuicConnection> = self.connections.borrow().values().cloned().collect();
        for connection in open {
            connection.close(app_code(CloseCode::GoingAway), "server shutting down");
        }
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline && !self.all_closes_sent() {
            monoio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn all_closes_sent(&self) -> bool {
        self.connections.borrow().values().all(|c| c.state.borrow().close_sent)
    }
}

/// Reads the socket until the runtime ends: a batch of datagrams per system call, each
/// handled or passed to its shard.
async fn receive_loop(endpoint: Rc<ShardEndpoint>) {
    let io = &endpoint.io;
    let slot_len = usize::from(MAX_UDP_PAYLOAD) * io.state.gro_segments().max(1);
    let slots = RECEIVE_SLOTS.clamp(1, quinn_udp::BATCH_SIZE.max(1));
    let mut buffer = vec![0u8; slot_len * slots];
    let mut metas = vec![quinn_udp::RecvMeta::default(); slots];
    loop {
        if let Err(e) = io.readiness.readable(false).await {
            tracing::warn!(shard = endpoint.shard.id, "QUIC socket: {e}");
            monoio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        for _ in 0..BATCHES_PER_TURN {
            let mut slices: Vec<IoSliceMut<'_>> = buffer.chunks_mut(slot_len).map(IoSliceMut::new).collect();
            let received = match io.state.recv((&io.socket).into(), &mut slices, &mut metas) {
                Ok(count) => count,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // An ICMP error for an earlier send: meaningless for QUIC, and forgeable.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => continue,
                Err(e) => {
                    tracing::warn!(shard = endpoint.shard.id, "QUIC receive: {e}");
                    break;
                }
            };
            let now = Instant::now();
            for (meta, slice) in metas.iter().zip(&slices).take(received) {
                let mut data = BytesMut::from(&slice[..meta.len.min(slice.len())]);
                let stride = meta.stride.max(1);
                while !data.is_empty() {
                    let datagram = data.split_to(stride.min(data.len()));
                    endpoint.on_datagram(now, meta.addr, meta.dst_ip, meta.ecn, datagram);
                }
            }
        }
        // A busy socket must not starve the shard's other tasks.
        yield_now().await;
    }
}

/// Lets the runtime run other ready tasks once.
async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await;
}

/// Drives one connection until it is drained: timers, transmits, the events it owes the
/// endpoint and its application; the handshake's admission and deadline; the address
/// permit for its life.
async fn drive(endpoint: Rc<ShardEndpoint>, connection: QuicConnection, handshake: HandshakeSlot) {
    let mut handshake = Some(handshake);
    let handshake_deadline = Instant::now() + endpoint.shared.limits.auth_timeout;
    let mut permit = None;
    let mut buffer = Vec::new();
    loop {
        let now = Instant::now();
        {
            let mut state = connection.state();
            if state.inner.poll_timeout().is_some_and(|at| at <= now) {
                state.inner.handle_timeout(now);
            }
            if handshake.is_some() && now >= handshake_deadline && !state.inner.is_closed() {
                state.inner.close(now, app_code(CloseCode::Policy), "handshake took too long".into());
            }
        }
        // Transmit what is ready, bounded per turn.
        let mut transmits = 0;
        let segments = endpoint.io.state.max_gso_segments().clamp(1, MAX_SEGMENTS_PER_SEND);
        loop {
            buffer.clear();
            let transmit = connection.state().inner.poll_transmit(now, segments, &mut buffer);
            let Some(transmit) = transmit else { break };
            endpoint.io.send(&transmit, &buffer).await;
            transmits += 1;
            if turn_is_long(transmits) {
                connection.state().wake_driver();
                break;
            }
        }
        let turn = {
            let mut state = connection.state();
            while let Some(event) = state.inner.poll_endpoint_events() {
                let back = endpoint.inner.borrow_mut().handle_event(connection.handle, event);
                if let Some(back) = back {
                    state.inner.handle_event(back);
                    state.wake_driver();
                }
            }
            if state.inner.is_closed() {
                state.close_sent = true;
            }
            take_events(&mut state)
        };
        if turn.connected && handshake.take().is_some() {
            permit = endpoint.on_connected(&connection);
        }
        let (drained, deadline) = {
            let mut state = connection.state();
            let timer = state.inner.poll_timeout();
            let deadline = match (timer, handshake.is_some()) {
                (Some(at), true) => Some(at.min(handshake_deadline)),
                (None, true) => Some(handshake_deadline),
                (timer, false) => timer,
            };
            (state.inner.is_drained(), deadline)
        };
        if drained {
            break;
        }
        if turn_is_long(transmits) {
            yield_now().await;
            continue;
        }
        driver_wait(&connection, deadline).await;
    }
    endpoint.connections.borrow_mut().remove(&connection.handle);
    {
        let mut state = connection.state();
        if state.lost.is_none() {
            state.lost = Some(quinn_proto::ConnectionError::LocallyClosed);
        }
        state.close_sent = true;
        take_events(&mut state);
    }
    connection.close(VarInt::from_u32(0), "");
    drop(permit);
}

/// Gives a shard's inbox a way to hand forwarded datagrams to the endpoint without the
/// shard knowing QUIC: a weak handle, so the shard and its endpoint do not keep each
/// other alive.
pub fn forwarder(endpoint: &Rc<ShardEndpoint>) -> Box<dyn Fn(ForwardedDatagram)> {
    let endpoint: Weak<ShardEndpoint> = Rc::downgrade(endpoint);
    Box::new(move |datagram| {
        if let Some(endpoint) = endpoint.upgrade() {
            endpoint.receive_forwarded(datagram);
        }
    })
}
