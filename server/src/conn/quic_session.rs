//! The shard's half of a QUIC connection. The QUIC thread ([`crate::quic`]) terminates
//! QUIC and TLS and splits the stream into frames; here a frame is handled exactly like a
//! WebSocket data message ([`socket::on_payload`]), and the connection's outbound queue
//! is drained into the bridge's channel instead of a TCP socket. The queue keeps its byte
//! bound, so a QUIC peer that stops reading is closed as a slow consumer (1013) like a
//! WebSocket one.

use std::rc::Rc;
use std::time::Duration;

use palaver_core::Session;

use super::socket;
use crate::clock::now_ms;
use crate::io::outbound::Outbound;
use crate::io::wire::Wire;
use crate::metrics::Metrics;
use crate::quic::{FromClient, QuicSession, ToClient};
use crate::shard::Shard;
use crate::ws::CloseCode;

/// Takes the QUIC sessions the QUIC thread hands to this shard, until it shuts down.
pub async fn accept_loop(shard: Rc<Shard>, sessions: flume::Receiver<QuicSession>) {
    while let Ok(session) = sessions.recv_async().await {
        if shard.draining.get() {
            let _ = session
                .to_client
                .try_send(ToClient::Close(CloseCode::GoingAway, "server is shutting down".into()));
            continue;
        }
        monoio::spawn(run(shard.clone(), session));
    }
}

/// Runs one QUIC session on this shard.
async fn run(shard: Rc<Shard>, bridge: QuicSession) {
    let shared = shard.shared.clone();
    let metrics = &shared.metrics;
    let outbound = Outbound::for_quic(shared.config.outbound_queue_bytes);
    let session = Session::new(shared.config.session, now_ms());
    let conn = shard.conns.insert(Wire::Quic(bridge.codec), outbound.clone(), session, now_ms());
    metrics.connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Metrics::inc(&metrics.connections_total);
    monoio::spawn(forward(outbound.clone(), bridge.to_client));

    loop {
        let deadline = if conn.user().is_none() {
            let left = conn.session.borrow().auth_deadline_ms().saturating_sub(now_ms());
            Some(Duration::from_millis(left))
        } else {
            None
        };
        let next = bridge.from_client.recv_async();
        let outcome = monoio::select! {
            m = next => m.ok(),
            _ = outbound.closed() => None,
            _ = Box::pin(sleep_or_forever(deadline)) => {
                outbound.close(CloseCode::Policy, "authentication deadline passed");
                None
            }
        };
        match outcome {
            Some(FromClient::Frame(bytes)) => {
                Metrics::inc(&metrics.frames_in);
                conn.last_heard_ms.set(now_ms());
                if !socket::on_payload(&shard, &conn, &bytes) {
                    break;
                }
            }
            Some(FromClient::TooLarge(len)) => {
                let limit = shared.config.max_frame_bytes;
                outbound
                    .close(CloseCode::TooBig, &format!("frame of {len} bytes exceeds the limit of {limit}"));
                break;
            }
            // The peer is gone (the bridge dropped its end) or the connection is closing.
            None => break,
        }
    }
    socket::end_session(&shard, &conn).await;
}

/// The writer of a QUIC session: moves queued frames to the QUIC thread, then the close.
/// The bridge channel is bounded, so a stalled peer backs frames up into the byte-bounded
/// outbound queue.
async fn forward(outbound: Outbound, to_client: flume::Sender<ToClient>) {
    let mut frames = Vec::new();
    while outbound.take_frames(&mut frames).await {
        if to_client.send_async(ToClient::Frames(std::mem::take(&mut frames))).await.is_err() {
            outbound.finish();
            return;
        }
    }
    if let Some((code, reason)) = outbound.close_reason() {
        let _ = to_client.send_async(ToClient::Close(code, reason)).await;
    }
    outbound.finish();
}

async fn sleep_or_forever(duration: Option<Duration>) {
    match duration {
        Some(d) => monoio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}
