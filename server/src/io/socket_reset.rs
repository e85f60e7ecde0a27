//! Abandoning a socket without leaving its unsent bytes to the kernel.
//!
//! A socket closed normally keeps its unsent data in the kernel until the peer takes it
//! (or a timeout passes): for a peer that stopped reading, megabytes per socket for
//! minutes. A socket Palaver gives up on (a slow consumer, a peer gone) is closed with
//! `SO_LINGER` 0 instead, which discards that data and resets the connection at once.

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

/// The descriptor of an accepted TCP socket, to reset it when it is abandoned.
#[derive(Debug, Clone, Copy)]
pub struct SocketReset(Option<RawFd>);

impl SocketReset {
    /// For the socket `stream`, whose write half (plain or TLS) the writer will own.
    pub fn of(stream: &monoio::net::TcpStream) -> Self {
        SocketReset(Some(stream.as_raw_fd()))
    }

    /// Nothing to reset: abandoning just drops the socket.
    #[cfg(test)]
    pub fn none() -> Self {
        SocketReset(None)
    }

    /// Drops `owner`, the last holder of the socket this was made for, after setting
    /// `SO_LINGER` 0 on it, so that closing it discards unsent data and resets the
    /// connection.
    pub fn reset<T>(self, owner: T) {
        if let Some(fd) = self.0 {
            // SAFETY: `fd` was read from the socket that `owner` keeps open (a
            // `SocketReset` is made only by `of` for the stream the writer then owns, and
            // `reset` consumes the writer's half), and `owner` is alive until the end of
            // this block, so the descriptor is open and cannot have been reused for the
            // duration of the borrow.
            #[expect(unsafe_code, reason = "monoio's TcpStream exposes its descriptor only as a raw fd")]
            let socket = unsafe { BorrowedFd::borrow_raw(fd) };
            let _ = socket2::SockRef::from(&socket).set_linger(Some(Duration::ZERO));
        }
        drop(owner);
    }
}
