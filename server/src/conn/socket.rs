//! One WebSocket connection after the upgrade: the reader loop that parses frames,
//! admits ops through the session state machine and routes room ops to their owners,
//! and the writer task that drains the outbound queue.

use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use monoio::io::Splitable;
use monoio::net::TcpStream;
use palaver_core::{Admission, Session};
use palaver_protocol::{
    AuthOk, ClientFrame, Codec, ErrorBody, ErrorCode, OkBody, Op, ReplyBody, RoomId, RoomInfo, RoomListOk,
    RoomSummary, ServerFrame, SyncOk, UserId,
};

use super::http::read_more;
use super::outbound::{Outbound, run_writer};
use crate::clock::now_ms;
use crate::metrics::Metrics;
use crate::shard::messages::{Origin, RoomAction, ShardMsg};
use crate::shard::{Conn, Shard};
use crate::ws::{CloseCode, FrameParser, OpCode, WsMessage, encode_frame};

/// Read-buffer size a socket starts with after the upgrade; it grows with traffic.
const IDLE_READ_BUFFER: usize = 256;

/// Encodes a frame in the connection's codec and queues it.
pub fn send_frame(conn: &Conn, frame: &ServerFrame) {
    match conn.codec.encode_server(frame) {
        Ok(payload) => {
            let opcode = if conn.codec.is_text() { OpCode::Text } else { OpCode::Binary };
            conn.outbound.push(encode_frame(opcode, &payload));
        }
        Err(e) => tracing::error!("cannot encode reply: {e}"),
    }
}

fn reply_error(conn: &Conn, re: u64, code: ErrorCode, message: impl Into<String>) {
    send_frame(conn, &ServerFrame::err(re, ErrorBody::new(code, message)));
}

/// Runs a connection that has completed the WebSocket handshake.
pub async fn run(shard: Rc<Shard>, stream: TcpStream, mut buf: BytesMut, codec: Codec, user: Option<UserId>) {
    let shared = shard.shared.clone();
    let metrics = &shared.metrics;
    let outbound = Outbound::new(shared.config.outbound_queue_bytes);
    let mut session = Session::new(shared.config.session, now_ms());
    if let Some(user) = &user {
        session.authenticated(user.clone());
    }
    let conn = shard.conns.insert(codec, outbound.clone(), session, now_ms());
    if let Some(user) = &user {
        shard.conns.bind_user(conn.id, user);
    }
    metrics.connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Metrics::inc(&metrics.connections_total);

    let (mut reader, writer) = stream.into_split();
    let writer_shared = shared.clone();
    let writer_outbound = outbound.clone();
    monoio::spawn(async move { run_writer(writer, writer_outbound, &writer_shared.metrics).await });

    let mut parser = FrameParser::new(shared.config.max_frame_bytes);
    if buf.is_empty() {
        // Most sockets sit idle most of the time: start them on a small buffer.
        buf = BytesMut::with_capacity(IDLE_READ_BUFFER);
    }
    'connection: loop {
        loop {
            match parser.next_message(&mut buf) {
                Ok(Some(message)) => {
                    Metrics::inc(&metrics.frames_in);
                    conn.last_heard_ms.set(now_ms());
                    if !on_message(&shard, &conn, message) {
                        break 'connection;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    outbound.close(e.code, e.reason);
                    break 'connection;
                }
            }
        }
        if !outbound.is_open() {
            break;
        }
        let deadline = if conn.user().is_none() {
            let left = conn.session.borrow().auth_deadline_ms().saturating_sub(now_ms());
            Some(Duration::from_millis(left))
        } else {
            None
        };
        let read = read_more(&mut reader, &mut buf);
        let outcome = monoio::select! {
            r = read => Some(r),
            _ = outbound.closed() => None,
            // Boxed like the wait below: only unauthenticated sockets need the timer.
            _ = Box::pin(sleep_or_forever(deadline)) => {
                outbound.close(CloseCode::Policy, "authentication deadline passed");
                None
            }
        };
        match outcome {
            Some(Ok(n)) if n > 0 => {}
            _ => break,
        }
    }
    // The peer is gone or the socket is closing: stop routing events here, let the
    // writer flush its close frame (bounded), then forget the connection.
    crate::shard::unsubscribe_all(&shard, &conn);
    if outbound.is_open() {
        outbound.abort();
    }
    // Boxed: this wait is live only at the very end; unboxed it would widen the state
    // every idle socket carries for its whole life.
    let _ = Box::pin(monoio::time::timeout(Duration::from_secs(5), outbound.finished())).await;
    shard.conns.remove(conn.id);
    metrics.connections.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
}

async fn sleep_or_forever(duration: Option<Duration>) {
    match duration {
        Some(d) => monoio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Handles one WebSocket message; returns false when the connection must end.
fn on_message(shard: &Rc<Shard>, conn: &Rc<Conn>, message: WsMessage) -> bool {
    match message {
        WsMessage::Ping(payload) => {
            conn.outbound.push(encode_frame(OpCode::Pong, &payload));
            true
        }
        WsMessage::Pong => true,
        WsMessage::Close(_) => {
            conn.outbound.close(CloseCode::Normal, "");
            false
        }
        WsMessage::Text(bytes) | WsMessage::Binary(bytes) => {
            match conn.codec.decode_client(&bytes) {
                Ok(frame) => on_request(shard, conn, frame),
                Err(e) => {
                    let code = if bytes.len() > shard.shared.config.max_frame_bytes {
                        ErrorCode::TooLarge
                    } else {
                        ErrorCode::Invalid
                    };
                    reply_error(conn, e.id.unwrap_or(0), code, e.message);
                    if conn.session.borrow_mut().invalid_frame() == Admission::Close {
                        conn.outbound.close(CloseCode::Policy, "too many invalid frames");
                        return false;
                    }
                }
            }
            true
        }
    }
}

fn on_request(shard: &Rc<Shard>, conn: &Rc<Conn>, frame: ClientFrame) {
    let ClientFrame { id, op } = frame;
    if shard.draining.get() {
        return reply_error(conn, id, ErrorCode::Unavailable, "server is shutting down");
    }
    let admitted = conn.session.borrow_mut().admit(now_ms(), &op);
    if let Err(e) = admitted {
        return send_frame(conn, &ServerFrame::err(id, e.to_body()));
    }
    let action = match op {
        Op::Auth { token } => {
            conn.session.borrow_mut().finished();
            match shard.shared.tokens.verify(&token) {
                Ok(user) => {
                    conn.session.borrow_mut().authenticated(user.clone());
                    shard.conns.bind_user(conn.id, &user);
                    let ok = AuthOk { user_id: user, session_id: crate::ids::session_id() };
                    send_frame(conn, &ServerFrame::ok(id, OkBody::Authed(ok)));
                }
                Err(e) => reply_error(conn, id, ErrorCode::Unauthorized, e.to_string()),
            }
            return;
        }
        Op::Ping {} => {
            conn.session.borrow_mut().finished();
            return send_frame(conn, &ServerFrame::ok(id, OkBody::Empty(Default::default())));
        }
        Op::RoomCreate { name, kind } => RoomAction::Create { room: crate::ids::room_id(), name, kind },
        Op::Join { room, since } => {
            shard.subscribers.borrow_mut().join_pending(&room);
            RoomAction::Join { room, since }
        }
        Op::Leave { room } => RoomAction::Leave { room },
        Op::Send { room, cid, kind, text, client_ts, reply_to, file } => {
            RoomAction::Send { room, cid, kind, text, client_ts, reply_to, file }
        }
        Op::History { room, before, limit } => RoomAction::History { room, before, limit },
        Op::TypingStart { room } => RoomAction::Typing { room, active: true },
        Op::TypingStop { room } => RoomAction::Typing { room, active: false },
        Op::Receipt { room, delivered, read } => RoomAction::Receipt { room, delivered, read },
        Op::React { room, seq, emoji } => RoomAction::React { room, seq, emoji, add: true },
        Op::Edit { room, seq, text } => RoomAction::Edit { room, seq, text },
        Op::DmOpen { user: peer } => {
            let Some(me) = conn.user() else { return };
            if peer == me {
                conn.session.borrow_mut().finished();
                return reply_error(conn, id, ErrorCode::Invalid, "a direct room needs another user");
            }
            RoomAction::DmOpen { room: crate::ids::dm_room_id(&me, &peer), peer }
        }
        Op::RoomList { query, after, limit } => {
            conn.session.borrow_mut().finished();
            return send_frame(
                conn,
                &ServerFrame::Reply { re: id, body: room_list(shard, query, after, limit) },
            );
        }
        Op::Delete { room, seq } => RoomAction::Delete { room, seq },
        Op::Unreact { room, seq, emoji } => RoomAction::React { room, seq, emoji, add: false },
        Op::Sync {} => {
            conn.session.borrow_mut().finished();
            let body = match conn.user() {
                Some(user) => sync(shard, &user),
                None => ReplyBody::Err(ErrorBody::new(ErrorCode::Unauthorized, "authenticate first")),
            };
            return send_frame(conn, &ServerFrame::Reply { re: id, body });
        }
    };
    let Some(user) = conn.user() else {
        conn.session.borrow_mut().finished();
        return reply_error(conn, id, ErrorCode::Unauthorized, "authenticate first");
    };
    let origin = Origin { shard: shard.id, conn: conn.id, re: id, user };
    let owner = shard.mesh().owner(action.room());
    shard.mesh().send(owner, ShardMsg::Command { origin, action });
}

/// `sync`: the caller's rooms with last message and unread count, from durable storage
/// (thread-safe reads served from cache; answered on the connection's own shard). Unread
/// is `last_seq - read`, computed from the watermarks, never by scanning messages.
fn sync(shard: &Shard, user: &UserId) -> ReplyBody {
    let store = &shard.shared.store;
    let summarize = || -> Result<Vec<RoomSummary>, palaver_storage::StorageError> {
        let mut rooms = Vec::new();
        for room_id in store.user_rooms(user)? {
            let Some(record) = store.room(&room_id)? else { continue };
            let last_message = store.messages_before(&room_id, None, 1)?.pop();
            let last_seq = last_message.as_ref().map_or(0, |m| m.seq);
            let (delivered, read) = store.receipt(&room_id, user)?;
            let mentions = store.mention_count(user, &room_id, read)?;
            rooms.push(RoomSummary {
                room: RoomInfo { room_id, name: record.name, kind: record.kind },
                last_seq,
                last_message,
                delivered,
                read,
                unread: last_seq.saturating_sub(read),
                mentions,
            });
        }
        Ok(rooms)
    };
    match summarize() {
        Ok(rooms) => ReplyBody::Ok(OkBody::Sync(SyncOk { rooms })),
        Err(e) => {
            tracing::error!("sync: {e}");
            ReplyBody::Err(ErrorBody::new(ErrorCode::Internal, "storage failure"))
        }
    }
}

/// `room.list`: public rooms from storage, by room id, filtered by name.
fn room_list(shard: &Shard, query: Option<String>, after: Option<RoomId>, limit: Option<u32>) -> ReplyBody {
    let limit = limit.unwrap_or(palaver_protocol::limits::DEFAULT_HISTORY_LIMIT);
    if !(1..=palaver_protocol::limits::MAX_HISTORY_LIMIT).contains(&limit) {
        return ReplyBody::Err(ErrorBody::new(ErrorCode::Invalid, "limit must be 1 to 100"));
    }
    if query.as_ref().is_some_and(|q| q.chars().count() > palaver_protocol::limits::MAX_ROOM_NAME_CHARS) {
        return ReplyBody::Err(ErrorBody::new(ErrorCode::Invalid, "query is longer than a room name can be"));
    }
    match shard.shared.store.public_rooms(query.as_deref(), after.as_ref(), limit as usize) {
        Ok((records, next)) => {
            let rooms = records
                .into_iter()
                .map(|r| RoomInfo { room_id: r.room_id, name: r.name, kind: r.kind })
                .collect();
            ReplyBody::Ok(OkBody::RoomList(RoomListOk { results: rooms, next }))
        }
        Err(e) => {
            tracing::error!("room.list: {e}");
            ReplyBody::Err(ErrorBody::new(ErrorCode::Internal, "storage failure"))
        }
    }
}

/// Test only (`--test-echo`): echoes every message back, for WebSocket conformance suites
/// (Autobahn cases via kosoku). Uses the same parser, queue and writer as chat sockets.
pub async fn run_echo(shard: Rc<Shard>, stream: TcpStream, mut buf: BytesMut) {
    const ECHO_LIMIT: usize = 64 << 20;
    let outbound = Outbound::new(ECHO_LIMIT);
    let (mut reader, writer) = stream.into_split();
    let writer_outbound = outbound.clone();
    let shared = shard.shared.clone();
    monoio::spawn(async move { run_writer(writer, writer_outbound, &shared.metrics).await });
    let mut parser = FrameParser::new(16 << 20);
    'connection: loop {
        loop {
            match parser.next_message(&mut buf) {
                Ok(Some(WsMessage::Text(payload))) => {
                    outbound.push(encode_frame(OpCode::Text, &payload));
                }
                Ok(Some(WsMessage::Binary(payload))) => {
                    outbound.push(encode_frame(OpCode::Binary, &payload));
                }
                Ok(Some(WsMessage::Ping(payload))) => {
                    outbound.push(encode_frame(OpCode::Pong, &payload));
                }
                Ok(Some(WsMessage::Pong)) => {}
                Ok(Some(WsMessage::Close(_))) => {
                    outbound.close(CloseCode::Normal, "");
                    break 'connection;
                }
                Ok(None) => break,
                Err(e) => {
                    outbound.close(e.code, e.reason);
                    break 'connection;
                }
            }
        }
        let read = read_more(&mut reader, &mut buf);
        let outcome = monoio::select! {
            r = read => Some(r),
            _ = outbound.closed() => None,
        };
        match outcome {
            Some(Ok(n)) if n > 0 => {}
            _ => break,
        }
    }
    if outbound.is_open() {
        outbound.abort();
    }
    let _ = monoio::time::timeout(Duration::from_secs(5), outbound.finished()).await;
}

/// Heartbeats for one shard: every few seconds, pings the sockets that have been quiet
/// for `ping_interval`, and closes those silent for `idle_timeout` (a peer that vanished
/// without closing TCP would otherwise hold its socket, memory and subscriptions forever).
/// A peer that answers pings (every WebSocket client does) is never closed for idleness.
pub async fn heartbeat(shard: Rc<Shard>) {
    let config = &shard.shared.config;
    let (ping_ms, idle_ms) = (config.ping_interval_ms, config.idle_timeout_ms);
    let tick = Duration::from_millis((ping_ms / 2).clamp(100, 5_000));
    let ping = encode_frame(OpCode::Ping, b"");
    loop {
        monoio::time::sleep(tick).await;
        let now = now_ms();
        for conn in shard.conns.all() {
            let quiet = now.saturating_sub(conn.last_heard_ms.get());
            if quiet >= idle_ms {
                conn.outbound.close(CloseCode::GoingAway, "idle timeout: no frame or pong received");
            } else if quiet >= ping_ms {
                conn.outbound.push(ping.clone());
            }
        }
    }
}
