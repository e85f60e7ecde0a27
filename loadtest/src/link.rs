//! What carries a client's frames: WebSocket over TCP or over TLS, or QUIC. The scenarios
//! read and write WebSocket messages through [`Link`] whatever the transport.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{Sink, Stream};
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};

use crate::arrival::ArrivalStream;
use crate::quic_link::QuicLink;

/// A client's connection. Plain WebSocket, the hot path of most runs, stays inline.
#[allow(clippy::large_enum_variant)]
pub enum Link {
    /// WebSocket over TCP.
    Ws(WebSocketStream<ArrivalStream>),
    /// WebSocket over TLS over TCP.
    Wss(Box<WebSocketStream<TlsStream<ArrivalStream>>>),
    /// Palaver over QUIC.
    Quic(Box<QuicLink>),
}

impl Link {
    /// When the bytes last read reached the socket (kernel receive timestamp, µs since the
    /// epoch), on TCP; QUIC reports none.
    pub fn last_arrival_us(&self) -> Option<u64> {
        match self {
            Link::Ws(ws) => ws.get_ref().last_arrival_us(),
            Link::Wss(ws) => ws.get_ref().get_ref().0.last_arrival_us(),
            Link::Quic(_) => None,
        }
    }
}

impl Stream for Link {
    type Item = Result<WsMessage, WsError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.get_mut() {
            Link::Ws(ws) => Pin::new(ws).poll_next(cx),
            Link::Wss(ws) => Pin::new(ws.as_mut()).poll_next(cx),
            Link::Quic(quic) => Pin::new(quic.as_mut()).poll_next(cx),
        }
    }
}

impl Sink<WsMessage> for Link {
    type Error = WsError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        match self.get_mut() {
            Link::Ws(ws) => Pin::new(ws).poll_ready(cx),
            Link::Wss(ws) => Pin::new(ws.as_mut()).poll_ready(cx),
            Link::Quic(quic) => Pin::new(quic.as_mut()).poll_ready(cx),
        }
    }

    fn start_send(self: Pin<&mut Self>, message: WsMessage) -> Result<(), WsError> {
        match self.get_mut() {
            Link::Ws(ws) => Pin::new(ws).start_send(message),
            Link::Wss(ws) => Pin::new(ws.as_mut()).start_send(message),
            Link::Quic(quic) => Pin::new(quic.as_mut()).start_send(message),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        match self.get_mut() {
            Link::Ws(ws) => Pin::new(ws).poll_flush(cx),
            Link::Wss(ws) => Pin::new(ws.as_mut()).poll_flush(cx),
            Link::Quic(quic) => Pin::new(quic.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        match self.get_mut() {
            Link::Ws(ws) => Pin::new(ws).poll_close(cx),
            Link::Wss(ws) => Pin::new(ws.as_mut()).poll_close(cx),
            Link::Quic(quic) => Pin::new(quic.as_mut()).poll_close(cx),
        }
    }
}
