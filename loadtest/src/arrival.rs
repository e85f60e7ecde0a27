//! A client TCP stream that remembers when the kernel received the bytes it last read
//! (`SO_TIMESTAMPNS`), so a delivery's latency can be measured up to its arrival in the
//! receiver's socket as well as up to the moment the generator got round to reading it.
//!
//! Why both: one generator core plays every client of a run. When the server writes one
//! message to 1,000 sockets, the generator reads the 1,000 copies one after another, so
//! the last copy it reads waits behind the generator's own work on the 999 before it,
//! which is no part of the server's latency (a real client has its own CPU). The arrival
//! timestamp is taken when the packet enters the receiving socket's queue, independent
//! of when the generator reads it.
//!
//! On TCP, `recvmsg` reports the timestamp of the newest packet it read from. A frame the
//! WebSocket layer yields was completed by the latest read (tungstenite only reads when
//! its buffer lacks a whole frame), so the latest read's timestamp is never earlier than
//! the frame's arrival: the arrival latency can overstate, never understate.

use std::io::{self, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd as _, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use anyhow::Context as _;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};

/// Whether the missing-timestamps warning was printed.
static WARNED: AtomicBool = AtomicBool::new(false);

/// A TCP stream whose reads record the kernel's receive timestamp.
#[derive(Debug)]
pub struct ArrivalStream {
    inner: TcpStream,
    /// The receive timestamp of the newest packet the last read took bytes from, µs since
    /// the Unix epoch (0 before the first timestamped read).
    last_arrival_us: u64,
    /// Room for one `SCM_TIMESTAMPNS` control message.
    control: Vec<u8>,
}

impl ArrivalStream {
    /// Connects from `source` (a loopback address of the generator's) to `addr`, with
    /// Nagle off and receive timestamps on.
    pub async fn connect(addr: SocketAddr, source: Ipv4Addr) -> anyhow::Result<ArrivalStream> {
        let socket = TcpSocket::new_v4()?;
        socket
            .bind(SocketAddr::V4(SocketAddrV4::new(source, 0)))
            .with_context(|| format!("bind {source}"))?;
        let stream = socket.connect(addr).await.with_context(|| format!("connect {addr} from {source}"))?;
        stream.set_nodelay(true)?;
        Ok(ArrivalStream::new(stream))
    }

    /// Turns on receive timestamps for `inner`.
    ///
    /// The kernel switches its receive timestamping on for the whole machine when the
    /// first socket asks (and off after the last one closes) through deferred work, so
    /// the first packets after that may carry no timestamp: their reads report none. The
    /// harness's set-up traffic (connect, authenticate, join) comes well before any
    /// measured delivery.
    ///
    /// Where the option cannot be set (some sandboxes), the stream works without it: one
    /// warning, and no arrival times.
    pub fn new(inner: TcpStream) -> ArrivalStream {
        if let Err(e) = setsockopt(&inner, sockopt::ReceiveTimestampns, &true)
            && !WARNED.swap(true, Ordering::Relaxed)
        {
            eprintln!("no receive timestamps (SO_TIMESTAMPNS: {e}): arrival latency will not be measured");
        }
        ArrivalStream { inner, last_arrival_us: 0, control: nix::cmsg_space!(nix::sys::time::TimeSpec) }
    }

    /// When the bytes of the last read reached this socket, µs since the Unix epoch.
    pub fn last_arrival_us(&self) -> Option<u64> {
        (self.last_arrival_us != 0).then_some(self.last_arrival_us)
    }
}

/// One `recvmsg` on `fd` into `buf`: the bytes read and the newest packet's timestamp (µs
/// since the Unix epoch).
fn receive(fd: RawFd, control: &mut [u8], buf: &mut [u8]) -> io::Result<(usize, Option<u64>)> {
    let mut iov = [IoSliceMut::new(buf)];
    let message =
        recvmsg::<()>(fd, &mut iov, Some(control), MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC)?;
    let mut arrival = None;
    for control in message.cmsgs()? {
        if let ControlMessageOwned::ScmTimestampns(ts) = control {
            arrival = Some(ts.tv_sec() as u64 * 1_000_000 + ts.tv_nsec() as u64 / 1_000);
        }
    }
    Ok((message.bytes, arrival))
}

impl AsyncRead for ArrivalStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            ready!(this.inner.poll_read_ready(cx))?;
            let fd = this.inner.as_raw_fd();
            // The WebSocket layer reads into its own initialised buffer, so this zeroes
            // nothing in practice.
            let unfilled = buf.initialize_unfilled();
            let control = this.control.as_mut_slice();
            match this.inner.try_io(Interest::READABLE, || receive(fd, control, unfilled)) {
                Ok((n, arrival)) => {
                    buf.advance(n);
                    // Bytes without a timestamp (see `new`) must not inherit an older one.
                    this.last_arrival_us = arrival.unwrap_or(0);
                    return Poll::Ready(Ok(()));
                }
                // Readiness was stale; `try_io` cleared it, so the next poll waits.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for ArrivalStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    use super::*;
    use crate::stats::epoch_us;

    /// A timestamping client stream and its peer, on loopback.
    async fn pair() -> (ArrivalStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let stream = ArrivalStream::new(client.expect("connect"));
        (stream, accepted.expect("accept").0)
    }

    #[tokio::test]
    async fn a_read_reports_when_its_bytes_arrived_not_when_they_were_read() {
        let (mut stream, mut peer) = pair().await;
        assert_eq!(stream.last_arrival_us(), None, "nothing read yet");
        wait_for_timestamping(&mut stream, &mut peer).await;

        let before_write = epoch_us();
        peer.write_all(b"first").await.expect("write");
        // The bytes wait in the socket while the reader is elsewhere.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let before_read = epoch_us();
        let mut buf = [0u8; 16];
        let n = stream.read(&mut buf).await.expect("read");
        assert_eq!(&buf[..n], b"first");
        let arrived = stream.last_arrival_us().expect("a timestamped read");
        assert!(arrived >= before_write, "arrived {arrived} before the write at {before_write}");
        assert!(arrived < before_read, "arrived {arrived} is the read time ({before_read}), not the arrival");

        // A later read reports its own bytes' arrival.
        peer.write_all(b"second").await.expect("write");
        let n = stream.read(&mut buf).await.expect("read");
        assert_eq!(&buf[..n], b"second");
        let again = stream.last_arrival_us().expect("a timestamped read");
        assert!(again >= before_read, "the second read kept the first read's timestamp");
    }

    /// Exchanges bytes until the kernel timestamps them (its switch-on is deferred).
    async fn wait_for_timestamping(stream: &mut ArrivalStream, peer: &mut TcpStream) {
        let mut buf = [0u8; 1];
        for _ in 0..200 {
            peer.write_all(b".").await.expect("write");
            stream.read_exact(&mut buf).await.expect("read");
            if stream.last_arrival_us().is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the kernel never timestamped a received packet");
    }

    #[tokio::test]
    async fn writes_pass_through_and_end_of_stream_reads_zero() {
        let (mut stream, mut peer) = pair().await;
        stream.write_all(b"ping").await.expect("write");
        stream.flush().await.expect("flush");
        let mut buf = [0u8; 4];
        peer.read_exact(&mut buf).await.expect("peer read");
        assert_eq!(&buf, b"ping");
        drop(peer);
        let n = stream.read(&mut buf).await.expect("read at end of stream");
        assert_eq!(n, 0);
    }
}
