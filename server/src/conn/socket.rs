//! One WebSocket connection after the upgrade: the reader loop that parses frames,
//! admits ops through the session state machine and routes room ops to their owners,
//! and the writer task that drains the outbound queue.
//!
//! The op handling ([`on_payload`], and [`end_session`] at the end) works on a
//! [`Conn`] whatever its transport: the QUIC session ([`super::quic_session`]) calls the
//! same functions, so auth, limits, routing and fan-out are one code path.

use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use monoio::io::Splitable;
use palaver_core::{Admission, Session};
use palaver_protocol::{AuthOk, ClientFrame, ErrorBody, ErrorCode, OkBody, Op, ReplyBody, ServerFrame};

use super::directory;
use super::http::read_more;
use crate::clock::now_ms;
use crate::io::lane::Lane;
use crate::io::outbound::{Outbound, run_writer};
use crate::io::wire::Wire;
use crate::mesh::{Origin, RoomAction, ShardMsg};
use crate::metrics::Metrics;
use crate::shard::people;
use crate::shard::{Conn, Shard};
use crate::ws::{CloseCode, FrameParser, OpCode, WsMessage, encode_frame};
use palaver_core::owner::{NewRoom, RoomOp};
use palaver_core::route::{Home, PeopleOp, Route, route};

/// Read-buffer size a socket starts with after the upgrade; it grows with traffic.
const IDLE_READ_BUFFER: usize = 256;

/// Refuses a request the session never admitted (undecodable, or the server draining):
/// it holds no in-flight slot.
fn refuse_unadmitted(conn: &Conn, re: u64, code: ErrorCode, message: impl Into<String>) {
    refuse_unadmitted_with(conn, re, ErrorBody::new(code, message));
}

fn refuse_unadmitted_with(conn: &Conn, re: u64, error: ErrorBody) {
    if conn.take_quiet(re) {
        return;
    }
    conn.send_frame(&ServerFrame::err(re, error));
}

/// Runs a connection that has completed the WebSocket handshake.
pub async fn run(
    shard: Rc<Shard>,
    stream: impl super::ByteStream,
    mut buf: BytesMut,
    wire: Wire,
    user: Option<crate::auth::Verified>,
    permits: crate::io::limits::Permits,
    reset: crate::io::socket_reset::SocketReset,
) {
    let shared = shard.shared.clone();
    let metrics = &shared.metrics;
    let outbound = Outbound::new(shared.config.outbound_queue_bytes);
    let mut session = Session::new(shared.config.session, now_ms());
    if let Some(verified) = &user {
        session.authenticated(verified.user.clone());
    }
    let conn = shard.conns.insert(wire, outbound.clone(), session, now_ms());
    *conn.permits.borrow_mut() = permits;
    if let Some(verified) = user {
        shard.conns.bind_user(conn.id, &verified.user);
        people::session_started(&shard, &conn, &verified.user);
        *conn.login.borrow_mut() = Some(verified.login);
    }
    metrics.connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Metrics::inc(&metrics.connections_total);

    let (mut reader, writer) = stream.into_split();
    monoio::spawn(run_writer(
        writer,
        outbound.clone(),
        shared.metrics.clone(),
        shard.write_pacer.clone(),
        reset,
    ));

    let deflate = matches!(wire, Wire::WebSocket(_, Some(_)));
    let mut parser = FrameParser::new(shared.config.max_frame_bytes, deflate);
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
    end_session(&shard, &conn).await;
}

/// The end of any connection (WebSocket or QUIC): the peer is gone or the socket is
/// closing. Stops routing events here, lets the writer flush its close (bounded), then
/// forgets the connection.
pub async fn end_session(shard: &Rc<Shard>, conn: &Rc<Conn>) {
    crate::shard::unsubscribe_all(shard, conn);
    if let Some(user) = conn.user() {
        people::session_ended(shard, conn, &user);
    }
    if conn.outbound.is_open() {
        conn.outbound.abort();
    }
    // Boxed: this wait is live only at the very end; unboxed it would widen the state
    // every idle socket carries for its whole life.
    // A closing socket may take as long as a live one to take its bytes (the close
    // frame included); then it is abandoned.
    let grace = Duration::from_millis(shard.shared.config.write_timeout_ms);
    let _ = Box::pin(monoio::time::timeout(grace, conn.outbound.finished())).await;
    // A close the peer did not take in time (it stopped reading): abandon the write in
    // flight, so the socket's descriptor and buffers go now, not when the peer leaves.
    conn.outbound.abort();
    if conn.outbound.close_reason().is_some_and(|(code, _)| code == CloseCode::TryAgainLater) {
        Metrics::inc(&shard.shared.metrics.slow_consumers);
    }
    shard.conns.remove(conn.id);
    shard.shared.metrics.connections.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
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
            conn.outbound.push_reply(encode_frame(OpCode::Pong, &payload));
            true
        }
        WsMessage::Pong => true,
        WsMessage::Close(_) => {
            conn.outbound.close(CloseCode::Normal, "");
            false
        }
        WsMessage::Text(bytes) | WsMessage::Binary(bytes) => on_payload(shard, conn, &bytes),
    }
}

/// Handles one client payload (a WebSocket data message, or one length-prefixed QUIC
/// frame): decodes it in the connection's codec and admits and routes its op; answers
/// an undecodable payload with an error. Returns false when the connection must end.
pub fn on_payload(shard: &Rc<Shard>, conn: &Rc<Conn>, bytes: &[u8]) -> bool {
    match conn.wire.codec().decode_client(bytes) {
        Ok(frame) => on_request(shard, conn, frame),
        Err(e) => {
            let code = if bytes.len() > shard.shared.config.max_frame_bytes {
                ErrorCode::TooLarge
            } else {
                ErrorCode::Invalid
            };
            refuse_unadmitted(conn, e.id.unwrap_or(0), code, e.message);
            if conn.session.borrow_mut().invalid_frame() == Admission::Close {
                conn.outbound.close(CloseCode::Policy, "too many invalid frames");
                return false;
            }
        }
    }
    true
}

/// A client datagram (QUIC, §7.3): one `typing.start` or `typing.stop` frame without a
/// length prefix, handled like a request whose answer is not sent. Anything else (a
/// frame that does not decode, another op, one before `auth`) is counted and dropped: a
/// datagram never closes the connection and never counts as an invalid frame.
pub fn on_datagram(shard: &Rc<Shard>, conn: &Rc<Conn>, bytes: &[u8]) {
    let typing = match conn.wire.codec().decode_client(bytes) {
        Ok(frame) if matches!(frame.op, Op::TypingStart { .. } | Op::TypingStop { .. }) => Some(frame),
        Ok(_) | Err(_) => None,
    };
    let Some(frame) = typing.filter(|_| conn.user().is_some()) else {
        return Metrics::inc(&shard.shared.metrics.quic_datagrams_dropped);
    };
    conn.answer_quietly(frame.id);
    on_request(shard, conn, frame);
}

fn on_request(shard: &Rc<Shard>, conn: &Rc<Conn>, frame: ClientFrame) {
    let ClientFrame { id, op } = frame;
    if shard.draining.get() {
        return refuse_unadmitted(conn, id, ErrorCode::Unavailable, "server is shutting down");
    }
    let admitted = conn.session.borrow_mut().admit(now_ms(), &op);
    if let Err(e) = admitted {
        return refuse_unadmitted_with(conn, id, e.to_body());
    }
    let action = match route(op) {
        Route::Local(op) => return on_local(shard, conn, id, op),
        Route::People(home, op) => return people_op(shard, conn, id, home, op),
        Route::CreateRoom(request) => RoomAction::Create(NewRoom { id: crate::ids::room_id(), request }),
        Route::OpenDirect(peer) => {
            let Some(me) = conn.user() else {
                return conn.answer_err(id, ErrorCode::Unauthorized, "authenticate first");
            };
            if peer == me {
                return conn.answer_err(id, ErrorCode::Invalid, "a direct room needs another user");
            }
            RoomAction::OpenDirect { room: crate::ids::dm_room_id(&me, &peer), peer }
        }
        Route::Room(room, op) => {
            if matches!(op, RoomOp::Join { .. }) {
                shard.subscribers.borrow_mut().join_pending(&room);
            }
            RoomAction::On { room, op }
        }
    };
    let Some(user) = conn.user() else {
        return conn.answer_err(id, ErrorCode::Unauthorized, "authenticate first");
    };
    let origin = Origin { shard: shard.id, conn: conn.id, re: id, user };
    let owner = shard.mesh().owner(action.room());
    shard.mesh().send(owner, ShardMsg::Command { origin, action });
}

/// An op this shard answers itself: auth, ping, reads of the directory, search, sync.
fn on_local(shard: &Rc<Shard>, conn: &Rc<Conn>, id: u64, op: Op) {
    match op {
        Op::Auth { token } => {
            match crate::auth::authenticate(&shard.shared.tokens, &shard.shared.store, &token) {
                Ok(crate::auth::Verified { user, login }) => {
                    // A socket re-authenticating gives its old slot back first.
                    conn.permits.borrow_mut().user = None;
                    let Some(permit) = shard.shared.user_connections.try_acquire(&user) else {
                        Metrics::inc(&shard.shared.metrics.connections_refused);
                        let limit = shard.shared.user_connections.max();
                        let message = format!("too many connections for this user (limit {limit})");
                        return conn.answer_err(id, ErrorCode::RateLimited, message);
                    };
                    conn.permits.borrow_mut().user = Some(permit);
                    conn.session.borrow_mut().authenticated(user.clone());
                    *conn.login.borrow_mut() = Some(login);
                    shard.conns.bind_user(conn.id, &user);
                    people::session_started(shard, conn, &user);
                    let ok = AuthOk { user_id: user, session_id: crate::ids::session_id() };
                    conn.answer(id, ReplyBody::Ok(OkBody::Authed(ok)));
                }
                Err(e @ crate::auth::AuthError::Unavailable) => {
                    conn.answer_err(id, ErrorCode::Unavailable, e.to_string());
                }
                Err(e) => conn.answer_err(id, ErrorCode::Unauthorized, e.to_string()),
            }
        }
        Op::Ping {} => conn.answer(id, ReplyBody::Ok(OkBody::Empty(Default::default()))),
        op @ (Op::InviteList { .. }
        | Op::UserGet { .. }
        | Op::UserSearch { .. }
        | Op::FriendList { .. }
        | Op::BlockList { .. }
        | Op::KeysList { .. }
        | Op::PresenceSubscribe { .. }
        | Op::PresenceUnsubscribe { .. }) => {
            let Some(user) = conn.user() else {
                return conn.answer_err(id, ErrorCode::Unauthorized, "authenticate first");
            };
            let body = directory::answer(shard, conn, &user, op);
            conn.answer(id, body);
        }
        Op::RoomList { query, limit, cursor } => {
            conn.answer(id, directory::room_list(shard, query, limit, cursor))
        }
        Op::Search { query, room, from, before, after, order, limit, cursor } => {
            let Some(user) = conn.user() else {
                return conn.answer_err(id, ErrorCode::Unauthorized, "authenticate first");
            };
            let request = directory::SearchRequest { query, room, from, before, after, order, limit, cursor };
            let (shard, conn) = (shard.clone(), conn.clone());
            monoio::spawn(async move {
                // A socket that closes meanwhile drops its search before it runs.
                let closed = conn.outbound.closed();
                let searched = directory::search(&shard, user, request);
                let body = monoio::select! {
                    biased;
                    body = searched => body,
                    () = closed => return,
                };
                conn.answer(id, body);
            });
        }
        Op::Sync { limit, cursor } => {
            let body = match conn.user() {
                Some(user) => directory::sync(shard, &user, limit, cursor),
                None => ReplyBody::Err(ErrorBody::new(ErrorCode::Unauthorized, "authenticate first")),
            };
            conn.answer(id, body);
        }
        // Routed to an owner or a home by `palaver_core::route`, never here.
        other => conn.answer_err(id, ErrorCode::Internal, format!("{} is not answered here", other.name())),
    }
}

/// Sends a people op to the home shard that is its single writer: a pair's for
/// friendships and blocks, the caller's own for profile, presence and keys, the claimed
/// user's for their one-time keys.
fn people_op(shard: &Rc<Shard>, conn: &Rc<Conn>, id: u64, home: Home, op: PeopleOp) {
    let Some(me) = conn.user() else {
        return conn.answer_err(id, ErrorCode::Unauthorized, "authenticate first");
    };
    // A push endpoint is checked here, against the operator's networks; the home
    // stores what passed.
    let op = match op {
        PeopleOp::PushSubscribe { .. } if shard.shared.vapid.is_none() => {
            return conn.answer_err(
                id,
                ErrorCode::NotFound,
                "Web Push is off on this node: a cluster node pushes only with --vapid-key-file",
            );
        }
        PeopleOp::PushSubscribe { endpoint, p256dh, auth } => {
            let allowed = &shard.shared.config.push.allow_networks;
            match palaver_core::push::check_subscription(&endpoint, &p256dh, &auth, allowed) {
                Ok(checked) => PeopleOp::PushSubscribe {
                    endpoint: checked.endpoint,
                    p256dh: checked.p256dh,
                    auth: checked.auth,
                },
                Err(refusal) => return conn.answer(id, ReplyBody::Err(refusal.to_body())),
            }
        }
        op => op,
    };
    let home = match &home {
        Home::Caller => shard.mesh().home(&me),
        Home::Pair(other) => shard.mesh().pair_home(&me, other),
        Home::User(user) => shard.mesh().home(user),
    };
    let origin = Origin { shard: shard.id, conn: conn.id, re: id, user: me };
    shard.mesh().send(home, ShardMsg::People { origin, action: op });
}

/// Test only (`--test-echo`): echoes every message back, for WebSocket conformance suites
/// (Autobahn cases via kosoku). Uses the same parser, queue and writer as chat sockets.
pub async fn run_echo(
    shard: Rc<Shard>,
    stream: impl super::ByteStream,
    mut buf: BytesMut,
    deflate: Option<crate::ws::Deflate>,
    reset: crate::io::socket_reset::SocketReset,
) {
    const ECHO_LIMIT: usize = 64 << 20;
    let outbound = Outbound::new(ECHO_LIMIT);
    let (mut reader, writer) = stream.into_split();
    let metrics = shard.shared.metrics.clone();
    monoio::spawn(run_writer(writer, outbound.clone(), metrics, shard.write_pacer.clone(), reset));
    let mut parser = FrameParser::new(16 << 20, deflate.is_some());
    // With permessage-deflate, every echo goes out compressed, small or incompressible
    // ones too: kosoku's compression cases take no uncompressed message once it is
    // negotiated. (Chat sockets send those uncompressed, as RFC 7692 allows.)
    let echo = |opcode: OpCode, payload: &[u8]| match deflate {
        Some(deflate) => crate::ws::always_deflated_frame(opcode, payload, deflate),
        None => encode_frame(opcode, payload),
    };
    'connection: loop {
        loop {
            match parser.next_message(&mut buf) {
                Ok(Some(WsMessage::Text(payload))) => {
                    outbound.push(echo(OpCode::Text, &payload), Lane::Control);
                }
                Ok(Some(WsMessage::Binary(payload))) => {
                    outbound.push(echo(OpCode::Binary, &payload), Lane::Control);
                }
                Ok(Some(WsMessage::Ping(payload))) => {
                    outbound.push(encode_frame(OpCode::Pong, &payload), Lane::Control);
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
    let grace = Duration::from_millis(shard.shared.config.write_timeout_ms);
    let _ = monoio::time::timeout(grace, outbound.finished()).await;
    outbound.abort();
}

/// Heartbeats for one shard: every few seconds, pings the sockets that have been quiet
/// for `ping_interval`, and closes those silent for `idle_timeout` (a peer that vanished
/// without closing TCP would otherwise hold its socket, memory and subscriptions forever).
/// A peer that answers pings (every WebSocket client does) is never closed for idleness.
pub async fn heartbeat(shard: Rc<Shard>) {
    let config = &shard.shared.config;
    let (ping_ms, idle_ms) = (config.ping_interval_ms, config.idle_timeout_ms);
    let write_timeout_ms = config.write_timeout_ms;
    let tick = Duration::from_millis((ping_ms / 2).min(write_timeout_ms / 2).clamp(100, 5_000));
    let ping = encode_frame(OpCode::Ping, b"");
    loop {
        monoio::time::sleep(tick).await;
        let now = now_ms();
        // QUIC connections are kept alive and timed out by QUIC itself (keep-alive and
        // idle timeout in the transport config, see `crate::quic`).
        for conn in shard.conns.all().into_iter().filter(|c| !c.wire.is_quic()) {
            // A socket with bytes waiting whose writes stand still is not being read:
            // close it as a slow consumer before its queue has to overflow.
            let (waiting, writes) = conn.outbound.write_progress();
            let (seen_writes, since) = conn.write_watch.get();
            if !waiting || writes != seen_writes {
                conn.write_watch.set((writes, now));
            } else if now.saturating_sub(since) >= write_timeout_ms {
                conn.outbound
                    .close_now(CloseCode::TryAgainLater, "slow consumer: the socket is not being read");
                continue;
            }
            let quiet = now.saturating_sub(conn.last_heard_ms.get());
            if quiet >= idle_ms {
                conn.outbound.close(CloseCode::GoingAway, "idle timeout: no frame or pong received");
            } else if quiet >= ping_ms {
                conn.outbound.push(ping.clone(), Lane::Control);
            }
        }
    }
}
