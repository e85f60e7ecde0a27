//! The native transport: WebSocket over tokio + tokio-tungstenite (or QUIC, see
//! `native_quic`, when [`ClientOptions::quic`] is set), and a small HTTP/1.1 client over
//! a tokio `TcpStream` for the auth routes. `https://`/`wss://` run the same bytes over
//! tokio-rustls (ring), verifying the server with the system's roots or with
//! [`ClientOptions::trust`].

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt as _, StreamExt as _};
use palaver_protocol::Codec;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage, client::IntoClientRequest as _};

use crate::auth_route::AuthRoute;
use crate::client::{self, Client, ClientOptions, Session};
use crate::driver::{self, HttpRequest, Platform, Socket};
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::native_quic::{QuicConnector, QuicSocket};
use crate::tokens::Credentials;
use crate::trust::TlsTrust;

/// Largest server message accepted (a `history` page of 100 long messages is ~1 MB).
const MAX_SERVER_MESSAGE_BYTES: usize = 16 << 20;
/// Largest HTTP answer head (status line and headers).
const MAX_HTTP_HEAD_BYTES: usize = 64 << 10;

#[derive(Debug, Clone)]
pub(crate) struct Native {
    start: Instant,
    /// Set when the event connection goes over QUIC instead of WebSocket.
    quic: Option<Arc<QuicConnector>>,
    /// For `https://`/`wss://`: what to trust, and the connector built from it the first
    /// time it is needed (plain-HTTP clients never load root certificates).
    tls: Arc<TlsSetup>,
}

#[derive(Debug)]
struct TlsSetup {
    trust: Option<TlsTrust>,
    config: OnceLock<Arc<rustls::ClientConfig>>,
}

impl Native {
    fn new(trust: Option<TlsTrust>) -> Self {
        Native {
            start: Instant::now(),
            quic: None,
            tls: Arc::new(TlsSetup { trust, config: OnceLock::new() }),
        }
    }

    fn tls_connector(&self) -> Result<tokio_rustls::TlsConnector, Error> {
        if let Some(config) = self.tls.config.get() {
            return Ok(tokio_rustls::TlsConnector::from(config.clone()));
        }
        let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
        let mut config = crate::native_trust::client_config(self.tls.trust.as_ref(), &versions)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = self.tls.config.get_or_init(|| Arc::new(config));
        Ok(tokio_rustls::TlsConnector::from(config.clone()))
    }

    /// A connection to the endpoint: TCP, with TLS on top for `https`/`wss`.
    async fn stream(&self, endpoint: &Endpoint) -> Result<Box<dyn Io>, Error> {
        let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await.map_err(transport)?;
        tcp.set_nodelay(true).map_err(transport)?;
        if !endpoint.tls {
            return Ok(Box::new(tcp));
        }
        let connector = self.tls_connector()?;
        let name = rustls::pki_types::ServerName::try_from(endpoint.host.clone()).map_err(|_| {
            Error::InvalidUrl {
                url: endpoint.http_base.clone(),
                reason: "the host is not a valid TLS server name",
            }
        })?;
        let tls = connector.connect(name, tcp).await.map_err(transport)?;
        Ok(Box::new(tls))
    }
}

/// A byte stream to the server: a `TcpStream`, or TLS over one.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

fn transport(e: impl std::fmt::Display) -> Error {
    Error::Transport(e.to_string())
}

pub(crate) enum NativeSocket {
    WebSocket(WebSocketStream<Box<dyn Io>>),
    Quic(QuicSocket),
}

impl Socket for NativeSocket {
    async fn send(&mut self, bytes: Vec<u8>, text: bool) -> Result<(), Error> {
        let ws = match self {
            NativeSocket::WebSocket(ws) => ws,
            NativeSocket::Quic(quic) => return quic.send(bytes).await,
        };
        let message = if text {
            WsMessage::Text(String::from_utf8(bytes).map_err(|e| Error::Codec(e.to_string()))?.into())
        } else {
            WsMessage::Binary(bytes.into())
        };
        ws.send(message).await.map_err(transport)
    }

    async fn recv(&mut self) -> Option<Result<Vec<u8>, Error>> {
        let ws = match self {
            NativeSocket::WebSocket(ws) => ws,
            NativeSocket::Quic(quic) => return quic.recv(MAX_SERVER_MESSAGE_BYTES).await,
        };
        loop {
            match ws.next().await? {
                Ok(WsMessage::Text(text)) => return Some(Ok(text.as_bytes().to_vec())),
                Ok(WsMessage::Binary(bytes)) => return Some(Ok(bytes.to_vec())),
                Ok(WsMessage::Close(_)) => return None,
                Ok(_) => continue,
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => return None,
                Err(e) => return Some(Err(transport(e))),
            }
        }
    }

    async fn close(&mut self) {
        match self {
            NativeSocket::WebSocket(ws) => {
                let _ = ws.close(None).await;
            }
            NativeSocket::Quic(quic) => quic.close().await,
        }
    }

    fn send_datagram(&mut self, bytes: &[u8]) -> bool {
        match self {
            NativeSocket::WebSocket(_) => false,
            NativeSocket::Quic(quic) => quic.send_datagram(bytes),
        }
    }
}

impl Platform for Native {
    type Socket = NativeSocket;

    async fn connect(&self, url: String, codec: Codec) -> Result<NativeSocket, Error> {
        if let Some(quic) = &self.quic {
            return Ok(NativeSocket::Quic(quic.connect().await?));
        }
        let endpoint = Endpoint::parse(&url)?;
        let stream = self.stream(&endpoint).await?;
        let mut request = url.as_str().into_client_request().map_err(transport)?;
        let protocol = codec.subprotocol().parse().map_err(transport)?;
        request.headers_mut().insert("sec-websocket-protocol", protocol);
        let config = tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(MAX_SERVER_MESSAGE_BYTES))
            .max_frame_size(Some(MAX_SERVER_MESSAGE_BYTES));
        let (ws, response) = tokio_tungstenite::client_async_with_config(request, stream, Some(config))
            .await
            .map_err(transport)?;
        let chosen = response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok());
        if chosen != Some(codec.subprotocol()) {
            return Err(Error::Transport(format!("the server chose subprotocol {chosen:?}")));
        }
        Ok(NativeSocket::WebSocket(ws))
    }

    async fn http(&self, request: HttpRequest) -> Result<(u16, Vec<u8>), Error> {
        let (endpoint, path) = crate::endpoint::split_url(&request.url)?;
        let mut stream = self.stream(&endpoint).await?;
        let mut head = format!(
            "{} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\ncontent-length: {}\r\n",
            request.method,
            endpoint.authority,
            request.body.len()
        );
        for (name, value) in &request.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        // A server that refuses a request early answers before reading the whole body
        // and closes: the write may fail, but the answer is there to read.
        let written = async {
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(&request.body).await?;
            stream.flush().await
        }
        .await;
        let limit = (MAX_HTTP_HEAD_BYTES + request.max_answer_bytes) as u64;
        let mut answer = Vec::new();
        let read = (&mut stream).take(limit + 1).read_to_end(&mut answer).await;
        match (read, written) {
            (Ok(_), _) => {}
            // A TLS peer that closes without close_notify: the answer is framed by its
            // content-length (or chunks), which the parser checks.
            (Err(e), _) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => {}
            // A reset after the answer arrived (the server closed with our body unread).
            (Err(_), _) if !answer.is_empty() => {}
            (Err(e), Ok(())) => return Err(transport(e)),
            (Err(_), Err(e)) => return Err(transport(e)),
        }
        if answer.len() as u64 > limit {
            return Err(Error::Transport("HTTP answer too large".into()));
        }
        parse_http_answer(&answer)
    }

    async fn sleep(&self, ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn unix_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// Splits an HTTP/1.1 answer read to the end of the connection into status and body
/// (honouring `content-length` and chunked transfer encoding).
fn parse_http_answer(answer: &[u8]) -> Result<(u16, Vec<u8>), Error> {
    let malformed = || Error::Transport("malformed HTTP answer".into());
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(malformed)?;
    let head = std::str::from_utf8(&answer[..split]).map_err(|_| malformed())?;
    let mut body = &answer[split + 4..];
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(malformed)?;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let len: usize = value.parse().map_err(|_| malformed())?;
            body = body.get(..len).ok_or_else(malformed)?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        }
    }
    let body = if chunked { dechunk(body).ok_or_else(malformed)? } else { body.to_vec() };
    Ok((status, body))
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

fn os_seed() -> u64 {
    let mut bytes = [0u8; 8];
    match getrandom::fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        // No OS randomness: fall back on the clock (cids stay unique per process run).
        Err(_) => SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64),
    }
}

impl Client {
    /// Logs in (or registers, or uses tokens), opens the socket and authenticates it;
    /// returns once the connection is ready. Needs a tokio runtime: the connection is
    /// driven by a task spawned on it.
    ///
    /// **First connection.** Attempts that fail for a reason that may pass (server
    /// unreachable or restarting, `unavailable`, no answer) are retried with the
    /// reconnect backoff for up to 30 s, then the last failure is returned
    /// ([`ClientOptions::retrying_first_connect_for`], [`ClientOptions::failing_fast`]).
    /// A refusal of the credentials (wrong password, username taken, bad token) is
    /// returned at once. Once connected, every later disconnect is repaired
    /// automatically.
    ///
    /// **Event order.** `connect` returns after the first
    /// [`ClientEvent::Connected`](crate::ClientEvent::Connected) was emitted. The first
    /// [`Client::events`] stream starts right after that `Connected` and holds everything
    /// emitted since, however late it is asked for; later streams start when they are made.
    ///
    /// `url` is the server's base URL, e.g. `http://127.0.0.1:8080`.
    pub async fn connect(url: &str, credentials: Credentials) -> Result<Client, Error> {
        Self::connect_with(url, credentials, ClientOptions::default()).await
    }

    /// [`Client::connect`] with options (codec, timeouts, core tuning, QUIC).
    ///
    /// With [`ClientOptions::quic`] set, the event connection is QUIC to that address
    /// (and the codec rkyv, the only one QUIC carries); `url` still serves the HTTP auth
    /// routes.
    pub async fn connect_with(
        url: &str,
        credentials: Credentials,
        mut options: ClientOptions,
    ) -> Result<Client, Error> {
        // `https`/`wss` trust what was given for them, else what QUIC trusts: one
        // certificate (the development one, typically) serves both listeners.
        let trust = options.trust.clone().or_else(|| options.quic.as_ref().map(|q| q.trust.clone()));
        let mut platform = Native::new(trust);
        if let Some(quic) = &options.quic {
            platform.quic = Some(Arc::new(QuicConnector::new(quic)?));
            options.codec = Codec::Rkyv;
        }
        client::start(platform, url, credentials, options, os_seed(), |platform, setup| {
            tokio::spawn(driver::run(platform, setup));
        })
        .await
    }

    /// Registers an account over HTTP (no socket). Over `https://` the server is
    /// verified with the system's roots; see [`Client::register_trusting`].
    pub async fn register(url: &str, username: &str, password: &str) -> Result<Session, Error> {
        Self::register_trusting(url, username, password, None).await
    }

    /// [`Client::register`] trusting `trust` for `https://` (e.g. the development
    /// certificate).
    pub async fn register_trusting(
        url: &str,
        username: &str,
        password: &str,
        trust: Option<TlsTrust>,
    ) -> Result<Session, Error> {
        let credentials = Credentials::register(username, password);
        client::auth_call(&Native::new(trust), url, AuthRoute::Register, &credentials, None).await
    }

    /// Logs in over HTTP (no socket). Over `https://` the server is verified with the
    /// system's roots; see [`Client::login_trusting`].
    pub async fn login(url: &str, username: &str, password: &str) -> Result<Session, Error> {
        Self::login_trusting(url, username, password, None).await
    }

    /// [`Client::login`] trusting `trust` for `https://`.
    pub async fn login_trusting(
        url: &str,
        username: &str,
        password: &str,
        trust: Option<TlsTrust>,
    ) -> Result<Session, Error> {
        let credentials = Credentials::password(username, password);
        client::auth_call(&Native::new(trust), url, AuthRoute::Login, &credentials, None).await
    }

    /// Exchanges a refresh token for new tokens over HTTP (the old refresh token is used
    /// up). Over `https://` the server is verified with the system's roots.
    pub async fn refresh(url: &str, refresh_token: &str) -> Result<Session, Error> {
        Self::refresh_trusting(url, refresh_token, None).await
    }

    /// [`Client::refresh`] trusting `trust` for `https://`.
    pub async fn refresh_trusting(
        url: &str,
        refresh_token: &str,
        trust: Option<TlsTrust>,
    ) -> Result<Session, Error> {
        let credentials = Credentials::tokens(crate::Tokens::access_only(""));
        client::auth_call(&Native::new(trust), url, AuthRoute::Refresh, &credentials, Some(refresh_token))
            .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn http_answers_parse_with_length_chunks_or_eof() {
        let a = b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}junk";
        assert_eq!(parse_http_answer(a).unwrap(), (201, b"{}".to_vec()));
        let a = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_http_answer(a).unwrap(), (200, b"abcde".to_vec()));
        let a = b"HTTP/1.1 401 Unauthorized\r\n\r\n{\"error\":1}";
        assert_eq!(parse_http_answer(a).unwrap(), (401, b"{\"error\":1}".to_vec()));
        assert!(parse_http_answer(b"garbage").is_err());
    }
}
