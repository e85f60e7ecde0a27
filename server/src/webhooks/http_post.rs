//! One delivery: an HTTP/1.1 `POST` of a body (JSON, or an encrypted push), over TLS for `https://`, that waits
//! for the answer's head (its status and `Retry-After`) and nothing more. The target's name is resolved here and
//! every address it resolves to is checked ([`check_address`]) before a connection is
//! made to one of them, so a name that resolves to an internal address when delivering
//! (DNS rebinding) is refused whatever it resolved to when registered. Redirects are not
//! followed (a 3xx is a failed delivery); the answer is read up to the end of its head
//! (its status and `Retry-After`), at most [`MAX_ANSWER_HEAD_BYTES`]; the whole exchange is bounded by one timeout.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use palaver_core::webhooks::{Network, Registrant, Target, TargetRefusal, check_address};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The most of an answer read before its head must have ended.
pub const MAX_ANSWER_HEAD_BYTES: usize = 16 * 1024;
/// The longest one connection attempt may take (within the delivery's own timeout).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a delivery did not get an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PostError {
    /// The target resolved to an address it may not reach.
    #[error("refused: {0}")]
    Refused(TargetRefusal),
    /// The name did not resolve.
    #[error("could not resolve {0}")]
    Resolve(String),
    /// No address took the connection.
    #[error("could not connect: {0}")]
    Connect(String),
    /// The TLS handshake failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// Reading or writing failed.
    #[error("I/O: {0}")]
    Io(String),
    /// The whole exchange took longer than allowed.
    #[error("timed out")]
    Timeout,
    /// What came back is not an HTTP answer.
    #[error("not an HTTP answer")]
    NotHttp,
}

/// What a delivery needs besides its body.
pub struct Post<'a> {
    /// Where to.
    pub target: &'a Target,
    /// Who registered it (what it may reach).
    pub registrant: Registrant,
    /// The operator's allowlist for restricted registrants.
    pub allowed: &'a [Network],
    /// Extra request headers.
    pub headers: &'a [(&'static str, String)],
    /// The body's `Content-Type`.
    pub content_type: &'a str,
    /// The body.
    pub body: &'a [u8],
    /// The longest the exchange may take.
    pub timeout: Duration,
}

/// What came back: the status line, and a `Retry-After` in seconds (a push service's
/// wait after 429 or 503; an HTTP date is not read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// `Retry-After`, when the head carried one in seconds.
    pub retry_after_secs: Option<u64>,
}

/// Sends `post` and returns the answer's status and `Retry-After`.
pub async fn post(post: &Post<'_>, tls: &tokio_rustls::TlsConnector) -> Result<Answer, PostError> {
    tokio::time::timeout(post.timeout, async {
        let addrs = resolve(post.target, post.registrant, post.allowed).await?;
        let stream = connect_any(&addrs).await?;
        if post.target.https {
            let name = rustls_pki_types::ServerName::try_from(post.target.host.clone())
                .map_err(|e| PostError::Tls(e.to_string()))?;
            let stream = tls.connect(name, stream).await.map_err(|e| PostError::Tls(e.to_string()))?;
            exchange(stream, post).await
        } else {
            exchange(stream, post).await
        }
    })
    .await
    .map_err(|_| PostError::Timeout)?
}

/// The addresses a delivery to `target` may connect to: every address its host resolves
/// to now, each allowed for `registrant` (one refused address refuses them all: a name
/// that mixes internal addresses in is not a public endpoint).
pub async fn resolve(
    target: &Target,
    registrant: Registrant,
    allowed: &[Network],
) -> Result<Vec<SocketAddr>, PostError> {
    let addrs: Vec<SocketAddr> = match target.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, target.port)],
        Err(_) => tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .map_err(|e| PostError::Resolve(format!("{}: {e}", target.host)))?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(PostError::Resolve(target.host.clone()));
    }
    for addr in &addrs {
        check_address(addr.ip(), registrant, allowed).map_err(PostError::Refused)?;
    }
    Ok(addrs)
}

async fn connect_any(addrs: &[SocketAddr]) -> Result<TcpStream, PostError> {
    let mut last = String::new();
    for addr in addrs {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) => last = format!("{addr}: {e}"),
            Err(_) => last = format!("{addr}: timed out"),
        }
    }
    Err(PostError::Connect(last))
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    post: &Post<'_>,
) -> Result<Answer, PostError> {
    let io = |e: std::io::Error| PostError::Io(e.to_string());
    let target = post.target;
    let default_port = if target.https { 443 } else { 80 };
    let host = if target.host.contains(':') { format!("[{}]", target.host) } else { target.host.clone() };
    let authority = if target.port == default_port { host } else { format!("{host}:{}", target.port) };
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: palaver\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        target.path,
        post.content_type,
        post.body.len()
    );
    for (name, value) in post.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.map_err(io)?;
    stream.write_all(post.body).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut answer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let read = stream.read(&mut chunk).await.map_err(io)?;
        if read == 0 {
            return Err(PostError::NotHttp);
        }
        answer.extend_from_slice(&chunk[..read]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let parsed = response.parse(&answer);
        match parsed {
            // The whole head: the status and its `Retry-After`.
            Ok(httparse::Status::Complete(_)) => {
                let status = response.code.ok_or(PostError::NotHttp)?;
                let retry_after_secs = response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("retry-after"))
                    .and_then(|h| std::str::from_utf8(h.value).ok())
                    .and_then(|v| v.trim().parse().ok());
                return Ok(Answer { status, retry_after_secs });
            }
            // More headers than are read: the status line is enough.
            Err(httparse::Error::TooManyHeaders) if response.code.is_some() => {
                return Ok(Answer { status: response.code.unwrap_or_default(), retry_after_secs: None });
            }
            Ok(httparse::Status::Partial) if answer.len() <= MAX_ANSWER_HEAD_BYTES => {}
            _ => return Err(PostError::NotHttp),
        }
    }
}

/// A TLS client trusting the system's roots.
pub fn tls_connector() -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config =
        match rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions() {
            Ok(builder) => builder.with_root_certificates(roots).with_no_client_auth(),
            // ring supports the default versions; this is never taken.
            Err(_) => rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use palaver_core::webhooks::parse_target;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn a_name_resolving_to_loopback_is_refused_when_connecting() {
        // Registered by a room owner, `localhost` passes the URL check (a name is only
        // judged by what it resolves to), and is refused at delivery time.
        let target = parse_target("https://localhost:9/hook", Registrant::Restricted, &[]).unwrap();
        let refused = runtime().block_on(resolve(&target, Registrant::Restricted, &[]));
        assert!(matches!(refused, Err(PostError::Refused(TargetRefusal::Forbidden { .. }))), "{refused:?}");
        let allowed = [Network::parse("127.0.0.0/8").unwrap(), Network::parse("::1").unwrap()];
        assert!(runtime().block_on(resolve(&target, Registrant::Restricted, &allowed)).is_ok());
        assert!(runtime().block_on(resolve(&target, Registrant::Operator, &[])).is_ok());
    }

    #[test]
    fn the_status_line_is_the_answer_and_redirects_are_not_followed() {
        let rt = runtime();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let server = tokio::spawn(async move {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut request = vec![0u8; 4096];
                let read = socket.read(&mut request).await.unwrap();
                let request = String::from_utf8_lossy(&request[..read]).to_string();
                socket
                    .write_all(
                        b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/\r\nRetry-After: 7\r\n\r\n",
                    )
                    .await
                    .unwrap();
                request
            });
            let target =
                parse_target(&format!("http://127.0.0.1:{port}/in?x=1"), Registrant::Operator, &[]).unwrap();
            let headers = [("webhook-id", "msg_1".to_owned())];
            let post = Post {
                target: &target,
                registrant: Registrant::Operator,
                allowed: &[],
                headers: &headers,
                content_type: "application/json",
                body: b"{}",
                timeout: Duration::from_secs(5),
            };
            let answer = super::post(&post, &tls_connector()).await;
            assert_eq!(answer, Ok(Answer { status: 302, retry_after_secs: Some(7) }));
            let request = server.await.unwrap();
            assert!(request.starts_with("POST /in?x=1 HTTP/1.1\r\n"), "{request}");
            assert!(
                request.contains(&format!("Host: 127.0.0.1:{port}\r\n"))
                    && request.contains("webhook-id: msg_1\r\n")
            );
            assert!(request.ends_with("\r\n\r\n{}"), "{request}");
        });
    }

    #[test]
    fn a_stalled_endpoint_times_out() {
        let rt = runtime();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let _held = tokio::spawn(async move {
                let (socket, _) = listener.accept().await.unwrap();
                tokio::time::sleep(Duration::from_secs(30)).await;
                drop(socket);
            });
            let target =
                parse_target(&format!("http://127.0.0.1:{port}/"), Registrant::Operator, &[]).unwrap();
            let post = Post {
                target: &target,
                registrant: Registrant::Operator,
                allowed: &[],
                headers: &[],
                content_type: "application/json",
                body: b"{}",
                timeout: Duration::from_millis(300),
            };
            assert_eq!(super::post(&post, &tls_connector()).await, Err(PostError::Timeout));
        });
    }
}
