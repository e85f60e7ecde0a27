//! One client socket: TCP bound to a chosen loopback source address, the WebSocket
//! upgrade with the target's subprotocol, authentication, and the request/reply calls the
//! set-up phase makes (one at a time, skipping events).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use palaver_protocol::{ClientFrame, Codec, OkBody, Op, ReplyBody, RoomId, RoomKind, ServerFrame};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::cli::Target;
use crate::wire;

/// How long one set-up step (connect, a request) may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// tungstenite's default read buffer (128 KiB) is zero-filled before every read, which made
/// memset most of the generator's CPU time; 8 KiB holds many frames and costs nothing.
const READ_BUFFER_BYTES: usize = 8 * 1024;

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES).write_buffer_size(0)
}

/// A connected, authenticated socket.
pub struct Client {
    pub ws: WebSocketStream<TcpStream>,
    pub codec: Codec,
    next_id: u64,
}

/// How a socket authenticates.
#[derive(Debug, Clone, Copy)]
pub enum AuthMode {
    /// `Authorization: Bearer` on the upgrade (Palaver only).
    Header,
    /// The `auth` op after the upgrade.
    Op,
}

impl AuthMode {
    pub fn for_target(target: Target, force_op: bool) -> Self {
        if target.is_palaver() && !force_op { AuthMode::Header } else { AuthMode::Op }
    }
}

impl Client {
    /// Opens a socket from `source` to `addr` and authenticates it with `token`.
    pub async fn connect(
        addr: SocketAddr,
        source: Ipv4Addr,
        target: Target,
        token: &str,
        auth: AuthMode,
    ) -> anyhow::Result<Client> {
        let codec = wire::codec(target);
        let run = async {
            let socket = TcpSocket::new_v4()?;
            socket
                .bind(SocketAddr::V4(SocketAddrV4::new(source, 0)))
                .with_context(|| format!("bind {source}"))?;
            let stream =
                socket.connect(addr).await.with_context(|| format!("connect {addr} from {source}"))?;
            stream.set_nodelay(true)?;
            let mut request = format!("ws://{addr}/v1/ws").into_client_request()?;
            let headers = request.headers_mut();
            headers.insert("Sec-WebSocket-Protocol", HeaderValue::from_static(codec.subprotocol()));
            if matches!(auth, AuthMode::Header) {
                headers.insert("Authorization", HeaderValue::from_str(&format!("Bearer {token}"))?);
            }
            let (ws, _response) =
                tokio_tungstenite::client_async_with_config(request, stream, Some(ws_config()))
                    .await
                    .context("WebSocket upgrade")?;
            anyhow::Ok(ws)
        };
        let ws =
            tokio::time::timeout(STEP_TIMEOUT, run).await.map_err(|_| anyhow!("connect timed out"))??;
        let mut client = Client { ws, codec, next_id: 1 };
        if matches!(auth, AuthMode::Op) {
            client.request(Op::Auth { token: token.to_string() }).await.context("auth")?;
        }
        Ok(client)
    }

    /// The next request id.
    pub fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Sends one request and waits for its reply (events in between are dropped).
    pub async fn request(&mut self, op: Op) -> anyhow::Result<OkBody> {
        let id = self.next_id();
        let name = op.name();
        self.ws.send(wire::encode(self.codec, &ClientFrame { id, op })?).await?;
        let wait = async {
            loop {
                let message = self.ws.next().await.ok_or_else(|| anyhow!("socket closed"))??;
                match wire::decode(self.codec, &message)? {
                    Some(ServerFrame::Reply { re, body }) if re == id => {
                        return match body {
                            ReplyBody::Ok(ok) => Ok(ok),
                            ReplyBody::Err(e) => Err(anyhow!("{name}: {} ({})", e.code.as_str(), e.message)),
                        };
                    }
                    Some(ServerFrame::Reply { re: 0, body: ReplyBody::Err(e) }) => {
                        bail!("{name}: {} ({})", e.code.as_str(), e.message)
                    }
                    _ => {}
                }
            }
        };
        tokio::time::timeout(STEP_TIMEOUT, wait).await.map_err(|_| anyhow!("{name}: no reply in time"))?
    }

    /// Creates public rooms, with up to 64 requests in flight, and returns their ids in order.
    pub async fn create_rooms(&mut self, count: usize, prefix: &str) -> anyhow::Result<Vec<RoomId>> {
        let mut rooms: Vec<Option<RoomId>> = vec![None; count];
        let mut pending = std::collections::HashMap::new();
        let mut next = 0;
        let wait = async {
            while rooms.iter().any(Option::is_none) {
                while next < count && pending.len() < 64 {
                    let id = self.next_id();
                    let op = Op::RoomCreate { name: format!("{prefix}-{next}"), kind: RoomKind::Public };
                    self.ws.feed(wire::encode(self.codec, &ClientFrame { id, op })?).await?;
                    pending.insert(id, next);
                    next += 1;
                }
                self.ws.flush().await?;
                let message = self.ws.next().await.ok_or_else(|| anyhow!("socket closed"))??;
                if let Some(ServerFrame::Reply { re, body }) = wire::decode(self.codec, &message)? {
                    let index = pending.remove(&re).ok_or_else(|| anyhow!("unexpected reply {re}"))?;
                    match body {
                        ReplyBody::Ok(OkBody::Room(room)) => rooms[index] = Some(room.room.room_id),
                        ReplyBody::Ok(other) => bail!("room.create answered {other:?}"),
                        ReplyBody::Err(e) => bail!("room.create: {} ({})", e.code.as_str(), e.message),
                    }
                }
            }
            anyhow::Ok(())
        };
        tokio::time::timeout(STEP_TIMEOUT * 4, wait)
            .await
            .map_err(|_| anyhow!("room.create timed out"))??;
        Ok(rooms.into_iter().flatten().collect())
    }

    /// Joins a room (no replay).
    pub async fn join(&mut self, room: &RoomId) -> anyhow::Result<()> {
        match self.request(Op::Join { room: room.clone(), since: None }).await? {
            OkBody::Joined(_) => Ok(()),
            other => Err(anyhow!("join answered {other:?}")),
        }
    }
}
