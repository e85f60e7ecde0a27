//! One client socket: TCP bound to a chosen loopback source address, the WebSocket
//! upgrade with the target's subprotocol (or the Socket.io handshake), authentication, and
//! the request/reply calls the set-up phase makes (one at a time, skipping events).
//!
//! Requests are written as Palaver `Op`s whatever the target: on Socket.io the few that
//! the baseline knows are mapped to its events (`room.create` → `create-room`, `join` →
//! `join-room`, `send` → `send-message`) and the request id becomes the ack id.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use futures_util::{SinkExt, StreamExt as _};
use palaver_protocol::{
    ClientFrame, Codec, Event, OkBody, Op, ReplyBody, RoomId, RoomKind, RoomSettingsPatch, ServerFrame,
};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::arrival::ArrivalStream;
use crate::cli::{Target, Transport};
use crate::link::Link;
use crate::loopback_tls;
use crate::quic_link::QuicLink;
use crate::socketio::{self, Packet};
use crate::wire::{self, Incoming};

/// How long one set-up step (connect, a request) may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// The member limit load rooms are created with: the server's default cap (`--max-room-members`).
pub const LOAD_ROOM_CAPACITY: u32 = 10_000;

/// tungstenite's default read buffer (128 KiB) is zero-filled before every read, which made
/// memset most of the generator's CPU time; 8 KiB holds many frames and costs nothing.
const READ_BUFFER_BYTES: usize = 8 * 1024;

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES).write_buffer_size(0)
}

/// What a socket speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// Palaver's frames (Palaver or the ws baseline), in this encoding.
    Palaver(Codec),
    /// Socket.io v4 events (the Socket.io baseline).
    SocketIo,
}

/// A connected, authenticated socket.
pub struct Client {
    pub ws: Link,
    pub proto: Proto,
    next_id: u64,
}

/// How a socket authenticates.
#[derive(Debug, Clone, Copy)]
pub enum AuthMode {
    /// `Authorization: Bearer` on the upgrade (Palaver only).
    Header,
    /// The `auth` op after the upgrade (Socket.io: the handshake's `auth.token`).
    Op,
}

impl AuthMode {
    pub fn for_target(target: Target, force_op: bool) -> Self {
        // QUIC has no upgrade request to carry a header: its first frame is `auth`.
        if target.is_palaver() && target.transport() != Transport::Quic && !force_op {
            AuthMode::Header
        } else {
            AuthMode::Op
        }
    }
}

/// The useful fields of a successful reply, whichever op and target it came from.
#[derive(Debug, Default, Clone)]
pub struct ReplyData {
    /// `room.create`: the new room.
    pub room: Option<RoomId>,
    /// `join`: the newest seq at joining.
    pub last_seq: Option<u64>,
    /// `send`: the stored seq.
    pub seq: Option<u64>,
    /// `history`: (messages, newest seq, oldest seq).
    pub page: Option<(usize, u64, u64)>,
}

/// A fully read frame (set-up and the low-rate paths).
#[derive(Debug)]
pub enum Frame {
    /// A reply to request `re`: its data or an error code.
    Reply { re: u64, result: Result<ReplyData, String> },
    /// A message event.
    Message { seq: u64, client_ts: Option<u64> },
    /// An engine.io ping to answer.
    EnginePing,
    /// The server closed the socket.
    Closed,
    /// Anything else.
    Other,
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
        Self::connect_offering(addr, source, target, (token, auth), false).await
    }

    /// [`Client::connect`], offering permessage-deflate if `deflate`: only for sockets
    /// that then stay idle (tungstenite reads no compressed frame; small replies are
    /// never compressed).
    pub async fn connect_offering(
        addr: SocketAddr,
        source: Ipv4Addr,
        target: Target,
        (token, auth): (&str, AuthMode),
        deflate: bool,
    ) -> anyhow::Result<Client> {
        let proto =
            if target == Target::Socketio { Proto::SocketIo } else { Proto::Palaver(wire::codec(target)) };
        let transport = target.transport();
        let run = async {
            if transport == Transport::Quic {
                let Proto::Palaver(codec) = proto else { bail!("QUIC speaks Palaver's frames only") };
                let link = QuicLink::connect(addr, codec).await?;
                return anyhow::Ok(Client { ws: Link::Quic(Box::new(link)), proto, next_id: 1 });
            }
            let stream = ArrivalStream::connect(addr, source).await?;
            let scheme = if transport == Transport::WebSocketTls { "wss" } else { "ws" };
            let mut request = match proto {
                Proto::Palaver(_) => format!("{scheme}://{addr}/v1/ws"),
                Proto::SocketIo => format!("{scheme}://{addr}{}", socketio::PATH),
            }
            .into_client_request()?;
            let headers = request.headers_mut();
            if let Proto::Palaver(codec) = proto {
                headers.insert("Sec-WebSocket-Protocol", HeaderValue::from_static(codec.subprotocol()));
                if matches!(auth, AuthMode::Header) {
                    headers.insert("Authorization", HeaderValue::from_str(&format!("Bearer {token}"))?);
                }
                if deflate {
                    headers.insert(
                        "Sec-WebSocket-Extensions",
                        HeaderValue::from_static("permessage-deflate; client_max_window_bits"),
                    );
                }
            }
            let ws = if transport == Transport::WebSocketTls {
                let tls = loopback_tls::connector()
                    .connect(loopback_tls::server_name(), stream)
                    .await
                    .context("TLS handshake")?;
                let (ws, _response) =
                    tokio_tungstenite::client_async_with_config(request, tls, Some(ws_config()))
                        .await
                        .context("WebSocket upgrade")?;
                Link::Wss(Box::new(ws))
            } else {
                let (ws, _response) =
                    tokio_tungstenite::client_async_with_config(request, stream, Some(ws_config()))
                        .await
                        .context("WebSocket upgrade")?;
                Link::Ws(ws)
            };
            let mut client = Client { ws, proto, next_id: 1 };
            if proto == Proto::SocketIo {
                client.socketio_handshake(token).await?;
            }
            anyhow::Ok(client)
        };
        let mut client =
            tokio::time::timeout(STEP_TIMEOUT, run).await.map_err(|_| anyhow!("connect timed out"))??;
        if matches!(auth, AuthMode::Op) && client.proto != Proto::SocketIo {
            client.request(Op::Auth { token: token.to_string() }).await.context("auth")?;
        }
        Ok(client)
    }

    /// engine.io open → `40{"token"}` → `40{"sid"}` (or `44`: refused).
    async fn socketio_handshake(&mut self, token: &str) -> anyhow::Result<()> {
        let mut opened = false;
        loop {
            let message = self.ws.next().await.ok_or_else(|| anyhow!("socket closed in the handshake"))??;
            let WsMessage::Text(text) = &message else { continue };
            match socketio::parse(text.as_str())? {
                Packet::Open if !opened => {
                    opened = true;
                    self.ws.send(WsMessage::Text(socketio::connect_packet(token).into())).await?;
                }
                Packet::Connected => return Ok(()),
                Packet::ConnectError(e) => bail!("socket.io connect refused: {e}"),
                Packet::Ping => self.pong().await?,
                Packet::Close => bail!("socket.io closed in the handshake"),
                _ => {}
            }
        }
    }

    /// The next request id.
    pub fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Encodes a request as this socket's WebSocket message.
    pub fn encode(&self, id: u64, op: Op) -> anyhow::Result<WsMessage> {
        match self.proto {
            Proto::Palaver(codec) => wire::encode(codec, &ClientFrame { id, op }),
            Proto::SocketIo => {
                let (name, data) = match op {
                    Op::RoomCreate { name, kind, .. } => (
                        "create-room",
                        json!({ "name": name, "kind": if kind == RoomKind::Private { "private" } else { "public" } }),
                    ),
                    Op::Join { room, .. } => ("join-room", json!({ "roomId": room.as_str() })),
                    Op::Send { room, cid, text, client_ts, .. } => (
                        "send-message",
                        json!({
                            "roomId": room.as_str(), "content": text, "type": "text",
                            "cid": cid.as_str(), "clientTs": client_ts,
                        }),
                    ),
                    other => bail!("{} has no Socket.io event in the baseline", other.name()),
                };
                Ok(WsMessage::Text(socketio::event_packet(id, name, &data).into()))
            }
        }
    }

    /// Writes a request into the socket's buffer (flush to send) and returns its id.
    pub async fn feed(&mut self, op: Op) -> anyhow::Result<u64> {
        let id = self.next_id();
        let message = self.encode(id, op)?;
        self.ws.feed(message).await?;
        Ok(id)
    }

    /// Classifies a frame cheaply (hot path).
    pub fn classify(&self, message: &WsMessage) -> Incoming {
        match (self.proto, message) {
            (Proto::SocketIo, WsMessage::Text(t)) => socketio::classify(t.as_str()),
            _ => wire::classify(message),
        }
    }

    /// When the bytes of the frame last read reached this socket (kernel receive
    /// timestamp), µs since the Unix epoch.
    pub fn last_arrival_us(&self) -> Option<u64> {
        self.ws.last_arrival_us()
    }

    /// Reads a frame fully.
    pub fn decode(&self, message: &WsMessage) -> anyhow::Result<Frame> {
        match self.proto {
            Proto::Palaver(codec) => Ok(match wire::decode(codec, message) {
                Err(_) if message.is_close() => Frame::Closed,
                Err(e) => return Err(e),
                Ok(Some(ServerFrame::Event(Event::Message(m)))) => {
                    Frame::Message { seq: m.seq, client_ts: m.client_ts }
                }
                // Other events (typing, receipts, reactions) carry nothing measured here.
                Ok(None) | Ok(Some(ServerFrame::Event(_))) => Frame::Other,
                Ok(Some(ServerFrame::Reply { re, body })) => Frame::Reply {
                    re,
                    result: match body {
                        ReplyBody::Ok(ok) => Ok(reply_data(ok)),
                        ReplyBody::Err(e) => Err(e.code.as_str().to_string()),
                    },
                },
            }),
            Proto::SocketIo => {
                let text = match message {
                    WsMessage::Text(t) => t.as_str(),
                    WsMessage::Close(_) => return Ok(Frame::Closed),
                    _ => return Ok(Frame::Other),
                };
                Ok(match socketio::parse(text)? {
                    Packet::Ping => Frame::EnginePing,
                    Packet::Close => Frame::Closed,
                    Packet::Ack { id, data } => Frame::Reply { re: id, result: socketio_reply(&data) },
                    Packet::Event { name, data } if name == "new-message" => Frame::Message {
                        seq: data.get("seq").and_then(Value::as_u64).unwrap_or(0),
                        client_ts: data.get("clientTs").and_then(Value::as_u64),
                    },
                    _ => Frame::Other,
                })
            }
        }
    }

    /// Answers an engine.io ping.
    pub async fn pong(&mut self) -> anyhow::Result<()> {
        self.ws.send(WsMessage::Text(socketio::PONG.into())).await?;
        Ok(())
    }

    /// Closes the socket politely (bounded).
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_millis(500), SinkExt::close(&mut self.ws)).await;
    }

    /// Sends one request and waits for its reply (events in between are dropped).
    pub async fn request(&mut self, op: Op) -> anyhow::Result<ReplyData> {
        let name = op.name();
        let id = self.feed(op).await?;
        self.ws.flush().await?;
        let wait = async {
            loop {
                let message = self.ws.next().await.ok_or_else(|| anyhow!("socket closed"))??;
                match self.decode(&message)? {
                    Frame::Reply { re, result } if re == id || re == 0 => {
                        return result.map_err(|code| anyhow!("{name}: {code}"));
                    }
                    Frame::EnginePing => self.pong().await?,
                    Frame::Closed => bail!("{name}: socket closed by the server"),
                    _ => {}
                }
            }
        };
        tokio::time::timeout(STEP_TIMEOUT, wait).await.map_err(|_| anyhow!("{name}: no reply in time"))?
    }

    /// Creates public rooms (admitting up to [`LOAD_ROOM_CAPACITY`] members), with up to 64 requests in flight, and returns their ids in order.
    pub async fn create_rooms(&mut self, count: usize, prefix: &str) -> anyhow::Result<Vec<RoomId>> {
        let mut rooms: Vec<Option<RoomId>> = vec![None; count];
        let mut pending = std::collections::HashMap::new();
        let mut next = 0;
        let wait = async {
            while rooms.iter().any(Option::is_none) {
                while next < count && pending.len() < 64 {
                    let op = Op::RoomCreate {
                        name: format!("{prefix}-{next}"),
                        kind: RoomKind::Public,
                        topic: None,
                        // Rooms admit 100 members unless told otherwise; load rooms are
                        // bigger (up to the server's default cap).
                        settings: Some(RoomSettingsPatch {
                            max_members: Some(LOAD_ROOM_CAPACITY),
                            ..Default::default()
                        }),
                    };
                    let id = self.feed(op).await?;
                    pending.insert(id, next);
                    next += 1;
                }
                self.ws.flush().await?;
                let message = self.ws.next().await.ok_or_else(|| anyhow!("socket closed"))??;
                match self.decode(&message)? {
                    Frame::Reply { re, result } => {
                        let index = pending.remove(&re).ok_or_else(|| anyhow!("unexpected reply {re}"))?;
                        match result {
                            Ok(ReplyData { room: Some(room), .. }) => rooms[index] = Some(room),
                            Ok(other) => bail!("room.create answered {other:?}"),
                            Err(code) => bail!("room.create: {code}"),
                        }
                    }
                    Frame::EnginePing => self.pong().await?,
                    Frame::Closed => bail!("room.create: socket closed by the server"),
                    _ => {}
                }
            }
            anyhow::Ok(())
        };
        tokio::time::timeout(STEP_TIMEOUT * 4, wait)
            .await
            .map_err(|_| anyhow!("room.create timed out"))??;
        Ok(rooms.into_iter().flatten().collect())
    }

    /// Joins a room (no replay) and returns its newest seq.
    pub async fn join(&mut self, room: &RoomId) -> anyhow::Result<u64> {
        let joined = self.request(Op::Join { room: room.clone(), since: None }).await?;
        joined.last_seq.ok_or_else(|| anyhow!("join answered {joined:?}"))
    }
}

fn reply_data(ok: OkBody) -> ReplyData {
    let mut data = ReplyData::default();
    match ok {
        OkBody::Room(r) => data.room = Some(r.room.room_id),
        OkBody::Joined(j) => data.last_seq = Some(j.last_seq),
        OkBody::Sent(s) => data.seq = Some(s.seq),
        OkBody::History(h) => {
            let newest = h.messages.first().map(|m| m.seq).unwrap_or(0);
            let oldest = h.messages.last().map(|m| m.seq).unwrap_or(0);
            data.page = Some((h.messages.len(), newest, oldest));
        }
        // Answers that carry nothing the load generator tracks.
        _ => {}
    }
    data
}

/// The baseline's acks: `{roomId}`, `{ok,lastSeq}`, `{seq}` or `{error}`.
fn socketio_reply(data: &Value) -> Result<ReplyData, String> {
    if let Some(e) = data.get("error") {
        return Err(e.as_str().unwrap_or("error").to_string());
    }
    Ok(ReplyData {
        room: data.get("roomId").and_then(Value::as_str).and_then(|s| RoomId::parse(s).ok()),
        last_seq: data.get("lastSeq").and_then(Value::as_u64),
        seq: data.get("seq").and_then(Value::as_u64),
        page: None,
    })
}
