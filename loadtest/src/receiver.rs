//! A room member that only receives, on a hand-framed socket ([`RawSocket`]): the bulk of
//! every traffic run's sockets, and so of the generator's work per delivery. It speaks
//! Palaver's protocol (Palaver in either encoding, or the `ws` reference); Socket.io
//! members use the general [`crate::client::Client`].

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context as _, anyhow, bail};
use palaver_protocol::{ClientFrame, Codec, Op, RoomId};

use crate::client::{AuthMode, STEP_TIMEOUT};
use crate::raw_ws::{RawFrame, RawSocket, Upgrade};
use crate::stats::Stats;
use crate::wire::{self, Incoming};

/// A connected, authenticated member of one room.
pub struct Receiver {
    socket: RawSocket,
    codec: Codec,
}

impl Receiver {
    /// Connects from `source` to `addr` (offering permessage-deflate if `deflate`),
    /// authenticates with `token` and joins `room`.
    pub async fn open(
        addr: SocketAddr,
        source: Ipv4Addr,
        codec: Codec,
        (token, auth, deflate): (&str, AuthMode, bool),
        room: &RoomId,
    ) -> anyhow::Result<Receiver> {
        let bearer = matches!(auth, AuthMode::Header).then_some(token);
        let upgrade =
            Upgrade { addr, source, path: "/v1/ws", subprotocol: Some(codec.subprotocol()), bearer, deflate };
        let opened = async {
            let mut receiver = Receiver { socket: RawSocket::connect(&upgrade).await?, codec };
            if deflate && !receiver.socket.deflate() {
                bail!("the server did not accept permessage-deflate (start it with --permessage-deflate)");
            }
            if matches!(auth, AuthMode::Op) {
                receiver.request(1, Op::Auth { token: token.to_string() }).await.context("auth")?;
            }
            receiver.request(2, Op::Join { room: room.clone(), since: None }).await.context("join")?;
            anyhow::Ok(receiver)
        };
        tokio::time::timeout(STEP_TIMEOUT, opened).await.map_err(|_| anyhow!("connect and join timed out"))?
    }

    /// Sends request `id` and waits for its answer, skipping anything else.
    async fn request(&mut self, id: u64, op: Op) -> anyhow::Result<()> {
        let bytes = self.codec.encode_client(&ClientFrame { id, op })?;
        self.socket.send(self.codec.is_text(), &bytes).await?;
        loop {
            match self.next_incoming().await? {
                None => bail!("socket closed by the server"),
                Some(Incoming::Ok { re }) if re == id => return Ok(()),
                Some(Incoming::Err { re, code }) if re == id || re == 0 => bail!("{code}"),
                Some(Incoming::Undecodable(e)) => bail!("undecodable frame: {e}"),
                Some(_) => {}
            }
        }
    }

    /// The next message frame, classified; pings are answered on the way. `None` once the
    /// server has closed the WebSocket or the connection.
    async fn next_incoming(&mut self) -> anyhow::Result<Option<Incoming>> {
        loop {
            let (text, payload) = match self.socket.next_frame().await? {
                None | Some(RawFrame::Close) => return Ok(None),
                Some(RawFrame::Ping(payload)) => {
                    let payload = payload.to_vec();
                    self.socket.pong(&payload).await?;
                    continue;
                }
                Some(RawFrame::Pong) => continue,
                Some(RawFrame::Text(payload)) => (true, payload),
                Some(RawFrame::Binary(payload)) => (false, payload),
            };
            return Ok(Some(wire::classify_payload(text, payload)));
        }
    }

    /// Counts every message event until the socket ends (or the task is aborted).
    pub async fn run(mut self, stats: Arc<Stats>) {
        loop {
            let incoming = match self.next_incoming().await {
                Ok(Some(incoming)) => incoming,
                Ok(None) => break,
                Err(e) => {
                    if stats.decode_errors.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("receiver: {e:#}");
                    }
                    break;
                }
            };
            stats.received_bytes.fetch_add(self.socket.take_bytes_read(), Ordering::Relaxed);
            match incoming {
                Incoming::Message { client_ts, .. } => {
                    stats.delivered(client_ts, self.socket.last_arrival_us())
                }
                Incoming::Err { code, .. } => stats.error(&code),
                Incoming::Undecodable(e) => {
                    if stats.decode_errors.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("undecodable frame: {e}");
                    }
                }
                Incoming::Closed => break,
                Incoming::Ok { .. } | Incoming::Ignored | Incoming::EnginePing => {}
            }
        }
        stats.socket_ended();
    }
}
