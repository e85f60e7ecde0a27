//! A minimal HTTP/1.1 client for the few REST calls a load run needs (register, metrics,
//! health): one request per connection, `Connection: close`, `Content-Length` bodies,
//! over TLS when the server's listener speaks it. Not a general client: no chunked
//! encoding, no redirects.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::loopback_tls;

const TIMEOUT: Duration = Duration::from_secs(30);

/// An HTTP answer: status and body.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// A server's HTTP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    pub addr: SocketAddr,
    /// Whether it speaks TLS (`palaver --http-tls`).
    pub tls: bool,
}

trait Connection: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Connection for T {}

async fn request(
    listener: Listener,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> anyhow::Result<Answer> {
    let addr = listener.addr;
    let run = async {
        let tcp = TcpStream::connect(addr).await.with_context(|| format!("connect {addr}"))?;
        tcp.set_nodelay(true)?;
        let mut stream: Box<dyn Connection> = if listener.tls {
            Box::new(loopback_tls::connector().connect(loopback_tls::server_name(), tcp).await?)
        } else {
            Box::new(tcp)
        };
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        if let Some(body) = body {
            head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await?;
        if let Some(body) = body {
            stream.write_all(body).await?;
        }
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 8192];
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some((status, Some(length), start)) = parse_head(&buf)?
                && buf.len() >= start + length
            {
                return Ok(Answer { status, body: buf[start..start + length].to_vec() });
            }
        }
        // The connection ended: without a length the body runs to the end.
        match parse_head(&buf)? {
            Some((status, None, start)) => Ok(Answer { status, body: buf[start..].to_vec() }),
            _ => Err(anyhow!("truncated HTTP answer from {addr}{path}")),
        }
    };
    tokio::time::timeout(TIMEOUT, run).await.map_err(|_| anyhow!("{method} {path}: timed out"))?
}

/// Parses the head: status, `Content-Length` and where the body starts; `None` while the
/// head is incomplete.
fn parse_head(buf: &[u8]) -> anyhow::Result<Option<(u16, Option<usize>, usize)>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { return Ok(None) };
    let head = std::str::from_utf8(&buf[..end]).context("non-UTF-8 HTTP head")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
    let mut length = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse::<usize>().ok();
        }
    }
    Ok(Some((status, length, end + 4)))
}

/// Tokens of a freshly registered account.
#[derive(Debug, Clone, Deserialize)]
pub struct Registered {
    pub access_token: String,
}

/// `POST /v1/auth/register`.
pub async fn register(addr: Listener, username: &str, password: &str) -> anyhow::Result<Registered> {
    let body = serde_json::to_vec(&serde_json::json!({ "username": username, "password": password }))?;
    let answer = request(addr, "POST", "/v1/auth/register", Some(&body)).await?;
    if answer.status != 201 && answer.status != 200 {
        bail!("register {username}: HTTP {} {}", answer.status, String::from_utf8_lossy(&answer.body));
    }
    serde_json::from_slice(&answer.body).with_context(|| format!("register {username}: bad answer"))
}

/// `GET /metrics` (Palaver): the unlabelled counters and gauges as name → value
/// (labelled series and histograms are left out).
pub async fn metrics(addr: Listener) -> anyhow::Result<Vec<(String, f64)>> {
    Ok(unlabelled(&metrics_text(addr).await?))
}

/// `GET /metrics` (Palaver) as it came: the Prometheus text format.
pub async fn metrics_text(addr: Listener) -> anyhow::Result<String> {
    let answer = request(addr, "GET", "/metrics", None).await?;
    if answer.status != 200 {
        bail!("metrics: HTTP {}", answer.status);
    }
    Ok(String::from_utf8_lossy(&answer.body).into_owned())
}

/// The unlabelled counters and gauges of a Prometheus text answer, as name → value.
pub fn unlabelled(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.contains('{'))
        .filter(|l| !["_sum ", "_count "].iter().any(|suffix| l.contains(suffix)))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.trim().to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// The value of label `label` of the first sample of `series` (e.g. `mode` of
/// `palaver_durability_info`) in a Prometheus text answer.
pub fn label_value(text: &str, series: &str, label: &str) -> Option<String> {
    let prefix = format!("{series}{{");
    let labels = text.lines().find_map(|l| l.strip_prefix(&prefix))?.split_once('}')?.0;
    labels.split(',').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (name.trim() == label).then(|| value.trim().trim_matches('"').to_string())
    })
}

/// Waits until the server answers `GET /healthz` with 200.
pub async fn wait_healthy(addr: Listener, within: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Ok(a) = request(addr, "GET", "/healthz", None).await
            && a.status == 200
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{} did not become healthy within {within:?}", addr.addr);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_series_and_labels_of_an_exposition() {
        let text = "# TYPE palaver_durability_info gauge\npalaver_durability_info{mode=\"fsync\"} 1\n\
                    palaver_connections 3\nh_bucket{le=\"1.0\"} 2\nh_sum 0.5\nh_count 2\n";
        assert_eq!(label_value(text, "palaver_durability_info", "mode").as_deref(), Some("fsync"));
        assert_eq!(label_value(text, "palaver_durability_info", "other"), None);
        assert_eq!(label_value(text, "palaver_build_info", "version"), None);
        assert_eq!(unlabelled(text), vec![("palaver_connections".to_string(), 3.0)]);
    }
}
