//! A browser's WebTransport session on the shard that owns its QUIC connection (ALPN
//! `h3`): the HTTP/3 subset of `crate::webtransport` (sans-IO) until the extended CONNECT
//! is accepted; then the client's first WebTransport bidirectional stream carries
//! Palaver frames exactly like a raw QUIC connection's stream, run by the same session
//! code ([`quic_session::run_stream`]), so auth, limits, subscriptions and slow-consumer
//! closes are the WebSocket code paths.
//!
//! Per connection: our control stream (SETTINGS) stays open for the connection's life;
//! the client's unidirectional streams are read (its control stream checked, QPACK
//! streams drained, others stopped); up to [`MAX_REQUESTS`] requests are answered until
//! one opens the session (wrong paths, origins and methods get a 4xx with a JSON
//! reason); the CONNECT stream is watched for the session's end (CLOSE_WEBTRANSPORT_SESSION
//! or FIN), which closes the connection. Over the session, rooms' streams and `typing`
//! datagrams are those of a raw QUIC session, behind WebTransport's stream header and
//! the session's quarter stream id ([`Carrier::WebTransport`]). The session's close is
//! sent as a CLOSE_WEBTRANSPORT_SESSION capsule with the WebSocket close code, so the
//! page's `WebTransport.closed` reports it.

use std::rc::Rc;
use std::time::Duration;

use quinn_proto::{Dir, StreamId, VarInt};

use super::quic_session::{self, Carrier};
use crate::metrics::Metrics;
use crate::quic::QuicConnection;
use crate::shard::Shard;
use crate::webtransport::connect::{self, Accepted, OriginPolicy};
use crate::webtransport::streams::{ConnectEvent, ConnectStream, ControlStream, check_session};
use crate::webtransport::wire::{self, BidiStream, UniStream};
use crate::webtransport::{H3Code, H3Error, MAX_FIELD_SECTION_BYTES};

/// Requests answered on one connection before the session opens (each refused one
/// costs the client a round trip; past this the connection is closed).
const MAX_REQUESTS: usize = 8;
/// Bidirectional streams a client may have open: the CONNECT stream and the session's
/// control stream (and a refused request's stream in between).
const MAX_CLIENT_BIDI_STREAMS: u32 = 3;
/// Bytes read from a stream at a time.
const READ_CHUNK: usize = 16 * 1024;

fn h3_code(code: H3Code) -> VarInt {
    VarInt::from_u64(code.code()).unwrap_or(VarInt::from_u32(0x101))
}

fn h3_close(connection: &QuicConnection, error: &H3Error) {
    tracing::debug!("WebTransport connection closed: {error}");
    connection.close(h3_code(error.code), &error.reason);
}

/// Starts serving an `h3` connection.
pub fn serve(shard: &Rc<Shard>, connection: QuicConnection) {
    monoio::spawn(run(shard.clone(), connection));
}

async fn run(shard: Rc<Shard>, connection: QuicConnection) {
    connection.set_max_concurrent_streams(Dir::Bi, MAX_CLIENT_BIDI_STREAMS);
    let Some(control) = connection.open_uni() else {
        connection.close(h3_code(H3Code::StreamCreation), "no stream credit for the control stream");
        return;
    };
    let preface = wire::server_control_stream_preface(MAX_FIELD_SECTION_BYTES as u64);
    if connection.write_all(control, &preface).await.is_err() {
        return;
    }
    monoio::spawn(client_uni_streams(connection.clone()));
    let deadline = Duration::from_millis(shard.shared.config.session.auth_deadline_ms);
    let origins = shard.shared.webtransport_origins.clone();
    let opened = monoio::select! {
        opened = open_session(&connection, &origins) => opened,
        () = monoio::time::sleep(deadline) => {
            connection.close(h3_code(H3Code::NoError), "no session opened in time");
            None
        }
    };
    let Some((accepted, session, connect_stream, connect_reader)) = opened else { return };
    let stream = monoio::select! {
        stream = session_stream(&connection, session) => stream,
        () = monoio::time::sleep(deadline) => {
            connection.close(crate::quic::app_code(crate::ws::CloseCode::Policy), "authentication deadline passed");
            None
        }
    };
    let Some(stream) = stream else { return };
    monoio::spawn(watch_connect_stream(connection.clone(), connect_stream, connect_reader));
    monoio::spawn(refuse_more_bidi_streams(connection.clone(), shard.shared.metrics.clone()));
    let carrier = Carrier::WebTransport { connect_stream };
    quic_session::run_stream(shard, connection, stream, accepted.codec, carrier).await;
}

/// Answers requests until one opens a session: its answer written, the session id (the
/// CONNECT stream's id), the CONNECT stream and its reader returned. `None` when the
/// connection ends or misbehaves (closed here with the HTTP/3 error).
async fn open_session(
    connection: &QuicConnection,
    origins: &OriginPolicy,
) -> Option<(Accepted, u64, StreamId, ConnectStream)> {
    for _ in 0..MAX_REQUESTS {
        let stream = connection.accept_bi().await?;
        let mut reader = ConnectStream::default();
        let mut first = true;
        let fields = loop {
            let chunk = match connection.read(stream, READ_CHUNK).await {
                Ok(Some(chunk)) => chunk,
                Ok(None) | Err(_) => break None,
            };
            if first {
                first = false;
                // A WebTransport stream before any session.
                if let Some((BidiStream::WebTransport { session }, _)) = wire::read_bidi_stream_header(&chunk)
                    && let Err(e) = check_session(session, None)
                {
                    h3_close(connection, &e);
                    return None;
                }
            }
            match reader.receive(&chunk) {
                Ok(events) => {
                    if let Some(ConnectEvent::Request(fields)) = events.into_iter().next() {
                        break Some(fields);
                    }
                }
                Err(e) => {
                    h3_close(connection, &e);
                    return None;
                }
            }
        };
        let Some(fields) = fields else {
            connection.stop(stream, H3Code::NoError.code() as u32);
            continue;
        };
        match connect::check(&fields, origins) {
            Ok(accepted) => {
                connection.write_all(stream, &connect::accepted_response(&accepted)).await.ok()?;
                return Some((accepted, u64::from(stream), stream, reader));
            }
            Err(refusal) => {
                tracing::debug!(status = refusal.status, "WebTransport request refused: {}", refusal.reason);
                let _ = connection.write_all(stream, &refusal.response()).await;
                connection.finish(stream);
                // The answer is complete: the rest of the request is not read (RFC 9114
                // §4.1), which also gives the client its stream credit back.
                connection.stop(stream, H3Code::NoError.code() as u32);
            }
        }
    }
    connection.close(h3_code(H3Code::ExcessiveLoad), "too many refused requests");
    None
}

/// The client's first WebTransport bidirectional stream of `session`, its header read
/// (a byte at a time, so no frame byte is taken).
async fn session_stream(connection: &QuicConnection, session: u64) -> Option<StreamId> {
    let stream = connection.accept_bi().await?;
    let mut header = Vec::with_capacity(10);
    loop {
        let byte = connection.read(stream, 1).await.ok()??;
        header.extend_from_slice(&byte);
        match wire::read_bidi_stream_header(&header) {
            None => continue,
            Some((BidiStream::WebTransport { session: named }, _)) => {
                if let Err(e) = check_session(named, Some(session)) {
                    h3_close(connection, &e);
                    return None;
                }
                return Some(stream);
            }
            Some((BidiStream::Request, _)) => {
                let e = H3Error {
                    code: H3Code::FrameUnexpected,
                    reason: "a second request on a session's connection".into(),
                };
                h3_close(connection, &e);
                return None;
            }
        }
    }
}

/// Reads the client's unidirectional streams for the connection's life.
async fn client_uni_streams(connection: QuicConnection) {
    let mut control_seen = false;
    while let Some(stream) = connection.accept_uni().await {
        let mut header = Vec::new();
        let kind = loop {
            match connection.read(stream, 16).await {
                Ok(Some(chunk)) => header.extend_from_slice(&chunk),
                _ => break None,
            }
            if let Some((kind, used)) = wire::read_uni_stream_header(&header) {
                header.drain(..used);
                break Some(kind);
            }
        };
        match kind {
            Some(UniStream::Control) if control_seen => {
                h3_close(
                    &connection,
                    &H3Error { code: H3Code::StreamCreation, reason: "a second control stream".into() },
                );
                return;
            }
            Some(UniStream::Control) => {
                control_seen = true;
                monoio::spawn(read_control_stream(connection.clone(), stream, header));
            }
            Some(UniStream::Qpack) => {
                // No dynamic table: nothing on these streams changes anything; drain them.
                let connection = connection.clone();
                monoio::spawn(
                    async move { while let Ok(Some(_)) = connection.read(stream, READ_CHUNK).await {} },
                );
            }
            Some(UniStream::Push) => {
                h3_close(
                    &connection,
                    &H3Error { code: H3Code::StreamCreation, reason: "a client opened a push stream".into() },
                );
                return;
            }
            // Palaver's clients send nothing on unidirectional streams; unknown types
            // are refused politely (RFC 9114 §6.2).
            Some(UniStream::WebTransport { .. } | UniStream::Unknown(_)) => {
                connection.stop(stream, H3Code::StreamCreation.code() as u32);
            }
            None => {}
        }
    }
}

async fn read_control_stream(connection: QuicConnection, stream: StreamId, first: Vec<u8>) {
    let mut control = ControlStream::default();
    let mut chunk = first;
    loop {
        match control.receive(&chunk) {
            Ok(Some(settings)) => tracing::debug!(?settings, "HTTP/3 client settings"),
            Ok(None) => {}
            Err(e) => return h3_close(&connection, &e),
        }
        chunk = match connection.read(stream, READ_CHUNK).await {
            Ok(Some(chunk)) => chunk.to_vec(),
            Ok(None) => return h3_close(&connection, &control.finished()),
            // The connection is gone.
            Err(_) => return,
        };
    }
}

/// Ends the connection when the client ends the session (CLOSE_WEBTRANSPORT_SESSION, or
/// the CONNECT stream's end).
async fn watch_connect_stream(connection: QuicConnection, stream: StreamId, mut reader: ConnectStream) {
    loop {
        let chunk = match connection.read(stream, READ_CHUNK).await {
            Ok(Some(chunk)) => chunk,
            _ => break,
        };
        match reader.receive(&chunk) {
            Ok(events) => {
                if events.iter().any(|e| matches!(e, ConnectEvent::Close { .. })) {
                    break;
                }
            }
            Err(e) => return h3_close(&connection, &e),
        }
    }
    connection.close(h3_code(H3Code::NoError), "session closed");
}

/// A session has one control stream: later bidirectional streams are stopped and reset.
async fn refuse_more_bidi_streams(connection: QuicConnection, metrics: std::sync::Arc<Metrics>) {
    while let Some(stream) = connection.accept_bi().await {
        Metrics::inc(&metrics.quic_streams_refused);
        connection.stop(stream, H3Code::StreamCreation.code() as u32);
        connection.reset(stream, H3Code::StreamCreation.code() as u32);
    }
}

/// The session's close: a CLOSE_WEBTRANSPORT_SESSION capsule with `code` and `reason`,
/// then FIN on the CONNECT stream; waits (at most `linger`) for the client to take it,
/// and closes the connection.
pub(super) async fn close_session(
    connection: &QuicConnection,
    connect_stream: StreamId,
    code: u32,
    reason: &str,
    linger: Duration,
) {
    let capsule = wire::close_session_capsule(code, reason);
    monoio::select! {
        _ = async {
            if connection.write_all(connect_stream, &capsule).await.is_ok() {
                connection.finish(connect_stream);
                connection.acknowledged(connect_stream).await;
            }
        } => {},
        () = monoio::time::sleep(linger) => {},
    }
    connection.close(h3_code(H3Code::NoError), reason);
}
