//! A client's QUIC connection to Palaver, seen by the scenarios as a stream and sink of
//! WebSocket messages so every scenario runs over it unchanged.
//!
//! The client opens one bidirectional stream (the control stream: requests and their
//! replies). Server frames are read from it, from every unidirectional stream the server
//! opens (room events) and from datagrams (typing); each frame is a `u32` little-endian
//! length and the frame, a datagram one frame without the length. A frame becomes a
//! binary message (ALPN `palaver/1`, rkyv) or a text message (`palaver/1+json`).
//!
//! Every client of a generator thread shares one endpoint (one UDP socket), created on
//! first use by that thread's runtime, so the endpoint's work stays on the thread whose
//! sockets use it (senders and receivers run on different threads).

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use bytes::Bytes;
use futures_util::{Sink, Stream};
use palaver_protocol::Codec;
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};

use crate::loopback_tls;

/// The ALPN of rkyv frames.
const ALPN_RKYV: &[u8] = b"palaver/1";
/// The ALPN of JSON frames.
const ALPN_JSON: &[u8] = b"palaver/1+json";
/// The largest frame the generator accepts (the server's default `--max-frame-bytes` is
/// far smaller; a larger length means a broken stream).
const MAX_FRAME: u32 = 16 * 1024 * 1024;
/// Server-opened streams the client allows at once (room streams).
const UNI_STREAMS: u32 = 1_024;

thread_local! {
    /// This thread's endpoints, one per codec.
    static ENDPOINTS: RefCell<Vec<(Codec, quinn::Endpoint)>> = const { RefCell::new(Vec::new()) };
}

/// What a reader task hands the link.
enum FromServer {
    Frame(Bytes),
    Closed(String),
}

/// One QUIC connection to Palaver.
pub struct QuicLink {
    connection: quinn::Connection,
    control: quinn::SendStream,
    incoming: mpsc::UnboundedReceiver<FromServer>,
    text: bool,
    /// Framed requests fed and not yet written.
    pending: Vec<u8>,
    /// How much of `pending` is written.
    written: usize,
    closed: bool,
}

impl QuicLink {
    /// Connects to `addr` speaking `codec` and opens the control stream.
    pub async fn connect(addr: SocketAddr, codec: Codec) -> anyhow::Result<QuicLink> {
        let endpoint = endpoint(codec)?;
        let connection = endpoint
            .connect(addr, "localhost")
            .with_context(|| format!("QUIC connect {addr}"))?
            .await
            .with_context(|| format!("QUIC handshake with {addr}"))?;
        let (control, receive) = connection.open_bi().await.context("open the control stream")?;
        let (to_link, incoming) = mpsc::unbounded_channel();
        tokio::spawn(read_frames(receive, to_link.clone()));
        tokio::spawn(accept_room_streams(connection.clone(), to_link.clone()));
        tokio::spawn(read_datagrams(connection.clone(), to_link));
        Ok(QuicLink {
            connection,
            control,
            incoming,
            text: codec.is_text(),
            pending: Vec::with_capacity(1024),
            written: 0,
            closed: false,
        })
    }

    /// Closes the connection with code 1000 (normal closure).
    pub fn close(&self) {
        self.connection.close(1000u32.into(), b"bye");
    }
}

fn endpoint(codec: Codec) -> anyhow::Result<quinn::Endpoint> {
    if let Some(found) =
        ENDPOINTS.with(|e| e.borrow().iter().find(|(c, _)| *c == codec).map(|(_, e)| e.clone()))
    {
        return Ok(found);
    }
    let alpn = if codec.is_text() { ALPN_JSON } else { ALPN_RKYV };
    let tls = loopback_tls::client_config(&[alpn], true)?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| anyhow!("{e}"))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_uni_streams(UNI_STREAMS.into());
    transport.keep_alive_interval(Some(Duration::from_secs(10)));
    transport.datagram_receive_buffer_size(Some(64 * 1024));
    config.transport_config(Arc::new(transport));
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    endpoint.set_default_client_config(config);
    ENDPOINTS.with(|e| e.borrow_mut().push((codec, endpoint.clone())));
    Ok(endpoint)
}

/// Reads length-prefixed frames from one stream until it ends.
async fn read_frames(mut stream: quinn::RecvStream, to_link: mpsc::UnboundedSender<FromServer>) {
    let outcome = async {
        loop {
            let mut length = [0u8; 4];
            match stream.read_exact(&mut length).await {
                Ok(_) => {}
                Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(()),
                Err(e) => return Err(e.to_string()),
            }
            let length = u32::from_le_bytes(length);
            if length > MAX_FRAME {
                return Err(format!("a frame length of {length} bytes"));
            }
            let mut frame = vec![0u8; length as usize];
            stream.read_exact(&mut frame).await.map_err(|e| e.to_string())?;
            if to_link.send(FromServer::Frame(frame.into())).is_err() {
                return Ok(());
            }
        }
    }
    .await;
    if let Err(reason) = outcome {
        let _ = to_link.send(FromServer::Closed(reason));
    }
}

/// Reads every unidirectional stream the server opens.
async fn accept_room_streams(connection: quinn::Connection, to_link: mpsc::UnboundedSender<FromServer>) {
    while let Ok(stream) = connection.accept_uni().await {
        tokio::spawn(read_frames(stream, to_link.clone()));
    }
}

/// Reads datagrams (one frame each) until the connection ends, then reports why it ended.
async fn read_datagrams(connection: quinn::Connection, to_link: mpsc::UnboundedSender<FromServer>) {
    let reason = loop {
        match connection.read_datagram().await {
            Ok(frame) => {
                if to_link.send(FromServer::Frame(frame)).is_err() {
                    return;
                }
            }
            Err(e) => break e.to_string(),
        }
    };
    let _ = to_link.send(FromServer::Closed(reason));
}

impl Stream for QuicLink {
    type Item = Result<WsMessage, WsError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.closed {
            return Poll::Ready(None);
        }
        Poll::Ready(match ready!(self.incoming.poll_recv(cx)) {
            Some(FromServer::Frame(frame)) if self.text => Some(match String::from_utf8(frame.into()) {
                Ok(text) => Ok(WsMessage::Text(text.into())),
                Err(e) => Err(WsError::Io(io::Error::new(io::ErrorKind::InvalidData, e))),
            }),
            Some(FromServer::Frame(frame)) => Some(Ok(WsMessage::Binary(frame))),
            Some(FromServer::Closed(reason)) => {
                self.closed = true;
                // As a WebSocket reports a connection that ended without a close frame.
                Some(Ok(WsMessage::Close(Some(CloseFrame {
                    code: CloseCode::from(1006),
                    reason: reason.into(),
                }))))
            }
            None => {
                self.closed = true;
                Some(Ok(WsMessage::Close(None)))
            }
        })
    }
}

impl Sink<WsMessage> for QuicLink {
    type Error = WsError;

    fn poll_ready(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Poll::Ready(Ok(()))
    }

    fn start_send(mut self: Pin<&mut Self>, message: WsMessage) -> Result<(), WsError> {
        let payload: &[u8] = match &message {
            WsMessage::Text(t) => t.as_bytes(),
            WsMessage::Binary(b) => b,
            // Pings, pongs and closes have no QUIC frame: QUIC keeps the connection alive.
            _ => return Ok(()),
        };
        let length = u32::try_from(payload.len())
            .map_err(|_| WsError::Io(io::Error::new(io::ErrorKind::InvalidInput, "frame too large")))?;
        self.pending.extend_from_slice(&length.to_le_bytes());
        self.pending.extend_from_slice(payload);
        Ok(())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let this = &mut *self;
        while this.written < this.pending.len() {
            let n = ready!(AsyncWrite::poll_write(
                Pin::new(&mut this.control),
                cx,
                &this.pending[this.written..]
            ))?;
            if n == 0 {
                return Poll::Ready(Err(WsError::Io(io::ErrorKind::WriteZero.into())));
            }
            this.written += n;
        }
        this.pending.clear();
        this.written = 0;
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        ready!(self.as_mut().poll_flush(cx))?;
        self.close();
        Poll::Ready(Ok(()))
    }
}
