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
    /// Connects from `source` to `addr`, authenticates with `token` and joins `room`.
    pub async fn open(
        addr: SocketAddr,
        source: Ipv4Addr,
        codec: Codec,
        token: &str,
        auth: AuthMode,
        room: &RoomId,
    ) -> anyhow::Result<Receiver> {
        let bearer = matches!(auth, AuthMode::Header).then_some(token);
        let upgrade =
            Upgrade { addr, source, path: "/v1/ws", subprotocol: Some(codec.subprotocol()), bearer };
        let opened = async {
            let mut receiver = Receiver { socket: RawSocket::connect(&upgrade).await?, codec };
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
            let frame = self.socket.next_frame().await?;
            let incoming = match frame {
                None | Some(RawFrame::Close) => bail!("socket closed by the server"),
                Some(RawFrame::Ping(payload)) => {
                    let payload = payload.to_vec();
                    self.socket.pong(&payload).await?;
                    continue;
                }
                Some(RawFrame::Pong) => continue,
                Some(RawFrame::Text(payload)) => wire::classify_payload(true, payload),
                Some(RawFrame::Binary(payload)) => wire::classify_payload(false, payload),
            };
            match incoming {
                Incoming::Ok { re } if re == id => return Ok(()),
                Incoming::Err { re, code } if re == id || re == 0 => bail!("{code}"),
                Incoming::Undecodable(e) => bail!("undecodable frame: {e}"),
                _ => {}
            }
        }
    }

    /// Counts every message event until the socket ends (or the task is aborted).
    pub async fn run(mut self, stats: Arc<Stats>) {
        loop {
            let frame = match self.socket.next_frame().await {
                Ok(frame) => frame,
                Err(e) => {
                    if stats.decode_errors.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("receiver: {e:#}");
                    }
                    break;
                }
            };
            let incoming = match frame {
                None | Some(RawFrame::Close) => break,
                Some(RawFrame::Ping(payload)) => {
                    let payload = payload.to_vec();
                    if self.socket.pong(&payload).await.is_err() {
                        break;
                    }
                    continue;
                }
                Some(RawFrame::Pong) => continue,
                Some(RawFrame::Text(payload)) => wire::classify_payload(true, payload),
                Some(RawFrame::Binary(payload)) => wire::classify_payload(false, payload),
            };
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
